//! Shared fixtures: small intent repos written as real Git history, and a harness that runs
//! the engine on them under paused tokio time.
#![allow(dead_code)]

pub mod exec;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flotilla::demo::DemoCommit;
use flotilla::drivers::sim::SimFleet;
use flotilla::drivers::Driver;
use flotilla::engine::{Command, Engine, Event, EventKind, OnHold, Outcome, TokioClock};
use flotilla::intent::{self, Intent};
use flotilla::plan;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A fixed "now" so freeze windows and timestamps never depend on the day the tests run.
pub fn epoch() -> SystemTime {
    humantime::parse_rfc3339("2026-11-02T09:00:00Z").unwrap()
}

/// Builds an intent repo: `flotilla.toml` text, environments as (name, labels), one release.
pub struct Fixture {
    pub fleet: String,
    pub envs: Vec<(String, String)>,
    pub release: String,
    /// More files: (path, text).
    pub extra: Vec<(String, String)>,
}

impl Fixture {
    /// A fleet of `n` environments `e-00`.. with services schema <- api <- web, a canary
    /// wave (`ring=canary`, e-00) behind approval and a `rest` wave.
    pub fn standard(n: usize, strategy: &str) -> Self {
        let fleet = format!(
            r#"[fleet]
name = "test"
[driver]
kind = "sim"
[driver.sim]
success_rate = 1.0
latency = "100ms..2s"
seed = 3
[[service]]
name = "schema"
[[service]]
name = "api"
depends_on = ["schema"]
[[service]]
name = "web"
depends_on = ["api"]
{strategy}
"#
        );
        let envs = (0..n)
            .map(|i| {
                let ring = if i == 0 { "canary" } else { "general" };
                (
                    format!("e-{i:02}"),
                    format!(
                        "labels = {{ ring = \"{ring}\", region = \"r{}\" }}\n",
                        i % 3
                    ),
                )
            })
            .collect();
        Fixture {
            fleet,
            envs,
            release: "[services]\nschema = \"1\"\napi = \"1.0\"\nweb = \"1.0\"\n".into(),
            extra: Vec::new(),
        }
    }

    /// Makes the release fail permanently on these environments (by index).
    pub fn broken_at(mut self, envs: &[usize]) -> Self {
        for &i in envs {
            self.envs[i].1 = self.envs[i].1.replace("ring =", "bad = \"yes\", ring =");
        }
        self.with_release_sim("broken = \"bad=yes\"")
    }

    /// Adds release r0, before r1: what a rollback goes back to.
    pub fn with_earlier_release(mut self) -> Self {
        self.extra.push((
            "releases/r0.toml".into(),
            "[services]\nschema = \"0\"\napi = \"0.9\"\nweb = \"0.9\"\n".into(),
        ));
        self
    }

    pub fn with_release_sim(mut self, sim: &str) -> Self {
        self.release = format!("{}[sim]\n{sim}\n", self.release);
        self
    }

    pub fn commits(&self) -> Vec<DemoCommit> {
        let mut files = vec![("flotilla.toml".to_string(), self.fleet.clone())];
        for (name, text) in &self.envs {
            files.push((format!("environments/{name}.toml"), text.clone()));
        }
        files.push(("releases/r1.toml".to_string(), self.release.clone()));
        files.extend(self.extra.iter().cloned());
        vec![DemoCommit {
            message: "fixture".into(),
            files,
        }]
    }

