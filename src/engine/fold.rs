//! The state of a rollout as a fold over its events: what `status` prints, what a resumed
//! engine starts from, and (later) what the console shows.

use std::collections::BTreeMap;

use serde::Serialize;

use super::events::{Event, EventKind};

/// Where one step stands, as far as the journal knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepView {
    Pending,
    /// Its intent to apply is recorded but it has not started: after a crash only
    /// observing can tell whether it was applied.
    Intended,
    /// Started and not finished: in flight, or interrupted by a crash.
    Running,
    Succeeded,
    Failed,
    Blocked,
}

/// Where a rollback of one environment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackState {
    /// Asked for while the environment ran: it starts once the run has stopped (a resumed
    /// engine starts it at once).
    Requested,
    /// Recorded and not finished: in flight, or interrupted by a crash (a resumed engine
    /// runs it again; applies are idempotent by revision).
    InFlight,
    Done,
    Failed,
}

/// A rollback of one environment as the journal tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackView {
    /// The release it goes back to.
    pub to: String,
    pub by: String,
    pub state: RollbackState,
    /// The services it puts back, in order (empty while only requested).
    pub services: Vec<String>,
    /// The services already back (`step_rolled_back`): a resumed or retried rollback does
    /// not put them back again.
    pub done: Vec<String>,
}

/// A decision that released an environment held on drift (or one not reached yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleasedView {
    /// adopt, revert or accept.
    pub how: String,
    pub by: String,
    /// An adopt's commit: the rollout takes the environment's emergency layer from it.
    pub commit: Option<String>,
}

/// One wave as the journal tells it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WaveView {
    pub name: String,
    pub started: bool,
    pub completed: bool,
    /// When it completed (RFC 3339), so a resumed rollout still soaks after it.
    pub completed_at: Option<String>,
    /// What the gate waits for, while it waits.
    pub waiting: Option<String>,
    pub approvals: Vec<String>,
    pub envs: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub rolled_back: usize,
}

/// Where a rollout stands, as its journal tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Nothing journaled yet: the plan the console shows before the rollout starts.
    #[default]
    Planned,
    Running,
    /// At a gate, for an approval or a soak.
    Waiting,
    Paused,
    Halted,
    /// Environments changed out of band and nothing else can run until someone decides.
    Held,
    Completed,
    Aborted,
    /// The engine stopped (a quit or a signal) before the end; a resume carries on.
    Interrupted,
}

impl RolloutState {
    /// The word for it in output, JSON and the store.
    pub fn name(self) -> &'static str {
        match self {
            RolloutState::Planned => "planned",
            RolloutState::Running => "running",
            RolloutState::Waiting => "waiting",
            RolloutState::Paused => "paused",
            RolloutState::Halted => "halted",
            RolloutState::Held => "held",
            RolloutState::Completed => "completed",
            RolloutState::Aborted => "aborted",
            RolloutState::Interrupted => "interrupted",
        }
    }

    /// Whether the rollout is over for good: nothing resumes it.
    pub fn is_final(self) -> bool {
        matches!(self, RolloutState::Completed | RolloutState::Aborted)
    }
}

impl std::fmt::Display for RolloutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The whole rollout as the journal tells it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RolloutView {
    pub release: String,
    pub commit: String,
    pub state: RolloutState,
    pub halt_reason: Option<String>,
    /// Paused by someone and not resumed since, whatever happened after (a gate announced,
    /// the engine interrupted): a restart keeps the pause.
    pub paused: bool,
    pub waves: Vec<WaveView>,
    pub services: Vec<String>,
    /// Per (env, service): state, revision of the last attempt, attempts.
    #[serde(skip)]
    pub steps: BTreeMap<(String, String), (StepView, String, u32)>,
    /// The wave of every environment seen.
    #[serde(skip)]
    pub env_wave: BTreeMap<String, String>,
    pub skipped: BTreeMap<String, String>,
    /// Rollbacks by environment, the latest of each.
    pub rollbacks: BTreeMap<String, RollbackView>,
    /// Failed environments a resume accepted: they do not count against the budgets while
    /// they stay failed.
    pub accepted: std::collections::BTreeSet<String>,
    pub last_event: Option<String>,
    pub events: usize,
    /// The newest queued command the journal records as received.
    pub last_command: i64,
    /// Who asked for an abort that has not ended the rollout yet: a restart ends it.
    pub abort_requested: Option<String>,
    /// Environments held because they changed out of band, with the services that did:
    /// nothing is applied to them until someone decides.
    pub held: BTreeMap<String, Vec<String>>,
    /// Environments a decision released, by environment.
    pub released: BTreeMap<String, ReleasedView>,
}

