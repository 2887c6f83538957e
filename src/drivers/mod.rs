//! How flotilla reaches environments. The engine is the only caller.

pub mod exec;
pub mod http;
pub mod live_doc;
pub mod sim;
pub mod text;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::intent::Environment;

/// What a driver needs besides the intent: where the intent repo is (the exec driver runs
/// its commands there) and the state database (the simulated fleet keeps its world there;
/// without one it lives in memory).
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub repo: &'a std::path::Path,
    pub state: Option<&'a std::path::Path>,
}

impl Place<'_> {
    /// What names this place for the commands it starts: the state database's path, in
    /// full, so two spellings of it agree.
    pub fn key(&self) -> String {
        let path = self.state.unwrap_or(self.repo);
        std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string()
    }
}

/// Cleans up what a dead engine of the same place left running (exec commands that would
/// go on applying beside this engine). Only the engine that holds the lease calls this,
/// before it observes anything.
pub fn after_crash(intent: &crate::intent::Intent, place: Place) {
    let checks = intent.strategy.waves.iter().any(|w| w.check.is_some());
    if intent.driver.kind == crate::intent::DriverKind::Exec || checks {
        exec::kill_orphans(&place.key());
    }
}

/// The driver the intent asks for, for a rollout of `release`: the one place drivers are
/// built. A new driver is a new file in this folder and one line here.
pub fn open(
    intent: &crate::intent::Intent,
    release: Option<&crate::intent::Release>,
    place: Place,
) -> Result<std::sync::Arc<dyn Driver>, String> {
    use crate::intent::DriverKind;
    Ok(match intent.driver.kind {
        DriverKind::Sim => match place.state {
            Some(state) => std::sync::Arc::new(
                sim::SimFleet::open(intent.driver.sim.clone(), release, state)
                    .map_err(|e| e.to_string())?,
            ),
            None => std::sync::Arc::new(sim::SimFleet::new(intent.driver.sim.clone(), release)),
        },
        DriverKind::Exec => std::sync::Arc::new(exec::ExecDriver::new(
            intent.driver.exec.clone().unwrap_or_default(),
            place.repo,
            &place.key(),
        )),
        DriverKind::Http => std::sync::Arc::new(http::HttpDriver::new(
            &intent.driver.http.clone().unwrap_or_default(),
            place.repo,
        )?),
    })
}

/// A problem in a driver's settings: where (a byte range of the file), what, and what
/// would be right.
pub type Problem = (std::ops::Range<usize>, String, String);

/// A driver call in flight. Boxed so drivers can be chosen at run time (`dyn Driver`).
pub type DriverFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DriverError>> + Send + 'a>>;

/// Reaches environments to observe and change what they run.
pub trait Driver: Send + Sync {
    /// Is the environment reachable at all (a preflight check)?
    fn ping<'a>(&'a self, env: &'a Environment) -> DriverFuture<'a, ()>;
    /// What the environment runs now, per service.
    fn observe<'a>(&'a self, env: &'a Environment) -> DriverFuture<'a, LiveState>;
    /// Make one service run a version and config; idempotent by `revision`. Returns what
    /// the apply printed, if anything (it goes into the step's events).
    fn apply<'a>(
        &'a self,
        env: &'a Environment,
        req: &'a ApplyRequest,
    ) -> DriverFuture<'a, Printed>;
    /// Whether one service is healthy after an apply.
    fn health<'a>(&'a self, env: &'a Environment, service: &'a str) -> DriverFuture<'a, Health>;
}

/// One service's desired version and config in one environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub service: String,
    pub version: String,
    pub config: toml::Table,
    pub revision: String,
    /// The dotted keys of `config` that hold secrets: a driver that keeps config (the
    /// simulator, an agent) stores them sealed, and never logs them.
    #[serde(default)]
    pub secrets: Vec<String>,
}

impl ApplyRequest {
    /// What the service runs once this is applied, as a driver that keeps state keeps it:
    /// secrets sealed, never in clear.
    pub fn sealed_live(&self) -> LiveService {
        LiveService {
            version: self.version.clone(),
            config: crate::secrets::seal(&self.config, &self.secrets),
            revision: self.revision.clone(),
        }
    }

    /// Whether `live` is what this request applies: same revision, version and config (a
    /// sealed secret equal to the value it seals). Same revision alone is not enough after
    /// an out-of-band change, which edits what runs without a new revision.
    pub fn runs_in(&self, live: &LiveService) -> bool {
        let (want, have) = (
            crate::keypath::leaves(&self.config),
            crate::keypath::leaves(&live.config),
        );
        live.revision == self.revision
            && live.version == self.version
            && want.len() == have.len()
            && want.iter().all(|(k, v)| {
                have.get(k)
                    .is_some_and(|h| crate::secrets::same_secret(v, h))
            })
    }
}

/// What one service runs, as a driver sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveService {
    pub version: String,
    pub config: toml::Table,
    pub revision: String,
}

/// Live state of every service of an environment that runs anything.
pub type LiveState = BTreeMap<String, LiveService>;

/// Whether a service works after an apply, and if not why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy(String),
}

/// What a command printed: the last few KiB of its stdout and stderr, secrets masked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Printed {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
}

impl Printed {
    /// Nothing was printed (or the driver runs no commands).
    pub fn is_empty(&self) -> bool {
        self.stdout.is_empty() && self.stderr.is_empty()
    }

    /// As an event keeps it: boxed (events stay small), and nothing when empty.
    pub fn for_event(self) -> Option<Box<Printed>> {
        (!self.is_empty()).then(|| Box::new(self))
    }
}

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// Might work next time (network blip, busy API server).
    Transient,
    /// Will fail again (bad config, image not found): do not retry.
    Permanent,
    /// No answer in time; the outcome is unknown, so it is retried like a transient error.
    Timeout,
}

/// A failed driver call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DriverError {
    pub class: ErrorClass,
    pub message: String,
    /// What the failed command printed, for the step's events.
    pub output: Printed,
}

impl DriverError {
    /// An error worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        DriverError {
            class: ErrorClass::Transient,
            message: message.into(),
            output: Printed::default(),
        }
    }

    /// An error that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        DriverError {
            class: ErrorClass::Permanent,
            message: message.into(),
            output: Printed::default(),
        }
    }

    /// The same error, with what the command printed.
    pub fn with_output(mut self, output: Printed) -> Self {
        self.output = output;
        self
    }
}
