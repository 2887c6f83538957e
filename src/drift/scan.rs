//! A drift scan: each environment observed through the driver (bounded concurrency, a
//! timeout each) and each service compared three ways against its desired state and what
//! flotilla last applied there (rendered from the intent at the commit it was applied at).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;

use super::three_way::{self, Comparison, DriftState, Rules, Side};
use crate::drivers::{Driver, LiveService, LiveState};
use crate::engine::EventKind;
use crate::intent::layers::{render, DesiredService};
use crate::intent::Intent;
use crate::store::Applied;

/// What flotilla last applied, per (environment, service), rendered: version and config;
/// and what it set out to apply after that without a recorded end.
#[derive(Debug, Default)]
pub struct Baseline {
    applied: BTreeMap<(String, String), (Applied, DesiredService)>,
    intended: BTreeMap<(String, String), (Applied, DesiredService)>,
}

/// Renders each apply from the intent at its commit, each commit read once from `repo`.
struct Renderer<'a> {
    repo: &'a Path,
    intents: HashMap<String, Option<Arc<Intent>>>,
    rendered: HashMap<(String, String, String), BTreeMap<String, DesiredService>>,
}

impl Renderer<'_> {
    fn render(&mut self, env: &str, service: &str, a: &Applied) -> Option<DesiredService> {
        let repo = self.repo;
        let intent = self
            .intents
            .entry(a.commit.clone())
            .or_insert_with(|| {
                crate::intent::load(repo, &a.commit)
                    .ok()
                    .map(|l| Arc::new(l.intent))
            })
            .clone()?;
        let services = self
            .rendered
            .entry((a.commit.clone(), a.release.clone(), env.to_string()))
            .or_insert_with(
                || match (intent.release(&a.release), intent.environment(env)) {
                    (Some(r), Some(e)) => render(&intent, r, e).desired.services,
                    _ => BTreeMap::new(),
                },
            );
        services
            .get(service)
            .filter(|d| d.revision == a.revision)
            .cloned()
    }
}

impl Baseline {
    /// Renders each apply from the intent at its commit (`current` is used for its own).
    /// One whose commit or release cannot be rendered any more, or renders to another
    /// revision, is left out: its service then compares as never applied.
    pub fn render(repo: &Path, current: &Arc<Intent>, last: crate::store::LastApplied) -> Baseline {
        let mut renderer = Renderer {
            repo,
            intents: HashMap::from([(current.revision.commit.clone(), Some(current.clone()))]),
            rendered: HashMap::new(),
        };
        let mut side = |map: BTreeMap<(String, String), Applied>| {
            map.into_iter()
                .filter_map(|((env, service), a)| {
                    let d = renderer.render(&env, &service, &a)?;
                    Some(((env, service), (a, d)))
                })
                .collect::<BTreeMap<_, _>>()
        };
        let applied = side(last.applied);
        let intended = side(last.intended);
        Baseline { applied, intended }
    }

    /// What `service` in `env` was last set to by flotilla, given that it runs `live` now:
    /// an apply in flight at a crash counts once live shows its revision.
    pub fn get(
        &self,
        env: &str,
        service: &str,
        live: Option<&LiveService>,
    ) -> Option<&(Applied, DesiredService)> {
        let key = (env.to_string(), service.to_string());
        match (self.intended.get(&key), live) {
            (Some(i), Some(l)) if i.1.revision == l.revision => Some(i),
            _ => self.applied.get(&key),
        }
    }
}

/// One service's place in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    pub service: String,
    #[serde(flatten)]
    pub comparison: Comparison,
    /// When the last apply ended, and in which rollout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    #[serde(skip)]
    pub last: Option<DesiredService>,
    #[serde(skip)]
    pub live: Option<LiveService>,
    #[serde(skip)]
    pub secrets: Vec<String>,
}

/// One environment's place in the report.
#[derive(Debug, Clone, Serialize)]
pub struct EnvReport {
    pub env: String,
    /// Why it could not be observed (its services are `unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub services: Vec<ServiceReport>,
}

impl EnvReport {
    /// The environment's worst state (conflict, then drifted, unknown, pending, in sync).
    pub fn state(&self) -> DriftState {
        let rank = |s: DriftState| match s {
            DriftState::Conflict => 4,
            DriftState::Drifted => 3,
            DriftState::Unknown => 2,
            DriftState::Pending => 1,
            DriftState::InSync => 0,
        };
        self.services
            .iter()
            .map(|s| s.comparison.state)
            .max_by_key(|s| rank(*s))
            .unwrap_or(DriftState::InSync)
    }
}

