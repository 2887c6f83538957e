//! The simulated fleet: a seeded, in-process stand-in for real environments, whose live state
//! persists in one file so successive commands see the same fleet.
//!
//! Every random draw is a hash of (seed, environment, service, call number), so outcomes do
//! not depend on how concurrent steps interleave.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::{
    ApplyRequest, Driver, DriverError, DriverFuture, Health, LiveService, LiveState, Printed,
};
use crate::hash::{stable_hash, unit};
use crate::intent::{Environment, Release};
use crate::selector::Selector;
use crate::store::StoreError;

/// `[driver.sim]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimDef {
    #[serde(default)]
    pub success_rate: Option<toml::Spanned<f64>>,
    #[serde(default)]
    pub latency: Option<toml::Spanned<String>>,
    #[serde(default)]
    pub seed: Option<u64>,
}

/// The simulated fleet's behaviour.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Chance that one apply succeeds first time; failures are transient.
    pub success_rate: f64,
    /// Each call takes a latency drawn uniformly from this range.
    pub latency: (Duration, Duration),
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            success_rate: 0.99,
            latency: (Duration::ZERO, Duration::ZERO),
            seed: 0,
        }
    }
}

pub use super::Problem;

/// Checks `[driver.sim]`; what is wrong is returned beside the settings (left at their
/// defaults where wrong).
pub fn check_config(def: &SimDef) -> (SimConfig, Vec<Problem>) {
    let mut cfg = SimConfig::default();
    let mut problems = Vec::new();
    if let Some(rate) = &def.success_rate {
        let r = *rate.get_ref();
        if r > 0.0 && r <= 1.0 {
            cfg.success_rate = r;
        } else {
            problems.push((
                rate.span(),
                format!("success_rate {r} is out of range"),
                "use a probability above 0 and at most 1, e.g. 0.99".into(),
            ));
        }
    }
    if let Some(lat) = &def.latency {
        match parse_latency(lat.get_ref()) {
            Ok(range) => cfg.latency = range,
            Err(msg) => problems.push((
                lat.span(),
                msg,
                "write a duration or a range, e.g. \"40ms..400ms\"".into(),
            )),
        }
    }
    cfg.seed = def.seed.unwrap_or(0);
    (cfg, problems)
}

/// `"40ms..400ms"` or one duration.
pub fn parse_latency(s: &str) -> Result<(Duration, Duration), String> {
    let parse = |p: &str| {
        humantime::parse_duration(p.trim()).map_err(|e| format!("invalid latency `{s}`: {e}"))
    };
    match s.split_once("..") {
        Some((a, b)) => {
            let (lo, hi) = (parse(a)?, parse(b)?);
            if hi < lo {
                return Err(format!("latency range `{s}` ends below its start"));
            }
            Ok((lo, hi))
        }
        None => parse(s).map(|d| (d, d)),
    }
}

/// A release's `[sim]` table as written: how the simulated fleet should misbehave for it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSimDef {
    /// Environments where every apply fails permanently.
    #[serde(default)]
    pub broken: Option<toml::Spanned<String>>,
    /// Environments where an apply never returns (to exercise step timeouts).
    #[serde(default)]
    pub hang: Option<toml::Spanned<String>>,
    /// Only these services of the release crash where it is broken (default: all).
    #[serde(default)]
    pub broken_services: Option<Vec<toml::Spanned<String>>>,
}

/// A release's `[sim]` table, checked.
#[derive(Debug, Clone, Default)]
pub struct SimRelease {
    /// Environments where this release fails permanently.
    pub broken: Option<Selector>,
    /// The services of this release that fail there (empty: all).
    pub broken_services: Vec<String>,
    /// Environments where applies of this release hang.
    pub hang: Option<Selector>,
}

