//! Running one environment: its services in dependency order, each step applied and verified
//! with retries, backoff and a timeout.

use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;
use tokio::sync::watch;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;

use super::clock::Clock;
use super::events::{Event, EventKind, Text};
use super::sink::EventSink;
use crate::drivers::{ApplyRequest, Driver, DriverError, ErrorClass, Health, Printed};
use crate::hash::{stable_hash, unit};
use crate::intent::layers::Desired;
use crate::intent::Intent;

/// Where one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Pending,
    Succeeded,
    Failed,
    /// Not attempted because a dependency failed in this environment.
    Blocked,
}

/// Whether new steps may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
    /// Halting, aborting or interrupted: nothing new starts, in-flight steps finish.
    Stopping,
}

/// What every environment task shares.
pub struct StepContext {
    pub intent: Arc<Intent>,
    pub release: usize,
    pub driver: Arc<dyn Driver>,
    pub clock: Arc<dyn Clock>,
    pub events: Arc<dyn EventSink>,
    pub retries: u32,
    pub backoff: Duration,
    pub step_timeout: Duration,
    pub seed: u64,
    /// Per service (intent order), the indexes of the services it depends on.
    pub deps: Vec<Vec<usize>>,
    /// Environments told to start no further step (they are to be rolled back): their
    /// runs end after the steps in flight, however the rollout stands.
    pub cancelled: std::sync::Mutex<std::collections::HashSet<usize>>,
    /// Per environment whose steps failed in its last run: whether every failure was one
    /// that outlasted its retries (transient, or a timeout) (a cause that may clear), for
    /// `requeue_failed`.
    pub failed_transiently: std::sync::Mutex<std::collections::HashMap<usize, bool>>,
}

/// One service's retries, backoff and timeouts: its own where it sets them, else the
/// rollout's.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub retries: u32,
    pub backoff: Duration,
    pub step_timeout: Duration,
    pub health_timeout: Option<Duration>,
}

impl StepContext {
    /// The limits a step of `service` runs under.
    pub fn limits(&self, service: &str) -> Limits {
        let own = self
            .intent
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.strategy)
            .unwrap_or_default();
        Limits {
            retries: own.retries.unwrap_or(self.retries),
            backoff: own.backoff.unwrap_or(self.backoff),
            step_timeout: own.step_timeout.unwrap_or(self.step_timeout),
            health_timeout: own.health_timeout,
        }
    }

    fn cancelled(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<usize>> {
        // Each change is one insert or remove, so a poisoned set is still whole.
        self.cancelled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether environment `env` was told to start no further step.
    pub fn is_cancelled(&self, env: usize) -> bool {
        self.cancelled().contains(&env)
    }

    /// Tells environment `env`'s run to start no further step (`true`), or lets it again.
    pub fn set_cancelled(&self, env: usize, cancelled: bool) {
        if cancelled {
            self.cancelled().insert(env);
        } else {
            self.cancelled().remove(&env);
        }
    }

    /// Notes that a step of `env` failed, and whether transiently.
    fn note_failure(&self, env: usize, transient: bool) {
        let mut seen = self
            .failed_transiently
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let all = seen.entry(env).or_insert(true);
        *all &= transient;
    }

    /// Whether every step of `env` that failed in its last run failed transiently after its
    /// retries; forgets it.
    pub fn take_transient_failure(&self, env: usize) -> bool {
        self.failed_transiently
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&env)
            .unwrap_or(false)
    }

    /// Emits an event stamped with the context's clock.
    pub fn emit(&self, kind: EventKind) {
        self.events.emit(Event::new(self.clock.now(), kind));
    }
}

/// Whether steps of `env` may start now: None while paused, false when the rollout is
/// stopping or the environment's run was cancelled.
fn may_start_now(
    ctx: &StepContext,
    env: usize,
    state: &mut watch::Receiver<RunState>,
) -> Option<bool> {
    let current = *state.borrow_and_update();
    if ctx.is_cancelled(env) {
        return Some(false);
    }
    match current {
        RunState::Running => Some(true),
        RunState::Stopping => Some(false),
        RunState::Paused => None,
    }
}

