//! The text of an event and the figures events carry, said the same way by every view: the
//! CLI's lines, the console's log, the notifications.

use super::EventKind;

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
