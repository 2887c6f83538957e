//! Figures for the orchestration core's speed and memory targets. Run with
//! `cargo run --release --example bench`; it prints figures rather than asserting, because
//! shared machines are too noisy for timed tests.
//!
//! Targets: a 10,000-environment x 3-service rollout on a zero-latency simulated fleet in
//! under 1 s wall and 200 MB peak memory; journal appends of at least 50,000 events/s in
//! batches, and journaling a whole rollout costing under 20% of its wall time; loading and
//! rendering 10,000 environment files from a Git repository in under 1 s. At 100,000
//! environments (`-- --envs 100000`): load + render under 2 s, the journaled rollout under
//! 3 s, peak memory under 1 GB; `-- --scale` runs 10,000 and 100,000 five times each
//! (`--runs N`), each run in a process of its own, and prints the medians and the best
//! side by side with their ratios, and the median ratio of neighbouring runs (target at
//! most 11x for a fleet 10x larger). The fleet never fails here
//! (success_rate 1.0): a transient failure would add its real backoff sleep to the wall time
//! and measure the strategy, not the engine.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use flotilla::demo::DemoCommit;
use flotilla::engine::{Command, Engine, Event, EventKind, OnHold, Outcome, TokioClock};
use flotilla::intent::{self, layers};
use flotilla::plan;
use flotilla::store::{journal, Store};
use tokio::sync::mpsc;

const ENVS: usize = 10_000;

fn fleet_repo(envs: usize) -> Vec<DemoCommit> {
    let fleet = r#"[fleet]
name = "bench"
[driver]
kind = "sim"
[driver.sim]
success_rate = 1.0
seed = 11
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
retries = 2
backoff = "1s"
max_failures = "1%"
[[strategy.wave]]
name = "canary"
select = "ring=canary"
gate = "approval"
[[strategy.wave]]
name = "early"
select = "ring=early"
failure_budget = "2%"
[[strategy.wave]]
name = "general"
select = "*"
failure_budget = "2%"
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
            format!(
                "labels = {{ ring = \"{ring}\", region = \"r{}\", tier = \"t{}\" }}\n[config]\napi.replicas = {}\n",
                i % 7,
                i % 3,
                1 + i % 4
            ),
        ));
    }
    files.push((
        "overlays/r1.toml".into(),
        "select = \"region=r1\"\npriority = 5\n[config]\napi.zone = \"one\"\n".into(),
    ));
    files.push((
        "releases/1.0.toml".into(),
        "[services]\nschema = \"7\"\napi = \"1.0\"\nweb = \"1.0\"\n[config]\napi.log = \"info\"\n"
            .into(),
    ));
    vec![DemoCommit {
        message: "bench fleet".into(),
        files,
    }]
}

/// Runs per figure of the journal comparison; medians tame a noisy machine.
const RUNS: usize = 9;

