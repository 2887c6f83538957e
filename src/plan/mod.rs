//! Turning an intent and a release into a plan: waves, service order, risk and preflight
//! checks. Planning is pure and changes nothing.

pub mod risk;
pub mod sample;
pub mod suggest;

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::intent::load::REMAINING_WAVE;
use crate::intent::{ser_duration, Amount, Gate, Intent, Revision, WaveCheck, WaveSpec, Window};
pub use risk::{History, Risk};

/// What a rollout of one release will do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub fleet: String,
    pub release: String,
    pub revision: Revision,
    pub waves: Vec<PlannedWave>,
    /// Services by dependency level: every service's dependencies are in earlier levels, and
    /// services in one level may run in parallel within an environment.
    pub service_levels: Vec<Vec<String>>,
    pub max_parallel: usize,
    pub retries: u32,
    /// Times a failed environment is tried again at the back of its wave.
    pub requeue_failed: u32,
    #[serde(serialize_with = "ser_duration")]
    pub backoff: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub step_timeout: Duration,
    /// Failures the rollout as a whole tolerates before it halts.
    pub max_failures: usize,
    /// Whether `[strategy]` was missing and the safe defaults were used.
    pub default_strategy: bool,
    /// Where the per-step success chance used for risk comes from.
    pub risk_basis: String,
    /// Seed of the backoff jitter: `[strategy] seed`, or derived from the release's name.
    pub seed: u64,
    pub checks: Vec<Check>,
}

impl Plan {
    /// How many environments the plan touches.
    pub fn env_count(&self) -> usize {
        self.waves.iter().map(|w| w.envs.len()).sum()
    }

    /// True when a failed check forbids starting.
    pub fn blocked(&self) -> bool {
        self.checks.iter().any(|c| c.status == CheckStatus::Fail)
    }
}

/// One wave of environments.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedWave {
    pub name: String,
    pub envs: Vec<String>,
    pub gate: Gate,
    /// Why the gate is stricter than configured (a policy), if it is.
    pub gate_reason: Option<String>,
    /// The wave touches environments `[policy] require_approval` protects: its gate needs
    /// an approval given for it by name (`--approve-all` does not give it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// Its approvals must say why (`note = "required"`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub note_required: bool,
    /// The earlier waves' environments are asked for their health again before it starts.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recheck_health: bool,
    /// A command that must pass before it starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<WaveCheck>,
    #[serde(serialize_with = "ser_duration")]
    pub soak: Duration,
    /// The budget as configured (`3`, `5%`).
    pub failure_budget: String,
    /// Failed environments the wave tolerates; one more halts the rollout.
    pub allowed_failures: usize,
    pub risk: Risk,
}

/// The preflight checks, by their stable ids, in the order a checklist shows them.
pub const CHECKS: [&str; 12] = [
    "intent.valid",
    "deps.acyclic",
    "waves.cover",
    "policy.freeze",
    "policy.blast-radius",
    "policy.approval",
    "policy.risk",
    "strategy.defaults",
    "targets.reachable",
    "versions.upgrade-path",
    "deps.healthy",
    "drift.clean",
];

/// Checks no `--override` can set aside: without them there is no plan to speak of.
pub const NOT_OVERRIDABLE: [&str; 3] = ["intent.valid", "deps.acyclic", "waves.cover"];

/// The outcome of one preflight check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its stable id (one of [`CHECKS`]).
    pub name: String,
    pub status: CheckStatus,
    pub detail: String,
    /// A failure someone set aside, with why: who and the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overridden: Option<String>,
}

/// A check's verdict; any `Fail` blocks the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

impl Plan {
    /// The checks in checklist order ([`CHECKS`]), several of one id in the order made.
    pub fn checklist(&self) -> Vec<&Check> {
        let mut out: Vec<&Check> = self.checks.iter().collect();
        out.sort_by_key(|c| {
            CHECKS
                .iter()
                .position(|id| *id == c.name)
                .unwrap_or(CHECKS.len())
        });
        out
    }
}

impl Check {
    /// A check result.
    pub fn new(name: &str, status: CheckStatus, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            overridden: None,
        }
    }
}

