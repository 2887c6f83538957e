//! The console's own state (cursor, focus, marks, filter, dialogs, flash) and what keys do
//! to it. Keys never touch the rollout: they return [`Effect`]s (commands for the engine and
//! requests for the runtime). Everything here is plain data, tested without a terminal.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui_textarea::TextArea;

use super::actions::{self, Act, Args, Confirm, KeyMap};
use super::model::{CellState, Model};
use super::panes::{Change, Geometry, Pane, Target, View};
use super::theme::{ColorMode, Glyphs, Theme};
use crate::engine::{Command, RolloutState};
use crate::selector::Selector;

/// Fleets larger than this start with the compact grid.
pub const COMPACT_ABOVE: usize = 500;

/// How long a flash stays on screen.
pub const FLASH_FOR: std::time::Duration = std::time::Duration::from_secs(8);

/// What a key asks of the world outside the UI state.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A command for the engine.
    Send(Command),
    /// Scan the fleet for drift now.
    Rescan,
    /// Adopt this environment's drift into Git, then release it in the rollout.
    Adopt(String),
    /// Accept this environment's drift for a while, then release it in the rollout.
    AcceptDrift {
        env: String,
        duration: std::time::Duration,
        reason: String,
    },
    Quit,
    /// Repaint everything (Ctrl-L).
    Repaint,
    /// Suspend to the shell (Ctrl-Z).
    Suspend,
}

/// What a text box is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Purpose {
    Command,
    Filter,
    EventFilter,
    ApproveNote {
        wave: String,
    },
    /// One reason for every environment named.
    SkipReason {
        envs: Vec<String>,
    },
    /// How long an environment's drift may stay, and why.
    AcceptDrift {
        env: String,
    },
    /// An action on a whole wave or the rollout: the target's name must be typed.
    TypeToConfirm {
        act: Act,
        expected: String,
        then: Vec<Effect>,
        /// What it does, in words, for the dialog's title.
        what: String,
    },
}

/// What a `:` command line gave after the action's name (see [`actions::Args`]).
#[derive(Debug)]
enum Given {
    /// Nothing: the action runs as its key does.
    Nothing,
    Envs(Vec<String>),
    /// A wave, and the words after it.
    Wave(String, String),
    /// An environment, and the words after it.
    Env(String, String),
    Words(String),
}

/// A dialog or overlay on top of the panes.
pub enum Mode {
    Normal,
    /// The help overlay, scrolled this far.
    Help(u16),
    Input {
        purpose: Purpose,
        text: Box<TextArea<'static>>,
    },
    /// y/n before a dangerous action.
    Confirm {
        prompt: String,
        then: Vec<Effect>,
        /// Whether `y` also clears the marks (they named what the action is for).
        clear_marks: bool,
    },
}

/// A selection filter over the grid.
#[derive(Debug, Clone)]
pub enum Filter {
    Selector(String, Selector),
    Name(String),
}

impl Filter {
    /// A selector when the text reads as one (`ring=canary`, `tier in (a,b)`), else a name.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let looks_like_selector = text.contains('=')
            || text.contains('!')
            || text.contains(" in ")
            || text.contains(" notin ");
        if looks_like_selector {
            Selector::parse(text)
                .map(|s| Filter::Selector(text.to_string(), s))
                .map_err(|e| format!("filter `{text}`: {e}"))
        } else {
            Ok(Filter::Name(text.to_string()))
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Filter::Selector(t, _) | Filter::Name(t) => t,
        }
    }

    fn matches(&self, name: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        match self {
            Filter::Name(t) => name.contains(t.as_str()),
            Filter::Selector(_, s) => labels.is_some_and(|l| s.matches(l)),
        }
    }
}

/// Which events the log shows: every term must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    pub text: String,
    terms: Vec<(Option<String>, String)>,
}

impl EventFilter {
    /// `env=NAME`, `wave=NAME`, `kind=KIND` (a prefix: `kind=step`), or words in the line.
    pub fn parse(text: &str) -> Result<EventFilter, String> {
        let mut terms = Vec::new();
        for word in text.split_whitespace() {
            match word.split_once('=') {
                Some((key @ ("env" | "wave" | "kind"), value)) => {
                    terms.push((Some(key.to_string()), value.to_string()))
                }
                Some((key, _)) => {
                    return Err(format!(
                        "event filter: no field `{key}` (env=, wave=, kind= or plain words)"
                    ))
                }
                None => terms.push((None, word.to_lowercase())),
            }
        }
        Ok(EventFilter {
            text: text.to_string(),
            terms,
        })
    }

    /// Whether the log shows `event`.
    pub fn matches(&self, event: &crate::engine::Event) -> bool {
        let (wave, env, _, _) = event.kind.subject();
        self.terms.iter().all(|(key, value)| match key.as_deref() {
            Some("env") => env == Some(value.as_str()),
            Some("wave") => wave == Some(value.as_str()),
            Some(_) => event.kind.name().starts_with(value.as_str()),
            None => super::panes::log::line_of(event)
                .to_lowercase()
                .contains(value.as_str()),
        })
    }
}

/// A result line under the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    pub error: bool,
}

