//! The operations console: a terminal UI over a running rollout.
//!
//! The engine runs as a tokio task; the console only folds the events it is sent (after the
//! journal committed them) into its [`model::Model`] and sends [`Command`]s back. Keys go
//! through one action table ([`actions`]); what is drawn comes from [`panes`]; frames are
//! drawn only when something changed, at most about ten a second while events stream.

pub mod actions;
pub mod bell;
pub mod checklist;
pub mod config;
pub mod model;
pub mod panes;
pub mod screen;
pub mod theme;
pub mod ui;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossterm::event::{Event as TermEvent, KeyEventKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::drift::adopt::{AdoptError, Adopted};
use crate::drift::scan::{FleetReport, Scanner};
use crate::engine::{Command, Decision, Event, Outcome};
use crate::intent::Intent;
use crate::plan::Plan;
use model::Model;
use theme::{ColorMode, Glyphs, Theme};
use ui::{Effect, Ui};

/// How the console was asked to look and behave.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub read_only: bool,
    /// A theme name or file; else the config's, else dark.
    pub theme: Option<String>,
    /// Who commands are sent as.
    pub actor: String,
    /// Asked before quitting while the engine still runs, when quitting stops it.
    pub quit_warning: Option<String>,
    /// The engine runs in another process (named here); quitting detaches.
    pub attached_to: Option<String>,
}

/// The model and UI state for `plan`, with theme, glyphs and key map resolved from the
/// environment and the config file. Problems become warnings on screen.
pub fn session(intent: Arc<Intent>, plan: Plan, options: &Options) -> (Model, Ui) {
    let (config, mut warnings) = config::load(config::default_path().as_deref());
    let mode = ColorMode::detect();
    let theme = theme_of(options, &config, mode, &mut warnings);
    let mut keymap = actions::KeyMap::new(options.read_only);
    warnings.extend(keymap.merge(&config.keys, options.read_only));
    let model = Model::new(intent, plan);
    let mut ui = Ui::new(
        &model,
        keymap,
        options.read_only,
        options.actor.clone(),
        theme,
    );
    ui.color_mode = mode;
    ui.glyphs = Glyphs::detect();
    ui.warnings = warnings;
    ui.quit_warning = options.quit_warning.clone();
    ui.attached_to = options.attached_to.clone();
    if let Some(n) = config.newest_first {
        ui.newest_first = n;
    }
    ui.bell = config.bell.unwrap_or(true);
    ui.desktop = bell::Desktop::detect();
    match config.drift_interval() {
        Ok(d) => ui.drift_interval = d,
        Err(w) => ui.warnings.push(w),
    }
    (model, ui)
}

/// The theme `options` or the config file names, in the terminal's colours (a bad one is
/// a warning, and dark).
fn theme_of(
    options: &Options,
    config: &config::Config,
    mode: ColorMode,
    warnings: &mut Vec<String>,
) -> Theme {
    let name = options
        .theme
        .clone()
        .or(config.theme.clone())
        .unwrap_or_else(|| "dark".into());
    Theme::load(&name, mode).unwrap_or_else(|e| {
        warnings.push(e.to_string());
        Theme::default_for(mode)
    })
}

/// The preflight checklist of `release`, before anything starts, in the console's look;
/// blocks until the operator starts (with overrides) or quits.
pub fn checklist(
    release: &str,
    checks: Vec<crate::plan::Check>,
    overrides: Vec<(String, String)>,
    options: &Options,
) -> std::io::Result<checklist::Decision> {
    let (config, mut warnings) = config::load(config::default_path().as_deref());
    let theme = theme_of(options, &config, ColorMode::detect(), &mut warnings);
    checklist::run(
        checklist::Checklist::new(release, checks, theme, Glyphs::detect())
            .with_overrides(overrides),
    )
}

/// Reads terminal input on its own thread (crossterm's reads block) until told to stop.
fn spawn_input(stop: Arc<AtomicBool>) -> mpsc::UnboundedReceiver<TermEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("flotilla-input".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match crossterm::event::poll(Duration::from_millis(100)) {
                    Ok(true) => match crossterm::event::read() {
                        Ok(e) => {
                            if tx.send(e).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    },
                    Ok(false) => {}
                    Err(_) => return,
                }
            }
        })
        .expect("spawn the input thread");
    rx
}

