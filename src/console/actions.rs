//! Every console action in one table: its name, default keys, description, how it is
//! confirmed, what its `:` command takes, and whether it changes anything (gone in read-only
//! mode). The table drives key dispatch, the dialogs, the footer hints, `?` help, `:` command
//! parsing and completion.
//! Key map overrides from the console config are merged over the defaults here.

use std::collections::{BTreeMap, HashMap};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What an action does; the UI's dispatcher matches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Act {
    Quit,
    Help,
    CommandMode,
    Filter,
    Up,
    Down,
    Left,
    Right,
    Top,
    Bottom,
    PageUp,
    PageDown,
    NextPane,
    PrevPane,
    /// Show this pane (by its place in `panes::all`).
    ShowPane(usize),
    Detail,
    EventFilter,
    Mark,
    ClearMarks,
    LogOrder,
    Compact,
    Theme,
    Repaint,
    Suspend,
    Approve,
    Pause,
    Resume,
    Retry,
    Skip,
    Rollback,
    Abort,
    Rescan,
    Adopt,
    Revert,
    AcceptDrift,
}

/// How an action asks before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// It runs at once.
    Never,
    /// y confirms, any other key cancels; the dialog names what it acts on. Aimed at a
    /// whole wave, it asks for the wave's name typed instead ([`Confirm::for_wave`]).
    YesNo,
    /// The name of what it acts on typed exactly: for what acts on the whole rollout.
    TypeName,
    /// A line typed first: these words say what (a note, a reason, how long and why).
    Typed(&'static str),
}

impl Confirm {
    /// How it asks when aimed at a whole wave: a y/n becomes the wave's name typed.
    pub fn for_wave(self) -> Confirm {
        match self {
            Confirm::YesNo => Confirm::TypeName,
            other => other,
        }
    }

    /// How help says it, if it asks at all.
    pub fn said(self) -> Option<String> {
        match self {
            Confirm::Never => None,
            Confirm::YesNo => Some("asks y/n".into()),
            Confirm::TypeName => Some("asks for its name typed (the release's, the wave's)".into()),
            Confirm::Typed(what) => Some(format!("asks {what}")),
        }
    }
}

/// What an action's `:` command takes after its name; without any, it runs as its key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Args {
    Nothing,
    /// Environment names.
    Envs,
    /// Environment names, or `wave` and a wave's name.
    EnvsOrWave,
    /// An environment, then why.
    EnvThenReason,
    /// A wave, then a note.
    WaveThenNote,
    /// Free words (a filter expression).
    Words,
    /// One name.
    Name,
}

impl Args {
    /// How help writes what comes after the command's name.
    pub fn usage(self) -> &'static str {
        match self {
            Args::Nothing => "",
            Args::Envs => "[ENV...]",
            Args::EnvsOrWave => "[ENV... | wave WAVE]",
            Args::EnvThenReason => "[ENV REASON...]",
            Args::WaveThenNote => "[WAVE [NOTE...]]",
            Args::Words => "[EXPR...]",
            Args::Name => "[NAME]",
        }
    }
}

/// One row of the action table.
#[derive(Debug, Clone)]
pub struct Action {
    pub act: Act,
    /// The name used in `:` command mode and in the key map config.
    pub name: &'static str,
    pub keys: &'static [&'static str],
    pub description: &'static str,
    /// How it asks before it runs.
    pub confirm: Confirm,
    /// What its `:` command takes.
    pub args: Args,
    /// Changes the rollout (removed by `--read-only`).
    pub changes: bool,
    /// Shown in the footer when available.
    pub hint: bool,
}

const fn action(
    act: Act,
    name: &'static str,
    keys: &'static [&'static str],
    description: &'static str,
) -> Action {
    Action {
        act,
        name,
        keys,
        description,
        confirm: Confirm::Never,
        args: Args::Nothing,
        changes: false,
        hint: false,
    }
}

const fn takes(args: Args, mut a: Action) -> Action {
    a.args = args;
    a
}

/// An action that changes the rollout and asks first, as `confirm` says.
const fn asks(confirm: Confirm, mut a: Action) -> Action {
    a.confirm = confirm;
    a.changes = true;
    a
}

