//! `flotilla rollout RELEASE`: a headless rollout for scripts, CI and terminals.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use super::{default_state, exit, load_for_rollout, Output};
use crate::console::checklist::Decision;
use crate::engine::preflight::Downgrades;
use crate::engine::{Command, Event, EventKind, OnHold, Outcome};
use crate::session::{Refusal, RolloutSession, Setup};

#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    /// The release to roll out (a file name under releases/, without .toml).
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::releases))]
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
    /// Set a failed preflight check aside for this rollout, by its id (repeat for
    /// several); journaled with who and why. intent.valid, deps.acyclic and waves.cover
    /// cannot be.
    #[arg(long = "override", value_name = "CHECK")]
    pub overrides: Vec<String>,
    /// Why (one for all the overrides, or one each, in order).
    #[arg(long = "reason", value_name = "WHY", requires = "overrides")]
    pub reasons: Vec<String>,
    /// Let the release take a service to a lower version than it runs (a deliberate
    /// downgrade; versions.upgrade-path refuses one otherwise).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Continue a halted rollout as it stands (`flotilla resume` with no engine running):
    /// failed environments stay failed until the queued resume accepts them, instead of
    /// being retried as a re-run does.
    #[arg(skip)]
    pub keep_failures: bool,
}

/// What `--allow-downgrade` says.
pub(super) fn downgrades(allow: bool) -> Downgrades {
    if allow {
        Downgrades::Allow
    } else {
        Downgrades::Refuse
    }
}

/// Each `--override` with its `--reason`: one reason for all, or one each in order.
fn paired(checks: &[String], reasons: &[String]) -> Result<Vec<(String, String)>, String> {
    match reasons.len() {
        0 if checks.is_empty() => Ok(Vec::new()),
        0 => Err("--override needs --reason \"...\": why the check may be set aside".into()),
        1 => Ok(checks
            .iter()
            .map(|c| (c.clone(), reasons[0].clone()))
            .collect()),
        n if n == checks.len() => Ok(checks
            .iter()
            .cloned()
            .zip(reasons.iter().cloned())
            .collect()),
        n => Err(format!(
            "{} --override but {n} --reason: give one reason for all, or one each",
            checks.len()
        )),
    }
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
    run_into(repo, rev, state, args, console, None)
}

/// [`run`], headless, with the notable events (those plain output prints a line for) kept
/// in `kept` instead of printed, for a command that reports them in one JSON document.
pub(super) fn run_kept(
    repo: &Path,
    rev: &str,
    state: Option<&Path>,
    args: &RolloutArgs,
    kept: &mut Vec<Event>,
) -> u8 {
    run_into(repo, rev, state, args, None, Some(kept))
}

