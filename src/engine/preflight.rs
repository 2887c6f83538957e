//! Preflight checks that need a driver, from one pass over the plan's environments: is each
//! reachable (`targets.reachable`), may each service go from what it runs to the release's
//! version (`versions.upgrade-path`), and are the dependencies of what will move healthy
//! where it moves (`deps.healthy`)?

use std::sync::Arc;
use std::time::Duration;

use crate::drivers::{Driver, Health};
use crate::intent::layers;
use crate::intent::load::version_cmp;
use crate::intent::Intent;
use crate::plan::{first_five, Check, CheckStatus, Plan};

/// How many environments preflight reaches at once, and how long each call may take.
const PARALLEL: usize = 64;
const TIMEOUT: Duration = Duration::from_secs(10);

/// What a downgrade is to the checks: refused, or allowed (`--allow-downgrade`, a revert).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downgrades {
    Refuse,
    Allow,
}

/// From this many environments, preflight says on the terminal that it is reaching them,
/// and then how long it took: with a real driver and 100,000 environments it runs for
/// minutes before anything else is shown.
const SAY_FROM: usize = 1_000;

/// Runs the driver checks and puts them first among the plan's checks.
pub async fn add_target_checks(
    intent: &Arc<Intent>,
    plan: &mut Plan,
    driver: &Arc<dyn Driver>,
    downgrades: Downgrades,
) {
    let envs: usize = plan.waves.iter().map(|w| w.envs.len()).sum();
    // Not over the console: it shows the checklist itself.
    let say = envs >= SAY_FROM && !crate::notice::held();
    if say {
        crate::notice::say(format!(
            "preflight: reaching {envs} environments, {PARALLEL} at a time..."
        ));
    }
    let started = std::time::Instant::now();
    let checks = target_checks(intent, plan, driver, downgrades, PARALLEL, TIMEOUT).await;
    if say {
        crate::notice::say(format!(
            "preflight: {envs} environments reached in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    plan.checks.splice(0..0, checks);
}

/// What one environment told preflight.
#[derive(Default)]
struct Seen {
    /// Why it could not be reached.
    unreachable: Option<String>,
    /// Why what it runs could not be read (its steps will say more).
    unread: Option<String>,
    /// Services below their `min_from`: "api 1.2 < 1.4".
    too_old: Vec<String>,
    /// Services the release would take to a lower version: "api 2.1 -> 2.0".
    downgrades: Vec<String>,
    /// Dependencies of moving services that are not healthy: "schema (why), needed by api".
    unhealthy: Vec<String>,
}

/// Reaches every environment of the plan, `parallel` at a time, each call within `timeout`:
/// the `targets.reachable`, `versions.upgrade-path` and `deps.healthy` checks.
pub async fn target_checks(
    intent: &Arc<Intent>,
    plan: &Plan,
    driver: &Arc<dyn Driver>,
    downgrades: Downgrades,
    parallel: usize,
    timeout: Duration,
) -> Vec<Check> {
    let names: Vec<String> = plan.waves.iter().flat_map(|w| w.envs.clone()).collect();
    let total = names.len();
    let release = plan.release.clone();
    let seen = crate::parallel::bounded(names, parallel, |name| {
        let (intent, driver, release) = (intent.clone(), driver.clone(), release.clone());
        async move {
            let seen = survey(&intent, &release, &name, &driver, timeout).await;
            (name, seen)
        }
    })
    .await;
    let mut seen: Vec<(String, Seen)> = seen.into_iter().flatten().collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));

    let listed = |pick: &dyn Fn(&Seen) -> Vec<String>| -> Vec<String> {
        seen.iter()
            .flat_map(|(env, s)| pick(s).into_iter().map(move |p| format!("{env}: {p}")))
            .collect()
    };
    let unreachable = listed(&|s| s.unreachable.iter().cloned().collect());
    let unread = listed(&|s| s.unread.iter().cloned().collect());
    let read = total - unreachable.len() - unread.len();
    let reachable = if unreachable.is_empty() {
        Check::new(
            "targets.reachable",
            CheckStatus::Pass,
            format!("all {total} environment(s) answered"),
        )
    } else {
        Check::new(
            "targets.reachable",
            CheckStatus::Fail,
            format!(
                "{} of {total} environment(s) did not answer: {}",
                unreachable.len(),
                first_five(&unreachable)
            ),
        )
    };

    let too_old = listed(&|s| s.too_old.clone());
    let lower = listed(&|s| s.downgrades.clone());
    let path = if !too_old.is_empty() {
        Check::new(
            "versions.upgrade-path",
            CheckStatus::Fail,
            format!(
                "{} service(s) run a version below their min_from and must be upgraded in steps: {}",
                too_old.len(),
                first_five(&too_old)
            ),
        )
    } else if !lower.is_empty() && downgrades == Downgrades::Refuse {
        Check::new(
            "versions.upgrade-path",
            CheckStatus::Fail,
            format!(
                "{} service(s) would go to a lower version (--allow-downgrade if meant): {}",
                lower.len(),
                first_five(&lower)
            ),
        )
    } else if !lower.is_empty() {
        Check::new(
            "versions.upgrade-path",
            CheckStatus::Warn,
            format!(
                "{} downgrade(s), allowed: {}",
                lower.len(),
                first_five(&lower)
            ),
        )
    } else if !unread.is_empty() {
        Check::new(
            "versions.upgrade-path",
            CheckStatus::Warn,
            format!(
                "not checked where what runs could not be read ({}): {}",
                unread.len(),
                first_five(&unread)
            ),
        )
    } else {
        Check::new(
            "versions.upgrade-path",
            CheckStatus::Pass,
            format!("every service of {read} environment(s) may go to {release} from what it runs"),
        )
    };

    let unhealthy = listed(&|s| s.unhealthy.clone());
    let deps = if unhealthy.is_empty() {
        Check::new(
            "deps.healthy",
            CheckStatus::Pass,
            format!(
                "what the moving services depend on is healthy in the {read} environment(s) read"
            ),
        )
    } else {
        Check::new(
            "deps.healthy",
            CheckStatus::Fail,
            format!(
                "{} dependenc(ies) of moving services are unhealthy: {}",
                unhealthy.len(),
                first_five(&unhealthy)
            ),
        )
    };
    vec![reachable, path, deps]
}

/// A driver call within `timeout`: what it answered, or why not in words.
async fn within<T>(
    timeout: Duration,
    call: crate::drivers::DriverFuture<'_, T>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.message),
        Err(_) => Err("no answer".into()),
    }
}

