//! Plackett–Luce ratings (Weng & Lin 2011, Algorithm 4), as the `openskill` Python package
//! 6.2 computes them for one-player teams: each evaluated miner is a team of one, ranked by its
//! score. Test vectors come from that package (docs/protocol.md §14).

use serde::{Deserialize, Serialize};

/// A miner's rating.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    pub mu: f64,
    pub sigma: f64,
}

impl Rating {
    /// The conservative skill estimate `μ − 3σ` (0 for a fresh rating).
    pub fn ordinal(&self) -> f64 {
        self.mu - 3.0 * self.sigma
    }
}

/// The model's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlackettLuce {
    pub beta: f64,
    pub tau: f64,
    pub mu: f64,
    pub sigma: f64,
}

/// Floor on the variance shrink factor (openskill's κ).
const KAPPA: f64 = 1e-4;

impl PlackettLuce {
    /// A fresh rating.
    pub fn rating(&self) -> Rating {
        Rating { mu: self.mu, sigma: self.sigma }
    }

    /// One game: every `(rating, score)` is a one-player team, higher scores rank better and
    /// equal scores tie. Returns the new ratings in the same order.
    pub fn rate(&self, players: &[(Rating, f64)]) -> Vec<Rating> {
        if players.len() < 2 {
            return players.iter().map(|(r, _)| *r).collect();
        }
        // Dynamics: σ² + τ² before the update.
        let sigma: Vec<f64> = players.iter().map(|(r, _)| (r.sigma * r.sigma + self.tau * self.tau).sqrt()).collect();
        let mu: Vec<f64> = players.iter().map(|(r, _)| r.mu).collect();
        // Rank = index of the score's first position in descending order (ties share it).
        let mut sorted: Vec<f64> = players.iter().map(|(_, s)| -s).collect();
        sorted.sort_by(f64::total_cmp);
        let rank: Vec<usize> =
            players.iter().map(|(_, s)| sorted.iter().position(|v| v.total_cmp(&-s).is_eq()).unwrap_or(0)).collect();
        let n = players.len();
        let c = sigma.iter().map(|s| s * s + self.beta * self.beta).sum::<f64>().sqrt();
        let exp: Vec<f64> = mu.iter().map(|m| (m / c).exp()).collect();
        // S_q = Σ over teams ranked the same or worse than q.
        let sum_q: Vec<f64> = (0..n).map(|q| (0..n).filter(|&s| rank[s] >= rank[q]).map(|s| exp[s]).sum()).collect();
        let a: Vec<f64> = (0..n).map(|q| (0..n).filter(|&s| rank[s] == rank[q]).count() as f64).collect();
        (0..n)
            .map(|i| {
                let (mut omega, mut delta) = (0.0, 0.0);
                for q in (0..n).filter(|&q| rank[q] <= rank[i]) {
                    let p = exp[i] / sum_q[q];
                    delta += p * (1.0 - p) / a[q];
                    omega += if q == i { (1.0 - p) / a[q] } else { -p / a[q] };
                }
                let var = sigma[i] * sigma[i];
                omega *= var / c;
                delta *= var / (c * c);
                delta *= sigma[i] / c;
                Rating { mu: mu[i] + omega, sigma: sigma[i] * (1.0 - delta).max(KAPPA).sqrt() }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: PlackettLuce = PlackettLuce { beta: 7.0, tau: 0.1, mu: 25.0, sigma: 25.0 / 3.0 };

    fn close(a: Rating, mu: f64, sigma: f64) {
        assert!((a.mu - mu).abs() < 1e-12 && (a.sigma - sigma).abs() < 1e-12, "{a:?} vs ({mu}, {sigma})");
    }

    /// Vectors from `openskill` 6.2.0: `PlackettLuce(beta=7, tau=0.1).rate(teams, scores=...)`.
    #[test]
    fn matches_the_openskill_package() {
        let fresh = MODEL.rating();
        let out =
            MODEL.rate(&[(fresh, 0.3), (Rating { mu: 30.0, sigma: 6.0 }, 0.1), (Rating { mu: 20.0, sigma: 7.0 }, 0.2)]);
        close(out[0], 27.702865095765766, 8.232342358723352);
        close(out[1], 27.775349135149444, 5.941605734549365);
        close(out[2], 21.12051774149698, 6.904981762755723);

        // A tie and a missing upload's −99.
        let out = MODEL.rate(&[
            (fresh, 0.3),
            (Rating { mu: 30.0, sigma: 6.0 }, 0.1),
            (Rating { mu: 20.0, sigma: 7.0 }, -99.0),
            (Rating { mu: 26.0, sigma: 5.0 }, 0.1),
        ]);
        close(out[0], 27.714303940720114, 8.2727764717389);
        close(out[1], 29.574337858678916, 5.959860897582531);
        close(out[2], 18.899412847232814, 6.9445881239067955);
        close(out[3], 25.879869343018775, 4.983179070118058);
    }

    #[test]
    fn a_single_player_is_unchanged_and_fresh_ordinal_is_zero() {
        let r = MODEL.rating();
        assert_eq!(MODEL.rate(&[(r, 1.0)]), vec![r]);
        assert!(r.ordinal().abs() < 1e-12);
    }
}
