//! The log: `tracing` to a file rotated daily in the platform state directory, so what an
//! engine did overnight can be read in the morning. Never to the terminal: the terminal
//! belongs to the console or to the command's own output.
//!
//! What goes in: each command run and how it ended, what was said on stderr
//! ([`crate::notice`]), each journal event (steps at debug, the rest at info, failures at
//! warn), and the work of the drivers, the agent and the notifier. Only what may be shown
//! goes in: the journal's events are masked, and webhook URLs and tokens never reach it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tracing::Level;
use tracing_subscriber::EnvFilter;

/// The log file's name: a link to today's file (`flotilla.YYYY-MM-DD.log`).
pub const CURRENT: &str = "flotilla.log";

/// How many daily files are kept.
pub const KEPT: usize = 14;

/// Where the log went, or why there is none, once [`init`] ran.
static WRITTEN: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The log's directory: `FLOTILLA_LOG_DIR`, or `log` in the platform state directory
/// (`~/.local/state/flotilla/log` on Linux; the local data directory where the platform
/// has no state directory).
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLOTILLA_LOG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    crate::dirs::project()
        .map(|d| {
            d.state_dir()
                .unwrap_or_else(|| d.data_local_dir())
                .join("log")
        })
        .unwrap_or_else(|| PathBuf::from(".flotilla/log"))
}

/// What is logged when `RUST_LOG` does not say: flotilla's info (debug with `-v`, trace
/// with `-vv`), other crates' warnings (their info with `-vv`).
fn default_filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn,flotilla=info",
        1 => "warn,flotilla=debug",
        _ => "info,flotilla=trace",
    }
}

/// Starts logging for this process: to the daily file in [`dir`], at the level `RUST_LOG`
/// gives, else the one `-v` (counted in `verbose`) gives. Returns where the log goes; when
/// it cannot be written (a read-only home), nothing is logged and the reason is kept for
/// `flotilla status`.
pub fn init(verbose: u8) -> Result<PathBuf, String> {
    let written = WRITTEN.get_or_init(|| start(&dir(), verbose));
    written.clone()
}

fn start(dir: &Path, verbose: u8) -> Result<PathBuf, String> {
    create_private(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("flotilla")
        .filename_suffix("log")
        .max_log_files(KEPT)
        .latest_symlink(CURRENT)
        .build(dir)
        .map_err(|e| format!("cannot open the log in {}: {e}", dir.display()))?;
    // A RUST_LOG that does not parse falls back to the default rather than losing the log.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter(verbose)));
    tracing_subscriber::fmt()
        .with_writer(appender)
        .with_timer(Stamp)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .map_err(|e| format!("cannot start the log: {e}"))?;
    Ok(dir.join(CURRENT))
}

/// Each line's time and process: several flotilla processes (an engine, the commands
/// steering it, agents) write to the same file.
struct Stamp;

impl tracing_subscriber::fmt::time::FormatTime for Stamp {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        tracing_subscriber::fmt::time::SystemTime.format_time(w)?;
        write!(w, " [{}]", std::process::id())
    }
}

/// Creates the directory readable by its owner only: the log names environments,
/// people and what they did.
fn create_private(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Where this process logs to, or why it does not (None: logging was not started).
pub fn written() -> Option<Result<PathBuf, String>> {
    WRITTEN.get().cloned()
}

/// Logs a journal event of `rollout`: the steps of environments at debug (there are many),
/// failures at warn, the rest at info. Serialized only when its level is logged.
pub fn event(rollout: Option<i64>, event: &crate::engine::Event) {
    use crate::engine::EventKind as K;
    let level = match &event.kind {
        K::StepStarted { .. } | K::StepSucceeded { .. } | K::StepRolledBack { .. } => Level::DEBUG,
        K::StepFailed { .. }
        | K::StepRetrying { .. }
        | K::StepBlocked { .. }
        | K::CheckFailed { .. }
        | K::CheckRetrying { .. }
        | K::RolloutHalted { .. }
        | K::CommandRejected { .. }
        | K::NotificationFailed { .. }
        | K::DriftDetected { .. } => Level::WARN,
        _ => Level::INFO,
    };
    macro_rules! at {
        ($level:expr) => {
            if tracing::enabled!(target: "flotilla::journal", $level) {
                let json = serde_json::to_string(event).unwrap_or_default();
                tracing::event!(target: "flotilla::journal", $level, rollout, kind = event.kind.name(), "{json}");
            }
        };
    }
    match level {
        Level::DEBUG => at!(Level::DEBUG),
        Level::WARN => at!(Level::WARN),
        _ => at!(Level::INFO),
    }
}
