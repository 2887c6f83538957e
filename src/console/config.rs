//! The console's config file (`console.toml` in the platform config dir): theme, event log
//! order and key map overrides, merged over the embedded defaults. A bad entry is a warning
//! shown on screen, never a reason not to start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What the file may say; everything is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub theme: Option<String>,
    /// Event log order: true for the newest first (the default).
    pub newest_first: Option<bool>,
    /// Action name -> keys, replacing that action's default keys.
    #[serde(default)]
    pub keys: BTreeMap<String, Vec<String>>,
    /// `[drift] interval = "5m"`: rescan the fleet for drift that often while the console
    /// is open (default: at start and on the rescan key only).
    pub drift: Option<DriftConfig>,
    /// Ring the bell (and send a desktop notification where the terminal shows them) when
    /// a gate waits or a rollout halts or completes (default: yes).
    pub bell: Option<bool>,
}

/// `[drift]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    pub interval: Option<String>,
}

/// The shortest background rescan interval: scans observe the whole fleet.
pub const MIN_DRIFT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Config {
    /// The background rescan interval, or a warning when it does not read as one.
    pub fn drift_interval(&self) -> Result<Option<std::time::Duration>, String> {
        let Some(text) = self.drift.as_ref().and_then(|d| d.interval.as_deref()) else {
            return Ok(None);
        };
        match humantime::parse_duration(text) {
            Ok(d) if d >= MIN_DRIFT_INTERVAL => Ok(Some(d)),
            Ok(_) => Err(format!(
                "[drift] interval = \"{text}\" is too short (at least 10s); background rescans are off"
            )),
            Err(e) => Err(format!(
                "[drift] interval = \"{text}\": {e}; background rescans are off"
            )),
        }
    }
}

/// Where the config lives unless `FLOTILLA_CONSOLE_CONFIG` names another file.
pub fn default_path() -> Option<PathBuf> {
    crate::dirs::config_file("FLOTILLA_CONSOLE_CONFIG", "console.toml")
}

/// Reads the config at `path`; a missing file is the defaults, a bad one the defaults and a
/// warning.
pub fn load(path: Option<&Path>) -> (Config, Vec<String>) {
    let Some(path) = path else {
        return (Config::default(), Vec::new());
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (Config::default(), Vec::new())
        }
        Err(e) => {
            return (
                Config::default(),
                vec![format!("{}: {e}; using the defaults", path.display())],
            )
        }
    };
    match toml::from_str::<Config>(&text) {
        Ok(c) => (c, Vec::new()),
        Err(e) => (
            Config::default(),
            vec![format!(
                "{}: {}; using the defaults",
                path.display(),
                e.message()
            )],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_config_is_a_warning_and_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.toml");
        std::fs::write(&path, "theme = \"light\"\n[keys]\napprove = [\"A\"]\n").unwrap();
        let (config, warnings) = load(Some(&path));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.theme.as_deref(), Some("light"));
        assert_eq!(config.keys["approve"], ["A"]);

        std::fs::write(&path, "theme = \n").unwrap();
        let (config, warnings) = load(Some(&path));
        assert!(config.theme.is_none());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("console.toml"), "{warnings:?}");

        let (_, warnings) = load(Some(&dir.path().join("missing.toml")));
        assert!(warnings.is_empty());
    }
}
