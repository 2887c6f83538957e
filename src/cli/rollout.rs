//! `flotilla rollout RELEASE`: a headless rollout for scripts, CI and terminals.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::identity::Identity;
use super::{default_state, exit, load, output, Output};
use crate::engine::{Command, Engine, Event, EventKind, OnHold, Outcome, TokioClock};
use crate::intent::Gate;
use crate::plan::{self, CheckStatus};
use crate::store::journal;
use crate::store::lease::Acquired;
use crate::store::Store;

#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    /// The release to roll out (a file name under releases/, without .toml).
    pub release: String,
    /// Approve the gate of this wave in advance (repeat for several waves).
    #[arg(long = "approve", value_name = "WAVE")]
    pub approve: Vec<String>,
    /// Approve every gate in advance.
    #[arg(long)]
    pub approve_all: bool,
    /// Wait at gates (and halts) for decisions from another terminal instead of exiting.
    #[arg(long)]
    pub wait: bool,
    /// plain: progress and notable events; json: one event per line.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// Continue a halted rollout as it stands (`flotilla resume` with no engine running):
    /// failed environments stay failed until the queued resume accepts them, instead of
    /// being retried as a re-run does.
    #[arg(skip)]
    pub keep_failures: bool,
}

/// How long an engine may miss heartbeats before another may take over its lease.
pub fn lease_timeout() -> Duration {
    std::env::var("FLOTILLA_LEASE_TIMEOUT")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(Duration::from_secs(30))
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn now_text() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Runs (or resumes) a rollout of `args.release`: headless with progress lines, or in the
/// operations console when `console` says how it should look.
pub fn run(
    repo: &Path,
    rev: &str,
    state: Option<&Path>,
    args: &RolloutArgs,
    console: Option<crate::console::Options>,
) -> u8 {
    let loaded = match load(repo, rev) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let state_path = state
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_state(&loaded.intent.fleet));
    let store = match Store::open(&state_path, &loaded.intent.fleet) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            return super::refuse(exit::INVALID, format!("error: {e}"));
        }
    };
    // Appending to a journal whose end was cut off would hide the gap for good; appending
    // to a keyed one without its key would break its chain.
    if let Err(e) = store.check_audit_key() {
        return super::refuse(exit::INVALID, format!("refused: {e}"));
    }
    match store.truncation() {
        Ok(None) => {}
        Ok(Some(why)) => {
            return super::refuse(
                exit::INVALID,
                format!(
                    "refused: {why}; nothing was appended. `flotilla audit --verify` says more"
                ),
            );
        }
        Err(e) => {
            return super::refuse(exit::INVALID, format!("error: {e}"));
        }
    }
    let me = Identity::current();

    // An unfinished rollout of this release is resumed at its own commit; of another
    // release, it blocks a new one.
    // One engine at a time: take the lease before deciding anything, so two engines started
    // together cannot both create a rollout.
    let holder = me.holder();
    let took_over = match super::take_lease(&store, 0, &holder) {
        Ok(Acquired::Fresh) => None,
        Ok(Acquired::TookOver(from)) => Some(from),
        Err(code) => return code,
    };
    let _lease = LeaseGuard {
        store: store.clone(),
        holder: holder.clone(),
    };
    let unfinished = match store.unfinished_with_view() {
        Ok(u) => u,
        Err(e) => {
            return super::refuse(exit::INVALID, format!("error: {e}"));
        }
    };
    let mut intent = loaded.intent;
    let mut view = None;
    if let Some((u, folded)) = &unfinished {
        if u.release != args.release {
            return super::refuse(
                exit::BLOCKED,
                format!(
                    "refused: rollout {} of release {} (started {} by {}) is unfinished ({}).\n  finish it with `flotilla rollout {}`, or give it up with `flotilla abort`",
                    u.id, u.release, u.started, u.started_by, u.status, u.release
                ),
            );
        }
        if u.commit != intent.revision.commit {
            eprintln!(
                "note: resuming rollout {} at the intent it started from ({}), not {}",
                u.id,
                &u.commit[..7.min(u.commit.len())],
                intent.revision.short
            );
            intent = match load(repo, &u.commit) {
                Ok(l) => l.intent,
                Err(code) => return code,
            };
        }
        view = Some(folded.clone());
    }
    let unfinished = unfinished.map(|(u, _)| u);
    let intent = Arc::new(intent);

    let history = match store.history() {
        Ok(h) => h,
        Err(e) => {
            return super::refuse(exit::INVALID, format!("error: {e}"));
        }
    };
    let mut plan =
        match plan::build_with_history(&intent, &args.release, SystemTime::now(), Some(&history)) {
            Ok(p) => p,
            Err(e) => {
                return super::refuse(exit::INVALID, format!("error: {e}"));
            }
        };
    let waves: Vec<&str> = plan.waves.iter().map(|w| w.name.as_str()).collect();
    for w in &args.approve {
        if !waves.contains(&w.as_str()) {
            return super::refuse(
                exit::INVALID,
                format!(
                    "error: --approve {w}: the plan has no wave `{w}` (waves: {})",
                    waves.join(", ")
                ),
            );
        }
    }
    let place = crate::drivers::Place {
        repo,
        state: Some(&state_path),
    };
    // The scripts run from the work tree; the rollout runs at its commit: they must agree.
    if let Some(exec) = intent
        .driver
        .exec
        .as_ref()
        .filter(|_| intent.driver.kind == crate::intent::DriverKind::Exec)
    {
        for program in exec.repo_programs() {
            if let Err(why) =
                crate::intent::source::work_tree_matches(repo, &intent.revision.commit, &program)
            {
                return super::refuse(
                    exit::INVALID,
                    format!("refused: {why}; nothing was started"),
                );
            }
        }
    }
    // This engine holds the lease: what a dead one left running goes before anything is
    // observed.
    crate::drivers::after_crash(&intent, place);
    let driver = match crate::drivers::open(&intent, intent.release(&args.release), place) {
        Ok(d) => d,
        Err(e) => return super::refuse(exit::INVALID, format!("error: {e}")),
    };
    super::plan::add_reachability(&intent, &mut plan, &driver);
    let failed: Vec<_> = plan
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .collect();
    if !failed.is_empty() {
        let mut why: Vec<String> = failed
            .iter()
            .map(|c| format!("preflight FAILED: {}: {}", c.name, c.detail))
            .collect();
        why.push(format!(
            "blocked: nothing was started; `flotilla plan {}` shows every check",
            args.release
        ));
        return super::refuse(exit::BLOCKED, why.join("\n"));
    }

    let rollout_id = match &unfinished {
        Some(u) => u.id,
        None => match store.start_rollout(
            &args.release,
            &intent.revision.commit,
            &now_text(),
            &me.actor(),
        ) {
            Ok(id) => id,
            Err(e) => {
                return super::refuse(exit::INVALID, format!("error: {e}"));
            }
        },
    };
    // The lease now names the rollout; a takeover is recorded in its journal.
    if let Err(e) = store.acquire_lease(rollout_id, &holder, now_ms(), lease_timeout()) {
        return super::refuse(exit::INVALID, format!("error: {e}"));
    }
    if let Some(from) = took_over {
        let event = Event::new(
            SystemTime::now(),
            EventKind::LeaseTakenOver {
                by: holder.to_string(),
                from,
            },
        );
        let appended = store.append(Some(rollout_id), &[event]);
        if let Err(e) = appended {
            return super::refuse(exit::INVALID, format!("error: {e}"));
        }
    }
    let _ = store.set_status(rollout_id, "running", None);

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            return super::refuse(
                exit::FAILED,
                format!("error: cannot start the async runtime: {e}"),
            );
        }
    };
    let approvals: Vec<String> = if args.approve_all {
        plan.waves
            .iter()
            .filter(|w| matches!(w.gate, Gate::Approval { .. }))
            .map(|w| w.name.clone())
            .collect()
    } else {
        args.approve.clone()
    };
    let services = intent.services.len();
    let release = args.release.clone();
    let output = args.output;
    // The console is where decisions are made: a halted rollout waits for them.
    let on_hold = if args.wait || console.is_some() {
        OnHold::Wait
    } else {
        OnHold::Exit
    };

    runtime.block_on(async {
        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        let (journal, writer) = match journal::spawn(&state_path, rollout_id, Some(holder.clone()), event_tx) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::INVALID;
            }
        };
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        // The console starts from the events so far when resuming; read before anything new
        // is journaled, which reaches it through the journal's channel instead.
        let past: Vec<Event> = if console.is_some() && view.is_some() {
            journal::entries(&store.conn(), Some(rollout_id))
                .unwrap_or_default()
                .iter()
                .filter_map(|e| e.event())
                .collect()
        } else {
            Vec::new()
        };
        // Commands queued while no engine ran (an approval ahead of a resume) come first.
        let mut last_command = view.as_ref().map_or(0, |v| v.last_command);
        if let Ok(queued) = store.take_commands(rollout_id, last_command) {
            for q in queued {
                let _ = cmd_tx.send(q.received());
                last_command = q.id;
            }
        }
        for wave in approvals {
            let _ = cmd_tx.send(Command::Approve {
                wave,
                by: me.actor(),
                note: Some("approved in advance on the command line".into()),
            });
        }
        // What the console needs of the rollout: its plan, the driver to observe live state
        // for the drift pane, and the events so far when resuming.
        let console_parts = console.map(|options| (options, plan.clone(), driver.clone(), past));
        let mut engine = Engine::new(
            intent.clone(),
            plan,
            driver,
            Arc::new(TokioClock::new()),
            journal.clone(),
            cmd_rx,
            on_hold,
        );
        if let Some(view) = &view {
            engine = engine.resume(view);
            // Opening the console is looking, not deciding: a halted rollout stays halted
            // until someone resumes it there (a headless re-run is the decision to retry).
            if console_parts.is_some() || args.keep_failures {
                engine = engine.keep_failures(view);
            }
        }
        let engine = tokio::spawn(engine.run());

        // Ctrl-C once: stop starting work and let in-flight steps finish. Twice: leave now
        // (the journal and the fleet keep everything that was done).
        // Under the console, the console handles signals: the screen is not ours to print on.
        let interrupts = cmd_tx.clone();
        let headless = console_parts.is_none();
        if headless {
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("\ninterrupt: starting nothing new, waiting for the steps in flight to finish (Ctrl-C again to quit at once)");
                    let _ = interrupts.send(Command::Interrupt);
                    if tokio::signal::ctrl_c().await.is_ok() {
                        eprintln!("quit: steps in flight were abandoned; `flotilla rollout` resumes this rollout");
                        std::process::exit(exit::INTERRUPTED as i32);
                    }
                }
            });
        }
        // Commands from other terminals and the lease heartbeat, a few times a second.
        let steering = {
            let store = store.clone();
            let commands = cmd_tx.clone();
            let holder = holder.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                let mut beats = 0u32;
                loop {
                    tick.tick().await;
                    if let Ok(queued) = store.take_commands(rollout_id, last_command) {
                        for q in queued {
                            let _ = commands.send(q.received());
                            last_command = q.id;
                        }
                    }
                    beats += 1;
                    if beats.is_multiple_of(8) && matches!(store.heartbeat(&holder, now_ms()), Ok(false)) {
                        // Under the console the message waits until it has closed.
                        crate::notice::say(format!("error: {}; stopping", lease_lost(&store)));
                        let _ = commands.send(Command::Interrupt);
                    }
                }
            })
        };

        let mut engine = engine;
        let (outcome, mut printer) = match console_parts {
            None => {
                let mut printer = Printer::new(output, services);
                // Ticks keep the progress line current between events (waits, slow steps).
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                let outcome = loop {
                    tokio::select! {
                        batch = event_rx.recv() => for event in batch.iter().flatten() {
                            printer.event(event);
                        },
                        _ = tick.tick() => printer.draw(false),
                        done = &mut engine => break done.map_err(|e| e.to_string()),
                    }
                };
                (outcome, Some(printer))
            }
            Some((options, plan, driver, past)) => {
                let (mut model, ui) = crate::console::session(intent.clone(), plan, &options);
                for e in &past {
                    model.apply(e);
                }
                let ran = crate::console::run(model, ui, &mut event_rx, cmd_tx.clone(), driver, &mut engine).await;
                // How the engine ended, if it did, and whether the screen closed normally.
                let (finished, closed) = match ran {
                    crate::console::Ended::Engine(o) => (Some(o), true),
                    crate::console::Ended::Left => {
                        // Quit twice: as a second Ctrl-C headless, leave now; what is
                        // recorded so far is kept, the journal tells a resume the rest.
                        journal.flush().await;
                        eprintln!("quit: steps in flight were abandoned; `flotilla console {release}` resumes this rollout");
                        std::process::exit(exit::INTERRUPTED as i32);
                    }
                    crate::console::Ended::TerminalFailed(e, finished) => {
                        eprintln!("error: the console cannot use this terminal: {e}");
                        (finished, false)
                    }
                };
                let outcome = match finished {
                    Some(Some(o)) => {
                        // The console's screen is gone: say where the rollout stands.
                        match (&o, closed) {
                            (Outcome::Completed { succeeded, failed, skipped, rolled_back }, true) => println!(
                                "rollout of {release} completed: {succeeded} succeeded, {failed} failed, {skipped} skipped, {rolled_back} rolled back"
                            ),
                            (Outcome::Interrupted, true) => println!(
                                "rollout of {release} stopped when you quit (steps in flight finished); `flotilla console {release}` resumes it"
                            ),
                            _ => {}
                        }
                        Ok(o)
                    }
                    Some(None) => Err("the engine task failed".to_string()),
                    // The terminal failed while the engine ran: stop it cleanly rather than
                    // leave it running blind.
                    None => {
                        let _ = cmd_tx.send(Command::Interrupt);
                        (&mut engine).await.map_err(|e| e.to_string())
                    }
                };
                (outcome, None)
            }
        };
        steering.abort();
        drop(cmd_tx);
        // Everything the engine emitted is committed and printed before the final words.
        let journaled = journal.flush().await;
        drop(journal);
        while let Ok(batch) = event_rx.try_recv() {
            for event in &batch {
                if let Some(p) = printer.as_mut() {
                    p.event(event);
                }
            }
        }
        if let Some(p) = printer.as_mut() {
            p.finish();
        }
        let writer_result = tokio::task::spawn_blocking(move || writer.join()).await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: the engine stopped unexpectedly: {e}");
                return exit::FAILED;
            }
        };
        match writer_result {
            Ok(Ok(())) if journaled => {}
            Ok(Err(crate::store::StoreError::LeaseLost { .. })) => {
                return super::refuse(exit::FAILED, format!("error: {}; this engine recorded and applied nothing after that. `flotilla status` shows where the rollout stands", lease_lost(&store)));
            }
            Ok(Err(e)) => {
                eprintln!("error: the journal could not record everything: {e}");
                return exit::FAILED;
            }
            _ => {
                eprintln!("error: the journal could not record everything; the state database may be out of space or unwritable");
                return exit::FAILED;
            }
        }
        let status = match &outcome {
            Outcome::Completed { .. } => "completed",
            Outcome::Blocked { .. } => "blocked",
            Outcome::Halted { .. } => "halted",
            Outcome::Aborted { .. } => "aborted",
            Outcome::Interrupted => "interrupted",
        };
        let ended = matches!(status, "completed" | "aborted").then(now_text);
        if let Err(e) = store.set_status(rollout_id, status, ended.as_deref()) {
            eprintln!("error: {e}");
        }
        // The head as this engine leaves it, kept beside the journal: rows cut off its end
        // later are noticed.
        if let Err(e) = store.checkpoint(&now_text(), "engine exited") {
            eprintln!("error: {e}");
        }
        report(&outcome, &release)
    })
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

