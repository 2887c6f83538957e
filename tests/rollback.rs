//! Rolling environments back to an earlier release, on an operator's command.

mod common;

use std::sync::Arc;

use common::*;
use flotilla::engine::{Command, EventKind, Outcome, RolloutView};

/// The standard fleet with release r0 before r1, and the rest behind approval too, so the
/// rollout waits after the canary.
fn fixture(n: usize) -> Fixture {
    let strategy = strategy("", "0").replace(
        "name = \"rest\"\nselect = \"*\"",
        "name = \"rest\"\nselect = \"*\"\ngate = \"approval\"",
    );
    Fixture::standard(n, &strategy).with_earlier_release()
}

fn rollback(envs: &[&str], wave: Option<&str>) -> Command {
    Command::Rollback {
        envs: envs.iter().map(|e| e.to_string()).collect(),
        wave: wave.map(str::to_string),
        to: None,
        by: "carol".into(),
    }
}

fn approve(wave: &str) -> Command {
    Command::Approve {
        wave: wave.into(),
        by: "alice".into(),
        note: None,
    }
}

/// Both gates approved, the rollout halted on its budget in the rest wave, and what was in
/// flight then finished.
async fn halted_in_rest(fixture: Fixture, dir: &std::path::Path) -> Live {
    halted_in_rest_with(Live::start(fixture.load(dir))).await
}

/// As [`halted_in_rest`], for a rollout already started.
async fn halted_in_rest_with(mut live: Live) -> Live {
    live.until("gate_waiting").await;
    live.send(approve("canary"));
    live.until("gate_waiting").await;
    live.send(approve("rest"));
    live.until("rollout_halted").await;
    live.during(secs(60)).await;
    live
}

/// What `env` runs now, per service: (service, version).
fn live_versions(live: &Live, env: &str) -> Vec<(String, String)> {
    live.fleet.snapshot().envs[env]
        .iter()
        .map(|(s, v)| (s.clone(), v.live.version.clone()))
        .collect()
}

/// The version of `service` that `env` runs now.
fn version(live: &Live, env: &str, service: &str) -> String {
    live.fleet.snapshot().envs[env][service]
        .live
        .version
        .clone()
}