const fn hinted(mut a: Action) -> Action {
    a.hint = true;
    a
}

const fn changes(mut a: Action) -> Action {
    a.changes = true;
    a
}

/// The whole table, in the order help lists it.
pub const ACTIONS: &[Action] = &[
    hinted(takes(
        Args::WaveThenNote,
        asks(
            Confirm::Typed("for a note"),
            action(
                Act::Approve,
                "approve",
                &["a"],
                "approve the gate that waits (or the wave named, ahead)",
            ),
        ),
    )),
    hinted(changes(action(
        Act::Pause,
        "pause",
        &["p"],
        "pause: start no new steps",
    ))),
    hinted(changes(action(
        Act::Resume,
        "resume",
        &["r"],
        "resume a paused or halted rollout",
    ))),
    hinted(takes(
        Args::Envs,
        asks(
            Confirm::YesNo,
            action(
                Act::Retry,
                "retry",
                &["R"],
                "retry the marked environments, or every failed one",
            ),
        ),
    )),
    takes(
        Args::EnvThenReason,
        asks(
            Confirm::Typed("for a reason"),
            action(
                Act::Skip,
                "skip",
                &["S"],
                "skip the marked or selected environments",
            ),
        ),
    ),
    takes(
        Args::EnvsOrWave,
        asks(
            Confirm::YesNo,
            action(
                Act::Rollback,
                "rollback",
                &["B"],
                "roll back the marked or selected environments to the release before (Waves pane: the whole wave, its name typed)",
            ),
        ),
    ),
    action(
        Act::Rescan,
        "rescan",
        &["d"],
        "scan the fleet for drift now (desired, last applied, live)",
    ),
    asks(
        Confirm::YesNo,
        action(
            Act::Adopt,
            "adopt",
            &["A"],
            "adopt the selected environment's drift into Git as its emergency layer",
        ),
    ),
    asks(
        Confirm::YesNo,
        action(
            Act::Revert,
            "revert",
            &["V"],
            "revert the selected held environment's drift: the rollout applies over it",
        ),
    ),
    asks(
        Confirm::Typed("how long, then why"),
        action(
            Act::AcceptDrift,
            "accept",
            &["C"],
            "accept the selected environment's drift for a while",
        ),
    ),
    hinted(asks(
        Confirm::TypeName,
        action(Act::Abort, "abort", &["X"], "abort the rollout"),
    )),
    hinted(takes(
        Args::Words,
        action(
            Act::Filter,
            "filter",
            &["/"],
            "filter environments by selector or name",
        ),
    )),
    takes(
        Args::Words,
        action(
            Act::EventFilter,
            "filter-events",
            &["f"],
            "filter the event log: env=NAME wave=NAME kind=KIND or words",
        ),
    ),
    action(
        Act::Mark,
        "mark",
        &["space"],
        "mark or unmark the selected environment",
    ),
    action(Act::ClearMarks, "unmark", &["u"], "clear every mark"),
    hinted(action(Act::NextPane, "next-pane", &["tab"], "next pane")),
    action(Act::PrevPane, "prev-pane", &["backtab"], "previous pane"),
    action(Act::ShowPane(0), "fleet", &["1"], "the fleet grid"),
    action(Act::ShowPane(1), "waves", &["2"], "the waves"),
    action(
        Act::ShowPane(2),
        "details",
        &["3"],
        "the selected environment's detail and drift",
    ),
    action(Act::ShowPane(3), "events", &["4"], "the event log"),
    action(
        Act::Detail,
        "detail",
        &["enter"],
        "show the selected environment's detail",
    ),
    action(Act::Up, "up", &["k", "up"], "move up"),
    action(Act::Down, "down", &["j", "down"], "move down"),
    action(Act::Left, "left", &["h", "left"], "move left"),
    action(Act::Right, "right", &["l", "right"], "move right"),
    action(Act::Top, "top", &["g", "home"], "go to the first"),
    action(Act::Bottom, "bottom", &["G", "end"], "go to the last"),
    action(Act::PageUp, "page-up", &["pgup", "ctrl-b"], "page up"),
    action(Act::PageDown, "page-down", &["pgdn", "ctrl-f"], "page down"),
    action(
        Act::LogOrder,
        "log-order",
        &["o"],
        "event log: newest first or last",
    ),
    action(
        Act::Compact,
        "compact",
        &["z"],
        "fleet grid: glyphs only (the whole fleet at a glance) or with names",
    ),
    takes(
        Args::Name,
        action(
            Act::Theme,
            "theme",
            &["T"],
            "next theme, or the one named",
        ),
    ),
    action(
        Act::Repaint,
        "repaint",
        &["ctrl-l"],
        "repaint the whole screen",
    ),
    action(
        Act::Suspend,
        "suspend",
        &["ctrl-z"],
        "suspend to the shell (fg to return)",
    ),
    hinted(action(
        Act::CommandMode,
        "command",
        &[":"],
        "command mode (Tab completes)",
    )),
    hinted(action(Act::Help, "help", &["?"], "this help")),
    hinted(action(Act::Quit, "quit", &["q", "ctrl-c"], "quit")),
];

