//! `flotilla sim ...`: handling the simulated fleet by hand, to try what real fleets do.

use std::path::Path;

use super::{exit, load, Output};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SimCommand {
    /// Change what a service runs in a simulated environment out of band, as a hand fix
    /// during an incident would: `version=X` and dotted config keys (`KEY=VALUE`, the value
    /// read as TOML, else as a string).
    Tamper {
        #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::envs))]
        env: String,
        service: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        changes: Vec<String>,
        #[command(flatten)]
        report: super::Report,
    },
}

pub fn run(repo: &Path, rev: &str, state: Option<&Path>, command: &SimCommand) -> u8 {
    let SimCommand::Tamper {
        env,
        service,
        changes,
        report,
    } = command;
    let loaded = match load(repo, rev) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let intent = loaded.intent;
    if intent.driver.kind != crate::intent::DriverKind::Sim {
        return super::refuse(
            exit::INVALID,
            "error: this fleet is not simulated ([driver] kind is not \"sim\"); change a real environment the way you would by hand",
        );
    }
    if let Err(code) = super::environment(&intent, env) {
        return code;
    }
    let mut version = None;
    let mut keys = Vec::new();
    for change in changes {
        let Some((key, text)) = change.split_once('=') else {
            return super::refuse(exit::INVALID, format!("error: `{change}` is not KEY=VALUE"));
        };
        if key == "version" {
            version = Some(text.to_string());
            continue;
        }
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return super::refuse(exit::INVALID, format!("error: `{key}` is not a config key"));
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {text}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(text.to_string()));
        keys.push((key.to_string(), value));
    }
    // The simulated world lives in the state database, created by the store.
    let path = match super::open_fleet_state(state, &intent.fleet) {
        Ok((path, _)) => path,
        Err(code) => return code,
    };
    let fleet = match crate::drivers::sim::SimFleet::open(intent.driver.sim.clone(), None, &path) {
        Ok(f) => f,
        Err(e) => return super::refuse(exit::INVALID, format!("error: {e}")),
    };
    match fleet.tamper(env, service, version, &keys) {
        Ok(live) => {
            let changed: Vec<&str> = changes
                .iter()
                .map(|c| c.split('=').next().unwrap_or(""))
                .collect();
            match report.output {
                Output::Plain => println!(
                    "{env}/{service} now runs {} with {} changed out of band; `flotilla drift` reports it",
                    live.version,
                    changed.join(", ")
                ),
                Output::Json => println!(
                    "{}",
                    serde_json::json!({
                        "ts": crate::session::now_text(),
                        "kind": "tampered",
                        "env": env,
                        "service": service,
                        "version": live.version,
                        "changed": changed,
                        "exit": exit::OK,
                    })
                ),
            }
            exit::OK
        }
        Err(e) => super::refuse(exit::FAILED, format!("error: {e}")),
    }
}