/// Checks a release's `[sim]` table against the fleet's services. `selector` parses a
/// selector and reports what is wrong with it, as every selector of the intent is reported;
/// other problems are returned beside the settings.
pub fn check_release(
    def: &ReleaseSimDef,
    services: &[&str],
    mut selector: impl FnMut(&toml::Spanned<String>) -> Option<Selector>,
) -> (SimRelease, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut broken_services = Vec::new();
    for s in def.broken_services.iter().flatten() {
        if services.contains(&s.get_ref().as_str()) {
            broken_services.push(s.get_ref().clone());
        } else {
            problems.push((
                s.span(),
                format!(
                    "[sim] broken_services names `{}`, which is not a service",
                    s.get_ref()
                ),
                crate::intent::load::did_you_mean(s.get_ref(), services),
            ));
        }
    }
    let release = SimRelease {
        broken: def.broken.as_ref().and_then(&mut selector),
        broken_services,
        hang: def.hang.as_ref().and_then(&mut selector),
    };
    (release, problems)
}

/// The live state of the simulated fleet.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SimState {
    /// By environment (hashed: every simulated call looks one up, and ordered names at
    /// 100,000 environments cost a score of string comparisons each), then by service.
    pub envs: std::collections::HashMap<String, BTreeMap<String, SimService>>,
}

/// What one simulated service runs, and how often it was applied (to prove nothing is applied
/// twice).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimService {
    /// Shared by every environment where the same revision was applied without secrets
    /// (see [`SimFleet::live_of`]); changed in one place only by a copy of its own.
    #[serde(flatten)]
    pub live: Arc<LiveService>,
    /// Applies that changed what runs.
    pub applies: u64,
    /// Every apply that reached the service, including repeats of the running revision.
    pub calls: u64,
}

/// The live states applied revisions run, each made once ([`SimFleet::live_of`]).
#[derive(Default)]
struct Shared {
    by_revision: std::collections::HashMap<String, Weak<LiveService>>,
    /// Its size when the revisions no environment runs are next let go.
    prune_at: usize,
}

/// A simulated fleet for one release.
pub struct SimFleet {
    config: SimConfig,
    broken: Option<Selector>,
    /// The versions of the release being rolled out, per service: only they are broken
    /// (a rollback to earlier versions works where the release crashes), and of them only
    /// these services when the release names some.
    release_versions: BTreeMap<String, String>,
    hang: Option<Selector>,
    state: Mutex<SimState>,
    /// Calls per env and service, so each draw is unique but independent of interleaving.
    /// Keyed by a hash of the two names, not the names: a draw is on the path of every
    /// simulated call, and copies of 100,000 environments' names cost more to make and to
    /// free than the rollout they count. (Two pairs whose hashes collide, odds of about 1
    /// in 400 million at that size, would share a counter: their draws stay deterministic.)
    calls: Mutex<std::collections::HashMap<u64, u64>>,
    /// What each revision applied runs, while some environment runs it.
    shared: Mutex<Shared>,
    /// Where the fleet's live state persists (the state database), if anywhere. The
    /// simulated world keeps a change the moment it is applied, as a real one would, so a
    /// crash of flotilla never loses it.
    db: Option<Mutex<Connection>>,
}

impl SimFleet {
    /// A fleet in memory only.
    pub fn new(config: SimConfig, release: Option<&Release>) -> Self {
        SimFleet {
            config,
            broken: release.and_then(|r| r.sim.broken.clone()),
            release_versions: release
                .map(|r| {
                    let mut versions = r.services.clone();
                    if !r.sim.broken_services.is_empty() {
                        versions.retain(|s, _| r.sim.broken_services.contains(s));
                    }
                    versions
                })
                .unwrap_or_default(),
            hang: release.and_then(|r| r.sim.hang.clone()),
            state: Mutex::new(SimState::default()),
            calls: Mutex::new(Default::default()),
            shared: Mutex::new(Default::default()),
            db: None,
        }
    }

