//! Rollouts of generated intent repos on the simulated fleet, under paused tokio time.

mod common;

use common::*;
use flotilla::drivers::ErrorClass;
use flotilla::engine::{EventKind, Outcome};

#[tokio::test(start_paused = true)]
async fn a_bad_release_on_the_canary_halts_before_any_other_environment_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Fixture::standard(12, &strategy("", "\"50%\""))
        .with_release_sim("broken = \"ring=canary\"")
        .load(dir.path());
    let run = rollout(intent, &["canary"]).await;

    match &run.outcome {
        Outcome::Halted {
            wave, failed_envs, ..
        } => {
            assert_eq!(wave, "canary");
            assert_eq!(failed_envs, &["e-00".to_string()]);
        }
        other => panic!("expected a halt, got {other:?}"),
    }
    assert_eq!(run.touched().into_iter().collect::<Vec<_>>(), ["e-00"]);
    assert!(run.fleet.snapshot().envs.keys().all(|e| e == "e-00"));
    assert!(
        !run.kinds().contains(&"wave_completed"),
        "{:?}",
        run.kinds()
    );
    // The dependents of the failed schema were blocked, not attempted.
    assert_eq!(run.count("step_blocked"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failure_budget_of_k_halts_at_failure_k_plus_one() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Fixture::standard(
        10,
        &strategy("", "2").replace("max_parallel = 4", "max_parallel = 1"),
    )
    .broken_at(&[1, 3, 5, 7, 9])
    .load(dir.path());
    let run = rollout(intent, &["canary"]).await;

    let failed: Vec<String> = run
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepFailed { env, .. } => Some(env.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        ["e-01", "e-03", "e-05"],
        "halts at the third failure, not the second"
    );
    assert!(matches!(run.outcome, Outcome::Halted { ref wave, .. } if wave == "rest"));
    // One environment at a time: nothing after e-05 was started.
    assert!(!run.touched().contains("e-06"), "{:?}", run.touched());
}

#[tokio::test(start_paused = true)]
async fn failures_within_the_budget_complete_the_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Fixture::standard(10, &strategy("", "2"))
        .broken_at(&[1, 2])
        .load(dir.path());
    let run = rollout(intent, &["canary"]).await;
    assert_eq!(
        run.outcome,
        Outcome::Completed {
            succeeded: 8,
            failed: 2,
            skipped: 0,
            rolled_back: 0
        }
    );
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_and_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::standard(20, &strategy("", "0").replace("retries = 2", "retries = 8"));
    let fleet = fixture
        .fleet
        .replace("success_rate = 1.0", "success_rate = 0.6");
    let intent = Fixture { fleet, ..fixture }.load(dir.path());
    let started = tokio::time::Instant::now();
    let run = rollout(intent, &["canary"]).await;

    assert_eq!(
        run.outcome,
        Outcome::Completed {
            succeeded: 20,
            failed: 0,
            skipped: 0,
            rolled_back: 0
        }
    );
    let retries = run.count("step_retrying");
    assert!(retries > 5, "only {retries} retries at a 60% success rate");
    assert_eq!(run.count("step_succeeded"), 60);
    // Backoff sleeps happened on the (paused) clock, so the rollout took simulated time.
    assert!(started.elapsed() > secs(2));
    // Every apply reached the fleet exactly once per (env, service) despite the retries.
    let snapshot = run.fleet.snapshot();
    assert!(snapshot
        .envs
        .values()
        .flat_map(|s| s.values())
        .all(|s| s.applies == 1));
}

