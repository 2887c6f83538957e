//! `flotilla console [RELEASE]`: the operations console over a rollout this process runs
//! (started, or resumed from the journal).

use std::io::IsTerminal;
use std::path::Path;

use super::identity::Identity;
use super::rollout::{self, RolloutArgs};
use super::{exit, Output};

pub fn run(
    repo: &Path,
    rev: &str,
    state: Option<&Path>,
    release: Option<&str>,
    read_only: bool,
    theme: Option<String>,
) -> u8 {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        eprintln!(
            "error: the console needs a terminal; `flotilla rollout RELEASE` runs without one"
        );
        return exit::INVALID;
    }
    let release = match release {
        Some(r) => r.to_string(),
        None => match unfinished_release(repo, rev, state) {
            Ok(Some(r)) => r,
            Ok(None) => {
                eprintln!("error: no rollout is unfinished; name the release to roll out: `flotilla console RELEASE`");
                return exit::INVALID;
            }
            Err(code) => return code,
        },
    };
    open(repo, rev, state, &release, read_only, theme)
}

/// Opens the console on a rollout of `release`.
pub fn open(
    repo: &Path,
    rev: &str,
    state: Option<&Path>,
    release: &str,
    read_only: bool,
    theme: Option<String>,
) -> u8 {
    let args = RolloutArgs {
        release: release.to_string(),
        approve: Vec::new(),
        approve_all: false,
        wait: true,
        output: Output::Plain,
    };
    let options = crate::console::Options {
        read_only,
        theme,
        actor: Identity::current().actor(),
        quit_warning: Some(format!(
            "Quit now? The rollout stops after the steps in flight; `flotilla console {release}` resumes it."
        )),
    };
    rollout::run(repo, rev, state, &args, Some(options))
}

fn unfinished_release(repo: &Path, rev: &str, state: Option<&Path>) -> Result<Option<String>, u8> {
    let path = super::state_path(repo, rev, state)?;
    if !path.exists() {
        return Ok(None);
    }
    let (_, store) = super::open_state(repo, rev, Some(&path))?;
    store
        .unfinished_rollout()
        .map(|r| r.map(|r| r.release))
        .map_err(|e| {
            eprintln!("error: {e}");
            exit::INVALID
        })
}
