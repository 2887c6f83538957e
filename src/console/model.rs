//! What the console shows, folded from the rollout's events: the journal's view of the
//! rollout plus, per environment, the state its grid cell shows. Plain data, no terminal.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::engine::fold::{RollbackState, StepView};
use crate::engine::{Event, EventKind, RolloutState, RolloutView};
use crate::intent::Intent;
use crate::plan::Plan;

/// The state of one environment as its grid cell shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Blocked,
    Skipped,
    Drifted,
    RolledBack,
    /// Changed out of band: the rollout applies nothing until someone decides.
    Held,
}

impl CellState {
    /// Every state, in the order the legend lists them.
    pub const ALL: [CellState; 9] = [
        CellState::Pending,
        CellState::Running,
        CellState::Succeeded,
        CellState::Failed,
        CellState::Blocked,
        CellState::Skipped,
        CellState::Drifted,
        CellState::RolledBack,
        CellState::Held,
    ];

    /// Position in [`CellState::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            CellState::Pending => "pending",
            CellState::Running => "running",
            CellState::Succeeded => "succeeded",
            CellState::Failed => "failed",
            CellState::Blocked => "blocked",
            CellState::Skipped => "skipped",
            CellState::Drifted => "drifted",
            CellState::RolledBack => "rolled back",
            CellState::Held => "held on drift",
        }
    }
}

/// One environment of the fleet.
#[derive(Debug, Clone)]
pub struct EnvEntry {
    pub name: String,
    /// Index into the plan's waves.
    pub wave: usize,
    pub state: CellState,
    /// The newest failure message of any of its steps.
    pub last_error: Option<String>,
    pub drifted: bool,
    /// Retried and not started again yet.
    pub retry_queued: bool,
}

/// How many events the log keeps; older ones are in the journal (`flotilla audit`).
pub const LOG_CAPACITY: usize = 5_000;

/// The console's picture of one rollout.
pub struct Model {
    pub intent: Arc<Intent>,
    pub plan: Plan,
    pub view: RolloutView,
    /// Every environment, in plan order: grouped by wave.
    pub envs: Vec<EnvEntry>,
    index: HashMap<String, usize>,
    /// Newest last.
    pub log: VecDeque<Event>,
    /// When the rollout started (from its first event), for the elapsed time.
    pub started_at: Option<String>,
    /// When each wave's gate started waiting (RFC 3339), for the soak countdown.
    pub waiting_since: BTreeMap<String, String>,
    /// Set when the engine finished: how it ended.
    pub finished: Option<String>,
    /// The longest environment name, for the grid's cell width.
    pub name_width: usize,
    /// Per wave, how many environments are in each state (by [`CellState::index`]): kept
    /// as cells change, so a frame does not count the whole fleet.
    counts: Vec<[usize; CellState::ALL.len()]>,
    /// The newest drift scan, per environment (three ways: desired, last-applied, live).
    pub drift: HashMap<String, crate::drift::scan::EnvReport>,
    /// When that scan ended, and why the last one failed if it did.
    pub drift_at: Option<std::time::SystemTime>,
    pub drift_error: Option<String>,
    /// A scan is under way; the environments the rollout applied to since it started
    /// (what it saw there is already out of date).
    pub scanning: bool,
    applied_since_scan: std::collections::HashSet<String>,
    /// Environments whose drift nobody accepted, as the scans and the journal tell it.
    drifted: usize,
}

impl Model {
    /// A model of `plan` before anything happened.
    pub fn new(intent: Arc<Intent>, plan: Plan) -> Model {
        let mut envs = Vec::with_capacity(plan.env_count());
        for (w, wave) in plan.waves.iter().enumerate() {
            for name in &wave.envs {
                envs.push(EnvEntry {
                    name: name.clone(),
                    wave: w,
                    state: CellState::Pending,
                    last_error: None,
                    drifted: false,
                    retry_queued: false,
                });
            }
        }
        let index = envs
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let view = RolloutView {
            release: plan.release.clone(),
            commit: plan.revision.commit.clone(),
            state: RolloutState::Planned,
            ..RolloutView::default()
        };
        let name_width = envs
            .iter()
            .map(|e| e.name.chars().count())
            .max()
            .unwrap_or(1);
        let mut counts = vec![[0; CellState::ALL.len()]; plan.waves.len()];
        for e in &envs {
            counts[e.wave][e.state.index()] += 1;
        }
        Model {
            intent,
            view,
            envs,
            index,
            log: VecDeque::new(),
            started_at: None,
            waiting_since: BTreeMap::new(),
            finished: None,
            plan,
            name_width,
            counts,
            drift: HashMap::new(),
            drift_at: None,
            drift_error: None,
            scanning: false,
            applied_since_scan: Default::default(),
            drifted: 0,
        }
    }