/// The console's UI state.
pub struct Ui {
    pub keymap: KeyMap,
    pub read_only: bool,
    /// Who the commands are sent as (user@host).
    pub actor: String,
    pub theme: Theme,
    pub color_mode: ColorMode,
    pub glyphs: Glyphs,
    /// Every pane ([`super::panes::all`]), each with its own scroll state.
    pub panes: Vec<Box<dyn Pane>>,
    /// The pane with the focus (an index into `panes`).
    pub focus: usize,
    /// Position in `visible` of the selected environment.
    pub cursor: usize,
    /// Marked environments (model indexes).
    pub marks: BTreeSet<usize>,
    pub filter: Option<Filter>,
    /// Model indexes of the environments the filter lets through, in grid order.
    pub visible: Vec<usize>,
    pub newest_first: bool,
    /// Ring the bell when a gate waits or a rollout halts or completes.
    pub bell: bool,
    /// How the terminal shows a desktop notification, if it does.
    pub desktop: super::bell::Desktop,
    /// Grid cells without names: a large fleet at a glance.
    pub compact: bool,
    pub event_filter: Option<EventFilter>,
    pub mode: Mode,
    pub flash: Option<Flash>,
    /// When the flash was set; it goes after [`FLASH_FOR`].
    pub flash_at: SystemTime,
    /// Problems with the config, shown until dismissed.
    pub warnings: Vec<String>,
    /// How often to rescan the fleet for drift in the background (console.toml).
    pub drift_interval: Option<std::time::Duration>,
    /// When quitting stops a rollout this console runs: the warning to confirm.
    pub quit_warning: Option<String>,
    /// The engine this console watches from outside (user@host pid), when it runs elsewhere:
    /// quitting then only detaches.
    pub attached_to: Option<String>,
    /// Quit was confirmed and the engine is letting its steps in flight finish.
    pub stopping: bool,
    /// Set by anything that changes what is drawn; cleared by drawing.
    pub dirty: bool,
    /// The clock's time, moved on by the runtime.
    pub now: SystemTime,
}

impl Ui {
    /// UI state for `model`'s fleet.
    pub fn new(model: &Model, keymap: KeyMap, read_only: bool, actor: String, theme: Theme) -> Ui {
        let mut ui = Ui {
            keymap,
            read_only,
            actor,
            color_mode: ColorMode::Palette256,
            theme,
            glyphs: Glyphs { unicode: true },
            panes: super::panes::all(),
            focus: 0,
            cursor: 0,
            marks: BTreeSet::new(),
            filter: None,
            visible: Vec::new(),
            newest_first: true,
            bell: true,
            desktop: super::bell::Desktop::None,
            compact: model.envs.len() > COMPACT_ABOVE,
            event_filter: None,
            mode: Mode::Normal,
            flash: None,
            flash_at: SystemTime::UNIX_EPOCH,
            warnings: Vec::new(),
            drift_interval: None,
            quit_warning: None,
            attached_to: None,
            stopping: false,
            dirty: true,
            now: SystemTime::UNIX_EPOCH,
        };
        ui.refilter(model);
        ui
    }

    /// The selected environment (model index).
    pub fn selected(&self) -> Option<usize> {
        self.visible.get(self.cursor).copied()
    }

    pub fn flash(&mut self, text: impl Into<String>) {
        self.flash = Some(Flash {
            text: text.into(),
            error: false,
        });
        self.flash_at = self.now;
        self.dirty = true;
    }

    pub fn flash_error(&mut self, text: impl Into<String>) {
        self.flash = Some(Flash {
            text: text.into(),
            error: true,
        });
        self.flash_at = self.now;
        self.dirty = true;
    }

    /// Recomputes the visible environments after the filter changed.
    pub fn refilter(&mut self, model: &Model) {
        let selected = self.selected();
        self.visible = (0..model.envs.len())
            .filter(|&i| {
                self.filter.as_ref().is_none_or(|f| {
                    let name = &model.envs[i].name;
                    f.matches(name, model.intent.environment(name).map(|e| &e.labels))
                })
            })
            .collect();
        self.cursor = selected
            .and_then(|s| self.visible.iter().position(|&i| i == s))
            .unwrap_or(0);
        self.changed(model, Change::Environments);
        self.dirty = true;
    }

    /// Tells every pane what changed in what they show.
    fn changed(&mut self, model: &Model, what: Change) {
        self.with_panes(model, |panes, view| {
            for p in panes.iter_mut() {
                p.changed(what, view);
            }
        });
    }

    /// Runs `f` on the panes with a read-only view of the rest of the UI: the panes are
    /// taken out for the while (an empty Vec, no allocation), as a pane cannot be changed
    /// while the UI that holds it is read.
    fn with_panes<R>(
        &mut self,
        model: &Model,
        f: impl FnOnce(&mut [Box<dyn Pane>], View) -> R,
    ) -> R {
        let mut panes = std::mem::take(&mut self.panes);
        let r = f(&mut panes, View { model, ui: self });
        self.panes = panes;
        r
    }

    /// Takes in where the last frame placed each pane.
    pub fn placed(&mut self, geometry: Geometry) {
        for (i, placed) in geometry.placed {
            if let Some(p) = self.panes.get_mut(i) {
                p.placed(placed);
            }
        }
    }

    /// The index of the pane titled `title`.
    fn pane_titled(&self, title: &str) -> usize {
        self.panes
            .iter()
            .position(|p| p.title() == title)
            .unwrap_or(self.focus)
    }