fn rejection(live: &Live) -> Option<String> {
    live.seen.iter().rev().find_map(|e| match &e.kind {
        EventKind::CommandRejected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

#[tokio::test(start_paused = true)]
async fn a_rolled_back_canary_runs_the_earlier_release_and_the_rollout_pauses() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = Live::start(fixture(4).load(dir.path()));
    live.until("gate_waiting").await;
    live.send(approve("canary"));
    live.until("wave_completed").await;
    live.until("gate_waiting").await;
    live.send(rollback(&["e-00"], None));

    let started = live.until("rollback_started").await;
    let EventKind::RollbackStarted { to, services, .. } = &started.kind else {
        unreachable!()
    };
    assert_eq!(to, "r0");
    // Dependents go back before what they depend on.
    assert_eq!(services, &["web", "api", "schema"]);
    live.until("env_rolled_back").await;
    let order: Vec<String> = live
        .seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepRolledBack { service, .. } => Some(service.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["web", "api", "schema"]);
    assert_eq!(
        live_versions(&live, "e-00"),
        [
            ("api".to_string(), "0.9".to_string()),
            ("schema".to_string(), "0".to_string()),
            ("web".to_string(), "0.9".to_string()),
        ]
    );
    assert!(
        live.seen.iter().any(|e| e.kind.name() == "rollout_paused"),
        "a rollback pauses the rollout"
    );

    // Paused: approving the next wave starts nothing until someone resumes.
    live.send(approve("rest"));
    let quiet = live.during(secs(600)).await;
    assert!(
        !quiet.iter().any(|e| e.kind.name() == "step_started"),
        "nothing starts while paused after a rollback"
    );
    live.send(Command::Resume { by: "alice".into() });
    live.until("rollout_completed").await;
    let fleet = live.fleet.clone();
    assert_eq!(
        live.engine.await.unwrap(),
        Outcome::Completed {
            succeeded: 3,
            failed: 0,
            skipped: 0,
            rolled_back: 1
        }
    );
    // The rolled-back canary was left alone by the rest of the rollout.
    assert_eq!(fleet.snapshot().envs["e-00"]["api"].live.version, "0.9");
}

#[tokio::test(start_paused = true)]
async fn a_budget_halt_is_recovered_by_rolling_back_the_wave() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = halted_in_rest(fixture(6).broken_at(&[2]), dir.path()).await;

    live.send(rollback(&[], Some("rest")));
    live.until("rollback_started").await;
    while live
        .seen
        .iter()
        .filter(|e| e.kind.name() == "env_rolled_back")
        .count()
        < rolled_back_expected(&live)
    {
        live.until("env_rolled_back").await;
    }
    // The broken environment is back at r0 (r1's versions crash there, r0's do not).
    assert_eq!(version(&live, "e-02", "schema"), "0");
    // The canary was not part of the wave: it keeps r1.
    assert_eq!(version(&live, "e-00", "schema"), "1");
    // Rolled back is not failed, but a halt stays a halt until someone decides (and holds
    // everything already: no pause on top).
    let quiet = live.during(secs(600)).await;
    assert!(!quiet.iter().any(|e| e.kind.name() == "rollout_resumed"));
    let view = RolloutView::fold(&live.seen);
    assert_eq!(view.state.name(), "halted");
    assert!(!view.paused);
    live.send(Command::Abort { by: "carol".into() });
    let outcome = live.engine.await.unwrap();
    assert!(matches!(outcome, Outcome::Aborted { .. }), "{outcome:?}");
    let view = RolloutView::fold(&live.seen);
    assert_eq!(
        view.rollbacks["e-02"].state,
        flotilla::engine::fold::RollbackState::Done
    );
}

/// How many environments the wave rollback took, from its records.
fn rolled_back_expected(live: &Live) -> usize {
    live.seen
        .iter()
        .filter(|e| e.kind.name() == "rollback_started")
        .count()
}

#[tokio::test(start_paused = true)]
async fn rollbacks_that_cannot_be_done_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = Live::start(fixture(4).load(dir.path()));
    live.until("gate_waiting").await;
    let cases: [(Command, &str); 4] = [
        (
            rollback(&["e-01"], None),
            "has not been changed by this rollout",
        ),
        (rollback(&["e-99"], None), "no environment `e-99`"),
        (rollback(&[], Some("nope")), "no wave `nope`"),
        (rollback(&[], None), "name the environments to roll back"),
    ];
    for (command, reason) in cases {
        live.send(command);
        live.until("command_rejected").await;
        let got = rejection(&live).unwrap();
        assert!(got.contains(reason), "{got}");
    }
    live.send(Command::Rollback {
        envs: vec!["e-00".into()],
        wave: None,
        to: Some("r1".into()),
        by: "carol".into(),
    });
    live.until("command_rejected").await;
    assert!(rejection(&live)
        .unwrap()
        .contains("is the release being rolled out"));

    // Without an earlier release there is nothing to go back to.
    let dir = tempfile::tempdir().unwrap();
    let mut live = Live::start(Fixture::standard(2, &strategy("", "0")).load(dir.path()));
    live.until("gate_waiting").await;
    live.send(rollback(&["e-00"], None));
    live.until("command_rejected").await;
    assert!(rejection(&live).unwrap().contains("no release before `r1`"));
}

#[tokio::test(start_paused = true)]
async fn forward_only_services_are_never_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = fixture(2);
    fixture.fleet = fixture.fleet.replace(
        "name = \"schema\"\n",
        "name = \"schema\"\nrollback = \"forward-only\"\n",
    );
    let mut live = Live::start(fixture.load(dir.path()));
    live.until("gate_waiting").await;
    live.send(approve("canary"));
    live.until("wave_completed").await;
    live.send(rollback(&["e-00"], None));
    let started = live.until("rollback_started").await;
    let EventKind::RollbackStarted { services, .. } = &started.kind else {
        unreachable!()
    };
    assert_eq!(services, &["web", "api"]);
    live.until("env_rolled_back").await;
    assert_eq!(
        version(&live, "e-00", "schema"),
        "1",
        "schema stays forward"
    );
    assert_eq!(version(&live, "e-00", "api"), "0.9");
}