/// CPU time (user + system) this process has used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime, in clock ticks of 1/100 s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// Waits (up to 5 s) until the simulated world of the rollout before is freed: a world of
/// 100,000 environments is freed on a thread of its own, and the next rollout timed while
/// it was took a share of the CPU it would not have as the one rollout of its process.
fn settle() {
    let freeing = || {
        std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| {
            tasks.flatten().any(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "flotilla-sim-free")
            })
        })
    };
    for _ in 0..500 {
        if !freeing() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Runs the bench rollout, journaled into `db` when given; returns outcome, wall, events.
async fn rollout(
    intent: &Arc<flotilla::intent::Intent>,
    journaled: Option<(&std::path::Path, i64)>,
) -> (Outcome, std::time::Duration, usize) {
    let release = &intent.releases[0];
    let plan = plan::build(intent, &release.name, SystemTime::now()).expect("plan");
    let place = flotilla::drivers::Place {
        repo: std::path::Path::new("."),
        state: None,
    };
    let fleet = flotilla::drivers::open(intent, Some(release), place).expect("driver");
    let (etx, mut erx) = mpsc::unbounded_channel();
    let (ctx, crx) = mpsc::unbounded_channel();
    ctx.send(Command::Approve {
        wave: "canary".into(),
        by: "bench".into(),
        note: None,
    })
    .expect("send");
    // A thread of its own, as the journal's writer is: a task among the busy step tasks
    // took 128 events a turn, fell behind, and held most of the rollout's events in memory.
    let counter = std::thread::spawn(move || {
        let mut n = 0usize;
        while erx.blocking_recv().is_some() {
            n += 1;
        }
        n
    });
    let t = Instant::now();
    let clock = Arc::new(TokioClock::new());
    let mut journaled_events = 0;
    let outcome = match journaled {
        None => {
            let engine = Engine::new(intent.clone(), plan, fleet, clock, etx, crx, OnHold::Exit);
            on_the_runtime(engine).await
        }
        Some((db, id)) => {
            // The journal passes committed events on in batches, as the printer takes them.
            drop(etx);
            let (btx, mut brx) = mpsc::unbounded_channel::<Vec<Event>>();
            let forward = tokio::spawn(async move {
                let mut n = 0;
                while let Some(batch) = brx.recv().await {
                    n += batch.len();
                }
                n
            });
            let (sink, writer) = journal::spawn(db, id, None, btx).expect("journal");
            let engine = Engine::new(
                intent.clone(),
                plan,
                fleet,
                clock,
                sink.clone(),
                crx,
                OnHold::Exit,
            );
            let outcome = on_the_runtime(engine).await;
            sink.flush().await;
            drop(sink);
            writer.join().expect("journal written");
            journaled_events = forward.await.unwrap_or(0);
            outcome
        }
    };
    let wall = t.elapsed();
    drop(ctx);
    (
        outcome,
        wall,
        counter.join().unwrap_or(0) + journaled_events,
    )
}

/// Runs the engine as `flotilla rollout` does: as a task of the runtime (its steps wake it
/// on the runtime's own threads), not on the thread that waits for it.
async fn on_the_runtime(engine: Engine) -> Outcome {
    tokio::spawn(engine.run())
        .await
        .expect("the engine panicked")
}

/// What one size's run measured, for `--scale` to set side by side.
const FIGURES: [&str; 7] = [
    "load_ms",
    "render_ms",
    "load_render_ms",
    "journaled_rollout_ms",
    "rollout_ms",
    "events",
    "peak_mb",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.replace('_', "").parse::<usize>().expect("a number"))
    };
    if args.iter().any(|a| a == "--scale") {
        return scale(&[ENVS, 100_000], value("--runs").unwrap_or(5).max(1));
    }
    let envs = value("--envs").unwrap_or(ENVS);
    // `--figures` is what `--scale` asks its children for: the headline figures only, from
    // the repository it wrote for them (`--repo`).
    let figures = args.iter().any(|a| a == "--figures");
    let repo = args
        .iter()
        .position(|a| a == "--repo")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    bench(envs, figures, repo);
}

/// Writes the bench's repository of `envs` environments at `repo` and puts it on disk.
fn write_fleet(repo: &std::path::Path, envs: usize) {
    let t = Instant::now();
    intent::write::write_repo(repo, &fleet_repo(envs)).expect("write repo");
    // The setup's files go to disk now: written back later, they would compete with the
    // journal's own syncs in the middle of the measured rollout.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    eprintln!(
        "setup: wrote a {envs}-environment repo in {:.2?}",
        t.elapsed()
    );
}

