//! Shell completion. `flotilla completions SHELL` prints a small script that asks flotilla
//! itself what fits at each Tab (clap_complete's `COMPLETE=SHELL flotilla -- WORDS...`
//! protocol), so release, environment and wave names come from the intent as it is now;
//! `--static` prints the whole script instead, which knows commands and flags but no names.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::Shells;

use super::{exit, Cli};
use crate::intent::Intent;

/// The environment variable the completion script sets when it calls flotilla back.
const VAR: &str = "COMPLETE";

/// Answers a completion request and exits, when this process is one (the variable is set);
/// returns otherwise. Runs before anything else prints.
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(VAR)
        .bin("flotilla")
        .complete();
}

/// Prints the completion script for `shell`: the dynamic one, or with `fixed` the whole
/// static script.
pub fn print(shell: clap_complete::Shell, fixed: bool) -> u8 {
    let mut out = std::io::stdout();
    if fixed {
        clap_complete::generate(shell, &mut Cli::command(), "flotilla", &mut out);
        return exit::OK;
    }
    let name = shell.to_string();
    let shells = Shells::builtins();
    let Some(completer) = shells.completer(&name) else {
        return super::refuse(
            exit::INVALID,
            format!("error: no dynamic completion for {name}; use --static"),
        );
    };
    match completer.write_registration(VAR, "flotilla", "flotilla", &callback(), &mut out) {
        Ok(()) => exit::OK,
        Err(e) => super::refuse(
            exit::FAILED,
            format!("error: cannot write the completion script: {e}"),
        ),
    }
}

/// How the script calls flotilla back: the name it was run by when found on PATH, else
/// the absolute path of that program (a script made by `./target/release/flotilla` works
/// from any directory).
fn callback() -> String {
    let arg0 = PathBuf::from(
        std::env::args_os()
            .next()
            .unwrap_or_else(|| "flotilla".into()),
    );
    if arg0.components().count() > 1 {
        if let Ok(path) = std::path::absolute(&arg0) {
            return path.to_string_lossy().into_owned();
        }
    }
    arg0.to_string_lossy().into_owned()
}

/// The releases of the intent, newest first (the one usually wanted).
pub fn releases() -> Vec<CompletionCandidate> {
    let Some(intent) = intent() else {
        return Vec::new();
    };
    intent
        .releases
        .iter()
        .rev()
        .map(|r| {
            let services: Vec<String> = r
                .services
                .iter()
                .map(|(service, version)| format!("{service} {version}"))
                .collect();
            CompletionCandidate::new(&r.name).help(Some(services.join(", ").into()))
        })
        .collect()
}

/// The environments of the intent.
pub fn envs() -> Vec<CompletionCandidate> {
    names(|intent| {
        intent
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect()
    })
}

/// The waves of the intent's strategy.
pub fn waves() -> Vec<CompletionCandidate> {
    names(|intent| {
        intent
            .strategy
            .waves
            .iter()
            .map(|w| w.name.as_str())
            .collect()
    })
}

/// The names `pick` takes from the intent, as candidates.
fn names(pick: impl Fn(&Intent) -> Vec<&str>) -> Vec<CompletionCandidate> {
    intent().map_or_else(Vec::new, |intent| {
        pick(&intent)
            .into_iter()
            .map(CompletionCandidate::new)
            .collect()
    })
}

/// The intent the command being completed would read: its `--repo` and `--rev` when typed
/// already, else `FLOTILLA_REPO` and HEAD as the command itself defaults. None when it
/// cannot be read: a shell offers nothing rather than printing errors into the prompt.
fn intent() -> Option<Intent> {
    let words: Vec<OsString> = std::env::args_os()
        .skip_while(|a| a != "--")
        .skip(1)
        .collect();
    let repo = typed(&words, "--repo")
        .or_else(|| std::env::var_os("FLOTILLA_REPO").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    let rev = typed(&words, "--rev")
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|| "HEAD".to_owned());
    crate::intent::load(&repo, &rev).ok().map(|l| l.intent)
}

/// The value of `flag` among the words typed so far (`--flag VALUE` or `--flag=VALUE`).
fn typed(words: &[OsString], flag: &str) -> Option<PathBuf> {
    let mut found = None;
    for (i, word) in words.iter().enumerate() {
        let word = word.to_string_lossy();
        if word == flag {
            found = words
                .get(i + 1)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from);
        } else if let Some(value) = word.strip_prefix(&format!("{flag}=")) {
            found = Some(PathBuf::from(value));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn the_last_typed_flag_wins_in_either_form() {
        let w = words("flotilla --repo a plan --repo=b x");
        assert_eq!(typed(&w, "--repo"), Some(PathBuf::from("b")));
        assert_eq!(
            typed(&words("flotilla --rev v1 plan"), "--rev"),
            Some("v1".into())
        );
        assert_eq!(typed(&words("flotilla plan"), "--repo"), None);
        // A flag being typed, its value not yet there.
        assert_eq!(typed(&words("flotilla --repo"), "--repo"), None);
    }
}
