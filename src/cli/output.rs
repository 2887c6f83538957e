//! Plain-text rendering shared by the commands.

use std::fmt::Write;

use crate::engine::EventKind;
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

/// A probability as a short percentage that keeps small risks visible.
pub fn percent(p: f64) -> String {
    let pct = p * 100.0;
    if pct == 0.0 {
        "0%".into()
    } else if pct >= 10.0 {
        format!("{pct:.0}%")
    } else if pct >= 0.1 {
        format!("{pct:.1}%")
    } else if pct >= 0.0001 {
        format!("{pct:.4}%")
    } else {
        "<0.0001%".into()
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

/// A gate's check as said: "the health of earlier waves", or "check `./smoke.sh {wave}`".
fn check_name(check: &str) -> String {
    if check == crate::engine::verify::HEALTH_CHECK {
        format!("the {check}")
    } else {
        format!("check `{check}`")
    }
}

/// "1 attempt", "3 attempts".
fn attempts_text(n: u32) -> String {
    if n == 1 {
        "1 attempt".into()
    } else {
        format!("{n} attempts")
    }
}

/// One line for an event in plain output, or None for events too frequent to print one by
/// one (the progress line and the wave summary cover them).
pub fn event_line(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::RolloutStarted {
            release,
            commit,
            waves,
            envs,
            resumed,
            ..
        } => format!(
            "rollout of {release} {} ({envs} environments in {waves} waves, intent {})",
            if *resumed { "resumed" } else { "started" },
            &commit[..7.min(commit.len())]
        ),
        EventKind::WaveStarted {
            wave,
            envs,
            allowed_failures,
        } => format!(
            "wave {wave}: started on {envs} environment(s), {allowed_failures} failure(s) allowed"
        ),
        EventKind::GateWaiting { wave, reason } => format!("wave {wave}: waiting for {reason}"),
        EventKind::GateApproved {
            wave,
            by,
            note,
            approvals,
            needed,
        } => format!(
            "wave {wave}: approved by {by} ({approvals}/{needed}){}",
            note.as_ref().map(|n| format!(": {n}")).unwrap_or_default()
        ),
        EventKind::NotificationFailed {
            target,
            event,
            attempts,
            error,
            gave_up,
        } => {
            let then = if *gave_up { "given up" } else { "tried again" };
            format!("notification to `{target}` of {event} failed ({}): {error}; {then}", attempts_text(*attempts))
        }
        EventKind::CheckPassed { wave, check, .. } => {
            format!("wave {wave}: {} passed", check_name(check))
        }
        EventKind::CheckRetrying {
            wave,
            check,
            attempt,
            error,
            delay_ms,
        } => format!(
            "wave {wave}: {} attempt {attempt} failed ({error}); retrying in {}",
            check_name(check),
            humantime::format_duration(std::time::Duration::from_millis(*delay_ms))
        ),
        EventKind::CheckFailed {
            wave,
            check,
            attempts,
            error,
            ..
        } => format!(
            "wave {wave}: {} FAILED ({}): {error}",
            check_name(check),
            attempts_text(*attempts)
        ),
        EventKind::StepRetrying {
            env,
            service,
            attempt,
            error,
            delay_ms,
            ..
        } => format!(
            "  {env}/{service}: attempt {attempt} failed ({error}); retrying in {}",
            humantime::format_duration(std::time::Duration::from_millis(*delay_ms))
        ),
        EventKind::StepFailed {
            env,
            service,
            error,
            attempts,
            ..
        } => format!(
            "  FAILED {env}/{service} ({}): {error}",
            attempts_text(*attempts)
        ),
        EventKind::StepBlocked {
            env,
            service,
            dependency,
            ..
        } => format!("  blocked {env}/{service} (needs {dependency})"),
        EventKind::EnvRetried { env, by, .. } => format!("  retrying {env} (asked by {by})"),
        EventKind::EnvSkipped {
            env, reason, by, ..
        } => format!("  skipped {env} ({reason}) by {by}"),
        EventKind::RollbackRequested { env, to, by, .. } => format!(
            "  {env} is to be rolled back to {to} (asked by {by}) once its steps in flight finish"
        ),
        EventKind::RollbackStarted {
            env,
            to,
            services,
            by,
            ..
        } => format!(
            "  rolling back {env} to {to} ({}) asked by {by}",
            if services.is_empty() {
                "nothing of this release applied there yet".to_string()
            } else {
                services.join(", ")
            }
        ),
        EventKind::StepRolledBack {
            env,
            service,
            version,
            ..
        } => format!("  {env}/{service}: back at {version}"),
        EventKind::RollbackFailed {
            env,
            service,
            error,
            ..
        } => format!("  ROLLBACK FAILED {env}/{service}: {error}"),
        EventKind::EnvRolledBack { env, to, .. } => format!("  rolled back {env} to {to}"),
        EventKind::WaveCompleted {
            wave,
            succeeded,
            failed,
            skipped,
            rolled_back,
        } => {
            format!(
                "wave {wave}: done, {succeeded} succeeded, {failed} failed, {skipped} skipped{}",
                rolled_back_text(*rolled_back)
            )
        }
        EventKind::RolloutPaused { by } => format!("paused by {by}"),
        EventKind::RolloutResumed { by, accepted } if !accepted.is_empty() => format!(
            "resumed by {by}, accepting {} failed environment(s)",
            accepted.len()
        ),
        EventKind::RolloutResumed { by, .. } => format!("resumed by {by}"),
        EventKind::RolloutHalted { wave, reason, .. } => {
            format!("HALTED in wave {wave}: {reason}")
        }
        EventKind::RolloutAborted { by } => format!("aborted by {by}"),
        EventKind::AbortRequested { by } => {
            format!("abort asked by {by}: nothing new starts; the rollout ends once the steps in flight finish")
        }
        EventKind::RolloutInterrupted { in_flight_finished } => format!(
            "interrupted: nothing new was started; {in_flight_finished} environment run(s) finished"
        ),
        EventKind::RolloutCompleted {
            succeeded,
            failed,
            skipped,
            rolled_back,
        } => {
            format!(
                "rollout completed: {succeeded} succeeded, {failed} failed, {skipped} skipped{}",
                rolled_back_text(*rolled_back)
            )
        }
        EventKind::CommandReceived {
            command,
            by,
            origin,
            ..
        } => format!(
            "{command} from {by}{}",
            origin
                .as_ref()
                .map(|o| format!(" ({o})"))
                .unwrap_or_default()
        ),
        EventKind::CommandRejected {
            command, reason, ..
        } => format!("{command} refused: {reason}"),
        EventKind::DriftDetected { env, service, keys } => {
            format!("{env}/{service}: drifted ({})", keys.join(", "))
        }
        EventKind::DriftCleared { env, service } => format!("{env}/{service}: drift cleared"),
        EventKind::CheckOverridden {
            check,
            detail,
            reason,
            by,
        } => format!("preflight {check} overridden by {by}: {reason} (it said: {detail})"),
        EventKind::EnvHeld { env, services, .. } => format!(
            "  {env} HELD: changed out of band ({}); nothing applied until someone adopts, reverts or accepts it",
            services.join(", ")
        ),
        EventKind::EnvReleased {
            env, how, by, commit, ..
        } => format!(
            "  {env} released by {by} ({how}{}); rolling it out",
            commit
                .as_ref()
                .map(|c| format!(", commit {}", &c[..7.min(c.len())]))
                .unwrap_or_default()
        ),
        EventKind::RolloutHeld { envs } => format!(
            "waiting for decisions on {} environment(s) held on drift: {}",
            envs.len(),
            envs.join(", ")
        ),
        EventKind::DriftAccepted {
            env,
            service,
            until,
            reason,
            by,
        } => format!(
            "{env}{}: drift accepted by {by} until {until}: {reason}",
            service
                .as_ref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default()
        ),
        EventKind::StepRecovered { env, service, .. } => {
            format!("  {env}/{service} was applied before the restart; not applied again")
        }
        EventKind::LeaseTakenOver { by, from } => {
            format!("{by} took over the engine lease from {from}, which stopped answering")
        }
        EventKind::EnvStarted { .. }
        | EventKind::StepStarted { .. }
        | EventKind::StepSucceeded { .. } => return None,
    })
}

/// ", N rolled back" when some were; nothing otherwise, so the usual line stays short.
fn rolled_back_text(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(", {n} rolled back")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_risks_stay_visible() {
        assert_eq!(percent(0.634), "63%");
        assert_eq!(percent(0.02), "2.0%");
        assert_eq!(percent(0.00003), "0.0030%");
        assert_eq!(percent(1e-12), "<0.0001%");
        assert_eq!(percent(0.0), "0%");
    }
}