    /// A scan starts: what the rollout applies from now on is newer than what it sees.
    pub fn scan_started(&mut self) {
        self.scanning = true;
        self.applied_since_scan.clear();
    }

    /// Environments whose drift nobody accepted (the header's count).
    pub fn drifted(&self) -> usize {
        self.drifted
    }

    /// Sets whether environment `i` drifted, keeping the count.
    fn set_drifted(&mut self, i: usize, drifted: bool) {
        if self.envs[i].drifted != drifted {
            self.envs[i].drifted = drifted;
            if drifted {
                self.drifted += 1;
            } else {
                self.drifted -= 1;
            }
        }
    }

    /// The environment called `name`, by index.
    pub fn env_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Folds one event in.
    pub fn apply(&mut self, event: &Event) {
        let state = self.view.state;
        self.view.apply(event);
        // Whether an environment part-way through is running depends on the rollout's state.
        let state_changed = self.view.state != state;
        match &event.kind {
            EventKind::RolloutStarted { .. } if self.started_at.is_none() => {
                self.started_at = Some(event.ts.to_string());
            }
            EventKind::GateWaiting { wave, .. } => {
                self.waiting_since
                    .insert(wave.to_string(), event.ts.to_string());
            }
            EventKind::WaveStarted { wave, .. } => {
                self.waiting_since.remove(wave.as_str());
            }
            EventKind::StepFailed { env, error, .. }
            | EventKind::StepRetrying { env, error, .. }
            | EventKind::RollbackFailed { env, error, .. } => {
                if let Some(&i) = self.index.get(env.as_str()) {
                    self.envs[i].last_error = Some(error.clone());
                }
            }
            EventKind::EnvRetried { env, .. } => {
                if let Some(&i) = self.index.get(env.as_str()) {
                    self.envs[i].retry_queued = true;
                }
            }
            EventKind::StepStarted { env, .. } | EventKind::RollbackStarted { env, .. } => {
                if let Some(&i) = self.index.get(env.as_str()) {
                    self.envs[i].retry_queued = false;
                    // The rollout applies over what the scan saw: until the next scan,
                    // there is no drift to tell.
                    self.drift.remove(env.as_str());
                    self.set_drifted(i, false);
                    if self.scanning {
                        self.applied_since_scan.insert(env.to_string());
                    }
                }
            }
            EventKind::DriftDetected { env, .. } => {
                if let Some(&i) = self.index.get(env.as_str()) {
                    self.set_drifted(i, true);
                }
            }
            EventKind::DriftCleared { env, service } => {
                if let Some(&i) = self.index.get(env.as_str()) {
                    // Another service may still have drift nobody accepted.
                    let others = self.drift.get(env.as_str()).is_some_and(|r| {
                        r.services
                            .iter()
                            .any(|s| s.service != *service && s.blocking())
                    });
                    self.set_drifted(i, others);
                }
            }
            _ => {}
        }
        if state_changed {
            for i in 0..self.envs.len() {
                self.refresh(i);
            }
        } else if let Some(&i) = event.kind.subject().1.and_then(|env| self.index.get(env)) {
            self.refresh(i);
        }
        self.log.push_back(event.clone());
        if self.log.len() > LOG_CAPACITY {
            self.log.pop_front();
        }
    }

    /// Takes a drift scan in: each environment's three-way report, and whether it drifted
    /// with nobody accepting it (its cell and the header count say so).
    pub fn scanned(&mut self, report: crate::drift::scan::FleetReport, at: std::time::SystemTime) {
        self.scanning = false;
        self.drift_at = Some(at);
        self.drift_error = None;
        let applied = std::mem::take(&mut self.applied_since_scan);
        for env in report.envs {
            let Some(&i) = self.index.get(&env.env) else {
                continue;
            };
            if applied.contains(&env.env) {
                continue;
            }
            // Unobservable says nothing either way: what was known stands.
            if env.error.is_none() {
                self.set_drifted(i, env.blocking());
                self.refresh(i);
            }
            self.drift.insert(env.env.clone(), env);
        }
    }