/// The least time between two frames drawn for streaming events (keys draw at once).
pub const FRAME_GAP: Duration = Duration::from_millis(100);

/// When to draw: at once for keys, at most every [`FRAME_GAP`] while events stream, so a
/// busy rollout costs ten frames a second however many events it sends.
#[derive(Debug)]
pub struct Pacer {
    last: Instant,
    next: Option<Instant>,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            last: Instant::now() - FRAME_GAP,
            next: None,
        }
    }
}

impl Pacer {
    /// Whether to draw now (`urgent`: a key was pressed); if not, a frame is scheduled.
    pub fn draw_now(&mut self, urgent: bool) -> bool {
        let now = Instant::now();
        if urgent || now >= self.last + FRAME_GAP {
            self.last = now;
            self.next = None;
            true
        } else {
            self.next.get_or_insert(self.last + FRAME_GAP);
            false
        }
    }

    /// When the scheduled frame is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.next
    }
}

/// How the console ended.
#[derive(Debug)]
pub enum Ended {
    /// The engine finished while the console watched (None: its task was lost).
    Engine(Option<Outcome>),
    /// The operator left while the engine still runs: detached from another process's
    /// engine, or quit a second time while the steps in flight were finishing.
    Left,
    /// The terminal failed; with how the engine ended when it already had.
    TerminalFailed(std::io::Error, Option<Option<Outcome>>),
}

/// Runs the console over an engine task until the operator quits. Quitting while the engine
/// runs interrupts it (in-flight steps finish) and waits for it; quitting again leaves at
/// once. SIGTERM, SIGINT and SIGHUP quit the same way, and the terminal is always given back.
pub async fn run(
    mut model: Model,
    mut ui: Ui,
    events: &mut mpsc::UnboundedReceiver<Vec<Event>>,
    commands: mpsc::UnboundedSender<Command>,
    scanner: Option<Arc<Scanner>>,
    engine: &mut JoinHandle<Outcome>,
) -> Ended {
    screen::restore_on_panic();
    if let Err(e) = screen::enter() {
        return Ended::TerminalFailed(e, None);
    }
    let mut finished = None;
    let result = drive(
        &mut model,
        &mut ui,
        events,
        &commands,
        scanner,
        engine,
        &mut finished,
    )
    .await;
    screen::leave();
    match result {
        Ok(ended) => ended,
        Err(e) => Ended::TerminalFailed(e, finished),
    }
}

/// Tells the input thread to stop however `drive` returns.
struct StopInput(Arc<AtomicBool>);

impl Drop for StopInput {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What a drift task (a scan, an adopt, an accept) came back with.
enum DriftDone {
    /// With whether to say what it found (asked for by a key, or the first).
    Scanned(Result<FleetReport, String>, bool),
    Adopted(String, Result<Adopted, AdoptError>),
    Accepted(String, Result<String, String>),
}

/// Drift work off the console's loop: each task's answer comes back on one channel.
struct DriftTasks {
    scanner: Option<Arc<Scanner>>,
    done: mpsc::UnboundedSender<DriftDone>,
}

impl DriftTasks {
    /// Starts a scan of the fleet unless one runs (`say`: flash what it found); false when
    /// there is nothing to scan with.
    fn scan(&self, model: &mut Model, say: bool) -> bool {
        let Some(scanner) = self.scanner.clone() else {
            return false;
        };
        if !model.scanning {
            model.scan_started();
            let done = self.done.clone();
            tokio::spawn(async move {
                let _ = done.send(DriftDone::Scanned(scanner.scan().await, say));
            });
        }
        true
    }

    fn adopt(&self, env: String) -> bool {
        let Some(scanner) = self.scanner.clone() else {
            return false;
        };
        let done = self.done.clone();
        tokio::spawn(async move {
            let me = crate::identity::Identity::current();
            let result = scanner.adopt(&env, &me).await;
            let _ = done.send(DriftDone::Adopted(env, result));
        });
        true
    }