/// Waits until steps of `env` may start; false when the rollout is stopping or the
/// environment's run was cancelled (the engine wakes every waiter when it cancels one).
async fn may_start(ctx: &StepContext, env: usize, state: &mut watch::Receiver<RunState>) -> bool {
    loop {
        if let Some(go) = may_start_now(ctx, env, state) {
            return go;
        }
        if state.changed().await.is_err() {
            return false;
        }
    }
}

/// How an environment's run ended.
#[derive(Debug)]
pub enum EnvEnd {
    /// Its steps ran, or some did: every step's state.
    Ran(Vec<StepState>),
    /// It changed out of band and nobody accepted it: nothing was applied.
    Held,
}

/// Runs environment `env` as [`run_env`] does, but with `guard` (what flotilla last
/// applied, and the drift accepted) observes it first: if it changed out of band, nothing
/// is applied and it is held, with a `drift_detected` per service and an `env_held`. One
/// that cannot be observed is not held: drift cannot be told, and its apply will say more.
pub async fn guard_then_run(
    ctx: Arc<StepContext>,
    env: usize,
    wave: Arc<str>,
    steps: Vec<StepState>,
    desired: Desired,
    state: watch::Receiver<RunState>,
    guard: Option<Arc<crate::drift::scan::Known>>,
) -> (usize, EnvEnd) {
    // Both boxed to keep the environment's task small (see `run_step`).
    if let Some(known) = guard {
        if Box::pin(held(&ctx, env, &wave, &desired, &known)).await {
            return (env, EnvEnd::Held);
        }
    }
    let (env, steps) = Box::pin(run_env(ctx, env, wave, steps, desired, state)).await;
    (env, EnvEnd::Ran(steps))
}

/// Whether environment `env` drifted from what flotilla last applied (and nobody accepted
/// it); if so, says so in the journal.
async fn held(
    ctx: &StepContext,
    env: usize,
    wave: &str,
    desired: &Desired,
    known: &crate::drift::scan::Known,
) -> bool {
    let environment = &ctx.intent.environments[env];
    let Some(live) = observed_within(ctx, environment).await else {
        return false;
    };
    let report = crate::drift::scan::compare_rendered(
        &ctx.intent,
        &environment.name,
        &desired.services,
        known,
        Ok(live),
    );
    let drifted: Vec<_> = report.services.iter().filter(|s| s.blocking()).collect();
    if drifted.is_empty() {
        return false;
    }
    for s in &drifted {
        let keys: Vec<String> = s.comparison.drift.iter().map(|c| c.key.clone()).collect();
        // Reported already (by a scan, or by this rollout before a restart): not again.
        let key = (environment.name.clone(), s.service.clone());
        if known.reported.get(&key) == Some(&keys) {
            continue;
        }
        ctx.emit(EventKind::DriftDetected {
            env: key.0.into(),
            service: key.1.into(),
            keys,
        });
    }
    ctx.emit(EventKind::EnvHeld {
        wave: Text::from(wave),
        env: environment.name.as_str().into(),
        services: drifted.iter().map(|s| s.service.clone()).collect(),
    });
    true
}

