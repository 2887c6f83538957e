//! A rollout session: everything around an engine that runs a rollout in this process.
//!
//! [`RolloutSession::open`] takes the lease, decides between a new rollout and resuming the
//! unfinished one (at the commit it started from), plans it and runs the preflight;
//! [`RolloutSession::start`] opens the journal and starts the engine, the steering poll
//! (commands queued by other terminals), the lease heartbeat and, headless, the Ctrl-C
//! handling. The headless rollout and the console both use it and keep only the event
//! receiver and the command sender; [`Running::finish`] records how the rollout ended.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cli::exit;
use crate::drift::scan::Known;
use crate::drivers::{self, Driver};
use crate::engine::fold::RolloutView;
use crate::engine::{Command, Engine, Event, EventKind, EventSink, OnHold, Outcome, TokioClock};
use crate::identity::Identity;
use crate::intent::{Gate, Intent, IntentError};
use crate::plan::{self, CheckStatus, Plan};
use crate::store::journal::{self, Journal, JournalThread};
use crate::store::lease::{Acquired, Holder};
use crate::store::{Store, StoreError};

/// How long an engine may miss heartbeats before another may take over its lease.
pub fn lease_timeout() -> Duration {
    std::env::var("FLOTILLA_LEASE_TIMEOUT")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(Duration::from_secs(30))
}

/// Milliseconds since the Unix epoch, as the lease records heartbeats.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Now, as the store records times (RFC 3339, milliseconds).
pub fn now_text() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// How long the end of a session waits for its last notifications to go out.
const NOTIFY_GRACE: Duration = Duration::from_secs(3);

/// Starts the sender of the notifications queued in the state at `state`; its failures are
/// journaled as `notification_failed`.
fn spawn_notifier(
    state: &Path,
    routes: Arc<crate::notify::Routes>,
    journal: &Journal,
) -> (tokio::sync::watch::Sender<bool>, JoinHandle<()>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sink = journal.clone();
    let on_failure: crate::notify::send::OnFailure = Arc::new(move |f| {
        sink.emit(Event::new(
            SystemTime::now(),
            EventKind::NotificationFailed {
                target: f.target,
                event: f.kind,
                attempts: f.attempts,
                error: f.error,
                gave_up: f.gave_up,
            },
        ));
    });
    let task = tokio::spawn(crate::notify::send::run(
        state.to_path_buf(),
        routes,
        on_failure,
        stopped,
        NOTIFY_GRACE,
    ));
    (stop, task)
}

/// How often queued commands are taken from the store; the heartbeat beats every 8th time.
const POLL: Duration = Duration::from_millis(250);

/// Why a session did not start or did not end well: what to tell the operator, and the
/// exit code. Nothing was applied after the point it names.
#[derive(Debug)]
pub enum Refusal {
    /// What to say (its first line starts `error:`, `refused:` or names what failed) and
    /// the exit code.
    Said { code: u8, message: String },
    /// The intent at the rollout's commit does not load.
    Intent(IntentError),
    /// Preflight checks failed (exit 3): what to say, and the whole checklist, for the
    /// console to offer overrides.
    Blocked {
        message: String,
        checks: Vec<crate::plan::Check>,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Said { message, .. } | Refusal::Blocked { message, .. } => {
                f.write_str(message)
            }
            Refusal::Intent(e) => write!(f, "{e}"),
        }
    }
}

fn said(code: u8, message: impl Into<String>) -> Refusal {
    Refusal::Said {
        code,
        message: message.into(),
    }
}

fn error(e: impl std::fmt::Display) -> Refusal {
    said(exit::INVALID, format!("error: {e}"))
}

