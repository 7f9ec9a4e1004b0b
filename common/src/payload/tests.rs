use proptest::prelude::*;
use sp_core::Pair;

use super::*;
use crate::codec::{Geometry, dct, encode, rice};
use crate::config::Preset;

fn key(uri: &str) -> sr25519::Pair {
    sr25519::Pair::from_string(uri, None).expect("dev key")
}

fn setup(bits: Option<u8>) -> (SubnetConfig, PayloadLayout, PayloadHeader) {
    let mut config = Preset::Test.config();
    config.compression.quantization_bits = bits;
    let layout = PayloadLayout::new(&config);
    let header = PayloadHeader {
        netuid: 3,
        uid: 7,
        window: 51_802,
        hotkey: Hotkey(key("//Bob").public().0),
        config_hash: config.hash(),
        base_fingerprint: [9; 32],
        samples_digest: crate::assignment::samples_digest(&[4, 8, 15, 16, 23, 42]),
    };
    (config, layout, header)
}

fn tensors(layout: &PayloadLayout, seed: f32) -> Vec<EncodedTensor> {
    let mut bases = dct::Bases::default();
    layout
        .spec
        .tensors
        .iter()
        .map(|(_, g)| {
            let x: Vec<f32> = (0..g.numel()).map(|i| ((i as f32 * 0.37 + seed).sin()) * 0.01).collect();
            encode(&x, g, &layout.spec, &mut bases)
        })
        .collect()
}

fn expect(h: &PayloadHeader) -> Expectation<'_> {
    Expectation { netuid: h.netuid, window: h.window, uid: h.uid, hotkey: &h.hotkey, config_hash: &h.config_hash }
}

/// What a hostile miner can do: rewrite any byte, then hash and sign with its own key.
fn resign(bytes: &mut [u8], key: &sr25519::Pair) {
    let end = bytes.len() - TRAILER_LEN;
    let hash = *blake3::hash(&bytes[..end]).as_bytes();
    let sig = key.sign(&signed_message(&bytes[..HEADER_LEN], &hash));
    bytes[end..end + 32].copy_from_slice(&hash);
    bytes[end + 32..].copy_from_slice(&sig.0);
}

/// Offset of tensor `i`'s section.
fn section_start(layout: &PayloadLayout, i: usize) -> usize {
    HEADER_LEN + (0..i).map(|j| layout.section(j)).sum::<usize>()
}

#[test]
fn round_trip_quantized_and_raw() {
    for bits in [Some(2), Some(1), Some(8), None] {
        let (_, layout, header) = setup(bits);
        let t = tensors(&layout, 0.5);
        let bytes = build(&header, &t, &layout, &key("//Bob")).expect("build");
        assert_eq!(bytes.len(), layout.size());
        let p = parse(&bytes, &layout, &expect(&header)).expect("parse");
        assert_eq!(p.header, header);
        assert_eq!(p.tensors, t);
    }
}

/// A scaled update (the validator's clipped view, a sign-flipping miner's negation) is still a
/// well-formed payload: its bin width stays positive.
#[test]
fn scaled_updates_build_valid_payloads_whatever_the_sign() {
    for f in [0.25f32, -1.0, 10.0] {
        let (_, layout, header) = setup(Some(2));
        let t: Vec<EncodedTensor> = tensors(&layout, 0.5).iter().map(|t| t.scaled(f)).collect();
        let bytes = build(&header, &t, &layout, &key("//Bob")).expect("build");
        let p = parse(&bytes, &layout, &expect(&header)).expect("a scaled update parses");
        assert_eq!(p.tensors, t, "factor {f}");
    }
}

#[test]
fn size_follows_from_the_config() {
    let (_, layout, _) = setup(Some(2));
    let expected: usize = layout
        .spec
        .tensors
        .iter()
        .map(|(_, g)| 8 + 16 + (g.blocks() * g.index_code.slot_bits).div_ceil(8) + (g.kept() * 2).div_ceil(8))
        .sum::<usize>()
        + HEADER_LEN
        + TRAILER_LEN;
    assert_eq!(layout.size(), expected);
}