impl RolloutView {
    /// Folds `events` (oldest first) into a view.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> RolloutView {
        let mut v = RolloutView::default();
        for e in events {
            v.apply(e);
        }
        v
    }

    fn wave(&mut self, name: &str) -> &mut WaveView {
        if let Some(i) = self.waves.iter().position(|w| w.name == name) {
            return &mut self.waves[i];
        }
        self.waves.push(WaveView {
            name: name.to_string(),
            ..WaveView::default()
        });
        self.waves.last_mut().expect("just pushed")
    }

    fn step(&mut self, env: &str, service: &str) -> &mut (StepView, String, u32) {
        self.steps
            .entry((env.to_string(), service.to_string()))
            .or_insert((StepView::Pending, String::new(), 0))
    }

    /// Records where the rollback of `env` stands (the latest rollback of it wins).
    fn rollback(
        &mut self,
        wave: &str,
        env: &str,
        to: &str,
        by: &str,
        state: RollbackState,
        services: &[String],
    ) {
        self.env_wave.insert(env.to_string(), wave.to_string());
        self.accepted.remove(env);
        // The same rollback run again (resumed, retried) keeps what it already put back.
        let done = self
            .rollbacks
            .get(env)
            .filter(|r| r.to == to)
            .map(|r| r.done.clone())
            .unwrap_or_default();
        self.rollbacks.insert(
            env.to_string(),
            RollbackView {
                to: to.to_string(),
                by: by.to_string(),
                state,
                services: services.to_vec(),
                done,
            },
        );
    }

    /// Folds one event in.
    pub fn apply(&mut self, e: &Event) {
        self.events += 1;
        self.last_event = Some(e.ts.to_string());
        match &e.kind {
            EventKind::RolloutStarted {
                release,
                commit,
                wave_names,
                services,
                ..
            } => {
                self.release = release.clone();
                self.commit = commit.clone();
                self.services = services.clone();
                self.state = RolloutState::Running;
                self.halt_reason = None;
                for w in wave_names {
                    self.wave(w);
                }
            }
            EventKind::WaveStarted { wave, envs, .. } => {
                let w = self.wave(wave);
                w.started = true;
                w.waiting = None;
                w.envs = *envs;
                // A paused engine still opens the next wave; it starts nothing in it.
                if self.state != RolloutState::Paused {
                    self.state = RolloutState::Running;
                }
            }
            EventKind::GateWaiting { wave, reason } => {
                self.wave(wave).waiting = Some(reason.clone());
                // A paused rollout still announces its next gate; it stays paused.
                if self.state != RolloutState::Paused {
                    self.state = RolloutState::Waiting;
                }
            }
            EventKind::GateApproved { wave, by, .. } => {
                let w = self.wave(wave);
                if !w.approvals.contains(by) {
                    w.approvals.push(by.clone());
                }
            }
            EventKind::EnvStarted {
                wave,
                env,
                revisions,
            } => {
                self.env_wave.insert(env.to_string(), wave.to_string());
                for (service, revision) in revisions {
                    let step = self.step(env, service);
                    if step.0 != StepView::Succeeded {
                        *step = (StepView::Intended, revision.clone(), step.2);
                    }
                }
            }
            EventKind::StepStarted {
                wave,
                env,
                service,
                attempt,
                revision,
                ..
            } => {
                self.env_wave.insert(env.to_string(), wave.to_string());
                self.held.remove(env.as_str());
                *self.step(env, service) = (StepView::Running, revision.to_string(), *attempt);
            }
            EventKind::StepSucceeded { env, service, .. }
            | EventKind::StepRecovered { env, service, .. } => {
                self.step(env, service).0 = StepView::Succeeded;
            }
            EventKind::StepFailed { env, service, .. } => {
                self.step(env, service).0 = StepView::Failed;
            }
            EventKind::StepBlocked {
                wave, env, service, ..
            } => {
                self.env_wave.insert(env.to_string(), wave.to_string());
                self.step(env, service).0 = StepView::Blocked;
            }
            EventKind::EnvRetried { env, .. } => {
                self.accepted.remove(env.as_str());
                for ((e, _), s) in self.steps.iter_mut() {
                    if e == env && matches!(s.0, StepView::Failed | StepView::Blocked) {
                        s.0 = StepView::Pending;
                    }
                }
            }
            EventKind::EnvSkipped {
                wave, env, reason, ..
            } => {
                self.env_wave.insert(env.to_string(), wave.to_string());
                self.skipped.insert(env.to_string(), reason.clone());
                self.accepted.remove(env.as_str());
                self.held.remove(env.as_str());
                // Skipping settles a failed rollback too.
                self.rollbacks.remove(env.as_str());
            }
            EventKind::WaveCompleted {
                wave,
                succeeded,
                failed,
                skipped,
                rolled_back,
            } => {
                let w = self.wave(wave);
                w.completed = true;
                w.completed_at = Some(e.ts.to_string());
                w.succeeded = *succeeded;
                w.failed = *failed;
                w.skipped = *skipped;
                w.rolled_back = *rolled_back;
            }
            EventKind::RollbackRequested { wave, env, to, by } => {
                self.rollback(wave, env, to, by, RollbackState::Requested, &[]);
            }
            EventKind::RollbackStarted {
                wave,
                env,
                to,
                by,
                services,
                ..
            } => self.rollback(wave, env, to, by, RollbackState::InFlight, services),
            EventKind::EnvRolledBack { env, .. } => {
                if let Some(r) = self.rollbacks.get_mut(env.as_str()) {
                    r.state = RollbackState::Done;
                }
            }
            EventKind::RollbackFailed { env, .. } => {
                if let Some(r) = self.rollbacks.get_mut(env.as_str()) {
                    r.state = RollbackState::Failed;
                }
            }
            EventKind::CommandReceived { id, .. } => self.last_command = self.last_command.max(*id),
            EventKind::RolloutPaused { .. } => {
                self.state = RolloutState::Paused;
                self.paused = true;
            }
            EventKind::RolloutResumed { accepted, .. } => {
                self.accepted.extend(accepted.iter().cloned());
                self.state = RolloutState::Running;
                self.halt_reason = None;
                self.paused = false;
            }
            EventKind::RolloutHalted { reason, .. } => {
                self.state = RolloutState::Halted;
                self.halt_reason = Some(reason.clone());
            }
            EventKind::RolloutAborted { .. } => self.state = RolloutState::Aborted,
            EventKind::AbortRequested { by } => self.abort_requested = Some(by.clone()),
            EventKind::RolloutInterrupted { .. } => self.state = RolloutState::Interrupted,
            EventKind::RolloutCompleted { .. } => self.state = RolloutState::Completed,
            // Waiting out a backoff is not running: a stop abandons the wait without a word.
            EventKind::StepRetrying { env, service, .. } => {
                self.step(env, service).0 = StepView::Intended;
            }
            EventKind::StepRolledBack { env, service, .. } => {
                if let Some(r) = self.rollbacks.get_mut(env.as_str()) {
                    if !r.done.iter().any(|d| d == service) {
                        r.done.push(service.to_string());
                    }
                }
            }
            EventKind::EnvHeld {
                wave,
                env,
                services,
            } => {
                self.env_wave.insert(env.to_string(), wave.to_string());
                self.held.insert(env.to_string(), services.clone());
                // Held before anything was applied: its recorded intents never started.
                let of_env = self
                    .steps
                    .range_mut((env.to_string(), String::new())..)
                    .take_while(|((e, _), _)| e == env);
                for (_, step) in of_env {
                    if step.0 == StepView::Intended {
                        step.0 = StepView::Pending;
                    }
                }
            }
            EventKind::EnvReleased {
                env,
                how,
                by,
                commit,
                ..
            } => {
                self.held.remove(env.as_str());
                // A rollout waiting on its held environments runs again once one is released.
                if self.state == RolloutState::Held {
                    self.state = RolloutState::Running;
                }
                self.released.insert(
                    env.to_string(),
                    ReleasedView {
                        how: how.clone(),
                        by: by.clone(),
                        commit: commit.clone(),
                    },
                );
            }
            EventKind::RolloutHeld { .. } => self.state = RolloutState::Held,
            // The wait for the check is over either way; a failure halts next.
            EventKind::CheckPassed { wave, .. } | EventKind::CheckFailed { wave, .. } => {
                self.wave(wave).waiting = None
            }
            EventKind::CommandRejected { .. }
            | EventKind::CheckRetrying { .. }
            | EventKind::NotificationFailed { .. }
            | EventKind::CheckOverridden { .. }
            | EventKind::DriftDetected { .. }
            | EventKind::DriftCleared { .. }
            | EventKind::DriftAccepted { .. }
            | EventKind::LeaseTakenOver { .. } => {}
        }
    }

    /// Environments that failed and were not retried, skipped or rolled back since.
    pub fn failed_envs(&self) -> std::collections::BTreeSet<String> {
        let mut failed: std::collections::BTreeSet<String> = self
            .steps
            .iter()
            .filter(|(_, (s, _, _))| matches!(s, StepView::Failed | StepView::Blocked))
            .map(|((env, _), _)| env.clone())
            .collect();
        failed.retain(|env| !self.skipped.contains_key(env) && !self.rollbacks.contains_key(env));
        failed.extend(
            self.rollbacks
                .iter()
                .filter(|(_, r)| r.state == RollbackState::Failed)
                .map(|(env, _)| env.clone()),
        );
        failed
    }

    /// Where each step of environment `env` stands (the steps are keyed by env first).
    fn env_steps<'a>(&'a self, env: &'a str) -> impl Iterator<Item = StepView> + 'a {
        self.steps
            .range((env.to_string(), String::new())..)
            .take_while(move |((e, _), _)| e == env)
            .map(|(_, (s, _, _))| *s)
    }

    /// How environment `env` ended, if it did: succeeded (every service), skipped or
    /// rolled back.
    pub fn env_outcome(&self, env: &str) -> Option<&'static str> {
        if self.skipped.contains_key(env) {
            return Some("skipped");
        }
        if self.rollbacks.get(env).map(|r| r.state) == Some(RollbackState::Done) {
            return Some("rolled back");
        }
        let states: Vec<StepView> = self.env_steps(env).collect();
        let all = !self.services.is_empty() && states.len() == self.services.len();
        (all && states.iter().all(|s| *s == StepView::Succeeded)).then_some("succeeded")
    }

    /// Whether this rollout started (or finished) any step in environment `env`.
    pub fn touched(&self, env: &str) -> bool {
        self.env_steps(env).any(|s| {
            matches!(
                s,
                StepView::Running | StepView::Succeeded | StepView::Failed
            )
        })
    }

    /// Environments of `wave` rolled back so far (also after the wave completed).
    pub fn wave_rolled_back(&self, wave: &str) -> usize {
        self.rollbacks
            .iter()
            .filter(|(env, r)| {
                r.state == RollbackState::Done
                    && self.env_wave.get(*env).map(String::as_str) == Some(wave)
            })
            .count()
    }

    /// Live counts for a wave that has not completed: (succeeded, failed, running) envs;
    /// rolled-back environments are none of these.
    pub fn wave_progress(&self, wave: &str) -> (usize, usize, usize) {
        let mut per_env: BTreeMap<&str, Vec<StepView>> = BTreeMap::new();
        for ((env, _), (state, _, _)) in &self.steps {
            if self.env_wave.get(env).map(String::as_str) == Some(wave) {
                per_env.entry(env).or_default().push(*state);
            }
        }
        let services = self.services.len().max(1);
        let (mut ok, mut failed, mut running) = (0, 0, 0);
        for (env, states) in &per_env {
            // A skip settles an environment, whatever its steps said.
            if self.skipped.contains_key(*env) {
                continue;
            }
            // A rollback says more than the steps that went before it.
            match self.rollbacks.get(*env).map(|r| r.state) {
                Some(RollbackState::Done) => continue,
                Some(RollbackState::Failed) => {
                    failed += 1;
                    continue;
                }
                Some(RollbackState::InFlight | RollbackState::Requested) => {
                    running += 1;
                    continue;
                }
                None => {}
            }
            if states
                .iter()
                .any(|s| matches!(s, StepView::Failed | StepView::Blocked))
            {
                failed += 1;
            } else if states.len() == services && states.iter().all(|s| *s == StepView::Succeeded) {
                ok += 1;
            } else if states.contains(&StepView::Running) {
                running += 1;
            }
        }
        (ok, failed, running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind) -> Event {
        Event {
            ts: "2026-11-02T00:00:00.000Z".into(),
            kind,
        }
    }

    #[test]
    fn folding_tracks_steps_gates_and_state() {
        let events = vec![
            ev(EventKind::RolloutStarted {
                release: "r".into(),
                commit: "c".into(),
                waves: 2,
                envs: 2,
                wave_names: vec!["canary".into(), "rest".into()],
                services: vec!["api".into()],
                resumed: false,
            }),
            ev(EventKind::GateWaiting {
                wave: "canary".into(),
                reason: "approval".into(),
            }),
            ev(EventKind::GateApproved {
                wave: "canary".into(),
                by: "alice".into(),
                note: None,
                approvals: 1,
                needed: 1,
            }),
            ev(EventKind::WaveStarted {
                wave: "canary".into(),
                envs: 1,
                allowed_failures: 0,
            }),
            ev(EventKind::StepStarted {
                wave: "canary".into(),
                env: "a".into(),
                service: "api".into(),
                attempt: 1,
                version: "1".into(),
                revision: "rev1".into(),
            }),
        ];
        let v = RolloutView::fold(&events);
        assert_eq!(v.state, RolloutState::Running);
        assert_eq!(v.waves.len(), 2);
        assert_eq!(v.waves[0].approvals, ["alice"]);
        assert_eq!(
            v.steps[&("a".to_string(), "api".to_string())],
            (StepView::Running, "rev1".to_string(), 1)
        );
        assert_eq!(v.wave_progress("canary"), (0, 0, 1));
    }

    #[test]
    fn a_paused_rollout_stays_paused_when_its_next_gate_is_announced() {
        let events = vec![
            ev(EventKind::RolloutPaused { by: "bob".into() }),
            ev(EventKind::GateWaiting {
                wave: "rest".into(),
                reason: "approval".into(),
            }),
            ev(EventKind::WaveStarted {
                wave: "rest".into(),
                envs: 1,
                allowed_failures: 0,
            }),
        ];
        assert_eq!(RolloutView::fold(&events).state, RolloutState::Paused);
    }

    #[test]
    fn a_pause_outlives_an_interrupt_but_not_a_resume() {
        let mut events = vec![
            ev(EventKind::RolloutPaused { by: "bob".into() }),
            ev(EventKind::RolloutInterrupted {
                in_flight_finished: 0,
            }),
        ];
        let view = RolloutView::fold(&events);
        assert_eq!(view.state, RolloutState::Interrupted);
        assert!(view.paused, "a restart must keep the pause");
        events.push(ev(EventKind::RolloutResumed {
            by: "bob".into(),
            accepted: Vec::new(),
        }));
        assert!(!RolloutView::fold(&events).paused);
    }
}
