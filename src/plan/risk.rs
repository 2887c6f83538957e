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
    /// Risk of a wave from each step's own success chance (history-based).
    pub fn of_steps(step_success: impl IntoIterator<Item = f64>, retries: u32) -> Risk {
        let (mut ln_once, mut ln_retried, mut n, mut sum) = (0.0, 0.0, 0.0, 0.0);
        for p in step_success {
            let p = p.clamp(0.0, 1.0);
            ln_once += (-(1.0 - p)).ln_1p();
            ln_retried += (-(1.0 - p).powi(retries.min(1000) as i32 + 1)).ln_1p();
            n += 1.0;
            sum += p;
        }
        Risk {
            step_success: if n > 0.0 { sum / n } else { 1.0 },
            without_retries: -ln_once.exp_m1(),
            with_retries: -ln_retried.exp_m1(),
        }
    }

    /// Risk of a wave of `envs` environments with `services` steps each.
    pub fn of_wave(step_success: f64, retries: u32, services: usize, envs: usize) -> Risk {
        let steps = (services * envs) as f64;
        let fail_once = 1.0 - step_success;
        let step_with_retries = 1.0 - fail_once.powi(retries.min(1000) as i32 + 1);
        Risk {
            step_success,
            without_retries: any_fails(step_success, steps),
            with_retries: any_fails(step_with_retries, steps),
        }
    }
}

/// 1 - p^n, computed through logarithms so tiny failure chances keep their precision.
fn any_fails(p: f64, n: f64) -> f64 {
    if p >= 1.0 || n == 0.0 {
        return 0.0;
    }
    -(n * (-(1.0 - p)).ln_1p()).exp_m1()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hundred_environments_at_99_percent_fail_somewhere_63_percent_of_the_time() {
        let r = Risk::of_wave(0.99, 0, 1, 100);
        assert!((r.without_retries - 0.634).abs() < 0.001, "{r:?}");
    }

    #[test]
    fn history_moves_the_estimate_from_the_prior() {
        let mut h = History::default();
        assert_eq!(h.step_success("e", "s", 0.99), 0.99);
        h.steps.insert(("e".into(), "s".into()), (10, 5));
        let p = h.step_success("e", "s", 0.99);
        assert!((p - (19.8 + 5.0) / 30.0).abs() < 1e-12, "{p}");
        let r = Risk::of_steps([p, 0.99], 0);
        assert!((r.without_retries - (1.0 - p * 0.99)).abs() < 1e-12);
    }

    #[test]
    fn retries_lower_the_risk() {
        let r = Risk::of_wave(0.99, 2, 3, 100);
        assert!(r.with_retries < 0.001 && r.without_retries > 0.9, "{r:?}");
        assert_eq!(Risk::of_wave(0.99, 2, 3, 0).with_retries, 0.0);
    }
}
