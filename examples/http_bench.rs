//! The http driver and the agent, measured: a rollout of N environments x 3 services
//! through the http driver against N agents on loopback, beside the same applies sent by
//! a bare `xargs -P` running curl; then the agent's requests per second. Run with
//! `cargo run --release --example http_bench` (`-- --envs N --parallel P`); it prints
//! figures and ratios rather than asserting.
//!
//! Target: at least 1,000 steps/s on 2 cores. Every apply is durable at the agent (its
//! state file is written and fsynced before it answers), as in production.

mod common;
use common::{arg, engine_run};

use std::path::Path;
use std::process::{Command as Process, Stdio};

use std::time::{Duration, Instant};

use flotilla::demo::DemoCommit;

use flotilla::intent;

const TOKEN: &str = "bench-token-0123456789abcdef";
const SERVICES: [&str; 3] = ["schema", "api", "web"];

fn repo(urls: &[String], parallel: usize, token_file: &Path) -> Vec<DemoCommit> {
    let fleet = format!(
        r#"[fleet]
name = "http-bench"
[driver]
kind = "http"
[driver.http]
token_file = {}
[[service]]
name = "schema"
[[service]]
name = "api"
depends_on = ["schema"]
[[service]]
name = "web"
depends_on = ["api"]
[strategy]
max_parallel = {parallel}
retries = 0
step_timeout = "1m"
[[strategy.wave]]
name = "canary"
select = "ring=canary"
failure_budget = 0
[[strategy.wave]]
name = "rest"
select = "*"
failure_budget = "5%"
"#,
        toml::Value::String(token_file.display().to_string())
    );
    let mut files = vec![
        ("flotilla.toml".to_string(), fleet),
        (
            "releases/1.0.toml".to_string(),
            "[services]\nschema = \"7\"\napi = \"1.0\"\nweb = \"1.0\"\n[config]\napi.replicas = 3\n"
                .to_string(),
        ),
    ];
    for (i, url) in urls.iter().enumerate() {
        let ring = if i == 0 { "canary" } else { "general" };
        files.push((
            format!("environments/e-{i:04}.toml"),
            format!("labels = {{ ring = \"{ring}\" }}\ntarget = \"{url}\"\n"),
        ));
    }
    vec![DemoCommit {
        message: "http bench".into(),
        files,
    }]
}

/// The same applies (a PUT per environment and service) through `xargs -P` and curl, one
/// process per request as a shell script would send them. None if curl is missing.
fn curl_run(dir: &Path, urls: &[String], parallel: usize) -> Option<Duration> {
    Process::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .ok()?;
    let script = dir.join("put.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec curl -sf -o /dev/null -X PUT -H 'Authorization: Bearer {TOKEN}' -H 'Content-Type: application/json' -d \"{{\\\"version\\\": \\\"2.0\\\", \\\"revision\\\": \\\"peer\\\"}}\" \"$1/v1/services/$2\"\n"
        ),
    )
    .ok()?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).ok()?;
    let input: String = urls
        .iter()
        .flat_map(|u| SERVICES.iter().map(move |s| format!("{u} {s}\n")))
        .collect();
    let started = Instant::now();
    let mut child = Process::new("xargs")
        .args(["-P", &parallel.to_string(), "-n", "2"])
        .arg(&script)
        .stdin(Stdio::piped())
        .spawn()
        .ok()?;
    use std::io::Write;
    child.stdin.take()?.write_all(input.as_bytes()).ok()?;
    child.wait().ok()?.success().then(|| started.elapsed())
}

/// Requests per second one agent answers, `clients` at a time for `for_how_long`.
fn agent_rps(url: &str, clients: usize, for_how_long: Duration, put: bool) -> f64 {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..clients {
            let (client, url) = (client.clone(), url.to_string());
            tasks.spawn(async move {
                let mut done = 0u64;
                while started.elapsed() < for_how_long {
                    let request = if put {
                        // A new revision each time: a real apply, written and fsynced.
                        client.put(format!("{url}/v1/services/svc-{c}")).json(
                            &serde_json::json!({"version": "1", "revision": format!("r{done}")}),
                        )
                    } else {
                        client.get(format!("{url}/v1/ping"))
                    };
                    let ok = request
                        .bearer_auth(TOKEN)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    done += u64::from(ok);
                }
                done
            });
        }
        let mut total = 0;
        while let Some(n) = tasks.join_next().await {
            total += n.unwrap_or(0);
        }
        total as f64 / started.elapsed().as_secs_f64()
    })
}

fn main() {
    let envs = arg("--envs", 1000);
    let parallel = arg("--parallel", 100);
    let dir = tempfile::tempdir().expect("temp dir");
    let names: Vec<String> = (0..envs).map(|i| format!("e-{i:04}")).collect();
    let agents = common::local_agents(dir.path(), &names, TOKEN);
    let token_file = dir.path().join("token");
    let repo_dir = dir.path().join("repo");
    intent::write::write_repo(&repo_dir, &repo(&agents.urls, parallel, &token_file)).expect("repo");

    println!("http driver: {envs} environments x 3 services, parallelism {parallel}, one agent per environment on 127.0.0.1");
    let wall = engine_run(&repo_dir, "1.0");
    let steps = (envs * SERVICES.len()) as f64;
    println!(
        "  flotilla rollout:    {:>8.0} ms  {:>7.0} steps/s (target at least 1000)",
        wall.as_secs_f64() * 1e3,
        steps / wall.as_secs_f64()
    );
    match curl_run(dir.path(), &agents.urls, parallel) {
        Some(peer) => println!(
            "  xargs -P {parallel} curl PUT: {:>8.0} ms  {:>7.0} requests/s; flotilla takes {:.2}x its time (and checks health after each apply, in dependency order)",
            peer.as_secs_f64() * 1e3,
            steps / peer.as_secs_f64(),
            wall.as_secs_f64() / peer.as_secs_f64()
        ),
        None => println!("  xargs + curl: skipped (curl not found)"),
    }
    let one = &agents.urls[0];
    let window = Duration::from_secs(2);
    println!(
        "one agent, 32 clients: {:.0} pings/s, {:.0} applies/s (each written and fsynced)",
        agent_rps(one, 32, window, false),
        agent_rps(one, 32, window, true)
    );
}
