//! `flotilla approve / pause / resume / abort / retry / skip / rollback`: steering the
//! running rollout from another terminal, through the state database.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::{exit, open_state, refuse, Output};
use crate::engine::{fold, Event, EventKind};
use crate::identity::Identity;
use crate::session::{lease_timeout, now_ms};
use crate::store::{Store, StoredCommand};

/// How many answering events to print; the rest are counted.
const SHOWN: usize = 12;

/// How long to wait for the engine to act before saying it has not yet.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// What a steering command did: its words for people, or one JSON document.
pub(super) struct Steered {
    command: StoredCommand,
    rollout: i64,
    release: String,
    /// `answered`, `rejected`, `taken`, `queued`, `aborted` or `resumed_here`.
    result: &'static str,
    /// The engine that runs the rollout (`user@host:pid`), if one does.
    engine: Option<String>,
    /// What the engine answered in the journal (for `resumed_here`: the notable events of
    /// the rollout run here).
    answer: Vec<Event>,
    /// What plain output says (a rollout resumed here has printed its own).
    lines: Vec<String>,
    pub(super) code: u8,
}

impl Steered {
    /// The JSON document: the command as queued (`command` and its arguments), then what
    /// became of it.
    pub(super) fn json(&self) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "ts": crate::session::now_text(),
            "kind": "steered",
        });
        if let (Some(doc), Ok(serde_json::Value::Object(asked))) =
            (doc.as_object_mut(), serde_json::to_value(&self.command))
        {
            doc.extend(asked);
            doc.extend([
                ("rollout".to_string(), self.rollout.into()),
                ("release".to_string(), self.release.clone().into()),
                ("result".to_string(), self.result.into()),
                ("engine".to_string(), self.engine.clone().into()),
                (
                    "answer".to_string(),
                    serde_json::to_value(&self.answer).unwrap_or_default(),
                ),
                ("exit".to_string(), self.code.into()),
            ]);
        }
        doc
    }

    /// Prints the lines for people (on stderr when JSON goes to stdout).
    pub(super) fn tell(&self, output: Output) {
        for line in &self.lines {
            super::say(output, line);
        }
    }
}

/// Sends `command` to the unfinished rollout and reports what became of it.
pub fn run(
    repo: &Path,
    rev: &str,
    state: Option<&Path>,
    command: StoredCommand,
    output: Output,
) -> u8 {
    match steer(repo, rev, state, &command, output) {
        Ok(steered) => {
            match output {
                Output::Json => println!("{}", steered.json()),
                Output::Plain => steered.tell(output),
            }
            steered.code
        }
        Err(code) => code,
    }
}

