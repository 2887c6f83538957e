//! `flotilla console [RELEASE]`: the operations console over a rollout this process runs
//! (started, or resumed from the journal).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::rollout::{self, RolloutArgs};
use super::{exit, Output};
use crate::engine::{Command, Event};
use crate::identity::Identity;
use crate::session::{lease_timeout, now_ms};
use crate::store::{Store, StoredCommand};

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
    let path = match super::state_path(repo, rev, state) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let unfinished = if path.exists() {
        let store = match Store::open_existing(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::INVALID;
            }
        };
        match store.unfinished_rollout() {
            Ok(u) => u.map(|u| (store, u)),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::INVALID;
            }
        }
    } else {
        None
    };
    if let Some((store, rollout)) = unfinished {
        // An engine runs it elsewhere: watch and steer that one.
        let me = Identity::current();
        if let Ok(Some((holder, _))) = store.live_holder(now_ms(), lease_timeout(), &me.host) {
            if release.is_none_or(|r| r == rollout.release) {
                return attach(
                    repo,
                    &path,
                    store,
                    rollout,
                    holder.to_string(),
                    read_only,
                    theme,
                );
            }
        }
        // Watching changes nothing: with no engine running it, a read-only console shows
        // the rollout as the journal tells it rather than start an engine.
        if read_only && release.is_none_or(|r| r == rollout.release) {
            return attach(
                repo,
                &path,
                store,
                rollout,
                "none (nothing runs it now)".to_string(),
                read_only,
                theme,
            );
        }
        if release.is_none() {
            drop(store);
            return open(repo, rev, Some(&path), &rollout.release, read_only, theme);
        }
    }
    if read_only {
        eprintln!("error: --read-only watches a rollout, and no rollout of {} is unfinished; start one with `flotilla console RELEASE` (without --read-only)", release.unwrap_or("any release"));
        return exit::INVALID;
    }
    let Some(release) = release else {
        eprintln!("error: no rollout is unfinished; name the release to roll out: `flotilla console RELEASE`");
        return exit::INVALID;
    };
    open(repo, rev, Some(&path), release, read_only, theme)
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
        keep_failures: false,
        overrides: Vec::new(),
        reasons: Vec::new(),
        allow_downgrade: false,
    };
    let options = crate::console::Options {
        read_only,
        theme,
        actor: Identity::current().actor(),
        quit_warning: Some(format!(
            "Quit now? The rollout stops after the steps in flight; `flotilla console {release}` resumes it."
        )),
        attached_to: None,
    };
    rollout::run(repo, rev, state, &args, Some(options))
}

/// Watches and steers a rollout whose engine runs in another process: events come from the
/// journal, commands go through the store's queue as `flotilla approve` and the like do.
fn attach(
    repo: &Path,
    path: &Path,
    store: Store,
    rollout: crate::store::RolloutRecord,
    engine: String,
    read_only: bool,
    theme: Option<String>,
) -> u8 {
    let loaded = match super::load(repo, &rollout.commit) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let intent = Arc::new(loaded.intent);
    let plan = match crate::plan::build(&intent, &rollout.release, SystemTime::now()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID;
        }
    };
    let place = crate::drivers::Place {
        repo,
        state: Some(path),
    };
    let fleet = match crate::drivers::open(&intent, intent.release(&rollout.release), place) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID;
        }
    };
    let me = Identity::current();
    let options = crate::console::Options {
        read_only,
        theme,
        actor: me.actor(),
        quit_warning: None,
        attached_to: Some(engine.clone()),
    };
    let (mut model, ui) = crate::console::session(intent, plan, &options);
    let past = match store.journal_rows(Some(rollout.id)) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID;
        }
    };
    let mut last_seq = past.last().map_or(0, |r| r.seq);
    for e in past.iter().filter_map(|r| r.event()) {
        model.apply(&e);
    }
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let store = Arc::new(store);
    let scanner = Arc::new(crate::drift::scan::Scanner {
        repo: repo.to_path_buf(),
        state: path.to_path_buf(),
        store: store.clone(),
        intent: model.intent.clone(),
        release: rollout.release.clone(),
        driver: fleet,
    });
    let id = rollout.id;
    let result = runtime.block_on(async move {
        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<Command>();
        // What the engine journals, a few times a second.
        let watcher = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    if let Ok(rows) = store.journal_rows_after(id, last_seq) {
                        if let Some(last) = rows.last() {
                            last_seq = last.seq;
                            let batch: Vec<Event> = rows.iter().filter_map(|r| r.event()).collect();
                            if event_tx.send(batch).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
        };
        // Keys become queued commands, recorded with who sent them and from where.
        let sender = tokio::spawn(async move {
            while let Some(command) = cmd_rx.recv().await {
                if let Some(stored) = StoredCommand::from_engine(&command) {
                    let ts = crate::session::now_text();
                    let _ =
                        store.queue_command(id, &ts, &me.actor(), me.origin().as_deref(), &stored);
                }
            }
        });
        let mut engine_task = tokio::spawn(std::future::pending::<crate::engine::Outcome>());
        let result = crate::console::run(
            model,
            ui,
            &mut event_rx,
            cmd_tx,
            Some(scanner),
            &mut engine_task,
        )
        .await;
        watcher.abort();
        engine_task.abort();
        let _ = sender.await;
        result
    });
    match result {
        crate::console::Ended::Left | crate::console::Ended::Engine(_) => {
            println!(
                "detached; rollout {id} of {} goes on in its engine ({engine})",
                rollout.release
            );
            exit::OK
        }
        crate::console::Ended::TerminalFailed(e, _) => {
            eprintln!("error: the console cannot use this terminal: {e}");
            exit::FAILED
        }
    }
}
