use proptest::prelude::*;

use super::*;
use crate::config::Preset;

fn spec(topk: usize, chunk: usize, bits: Option<u8>, dct: bool, shape: Vec<usize>) -> (CodecSpec, Geometry) {
    let mut c = Preset::Test.config().compression;
    c.chunk = chunk as u32;
    c.topk = topk as u32;
    c.quantization_bits = bits;
    c.dct = dct;
    let layout = vec![ParamSpec { path: "t".into(), shape }];
    let s = CodecSpec::for_layout(layout, &c);
    let g = s.tensors[0].1;
    (s, g)
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v).powi(2)).sum()
}

/// A tensor shape, its data, and codec settings.
fn case() -> impl Strategy<Value = (Vec<usize>, Vec<f32>, usize, usize)> {
    let shapes = prop_oneof![
        Just(vec![12, 16]),
        Just(vec![8, 8]),
        Just(vec![30]),
        Just(vec![7, 5]),
        Just(vec![64]),
        Just(vec![16, 48]),
    ];
    (shapes, 1usize..=6, prop_oneof![Just(4usize), Just(8), Just(16)]).prop_flat_map(|(shape, topk, chunk)| {
        let n: usize = shape.iter().product();
        (Just(shape), prop::collection::vec(-10.0f32..10.0, n), Just(topk), Just(chunk))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// With quantization and DCT off, decode(encode(x)) is x restricted to the top-k of each
    /// block (ties to the lower index), exactly.
    #[test]
    fn unquantized_keeps_exactly_the_top_k((shape, x, topk, chunk) in case()) {
        let (s, g) = spec(topk, chunk, None, false, shape);
        let mut bases = dct::Bases::default();
        let enc = encode(&x, &g, &s, &mut bases);
        let y = decode(&enc, &g, &s, &mut bases);
        for b in 0..g.blocks() {
            let mut order: Vec<usize> = (0..g.block_len()).collect();
            order.sort_by(|&i, &j| x[g.offset(b, j)].abs().total_cmp(&x[g.offset(b, i)].abs()).then(i.cmp(&j)));
            let keep: std::collections::BTreeSet<usize> = order[..g.k].iter().copied().collect();
            let idx = &enc.indices[b * g.k..(b + 1) * g.k];
            prop_assert!(idx.windows(2).all(|w| w[0] < w[1]), "indices not strictly increasing");
            for i in 0..g.block_len() {
                let o = g.offset(b, i);
                let want = if keep.contains(&i) { x[o] } else { 0.0 };
                prop_assert_eq!(y[o].to_bits(), want.to_bits(), "block {} index {}", b, i);
            }
        }
    }

    /// Round-trip error bound. With the DCT (orthonormal) and no quantization the error is the
    /// energy of the dropped coefficients, at most (1 − k/n)·‖x‖². Quantization adds at most the
    /// kept values' spread about their mean, Σ(v − shift)², because each bin decodes to its
    /// centroid, never a worse choice than the mean: ‖x − x̂‖² ≤ (1 − k/n)·‖x‖² + Σ(v − shift)².
    #[test]
    fn round_trip_error_is_bounded((shape, x, topk, chunk) in case(), bits in 1u8..=8, dct in any::<bool>()) {
        let mut bases = dct::Bases::default();
        let (s, g) = spec(topk, chunk, None, dct, shape.clone());
        let y = decode(&encode(&x, &g, &s, &mut bases), &g, &s, &mut bases);
        let err: f64 = x.iter().zip(&y).map(|(&a, &b)| f64::from(a - b).powi(2)).sum();
        let dropped_bound = (1.0 - g.k as f64 / g.block_len() as f64) * energy(&x);
        prop_assert!(err <= dropped_bound * (1.0 + 1e-4) + 1e-6, "unquantized: {} > {}", err, dropped_bound);

        let (sq, gq) = spec(topk, chunk, Some(bits), dct, shape);
        let enc = encode(&x, &gq, &sq, &mut bases);
        let Values::Quantized(q) = &enc.values else { unreachable!("quantized spec") };
        let raw = encode(&x, &gq, &CodecSpec { quantization_bits: None, ..sq.clone() }, &mut bases);
        let Values::Raw(kept) = &raw.values else { unreachable!("raw spec") };
        let spread: f64 = kept.iter().map(|&v| (f64::from(v) - f64::from(q.shift)).powi(2)).sum();
        let yq = decode(&enc, &gq, &sq, &mut bases);
        let errq: f64 = x.iter().zip(&yq).map(|(&a, &b)| f64::from(a - b).powi(2)).sum();
        prop_assert!(errq <= (dropped_bound + spread) * (1.0 + 1e-4) + 1e-4, "quantized: {} > {} + {}", errq, dropped_bound, spread);
    }

    /// Error feedback conserves the signal: what is sent plus what is kept equals β·e + Δ.
    #[test]
    fn error_feedback_conserves((shape, x, topk, chunk) in case(), bits in prop::option::of(1u8..=4)) {
        let (s, g) = spec(topk, chunk, bits, false, shape);
        let mut bases = dct::Bases::default();
        let old: Vec<f32> = x.iter().map(|v| v * 0.5).collect();
        let mut e = old.clone();
        let enc = encode_with_feedback(&mut e, &x, 0.9, &g, &s, &mut bases);
        let sent = decode(&enc, &g, &s, &mut bases);
        for i in 0..x.len() {
            let want = 0.9 * old[i] + x[i];
            prop_assert!((sent[i] + e[i] - want).abs() <= 1e-4 * (1.0 + want.abs()));
        }
    }

    /// The aggregate's bits do not depend on the order peers are given in.
    #[test]
    fn aggregate_is_order_independent(
        (shape, x, topk, chunk) in case(),
        peers in 2usize..8,
        dct in any::<bool>(),
        rotate in 0usize..8,
    ) {
        let (s, g) = spec(topk, chunk, Some(2), dct, shape);
        let mut bases = dct::Bases::default();
        let encoded: Vec<EncodedTensor> = (0..peers)
            .map(|p| {
                let scaled: Vec<f32> = x.iter().enumerate().map(|(i, v)| v * (1.0 + p as f32) + (i % (p + 2)) as f32).collect();
                encode(&scaled, &g, &s, &mut bases)
            })
            .collect();
        let forward: Vec<(u16, &EncodedTensor)> = encoded.iter().enumerate().map(|(i, t)| (i as u16 * 3 + 1, t)).collect();
        let mut shuffled = forward.clone();
        shuffled.reverse();
        let r = rotate % shuffled.len();
        shuffled.rotate_left(r);
        let a = aggregate(&forward, &g, &s, &mut bases).expect("aggregate");
        let b = aggregate(&shuffled, &g, &s, &mut bases).expect("aggregate");
        prop_assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
    }
}

#[test]
fn aggregate_clips_to_the_median_and_averages_contributors() {
    // One 1×4 block, k = 2. Peer norms 1, 2 and 10: the median is 2, so the third is scaled by 0.2.
    let (s, g) = spec(2, 4, None, false, vec![4]);
    let mut bases = dct::Bases::default();
    let t = |idx: [u32; 2], v: [f32; 2]| EncodedTensor { indices: idx.to_vec(), values: Values::Raw(v.to_vec()) };
    let a = t([0, 1], [1.0, 0.0]);
    let b = t([0, 2], [2.0, 0.0]);
    let c = t([0, 3], [0.0, 10.0]);
    let out = aggregate(&[(5, &c), (1, &a), (3, &b)], &g, &s, &mut bases).expect("aggregate");
    // index 0: peers a, b, c chose it: (1 + 2 + 0) / 3 = 1 (clip factors: a 1, b ≈ 1, c 0.2)
    assert!((out[0] - 1.0).abs() < 1e-6, "{out:?}");
    assert_eq!(out[1], 0.0);
    assert!((out[2] - 0.0).abs() < 1e-6);
    assert!((out[3] - 2.0).abs() < 1e-6, "10 clipped to the median norm 2: {out:?}");
    assert_eq!(aggregate(&[], &g, &s, &mut bases), Err(AggregateError::NoPeers));
    assert_eq!(aggregate(&[(1, &a), (1, &b)], &g, &s, &mut bases), Err(AggregateError::DuplicateUid(1)));
}

#[test]
fn geometry_of_the_presets() {
    let s = CodecSpec::new(&Preset::Large1b.config());
    let embed = s.tensors[0].1;
    let code = |rice, slot_bits| rice::SlotCode { rice, slot_bits };
    assert_eq!((embed.block_rows, embed.block_cols, embed.k, embed.index_code), (64, 64, 64, code(5, 510)));
    let norm = s.tensors[1].1;
    assert_eq!((norm.rows, norm.block_cols, norm.k, norm.index_code), (1, 64, 64, code(0, 64)));
    // A dimension no larger than the chunk is one block side; a prime above it splits into rows.
    let g = Geometry::new(&[7, 64], 64, 64);
    assert_eq!((g.block_rows, g.block_cols, g.blocks()), (7, 64, 1));
    let g = Geometry::new(&[67, 64], 64, 64);
    assert_eq!((g.block_rows, g.block_cols, g.blocks()), (1, 64, 67));
    let g = Geometry::new(&[3], 64, 64);
    assert_eq!((g.block_cols, g.k, g.index_code), (3, 3, code(0, 3)));
}

/// The protocol's promise: nodes that accept the same payloads, in whatever order and with
/// whatever thread count, apply the same update and hold bit-identical models.
#[test]
fn nodes_with_the_same_payloads_stay_in_sync() {
    let mut config = Preset::Test.config();
    config.compression.dct = true;
    let spec = CodecSpec::new(&config);
    let genesis = crate::model::MasterModel::genesis(&config);
    // Three miners, each with its own pseudo-gradient and error feedback.
    let payloads: Vec<(u16, Vec<EncodedTensor>)> = (0..3u16)
        .map(|m| {
            let delta: Vec<Vec<f32>> = genesis
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| synthetic_delta(t.len(), (m as u64) * 100 + i as u64))
                .collect();
            let mut feedback: Vec<Vec<f32>> = genesis.tensors.iter().map(|t| vec![0.0; t.len()]).collect();
            (m + 10, encode_model(&mut feedback, &delta, 0.95, &spec, 2))
        })
        .collect();
    let view = |order: &[usize]| -> Vec<(u16, &[EncodedTensor])> {
        order.iter().map(|&k| (payloads[k].0, payloads[k].1.as_slice())).collect()
    };
    let lr = config.training.outer_learning_rate as f32;
    // The definition: each tensor's aggregate, then the outer step over the whole model.
    let definition = |order: &[usize]| {
        let mut m = genesis.clone();
        let mut bases = dct::Bases::default();
        let updates: Vec<Option<Vec<f32>>> = (0..spec.tensors.len())
            .map(|i| {
                let peers: Vec<(u16, &EncodedTensor)> = view(order).iter().map(|(u, t)| (*u, &t[i])).collect();
                Some(aggregate(&peers, &spec.tensors[i].1, &spec, &mut bases).expect("aggregate"))
            })
            .collect();
        m.outer_step(&updates, lr, 1).expect("step");
        m.fingerprint()
    };
    let node = |order: &[usize], threads: usize| {
        let mut m = genesis.clone();
        let failed = aggregate_and_step(&view(order), &spec, &mut m.tensors, lr, threads).expect("aggregate");
        assert!(failed.is_empty());
        m.fingerprint()
    };
    let a = definition(&[0, 1, 2]);
    assert_eq!(a, node(&[0, 1, 2], 1), "the fused step gives the defined model");
    assert_eq!(a, node(&[2, 0, 1], 4));
    assert_eq!(a, node(&[1, 2, 0], 3));
    assert_ne!(a, genesis.fingerprint());
    assert_ne!(a, node(&[0, 1], 2), "a different peer set gives a different model");
}

/// `aggregate_and_step` is public: peers built by hand with a tensor missing, or with fewer
/// values than indices, are refused with the reason, never indexed out of bounds, and a tensor
/// that cannot be aggregated is left as it was.
#[test]
fn aggregate_and_step_refuses_malformed_peers_with_the_reason() {
    let config = Preset::Test.config();
    let spec = CodecSpec::new(&config);
    let genesis = crate::model::MasterModel::genesis(&config);
    let delta: Vec<Vec<f32>> =
        genesis.tensors.iter().enumerate().map(|(i, t)| synthetic_delta(t.len(), i as u64)).collect();
    let mut feedback: Vec<Vec<f32>> = genesis.tensors.iter().map(|t| vec![0.0; t.len()]).collect();
    let good = encode_model(&mut feedback, &delta, 0.9, &spec, 1);
    let short = &good[..good.len() - 1];
    let mut m = genesis.clone();
    assert_eq!(
        aggregate_and_step(&[(1, &good), (2, short)], &spec, &mut m.tensors, 1.0, 1),
        Err(AggregateError::TensorCount { uid: 2, got: good.len() - 1, expected: good.len() })
    );
    assert_eq!(aggregate_and_step(&[], &spec, &mut m.tensors, 1.0, 1), Err(AggregateError::NoPeers));
    assert_eq!(m, genesis, "a refused set changes nothing");
    let mut bad = good.clone();
    match &mut bad[1].values {
        Values::Quantized(q) => {
            q.codes.pop();
        }
        Values::Raw(v) => {
            v.pop();
        }
    }
    let failed =
        aggregate_and_step(&[(1, &good), (2, &bad)], &spec, &mut m.tensors, 1.0, 2).expect("other tensors aggregate");
    assert_eq!(m.tensors[1], genesis.tensors[1], "the failed tensor is left as it was");
    assert_ne!(m.tensors[0], genesis.tensors[0]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, spec.tensors[1].0.path);
    assert!(matches!(failed[0].1, AggregateError::ValueCount { uid: 2, .. }), "{failed:?}");
}

#[test]
fn encode_model_matches_per_tensor_encoding() {
    let config = Preset::Test.config();
    let spec = CodecSpec::new(&config);
    let genesis = crate::model::MasterModel::genesis(&config);
    let delta: Vec<Vec<f32>> =
        genesis.tensors.iter().enumerate().map(|(i, t)| synthetic_delta(t.len(), i as u64)).collect();
    let mut fa: Vec<Vec<f32>> = genesis.tensors.iter().map(|t| vec![0.01; t.len()]).collect();
    let mut fb = fa.clone();
    let a = encode_model(&mut fa, &delta, 0.9, &spec, 3);
    let mut bases = dct::Bases::default();
    let b: Vec<EncodedTensor> = (0..spec.tensors.len())
        .map(|i| encode_with_feedback(&mut fb[i], &delta[i], 0.9, &spec.tensors[i].1, &spec, &mut bases))
        .collect();
    assert_eq!(a, b);
    assert_eq!(fa, fb);
}

/// Shapes that split into several bands, with and without the DCT and quantization, thread
/// counts 1-3: the fast paths give the reference's bits, and the miner step leaves the same
/// error feedback.
#[test]
fn fast_paths_match_the_reference_bit_for_bit() {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    for (shape, chunk, topk) in [
        (vec![128, 512], 64, 64),
        (vec![512, 320], 64, 16),
        (vec![96], 64, 8),
        (vec![67, 64], 64, 64),
        (vec![128, 128], 32, 1024),
    ] {
        for (dct_on, q) in [(false, Some(2)), (true, Some(2)), (false, None), (true, None)] {
            let (s, g) = spec(topk, chunk, q, dct_on, shape.clone());
            let mut bases = dct::Bases::default();
            let mut x = synthetic_delta(g.numel(), 7);
            // Ties and extremes in the data too.
            for (i, v) in x.iter_mut().enumerate().step_by(97) {
                *v = if i % 2 == 0 { 0.0 } else { -1e-3 };
            }
            let fast = encode(&x, &g, &s, &mut bases);
            let slow = reference::encode(&x, &g, &s, &mut bases);
            assert_eq!(fast, slow, "encode {shape:?} dct {dct_on} q {q:?}");
            assert_eq!(bits(&decode(&fast, &g, &s, &mut bases)), bits(&reference::decode(&slow, &g, &s, &mut bases)));

            let delta = synthetic_delta(g.numel(), 11);
            let start: Vec<f32> = synthetic_delta(g.numel(), 13);
            let (mut ea, mut eb) = (start.clone(), start.clone());
            let a = encode_with_feedback(&mut ea, &delta, 0.95, &g, &s, &mut bases);
            let b = reference::encode_with_feedback(&mut eb, &delta, 0.95, &g, &s, &mut bases);
            assert_eq!(a, b, "miner step {shape:?} dct {dct_on}");
            assert_eq!(bits(&ea), bits(&eb), "error feedback {shape:?} dct {dct_on}");
            for threads in [1, 2, 3] {
                let mut ec = vec![start.clone()];
                let c = encode_model(&mut ec, std::slice::from_ref(&delta), 0.95, &s, threads);
                assert_eq!(c[0], b, "encode_model, {threads} threads");
                assert_eq!(bits(&ec[0]), bits(&eb));
            }

            let peers: Vec<EncodedTensor> =
                (0..5).map(|p| encode(&synthetic_delta(g.numel(), 100 + p), &g, &s, &mut bases)).collect();
            let refs: Vec<(u16, &EncodedTensor)> = peers.iter().enumerate().map(|(i, t)| (9 - i as u16, t)).collect();
            let want = bits(&reference::aggregate(&refs, &g, &s, &mut bases).expect("reference aggregate"));
            assert_eq!(bits(&aggregate(&refs, &g, &s, &mut bases).expect("aggregate")), want);
            for threads in [1, 2, 3] {
                let mut out = vec![f32::NAN; g.numel()];
                let mut scratch = Scratch::default();
                aggregate_into(&refs, &g, &s, threads, &mut scratch, &mut out).expect("aggregate_into");
                assert_eq!(bits(&out), want, "aggregate_into, {threads} threads, {shape:?} dct {dct_on}");
            }
        }
    }
}

#[test]
fn interleaved_norms_equal_the_definition_bit_for_bit() {
    let (s, g) = spec(8, 16, Some(2), false, vec![64, 48]);
    let (raw_spec, _) = spec(8, 16, None, false, vec![64, 48]);
    let mut bases = dct::Bases::default();
    let mut tensors: Vec<EncodedTensor> = (0..7u64)
        .map(|seed| {
            let x: Vec<f32> = synthetic_delta(g.numel(), seed).iter().map(|v| v * (seed + 1) as f32).collect();
            encode(&x, &g, &s, &mut bases)
        })
        .collect();
    // A raw tensor in the second group sends that group down the one-by-one path.
    tensors.push(encode(&synthetic_delta(g.numel(), 99), &g, &raw_spec, &mut bases));
    let refs: Vec<&EncodedTensor> = tensors.iter().collect();
    let want: Vec<u64> = refs.iter().map(|t| aggregate::norm(t).to_bits()).collect();
    for threads in [1, 2, 3] {
        let got: Vec<u64> = aggregate::norms(&refs, threads).iter().map(|n| n.to_bits()).collect();
        assert_eq!(got, want, "{threads} threads");
    }
    assert!(want.iter().all(|&b| f64::from_bits(b) > 0.0));
}

#[test]
fn a_scaled_update_decodes_to_the_values_the_aggregate_would_sum() {
    let (spec, g) = spec(64, 64, Some(2), false, vec![64, 64]);
    let x = synthetic_delta(g.numel(), 5);
    let t = encode(&x, &g, &spec, &mut dct::Bases::default());
    let s = t.scaled(0.25);
    assert_eq!(s.indices, t.indices);
    for j in 0..t.indices.len() {
        assert_eq!((t.value(j) * 0.25).to_bits(), s.value(j).to_bits(), "{j}: the aggregate's product");
    }
    assert!((aggregate::norm(&s) - 0.25 * aggregate::norm(&t)).abs() <= 1e-6 * aggregate::norm(&t));
    assert!(aggregate::norm(&t) > 0.0);
}
