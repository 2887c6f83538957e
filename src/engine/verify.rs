//! Gates that verify before a wave starts: the earlier waves' environments are still healthy
//! (`gate = "healthy"`), and the wave's `check` command exits 0 (`check = ["./smoke.sh",
//! "{wave}"]`), within its timeout, tried again after a backoff like a step.

use std::sync::Arc;
use std::time::Duration;

use super::events::EventKind;
use super::step::StepContext;
use crate::drivers::exec::{expand, Runner};
use crate::drivers::Health;
use crate::intent::WaveCheck;
use crate::plan::first_five;

/// How the health re-check is named in events.
pub const HEALTH_CHECK: &str = "health of earlier waves";

/// How many environments the health re-check asks at once.
const PARALLEL: usize = 64;

/// Asks each of `envs` (indexes into the intent's environments) for the health of every
/// service, each call within the service's health (or step) timeout. Err names the
/// unhealthy ones and why.
pub async fn recheck_health(ctx: &Arc<StepContext>, envs: Vec<usize>) -> Result<(), String> {
    let total = envs.len();
    let names: Vec<String> = envs
        .iter()
        .map(|&i| ctx.intent.environments[i].name.clone())
        .collect();
    let seen = crate::parallel::bounded(envs, PARALLEL, |i| {
        let ctx = ctx.clone();
        async move {
            let env = &ctx.intent.environments[i];
            let mut bad = Vec::new();
            for service in &ctx.intent.services {
                let limits = ctx.limits(&service.name);
                let within = limits.health_timeout.unwrap_or(limits.step_timeout);
                let asked = tokio::time::timeout(within, ctx.driver.health(env, &service.name));
                match asked.await {
                    Ok(Ok(Health::Healthy)) => {}
                    Ok(Ok(Health::Unhealthy(why))) => bad.push(format!("{} ({why})", service.name)),
                    Ok(Err(e)) => bad.push(format!("{} ({})", service.name, e.message)),
                    Err(_) => bad.push(format!(
                        "{} (no answer within {})",
                        service.name,
                        humantime::format_duration(within)
                    )),
                }
            }
            (env.name.clone(), bad)
        }
    })
    .await;
    // A task that panicked (a driver bug) gave no answer: not known healthy.
    let mut unhealthy: Vec<String> = seen
        .into_iter()
        .zip(names)
        .map(|(seen, name)| {
            seen.unwrap_or_else(|| {
                (
                    name,
                    vec!["internal error: the health check panicked".into()],
                )
            })
        })
        .filter(|(_, bad)| !bad.is_empty())
        .map(|(env, bad)| format!("{env}: {}", bad.join(", ")))
        .collect();
    if unhealthy.is_empty() {
        return Ok(());
    }
    unhealthy.sort();
    Err(format!(
        "{} of the {total} environment(s) of earlier waves not healthy: {}",
        unhealthy.len(),
        first_five(&unhealthy)
    ))
}

/// What a wave's check is run for: its placeholders' values.
pub struct CheckFor<'a> {
    pub wave: &'a str,
    pub release: &'a str,
    pub revision: &'a str,
    /// The wave's environments, comma-separated.
    pub envs: String,
}

impl CheckFor<'_> {
    fn value(&self, name: &str) -> String {
        match name {
            "wave" => self.wave.into(),
            "release" => self.release.into(),
            "revision" => self.revision.into(),
            "envs" => self.envs.clone(),
            // Refused by validate.
            _ => String::new(),
        }
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FLOTILLA_WAVE", self.wave.into()),
            ("FLOTILLA_RELEASE", self.release.into()),
            ("FLOTILLA_REVISION", self.revision.into()),
            ("FLOTILLA_ENVS", self.envs.clone()),
        ]
    }
}

/// Runs `check` until it exits 0, at most `retries` more times with a doubling backoff
/// between tries, each within its timeout (a try past it is killed, with its process group).
/// Each failed try is an event; Ok: how many tries it took. Err: why the last one failed.
pub async fn run_check(
    ctx: &StepContext,
    runner: &Runner,
    check: &WaveCheck,
    on: &CheckFor<'_>,
) -> Result<u32, String> {
    let subject = format!("wave `{}`", on.wave);
    let shown = check.shown();
    let mut attempt = 1;
    loop {
        let run = runner.run(
            "check",
            &subject,
            &check.argv,
            |a| expand(a, |n| on.value(n)),
            on.vars(),
        );
        let (error, output) = match tokio::time::timeout(check.timeout, run).await {
            Ok(Ok(ran)) if ran.code == Some(0) => return Ok(attempt),
            Ok(Ok(ran)) => (ran.ending(&[]), Some(Box::new(ran.output(&[])))),
            Ok(Err(e)) => (e.message, None),
            Err(_) => (
                format!(
                    "did not finish within its timeout ({})",
                    humantime::format_duration(check.timeout)
                ),
                None,
            ),
        };
        if attempt > check.retries {
            ctx.emit(EventKind::CheckFailed {
                wave: on.wave.into(),
                check: shown,
                attempts: attempt,
                error: error.clone(),
                output: output.filter(|o| !o.is_empty()),
            });
            return Err(error);
        }
        // Doubling, at most the check's timeout: one command, no herd to spread out.
        let delay = check
            .backoff
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(check.timeout.max(Duration::from_secs(1)));
        ctx.emit(EventKind::CheckRetrying {
            wave: on.wave.into(),
            check: shown.clone(),
            attempt,
            error,
            delay_ms: delay.as_millis() as u64,
        });
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}