fn run_into(
    repo: &Path,
    rev: &str,
    state: Option<&Path>,
    args: &RolloutArgs,
    console: Option<crate::console::Options>,
    kept: Option<&mut Vec<Event>>,
) -> u8 {
    let loaded = match load_for_rollout(repo, rev) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let state = state
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_state(&loaded.intent.fleet));
    let mut overrides = match paired(&args.overrides, &args.reasons) {
        Ok(o) => o,
        Err(why) => return super::refuse(exit::INVALID, format!("error: {why}")),
    };
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let console_open = console.is_some();
    let setup = |overrides: Vec<(String, String)>| Setup {
        repo,
        state: state.clone(),
        intent: loaded.intent.clone(),
        release: args.release.clone(),
        approve: args.approve.clone(),
        approve_all: args.approve_all,
        // The console is where decisions are made: a halted rollout waits for them.
        on_hold: if args.wait || console_open {
            OnHold::Wait
        } else {
            OnHold::Exit
        },
        // Opening the console is looking, not deciding: a halted rollout stays halted
        // until someone resumes it there (a headless re-run is the decision to retry).
        keep_failures: args.keep_failures || console_open,
        replay: console_open,
        // Under the console, the console handles signals: the screen is not ours to print on.
        signals: !console_open,
        only: None,
        overrides,
        downgrades: downgrades(args.allow_downgrade),
    };
    runtime.block_on(async {
        let session = loop {
            match RolloutSession::open(setup(overrides.clone())).await {
                Ok(s) => break s,
                // The console shows the checklist and lets the operator override what
                // failed, with reasons; the preflight then runs again with them.
                Err(Refusal::Blocked { checks, message }) if console.is_some() => {
                    let options = console.clone().expect("checked above");
                    let (release, given) = (args.release.clone(), overrides.clone());
                    let shown = tokio::task::spawn_blocking(move || {
                        crate::console::checklist(&release, checks, given, &options)
                    })
                    .await;
                    match shown {
                        Ok(Ok(Decision::Start(chosen))) => overrides = chosen,
                        Ok(Ok(Decision::Quit)) => {
                            return super::refuse(exit::BLOCKED, message);
                        }
                        Ok(Err(e)) => {
                            return super::refuse(
                                exit::FAILED,
                                format!("error: the terminal failed: {e}\n{message}"),
                            )
                        }
                        Err(e) => {
                            return super::refuse(exit::FAILED, format!("error: {e}\n{message}"))
                        }
                    }
                }
                Err(r) => return super::refused(r),
            }
        };
        match console {
            None => headless(session, args.output, kept).await,
            Some(options) => in_console(session, options).await,
        }
    })
}

/// Prints the rollout's progress until its engine stops, then says how it ended. With
/// `kept`, the notable events go there instead of being printed (the final words still go
/// to stderr).
pub(super) async fn headless(
    session: RolloutSession,
    output: Output,
    mut kept: Option<&mut Vec<Event>>,
) -> u8 {
    let mut printer = Printer::new(output, session.intent().services.len());
    let (mut running, mut events) = match session.start() {
        Ok(r) => r,
        Err(r) => return super::refused(r),
    };
    // Ticks keep the progress line current between events (waits, slow steps).
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let ended = loop {
        tokio::select! {
            batch = events.receiver.recv() => for event in batch.iter().flatten() {
                show(&mut printer, kept.as_deref_mut(), event);
            },
            _ = tick.tick() => printer.draw(false),
            done = running.engine() => break done.map_err(|e| e.to_string()),
        }
    };
    let release = running.release().to_string();
    let finished = running.finish(Some(ended)).await;
    // Everything the engine emitted is printed before the final words.
    while let Ok(batch) = events.receiver.try_recv() {
        for event in &batch {
            show(&mut printer, kept.as_deref_mut(), event);
        }
    }
    printer.finish();
    match finished {
        Ok(outcome) => report(&outcome, &release),
        Err(r) => super::refused(r),
    }
}

/// An event printed, or kept when it is notable.
fn show(printer: &mut Printer, kept: Option<&mut Vec<Event>>, event: &Event) {
    match kept {
        Some(kept) if crate::engine::text::event_line(&event.kind).is_some() => {
            kept.push(event.clone())
        }
        Some(_) => {}
        None => printer.event(event),
    }
}