/// Gives the lease back however `run` returns.
struct LeaseGuard {
    store: Arc<Store>,
    holder: crate::store::lease::Holder,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let _ = self.store.release_lease(&self.holder);
    }
}

/// Final words and exit code for each way a rollout can end.
fn report(outcome: &Outcome, release: &str) -> u8 {
    match outcome {
        Outcome::Completed {
            failed: 0,
            rolled_back: 0,
            ..
        } => exit::OK,
        Outcome::Completed {
            failed: 0,
            rolled_back,
            ..
        } => {
            // Rolled back on purpose, but a script must still be able to tell the release is
            // not everywhere.
            eprintln!("completed, but {rolled_back} environment(s) were rolled back and do not run {release}");
            exit::FAILED
        }
        Outcome::Completed { failed, .. } => {
            // Within budget the rollout went on, but the release is not everywhere: a script
            // must be able to tell.
            eprintln!("completed, but {failed} environment(s) failed within the failure budget and do not run {release};");
            eprintln!("  run `flotilla rollout {release}` again to retry them (steps that succeeded are no-ops)");
            exit::FAILED
        }
        Outcome::Blocked { wave, reason } => {
            eprintln!("blocked: wave `{wave}` waits for {reason}; nothing in it was started.");
            if reason.contains("distinct people") {
                eprintln!("  --approve counts as one approval (yours); this gate needs approvals from different people:");
                eprintln!("  run `flotilla rollout {release} --wait` and have each of them run `flotilla approve {wave}`");
            } else {
                eprintln!("  to approve and go on: flotilla rollout {release} --approve {wave}   (or --approve-all)");
                eprintln!("  or wait for someone else's approval: flotilla rollout {release} --wait, then `flotilla approve {wave}`");
            }
            exit::BLOCKED
        }
        // The reason was printed with the rollout_halted event.
        Outcome::Halted {
            wave, failed_envs, ..
        } => {
            eprintln!("halted in wave `{wave}`.");
            let shown: Vec<&str> = failed_envs.iter().take(10).map(String::as_str).collect();
            let more = failed_envs.len().saturating_sub(shown.len());
            if !shown.is_empty() {
                eprintln!(
                    "  failed: {}{}",
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                );
            }
            eprintln!("  no new step started after the budget ran out; steps in flight finished.");
            eprintln!("  to go on: fix the release (or raise the budget) and run this rollout");
            eprintln!("  again; steps that already succeeded are no-ops.");
            exit::FAILED
        }
        Outcome::Aborted { by } => {
            eprintln!("the rollout was aborted by {by}: nothing more will be applied; `flotilla rollout {release}` starts it anew");
            exit::FAILED
        }
        Outcome::Interrupted => exit::INTERRUPTED,
    }
}

