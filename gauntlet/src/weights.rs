//! Final scores to weights (docs/protocol.md §14): the burn uid takes `burn_share`; positive
//! scores share the rest by the configured scheme. Weights sum to 1; the chain client turns them
//! into u16 (`ferrum_chain::weights`).

use std::collections::BTreeMap;

use ferrum_common::config::{WeightScheme, WeightsConfig};

/// uid → weight, summing to 1. Uids with a non-positive or non-finite score get none; with no
/// positive score at all, the burn uid gets everything.
pub fn weights(scores: &BTreeMap<u16, f64>, cfg: &WeightsConfig) -> BTreeMap<u16, f64> {
    let mut ranked: Vec<(u16, f64)> = scores
        .iter()
        .filter(|(u, s)| **u != cfg.burn_uid && s.is_finite() && **s > 0.0)
        .map(|(u, s)| (*u, *s))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let shares = match cfg.scheme {
        WeightScheme::Tiers => tiers(&ranked, cfg),
        WeightScheme::Power => {
            let total: f64 = ranked.iter().map(|(_, s)| s.powf(cfg.power.exponent)).sum();
            if total > 1e-12 {
                ranked.iter().map(|(u, s)| (*u, s.powf(cfg.power.exponent) / total)).collect()
            } else {
                Vec::new()
            }
        }
    };
    let mut out = BTreeMap::new();
    if shares.is_empty() {
        out.insert(cfg.burn_uid, 1.0);
        return out;
    }
    out.insert(cfg.burn_uid, cfg.burn_share);
    let total: f64 = shares.iter().map(|(_, w)| w).sum();
    for (u, w) in shares {
        out.insert(u, (1.0 - cfg.burn_share) * w / total);
    }
    out
}

/// The gather tier (top `gather_peers`, a linear `top_ratio`:1 profile, `gather_share` of the
/// miners' part) and the reserve tier (next `reserve_peers`, geometric `reserve_decay`, the
/// rest), a reserve weight never above the smallest gather weight times the decay.
fn tiers(ranked: &[(u16, f64)], cfg: &WeightsConfig) -> Vec<(u16, f64)> {
    let t = &cfg.tiers;
    let g = ranked.len().min(t.gather_peers as usize);
    let r = (ranked.len() - g).min(t.reserve_peers as usize);
    let profile: Vec<f64> = (0..g)
        .map(|i| if g == 1 { 1.0 } else { t.top_ratio + (1.0 - t.top_ratio) * i as f64 / (g - 1) as f64 })
        .collect();
    let psum: f64 = profile.iter().sum();
    let gather_share = if r == 0 { 1.0 } else { t.gather_share };
    let mut out: Vec<(u16, f64)> =
        ranked[..g].iter().zip(&profile).map(|((u, _), p)| (*u, gather_share * p / psum)).collect();
    if r > 0 {
        let q: Vec<f64> = (0..r).map(|j| t.reserve_decay.powi(j as i32)).collect();
        let qsum: f64 = q.iter().sum();
        let mut reserve: Vec<f64> = q.iter().map(|x| (1.0 - t.gather_share) * x / qsum).collect();
        let min_gather = out.iter().map(|(_, w)| *w).fold(f64::INFINITY, f64::min);
        let max_reserve = reserve.iter().copied().fold(0.0, f64::max);
        if max_reserve > min_gather {
            let scale = min_gather / max_reserve * t.reserve_decay;
            reserve.iter_mut().for_each(|w| *w *= scale);
        }
        out.extend(ranked[g..g + r].iter().zip(reserve).map(|((u, _), w)| (*u, w)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_common::config::Preset;

    fn cfg() -> WeightsConfig {
        let mut c = Preset::Test.config().weights;
        c.tiers.gather_peers = 2;
        c.tiers.reserve_peers = 2;
        c
    }

    #[test]
    fn tiers_burn_and_zero_for_the_rest() {
        let scores: BTreeMap<u16, f64> = [(1, 5.0), (2, 4.0), (3, 3.0), (4, 2.0), (5, 1.0), (6, -1.0), (0, 9.0)].into();
        let w = weights(&scores, &cfg());
        assert!((w.values().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(w[&0], 0.5, "burn share");
        assert!(w[&1] > w[&2] && w[&2] > w[&3] && w[&3] > w[&4], "{w:?}");
        assert!((w[&1] / w[&2] - 2.0).abs() < 1e-9, "top gets top_ratio × the last gather peer");
        assert!(!w.contains_key(&5) && !w.contains_key(&6), "beyond the tiers or negative: nothing");
    }

    #[test]
    fn nobody_positive_burns_everything_and_power_is_proportional() {
        let w = weights(&[(1, -1.0), (2, 0.0), (3, f64::NAN)].into(), &cfg());
        assert_eq!(w, [(0, 1.0)].into());
        let mut c = cfg();
        c.scheme = WeightScheme::Power;
        let w = weights(&[(1, 2.0), (2, 1.0)].into(), &c);
        assert!((w[&1] - 0.4).abs() < 1e-12 && (w[&2] - 0.1).abs() < 1e-12, "{w:?}");
    }
}
