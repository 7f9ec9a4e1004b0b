//! `ferrum bench codec`: codec throughput per tensor shape and for the whole model, at each
//! requested thread count, and the payload size.
//!
//! Per shape: the miner step (error-feedback update, top-k, quantization, local decode and
//! subtraction: what a miner runs on each tensor every window), encode, decode and the
//! aggregate of `peers` peers, each the median of `repeats` runs after one warm-up, with buffers
//! reused as a node reuses them. Whole-model figures weight each shape by how often it occurs.
//! Build with `--release`: debug timings mean nothing.

use ferrum_common::outln;
use std::collections::BTreeMap;
use std::time::Instant;

use ferrum_common::SubnetConfig;
use ferrum_common::codec::{
    CodecSpec, EncodedTensor, Scratch, aggregate_into, decode_into, encode, encode_model, synthetic_delta as data,
};
use ferrum_common::params::ParamSpec;
use ferrum_common::payload::{PayloadLayout, reference_layout_bytes, section};
use serde::Serialize;

/// Timings of one tensor shape at one thread count, medians in ms.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeResult {
    pub shape: Vec<usize>,
    /// Tensors of this shape in the model (0 for a `--shapes` shape).
    pub count: usize,
    pub params: usize,
    pub threads: usize,
    pub miner_step_ms: f64,
    pub miner_step_mparams_per_s: f64,
    pub encode_ms: f64,
    pub decode_ms: f64,
    pub aggregate_ms: f64,
    /// Writing the tensor's payload section (indices and values to bytes).
    pub pack_ms: f64,
    /// Reading it back with every check a node makes.
    pub unpack_ms: f64,
}

