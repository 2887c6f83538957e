//! The engine: the one place that changes anything. It runs a plan wave by wave against a
//! driver, takes commands, and reports everything as events.

pub mod clock;
mod env_map;
pub mod events;
pub mod fold;
pub mod preflight;
pub mod sink;
pub mod step;
pub mod text;
pub mod verify;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use clock::{Clock, TokioClock};
use env_map::{EnvMap, StepSet};
pub use events::{Command, Decision, Event, EventKind, Text};
pub use fold::{RolloutState, RolloutView};
pub use sink::{EventSink, SinkFuture};
use step::{EnvEnd, RunState, StepContext, StepState};

use crate::drift::scan::Known;
use crate::drivers::Driver;
use crate::intent::{Emergency, Gate, Intent};
use crate::plan::Plan;

/// What the engine does when it reaches a gate nobody approved, or a halt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnHold {
    /// Wait for a command (the console, `rollout --wait`).
    Wait,
    /// End the run and say why (headless rollouts in scripts).
    Exit,
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed {
        succeeded: usize,
        failed: usize,
        skipped: usize,
        rolled_back: usize,
    },
    /// A gate needs approvals nobody gave (only with [`OnHold::Exit`]).
    Blocked {
        wave: String,
        reason: String,
    },
    /// A failure budget was exceeded, or a gate's check failed before a wave.
    Halted {
        wave: String,
        reason: String,
        failed_envs: Vec<String>,
        /// A gate's check stopped the wave before anything of it started.
        before_wave: bool,
    },
    Aborted {
        by: String,
    },
    Interrupted,
    /// Everything else is done; these environments changed out of band and wait for a
    /// decision (only with [`OnHold::Exit`], or with nobody left to decide).
    Held {
        envs: Vec<String>,
    },
}

/// Reads environment `env`'s emergency layer at `commit` (None: it has none there).
pub type EmergencyLoader =
    Arc<dyn Fn(&str, &str) -> Result<Option<Emergency>, String> + Send + Sync>;

/// Where one environment stands in the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    /// Being put back at an earlier release.
    RollingBack,
    /// Put back at an earlier release, on an operator's command.
    RolledBack,
    /// Changed out of band: nothing is applied until someone decides.
    Held,
}

/// A rollback task's end: the environment, whether it is fully rolled back, and the
/// services it put back (or found back).
type RollbackEnd = (usize, bool, Vec<String>);

/// Why the current wave stops starting work.
#[derive(Debug, Clone, PartialEq)]
enum Stop {
    Halt { reason: String },
    Abort { by: String },
    Interrupt,
}

/// How a wave's wait for a freeze is told (`gate_waiting`): "the end of freeze `x` (...)
/// at T". Views tell a freeze from a gate by it.
pub const FREEZE_WAIT: &str = "the end of freeze";

/// A rollout in progress. Build with [`Engine::new`], then [`Engine::run`].
pub struct Engine {
    ctx: Arc<StepContext>,
    /// Shared so that a gate can hold its wave while the engine changes: a wave's copy
    /// would copy its list of environments, all of the fleet's names in a one-wave plan.
    plan: Arc<Plan>,
    max_parallel: usize,
    on_hold: OnHold,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    state: watch::Sender<RunState>,

    /// Index of each environment (by name) in `intent.environments`.
    env_index: HashMap<String, usize>,
    /// Per environment in the plan: its wave.
    wave_of: EnvMap<usize>,
    /// Each wave's environments, by index: looking each name up again at every pass over
    /// a wave of 100,000 was a random read of the index per environment.
    members: Vec<Vec<usize>>,
    steps: EnvMap<Vec<StepState>>,
    status: EnvMap<EnvStatus>,
    approvals: Vec<BTreeSet<String>>,
    /// Failed environments per wave and in all, kept as counters so budget checks stay O(1).
    failed_in_wave: Vec<usize>,
    failed_total: usize,
    /// Failed environments an operator accepted by resuming a halted rollout; they stop
    /// counting against budgets only while they stay failed (a retry that fails again after
    /// succeeding counts anew).
    accepted: HashSet<usize>,
    max_failures: usize,
    current_wave: usize,
    queue: VecDeque<usize>,
    paused: bool,
    stop: Option<Stop>,
    wave_done_at: Option<Instant>,
    /// Environment runs finished since an interrupt arrived.
    finished_since_interrupt: usize,
    /// Ctrl-C arrived while halting: end with the halt instead of waiting for a decision.
    interrupt_requested: bool,
    /// Set when continuing a rollout from its journal.
    resumed: bool,
    completed_waves: HashSet<usize>,
    gates_passed: HashSet<usize>,
    /// Steps that were in flight at a crash: (env, service, revision), to observe first.
    recover: Vec<(usize, usize, String)>,
    /// Environments whose intent to apply is recorded but which have not started yet, with
    /// their rendered desired state.
    intended: EnvMap<crate::intent::layers::Desired>,
    /// Renders the desired states of the intents recorded.
    renders: crate::intent::layers::DesiredCache,
    /// The windows of intents recorded ahead of need, oldest first, still committing: those
    /// environments start once theirs resolves. Recording the next windows while the
    /// current one runs keeps the journal's commit off the rollout's critical path.
    intents_ahead: VecDeque<(Vec<usize>, SinkFuture)>,
    /// Services in the order a rollback puts them back: dependents first.
    rollback_order: Vec<usize>,
    /// Steps (env, service) this rollout applied or tried to, whatever became of them since
    /// (a retry, a restart): what a rollback may have to put back.
    attempted: StepSet,
    /// Rollbacks in flight; they run beside the waves, and the rollout does not end
    /// before they do.
    rollbacks: JoinSet<RollbackEnd>,
    rollback_task_env: HashMap<tokio::task::Id, usize>,
    /// Per environment to roll back, being rolled back, or whose rollback failed: what the
    /// rollback is (a retry of a failed rollback runs the same rollback again).
    rollback_of: HashMap<usize, RollbackPlan>,
    /// Rollbacks the journal shows in flight at a restart: run again when the rollout
    /// resumes (applies are idempotent by revision).
    rollbacks_to_resume: Vec<usize>,
    /// Running environments to roll back once their run stops (it was cancelled).
    rollback_when_stopped: HashSet<usize>,
    /// A halt that came while waiting at a gate has been announced.
    halt_announced: bool,
    /// What flotilla last applied and the drift accepted: with it, each environment is
    /// observed before anything is applied to it, and held if it changed out of band.
    guard: Option<Arc<Known>>,
    /// Environments a decision released: not observed for drift again.
    released: HashSet<usize>,
    /// Emergency layers taken from adopt commits, in place of the intent's own.
    emergency: HashMap<usize, Emergency>,
    load_emergency: Option<EmergencyLoader>,
    /// Freezes set aside for this rollout (`--override policy.freeze`), until the end of
    /// the window that was in force then.
    waived: Vec<(String, SystemTime)>,
    /// Times each environment went to the back of its wave after failing (`requeue_failed`).
    requeued: HashMap<usize, u32>,
    /// Environments requeued whose run again has not ended: they count as failed meanwhile.
    awaiting_requeue: HashSet<usize>,
    /// The halt came from a gate's check before the wave started, not from failures.
    halted_at_gate: bool,
    /// Runs the waves' `check` commands (from the intent repo's root).
    runner: Option<Arc<crate::drivers::exec::Runner>>,
}

/// One environment's rollback as decided.
#[derive(Debug, Clone)]
struct RollbackPlan {
    /// The release it goes back to.
    to: usize,
    by: String,
    /// The services to put back, in order, once known: fixed by the `rollback_started`
    /// record, so a rollback run again (after a restart, or retried) does the same.
    services: Option<Vec<usize>>,
    /// Services already back: a rollback run again does not put them back twice.
    done: HashSet<usize>,
}

/// Windows of intents recorded ahead of need and still committing, at most.
const WINDOWS_AHEAD: usize = 2;

impl Engine {
    /// An engine for `plan` (made from `intent`) that reports to `events` and obeys `commands`.
    pub fn new(
        intent: Arc<Intent>,
        plan: Plan,
        driver: Arc<dyn Driver>,
        clock: Arc<dyn Clock>,
        events: impl EventSink + 'static,
        commands: mpsc::UnboundedReceiver<Command>,
        on_hold: OnHold,
    ) -> Self {
        let events: Arc<dyn EventSink> = Arc::new(events);
        let release = intent
            .releases
            .iter()
            .position(|r| r.name == plan.release)
            .expect("the plan was made from this intent's release");
        let deps = intent
            .services
            .iter()
            .map(|s| {
                s.depends_on
                    .iter()
                    .filter_map(|d| intent.services.iter().position(|x| &x.name == d))
                    .collect()
            })
            .collect();
        let env_index: HashMap<String, usize> = intent
            .environments
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let envs = intent.environments.len();
        let services = intent.services.len();
        let mut wave_of = EnvMap::new(envs);
        let mut steps = EnvMap::new(envs);
        let mut status = EnvMap::new(envs);
        let mut members = vec![Vec::new(); plan.waves.len()];
        for (w, wave) in plan.waves.iter().enumerate() {
            members[w].reserve_exact(wave.envs.len());
            for name in &wave.envs {
                if let Some(&i) = env_index.get(name) {
                    members[w].push(i);
                    wave_of.insert(i, w);
                    steps.insert(i, vec![StepState::Pending; services]);
                    status.insert(i, EnvStatus::Pending);
                }
            }
        }
        let waves = plan.waves.len();
        let rollback_order = crate::plan::service_levels(&intent)
            .iter()
            .rev()
            .flatten()
            .filter_map(|name| intent.services.iter().position(|s| &s.name == name))
            .collect();
        let ctx = Arc::new(StepContext {
            release,
            driver,
            clock,
            events,
            retries: plan.retries,
            backoff: plan.backoff,
            step_timeout: plan.step_timeout,
            seed: plan.seed,
            deps,
            intent,
            cancelled: Default::default(),
            failed_transiently: Default::default(),
        });
        Engine {
            ctx,
            max_parallel: plan.max_parallel.max(1),
            max_failures: plan.max_failures,
            plan: Arc::new(plan),
            on_hold,
            commands,
            commands_open: true,
            state: watch::Sender::new(RunState::Running),
            env_index,
            wave_of,
            members,
            steps,
            status,
            approvals: vec![BTreeSet::new(); waves],
            failed_in_wave: vec![0; waves],
            failed_total: 0,
            accepted: HashSet::new(),
            current_wave: 0,
            queue: VecDeque::new(),
            paused: false,
            stop: None,
            wave_done_at: None,
            finished_since_interrupt: 0,
            interrupt_requested: false,
            resumed: false,
            completed_waves: HashSet::new(),
            gates_passed: HashSet::new(),
            recover: Vec::new(),
            intended: EnvMap::new(0),
            renders: Default::default(),
            intents_ahead: VecDeque::new(),
            rollback_order,
            attempted: StepSet::new(envs, services),
            rollbacks: JoinSet::new(),
            rollback_task_env: HashMap::new(),
            rollback_of: HashMap::new(),
            rollbacks_to_resume: Vec::new(),
            rollback_when_stopped: HashSet::new(),
            halt_announced: false,
            guard: None,
            released: HashSet::new(),
            emergency: HashMap::new(),
            load_emergency: None,
            waived: Vec::new(),
            requeued: HashMap::new(),
            awaiting_requeue: HashSet::new(),
            halted_at_gate: false,
            runner: None,
        }
    }