    fn accept(&self, env: String, duration: Duration, reason: String, by: String) -> bool {
        let Some(scanner) = self.scanner.clone() else {
            return false;
        };
        let done = self.done.clone();
        tokio::task::spawn_blocking(move || {
            let result = crate::drift::scan::accept(
                &scanner.store,
                &env,
                None,
                duration,
                &reason,
                &by,
                SystemTime::now(),
            );
            let _ = done.send(DriftDone::Accepted(env, result));
        });
        true
    }
}

/// Takes a drift task's answer in: a scan into the model; a decision to the engine, which
/// releases the environment, and a rescan to show where it stands.
fn drift_done(
    done: DriftDone,
    model: &mut Model,
    ui: &mut Ui,
    tasks: &DriftTasks,
    commands: &mpsc::UnboundedSender<Command>,
) {
    let release = |env: String, decision: Decision, ui: &mut Ui| {
        let sent = commands.send(Command::Release {
            env,
            decision,
            by: ui.actor.clone(),
        });
        if sent.is_err() {
            ui.flash_error("the engine has stopped; the rollout was not told");
        }
    };
    match done {
        DriftDone::Scanned(Ok(report), say) => {
            let drifted = report.drifted().len();
            model.scanned(report, SystemTime::now());
            if say {
                ui.flash(match drifted {
                    0 => "drift scan: nothing changed out of band".to_string(),
                    n => format!("drift scan: {n} environment(s) drifted"),
                });
            }
        }
        DriftDone::Scanned(Err(why), _) => {
            model.scanning = false;
            ui.flash_error(format!("drift scan failed: {why}"));
            model.drift_error = Some(why);
        }
        DriftDone::Adopted(env, Ok(adopted)) => {
            ui.flash(format!(
                "adopted into Git as {} ({}); the rollout keeps the values in {env}",
                adopted.file,
                &adopted.commit[..7.min(adopted.commit.len())]
            ));
            if let Some(w) = adopted.warning {
                ui.warnings.push(w);
            }
            release(
                env,
                Decision::Adopt {
                    commit: adopted.commit,
                },
                ui,
            );
            tasks.scan(model, false);
        }
        DriftDone::Adopted(env, Err(e)) => ui.flash_error(format!("{env}: {e}")),
        DriftDone::Accepted(env, Ok(until)) => {
            ui.flash(format!("drift of {env} accepted until {until}"));
            release(env, Decision::Accept, ui);
            tasks.scan(model, false);
        }
        DriftDone::Accepted(env, Err(why)) => {
            ui.flash_error(format!("drift of {env} not accepted: {why}"))
        }
    }
}

async fn drive(
    model: &mut Model,
    ui: &mut Ui,
    events: &mut mpsc::UnboundedReceiver<Vec<Event>>,
    commands: &mpsc::UnboundedSender<Command>,
    scanner: Option<Arc<Scanner>>,
    engine: &mut JoinHandle<Outcome>,
    outcome: &mut Option<Option<Outcome>>,
) -> std::io::Result<Ended> {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_input = StopInput(stop.clone());
    let mut input = spawn_input(stop.clone());
    let mut screen = screen::Screen::new(std::io::stdout())?;
    let (done_tx, mut drift_answers) = mpsc::unbounded_channel();
    let tasks = DriftTasks {
        scanner,
        done: done_tx,
    };
    // The fleet is scanned when the console opens, then on the rescan key and, when
    // configured, every `[drift] interval`.
    tasks.scan(model, true);
    let mut rescans = ui.drift_interval.map(|every| {
        let mut interval = tokio::time::interval_at(Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    // Quit asked for (by a key or a signal).
    let mut quit = false;
    let mut pacer = Pacer::default();
    ui.now = SystemTime::now();
    screen.frame(model, ui)?;
    loop {
        let mut draw_now = false;
        tokio::select! {
            Some(ev) = input.recv() => {
                match ev {
                    TermEvent::Key(key) if key.kind != KeyEventKind::Release => {
                        for effect in ui.key(model, key) {
                            match effect {
                                Effect::Send(c) => {
                                    if commands.send(c).is_err() {
                                        ui.flash_error("the engine has stopped; nothing was sent");
                                    }
                                }
                                Effect::Rescan => {
                                    if !tasks.scan(model, true) {
                                        ui.flash_error("no drift scans here: this console has no driver");
                                    }
                                }
                                Effect::Adopt(env) => {
                                    if tasks.adopt(env.clone()) {
                                        ui.flash(format!("adopting {env}: observing it, then committing..."));
                                    }
                                }
                                Effect::AcceptDrift { env, duration, reason } => {
                                    tasks.accept(env, duration, reason, ui.actor.clone());
                                }
                                Effect::Quit => quit = true,
                                Effect::Repaint => screen.invalidate(ui)?,
                                Effect::Suspend => {
                                    screen::suspend()?;
                                    screen.invalidate(ui)?;
                                }
                            }
                        }
                        draw_now = true;
                    }
                    TermEvent::Paste(text) => {
                        ui.paste(&text);
                        draw_now = true;
                    }
                    TermEvent::Resize(..) => {
                        ui.dirty = true;
                        draw_now = true;
                    }
                    _ => {}
                }
            }
            Some(batch) = events.recv() => {
                for e in &batch {
                    model.apply(e);
                    // A gate waiting, a halt, the end: said aloud, for eyes elsewhere.
                    if let Some(text) = bell::worth_telling(&e.kind).filter(|_| ui.bell) {
                        screen.ring(&bell::ring(ui.desktop, &text))?;
                    }
                }
                ui.events_arrived(model, &batch);
                ui.dirty = true;
            }
            Some(done) = drift_answers.recv() => {
                drift_done(done, model, ui, &tasks, commands);
                ui.dirty = true;
            }
            _ = async { rescans.as_mut().expect("guarded").tick().await }, if rescans.is_some() => {
                tasks.scan(model, false);
            }
            _ = clock.tick() => {
                ui.tick(model, SystemTime::now());
            }
            // A signal asks to quit as `q` would, without asking back.
            _ = sigterm.recv() => quit = true,
            _ = sigint.recv() => quit = true,
            _ = sighup.recv() => quit = true,
            done = &mut *engine, if outcome.is_none() => {
                // Events still in flight from the journal come first.
                while let Ok(batch) = events.try_recv() {
                    for e in &batch {
                        model.apply(e);
                    }
                }
                let o = done.ok();
                model.finished = Some(match &o {
                    Some(o) => format!("{o:?}"),
                    None => "the engine stopped unexpectedly".into(),
                });
                ui.flash(match &o {
                    Some(Outcome::Completed { .. }) => "rollout completed; q quits".to_string(),
                    Some(Outcome::Halted { .. }) => "rollout halted: the engine has exited; q quits, `flotilla rollout` resumes".to_string(),
                    Some(Outcome::Blocked { reason, .. }) => format!("rollout blocked ({reason}); q quits"),
                    Some(_) => "the engine has stopped; q quits".to_string(),
                    None => "the engine stopped unexpectedly; q quits".to_string(),
                });
                *outcome = Some(o);
                ui.dirty = true;
                draw_now = true;
            }
            _ = tokio::time::sleep_until(pacer.due().unwrap_or_else(Instant::now)), if pacer.due().is_some() => {
                draw_now = true;
            }
        }
        if quit && ui.attached_to.is_some() {
            // The engine is another process's: leaving only detaches.
            return Ok(Ended::Left);
        }
        if std::mem::take(&mut quit) {
            if outcome.is_some() {
                // The engine is done: nothing to wait for.
                return Ok(Ended::Engine(outcome.take().flatten()));
            }
            if ui.stopping {
                // Asked again while the steps in flight finish: leave now.
                return Ok(Ended::Left);
            }
            // Stop starting work, let the steps in flight finish, then leave.
            ui.stopping = true;
            let _ = commands.send(Command::Interrupt);
            ui.flash("stopping: waiting for the steps in flight to finish (q again leaves now)");
        }
        if ui.stopping && outcome.is_some() {
            return Ok(Ended::Engine(outcome.take().flatten()));
        }
        if !ui.dirty {
            continue;
        }
        if pacer.draw_now(draw_now) {
            screen.frame(model, ui)?;
        }
    }
}