#[tokio::test(start_paused = true)]
async fn a_hung_step_times_out_and_is_retried_then_fails() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Fixture::standard(
        6,
        &strategy("", "1").replace("step_timeout = \"1m\"", "step_timeout = \"30s\""),
    )
    .with_release_sim("hang = \"name=e-03\"")
    .load(dir.path());
    let started = tokio::time::Instant::now();
    let run = rollout(intent, &["canary"]).await;

    let timeouts: Vec<(String, ErrorClass, u32)> = run
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepFailed {
                env,
                class,
                attempts,
                ..
            } => Some((env.to_string(), *class, *attempts)),
            _ => None,
        })
        .collect();
    // Failed after its retries, it went to the back of the wave once (requeue_failed
    // defaults to 1) and failed the same way again.
    assert_eq!(
        timeouts,
        vec![("e-03".to_string(), ErrorClass::Timeout, 3); 2]
    );
    let requeued: Vec<&str> = run
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::EnvRetried { env, by, .. } if by.contains("requeue_failed") => {
                Some(env.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(requeued, ["e-03"]);
    assert_eq!(
        run.outcome,
        Outcome::Completed {
            succeeded: 5,
            failed: 1,
            skipped: 0,
            rolled_back: 0
        }
    );
    assert!(
        started.elapsed() >= secs(180),
        "three attempts of 30 s each, twice"
    );
}

#[tokio::test(start_paused = true)]
async fn a_service_s_own_timeout_and_retries_override_the_strategy() {
    let dir = tempfile::tempdir().unwrap();
    // No requeue: one run of each environment shows the service's own limits.
    let mut f = Fixture::standard(
        6,
        &strategy("requeue_failed = 0", "1")
            .replace("step_timeout = \"1m\"", "step_timeout = \"30s\""),
    )
    .with_release_sim("hang = \"name=e-03\"");
    f.fleet = f.fleet.replace(
        "name = \"schema\"\n",
        "name = \"schema\"\nstep_timeout = \"5s\"\nretries = 0\n",
    );
    let intent = f.load(dir.path());
    assert_eq!(intent.services[0].strategy.step_timeout, Some(secs(5)));
    let started = tokio::time::Instant::now();
    let run = rollout(intent, &["canary"]).await;
    let failed: Vec<(String, String, u32, String)> = run
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepFailed {
                env,
                service,
                attempts,
                error,
                ..
            } => Some((
                env.to_string(),
                service.to_string(),
                *attempts,
                error.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        [(
            "e-03".to_string(),
            "schema".to_string(),
            1,
            "no answer within the step timeout of 5s".to_string()
        )]
    );
    assert!(
        started.elapsed() < secs(30),
        "one attempt of 5 s, not three of 30 s"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unapproved_gate_blocks_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Fixture::standard(4, &strategy("", "0")).load(dir.path());
    let run = rollout(intent, &[]).await;
    assert!(matches!(run.outcome, Outcome::Blocked { ref wave, .. } if wave == "canary"));
    assert!(run.touched().is_empty());
    assert_eq!(run.kinds(), ["rollout_started", "gate_waiting"]);
}

#[tokio::test(start_paused = true)]
async fn a_soak_holds_the_next_wave_for_its_duration() {
    let dir = tempfile::tempdir().unwrap();
    let s = strategy("", "0").replace("name = \"rest\"\n", "name = \"rest\"\nsoak = \"10m\"\n");
    let intent = Fixture::standard(4, &s).load(dir.path());
    let run = rollout(intent, &["canary"]).await;
    assert!(matches!(run.outcome, Outcome::Completed { failed: 0, .. }));
    let ts = |kind: &str| -> std::time::SystemTime {
        let e = run
            .events
            .iter()
            .filter(|e| e.kind.name() == kind)
            .collect::<Vec<_>>();
        humantime::parse_rfc3339(&e[e.len() - 1].ts).unwrap()
    };
    let canary_done = humantime::parse_rfc3339(
        &run.events
            .iter()
            .find(|e| e.kind.name() == "wave_completed")
            .unwrap()
            .ts,
    )
    .unwrap();
    let soaked = ts("wave_started").duration_since(canary_done).unwrap();
    assert!(
        soaked >= secs(600),
        "the rest wave started {soaked:?} after the canary"
    );
}

#[tokio::test(start_paused = true)]
async fn a_policy_raises_the_gate_of_waves_touching_protected_environments() {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = Fixture::standard(
        4,
        &strategy("[policy]\nrequire_approval = \"tier=enterprise\"\n", "0"),
    );
    // `[policy]` must come after the strategy's tables: move it to the end of the file.
    fixture.fleet = fixture
        .fleet
        .replace("[policy]\nrequire_approval = \"tier=enterprise\"\n", "")
        + "[policy]\nrequire_approval = \"tier=enterprise\"\n";
    fixture.envs[2].1 = fixture.envs[2]
        .1
        .replace("ring =", "tier = \"enterprise\", ring =");
    let intent = fixture.load(dir.path());
    let run = rollout(intent, &["canary"]).await;
    match &run.outcome {
        Outcome::Blocked { wave, reason } => {
            assert_eq!(wave, "rest");
            assert!(reason.contains("require_approval"), "{reason}");
        }
        other => panic!("expected the rest wave to need approval, got {other:?}"),
    }
    assert_eq!(run.touched().into_iter().collect::<Vec<_>>(), ["e-00"]);
}

/// A journal that records everything but can make only its first `durable` waits good.
struct FailingJournal {
    events: std::sync::Mutex<Vec<flotilla::engine::Event>>,
    durable: std::sync::atomic::AtomicUsize,
}

impl flotilla::engine::EventSink for FailingJournal {
    fn emit(&self, event: flotilla::engine::Event) {
        self.events.lock().unwrap().push(event);
    }

    fn emit_durable(&self, event: flotilla::engine::Event) -> flotilla::engine::SinkFuture {
        self.emit(event);
        let left = self.durable.load(std::sync::atomic::Ordering::SeqCst);
        self.durable
            .store(left.saturating_sub(1), std::sync::atomic::Ordering::SeqCst);
        Box::pin(std::future::ready(left > 0))
    }
}

#[tokio::test(start_paused = true)]
async fn no_environment_is_touched_before_its_intent_is_durable() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let intent = Arc::new(Fixture::standard(12, &strategy("", "\"50%\"")).load(dir.path()));
    let plan = flotilla::plan::build(&intent, "r1", epoch()).unwrap();
    let fleet = Arc::new(flotilla::drivers::sim::SimFleet::new(
        intent.driver.sim.clone(),
        intent.release("r1"),
    ));
    // The canary's intent and the first window of four in `rest` are recorded; the journal
    // fails on the next window, which the engine records ahead while the first one runs.
    let journal = Arc::new(FailingJournal {
        events: Default::default(),
        durable: 2.into(),
    });
    let (ctx, crx) = tokio::sync::mpsc::unbounded_channel();
    ctx.send(flotilla::engine::Command::Approve {
        wave: "canary".into(),
        by: "tester".into(),
        note: None,
    })
    .unwrap();
    let outcome = flotilla::engine::Engine::new(
        intent.clone(),
        plan,
        fleet.clone(),
        Arc::new(flotilla::engine::TokioClock::starting_at(epoch())),
        journal.clone(),
        crx,
        flotilla::engine::OnHold::Exit,
    )
    .run()
    .await;
    assert!(
        matches!(&outcome, Outcome::Halted { reason, .. } if reason.contains("journal")),
        "{outcome:?}"
    );
    let events = journal.events.lock().unwrap();
    let mut intended = std::collections::BTreeSet::new();
    let mut touched = std::collections::BTreeSet::new();
    for e in events.iter() {
        match &e.kind {
            EventKind::EnvStarted { env, .. } => {
                intended.insert(env.clone());
            }
            EventKind::StepStarted { env, .. } => {
                assert!(intended.contains(env), "{env} started before its intent");
                touched.insert(env.clone());
            }
            _ => {}
        }
    }
    assert_eq!(
        touched.into_iter().collect::<Vec<_>>(),
        ["e-00", "e-01", "e-02", "e-03", "e-04"]
    );
    // Only what the engine could record reached the fleet.
    let live = fleet.snapshot();
    assert_eq!(live.envs.len(), 5, "{:?}", live.envs.keys());
}

#[test]
fn risk_comes_from_the_strategy_not_the_simulator_and_the_seed_from_the_release() {
    let dir = tempfile::tempdir().unwrap();
    let s = strategy("expected_success_rate = 0.9\nseed = 42", "0");
    let intent = Fixture::standard(4, &s).load(dir.path());
    let plan = flotilla::plan::build(&intent, "r1", epoch()).unwrap();
    assert_eq!(plan.seed, 42);
    assert!(
        plan.risk_basis.contains("expected_success_rate 0.9"),
        "{}",
        plan.risk_basis
    );
    // The sim fleet never fails here (success_rate 1.0), yet the plan's risk is the strategy's.
    assert!(
        plan.waves[1].risk.without_retries > 0.5,
        "{:?}",
        plan.waves[1].risk
    );
    let dir = tempfile::tempdir().unwrap();
    let intent = Fixture::standard(4, &strategy("", "0")).load(dir.path());
    let plan = flotilla::plan::build(&intent, "r1", epoch()).unwrap();
    assert_eq!(plan.seed, flotilla::hash::stable_hash(&[b"r1"]));
}

#[tokio::test(start_paused = true)]
async fn a_freeze_that_begins_mid_rollout_holds_the_next_wave_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    // The clock starts Monday 09:00Z; the canary is done within seconds, and the rest is
    // due after a 10m soak, at 09:10, inside the weekly freeze Monday 09:05-12:00.
    let mut fixture = Fixture::standard(
        4,
        &strategy("", "0").replace("name = \"rest\"\n", "name = \"rest\"\nsoak = \"10m\"\n"),
    );
    fixture.fleet += "[policy]\n[[policy.freeze]]\nname = \"monday-standup\"\nweekly = \"mon 09:05-12:00\"\ntimezone = \"UTC\"\nselect = \"ring=general\"\n";
    let intent = fixture.load(dir.path());
    let run = rollout(intent, &["canary"]).await;
    assert!(
        matches!(run.outcome, Outcome::Completed { succeeded: 4, .. }),
        "{:?}",
        run.outcome
    );
    let waiting = run
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::GateWaiting { wave, reason } if reason.contains("freeze") => {
                Some((wave.clone(), reason.clone(), e.ts.clone()))
            }
            _ => None,
        })
        .expect("the rest wave waits for the freeze");
    assert_eq!(waiting.0, "rest");
    assert!(
        waiting.1.contains("`monday-standup`") && waiting.1.contains("2026-11-02T12:00:00Z"),
        "{}",
        waiting.1
    );
    let at = |s: &str| humantime::parse_rfc3339_weak(s).unwrap();
    assert!(
        at(&waiting.2) >= at("2026-11-02T09:05:00Z"),
        "{:?}",
        waiting.2
    );
    // No step of the rest wave started before the freeze ended.
    let first_rest_step = run
        .events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::StepStarted { env, .. } if env != "e-00"))
        .map(|e| at(&e.ts))
        .min()
        .unwrap();
    assert!(
        first_rest_step >= at("2026-11-02T12:00:00Z"),
        "{first_rest_step:?}"
    );
    // What `status` and the console read while it waited: the freeze and its end.
    let upto: Vec<_> = run
        .events
        .iter()
        .take_while(|e| at(&e.ts) < at("2026-11-02T12:00:00Z"))
        .cloned()
        .collect();
    let view = flotilla::engine::RolloutView::fold(&upto);
    assert_eq!(view.state.name(), "waiting");
    let rest = view.waves.iter().find(|w| w.name == "rest").unwrap();
    assert!(
        rest.waiting
            .as_deref()
            .is_some_and(|w| w.contains("freeze `monday-standup`")),
        "{:?}",
        rest.waiting
    );
}

