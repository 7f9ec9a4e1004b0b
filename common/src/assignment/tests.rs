use std::collections::HashSet;

use super::*;

/// //Alice's sr25519 public key.
const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

fn dataset() -> DatasetId {
    let mut id = [0u8; 32];
    for (i, b) in id.iter_mut().enumerate() {
        *b = i as u8;
    }
    DatasetId(id)
}

fn alice() -> Hotkey {
    ALICE.parse().expect("alice")
}

fn assign(netuid: u16, window: u64, uid: u16, hotkey: &Hotkey, count: u64, population: u64) -> Vec<u64> {
    let ds = dataset();
    let req = SampleRequest { dataset: &ds, netuid, window, uid, hotkey };
    assign_samples(&req, count, population).expect("assignment")
}

/// The vectors of docs/protocol.md, produced independently by scripts/protocol-vectors.py.
#[test]
fn protocol_test_vectors() {
    let a = alice();
    assert_eq!(assign(3, 51_802, 7, &a, 8, 1_000_000), [767918, 343921, 365884, 614363, 249554, 611409, 53861, 744312]);
    assert_eq!(
        assign(3, 51_802, 8, &a, 8, 1_000_000),
        [464766, 446956, 827751, 108231, 872030, 524353, 348190, 740405]
    );
    assert_eq!(assign(3, 51_803, 7, &a, 8, 1_000_000), [128976, 649596, 40539, 539744, 791218, 170903, 607612, 216548]);
    assert_eq!(assign(4, 51_802, 7, &a, 8, 1_000_000), [289557, 593802, 910859, 636025, 12881, 90314, 903928, 613659]);
    assert_eq!(assign(3, 51_802, 7, &a, 16, 20), [1, 7, 16, 14, 8, 5, 6, 15, 19, 2, 11, 0, 3, 13, 17, 12]);
}

#[test]
fn random_data_vector() {
    let (uid, hotkey) = random_identity(&[0x11; 32]);
    assert_eq!(uid, RANDOM_UID);
    assert_eq!(hex::encode(hotkey.as_bytes()), "481a492319652d50d04ed7f3bed60d5910d69639c5846649482b39b0e036530f");
    assert_eq!(
        assign(3, 51_802, uid, &hotkey, 8, 1_000_000),
        [806838, 800223, 720200, 333730, 467100, 759009, 610555, 557053]
    );
    assert_ne!(random_identity(&[0x12; 32]).1, hotkey);
}

#[test]
fn distinct_and_in_range() {
    let a = alice();
    for (count, population) in [(0, 0), (0, 5), (1, 1), (5, 5), (100, 101), (1000, 1_000_000), (4096, 5000)] {
        let s = assign(1, 9, 2, &a, count, population);
        assert_eq!(s.len() as u64, count);
        assert!(s.iter().all(|&i| i < population));
        assert_eq!(s.iter().collect::<HashSet<_>>().len() as u64, count, "duplicates");
    }
    // Drawing everything yields a permutation.
    let mut all = assign(1, 9, 2, &a, 50, 50);
    all.sort_unstable();
    assert_eq!(all, (0..50).collect::<Vec<_>>());
}

#[test]
fn every_input_changes_the_assignment() {
    let a = alice();
    let base = assign(3, 100, 5, &a, 32, 1 << 40);
    assert_eq!(base, assign(3, 100, 5, &a, 32, 1 << 40), "not deterministic");
    assert_ne!(base, assign(4, 100, 5, &a, 32, 1 << 40));
    assert_ne!(base, assign(3, 101, 5, &a, 32, 1 << 40));
    assert_ne!(base, assign(3, 100, 6, &a, 32, 1 << 40));
    assert_ne!(base, assign(3, 100, 5, &Hotkey([9; 32]), 32, 1 << 40));
    let other = DatasetId([0xee; 32]);
    let req = SampleRequest { dataset: &other, netuid: 3, window: 100, uid: 5, hotkey: &a };
    assert_ne!(base, assign_samples(&req, 32, 1 << 40).expect("assign"));
}

#[test]
fn too_many_samples_is_an_error() {
    let ds = dataset();
    let a = alice();
    let req = SampleRequest { dataset: &ds, netuid: 1, window: 1, uid: 1, hotkey: &a };
    assert_eq!(
        assign_samples(&req, 11, 10),
        Err(AssignmentError::CountExceedsPopulation { count: 11, population: 10 })
    );
}

/// Each index should be drawn about equally often across windows; a biased draw (e.g. modulo
/// without rejection, or a broken Floyd step) fails this by a wide margin.
#[test]
fn draws_are_close_to_uniform() {
    let a = alice();
    let population = 10u64;
    let trials = 4000u64;
    let mut first = [0u64; 10];
    let mut members = [0u64; 10];
    for w in 0..trials {
        let s = assign(1, w, 3, &a, 3, population);
        first[s[0] as usize] += 1;
        for i in s {
            members[i as usize] += 1;
        }
    }
    let expect_first = trials as f64 / population as f64;
    let expect_member = trials as f64 * 3.0 / population as f64;
    let chi2 = |counts: &[u64], e: f64| counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum::<f64>();
    // 9 degrees of freedom: p = 0.001 at 27.9.
    assert!(chi2(&first, expect_first) < 27.9, "first position biased: {first:?}");
    assert!(chi2(&members, expect_member) < 27.9, "membership biased: {members:?}");
}

/// docs/protocol.md §8, cross-checked by scripts/protocol-vectors.py.
#[test]
fn samples_digest_vector() {
    assert_eq!(
        hex::encode(samples_digest(&[4, 8, 15, 16, 23, 42])),
        "43b8410a4695e9a4ae1ef24138928dc9217e3423a955f7a3700736805acb4476"
    );
    assert_ne!(samples_digest(&[4, 8]), samples_digest(&[8, 4]), "order matters");
}