    /// Handles one key; what it asks of the runtime comes back.
    pub fn key(&mut self, model: &Model, key: KeyEvent) -> Vec<Effect> {
        let before = self.selected();
        let effects = self.key_in_mode(model, key);
        self.follow_selection(model, before, effects)
    }

    /// A paste (bracketed by the terminal) goes into the open text box as one line; outside
    /// a text box it is ignored, so pasted text never acts as keys.
    pub fn paste(&mut self, text: &str) {
        self.dirty = true;
        match &mut self.mode {
            Mode::Input { text: area, .. } => {
                let line: String = text
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                area.insert_str(line);
            }
            _ => self.flash_error("paste ignored: open a text box first (: / f or an action)"),
        }
    }

    /// New events arrived (already folded into the model): a log scrolled back keeps showing
    /// the same events, and a command of this console's that the engine refused is said.
    pub fn events_arrived(&mut self, model: &Model, batch: &[crate::engine::Event]) {
        for e in batch {
            if let crate::engine::EventKind::CommandRejected {
                command,
                reason,
                by,
            } = &e.kind
            {
                if *by == self.actor {
                    self.flash_error(format!("{command} refused: {reason}"));
                }
            }
        }
        self.with_panes(model, |panes, view| {
            for p in panes.iter_mut() {
                p.arrived(batch, view);
            }
        });
    }

    /// When the selected environment changed, every pane hears of it (the detail starts at
    /// its top, the waves follow).
    fn follow_selection(
        &mut self,
        model: &Model,
        before: Option<usize>,
        effects: Vec<Effect>,
    ) -> Vec<Effect> {
        if self.selected() != before {
            self.changed(model, Change::Selection);
        }
        effects
    }

    fn key_in_mode(&mut self, model: &Model, key: KeyEvent) -> Vec<Effect> {
        self.dirty = true;
        match &mut self.mode {
            Mode::Normal => {}
            Mode::Help(scroll) => {
                match key.code {
                    KeyCode::Esc | KeyCode::Char('q' | '?') => self.mode = Mode::Normal,
                    KeyCode::Down | KeyCode::Char('j') => *scroll = scroll.saturating_add(1),
                    KeyCode::Up | KeyCode::Char('k') => *scroll = scroll.saturating_sub(1),
                    KeyCode::PageDown | KeyCode::Char(' ') => *scroll = scroll.saturating_add(10),
                    KeyCode::PageUp => *scroll = scroll.saturating_sub(10),
                    _ => {}
                }
                return Vec::new();
            }
            Mode::Confirm {
                then, clear_marks, ..
            } => {
                let then = std::mem::take(then);
                let clear_marks = *clear_marks;
                self.mode = Mode::Normal;
                return if matches!(key.code, KeyCode::Char('y' | 'Y')) {
                    if clear_marks {
                        self.marks.clear();
                    }
                    then
                } else {
                    self.flash("cancelled");
                    Vec::new()
                };
            }
            Mode::Input { .. } => return self.input_key(model, key),
        }
        // A warning is dismissed by the next key.
        self.warnings.clear();
        let Some(act) = self.keymap.action(&key) else {
            return Vec::new();
        };
        self.act(model, act)
    }

    /// Runs an action as its key would.
    pub fn run(&mut self, model: &Model, act: Act) -> Vec<Effect> {
        let before = self.selected();
        let effects = self.act(model, act);
        self.follow_selection(model, before, effects)
    }