#[tokio::test(start_paused = true)]
async fn an_approval_gate_that_requires_a_note_refuses_one_without() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Fixture::standard(
        3,
        &strategy("", "0").replace(
            "gate = \"approval\"\n",
            "gate = \"approval\"\nnote = \"required\"\n",
        ),
    )
    .load(dir.path());
    let mut live = Live::start(intent);
    live.until("gate_waiting").await;
    let approve = |note: Option<&str>| flotilla::engine::Command::Approve {
        wave: "canary".into(),
        by: "ana".into(),
        note: note.map(String::from),
    };
    live.send(approve(None));
    live.send(approve(Some("  ")));
    for _ in 0..2 {
        let e = live.until("command_rejected").await;
        let EventKind::CommandRejected { reason, .. } = &e.kind else {
            unreachable!()
        };
        assert!(
            reason.contains("with a note") && reason.contains("--note"),
            "{reason}"
        );
    }
    live.send(approve(Some("CAB-12: canary checked by ana")));
    let e = live.until("gate_approved").await;
    assert!(
        matches!(&e.kind, EventKind::GateApproved { note: Some(n), .. } if n.starts_with("CAB-12"))
    );
    live.until("rollout_completed").await;
}

/// A console-mode rollout (it waits on halts) of 3 environments whose `rest` wave has a
/// check that fails while `broken` exists in `dir`; the canary approved.
fn check_gated(dir: &std::path::Path) -> Live {
    use std::os::unix::fs::PermissionsExt;
    let flag = dir.join("broken");
    let script = dir.join("smoke.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e {} ]; then echo \"smoke: $1 answers 500\" >&2; exit 1; fi\n",
            flag.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&flag, "").unwrap();
    let strategy_text = strategy("", "0").replace(
        "name = \"rest\"\n",
        &format!(
            "name = \"rest\"\ncheck = [\"{}\", \"{{wave}}\"]\ncheck_retries = 0\n",
            script.display()
        ),
    );
    let mut f = Fixture::standard(3, &strategy_text);
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    let intent = f.load(&dir.join("repo"));
    let live = Live::start_with_checks(intent, dir);
    live.send(flotilla::engine::Command::Approve {
        wave: "canary".into(),
        by: "ana".into(),
        note: None,
    });
    live
}

