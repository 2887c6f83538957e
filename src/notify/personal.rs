//! The operator's own notify targets: `[[notify]]` in `config.toml` in the platform config
//! dir (`~/.config/flotilla/config.toml` on Linux, or `FLOTILLA_CONFIG`). They hear of the
//! rollouts this operator's flotilla runs, beside the intent's targets, without a commit to
//! the intent (a personal pager, a desk channel). The command line reads the file once and
//! installs its targets; the library alone has none, so tests never see a real user's file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::Target;

static INSTALLED: OnceLock<Personal> = OnceLock::new();

/// The file and the targets read from it.
#[derive(Debug)]
pub struct Personal {
    pub path: PathBuf,
    pub targets: Vec<Target>,
}

/// Where the file is: `FLOTILLA_CONFIG`, else `config.toml` in the config dir.
pub fn default_path() -> Option<PathBuf> {
    crate::dirs::config_file("FLOTILLA_CONFIG", "config.toml")
}

/// Reads the file at `path`. A missing file has no targets; a broken one has none either,
/// and says why in the warnings (each problem with its line and column): an operator's own
/// config never stops a rollout, but is never silently ignored.
pub fn read(path: &Path) -> (Personal, Vec<String>) {
    let shown = path.display().to_string();
    let (targets, warnings) = match std::fs::read_to_string(path) {
        Ok(text) => match crate::intent::load::personal_notify(&shown, &text) {
            Ok(targets) => (targets, Vec::new()),
            Err(diags) => {
                let mut warnings: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
                warnings.push(format!(
                    "warning: {shown} has errors; its [[notify]] targets are not used until it is fixed"
                ));
                (Vec::new(), warnings)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), Vec::new()),
        Err(e) => (
            Vec::new(),
            vec![format!(
                "warning: cannot read {shown}: {e}; its [[notify]] targets are not used"
            )],
        ),
    };
    let personal = Personal {
        path: path.to_path_buf(),
        targets,
    };
    (personal, warnings)
}

/// Makes `personal` the operator's targets for the rest of the process (once; later calls
/// change nothing).
pub fn install(personal: Personal) {
    let _ = INSTALLED.set(personal);
}

/// The operator's targets, when the command line installed any.
pub fn targets() -> &'static [Target] {
    INSTALLED.get().map_or(&[], |p| p.targets.as_slice())
}

/// The file the targets came from, when one was read.
pub fn path() -> Option<&'static Path> {
    INSTALLED.get().map(|p| p.path.as_path())
}