/// The fleet's report: against which release and commit, and each environment scanned.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub release: String,
    pub commit: String,
    pub envs: Vec<EnvReport>,
}

impl FleetReport {
    /// Services per state.
    pub fn counts(&self) -> BTreeMap<DriftState, usize> {
        let mut out = BTreeMap::new();
        for s in self.envs.iter().flat_map(|e| &e.services) {
            *out.entry(s.comparison.state).or_insert(0) += 1;
        }
        out
    }

    /// Whether anything changed behind flotilla's back.
    pub fn any_drift(&self) -> bool {
        self.envs.iter().any(|e| e.state().is_drift())
    }

    /// The environments that drifted (or conflict), by name.
    pub fn drifted(&self) -> Vec<&EnvReport> {
        self.envs.iter().filter(|e| e.state().is_drift()).collect()
    }
}

/// Compares one environment's services given what was observed there.
pub fn compare_env(
    intent: &Intent,
    release: &str,
    env: &str,
    baseline: &Baseline,
    observed: Result<LiveState, String>,
) -> EnvReport {
    let desired = match (intent.release(release), intent.environment(env)) {
        (Some(r), Some(e)) => render(intent, r, e).desired.services,
        _ => BTreeMap::new(),
    };
    let (live, error) = match observed {
        Ok(live) => (Some(live), None),
        Err(e) => (None, Some(e)),
    };
    let services = intent
        .services
        .iter()
        .filter_map(|svc| {
            let want = desired.get(&svc.name)?;
            let here = live.as_ref().map(|l| l.get(&svc.name));
            let last = baseline.get(env, &svc.name, here.flatten());
            let rules = Rules {
                ignore: &svc.drift_ignore,
                secret_keys: &svc.secret_keys,
            };
            let comparison = three_way::compare(
                Side {
                    version: &want.version,
                    config: &want.config,
                },
                last.map(|(_, d)| Side {
                    version: &d.version,
                    config: &d.config,
                }),
                here.map(|h| {
                    h.map(|l| Side {
                        version: &l.version,
                        config: &l.config,
                    })
                }),
                rules,
            );
            Some(ServiceReport {
                service: svc.name.clone(),
                comparison,
                applied_at: last.map(|(a, _)| format!("{} (rollout {})", a.ts, a.rollout)),
                last: last.map(|(_, d)| d.clone()),
                live: here.flatten().cloned(),
                secrets: want.secrets.clone(),
            })
        })
        .collect();
    EnvReport {
        env: env.to_string(),
        error,
        services,
    }
}

/// Observes `envs` through `driver`, `parallel` at a time, each within `timeout`, and
/// compares them; the report lists them in the order given.
pub async fn scan(
    intent: Arc<Intent>,
    release: String,
    envs: Vec<String>,
    baseline: Arc<Baseline>,
    driver: Arc<dyn Driver>,
    parallel: usize,
    timeout: Duration,
) -> FleetReport {
    let mut tasks = JoinSet::new();
    let mut reports: Vec<Option<EnvReport>> = vec![None; envs.len()];
    let mut pending = envs.iter().cloned().enumerate();
    loop {
        while tasks.len() < parallel.max(1) {
            let Some((i, name)) = pending.next() else {
                break;
            };
            let (intent, release, baseline, driver) = (
                intent.clone(),
                release.clone(),
                baseline.clone(),
                driver.clone(),
            );
            tasks.spawn(async move {
                let observed = match intent.environment(&name) {
                    None => Err("not in the intent".to_string()),
                    Some(env) => match tokio::time::timeout(timeout, driver.observe(env)).await {
                        Ok(Ok(live)) => Ok(live),
                        Ok(Err(e)) => Err(e.message),
                        Err(_) => Err(format!(
                            "no answer within {}",
                            humantime::format_duration(timeout)
                        )),
                    },
                };
                (
                    i,
                    compare_env(&intent, &release, &name, &baseline, observed),
                )
            });
        }
        match tasks.join_next().await {
            Some(Ok((i, report))) => reports[i] = Some(report),
            Some(Err(_)) => {}
            None => break,
        }
    }
    FleetReport {
        release,
        commit: intent.revision.commit.clone(),
        envs: reports.into_iter().flatten().collect(),
    }
}

