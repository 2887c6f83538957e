//! How long a drift scan takes: 10,000 environments x 3 services on a zero-latency
//! simulated fleet (target under 1 s), and 1,000 environments behind agents on loopback.
//! Each fleet is rolled out first (a real session, journaled), so the scan has
//! last-applied states to compare with. Run with `cargo run --release --example
//! drift_bench` (`-- --envs N --agents M`); it prints figures rather than asserting.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::arg;
use flotilla::demo::DemoCommit;
use flotilla::drift::scan::{self, Known};
use flotilla::engine::{OnHold, Outcome};
use flotilla::intent;
use flotilla::session::{RolloutSession, Setup};
use flotilla::store::Store;

const TOKEN: &str = "drift-bench-token-0123456789";

fn repo(targets: &[String], driver: &str) -> Vec<DemoCommit> {
    let fleet = format!(
        r#"[fleet]
name = "drift-bench"
{driver}
[[service]]
name = "schema"
[[service]]
name = "api"
depends_on = ["schema"]
[[service]]
name = "web"
depends_on = ["api"]
[strategy]
max_parallel = 200
retries = 0
[[strategy.wave]]
name = "all"
select = "*"
"#
    );
    let mut files = vec![
        ("flotilla.toml".to_string(), fleet),
        (
            "releases/1.0.toml".to_string(),
            "[services]\nschema = \"7\"\napi = \"1.0\"\nweb = \"1.0\"\n[config]\napi.log = \"info\"\n"
                .to_string(),
        ),
    ];
    for (i, target) in targets.iter().enumerate() {
        files.push((
            format!("environments/e-{i:05}.toml"),
            format!("labels = {{ region = \"r{}\" }}\ntarget = \"{target}\"\n[config]\napi.replicas = {}\n", i % 7, 1 + i % 4),
        ));
    }
    vec![DemoCommit {
        message: "drift bench".into(),
        files,
    }]
}

