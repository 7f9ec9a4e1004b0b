//! Yuma consensus as subtensor's `epoch` computes it (the spec-218 source: `run_epoch.rs`,
//! liquid alpha off), in `f64` over dense matrices. Two users: the in-process dev chain, and
//! `ferrum localnet`, whose runtime (the raonet genesis at spec 218) replaces `epoch` with a
//! stub that writes zeros for incentive and dividends whatever the weights say.
//!
//! Not consensus-critical for Ferrum: nodes only read the results from chain storage, so every
//! node sees the same values whoever computed them. The fixed-point rounding of the runtime is
//! not reproduced; results agree with it to about 1e-6.

/// What one epoch reads, per uid (all slices `n` long, `n` = the subnet's size).
#[derive(Debug, Clone)]
pub struct EpochInput<'a> {
    /// The block the epoch runs in.
    pub block: u64,
    /// Blocks after its last weights during which a validator still counts (`ActivityCutoff`).
    pub activity_cutoff: u64,
    /// Consensus majority as a fraction (`Kappa` / 65535; subtensor's default 0.5).
    pub kappa: f64,
    /// Share of old bonds kept each epoch (`BondsMovingAverage` / 1e6; default 0.9).
    pub bonds_moving_average: f64,
    /// How many of the largest stakes get a validator permit.
    pub max_validators: u16,
    /// Stake per uid, any unit (it is normalized).
    pub stake: &'a [f64],
    /// Validator permits from the previous epoch: only their weights count now.
    pub permits: &'a [bool],
    /// Block of each uid's last weights.
    pub last_update: &'a [u64],
    /// Block each uid was registered at: weights set before it do not count for it.
    pub registered_at: &'a [u64],
    /// Each uid's weights row as stored: `(uid, weight of 65535)`.
    pub weights: &'a [Vec<(u16, u16)>],
    /// Each uid's bonds row as stored (column-max scaled to 65535).
    pub bonds: &'a [Vec<(u16, u16)>],
}

/// What one epoch writes, per uid. Fractions in `0..=1`; [`to_u16`] gives storage's form.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochOutput {
    pub active: Vec<bool>,
    /// Permits for the next epoch: the `max_validators` largest stakes.
    pub permits: Vec<bool>,
    pub consensus: Vec<f64>,
    /// Share of clipped weight a miner kept of what validators gave it.
    pub trust: Vec<f64>,
    /// Normalized rank; subtensor stores the same vector as `Rank`.
    pub incentive: Vec<f64>,
    pub dividends: Vec<f64>,
    /// Sum of each validator's weights after clipping at consensus.
    pub validator_trust: Vec<f64>,
    /// New bonds row per uid: `Some(row)` to store (an empty row clears it), `None` to leave.
    pub bonds: Vec<Option<Vec<(u16, u16)>>>,
}

/// Subtensor's `fixed_proportion_to_u16`: a fraction of 65535, rounded down.
pub fn to_u16(values: &[f64]) -> Vec<u16> {
    values.iter().map(|v| (v.clamp(0.0, 1.0) * f64::from(u16::MAX)).floor() as u16).collect()
}