/// Runs the not-yet-succeeded steps of environment `env` and returns every step's state.
/// Steps left `Pending` were not started because the rollout paused into a stop.
/// `desired` is the environment's rendered desired state, whose revisions the engine has
/// already recorded durably (the write-ahead intent) before calling this.
pub async fn run_env(
    ctx: Arc<StepContext>,
    env: usize,
    wave: Arc<str>,
    mut steps: Vec<StepState>,
    mut desired: Desired,
    mut state: watch::Receiver<RunState>,
) -> (usize, Vec<StepState>) {
    let intent = &ctx.intent;
    let environment = &intent.environments[env];
    let n = steps.len();
    let mut started = vec![false; n];
    let mut running = FuturesUnordered::new();
    let mut stopping = false;
    loop {
        // Whether a step is ready but waits for a pause to end.
        let mut held_back = false;
        // Block the dependents of failures, transitively, before starting anything.
        let mut changed = true;
        while changed {
            changed = false;
            for s in 0..n {
                if steps[s] != StepState::Pending || started[s] {
                    continue;
                }
                if let Some(&d) = ctx.deps[s]
                    .iter()
                    .find(|&&d| matches!(steps[d], StepState::Failed | StepState::Blocked))
                {
                    steps[s] = StepState::Blocked;
                    changed = true;
                    ctx.emit(EventKind::StepBlocked {
                        wave: Text::from(&*wave),
                        env: environment.name.as_str().into(),
                        service: intent.services[s].name.as_str().into(),
                        dependency: intent.services[d].name.clone(),
                    });
                }
            }
        }
        for s in 0..n {
            let ready = steps[s] == StepState::Pending
                && !started[s]
                && ctx.deps[s]
                    .iter()
                    .all(|&d| steps[d] == StepState::Succeeded);
            if !ready || stopping {
                continue;
            }
            match may_start_now(&ctx, env, &mut state) {
                Some(true) => {}
                Some(false) => {
                    stopping = true;
                    continue;
                }
                // Paused: it starts once the rollout goes on (below).
                None => {
                    held_back = true;
                    continue;
                }
            }
            started[s] = true;
            let service = &intent.services[s].name;
            // Each service's desired state is applied once: moved into its request, not
            // copied (a config is a tree of allocations).
            let d = desired
                .services
                .remove(service)
                .expect("every service is rendered");
            let req = ApplyRequest {
                service: service.clone(),
                version: d.version,
                config: d.config,
                revision: d.revision,
                secrets: d.secrets,
            };
            // Run here, in the environment's task, not as tasks of their own: a task is an
            // aligned allocation, which glibc's malloc serves slowly, and four per
            // environment were a fifth of a rollout's time.
            let step = AssertUnwindSafe(run_step(
                ctx.clone(),
                env,
                s,
                wave.clone(),
                req,
                state.clone(),
            ));
            running.push(step.catch_unwind().map(move |r| r.map_err(|_| s)));
        }
        if running.is_empty() {
            if !held_back {
                break;
            }
            // Paused with nothing in flight: wait for the rollout to go on or stop.
            if !may_start(&ctx, env, &mut state).await {
                stopping = true;
            }
            continue;
        }
        let next = if held_back {
            // Steps in flight finish during a pause; a change of state may start more.
            tokio::select! {
                next = running.next() => next,
                changed = state.changed() => {
                    if changed.is_err() {
                        stopping = true;
                    }
                    continue;
                }
            }
        } else {
            running.next().await
        };
        match next {
            Some(Ok((s, r))) => {
                steps[s] = r;
                if r == StepState::Pending {
                    // Interrupted between retries: it may be started again later.
                    started[s] = false;
                    stopping = true;
                }
            }
            // A step panicked (a driver bug): its outcome is unknown, so it counts as failed
            // rather than being lost or retried in a loop.
            Some(Err(s)) => {
                steps[s] = StepState::Failed;
                ctx.note_failure(env, false);
                ctx.emit(EventKind::StepFailed {
                    wave: Text::from(&*wave),
                    env: environment.name.as_str().into(),
                    service: intent.services[s].name.as_str().into(),
                    error: "internal error: the driver call panicked".into(),
                    class: ErrorClass::Permanent,
                    attempts: 0,
                    output: None,
                });
            }
            None => break,
        }
    }
    (env, steps)
}

/// Applies and verifies service `s` (`req`), retrying transient failures and timeouts.
/// Takes what it needs by value, as the task it is spawned as: a wrapper holding copies
/// would make the task larger.
async fn run_step(
    ctx: Arc<StepContext>,
    env: usize,
    s: usize,
    wave: Arc<str>,
    req: ApplyRequest,
    state: watch::Receiver<RunState>,
) -> (usize, StepState) {
    let mut state = state;
    // Boxed, and the apply and the retry wait boxed within: inline, they made every step
    // task too large for the allocator's small-chunk path (glibc's malloc consolidates its
    // free lists at each large allocation), a tenth of a rollout at 100,000 environments.
    let attempts = Box::pin(attempt_step(&ctx, env, &wave, &req, &mut state));
    (s, attempts.await)
}

