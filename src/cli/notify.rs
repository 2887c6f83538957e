//! `flotilla notify test`: sends one notification to each `[[notify]]` target now, to show
//! that the URLs, secrets and receivers work before a rollout depends on them.

use std::path::Path;

use super::{exit, load, Output};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum NotifyCommand {
    /// Send a test notification to every target; exit 1 if one was not delivered.
    Test {
        #[arg(long, value_enum, default_value_t = Output::Plain)]
        output: Output,
    },
}

pub fn run(repo: &Path, rev: &str, command: &NotifyCommand) -> u8 {
    let NotifyCommand::Test { output } = command;
    let loaded = match load(repo, rev) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let Some(routes) = crate::notify::Routes::new(&loaded.intent, "") else {
        return super::refuse(
            exit::INVALID,
            "error: no [[notify]] targets, in flotilla.toml or your own config.toml; add one with url = \"https://...\" (or url_env for a secret URL)",
        );
    };
    let by = crate::identity::Identity::current().actor();
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let client = reqwest::Client::new();
    let sent_at = crate::session::now_ms();
    let results: Vec<(String, bool, Result<u16, String>)> = runtime.block_on(async {
        let mut results = Vec::new();
        for target in &routes.targets {
            let body = routes.test_body(target, &by);
            let key = format!("{}:test:{sent_at}:{}", routes.fleet, target.name);
            let sent =
                crate::notify::send::deliver(&client, target, &key, "notify_test", &body).await;
            let yours = !loaded.intent.notify.iter().any(|t| t.name == target.name);
            results.push((target.name.clone(), yours, sent));
        }
        results
    });
    let failed = results.iter().filter(|(_, _, r)| r.is_err()).count();
    if *output == Output::Json {
        let list: Vec<serde_json::Value> = results
            .iter()
            .map(|(name, yours, r)| {
                let from = if *yours { "yours" } else { "flotilla.toml" };
                match r {
                    Ok(status) => serde_json::json!({
                        "target": name, "from": from, "delivered": true, "status": status
                    }),
                    Err(e) => serde_json::json!({
                        "target": name, "from": from, "delivered": false, "error": e
                    }),
                }
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "kind": "notify_test", "results": list })
        );
    } else {
        for (name, yours, r) in &results {
            let name = if *yours {
                format!("{name} (yours)")
            } else {
                name.clone()
            };
            match r {
                Ok(status) => println!("{name}: delivered ({status})"),
                Err(e) => println!("{name}: NOT delivered: {e}"),
            }
        }
    }
    if failed > 0 {
        exit::FAILED
    } else {
        exit::OK
    }
}