/// What to run, and how.
pub struct Setup<'a> {
    /// The intent repo: a resume loads its commit from here, the exec driver runs here.
    pub repo: &'a Path,
    /// The state database.
    pub state: PathBuf,
    /// The intent at the revision asked for (a resume may replace it by its own commit).
    pub intent: Intent,
    pub release: String,
    /// Waves whose gates are approved in advance.
    pub approve: Vec<String>,
    /// Approve every approval gate in advance.
    pub approve_all: bool,
    /// Whether a gate or a halt waits for a decision or ends the run.
    pub on_hold: OnHold,
    /// A resumed rollout keeps its failures failed instead of retrying them.
    pub keep_failures: bool,
    /// Hand the events journaled so far to the caller (the console starts from them).
    pub replay: bool,
    /// Handle Ctrl-C here (headless); the console handles its own keys.
    pub signals: bool,
    /// Only this environment, at once: no gates, no soak, no drift check (a revert of its
    /// drift to what flotilla last applied).
    pub only: Option<Only>,
    /// Failed preflight checks to set aside, each with its reason (`--override`).
    pub overrides: Vec<(String, String)>,
    /// Whether the release may take a service to a lower version than it runs.
    pub downgrades: crate::engine::preflight::Downgrades,
}

/// One environment alone (a revert), and only some of its services when any are named.
#[derive(Debug, Clone)]
pub struct Only {
    pub env: String,
    pub services: Vec<String>,
}

/// A rollout this engine holds the lease for, planned and checked, not yet started.
pub struct RolloutSession {
    store: Arc<Store>,
    state: PathBuf,
    intent: Arc<Intent>,
    plan: Plan,
    driver: Arc<dyn Driver>,
    rollout: i64,
    release: String,
    view: Option<RolloutView>,
    approvals: Vec<String>,
    on_hold: OnHold,
    keep_failures: bool,
    replay: bool,
    signals: bool,
    me: Identity,
    lease: LeaseGuard,
    repo: PathBuf,
    guard: Option<Arc<Known>>,
    /// Only these services are applied (a revert of some); empty: all.
    only_services: Vec<String>,
    /// Freezes an override set aside, until the end of the window in force at the start.
    waived: Vec<(String, SystemTime)>,
    /// Runs the waves' checks, from the repo, marked as this state's.
    runner: crate::drivers::exec::Runner,
}