/// Runs the bench at each size `runs` times, each in a process of its own (so each has its
/// own peak memory), the sizes taking turns, and prints the median and the best of each
/// figure side by side with the ratio of the largest size to the smallest, and the median
/// of the ratios of neighbouring runs: a shared machine has slow spells of seconds, and one
/// run caught in one says more of the machine than of flotilla.
fn scale(sizes: &[usize], runs: usize) {
    let me = std::env::current_exe().expect("own path");
    // Each size's repository is written once, for all its runs: writing 100,000 files took
    // longer than the run itself, and in a virtual machine it filled the page cache, so
    // that the measured rollout that followed got its memory from pages the host had never
    // handed out (each first touch a fault on the host) while the smaller size reused the
    // pages the larger one had just freed.
    let dir = tempfile::tempdir().expect("temp dir");
    let repos: Vec<_> = sizes
        .iter()
        .map(|&envs| {
            let repo = dir.path().join(format!("repo-{envs}"));
            write_fleet(&repo, envs);
            repo
        })
        .collect();
    // Sizes take turns, so that a slow spell of the machine falls on both of them.
    let mut each = vec![Vec::new(); sizes.len()];
    for run in 1..=runs {
        for ((&envs, each), repo) in sizes.iter().zip(&mut each).zip(&repos) {
            eprintln!("running {envs} environments ({run} of {runs})...");
            let out = std::process::Command::new(&me)
                .args(["--envs", &envs.to_string(), "--figures", "--repo"])
                .arg(repo)
                .output()
                .expect("run the bench");
            let text = String::from_utf8_lossy(&out.stdout);
            eprint!("{text}");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let figure = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("figure {name} ")))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            };
            each.push(FIGURES.map(figure));
        }
    }
    // The median of each figure, and the best: a slow spell only ever adds time, so the
    // least time each size took is what its own work costs, and the steadier ratio.
    let pick = |at: fn(&[f64]) -> f64| -> Vec<[f64; FIGURES.len()]> {
        each.iter()
            .map(|each| {
                std::array::from_fn(|i| {
                    let mut values: Vec<f64> = each.iter().map(|run| run[i]).collect();
                    values.sort_by(f64::total_cmp);
                    at(&values)
                })
            })
            .collect()
    };
    let tables = [
        ("median", pick(|v| v[v.len() / 2])),
        ("best", pick(|v| v[0])),
    ];
    println!("{runs} run(s) at each size, each in a process of its own");
    let growth = sizes[sizes.len() - 1] as f64 / sizes[0] as f64;
    print!("{:<22}", "figure");
    for (label, _) in &tables {
        for envs in sizes {
            print!("{:>13}", format!("{label} {}k", envs / 1000));
        }
        print!("{:>8}", "ratio");
    }
    println!("{:>8}", "paired");
    // The median of the ratios of runs made one after the other: the machine's speed drifts
    // over minutes, and a pair of neighbouring runs shares its speed of the moment.
    let paired = |i: usize| {
        let (small, large) = (&each[0], &each[each.len() - 1]);
        let mut ratios: Vec<f64> = small.iter().zip(large).map(|(s, l)| l[i] / s[i]).collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    for (i, name) in FIGURES.iter().enumerate() {
        print!("{name:<22}");
        for (_, columns) in &tables {
            for column in columns {
                print!("{:>13.1}", column[i]);
            }
            print!("{:>7.1}x", columns[columns.len() - 1][i] / columns[0][i]);
        }
        print!("{:>7.1}x", paired(i));
        println!();
    }
    println!(
        "the fleet grew {growth:.0}x; target: time ratios at most 11x; at 100,000 envs load + render < 2000 ms, journaled rollout < 3000 ms, peak < 1024 MB"
    );
}