    /// Where the waves' `check` commands run: the intent repo's root, marked as this
    /// engine's (without it, a wave with a check halts before it starts).
    pub fn run_checks_with(mut self, runner: crate::drivers::exec::Runner) -> Self {
        self.runner = Some(Arc::new(runner));
        self
    }

    /// Never clobber: each environment is observed before anything is applied to it, and
    /// one that drifted from what `known` says flotilla last applied (drift nobody
    /// accepted) is held until someone decides. Environments this rollout already started
    /// are not observed again: their changes are its own.
    pub fn guard_drift(mut self, known: Arc<Known>) -> Self {
        self.guard = Some(known);
        self
    }

    /// Applies only the services named; the others count as done already (a revert of
    /// one service's drift leaves the rest as they run).
    pub fn only_services(mut self, names: &[String]) -> Self {
        let keep: Vec<bool> = self
            .ctx
            .intent
            .services
            .iter()
            .map(|s| names.contains(&s.name))
            .collect();
        for steps in self.steps.values_mut() {
            for (step, keep) in steps.iter_mut().zip(&keep) {
                if !keep {
                    *step = StepState::Succeeded;
                }
            }
        }
        self
    }

    /// Lets waves start inside these freezes until the given ends: the windows someone
    /// overrode `policy.freeze` for. Later windows of the same freeze stop waves again.
    pub fn waive_freezes(mut self, waived: Vec<(String, SystemTime)>) -> Self {
        self.waived = waived;
        self
    }

    /// How an adopt's emergency layer is read from its commit. Give it before
    /// [`Engine::resume`], which reads the layers of adopts the journal records.
    pub fn with_emergency_loader(mut self, load: EmergencyLoader) -> Self {
        self.load_emergency = Some(load);
        self
    }

    /// Continues the rollout that `view` (a fold of its journal) describes: succeeded steps
    /// are not redone, approvals and skips stand, waves already done are not run again, and
    /// steps that were in flight are observed before anything else happens. Failed steps are
    /// tried again: restarting a rollout is the operator's decision to retry.
    pub fn resume(mut self, view: &RolloutView) -> Self {
        self.resumed = true;
        let intent = self.ctx.intent.clone();
        for (env, released) in &view.released {
            let Some(&i) = self.env_index.get(env) else {
                continue;
            };
            self.released.insert(i);
            if let Some(commit) = &released.commit {
                if let Err(why) = self.take_emergency(i, commit) {
                    // Without the adopted layer the rollout would undo the fix: held again.
                    self.released.remove(&i);
                    crate::notice::say(format!("warning: {env} is held again: {why}"));
                }
            }
        }
        for ((env, service), (state, revision, _)) in &view.steps {
            let (Some(&i), Some(s)) = (self.env_index.get(env), self.service_index(service)) else {
                continue;
            };
            let Some(steps) = self.steps.get_mut(&i) else {
                continue;
            };
            match state {
                fold::StepView::Succeeded => steps[s] = StepState::Succeeded,
                fold::StepView::Running | fold::StepView::Intended => {
                    self.recover.push((i, s, revision.clone()))
                }
                _ => {}
            }
            // Started (an apply may have reached the environment) or finished either way.
            if matches!(
                state,
                fold::StepView::Succeeded | fold::StepView::Failed | fold::StepView::Running
            ) {
                self.attempted.insert(i, s);
            }
        }
        let done: Vec<usize> = self
            .steps
            .iter()
            .filter(|(_, s)| s.iter().all(|x| *x == StepState::Succeeded))
            .map(|(i, _)| i)
            .collect();
        for i in done {
            self.set_status(i, EnvStatus::Succeeded);
        }
        for env in view.skipped.keys() {
            if let Some(&i) = self.env_index.get(env) {
                self.set_status(i, EnvStatus::Skipped);
            }
        }
        // Failures accepted before the restart stay accepted while they stay failed.
        self.accepted = view
            .accepted
            .iter()
            .filter_map(|env| self.env_index.get(env).copied())
            .collect();
        for (env, rollback) in &view.rollbacks {
            let Some(&i) = self.env_index.get(env) else {
                continue;
            };
            if !self.status.contains_key(&i) {
                continue;
            }
            let to = intent.releases.iter().position(|r| r.name == rollback.to);
            if let Some(to) = to {
                let services = (rollback.state != fold::RollbackState::Requested).then(|| {
                    rollback
                        .services
                        .iter()
                        .filter_map(|name| self.service_index(name))
                        .collect()
                });
                let done = rollback
                    .done
                    .iter()
                    .filter_map(|name| self.service_index(name))
                    .collect();
                self.rollback_of.insert(
                    i,
                    RollbackPlan {
                        to,
                        by: rollback.by.clone(),
                        services,
                        done,
                    },
                );
            }
            match (rollback.state, to) {
                (fold::RollbackState::Done, _) => self.set_status(i, EnvStatus::RolledBack),
                (fold::RollbackState::InFlight | fold::RollbackState::Requested, Some(_)) => {
                    // Held out of the queue until its rollback runs (again).
                    self.set_status(i, EnvStatus::RollingBack);
                    self.rollbacks_to_resume.push(i);
                }
                // Failed, or its release is no longer in the intent: an operator decides.
                _ => self.set_status(i, EnvStatus::Failed),
            }
        }
        for (w, wave) in self.plan.waves.iter().enumerate() {
            let Some(seen) = view.waves.iter().find(|v| v.name == wave.name) else {
                continue;
            };
            self.approvals[w].extend(seen.approvals.iter().cloned());
            if seen.started {
                self.gates_passed.insert(w);
            }
            if seen.completed {
                self.completed_waves.insert(w);
            }
        }
        // An abort asked for before the restart still ends the rollout, once the steps
        // that were in flight are settled.
        if let Some(by) = &view.abort_requested {
            self.stop = Some(Stop::Abort { by: by.clone() });
            self.publish_state();
        }
        // Someone paused it (an incident, most likely): a restart does not lift the pause.
        if view.paused {
            self.paused = true;
            self.publish_state();
        }
        // The next wave's soak counts from when the last finished wave completed, not from
        // the restart (and not at all, wrongly, because nothing ran since).
        let last_done = view
            .waves
            .iter()
            .filter_map(|w| w.completed_at.as_deref())
            .filter_map(|ts| humantime::parse_rfc3339_weak(ts).ok())
            .max();
        if let Some(done) = last_done {
            let ago = self
                .ctx
                .clock
                .now()
                .duration_since(done)
                .unwrap_or_default();
            self.wave_done_at = Instant::now().checked_sub(ago);
        }
        self
    }

    /// Keeps the failures `view` shows (after [`Engine::resume`]): environments that failed
    /// stay failed, and a halt stays a halt, so nothing starts until someone resumes,
    /// retries or rolls back; failures a resume accepted stay accepted, not retried. Without
    /// it, continuing a rollout retries what failed (a re-run is the decision to retry).
    pub fn keep_failures(mut self, view: &RolloutView) -> Self {
        let mut failed = BTreeSet::new();
        for ((env, service), (state, _, _)) in &view.steps {
            let step = match state {
                fold::StepView::Failed => StepState::Failed,
                fold::StepView::Blocked => StepState::Blocked,
                _ => continue,
            };
            let (Some(&i), Some(s)) = (self.env_index.get(env), self.service_index(service)) else {
                continue;
            };
            if self.status.get(&i) != Some(&EnvStatus::Pending) {
                continue;
            }
            if let Some(steps) = self.steps.get_mut(&i) {
                steps[s] = step;
                failed.insert(i);
            }
        }
        for i in failed {
            self.set_status(i, EnvStatus::Failed);
        }
        // An abort asked for before the restart says more than the halt.
        if let (Some(reason), None) = (view.halt_reason.clone(), &self.stop) {
            self.stop = Some(Stop::Halt { reason });
            self.publish_state();
        }
        self
    }