/// A key as the key map names it: `a`, `G`, `ctrl-l`, `tab`, `space`, `pgdn`...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    code: KeyCode,
    ctrl: bool,
}

impl Key {
    /// Parses a key name; None when it is not one.
    pub fn parse(s: &str) -> Option<Key> {
        let (ctrl, rest) = match s.strip_prefix("ctrl-") {
            Some(r) => (true, r),
            None => (false, s),
        };
        let code = match rest {
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "enter" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "space" => KeyCode::Char(' '),
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pgup" => KeyCode::PageUp,
            "pgdn" => KeyCode::PageDown,
            "backspace" => KeyCode::Backspace,
            "delete" => KeyCode::Delete,
            one if one.chars().count() == 1 => {
                let c = one.chars().next()?;
                KeyCode::Char(if ctrl { c.to_ascii_lowercase() } else { c })
            }
            f if f.starts_with('f') => KeyCode::F(f[1..].parse().ok().filter(|n| *n <= 24)?),
            _ => return None,
        };
        Some(Key { code, ctrl })
    }

    /// The key of a terminal key event.
    pub fn of(event: &KeyEvent) -> Key {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        let code = match event.code {
            KeyCode::Char(c) if ctrl => KeyCode::Char(c.to_ascii_lowercase()),
            other => other,
        };
        Key { code, ctrl }
    }
}

/// Which action each key runs: the defaults with the user's overrides merged on top.
#[derive(Debug, Clone)]
pub struct KeyMap {
    keys: HashMap<Key, Act>,
    /// Per action, the keys that run it (for help and hints), in order.
    names: BTreeMap<Act, Vec<String>>,
}

impl KeyMap {
    /// The default key map, minus the actions that change anything when `read_only`.
    pub fn new(read_only: bool) -> KeyMap {
        let mut map = KeyMap {
            keys: HashMap::new(),
            names: BTreeMap::new(),
        };
        for a in ACTIONS.iter().filter(|a| !(read_only && a.changes)) {
            for k in a.keys {
                map.bind(k, a.act);
            }
        }
        map
    }

    fn bind(&mut self, name: &str, act: Act) -> bool {
        let Some(key) = Key::parse(name) else {
            return false;
        };
        if let Some(old) = self.keys.insert(key, act) {
            if let Some(names) = self.names.get_mut(&old) {
                names.retain(|n| Key::parse(n) != Some(key));
            }
        }
        self.names.entry(act).or_default().push(name.to_string());
        true
    }

