//! The agreed gather set of a window (docs/protocol.md §16): which payloads every honest node
//! applies, decided from the validators' signed gather records weighted by stake, not from what
//! a miner's server happened to answer one reader.
//!
//! Each node gathers a window itself and applies it optimistically; validators publish which
//! payloads (by content id) they accepted. An entry `(uid, payload id)` is *agreed* when the
//! validators attesting it hold more than half the witnesses' stake at the window's boundary.
//! A node *decides* once the records it has read fix every entry either way, whatever the
//! records it has not read say; until then it keeps its own set and reads again.
//!
//! Pure functions over plain data: the chain's stake at the boundary and the records' entries.

use std::collections::{BTreeMap, BTreeSet};

use crate::gather::Peer;

/// A payload's content id: BLAKE3 of its header and body (`payload::Payload::hash`).
pub type PayloadId = [u8; 32];

/// A validator whose record counts for a window, with its stake at the window's boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Witness {
    pub uid: u16,
    pub stake: u64,
}

impl Witness {
    /// A witness peer's uid and stake.
    pub fn of(p: &Peer) -> Witness {
        Witness { uid: p.uid, stake: p.stake }
    }
}

/// The witnesses of a window, from the peers at its boundary: neurons with a validator's bucket
/// commitment and stake, holding a validator permit (any staked validator while nobody on the
/// subnet holds a permit yet, as before a new subnet's first epoch). In the peers' order.
pub fn witnesses(peers: &[Peer]) -> Vec<&Peer> {
    let any_permit = peers.iter().any(|p| p.validator_permit);
    peers
        .iter()
        .filter(|p| p.validator && p.bucket.is_some() && p.stake > 0 && (p.validator_permit || !any_permit))
        .collect()
}

/// Whether `support` is more than half of `total` (stake, so no overflow in u128).
pub fn majority(support: u128, total: u128) -> bool {
    2 * support > total
}

/// What the records read so far say about a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No validator can witness the window: each node's own gather stands (not Byzantine-safe).
    NoWitnesses,
    /// The agreed entries, in candidate order, at most `gather_peers` of them.
    Decided(Vec<(u16, PayloadId)>),
    /// Some entry could still go either way with the records not read yet.
    Undecided {
        /// Stake of the witnesses whose records were read, and of all witnesses.
        read_stake: u128,
        total_stake: u128,
    },
}

