//! `flotilla status`: where the current (or last) rollout stands, folded from the journal.

use std::path::Path;

use serde_json::json;

use super::{exit, open_state, Output};
use crate::engine::fold::WaveView;
use crate::engine::{Event, RolloutView};
use crate::identity::Identity;
use crate::session::{lease_timeout, now_ms};

/// Where this command logs (and engines run by this user on this machine too).
fn log_line() -> String {
    match crate::log::written() {
        Some(Ok(path)) => format!("log: {} (more with -v or RUST_LOG=debug)", path.display()),
        Some(Err(why)) => format!("log: none: {why}"),
        None => "log: none".to_string(),
    }
}

pub fn run(repo: &Path, rev: &str, state: Option<&Path>, out: Output) -> u8 {
    let (path, store) = match open_state(repo, rev, state) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let rollout = match store.latest_rollout() {
        Ok(Some(r)) => r,
        Ok(None) => {
            println!("no rollout has run with {}", path.display());
            println!("{}", log_line());
            return exit::OK;
        }
        Err(e) => {
            return super::refuse(exit::INVALID, format!("error: {e}"));
        }
    };
    let rows = match store.journal_rows(Some(rollout.id)) {
        Ok(r) => r,
        Err(e) => {
            return super::refuse(exit::INVALID, format!("error: {e}"));
        }
    };
    let events: Vec<Event> = rows.iter().filter_map(|r| r.event()).collect();
    let view = RolloutView::fold(&events);
    // A journal cut short folds into a rollout that never ended: say so before anything.
    let truncated = store.truncation().ok().flatten();
    if let Some(why) = &truncated {
        eprintln!("warning: {why}; what follows may be out of date (`flotilla audit --verify`)");
    }
    let me = Identity::current();
    let engine = store
        .live_holder(now_ms(), lease_timeout(), &me.host)
        .ok()
        .flatten()
        .filter(|(_, r)| *r == rollout.id)
        .map(|(h, _)| h.to_string());
    // A crashed engine leaves "running" behind; say what is true.
    // A crashed engine leaves "running" behind, a quit one "interrupted"; a pause outlives
    // both. Say what is true.
    let state = if engine.is_none() && !rollout.finished() && view.paused {
        "paused (no engine running)".to_string()
    } else if engine.is_none()
        && !rollout.finished()
        && view.state == crate::engine::RolloutState::Running
    {
        "stopped (no engine running)".to_string()
    } else if rollout.finished() && view.state.name() != rollout.status {
        // The journal lost its end (see the warning): the store's record of the outcome
        // is the better word.
        rollout.status.clone()
    } else {
        view.state.to_string()
    };

    let notifications = crate::notify::outbox::standing(&store.conn()).unwrap_or_default();
    // The operator's own targets hear of what their flotilla runs: say which they are.
    let names: Vec<&str> = crate::notify::personal::targets()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    let personal = crate::notify::personal::path()
        .filter(|_| !names.is_empty())
        .map(|path| (path, names));
    if out == Output::Json {
        let waves: Vec<_> = view
            .waves
            .iter()
            .map(|w| {
                let (ok, failed, running, back) = counts(&view, w);
                json!({
                    "name": w.name, "envs": w.envs, "started": w.started, "completed": w.completed,
                    "succeeded": ok, "failed": failed, "running": running, "skipped": w.skipped,
                    "rolled_back": back,
                    "waiting": w.waiting, "approvals": w.approvals,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "rollout": rollout, "state": state, "halt_reason": view.halt_reason,
                "journal_truncated": truncated,
                "engine": engine, "waves": waves, "skipped": view.skipped,
                "rollbacks": view.rollbacks,
                "events": view.events, "last_event": view.last_event,
                "notifications": {
                    "queued": notifications.queued, "sent": notifications.sent,
                    "gave_up": notifications.gave_up,
                    "last_error": notifications.last_error.as_ref().map(|(t, e)| json!({"target": t, "error": e})),
                    "yours": personal.map(|(path, names)| json!({"config": path, "targets": names})),
                },
                "log": match crate::log::written() {
                    Some(Ok(path)) => json!({ "path": path }),
                    Some(Err(why)) => json!({ "path": null, "error": why }),
                    None => json!(null),
                },
            })
        );
        return exit::OK;
    }
    println!(
        "rollout {} of release {} (intent {}), started {} by {}",
        rollout.id,
        rollout.release,
        &rollout.commit[..7.min(rollout.commit.len())],
        rollout.started,
        rollout.started_by
    );
    match &view.halt_reason {
        Some(reason) if state == "halted" => println!("state: halted: {reason}"),
        _ => println!("state: {state}"),
    }
    match &engine {
        Some(h) => println!("engine: {h}"),
        // A halt can go on two ways: accepting what failed, or trying it again.
        None if !rollout.finished() && state == "halted" => println!(
            "engine: none; `flotilla resume` accepts the failures and carries on, `flotilla rollout {}` retries them",
            rollout.release
        ),
        None if !rollout.finished() => println!(
            "engine: none; resume with `flotilla resume` (or `flotilla rollout {}`)",
            rollout.release
        ),
        None => {}
    }
    let n = &notifications;
    if n.queued + n.sent + n.gave_up > 0 {
        let mut line = format!(
            "notifications: {} sent, {} queued, {} given up",
            n.sent, n.queued, n.gave_up
        );
        if let Some((target, error)) = &n.last_error {
            line.push_str(&format!("; last failure to `{target}`: {error}"));
        }
        println!("{line}");
    }
    if let Some((path, names)) = &personal {
        println!(
            "your notify targets: {} (from {})",
            names.join(", "),
            path.display()
        );
    }
    println!("{}", log_line());
    println!();
    println!(
        "  {:<14} {:>5} {:>5} {:>6} {:>7} {:>5}  gate",
        "wave", "envs", "done", "failed", "running", "back"
    );
    for w in &view.waves {
        let (ok, failed, running, back) = counts(&view, w);
        let gate = match (&w.waiting, w.approvals.is_empty()) {
            (Some(reason), _) if !w.started => format!("waiting for {reason}"),
            (_, false) => format!("approved by {}", w.approvals.join(", ")),
            _ => String::new(),
        };
        if w.started {
            println!(
                "  {:<14} {:>5} {:>5} {:>6} {:>7} {:>5}  {gate}",
                w.name, w.envs, ok, failed, running, back
            );
        } else {
            println!(
                "  {:<14} {:>5} {:>5} {:>6} {:>7} {:>5}  {gate}",
                w.name, "-", "-", "-", "-", "-"
            );
        }
    }
    if !view.skipped.is_empty() {
        println!();
        for (env, reason) in &view.skipped {
            println!("  skipped {env}: {reason}");
        }
    }
    if !view.rollbacks.is_empty() {
        println!();
        for (env, r) in &view.rollbacks {
            let how = match r.state {
                crate::engine::fold::RollbackState::Requested => "to roll back",
                crate::engine::fold::RollbackState::InFlight => "rolling back",
                crate::engine::fold::RollbackState::Done => "rolled back",
                crate::engine::fold::RollbackState::Failed => "ROLLBACK FAILED",
            };
            println!("  {how} {env} to {} (asked by {})", r.to, r.by);
        }
    }
    exit::OK
}

/// A wave's (succeeded, failed, running, rolled back) environments: from its summary once it
/// completed (less what was rolled back since), live from the steps before.
fn counts(view: &RolloutView, w: &WaveView) -> (usize, usize, usize, usize) {
    let back = view.wave_rolled_back(&w.name);
    if w.completed {
        let since = back.saturating_sub(w.rolled_back);
        (w.succeeded.saturating_sub(since), w.failed, 0, back)
    } else {
        let (ok, failed, running) = view.wave_progress(&w.name);
        (ok, failed, running, back)
    }
}
