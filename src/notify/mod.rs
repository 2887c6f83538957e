//! Notifications: `[[notify]]` targets are told of the events they ask for. Each
//! notification is queued in the state database in the same transaction as its event
//! ([`outbox`]), so none is lost to a crash, and sent by a background task ([`send`]) with
//! retries, backoff and a timeout, at least once, under an idempotency key. Delivery never
//! blocks or fails the rollout. URLs may be secret (`url_env`): they are read when sending
//! and never written anywhere.

pub mod outbox;
pub mod personal;
pub mod send;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::engine::{Event, EventKind};
use crate::intent::Intent;
use crate::selector::Selector;

/// The events a target hears of when it does not say: gates, halts and the end.
pub const DEFAULT_ON: [&str; 3] = ["gate_waiting", "rollout_halted", "rollout_completed"];

/// How a notification's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"fleet", "release", "rollout", "text", "event": {...}}`.
    Json,
    /// A Slack incoming webhook's `{"text": ...}`.
    Slack,
}

/// Where a target's URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Url {
    /// Written in the intent.
    Given(String),
    /// Read from this environment variable when sending (a secret URL).
    Env(String),
}

/// One `[[notify]]` table, checked.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub url: Url,
    pub format: Format,
    /// Event kinds it hears of.
    pub on: Vec<String>,
    /// Only events about these environments (events about no environment always).
    pub select: Option<Selector>,
    /// The variable holding the HMAC-SHA256 key each body is signed with.
    pub secret_env: Option<String>,
}

impl Target {
    /// The URL to send to; for `url_env`, read now.
    pub fn url(&self) -> Result<String, String> {
        match &self.url {
            Url::Given(u) => Ok(u.clone()),
            Url::Env(var) => std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    format!(
                        "{var} is not set (the URL of notify target `{}`)",
                        self.name
                    )
                }),
        }
    }
}

/// The intent's targets, then the operator's own; one named like an intent's target is
/// left out, with a notice, since queued notifications find their target by name.
/// The notice is given once a process: a console's drift rescans build routes again and again.
fn with_personal(intent: &[Target], personal: &[Target]) -> Vec<Target> {
    static TOLD: std::sync::Once = std::sync::Once::new();
    let mut targets = intent.to_vec();
    for t in personal {
        if intent.iter().any(|i| i.name == t.name) {
            TOLD.call_once(|| crate::notice::say(format!(
                "warning: your notify target `{}` has the name of one in flotilla.toml; yours is not used (rename it in {})",
                t.name,
                personal::path().map_or("your config".into(), |p| p.display().to_string()),
            )));
        } else {
            targets.push(t.clone());
        }
    }
    targets
}

/// The targets of a rollout and what decides which events reach them.
pub struct Routes {
    pub targets: Vec<Target>,
    pub fleet: String,
    pub release: String,
    labels: HashMap<String, BTreeMap<String, String>>,
    /// Each wave's environments, when the plan is known: a selector takes a wave's events
    /// when one of them matches.
    waves: HashMap<String, Vec<String>>,
}

impl Routes {
    /// The routes of `intent`'s targets and the operator's own ([`personal`]) for a
    /// rollout of `release`; None without targets.
    pub fn new(intent: &Intent, release: &str) -> Option<Arc<Routes>> {
        let targets = with_personal(&intent.notify, personal::targets());
        if targets.is_empty() {
            return None;
        }
        Some(Arc::new(Routes {
            targets,
            fleet: intent.fleet.clone(),
            release: release.to_string(),
            labels: intent
                .environments
                .iter()
                .map(|e| (e.name.clone(), e.labels.clone()))
                .collect(),
            waves: HashMap::new(),
        }))
    }

    /// The routes of a rollout of `plan`: wave-level events reach a target with a
    /// selector only for the waves with an environment it selects.
    pub fn for_plan(intent: &Intent, plan: &crate::plan::Plan) -> Option<Arc<Routes>> {
        let routes = Routes::new(intent, &plan.release)?;
        let mut routes = Arc::try_unwrap(routes).ok()?;
        routes.waves = plan
            .waves
            .iter()
            .map(|w| (w.name.clone(), w.envs.clone()))
            .collect();
        Some(Arc::new(routes))
    }

    /// The targets `event` goes to.
    pub fn route<'a>(&'a self, event: &'a Event) -> impl Iterator<Item = &'a Target> + 'a {
        let kind = event.kind.name();
        let (wave, env, ..) = event.kind.subject();
        let selects =
            |sel: &Selector, env: &str| self.labels.get(env).is_some_and(|l| sel.matches(l));
        self.targets.iter().filter(move |t| {
            t.on.iter().any(|k| k == kind)
                && match (&t.select, env, wave) {
                    (None, ..) => true,
                    (Some(sel), Some(env), _) => selects(sel, env),
                    // About a wave: when it holds an environment the target selects.
                    (Some(sel), None, Some(wave)) => self
                        .waves
                        .get(wave)
                        .is_none_or(|envs| envs.iter().any(|e| selects(sel, e))),
                    // About the whole rollout (its end, a pause): always.
                    (Some(_), None, None) => true,
                }
        })
    }

    /// The target called `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The body of a test notification (`flotilla notify test`) sent by `by`.
    pub fn test_body(&self, target: &Target, by: &str) -> String {
        let text = format!(
            "[{}] a test notification from `flotilla notify test` by {by}",
            self.fleet
        );
        match target.format {
            Format::Slack => serde_json::json!({ "text": text }),
            Format::Json => serde_json::json!({
                "fleet": self.fleet,
                "text": text,
                "event": { "kind": "notify_test", "by": by },
            }),
        }
        .to_string()
    }

    /// The body of `event`'s notification for `target`.
    pub fn body(&self, target: &Target, rollout: i64, event: &Event) -> String {
        let text = format!(
            "[{}] {}: {}",
            self.fleet,
            self.release,
            crate::engine::text::event_line(&event.kind)
                .unwrap_or_else(|| event.kind.name().into())
        );
        let value = match target.format {
            Format::Slack => serde_json::json!({ "text": text }),
            Format::Json => serde_json::json!({
                "fleet": self.fleet,
                "release": self.release,
                "rollout": rollout,
                "text": text,
                "event": event,
            }),
        };
        value.to_string()
    }
}

/// Every event kind's name, for checking `on` (a test keeps it in step with the events).
pub const KINDS: &[&str] = &[
    "rollout_started",
    "wave_started",
    "gate_waiting",
    "check_passed",
    "check_retrying",
    "check_failed",
    "gate_approved",
    "env_started",
    "step_started",
    "step_retrying",
    "step_succeeded",
    "step_recovered",
    "step_failed",
    "step_blocked",
    "env_retried",
    "env_skipped",
    "rollback_requested",
    "rollback_started",
    "step_rolled_back",
    "rollback_failed",
    "env_rolled_back",
    "wave_completed",
    "rollout_paused",
    "rollout_resumed",
    "rollout_halted",
    "rollout_aborted",
    "abort_requested",
    "rollout_interrupted",
    "rollout_completed",
    "rollout_held",
    "env_held",
    "env_released",
    "lease_taken_over",
    "check_overridden",
    "command_received",
    "command_rejected",
    "drift_detected",
    "drift_cleared",
    "drift_accepted",
    "notification_failed",
];

/// Whether an event of this kind is about notifications themselves: never notified, so a
/// failing target cannot feed itself.
pub fn about_notifications(kind: &EventKind) -> bool {
    matches!(kind, EventKind::NotificationFailed { .. })
}