/// In the console a failing check halts before its wave and waits; once the cause is
/// fixed, a resume runs the check again and the wave goes. (Real time: the check is a
/// real process.)
#[tokio::test]
async fn a_failing_check_holds_its_wave_until_a_resume_finds_it_passing() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = check_gated(dir.path());
    let halted = live.until("rollout_halted").await;
    let EventKind::RolloutHalted { wave, reason, .. } = &halted.kind else {
        unreachable!()
    };
    assert_eq!(wave, "rest");
    assert!(
        reason.contains("failed: exited 1: smoke: rest answers 500"),
        "{reason}"
    );
    let started: Vec<&str> = live
        .seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepStarted { env, .. } => Some(env.as_str()),
            _ => None,
        })
        .collect();
    assert!(started.iter().all(|e| *e == "e-00"), "{started:?}");

    std::fs::remove_file(dir.path().join("broken")).unwrap();
    live.send(flotilla::engine::Command::Resume { by: "ana".into() });
    live.until("check_passed").await;
    let done = live.until("rollout_completed").await;
    assert!(
        matches!(
            done.kind,
            EventKind::RolloutCompleted {
                succeeded: 3,
                failed: 0,
                ..
            }
        ),
        "{done:?}"
    );
}

/// Ctrl-C (or a lost lease) while a check holds the wave ends the rollout as halted before
/// the wave, instead of waiting on for a decision.
#[tokio::test]
async fn an_interrupt_while_a_check_halted_the_rollout_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = check_gated(dir.path());
    live.until("rollout_halted").await;
    live.send(flotilla::engine::Command::Interrupt);
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), live.engine)
        .await
        .expect("the engine ends")
        .unwrap();
    assert!(
        matches!(&outcome, Outcome::Halted { wave, before_wave: true, failed_envs, .. } if wave == "rest" && failed_envs.is_empty()),
        "{outcome:?}"
    );
}

/// A release that fails everywhere (every apply hangs) still halts after as many
/// environments as the budget allows: environments waiting for their requeue count as
/// failed, so the requeue does not carry a bad release through the whole wave.
#[tokio::test(start_paused = true)]
async fn requeued_environments_count_against_the_budget_so_a_bad_release_still_halts_early() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Fixture::standard(
        12,
        &strategy("", "1").replace("step_timeout = \"1m\"", "step_timeout = \"5s\""),
    )
    .with_release_sim("hang = \"name!=e-00\"")
    .load(dir.path());
    assert_eq!(intent.strategy.requeue_failed, 1);
    let run = rollout(intent, &["canary"]).await;
    assert!(
        matches!(&run.outcome, Outcome::Halted { wave, before_wave: false, .. } if wave == "rest"),
        "{:?}",
        run.outcome
    );
    // Four at a time: the first to fail waits for its requeue (counted), the next one
    // over the budget of 1 halts; the rest of the 11 were never touched.
    let touched = run.touched();
    assert!(touched.len() <= 6, "{touched:?}");
    assert_eq!(run.count("env_retried"), 1, "{:?}", run.kinds());
}
