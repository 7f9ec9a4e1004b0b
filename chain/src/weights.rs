//! Weights as subtensor takes them: scores to u16 values, and the rules a `set_weights` call
//! must pass, as pure functions shared by the dev chain and the client's pre-flight check.

use crate::error::ChainError;
use crate::types::SubnetParams;

/// Scores (any non-negative scale) to the u16 values nodes submit: non-positive and non-finite
/// scores are dropped, no share exceeds `max_weight_limit` (excess is spread over the others,
/// as far as possible), and the largest value becomes 65535. Returns (uids, values) in uid order.
pub fn to_u16(scores: &[(u16, f64)], max_weight_limit: u16) -> Result<(Vec<u16>, Vec<u16>), ChainError> {
    let mut kept: Vec<(u16, f64)> = scores.iter().copied().filter(|(_, s)| s.is_finite() && *s > 0.0).collect();
    kept.sort_by_key(|(u, _)| *u);
    kept.dedup_by_key(|(u, _)| *u);
    if kept.is_empty() {
        return Err(ChainError::AllZero);
    }
    let limit = f64::from(max_weight_limit) / f64::from(u16::MAX);
    let shares = cap_shares(&kept.iter().map(|(_, s)| *s).collect::<Vec<_>>(), limit);
    let max = shares.iter().cloned().fold(0.0, f64::max);
    let values = shares.iter().map(|s| (s / max * f64::from(u16::MAX)).round() as u16).collect();
    Ok((kept.iter().map(|(u, _)| *u).collect(), values))
}

/// Normalizes to sum 1 with no share above `limit`, by water-filling: capped entries sit at the
/// limit and the rest keep their proportions. When even equal shares exceed the limit, equal.
fn cap_shares(x: &[f64], limit: f64) -> Vec<f64> {
    let n = x.len();
    if limit * n as f64 <= 1.0 {
        return vec![1.0 / n as f64; n];
    }
    let mut capped = vec![false; n];
    loop {
        let free: f64 = x.iter().zip(&capped).filter(|(_, c)| !**c).map(|(v, _)| v).sum();
        let room = 1.0 - limit * capped.iter().filter(|c| **c).count() as f64;
        let mut changed = false;
        for i in 0..n {
            if !capped[i] && x[i] / free * room > limit {
                capped[i] = true;
                changed = true;
            }
        }
        if !changed {
            return x.iter().zip(&capped).map(|(v, c)| if *c { limit } else { v / free * room }).collect();
        }
    }
}

/// The static rules of a weights vector from `own_uid` on a subnet of `n` uids: lengths match,
/// no duplicates, every uid exists, at least `min(min_allowed_weights, n)` entries (a lone self
/// weight is always allowed), and no normalized share above `max_weight_limit`.
pub fn check(
    params: &SubnetParams,
    netuid: u16,
    n: u16,
    own_uid: u16,
    uids: &[u16],
    values: &[u16],
) -> Result<(), ChainError> {
    if uids.len() != values.len() {
        return Err(ChainError::LengthMismatch { uids: uids.len(), values: values.len() });
    }
    let mut seen = std::collections::BTreeSet::new();
    for &u in uids {
        if !seen.insert(u) {
            return Err(ChainError::DuplicateUid { uid: u });
        }
        if u >= n {
            return Err(ChainError::UnknownUid { uid: u, netuid, n });
        }
    }
    let self_only = uids == [own_uid];
    let min = usize::from(params.min_allowed_weights.min(n));
    if !self_only && uids.len() < min {
        return Err(ChainError::TooFewWeights { min, got: uids.len() });
    }
    if params.max_weight_limit < u16::MAX && !self_only {
        let sum: u64 = values.iter().map(|&v| u64::from(v)).sum();
        if sum > 0 {
            let max = values.iter().map(|&v| u64::from(v) * u64::from(u16::MAX) / sum).max().unwrap_or(0);
            if max > u64::from(params.max_weight_limit) {
                return Err(ChainError::MaxWeightExceeded { limit: params.max_weight_limit });
            }
        }
    }
    Ok(())
}

/// The commit-reveal rule: direct weights only with commit-reveal off, commits and reveals
/// only with it on.
pub fn check_mode(params: &SubnetParams, netuid: u16, commit_reveal_call: bool) -> Result<(), ChainError> {
    match (params.commit_reveal, commit_reveal_call) {
        (true, false) => Err(ChainError::CommitRevealEnabled { netuid }),
        (false, true) => Err(ChainError::CommitRevealDisabled { netuid }),
        _ => Ok(()),
    }
}

/// The version key rule: any key when the subnet's is 0, else at least the subnet's.
pub fn check_version(params: &SubnetParams, version_key: u64) -> Result<(), ChainError> {
    if params.weights_version_key != 0 && version_key < params.weights_version_key {
        return Err(ChainError::VersionKey { required: params.weights_version_key, got: version_key });
    }
    Ok(())
}

