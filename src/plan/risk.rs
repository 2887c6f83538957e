//! The arithmetic of rollout risk: a wave of n environments fails somewhere with
//! probability 1 - prod(p_i).

use serde::Serialize;

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
    /// Risk of a wave of `envs` environments with `services` steps each.
    pub fn of_wave(step_success: f64, retries: u32, services: usize, envs: usize) -> Risk {
        let steps = (services * envs) as f64;
        let fail_once = 1.0 - step_success;
        let step_with_retries = 1.0 - fail_once.powi(retries as i32 + 1);
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
    fn retries_lower_the_risk() {
        let r = Risk::of_wave(0.99, 2, 3, 100);
        assert!(r.with_retries < 0.001 && r.without_retries > 0.9, "{r:?}");
        assert_eq!(Risk::of_wave(0.99, 2, 3, 0).with_retries, 0.0);
    }
}
