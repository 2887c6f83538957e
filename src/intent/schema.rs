//! The TOML files of an intent repo exactly as written, before validation.
//!
//! Every struct denies unknown keys so a typo is an error that names the key, and the values we
//! check later keep their spans so those errors can point at them too.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `flotilla.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    pub fleet: FleetSection,
    #[serde(default)]
    pub driver: Option<DriverSection>,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceDef>,
    #[serde(default)]
    pub strategy: Option<Spanned<StrategyDef>>,
    #[serde(default)]
    pub policy: Option<PolicyDef>,
    #[serde(default)]
    pub notify: Vec<NotifyDef>,
}

/// The operator's own config file (`config.toml` in the platform config dir): targets told
/// of the rollouts this operator runs, beside the intent's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalFile {
    #[serde(default)]
    pub notify: Vec<NotifyDef>,
}

/// `[[notify]]`: where to tell of events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyDef {
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// The variable holding the URL, when the URL is a secret.
    #[serde(default)]
    pub url_env: Option<Spanned<String>>,
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    #[serde(default)]
    pub on: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub select: Option<Spanned<String>>,
    #[serde(default)]
    pub secret_env: Option<Spanned<String>>,
}

/// `[fleet]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    pub name: Spanned<String>,
}

/// `[driver]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverSection {
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
    #[serde(default)]
    pub sim: Option<crate::drivers::sim::SimDef>,
    /// The exec driver's commands (its own type: the driver owns its settings).
    #[serde(default)]
    pub exec: Option<crate::drivers::exec::ExecDef>,
    /// The http driver's settings (its own type).
    #[serde(default)]
    pub http: Option<crate::drivers::http::HttpDef>,
}

/// `[[service]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    pub name: Spanned<String>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub rollback: Option<Spanned<String>>,
    /// Config keys of this service that hold secrets (dotted, `*` for one segment).
    #[serde(default)]
    pub secret_keys: Vec<Spanned<String>>,
    /// Config keys drift never reports (something else owns them).
    #[serde(default)]
    pub drift_ignore: Vec<Spanned<String>>,
    /// This service's own retries, backoff and timeouts, over `[strategy]`'s.
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub backoff: Option<Spanned<String>>,
    #[serde(default)]
    pub step_timeout: Option<Spanned<String>>,
    /// How long the health check after an apply may take (default: what is left of the
    /// step timeout).
    #[serde(default)]
    pub health_timeout: Option<Spanned<String>>,
    /// The lowest version this service can be upgraded from in one step.
    #[serde(default)]
    pub min_from: Option<Spanned<String>>,
}

/// `[strategy]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyDef {
    #[serde(default)]
    pub max_parallel: Option<Spanned<u64>>,
    #[serde(default)]
    pub retries: Option<u32>,
    /// Times an environment that failed after its retries goes to the back of its wave.
    #[serde(default)]
    pub requeue_failed: Option<Spanned<u32>>,
    #[serde(default)]
    pub backoff: Option<Spanned<String>>,
    #[serde(default)]
    pub step_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub max_failures: Option<Spanned<Amount>>,
    /// Seed of the backoff jitter (default: derived from the release's name).
    #[serde(default)]
    pub seed: Option<u64>,
    /// The chance one step succeeds, for risk until the fleet has a history.
    #[serde(default)]
    pub expected_success_rate: Option<Spanned<f64>>,
    #[serde(default)]
    pub wave: Vec<WaveDef>,
}

/// A count (`3`) or a share (`"5%"`), as budgets and `take` accept.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    Count(i64),
    Text(String),
}

/// `[[strategy.wave]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveDef {
    pub name: Spanned<String>,
    pub select: Spanned<String>,
    /// `"approval"`, `"healthy"`, `"auto"`, or a list of them (`["healthy", "approval"]`).
    #[serde(default)]
    pub gate: Option<Spanned<GateDef>>,
    #[serde(default)]
    pub approvers: Option<Spanned<u32>>,
    /// A command that must exit 0 before the wave starts.
    #[serde(default)]
    pub check: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub check_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub check_retries: Option<Spanned<u32>>,
    #[serde(default)]
    pub soak: Option<Spanned<String>>,
    #[serde(default)]
    pub failure_budget: Option<Spanned<Amount>>,
    #[serde(default)]
    pub take: Option<Spanned<Amount>>,
    #[serde(default)]
    pub spread_by: Vec<String>,
    /// `required`: an approval of this wave must say why.
    #[serde(default)]
    pub note: Option<Spanned<String>>,
}

/// A wave's `gate`: one kind or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum GateDef {
    One(String),
    Many(Vec<String>),
}

impl GateDef {
    pub fn kinds(&self) -> Vec<&str> {
        match self {
            GateDef::One(k) => vec![k.as_str()],
            GateDef::Many(ks) => ks.iter().map(String::as_str).collect(),
        }
    }
}

/// `[policy]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDef {
    #[serde(default)]
    pub max_wave_fraction: Option<Spanned<f64>>,
    /// The highest chance, with retries, that a wave fails somewhere.
    #[serde(default)]
    pub max_wave_risk: Option<Spanned<f64>>,
    #[serde(default)]
    pub require_approval: Option<Spanned<String>>,
    #[serde(default = "yes")]
    pub block_on_drift: bool,
    #[serde(default)]
    pub freeze: Vec<FreezeDef>,
}

fn yes() -> bool {
    true
}

/// `[[policy.freeze]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeDef {
    pub name: Spanned<String>,
    #[serde(default)]
    pub start: Option<Spanned<String>>,
    #[serde(default)]
    pub end: Option<Spanned<String>>,
    /// A weekly window, `sat 00:00-24:00`, in `timezone`.
    #[serde(default)]
    pub weekly: Option<Spanned<String>>,
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub select: Option<Spanned<String>>,
}

/// `environments/NAME.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvFile {
    #[serde(default)]
    pub labels: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub config: Option<Spanned<toml::Table>>,
}

/// `emergency/ENV.toml`: written by `flotilla adopt`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyFile {
    #[serde(default)]
    pub services: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    pub config: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub adopted: Option<String>,
    #[serde(default)]
    pub by: Option<String>,
}

/// `overlays/NAME.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayFile {
    pub select: Spanned<String>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub config: Option<Spanned<toml::Table>>,
}

/// `releases/NAME.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseFile {
    pub services: Spanned<BTreeMap<Spanned<String>, Spanned<String>>>,
    #[serde(default)]
    pub config: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub sim: Option<crate::drivers::sim::ReleaseSimDef>,
}
