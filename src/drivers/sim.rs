//! The simulated fleet: a seeded, in-process stand-in for real environments, whose live state
//! persists in one file so successive commands see the same fleet.
//!
//! Every random draw is a hash of (seed, environment, service, call number), so outcomes do
//! not depend on how concurrent steps interleave.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ApplyRequest, Driver, DriverError, DriverFuture, Health, LiveService, LiveState};
use crate::hash::{stable_hash, unit};
use crate::intent::{Environment, Release, SimConfig};
use crate::selector::Selector;

/// The file format version of the persisted fleet.
const STATE_VERSION: u32 = 1;

/// The persisted live state of the simulated fleet.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SimState {
    pub version: u32,
    pub envs: BTreeMap<String, BTreeMap<String, SimService>>,
}

/// What one simulated service runs, and how often it was applied (to prove nothing is applied
/// twice).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimService {
    #[serde(flatten)]
    pub live: LiveService,
    pub applies: u64,
}

/// Why the simulated fleet's state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SimStateError {
    #[error("cannot read the simulated fleet's state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the simulated fleet's state {path} is corrupt ({detail}); it was left untouched: move it aside to start a fresh fleet")]
    Corrupt { path: PathBuf, detail: String },
    #[error("the simulated fleet's state {path} is from a newer flotilla (format {found}, this one reads {STATE_VERSION}); it was left untouched")]
    Newer { path: PathBuf, found: u32 },
    #[error("cannot write the simulated fleet's state {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A simulated fleet for one release.
pub struct SimFleet {
    config: SimConfig,
    broken: Option<Selector>,
    hang: Option<Selector>,
    state: Mutex<SimState>,
    /// Calls per (env, service), so each draw is unique but independent of interleaving.
    calls: Mutex<BTreeMap<(String, String), u64>>,
    path: Option<PathBuf>,
    /// One save at a time: the periodic save and the final one must not interleave.
    saving: Mutex<()>,
}

impl SimFleet {
    /// A fleet in memory only.
    pub fn new(config: SimConfig, release: Option<&Release>) -> Self {
        SimFleet {
            config,
            broken: release.and_then(|r| r.sim_broken.clone()),
            hang: release.and_then(|r| r.sim_hang.clone()),
            state: Mutex::new(SimState {
                version: STATE_VERSION,
                envs: BTreeMap::new(),
            }),
            calls: Mutex::new(BTreeMap::new()),
            path: None,
            saving: Mutex::new(()),
        }
    }

    /// A fleet whose live state is loaded from, and saved to, `path` (created when missing).
    pub fn open(
        config: SimConfig,
        release: Option<&Release>,
        path: &Path,
    ) -> Result<Self, SimStateError> {
        let mut fleet = SimFleet::new(config, release);
        fleet.path = Some(path.to_path_buf());
        match std::fs::read(path) {
            Ok(bytes) => {
                let state: SimState =
                    serde_json::from_slice(&bytes).map_err(|e| SimStateError::Corrupt {
                        path: path.into(),
                        detail: e.to_string(),
                    })?;
                if state.version > STATE_VERSION {
                    return Err(SimStateError::Newer {
                        path: path.into(),
                        found: state.version,
                    });
                }
                fleet.state = Mutex::new(state);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SimStateError::Read {
                    path: path.into(),
                    source,
                })
            }
        }
        Ok(fleet)
    }

    /// Writes the live state atomically (a temporary file renamed over the old one), so a
    /// crash mid-write never leaves a half-written fleet.
    pub fn save(&self) -> Result<(), SimStateError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        let err = |source| SimStateError::Write {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let bytes = serde_json::to_vec(&*self.lock_state()).map_err(|e| err(e.into()))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
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

    /// A fresh draw in [0, 1) for this call of (env, service).
    fn draw(&self, env: &str, service: &str, what: &str) -> f64 {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let n = calls
            .entry((env.to_string(), service.to_string()))
            .or_insert(0);
        *n += 1;
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

impl Driver for SimFleet {
    fn ping<'a>(&'a self, _env: &'a Environment) -> DriverFuture<'a, ()> {
        // A ping is cheap next to an apply; modelling no latency keeps `plan` instant on
        // large simulated fleets.
        Box::pin(async { Ok(()) })
    }

    fn observe<'a>(&'a self, env: &'a Environment) -> DriverFuture<'a, LiveState> {
        Box::pin(async move {
            self.latency(&env.name, "").await;
            let state = self.lock_state();
            Ok(state
                .envs
                .get(&env.name)
                .map(|svcs| {
                    svcs.iter()
                        .map(|(k, v)| (k.clone(), v.live.clone()))
                        .collect()
                })
                .unwrap_or_default())
        })
    }

    fn apply<'a>(&'a self, env: &'a Environment, req: &'a ApplyRequest) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if matches(&self.hang, env) {
                // Models an apply that never answers, so step timeouts can be exercised.
                std::future::pending::<()>().await;
            }
            self.latency(&env.name, &req.service).await;
            if matches(&self.broken, env) {
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
            let mut state = self.lock_state();
            let svcs = state.envs.entry(env.name.clone()).or_default();
            match svcs.get_mut(&req.service) {
                // Idempotent: the same revision applied again changes nothing.
                Some(s) if s.live.revision == req.revision => {}
                Some(s) => {
                    s.live = live_of(req);
                    s.applies += 1;
                }
                None => {
                    svcs.insert(
                        req.service.clone(),
                        SimService {
                            live: live_of(req),
                            applies: 1,
                        },
                    );
                }
            }
            Ok(())
        })
    }

    fn health<'a>(&'a self, env: &'a Environment, service: &'a str) -> DriverFuture<'a, Health> {
        Box::pin(async move {
            let state = self.lock_state();
            let running = state.envs.get(&env.name).and_then(|s| s.get(service));
            Ok(match running {
                Some(_) => Health::Healthy,
                None => Health::Unhealthy(format!("{service} is not running")),
            })
        })
    }
}

fn live_of(req: &ApplyRequest) -> LiveService {
    LiveService {
        version: req.version.clone(),
        config: req.config.clone(),
        revision: req.revision.clone(),
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
        }
    }

    fn release(broken: &str) -> Release {
        Release {
            name: "r".into(),
            file: "releases/r.toml".into(),
            services: Default::default(),
            config: Default::default(),
            sim_broken: Some(broken.parse().unwrap()),
            sim_hang: None,
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
        let ok = env("b", "eu");
        fleet.apply(&ok, &req("r1")).await.unwrap();
        fleet.apply(&ok, &req("r1")).await.unwrap();
        assert_eq!(fleet.snapshot().envs["b"]["api"].applies, 1);
        assert_eq!(fleet.health(&ok, "api").await.unwrap(), Health::Healthy);
    }

    #[tokio::test]
    async fn state_survives_a_save_and_reopen_and_corruption_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.json");
        let cfg = SimConfig {
            success_rate: 1.0,
            ..SimConfig::default()
        };
        let fleet = SimFleet::open(cfg.clone(), None, &path).unwrap();
        fleet.apply(&env("b", "eu"), &req("r1")).await.unwrap();
        fleet.save().unwrap();
        let again = SimFleet::open(cfg.clone(), None, &path).unwrap();
        let live = again.observe(&env("b", "eu")).await.unwrap();
        assert_eq!(live["api"].revision, "r1");

        std::fs::write(&path, b"{ not json").unwrap();
        let err = SimFleet::open(cfg, None, &path).err().unwrap();
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"{ not json");
    }
}
