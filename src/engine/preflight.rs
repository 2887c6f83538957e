//! Preflight checks that need a driver: is every environment of the plan reachable?

use std::sync::Arc;
use std::time::Duration;

use crate::drivers::Driver;
use crate::intent::Intent;
use crate::plan::{Check, CheckStatus, Plan};

/// How many environments preflight pings at once, and how long each may take to answer.
const PING_PARALLEL: usize = 64;
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the reachability check and puts it first among the plan's checks.
pub async fn add_reachability(intent: &Arc<Intent>, plan: &mut Plan, driver: &Arc<dyn Driver>) {
    let check = reachability(intent, plan, driver, PING_PARALLEL, PING_TIMEOUT).await;
    plan.checks.insert(0, check);
}

/// Pings every environment of the plan, `parallel` at a time, each within `timeout`.
pub async fn reachability(
    intent: &Arc<Intent>,
    plan: &Plan,
    driver: &Arc<dyn Driver>,
    parallel: usize,
    timeout: Duration,
) -> Check {
    let names: Vec<String> = plan.waves.iter().flat_map(|w| w.envs.clone()).collect();
    let total = names.len();
    let answers = crate::parallel::bounded(names, parallel, |name| {
        let (intent, driver) = (intent.clone(), driver.clone());
        async move {
            let Some(env) = intent.environment(&name) else {
                return Some((name, "not in the intent".to_string()));
            };
            match tokio::time::timeout(timeout, driver.ping(env)).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some((name, e.message)),
                Err(_) => Some((name, "no answer".to_string())),
            }
        }
    })
    .await;
    let mut unreachable: Vec<(String, String)> = answers.into_iter().flatten().flatten().collect();
    unreachable.sort();
    if unreachable.is_empty() {
        Check::new(
            "targets.reachable",
            CheckStatus::Pass,
            format!("all {total} environment(s) answered"),
        )
    } else {
        let list: Vec<String> = unreachable
            .iter()
            .take(5)
            .map(|(n, why)| format!("{n} ({why})"))
            .collect();
        let more = unreachable.len().saturating_sub(5);
        Check::new(
            "targets.reachable",
            CheckStatus::Fail,
            format!(
                "{} of {total} environment(s) did not answer: {}{}",
                unreachable.len(),
                list.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        )
    }
}