/// Runs one epoch. Slices shorter than `stake` count as zeros/empty for the missing uids.
pub fn epoch(input: &EpochInput<'_>) -> EpochOutput {
    let n = input.stake.len();
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    let active: Vec<bool> = (0..n).map(|i| at(input.last_update, i) + input.activity_cutoff >= input.block).collect();
    let stake = normalized(input.stake.to_vec());
    let permits = top_k(&stake, usize::from(input.max_validators));
    let permitted = |i: usize| input.permits.get(i).copied().unwrap_or(false);
    let active_stake =
        normalized((0..n).map(|i| if active[i] && permitted(i) { stake[i] } else { 0.0 }).collect::<Vec<f64>>());
    // A weight counts if its validator holds a permit, is not weighting itself, and set it
    // after the miner registered (a weight on a replaced uid meant its former holder).
    let outdated = |i: usize, j: usize| at(input.last_update, i) <= at(input.registered_at, j);
    let mut weights = dense(input.weights, n);
    for (i, row) in weights.iter_mut().enumerate() {
        for (j, w) in row.iter_mut().enumerate() {
            if !permitted(i) || i == j || outdated(i, j) {
                *w = 0.0;
            }
        }
        normalize_in_place(row);
    }
    let prerank = weighted_columns(&weights, &active_stake);
    let consensus: Vec<f64> = (0..n).map(|j| weighted_median(&active_stake, &weights, j, input.kappa)).collect();
    for row in weights.iter_mut() {
        for (w, c) in row.iter_mut().zip(&consensus) {
            *w = w.min(*c);
        }
    }
    let validator_trust: Vec<f64> = weights.iter().map(|row| row.iter().sum()).collect();
    let rank = weighted_columns(&weights, &active_stake);
    let trust: Vec<f64> = rank.iter().zip(&prerank).map(|(r, p)| if *p > 0.0 { r / p } else { 0.0 }).collect();
    let incentive = normalized(rank);

    let mut bonds = dense(input.bonds, n);
    for (i, row) in bonds.iter_mut().enumerate() {
        for (j, b) in row.iter_mut().enumerate() {
            if outdated(i, j) {
                *b = 0.0;
            }
        }
    }
    normalize_columns(&mut bonds);
    let mut delta: Vec<Vec<f64>> =
        weights.iter().zip(&active_stake).map(|(row, s)| row.iter().map(|w| w * s).collect()).collect();
    normalize_columns(&mut delta);
    let alpha = 1.0 - input.bonds_moving_average;
    let mut ema: Vec<Vec<f64>> = delta
        .iter()
        .zip(&bonds)
        .map(|(d, b)| d.iter().zip(b).map(|(d, b)| alpha * d + (1.0 - alpha) * b).collect())
        .collect();
    normalize_columns(&mut ema);
    let dividends =
        normalized(ema.iter().map(|row| row.iter().zip(&incentive).map(|(b, inc)| b * inc).sum()).collect());

    let column_max: Vec<f64> = (0..n).map(|j| ema.iter().map(|row| row[j]).fold(0.0, f64::max)).collect();
    let stored_bonds = (0..n)
        .map(|i| {
            if permits[i] {
                let row = (0..n)
                    .filter(|&j| ema[i][j] > 0.0 && column_max[j] > 0.0)
                    .map(|j| (j as u16, (ema[i][j] / column_max[j] * f64::from(u16::MAX)).floor() as u16))
                    .filter(|&(_, v)| v > 0)
                    .collect();
                Some(row)
            } else if permitted(i) {
                Some(Vec::new())
            } else {
                None
            }
        })
        .collect();
    EpochOutput { active, permits, consensus, trust, incentive, dividends, validator_trust, bonds: stored_bonds }
}

fn dense(rows: &[Vec<(u16, u16)>], n: usize) -> Vec<Vec<f64>> {
    (0..n)
        .map(|i| {
            let mut row = vec![0.0; n];
            for &(j, v) in rows.get(i).map_or(&[][..], Vec::as_slice) {
                if let Some(cell) = row.get_mut(usize::from(j)) {
                    *cell = f64::from(v) / f64::from(u16::MAX);
                }
            }
            row
        })
        .collect()
}

fn normalize_in_place(v: &mut [f64]) {
    let sum: f64 = v.iter().sum();
    if sum > 0.0 {
        v.iter_mut().for_each(|x| *x /= sum);
    }
}

fn normalized(mut v: Vec<f64>) -> Vec<f64> {
    normalize_in_place(&mut v);
    v
}

fn normalize_columns(m: &mut [Vec<f64>]) {
    let n = m.first().map_or(0, Vec::len);
    for j in 0..n {
        let sum: f64 = m.iter().map(|row| row[j]).sum();
        if sum > 0.0 {
            m.iter_mut().for_each(|row| row[j] /= sum);
        }
    }
}

/// `r_j = Σ_i w_ij · s_i`.
fn weighted_columns(weights: &[Vec<f64>], stake: &[f64]) -> Vec<f64> {
    let n = stake.len();
    (0..n).map(|j| weights.iter().zip(stake).map(|(row, s)| row[j] * s).sum()).collect()
}

