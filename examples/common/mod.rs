//! What the driver benchmarks share: their arguments, and flotilla's engine run on an intent
//! repo without the journal (they measure the drivers).
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use flotilla::engine::{Command, Engine, OnHold, Outcome, TokioClock};
use flotilla::{intent, plan};
use tokio::sync::mpsc;

/// `--name N` from the command line, else `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One recording agent per name on loopback, each keeping its state under `dir/agents`,
/// all taking `token`, which is written to `dir/token` for the intent to name.
pub fn local_agents(dir: &Path, names: &[String], token: &str) -> flotilla::agent::LocalAgents {
    std::fs::write(dir.join("token"), token).expect("token");
    let configs = names
        .iter()
        .map(|name| flotilla::agent::AgentConfig {
            dir: dir.join("agents").join(name),
            token: Some(token.into()),
            env: Some(name.clone()),
            hooks: Default::default(),
        })
        .collect();
    flotilla::agent::LocalAgents::start(configs).expect("agents")
}

/// Rolls `release` out on the intent in `dir` with its own driver; the wall time.
pub fn engine_run(dir: &Path, release: &str) -> Duration {
    let intent = Arc::new(intent::load(dir, "HEAD").expect("valid intent").intent);
    let plan = plan::build(&intent, release, SystemTime::now()).expect("plan");
    let place = flotilla::drivers::Place {
        repo: dir,
        state: None,
    };
    let driver = flotilla::drivers::open(&intent, intent.release(release), place).expect("driver");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (etx, _erx) = mpsc::unbounded_channel();
        let (ctx, crx) = mpsc::unbounded_channel::<Command>();
        let started = Instant::now();
        let outcome = Engine::new(
            intent,
            plan,
            driver,
            Arc::new(TokioClock::new()),
            etx,
            crx,
            OnHold::Exit,
        )
        .run()
        .await;
        drop(ctx);
        assert!(
            matches!(outcome, Outcome::Completed { failed: 0, .. }),
            "{outcome:?}"
        );
        started.elapsed()
    })
}