#[tokio::test(start_paused = true)]
async fn a_rollback_cut_short_by_a_crash_runs_again_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Arc::new(fixture(3).load(dir.path()));
    let mut live = Live::start((*intent).clone());
    live.until("gate_waiting").await;
    live.send(approve("canary"));
    live.until("wave_completed").await;
    live.send(rollback(&["e-00"], None));
    live.until("rollback_started").await;
    // The process dies right after the rollback was recorded: nothing of it was applied.
    let view = live.crash();
    assert_eq!(version(&live, "e-00", "api"), "1.0");
    assert_eq!(
        view.rollbacks["e-00"].state,
        flotilla::engine::fold::RollbackState::InFlight
    );

    let mut again = Live::resume(intent, live.fleet.clone(), Some(&view));
    let done = again.until("env_rolled_back").await;
    assert!(matches!(done.kind, EventKind::EnvRolledBack { ref by, .. } if by == "carol"));
    assert_eq!(version(&again, "e-00", "api"), "0.9");
    // Still paused by the rollback: nothing else moves.
    let quiet = again.during(secs(600)).await;
    assert!(!quiet.iter().any(|e| e.kind.name() == "step_started"));
}

#[tokio::test(start_paused = true)]
async fn a_rollback_resumed_after_a_crash_puts_nothing_back_twice() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Arc::new(fixture(3).load(dir.path()));
    let mut live = Live::start((*intent).clone());
    live.until("gate_waiting").await;
    live.send(approve("canary"));
    live.until("wave_completed").await;
    live.send(rollback(&["e-00"], None));
    // The process dies once web is back (and perhaps while api is being put back).
    live.until("step_rolled_back").await;
    let view = live.crash();

    let mut again = Live::resume(intent, live.fleet.clone(), Some(&view));
    again.until("env_rolled_back").await;
    let back: Vec<String> = live
        .seen
        .iter()
        .chain(&again.seen)
        .filter_map(|e| match &e.kind {
            EventKind::StepRolledBack { service, .. } => Some(service.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        back,
        ["web", "api", "schema"],
        "each service is put back once"
    );
    // Every apply that reached the fleet changed what runs: none was repeated.
    for (service, s) in &again.fleet.snapshot().envs["e-00"] {
        assert_eq!(s.calls, s.applies, "{service} was applied twice");
    }
    assert_eq!(version(&again, "e-00", "api"), "0.9");
    assert_eq!(version(&again, "e-00", "schema"), "0");
}

#[tokio::test(start_paused = true)]
async fn a_failed_rollback_counts_as_failed_and_a_retry_rolls_back_again() {
    let dir = tempfile::tempdir().unwrap();
    // r0 has the same (broken) schema as r1 on e-02: going back cannot help it.
    let mut fixture = fixture(4).broken_at(&[2]);
    fixture.extra[0].1 = fixture.extra[0]
        .1
        .replace("schema = \"0\"", "schema = \"1\"");
    let mut live = halted_in_rest(fixture, dir.path()).await;
    live.send(rollback(&["e-02"], None));
    let failed = live.until("rollback_failed").await;
    assert!(
        matches!(failed.kind, EventKind::RollbackFailed { ref service, .. } if service == "schema"),
        "{failed:?}"
    );
    live.send(Command::Retry {
        envs: vec!["e-02".into()],
        by: "carol".into(),
    });
    live.until("env_retried").await;
    let again = live.until("rollback_started").await;
    assert!(matches!(again.kind, EventKind::RollbackStarted { ref env, .. } if env == "e-02"));
    live.until("rollback_failed").await;
    let view = RolloutView::fold(&live.seen);
    assert_eq!(
        view.rollbacks["e-02"].state,
        flotilla::engine::fold::RollbackState::Failed
    );
}

#[tokio::test(start_paused = true)]
async fn a_running_environment_stops_after_its_step_in_flight_then_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = Live::start(fixture(2).load(dir.path()));
    live.until("gate_waiting").await;
    live.send(approve("canary"));
    // The canary's first step is in flight.
    live.until("step_started").await;
    live.send(rollback(&["e-00"], None));
    let requested = live.until("rollback_requested").await;
    assert!(matches!(requested.kind, EventKind::RollbackRequested { ref to, .. } if to == "r0"));
    let started = live.until("rollback_started").await;
    let EventKind::RollbackStarted { services, .. } = &started.kind else {
        unreachable!()
    };
    // Only what the run changed before it stopped goes back.
    assert_eq!(services, &["schema"]);
    live.until("env_rolled_back").await;
    assert_eq!(version(&live, "e-00", "schema"), "0");
    let later = live.during(secs(600)).await;
    assert!(
        !later
            .iter()
            .any(|e| e.kind.name() == "step_started" && e.kind.subject().1 == Some("e-00")),
        "a rolled-back environment is never rolled forward again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_asked_for_a_running_environment_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Arc::new(fixture(2).load(dir.path()));
    let mut live = Live::start((*intent).clone());
    live.until("gate_waiting").await;
    live.send(approve("canary"));
    live.until("step_started").await;
    live.send(rollback(&["e-00"], None));
    live.until("rollback_requested").await;
    let view = live.crash();
    let mut again = Live::resume(intent, live.fleet.clone(), Some(&view));
    again.until("env_rolled_back").await;
    assert_eq!(
        RolloutView::fold(&again.seen).rollbacks["e-00"].state,
        flotilla::engine::fold::RollbackState::Done
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_that_fails_at_a_gate_halts_the_rollout_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // r0 crashes on the canary: going back there fails.
    let mut fixture = fixture(3);
    fixture.extra[0]
        .1
        .push_str("[sim]\nbroken = \"ring=canary\"\n");
    let intent = Arc::new(fixture.load(dir.path()));
    let fleet = Arc::new(flotilla::drivers::sim::SimFleet::new(
        intent.driver.sim.clone(),
        intent.release("r0"),
    ));
    let mut live = Live::resume(intent, fleet, None);
    live.until("gate_waiting").await;
    live.send(approve("canary"));
    live.until("wave_completed").await;
    live.until("gate_waiting").await;
    live.send(rollback(&["e-00"], None));
    live.until("rollback_failed").await;
    // The canary's budget is 0: the halt is said while the next gate still waits.
    let halted = live.until("rollout_halted").await;
    assert!(
        matches!(halted.kind, EventKind::RolloutHalted { ref failed_envs, .. } if failed_envs == &["e-00"]),
        "{halted:?}"
    );
    assert_eq!(RolloutView::fold(&live.seen).state.name(), "halted");
}

#[tokio::test(start_paused = true)]
async fn a_step_that_failed_before_a_restart_is_still_rolled_back_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Arc::new(fixture(4).broken_at(&[2]).load(dir.path()));
    let live = halted_in_rest_with(Live::start((*intent).clone())).await;
    let fleet = live.fleet.clone();

    // After the restart e-02's failed schema step is to be tried again, but it was tried:
    // a rollback must still put it back. (Paused, so nothing runs it again first.)
    let mut view = live.crash();
    view.paused = true;
    let mut again = Live::resume(intent, fleet, Some(&view));
    again.until("rollout_paused").await;
    again.send(rollback(&["e-02"], None));
    let started = loop {
        let e = again.events.recv().await.expect("the engine answers");
        if matches!(e.kind.name(), "rollback_started" | "command_rejected") {
            break e;
        }
    };
    assert!(
        matches!(started.kind, EventKind::RollbackStarted { ref services, .. } if services == &["schema"]),
        "{started:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_halted_rollout_reopened_in_the_console_stays_halted_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Arc::new(fixture(6).broken_at(&[2]).load(dir.path()));
    let live = halted_in_rest_with(Live::start((*intent).clone())).await;
    let fleet = live.fleet.clone();
    let view = live.crash();
    let calls = |f: &flotilla::drivers::sim::SimFleet| -> u64 {
        f.snapshot()
            .envs
            .values()
            .flat_map(|s| s.values())
            .map(|s| s.calls)
            .sum()
    };
    let before = calls(&fleet);

    let mut again = Live::resume_with(intent, fleet.clone(), Some(&view), true);
    again.until("rollout_halted").await;
    let quiet = again.during(secs(600)).await;
    assert!(
        !quiet.iter().any(|e| e.kind.name() == "step_started"),
        "nothing is applied while it stays halted"
    );
    assert_eq!(
        calls(&fleet),
        before,
        "the failed environment is not tried again"
    );
    again.send(Command::Resume { by: "alice".into() });
    again.until("rollout_resumed").await;
    again.until("wave_completed").await;
}