/// Runs the console over the rollout until the operator quits or the engine stops.
async fn in_console(session: RolloutSession, options: crate::console::Options) -> u8 {
    let (intent, plan, scanner) = (
        session.intent().clone(),
        session.plan().clone(),
        std::sync::Arc::new(session.scanner()),
    );
    let (mut running, mut events) = match session.start() {
        Ok(r) => r,
        Err(r) => return super::refused(r),
    };
    let release = running.release().to_string();
    let (mut model, ui) = crate::console::session(intent, plan, &options);
    for e in &events.past {
        model.apply(e);
    }
    let commands = running.commands.clone();
    let ran = crate::console::run(
        model,
        ui,
        &mut events.receiver,
        commands.clone(),
        Some(scanner),
        running.engine(),
    )
    .await;
    // How the engine ended, if it did, and whether the screen closed normally.
    let (finished, closed) = match ran {
        crate::console::Ended::Engine(o) => (Some(o), true),
        crate::console::Ended::Left => {
            // Quit twice: as a second Ctrl-C headless, leave now; what is recorded so far
            // is kept, the journal tells a resume the rest.
            running.flush().await;
            eprintln!("quit: steps in flight were abandoned; `flotilla console {release}` resumes this rollout");
            std::process::exit(exit::INTERRUPTED as i32);
        }
        crate::console::Ended::TerminalFailed(e, finished) => {
            eprintln!("error: the console cannot use this terminal: {e}");
            (finished, false)
        }
    };
    let ended = match finished {
        Some(Some(o)) => Some(Ok(o)),
        Some(None) => Some(Err("the engine task failed".to_string())),
        // The terminal failed while the engine ran: stop it cleanly rather than leave it
        // running blind.
        None => {
            let _ = commands.send(Command::Interrupt);
            None
        }
    };
    let outcome = match running.finish(ended).await {
        Ok(o) => o,
        Err(r) => return super::refused(r),
    };
    // The console's screen is gone: say where the rollout stands.
    if closed {
        match &outcome {
            Outcome::Completed { succeeded, failed, skipped, rolled_back } => println!(
                "rollout of {release} completed: {succeeded} succeeded, {failed} failed, {skipped} skipped, {rolled_back} rolled back"
            ),
            Outcome::Interrupted => println!(
                "rollout of {release} stopped when you quit (steps in flight finished); `flotilla console {release}` resumes it"
            ),
            _ => {}
        }
    }
    report(&outcome, &release)
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
                // --approve-all is no answer where a policy protects the wave (it said so
                // above), so the way that always works comes first.
                eprintln!("  to approve and go on: flotilla rollout {release} --approve {wave}   (or --approve-all, where no policy protects the wave)");
                eprintln!("  or wait for someone else's approval: flotilla rollout {release} --wait, then `flotilla approve {wave}`");
            }
            exit::BLOCKED
        }
        // The reason was printed with the rollout_halted event.
        Outcome::Halted {
            wave,
            failed_envs,
            before_wave,
            ..
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
            if *before_wave {
                eprintln!("  nothing in it was started.");
                eprintln!("  to go on: fix what the check found and run this rollout again;");
                eprintln!("  its checks run again first.");
            } else {
                eprintln!(
                    "  no new step started after the budget ran out; steps in flight finished."
                );
                eprintln!("  to go on: fix the release (or raise the budget) and run this rollout");
                eprintln!("  again; steps that already succeeded are no-ops.");
            }
            exit::FAILED
        }
        Outcome::Aborted { by } => {
            eprintln!("the rollout was aborted by {by}: nothing more will be applied; `flotilla rollout {release}` starts it anew");
            exit::FAILED
        }
        Outcome::Interrupted => exit::INTERRUPTED,
        Outcome::Held { envs } => {
            let shown: Vec<&str> = envs.iter().take(10).map(String::as_str).collect();
            let more = envs.len().saturating_sub(shown.len());
            eprintln!(
                "held: {}{} changed out of band; nothing was applied there (everything else is done).",
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            );
            let env = shown.first().copied().unwrap_or("ENV");
            eprintln!("  `flotilla drift {env}` shows how; each one waits for a decision:");
            eprintln!("    keep the change:    flotilla adopt {env}      (commits it to Git as an emergency layer)");
            eprintln!("    undo the change:    flotilla revert {env}     (the rollout applies {release} over it)");
            eprintln!(
                "    let it be for now:  flotilla drift accept {env} --for 24h --reason \"...\""
            );
            eprintln!("  then `flotilla rollout {release}` goes on with them (or run it with --wait to decide meanwhile)");
            exit::BLOCKED
        }
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
                self.wave = wave.to_string();
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
                let n = self.succeeded_steps.entry(env.to_string()).or_insert(0);
                *n += 1;
                if *n == self.services {
                    self.done += 1;
                }
            }
            EventKind::StepFailed { env, .. } => {
                self.failed.insert(env.to_string());
            }
            _ => {}
        }
        let line = crate::engine::text::event_line(&event.kind);
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
