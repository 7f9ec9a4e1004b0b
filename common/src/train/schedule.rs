//! The inner learning-rate schedule: linear warm-up, then cosine decay to a floor.

use crate::config::TrainingConfig;

/// Learning rate for inner step `step` (counted from 0 over the whole run, not per window, so
/// every miner is at the same point of the schedule in the same window).
///
/// Warm-up: `lr · (step+1) / warmup` for `step < warmup`. Then, with
/// `p = min((step − warmup) / cosine, 1)`: `lr · (m + (1 − m) · (1 + cos πp) / 2)`, where `m`
/// is `min_lr_factor`.
pub fn learning_rate(t: &TrainingConfig, step: u64) -> f64 {
    if step < t.warmup_steps {
        return t.learning_rate * (step + 1) as f64 / t.warmup_steps as f64;
    }
    let p = if t.cosine_steps == 0 { 1.0 } else { ((step - t.warmup_steps) as f64 / t.cosine_steps as f64).min(1.0) };
    let m = t.min_lr_factor;
    t.learning_rate * (m + (1.0 - m) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    #[test]
    fn warms_up_linearly_then_decays_to_the_floor() {
        let mut t = Preset::Test.config().training;
        t.learning_rate = 1.0;
        t.warmup_steps = 4;
        t.cosine_steps = 10;
        t.min_lr_factor = 0.1;
        let lr: Vec<f64> = (0..20).map(|s| learning_rate(&t, s)).collect();
        assert_eq!(&lr[..4], &[0.25, 0.5, 0.75, 1.0]);
        assert_eq!(lr[4], 1.0, "cosine starts at the peak");
        assert!((lr[9] - 0.55).abs() < 1e-12, "half way: {}", lr[9]);
        assert!(lr[4..15].windows(2).all(|w| w[1] < w[0]), "{lr:?}");
        assert!(lr[14..].iter().all(|&x| (x - 0.1).abs() < 1e-12), "{lr:?}");
    }

    #[test]
    fn no_warmup_and_no_decay_are_allowed() {
        let mut t = Preset::Test.config().training;
        t.warmup_steps = 0;
        t.cosine_steps = 0;
        t.min_lr_factor = 0.5;
        assert_eq!(learning_rate(&t, 0), t.learning_rate * 0.5);
    }
}