    /// Merges `overrides` (action name -> keys) over the map; returns a warning per entry
    /// that could not be used. An action's listed keys replace its defaults.
    pub fn merge(
        &mut self,
        overrides: &BTreeMap<String, Vec<String>>,
        read_only: bool,
    ) -> Vec<String> {
        let mut warnings = Vec::new();
        for (name, keys) in overrides {
            let Some(a) = ACTIONS.iter().find(|a| a.name == name) else {
                let close = ACTIONS
                    .iter()
                    .map(|a| (strsim::normalized_damerau_levenshtein(name, a.name), a.name))
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .filter(|(score, _)| *score >= 0.5);
                warnings.push(format!(
                    "key map: no action `{name}`{}",
                    close
                        .map(|(_, s)| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default()
                ));
                continue;
            };
            if read_only && a.changes {
                continue;
            }
            let bad: Vec<&String> = keys.iter().filter(|k| Key::parse(k).is_none()).collect();
            if !bad.is_empty() {
                warnings.push(format!(
                    "key map: `{name}`: {} not a key (keys look like `a`, `G`, `ctrl-l`, `tab`, `pgdn`)",
                    bad.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                ));
                continue;
            }
            let old: Vec<String> = self.names.remove(&a.act).unwrap_or_default();
            for k in old.iter().filter_map(|k| Key::parse(k)) {
                self.keys.remove(&k);
            }
            for k in keys {
                self.bind(k, a.act);
            }
        }
        warnings
    }

    /// The action a key runs.
    pub fn action(&self, event: &KeyEvent) -> Option<Act> {
        self.keys.get(&Key::of(event)).copied()
    }

    /// The keys of an action, as named in help ("k/up").
    pub fn keys_of(&self, act: Act) -> Option<String> {
        self.names
            .get(&act)
            .filter(|n| !n.is_empty())
            .map(|n| n.join(" "))
    }

    /// The first key of an action, for the footer.
    pub fn first_key(&self, act: Act) -> Option<&str> {
        self.names
            .get(&act)
            .and_then(|n| n.first())
            .map(String::as_str)
    }

    /// Whether the map has the action at all (read-only removes some).
    pub fn has(&self, act: Act) -> bool {
        self.names.get(&act).is_some_and(|n| !n.is_empty())
    }
}

/// The table row of an action.
pub fn info(act: Act) -> &'static Action {
    ACTIONS
        .iter()
        .find(|a| a.act == act)
        .expect("every action is in the table")
}

/// `:` command names that complete `prefix`, in table order.
pub fn complete(prefix: &str, read_only: bool) -> Vec<&'static str> {
    ACTIONS
        .iter()
        .filter(|a| !(read_only && a.changes))
        .map(|a| a.name)
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    #[test]
    fn every_default_key_parses_and_no_key_is_bound_twice() {
        let mut seen = HashMap::new();
        for a in ACTIONS {
            for k in a.keys {
                let parsed = Key::parse(k).unwrap_or_else(|| panic!("{k}"));
                assert!(seen.insert(parsed, a.name).is_none(), "{k} bound twice");
            }
        }
    }

    #[test]
    fn read_only_removes_every_action_that_changes_anything() {
        let map = KeyMap::new(true);
        assert_eq!(map.action(&key('a')), None);
        assert_eq!(map.action(&key('X')), None);
        assert_eq!(map.action(&key('j')), Some(Act::Down));
        assert!(!complete("", true).contains(&"abort"));
        assert!(complete("", false).contains(&"abort"));
    }

    #[test]
    fn overrides_replace_defaults_and_bad_entries_are_warnings() {
        let mut map = KeyMap::new(false);
        let overrides: BTreeMap<String, Vec<String>> = [
            (
                "approve".to_string(),
                vec!["A".to_string(), "ctrl-a".to_string()],
            ),
            ("aprove".to_string(), vec!["x".to_string()]),
            ("pause".to_string(), vec!["ctrl-nope".to_string()]),
        ]
        .into();
        let warnings = map.merge(&overrides, false);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("did you mean `approve`"),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("ctrl-nope"), "{warnings:?}");
        assert_eq!(map.action(&key('a')), None);
        assert_eq!(map.action(&key('A')), Some(Act::Approve));
        let ctrl_a = KeyEvent::new(KeyCode::Char('a'), KeyModifiers::CONTROL);
        assert_eq!(map.action(&ctrl_a), Some(Act::Approve));
        // A bad entry leaves the action's defaults alone.
        assert_eq!(map.action(&key('p')), Some(Act::Pause));
        assert_eq!(map.keys_of(Act::Approve).as_deref(), Some("A ctrl-a"));
    }
}
