//! The validated intent: plain data the planner, engine and views work from.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::freeze::Freeze;
use crate::selector::Selector;

/// Everything the intent repo says, at one commit.
#[derive(Debug, Clone)]
pub struct Intent {
    pub revision: Revision,
    pub fleet: String,
    pub driver: DriverConfig,
    /// In file order; dependencies are validated to exist and be acyclic.
    pub services: Vec<Service>,
    pub strategy: Strategy,
    pub policy: Policy,
    /// Sorted by name.
    pub environments: Vec<Environment>,
    /// Sorted by priority, then file name: later entries win.
    pub overlays: Vec<Overlay>,
    /// Sorted oldest to newest by version order of their names.
    pub releases: Vec<Release>,
    /// Emergency layers (`emergency/ENV.toml`), sorted by environment.
    pub emergencies: Vec<Emergency>,
    /// Where events are told (`[[notify]]`).
    pub notify: Vec<crate::notify::Target>,
}

/// Live values adopted into Git for one environment (`flotilla adopt`): the highest layer,
/// above the environment's own file, until someone folds them into an overlay or the
/// environment file and removes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Emergency {
    pub env: String,
    pub file: String,
    /// Versions that replace the release's, per service.
    pub versions: BTreeMap<String, String>,
    /// Config, per service as in an environment file.
    pub config: toml::Table,
    /// When it was adopted (RFC 3339), and by whom.
    pub adopted: Option<String>,
    pub by: Option<String>,
}

impl Intent {
    /// The programs in the repo that a rollout runs (the exec driver's, the waves'
    /// checks), repo-relative: they must match the commit the rollout runs at.
    pub fn repo_programs(&self) -> Vec<String> {
        let mut argvs: Vec<&Vec<String>> = match &self.driver.exec {
            Some(exec) if self.driver.kind == DriverKind::Exec => exec.commands(),
            _ => Vec::new(),
        };
        argvs.extend(
            self.strategy
                .waves
                .iter()
                .filter_map(|w| w.check.as_ref().map(|c| &c.argv)),
        );
        let mut programs: Vec<String> = argvs
            .into_iter()
            .filter_map(|a| crate::drivers::exec::repo_program(a))
            .collect();
        programs.sort();
        programs.dedup();
        programs
    }

    /// The emergency layer of environment `env`, if it has one. (The loader sorts them by
    /// environment, as it does the environments.)
    pub fn emergency(&self, env: &str) -> Option<&Emergency> {
        self.emergencies
            .binary_search_by(|e| e.env.as_str().cmp(env))
            .ok()
            .map(|i| &self.emergencies[i])
    }

    /// The release called `name`, if the intent has it.
    pub fn release(&self, name: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.name == name)
    }

    /// The environment called `name`, if the intent has it.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.environments[i])
    }
}

/// The Git commit the intent was read from.
#[derive(Debug, Clone, Serialize)]
pub struct Revision {
    pub commit: String,
    pub short: String,
    pub subject: String,
}

/// Which driver reaches the environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Sim,
    Exec,
    Http,
}

/// The `[driver]` settings.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub kind: DriverKind,
    /// `[driver.sim]`: the simulator's own settings, parsed by it.
    pub sim: crate::drivers::sim::SimConfig,
    /// `[driver.exec]`, checked; set whenever the table is there.
    pub exec: Option<crate::drivers::exec::ExecConfig>,
    /// `[driver.http]`, checked; set whenever the table is there.
    pub http: Option<crate::drivers::http::HttpConfig>,
}

/// A deployable unit that runs in every environment.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub depends_on: Vec<String>,
    /// Never rolled back automatically (schema migrations and the like).
    pub forward_only: bool,
    /// Config keys that hold secrets, besides those named like one (see [`crate::secrets`]):
    /// masked wherever flotilla shows config, sealed wherever it stores it.
    pub secret_keys: Vec<String>,
    /// Config keys something else owns (an autoscaler's `replicas`): never reported as
    /// drift. Dotted, `*` for one segment.
    pub drift_ignore: Vec<String>,
    /// Its own retries, backoff and timeouts where it sets them, over `[strategy]`'s.
    pub strategy: ServiceStrategy,
    /// The lowest version it can be upgraded from in one step (`versions.upgrade-path`).
    pub min_from: Option<String>,
}

/// A service's own step settings; None: the `[strategy]`'s.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServiceStrategy {
    pub retries: Option<u32>,
    pub backoff: Option<Duration>,
    pub step_timeout: Option<Duration>,
    /// How long the health check after an apply may take (within the step timeout).
    pub health_timeout: Option<Duration>,
}

/// A count of environments, or a share of some total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Count(u64),
    Percent(f64),
}

