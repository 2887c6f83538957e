//! `flotilla plan RELEASE`.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::{exit, load, output, Output};
use crate::drift::scan::Known;
use crate::drivers::Driver;
use crate::engine::preflight;
use crate::plan::{self, Plan};
use crate::store::Store;

/// What `plan` was asked for besides the plan.
pub struct Asked {
    pub downgrades: preflight::Downgrades,
    /// Print wave sizes that keep every wave under `max_wave_risk`.
    pub suggest: bool,
}

pub fn run(
    repo: &Path,
    rev: &str,
    state: Option<&Path>,
    release: &str,
    asked: Asked,
    out: Output,
) -> u8 {
    let loaded = match load(repo, rev) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let intent = Arc::new(loaded.intent);
    // Past attempts, when a state database exists, make the risk estimate the fleet's own.
    let path = state
        .map(Path::to_path_buf)
        .unwrap_or_else(|| super::default_state(&intent.fleet));
    let history = if path.exists() {
        match Store::open_existing(&path).and_then(|s| s.history()) {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("warning: {e}; risk uses the configured success rate");
                None
            }
        }
    } else {
        None
    };
    let mut plan =
        match plan::build_with_history(&intent, release, SystemTime::now(), history.as_ref()) {
            Ok(p) => p,
            Err(e) => {
                return super::refuse(exit::INVALID, format!("error: {e}"));
            }
        };
    // Reachability needs the driver (an exec `ping` runs for real; plan changes nothing).
    // The simulated fleet lives in the state database, when there is one.
    let existing = path.exists().then_some(path.as_path());
    let place = crate::drivers::Place {
        repo,
        state: existing,
    };
    let driver: Arc<dyn Driver> =
        match crate::drivers::open(&intent, intent.release(release), place) {
            Ok(d) => d,
            Err(e) => return super::refuse(exit::INVALID, format!("error: {e}")),
        };
    // The driver checks run on one runtime: reachability, then drift.
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            runtime.block_on(preflight::add_target_checks(
                &intent,
                &mut plan,
                &driver,
                asked.downgrades,
            ));
            add_drift(
                &runtime, repo, &intent, release, existing, &mut plan, &driver,
            );
        }
        Err(e) => plan.checks.push(plan::Check::new(
            "targets.reachable",
            plan::CheckStatus::Fail,
            format!("cannot start the runtime: {e}"),
        )),
    }
    // Suggested from the plan's own waves and risk basis, before anything is printed.
    let suggested = match (asked.suggest, intent.policy.max_wave_risk) {
        (false, _) => None,
        (true, None) => {
            return super::refuse(
                exit::INVALID,
                "error: --suggest sizes waves to [policy] max_wave_risk, which the intent does not set (e.g. max_wave_risk = 0.05)",
            )
        }
        (true, Some(max)) => match plan::suggest::strategy(&intent, &plan, history.as_ref(), max) {
            Ok(s) => Some((max, s)),
            Err(why) => return super::refuse(exit::BLOCKED, format!("cannot suggest: {why}")),
        },
    };
    match out {
        Output::Json => {
            let mut doc = match serde_json::to_value(&plan) {
                Ok(v) => v,
                Err(e) => {
                    return super::refuse(
                        exit::FAILED,
                        format!("error: cannot encode the plan: {e}"),
                    );
                }
            };
            if let (Some((_, s)), Some(map)) = (&suggested, doc.as_object_mut()) {
                map.insert("suggested_strategy".into(), s.clone().into());
            }
            println!("{doc:#}");
        }
        Output::Plain => {
            print!("{}", output::plan_text(&plan));
            print!("{}", emergency_text(&intent, SystemTime::now()));
            if let Some((max, s)) = &suggested {
                println!(
                    "\nsuggested: waves that each fail somewhere with a chance of at most {max}; paste this over the [strategy] of flotilla.toml:\n\n{s}"
                );
            }
        }
    }
    exit::OK
}

/// What flotilla applied is in the state database: without one, nothing can have drifted.
fn add_drift(
    runtime: &tokio::runtime::Runtime,
    repo: &Path,
    intent: &Arc<crate::intent::Intent>,
    release: &str,
    state: Option<&Path>,
    plan: &mut Plan,
    driver: &Arc<dyn Driver>,
) {
    if !intent.policy.block_on_drift {
        return plan.checks.push(plan::Check::new(
            "drift.clean",
            plan::CheckStatus::Warn,
            "not checked ([policy] block_on_drift = false): the rollout holds drifted environments where it reaches them",
        ));
    }
    let Some(store) = state.and_then(|p| Store::open_existing(p).ok()) else {
        return plan.checks.push(plan::Check::new(
            "drift.clean",
            plan::CheckStatus::Pass,
            "nothing was applied yet (no state database): nothing can have drifted",
        ));
    };
    let envs: Vec<String> = plan.waves.iter().flat_map(|w| w.envs.clone()).collect();
    let known = match Known::load(repo, intent, &store, std::time::SystemTime::now()) {
        Ok(k) => Arc::new(k),
        Err(e) => return eprintln!("warning: drift not checked: {e}"),
    };
    plan.checks
        .push(runtime.block_on(crate::drift::scan::preflight(
            intent, release, envs, known, &store, driver, false,
        )));
}

/// The emergency layers in the intent, with their age: they should be folded into overlays
/// or environment files, not pile up.
fn emergency_text(intent: &crate::intent::Intent, now: SystemTime) -> String {
    if intent.emergencies.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nemergency layers ({}), adopted live values above every other layer; fold them into overlays:\n",
        intent.emergencies.len()
    );
    for e in &intent.emergencies {
        let age = e
            .adopted
            .as_deref()
            .and_then(|a| humantime::parse_rfc3339_weak(a).ok())
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| match d.as_secs() / 60 * 60 {
                0 => "just now".to_string(),
                minutes => format!(
                    "{} ago",
                    humantime::format_duration(std::time::Duration::from_secs(minutes))
                ),
            })
            .unwrap_or_else(|| "at an unknown time".into());
        let keys = e.versions.len() + crate::keypath::leaves(&e.config).len();
        out.push_str(&format!(
            "  {}: {keys} value(s), adopted {age}{} ({})\n",
            e.env,
            e.by.as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default(),
            e.file
        ));
    }
    out
}