    /// A fleet whose live state lives in the state database at `path` (already opened and
    /// migrated by [`crate::store::Store::open`]).
    pub fn open(
        config: SimConfig,
        release: Option<&Release>,
        path: &Path,
    ) -> Result<Self, StoreError> {
        let mut fleet = SimFleet::new(config, release);
        let conn = crate::store::connect(path)?;
        // The simulated world's own table: the store knows nothing of it.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS sim_live (
                env TEXT NOT NULL,
                service TEXT NOT NULL,
                version TEXT NOT NULL,
                config TEXT NOT NULL,
                revision TEXT NOT NULL,
                applies INTEGER NOT NULL,
                calls INTEGER NOT NULL,
                PRIMARY KEY (env, service)
            );",
        )?;
        // Like the journal writer: no checkpoint (an fsync) in the middle of applies.
        conn.pragma_update(None, "wal_autocheckpoint", 16384)?;
        {
            let mut state = fleet.lock_state();
            let mut stmt = conn.prepare(
                "SELECT env, service, version, config, revision, applies, calls FROM sim_live",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })?;
            for row in rows {
                let (env, service, version, config, revision, applies, calls) = row?;
                let config = serde_json::from_str(&config).unwrap_or_default();
                state.envs.entry(env).or_default().insert(
                    service,
                    SimService {
                        live: Arc::new(LiveService {
                            version,
                            config,
                            revision,
                        }),
                        applies: applies as u64,
                        calls: calls as u64,
                    },
                );
            }
        }
        fleet.db = Some(Mutex::new(conn));
        Ok(fleet)
    }

    fn persist(&self, env: &str, service: &str, s: &SimService) -> Result<(), DriverError> {
        let Some(db) = &self.db else {
            return Ok(());
        };
        let conn = db.lock().unwrap_or_else(|p| p.into_inner());
        conn.prepare_cached(
            "INSERT INTO sim_live (env, service, version, config, revision, applies, calls)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (env, service) DO UPDATE SET version = ?3, config = ?4,
               revision = ?5, applies = ?6, calls = ?7",
        )
        .and_then(|mut stmt| {
            stmt.execute(rusqlite::params![
                env,
                service,
                s.live.version,
                serde_json::to_string(&s.live.config).unwrap_or_default(),
                s.live.revision,
                s.applies as i64,
                s.calls as i64
            ])
        })
        .map(|_| ())
        .map_err(|e| {
            DriverError::transient(format!(
                "the simulated fleet could not store the change: {e}"
            ))
        })
    }

    /// What the state database holds for `env` now, when the fleet lives there and it can
    /// be read.
    fn stored(&self, env: &str) -> Option<LiveState> {
        let db = self.db.as_ref()?;
        let conn = db.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn
            .prepare_cached(
                "SELECT service, version, config, revision FROM sim_live WHERE env = ?1",
            )
            .ok()?;
        let rows = stmt
            .query_map([env], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .ok()?;
        let mut live = LiveState::new();
        for row in rows {
            let (service, version, config, revision) = row.ok()?;
            live.insert(
                service,
                LiveService {
                    version,
                    config: serde_json::from_str(&config).unwrap_or_default(),
                    revision,
                },
            );
        }
        Some(live)
    }

    /// Changes what `service` runs in `env` out of band, as a person fixing an incident by
    /// hand would: the version and the dotted config keys given, nothing else (the
    /// revision stays the one last applied). Kept in the state database.
    pub fn tamper(
        &self,
        env: &str,
        service: &str,
        version: Option<String>,
        keys: &[(String, toml::Value)],
    ) -> Result<LiveService, String> {
        let mut state = self.lock_state();
        let Some(s) = state.envs.get_mut(env).and_then(|e| e.get_mut(service)) else {
            return Err(format!(
                "{service} does not run in {env} yet: roll something out there first"
            ));
        };
        if let Some(v) = version {
            Arc::make_mut(&mut s.live).version = v;
        }
        for (path, value) in keys {
            crate::keypath::insert(&mut Arc::make_mut(&mut s.live).config, path, value.clone());
        }
        let changed = s.clone();
        drop(state);
        self.persist(env, service, &changed)
            .map_err(|e| e.message)?;
        Ok(LiveService::clone(&changed.live))
    }

    /// A copy of the live state (for tests and reports).
    pub fn snapshot(&self) -> SimState {
        self.lock_state().clone()
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, SimState> {
        // A panic while holding the lock cannot leave the map half-updated (each update is
        // one insert), so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `req` runs once applied. A revision applied without secrets runs alike
    /// everywhere (its id is the hash of service, version and config), so its live state is
    /// made once and shared: a copy per environment made the simulated world of 100,000
    /// environments three times larger, and it is what a large rollout spent most on. With
    /// secrets, each environment seals its own.
    fn live_of(&self, req: &ApplyRequest) -> Arc<LiveService> {
        if !req.secrets.is_empty() {
            return Arc::new(req.sealed_live());
        }
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = shared
            .by_revision
            .get(&req.revision)
            .and_then(Weak::upgrade)
        {
            return live;
        }
        if shared.by_revision.len() >= shared.prune_at {
            // Revisions no environment runs any more go, at a cost shared out over as many
            // applies as there are revisions left.
            shared.by_revision.retain(|_, live| live.strong_count() > 0);
            shared.prune_at = (shared.by_revision.len() * 2).max(1024);
        }
        let live = Arc::new(req.sealed_live());
        shared
            .by_revision
            .insert(req.revision.clone(), Arc::downgrade(&live));
        live
    }

    /// A fresh draw in [0, 1) for this call of (env, service).
    fn draw(&self, env: &str, service: &str, what: &str) -> f64 {
        let key = stable_hash(&[env.as_bytes(), service.as_bytes()]);
        let n = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let n = calls.entry(key).or_insert(0);
            *n += 1;
            *n
        };
        let h = stable_hash(&[
            &self.config.seed.to_le_bytes(),
            env.as_bytes(),
            service.as_bytes(),
            what.as_bytes(),
            &n.to_le_bytes(),
        ]);
        unit(h)
    }

    async fn latency(&self, env: &str, service: &str) {
        let (lo, hi) = self.config.latency;
        if hi.is_zero() {
            return;
        }
        let u = self.draw(env, service, "latency");
        let d = lo + Duration::from_secs_f64((hi - lo).as_secs_f64() * u);
        tokio::time::sleep(d).await;
    }
}

fn matches(sel: &Option<Selector>, env: &Environment) -> bool {
    sel.as_ref().is_some_and(|s| s.matches(&env.labels))
}

/// Environments from which the simulated world is freed on a thread of its own.
const FREE_APART_FROM: usize = 10_000;

impl Drop for SimFleet {
    /// The simulated world stands in for a fleet that lives elsewhere: freeing what 100,000
    /// environments run (a quarter of a second) is no work a real rollout does, so a large
    /// world is freed beside whatever comes next instead of at the end of the rollout.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if state.envs.len() < FREE_APART_FROM {
            return;
        }
        let world = std::mem::take(state);
        // Without a thread, it is freed here as it always was.
        let _ = std::thread::Builder::new()
            .name("flotilla-sim-free".into())
            .spawn(move || drop(world));
    }
}