/// At the reference's density (64 of 4096), a 64×64 block costs 63.75 bytes of Rice-coded
/// indices and 16 bytes of 2-bit values here, against 96 + 64 with 12-bit indices and one byte
/// per value in the reference: at most 0.020 bytes per parameter.
#[test]
fn smaller_than_the_reference_layout() {
    let config = Preset::Large1b.config();
    let layout = PayloadLayout::new(&config);
    let params: usize = layout.spec.tensors.iter().map(|(_, g)| g.numel()).sum();
    let reference = reference_layout_bytes(&layout.spec);
    assert!(layout.size() < reference, "{} vs reference {}", layout.size(), reference);
    let per_param = layout.size() as f64 / params as f64;
    assert!(per_param <= 0.020, "{per_param} bytes per parameter");
}

#[test]
fn identity_and_integrity_rejections() {
    let (_, layout, header) = setup(Some(2));
    let bob = key("//Bob");
    let good = build(&header, &tensors(&layout, 0.1), &layout, &bob).expect("build");
    let e = expect(&header);
    assert!(parse(&good, &layout, &e).is_ok());

    assert!(matches!(parse(&good[..good.len() - 1], &layout, &e), Err(Rejection::Size { .. })));
    assert!(matches!(parse(&[good.clone(), vec![0]].concat(), &layout, &e), Err(Rejection::Size { .. })));
    assert!(matches!(parse(&[], &layout, &e), Err(Rejection::Size { .. })));

    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(parse(&b, &layout, &e), Err(Rejection::Magic));
    for old_or_new in [1u8, 3] {
        let mut b = good.clone();
        b[8] = old_or_new;
        assert_eq!(parse(&b, &layout, &e), Err(Rejection::Version(u16::from(old_or_new))));
    }
    let mut b = good.clone();
    b[14] = 1;
    assert_eq!(parse(&b, &layout, &e), Err(Rejection::Reserved));
    let mut b = good.clone();
    b[152] = 99;
    assert!(matches!(parse(&b, &layout, &e), Err(Rejection::TensorCount { .. })));

    // Replayed in a later window, or claimed for another uid, netuid, miner or config.
    let later = Expectation { window: header.window + 1, ..e };
    assert!(matches!(parse(&good, &layout, &later), Err(Rejection::Window { .. })));
    assert!(matches!(parse(&good, &layout, &Expectation { uid: 8, ..e }), Err(Rejection::Uid { .. })));
    assert!(matches!(parse(&good, &layout, &Expectation { netuid: 4, ..e }), Err(Rejection::Netuid { .. })));
    let alice = Hotkey(key("//Alice").public().0);
    assert!(matches!(parse(&good, &layout, &Expectation { hotkey: &alice, ..e }), Err(Rejection::Hotkey { .. })));
    let other = ConfigHash([1; 32]);
    assert!(matches!(parse(&good, &layout, &Expectation { config_hash: &other, ..e }), Err(Rejection::Config { .. })));

    // Any altered byte breaks the hash; fixing the hash without the key breaks the signature.
    let mut b = good.clone();
    b[HEADER_LEN + 40] ^= 1;
    assert_eq!(parse(&b, &layout, &e), Err(Rejection::Hash));
    let end = b.len() - TRAILER_LEN;
    let h = *blake3::hash(&b[..end]).as_bytes();
    b[end..end + 32].copy_from_slice(&h);
    assert_eq!(parse(&b, &layout, &e), Err(Rejection::Signature));

    // Forgery: Eve signs a payload that names Bob as its author.
    let mut b = good.clone();
    resign(&mut b, &key("//Eve"));
    assert_eq!(parse(&b, &layout, &e), Err(Rejection::Signature));
    assert!(matches!(build(&header, &tensors(&layout, 0.1), &layout, &key("//Eve")), Err(BuildError::WrongKey)));
}