/// The events that record how the drift of the scanned services changed since it was last
/// reported (`reported`: the keys per service not cleared since): a `drift_detected` for
/// new drift or new keys, a `drift_cleared` for drift gone. Nothing for what holds, and
/// nothing for what could not be observed.
pub fn changes(
    report: &FleetReport,
    reported: &BTreeMap<(String, String), Vec<String>>,
) -> Vec<EventKind> {
    let mut out = Vec::new();
    for env in &report.envs {
        for s in &env.services {
            let key = (env.env.clone(), s.service.clone());
            let was = reported.get(&key);
            match s.comparison.state {
                DriftState::Unknown => {}
                state if state.is_drift() => {
                    let keys: Vec<String> =
                        s.comparison.drift.iter().map(|c| c.key.clone()).collect();
                    if was != Some(&keys) {
                        out.push(EventKind::DriftDetected {
                            env: key.0,
                            service: key.1,
                            keys,
                        });
                    }
                }
                _ => {
                    if was.is_some() {
                        out.push(EventKind::DriftCleared {
                            env: key.0,
                            service: key.1,
                        });
                    }
                }
            }
        }
    }
    out
}

/// Journals how the drift changed since it was last reported (outside any rollout). A
/// journal whose end was cut off gets nothing: new rows would hide the gap.
pub fn record(store: &crate::store::Store, report: &FleetReport) -> Result<(), String> {
    let reported = store.reported_drift().map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now();
    let events: Vec<crate::engine::Event> = changes(report, &reported)
        .into_iter()
        .map(|k| crate::engine::Event::new(now, k))
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    if let Some(why) = store.truncation().map_err(|e| e.to_string())? {
        return Err(why);
    }
    store.append(None, &events).map_err(|e| e.to_string())
}

/// The preflight's `drift.clean`: fails naming the environments that drifted.
pub fn check(report: &FleetReport) -> crate::plan::Check {
    use crate::plan::{Check, CheckStatus};
    let drifted = report.drifted();
    if drifted.is_empty() {
        return Check::new(
            "drift.clean",
            CheckStatus::Pass,
            format!("no drift in {} environment(s)", report.envs.len()),
        );
    }
    let named: Vec<String> = drifted
        .iter()
        .take(5)
        .map(|e| {
            let what: Vec<String> = e
                .services
                .iter()
                .filter(|s| s.comparison.state.is_drift())
                .map(|s| {
                    let keys: Vec<&str> =
                        s.comparison.drift.iter().map(|c| c.key.as_str()).collect();
                    format!("{}: {}", s.service, keys.join(", "))
                })
                .collect();
            format!("{} ({})", e.env, what.join("; "))
        })
        .collect();
    let more = drifted.len().saturating_sub(5);
    Check::new(
        "drift.clean",
        CheckStatus::Fail,
        format!(
            "{} environment(s) changed out of band: {}{}; `flotilla drift` shows how (block_on_drift)",
            drifted.len(),
            named.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ),
    )
}

/// The preflight's drift scan of `envs` against `release`, as `drift.clean`; with `record`,
/// the drift it finds is journaled too (a rollout's start; `plan` changes nothing).
pub async fn preflight(
    repo: &Path,
    intent: &Arc<Intent>,
    release: &str,
    envs: Vec<String>,
    store: &crate::store::Store,
    driver: &Arc<dyn Driver>,
    record_drift: bool,
) -> Result<crate::plan::Check, String> {
    let applied = store.last_applied().map_err(|e| e.to_string())?;
    let baseline = Arc::new(Baseline::render(repo, intent, applied));
    let report = scan(
        intent.clone(),
        release.to_string(),
        envs,
        baseline,
        driver.clone(),
        PARALLEL,
        TIMEOUT,
    )
    .await;
    if record_drift {
        if let Err(e) = record(store, &report) {
            crate::notice::say(format!("warning: drift not journaled: {e}"));
        }
    }
    Ok(check(&report))
}

/// How many environments a scan observes at once, and how long each may take.
pub const PARALLEL: usize = 64;
pub const TIMEOUT: Duration = Duration::from_secs(30);