impl Driver for SimFleet {
    fn ping<'a>(&'a self, _env: &'a Environment) -> DriverFuture<'a, ()> {
        // A ping is cheap next to an apply; modelling no latency keeps `plan` instant on
        // large simulated fleets.
        Box::pin(async { Ok(()) })
    }

    fn observe<'a>(&'a self, env: &'a Environment) -> DriverFuture<'a, LiveState> {
        Box::pin(async move {
            self.latency(&env.name, "").await;
            // The stored world is the truth: another process (the engine a console watches)
            // may have changed it since this one loaded it.
            if let Some(live) = self.stored(&env.name) {
                return Ok(live);
            }
            let state = self.lock_state();
            Ok(state
                .envs
                .get(&env.name)
                .map(|svcs| {
                    svcs.iter()
                        .map(|(k, v)| (k.clone(), LiveService::clone(&v.live)))
                        .collect()
                })
                .unwrap_or_default())
        })
    }

    fn apply<'a>(
        &'a self,
        env: &'a Environment,
        req: &'a ApplyRequest,
    ) -> DriverFuture<'a, Printed> {
        Box::pin(async move {
            if matches(&self.hang, env) {
                // Models an apply that never answers, so step timeouts can be exercised.
                std::future::pending::<()>().await;
            }
            self.latency(&env.name, &req.service).await;
            let of_release = self.release_versions.get(&req.service) == Some(&req.version);
            if of_release && matches(&self.broken, env) {
                return Err(DriverError::permanent(format!(
                    "{} {} crashes on start (simulated)",
                    req.service, req.version
                )));
            }
            if self.draw(&env.name, &req.service, "apply") >= self.config.success_rate {
                return Err(DriverError::transient(
                    "connection reset (simulated transient failure)",
                ));
            }
            let live = self.live_of(req);
            let mut state = self.lock_state();
            if !state.envs.contains_key(&env.name) {
                state.envs.insert(env.name.clone(), Default::default());
            }
            let svcs = state.envs.get_mut(&env.name).expect("inserted above");
            let current = svcs.get(&req.service);
            // Idempotent: the same revision applied again changes nothing but the call count.
            let unchanged = current.is_some_and(|s| s.live.revision == req.revision);
            let next = SimService {
                live,
                applies: current.map_or(0, |s| s.applies) + u64::from(!unchanged),
                calls: current.map_or(0, |s| s.calls) + 1,
            };
            self.persist(&env.name, &req.service, &next)?;
            svcs.insert(req.service.clone(), next);
            Ok(Printed::default())
        })
    }

    fn health<'a>(&'a self, env: &'a Environment, service: &'a str) -> DriverFuture<'a, Health> {
        Box::pin(async move {
            // Verifying takes time too; it also leaves a window after an apply in which a
            // crash finds the change made but not yet verified.
            self.latency(&env.name, service).await;
            let state = self.lock_state();
            let running = state.envs.get(&env.name).and_then(|s| s.get(service));
            Ok(match running {
                Some(_) => Health::Healthy,
                None => Health::Unhealthy(format!("{service} is not running")),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, region: &str) -> Environment {
        Environment {
            name: name.into(),
            labels: [
                ("name".to_string(), name.to_string()),
                ("region".to_string(), region.to_string()),
            ]
            .into(),
            target: None,
            config: Default::default(),
            file: String::new(),
        }
    }

    fn req(rev: &str) -> ApplyRequest {
        ApplyRequest {
            service: "api".into(),
            version: "1.0".into(),
            config: Default::default(),
            revision: rev.into(),
            secrets: Vec::new(),
        }
    }

    fn release(broken: &str) -> Release {
        Release {
            name: "r".into(),
            file: "releases/r.toml".into(),
            services: [("api".to_string(), "1.0".to_string())].into(),
            config: Default::default(),
            sim: SimRelease {
                broken: Some(broken.parse().unwrap()),
                ..SimRelease::default()
            },
        }
    }

    #[tokio::test]
    async fn broken_environments_fail_permanently_and_others_apply_once() {
        let cfg = SimConfig {
            success_rate: 1.0,
            ..SimConfig::default()
        };
        let fleet = SimFleet::new(cfg, Some(&release("region=ap")));
        let err = fleet.apply(&env("a", "ap"), &req("r1")).await.unwrap_err();
        assert_eq!(err.class, super::super::ErrorClass::Permanent);
        // Only the release's own versions are broken: going back to another one works.
        let earlier = ApplyRequest {
            version: "0.9".into(),
            ..req("r0")
        };
        fleet.apply(&env("a", "ap"), &earlier).await.unwrap();
        // Only the services the release names as broken crash, when it names some.
        let mut only_web = release("region=ap");
        only_web.sim.broken_services = vec!["web".into()];
        let fleet_web = SimFleet::new(fleet.config.clone(), Some(&only_web));
        fleet_web.apply(&env("a", "ap"), &req("r1")).await.unwrap();
        let ok = env("b", "eu");
        fleet.apply(&ok, &req("r1")).await.unwrap();
        fleet.apply(&ok, &req("r1")).await.unwrap();
        assert_eq!(fleet.snapshot().envs["b"]["api"].applies, 1);
        assert_eq!(fleet.health(&ok, "api").await.unwrap(), Health::Healthy);
    }

    #[tokio::test]
    async fn an_out_of_band_change_to_one_environment_leaves_the_others_as_applied() {
        let cfg = SimConfig {
            success_rate: 1.0,
            ..SimConfig::default()
        };
        let fleet = SimFleet::new(cfg, None);
        let mut same = req("r1");
        same.config = toml::from_str("replicas = 2").unwrap();
        for name in ["a", "b"] {
            fleet.apply(&env(name, "eu"), &same).await.unwrap();
        }
        let changed = fleet
            .tamper(
                "a",
                "api",
                Some("1.1".into()),
                &[("replicas".into(), 9.into())],
            )
            .unwrap();
        assert_eq!(changed.config["replicas"].as_integer(), Some(9));
        let live = fleet.snapshot();
        let (a, b) = (&live.envs["a"]["api"].live, &live.envs["b"]["api"].live);
        assert_eq!((a.version.as_str(), b.version.as_str()), ("1.1", "1.0"));
        assert_eq!(b.config["replicas"].as_integer(), Some(2));
        // Applied again, the revision runs as requested there, and still untouched in `b`.
        fleet.apply(&env("a", "eu"), &same).await.unwrap();
        let live = fleet.snapshot();
        assert_eq!(
            live.envs["a"]["api"].live.config["replicas"].as_integer(),
            Some(2)
        );
        assert_eq!(live.envs["a"]["api"].live.version, "1.0");
    }

    #[tokio::test]
    async fn secrets_are_sealed_apart_in_each_environment() {
        let cfg = SimConfig {
            success_rate: 1.0,
            ..SimConfig::default()
        };
        let fleet = SimFleet::new(cfg, None);
        let mut secret = req("r1");
        secret.config = toml::from_str("token = \"hunter2\"").unwrap();
        secret.secrets = vec!["token".into()];
        for name in ["a", "b"] {
            fleet.apply(&env(name, "eu"), &secret).await.unwrap();
        }
        let live = fleet.snapshot();
        let token = |e: &str| live.envs[e]["api"].live.config["token"].clone();
        assert!(!format!("{:?}", live).contains("hunter2"));
        assert_ne!(token("a"), token("b"), "each seals with a salt of its own");
    }

    #[tokio::test]
    async fn live_state_survives_in_the_state_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        drop(crate::store::Store::open(&path, "f").unwrap());
        let cfg = SimConfig {
            success_rate: 1.0,
            ..SimConfig::default()
        };
        let fleet = SimFleet::open(cfg.clone(), None, &path).unwrap();
        fleet.apply(&env("b", "eu"), &req("r1")).await.unwrap();
        drop(fleet);
        let again = SimFleet::open(cfg.clone(), None, &path).unwrap();
        let live = again.observe(&env("b", "eu")).await.unwrap();
        assert_eq!(live["api"].revision, "r1");
        // A fleet opened before a change (a console watching another process's engine)
        // observes it too.
        let watcher = SimFleet::open(cfg, None, &path).unwrap();
        again.apply(&env("b", "eu"), &req("r2")).await.unwrap();
        assert_eq!(again.snapshot().envs["b"]["api"].applies, 2);
        let live = watcher.observe(&env("b", "eu")).await.unwrap();
        assert_eq!(live["api"].revision, "r2");
    }
}