    /// Recomputes environment `i`'s cell from the journal's view of its steps.
    fn refresh(&mut self, i: usize) {
        let env = self.envs[i].name.as_str();
        let states: Vec<StepView> = self
            .view
            .services
            .iter()
            .map(|s| {
                self.view
                    .steps
                    .get(&(env.to_string(), s.clone()))
                    .map_or(StepView::Pending, |st| st.0)
            })
            .collect();
        // A rollback says more than the steps that went before it.
        let rollback = self.view.rollbacks.get(env).map(|r| r.state);
        let skipped = self.view.skipped.contains_key(env);
        let held = self.view.held.contains_key(env);
        let entry = &mut self.envs[i];
        let before = entry.state;
        entry.state = if let Some(state) = rollback {
            match state {
                RollbackState::InFlight | RollbackState::Requested => CellState::Running,
                RollbackState::Done => CellState::RolledBack,
                RollbackState::Failed => CellState::Failed,
            }
        } else if skipped {
            CellState::Skipped
        } else if held {
            CellState::Held
        } else if states.contains(&StepView::Failed) {
            CellState::Failed
        } else if states.contains(&StepView::Blocked) {
            CellState::Blocked
        } else if states.contains(&StepView::Running)
            // Part-way through (an intent recorded ahead is not a start: only steps that ran
            // count) is running while the rollout runs; under a halt, a pause or after the
            // end it waits, like an environment queued for a retry.
            || (self.view.state == RolloutState::Running
                && !entry.retry_queued
                && states.contains(&StepView::Succeeded)
                && states.iter().any(|s| *s != StepView::Succeeded))
        {
            CellState::Running
        } else if !states.is_empty() && states.iter().all(|s| *s == StepView::Succeeded) {
            if entry.drifted {
                CellState::Drifted
            } else {
                CellState::Succeeded
            }
        } else if entry.drifted {
            CellState::Drifted
        } else {
            CellState::Pending
        };
        let counts = &mut self.counts[entry.wave];
        counts[before.index()] -= 1;
        counts[entry.state.index()] += 1;
    }

    /// Counts of each state among the environments of wave `w`.
    pub fn wave_counts(&self, w: usize) -> BTreeMap<CellState, usize> {
        CellState::ALL
            .iter()
            .map(|&s| (s, self.counts[w][s.index()]))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Environments that failed, fleet-wide.
    pub fn failed(&self) -> usize {
        self.counts
            .iter()
            .map(|c| c[CellState::Failed.index()])
            .sum()
    }

    /// The wave that waits for a freeze over its environments to end, the freeze's name
    /// and its end (RFC 3339), read from the wait the engine announced.
    pub fn frozen(&self) -> Option<(&str, &str, &str)> {
        self.view.waves.iter().find_map(|w| {
            let why = w.waiting.as_deref()?;
            if w.started || !why.starts_with(crate::engine::FREEZE_WAIT) {
                return None;
            }
            let name = why.split('`').nth(1)?;
            let until = why.rsplit(" at ").next()?;
            Some((w.name.as_str(), name, until))
        })
    }

    /// The wave whose gate waits for an approval, if one does.
    pub fn waiting_for_approval(&self) -> Option<&str> {
        self.view
            .waves
            .iter()
            .find(|w| !w.started && w.waiting.as_deref().is_some_and(|r| r.contains("approval")))
            .map(|w| w.name.as_str())
    }

    /// The release a rollback goes back to by default: the one before the rollout's.
    pub fn rollback_target(&self) -> Option<&str> {
        let releases = &self.intent.releases;
        let current = releases.iter().position(|r| r.name == self.plan.release)?;
        Some(releases.get(current.checked_sub(1)?)?.name.as_str())
    }

    /// The services of environment `env` this rollout applied or tried to apply.
    fn changed_services<'a>(
        &'a self,
        env: &'a str,
    ) -> impl Iterator<Item = &'a crate::intent::Service> + 'a {
        self.intent.services.iter().filter(move |s| {
            self.view
                .steps
                .get(&(env.to_string(), s.name.clone()))
                .is_some_and(|st| {
                    matches!(
                        st.0,
                        StepView::Succeeded | StepView::Failed | StepView::Running
                    )
                })
        })
    }

    /// Whether this rollout has applied (or tried to apply) anything in environment `env`.
    pub fn touched(&self, env: &str) -> bool {
        self.changed_services(env).next().is_some()
    }

    /// Failed environments (of wave `w`, or of the whole fleet) that a resume accepted: they
    /// do not use the budgets up.
    pub fn accepted_failed(&self, w: Option<usize>) -> usize {
        self.view
            .accepted
            .iter()
            .filter_map(|e| self.env_index(e))
            .filter(|&i| {
                self.envs[i].state == CellState::Failed && w.is_none_or(|w| self.envs[i].wave == w)
            })
            .count()
    }

    /// Environments of wave `w` this rollout changed only in forward-only services: a
    /// rollback of the wave leaves them as they are.
    pub fn forward_only_changes(&self, w: usize) -> Vec<&str> {
        self.envs
            .iter()
            .filter(|e| e.wave == w && !self.view.rollbacks.contains_key(&e.name))
            .filter(|e| {
                self.touched(&e.name) && self.changed_services(&e.name).all(|s| s.forward_only)
            })
            .map(|e| e.name.as_str())
            .collect()
    }

    /// Whether the engine is still working on the rollout (not finished, not halted for good).
    pub fn active(&self) -> bool {
        self.finished.is_none()
    }
}

impl PartialOrd for CellState {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CellState {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.index().cmp(&other.index())
    }
}