#[test]
fn hostile_bodies_are_rejected_with_their_reason() {
    let (_, layout, header) = setup(Some(2));
    let bob = key("//Bob");
    let good = build(&header, &tensors(&layout, 0.2), &layout, &bob).expect("build");
    let e = expect(&header);
    let (path0, g0): (&str, Geometry) = (&layout.spec.tensors[0].0.path, layout.spec.tensors[0].1);
    let s0 = section_start(&layout, 0);
    let idx0 = s0 + 8 + 16;
    let check = |patch: &dyn Fn(&mut Vec<u8>), want: &dyn Fn(&Rejection) -> bool| {
        let mut b = good.clone();
        patch(&mut b);
        resign(&mut b, &bob);
        let got = parse(&b, &layout, &e).expect_err("must be rejected");
        assert!(want(&got), "unexpected rejection {got}");
        assert!(got.to_string().len() > 10);
    };
    check(&|b| b[s0..s0 + 4].copy_from_slice(&f32::NAN.to_le_bytes()), &|r| {
        matches!(r, Rejection::NonFinite { field: "shift", .. })
    });
    check(&|b| b[s0 + 4..s0 + 8].copy_from_slice(&f32::INFINITY.to_le_bytes()), &|r| {
        matches!(r, Rejection::NonFinite { field: "scale", .. })
    });
    check(&|b| b[s0 + 4..s0 + 8].copy_from_slice(&0f32.to_le_bytes()), &|r| matches!(r, Rejection::Scale { .. }));
    check(&|b| b[s0 + 12..s0 + 16].copy_from_slice(&f32::NAN.to_le_bytes()), &|r| {
        matches!(r, Rejection::NonFinite { field: "centroid table", .. })
    });
    // Block 0's slot all ones: its first gap's code never ends inside the slot.
    let slot = g0.index_code.slot_bits;
    check(
        &|b| {
            for bit in 0..slot {
                b[idx0 + bit / 8] |= 1 << (bit % 8);
            }
        },
        &|r| matches!(r, Rejection::IndexCode { block: 0, tensor, .. } if tensor == path0),
    );
    // A one in block 0's padding, just before block 1's slot (the encoder never fills a slot:
    // its worst case needs every gap at the end of the block).
    check(
        &|b| b[idx0 + (slot - 1) / 8] |= 1 << ((slot - 1) % 8),
        &|r| matches!(r, Rejection::Padding { tensor } if tensor == path0),
    );
}

/// A payload of format 1 (fixed-width indices) is named as such, by its size before download
/// and by its version field.
#[test]
fn old_format_payloads_are_refused_as_such() {
    let (_, layout, header) = setup(Some(2));
    let v1 = HEADER_LEN + section::v1_len(&layout.spec) + TRAILER_LEN;
    assert!(v1 > layout.size(), "format 2 is smaller: {v1} vs {}", layout.size());
    let got = parse(&vec![0u8; v1], &layout, &expect(&header)).expect_err("refused");
    assert_eq!(got, Rejection::OldFormat { got: v1 as u64, expected: layout.size() });
    assert!(got.to_string().contains("format-1"), "{got}");
    assert_eq!(layout.size_rejection(v1 as u64 + 1), Rejection::Size { expected: layout.size(), got: v1 as u64 + 1 });
}

/// Padding bits after the last index and after the last code must be zero. The test preset's
/// sections are all byte-aligned, so this uses one 3×5 tensor with 3 kept values: a 12-bit index
/// slot (4 bits of padding) and 3 × 2-bit codes (6 bits, 2 of padding).
#[test]
fn non_zero_padding_bits_are_rejected() {
    let mut c = Preset::Test.config().compression;
    c.topk = 3;
    c.chunk = 8;
    c.quantization_bits = Some(2);
    let spec = CodecSpec::for_layout(vec![crate::params::ParamSpec { path: "odd".into(), shape: vec![3, 5] }], &c);
    let layout = PayloadLayout::for_spec(spec);
    let g = layout.spec.tensors[0].1;
    assert_eq!((g.kept(), g.index_code.slot_bits), (3, 12), "the layout this test needs");
    let (_, _, header) = setup(Some(2));
    let bob = key("//Bob");
    let x: Vec<f32> = (0..15).map(|i| (i as f32 * 0.7).sin()).collect();
    let t = encode(&x, &g, &layout.spec, &mut dct::Bases::default());
    let good = build(&header, &[t], &layout, &bob).expect("build");
    assert!(parse(&good, &layout, &expect(&header)).is_ok());
    let indices_end = HEADER_LEN + 8 + 16 + 2 - 1;
    let codes_end = HEADER_LEN + layout.section(0) - 1;
    assert_ne!(indices_end, codes_end);
    for at in [indices_end, codes_end] {
        let mut b = good.clone();
        b[at] |= 0x80;
        resign(&mut b, &bob);
        match parse(&b, &layout, &expect(&header)) {
            Err(Rejection::Padding { tensor }) => assert_eq!(tensor, "odd"),
            other => panic!("byte {at}: expected Padding, got {other:?}"),
        }
    }
}

