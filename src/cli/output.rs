//! Plain-text rendering shared by the commands.

use std::fmt::Write;

use crate::engine::text::percent;
use crate::intent::{Diagnostic, Gate};
use crate::plan::{CheckStatus, Plan};

/// Prints diagnostics to stderr, errors last so they stay on screen, with a count.
pub fn print_diagnostics(diags: &[Diagnostic]) {
    let (errors, warnings): (Vec<&Diagnostic>, Vec<&Diagnostic>) =
        diags.iter().partition(|d| d.is_error());
    for d in warnings.iter().chain(&errors) {
        eprintln!("{d}\n");
    }
    if !errors.is_empty() {
        eprintln!(
            "error: the intent is invalid: {} error(s), {} warning(s); nothing was changed",
            errors.len(),
            warnings.len()
        );
    }
}

/// What stands before a wave: `approval`, `healthy+check`, `auto`.
fn gate_text(w: &crate::plan::PlannedWave) -> String {
    let mut kinds = Vec::new();
    if w.recheck_health {
        kinds.push("healthy".to_string());
    }
    match w.gate {
        Gate::Auto => {}
        Gate::Approval { approvers: 1 } => kinds.push("approval".into()),
        Gate::Approval { approvers } => kinds.push(format!("approval x{approvers}")),
    }
    if w.check.is_some() {
        kinds.push("check".into());
    }
    if kinds.is_empty() {
        "auto".into()
    } else {
        kinds.join("+")
    }
}

/// The plan as an operator reads it; lines fit 80 columns.
pub fn plan_text(plan: &Plan) -> String {
    let mut s = String::new();
    let services: usize = plan.service_levels.iter().map(Vec::len).sum();
    let _ = writeln!(s, "Plan: release {} of {}", plan.release, plan.fleet);
    let _ = writeln!(
        s,
        "Intent: {} \"{}\"",
        plan.revision.short, plan.revision.subject
    );
    let _ = writeln!(
        s,
        "{} environments, {} services, {} waves",
        plan.env_count(),
        services,
        plan.waves.len()
    );
    let _ = writeln!(
        s,
        "Up to {} environments at once; {} retries (backoff {}); step timeout {}",
        plan.max_parallel,
        plan.retries,
        humantime::format_duration(plan.backoff),
        humantime::format_duration(plan.step_timeout),
    );
    if plan.requeue_failed > 0 {
        let _ = writeln!(
            s,
            "An environment failed after retries is tried again at its wave's end ({}).",
            match plan.requeue_failed {
                1 => "once".to_string(),
                n => format!("{n} times"),
            }
        );
    }
    let order: Vec<String> = plan.service_levels.iter().map(|l| l.join(", ")).collect();
    let _ = writeln!(s, "Service order: {}", order.join(" -> "));
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "  {:<14} {:>6}  {:<11} {:<5} {:<8} {:>8} {:>11}",
        "wave", "envs", "gate", "soak", "budget", "risk", "w/ retries"
    );
    for w in &plan.waves {
        let soak = if w.soak.is_zero() {
            "-".to_string()
        } else {
            humantime::format_duration(w.soak).to_string()
        };
        let budget = if w.failure_budget == w.allowed_failures.to_string() {
            w.failure_budget.clone()
        } else {
            format!("{}={}", w.failure_budget, w.allowed_failures)
        };
        let _ = writeln!(
            s,
            "  {:<14} {:>6}  {:<11} {:<5} {:<8} {:>8} {:>11}",
            w.name,
            w.envs.len(),
            gate_text(w),
            soak,
            budget,
            percent(w.risk.without_retries),
            percent(w.risk.with_retries)
        );
    }
    let _ = writeln!(s);
    for w in &plan.waves {
        let shown: Vec<&str> = w.envs.iter().take(4).map(String::as_str).collect();
        let more = w.envs.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" +{more} more")
        } else {
            String::new()
        };
        let _ = writeln!(s, "  {}: {}{more}", w.name, shown.join(", "));
        if let Some(r) = &w.gate_reason {
            let _ = writeln!(s, "    approval required by {r}");
        }
        if w.recheck_health {
            let _ = writeln!(
                s,
                "    first, the earlier waves' environments must be healthy"
            );
        }
        if let Some(c) = &w.check {
            let _ = writeln!(
                s,
                "    first, `{}` must pass (timeout {}, {} retries)",
                c.shown(),
                humantime::format_duration(c.timeout),
                c.retries
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Risk: the chance that at least one environment of the wave fails,"
    );
    let _ = writeln!(s, "  from {}.", plan.risk_basis);
    let _ = writeln!(
        s,
        "Budget: failed environments a wave tolerates; one more halts the rollout."
    );
    let _ = writeln!(
        s,
        "  The whole rollout halts after {} failed environment(s).",
        plan.max_failures
    );
    if !plan.checks.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "Preflight:");
    }
    for c in plan.checklist() {
        let status = match c.status {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "WARN",
            CheckStatus::Fail => "FAIL",
        };
        let _ = writeln!(s, "  {status}  {:<21} {}", c.name, c.detail);
        if let Some(by) = &c.overridden {
            let _ = writeln!(s, "        {:<21} overridden by {by}", "");
        }
    }
    s
}
