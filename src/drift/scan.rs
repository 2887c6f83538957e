//! A drift scan: each environment observed through the driver (bounded concurrency, a
//! timeout each) and each service compared three ways against its desired state and what
//! flotilla last applied there (rendered from the intent at the commit it was applied at).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::three_way::{self, Comparison, DriftState, Rules, Side};
use crate::drivers::{Driver, LiveService, LiveState};
use crate::engine::{EventKind, Text};
use crate::intent::layers::{desired, DesiredService};
use crate::intent::Intent;
use crate::store::Applied;

/// What flotilla last applied, per (environment, service), rendered: version and config;
/// and what it set out to apply after that without a recorded end.
#[derive(Debug, Default)]
pub struct Baseline {
    applied: BTreeMap<(String, String), (Applied, DesiredService)>,
    intended: BTreeMap<(String, String), (Applied, DesiredService)>,
    /// Last applies that could not be rendered again (their commit is gone, or renders
    /// to another revision): those services compare as never applied.
    pub unrendered: usize,
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
                    (Some(r), Some(e)) => desired(&intent, r, e).services,
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
    /// Records that `rendered` was applied to `env`'s `service` as `applied` says: a
    /// baseline known from somewhere else than the journal (an engine's own events).
    pub fn record(&mut self, env: &str, service: &str, applied: Applied, rendered: DesiredService) {
        self.applied
            .insert((env.to_string(), service.to_string()), (applied, rendered));
    }

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
        let total = last.applied.len();
        let applied = side(last.applied);
        let intended = side(last.intended);
        Baseline {
            unrendered: total - applied.len(),
            applied,
            intended,
        }
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

/// A drift someone accepted for a while: still reported, blocking nothing until it ends.
#[derive(Debug, Clone, Serialize)]
pub struct Acceptance {
    pub env: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub until: String,
    pub reason: String,
    pub by: String,
    #[serde(skip)]
    ends: std::time::SystemTime,
}

impl Acceptance {
    /// Whether it covers `service` of `env` at `now`.
    pub fn covers(&self, env: &str, service: &str, now: std::time::SystemTime) -> bool {
        self.env == env && self.service.as_deref().is_none_or(|s| s == service) && now < self.ends
    }

