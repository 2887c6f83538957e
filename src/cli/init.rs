//! `flotilla init DIR [--demo]` and `flotilla demo`: writing intent repos as real Git history.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
    if agents.is_none() {
        // The simulated demo starts with drift: its rollout holds those environments for
        // the operator to decide on in the console, instead of refusing to start.
        let fleet = commits
            .iter()
            .flat_map(|c| &c.files)
            .rev()
            .find(|(path, _)| path == "flotilla.toml")
            .map(|(_, text)| text.clone())
            .unwrap_or_default();
        commits.push(DemoCommit {
            message: "Demo: hold drifted environments during the rollout instead of refusing it".into(),
            files: vec![(
                "flotilla.toml".into(),
                fleet.replace(
                    "block_on_drift = true",
                    "block_on_drift = false    # the rollout holds drifted environments for a decision",
                ),
            )],
        });
    }
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
    // The simulated fleet starts where real ones are: running the release before, with two
    // environments changed by hand since, for the rollout to hold and the operator to decide.
    let drifted = match agents {
        Some(_) => Vec::new(),
        None => match start_with_drift(&dir, &state) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: the demo fleet could not be prepared: {e}");
                return exit::FAILED;
            }
        },
    };
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
    if !drifted.is_empty() {
        println!(
            "the fleet runs {PREVIOUS_RELEASE}; changed by hand since: {}",
            drifted.join(", ")
        );
        println!(
            "  the rollout holds them when it gets there{}",
            if interactive {
                ": select one and decide (A adopt, V revert, C accept)"
            } else {
                ""
            }
        );
    }
    let code = if interactive {
        super::console::open(&dir, "HEAD", Some(&state), DEMO_RELEASE, false, None)
    } else {
        // Headless, the demo approves every wave by name: policy-protected ones take that.
        let mut waves = Vec::new();
        if let Ok(loaded) = crate::intent::load(&dir, "HEAD") {
            if let Ok(plan) = crate::plan::build(&loaded.intent, DEMO_RELEASE, SystemTime::now()) {
                println!("\n{}", super::output::plan_text(&plan));
                waves = gated(&plan);
            }
        }
        let args = rollout::RolloutArgs {
            release: DEMO_RELEASE.into(),
            approve: waves,
            approve_all: false,
            wait: false,
            output: super::Output::Plain,
            keep_failures: false,
            overrides: Vec::new(),
            reasons: Vec::new(),
            allow_downgrade: false,
        };
        rollout::run(&dir, "HEAD", Some(&state), &args, None)
    };
    if agents.is_some() {
        println!("the agents stopped with the demo");
        return code;
    }
    println!();
    if code == exit::BLOCKED && !drifted.is_empty() {
        println!("Next: decide on the held environments, then let the rollout finish:");
        println!(
            "  flotilla --repo {} --state {} drift",
            dir.display(),
            state.display()
        );
        println!(
            "  flotilla --repo {} --state {} adopt ENV   (or revert ENV, or drift accept ENV --for 24h --reason ...)",
            dir.display(),
            state.display()
        );
        println!(
            "  flotilla --repo {} --state {} rollout {DEMO_RELEASE}",
            dir.display(),
            state.display()
        );
        return code;
    }
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

/// The waves of `plan` behind an approval gate, to approve by name.
fn gated(plan: &crate::plan::Plan) -> Vec<String> {
    plan.waves
        .iter()
        .filter(|w| matches!(w.gate, crate::intent::Gate::Approval { .. }))
        .map(|w| w.name.clone())
        .collect()
}

/// The release the demo fleet runs before the demo's rollout.
const PREVIOUS_RELEASE: &str = "2026.11.1";

/// Rolls [`PREVIOUS_RELEASE`] out on the demo's simulated fleet at once (no latency, no
/// soak, no failures: it is the fleet's history, journaled like any rollout), then changes
/// two environments by hand the way an incident would. Returns what it changed.
fn start_with_drift(repo: &Path, state: &Path) -> Result<Vec<String>, String> {
    let mut intent = crate::intent::load(repo, "HEAD")
        .map_err(|e| e.to_string())?
        .intent;
    intent.driver.sim.latency = (Duration::ZERO, Duration::ZERO);
    intent.driver.sim.success_rate = 1.0;
    for w in &mut intent.strategy.waves {
        w.soak = Duration::ZERO;
    }
    // Two environments past the canary: the rollout gets there after a gate.
    let plan = crate::plan::build(&intent, PREVIOUS_RELEASE, SystemTime::now())
        .map_err(|e| e.to_string())?;
    let later: Vec<String> = plan
        .waves
        .iter()
        .skip(1)
        .flat_map(|w| w.envs.clone())
        .collect();
    let picks: Vec<String> = match later.len() {
        0 => Vec::new(),
        1 => later.clone(),
        n => vec![later[0].clone(), later[n / 2].clone()],
    };
    let setup = crate::session::Setup {
        repo,
        state: state.to_path_buf(),
        intent,
        release: PREVIOUS_RELEASE.into(),
        approve: gated(&plan),
        approve_all: false,
        on_hold: crate::engine::OnHold::Exit,
        keep_failures: false,
        replay: false,
        signals: false,
        only: None,
        overrides: Vec::new(),
        downgrades: crate::engine::preflight::Downgrades::Refuse,
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let outcome = runtime.block_on(async {
        let session = crate::session::RolloutSession::open(setup)
            .await
            .map_err(|r| r.to_string())?;
        let (running, mut events) = session.start().map_err(|r| r.to_string())?;
        let drain = tokio::spawn(async move { while events.receiver.recv().await.is_some() {} });
        let outcome = running.finish(None).await.map_err(|r| r.to_string());
        drain.abort();
        outcome
    })?;
    if !matches!(outcome, crate::engine::Outcome::Completed { failed: 0, .. }) {
        return Err(format!(
            "the rollout of {PREVIOUS_RELEASE} ended {outcome:?}"
        ));
    }
    let loaded = crate::intent::load(repo, "HEAD").map_err(|e| e.to_string())?;
    let fleet = crate::drivers::sim::SimFleet::open(loaded.intent.driver.sim.clone(), None, state)
        .map_err(|e| e.to_string())?;
    let hand_edits: [(&str, &str, i64); 2] =
        [("api", "replicas", 6), ("worker", "concurrency", 16)];
    let mut changed = Vec::new();
    for (env, (service, key, value)) in picks.iter().zip(hand_edits) {
        fleet.tamper(
            env,
            service,
            None,
            &[(key.to_string(), toml::Value::Integer(value))],
        )?;
        changed.push(format!("{env} ({service}.{key} = {value})"));
    }
    Ok(changed)
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