    fn act(&mut self, model: &Model, act: Act) -> Vec<Effect> {
        if self.read_only && actions::info(act).changes {
            self.flash_error("read-only: this console cannot change the rollout");
            return Vec::new();
        }
        match act {
            Act::Quit => match (&self.quit_warning, model.active()) {
                // Only when the engine runs here: y/n whatever the table says.
                (Some(w), true) if !self.stopping => {
                    self.ask_as(Confirm::YesNo, act, w.clone(), "", vec![Effect::Quit])
                }
                _ => vec![Effect::Quit],
            },
            // The engine runs in this process: stopping the process stops the rollout too.
            Act::Suspend if self.quit_warning.is_some() && model.active() => self.ask_as(
                Confirm::YesNo,
                act,
                "Ctrl-Z stops this process and the engine in it: no step moves until `fg`. Suspend?"
                    .into(),
                "",
                vec![Effect::Suspend],
            ),
            Act::Help => {
                self.mode = Mode::Help(0);
                Vec::new()
            }
            Act::CommandMode => self.open(Purpose::Command, "", ""),
            Act::Filter => self.open(Purpose::Filter, "", ""),
            Act::EventFilter => self.open(Purpose::EventFilter, "", ""),
            Act::Up | Act::Down | Act::Left | Act::Right | Act::Top | Act::Bottom => {
                self.move_focused(model, act, 1);
                Vec::new()
            }
            Act::PageUp | Act::PageDown => {
                let step = if act == Act::PageUp {
                    Act::Up
                } else {
                    Act::Down
                };
                let page = self.panes[self.focus].page();
                self.move_focused(model, step, page);
                Vec::new()
            }
            Act::NextPane | Act::PrevPane => {
                let n = self.panes.len();
                let next = if act == Act::NextPane {
                    self.focus + 1
                } else {
                    self.focus + n - 1
                };
                self.focus = next % n;
                Vec::new()
            }
            Act::ShowPane(n) => {
                self.focus = n.min(self.panes.len() - 1);
                Vec::new()
            }
            Act::Detail => {
                self.focus = self.pane_titled(super::panes::detail::TITLE);
                Vec::new()
            }
            Act::Mark => {
                if let Some(i) = self.selected() {
                    if !self.marks.remove(&i) {
                        self.marks.insert(i);
                    }
                    self.flash(format!("{} marked", self.marks.len()));
                }
                Vec::new()
            }
            Act::ClearMarks => {
                self.marks.clear();
                self.flash("marks cleared");
                Vec::new()
            }
            Act::LogOrder => {
                self.newest_first = !self.newest_first;
                self.changed(model, Change::Events);
                self.flash(if self.newest_first {
                    "events: newest first"
                } else {
                    "events: newest last"
                });
                Vec::new()
            }
            Act::Theme => {
                let names: Vec<&str> = super::theme::BUILT_IN.iter().map(|(n, _)| *n).collect();
                let i = names
                    .iter()
                    .position(|n| *n == self.theme.name)
                    .unwrap_or(0);
                self.set_theme(names[(i + 1) % names.len()]);
                Vec::new()
            }
            Act::Compact => {
                self.compact = !self.compact;
                self.changed(model, Change::Environments);
                self.flash(if self.compact {
                    "fleet grid: glyphs only (3 shows the selected environment)"
                } else {
                    "fleet grid: with names"
                });
                Vec::new()
            }
            Act::Repaint => vec![Effect::Repaint],
            Act::Suspend => vec![Effect::Suspend],
            Act::Approve => {
                match model.waiting_for_approval() {
                    Some(wave) => {
                        let title = wave.to_string();
                        self.open(Purpose::ApproveNote { wave: title }, "", "")
                    }
                    None => {
                        self.flash_error("no gate is waiting for an approval (`:approve WAVE` approves one ahead)");
                        Vec::new()
                    }
                }
            }
            Act::Pause => {
                if matches!(model.view.state, RolloutState::Running | RolloutState::Waiting) {
                    self.flash("pause sent");
                    vec![Effect::Send(Command::Pause {
                        by: self.actor.clone(),
                    })]
                } else {
                    self.flash_error(format!("cannot pause: the rollout is {}", model.view.state));
                    Vec::new()
                }
            }
            Act::Resume => {
                if matches!(model.view.state, RolloutState::Paused | RolloutState::Halted) {
                    self.flash("resume sent");
                    vec![Effect::Send(Command::Resume {
                        by: self.actor.clone(),
                    })]
                } else {
                    self.flash_error(format!(
                        "cannot resume: the rollout is {}",
                        model.view.state
                    ));
                    Vec::new()
                }
            }
            Act::Retry => {
                let envs: Vec<String> = self
                    .marks
                    .iter()
                    .map(|&i| model.envs[i].name.clone())
                    .collect();
                self.retry(model, envs)
            }
            Act::Skip => {
                let envs = self.picked(model);
                if envs.is_empty() {
                    Vec::new()
                } else {
                    self.open(Purpose::SkipReason { envs }, "", "")
                }
            }
            Act::Rollback => match self.panes[self.focus].target() {
                Target::Wave(w) => {
                    let last = model.plan.waves.len().saturating_sub(1);
                    let wave = model.plan.waves[w.min(last)].name.clone();
                    self.rollback_wave(model, wave)
                }
                Target::Selection => {
                    let envs = self.picked(model);
                    self.rollback_envs(model, envs)
                }
            },
            Act::Rescan => {
                if model.scanning {
                    self.flash("a drift scan is under way");
                    return Vec::new();
                }
                self.flash(format!(
                    "scanning {} environment(s) for drift...",
                    model.envs.len()
                ));
                vec![Effect::Rescan]
            }
            Act::Adopt => {
                let Some(env) = self.drifted_selection(model, "adopt") else {
                    return Vec::new();
                };
                let what = drift_keys(model, &env);
                self.ask(
                    act,
                    format!(
                        "Adopt {env}'s live values into Git ({what})? Commits emergency/{env}.toml on the current branch; the rollout keeps them."
                    ),
                    &env.clone(),
                    vec![Effect::Adopt(env)],
                )
            }
            Act::Revert => {
                let Some(env) = self.drifted_selection(model, "revert") else {
                    return Vec::new();
                };
                // Only an environment this rollout has yet to finish can be put right by
                // it: the rollout applies its desired state over the change.
                let i = model.env_index(&env).expect("selected");
                if !matches!(model.envs[i].state, CellState::Held | CellState::Pending) {
                    self.flash_error(format!(
                        "{env} is {} in this rollout: once it is done, `flotilla revert {env}` puts it back",
                        model.envs[i].state.name()
                    ));
                    return Vec::new();
                }
                let what = drift_keys(model, &env);
                self.ask(
                    act,
                    format!(
                        "Revert {env}'s out-of-band change ({what})? The rollout applies {} over it.",
                        model.plan.release
                    ),
                    &env.clone(),
                    vec![Effect::Send(Command::Release {
                        env,
                        decision: crate::engine::Decision::Revert,
                        by: self.actor.clone(),
                    })],
                )
            }
            Act::AcceptDrift => {
                let Some(env) = self.drifted_selection(model, "accept") else {
                    return Vec::new();
                };
                self.open(Purpose::AcceptDrift { env }, "24h ", "")
            }
            Act::Abort => {
                let release = model.view.release.clone();
                self.ask(
                    act,
                    format!(
                        "abort the rollout of {release}: steps in flight finish, environments part-way stay as they are."
                    ),
                    &release,
                    vec![Effect::Send(Command::Abort {
                        by: self.actor.clone(),
                    })],
                )
            }
        }
    }