impl Amount {
    /// As a budget: how many failures of `total` environments are allowed (rounds down, so
    /// "5%" of 10 environments allows none).
    pub fn allowed(&self, total: usize) -> usize {
        match *self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) => ((p / 100.0) * total as f64 + 1e-9).floor() as usize,
        }
    }

    /// As a sample size out of `total` candidates (rounds up, at least one of a non-empty set).
    pub fn take(&self, total: usize) -> usize {
        let n = match *self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) if p > 0.0 => {
                ((p / 100.0) * total as f64 - 1e-9).ceil().max(1.0) as usize
            }
            Amount::Percent(_) => 0,
        };
        n.min(total)
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// What must hold before a wave starts, besides soak time and a healthy previous wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Gate {
    Auto,
    /// Manual approval by this many distinct people.
    Approval {
        approvers: u32,
    },
}

impl Gate {
    /// How many distinct approvals the gate takes.
    pub fn approvers(self) -> usize {
        match self {
            Gate::Approval { approvers } => approvers as usize,
            Gate::Auto => 0,
        }
    }
}

/// A command that must exit 0 before a wave starts (`check = ["./smoke.sh", "{wave}"]`),
/// tried `retries` more times `backoff` apart, each try within `timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaveCheck {
    pub argv: Vec<String>,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    pub retries: u32,
    #[serde(serialize_with = "ser_duration")]
    pub backoff: Duration,
}

impl WaveCheck {
    /// The command as a user wrote it, for messages: `./smoke.sh {wave}`.
    pub fn shown(&self) -> String {
        self.argv.join(" ")
    }
}

/// A duration as people write it (`1m 30s`), for plan JSON.
pub fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// How releases roll out: parallelism, retries, timeouts, budgets and waves.
#[derive(Debug, Clone)]
pub struct Strategy {
    pub max_parallel: usize,
    pub retries: u32,
    /// Times an environment that failed after its retries (transient errors only) goes to
    /// the back of its wave to be tried again after the others.
    pub requeue_failed: u32,
    pub backoff: Duration,
    pub step_timeout: Duration,
    /// Failure budget of the rollout as a whole.
    pub max_failures: Amount,
    pub waves: Vec<WaveSpec>,
    /// True when `[strategy]` was missing and the safe defaults apply.
    pub defaulted: bool,
    /// Seed of the backoff jitter; None: derived from the release's name.
    pub seed: Option<u64>,
    /// The chance one step succeeds first time, for risk until the fleet has history.
    pub expected_success_rate: f64,
}

/// One configured wave: which environments, behind which gate, with which budget.
#[derive(Debug, Clone)]
pub struct WaveSpec {
    pub name: String,
    pub select: Selector,
    pub gate: Gate,
    /// How long the previous wave must have been done before this one starts.
    pub soak: Duration,
    pub failure_budget: Amount,
    /// Sample only this many of the unassigned environments that match.
    pub take: Option<Amount>,
    /// Labels the sample is stratified by.
    pub spread_by: Vec<String>,
    /// An approval of this wave must come with a note (`note = "required"`).
    pub note_required: bool,
    /// `gate = "healthy"`: the environments of the earlier waves must still be healthy
    /// (asked again through the driver) before the wave starts.
    pub recheck_health: bool,
    /// A command that must pass before the wave starts.
    pub check: Option<WaveCheck>,
}

/// What no rollout may do: oversized waves, ungated protected environments, freezes.
#[derive(Debug, Clone)]
pub struct Policy {
    pub max_wave_fraction: Option<f64>,
    /// Waves whose chance of at least one failure (with retries) is above this fail
    /// `policy.risk`.
    pub max_wave_risk: Option<f64>,
    pub require_approval: Option<Selector>,
    /// A drifted environment fails the preflight (default: yes).
    pub block_on_drift: bool,
    pub freezes: Vec<Freeze>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_wave_fraction: None,
            max_wave_risk: None,
            require_approval: None,
            block_on_drift: true,
            freezes: Vec::new(),
        }
    }
}

/// One single-tenant environment.
#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    /// Includes the implicit `name` label.
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub config: toml::Table,
    pub file: String,
}

/// Layered configuration for the environments its selector matches.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub name: String,
    pub file: String,
    pub select: Selector,
    pub priority: i64,
    pub config: toml::Table,
}

/// A version per service plus release-level config.
#[derive(Debug, Clone)]
pub struct Release {
    pub name: String,
    pub file: String,
    pub services: BTreeMap<String, String>,
    pub config: toml::Table,
    /// The release's `[sim]` table: how the simulated fleet misbehaves for it.
    pub sim: crate::drivers::sim::SimRelease,
}
