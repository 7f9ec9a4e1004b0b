//! The gather set of a window (docs/protocol.md §13): which peers' payloads every node
//! aggregates, as a pure function of chain state at the window's boundary, and the bucket
//! commitment that tells nodes where a peer's payloads are.

use crate::hotkey::Hotkey;

/// Domain separation for the tie-break rank.
const RANK_CONTEXT: &str = "ferrum 2026-11 gather rank v1";
/// Prefix of a miner's bucket commitment.
pub const COMMITMENT_PREFIX: &[u8] = b"ferrum1 ";
/// Prefix of a validator's bucket commitment (gather records and checkpoints, no payloads).
pub const VALIDATOR_COMMITMENT_PREFIX: &[u8] = b"ferrum1v ";
/// Largest commitment the chain stores (one `Raw128` field).
pub const MAX_COMMITMENT_BYTES: usize = 128;

/// A registered neuron as the gather set needs it, read from the metagraph at the boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u16,
    pub hotkey: Hotkey,
    /// Share of the subnet's incentive, of 65535.
    pub incentive: u16,
    /// The bucket from its commitment; `None` when it has none or it does not parse.
    pub bucket: Option<String>,
    /// Its commitment says it validates (it uploads no payloads).
    pub validator: bool,
    /// Stake at the boundary, in rao (what a validator's gather record weighs).
    pub stake: u64,
    pub validator_permit: bool,
}

/// The gather set's size (the config's `weights.tiers` sizes) and the burn uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherRules {
    pub gather_peers: usize,
    pub reserve_peers: usize,
    pub burn_uid: u16,
}

/// The peers whose payloads are tried for a window, best first: the first `gather_peers` are
/// the primary set, the rest (at most `reserve_peers`) replace missing or invalid payloads in
/// order.
///
/// Eligible: a committed bucket, not the burn uid. Ranked by on-chain incentive,
/// highest first; ties (all of them on a new subnet, where no incentive has been paid yet) are
/// broken by `blake3-derive(RANK_CONTEXT, boundary_hash ‖ le16(uid))`, smallest first, so the
/// order changes every window and favours no uid.
pub fn candidates(peers: &[Peer], boundary_hash: &[u8; 32], rules: &GatherRules) -> Vec<Peer> {
    let mut eligible: Vec<(u16, [u8; 32], &Peer)> = peers
        .iter()
        .filter(|p| p.bucket.is_some() && !p.validator && p.uid != rules.burn_uid)
        .map(|p| (p.incentive, tie_break(boundary_hash, p.uid), p))
        .collect();
    eligible.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    eligible.into_iter().take(rules.gather_peers + rules.reserve_peers).map(|(_, _, p)| p.clone()).collect()
}

/// The tie-break rank of a uid at a boundary.
pub fn tie_break(boundary_hash: &[u8; 32], uid: u16) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(RANK_CONTEXT);
    h.update(boundary_hash);
    h.update(&uid.to_le_bytes());
    *h.finalize().as_bytes()
}

/// Whether a candidate's payload can be aggregated, and why not.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict<R> {
    Accepted,
    Rejected(R),
}

/// Walks the candidates in order with each one's verdict (`verdicts[i]` for `candidates[i]`),
/// accepting until `gather_peers` are in; later verdicts are not used. Returns the accepted
/// positions and the skipped uids with their reasons.
pub fn select<R>(candidates: &[Peer], verdicts: Vec<Verdict<R>>, gather_peers: usize) -> (Vec<usize>, Vec<(u16, R)>) {
    let mut accepted = Vec::new();
    let mut skipped = Vec::new();
    for (i, (peer, verdict)) in candidates.iter().zip(verdicts).enumerate() {
        if accepted.len() >= gather_peers {
            break;
        }
        match verdict {
            Verdict::Accepted => accepted.push(i),
            Verdict::Rejected(r) => skipped.push((peer.uid, r)),
        }
    }
    (accepted, skipped)
}

/// Why a bucket cannot be committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitmentError {
    #[error("bucket commitment is {got} bytes, above the chain's {max}: use a shorter bucket URL")]
    TooLong { got: usize, max: usize },
}

/// The commitment naming a miner's bucket: `ferrum1 ` followed by its URL, or a validator's:
/// `ferrum1v ` followed by its URL (docs/protocol.md §13).
pub fn commitment(bucket_url: &str, validator: bool) -> Result<Vec<u8>, CommitmentError> {
    let prefix = if validator { VALIDATOR_COMMITMENT_PREFIX } else { COMMITMENT_PREFIX };
    let data = [prefix, bucket_url.as_bytes()].concat();
    if data.len() > MAX_COMMITMENT_BYTES {
        return Err(CommitmentError::TooLong { got: data.len(), max: MAX_COMMITMENT_BYTES });
    }
    Ok(data)
}