    /// Steps in flight at the crash: done if the environment already runs their revision.
    /// Environments are observed in parallel, `max_parallel` at a time.
    async fn recover_in_flight(&mut self) {
        let mut by_env: HashMap<usize, Vec<(usize, String)>> = HashMap::new();
        for (i, s, revision) in std::mem::take(&mut self.recover) {
            by_env.entry(i).or_default().push((s, revision));
        }
        let mut envs: Vec<usize> = by_env.keys().copied().collect();
        envs.sort_unstable();
        let mut observing = JoinSet::new();
        let mut found = Vec::new();
        let mut next = envs.into_iter();
        loop {
            while observing.len() < self.max_parallel {
                let Some(i) = next.next() else { break };
                let ctx = self.ctx.clone();
                let pending = by_env.get(&i).cloned().unwrap_or_default();
                observing.spawn(async move {
                    let env = &ctx.intent.environments[i];
                    // Cannot tell (observe failed): nothing is recovered, so those steps are
                    // applied again, which is safe because applies are idempotent by revision.
                    let Some(live) = step::observed_within(&ctx, env).await else {
                        return (i, Vec::new());
                    };
                    let mut done = Vec::new();
                    for (s, revision) in pending {
                        let service = &ctx.intent.services[s].name;
                        let Some(svc) = live.get(service).filter(|l| l.revision == revision) else {
                            continue;
                        };
                        // Applied is not enough: the crash may have come before verifying.
                        if step::healthy_within(&ctx, env, service).await {
                            done.push((s, svc.version.clone(), revision));
                        }
                    }
                    (i, done)
                });
            }
            match observing.join_next().await {
                Some(Ok(observed)) => found.push(observed),
                Some(Err(_)) => {}
                None => break,
            }
        }
        found.sort_by_key(|(i, _)| *i);
        for (i, done) in found {
            for (s, version, revision) in done {
                let wave = self.wave_name(i);
                self.emit(EventKind::StepRecovered {
                    wave,
                    env: self.env_name(i),
                    service: self.ctx.intent.services[s].name.as_str().into(),
                    version: version.into(),
                    revision: revision.into(),
                });
                if let Some(steps) = self.steps.get_mut(&i) {
                    steps[s] = StepState::Succeeded;
                }
            }
            let all_done = self.steps[&i].iter().all(|x| *x == StepState::Succeeded);
            if all_done && self.status.get(&i) == Some(&EnvStatus::Pending) {
                self.set_status(i, EnvStatus::Succeeded);
            }
        }
    }

    /// Runs the rollout to its end and says how it ended.
    pub async fn run(mut self) -> Outcome {
        let outcome = self.run_waves().await;
        // Whatever ended the rollout, a rollback in flight finishes: an environment half
        // rolled back is worse than either end.
        self.settle_rollbacks().await;
        outcome
    }

    async fn run_waves(&mut self) -> Outcome {
        self.emit(EventKind::RolloutStarted {
            release: self.plan.release.clone(),
            commit: self.plan.revision.commit.clone(),
            waves: self.plan.waves.len(),
            envs: self.plan.env_count(),
            wave_names: self.plan.waves.iter().map(|w| w.name.clone()).collect(),
            services: self
                .ctx
                .intent
                .services
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            resumed: self.resumed,
        });
        if self.paused {
            self.emit(EventKind::RolloutPaused {
                by: "the journal (it was paused before the restart)".into(),
            });
        }
        self.recover_in_flight().await;
        // Commands queued before this engine started (a rollback, a pause) are decided
        // before anything new is applied: none of them may be overtaken by work they stop.
        self.drain_commands();
        for i in std::mem::take(&mut self.rollbacks_to_resume) {
            if let Err(why) = self.start_rollback(i) {
                self.rollback_failed_outright(i, why);
            }
        }
        for w in 0..self.plan.waves.len() {
            self.current_wave = w;
            if self.completed_waves.contains(&w) && self.wave_has_no_work(w) {
                continue;
            }
            // A wave with no environments has nothing to guard: no approval, no soak; and a
            // gate passed before a restart stays passed.
            if !self.plan.waves[w].envs.is_empty() && !self.gates_passed.contains(&w) {
                if let Err(end) = self.pass_gate(w).await {
                    return end;
                }
            }
            if !self.plan.waves[w].envs.is_empty() && !self.completed_waves.contains(&w) {
                if let Err(end) = self.wait_out_freezes(w).await {
                    return end;
                }
            }
            // The checks that verify go last, right before the wave starts, so what they
            // found still holds when it does.
            if !self.plan.waves[w].envs.is_empty() && !self.gates_passed.contains(&w) {
                if let Err(end) = self.verify(w).await {
                    return end;
                }
            }
            if let Err(end) = self.run_wave(w).await {
                return end;
            }
            // A wave whose environments were all held proved nothing about the release:
            // the next one waits for the decisions.
            if self.nothing_but_held(w) {
                if let Err(end) = self.wait_for_held().await {
                    return end;
                }
            }
        }
        if let Err(end) = self.wait_for_held().await {
            return end;
        }
        self.settle_rollbacks().await;
        let count = |s: EnvStatus| self.status.values().filter(|&&x| x == s).count();
        let (succeeded, failed, skipped, rolled_back) = (
            count(EnvStatus::Succeeded),
            count(EnvStatus::Failed),
            count(EnvStatus::Skipped),
            count(EnvStatus::RolledBack),
        );
        self.emit(EventKind::RolloutCompleted {
            succeeded,
            failed,
            skipped,
            rolled_back,
        });
        Outcome::Completed {
            succeeded,
            failed,
            skipped,
            rolled_back,
        }
    }

    /// Waits for the rollbacks in flight to finish.
    async fn settle_rollbacks(&mut self) {
        while !self.rollbacks.is_empty() {
            let joined = self.rollbacks.join_next_with_id().await;
            self.rollback_joined(joined);
        }
    }

    fn emit(&self, kind: EventKind) {
        self.ctx.emit(kind);
    }