/// Runs the bench at `envs` environments, in the repository `repo` when given (written by
/// `--scale` for that size) or else in one it writes.
fn bench(envs: usize, figures: bool, repo: Option<std::path::PathBuf>) {
    let dir = tempfile::tempdir().expect("temp dir");
    // On stderr: the first lines of the figures are the load and the journaled rollout.
    let repo = repo.unwrap_or_else(|| {
        let repo = dir.path().join("repo");
        write_fleet(&repo, envs);
        repo
    });

    // 1. Load (Git tree -> parse -> validate) and render every environment's desired state.
    let t = Instant::now();
    let loaded = intent::load(&repo, "HEAD").expect("valid intent");
    let load_time = t.elapsed();
    let intent = Arc::new(loaded.intent);
    let release = &intent.releases[0];
    let t = Instant::now();
    let mut keys = 0;
    for env in &intent.environments {
        keys += layers::render(&intent, release, env).settings.len();
    }
    let render_time = t.elapsed();
    println!(
        "load + render: {} environments loaded in {load_time:.2?}, rendered in {render_time:.2?} ({keys} keys); total {:.2?} (target < 1 s at 10,000, < 2 s at 100,000)",
        intent.environments.len(),
        load_time + render_time
    );

    // 2. The first journaled rollout, as `flotilla rollout` runs it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let journaled_once = |label: &str| {
        let db = dir.path().join(format!("{label}.db"));
        let store = Store::open(&db, &intent.fleet).expect("store");
        let id = store
            .start_rollout(&release.name, &intent.revision.commit, "now", "bench")
            .expect("rollout row");
        let run = rt.block_on(rollout(&intent, Some((&db, id))));
        assert!(matches!(run.0, Outcome::Completed { .. }), "{:?}", run.0);
        // The WAL file keeps the size it grew to while this connection holds it open (the
        // last one to close checkpoints and removes it): how far the checkpoints let it grow.
        let wal = std::fs::metadata(format!("{}-wal", db.display())).map_or(0, |m| m.len());
        drop(store);
        let size = ["", "-wal"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
            .map(|m| m.len())
            .sum::<u64>();
        (run, size, wal)
    };
    let ((_, journaled_wall, events), size, wal) = journaled_once("first");
    println!(
        "journaled rollout: {envs} environments x 3 services in {journaled_wall:.2?} wall (target < 1 s at 10,000, < 3 s at 100,000), {events} events, database {:.1} MB, its WAL at most {:.1} MB",
        size as f64 / 1e6,
        wal as f64 / 1e6
    );
    settle();
    let (outcome, wall, _) = rt.block_on(rollout(&intent, None));
    let ok = matches!(outcome, Outcome::Completed { .. });
    println!(
        "rollout: {envs} environments x 3 services in {wall:.2?} wall without the journal, outcome {outcome:?}{}",
        if ok { "" } else { "  <-- did not complete" }
    );
    if figures {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let values = [
            ms(load_time),
            ms(render_time),
            ms(load_time + render_time),
            ms(journaled_wall),
            ms(wall),
            events as f64,
            peak_rss_mb(),
        ];
        for (name, value) in FIGURES.iter().zip(values) {
            println!("figure {name} {value}");
        }
        return;
    }

    // 3. Without and with the journal, alternating runs and medians, because shared machines
    // are noisy. Fewer runs at large sizes, where each takes seconds.
    let runs = (RUNS * ENVS / envs).clamp(1, RUNS) | 1;
    let compare = |intent: &Arc<flotilla::intent::Intent>, label: &str| {
        let (mut plain, mut journaled) = (Vec::new(), Vec::new());
        let (mut cpu_plain, mut cpu_journaled) = (0.0, 0.0);
        let mut size = 0;
        for run in 0..runs {
            settle();
            let before = cpu_seconds();
            plain.push(rt.block_on(rollout(intent, None)).1.as_secs_f64());
            cpu_plain += cpu_seconds() - before;
            let db = dir.path().join(format!("{label}-{run}.db"));
            let store = Store::open(&db, &intent.fleet).expect("store");
            let id = store
                .start_rollout(&release.name, &intent.revision.commit, "now", "bench")
                .expect("rollout row");
            settle();
            let before = cpu_seconds();
            let (outcome, wall, _) = rt.block_on(rollout(intent, Some((&db, id))));
            cpu_journaled += cpu_seconds() - before;
            assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
            journaled.push(wall.as_secs_f64());
            drop(store);
            size = ["", "-wal"]
                .iter()
                .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
                .map(|m| m.len())
                .sum::<u64>();
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (p, j) = (median(&mut plain), median(&mut journaled));
        println!(
            "{label}: median of {runs} runs {:.0} ms without the journal, {:.0} ms with it: journal overhead {:.0}% of wall time (target < 20%); database {:.1} MB",
            p * 1e3,
            j * 1e3,
            (j / p - 1.0) * 100.0,
            size as f64 / 1e6
        );
        // CPU time is steadier than wall time on a shared machine: what the journal costs.
        println!(
            "{label}: CPU per run {:.0} ms without the journal, {:.0} ms with it: +{:.0}%",
            cpu_plain / runs as f64 * 1e3,
            cpu_journaled / runs as f64 * 1e3,
            (cpu_journaled / cpu_plain - 1.0) * 100.0
        );
    };
    compare(&intent, "zero latency");
    // The same with 1-3 ms per call: some latency, as any real fleet has, hides the journal.
    let mut slow = (*intent).clone();
    slow.driver.sim.latency = (
        std::time::Duration::from_millis(1),
        std::time::Duration::from_millis(3),
    );
    compare(&Arc::new(slow), "1-3 ms latency");

    // 4. Raw journal appends in batches of 1,000.
    let events: Vec<Event> = (0..100_000u32)
        .map(|n| {
            Event::new(
                SystemTime::now(),
                EventKind::StepSucceeded {
                    wave: "general".into(),
                    env: format!("env-{:05}", n % 10_000).into(),
                    service: "api".into(),
                    attempts: 1,
                    version: "1.0".into(),
                    revision: "0123456789abcdef".into(),
                    output: None,
                },
            )
        })
        .collect();
    let bench_db = dir.path().join("append.db");
    let store = Store::open(&bench_db, "bench").expect("store");
    let t = Instant::now();
    for batch in events.chunks(1000) {
        store.append(None, batch).expect("append");
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "journal append: {} events in batches of 1,000 at {:.0} events/s (target >= 50,000)",
        events.len(),
        events.len() as f64 / secs
    );
    println!(
        "peak memory (whole process): {:.1} MB (target < 200 MB at 10,000, < 1 GB at 100,000)",
        peak_rss_mb()
    );
}