async fn attempt_step(
    ctx: &StepContext,
    env: usize,
    wave: &str,
    req: &ApplyRequest,
    state: &mut watch::Receiver<RunState>,
) -> StepState {
    let environment = &ctx.intent.environments[env];
    let ids = || {
        (
            Text::from(wave),
            Text::from(environment.name.as_str()),
            Text::from(req.service.as_str()),
        )
    };
    let mut attempt = 1;
    loop {
        let (w, e, s) = ids();
        // The environment's `env_started` record, already durable, holds the intent to
        // apply this revision; this event only marks the attempt.
        ctx.emit(EventKind::StepStarted {
            wave: w,
            env: e,
            service: s,
            attempt,
            version: req.version.as_str().into(),
            revision: req.revision.as_str().into(),
        });
        let limits = ctx.limits(&req.service);
        // Boxed to keep the step task small (see `run_step`).
        let error = match Box::pin(apply_and_verify(ctx, environment, req, limits)).await {
            Ok(output) => {
                let (w, e, s) = ids();
                ctx.emit(EventKind::StepSucceeded {
                    wave: w,
                    env: e,
                    service: s,
                    attempts: attempt,
                    version: req.version.as_str().into(),
                    revision: req.revision.as_str().into(),
                    output: output.for_event(),
                });
                return StepState::Succeeded;
            }
            Err(error) => error,
        };
        if error.class == ErrorClass::Permanent || attempt > limits.retries {
            ctx.note_failure(env, error.class != ErrorClass::Permanent);
            let (w, e, s) = ids();
            ctx.emit(EventKind::StepFailed {
                wave: w,
                env: e,
                service: s,
                error: error.message,
                class: error.class,
                attempts: attempt,
                output: error.output.for_event(),
            });
            return StepState::Failed;
        }
        let delay = backoff(ctx, &environment.name, &req.service, attempt, limits);
        let (w, e, s) = ids();
        ctx.emit(EventKind::StepRetrying {
            wave: w,
            env: e,
            service: s,
            attempt,
            error: error.message,
            class: error.class,
            delay_ms: delay.as_millis() as u64,
            output: error.output.for_event(),
        });
        // A stop (halt, abort, Ctrl-C) or a cancelled run cuts the wait short instead of
        // sitting out the backoff.
        // Boxed to keep the step task small (see `run_step`).
        let stopped = Box::pin(async {
            tokio::select! {
                _ = tokio::time::sleep(delay) => false,
                // The engine wakes every waiter when it cancels a run.
                _ = state.wait_for(|s| *s == RunState::Stopping || ctx.is_cancelled(env)) => true,
            }
        })
        .await;
        // A retry is a new start: a pause holds it, a stop abandons it.
        if stopped || !may_start(ctx, env, state).await {
            return StepState::Pending;
        }
        attempt += 1;
    }
}