impl RolloutSession {
    /// Takes the lease and gets the rollout ready: a new one, or the unfinished one of the
    /// same release resumed at its own commit. Refuses (appending nothing) a journal that
    /// was cut off, a keyed journal without its key, another release's unfinished rollout,
    /// scripts that differ from the commit, and a failed preflight.
    pub async fn open(setup: Setup<'_>) -> Result<RolloutSession, Refusal> {
        let Setup {
            repo,
            state,
            intent,
            release,
            approve,
            approve_all,
            on_hold,
            keep_failures,
            replay,
            signals,
            only,
            overrides,
            downgrades,
        } = setup;
        check_overrides(&overrides)?;
        let store = Arc::new(Store::open(&state, &intent.fleet).map_err(error)?);
        // Appending to a journal whose end was cut off would hide the gap for good; appending
        // to a keyed one without its key would break its chain.
        store
            .check_audit_key()
            .map_err(|e| said(exit::INVALID, format!("refused: {e}")))?;
        if let Some(why) = store.truncation().map_err(error)? {
            return Err(said(
                exit::INVALID,
                format!(
                    "refused: {why}; nothing was appended. `flotilla audit --verify` says more"
                ),
            ));
        }
        let me = Identity::current();

        // One engine at a time: take the lease before deciding anything, so two engines
        // started together cannot both create a rollout.
        let holder = me.holder();
        let took_over = match take_lease(&store, 0, &holder)? {
            Acquired::Fresh => None,
            Acquired::TookOver(from) => Some(from),
        };
        let lease = LeaseGuard {
            store: store.clone(),
            holder: holder.clone(),
        };

        // An unfinished rollout of this release is resumed at its own commit; of another
        // release, it blocks a new one.
        let unfinished = store.unfinished_with_view().map_err(error)?;
        let mut intent = intent;
        let mut view = None;
        if let Some((u, folded)) = &unfinished {
            if u.release != release {
                return Err(said(
                    exit::BLOCKED,
                    format!(
                        "refused: rollout {} of release {} (started {} by {}) is unfinished ({}).\n  finish it with `flotilla rollout {}`, or give it up with `flotilla abort`",
                        u.id, u.release, u.started, u.started_by, u.status, u.release
                    ),
                ));
            }
            if u.commit != intent.revision.commit {
                crate::notice::say(format!(
                    "note: resuming rollout {} at the intent it started from ({}), not {}",
                    u.id,
                    &u.commit[..7.min(u.commit.len())],
                    intent.revision.short
                ));
                let loaded = crate::intent::load(repo, &u.commit).map_err(Refusal::Intent)?;
                for w in &loaded.warnings {
                    crate::notice::say(format!("{w}\n"));
                }
                intent = loaded.intent;
            }
            view = Some(folded.clone());
        }
        let unfinished = unfinished.map(|(u, _)| u);
        let intent = Arc::new(intent);

        let history = store.history().map_err(error)?;
        let mut plan =
            plan::build_with_history(&intent, &release, SystemTime::now(), Some(&history))
                .map_err(error)?;
        if let Some(Only { env, .. }) = &only {
            plan.waves.retain(|w| w.envs.contains(env));
            for w in &mut plan.waves {
                w.envs = vec![env.clone()];
                w.gate = Gate::Auto;
                w.gate_reason = None;
                w.soak = Duration::ZERO;
                w.allowed_failures = 0;
            }
        }
        let waves: Vec<&str> = plan.waves.iter().map(|w| w.name.as_str()).collect();
        if let Some(w) = approve.iter().find(|w| !waves.contains(&w.as_str())) {
            return Err(error(format!(
                "--approve {w}: the plan has no wave `{w}` (waves: {})",
                waves.join(", ")
            )));
        }
        // An approval given in advance says nothing about why: a wave that needs a note is
        // refused by name, and left waiting by --approve-all.
        if let Some(w) = plan
            .waves
            .iter()
            .find(|w| w.note_required && approve.contains(&w.name))
        {
            return Err(error(format!(
                "--approve {}: the wave takes an approval with a note saying why; start without it and run `flotilla approve {} --note \"...\"`",
                w.name, w.name
            )));
        }
        // `--approve-all` approves every gate but those a policy protects: they take an
        // approval given for them by name.
        let mut approvals = approve;
        if approve_all {
            for w in plan
                .waves
                .iter()
                .filter(|w| matches!(w.gate, Gate::Approval { .. }))
            {
                if approvals.contains(&w.name) {
                    continue;
                }
                if w.note_required {
                    crate::notice::say(format!(
                        "note: wave `{}` takes an approval with a note, not one in advance: `flotilla approve {} --note \"...\"`",
                        w.name, w.name
                    ));
                } else if w.protected {
                    crate::notice::say(format!(
                        "note: --approve-all does not approve wave `{}`: [policy] require_approval protects its environments; approve it by name (--approve {}, or `flotilla approve {}`)",
                        w.name, w.name, w.name
                    ));
                } else {
                    approvals.push(w.name.clone());
                }
            }
        }

        // The scripts run from the work tree; the rollout runs at its commit: they must agree.
        for program in intent.repo_programs() {
            crate::intent::source::work_tree_matches(repo, &intent.revision.commit, &program)
                .map_err(|why| {
                    said(
                        exit::INVALID,
                        format!("refused: {why}; nothing was started"),
                    )
                })?;
        }
        let place = drivers::Place {
            repo,
            state: Some(&state),
        };
        // This engine holds the lease: what a dead one left running goes before anything is
        // observed.
        drivers::after_crash(&intent, place);
        let driver = drivers::open(&intent, intent.release(&release), place).map_err(error)?;
        let runner = crate::drivers::exec::Runner::new(repo, &place.key());
        // A rollout that started took its versions as they were then: resumed, it goes on
        // (min_from still holds).
        let downgrades = match view {
            Some(_) => crate::engine::preflight::Downgrades::Allow,
            None => downgrades,
        };
        crate::engine::preflight::add_target_checks(&intent, &mut plan, &driver, downgrades).await;
        // What flotilla last applied where: the engine holds any environment that drifted
        // from it. A revert (`only`) applies over the drift of its one environment.
        let guard = match only {
            Some(_) => None,
            None => Some(Arc::new(
                Known::load(repo, &intent, &store, SystemTime::now()).map_err(error)?,
            )),
        };
        // An environment changed out of band is not overwritten by a new rollout: it fails
        // the preflight, and the scan's drift is journaled. A resumed rollout holds such
        // environments instead, where it reaches them.
        let check_drift = intent.policy.block_on_drift && view.is_none();
        if let Some(known) = guard.clone().filter(|_| check_drift) {
            let envs: Vec<String> = plan
                .waves
                .iter()
                .flat_map(|w| w.envs.iter())
                .cloned()
                .collect();
            let check = crate::drift::scan::preflight(
                &intent, &release, envs, known, &store, &driver, true,
            )
            .await;
            plan.checks.push(check);
        }
        // A failure overridden with a reason lets the rollout start; the override is
        // journaled with it.
        let mut overridden = Vec::new();
        for (id, reason) in &overrides {
            match plan.checks.iter_mut().find(|c| c.name == *id) {
                Some(c) if c.status == CheckStatus::Fail => {
                    c.overridden = Some(format!("{}: {reason}", me.actor()));
                    overridden.push(EventKind::CheckOverridden {
                        check: id.clone(),
                        detail: c.detail.clone(),
                        reason: reason.clone(),
                        by: me.actor(),
                    });
                    crate::notice::say(format!(
                        "preflight FAILED, overridden: {id}: {} ({reason})",
                        c.detail
                    ));
                }
                _ => crate::notice::say(format!(
                    "note: {id} did not fail; --override {id} changes nothing"
                )),
            }
        }
        // An overridden freeze lets the waves start inside the window in force now; its
        // later windows stop them again.
        let freeze_overridden = plan
            .checks
            .iter()
            .any(|c| c.name == "policy.freeze" && c.overridden.is_some());
        let waived: Vec<(String, SystemTime)> = if freeze_overridden {
            let now = SystemTime::now();
            intent
                .policy
                .freezes
                .iter()
                .filter_map(|f| Some((f.name.clone(), f.in_force(now)?)))
                .collect()
        } else {
            Vec::new()
        };
        let failed: Vec<String> = plan
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail && c.overridden.is_none())
            .map(|c| format!("preflight FAILED: {}: {}", c.name, c.detail))
            .collect();
        if !failed.is_empty() {
            return Err(Refusal::Blocked {
                message: format!(
                    "{}\nblocked: nothing was started; `flotilla plan {release}` shows every check",
                    failed.join("\n")
                ),
                checks: plan.checks,
            });
        }

