//! `plan --suggest`: the largest wave sizes that keep every wave's risk under
//! `[policy] max_wave_risk`, written as a `[strategy]` to paste over the intent's.

use std::fmt::Write;

use super::{env_steps, risk, History, Plan};
use crate::intent::load::REMAINING_WAVE;
use crate::intent::{Amount, Gate, Intent, WaveSpec};
use crate::selector::Selector;

/// A `[strategy]` table whose waves each stay at or under `max` (the chance of at least
/// one failure), splitting the plan's waves that do not into parts of the most
/// environments that do. The first part of a split wave keeps its gate; the others follow
/// it after its soak.
pub fn strategy(
    intent: &Intent,
    plan: &Plan,
    history: Option<&History>,
    max: f64,
) -> Result<String, String> {
    let history = history.filter(|h| h.attempts() > 0);
    let s = &intent.strategy;
    let mut out = String::from("[strategy]\n");
    let _ = writeln!(out, "max_parallel = {}", s.max_parallel);
    let _ = writeln!(out, "retries = {}", s.retries);
    let _ = writeln!(out, "requeue_failed = {}", s.requeue_failed);
    let _ = writeln!(out, "backoff = {}", quoted_duration(s.backoff));
    let _ = writeln!(out, "step_timeout = {}", quoted_duration(s.step_timeout));
    let _ = writeln!(out, "max_failures = {}", amount(s.max_failures));
    let _ = writeln!(out, "expected_success_rate = {}", s.expected_success_rate);
    if let Some(seed) = s.seed {
        let _ = writeln!(out, "seed = {seed}");
    }
    let leftover = WaveSpec {
        name: REMAINING_WAVE.into(),
        select: Selector::All,
        gate: Gate::Auto,
        soak: std::time::Duration::ZERO,
        failure_budget: s
            .waves
            .last()
            .map(|w| w.failure_budget)
            .unwrap_or(Amount::Count(0)),
        take: None,
        spread_by: Vec::new(),
        note_required: false,
        recheck_health: false,
        check: None,
    };
    for wave in &plan.waves {
        let spec = s.waves.iter().find(|w| w.name == wave.name);
        let worst = wave
            .envs
            .iter()
            .filter_map(|e| intent.environments.binary_search_by(|x| x.name.cmp(e)).ok())
            .map(|i| risk::env_fails(env_steps(intent, history, i, s.expected_success_rate)))
            .fold(0.0, f64::max);
        let most = risk::most_envs(worst, max);
        if most == 0 {
            return Err(format!(
                "one environment of wave `{}` alone fails with a chance of {:.3}%, above max_wave_risk {max}: no wave size keeps under it; raise the retries or the limit",
                wave.name,
                worst * 100.0
            ));
        }
        let size = wave.envs.len();
        let Some(spec) = spec else {
            // Environments no wave takes go last, as one wave if it is small enough.
            if size > most {
                split(&mut out, &leftover, size, most, false);
            }
            continue;
        };
        if size <= most {
            write_wave(&mut out, spec, &spec.name, spec.gate, true, spec.take);
        } else {
            split(&mut out, spec, size, most, spec.take.is_some());
        }
    }
    Ok(out)
}

/// Writes `spec`'s `size` environments as parts of at most `most`: all but the last take
/// `most`; the last takes the rest (by count when the wave samples, else everything left
/// that matches).
fn split(out: &mut String, spec: &WaveSpec, size: usize, most: usize, sampled: bool) {
    let parts = size.div_ceil(most);
    for part in 1..=parts {
        let name = match part {
            1 if spec.name != REMAINING_WAVE => spec.name.clone(),
            n => format!("{}-{n}", spec.name),
        };
        // What guards the wave guards its first part; the rest follow it after its soak.
        let first = part == 1;
        let gate = if first { spec.gate } else { Gate::Auto };
        let take = if part < parts {
            Some(Amount::Count(most as u64))
        } else if sampled {
            Some(Amount::Count((size - most * (parts - 1)) as u64))
        } else {
            None
        };
        write_wave(out, spec, &name, gate, first, take);
    }
}

/// Writes one `[[strategy.wave]]`; `guarded`: with the spec's checks (its first part).
fn write_wave(
    out: &mut String,
    spec: &WaveSpec,
    name: &str,
    gate: Gate,
    guarded: bool,
    take: Option<Amount>,
) {
    let _ = writeln!(out, "\n[[strategy.wave]]");
    let _ = writeln!(out, "name = {}", toml::Value::String(name.into()));
    let _ = writeln!(
        out,
        "select = {}",
        toml::Value::String(spec.select.to_string())
    );
    let healthy = guarded && spec.recheck_health;
    match (gate, healthy) {
        (Gate::Approval { .. }, true) => {
            let _ = writeln!(out, "gate = [\"healthy\", \"approval\"]");
        }
        (Gate::Approval { .. }, false) => {
            let _ = writeln!(out, "gate = \"approval\"");
        }
        (Gate::Auto, true) => {
            let _ = writeln!(out, "gate = \"healthy\"");
        }
        (Gate::Auto, false) => {}
    }
    if let Gate::Approval { approvers } = gate {
        if approvers > 1 {
            let _ = writeln!(out, "approvers = {approvers}");
        }
        if spec.note_required {
            let _ = writeln!(out, "note = \"required\"");
        }
    }
    if let Some(check) = spec.check.as_ref().filter(|_| guarded) {
        let argv: Vec<String> = check
            .argv
            .iter()
            .map(|a| toml::Value::String(a.clone()).to_string())
            .collect();
        let _ = writeln!(out, "check = [{}]", argv.join(", "));
        let _ = writeln!(out, "check_timeout = {}", quoted_duration(check.timeout));
        let _ = writeln!(out, "check_retries = {}", check.retries);
    }
    if !spec.soak.is_zero() {
        let _ = writeln!(out, "soak = {}", quoted_duration(spec.soak));
    }
    let _ = writeln!(out, "failure_budget = {}", amount(spec.failure_budget));
    if let Some(take) = take {
        let _ = writeln!(out, "take = {}", amount(take));
    }
    if !spec.spread_by.is_empty() {
        let labels: Vec<String> = spec
            .spread_by
            .iter()
            .map(|l| toml::Value::String(l.clone()).to_string())
            .collect();
        let _ = writeln!(out, "spread_by = [{}]", labels.join(", "));
    }
}

fn amount(a: Amount) -> String {
    match a {
        Amount::Count(n) => n.to_string(),
        Amount::Percent(_) => toml::Value::String(a.to_string()).to_string(),
    }
}

fn quoted_duration(d: std::time::Duration) -> String {
    toml::Value::String(humantime::format_duration(d).to_string()).to_string()
}