/// Whole-model totals at one thread count (seconds, and millions of parameters per second).
#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    pub threads: usize,
    pub miner_step_s: f64,
    pub miner_step_mparams_per_s: f64,
    pub encode_s: f64,
    pub decode_s: f64,
    pub aggregate_s: f64,
    pub aggregate_mparams_per_s: f64,
    /// Writing a whole payload's sections, and reading them back with every check.
    pub pack_s: f64,
    pub unpack_s: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct CodecReport {
    pub preset: String,
    pub cpu: String,
    /// The vector path the codec took on this CPU (`avx512`, `avx2` or `baseline`).
    pub simd: &'static str,
    pub params: u64,
    pub peers: usize,
    /// Each timing is the median of this many runs, after one warm-up run.
    pub repeats: usize,
    pub dct: bool,
    pub quantization_bits: Option<u8>,
    pub topk: u32,
    pub chunk: u32,
    pub payload_bytes: usize,
    pub bytes_per_param: f64,
    /// The reference layout at the same density: 12-bit indices, one byte per value.
    pub reference_bytes_per_param: f64,
    /// Per thread count, the model's shapes weighted by how often they occur.
    pub model: Vec<ModelResult>,
    pub shapes: Vec<ShapeResult>,
    /// Peak resident memory of the benchmark process.
    pub peak_rss_bytes: Option<u64>,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct CodecBench {
    pub peers: usize,
    pub repeats: usize,
    pub threads: Vec<usize>,
    /// Extra shapes measured besides the model's (e.g. `[8192, 2048]`).
    pub shapes: Vec<Vec<usize>>,
    /// Leave out the model's own shapes (only `shapes`).
    pub only_shapes: bool,
}

/// Median of `repeats` runs of `f` after one warm-up run, in ms.
fn median_ms(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 { times[n / 2] } else { (times[n / 2 - 1] + times[n / 2]) / 2.0 }
}

/// Times one shape at each thread count.
fn shape(config: &SubnetConfig, shape: &[usize], count: usize, bench: &CodecBench) -> Vec<ShapeResult> {
    let spec =
        CodecSpec::for_layout(vec![ParamSpec { path: "bench".into(), shape: shape.to_vec() }], &config.compression);
    let g = spec.tensors[0].1;
    let n = g.numel();
    let beta = config.compression.error_feedback_decay as f32;
    let mut scratch = Scratch::default();
    // Peers' payloads; their dense tensors never coexist (20 × the embedding is 8 GB).
    let encoded: Vec<EncodedTensor> =
        (0..bench.peers).map(|p| encode(&data(n, p as u64 + 1), &g, &spec, &mut scratch.bases)).collect();
    let refs: Vec<(u16, &EncodedTensor)> = encoded.iter().enumerate().map(|(i, e)| (i as u16, e)).collect();
    let delta = vec![data(n, 1)];
    let mut feedback = vec![vec![0f32; n]];
    let mut out = vec![0f32; n];
    let first = &delta[0];
    bench
        .threads
        .iter()
        .map(|&threads| {
            let miner_step_ms = median_ms(bench.repeats, || {
                std::hint::black_box(encode_model(&mut feedback, &delta, beta, &spec, threads));
            });
            let encode_ms = median_ms(bench.repeats, || {
                std::hint::black_box(encode(first, &g, &spec, &mut scratch.bases));
            });
            let decode_ms =
                median_ms(bench.repeats, || decode_into(&encoded[0], &g, &spec, &mut scratch.bases, &mut out));
            let aggregate_ms = median_ms(bench.repeats, || {
                let r = aggregate_into(&refs, &g, &spec, threads, &mut scratch, &mut out);
                assert!(r.is_ok(), "aggregate failed on benchmark data");
            });
            let mut section = Vec::with_capacity(section::len(&g, spec.quantization_bits));
            let pack_ms = median_ms(bench.repeats, || {
                section.clear();
                let r = section::write(&encoded[0], &g, spec.quantization_bits, &mut section);
                assert!(r.is_ok(), "the encoder's output does not fit its section");
            });
            let unpack_ms = median_ms(bench.repeats, || {
                let r = section::read(&section, &g, spec.quantization_bits, "bench");
                assert!(std::hint::black_box(r).is_ok(), "a section written here did not read back");
            });
            ShapeResult {
                shape: shape.to_vec(),
                count,
                params: n,
                threads,
                miner_step_ms,
                miner_step_mparams_per_s: n as f64 / 1e3 / miner_step_ms,
                encode_ms,
                decode_ms,
                aggregate_ms,
                pack_ms,
                unpack_ms,
            }
        })
        .collect()
}

/// Runs the benchmark for a config.
pub fn codec(config: &SubnetConfig, bench: &CodecBench) -> CodecReport {
    let spec = CodecSpec::new(config);
    let layout = PayloadLayout::for_spec(spec.clone());
    let mut by_shape: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
    for (p, _) in &spec.tensors {
        *by_shape.entry(p.shape.clone()).or_default() += 1;
    }
    let mut shapes = Vec::new();
    if !bench.only_shapes {
        for (s, count) in &by_shape {
            shapes.extend(self::shape(config, s, *count, bench));
        }
    }
    for s in &bench.shapes {
        shapes.extend(self::shape(config, s, 0, bench));
    }
    let params: u64 = by_shape.iter().map(|(s, c)| (s.iter().product::<usize>() * c) as u64).sum();
    let model = if bench.only_shapes {
        Vec::new()
    } else {
        bench
            .threads
            .iter()
            .map(|&threads| {
                let of = |f: fn(&ShapeResult) -> f64| -> f64 {
                    shapes.iter().filter(|s| s.threads == threads).map(|s| f(s) * s.count as f64).sum::<f64>() / 1e3
                };
                let (step, agg) = (of(|s| s.miner_step_ms), of(|s| s.aggregate_ms));
                ModelResult {
                    threads,
                    miner_step_s: step,
                    miner_step_mparams_per_s: params as f64 / 1e6 / step,
                    encode_s: of(|s| s.encode_ms),
                    decode_s: of(|s| s.decode_ms),
                    aggregate_s: agg,
                    aggregate_mparams_per_s: params as f64 / 1e6 / agg,
                    pack_s: of(|s| s.pack_ms),
                    unpack_s: of(|s| s.unpack_ms),
                }
            })
            .collect()
    };
    CodecReport {
        preset: config.preset.name().to_string(),
        cpu: super::cpu_model(),
        simd: ferrum_common::simd::widest_name(),
        params,
        peers: bench.peers,
        repeats: bench.repeats,
        dct: spec.dct,
        quantization_bits: spec.quantization_bits,
        topk: config.compression.topk,
        chunk: config.compression.chunk,
        payload_bytes: layout.size(),
        bytes_per_param: layout.size() as f64 / params as f64,
        reference_bytes_per_param: reference_layout_bytes(&spec) as f64 / params as f64,
        model,
        shapes,
        peak_rss_bytes: super::peak_rss_bytes(),
    }
}

impl CodecReport {
    /// A table for people.
    pub fn print(&self) -> std::io::Result<()> {
        outln!(
            "preset {}: {:.1} M parameters, top-{} of {}×{} blocks, {} bits, dct {}; {} ({})",
            self.preset,
            self.params as f64 / 1e6,
            self.topk,
            self.chunk,
            self.chunk,
            self.quantization_bits.map_or("f32".to_string(), |b| b.to_string()),
            self.dct,
            self.cpu,
            self.simd
        )?;
        outln!(
            "payload {} bytes: {:.4} bytes/parameter (reference layout {:.4}); medians of {} runs; {} peers aggregated",
            self.payload_bytes,
            self.bytes_per_param,
            self.reference_bytes_per_param,
            self.repeats,
            self.peers
        )?;
        outln!(
            "{:>14} {:>6} {:>7} {:>13} {:>10} {:>11} {:>11} {:>14} {:>9} {:>11}",
            "shape",
            "count",
            "threads",
            "miner step ms",
            "Mparam/s",
            "encode ms",
            "decode ms",
            "aggregate ms",
            "pack ms",
            "unpack ms"
        )?;
        for s in &self.shapes {
            outln!(
                "{:>14} {:>6} {:>7} {:>13.2} {:>10.0} {:>11.2} {:>11.2} {:>14.2} {:>9.2} {:>11.2}",
                format!("{:?}", s.shape),
                s.count,
                s.threads,
                s.miner_step_ms,
                s.miner_step_mparams_per_s,
                s.encode_ms,
                s.decode_ms,
                s.aggregate_ms,
                s.pack_ms,
                s.unpack_ms
            )?;
        }
        for m in &self.model {
            outln!(
                "whole model, {} thread(s): miner step {:.2} s ({:.0} M params/s), encode {:.2} s, decode {:.2} s, aggregate {:.2} s ({:.0} M/s), pack {:.3} s, unpack {:.3} s",
                m.threads,
                m.miner_step_s,
                m.miner_step_mparams_per_s,
                m.encode_s,
                m.decode_s,
                m.aggregate_s,
                m.aggregate_mparams_per_s,
                m.pack_s,
                m.unpack_s
            )?;
        }
        if let Some(b) = self.peak_rss_bytes {
            outln!("peak RSS {:.0} MiB", b as f64 / (1 << 20) as f64)?;
        }
        Ok(())
    }
}
