//! Steering a running rollout with commands, as the console and other terminals do.

mod common;

use common::*;
use flotilla::engine::{Command, EventKind, Outcome};

fn approve(wave: &str, by: &str) -> Command {
    Command::Approve {
        wave: wave.into(),
        by: by.into(),
        note: Some("looks good".into()),
    }
}

#[tokio::test(start_paused = true)]
async fn the_rollout_waits_at_a_gate_until_approved() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = Live::start(Fixture::standard(4, &strategy("", "0")).load(dir.path()));
    live.until("gate_waiting").await;
    assert!(
        live.during(secs(3600)).await.is_empty(),
        "nothing moves without approval"
    );
    live.send(approve("canary", "alice"));
    let e = live.until("gate_approved").await;
    assert!(matches!(e.kind, EventKind::GateApproved { ref by, .. } if by == "alice"));
    live.until("rollout_completed").await;
    assert!(matches!(
        live.engine.await.unwrap(),
        Outcome::Completed { succeeded: 4, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_gate_needing_two_approvers_counts_distinct_people() {
    let dir = tempfile::tempdir().unwrap();
    let s = strategy("", "0").replace(
        "gate = \"approval\"\n",
        "gate = \"approval\"\napprovers = 2\n",
    );
    let mut live = Live::start(Fixture::standard(3, &s).load(dir.path()));
    live.until("gate_waiting").await;
    live.send(approve("canary", "alice"));
    live.send(approve("canary", "alice"));
    let rejected = live.until("command_rejected").await;
    assert!(
        matches!(rejected.kind, EventKind::CommandRejected { ref reason, .. } if reason.contains("distinct"))
    );
    assert!(live
        .during(secs(60))
        .await
        .iter()
        .all(|e| e.kind.name() != "wave_started"));
    live.send(approve("canary", "bob"));
    live.until("wave_started").await;
    live.until("rollout_completed").await;
}

#[tokio::test(start_paused = true)]
async fn pause_starts_nothing_new_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let s = strategy("", "0").replace("max_parallel = 4", "max_parallel = 2");
    let mut live = Live::start(Fixture::standard(12, &s).load(dir.path()));
    live.send(approve("canary", "alice"));
    live.until("wave_started").await;
    live.until("wave_started").await; // the `rest` wave
    live.until("step_succeeded").await;
    live.send(Command::Pause { by: "alice".into() });
    live.until("rollout_paused").await;
    // In-flight steps may finish; nothing new starts, however long we wait.
    let while_paused = live.during(secs(3600)).await;
    let started: Vec<_> = while_paused
        .iter()
        .filter(|e| e.kind.name() == "step_started")
        .collect();
    assert!(started.is_empty(), "started while paused: {started:?}");
    live.send(Command::Resume { by: "alice".into() });
    live.until("rollout_resumed").await;
    live.until("step_started").await;
    live.until("rollout_completed").await;
    assert!(matches!(
        live.engine.await.unwrap(),
        Outcome::Completed {
            succeeded: 12,
            failed: 0,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_halted_rollout_waits_for_a_decision_a_skip_settles_one_and_resume_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Fixture::standard(8, &strategy("", "0"))
        .broken_at(&[3])
        .load(dir.path());
    let mut live = Live::start(intent);
    live.send(approve("canary", "alice"));
    live.until("rollout_halted").await;
    assert!(
        live.during(secs(3600)).await.is_empty(),
        "a halted rollout neither exits nor moves on by itself"
    );
    // A skip without a reason is refused, whoever sends it (the console too).
    live.send(Command::Skip {
        env: "e-03".into(),
        reason: "  ".into(),
        by: "alice".into(),
    });
    let refused = live.until("command_rejected").await;
    assert!(
        matches!(&refused.kind, EventKind::CommandRejected { reason, .. } if reason.contains("needs a reason")),
        "{refused:?}"
    );
    live.send(Command::Skip {
        env: "e-03".into(),
        reason: "customer offboarding".into(),
        by: "alice".into(),
    });
    live.until("env_skipped").await;
    // A skip settles the environment; it does not lift the halt on its own.
    let quiet = live.during(secs(3600)).await;
    assert!(
        !quiet.iter().any(|e| e.kind.name() == "rollout_resumed"),
        "{quiet:?}"
    );
    live.send(Command::Resume { by: "alice".into() });
    let done = live.until("rollout_completed").await;
    assert!(
        matches!(
            done.kind,
            EventKind::RolloutCompleted {
                failed: 0,
                skipped: 1,
                ..
            }
        ),
        "{done:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_failed_runs_the_failed_environment_again() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Fixture::standard(5, &strategy("", "0"))
        .broken_at(&[2])
        .load(dir.path());
    let mut live = Live::start(intent);
    live.send(approve("canary", "alice"));
    live.until("rollout_halted").await;
    live.send(Command::Retry {
        envs: vec![],
        by: "alice".into(),
    });
    // Still broken: it fails again and the rollout halts again.
    let before = live.seen.len();
    live.until("rollout_halted").await;
    let retried: Vec<&str> = live.seen[before..]
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepFailed { env, .. } => Some(env.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(retried, ["e-02"]);
    live.send(Command::Abort { by: "alice".into() });
    live.until("rollout_aborted").await;
    assert_eq!(
        live.engine.await.unwrap(),
        Outcome::Aborted { by: "alice".into() }
    );
}

#[tokio::test(start_paused = true)]
async fn resuming_a_halt_accepts_the_failures_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Fixture::standard(6, &strategy("", "0"))
        .broken_at(&[1])
        .load(dir.path());
    let mut live = Live::start(intent);
    live.send(approve("canary", "alice"));
    live.until("rollout_halted").await;
    live.send(Command::Resume { by: "alice".into() });
    live.until("rollout_resumed").await;
    let done = live.until("rollout_completed").await;
    assert!(
        matches!(
            done.kind,
            EventKind::RolloutCompleted {
                succeeded: 5,
                failed: 1,
                ..
            }
        ),
        "{done:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn bad_commands_are_rejected_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = Live::start(Fixture::standard(3, &strategy("", "0")).load(dir.path()));
    live.until("gate_waiting").await;
    live.send(approve("canari", "alice"));
    let e = live.until("command_rejected").await;
    assert!(
        matches!(e.kind, EventKind::CommandRejected { ref reason, .. } if reason.contains("no wave `canari`")),
        "{e:?}"
    );
    live.send(Command::Skip {
        env: "nope".into(),
        reason: "x".into(),
        by: "alice".into(),
    });
    let e = live.until("command_rejected").await;
    assert!(
        matches!(e.kind, EventKind::CommandRejected { ref reason, .. } if reason.contains("no environment")),
        "{e:?}"
    );
    live.send(Command::Abort { by: "alice".into() });
    assert_eq!(
        live.engine.await.unwrap(),
        Outcome::Aborted { by: "alice".into() }
    );
}

#[tokio::test(start_paused = true)]
async fn a_retried_failure_counts_again_after_a_resume_accepted_it() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Fixture::standard(6, &strategy("", "0"))
        .broken_at(&[2])
        .load(dir.path());
    let mut live = Live::start(intent);
    live.send(approve("canary", "alice"));
    live.until("rollout_halted").await;
    live.send(Command::Resume { by: "alice".into() });
    live.until("rollout_resumed").await;
    live.send(Command::Retry {
        envs: vec!["e-02".into()],
        by: "bob".into(),
    });
    let e = live.until("env_retried").await;
    assert!(matches!(e.kind, EventKind::EnvRetried { ref by, .. } if by == "bob"));
    // It fails again: the budget of 0 halts the rollout again instead of waving it through.
    live.until("rollout_halted").await;
    live.send(Command::Abort { by: "alice".into() });
    assert_eq!(
        live.engine.await.unwrap(),
        Outcome::Aborted { by: "alice".into() }
    );
}

#[tokio::test(start_paused = true)]
async fn a_paused_rollout_whose_commander_went_away_ends_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = Live::start(Fixture::standard(8, &strategy("", "0")).load(dir.path()));
    live.send(approve("canary", "alice"));
    live.until("wave_started").await;
    live.until("wave_started").await;
    live.until("step_succeeded").await;
    live.send(Command::Pause { by: "alice".into() });
    live.until("rollout_paused").await;
    let Live {
        commands, engine, ..
    } = live;
    drop(commands);
    let outcome = tokio::time::timeout(secs(3600), engine).await;
    assert_eq!(
        outcome.expect("the engine ended").unwrap(),
        Outcome::Interrupted
    );
}

#[tokio::test(start_paused = true)]
async fn an_abort_asked_for_before_a_crash_still_ends_the_rollout_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let intent = std::sync::Arc::new(Fixture::standard(8, &strategy("", "0")).load(dir.path()));
    let mut live = Live::start((*intent).clone());
    live.send(approve("canary", "alice"));
    live.until("wave_started").await;
    live.until("step_started").await;
    live.send(Command::Abort { by: "bob".into() });
    live.until("abort_requested").await;
    // The process dies while the steps in flight finish, before `rollout_aborted`.
    let view = live.crash();
    assert_eq!(view.abort_requested.as_deref(), Some("bob"));

    let mut again = Live::resume(intent, live.fleet.clone(), Some(&view));
    let end = again.until("rollout_aborted").await;
    assert!(matches!(end.kind, EventKind::RolloutAborted { ref by } if by == "bob"));
    assert!(
        !again.seen.iter().any(|e| e.kind.name() == "env_started"),
        "nothing new starts after an abort: {:?}",
        again.seen.iter().map(|e| e.kind.name()).collect::<Vec<_>>()
    );
    assert!(matches!(
        again.engine.await.unwrap(),
        Outcome::Aborted { .. }
    ));
}
