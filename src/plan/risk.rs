//! The arithmetic of rollout risk: a wave of n environments fails somewhere with
//! probability 1 - prod(p_i).

use std::collections::HashMap;

use serde::Serialize;

/// How many observations the prior is worth: a new environment behaves like one that
/// succeeded at the configured rate over this many attempts, so it is not assumed perfect and
/// a few lucky attempts do not make it so.
pub const PRIOR_WEIGHT: f64 = 20.0;

/// Attempts and successes per (env, service) from the journal of past rollouts.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub steps: HashMap<(String, String), (u64, u64)>,
}

impl History {
    /// Posterior mean of the step's success chance under a Beta prior with mean `prior`.
    pub fn step_success(&self, env: &str, service: &str, prior: f64) -> f64 {
        let (attempts, successes) = self
            .steps
            .get(&(env.to_string(), service.to_string()))
            .copied()
            .unwrap_or((0, 0));
        (prior * PRIOR_WEIGHT + successes as f64) / (PRIOR_WEIGHT + attempts as f64)
    }

    /// All attempts recorded, over every step.
    pub fn attempts(&self) -> u64 {
        self.steps.values().map(|(a, _)| a).sum()
    }
}

/// Chance that at least one environment of a wave fails.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Risk {
    /// Each attempt of one step succeeds with this chance.
    pub step_success: f64,
    /// P(some environment fails) if no step were retried.
    pub without_retries: f64,
    /// P(some environment fails) with the configured retries.
    pub with_retries: f64,
}

impl Risk {
    /// Risk of a wave from its steps: each step's chance to succeed per attempt, and its
    /// retries.
    pub fn of_steps(steps: impl IntoIterator<Item = (f64, u32)>) -> Risk {
        let (mut ln_once, mut ln_retried, mut n, mut sum) = (0.0, 0.0, 0.0, 0.0);
        for (p, retries) in steps {
            let p = p.clamp(0.0, 1.0);
            ln_once += (-(1.0 - p)).ln_1p();
            ln_retried += (-fails_every_attempt(p, retries)).ln_1p();
            n += 1.0;
            sum += p;
        }
        Risk {
            step_success: if n > 0.0 { sum / n } else { 1.0 },
            without_retries: -ln_once.exp_m1(),
            with_retries: -ln_retried.exp_m1(),
        }
    }
}

/// Chance that a step fails on its first attempt and on every retry.
fn fails_every_attempt(p: f64, retries: u32) -> f64 {
    (1.0 - p.clamp(0.0, 1.0)).powi(retries.min(1000) as i32 + 1)
}

/// Chance that one environment fails, its steps retried: at least one step fails every
/// attempt.
pub fn env_fails(steps: impl IntoIterator<Item = (f64, u32)>) -> f64 {
    let ln_ok: f64 = steps
        .into_iter()
        .map(|(p, retries)| (-fails_every_attempt(p, retries)).ln_1p())
        .sum();
    -ln_ok.exp_m1()
}

/// The most environments, each failing with chance `env_fails`, a wave may hold while its
/// chance of at least one failure stays at or under `max` (0: not even one).
pub fn most_envs(env_fails: f64, max: f64) -> usize {
    if env_fails <= 0.0 {
        return usize::MAX;
    }
    if env_fails >= 1.0 || max <= 0.0 {
        return 0;
    }
    // (1 - q)^n <= 1 - max  <=>  n <= ln(1 - max) / ln(1 - q); a hair of slack keeps a
    // wave of exactly the limit on the right side of rounding.
    let n = (-max).ln_1p() / (-env_fails).ln_1p();
    (n * (1.0 + 1e-12)).floor().min(usize::MAX as f64 / 2.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(p: f64, retries: u32, services: usize, envs: usize) -> Risk {
        Risk::of_steps(std::iter::repeat_n((p, retries), services * envs))
    }

    #[test]
    fn hundred_environments_at_99_percent_fail_somewhere_63_percent_of_the_time() {
        let r = wave(0.99, 0, 1, 100);
        assert!((r.without_retries - 0.634).abs() < 0.001, "{r:?}");
    }

    #[test]
    fn history_moves_the_estimate_from_the_prior() {
        let mut h = History::default();
        assert_eq!(h.step_success("e", "s", 0.99), 0.99);
        h.steps.insert(("e".into(), "s".into()), (10, 5));
        let p = h.step_success("e", "s", 0.99);
        assert!((p - (19.8 + 5.0) / 30.0).abs() < 1e-12, "{p}");
        let r = Risk::of_steps([(p, 0), (0.99, 0)]);
        assert!((r.without_retries - (1.0 - p * 0.99)).abs() < 1e-12);
    }

    #[test]
    fn retries_lower_the_risk() {
        let r = wave(0.99, 2, 3, 100);
        assert!(r.with_retries < 0.001 && r.without_retries > 0.9, "{r:?}");
        assert_eq!(wave(0.99, 2, 3, 0).with_retries, 0.0);
        // A service's own retries count for its steps.
        let more = Risk::of_steps([(0.9, 0), (0.9, 3)]);
        assert!((more.with_retries - (1.0 - 0.9 * (1.0 - 1e-4))).abs() < 1e-12);
    }

    #[test]
    fn the_largest_wave_under_a_risk_limit_is_just_under_it() {
        for (q, max) in [(0.001, 0.05), (0.01, 0.2), (1e-6, 0.01), (0.3, 0.5)] {
            let n = most_envs(q, max);
            let risk = |n: usize| 1.0 - (1.0 - q).powi(n as i32);
            assert!(risk(n) <= max + 1e-12, "{q} {max}: {n}");
            assert!(risk(n + 1) > max, "{q} {max}: {n}");
        }
        assert_eq!(most_envs(0.5, 0.1), 0);
        assert_eq!(most_envs(0.0, 0.1), usize::MAX);
    }
}