        let rollout = match &unfinished {
            Some(u) => u.id,
            None => store
                .start_rollout(&release, &intent.revision.commit, &now_text(), &me.actor())
                .map_err(error)?,
        };
        // The lease now names the rollout; a takeover is recorded in its journal.
        if let Err(e) = store.acquire_lease(rollout, &holder, now_ms(), lease_timeout()) {
            return Err(error(e));
        }
        if let Some(from) = took_over {
            let event = Event::new(
                SystemTime::now(),
                EventKind::LeaseTakenOver {
                    by: holder.to_string(),
                    from,
                },
            );
            store.append(Some(rollout), &[event]).map_err(error)?;
        }
        if !overridden.is_empty() {
            let now = SystemTime::now();
            let events: Vec<Event> = overridden.into_iter().map(|k| Event::new(now, k)).collect();
            store.append(Some(rollout), &events).map_err(error)?;
        }
        let _ = store.set_status(rollout, "running", None);
        Ok(RolloutSession {
            store,
            state,
            intent,
            plan,
            driver,
            rollout,
            release,
            view,
            approvals,
            on_hold,
            keep_failures,
            replay,
            signals,
            me,
            lease,
            repo: repo.to_path_buf(),
            guard,
            only_services: only.map(|o| o.services).unwrap_or_default(),
            waived,
            runner,
        })
    }

    /// The rollout's id in the store.
    pub fn rollout(&self) -> i64 {
        self.rollout
    }

    /// The intent the rollout runs at.
    pub fn intent(&self) -> &Arc<Intent> {
        &self.intent
    }

    /// The plan, with the preflight's checks.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Drift scans of this rollout's fleet, for a console beside it.
    pub fn scanner(&self) -> crate::drift::scan::Scanner {
        crate::drift::scan::Scanner {
            repo: self.repo.clone(),
            state: self.state.clone(),
            store: self.store.clone(),
            intent: self.intent.clone(),
            release: self.release.clone(),
            driver: self.driver.clone(),
        }
    }

    /// Opens the journal and starts the engine with everything around it. Returns the
    /// running session and the receiver of the events the journal committed.
    pub fn start(self) -> Result<(Running, Events), Refusal> {
        let RolloutSession {
            store,
            state,
            intent,
            plan,
            driver,
            rollout,
            release,
            view,
            approvals,
            on_hold,
            keep_failures,
            replay,
            signals,
            me,
            lease,
            repo,
            guard,
            only_services,
            waived,
            runner,
        } = self;
        let (event_tx, events) = mpsc::unbounded_channel();
        // Notifications are queued with their events, and sent beside the rollout.
        let routes = crate::notify::Routes::for_plan(&intent, &plan);
        let (journal, writer) = journal::spawn_routed(
            &state,
            rollout,
            Some(lease.holder.clone()),
            event_tx,
            routes.clone(),
        )
        .map_err(error)?;
        let notifier = routes.map(|routes| spawn_notifier(&state, routes, &journal));
        let (commands, cmd_rx) = mpsc::unbounded_channel();
        // The events so far, read before anything new is journaled (which reaches the caller
        // through the journal's channel instead).
        let past: Vec<Event> = if replay && view.is_some() {
            journal::entries(&store.conn(), Some(rollout))
                .unwrap_or_default()
                .iter()
                .filter_map(|e| e.event())
                .collect()
        } else {
            Vec::new()
        };
        // Commands queued while no engine ran (an approval ahead of a resume) come first.
        let mut last_command = view.as_ref().map_or(0, |v| v.last_command);
        forward_queued(&store, rollout, &mut last_command, &commands);
        // Run again as it was first run, a rollout resumes with the approvals it was given
        // then: those already in the journal (this person's, or of a gate already passed)
        // would only be refused as given twice.
        let given_before = |wave: &str| {
            view.as_ref().is_some_and(|v| {
                v.waves
                    .iter()
                    .any(|w| w.name == wave && (w.started || w.approvals.contains(&me.actor())))
            })
        };
        for wave in approvals.into_iter().filter(|w| !given_before(w)) {
            let _ = commands.send(Command::Approve {
                wave,
                by: me.actor(),
                note: Some("approved in advance on the command line".into()),
            });
        }
        let mut engine = Engine::new(
            intent,
            plan,
            driver,
            Arc::new(TokioClock::new()),
            journal.clone(),
            cmd_rx,
            on_hold,
        )
        .with_emergency_loader(Arc::new(move |commit: &str, env: &str| {
            crate::intent::load(&repo, commit)
                .map(|l| l.intent.emergency(env).cloned())
                .map_err(|e| e.to_string())
        }))
        .waive_freezes(waived)
        .run_checks_with(runner);
        if let Some(known) = guard {
            engine = engine.guard_drift(known);
        }
        if !only_services.is_empty() {
            engine = engine.only_services(&only_services);
        }
        if let Some(view) = &view {
            engine = engine.resume(view);
            if keep_failures {
                engine = engine.keep_failures(view);
            }
        }
        let engine = tokio::spawn(engine.run());
        if signals {
            spawn_interrupts(commands.clone());
        }
        let steering = spawn_steering(
            store.clone(),
            rollout,
            last_command,
            lease.holder.clone(),
            commands.clone(),
        );
        let running = Running {
            commands,
            engine,
            notifier,
            journal,
            writer,
            steering,
            store,
            rollout,
            release,
            _lease: lease,
        };
        Ok((
            running,
            Events {
                receiver: events,
                past,
            },
        ))
    }
}