    /// Soak after the previous wave, then approvals (the checks that verify come after the
    /// freezes, in [`Engine::verify`]). Returns how the rollout ended if it did.
    async fn pass_gate(&mut self, w: usize) -> Result<(), Outcome> {
        let plan = self.plan.clone();
        let wave = &plan.waves[w];
        let needed = match wave.gate {
            Gate::Approval { approvers } => approvers as usize,
            Gate::Auto => 0,
        };
        self.drain_commands();
        self.check_stop()?;
        let approval_reason = |have: usize| {
            let why = wave
                .gate_reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            if needed == 1 {
                format!("approval{why}")
            } else {
                format!("approval by {needed} distinct people, {have} so far{why}")
            }
        };
        if self.on_hold == OnHold::Exit && self.approvals[w].len() < needed {
            let reason = approval_reason(self.approvals[w].len());
            self.emit(EventKind::GateWaiting {
                wave: wave.name.as_str().into(),
                reason: reason.clone(),
            });
            return Err(Outcome::Blocked {
                wave: wave.name.clone(),
                reason,
            });
        }
        if let (false, Some(done)) = (wave.soak.is_zero(), self.wave_done_at) {
            let until = done + wave.soak;
            if Instant::now() < until {
                self.emit(EventKind::GateWaiting {
                    wave: wave.name.as_str().into(),
                    reason: format!(
                        "soak of {} after the previous wave",
                        humantime::format_duration(wave.soak)
                    ),
                });
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => break,
                        cmd = self.commands.recv(), if self.commands_open => self.on_command(cmd),
                        joined = self.rollbacks.join_next_with_id(), if !self.rollbacks.is_empty() => {
                            self.rollback_joined(joined);
                        }
                    }
                    self.check_stop()?;
                    self.run_released(w).await?;
                }
            }
        }
        let mut announced = false;
        while self.approvals[w].len() < needed {
            if !announced {
                self.emit(EventKind::GateWaiting {
                    wave: wave.name.as_str().into(),
                    reason: approval_reason(self.approvals[w].len()),
                });
                announced = true;
            }
            if !self.commands_open {
                // Nobody can approve any more: end as blocked rather than hang.
                return Err(Outcome::Blocked {
                    wave: wave.name.clone(),
                    reason: approval_reason(self.approvals[w].len()),
                });
            }
            tokio::select! {
                cmd = self.commands.recv() => self.on_command(cmd),
                joined = self.rollbacks.join_next_with_id(), if !self.rollbacks.is_empty() => {
                    self.rollback_joined(joined);
                }
            }
            self.check_stop()?;
            self.run_released(w).await?;
        }
        Ok(())
    }

    /// The gate's checks: the earlier waves' health (`gate = "healthy"`), then the wave's
    /// `check`. One that fails halts the rollout before the wave; once someone lifts the
    /// halt (resume, retry) they run again. Headless, the halt ends the rollout (a resume
    /// runs them again).
    async fn verify(&mut self, w: usize) -> Result<(), Outcome> {
        let plan = self.plan.clone();
        let wave = &plan.waves[w];
        if !wave.recheck_health && wave.check.is_none() {
            return Ok(());
        }
        loop {
            // A halt from before (a budget, one restored on resume) is decided first: the
            // checks run only for a wave that could start.
            if matches!(self.stop, Some(Stop::Halt { .. })) {
                self.wait_out_halt().await?;
            }
            match self.verify_once(w, wave).await? {
                Ok(()) => return Ok(()),
                Err(reason) => {
                    self.stop = Some(Stop::Halt { reason });
                    self.halt_announced = false;
                    self.halted_at_gate = true;
                    self.publish_state();
                    self.wait_out_halt().await?;
                    self.halted_at_gate = false;
                }
            }
        }
    }

    /// One pass of wave `w`'s checks; the inner Err says why one failed.
    async fn verify_once(
        &mut self,
        w: usize,
        wave: &crate::plan::PlannedWave,
    ) -> Result<Result<(), String>, Outcome> {
        let ctx = self.ctx.clone();
        if wave.recheck_health {
            let mut earlier: Vec<usize> = self.members[..w]
                .iter()
                .flatten()
                .copied()
                .filter(|i| self.status.get(i) == Some(&EnvStatus::Succeeded))
                .collect();
            earlier.sort_unstable();
            self.emit(EventKind::GateWaiting {
                wave: wave.name.as_str().into(),
                reason: format!(
                    "the health of the {} environment(s) of earlier waves",
                    earlier.len()
                ),
            });
            match self.obeying(verify::recheck_health(&ctx, earlier)).await? {
                Ok(()) => self.emit(EventKind::CheckPassed {
                    wave: wave.name.as_str().into(),
                    check: verify::HEALTH_CHECK.into(),
                    attempts: 1,
                }),
                Err(why) => {
                    self.emit(EventKind::CheckFailed {
                        wave: wave.name.as_str().into(),
                        check: verify::HEALTH_CHECK.into(),
                        attempts: 1,
                        error: why.clone(),
                        output: None,
                    });
                    return Ok(Err(format!(
                        "gate `healthy` of wave `{}`: {why}",
                        wave.name
                    )));
                }
            }
        }
        if let Some(check) = &wave.check {
            let shown = check.shown();
            let Some(runner) = self.runner.clone() else {
                let error = "no place to run it from (the engine was built without a runner)";
                self.emit(EventKind::CheckFailed {
                    wave: wave.name.as_str().into(),
                    check: shown.clone(),
                    attempts: 0,
                    error: error.into(),
                    output: None,
                });
                return Ok(Err(format!(
                    "check `{shown}` of wave `{}`: {error}",
                    wave.name
                )));
            };
            self.emit(EventKind::GateWaiting {
                wave: wave.name.as_str().into(),
                reason: format!("check `{shown}` to pass"),
            });
            // Copies: the engine obeys commands (borrows itself) while the check runs.
            let (release, revision) =
                (self.plan.release.clone(), self.plan.revision.commit.clone());
            let on = verify::CheckFor {
                wave: &wave.name,
                release: &release,
                revision: &revision,
                envs: wave.envs.join(","),
            };
            match self
                .obeying(verify::run_check(&ctx, &runner, check, &on))
                .await?
            {
                Ok(attempts) => self.emit(EventKind::CheckPassed {
                    wave: wave.name.as_str().into(),
                    check: shown,
                    attempts,
                }),
                Err(why) => {
                    return Ok(Err(format!(
                        "check `{shown}` of wave `{}` failed: {why}",
                        wave.name
                    )))
                }
            }
        }
        Ok(Ok(()))
    }

    /// Awaits `work` while obeying commands; an abort or interrupt ends the wait (and drops
    /// the work: a check's command is killed with its process group).
    async fn obeying<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, Outcome> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                cmd = self.commands.recv(), if self.commands_open => self.on_command(cmd),
                joined = self.rollbacks.join_next_with_id(), if !self.rollbacks.is_empty() => {
                    self.rollback_joined(joined);
                }
            }
            if matches!(self.stop, Some(Stop::Abort { .. } | Stop::Interrupt)) {
                self.check_stop()?;
            }
        }
    }

    /// Waits while the rollout is halted before a wave, obeying commands, until someone
    /// lifts the halt. Headless, or with nobody left to decide, the halt ends the rollout.
    async fn wait_out_halt(&mut self) -> Result<(), Outcome> {
        self.check_stop()?;
        while let Some(Stop::Halt { reason }) = self.stop.clone() {
            // Nobody left to decide, or Ctrl-C (or a lost lease) while halted: end here.
            if !self.commands_open || self.interrupt_requested {
                return Err(Outcome::Halted {
                    wave: self.plan.waves[self.current_wave].name.clone(),
                    reason,
                    failed_envs: self.failed_envs(),
                    before_wave: self.halted_at_gate,
                });
            }
            tokio::select! {
                cmd = self.commands.recv() => self.on_command(cmd),
                joined = self.rollbacks.join_next_with_id(), if !self.rollbacks.is_empty() => {
                    self.rollback_joined(joined);
                }
            }
            self.check_stop()?;
        }
        Ok(())
    }

    /// The freeze in force now over some environment of wave `w`, and until when.
    fn freeze_over(&self, w: usize) -> Option<(String, String, SystemTime)> {
        let now = self.ctx.clock.now();
        let intent = &self.ctx.intent;
        intent.policy.freezes.iter().find_map(|f| {
            let until = f.in_force(now)?;
            // Still inside the window that was in force when someone overrode it.
            if self
                .waived
                .iter()
                .any(|(name, end)| *name == f.name && now < *end)
            {
                return None;
            }
            let covers = f.covers(intent, &self.plan.waves[w].envs) > 0;
            covers.then(|| (f.name.clone(), f.describe(), until))
        })
    }

    /// A wave never starts inside a freeze that covers its environments: it waits for the
    /// end (and for any freeze that follows), obeying commands meanwhile.
    async fn wait_out_freezes(&mut self, w: usize) -> Result<(), Outcome> {
        let mut announced = None;
        while let Some((name, when, until)) = self.freeze_over(w) {
            if announced.as_ref() != Some(&(name.clone(), until)) {
                self.emit(EventKind::GateWaiting {
                    wave: self.plan.waves[w].name.as_str().into(),
                    reason: format!(
                        "{FREEZE_WAIT} `{name}` ({when}) at {}",
                        humantime::format_rfc3339_seconds(until)
                    ),
                });
                announced = Some((name, until));
            }
            let left = until
                .duration_since(self.ctx.clock.now())
                .unwrap_or_default();
            let wake = Instant::now() + left;
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                cmd = self.commands.recv(), if self.commands_open => self.on_command(cmd),
                joined = self.rollbacks.join_next_with_id(), if !self.rollbacks.is_empty() => {
                    self.rollback_joined(joined);
                }
            }
            // Environments released or retried meanwhile wait too: nothing is applied
            // inside the freeze.
            self.check_stop()?;
        }
        Ok(())
    }

    /// Ends the rollout if an abort or interrupt arrived outside a wave.
    fn check_stop(&mut self) -> Result<(), Outcome> {
        match self.stop.clone() {
            Some(Stop::Abort { by }) => {
                self.emit(EventKind::RolloutAborted { by: by.clone() });
                Err(Outcome::Aborted { by })
            }
            Some(Stop::Interrupt) => {
                self.emit(EventKind::RolloutInterrupted {
                    in_flight_finished: self.finished_since_interrupt,
                });
                Err(Outcome::Interrupted)
            }
            // A budget exceeded while a gate waits (a rollback failed there): said at once,
            // and the gate goes on waiting under the halt (in a wave nothing starts until
            // someone decides). Headless, or with nobody left to decide, it ends here.
            Some(Stop::Halt { reason }) if !self.halt_announced => {
                self.halt_announced = true;
                let wave = self.plan.waves[self.current_wave].name.clone();
                let failed_envs = self.failed_envs();
                self.emit(EventKind::RolloutHalted {
                    wave: wave.as_str().into(),
                    reason: reason.clone(),
                    failed_envs: failed_envs.clone(),
                });
                if self.on_hold == OnHold::Exit || !self.commands_open {
                    return Err(Outcome::Halted {
                        wave,
                        reason,
                        failed_envs,
                        before_wave: self.halted_at_gate,
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn drain_commands(&mut self) {
        while let Ok(cmd) = self.commands.try_recv() {
            self.on_command(Some(cmd));
        }
    }

    async fn run_wave(&mut self, w: usize) -> Result<(), Outcome> {
        self.drain_commands();
        let name: Arc<str> = self.plan.waves[w].name.as_str().into();
        let members = self.members[w].clone();
        self.emit(EventKind::WaveStarted {
            wave: Text::from(&*name),
            envs: members.len(),
            allowed_failures: self.plan.waves[w].allowed_failures,
        });
        // Held environments (from before a restart) are observed again: the drift may be
        // gone, or still there.
        for &i in &members {
            if self.status[&i] == EnvStatus::Held {
                self.set_status(i, EnvStatus::Pending);
            }
        }
        self.queue.extend(
            members
                .iter()
                .copied()
                .filter(|i| self.status[i] == EnvStatus::Pending),
        );
        self.run_queue(&name).await?;
        let count = |s: EnvStatus| {
            members
                .iter()
                .filter(|i| self.status.get(i) == Some(&s))
                .count()
        };
        self.emit(EventKind::WaveCompleted {
            wave: Text::from(&*name),
            succeeded: count(EnvStatus::Succeeded),
            failed: count(EnvStatus::Failed),
            skipped: count(EnvStatus::Skipped),
            rolled_back: count(EnvStatus::RolledBack),
        });
        self.wave_done_at = Some(Instant::now());
        Ok(())
    }

    /// Whether wave `w` has environments, some of them held on drift and none succeeded.
    fn nothing_but_held(&self, w: usize) -> bool {
        let statuses = || self.members[w].iter().filter_map(|i| self.status.get(i));
        statuses().any(|s| *s == EnvStatus::Held) && !statuses().any(|s| *s == EnvStatus::Succeeded)
    }

    /// Rolls out the environments released while the gate of wave `w` waits: they belong
    /// to waves already past their gates, so that gate does not hold them.
    async fn run_released(&mut self, w: usize) -> Result<(), Outcome> {
        if self.queue.is_empty() {
            return Ok(());
        }
        let name: Arc<str> = self.plan.waves[w.saturating_sub(1)].name.as_str().into();
        self.run_queue(&name).await
    }

    /// Once the waves are done, the environments held on drift wait for decisions; each
    /// one released is rolled out. Headless (or with nobody left to decide) the rollout
    /// ends here, resumable, naming them.
    async fn wait_for_held(&mut self) -> Result<(), Outcome> {
        let mut announced = false;
        loop {
            self.drain_commands();
            self.check_stop()?;
            if !self.queue.is_empty() {
                let last = self.plan.waves.len().saturating_sub(1);
                let name: Arc<str> = self
                    .plan
                    .waves
                    .get(last)
                    .map_or("", |w| w.name.as_str())
                    .into();
                self.run_queue(&name).await?;
                announced = false;
                continue;
            }
            let mut envs: Vec<String> = self
                .status
                .iter()
                .filter(|(_, s)| **s == EnvStatus::Held)
                .map(|(i, _)| self.ctx.intent.environments[i].name.clone())
                .collect();
            if envs.is_empty() {
                return Ok(());
            }
            envs.sort();
            if !announced {
                self.emit(EventKind::RolloutHeld { envs: envs.clone() });
                announced = true;
            }
            if self.on_hold == OnHold::Exit || !self.commands_open {
                return Err(Outcome::Held { envs });
            }
            tokio::select! {
                cmd = self.commands.recv() => self.on_command(cmd),
                joined = self.rollbacks.join_next_with_id(), if !self.rollbacks.is_empty() => {
                    self.rollback_joined(joined);
                }
            }
        }
    }

    /// Runs the queue until it is empty and nothing of it runs (a halt or a pause holds it
    /// until someone decides). `name` is the wave a halt is reported in.
    async fn run_queue(&mut self, name: &Arc<str>) -> Result<(), Outcome> {
        let mut running: JoinSet<(usize, EnvEnd)> = JoinSet::new();
        let mut task_env: HashMap<tokio::task::Id, usize> = HashMap::new();
        let mut halt_reported = self.halt_announced;
        loop {
            while !self.paused && self.stop.is_none() && running.len() < self.max_parallel {
                let Some(i) = self.queue.pop_front() else {
                    break;
                };
                if self.status[&i] != EnvStatus::Pending {
                    continue;
                }
                if !self.intent_durable(i).await {
                    // Without a journal nothing may be applied: halt with `i` untouched.
                    self.queue.push_front(i);
                    continue;
                }
                let desired = self.intended.remove(&i).expect("recorded just above");
                self.set_status(i, EnvStatus::Running);
                let wave_name: Arc<str> = self.plan.waves[self.wave_of[&i]].name.as_str().into();
                let started =
                    (0..self.ctx.intent.services.len()).any(|s| self.attempted.contains(i, s));
                let guard = self
                    .guard
                    .clone()
                    .filter(|_| !started && !self.released.contains(&i));
                let handle = running.spawn(step::guard_then_run(
                    self.ctx.clone(),
                    i,
                    wave_name,
                    self.steps[&i].clone(),
                    desired,
                    self.state.subscribe(),
                    guard,
                ));
                task_env.insert(handle.id(), i);
            }
            if running.is_empty() {
                match self.stop.clone() {
                    Some(Stop::Halt { reason }) => {
                        let failed_envs = self.failed_envs();
                        if !halt_reported {
                            self.emit(EventKind::RolloutHalted {
                                wave: Text::from(&**name),
                                reason: reason.clone(),
                                failed_envs: failed_envs.clone(),
                            });
                            halt_reported = true;
                        }
                        // Headless, or nobody left to decide: end here and say why.
                        if self.on_hold == OnHold::Exit
                            || !self.commands_open
                            || self.interrupt_requested
                        {
                            return Err(Outcome::Halted {
                                wave: name.to_string(),
                                reason,
                                failed_envs,
                                before_wave: false,
                            });
                        }
                    }
                    Some(_) => {
                        self.check_stop()?;
                    }
                    // The wave ends once nothing of it runs, rollbacks included, and not while
                    // paused: a pause holds the rollout until someone decides.
                    None if self.queue.is_empty()
                        && self.rollbacks.is_empty()
                        && (!self.paused || !self.commands_open) =>
                    {
                        break
                    }
                    None => {}
                }
            }
            tokio::select! {
                joined = running.join_next_with_id(), if !running.is_empty() => {
                    match joined {
                        Some(Ok((id, (i, end)))) => {
                            task_env.remove(&id);
                            match end {
                                EnvEnd::Ran(steps) => self.finish_env(i, steps),
                                // A rollback asked for while it was observed goes ahead: it
                                // was held before anything was applied.
                                EnvEnd::Held if !self.rollback_when_stopped.contains(&i) => {
                                    self.set_status(i, EnvStatus::Held)
                                }
                                EnvEnd::Held => self.finish_env(i, self.steps[&i].clone()),
                            }
                        }
                        Some(Err(e)) => {
                            if let Some(i) = task_env.remove(&e.id()) {
                                self.env_panicked(i);
                            }
                        }
                        None => {}
                    }
                }
                cmd = self.commands.recv(), if self.commands_open => {
                    let was_halted = self.stop.is_some();
                    self.on_command(cmd);
                    if was_halted && self.stop.is_none() {
                        halt_reported = false;
                    }
                }
                joined = self.rollbacks.join_next_with_id(), if !self.rollbacks.is_empty() => {
                    self.rollback_joined(joined);
                }
                // Nothing running and no way to get a command: the checks above end the
                // wave (a paused engine was interrupted when the channel closed).
                _ = std::future::ready(()), if running.is_empty() && self.rollbacks.is_empty() && !self.commands_open => {}
            }
        }
        Ok(())
    }

    /// Write-ahead: makes sure the intent to apply (every remaining revision) of environment
    /// `i` is durable before it starts, waiting only when it is not yet. Each wait also
    /// records the next windows of up to `max_parallel` environments of the queue (up to
    /// [`WINDOWS_AHEAD`] in flight) without waiting for them, so that by the time they start
    /// their intents are usually committed: at 100,000 environments one window ahead was
    /// not enough, the journal's backlog made the engine wait for a tenth of the rollout.
    /// After a crash the ones that never started are simply observed and found untouched.
    /// False (and the rollout halts) when the journal could not record it.
    async fn intent_durable(&mut self, i: usize) -> bool {
        let ahead = self
            .intents_ahead
            .iter()
            .position(|(envs, _)| envs.contains(&i));
        // The journal commits in order: the window's acknowledgement covers the older
        // windows too, so they are taken with it.
        let taken = ahead.map(|w| {
            let mut older: Vec<_> = self.intents_ahead.drain(..=w).collect();
            let (mut envs, ack) = older.pop().expect("the window itself");
            for (e, _) in older {
                envs.extend(e);
            }
            (envs, ack)
        });
        let (envs, ack) = match taken {
            Some(window) => window,
            // Already durable: recorded in a window that was waited for.
            None if self.intended.contains_key(&i) => return true,
            None => match self.record_intents(Some(i)) {
                Some(window) => window,
                None => return true,
            },
        };
        if !ack.await {
            for e in &envs {
                self.intended.remove(e);
            }
            self.stop = Some(Stop::Halt {
                reason: "the journal could not record the intent to apply; nothing more is applied"
                    .into(),
            });
            self.publish_state();
            return false;
        }
        while self.intents_ahead.len() < WINDOWS_AHEAD {
            match self.record_intents(None) {
                Some(window) => self.intents_ahead.push_back(window),
                None => break,
            }
        }
        true
    }

    /// Records the intents of `first` (when given) and of the next pending environments of
    /// the queue that have none, up to `max_parallel` in all. Returns them with the
    /// acknowledgement of the last one: the journal commits in order, so it covers them all.
    fn record_intents(&mut self, first: Option<usize>) -> Option<(Vec<usize>, SinkFuture)> {
        // Made at its full size at once: a window is up to `max_parallel` environments, and
        // growing it step by step was a tenth of the engine's time at 100,000 environments.
        let mut ahead = Vec::with_capacity(self.max_parallel);
        ahead.extend(
            first.into_iter().chain(
                self.queue
                    .iter()
                    .copied()
                    .filter(|i| {
                        Some(*i) != first
                            && self.status.get(i) == Some(&EnvStatus::Pending)
                            && !self.intended.contains_key(i)
                    })
                    .take(self.max_parallel.saturating_sub(first.is_some() as usize)),
            ),
        );
        let intent = self.ctx.intent.clone();
        let release = &intent.releases[self.ctx.release];
        let mut last = None;
        for &i in &ahead {
            let env = &intent.environments[i];
            let emergency = self
                .emergency
                .get(&i)
                .or_else(|| intent.emergency(&env.name));
            let desired = self.renders.desired(&intent, release, env, emergency);
            let steps = &self.steps[&i];
            let revisions = intent
                .services
                .iter()
                .zip(steps)
                .filter(|(_, s)| **s != StepState::Succeeded)
                .map(|(svc, _)| {
                    (
                        svc.name.clone(),
                        desired.services[&svc.name].revision.clone(),
                    )
                })
                .collect();
            let event = EventKind::EnvStarted {
                wave: self.wave_name(i),
                env: env.name.as_str().into(),
                revisions,
            };
            if let Some(previous) = last.replace(event) {
                self.emit(previous);
            }
            self.intended.insert(i, desired);
        }
        let ack = self
            .ctx
            .events
            .emit_durable(Event::new(self.ctx.clock.now(), last?));
        Some((ahead, ack))
    }

    /// True when every environment of wave `w` is already done (succeeded or skipped).
    fn wave_has_no_work(&self, w: usize) -> bool {
        self.members[w].iter().all(|i| {
            self.status.get(i).is_some_and(|s| {
                matches!(
                    s,
                    EnvStatus::Succeeded
                        | EnvStatus::Skipped
                        | EnvStatus::RolledBack
                        | EnvStatus::RollingBack
                )
            })
        })
    }

    /// The name of the wave environment `i` is in.
    fn wave_name(&self, i: usize) -> Text {
        self.plan.waves[self.wave_of[&i]].name.as_str().into()
    }

    /// The name of environment `i`.
    fn env_name(&self, i: usize) -> Text {
        self.ctx.intent.environments[i].name.as_str().into()
    }

    /// The index of the service called `name`.
    fn service_index(&self, name: &str) -> Option<usize> {
        self.ctx.intent.services.iter().position(|s| s.name == name)
    }

    fn failed_envs(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .status
            .iter()
            .filter(|(_, s)| **s == EnvStatus::Failed)
            .map(|(i, _)| self.ctx.intent.environments[i].name.clone())
            .collect();
        v.sort();
        v
    }

    /// Keeps the failure counters in step with every status change.
    fn set_status(&mut self, i: usize, new: EnvStatus) {
        let old = self.status.insert(i, new).unwrap_or(EnvStatus::Pending);
        let w = self.wave_of[&i];
        if old == EnvStatus::Failed && new != EnvStatus::Failed {
            self.failed_in_wave[w] -= 1;
            self.failed_total -= 1;
        }
        if new == EnvStatus::Failed && old != EnvStatus::Failed {
            self.failed_in_wave[w] += 1;
            self.failed_total += 1;
        }
    }

    fn finish_env(&mut self, i: usize, steps: Vec<StepState>) {
        if self.stop == Some(Stop::Interrupt) {
            self.finished_since_interrupt += 1;
        }
        for (s, step) in steps.iter().enumerate() {
            if matches!(step, StepState::Succeeded | StepState::Failed) {
                self.attempted.insert(i, s);
            }
        }
        // Its run was cancelled for a rollback: now that nothing of it runs, roll back what
        // it changed (if it changed nothing, the rollback has nothing to apply: it is back
        // all the same, and never rolled forward again).
        let transient = self.ctx.take_transient_failure(i);
        self.awaiting_requeue.remove(&i);
        if self.rollback_when_stopped.remove(&i) {
            self.ctx.set_cancelled(i, false);
            self.steps.insert(i, steps);
            if let Err(why) = self.start_rollback(i) {
                self.rollback_failed_outright(i, why);
            }
            return;
        }
        let failed = steps
            .iter()
            .any(|s| matches!(s, StepState::Failed | StepState::Blocked));
        let status = if failed && transient && self.may_requeue(i) {
            // Tried again after the rest of its wave, so a cause that passes can clear.
            // Until then it counts against the budgets as failed: a bad release still
            // halts after as many environments as they allow.
            let requeued = self.requeued.entry(i).or_insert(0);
            *requeued += 1;
            self.awaiting_requeue.insert(i);
            self.emit(EventKind::EnvRetried {
                wave: self.wave_name(i),
                env: self.env_name(i),
                by: format!(
                    "flotilla (requeue_failed, {} of {})",
                    self.requeued[&i], self.plan.requeue_failed
                ),
            });
            let steps = steps
                .into_iter()
                .map(|s| match s {
                    StepState::Failed | StepState::Blocked => StepState::Pending,
                    s => s,
                })
                .collect::<Vec<_>>();
            self.steps.insert(i, steps);
            self.queue.push_back(i);
            self.set_status(i, EnvStatus::Pending);
            return;
        } else if failed {
            EnvStatus::Failed
        } else if steps.iter().all(|s| *s == StepState::Succeeded) {
            EnvStatus::Succeeded
        } else {
            // Stopped before finishing: it goes back to the queue if the rollout continues.
            self.queue.push_back(i);
            EnvStatus::Pending
        };
        self.steps.insert(i, steps);
        self.settle_status(i, status);
    }

    /// Whether environment `i`, failed, may go to the back of its wave once more: while the
    /// rollout goes on, it has requeues left, and counting it as failed stays within the
    /// budgets (a failure beyond them halts at once, as without requeues).
    fn may_requeue(&self, i: usize) -> bool {
        if self.stop.is_some()
            || self.requeued.get(&i).copied().unwrap_or(0) >= self.plan.requeue_failed
        {
            return false;
        }
        let w = self.wave_of[&i];
        let (in_wave, total) = self.counted_failures();
        in_wave[w] < self.plan.waves[w].allowed_failures && total < self.max_failures
    }

    /// Sets the status an environment's run ended with; a failure may halt the rollout.
    fn settle_status(&mut self, i: usize, status: EnvStatus) {
        self.set_status(i, status);
        if status != EnvStatus::Failed {
            self.accepted.remove(&i);
        }
        if status == EnvStatus::Failed && self.stop.is_none() {
            if let Some(reason) = self.over_budget() {
                self.stop = Some(Stop::Halt { reason });
                self.state.send_replace(RunState::Stopping);
            }
        }
    }

    /// A rollback task ended: the environment is rolled back, or failed again.
    fn rollback_joined(
        &mut self,
        joined: Option<Result<(tokio::task::Id, RollbackEnd), tokio::task::JoinError>>,
    ) {
        let (i, ok) = match joined {
            Some(Ok((id, (i, ok, back)))) => {
                self.rollback_task_env.remove(&id);
                let back: Vec<usize> = back.iter().filter_map(|n| self.service_index(n)).collect();
                if let Some(plan) = self.rollback_of.get_mut(&i) {
                    plan.done.extend(back);
                }
                (i, ok)
            }
            Some(Err(e)) => {
                if let Some(i) = self.rollback_task_env.remove(&e.id()) {
                    self.rollback_failed_outright(
                        i,
                        "internal error: the task rolling back this environment panicked".into(),
                    );
                }
                return;
            }
            None => return,
        };
        if ok {
            self.rollback_of.remove(&i);
            self.settle_status(i, EnvStatus::RolledBack);
        } else {
            self.settle_status(i, EnvStatus::Failed);
        }
    }

    /// A rollback failed as a whole, not at a service: it could not start (decided before a
    /// restart, or before a run stopped), or its task panicked. The environment is failed,
    /// and says why.
    fn rollback_failed_outright(&mut self, i: usize, why: String) {
        self.emit(EventKind::RollbackFailed {
            wave: self.wave_name(i),
            env: self.env_name(i),
            service: Text::default(),
            error: why,
        });
        self.settle_status(i, EnvStatus::Failed);
    }

    /// The release a rollback goes back to: `to`, or the one before the rollout's.
    fn rollback_release(&self, to: Option<&str>) -> Result<usize, String> {
        let releases = &self.ctx.intent.releases;
        let current = &releases[self.ctx.release].name;
        match to {
            Some(name) => match releases.iter().position(|r| r.name == name) {
                Some(r) if r == self.ctx.release => {
                    Err(format!("`{name}` is the release being rolled out"))
                }
                Some(r) => Ok(r),
                None => {
                    let names: Vec<&str> = releases.iter().map(|r| r.name.as_str()).collect();
                    Err(format!(
                        "no release `{name}` in releases/ (there are: {})",
                        names.join(", ")
                    ))
                }
            },
            None => self.ctx.release.checked_sub(1).ok_or_else(|| {
                format!("no release before `{current}` in releases/ to roll back to; name one")
            }),
        }
    }

    /// Whether this rollout changed (or tried to change) service `s` of environment `i`.
    /// Services it never touched stay as they are: the environment may run a release older
    /// than the one a rollback goes back to.
    fn changed(&self, i: usize, s: usize) -> bool {
        self.attempted.contains(i, s)
            || matches!(self.steps[&i][s], StepState::Succeeded | StepState::Failed)
    }

    /// Whether this rollout changed (or tried to change) anything in environment `i`.
    fn touched(&self, i: usize) -> bool {
        (0..self.steps[&i].len()).any(|s| self.changed(i, s))
    }

    /// The services of environment `i` this rollout changed (or tried to) that may go back,
    /// in rollback order.
    fn rollback_services(&self, i: usize) -> Vec<usize> {
        self.rollback_order
            .iter()
            .copied()
            .filter(|&s| !self.ctx.intent.services[s].forward_only && self.changed(i, s))
            .collect()
    }

    /// Why environment `i` cannot be rolled back now, if it cannot.
    fn cannot_roll_back(&self, i: usize) -> Option<String> {
        let name = &self.ctx.intent.environments[i].name;
        match self.status.get(&i) {
            None => return Some(format!("`{name}` is not part of this rollout")),
            // Its run is stopped after the steps in flight, then it is rolled back.
            Some(EnvStatus::Running) if self.rollback_when_stopped.contains(&i) => {
                return Some(format!("`{name}` is already to be rolled back"))
            }
            Some(EnvStatus::Running) => return None,
            Some(EnvStatus::RollingBack) => {
                return Some(format!("`{name}` is already being rolled back"))
            }
            Some(EnvStatus::RolledBack) => return Some(format!("`{name}` is already rolled back")),
            Some(_) => {}
        }
        if !self.touched(i) {
            return Some(format!(
                "`{name}` has not been changed by this rollout; nothing to roll back"
            ));
        }
        if self.rollback_services(i).is_empty() {
            return Some(format!(
                "`{name}` changed only forward-only services, which are never rolled back"
            ));
        }
        None
    }

    /// Records the rollback decided for environment `i` (in `rollback_of`) and starts it;
    /// it applies nothing until the record is durable.
    fn start_rollback(&mut self, i: usize) -> Result<(), String> {
        let Some(mut plan) = self.rollback_of.get(&i).cloned() else {
            return Err("internal error: no rollback was decided for it".into());
        };
        let order = plan
            .services
            .get_or_insert_with(|| self.rollback_services(i))
            .clone();
        let by = plan.by.clone();
        let intent = self.ctx.intent.clone();
        let env = &intent.environments[i];
        let release = &intent.releases[plan.to];
        // An adopted fix stays whatever the release: the layer goes back with it.
        let emergency = self
            .emergency
            .get(&i)
            .or_else(|| intent.emergency(&env.name));
        let desired = crate::intent::layers::desired_with(&intent, release, env, emergency);
        // The record names the whole rollback; only what is not back yet is applied.
        let mut services = Vec::new();
        let mut to_apply = Vec::new();
        for s in order {
            let name = &intent.services[s].name;
            let Some(d) = desired.services.get(name) else {
                return Err(format!(
                    "release `{}` has no version of service `{name}`",
                    release.name
                ));
            };
            let req = crate::drivers::ApplyRequest {
                service: name.clone(),
                version: d.version.clone(),
                config: d.config.clone(),
                revision: d.revision.clone(),
                secrets: d.secrets.clone(),
            };
            if !plan.done.contains(&s) {
                to_apply.push(req.clone());
            }
            services.push(req);
        }
        let wave: Arc<str> = self.plan.waves[self.wave_of[&i]].name.as_str().into();
        let recorded = self.ctx.events.emit_durable(Event::new(
            self.ctx.clock.now(),
            EventKind::RollbackStarted {
                wave: Text::from(&*wave),
                env: env.name.as_str().into(),
                to: release.name.clone(),
                services: services.iter().map(|r| r.service.clone()).collect(),
                revisions: services
                    .iter()
                    .map(|r| (r.service.clone(), r.revision.clone()))
                    .collect(),
                by: by.clone(),
            },
        ));
        self.set_status(i, EnvStatus::RollingBack);
        self.accepted.remove(&i);
        self.rollback_of.insert(i, plan);
        let handle = self.rollbacks.spawn(step::rollback_env(
            self.ctx.clone(),
            step::Rollback {
                env: i,
                wave,
                to: release.name.clone(),
                by,
                services: to_apply,
                recorded,
            },
        ));
        self.rollback_task_env.insert(handle.id(), i);
        Ok(())
    }

    /// A task running environment `i` panicked: its outcome is unknown, so it counts as
    /// failed (never silently lost, never retried in a loop).
    fn env_panicked(&mut self, i: usize) {
        let wave = self.wave_name(i);
        self.emit(EventKind::StepFailed {
            wave,
            env: self.env_name(i),
            service: Text::default(),
            error: "internal error: the task running this environment panicked".into(),
            class: crate::drivers::ErrorClass::Permanent,
            attempts: 0,
            output: None,
        });
        if let Some(steps) = self.steps.get_mut(&i) {
            for s in steps.iter_mut().filter(|s| **s == StepState::Pending) {
                *s = StepState::Failed;
            }
        }
        let steps = self.steps.get(&i).cloned().unwrap_or_default();
        self.finish_env(i, steps);
    }

    /// Why the failures so far exceed a budget, if they do. Accepted failures do not count.
    fn over_budget(&self) -> Option<String> {
        let (in_wave, total) = self.counted_failures();
        for (w, wave) in self.plan.waves.iter().enumerate() {
            let failed = in_wave[w];
            if failed > wave.allowed_failures {
                return Some(format!(
                    "{failed} failed in wave `{}`, its budget ({}) allows {}",
                    wave.name, wave.failure_budget, wave.allowed_failures
                ));
            }
        }
        let failed = total;
        (failed > self.max_failures).then(|| {
            format!(
                "{failed} failed in the rollout, max_failures allows {}",
                self.max_failures
            )
        })
    }

    /// The failures that count against the budgets, per wave and in all: the failed
    /// environments nobody accepted, and those failed once that wait for their requeue.
    fn counted_failures(&self) -> (Vec<usize>, usize) {
        let mut in_wave = self.failed_in_wave.clone();
        let mut total = self.failed_total;
        for i in &self.accepted {
            if self.status.get(i) == Some(&EnvStatus::Failed) {
                in_wave[self.wave_of[i]] -= 1;
                total -= 1;
            }
        }
        for i in &self.awaiting_requeue {
            in_wave[self.wave_of[i]] += 1;
            total += 1;
        }
        (in_wave, total)
    }

    /// Clears a halt once retries or skips brought the failures back within budget.
    fn clear_halt_if_within_budget(&mut self, by: &str) {
        if let Some(Stop::Halt { .. }) = self.stop {
            if self.over_budget().is_none() {
                self.stop = None;
                self.publish_state();
                self.emit(EventKind::RolloutResumed {
                    by: by.to_string(),
                    accepted: Vec::new(),
                });
                // The halt is over, a pause (a rollback's, say) is not.
                if self.paused {
                    self.emit(EventKind::RolloutPaused { by: by.to_string() });
                }
            }
        }
    }

    fn publish_state(&mut self) {
        // A halt lifted may be announced again when one comes back.
        if self.stop.is_none() {
            self.halt_announced = false;
        }
        let s = if self.stop.is_some() {
            RunState::Stopping
        } else if self.paused {
            RunState::Paused
        } else {
            RunState::Running
        };
        self.state.send_replace(s);
    }

    /// Takes environment `i`'s emergency layer from an adopt's `commit`: the rollout then
    /// applies the adopted values there.
    fn take_emergency(&mut self, i: usize, commit: &str) -> Result<(), String> {
        let Some(load) = &self.load_emergency else {
            return Err("this engine cannot read adopt commits".into());
        };
        let env = self.env_name(i);
        let short = &commit[..7.min(commit.len())];
        match load(commit, &env) {
            Ok(Some(layer)) => {
                self.emergency.insert(i, layer);
                Ok(())
            }
            Ok(None) => Err(format!("commit {short} has no emergency layer for `{env}`")),
            Err(why) => Err(format!("commit {short} cannot be read: {why}")),
        }
    }

    fn reject(&self, cmd: &Command, reason: impl Into<String>) {
        self.emit(EventKind::CommandRejected {
            command: cmd.name().into(),
            reason: reason.into(),
            by: cmd.by().into(),
        });
    }

    fn on_command(&mut self, cmd: Option<Command>) {
        if let Some(Command::Received {
            id,
            origin,
            command,
        }) = cmd
        {
            // The receipt and what the command did are durable together or not at all. The
            // group ends however handling ends (a panic too), so the journal never waits on
            // it for ever.
            struct Group(Arc<dyn EventSink>);
            impl Drop for Group {
                fn drop(&mut self) {
                    self.0.end_group();
                }
            }
            self.ctx.events.begin_group();
            let _group = Group(self.ctx.events.clone());
            self.emit(EventKind::CommandReceived {
                id,
                command: command.name().into(),
                by: command.by().into(),
                origin,
            });
            self.on_command(Some(*command));
            return;
        }
        let Some(cmd) = cmd else {
            self.commands_open = false;
            // Nobody can resume any more: stop rather than wait paused forever.
            if self.paused {
                self.paused = false;
                self.stop.get_or_insert(Stop::Interrupt);
                self.publish_state();
            }
            return;
        };
        match &cmd {
            Command::Approve { wave, by, note } => {
                let Some(w) = self.plan.waves.iter().position(|x| &x.name == wave) else {
                    let names: Vec<&str> =
                        self.plan.waves.iter().map(|w| w.name.as_str()).collect();
                    return self.reject(
                        &cmd,
                        format!("no wave `{wave}` (waves: {})", names.join(", ")),
                    );
                };
                let needed = match self.plan.waves[w].gate {
                    Gate::Approval { approvers } => approvers as usize,
                    Gate::Auto => {
                        return self.reject(&cmd, format!("wave `{wave}` has no approval gate"))
                    }
                };
                if w < self.current_wave {
                    return self.reject(&cmd, format!("wave `{wave}` is already past its gate"));
                }
                let blank = note.as_deref().is_none_or(|n| n.trim().is_empty());
                if self.plan.waves[w].note_required && blank {
                    return self.reject(
                        &cmd,
                        format!("wave `{wave}` takes an approval with a note saying why: `flotilla approve {wave} --note \"...\"`"),
                    );
                }
                if !self.approvals[w].insert(by.clone()) {
                    return self.reject(
                        &cmd,
                        format!("{by} already approved wave `{wave}`; approvals must come from distinct people"),
                    );
                }
                self.emit(EventKind::GateApproved {
                    wave: wave.as_str().into(),
                    by: by.clone(),
                    note: note.clone(),
                    approvals: self.approvals[w].len(),
                    needed,
                });
            }
            Command::Pause { by } => {
                if self.paused {
                    return self.reject(&cmd, "the rollout is already paused");
                }
                self.paused = true;
                self.publish_state();
                self.emit(EventKind::RolloutPaused { by: by.clone() });
            }
            Command::Resume { by } => {
                let mut accepted = Vec::new();
                if let Some(Stop::Halt { .. }) = self.stop {
                    // Resuming a halt is the operator accepting the failures so far; those
                    // waiting for their requeue run again without counting.
                    self.awaiting_requeue.clear();
                    let mut failed: Vec<usize> = self
                        .status
                        .iter()
                        .filter(|(i, s)| **s == EnvStatus::Failed && !self.accepted.contains(i))
                        .map(|(i, _)| i)
                        .collect();
                    failed.sort_unstable();
                    accepted = failed
                        .iter()
                        .map(|&i| self.ctx.intent.environments[i].name.clone())
                        .collect();
                    self.accepted.extend(failed);
                    self.stop = None;
                } else if !self.paused {
                    return self.reject(&cmd, "the rollout is not paused or halted");
                }
                self.paused = false;
                self.publish_state();
                self.emit(EventKind::RolloutResumed {
                    by: by.clone(),
                    accepted,
                });
            }
            Command::Abort { by } => {
                self.stop = Some(Stop::Abort { by: by.clone() });
                self.paused = false;
                self.publish_state();
                self.emit(EventKind::AbortRequested { by: by.clone() });
            }
            // Unwrapped above.
            Command::Received { .. } => {}
            Command::Interrupt => {
                // An abort or a halt already stops new work and says more than "interrupted".
                self.interrupt_requested = true;
                if self.stop.is_none() {
                    self.stop = Some(Stop::Interrupt);
                    self.finished_since_interrupt = 0;
                }
                self.paused = false;
                self.publish_state();
            }
            Command::Retry { envs, by } => {
                let failed: Vec<usize> = if envs.is_empty() {
                    let mut f: Vec<usize> = self
                        .status
                        .iter()
                        .filter(|(_, s)| **s == EnvStatus::Failed)
                        .map(|(i, _)| i)
                        .collect();
                    f.sort_unstable();
                    f
                } else {
                    let mut ids = Vec::new();
                    for name in envs {
                        match self.env_index.get(name) {
                            Some(&i) if self.status.get(&i) == Some(&EnvStatus::Failed) => {
                                ids.push(i)
                            }
                            Some(_) => {
                                return self.reject(&cmd, format!("`{name}` has not failed"))
                            }
                            None => return self.reject(&cmd, format!("no environment `{name}`")),
                        }
                    }
                    ids
                };
                if failed.is_empty() {
                    return self.reject(&cmd, "no failed environments to retry");
                }
                let mut retried = Vec::new();
                for i in failed {
                    // A failed rollback is retried as a rollback, not as the release.
                    if self.rollback_of.contains_key(&i) {
                        self.emit(EventKind::EnvRetried {
                            wave: self.wave_name(i),
                            env: self.env_name(i),
                            by: by.clone(),
                        });
                        if let Err(why) = self.start_rollback(i) {
                            self.reject(&cmd, why);
                        }
                        continue;
                    }
                    if let Some(steps) = self.steps.get_mut(&i) {
                        for s in steps.iter_mut() {
                            if matches!(s, StepState::Failed | StepState::Blocked) {
                                *s = StepState::Pending;
                            }
                        }
                    }
                    self.set_status(i, EnvStatus::Pending);
                    self.accepted.remove(&i);
                    retried.push(i);
                    self.emit(EventKind::EnvRetried {
                        wave: self.wave_name(i),
                        env: self.env_name(i),
                        by: by.clone(),
                    });
                }
                // What was asked for goes first, ahead of environments not started yet.
                for &i in retried.iter().rev() {
                    self.queue.push_front(i);
                }
                self.clear_halt_if_within_budget(by);
            }
            Command::Release { env, decision, by } => {
                let Some(&i) = self.env_index.get(env) else {
                    return self.reject(&cmd, format!("no environment `{env}`"));
                };
                if self.released.contains(&i) {
                    return self.reject(&cmd, format!("`{env}` was released already"));
                }
                let held = match self.status.get(&i) {
                    Some(EnvStatus::Held) => true,
                    // Not reached yet: the decision stands when it is.
                    Some(EnvStatus::Pending) => false,
                    Some(EnvStatus::Running) => {
                        return self.reject(&cmd, format!("`{env}` is being rolled out already"))
                    }
                    None => {
                        return self.reject(&cmd, format!("`{env}` is not part of this rollout"))
                    }
                    Some(s) => {
                        return self.reject(&cmd, format!("`{env}` is {s:?} here").to_lowercase())
                    }
                };
                let commit = match decision {
                    Decision::Adopt { commit } => {
                        if let Err(why) = self.take_emergency(i, commit) {
                            return self.reject(&cmd, why);
                        }
                        Some(commit.clone())
                    }
                    Decision::Revert | Decision::Accept => None,
                };
                self.released.insert(i);
                // An intent recorded before the decision was rendered without it: it is
                // recorded again when the environment starts.
                self.intended.remove(&i);
                for (envs, _) in &mut self.intents_ahead {
                    envs.retain(|e| *e != i);
                }
                self.emit(EventKind::EnvReleased {
                    wave: self.wave_name(i),
                    env: env.as_str().into(),
                    how: decision.name().into(),
                    by: by.clone(),
                    commit,
                });
                if held {
                    self.set_status(i, EnvStatus::Pending);
                    self.queue.push_back(i);
                }
            }
            Command::Skip { env, reason, by } => {
                if reason.trim().is_empty() {
                    return self.reject(&cmd, "a skip needs a reason for the record");
                }
                let Some(&i) = self.env_index.get(env) else {
                    return self.reject(&cmd, format!("no environment `{env}`"));
                };
                match self.status.get(&i) {
                    Some(EnvStatus::Pending | EnvStatus::Failed | EnvStatus::Held) => {}
                    Some(EnvStatus::Running) => {
                        return self.reject(
                            &cmd,
                            format!("`{env}` is running; pause and wait for it to finish first"),
                        )
                    }
                    Some(EnvStatus::RollingBack) => {
                        return self.reject(&cmd, format!("`{env}` is being rolled back"))
                    }
                    Some(EnvStatus::RolledBack) => {
                        return self.reject(&cmd, format!("`{env}` is already rolled back"))
                    }
                    Some(s) => {
                        return self
                            .reject(&cmd, format!("`{env}` is already {s:?}").to_lowercase())
                    }
                    None => {
                        return self.reject(&cmd, format!("`{env}` is not part of this rollout"))
                    }
                }
                self.set_status(i, EnvStatus::Skipped);
                // Skipping a failed rollback settles it: it is not retried as one.
                self.rollback_of.remove(&i);
                let wave = self.wave_name(i);
                self.emit(EventKind::EnvSkipped {
                    wave,
                    env: env.as_str().into(),
                    reason: reason.clone(),
                    by: by.clone(),
                });
                // A skip settles one environment; it does not lift a halt (resume does).
            }
            Command::Rollback { envs, wave, to, by } => {
                let to = match self.rollback_release(to.as_deref()) {
                    Ok(to) => to,
                    Err(why) => return self.reject(&cmd, why),
                };
                let targets = match self.rollback_targets(envs, wave.as_deref()) {
                    Ok(targets) => targets,
                    Err(why) => return self.reject(&cmd, why),
                };
                let mut cancelled = false;
                for i in targets {
                    self.rollback_of.insert(
                        i,
                        RollbackPlan {
                            to,
                            by: by.clone(),
                            services: None,
                            done: HashSet::new(),
                        },
                    );
                    if self.status.get(&i) == Some(&EnvStatus::Running) {
                        // Stop its run after the steps in flight; the rollback follows. The
                        // request is journaled so that a restart in between still does it.
                        self.ctx.set_cancelled(i, true);
                        self.rollback_when_stopped.insert(i);
                        cancelled = true;
                        self.emit(EventKind::RollbackRequested {
                            wave: self.wave_name(i),
                            env: self.env_name(i),
                            to: self.ctx.intent.releases[to].name.clone(),
                            by: by.clone(),
                        });
                    } else if let Err(why) = self.start_rollback(i) {
                        self.rollback_of.remove(&i);
                        return self.reject(&cmd, why);
                    }
                }
                if cancelled {
                    // Wake the runs waiting on a pause or a backoff to see they are cancelled.
                    self.state.send_modify(|_| {});
                }
                // The release is in doubt: nothing more of it starts until someone decides
                // (resume carries on, abort ends it). A halt already holds everything and
                // stays a halt: rolled back environments no longer count as failed, which
                // must not resume it alone.
                if !self.paused && !matches!(self.stop, Some(Stop::Halt { .. })) {
                    self.paused = true;
                    self.publish_state();
                    self.emit(EventKind::RolloutPaused { by: by.clone() });
                }
            }
        }
    }

    /// The environments a rollback command names: `envs`, or those of `wave` this rollout
    /// changed and did not roll back yet. All or nothing: one that cannot go back refuses
    /// the command.
    fn rollback_targets(&self, envs: &[String], wave: Option<&str>) -> Result<Vec<usize>, String> {
        let Some(wave) = wave else {
            if envs.is_empty() {
                return Err("name the environments to roll back, or a wave".into());
            }
            let mut targets = Vec::new();
            for name in envs {
                let Some(&i) = self.env_index.get(name) else {
                    return Err(format!("no environment `{name}`"));
                };
                if let Some(why) = self.cannot_roll_back(i) {
                    return Err(why);
                }
                if !targets.contains(&i) {
                    targets.push(i);
                }
            }
            return Ok(targets);
        };
        let Some(w) = self.plan.waves.iter().position(|x| x.name == wave) else {
            let names: Vec<&str> = self.plan.waves.iter().map(|w| w.name.as_str()).collect();
            return Err(format!("no wave `{wave}` (waves: {})", names.join(", ")));
        };
        let targets: Vec<usize> = self.members[w]
            .iter()
            .copied()
            .filter(|&i| self.cannot_roll_back(i).is_none())
            .collect();
        if targets.is_empty() {
            // Say the most telling reason: forward-only changes are easy to forget.
            let forward_only = self.members[w]
                .iter()
                .any(|&i| self.touched(i) && self.rollback_services(i).is_empty());
            return Err(if forward_only {
                let names: Vec<&str> = self
                    .ctx
                    .intent
                    .services
                    .iter()
                    .filter(|s| s.forward_only)
                    .map(|s| s.name.as_str())
                    .collect();
                format!(
                    "nothing in wave `{wave}` to roll back: it changed only forward-only services ({}), which are never rolled back",
                    names.join(", ")
                )
            } else {
                format!(
                    "nothing in wave `{wave}` to roll back: no environment there was changed by this rollout and not rolled back yet"
                )
            });
        }
        Ok(targets)
    }
}
