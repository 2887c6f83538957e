//! Property: over random dependency graphs and failure patterns, no service ever starts in an
//! environment before all its dependencies succeeded there, and the dependents of a failure
//! are blocked rather than attempted.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla::drivers::{
    ApplyRequest, Driver, DriverError, DriverFuture, Health, LiveState, Printed,
};
use flotilla::engine::{Engine, EventKind, OnHold, TokioClock};
use flotilla::hash::stable_hash;
use flotilla::intent::load::parse;
use flotilla::intent::source::SourceFile;
use flotilla::intent::{Environment, Intent, Revision};
use flotilla::plan;
use proptest::prelude::*;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Start,
    Ok,
    Fail,
}

/// A driver that fails chosen (env, service) pairs permanently and records every call.
struct Recorder {
    failing: HashSet<(String, String)>,
    log: Mutex<Vec<(String, String, Call)>>,
}

impl Recorder {
    fn record(&self, env: &str, service: &str, call: Call) {
        self.log
            .lock()
            .unwrap()
            .push((env.into(), service.into(), call));
    }
}

impl Driver for Recorder {
    fn ping<'a>(&'a self, _env: &'a Environment) -> DriverFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    fn observe<'a>(&'a self, _env: &'a Environment) -> DriverFuture<'a, LiveState> {
        Box::pin(async { Ok(LiveState::new()) })
    }
    fn apply<'a>(
        &'a self,
        env: &'a Environment,
        req: &'a ApplyRequest,
    ) -> DriverFuture<'a, Printed> {
        Box::pin(async move {
            self.record(&env.name, &req.service, Call::Start);
            // Varied latencies make independent services finish in different orders.
            let ms = stable_hash(&[env.name.as_bytes(), req.service.as_bytes()]) % 500;
            tokio::time::sleep(Duration::from_millis(ms + 1)).await;
            if self
                .failing
                .contains(&(env.name.clone(), req.service.clone()))
            {
                self.record(&env.name, &req.service, Call::Fail);
                return Err(DriverError::permanent("planned failure"));
            }
            self.record(&env.name, &req.service, Call::Ok);
            Ok(Printed::default())
        })
    }
    fn health<'a>(&'a self, _env: &'a Environment, _s: &'a str) -> DriverFuture<'a, Health> {
        Box::pin(async { Ok(Health::Healthy) })
    }
}

fn intent(deps: &[Vec<usize>], envs: usize, parallel: usize) -> Intent {
    let mut fleet = String::from("[fleet]\nname = \"p\"\n");
    // Declare services in reverse so file order is not dependency order.
    for (i, d) in deps.iter().enumerate().rev() {
        let list: Vec<String> = d.iter().map(|j| format!("\"s{j}\"")).collect();
        fleet += &format!(
            "[[service]]\nname = \"s{i}\"\ndepends_on = [{}]\n",
            list.join(", ")
        );
    }
    fleet += &format!(
        "[strategy]\nmax_parallel = {parallel}\nretries = 0\nmax_failures = \"100%\"\n[[strategy.wave]]\nname = \"all\"\nselect = \"*\"\nfailure_budget = \"100%\"\n"
    );
    let mut files = vec![SourceFile {
        path: "flotilla.toml".into(),
        text: fleet,
    }];
    for e in 0..envs {
        files.push(SourceFile {
            path: format!("environments/e{e}.toml"),
            text: String::new(),
        });
    }
    let versions: Vec<String> = (0..deps.len()).map(|i| format!("s{i} = \"1\"")).collect();
    files.push(SourceFile {
        path: "releases/r1.toml".into(),
        text: format!("[services]\n{}\n", versions.join("\n")),
    });
    let rev = Revision {
        commit: "0".repeat(40),
        short: "0000000".into(),
        subject: "p".into(),
    };
    match parse(rev, &files) {
        Ok((i, _)) => i,
        Err(d) => panic!("{d:?}"),
    }
}

fn graph() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..7).prop_flat_map(|n| {
        (0..n)
            .map(|i| proptest::collection::vec(any::<bool>(), i))
            .collect::<Vec<_>>()
            .prop_map(|masks| {
                masks
                    .into_iter()
                    .map(|m| {
                        m.iter()
                            .enumerate()
                            .filter(|(_, b)| **b)
                            .map(|(j, _)| j)
                            .collect()
                    })
                    .collect()
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn no_service_starts_before_its_dependencies_succeeded(
        deps in graph(),
        envs in 1usize..6,
        parallel in 1usize..4,
        fail_seed in any::<u64>(),
    ) {
        let n = deps.len();
        let failing: HashSet<(String, String)> = (0..envs)
            .flat_map(|e| (0..n).map(move |s| (e, s)))
            .filter(|(e, s)| stable_hash(&[&fail_seed.to_le_bytes(), &e.to_le_bytes(), &s.to_le_bytes()]).is_multiple_of(5))
            .map(|(e, s)| (format!("e{e}"), format!("s{s}")))
            .collect();
        let intent = Arc::new(intent(&deps, envs, parallel));
        let recorder = Arc::new(Recorder { failing: failing.clone(), log: Mutex::new(Vec::new()) });
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let events = rt.block_on(async {
            let plan = plan::build(&intent, "r1", common::epoch()).unwrap();
            let (etx, mut erx) = mpsc::unbounded_channel();
            let (_ctx, crx) = mpsc::unbounded_channel();
            let driver: Arc<dyn Driver> = recorder.clone();
            Engine::new(intent.clone(), plan, driver, Arc::new(TokioClock::starting_at(common::epoch())), etx, crx, OnHold::Exit).run().await;
            let mut v = Vec::new();
            while let Ok(e) = erx.try_recv() { v.push(e); }
            v
        });

        let log = recorder.log.lock().unwrap().clone();
        let mut succeeded: HashSet<(String, String)> = HashSet::new();
        for (env, service, call) in &log {
            let s: usize = service[1..].parse().unwrap();
            match call {
                Call::Start => {
                    for d in &deps[s] {
                        prop_assert!(
                            succeeded.contains(&(env.clone(), format!("s{d}"))),
                            "{env}/{service} started before its dependency s{d} succeeded"
                        );
                    }
                }
                Call::Ok => { succeeded.insert((env.clone(), service.clone())); }
                Call::Fail => {}
            }
        }
        // Everything whose dependencies all succeeded was attempted; everything else was
        // reported blocked, exactly once.
        let blocked: Vec<(String, String)> = events.iter().filter_map(|e| match &e.kind {
            EventKind::StepBlocked { env, service, .. } => Some((env.to_string(), service.to_string())),
            _ => None,
        }).collect();
        let blocked_set: BTreeSet<_> = blocked.iter().cloned().collect();
        prop_assert_eq!(blocked.len(), blocked_set.len(), "a step was blocked twice");
        let started: HashSet<(String, String)> = log.iter().filter(|(_, _, c)| *c == Call::Start).map(|(e, s, _)| (e.clone(), s.clone())).collect();
        for e in 0..envs {
            for (s, ds) in deps.iter().enumerate() {
                let key = (format!("e{e}"), format!("s{s}"));
                let deps_ok = ds.iter().all(|d| succeeded.contains(&(key.0.clone(), format!("s{d}"))));
                prop_assert_eq!(started.contains(&key), deps_ok, "{:?}", key);
                prop_assert_eq!(blocked_set.contains(&key), !deps_ok, "{:?}", key);
            }
        }
    }
}