/// Subtensor's `is_topk`: everyone when `n <= k`, else the `k` largest (earlier uid first on ties).
fn top_k(stake: &[f64], k: usize) -> Vec<bool> {
    let n = stake.len();
    if n <= k {
        return vec![true; n];
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| stake[b].total_cmp(&stake[a]).then(a.cmp(&b)));
    let mut out = vec![false; n];
    for &i in order.iter().take(k) {
        out[i] = true;
    }
    out
}

/// The stake-weighted median of column `j` over validators with stake, at majority `kappa`:
/// the weight `v` with at most `1 − kappa` of the stake strictly below it and more than that
/// at or below it (subtensor's `weighted_median_col_sparse`; no weight counts as 0).
fn weighted_median(stake: &[f64], weights: &[Vec<f64>], j: usize, kappa: f64) -> f64 {
    let mut column: Vec<(f64, f64)> =
        stake.iter().zip(weights).filter(|(s, _)| **s > 0.0).map(|(s, row)| (row[j], *s)).collect();
    let total: f64 = column.iter().map(|(_, s)| s).sum();
    if column.is_empty() || total <= 0.0 {
        return 0.0;
    }
    column.sort_by(|a, b| a.0.total_cmp(&b.0));
    let minority = 1.0 - kappa;
    let mut below = 0.0;
    let mut i = 0;
    while i < column.len() {
        let value = column[i].0;
        let mut here = 0.0;
        while i < column.len() && column[i].0 == value {
            here += column[i].1 / total;
            i += 1;
        }
        if below <= minority && minority < below + here {
            return value;
        }
        below += here;
    }
    column.last().map_or(0.0, |c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Net {
        stake: Vec<f64>,
        permits: Vec<bool>,
        last_update: Vec<u64>,
        registered_at: Vec<u64>,
        weights: Vec<Vec<(u16, u16)>>,
        bonds: Vec<Vec<(u16, u16)>>,
    }

    impl Net {
        /// uid 0 the owner (a little stake), validators with `stakes`, then `miners` miners.
        fn new(stakes: &[f64], miners: usize) -> Net {
            let n = 1 + stakes.len() + miners;
            let mut stake = vec![0.0; n];
            stake[0] = 10.0;
            stake[1..=stakes.len()].copy_from_slice(stakes);
            Net {
                stake,
                permits: vec![true; n],
                last_update: vec![100; n],
                registered_at: vec![1; n],
                weights: vec![Vec::new(); n],
                bonds: vec![Vec::new(); n],
            }
        }

        fn run(&self) -> EpochOutput {
            epoch(&EpochInput {
                block: 110,
                activity_cutoff: 5000,
                kappa: 32767.0 / 65535.0,
                bonds_moving_average: 0.9,
                max_validators: 64,
                stake: &self.stake,
                permits: &self.permits,
                last_update: &self.last_update,
                registered_at: &self.registered_at,
                weights: &self.weights,
                bonds: &self.bonds,
            })
        }
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    }

    #[test]
    fn one_validator_pays_its_weights_and_takes_the_dividends() {
        // What a Ferrum validator sets: half to the burn uid 0, half over the miners.
        let mut net = Net::new(&[990.0], 3);
        net.weights[1] = vec![(0, 65535), (2, 29127), (3, 14563), (4, 21845)];
        let out = net.run();
        let total = 65535.0 + 29127.0 + 14563.0 + 21845.0;
        let expected = [65535.0 / total, 0.0, 29127.0 / total, 14563.0 / total, 21845.0 / total];
        assert!(close(&out.incentive, &expected), "{:?}", out.incentive);
        assert!(close(&out.consensus, &expected), "one validator's weights are the consensus");
        assert!(close(&out.dividends, &[0.0, 1.0, 0.0, 0.0, 0.0]), "{:?}", out.dividends);
        assert!(close(&out.trust, &[1.0, 0.0, 1.0, 1.0, 1.0]));
        assert!((out.validator_trust[1] - 1.0).abs() < 1e-9);
        // Stored bonds: the validator holds every bond it made, scaled to 65535 per column.
        assert_eq!(out.bonds[1], Some(vec![(0, 65535), (2, 65535), (3, 65535), (4, 65535)]));
        assert_eq!(to_u16(&out.incentive)[2], (29127.0 / total * 65535.0).floor() as u16);
    }

    #[test]
    fn weights_above_the_stake_majority_are_clipped() {
        // Validator 1 (60 %) and validator 2 (40 %) disagree on miner 4 (uid 4) and miner 3.
        let mut net = Net::new(&[600.0, 400.0], 2);
        net.stake[0] = 0.0;
        net.weights[1] = vec![(3, 65535)];
        net.weights[2] = vec![(3, 100), (4, 100)];
        let out = net.run();
        // Miner 4 is backed by 40 % only: its consensus is 0 and validator 2's weight on it
        // is clipped away, so miner 3 takes all the incentive.
        assert_eq!(out.consensus[4], 0.0);
        assert!(close(&out.incentive, &[0.0, 0.0, 0.0, 1.0, 0.0]), "{:?}", out.incentive);
        assert!(out.trust[4] == 0.0 && (out.trust[3] - 1.0).abs() < 1e-9);
        assert!(out.validator_trust[1] > out.validator_trust[2]);
        // Both bond to miner 3 by stake times clipped weight (0.6 and 0.4 × 0.5), so both
        // earn dividends in that proportion.
        assert!(close(&out.dividends, &[0.0, 0.75, 0.25, 0.0, 0.0]), "{:?}", out.dividends);
    }

    #[test]
    fn masked_weights_pay_nothing() {
        let mut net = Net::new(&[990.0], 3);
        // Self-weight, weights from before miner 4 registered, and a row without a permit.
        net.weights[1] = vec![(1, 65535), (4, 65535)];
        net.registered_at[4] = 100;
        net.weights[2] = vec![(3, 65535)];
        net.permits[2] = false;
        let out = net.run();
        assert!(out.incentive.iter().all(|&x| x == 0.0), "{:?}", out.incentive);
        // Inactive validators' stake does not count either.
        let mut net = Net::new(&[990.0], 2);
        net.weights[1] = vec![(2, 65535)];
        net.last_update[1] = 1;
        net.last_update[0] = 1;
        let out = epoch(&EpochInput { block: 6000, ..inputs(&net) });
        assert!(!out.active[1] && out.incentive.iter().all(|&x| x == 0.0), "{out:?}");
    }

    fn inputs(net: &Net) -> EpochInput<'_> {
        EpochInput {
            block: 110,
            activity_cutoff: 5000,
            kappa: 0.5,
            bonds_moving_average: 0.9,
            max_validators: 64,
            stake: &net.stake,
            permits: &net.permits,
            last_update: &net.last_update,
            registered_at: &net.registered_at,
            weights: &net.weights,
            bonds: &net.bonds,
        }
    }

    #[test]
    fn bonds_move_slowly_toward_new_weights() {
        // Validator 1 bonded to miner 3 for long; now both validators weight miner 4 only.
        let mut net = Net::new(&[500.0, 500.0], 2);
        net.stake[0] = 0.0;
        net.weights[1] = vec![(4, 65535)];
        net.weights[2] = vec![(4, 65535)];
        net.bonds[1] = vec![(3, 65535), (4, 65535)];
        let out = net.run();
        assert!(close(&out.incentive, &[0.0, 0.0, 0.0, 0.0, 1.0]));
        // Miner 4's bonds: old (all validator 1) kept at 0.9, new delta split evenly at 0.1.
        assert!((out.dividends[1] - 0.95).abs() < 1e-9 && (out.dividends[2] - 0.05).abs() < 1e-9, "{out:?}");
    }

    #[test]
    fn permits_go_to_the_largest_stakes() {
        assert_eq!(top_k(&[1.0, 3.0, 2.0, 3.0], 2), vec![false, true, false, true]);
        assert_eq!(top_k(&[0.0, 0.0], 64), vec![true, true]);
        let mut net = Net::new(&[990.0], 3);
        net.weights[1] = vec![(2, 65535)];
        let out = epoch(&EpochInput { max_validators: 1, ..inputs(&net) });
        assert_eq!(out.permits, vec![false, true, false, false, false]);
        // Who lost a permit has its bonds cleared; who never had one is left alone.
        net.permits = vec![true, true, false, false, false];
        let out = epoch(&EpochInput { max_validators: 1, ..inputs(&net) });
        assert_eq!((out.bonds[0].clone(), out.bonds[2].clone()), (Some(Vec::new()), None));
    }
}
