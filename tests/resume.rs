//! Resuming from a journal fold: what was done is not redone, what was in flight is observed.

mod common;

use std::sync::Arc;

use common::*;
use flotilla::drivers::sim::SimFleet;
use flotilla::drivers::{ApplyRequest, Driver};
use flotilla::engine::{Engine, Event, EventKind, OnHold, Outcome, RolloutView, TokioClock};
use flotilla::intent::layers;
use flotilla::plan;
use tokio::sync::mpsc;

#[tokio::test(start_paused = true)]
async fn an_apply_in_flight_at_a_crash_is_observed_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let intent = Arc::new(Fixture::standard(3, &strategy("", "0")).load(dir.path()));
    let fleet = Arc::new(SimFleet::new(
        intent.driver.sim.clone(),
        intent.release("r1"),
    ));
    let release = intent.release("r1").unwrap();
    let e1 = intent.environment("e-01").unwrap();
    let desired = layers::render(&intent, release, e1).desired;
    // Before the "crash": the canary finished, e-01's schema was applied but its success was
    // never journaled.
    let schema = &desired.services["schema"];
    fleet
        .apply(
            e1,
            &ApplyRequest {
                service: "schema".into(),
                version: schema.version.clone(),
                config: schema.config.clone(),
                revision: schema.revision.clone(),
                secrets: Vec::new(),
            },
        )
        .await
        .unwrap();
    let mut journal = canary_done(&intent, &fleet, "2026-11-02T09:00:00.000Z").await;
    let ev = |kind| Event {
        ts: "2026-11-02T09:00:00.000Z".into(),
        kind,
    };
    journal.push(ev(EventKind::WaveStarted {
        wave: "rest".into(),
        envs: 2,
        allowed_failures: 0,
    }));
    journal.push(ev(EventKind::EnvStarted {
        wave: "rest".into(),
        env: "e-01".into(),
        revisions: desired
            .services
            .iter()
            .map(|(s, d)| (s.clone(), d.revision.clone()))
            .collect(),
    }));
    journal.push(ev(EventKind::StepStarted {
        wave: "rest".into(),
        env: "e-01".into(),
        service: "schema".into(),
        attempt: 1,
        version: schema.version.as_str().into(),
        revision: schema.revision.as_str().into(),
    }));
    let view = RolloutView::fold(&journal);

    let (outcome, kinds) = resume(&intent, &fleet, &view, epoch()).await;
    assert_eq!(
        outcome,
        Outcome::Completed {
            succeeded: 3,
            failed: 0,
            skipped: 0,
            rolled_back: 0
        }
    );
    let recovered: Vec<(String, String)> = kinds
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepRecovered { env, service, .. } => {
                Some((env.to_string(), service.to_string()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(recovered, [("e-01".to_string(), "schema".to_string())]);
    // The canary's wave was not run again and nobody was asked to approve it again.
    assert!(!kinds
        .iter()
        .any(|e| matches!(&e.kind, EventKind::GateWaiting { .. })));
    assert!(!kinds
        .iter()
        .any(|e| matches!(&e.kind, EventKind::StepStarted { env, .. } if env == "e-00")));
    // Nothing was applied twice.
    let snapshot = fleet.snapshot();
    assert!(snapshot
        .envs
        .values()
        .flat_map(|s| s.values())
        .all(|s| s.applies == 1));
    assert_eq!(snapshot.envs.len(), 3);
}

/// The journal of a rollout whose canary wave (e-00) completed at `ts`, with the fleet
/// already running what the canary applied.
async fn canary_done(intent: &flotilla::intent::Intent, fleet: &SimFleet, ts: &str) -> Vec<Event> {
    let release = intent.release("r1").unwrap();
    let ev = |kind| Event {
        ts: ts.to_string().into(),
        kind,
    };
    let mut journal = vec![ev(EventKind::RolloutStarted {
        release: "r1".into(),
        commit: intent.revision.commit.clone(),
        waves: 2,
        envs: 3,
        wave_names: vec!["canary".into(), "rest".into()],
        services: vec!["schema".into(), "api".into(), "web".into()],
        resumed: false,
    })];
    journal.push(ev(EventKind::GateApproved {
        wave: "canary".into(),
        by: "alice".into(),
        note: None,
        approvals: 1,
        needed: 1,
    }));
    journal.push(ev(EventKind::WaveStarted {
        wave: "canary".into(),
        envs: 1,
        allowed_failures: 0,
    }));
    let e0 = intent.environment("e-00").unwrap();
    let d0 = layers::render(intent, release, e0).desired;
    for (service, d) in &d0.services {
        fleet
            .apply(
                e0,
                &ApplyRequest {
                    service: service.clone(),
                    version: d.version.clone(),
                    config: d.config.clone(),
                    revision: d.revision.clone(),
                    secrets: Vec::new(),
                },
            )
            .await
            .unwrap();
        journal.push(ev(EventKind::StepSucceeded {
            wave: "canary".into(),
            env: "e-00".into(),
            service: service.as_str().into(),
            attempts: 1,
            version: d.version.as_str().into(),
            revision: d.revision.as_str().into(),
            output: None,
        }));
    }
    journal.push(ev(EventKind::WaveCompleted {
        wave: "canary".into(),
        succeeded: 1,
        failed: 0,
        skipped: 0,
        rolled_back: 0,
    }));
    journal
}

#[tokio::test(start_paused = true)]
async fn a_resumed_rollout_still_soaks_after_the_last_completed_wave() {
    let dir = tempfile::tempdir().unwrap();
    let s = strategy("", "0").replace("name = \"rest\"\n", "name = \"rest\"\nsoak = \"10m\"\n");
    let intent = Arc::new(Fixture::standard(3, &s).load(dir.path()));
    let fleet = Arc::new(SimFleet::new(
        intent.driver.sim.clone(),
        intent.release("r1"),
    ));
    // The canary completed at 09:00; the engine restarts at 09:02.
    let journal = canary_done(&intent, &fleet, "2026-11-02T09:00:00.000Z").await;
    let view = RolloutView::fold(&journal);
    let restart = epoch() + std::time::Duration::from_secs(120);
    let (outcome, events) = resume(&intent, &fleet, &view, restart).await;
    assert!(
        matches!(outcome, Outcome::Completed { failed: 0, .. }),
        "{outcome:?}"
    );
    let mut started = None;
    for e in events {
        if matches!(&e.kind, EventKind::WaveStarted { wave, .. } if wave == "rest") {
            started = Some(humantime::parse_rfc3339(&e.ts).unwrap());
        }
    }
    let after_canary = started
        .expect("the rest wave started")
        .duration_since(epoch())
        .unwrap();
    assert!(
        after_canary >= std::time::Duration::from_secs(600) && after_canary < std::time::Duration::from_secs(660),
        "the rest wave started {after_canary:?} after the canary: it should soak 10 minutes from the canary, not from the restart"
    );
}

/// Resumes the rollout `view` describes on `fleet`, with the clock at `now`; returns how it
/// ended and every event it emitted.
async fn resume(
    intent: &Arc<flotilla::intent::Intent>,
    fleet: &Arc<SimFleet>,
    view: &RolloutView,
    now: std::time::SystemTime,
) -> (Outcome, Vec<Event>) {
    let plan = plan::build(intent, "r1", epoch()).unwrap();
    let (etx, mut erx) = mpsc::unbounded_channel();
    let (_ctx, crx) = mpsc::unbounded_channel();
    let driver: Arc<dyn Driver> = fleet.clone();
    let outcome = Engine::new(
        intent.clone(),
        plan,
        driver,
        Arc::new(TokioClock::starting_at(now)),
        etx,
        crx,
        OnHold::Exit,
    )
    .resume(view)
    .run()
    .await;
    let mut events = Vec::new();
    while let Ok(e) = erx.try_recv() {
        events.push(e);
    }
    (outcome, events)
}
