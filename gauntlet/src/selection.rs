//! Which received miners get the loss evaluation in a window, when there are more than the
//! validator can evaluate (docs/protocol.md §14).
//!
//! A purely random draw each window is fair on average but leaves some miner unevaluated for a
//! long time (at 255 miners and 20 a window, one in twelve waits over 30 windows), and its score
//! then rests on stale evidence. A fixed rotation is the opposite: a miner would know the windows
//! it is not evaluated in, and free-ride in them. So: miners that have waited `max_gap` windows
//! (or were never evaluated) are due and go first, the longest-waiting first; the rest of the
//! budget goes in the window's order, which no miner knows before its upload is due. A miner that
//! is not due can never tell whether it will be drawn.

use std::collections::BTreeMap;

/// A window's choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The uids to evaluate, in the window's order.
    pub evaluated: Vec<u16>,
    /// How many of the received were due (evaluated or not: more may be due than the budget).
    pub due: usize,
}

/// The uids to evaluate in `window`: `order` holds the received uids in the window's evaluation
/// order; `last_evaluated` the window of each one's last evaluation (absent: never). Returns at
/// most `budget` uids, in `order`'s order.
///
/// Due (waited at least `max_gap` windows, or never evaluated) come first, the never-evaluated
/// first of all and then the longest wait; ties in `order`'s order. As long as the same `n`
/// miners upload, none waits more than `max(max_gap, ⌈n / budget⌉)` windows between evaluations
/// (test `no_miner_waits_longer_than_the_bound`). A newcomer is evaluated at once; registering
/// many uids to crowd others out costs a registration each and delays others by one window each.
pub fn for_evaluation(
    order: &[u16],
    last_evaluated: &BTreeMap<u16, u64>,
    window: u64,
    budget: usize,
    max_gap: u64,
) -> Selection {
    let wait = |uid: u16| last_evaluated.get(&uid).map_or(u64::MAX, |&last| window.saturating_sub(last));
    let mut due: Vec<(usize, u16)> =
        order.iter().enumerate().filter(|&(_, &uid)| wait(uid) >= max_gap).map(|(i, &u)| (i, u)).collect();
    // Stable: equal waits keep the window's order.
    due.sort_by_key(|&(_, uid)| std::cmp::Reverse(wait(uid)));
    let mut picked = vec![false; order.len()];
    for &(i, _) in due.iter().take(budget) {
        picked[i] = true;
    }
    let mut left = budget.saturating_sub(due.len().min(budget));
    for p in picked.iter_mut() {
        if left == 0 {
            break;
        }
        if !*p {
            *p = true;
            left -= 1;
        }
    }
    let evaluated = order.iter().zip(&picked).filter(|(_, p)| **p).map(|(u, _)| *u).collect();
    Selection { evaluated, due: due.len() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Received in order, (uid, last evaluated), window, budget, max gap, evaluated, due.
    type Case = (&'static [u16], &'static [(u16, u64)], u64, usize, u64, &'static [u16], usize);

    fn last(entries: &[(u16, u64)]) -> BTreeMap<u16, u64> {
        entries.iter().copied().collect()
    }

    #[test]
    fn table() {
        let cases: [Case; 8] = [
            // Room for all: everyone, whatever their history.
            (&[3, 1, 2], &[(1, 9), (2, 9), (3, 9)], 10, 5, 4, &[3, 1, 2], 0),
            // None due: the window's order decides.
            (&[3, 1, 2], &[(1, 9), (2, 9), (3, 9)], 10, 2, 4, &[3, 1], 0),
            // uid 2 waited 4 windows: due, so it goes before 3 and 1 in the window's order.
            (&[3, 1, 2], &[(1, 9), (2, 6), (3, 9)], 10, 2, 4, &[3, 2], 1),
            // Never evaluated counts as due.
            (&[3, 1, 2], &[(1, 9), (3, 9)], 10, 1, 4, &[2], 1),
            // More due than the budget: the new 3 first, then the longest wait (1: 8, 2: 5).
            (&[3, 2, 1], &[(1, 2), (2, 5)], 10, 2, 4, &[3, 1], 3),
            (&[3, 2, 1], &[(1, 2), (2, 5)], 10, 1, 4, &[3], 3),
            (&[2, 1], &[(1, 2), (2, 5)], 10, 1, 4, &[1], 2),
            // Nothing received.
            (&[], &[], 10, 3, 4, &[], 0),
        ];
        for (order, history, window, budget, gap, want, due) in cases {
            let got = for_evaluation(order, &last(history), window, budget, gap);
            assert_eq!(got, Selection { evaluated: want.to_vec(), due }, "{order:?} {history:?}");
        }
        assert!(for_evaluation(&[1, 2], &BTreeMap::new(), 5, 0, 3).evaluated.is_empty());
    }

    /// The guarantee, simulated: `n` miners upload every window, in a fresh pseudo-random order
    /// each time; none ever waits more than `max(max_gap, ⌈n / budget⌉)` windows, and with room
    /// to spare the random draw still reaches everyone.
    #[test]
    fn no_miner_waits_longer_than_the_bound() {
        for (n, budget, gap) in [(255usize, 20usize, 10u64), (100, 20, 10), (255, 20, 20), (40, 3, 5), (7, 2, 1)] {
            let mut history = BTreeMap::new();
            let mut worst = 0u64;
            let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ n as u64;
            let mut previous: BTreeMap<u16, u64> = BTreeMap::new();
            for window in 0..400u64 {
                let mut order: Vec<u16> = (0..n as u16).collect();
                for i in (1..order.len()).rev() {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    order.swap(i, (s % (i as u64 + 1)) as usize);
                }
                for uid in for_evaluation(&order, &history, window, budget, gap).evaluated {
                    // Waits from the first window on; the bound applies once everyone has been
                    // seen once (the first round of never-evaluated miners).
                    let since = previous.get(&uid).copied().unwrap_or(0);
                    if previous.contains_key(&uid) {
                        worst = worst.max(window - since);
                    }
                    previous.insert(uid, window);
                    history.insert(uid, window);
                }
            }
            let bound = gap.max(n.div_ceil(budget) as u64);
            assert!(worst <= bound, "{n} miners, {budget} a window, gap {gap}: waited {worst} > {bound}");
            assert_eq!(previous.len(), n, "everyone evaluated");
        }
    }
}