/// The first five of a check's list, and how many more: a detail stays one line.
pub fn first_five(items: &[String]) -> String {
    let more = items.len().saturating_sub(5);
    let mut out = items[..items.len().min(5)].join(", ");
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no release `{name}` in the intent{}", releases_hint(.known))]
    UnknownRelease { name: String, known: Vec<String> },
}

fn releases_hint(names: &[String]) -> String {
    if names.is_empty() {
        " (releases/ holds no release)".into()
    } else {
        format!(" (releases: {})", names.join(", "))
    }
}

/// Plans `release` over the intent's fleet at time `now` (freeze windows depend on it).
pub fn build(intent: &Intent, release: &str, now: SystemTime) -> Result<Plan, PlanError> {
    build_with_history(intent, release, now, None)
}

/// Like [`build`], with risk estimated from past attempts where there are any.
pub fn build_with_history(
    intent: &Intent,
    release: &str,
    now: SystemTime,
    history: Option<&History>,
) -> Result<Plan, PlanError> {
    let history = history.filter(|h| h.attempts() > 0);
    let rel = intent
        .release(release)
        .ok_or_else(|| PlanError::UnknownRelease {
            name: release.into(),
            known: intent.releases.iter().map(|r| r.name.clone()).collect(),
        })?;
    let strategy = &intent.strategy;
    let envs = &intent.environments;
    let mut assigned = vec![false; envs.len()];
    let mut waves = Vec::new();
    let step_success = strategy.expected_success_rate;
    let steps = |i: usize| env_steps(intent, history, i, step_success);

    let mut push_wave = |spec: &WaveSpec, members: Vec<usize>| {
        let mut gate = spec.gate;
        let mut gate_reason = None;
        let protected = intent
            .policy
            .require_approval
            .as_ref()
            .is_some_and(|sel| members.iter().any(|&i| sel.matches(&envs[i].labels)));
        if let (Some(sel), Gate::Auto, true) = (&intent.policy.require_approval, gate, protected) {
            gate = Gate::Approval { approvers: 1 };
            gate_reason = Some(format!("policy require_approval = \"{sel}\""));
        }
        let mut names: Vec<String> = members.iter().map(|&i| envs[i].name.clone()).collect();
        names.sort();
        let risk = Risk::of_steps(members.iter().flat_map(|&i| steps(i)));
        waves.push(PlannedWave {
            name: spec.name.clone(),
            allowed_failures: spec.failure_budget.allowed(names.len()),
            risk,
            envs: names,
            gate,
            gate_reason,
            protected,
            note_required: spec.note_required,
            recheck_health: spec.recheck_health,
            check: spec.check.clone(),
            soak: spec.soak,
            failure_budget: spec.failure_budget.to_string(),
        });
    };

    for spec in &strategy.waves {
        let candidates: Vec<usize> = (0..envs.len())
            .filter(|&i| !assigned[i] && spec.select.matches(&envs[i].labels))
            .collect();
        let members = match spec.take {
            Some(take) => sample::stratified(
                &candidates,
                take.take(candidates.len()),
                &spec.spread_by,
                envs,
                release,
            ),
            None => candidates,
        };
        for &i in &members {
            assigned[i] = true;
        }
        push_wave(spec, members);
    }
    let rest: Vec<usize> = (0..envs.len()).filter(|&i| !assigned[i]).collect();
    if !rest.is_empty() {
        let budget = strategy
            .waves
            .last()
            .map(|w| w.failure_budget)
            .unwrap_or(Amount::Count(0));
        let remaining = WaveSpec {
            name: REMAINING_WAVE.into(),
            select: crate::selector::Selector::All,
            gate: Gate::Auto,
            soak: Duration::ZERO,
            failure_budget: budget,
            take: None,
            spread_by: Vec::new(),
            note_required: false,
            recheck_health: false,
            check: None,
        };
        push_wave(&remaining, rest);
    }

    let mut plan = Plan {
        fleet: intent.fleet.clone(),
        release: rel.name.clone(),
        revision: intent.revision.clone(),
        waves,
        service_levels: service_levels(intent),
        max_parallel: strategy.max_parallel,
        retries: strategy.retries,
        requeue_failed: strategy.requeue_failed,
        backoff: strategy.backoff,
        step_timeout: strategy.step_timeout,
        max_failures: strategy.max_failures.allowed(envs.len()),
        default_strategy: strategy.defaulted,
        risk_basis: match history {
            Some(h) => format!(
                "the history of {} past attempts, with a Beta prior of mean {step_success} worth {} attempts",
                h.attempts(),
                risk::PRIOR_WEIGHT
            ),
            None => format!(
                "expected_success_rate {step_success} per attempt (no history yet)"
            ),
        },
        seed: strategy
            .seed
            .unwrap_or_else(|| crate::hash::stable_hash(&[rel.name.as_bytes()])),
        checks: Vec::new(),
    };
    plan.checks = policy_checks(intent, &plan, now);
    Ok(plan)
}