/// What the journal committed, in batches, and (when asked) what it held before.
pub struct Events {
    pub receiver: mpsc::UnboundedReceiver<Vec<Event>>,
    /// The rollout's events journaled before this engine started (when resuming, if asked).
    pub past: Vec<Event>,
}

/// Ctrl-C once: stop starting work and let in-flight steps finish. Twice: leave now (the
/// journal and the fleet keep everything that was done).
fn spawn_interrupts(commands: mpsc::UnboundedSender<Command>) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupt: starting nothing new, waiting for the steps in flight to finish (Ctrl-C again to quit at once)");
            let _ = commands.send(Command::Interrupt);
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "quit: steps in flight were abandoned; `flotilla rollout` resumes this rollout"
                );
                std::process::exit(exit::INTERRUPTED as i32);
            }
        }
    });
}

/// Sends the engine the commands queued in the store after `last`, and moves `last` on.
fn forward_queued(
    store: &Store,
    rollout: i64,
    last: &mut i64,
    commands: &mpsc::UnboundedSender<Command>,
) {
    if let Ok(queued) = store.take_commands(rollout, *last) {
        for q in queued {
            let _ = commands.send(q.received());
            *last = q.id;
        }
    }
}

/// Commands from other terminals, and the lease heartbeat, a few times a second. An engine
/// that lost its lease is interrupted (its journal refuses to record anything anyway).
fn spawn_steering(
    store: Arc<Store>,
    rollout: i64,
    mut last_command: i64,
    holder: Holder,
    commands: mpsc::UnboundedSender<Command>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        let mut beats = 0u32;
        loop {
            tick.tick().await;
            forward_queued(&store, rollout, &mut last_command, &commands);
            beats += 1;
            if beats.is_multiple_of(8) && matches!(store.heartbeat(&holder, now_ms()), Ok(false)) {
                // Under the console the message waits until it has closed.
                crate::notice::say(format!("error: {}; stopping", lease_lost(&store)));
                let _ = commands.send(Command::Interrupt);
            }
        }
    })
}