/// Applies `req` and verifies the service is healthy, within the service's step timeout
/// (and its health check within its health timeout, when it has one).
async fn apply_and_verify(
    ctx: &StepContext,
    environment: &crate::intent::Environment,
    req: &ApplyRequest,
    limits: Limits,
) -> Result<Printed, DriverError> {
    let timed_out = |what: &str, within: Duration| DriverError {
        output: Printed::default(),
        class: ErrorClass::Timeout,
        message: format!(
            "no answer within the {what} of {}",
            humantime::format_duration(within)
        ),
    };
    tokio::time::timeout(limits.step_timeout, async {
        let output = ctx.driver.apply(environment, req).await?;
        let health = ctx.driver.health(environment, &req.service);
        let health = match limits.health_timeout {
            Some(within) => tokio::time::timeout(within, health)
                .await
                .unwrap_or_else(|_| Err(timed_out("health timeout", within))),
            None => health.await,
        };
        match health.map_err(|e| e.with_output(output.clone()))? {
            Health::Healthy => Ok(output),
            Health::Unhealthy(why) => {
                Err(DriverError::transient(format!("unhealthy: {why}")).with_output(output))
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(timed_out("step timeout", limits.step_timeout)))
}

/// One environment's rollback, as the engine hands it to [`rollback_env`].
pub struct Rollback {
    pub env: usize,
    pub wave: Arc<str>,
    /// The release gone back to.
    pub to: String,
    pub by: String,
    /// What to apply, in order: dependents before what they depend on.
    pub services: Vec<ApplyRequest>,
    /// The journal's acknowledgement of the `rollback_started` record.
    pub recorded: super::sink::SinkFuture,
}

/// Puts an environment's services back, one at a time in the order given, each applied and
/// verified with the rollout's retries, backoff and timeout. Nothing is applied before the
/// rollback's record is durable. The environment is observed first: a service that already
/// runs the revision it goes back to (put back before a crash, or never moved) is only
/// verified, not applied again. A pause or a stop does not cut it short: an environment
/// half rolled back is worse than either end. It stops at the first service that cannot be
/// put back. Returns the environment, whether it is fully rolled back, and the services
/// that are back.
pub async fn rollback_env(ctx: Arc<StepContext>, rollback: Rollback) -> (usize, bool, Vec<String>) {
    let Rollback {
        env,
        wave,
        to,
        by,
        services,
        recorded,
    } = rollback;
    let environment = &ctx.intent.environments[env];
    let mut back = Vec::new();
    let failed = |service: &str, error: String, back: Vec<String>| {
        ctx.emit(EventKind::RollbackFailed {
            wave: Text::from(&*wave),
            env: environment.name.as_str().into(),
            service: Text::from(service),
            error,
        });
        (env, false, back)
    };
    if !recorded.await {
        return failed(
            "",
            "the journal could not record the rollback; nothing was applied".into(),
            back,
        );
    }
    // Cannot tell (observe failed): everything is applied, which is safe because applies
    // are idempotent by revision.
    let live = observed_within(&ctx, environment).await.unwrap_or_default();
    for req in services {
        let already = live
            .get(&req.service)
            .is_some_and(|l| l.revision == req.revision)
            && healthy_within(&ctx, environment, &req.service).await;
        let limits = ctx.limits(&req.service);
        let mut attempt = 1;
        loop {
            let outcome = if already {
                Ok(Printed::default())
            } else {
                apply_and_verify(&ctx, environment, &req, limits).await
            };
            let error = match outcome {
                Ok(output) => {
                    ctx.emit(EventKind::StepRolledBack {
                        wave: Text::from(&*wave),
                        env: environment.name.as_str().into(),
                        service: req.service.as_str().into(),
                        version: req.version.as_str().into(),
                        revision: req.revision.as_str().into(),
                        // 0: it was found back, nothing was applied.
                        attempts: if already { 0 } else { attempt },
                        output: output.for_event(),
                    });
                    back.push(req.service.clone());
                    break;
                }
                Err(error) => error,
            };
            if error.class == ErrorClass::Permanent || attempt > limits.retries {
                return failed(&req.service, error.message, back);
            }
            let delay = backoff(&ctx, &environment.name, &req.service, attempt, limits);
            ctx.emit(EventKind::StepRetrying {
                wave: Text::from(&*wave),
                env: environment.name.as_str().into(),
                service: req.service.as_str().into(),
                attempt,
                error: error.message,
                class: error.class,
                delay_ms: delay.as_millis() as u64,
                output: error.output.for_event(),
            });
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
    ctx.emit(EventKind::EnvRolledBack {
        wave: Text::from(&*wave),
        env: environment.name.as_str().into(),
        to,
        by,
    });
    (env, true, back)
}

/// What `environment` runs, if the driver says so within the step timeout (None: cannot
/// tell, so recovery applies again, which applies being idempotent by revision allows).
pub async fn observed_within(
    ctx: &StepContext,
    environment: &crate::intent::Environment,
) -> Option<crate::drivers::LiveState> {
    crate::drift::scan::observe_within(&*ctx.driver, environment, ctx.step_timeout)
        .await
        .ok()
}

/// Whether `service` answers healthy within the step timeout (no answer: not known healthy).
pub async fn healthy_within(
    ctx: &StepContext,
    environment: &crate::intent::Environment,
    service: &str,
) -> bool {
    matches!(
        tokio::time::timeout(ctx.step_timeout, ctx.driver.health(environment, service)).await,
        Ok(Ok(Health::Healthy))
    )
}

/// Exponential backoff with full jitter: uniform in [0, backoff * 2^(attempt-1)], capped at
/// the step timeout so one flaky step cannot stall a wave for hours.
fn backoff(ctx: &StepContext, env: &str, service: &str, attempt: u32, limits: Limits) -> Duration {
    let ceiling = limits
        .backoff
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(limits.step_timeout);
    let u = unit(stable_hash(&[
        &ctx.seed.to_le_bytes(),
        env.as_bytes(),
        service.as_bytes(),
        &attempt.to_le_bytes(),
    ]));
    ceiling.mul_f64(u)
}