    fn retry(&mut self, model: &Model, envs: Vec<String>) -> Vec<Effect> {
        let mut prompt = if envs.is_empty() {
            let failed: Vec<String> = model
                .envs
                .iter()
                .filter(|e| e.state == CellState::Failed)
                .map(|e| e.name.clone())
                .collect();
            if failed.is_empty() {
                self.flash_error("nothing to retry: no environment failed (mark some with Space)");
                return Vec::new();
            }
            format!(
                "Retry all {} failed environment(s) ({})?",
                failed.len(),
                short_list(&failed)
            )
        } else {
            format!(
                "Retry {} environment(s) ({})?",
                envs.len(),
                short_list(&envs)
            )
        };
        // Say what else follows: back within budget, a halt lifts and the rollout goes on.
        if model.view.state == RolloutState::Halted {
            prompt.push_str(
                " Once failures are within budget the halt lifts and the rollout carries on.",
            );
        }
        self.ask(
            Act::Retry,
            prompt,
            "",
            vec![Effect::Send(Command::Retry {
                envs,
                by: self.actor.clone(),
            })],
        )
    }

    /// What an action on environments acts on: the marked ones, or the selected one.
    fn picked(&self, model: &Model) -> Vec<String> {
        if self.marks.is_empty() {
            self.selected()
                .map(|i| model.envs[i].name.clone())
                .into_iter()
                .collect()
        } else {
            self.marks
                .iter()
                .map(|&i| model.envs[i].name.clone())
                .collect()
        }
    }

    /// Rolling environments back asks y/n, naming them and the release they go back to.
    fn rollback_envs(&mut self, model: &Model, envs: Vec<String>) -> Vec<Effect> {
        let Some(to) = self.rollback_target(model) else {
            return Vec::new();
        };
        if envs.is_empty() {
            return Vec::new();
        }
        // The engine refuses these (all or nothing): say so before asking anything.
        let untouched: Vec<String> = envs.iter().filter(|e| !model.touched(e)).cloned().collect();
        if !untouched.is_empty() {
            self.flash_error(format!(
                "nothing to roll back in {}: not changed by this rollout",
                short_list(&untouched)
            ));
            return Vec::new();
        }
        let prompt = format!(
            "Roll back {} environment(s) ({}) to {to}? {}",
            envs.len(),
            short_list(&envs),
            after_rollback(model)
        );
        self.ask(
            Act::Rollback,
            prompt,
            "",
            vec![Effect::Send(Command::Rollback {
                envs,
                wave: None,
                to: None,
                by: self.actor.clone(),
            })],
        )
    }