/// A started rollout: send it commands, wait for its engine, then [`Running::finish`].
pub struct Running {
    /// Commands for the engine (approve, pause, interrupt...).
    pub commands: mpsc::UnboundedSender<Command>,
    engine: JoinHandle<Outcome>,
    /// The notification sender, and what tells it the rollout is over.
    notifier: Option<(tokio::sync::watch::Sender<bool>, JoinHandle<()>)>,
    journal: Journal,
    writer: JournalThread,
    steering: JoinHandle<()>,
    store: Arc<Store>,
    rollout: i64,
    release: String,
    /// Gives the lease back when the session ends, however it ends.
    _lease: LeaseGuard,
}

impl Running {
    /// The engine's task, to wait for it (poll it to completion once).
    pub fn engine(&mut self) -> &mut JoinHandle<Outcome> {
        &mut self.engine
    }

    /// The release being rolled out.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// Commits what the engine emitted so far (before leaving the process abruptly).
    pub async fn flush(&self) -> bool {
        self.journal.flush().await
    }

    /// Ends the session: waits for the engine unless the caller already did (`ended`),
    /// commits the rest of the journal, records the rollout's status and a checkpoint of
    /// the journal's head, and gives the lease back.
    pub async fn finish(self, ended: Option<Result<Outcome, String>>) -> Result<Outcome, Refusal> {
        let Running {
            commands,
            engine,
            notifier,
            journal,
            writer,
            steering,
            store,
            rollout,
            release: _,
            _lease,
        } = self;
        let outcome = match ended {
            Some(o) => o,
            None => engine.await.map_err(|e| e.to_string()),
        };
        steering.abort();
        drop(commands);
        // Everything the engine emitted is committed before the session says how it ended.
        let mut journaled = journal.flush().await;
        // The last notifications (the end of the rollout) get a moment to go out; what is
        // left stays queued and goes with the next session on this state.
        if let Some((stop, task)) = notifier {
            let _ = stop.send(true);
            let _ = task.await;
            journaled &= journal.flush().await;
        }
        drop(journal);
        let written = tokio::task::spawn_blocking(move || writer.join()).await;
        let outcome = outcome.map_err(|e| {
            said(
                exit::FAILED,
                format!("error: the engine stopped unexpectedly: {e}"),
            )
        })?;
        match written {
            Ok(Ok(())) if journaled => {}
            Ok(Err(StoreError::LeaseLost { .. })) => {
                return Err(said(exit::FAILED, format!("error: {}; this engine recorded and applied nothing after that. `flotilla status` shows where the rollout stands", lease_lost(&store))));
            }
            Ok(Err(e)) => {
                return Err(said(
                    exit::FAILED,
                    format!("error: the journal could not record everything: {e}"),
                ));
            }
            _ => {
                return Err(said(exit::FAILED, "error: the journal could not record everything; the state database may be out of space or unwritable"));
            }
        }
        let status = match &outcome {
            Outcome::Completed { .. } => "completed",
            Outcome::Blocked { .. } | Outcome::Held { .. } => "blocked",
            Outcome::Halted { .. } => "halted",
            Outcome::Aborted { .. } => "aborted",
            Outcome::Interrupted => "interrupted",
        };
        let ended = matches!(status, "completed" | "aborted").then(now_text);
        if let Err(e) = store.set_status(rollout, status, ended.as_deref()) {
            crate::notice::say(format!("error: {e}"));
        }
        // The head as this engine leaves it, kept beside the journal: rows cut off its end
        // later are noticed.
        if let Err(e) = store.checkpoint(&now_text(), "engine exited") {
            crate::notice::say(format!("error: {e}"));
        }
        Ok(outcome)
    }
}