/// Pings one environment, reads what it runs, and checks the health of the services that
/// stay put but that a moving service depends on.
async fn survey(
    intent: &Intent,
    release: &str,
    name: &str,
    driver: &Arc<dyn Driver>,
    timeout: Duration,
) -> Seen {
    let mut seen = Seen::default();
    let (Some(env), Some(rel)) = (intent.environment(name), intent.release(release)) else {
        seen.unreachable = Some("not in the intent".into());
        return seen;
    };
    if let Err(why) = within(timeout, driver.ping(env)).await {
        seen.unreachable = Some(why);
        return seen;
    }
    let live = match within(timeout, driver.observe(env)).await {
        Ok(live) => live,
        Err(why) => {
            seen.unread = Some(why);
            return seen;
        }
    };
    let desired = layers::desired(intent, rel, env);
    let moves = |service: &str| match (desired.services.get(service), live.get(service)) {
        (Some(want), Some(have)) => want.revision != have.revision,
        (Some(_), None) => true,
        _ => false,
    };
    for service in &intent.services {
        let (Some(want), Some(have)) =
            (desired.services.get(&service.name), live.get(&service.name))
        else {
            continue;
        };
        if want.version == have.version {
            continue;
        }
        if let Some(min) = &service.min_from {
            if version_cmp(&have.version, min).is_lt() {
                seen.too_old.push(format!(
                    "{} runs {}; going to {} needs at least {min} (min_from)",
                    service.name, have.version, want.version
                ));
                continue;
            }
        }
        if version_cmp(&want.version, &have.version).is_lt() {
            seen.downgrades.push(format!(
                "{} {} -> {}",
                service.name, have.version, want.version
            ));
        }
    }
    // A dependency that moves too is verified after its own apply; one that stays must be
    // healthy now, or what moves onto it fails.
    let mut needed: Vec<(&str, &str)> = Vec::new();
    for service in intent.services.iter().filter(|s| moves(&s.name)) {
        for dep in service.depends_on.iter().filter(|d| !moves(d)) {
            if live.contains_key(dep) && !needed.iter().any(|(d, _)| d == dep) {
                needed.push((dep, &service.name));
            }
        }
    }
    for (dep, by) in needed {
        let why = match within(timeout, driver.health(env, dep)).await {
            Ok(Health::Healthy) => continue,
            Ok(Health::Unhealthy(why)) => why,
            Err(why) => why,
        };
        seen.unhealthy
            .push(format!("{dep} ({why}), needed by {by}"));
    }
    seen
}