    /// Writes the repo into `dir` and loads the intent back from Git.
    pub fn load(&self, dir: &Path) -> Intent {
        intent::write::write_repo(dir, &self.commits()).unwrap();
        match intent::load(dir, "HEAD") {
            Ok(l) => l.intent,
            Err(intent::IntentError::Invalid(d)) => {
                let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
                panic!("fixture invalid:\n{}", text.join("\n"))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// The strategy most tests use: canary behind approval, then everything else.
pub fn strategy(extra: &str, rest_budget: &str) -> String {
    format!(
        r#"[strategy]
max_parallel = 4
retries = 2
backoff = "1s"
step_timeout = "1m"
max_failures = 100
{extra}
[[strategy.wave]]
name = "canary"
select = "ring=canary"
gate = "approval"
failure_budget = 0
[[strategy.wave]]
name = "rest"
select = "*"
failure_budget = {rest_budget}
"#
    )
}

/// What a rollout produced.
pub struct Run {
    pub events: Vec<Event>,
    pub outcome: Outcome,
    pub fleet: Arc<SimFleet>,
}

impl Run {
    pub fn kinds(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.kind.name()).collect()
    }

    /// Environments in which any step started.
    pub fn touched(&self) -> std::collections::BTreeSet<String> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::StepStarted { env, .. } => Some(env.to_string()),
                _ => None,
            })
            .collect()
    }

    pub fn count(&self, kind: &str) -> usize {
        self.kinds().iter().filter(|k| **k == kind).count()
    }
}

/// Runs `release` of `intent` headlessly on a fresh simulated fleet with the given advance
/// approvals. Call under paused time.
pub async fn rollout(intent: Intent, approvals: &[&str]) -> Run {
    let intent = Arc::new(intent);
    let plan = plan::build(&intent, "r1", epoch()).unwrap();
    let fleet = Arc::new(SimFleet::new(
        intent.driver.sim.clone(),
        intent.release("r1"),
    ));
    let driver: Arc<dyn Driver> = fleet.clone();
    let (etx, mut erx) = mpsc::unbounded_channel();
    let (ctx, crx) = mpsc::unbounded_channel();
    for w in approvals {
        ctx.send(Command::Approve {
            wave: w.to_string(),
            by: "tester".into(),
            note: None,
        })
        .unwrap();
    }
    let engine = Engine::new(
        intent,
        plan,
        driver,
        Arc::new(TokioClock::starting_at(epoch())),
        etx,
        crx,
        OnHold::Exit,
    );
    let outcome = engine.run().await;
    drop(ctx);
    let mut events = Vec::new();
    while let Ok(e) = erx.try_recv() {
        events.push(e);
    }
    Run {
        events,
        outcome,
        fleet,
    }
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A rollout in Wait mode that the test drives event by event.
pub struct Live {
    pub events: mpsc::UnboundedReceiver<Event>,
    pub commands: mpsc::UnboundedSender<Command>,
    pub engine: JoinHandle<Outcome>,
    pub seen: Vec<Event>,
    pub fleet: Arc<SimFleet>,
}

impl Live {
    pub fn start(intent: Intent) -> Live {
        let intent = Arc::new(intent);
        let fleet = Arc::new(SimFleet::new(
            intent.driver.sim.clone(),
            intent.release("r1"),
        ));
        Live::resume(intent, fleet, None)
    }

    /// An engine over `fleet` for release r1, continuing from `view` when given (a
    /// restart after a crash).
    pub fn resume(
        intent: Arc<Intent>,
        fleet: Arc<SimFleet>,
        view: Option<&flotilla::engine::RolloutView>,
    ) -> Live {
        Live::resume_with(intent, fleet, view, false)
    }

    /// As [`Live::resume`]; `keep_failures` as the console does (failures stay failed, a halt a halt).
    pub fn resume_with(
        intent: Arc<Intent>,
        fleet: Arc<SimFleet>,
        view: Option<&flotilla::engine::RolloutView>,
        keep_failures: bool,
    ) -> Live {
        Live::build(intent, fleet, view, keep_failures, None)
    }

    /// A fresh rollout whose waves' checks run from `root`.
    pub fn start_with_checks(intent: Intent, root: &Path) -> Live {
        let intent = Arc::new(intent);
        let fleet = Arc::new(SimFleet::new(
            intent.driver.sim.clone(),
            intent.release("r1"),
        ));
        Live::build(intent, fleet, None, false, Some(root))
    }

    fn build(
        intent: Arc<Intent>,
        fleet: Arc<SimFleet>,
        view: Option<&flotilla::engine::RolloutView>,
        keep_failures: bool,
        checks_from: Option<&Path>,
    ) -> Live {
        let plan = plan::build(&intent, "r1", epoch()).unwrap();
        let (etx, erx) = mpsc::unbounded_channel();
        let (ctx, crx) = mpsc::unbounded_channel();
        let driver: Arc<dyn Driver> = fleet.clone();
        let mut engine = Engine::new(
            intent,
            plan,
            driver,
            Arc::new(TokioClock::starting_at(epoch())),
            etx,
            crx,
            OnHold::Wait,
        );
        if let Some(root) = checks_from {
            engine = engine.run_checks_with(flotilla::drivers::exec::Runner::new(root, "test"));
        }
        if let Some(view) = view {
            engine = engine.resume(view);
            if keep_failures {
                engine = engine.keep_failures(view);
            }
        }
        Live {
            events: erx,
            commands: ctx,
            engine: tokio::spawn(engine.run()),
            seen: Vec::new(),
            fleet,
        }
    }

    /// The process dies here (nothing more of this engine runs); what it had said, folded
    /// as a restart reads it from the journal.
    pub fn crash(&self) -> flotilla::engine::RolloutView {
        self.engine.abort();
        flotilla::engine::RolloutView::fold(&self.seen)
    }

    pub fn send(&self, cmd: Command) {
        self.commands.send(cmd).unwrap();
    }

    /// Reads events until one of `kind` arrives and returns it.
    pub async fn until(&mut self, kind: &str) -> Event {
        loop {
            let e = self.events.recv().await.unwrap_or_else(|| {
                panic!(
                    "no `{kind}` event; saw {:?}",
                    self.seen.iter().map(|e| e.kind.name()).collect::<Vec<_>>()
                )
            });
            self.seen.push(e.clone());
            if e.kind.name() == kind {
                return e;
            }
        }
    }

    /// Events that arrive within `d` of (paused) time.
    pub async fn during(&mut self, d: std::time::Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + d;
        let mut got = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            self.seen.push(e.clone());
            got.push(e);
        }
        got
    }
}