/// Refuses, before anything is looked at, an override of a check that does not exist or
/// cannot be overridden, or one without a reason.
fn check_overrides(overrides: &[(String, String)]) -> Result<(), Refusal> {
    for (id, reason) in overrides {
        if !plan::CHECKS.contains(&id.as_str()) {
            return Err(said(
                exit::INVALID,
                format!(
                    "error: --override {id}: no such check; {}",
                    crate::intent::load::did_you_mean(id, &plan::CHECKS)
                ),
            ));
        }
        if plan::NOT_OVERRIDABLE.contains(&id.as_str()) {
            return Err(said(
                exit::INVALID,
                format!("refused: {id} cannot be overridden: without it there is no plan to trust; fix the intent instead"),
            ));
        }
        if reason.trim().is_empty() {
            return Err(said(
                exit::INVALID,
                format!("refused: --override {id} needs a reason for the record: --reason \"...\""),
            ));
        }
    }
    Ok(())
}

/// Takes the fleet's lease for `rollout` (0: none yet), unless a live engine holds it.
pub fn take_lease(store: &Store, rollout: i64, holder: &Holder) -> Result<Acquired, Refusal> {
    match store
        .acquire_lease(rollout, holder, now_ms(), lease_timeout())
        .map_err(error)?
    {
        Ok(acquired) => Ok(acquired),
        Err(held) => Err(said(exit::BLOCKED, format!("refused: {held}"))),
    }
}

/// What an engine that lost its lease says: who took it, and when.
fn lease_lost(store: &Store) -> String {
    match store.lease_holder() {
        Ok(Some((holder, since))) => {
            format!("this engine lost its lease: {holder} took it over at {since}")
        }
        _ => "this engine lost its lease (another engine took it over, or it was removed)"
            .to_string(),
    }
}

/// Gives the lease back when dropped.
struct LeaseGuard {
    store: Arc<Store>,
    holder: Holder,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let _ = self.store.release_lease(&self.holder);
    }
}