/// Rolls release 1.0 out on the repo in `dir` (journaled), then scans it; prints figures.
fn rolled_out_then_scanned(label: &str, dir: &Path) -> Duration {
    let repo_dir = dir.join("repo");
    let state = dir.join("state.db");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let loaded = intent::load(&repo_dir, "HEAD").expect("valid intent");
    let t = Instant::now();
    runtime.block_on(async {
        let session = RolloutSession::open(Setup {
            repo: &repo_dir,
            state: state.clone(),
            intent: loaded.intent,
            release: "1.0".into(),
            approve: Vec::new(),
            approve_all: true,
            on_hold: OnHold::Exit,
            keep_failures: false,
            replay: false,
            signals: false,
            only: None,
            overrides: Vec::new(),
            downgrades: flotilla::engine::preflight::Downgrades::Refuse,
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
        let (running, _events) = session.start().expect("start");
        let outcome = running.finish(None).await.expect("finish");
        assert!(
            matches!(outcome, Outcome::Completed { failed: 0, .. }),
            "{outcome:?}"
        );
    });
    let rollout = t.elapsed();

    let intent = Arc::new(
        intent::load(&repo_dir, "HEAD")
            .expect("valid intent")
            .intent,
    );
    let store = Store::open(&state, &intent.fleet).expect("store");
    let t = Instant::now();
    let known = Arc::new(
        Known::load(&repo_dir, &intent, &store, std::time::SystemTime::now()).expect("known"),
    );
    let read = t.elapsed();
    // The journal part alone, read again: what grows with the journal.
    let t = Instant::now();
    store.last_applied().expect("last applied");
    let journal = t.elapsed();
    let place = flotilla::drivers::Place {
        repo: &repo_dir,
        state: Some(&state),
    };
    let driver = flotilla::drivers::open(&intent, intent.release("1.0"), place).expect("driver");
    // The preflight's pass over the environments: ping, observe, and the health of what
    // moving services depend on (nothing moves here: the release is rolled out).
    let plan = flotilla::plan::build(&intent, "1.0", std::time::SystemTime::now()).expect("plan");
    let t = Instant::now();
    let checks = runtime.block_on(flotilla::engine::preflight::target_checks(
        &intent,
        &plan,
        &driver,
        flotilla::engine::preflight::Downgrades::Refuse,
        64,
        Duration::from_secs(10),
    ));
    let preflight = t.elapsed();
    assert!(
        checks
            .iter()
            .all(|c| c.status == flotilla::plan::CheckStatus::Pass),
        "{checks:?}"
    );
    let envs: Vec<String> = intent.environments.iter().map(|e| e.name.clone()).collect();
    let n = envs.len();
    let t = Instant::now();
    let report = runtime.block_on(scan::scan(
        intent.clone(),
        "1.0".into(),
        envs,
        known,
        driver,
        scan::PARALLEL,
        Duration::from_secs(30),
    ));
    let observed = t.elapsed();
    assert!(!report.any_drift(), "a fresh rollout has no drift");
    let total = read + observed;
    println!(
        "{label}: {n} environments x 3 services: drift scan {:.0} ms (last-applied read from the journal and rendered {:.0} ms, of which the journal {:.0} ms; observed and compared {:.0} ms); the rollout before it took {:.0} ms",
        total.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3,
        journal.as_secs_f64() * 1e3,
        observed.as_secs_f64() * 1e3,
        rollout.as_secs_f64() * 1e3,
    );
    println!(
        "{label}: preflight targets.reachable + versions.upgrade-path + deps.healthy over {n} environments: {:.0} ms (target under 2 s)",
        preflight.as_secs_f64() * 1e3
    );
    preflight
}

fn main() {
    let envs = arg("--envs", 10_000);
    let agents = arg("--agents", 1_000);

    let dir = tempfile::tempdir().expect("temp dir");
    let targets: Vec<String> = (0..envs).map(|i| format!("sim://e-{i:05}")).collect();
    let driver = "[driver]\nkind = \"sim\"\n[driver.sim]\nsuccess_rate = 1.0\n";
    intent::write::write_repo(&dir.path().join("repo"), &repo(&targets, driver)).expect("repo");
    rolled_out_then_scanned("simulated fleet (target under 1 s)", dir.path());

    let dir = tempfile::tempdir().expect("temp dir");
    let names: Vec<String> = (0..agents).map(|i| format!("e-{i:05}")).collect();
    let local = common::local_agents(dir.path(), &names, TOKEN);
    let token_file = dir.path().join("token");
    let driver = format!(
        "[driver]\nkind = \"http\"\n[driver.http]\ntoken_file = {}\n",
        toml::Value::String(token_file.display().to_string())
    );
    intent::write::write_repo(&dir.path().join("repo"), &repo(&local.urls, &driver)).expect("repo");
    let ours = rolled_out_then_scanned("agents on loopback", dir.path());
    peer_reach(dir.path(), &local.urls, ours);
}

/// The same calls made the plainest way a shell can: `xargs -P 64 curl`, each agent asked
/// for its ping and its state (the two calls the preflight makes per environment where
/// nothing moves, so no dependency is asked for its health), side by side with flotilla's
/// figure.
fn peer_reach(dir: &Path, urls: &[String], ours: Duration) {
    let header = dir.join("auth-header");
    std::fs::write(&header, format!("Authorization: Bearer {TOKEN}\n")).expect("header");
    let list: String = urls
        .iter()
        .map(|u| format!("{u}/v1/ping {u}/v1/state\n"))
        .collect();
    let t = Instant::now();
    let child = std::process::Command::new("xargs")
        .args([
            "-P",
            "64",
            "-n",
            "2",
            "curl",
            "-sf",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-H",
        ])
        .arg(format!("@{}", header.display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        println!("peer: xargs or curl is not installed; no side-by-side figure");
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(list.as_bytes())
        .expect("urls");
    let done = child.wait().expect("xargs");
    let theirs = t.elapsed();
    if !done.success() {
        println!("peer: `xargs curl` failed ({done}); no side-by-side figure");
        return;
    }
    println!(
        "peer: xargs -P 64 curl, the same ping + state calls over the same {} agents: {:.0} ms; flotilla's preflight {:.0} ms, {:.2}x the peer's time",
        urls.len(),
        theirs.as_secs_f64() * 1e3,
        ours.as_secs_f64() * 1e3,
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}