/// Panics if any file directly in `dir` (the state database, its WAL) holds `secret`.
pub fn assert_not_stored(dir: &Path, secret: &str) {
    for file in std::fs::read_dir(dir).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "`{secret}` is stored in {}", path.display());
        }
    }
}

/// The real binary on `repo` and `state`, run as `user`.
pub fn cmd(repo: &Path, state: &Path, user: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
    c.arg("--repo")
        .arg(repo)
        .arg("--state")
        .arg(state)
        .env("USER", user)
        // Never the real operator's own notify targets.
        .env("FLOTILLA_CONFIG", NO_CONFIG);
    c
}

/// A config file that is not there: tests never read the real operator's.
pub const NO_CONFIG: &str = "/nonexistent/flotilla-test/config.toml";

/// Commits everything in the work tree of `repo` with git.
pub fn commit_all(repo: &Path, message: &str) {
    let ok = std::process::Command::new("git")
        .current_dir(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"])
        .status()
        .unwrap()
        .success()
        && std::process::Command::new("git")
            .current_dir(repo)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                message,
            ])
            .status()
            .unwrap()
            .success();
    assert!(ok);
}

/// The one JSON document a command printed on stdout (`--output json`): its `ts` is set and
/// its `exit` is the process's exit code.
pub fn one_document(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one document: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(
        doc["exit"].as_i64(),
        out.status.code().map(i64::from),
        "the document's exit is the process's: {doc}"
    );
    assert!(doc["ts"].is_string(), "{doc}");
    doc
}

/// The `kind` of each event of a JSON array.
pub fn kinds_of(events: &serde_json::Value) -> Vec<String> {
    events
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {events}"))
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}
