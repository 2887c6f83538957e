//! `flotilla explain ENV [KEY]`: the rendered desired state and where each key came from.

use std::path::Path;

use serde_json::json;

use super::{exit, load, Output};
use crate::intent::layers::{self, Setting};
use crate::intent::load::did_you_mean;

pub fn run(
    repo: &Path,
    rev: &str,
    env: &str,
    key: Option<&str>,
    release: Option<&str>,
    out: Output,
) -> u8 {
    let loaded = match load(repo, rev) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let intent = &loaded.intent;
    let Some(environment) = intent.environment(env) else {
        let names: Vec<&str> = intent
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        return super::refuse(
            exit::INVALID,
            format!(
                "error: no environment `{env}` in the intent at {}\n  = help: {}",
                intent.revision.short,
                did_you_mean(env, &names).replace("known services", "known environments")
            ),
        );
    };
    let rel = match release {
        Some(name) => match intent.release(name) {
            Some(r) => r,
            None => {
                let names: Vec<&str> = intent.releases.iter().map(|r| r.name.as_str()).collect();
                return super::refuse(
                    exit::INVALID,
                    format!(
                        "error: no release `{name}` (releases: {})",
                        names.join(", ")
                    ),
                );
            }
        },
        None => match intent.releases.last() {
            Some(r) => r,
            None => {
                return super::refuse(
                    exit::INVALID,
                    "error: the intent has no releases; add one under releases/",
                );
            }
        },
    };
    // Secrets are never printed, plain or JSON.
    let rendered = layers::render(intent, rel, environment).masked(intent);
    let selected: Vec<&Setting> = rendered
        .settings
        .iter()
        .filter(|s| key.is_none_or(|k| s.key == k || s.key.starts_with(&format!("{k}."))))
        .collect();
    if let (Some(k), true) = (key, selected.is_empty()) {
        let keys: Vec<&str> = rendered.settings.iter().map(|s| s.key.as_str()).collect();
        return super::refuse(
            exit::INVALID,
            format!(
                "error: `{env}` has no config key `{k}` in release {}\n  = help: {}",
                rel.name,
                did_you_mean(k, &keys).replace("known services", "keys set")
            ),
        );
    }
    if out == Output::Json {
        let doc = json!({
            "env": env,
            "release": rel.name,
            "commit": intent.revision.commit,
            "labels": environment.labels,
            "services": rendered.desired.services,
            "settings": selected,
        });
        println!("{doc}");
        return exit::OK;
    }
    println!(
        "{env} at release {}, intent {} \"{}\"",
        rel.name, intent.revision.short, intent.revision.subject
    );
    let labels: Vec<String> = environment
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("labels: {}", labels.join(", "));
    let width = selected
        .iter()
        .map(|s| s.key.len() + s.value.to_string().len() + 3)
        .max()
        .unwrap_or(0)
        .min(48);
    for (name, svc) in &rendered.desired.services {
        let mine: Vec<&&Setting> = selected
            .iter()
            .filter(|s| s.key.starts_with(&format!("{name}.")))
            .collect();
        if key.is_some() && mine.is_empty() {
            continue;
        }
        println!();
        println!("{name} {} (revision {})", svc.version, svc.revision);
        if mine.is_empty() {
            println!("  (no config)");
        }
        for s in mine {
            let assignment = format!("{} = {}", s.key, s.value);
            println!("  {assignment:<width$}  {}", s.file);
            for o in s.overrode.iter().rev() {
                println!("  {:<width$}    overrides {} from {}", "", o.value, o.file);
            }
        }
    }
    exit::OK
}
