//! `flotilla rollout RELEASE`: a headless rollout for scripts, CI and terminals.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::{default_state, exit, load, output, whoami, Output};
use crate::drivers::sim::SimFleet;
use crate::drivers::Driver;
use crate::engine::{Command, Engine, Event, EventKind, OnHold, Outcome, TokioClock};
use crate::intent::{DriverKind, Gate};
use crate::plan::{self, CheckStatus};

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
    /// plain: progress and notable events; json: one event per line.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

pub fn run(repo: &Path, rev: &str, state: Option<&Path>, args: &RolloutArgs) -> u8 {
    let loaded = match load(repo, rev) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let intent = Arc::new(loaded.intent);
    let mut plan = match plan::build(&intent, &args.release, SystemTime::now()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID;
        }
    };
    let waves: Vec<&str> = plan.waves.iter().map(|w| w.name.as_str()).collect();
    for w in &args.approve {
        if !waves.contains(&w.as_str()) {
            eprintln!(
                "error: --approve {w}: the plan has no wave `{w}` (waves: {})",
                waves.join(", ")
            );
            return exit::INVALID;
        }
    }
    if intent.driver.kind != DriverKind::Sim {
        eprintln!(
            "error: the `{:?}` driver is not available in this version; use kind = \"sim\"",
            intent.driver.kind
        );
        return exit::INVALID;
    }
    let state_path = state
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_state(&intent.fleet));
    let fleet = match SimFleet::open(
        intent.driver.sim.clone(),
        intent.release(&args.release),
        &state_path,
    ) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID;
        }
    };
    let driver: Arc<dyn Driver> = fleet.clone();
    super::plan::add_reachability(&intent, &mut plan, &driver);
    let failed: Vec<_> = plan
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .collect();
    if !failed.is_empty() {
        for c in &failed {
            eprintln!("preflight FAILED: {}: {}", c.name, c.detail);
        }
        eprintln!(
            "blocked: nothing was started; `flotilla plan {}` shows every check",
            args.release
        );
        return exit::BLOCKED;
    }

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    let me = whoami();
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

    runtime.block_on(async move {
        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        for wave in approvals {
            let _ = cmd_tx.send(Command::Approve {
                wave,
                by: me.clone(),
                note: Some("approved in advance on the command line".into()),
            });
        }
        let engine = Engine::new(
            intent.clone(),
            plan,
            driver,
            Arc::new(TokioClock::new()),
            event_tx,
            cmd_rx,
            OnHold::Exit,
        );
        let engine = tokio::spawn(engine.run());

        // Ctrl-C once: stop starting work and let in-flight steps finish. Twice: leave now.
        let interrupts = cmd_tx.clone();
        let saver_fleet = fleet.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupt: starting nothing new, waiting for the steps in flight to finish (Ctrl-C again to quit at once)");
                let _ = interrupts.send(Command::Interrupt);
                if tokio::signal::ctrl_c().await.is_ok() {
                    let _ = saver_fleet.save();
                    eprintln!("quit: steps in flight were abandoned; the fleet state was saved");
                    std::process::exit(exit::INTERRUPTED as i32);
                }
            }
        });
        // Save the fleet now and then, so a killed process loses little.
        let periodic = fleet.clone();
        let saver = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if let Err(e) = periodic.save() {
                    eprintln!("warning: {e}");
                }
            }
        });

        let mut printer = Printer::new(output, services);
        // Ticks keep the progress line current between events (waits, slow steps).
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                event = event_rx.recv() => match event {
                    Some(event) => printer.event(&event),
                    None => break,
                },
                _ = tick.tick() => printer.draw(false),
            }
        }
        printer.finish();
        saver.abort();
        drop(cmd_tx);
        if let Err(e) = fleet.save() {
            eprintln!("error: {e}");
        }
        let outcome = match engine.await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: the engine stopped unexpectedly: {e}");
                return exit::FAILED;
            }
        };
        report(&outcome, &release)
    })
}

/// Final words and exit code for each way a rollout can end.
fn report(outcome: &Outcome, release: &str) -> u8 {
    match outcome {
        Outcome::Completed { failed: 0, .. } => exit::OK,
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
                eprintln!("  --approve counts as one approval (yours); this gate needs approvals from different people");
            } else {
                eprintln!("  to approve and go on: flotilla rollout {release} --approve {wave}   (or --approve-all)");
            }
            exit::BLOCKED
        }
        Outcome::Halted {
            wave,
            reason,
            failed_envs,
        } => {
            eprintln!("halted in wave `{wave}`: {reason}");
            let shown: Vec<&str> = failed_envs.iter().take(10).map(String::as_str).collect();
            let more = failed_envs.len().saturating_sub(shown.len());
            eprintln!(
                "  failed: {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
            eprintln!("  no new step started after the budget ran out; steps in flight finished.");
            eprintln!("  to go on: fix the release (or raise the budget) and run this rollout");
            eprintln!("  again; steps that already succeeded are no-ops.");
            exit::FAILED
        }
        Outcome::Aborted { by } => {
            eprintln!("aborted by {by}");
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
        // The final report says it all for a halt; do not print it twice.
        let line = match &event.kind {
            EventKind::RolloutHalted { .. } => None,
            kind => output::event_line(kind),
        };
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
