//! `flotilla adopt ENV`: an out-of-band change made part of the intent. The live values
//! of the drifted keys are written as the environment's emergency layer
//! (`emergency/ENV.toml`, above every other layer) and committed with git2 on the current
//! branch, so the desired state equals live for them and no rollout undoes the fix.

use std::path::Path;
use std::sync::Arc;

use super::{exit, load, Output};
use crate::drift::adopt::{self, AdoptError};
use crate::identity::Identity;

#[derive(Debug, Clone, clap::Args)]
pub struct AdoptArgs {
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::envs))]
    pub env: String,
    /// Only this service's drift (default: every drifted service).
    #[arg(long)]
    pub service: Option<String>,
    /// Only these keys (dotted, `version` for the version; repeat for several).
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

pub fn run(repo: &Path, state: Option<&Path>, args: &AdoptArgs) -> u8 {
    // The layer goes on top of the branch being worked on: HEAD.
    let loaded = match load(repo, "HEAD") {
        Ok(l) => l,
        Err(code) => return code,
    };
    let intent = Arc::new(loaded.intent);
    let env = &args.env;
    if let Err(code) = super::environment(&intent, env) {
        return code;
    }
    // Refused before anything is observed when the layer may not be committed.
    if let Err(e) = adopt::check_repo(repo, env) {
        return refused(e);
    }
    let (path, store) = match super::open_fleet_state(state, &intent.fleet) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return super::refuse(exit::FAILED, format!("error: {e}")),
    };
    let adopted = match runtime.block_on(adopt::adopt_now(
        repo,
        &path,
        &store,
        env,
        args.service.as_deref(),
        &args.keys,
        &Identity::current(),
    )) {
        Ok(a) => a,
        Err(e) => return refused(e),
    };
    if let Some(w) = &adopted.warning {
        eprintln!("warning: {w}");
    }
    if args.output == Output::Plain {
        println!(
            "adopted into Git as {}, commit {}:\n  {}\n`flotilla drift {env}` no longer reports these keys; `flotilla explain {env}` shows the layer",
            adopted.file,
            &adopted.commit[..7],
            adopted.lines.join("\n  ")
        );
    }
    let told = super::drift::tell_rollout(
        repo,
        &path,
        &store,
        env,
        crate::engine::Decision::Adopt {
            commit: adopted.commit.clone(),
        },
        // All the drift adopted: the whole environment is decided, whatever was asked.
        (!adopted.covers_all).then(|| args.service.as_deref().unwrap_or("")),
        args.output,
    );
    super::drift::finish(
        told,
        args.output,
        serde_json::json!({
            "kind": "adopted",
            "env": env,
            "file": adopted.file,
            "commit": adopted.commit,
            "keys": adopted.lines,
            "warning": adopted.warning,
        }),
    )
}

/// The exit code for each way adopting can refuse.
fn refused(e: AdoptError) -> u8 {
    let code = match e {
        AdoptError::Refused(_) => exit::BLOCKED,
        AdoptError::Invalid(_) => exit::INVALID,
        AdoptError::Failed(_) => exit::FAILED,
    };
    super::refuse(code, e.to_string())
}