    /// The release a rollback goes back to, or None (said on the flash line) when there is
    /// none or nothing runs a rollback: rollbacks are the engine's work, and once it has
    /// ended that is said before anything is asked.
    fn rollback_target<'m>(&mut self, model: &'m Model) -> Option<&'m str> {
        let to = model.rollback_target();
        if !model.active() {
            self.flash_error(match to {
                Some(to) => format!(
                    "the rollout has ended: a rollback needs it running; `flotilla rollout {to}` puts the fleet back"
                ),
                None => "the rollout has ended: a rollback needs it running".to_string(),
            });
            return None;
        }
        if to.is_none() {
            self.flash_error("nothing to roll back to: no release before this one in releases/");
        }
        to
    }

    /// A whole wave goes back only when its name is typed.
    fn rollback_wave(&mut self, model: &Model, wave: String) -> Vec<Effect> {
        let Some(to) = self.rollback_target(model) else {
            return Vec::new();
        };
        let started = model.view.waves.iter().any(|w| w.name == wave && w.started);
        if !started {
            self.flash_error(format!(
                "wave {wave} has not started: nothing in it to roll back"
            ));
            return Vec::new();
        }
        // Say up front what a wave rollback cannot undo.
        let w = model.plan.waves.iter().position(|x| x.name == wave);
        let stay: Vec<String> = w
            .map(|w| model.forward_only_changes(w))
            .unwrap_or_default()
            .into_iter()
            .map(str::to_string)
            .collect();
        let stay = if stay.is_empty() {
            String::new()
        } else {
            format!(
                " {} changed only forward-only services and stay as they are.",
                short_list(&stay)
            )
        };
        self.ask_as(
            actions::info(Act::Rollback).confirm.for_wave(),
            Act::Rollback,
            format!(
                "roll back wave {wave} to {to}. {}{stay}",
                after_rollback(model)
            ),
            &wave.clone(),
            vec![Effect::Send(Command::Rollback {
                envs: Vec::new(),
                wave: Some(wave),
                to: None,
                by: self.actor.clone(),
            })],
        )
    }

    /// Asks before `then` runs, the way the action table says `act` asks: `text` is the
    /// question (or, when a name is to be typed, what it does) and `name` what to type.
    fn ask(&mut self, act: Act, text: String, name: &str, then: Vec<Effect>) -> Vec<Effect> {
        self.ask_as(actions::info(act).confirm, act, text, name, then)
    }

    /// Asks as `how` says, whatever the table says (a wave's name typed, a quit that stops
    /// the engine here).
    fn ask_as(
        &mut self,
        how: Confirm,
        act: Act,
        text: String,
        name: &str,
        then: Vec<Effect>,
    ) -> Vec<Effect> {
        match how {
            // A typed line was asked for before (the note, the reason): it is the answer.
            Confirm::Never | Confirm::Typed(_) => then,
            Confirm::YesNo => {
                self.mode = Mode::Confirm {
                    prompt: text,
                    then,
                    // An action on the marks is done with them once confirmed; they stay
                    // for another try if not.
                    clear_marks: matches!(actions::info(act).args, Args::Envs | Args::EnvsOrWave),
                };
                Vec::new()
            }
            Confirm::TypeName => self.open(
                Purpose::TypeToConfirm {
                    act,
                    expected: name.to_string(),
                    then,
                    what: text,
                },
                "",
                "",
            ),
        }
    }

    fn open(&mut self, purpose: Purpose, text: &str, _placeholder: &str) -> Vec<Effect> {
        let mut area = TextArea::new(vec![text.to_string()]);
        area.move_cursor(ratatui_textarea::CursorMove::End);
        area.set_cursor_line_style(ratatui::style::Style::new());
        self.mode = Mode::Input {
            purpose,
            text: Box::new(area),
        };
        Vec::new()
    }

    /// Switches theme by name; a bad name is a flash, not a crash.
    pub fn set_theme(&mut self, name: &str) {
        match Theme::load(name, self.color_mode) {
            Ok(t) => {
                self.theme = t;
                self.flash(format!("theme {name}"));
            }
            Err(e) => self.flash_error(e.to_string()),
        }
    }

    /// Moves the focused pane's cursor or scroll; Up and Down move `rows` rows at once.
    fn move_focused(&mut self, model: &Model, act: Act, rows: usize) {
        let focus = self.focus;
        if let Some(cursor) =
            self.with_panes(model, |panes, view| panes[focus].moved(act, rows, view))
        {
            self.cursor = cursor;
        }
    }

    fn input_key(&mut self, model: &Model, key: KeyEvent) -> Vec<Effect> {
        let Mode::Input { purpose, text } = &mut self.mode else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                self.flash("cancelled");
                Vec::new()
            }
            KeyCode::Enter => {
                let typed = text.lines().join(" ").trim().to_string();
                let purpose = purpose.clone();
                self.mode = Mode::Normal;
                self.submit(model, purpose, typed)
            }
            KeyCode::Tab if *purpose == Purpose::Command => {
                let typed = text.lines().join(" ");
                if !typed.contains(' ') {
                    let names = actions::complete(&typed, self.read_only);
                    let common = common_prefix(&names);
                    if names.len() == 1 {
                        text.insert_str(format!("{} ", &names[0][typed.len()..]));
                    } else if common.len() > typed.len() {
                        text.insert_str(&common[typed.len()..]);
                    }
                    if names.len() > 1 {
                        self.flash(names.join("  "));
                    }
                }
                Vec::new()
            }
            // One line only: the note, reason or command is a single line.
            KeyCode::Char('m') if key.modifiers.contains(KeyModifiers::CONTROL) => Vec::new(),
            _ => {
                text.input(key);
                Vec::new()
            }
        }
    }

    fn submit(&mut self, model: &Model, purpose: Purpose, typed: String) -> Vec<Effect> {
        match purpose {
            Purpose::Filter => {
                if typed.is_empty() {
                    self.filter = None;
                    self.refilter(model);
                    self.flash("filter cleared");
                    return Vec::new();
                }
                match Filter::parse(&typed) {
                    Ok(f) => {
                        self.filter = Some(f);
                        self.refilter(model);
                        self.flash(format!(
                            "filter `{typed}`: {} of {} environments",
                            self.visible.len(),
                            model.envs.len()
                        ));
                    }
                    Err(e) => self.flash_error(e),
                }
                Vec::new()
            }
            Purpose::EventFilter => {
                self.changed(model, Change::Events);
                if typed.is_empty() {
                    self.event_filter = None;
                    self.flash("event filter cleared");
                    return Vec::new();
                }
                match EventFilter::parse(&typed) {
                    Ok(f) => {
                        self.event_filter = Some(f);
                        self.flash(format!("events: {typed}"));
                    }
                    Err(e) => self.flash_error(e),
                }
                Vec::new()
            }
            Purpose::ApproveNote { wave } => {
                if typed.trim().is_empty() && needs_note(model, &wave) {
                    self.flash_error(format!(
                        "{wave} not approved: its gate takes a note saying why"
                    ));
                    return Vec::new();
                }
                self.flash(format!("approval of {wave} sent"));
                vec![Effect::Send(Command::Approve {
                    wave,
                    by: self.actor.clone(),
                    note: (!typed.is_empty()).then_some(typed),
                })]
            }
            Purpose::SkipReason { envs } => {
                let names = short_list(&envs);
                if typed.is_empty() {
                    self.flash_error(format!("{names} not skipped: a reason is needed"));
                    return Vec::new();
                }
                self.flash(format!("skip of {names} sent"));
                self.marks.clear();
                envs.into_iter()
                    .map(|env| {
                        Effect::Send(Command::Skip {
                            env,
                            reason: typed.clone(),
                            by: self.actor.clone(),
                        })
                    })
                    .collect()
            }
            Purpose::TypeToConfirm {
                act,
                expected,
                then,
                ..
            } => {
                let name = actions::info(act).name;
                if typed == expected {
                    self.flash(format!("{name} sent"));
                    then
                } else {
                    self.flash_error(format!(
                        "not confirmed: type `{expected}` exactly to {name}"
                    ));
                    Vec::new()
                }
            }
            Purpose::AcceptDrift { env } => {
                let (duration, reason) = typed.split_once(' ').unwrap_or((typed.as_str(), ""));
                let duration = match humantime::parse_duration(duration) {
                    Ok(d) => d,
                    Err(_) => {
                        self.flash_error(format!(
                            "drift of {env} not accepted: start with how long, e.g. `24h vendor hotfix`"
                        ));
                        return Vec::new();
                    }
                };
                if reason.trim().is_empty() {
                    self.flash_error(format!(
                        "drift of {env} not accepted: a reason is needed after the duration"
                    ));
                    return Vec::new();
                }
                vec![Effect::AcceptDrift {
                    env,
                    duration,
                    reason: reason.trim().to_string(),
                }]
            }
            Purpose::Command => self.command(model, &typed),
        }
    }

    /// The selected environment when it has drift (or is held on it); else says why not.
    fn drifted_selection(&mut self, model: &Model, what: &str) -> Option<String> {
        let i = self.selected()?;
        let env = &model.envs[i];
        let reported = model
            .drift
            .get(&env.name)
            .is_some_and(|r| r.state().is_drift());
        if env.drifted || env.state == CellState::Held || reported {
            return Some(env.name.clone());
        }
        self.flash_error(format!(
            "{} has no drift to {what} ({} rescans)",
            env.name,
            self.keymap.first_key(Act::Rescan).unwrap_or(":rescan")
        ));
        None
    }

    /// Runs a `:` command line.
    pub fn command(&mut self, model: &Model, line: &str) -> Vec<Effect> {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else {
            return Vec::new();
        };
        let rest: Vec<&str> = words.collect();
        let names = actions::complete(first, self.read_only);
        let name = if names.contains(&first) {
            first
        } else if names.len() == 1 {
            names[0]
        } else {
            let why = if names.is_empty() {
                if actions::complete(first, false).is_empty() {
                    format!("no command `{first}` (Tab completes, ? lists them)")
                } else {
                    "read-only: this console cannot change the rollout".into()
                }
            } else {
                format!("`{first}` could be {}", names.join(", "))
            };
            self.flash_error(why);
            return Vec::new();
        };
        let action = actions::ACTIONS
            .iter()
            .find(|a| a.name == name)
            .expect("completed from the table");
        let given = match self.given(model, action, &rest) {
            Ok(given) => given,
            Err(why) => {
                self.flash_error(why);
                return Vec::new();
            }
        };
        match (action.act, given) {
            (_, Given::Nothing) => self.run(model, action.act),
            (Act::Approve, Given::Wave(wave, note)) => {
                if note.is_empty() && needs_note(model, &wave) {
                    self.flash_error(format!(
                        "{wave} not approved: its gate takes a note saying why (:approve {wave} WHY)"
                    ));
                    return Vec::new();
                }
                self.submit(model, Purpose::ApproveNote { wave }, note)
            }
            (Act::Retry, Given::Envs(envs)) => self.retry(model, envs),
            (Act::Rollback, Given::Wave(wave, _)) => self.rollback_wave(model, wave),
            (Act::Rollback, Given::Envs(envs)) => self.rollback_envs(model, envs),
            (Act::Skip, Given::Env(env, reason)) => {
                self.submit(model, Purpose::SkipReason { envs: vec![env] }, reason)
            }
            (Act::Filter, Given::Words(expr)) => self.submit(model, Purpose::Filter, expr),
            (Act::EventFilter, Given::Words(expr)) => {
                self.submit(model, Purpose::EventFilter, expr)
            }
            (Act::Theme, Given::Words(name)) => {
                self.set_theme(&name);
                Vec::new()
            }
            // The table and this match disagree: said, not a crash of the console.
            (act, given) => {
                self.flash_error(format!(
                    "`{}` cannot use {given:?} (a bug: please report it)",
                    actions::info(act).name
                ));
                Vec::new()
            }
        }
    }

    /// What a `:` command line gives after the action's name, read as the action table
    /// says the action takes it and checked against the fleet and the plan.
    fn given(
        &self,
        model: &Model,
        action: &actions::Action,
        rest: &[&str],
    ) -> Result<Given, String> {
        if rest.is_empty() {
            return Ok(Given::Nothing);
        }
        let wave = |name: &str| {
            if model.plan.waves.iter().any(|w| w.name == name) {
                Ok(name.to_string())
            } else {
                Err(format!("no wave `{name}` in the plan"))
            }
        };
        let envs = |names: &[&str]| {
            let unknown: Vec<&str> = names
                .iter()
                .copied()
                .filter(|e| model.env_index(e).is_none())
                .collect();
            if unknown.is_empty() {
                Ok(Given::Envs(names.iter().map(|e| e.to_string()).collect()))
            } else {
                Err(format!("no environment {}", unknown.join(", ")))
            }
        };
        match (action.args, rest) {
            (Args::Nothing, _) => Err(format!(
                "`{}` takes nothing after its name (? lists what each command takes)",
                action.name
            )),
            (Args::Envs, names) => envs(names),
            (Args::EnvsOrWave, ["wave", name]) => Ok(Given::Wave(wave(name)?, String::new())),
            (Args::EnvsOrWave, names) => envs(names),
            (Args::EnvThenReason, [env, reason @ ..]) => {
                envs(&[env])?;
                Ok(Given::Env(env.to_string(), reason.join(" ")))
            }
            (Args::WaveThenNote, [name, note @ ..]) => Ok(Given::Wave(wave(name)?, note.join(" "))),
            (Args::Words, words) => Ok(Given::Words(words.join(" "))),
            (Args::Name, [name]) => Ok(Given::Words(name.to_string())),
            (Args::Name, _) => Err(format!("`{}` takes one name", action.name)),
            (Args::EnvThenReason | Args::WaveThenNote, []) => Ok(Given::Nothing),
        }
    }

    /// Moves the clock on; true when that changes what is drawn (a coarse countdown, a
    /// flash that has been read).
    pub fn tick(&mut self, model: &Model, now: SystemTime) -> bool {
        let before = super::panes::header::clock_texts(model, self);
        self.now = now;
        let mut changed = super::panes::header::clock_texts(model, self) != before;
        let stale = now
            .duration_since(self.flash_at)
            .is_ok_and(|d| d >= FLASH_FOR);
        if self.flash.is_some() && stale {
            self.flash = None;
            changed = true;
        }
        self.dirty |= changed;
        changed
    }

    /// A bordered block, in ASCII when the locale cannot show box drawing.
    pub fn bordered<'a>(&self) -> ratatui::widgets::Block<'a> {
        self.glyphs.bordered()
    }

    /// The state glyph of a cell.
    pub fn glyph(&self, state: CellState) -> &'static str {
        let g = self.glyphs;
        match state {
            CellState::Pending => g.pick("·", "."),
            CellState::Running => g.pick("▶", ">"),
            CellState::Succeeded => g.pick("✓", "+"),
            CellState::Failed => g.pick("✗", "X"),
            CellState::Blocked => g.pick("⊘", "#"),
            CellState::Skipped => g.pick("↷", "~"),
            CellState::Drifted => g.pick("≠", "!"),
            CellState::RolledBack => g.pick("↺", "<"),
            CellState::Held => g.pick("◈", "H"),
        }
    }

    /// The style of a cell state.
    pub fn state_style(&self, state: CellState) -> ratatui::style::Style {
        let t = &self.theme;
        match state {
            CellState::Pending => t.pending,
            CellState::Running => t.running,
            CellState::Succeeded => t.ok,
            CellState::Failed => t.fail,
            CellState::Blocked => t.blocked,
            CellState::Skipped => t.skipped,
            CellState::Drifted => t.drifted,
            CellState::RolledBack => t.rolled_back,
            // Reversed: it waits for someone, whatever the colours.
            CellState::Held => t.drifted.add_modifier(ratatui::style::Modifier::REVERSED),
        }
    }
}