/// The bucket URL of a commitment and whether it is a validator's, if it is one of ours.
pub fn parse_commitment(data: &[u8]) -> Option<(String, bool)> {
    let (rest, validator) = match data.strip_prefix(VALIDATOR_COMMITMENT_PREFIX) {
        Some(rest) => (rest, true),
        None => (data.strip_prefix(COMMITMENT_PREFIX)?, false),
    };
    let url = std::str::from_utf8(rest).ok()?;
    (!url.is_empty() && url.chars().all(|c| !c.is_control())).then(|| (url.to_string(), validator))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn peer(uid: u16, incentive: u16, bucket: bool) -> Peer {
        Peer {
            uid,
            hotkey: Hotkey([uid as u8; 32]),
            incentive,
            bucket: bucket.then(|| format!("/b/{uid}")),
            validator: false,
            stake: 0,
            validator_permit: false,
        }
    }

    fn rules(gather: usize, reserve: usize) -> GatherRules {
        GatherRules { gather_peers: gather, reserve_peers: reserve, burn_uid: 0 }
    }

    fn uids(c: &[Peer]) -> Vec<u16> {
        c.iter().map(|p| p.uid).collect()
    }

    #[test]
    fn ranked_by_incentive_then_a_per_window_tie_break() {
        let mut validator = peer(5, 60000, true);
        validator.validator = true;
        let peers = vec![
            peer(0, 9000, true),
            peer(1, 100, true),
            peer(2, 500, true),
            peer(3, 100, true),
            peer(4, 0, false),
            validator,
        ];
        let c = candidates(&peers, &[7; 32], &rules(2, 1));
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].uid, 2, "highest incentive first; burn uid 0, uid 4 (no bucket) and the validator are out");
        let ties: BTreeSet<u16> = uids(&c[1..]).into_iter().collect();
        assert_eq!(ties, BTreeSet::from([1, 3]));
        // Input order does not matter.
        let mut reversed = peers.clone();
        reversed.reverse();
        assert_eq!(candidates(&reversed, &[7; 32], &rules(2, 1)), c);
    }

    #[test]
    fn a_new_subnet_orders_by_the_tie_break_which_changes_per_window() {
        let peers: Vec<Peer> = (1..=8).map(|u| peer(u, 0, true)).collect();
        let a = uids(&candidates(&peers, &[1; 32], &rules(8, 0)));
        let b = uids(&candidates(&peers, &[2; 32], &rules(8, 0)));
        assert_ne!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (1..=8).collect::<Vec<u16>>());
    }

    /// docs/protocol.md §13 test vector, checked with the Python `blake3` package.
    #[test]
    fn tie_break_vector() {
        assert_eq!(
            hex::encode(tie_break(&[0u8; 32], 1)),
            "f4adfdd0facbff3d3b0637f905b3611ed4dd91576940b5fcf2c2556754b8f3a8"
        );
    }

    #[test]
    fn reserves_replace_rejected_payloads_in_order() {
        let c: Vec<Peer> = [5, 3, 8, 1, 9].iter().map(|&u| peer(u, 0, true)).collect();
        let verdicts = |bad: &[u16]| -> Vec<Verdict<&str>> {
            c.iter()
                .map(|p| if bad.contains(&p.uid) { Verdict::Rejected("missing") } else { Verdict::Accepted })
                .collect()
        };
        let (accepted, skipped) = select(&c, verdicts(&[3, 1]), 3);
        assert_eq!(accepted, vec![0, 2, 4]);
        assert_eq!(skipped, vec![(3, "missing"), (1, "missing")]);
        let (accepted, skipped) = select(&c, verdicts(&[]), 2);
        assert_eq!((accepted, skipped.len()), (vec![0, 1], 0), "stops once full");
        let (accepted, skipped) = select(&c, verdicts(&[5, 3, 8, 1, 9]), 2);
        assert_eq!((accepted.len(), skipped.len()), (0, 5), "all rejected: nothing to aggregate");
    }

    #[test]
    fn commitments_round_trip_and_are_bounded() {
        let url = "s3://bucket/miner?endpoint=http://127.0.0.1:8333";
        let c = commitment(url, false).expect("fits");
        assert_eq!(parse_commitment(&c), Some((url.to_string(), false)));
        let v = commitment(url, true).expect("fits");
        assert_eq!(parse_commitment(&v), Some((url.to_string(), true)));
        assert!(matches!(commitment(&"x".repeat(121), false), Err(CommitmentError::TooLong { got: 129, .. })));
        assert_eq!(parse_commitment(b"something else"), None);
        assert_eq!(parse_commitment(b"ferrum1 "), None);
        assert_eq!(parse_commitment(b"ferrum1 a\nb"), None);
    }
}