/// Prints events as JSON lines, or as plain lines with a live progress line on a terminal.
struct Printer {
    output: Output,
    tty: bool,
    services: usize,
    wave: String,
    wave_envs: usize,
    done: usize,
    failed: HashSet<String>,
    succeeded_steps: HashMap<String, usize>,
    progress_shown: bool,
    last_draw: Option<std::time::Instant>,
    /// The progress line as last drawn, so an unchanged line is not written again.
    last_line: String,
    waiting: Option<String>,
}

impl Printer {
    fn new(output: Output, services: usize) -> Self {
        Printer {
            output,
            tty: std::io::stdout().is_terminal(),
            services,
            wave: String::new(),
            wave_envs: 0,
            done: 0,
            failed: HashSet::new(),
            succeeded_steps: HashMap::new(),
            progress_shown: false,
            last_draw: None,
            last_line: String::new(),
            waiting: None,
        }
    }

    fn event(&mut self, event: &Event) {
        if self.output == Output::Json {
            if let Ok(line) = serde_json::to_string(event) {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            return;
        }
        match &event.kind {
            EventKind::WaveStarted { wave, envs, .. } => {
                self.wave = wave.clone();
                self.wave_envs = *envs;
                self.done = 0;
                self.failed.clear();
                self.succeeded_steps.clear();
                self.waiting = None;
            }
            EventKind::GateWaiting { reason, .. } => self.waiting = Some(reason.clone()),
            EventKind::RolloutHalted { .. } => {
                self.waiting =
                    Some("a decision: flotilla resume, retry, skip ENV --reason R, or abort".into())
            }
            EventKind::RolloutPaused { .. } => {
                self.waiting = Some("`flotilla resume` (paused)".into())
            }
            EventKind::RolloutResumed { .. } => self.waiting = None,
            EventKind::StepSucceeded { env, .. } => {
                let n = self.succeeded_steps.entry(env.clone()).or_insert(0);
                *n += 1;
                if *n == self.services {
                    self.done += 1;
                }
            }
            EventKind::StepFailed { env, .. } => {
                self.failed.insert(env.clone());
            }
            _ => {}
        }
        let line = output::event_line(&event.kind);
        if let Some(line) = line {
            let mut out = std::io::stdout().lock();
            if self.progress_shown {
                let _ = write!(out, "\r\x1b[2K");
                self.progress_shown = false;
                self.last_line.clear();
            }
            let _ = writeln!(out, "{line}");
        }
        self.draw(true);
    }

    /// Redraws the progress line on a terminal: at most ten times a second after events, and
    /// only when its text changed.
    fn draw(&mut self, after_event: bool) {
        if !self.tty || self.wave.is_empty() {
            return;
        }
        if after_event
            && self
                .last_draw
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        // No clock in the line: it changes only when the rollout does, so an idle wait costs
        // no bytes over SSH.
        let line = match &self.waiting {
            Some(reason) => format!("waiting for {reason}"),
            None => format!(
                "[{}] {}/{} environments done, {} failed",
                self.wave,
                self.done,
                self.wave_envs,
                self.failed.len(),
            ),
        };
        if line == self.last_line {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K{line}");
        let _ = out.flush();
        self.progress_shown = true;
        self.last_draw = Some(std::time::Instant::now());
        self.last_line = line;
    }

    fn finish(&mut self) {
        if self.progress_shown {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
        }
    }
}