/// Decides a window from the records read: `records` maps a witness uid to the entries of its
/// record (records of non-witnesses are ignored; an entry listed twice in one record counts
/// once). `order` is the window's candidate order (uids); entries of other uids are dropped.
///
/// An entry is agreed when `2·support > total`; the node has decided when every entry read has
/// `2·support > total` or `2·(support + unread) ≤ total`, and `2·unread ≤ total` (so no entry
/// it has not seen can be agreed).
pub fn decide(
    witnesses: &[Witness],
    records: &BTreeMap<u16, Vec<(u16, PayloadId)>>,
    order: &[u16],
    gather_peers: usize,
) -> Decision {
    let total: u128 = witnesses.iter().map(|w| u128::from(w.stake)).sum();
    if total == 0 {
        return Decision::NoWitnesses;
    }
    let mut read = 0u128;
    let mut support: BTreeMap<(u16, PayloadId), u128> = BTreeMap::new();
    for w in witnesses {
        let Some(entries) = records.get(&w.uid) else { continue };
        read += u128::from(w.stake);
        for e in entries.iter().collect::<BTreeSet<_>>() {
            *support.entry(*e).or_default() += u128::from(w.stake);
        }
    }
    let unread = total - read;
    let settled =
        !majority(unread, total) && support.values().all(|&s| majority(s, total) || !majority(s + unread, total));
    if !settled {
        return Decision::Undecided { read_stake: read, total_stake: total };
    }
    let agreed: BTreeMap<u16, PayloadId> =
        support.into_iter().filter(|(_, s)| majority(*s, total)).map(|((uid, id), _)| (uid, id)).collect();
    Decision::Decided(order.iter().filter_map(|u| agreed.get(u).map(|id| (*u, *id))).take(gather_peers).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hotkey::Hotkey;

    fn id(b: u8) -> PayloadId {
        [b; 32]
    }

    fn w(uid: u16, stake: u64) -> Witness {
        Witness { uid, stake }
    }

    type Records = BTreeMap<u16, Vec<(u16, PayloadId)>>;

    fn recs(list: &[(u16, &[(u16, u8)])]) -> Records {
        list.iter().map(|(v, es)| (*v, es.iter().map(|(u, b)| (*u, id(*b))).collect())).collect()
    }

    const ORDER: [u16; 5] = [4, 2, 7, 1, 3];

    /// docs/protocol.md §16's vectors, one row each: witnesses, records read, the decision.
    #[test]
    fn decision_table() {
        let two = [w(10, 50), w(11, 50)];
        let rows: Vec<(&str, Vec<Witness>, Records, Decision)> = vec![
            ("no stake: no witnesses", vec![w(10, 0)], recs(&[]), Decision::NoWitnesses),
            (
                "a stake-majority validator alone decides",
                vec![w(10, 60), w(11, 40)],
                recs(&[(10, &[(1, 1), (2, 2)])]),
                Decision::Decided(vec![(2, id(2)), (1, id(1))]),
            ),
            (
                "the minority's record cannot add or remove entries",
                vec![w(10, 60), w(11, 40)],
                recs(&[(10, &[(1, 1)]), (11, &[(3, 3), (1, 9)])]),
                Decision::Decided(vec![(1, id(1))]),
            ),
            (
                "equal stakes, one record: its entries are open",
                two.to_vec(),
                recs(&[(10, &[(1, 1)])]),
                Decision::Undecided { read_stake: 50, total_stake: 100 },
            ),
            (
                "equal stakes, nothing read",
                two.to_vec(),
                recs(&[]),
                Decision::Undecided { read_stake: 0, total_stake: 100 },
            ),
            (
                "equal stakes, an empty record: half the stake is no majority for anything unseen",
                two.to_vec(),
                recs(&[(10, &[])]),
                Decision::Decided(vec![]),
            ),
            (
                "equal stakes, both read: an equivocated uid is out, the rest in",
                two.to_vec(),
                recs(&[(10, &[(1, 1), (2, 2)]), (11, &[(1, 7), (2, 2)])]),
                Decision::Decided(vec![(2, id(2))]),
            ),
            (
                "a non-witness's record is ignored",
                vec![w(10, 60)],
                recs(&[(10, &[(1, 1)]), (99, &[(2, 2)])]),
                Decision::Decided(vec![(1, id(1))]),
            ),
            (
                "three thirds: two of three agree",
                vec![w(10, 1), w(11, 1), w(12, 1)],
                recs(&[(10, &[(1, 1), (2, 2)]), (11, &[(1, 1), (3, 3)])]),
                Decision::Undecided { read_stake: 2, total_stake: 3 },
            ),
            (
                "three thirds, all read",
                vec![w(10, 1), w(11, 1), w(12, 1)],
                recs(&[(10, &[(1, 1), (2, 2)]), (11, &[(1, 1), (3, 3)]), (12, &[(2, 2), (7, 7)])]),
                Decision::Decided(vec![(2, id(2)), (1, id(1))]),
            ),
            (
                "an entry listed twice counts once",
                two.to_vec(),
                recs(&[(10, &[(1, 1), (1, 1)]), (11, &[])]),
                Decision::Decided(vec![]),
            ),
        ];
        for (name, witnesses, records, expected) in rows {
            assert_eq!(decide(&witnesses, &records, &ORDER, 2), expected, "{name}");
        }
    }

    #[test]
    fn agreed_entries_follow_the_candidate_order_and_the_gather_size() {
        let ws = [w(10, 1)];
        let r = recs(&[(10, &[(1, 1), (3, 3), (4, 4), (2, 2), (8, 8)])]);
        assert_eq!(decide(&ws, &r, &ORDER, 3), Decision::Decided(vec![(4, id(4)), (2, id(2)), (1, id(1))]));
        assert_eq!(
            decide(&ws, &r, &ORDER, 9),
            Decision::Decided(vec![(4, id(4)), (2, id(2)), (1, id(1)), (3, id(3))]),
            "uid 8 is not a candidate"
        );
    }

    /// Safety: two readers of different subsets of the same records never decide differently.
    #[test]
    fn readers_of_different_subsets_never_decide_differently() {
        let ws = [w(10, 5), w(11, 3), w(12, 2), w(13, 1)];
        let all = recs(&[(10, &[(1, 1), (2, 2)]), (11, &[(1, 1), (3, 3)]), (12, &[(2, 2)]), (13, &[(1, 1), (2, 5)])]);
        let keys: Vec<u16> = all.keys().copied().collect();
        let mut decided = BTreeSet::new();
        for mask in 0u32..16 {
            let subset: BTreeMap<_, _> = keys
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, k)| (*k, all[k].clone()))
                .collect();
            if let Decision::Decided(set) = decide(&ws, &subset, &ORDER, 5) {
                decided.insert(set);
            }
        }
        assert_eq!(decided.len(), 1, "{decided:?}");
    }

    #[test]
    fn witnesses_are_staked_validators_with_a_permit() {
        let peer = |uid: u16, validator: bool, stake: u64, permit: bool| Peer {
            uid,
            hotkey: Hotkey([uid as u8; 32]),
            incentive: 0,
            bucket: Some(format!("/b/{uid}")),
            validator,
            stake,
            validator_permit: permit,
        };
        let no_permits = [peer(1, true, 5, false), peer(2, true, 0, false), peer(3, false, 9, false)];
        let stakes = |peers: &[Peer]| witnesses(peers).into_iter().map(Witness::of).collect::<Vec<_>>();
        assert_eq!(stakes(&no_permits), vec![w(1, 5)], "before any permit: staked validators");
        let permits = [peer(1, true, 5, false), peer(2, true, 7, true), peer(3, false, 9, true)];
        assert_eq!(stakes(&permits), vec![w(2, 7)], "a permit is required once anyone holds one");
    }
}
