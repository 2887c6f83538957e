//! `flotilla init DIR [--demo]` and `flotilla demo`: writing intent repos as real Git history.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{exit, rollout};
use crate::demo::{demo_commits, DemoCommit};
use crate::intent::write::write_repo;

/// Marks a directory as a demo flotilla made, so `demo` may replace it and nothing else.
const DEMO_MARKER: &str = "flotilla-demo";

/// The demo rolls out this release: good everywhere, so the main job ends well.
const DEMO_RELEASE: &str = "2026.11.2";

const SKELETON_FLEET: &str = r#"# The fleet: its services, how releases roll out, and the policy that limits them.
[fleet]
name = "my-fleet"

[driver]
kind = "sim"                     # sim | exec | http
[driver.sim]
success_rate = 0.99
latency = "20ms..200ms"
seed = 1

[[service]]
name = "api"
[[service]]
name = "web"
depends_on = ["api"]

[strategy]
retries = 2
step_timeout = "5m"
[[strategy.wave]]
name = "canary"
select = "ring=canary"
gate = "approval"
failure_budget = 0
[[strategy.wave]]
name = "rest"
select = "*"
failure_budget = "5%"
"#;

fn skeleton() -> Vec<DemoCommit> {
    vec![DemoCommit {
        message: "Scaffold a flotilla intent repo".into(),
        files: vec![
            ("flotilla.toml".into(), SKELETON_FLEET.into()),
            (
                "environments/example-1.toml".into(),
                "labels = { ring = \"canary\", region = \"eu-west\" }\ntarget = \"sim://example-1\"\n".into(),
            ),
            (
                "environments/example-2.toml".into(),
                "labels = { ring = \"general\", region = \"us-east\" }\ntarget = \"sim://example-2\"\n[config]\napi.replicas = 3\n".into(),
            ),
            (
                "overlays/eu.toml".into(),
                "select = \"region=eu-west\"\npriority = 10\n[config]\napi.data_residency = \"eu\"\n".into(),
            ),
            (
                "releases/1.0.0.toml".into(),
                "[services]\napi = \"1.0.0\"\nweb = \"1.0.0\"\n[config]\napi.replicas = 2\n".into(),
            ),
        ],
    }]
}

pub fn init(dir: &Path, demo: bool, envs: usize) -> u8 {
    let commits = if demo { demo_commits(envs) } else { skeleton() };
    match write_repo(dir, &commits) {
        Ok(()) => {
            println!(
                "created an intent repo in {} ({} commit(s)); try: flotilla --repo {} validate",
                dir.display(),
                commits.len(),
                dir.display()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::INVALID
        }
    }
}

/// `flotilla demo`: a fresh demo repo in the data directory, then a rollout of its newest
/// good release (the console takes over this job when it lands).
/// The demo's agents: each apply takes this long (a real apply script would).
const DEMO_APPLY: &[&str] = &["sleep", "0.3"];

/// `agents`: run the demo over that many flotilla agents on loopback (one environment
/// each) through the http driver, instead of the simulator.
pub fn demo(envs: usize, agents: Option<usize>, state: Option<PathBuf>) -> u8 {
    let envs = agents.unwrap_or(envs).max(1);
    let dir = super::data_dir().join("demo");
    if dir.exists() {
        if !dir.join(".git").join(DEMO_MARKER).exists() {
            eprintln!(
                "error: {} exists but is not a demo flotilla made; move it aside",
                dir.display()
            );
            return exit::INVALID;
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            eprintln!(
                "error: cannot replace the old demo at {}: {e}",
                dir.display()
            );
            return exit::INVALID;
        }
    }
    let mut commits = demo_commits(envs);
    // Kept until the demo ends: dropping them stops the agents.
    let _agents = match agents {
        Some(_) => match start_demo_agents(&mut commits, envs) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::INVALID;
            }
        },
        None => None,
    };
    if let Err(e) = write_repo(&dir, &commits) {
        eprintln!("error: {e}");
        return exit::INVALID;
    }
    let _ = std::fs::write(dir.join(".git").join(DEMO_MARKER), "");
    // The demo fleet starts empty each time so the rollout has something to do.
    let state = state.unwrap_or_else(|| super::data_dir().join("demo-state.db"));
    for suffix in ["", "-wal", "-shm"] {
        let mut p = state.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    println!(
        "demo intent repo: {} ({} environments{})",
        dir.display(),
        envs,
        if agents.is_some() {
            ", each behind a flotilla agent on 127.0.0.1"
        } else {
            ""
        }
    );
    // On a terminal the demo opens the console; elsewhere (a pipe, CI) it runs headless.
    let interactive = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let code = if interactive {
        super::console::open(&dir, "HEAD", Some(&state), DEMO_RELEASE, false, None)
    } else {
        if let Ok(loaded) = crate::intent::load(&dir, "HEAD") {
            if let Ok(plan) = crate::plan::build(&loaded.intent, DEMO_RELEASE, SystemTime::now()) {
                println!("\n{}", super::output::plan_text(&plan));
            }
        }
        let args = rollout::RolloutArgs {
            release: DEMO_RELEASE.into(),
            approve: Vec::new(),
            approve_all: true,
            wait: false,
            output: super::Output::Plain,
            keep_failures: false,
        };
        rollout::run(&dir, "HEAD", Some(&state), &args, None)
    };
    if agents.is_some() {
        println!("the agents stopped with the demo");
        return code;
    }
    println!();
    println!("Next: see how a bad release is stopped before it reaches the fleet:");
    println!("  flotilla --repo {} plan 2026.11.3", dir.display());
    println!(
        "  flotilla --repo {} --state {} {}",
        dir.display(),
        state.display(),
        if interactive {
            "console 2026.11.3"
        } else {
            "rollout 2026.11.3 --approve-all"
        }
    );
    code
}

/// Starts one agent per demo environment (fresh state, a new random token kept outside the
/// repo) and points the demo's intent at them.
fn start_demo_agents(
    commits: &mut Vec<DemoCommit>,
    envs: usize,
) -> Result<crate::agent::LocalAgents, String> {
    use rand::TryRngCore;
    let home = super::data_dir().join("demo-agents");
    if home.exists() {
        std::fs::remove_dir_all(&home).map_err(|e| {
            format!(
                "cannot clear the old demo agents at {}: {e}",
                home.display()
            )
        })?;
    }
    std::fs::create_dir_all(&home).map_err(|e| format!("cannot create {}: {e}", home.display()))?;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| format!("cannot make a token: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let token_file = home.join("token");
    write_private(&token_file, &token)?;
    let names: Vec<String> = commits
        .iter()
        .flat_map(|c| &c.files)
        .filter_map(|(p, _)| p.strip_prefix("environments/")?.strip_suffix(".toml"))
        .map(str::to_string)
        .take(envs)
        .collect();
    let configs = names
        .iter()
        .map(|env| crate::agent::AgentConfig {
            dir: home.join(env),
            token: Some(token.clone()),
            env: Some(env.clone()),
            hooks: crate::agent::Hooks {
                apply: Some(DEMO_APPLY.iter().map(|s| s.to_string()).collect()),
                timeout: std::time::Duration::from_secs(60),
                ..Default::default()
            },
        })
        .collect();
    let agents = crate::agent::LocalAgents::start(configs)?;
    crate::demo::over_agents(commits, &agents.urls, &token_file.display().to_string());
    Ok(agents)
}

/// Writes a file only this user can read.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
