//! The operations console: a terminal UI over a running rollout.
//!
//! The engine runs as a tokio task; the console only folds the events it is sent (after the
//! journal committed them) into its [`model::Model`] and sends [`Command`]s back. Keys go
//! through one action table ([`actions`]); what is drawn comes from [`panes`]; frames are
//! drawn only when something changed, at most about ten a second while events stream.

pub mod actions;
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

use crate::drivers::Driver;
use crate::engine::{Command, Event, Outcome};
use crate::intent::Intent;
use crate::plan::Plan;
use model::Model;
use theme::{ColorMode, Glyphs, Theme};
use ui::{Effect, Observed, Ui};

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
    let theme_name = options
        .theme
        .clone()
        .or(config.theme.clone())
        .unwrap_or_else(|| "dark".into());
    let theme = Theme::load(&theme_name, mode).unwrap_or_else(|e| {
        warnings.push(e.to_string());
        Theme::default_for(mode)
    });
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
    (model, ui)
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
    driver: Arc<dyn Driver>,
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
        driver,
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

/// How long the cursor must rest on an environment before its live state is observed, so
/// holding down a key does not send the driver one observe per cell passed.
const OBSERVE_AFTER: Duration = Duration::from_millis(150);

async fn drive(
    model: &mut Model,
    ui: &mut Ui,
    events: &mut mpsc::UnboundedReceiver<Vec<Event>>,
    commands: &mpsc::UnboundedSender<Command>,
    driver: Arc<dyn Driver>,
    engine: &mut JoinHandle<Outcome>,
    outcome: &mut Option<Option<Outcome>>,
) -> std::io::Result<Ended> {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_input = StopInput(stop.clone());
    let mut input = spawn_input(stop.clone());
    let mut screen = screen::Screen::new(std::io::stdout())?;
    // Observations carry the number they were asked with: only the newest is shown, however
    // the driver's answers are ordered.
    let (observe_tx, mut observed) = mpsc::unbounded_channel::<(u64, Observed)>();
    let (intent, release) = (model.intent.clone(), model.plan.release.clone());
    let mut asked = 0u64;
    let mut observe = |name: String| {
        asked += 1;
        let number = asked;
        let tx = observe_tx.clone();
        let driver = driver.clone();
        let intent = intent.clone();
        let release = release.clone();
        tokio::spawn(async move {
            let result = async {
                let env = intent.environment(&name).ok_or("not in the intent")?;
                let rel = intent
                    .release(&release)
                    .ok_or("release not in the intent")?;
                let desired = crate::intent::layers::render(&intent, rel, env).desired;
                let live = driver.observe(env).await.map_err(|e| e.message)?;
                Ok::<_, String>(crate::drift::compare(&desired, &live))
            }
            .await;
            let _ = tx.send((
                number,
                match result {
                    Ok(report) => Observed::Done(name, report),
                    Err(why) => Observed::Failed(name, why.to_string()),
                },
            ));
        });
        number
    };
    // The environment to observe next and when.
    let mut observe_due: Option<(String, Instant)> = None;
    if let Some(i) = ui.selected() {
        let name = model.envs[i].name.clone();
        ui.observed = Some(Observed::Loading(name.clone()));
        observe_due = Some((name, Instant::now()));
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    let mut latest = 0u64;
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
                                Effect::Observe(name) => {
                                    observe_due = Some((name, Instant::now() + OBSERVE_AFTER));
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
                let selected = ui.selected().map(|i| model.envs[i].name.clone());
                let mut touched = false;
                for e in &batch {
                    model.apply(e);
                    touched |= selected.is_some() && e.kind.subject().1 == selected.as_deref();
                }
                ui.events_arrived(&batch);
                // The detail pane's live side follows what just happened there, at the
                // pace of the observe delay however many events touch it.
                if let (true, Some(name)) = (touched, selected) {
                    if observe_due.is_none() {
                        observe_due = Some((name, Instant::now() + OBSERVE_AFTER));
                    }
                }
                ui.dirty = true;
            }
            _ = tokio::time::sleep_until(observe_due.as_ref().map_or_else(Instant::now, |d| d.1)), if observe_due.is_some() => {
                if let Some((name, _)) = observe_due.take() {
                    latest = observe(name);
                }
            }
            Some((number, obs)) = observed.recv() => {
                if number == latest {
                    if let Observed::Done(env, report) = &obs {
                        model.observed(env, report);
                    }
                    ui.observed = Some(obs);
                    ui.dirty = true;
                }
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