#[test]
fn index_past_a_non_power_of_two_block_is_out_of_range() {
    // A 3×5 tensor with chunk 8 is one 15-value block keeping 2: Rice parameter 2 in a 9-bit
    // slot, room enough to say 15, past its end.
    let mut c = Preset::Test.config().compression;
    c.topk = 2;
    c.chunk = 8;
    let spec = CodecSpec::for_layout(vec![crate::params::ParamSpec { path: "odd".into(), shape: vec![3, 5] }], &c);
    let layout = PayloadLayout::for_spec(spec);
    assert_eq!(layout.spec.tensors[0].1.index_code, rice::SlotCode { rice: 2, slot_bits: 9 });
    let (_, _, header) = setup(Some(2));
    let bob = key("//Bob");
    let t = encode(&[1.0; 15], &layout.spec.tensors[0].1, &layout.spec, &mut dct::Bases::default());
    let mut b = build(&header, &[t], &layout, &bob).expect("build");
    let idx = HEADER_LEN + 8 + 16;
    // Index 3 (gap 3: 0, then 11 low bit first), then 15 (gap 11: 1 1 0, then 11).
    b[idx] = 0b1101_1110;
    b[idx + 1] = 0;
    resign(&mut b, &bob);
    match parse(&b, &layout, &expect(&header)) {
        Err(Rejection::IndexOutOfRange { index: 15, block_len: 15, .. }) => {}
        other => panic!("expected IndexOutOfRange, got {other:?}"),
    }
}

/// `section::read` is public (benches, fuzzing): a section of the wrong length is refused, not a
/// panic on a short read.
#[test]
fn a_section_of_the_wrong_length_is_refused() {
    let (_, layout, _) = setup(Some(2));
    let g = layout.spec.tensors[0].1;
    let n = section::len(&g, Some(2));
    for got in [0, n - 1, n + 1] {
        assert_eq!(
            section::read(&vec![0u8; got], &g, Some(2), "t"),
            Err(Rejection::Size { expected: n, got: got as u64 })
        );
    }
}

#[test]
fn raw_values_must_be_finite() {
    let (_, layout, header) = setup(None);
    let bob = key("//Bob");
    let mut b = build(&header, &tensors(&layout, 0.3), &layout, &bob).expect("build");
    let g = layout.spec.tensors[0].1;
    let v = section_start(&layout, 0) + rice::packed_len(g.index_code, g.blocks());
    b[v..v + 4].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes());
    resign(&mut b, &bob);
    assert!(matches!(parse(&b, &layout, &expect(&header)), Err(Rejection::NonFinite { field: "values", .. })));
}

#[tokio::test]
async fn fetch_refuses_a_wrong_size_before_downloading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::storage::Store::open_location(
        &crate::storage::Location::Local { root: dir.path().to_path_buf() },
        crate::storage::StorageLimits::from(&Preset::Test.config().storage),
    )
    .expect("store");
    let (_, layout, header) = setup(Some(2));
    let good = build(&header, &tensors(&layout, 0.4), &layout, &key("//Bob")).expect("build");
    store.put("p", good.clone().into()).await.expect("put");
    let (info, p, _) = fetch(&store, "p", &layout, &expect(&header)).await.expect("fetch");
    assert_eq!(info.size as usize, layout.size());
    assert_eq!(p.header.uid, 7);
    store.put("big", vec![0u8; layout.size() + 1].into()).await.expect("put");
    assert!(matches!(
        fetch(&store, "big", &layout, &expect(&header)).await,
        Err(FetchError::Rejected(Rejection::Size { .. }))
    ));
    assert!(matches!(fetch(&store, "missing", &layout, &expect(&header)).await, Err(FetchError::Storage(_))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary edits, re-signed by the miner, never panic the parser: each payload is
    /// accepted or refused with a reason.
    #[test]
    fn mutated_payloads_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)) {
        let (_, layout, header) = setup(Some(2));
        let bob = key("//Bob");
        let mut b = build(&header, &tensors(&layout, 0.7), &layout, &bob).expect("build");
        let body = b.len() - TRAILER_LEN;
        for (at, v) in edits {
            b[at.index(body)] = v;
        }
        resign(&mut b, &bob);
        let _ = parse(&b, &layout, &expect(&header));
        let _ = parse_unverified(&b, &layout);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let (_, layout, header) = setup(Some(2));
        prop_assert!(parse(&bytes, &layout, &expect(&header)).is_err());
    }
}
