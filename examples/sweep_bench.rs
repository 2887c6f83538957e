//! How often a healthy release finishes everywhere with no human, over many seeds. Run with
//! `cargo run --release --example sweep_bench [-- --seeds 1000 --envs 1000]`.
//!
//! A healthy release on 1,000 simulated environments x 5 services at success_rate 0.99, the
//! default 2 retries: each seed is one rollout (the simulator's draws differ by seed), run
//! on a paused clock so backoffs cost nothing. It prints the share of rollouts that finish
//! with every environment done, without and with `requeue_failed` (default 1). Targets:
//! at least 99.0% without, 99.9% with.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use flotilla::demo::DemoCommit;
use flotilla::drivers::sim::SimFleet;
use flotilla::drivers::Driver;
use flotilla::engine::{Engine, OnHold, Outcome, TokioClock};
use flotilla::intent::{self, Intent};
use flotilla::plan;
use tokio::sync::mpsc;

mod common;

fn fleet_repo(envs: usize) -> Vec<DemoCommit> {
    let fleet = r#"[fleet]
name = "sweep"
[driver]
kind = "sim"
[driver.sim]
success_rate = 0.99
latency = "0ms"
[[service]]
name = "schema"
[[service]]
name = "api"
depends_on = ["schema"]
[[service]]
name = "worker"
depends_on = ["schema"]
[[service]]
name = "web"
depends_on = ["api"]
[[service]]
name = "edge"
depends_on = ["web"]
[strategy]
max_parallel = 50
max_failures = 10
[[strategy.wave]]
name = "canary"
select = "ring=canary"
failure_budget = 1
[[strategy.wave]]
name = "early"
select = "ring=early"
failure_budget = "1%"
[[strategy.wave]]
name = "general"
select = "*"
failure_budget = "1%"
"#;
    let mut files = vec![("flotilla.toml".to_string(), fleet.to_string())];
    for i in 0..envs {
        let ring = match i % 100 {
            0 => "canary",
            1..=10 => "early",
            _ => "general",
        };
        files.push((
            format!("environments/env-{i:05}.toml"),
            format!("labels = {{ ring = \"{ring}\" }}\n"),
        ));
    }
    let services = ["schema", "api", "worker", "web", "edge"]
        .iter()
        .map(|s| format!("{s} = \"2.0\""))
        .collect::<Vec<_>>()
        .join("\n");
    files.push((
        "releases/r1.toml".into(),
        format!("[services]\n{services}\n"),
    ));
    vec![DemoCommit {
        message: "sweep fleet".into(),
        files,
    }]
}

/// One rollout of r1 with the simulator's `seed`: whether every environment finished.
fn finishes(intent: &Intent, seed: u64, requeue: u32) -> bool {
    let mut intent = intent.clone();
    intent.driver.sim.seed = seed;
    intent.strategy.requeue_failed = requeue;
    let intent = Arc::new(intent);
    let plan = plan::build(&intent, "r1", SystemTime::UNIX_EPOCH).expect("plan");
    let driver: Arc<dyn Driver> = Arc::new(SimFleet::new(
        intent.driver.sim.clone(),
        intent.release("r1"),
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let outcome = rt.block_on(async {
        let (events, _drop) = mpsc::unbounded_channel();
        let (_commands, rx) = mpsc::unbounded_channel();
        Engine::new(
            intent,
            plan,
            driver,
            Arc::new(TokioClock::starting_at(SystemTime::UNIX_EPOCH)),
            events,
            rx,
            OnHold::Exit,
        )
        .run()
        .await
    });
    matches!(outcome, Outcome::Completed { failed: 0, .. })
}

fn main() {
    let seeds = common::arg("--seeds", 1000) as u64;
    let envs = common::arg("--envs", 1000);
    let dir = tempfile::tempdir().expect("tempdir");
    intent::write::write_repo(dir.path(), &fleet_repo(envs)).expect("repo");
    let intent = intent::load(dir.path(), "HEAD").expect("intent").intent;
    println!(
        "seed sweep: {seeds} rollouts of {envs} environments x {} services, success_rate 0.99, {} retries",
        intent.services.len(),
        intent.strategy.retries
    );
    for (requeue, target) in [(0, 99.0), (1, 99.9)] {
        let started = Instant::now();
        let done = (0..seeds)
            .filter(|&s| finishes(&intent, s, requeue))
            .count();
        let share = 100.0 * done as f64 / seeds as f64;
        println!(
            "  requeue_failed = {requeue}: {done} of {seeds} finished with no human ({share:.1}%, target >= {target}%) [{:.1} s]",
            started.elapsed().as_secs_f64()
        );
    }
}