/// The drifted keys of `env` as the newest scan tells them, for a confirmation.
fn drift_keys(model: &Model, env: &str) -> String {
    let Some(report) = model.drift.get(env) else {
        return "as the rollout found it; the scan has not reported it yet".into();
    };
    let keys: Vec<String> = report
        .services
        .iter()
        .filter(|s| s.comparison.state.is_drift())
        .flat_map(|s| {
            s.comparison
                .drift
                .iter()
                .map(move |c| format!("{}.{}", s.service, c.key))
        })
        .collect();
    if keys.is_empty() {
        "no drift in the newest scan".into()
    } else {
        short_list(&keys)
    }
}

/// What becomes of the rollout after a rollback, as the engine does it.
fn after_rollback(model: &Model) -> &'static str {
    if model.view.state == RolloutState::Halted {
        "The rollout stays halted."
    } else {
        "The rollout pauses."
    }
}

fn common_prefix(names: &[&str]) -> String {
    let Some(first) = names.first() else {
        return String::new();
    };
    let mut len = first.len();
    for n in &names[1..] {
        len = len.min(
            first
                .bytes()
                .zip(n.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    first[..len].to_string()
}

/// Up to three names, then how many more.
pub fn short_list(names: &[String]) -> String {
    if names.len() <= 3 {
        names.join(", ")
    } else {
        format!(
            "{}, ... and {} more",
            names[..3].join(", "),
            names.len() - 3
        )
    }
}

/// Whether wave `wave`'s gate takes only an approval with a note (`note = "required"`).
fn needs_note(model: &Model, wave: &str) -> bool {
    model
        .plan
        .waves
        .iter()
        .any(|w| w.name == wave && w.note_required)
}