/// The steps of environment `i` for risk: each one's chance to succeed per attempt (from
/// history where there is some) and its service's retries.
fn env_steps<'a>(
    intent: &'a Intent,
    history: Option<&'a History>,
    i: usize,
    prior: f64,
) -> impl Iterator<Item = (f64, u32)> + 'a {
    let env = &intent.environments[i].name;
    intent.services.iter().map(move |s| {
        let p = history.map_or(prior, |h| h.step_success(env, &s.name, prior));
        (p, s.strategy.retries.unwrap_or(intent.strategy.retries))
    })
}

/// Preflight checks that need no driver: the intent, the waves, policy limits and freeze
/// windows.
fn policy_checks(intent: &Intent, plan: &Plan, now: SystemTime) -> Vec<Check> {
    // The intent loaded and its services have an order: a plan exists only then.
    let mut checks = vec![
        Check::new(
            "intent.valid",
            CheckStatus::Pass,
            format!(
                "{} environment(s), {} service(s), {} release(s)",
                intent.environments.len(),
                intent.services.len(),
                intent.releases.len()
            ),
        ),
        Check::new(
            "deps.acyclic",
            CheckStatus::Pass,
            format!(
                "services in {} dependency level(s)",
                plan.service_levels.len()
            ),
        ),
    ];
    let rest = plan
        .waves
        .iter()
        .find(|w| w.name == REMAINING_WAVE && !w.envs.is_empty());
    checks.push(match rest {
        Some(w) => Check::new(
            "waves.cover",
            CheckStatus::Warn,
            format!(
                "{} environment(s) match no wave and go last, in `{REMAINING_WAVE}`: {}",
                w.envs.len(),
                w.envs
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        None => Check::new(
            "waves.cover",
            CheckStatus::Pass,
            format!(
                "every environment is in exactly one of {} wave(s)",
                plan.waves.len()
            ),
        ),
    });
    let total = intent.environments.len().max(1);
    if intent.policy.max_wave_fraction.is_none() {
        checks.push(Check::new(
            "policy.blast-radius",
            CheckStatus::Pass,
            "no limit on a wave's share of the fleet ([policy] max_wave_fraction)",
        ));
    }
    if intent.policy.freezes.is_empty() {
        checks.push(Check::new(
            "policy.freeze",
            CheckStatus::Pass,
            "no freeze window in the intent",
        ));
    }
    if let Some(max) = intent.policy.max_wave_fraction {
        let over: Vec<String> = plan
            .waves
            .iter()
            .filter(|w| w.envs.len() as f64 / total as f64 > max + 1e-9)
            .map(|w| format!("`{}` ({} of {total})", w.name, w.envs.len()))
            .collect();
        checks.push(if over.is_empty() {
            Check::new("policy.blast-radius", CheckStatus::Pass, format!("no wave touches more than {max} of the fleet"))
        } else {
            Check::new(
                "policy.blast-radius",
                CheckStatus::Fail,
                format!("policy allows at most {max} of the fleet per wave; too large: {}; add waves or use `take`", over.join(", ")),
            )
        });
    }
    checks.push(match intent.policy.max_wave_risk {
        None => Check::new(
            "policy.risk",
            CheckStatus::Pass,
            "no limit on a wave's risk ([policy] max_wave_risk)",
        ),
        Some(max) => {
            let over: Vec<String> = plan
                .waves
                .iter()
                .filter(|w| w.risk.with_retries > max)
                .map(|w| format!("`{}` ({:.3}%)", w.name, w.risk.with_retries * 100.0))
                .collect();
            if over.is_empty() {
                Check::new(
                    "policy.risk",
                    CheckStatus::Pass,
                    format!("every wave fails somewhere with a chance under {max}"),
                )
            } else {
                Check::new(
                    "policy.risk",
                    CheckStatus::Fail,
                    format!(
                        "policy allows a chance of at most {max} that a wave fails somewhere; above it: {}; `flotilla plan {} --suggest` proposes smaller waves",
                        over.join(", "),
                        plan.release
                    ),
                )
            }
        }
    });
    for freeze in &intent.policy.freezes {
        let hit = freeze.covers(intent, plan.waves.iter().flat_map(|w| &w.envs));
        let when = freeze.describe();
        let name = &freeze.name;
        let stamp = |t| humantime::format_rfc3339_seconds(t);
        checks.push(match (freeze.in_force(now), freeze.next_start(now)) {
            _ if hit == 0 => Check::new(
                "policy.freeze",
                CheckStatus::Pass,
                format!("freeze `{name}` ({when}) covers no environment of this plan"),
            ),
            (Some(until), _) => Check::new(
                "policy.freeze",
                CheckStatus::Fail,
                format!("freeze `{name}` ({when}) is in force until {} and covers {hit} environment(s) of this plan", stamp(until)),
            ),
            (None, Some(next)) if matches!(freeze.window, Window::Between { .. }) => Check::new(
                "policy.freeze",
                CheckStatus::Warn,
                format!("freeze `{name}` starts at {}: a wave due then waits for its end", stamp(next)),
            ),
            (None, Some(next)) => Check::new(
                "policy.freeze",
                CheckStatus::Pass,
                format!("freeze `{name}` ({when}) is not in force; next from {}, and a wave due then waits for its end", stamp(next)),
            ),
            (None, None) => Check::new(
                "policy.freeze",
                CheckStatus::Pass,
                format!("freeze `{name}` ({when}) is over"),
            ),
        });
    }
    let protected: Vec<&str> = plan
        .waves
        .iter()
        .filter(|w| w.protected)
        .map(|w| w.name.as_str())
        .collect();
    checks.push(match &intent.policy.require_approval {
        None => Check::new(
            "policy.approval",
            CheckStatus::Pass,
            "no environments need an approval by policy ([policy] require_approval)",
        ),
        Some(sel) => Check::new(
            "policy.approval",
            CheckStatus::Pass,
            if protected.is_empty() {
                format!("no wave touches environments matching {sel}")
            } else {
                format!(
                    "waves touching {sel} wait for an approval given by name (--approve WAVE or `flotilla approve`), not --approve-all: {}",
                    protected.join(", ")
                )
            },
        ),
    });
    checks.push(if intent.strategy.defaulted {
        Check::new(
            "strategy.defaults",
            CheckStatus::Warn,
            "flotilla.toml has no [strategy]: using the safe defaults (canary behind approval, 10%, 50%, rest)",
        )
    } else {
        Check::new(
            "strategy.defaults",
            CheckStatus::Pass,
            format!("[strategy] sets {} wave(s)", intent.strategy.waves.len()),
        )
    });
    checks
}

/// Services grouped by dependency depth, in file order within a level.
pub fn service_levels(intent: &Intent) -> Vec<Vec<String>> {
    let mut level: Vec<Option<usize>> = vec![None; intent.services.len()];
    // Validation rejected cycles, so this settles within `services.len()` passes.
    for _ in 0..=intent.services.len() {
        for (i, s) in intent.services.iter().enumerate() {
            let deps: Option<Vec<usize>> = s
                .depends_on
                .iter()
                .map(|d| {
                    intent
                        .services
                        .iter()
                        .position(|x| &x.name == d)
                        .and_then(|j| level[j])
                })
                .collect();
            if let Some(deps) = deps {
                level[i] = Some(deps.into_iter().map(|l| l + 1).max().unwrap_or(0));
            }
        }
    }
    let depth = level.iter().flatten().max().map(|m| m + 1).unwrap_or(0);
    let mut out = vec![Vec::new(); depth];
    for (i, s) in intent.services.iter().enumerate() {
        if let Some(l) = level[i] {
            out[l].push(s.name.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::load::parse;
    use crate::intent::source::SourceFile;

    fn intent(strategy: &str, policy: &str, envs: &[(&str, &str)]) -> Intent {
        let fleet = format!(
            "[fleet]\nname = \"t\"\n[[service]]\nname = \"db\"\n[[service]]\nname = \"api\"\ndepends_on = [\"db\"]\n[[service]]\nname = \"jobs\"\ndepends_on = [\"db\"]\n{strategy}\n{policy}\n"
        );
        let mut files = vec![SourceFile {
            path: "flotilla.toml".into(),
            text: fleet,
        }];
        for (name, labels) in envs {
            files.push(SourceFile {
                path: format!("environments/{name}.toml"),
                text: format!("labels = {{ {labels} }}\n"),
            });
        }
        files.push(SourceFile {
            path: "releases/r.toml".into(),
            text: "[services]\ndb = \"1\"\napi = \"1\"\njobs = \"1\"\n".into(),
        });
        let rev = Revision {
            commit: "c".repeat(40),
            short: "ccccccc".into(),
            subject: "s".into(),
        };
        parse(rev, &files).map(|(i, _)| i).expect("valid")
    }

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2026-11-02T00:00:00Z").unwrap()
    }

    #[test]
    fn environments_go_to_the_first_matching_wave_and_the_rest_to_remaining() {
        let s = "[strategy]\n[[strategy.wave]]\nname = \"eu\"\nselect = \"region=eu\"\n[[strategy.wave]]\nname = \"big\"\nselect = \"tier=big\"\n";
        let i = intent(
            s,
            "",
            &[
                ("a", "region = \"eu\", tier = \"big\""),
                ("b", "region = \"us\", tier = \"big\""),
                ("c", "region = \"us\""),
            ],
        );
        let plan = build(&i, "r", now()).unwrap();
        let waves: Vec<(&str, Vec<&str>)> = plan
            .waves
            .iter()
            .map(|w| (w.name.as_str(), w.envs.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            waves,
            [
                ("eu", vec!["a"]),
                ("big", vec!["b"]),
                ("remaining", vec!["c"])
            ]
        );
        assert_eq!(plan.service_levels, [vec!["db"], vec!["api", "jobs"]]);
    }

    #[test]
    fn without_a_strategy_a_single_canary_is_gated_then_ten_and_fifty_percent() {
        let envs: Vec<(String, String)> = (0..40)
            .map(|n| (format!("e{n:02}"), format!("region = \"r{}\"", n % 4)))
            .collect();
        let refs: Vec<(&str, &str)> = envs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let plan = build(&intent("", "", &refs), "r", now()).unwrap();
        let sizes: Vec<usize> = plan.waves.iter().map(|w| w.envs.len()).collect();
        assert_eq!(sizes, [1, 4, 20, 15]);
        assert_eq!(plan.waves[0].gate, Gate::Approval { approvers: 1 });
        assert_eq!(plan.waves[0].allowed_failures, 0);
        assert!(plan.default_strategy);
        assert!(plan
            .checks
            .iter()
            .any(|c| c.name == "strategy.defaults" && c.status == CheckStatus::Warn));
    }

    #[test]
    fn an_active_freeze_and_an_oversized_wave_fail_preflight() {
        let policy = "[policy]\nmax_wave_fraction = 0.5\n[[policy.freeze]]\nname = \"bf\"\nstart = \"2026-11-01T00:00:00Z\"\nend = \"2026-11-03T00:00:00Z\"\nselect = \"region=eu\"\n";
        let s = "[strategy]\n[[strategy.wave]]\nname = \"all\"\nselect = \"*\"\n";
        let i = intent(
            s,
            policy,
            &[("a", "region = \"eu\""), ("b", "region = \"us\"")],
        );
        let plan = build(&i, "r", now()).unwrap();
        assert!(plan.blocked());
        let failed: Vec<&str> = plan
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, ["policy.blast-radius", "policy.freeze"]);
        let later = humantime::parse_rfc3339("2026-11-04T00:00:00Z").unwrap();
        let plan = build(&i, "r", later).unwrap();
        assert!(plan
            .checks
            .iter()
            .all(|c| c.name != "policy.freeze" || c.status == CheckStatus::Pass));
    }

    #[test]
    fn an_unknown_release_names_the_known_ones() {
        let i = intent("", "", &[("a", "region = \"eu\"")]);
        let err = build(&i, "nope", now()).unwrap_err().to_string();
        assert_eq!(err, "no release `nope` in the intent (releases: r)");
    }
}