    /// Read back from a `drift_accepted` event.
    fn from_event(e: &serde_json::Value) -> Option<Acceptance> {
        let until = e["until"].as_str()?.to_string();
        Some(Acceptance {
            env: e["env"].as_str()?.to_string(),
            service: e["service"].as_str().map(str::to_string),
            ends: humantime::parse_rfc3339_weak(&until).ok()?,
            until,
            reason: e["reason"].as_str().unwrap_or_default().to_string(),
            by: e["by"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// What a scan compares live state with besides the intent: what flotilla applied, the
/// drift accepted for now, and the time that decides which acceptances still hold.
#[derive(Debug)]
pub struct Known {
    pub baseline: Baseline,
    pub accepted: Vec<Acceptance>,
    /// The drift the journal reports now, per (environment, service): its keys. What is
    /// already reported is not journaled again.
    pub reported: BTreeMap<(String, String), Vec<String>>,
    pub now: std::time::SystemTime,
}

impl Known {
    /// From the state database (and the intent repo, to render past applies).
    pub fn load(
        repo: &Path,
        intent: &Arc<Intent>,
        store: &crate::store::Store,
        now: std::time::SystemTime,
    ) -> Result<Known, String> {
        let applied = store.last_applied().map_err(|e| e.to_string())?;
        let accepted = store
            .events_of_kinds(&["drift_accepted"])
            .map_err(|e| e.to_string())?
            .iter()
            .filter_map(Acceptance::from_event)
            .collect();
        let reported = store.reported_drift().map_err(|e| e.to_string())?;
        Ok(Known {
            baseline: Baseline::render(repo, intent, applied),
            accepted,
            reported,
            now,
        })
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
    /// The drift is accepted for now: who, why, until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Acceptance>,
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

impl ServiceReport {
    /// What changed out of band, as a unified diff of the last-applied config (`-`) to
    /// live (`+`), secrets masked; None when flotilla never applied the service there.
    pub fn drift_diff(&self) -> Option<Vec<crate::drift::DiffLine>> {
        let last = self.last.as_ref()?;
        let empty = toml::Table::new();
        let live = self.live.as_ref().map_or(&empty, |l| &l.config);
        Some(crate::drift::diff::config_diff(
            &last.config,
            live,
            &self.secrets,
        ))
    }

    /// Drift that nobody accepted: what blocks a rollout.
    pub fn blocking(&self) -> bool {
        self.comparison.state.is_drift() && self.accepted.is_none()
    }
}

impl EnvReport {
    /// Whether any of its services drifted without its drift accepted.
    pub fn blocking(&self) -> bool {
        self.services.iter().any(ServiceReport::blocking)
    }

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

    /// Whether anything changed behind flotilla's back (and nobody accepted it).
    pub fn any_drift(&self) -> bool {
        self.envs.iter().any(EnvReport::blocking)
    }

    /// The environments with drift nobody accepted.
    pub fn drifted(&self) -> Vec<&EnvReport> {
        self.envs.iter().filter(|e| e.blocking()).collect()
    }

    /// The environments whose drift is all accepted for now.
    pub fn accepted(&self) -> Vec<&EnvReport> {
        self.envs
            .iter()
            .filter(|e| !e.blocking() && e.state().is_drift())
            .collect()
    }
}

/// Compares one environment's services given what was observed there, against `release`
/// rendered for it.
pub fn compare_env(
    intent: &Intent,
    release: &str,
    env: &str,
    known: &Known,
    observed: Result<LiveState, String>,
) -> EnvReport {
    let desired = match (intent.release(release), intent.environment(env)) {
        (Some(r), Some(e)) => desired(intent, r, e).services,
        _ => BTreeMap::new(),
    };
    compare_rendered(intent, env, &desired, known, observed)
}

/// [`compare_env`] with the desired state already rendered (the engine has it at hand).
pub fn compare_rendered(
    intent: &Intent,
    env: &str,
    desired: &BTreeMap<String, DesiredService>,
    known: &Known,
    observed: Result<LiveState, String>,
) -> EnvReport {
    let baseline = &known.baseline;
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
            let accepted = comparison
                .state
                .is_drift()
                .then(|| {
                    known
                        .accepted
                        .iter()
                        .rev()
                        .find(|a| a.covers(env, &svc.name, known.now))
                        .cloned()
                })
                .flatten();
            Some(ServiceReport {
                service: svc.name.clone(),
                comparison,
                accepted,
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

/// What `env` runs, as `driver` says within `timeout`; else why it cannot be told.
pub async fn observe_within(
    driver: &dyn Driver,
    env: &crate::intent::Environment,
    timeout: Duration,
) -> Result<LiveState, String> {
    match tokio::time::timeout(timeout, driver.observe(env)).await {
        Ok(Ok(live)) => Ok(live),
        Ok(Err(e)) => Err(e.message),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// Observes `envs` through `driver`, `parallel` at a time, each within `timeout`, and
/// compares them; the report lists them in the order given.
pub async fn scan(
    intent: Arc<Intent>,
    release: String,
    envs: Vec<String>,
    known: Arc<Known>,
    driver: Arc<dyn Driver>,
    parallel: usize,
    timeout: Duration,
) -> FleetReport {
    let reports = crate::parallel::bounded(envs, parallel, |name| {
        let (intent, release, known, driver) = (
            intent.clone(),
            release.clone(),
            known.clone(),
            driver.clone(),
        );
        async move {
            let observed = match intent.environment(&name) {
                None => Err("not in the intent".to_string()),
                Some(env) => observe_within(&*driver, env, timeout).await,
            };
            compare_env(&intent, &release, &name, &known, observed)
        }
    })
    .await;
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
                            env: key.0.into(),
                            service: key.1.into(),
                            keys,
                        });
                    }
                }
                _ => {
                    if was.is_some() {
                        out.push(EventKind::DriftCleared {
                            env: key.0.into(),
                            service: key.1.into(),
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
pub fn record(
    store: &crate::store::Store,
    report: &FleetReport,
    routes: Option<&crate::notify::Routes>,
) -> Result<(), String> {
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
    store
        .append_routed(None, &events, routes)
        .map_err(|e| e.to_string())
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

/// The preflight's drift scan of `envs` against `release` given what is `known`, as
/// `drift.clean`; with `record_drift`, the drift it finds is journaled too (a rollout's
/// start; `plan` changes nothing).
pub async fn preflight(
    intent: &Arc<Intent>,
    release: &str,
    envs: Vec<String>,
    known: Arc<Known>,
    store: &crate::store::Store,
    driver: &Arc<dyn Driver>,
    record_drift: bool,
) -> crate::plan::Check {
    let report = scan(
        intent.clone(),
        release.to_string(),
        envs,
        known,
        driver.clone(),
        PARALLEL,
        TIMEOUT,
    )
    .await;
    if record_drift {
        let routes = crate::notify::Routes::new(intent, release);
        if let Err(e) = record(store, &report, routes.as_deref()) {
            crate::notice::say(format!("warning: drift not journaled: {e}"));
        }
    }
    check(&report)
}

/// Drift for a console: scans of the whole fleet through the one scan path, each against
/// what the journal says now (the rollout moves it), their changes journaled; and the
/// decisions on what they find.
pub struct Scanner {
    pub repo: std::path::PathBuf,
    pub state: std::path::PathBuf,
    pub store: Arc<crate::store::Store>,
    /// The rollout's intent and release: what desired means here.
    pub intent: Arc<Intent>,
    pub release: String,
    pub driver: Arc<dyn Driver>,
}

impl Scanner {
    /// Scans every environment and journals how their drift changed.
    pub async fn scan(&self) -> Result<FleetReport, String> {
        let (repo, intent, store) = (self.repo.clone(), self.intent.clone(), self.store.clone());
        let known = tokio::task::spawn_blocking(move || {
            Known::load(&repo, &intent, &store, std::time::SystemTime::now())
        })
        .await
        .map_err(|e| e.to_string())??;
        let envs = self
            .intent
            .environments
            .iter()
            .map(|e| e.name.clone())
            .collect();
        let report = scan(
            self.intent.clone(),
            self.release.clone(),
            envs,
            Arc::new(known),
            self.driver.clone(),
            PARALLEL,
            TIMEOUT,
        )
        .await;
        let routes = crate::notify::Routes::new(&self.intent, &self.release);
        record(&self.store, &report, routes.as_deref())?;
        Ok(report)
    }

    /// Adopts all of `env`'s drift into Git (see [`super::adopt::adopt_now`]).
    pub async fn adopt(
        &self,
        env: &str,
        me: &crate::identity::Identity,
    ) -> Result<super::adopt::Adopted, super::adopt::AdoptError> {
        super::adopt::adopt_now(&self.repo, &self.state, &self.store, env, None, &[], me).await
    }
}

/// The longest an acceptance may last: longer ones are forgotten, not folded into Git.
pub const MOST_ACCEPTED: Duration = Duration::from_secs(30 * 24 * 3600);

/// Accepts the drift of `env` (one service, or all) for `duration` from `now`, journaled
/// with who and why: still reported, it blocks nothing until then. Returns when it ends
/// (RFC 3339). Refused, appending nothing, without a reason, beyond
/// [`MOST_ACCEPTED`], or on a journal whose end was cut off.
pub fn accept(
    store: &crate::store::Store,
    env: &str,
    service: Option<&str>,
    duration: Duration,
    reason: &str,
    by: &str,
    now: std::time::SystemTime,
) -> Result<String, String> {
    if reason.trim().is_empty() {
        return Err("the reason is empty; say why the drift may stay".into());
    }
    if duration.is_zero() || duration > MOST_ACCEPTED {
        return Err("the duration must be more than nothing and at most 30 days; fold a longer-lived change into Git instead".into());
    }
    if let Some(why) = store.truncation().map_err(|e| e.to_string())? {
        return Err(format!("{why}; nothing was appended"));
    }
    let until = humantime::format_rfc3339_seconds(now + duration).to_string();
    let event = crate::engine::Event::new(
        now,
        EventKind::DriftAccepted {
            env: Text::from(env),
            service: service.map(str::to_string),
            until: until.clone(),
            reason: reason.trim().to_string(),
            by: by.to_string(),
        },
    );
    store.append(None, &[event]).map_err(|e| e.to_string())?;
    Ok(until)
}

/// The release desired states are rendered from by default: the latest rollout's, else
/// the newest.
pub fn default_release(intent: &Intent, store: &crate::store::Store) -> Option<String> {
    store
        .latest_rollout()
        .ok()
        .flatten()
        .map(|r| r.release)
        .filter(|r| intent.release(r).is_some())
        .or_else(|| intent.releases.last().map(|r| r.name.clone()))
}

/// Environment `env` observed now through the driver of `intent` and compared three ways
/// against the default release: its report (an observation that failed is its `error`),
/// and what it was compared with. Err when it cannot be set up.
pub async fn observe_one(
    repo: &Path,
    intent: &Arc<Intent>,
    store: &crate::store::Store,
    state: &Path,
    env: &str,
) -> Result<(EnvReport, Known), String> {
    let environment = intent
        .environment(env)
        .ok_or_else(|| format!("no environment `{env}`"))?;
    let release = default_release(intent, store).ok_or("the intent has no release")?;
    let known = Known::load(repo, intent, store, std::time::SystemTime::now())?;
    let place = crate::drivers::Place {
        repo,
        state: Some(state),
    };
    let driver =
        crate::drivers::open(intent, intent.release(&release), place).map_err(|e| e.to_string())?;
    let observed = observe_within(&*driver, environment, TIMEOUT).await;
    let report = compare_env(intent, &release, env, &known, observed);
    Ok((report, known))
}

/// How many environments a scan observes at once, and how long each may take.
pub const PARALLEL: usize = 64;
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    /// An intent of one environment `e` whose api runs 1.0 with replicas = 3.
    fn intent() -> Arc<Intent> {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            (
                "flotilla.toml".to_string(),
                "[fleet]\nname = \"t\"\n[[service]]\nname = \"api\"\n".to_string(),
            ),
            (
                "environments/e.toml".to_string(),
                "[config.api]\nreplicas = 3\n".to_string(),
            ),
            (
                "releases/1.toml".to_string(),
                "[services]\napi = \"1.0\"\n".to_string(),
            ),
        ];
        crate::intent::write::write_repo(
            dir.path(),
            &[crate::demo::DemoCommit {
                message: "t".into(),
                files,
            }],
        )
        .unwrap();
        Arc::new(crate::intent::load(dir.path(), "HEAD").unwrap().intent)
    }

    #[test]
    fn an_acceptance_covers_drift_until_it_expires() {
        let intent = intent();
        let desired = desired(
            &intent,
            intent.release("1").unwrap(),
            intent.environment("e").unwrap(),
        );
        let applied = desired.services["api"].clone();
        let at = humantime::parse_rfc3339("2026-12-01T09:00:00Z").unwrap();
        let mut baseline = Baseline::default();
        let a = Applied {
            version: applied.version.clone(),
            revision: applied.revision.clone(),
            commit: intent.revision.commit.clone(),
            release: "1".into(),
            rollout: 1,
            ts: "2026-12-01T08:00:00Z".into(),
        };
        baseline
            .applied
            .insert(("e".into(), "api".into()), (a, applied.clone()));
        let acceptance = Acceptance {
            env: "e".into(),
            service: None,
            until: "2026-12-01T10:00:00Z".into(),
            reason: "vendor hotfix".into(),
            by: "ops@bastion".into(),
            ends: humantime::parse_rfc3339("2026-12-01T10:00:00Z").unwrap(),
        };
        let mut tampered = applied.config.clone();
        tampered.insert("replicas".into(), toml::Value::Integer(9));
        let live: LiveState = [(
            "api".to_string(),
            LiveService {
                version: applied.version.clone(),
                config: tampered,
                revision: applied.revision.clone(),
            },
        )]
        .into();
        let report_at = |now: SystemTime| {
            let known = Known {
                baseline: Baseline {
                    applied: baseline.applied.clone(),
                    intended: Default::default(),
                    unrendered: 0,
                },
                accepted: vec![acceptance.clone()],
                reported: Default::default(),
                now,
            };
            compare_env(&intent, "1", "e", &known, Ok(live.clone()))
        };
        let within = report_at(at);
        assert_eq!(within.services[0].comparison.state, DriftState::Drifted);
        assert!(
            !within.blocking(),
            "accepted: still reported, blocks nothing"
        );
        let after = report_at(at + Duration::from_secs(2 * 3600));
        assert!(after.blocking(), "expired: it blocks again");
        assert!(after.services[0].accepted.is_none());
    }
}
