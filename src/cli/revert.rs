//! `flotilla revert ENV`: an out-of-band change undone by applying again what flotilla last
//! applied there, through the engine (journal, retries, timeouts, lease) as a rollout of
//! that one environment.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::{exit, load, Output};
use crate::engine::{Event, EventKind, OnHold};
use crate::session::{Only, RolloutSession, Setup};
use crate::store::Store;

#[derive(Debug, Clone, clap::Args)]
pub struct RevertArgs {
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::envs))]
    pub env: String,
    /// Only this service (default: every service, as that rollout left them).
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

pub fn run(repo: &Path, state: Option<&Path>, args: &RevertArgs) -> u8 {
    let loaded = match load(repo, "HEAD") {
        Ok(l) => l,
        Err(code) => return code,
    };
    let intent = Arc::new(loaded.intent);
    let env = &args.env;
    if let Err(code) = super::environment(&intent, env) {
        return code;
    }
    if let Some(Err(code)) = args.service.as_deref().map(|s| super::service(&intent, s)) {
        return code;
    }
    let (path, store) = match super::open_fleet_state(state, &intent.fleet) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    // A rollout that has yet to finish the environment applies its desired state over
    // the change: it is told so, instead of a revert racing it.
    match super::drift::tell_rollout(
        repo,
        &path,
        &store,
        env,
        crate::engine::Decision::Revert,
        args.service.as_deref(),
        args.output,
    ) {
        None => {}
        Some(Err(code)) => return code,
        Some(Ok(told)) => {
            match args.output {
                Output::Plain => told.tell(Output::Plain),
                Output::Json => println!(
                    "{}",
                    serde_json::json!({
                        "ts": crate::session::now_text(),
                        "kind": "reverted",
                        "env": env,
                        "service": args.service,
                        "told": told.json(),
                        "exit": told.code,
                    })
                ),
            }
            return told.code;
        }
    }
    match store.unfinished_rollout() {
        Ok(None) => {}
        Ok(Some(u)) => {
            return super::refuse(
                exit::BLOCKED,
                format!(
                    "refused: rollout {} of {} is unfinished; finish it (`flotilla rollout {}`) or abort it before reverting",
                    u.id, u.release, u.release
                ),
            )
        }
        Err(e) => return super::refuse(exit::INVALID, format!("error: {e}")),
    }
    let (report, known) = match super::drift::one_env(repo, &intent, &store, &path, env) {
        Ok(r) => r,
        Err(code) => return code,
    };
    // The services to put back: the drifted ones (of them, the one asked for).
    let chosen = |name: &str| args.service.as_deref().is_none_or(|s| s == name);
    // What was last applied there: the newest apply among the drifted services.
    let last = report
        .services
        .iter()
        .filter(|s| s.comparison.state.is_drift() && chosen(&s.service))
        .filter_map(|s| known.baseline.get(env, &s.service, s.live.as_ref()))
        .map(|(a, _)| a)
        .max_by_key(|a| a.rollout)
        .cloned();
    let Some(last) = last else {
        return super::refuse(
            exit::INVALID,
            format!(
                "refused: {env}{} has no drift from what flotilla applied there; nothing to revert",
                args.service
                    .as_ref()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default()
            ),
        );
    };
    // The revert applies its services (every one, or the one asked for) as that rollout
    // left them: refused where a newer rollout applied one of them since, which it would
    // take back.
    let newer: Vec<&str> = report
        .services
        .iter()
        .filter(|s| chosen(&s.service))
        .filter(|s| {
            known
                .baseline
                .get(env, &s.service, s.live.as_ref())
                .is_some_and(|(a, _)| a.rollout > last.rollout)
        })
        .map(|s| s.service.as_str())
        .collect();
    if !newer.is_empty() {
        return super::refuse(
            exit::BLOCKED,
            format!(
                "refused: {} of {env} were applied by a rollout newer than the one to revert to (rollout {}); reverting would take them back. Adopt the change, or fix it in Git",
                newer.join(", "),
                last.rollout
            ),
        );
    }
    // The intent as it was applied: its commit, its release.
    let applied = match load(repo, &last.commit) {
        Ok(l) => l.intent,
        Err(code) => return code,
    };
    let line = format!(
        "reverting {env} to what rollout {} applied: release {} at {}",
        last.rollout,
        last.release,
        &last.commit[..7.min(last.commit.len())]
    );
    super::say(args.output, &line);
    let setup = Setup {
        repo,
        state: path.clone(),
        intent: applied,
        release: last.release.clone(),
        approve: Vec::new(),
        approve_all: false,
        on_hold: OnHold::Exit,
        keep_failures: false,
        replay: false,
        signals: true,
        only: Some(Only {
            env: env.clone(),
            services: args.service.iter().cloned().collect(),
        }),
        overrides: Vec::new(),
        // Back to what flotilla applied, whatever the drift's version.
        downgrades: crate::engine::preflight::Downgrades::Allow,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return super::refuse(exit::FAILED, format!("error: {e}")),
    };
    runtime.block_on(async {
        match RolloutSession::open(setup).await {
            Ok(session) => {
                let id = session.rollout();
                let mut kept = Vec::new();
                let json = args.output == Output::Json;
                let code =
                    super::rollout::headless(session, args.output, json.then_some(&mut kept)).await;
                close_unfinished(&store, id, env);
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "ts": crate::session::now_text(),
                            "kind": "reverted",
                            "env": env,
                            "service": args.service,
                            "to": {
                                "rollout": last.rollout,
                                "release": last.release,
                                "commit": last.commit,
                            },
                            "rollout": id,
                            "events": kept,
                            "exit": code,
                        })
                    );
                }
                code
            }
            Err(r) => super::refused(r),
        }
    })
}

/// The revert's own rollout (`id`), if it did not finish, is closed: resumed as a
/// rollout, it would go to the whole fleet. Running `revert` again starts it anew.
fn close_unfinished(store: &Store, id: i64, env: &str) {
    let Ok(Some(u)) = store.unfinished_rollout() else {
        return;
    };
    if u.id != id {
        return;
    }
    let by = crate::identity::Identity::current().actor();
    let event = Event::new(SystemTime::now(), EventKind::RolloutAborted { by });
    if store.append(Some(u.id), &[event]).is_ok() {
        let _ = store.set_status(u.id, "aborted", Some(&crate::session::now_text()));
        eprintln!("the revert of {env} did not finish and was closed; `flotilla revert {env}` tries again");
    }
}
