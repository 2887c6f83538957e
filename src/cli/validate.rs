//! `flotilla validate`.

use std::path::Path;

use serde_json::json;

use super::{exit, output, Output};
use crate::intent::{self, IntentError};

pub fn run(repo: &Path, rev: &str, out: Output) -> u8 {
    let result = intent::load(repo, rev);
    match (out, result) {
        (Output::Json, Ok(loaded)) => {
            let i = &loaded.intent;
            println!(
                "{}",
                json!({
                    "valid": true,
                    "commit": i.revision.commit,
                    "environments": i.environments.len(),
                    "services": i.services.len(),
                    "overlays": i.overlays.len(),
                    "releases": i.releases.iter().map(|r| &r.name).collect::<Vec<_>>(),
                    "warnings": loaded.warnings,
                })
            );
            exit::OK
        }
        (Output::Json, Err(IntentError::Invalid(diags))) => {
            let (errors, warnings): (Vec<_>, Vec<_>) =
                diags.into_iter().partition(|d| d.is_error());
            println!(
                "{}",
                json!({ "valid": false, "errors": errors, "warnings": warnings })
            );
            exit::INVALID
        }
        (Output::Json, Err(IntentError::Git(msg))) => {
            println!(
                "{}",
                json!({ "valid": false, "errors": [{ "message": msg }] })
            );
            exit::INVALID
        }
        (Output::Plain, Ok(loaded)) => {
            for w in &loaded.warnings {
                eprintln!("{w}\n");
            }
            let i = &loaded.intent;
            println!(
                "ok: the intent at {} \"{}\" is valid: {} environments, {} services, {} overlays, {} releases ({}){}",
                i.revision.short,
                i.revision.subject,
                i.environments.len(),
                i.services.len(),
                i.overlays.len(),
                i.releases.len(),
                i.releases.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
                if loaded.warnings.is_empty() { String::new() } else { format!(", {} warning(s)", loaded.warnings.len()) }
            );
            exit::OK
        }
        (Output::Plain, Err(IntentError::Invalid(diags))) => {
            output::print_diagnostics(&diags);
            exit::INVALID
        }
        (Output::Plain, Err(IntentError::Git(msg))) => {
            eprintln!("error: {msg}");
            exit::INVALID
        }
    }
}