/// Sends `command` to the unfinished rollout: queued for its engine, whose answer is
/// awaited a while; or, with no engine, done here (an abort, a resume). Refusals are said
/// (as JSON too with `--output json`) and come back as the exit code.
pub(super) fn steer(
    repo: &Path,
    rev: &str,
    state: Option<&Path>,
    command: &StoredCommand,
    output: Output,
) -> Result<Steered, u8> {
    let invalid = |why: String| refuse(exit::INVALID, format!("error: {why}"));
    let (path, store) = open_state(repo, rev, state)?;
    let (rollout, view) = match store.unfinished_with_view() {
        Ok(Some(found)) => found,
        Ok(None) if matches!(command, StoredCommand::Rollback { .. }) => {
            return Err(invalid(format!(
                "no unfinished rollout in {}: rollback steers a rollout that still runs;\n  to put a finished release's environments back, roll the earlier release out: `flotilla rollout RELEASE`",
                path.display()
            )));
        }
        Ok(None) => {
            return Err(invalid(format!(
                "no unfinished rollout in {}; start one with `flotilla rollout RELEASE`",
                path.display()
            )));
        }
        Err(e) => return Err(invalid(e.to_string())),
    };
    // Bad names are refused here, engine or not, before anything is queued: a typo must not
    // wait in the queue to fail later where nobody looks.
    let intent = crate::intent::load(repo, &rollout.commit)
        .ok()
        .map(|l| l.intent);
    check(command, intent.as_ref(), &rollout.release, &view).map_err(invalid)?;
    let me = Identity::current();
    let engine = store
        .live_holder(now_ms(), lease_timeout(), &me.host)
        .map_err(|e| invalid(e.to_string()))?
        .map(|(holder, _)| holder.to_string());
    let steered = |result, engine, answer, lines, code| Steered {
        command: command.clone(),
        rollout: rollout.id,
        release: rollout.release.clone(),
        result,
        engine,
        answer,
        lines,
        code,
    };

    if engine.is_none() && *command == StoredCommand::Abort {
        let (event, line) = abort_idle(&store, rollout.id, &rollout.release, &me)?;
        return Ok(steered("aborted", None, vec![event], vec![line], exit::OK));
    }
    // Queues the command, recorded with who sent it and from where.
    let queue = || {
        store.queue_command(
            rollout.id,
            &crate::session::now_text(),
            &me.actor(),
            me.origin().as_deref(),
            command,
        )
    };
    if engine.is_none() && *command == StoredCommand::Resume {
        // Nothing runs it: resuming means running it here, headless, from where it stopped.
        // The resume goes through the queue behind anything queued before it (a pause), so
        // the engine takes them in the order they were given; as a resume, it accepts the
        // failures of a halt rather than retrying them.
        // A rollout that was only interrupted needs no resume command: running it is enough.
        let held = view.paused
            || view.state == crate::engine::RolloutState::Halted
            || store
                .commands_after(rollout.id, view.last_command)
                .unwrap_or(0)
                > 0;
        if held {
            queue().map_err(|e| invalid(e.to_string()))?;
        }
        drop(store);
        let here = steered("resumed_here", None, Vec::new(), Vec::new(), exit::OK);
        let line = format!(
            "no engine is running rollout {} of {}; resuming it here",
            rollout.id, rollout.release
        );
        let args = super::rollout::RolloutArgs {
            release: rollout.release.clone(),
            approve: Vec::new(),
            approve_all: false,
            wait: false,
            output,
            keep_failures: true,
            overrides: Vec::new(),
            reasons: Vec::new(),
            allow_downgrade: false,
        };
        super::say(output, &line);
        return Ok(match output {
            Output::Plain => {
                let code = super::rollout::run(repo, rev, Some(&path), &args, None);
                Steered { code, ..here }
            }
            Output::Json => {
                let mut answer = Vec::new();
                let code = super::rollout::run_kept(repo, rev, Some(&path), &args, &mut answer);
                Steered {
                    code,
                    answer,
                    ..here
                }
            }
        });
    }
    // What only the rollout's state can refuse, checked against its journal when the
    // command must wait for an engine (a running one answers for itself below).
    if engine.is_none() {
        check_state(command, &view, &me.actor()).map_err(invalid)?;
    }
    let last_seq = store
        .journal_rows(Some(rollout.id))
        .ok()
        .and_then(|r| r.last().map(|x| x.seq))
        .unwrap_or(0);
    let id = queue().map_err(|e| invalid(e.to_string()))?;
    let Some(engine) = engine else {
        let line = format!(
            "queued for rollout {} of {}: no engine is running it now; it takes effect when the rollout resumes (`flotilla rollout {}`)",
            rollout.id, rollout.release, rollout.release
        );
        return Ok(steered("queued", None, Vec::new(), vec![line], exit::OK));
    };

    // Wait for the engine to take the command and answer it in the journal. One command can
    // answer with several events (a wave's rollback, then the pause): they come together.
    let started = Instant::now();
    while started.elapsed() < ANSWER_WITHIN {
        let first = answers(&store, rollout.id, last_seq, &me.actor());
        if let Some(answer) = first.first() {
            let rejected = matches!(answer.kind, EventKind::CommandRejected { .. });
            std::thread::sleep(Duration::from_millis(300));
            let all = answers(&store, rollout.id, last_seq, &me.actor());
            let mut lines: Vec<String> = all
                .iter()
                .filter_map(|e| crate::engine::text::event_line(&e.kind))
                .map(|l| l.trim_start().to_string())
                .collect();
            if lines.len() > SHOWN {
                let more = lines.len() - SHOWN;
                lines.truncate(SHOWN);
                lines.push(format!("... and {more} more (`flotilla audit` lists them)"));
            }
            return Ok(if rejected {
                steered("rejected", Some(engine), all, lines, exit::INVALID)
            } else {
                steered("answered", Some(engine), all, lines, exit::OK)
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (result, line) = if store.command_taken(id).unwrap_or(false) {
        (
            "taken",
            format!("taken by the engine ({engine}); see `flotilla status`"),
        )
    } else {
        (
            "queued",
            format!("queued; the engine ({engine}) has not taken it yet; see `flotilla status`"),
        )
    };
    Ok(steered(
        result,
        Some(engine),
        Vec::new(),
        vec![line],
        exit::OK,
    ))
}

/// The journal events after `after` that answer a command from `actor`, oldest first.
fn answers(store: &Store, rollout: i64, after: i64, actor: &str) -> Vec<Event> {
    let Ok(rows) = store.journal_rows_after(rollout, after) else {
        return Vec::new();
    };
    rows.into_iter()
        .filter(|r| r.actor.as_deref() == Some(actor) && r.kind != "command_received")
        .filter_map(|r| r.event())
        .collect()
}

/// Aborts a rollout no engine is running: recorded in the journal like any abort. Returns
/// the abort's event and what to say.
fn abort_idle(
    store: &Store,
    rollout: i64,
    release: &str,
    me: &Identity,
) -> Result<(Event, String), u8> {
    let holder = me.holder();
    crate::session::take_lease(store, rollout, &holder).map_err(super::refused)?;
    let now = SystemTime::now();
    let event = Event::new(now, EventKind::RolloutAborted { by: me.actor() });
    // Two statements: the connection guard of the first must be gone before the second.
    let appended = store.append(Some(rollout), std::slice::from_ref(&event));
    let result = appended.and_then(|_| {
        store.set_status(
            rollout,
            "aborted",
            Some(&humantime::format_rfc3339_millis(now).to_string()),
        )
    });
    let _ = store.release_lease(&holder);
    match result {
        Ok(()) => Ok((
            event,
            format!("aborted rollout {rollout} of {release} (no engine was running it)"),
        )),
        Err(e) => Err(refuse(exit::INVALID, format!("error: {e}"))),
    }
}

/// "did you mean `x`?" for the closest of `known`, or the list of them.
fn suggest(word: &str, known: &[&str], what: &str) -> String {
    match crate::intent::load::closest(word, known) {
        Some(c) => format!("no {what} `{word}`; did you mean `{c}`?"),
        _ if known.len() <= 12 => format!("no {what} `{word}` ({what}s: {})", known.join(", ")),
        _ => format!("no {what} `{word}` in the rollout's intent"),
    }
}

/// Checks the names a steering command uses against the intent the rollout runs (its
/// commit) and the waves its journal knows. Without the intent (the repository is not
/// here), environment and release names are left to the engine.
fn check(
    command: &StoredCommand,
    intent: Option<&crate::intent::Intent>,
    release: &str,
    view: &crate::engine::RolloutView,
) -> Result<(), String> {
    let waves: Vec<&str> = view.waves.iter().map(|w| w.name.as_str()).collect();
    let envs: Option<Vec<&str>> =
        intent.map(|i| i.environments.iter().map(|e| e.name.as_str()).collect());
    let wave_known = |wave: &str| {
        if waves.is_empty() || waves.contains(&wave) {
            Ok(())
        } else {
            Err(suggest(wave, &waves, "wave"))
        }
    };
    let env_known = |env: &str| match &envs {
        Some(envs) if !envs.contains(&env) => Err(suggest(env, envs, "environment")),
        _ => Ok(()),
    };
    match command {
        StoredCommand::Approve { wave, note } => {
            wave_known(wave)?;
            let needs_note = intent.is_some_and(|i| {
                i.strategy
                    .waves
                    .iter()
                    .any(|w| &w.name == wave && w.note_required)
            });
            if needs_note && note.as_deref().is_none_or(|n| n.trim().is_empty()) {
                return Err(format!(
                    "wave `{wave}` takes an approval with a note saying why: --note \"...\""
                ));
            }
            Ok(())
        }
        StoredCommand::Retry { envs } => envs.iter().try_for_each(|e| env_known(e)),
        StoredCommand::Skip { env, reason } => {
            if reason.trim().is_empty() {
                return Err("a skip needs a reason for the record: --reason \"...\"".into());
            }
            env_known(env)
        }
        StoredCommand::Rollback { envs, wave, to } => {
            envs.iter().try_for_each(|e| env_known(e))?;
            if let Some(wave) = wave {
                wave_known(wave)?;
            }
            if let (Some(to), Some(intent)) = (to, intent) {
                let releases: Vec<&str> = intent.releases.iter().map(|r| r.name.as_str()).collect();
                if to == release {
                    return Err(format!("`{to}` is the release being rolled out"));
                }
                if !releases.contains(&to.as_str()) {
                    return Err(suggest(to, &releases, "release"));
                }
            }
            Ok(())
        }
        StoredCommand::Release { env, .. } => env_known(env),
        StoredCommand::Pause | StoredCommand::Resume | StoredCommand::Abort => Ok(()),
    }
}

/// What the rollout's journal already refuses, for a command that waits in the queue for
/// an engine: as the engine would refuse it, said now rather than later in the journal.
fn check_state(
    command: &StoredCommand,
    view: &crate::engine::RolloutView,
    me: &str,
) -> Result<(), String> {
    match command {
        StoredCommand::Approve { wave, .. } => {
            let Some(w) = view.waves.iter().find(|w| &w.name == wave) else {
                return Ok(());
            };
            if w.started {
                return Err(format!("wave `{wave}` is already past its gate"));
            }
            if w.approvals.iter().any(|a| a == me) {
                return Err(format!(
                    "{me} already approved wave `{wave}`; approvals must come from distinct people"
                ));
            }
            Ok(())
        }
        StoredCommand::Retry { envs } => {
            let failed = view.failed_envs();
            if envs.is_empty() && failed.is_empty() {
                return Err("no failed environments to retry".into());
            }
            match envs.iter().find(|e| !failed.contains(*e)) {
                Some(env) => Err(format!("`{env}` has not failed")),
                None => Ok(()),
            }
        }
        StoredCommand::Skip { env, .. } => match view.env_outcome(env) {
            Some(done) => Err(format!("`{env}` is already {done}")),
            None => Ok(()),
        },
        StoredCommand::Rollback { envs, .. } => {
            for env in envs {
                if let Some(fold::RollbackState::Done) = view.rollbacks.get(env).map(|r| r.state) {
                    return Err(format!("`{env}` is already rolled back"));
                }
                if !view.touched(env) {
                    return Err(format!(
                        "`{env}` has not been changed by this rollout; nothing to roll back"
                    ));
                }
            }
            Ok(())
        }
        StoredCommand::Pause => {
            if view.paused {
                Err("the rollout is already paused".into())
            } else {
                Ok(())
            }
        }
        StoredCommand::Release { env, .. } => match view.env_outcome(env) {
            Some(done) => Err(format!("`{env}` is already {done} in this rollout")),
            None => Ok(()),
        },
        StoredCommand::Resume | StoredCommand::Abort => Ok(()),
    }
}