/// The rate limit: a neuron whose `last_update` is that block (its last weights, or its
/// registration; 0: never) may set weights again from `last_update + weights_rate_limit`.
pub fn check_rate(params: &SubnetParams, last_update: u64, now: u64) -> Result<(), ChainError> {
    let next_allowed = last_update + params.weights_rate_limit;
    if last_update != 0 && now < next_allowed {
        return Err(ChainError::TooFast { next_allowed });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SubnetParams {
        SubnetParams {
            tempo: 10,
            weights_rate_limit: 5,
            weights_version_key: 0,
            min_allowed_weights: 2,
            max_weight_limit: u16::MAX,
            commit_reveal: false,
            reveal_period_epochs: 1,
            max_uids: 16,
            max_validators: 4,
            timelocked_commits: false,
        }
    }

    #[test]
    fn scores_become_max_upscaled_u16() {
        let (uids, values) = to_u16(&[(3, 1.0), (1, 0.5), (2, 0.0), (5, f64::NAN), (4, 0.25)], u16::MAX).expect("ok");
        assert_eq!(uids, vec![1, 3, 4]);
        assert_eq!(values, vec![32768, 65535, 16384]);
        assert_eq!(to_u16(&[(1, 0.0)], u16::MAX), Err(ChainError::AllZero));
    }

    #[test]
    fn max_weight_limit_spreads_the_excess() {
        // A 50 % cap: one dominant score is held to half, the rest share the other half.
        let (_, values) = to_u16(&[(0, 100.0), (1, 1.0), (2, 3.0)], u16::MAX / 2).expect("ok");
        let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
        let shares: Vec<f64> = values.iter().map(|&v| f64::from(v) / sum).collect();
        assert!((shares[0] - 0.5).abs() < 1e-4, "{shares:?}");
        assert!((shares[2] / shares[1] - 3.0).abs() < 1e-3, "{shares:?}");
        let mut p = params();
        p.max_weight_limit = u16::MAX / 2 + 2;
        check(&p, 1, 3, 0, &[0, 1, 2], &values).expect("capped weights pass the chain's rule");
    }

    #[test]
    fn rules_match_subtensor() {
        let p = params();
        assert_eq!(check(&p, 1, 4, 0, &[0, 1], &[1]), Err(ChainError::LengthMismatch { uids: 2, values: 1 }));
        assert_eq!(check(&p, 1, 4, 0, &[1, 1], &[1, 1]), Err(ChainError::DuplicateUid { uid: 1 }));
        assert_eq!(check(&p, 1, 4, 0, &[1, 4], &[1, 1]), Err(ChainError::UnknownUid { uid: 4, netuid: 1, n: 4 }));
        assert_eq!(check(&p, 1, 4, 0, &[1], &[1]), Err(ChainError::TooFewWeights { min: 2, got: 1 }));
        check(&p, 1, 4, 0, &[0], &[1]).expect("a lone self weight is allowed");
        check(&p, 1, 1, 0, &[0], &[1]).expect("min is capped at the subnet size");
        let mut capped = p.clone();
        capped.max_weight_limit = 40_000;
        assert_eq!(check(&capped, 1, 4, 0, &[1, 2], &[65535, 1]), Err(ChainError::MaxWeightExceeded { limit: 40_000 }));
        check(&capped, 1, 4, 0, &[1, 2], &[65535, 65535]).expect("even split");

        let mut v = p.clone();
        v.weights_version_key = 7;
        assert_eq!(check_version(&v, 6), Err(ChainError::VersionKey { required: 7, got: 6 }));
        check_version(&v, 8).expect("newer keys pass");
        check_version(&p, 0).expect("no key required");

        let mut cr = p.clone();
        cr.commit_reveal = true;
        assert_eq!(check_mode(&cr, 1, false), Err(ChainError::CommitRevealEnabled { netuid: 1 }));
        assert_eq!(check_mode(&p, 1, true), Err(ChainError::CommitRevealDisabled { netuid: 1 }));
        check_mode(&cr, 1, true).expect("commit with commit-reveal on");
        check_mode(&p, 1, false).expect("set with commit-reveal off");

        check_rate(&p, 0, 1).expect("first time");
        assert_eq!(check_rate(&p, 10, 14), Err(ChainError::TooFast { next_allowed: 15 }));
        check_rate(&p, 10, 15).expect("at the limit");
    }

    #[test]
    fn epochs_follow_subtensor() {
        let p = params();
        // tempo 10: epochs are 11 blocks, offset by netuid + 1.
        assert_eq!(p.epoch(1, 0), 0);
        assert_eq!(p.epoch(1, 8), 0);
        assert_eq!(p.epoch(1, 9), 1);
        assert_eq!(p.epoch_start(1, 1), 9);
        assert_eq!(p.epoch(1, p.epoch_start(1, 5)), 5);
    }
}
