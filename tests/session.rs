//! The rollout session as the CLI and the console use it: open, start, steer through the
//! command sender, read the event receiver, finish.

mod common;

use common::{strategy, Fixture};
use flotilla::engine::{Command, EventKind, OnHold, Outcome};
use flotilla::session::{RolloutSession, Setup};
use flotilla::store::Store;

fn setup<'a>(repo: &'a std::path::Path, state: &std::path::Path, on_hold: OnHold) -> Setup<'a> {
    Setup {
        repo,
        state: state.to_path_buf(),
        intent: flotilla::intent::load(repo, "HEAD").unwrap().intent,
        release: "r1".into(),
        approve: Vec::new(),
        approve_all: false,
        on_hold,
        keep_failures: false,
        replay: true,
        signals: false,
        only: None,
        overrides: Vec::new(),
        downgrades: flotilla::engine::preflight::Downgrades::Refuse,
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_is_steered_by_its_command_sender_and_records_how_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = (dir.path().join("repo"), dir.path().join("state.db"));
    Fixture::standard(4, &strategy("", "1")).load(&repo);

    // Headless without --approve: the canary gate ends the run, and the rollout stays
    // unfinished for the next session.
    let session = RolloutSession::open(setup(&repo, &state, OnHold::Exit))
        .await
        .unwrap();
    let (running, _events) = session.start().unwrap();
    let outcome = running.finish(None).await.unwrap();
    assert!(matches!(outcome, Outcome::Blocked { ref wave, .. } if wave == "canary"));
    let first = Store::open_existing(&state)
        .unwrap()
        .unfinished_rollout()
        .unwrap()
        .expect("the blocked rollout is unfinished");
    assert_eq!(first.status, "blocked");

    // The next session resumes that rollout: it is handed the events so far, and the
    // approval sent through its command sender lets it finish.
    let session = RolloutSession::open(setup(&repo, &state, OnHold::Wait))
        .await
        .unwrap();
    let (running, mut events) = session.start().unwrap();
    assert!(events
        .past
        .iter()
        .any(|e| matches!(&e.kind, EventKind::GateWaiting { wave, .. } if wave == "canary")));
    running
        .commands
        .send(Command::Approve {
            wave: "canary".into(),
            by: "alice@bastion".into(),
            note: None,
        })
        .unwrap();
    let outcome = running.finish(None).await.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::Completed {
                succeeded: 4,
                failed: 0,
                ..
            }
        ),
        "{outcome:?}"
    );
    let mut kinds = Vec::new();
    while let Ok(batch) = events.receiver.try_recv() {
        kinds.extend(batch.into_iter().map(|e| e.kind.name()));
    }
    assert!(kinds.contains(&"gate_approved"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"rollout_completed"));

    let store = Store::open_existing(&state).unwrap();
    let last = store.latest_rollout().unwrap().unwrap();
    assert_eq!((last.id, last.status.as_str()), (first.id, "completed"));
    assert!(last.ended.is_some());
    // The lease was given back: nothing holds the fleet now.
    assert_eq!(store.lease_holder().unwrap(), None);
}
