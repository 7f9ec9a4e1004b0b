//! `ferrum bench codec`: codec throughput on a preset's tensor shapes, and payload size.
//!
//! Each distinct tensor shape of the model is timed once (encode, decode, aggregate over
//! `peers` peers) on deterministic pseudo-random data; whole-model figures weight each shape by
//! how often it occurs. Build with `--release`: debug timings mean nothing.

use ferrum_common::outln;
use std::collections::BTreeMap;
use std::time::Instant;

use ferrum_common::SubnetConfig;
use ferrum_common::codec::{CodecSpec, EncodedTensor, aggregate, dct, decode, encode, synthetic_delta as data};
use ferrum_common::payload::{PayloadLayout, reference_layout_bytes};
use serde::Serialize;

/// Timings of one tensor shape.
#[derive(Debug, Serialize)]
pub struct ShapeResult {
    pub shape: Vec<usize>,
    /// Tensors of this shape in the model.
    pub count: usize,
    pub params: usize,
    pub encode_ms: f64,
    pub decode_ms: f64,
    pub aggregate_ms: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct CodecReport {
    pub preset: String,
    pub params: u64,
    pub peers: usize,
    /// Each timing is the fastest of this many runs.
    pub repeats: usize,
    pub dct: bool,
    pub quantization_bits: Option<u8>,
    pub topk: u32,
    pub chunk: u32,
    pub payload_bytes: usize,
    pub bytes_per_param: f64,
    /// The reference layout at the same density: 12-bit indices, one byte per value.
    pub reference_bytes_per_param: f64,
    /// Whole-model throughput, millions of parameters per second.
    pub encode_mparams_per_s: f64,
    pub decode_mparams_per_s: f64,
    /// Millions of model parameters aggregated per second (all peers of each tensor).
    pub aggregate_mparams_per_s: f64,
    pub model_encode_s: f64,
    pub model_decode_s: f64,
    pub model_aggregate_s: f64,
    pub shapes: Vec<ShapeResult>,
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// Fastest of `repeats` runs of `f`, in ms (the minimum is the least disturbed by other load).
fn best<T>(repeats: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut fastest = f64::INFINITY;
    let mut out = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let r = f();
        fastest = fastest.min(ms(t));
        out = Some(r);
    }
    (fastest, out.expect("at least one run"))
}

/// Runs the benchmark for a config; each timing is the fastest of `repeats` runs.
pub fn codec(config: &SubnetConfig, peers: usize, repeats: usize) -> CodecReport {
    let spec = CodecSpec::new(config);
    let layout = PayloadLayout::for_spec(spec.clone());
    let mut by_shape: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
    for (p, _) in &spec.tensors {
        *by_shape.entry(p.shape.clone()).or_default() += 1;
    }
    let mut bases = dct::Bases::default();
    let mut shapes = Vec::new();
    for (shape, count) in by_shape {
        let g = spec.tensors.iter().find(|(p, _)| p.shape == shape).map(|(_, g)| *g).expect("shape from layout");
        // One input at a time: peers' dense tensors never coexist (20 × the embedding is 8 GB).
        let first = data(g.numel(), 1);
        let (encode_ms, enc) = best(repeats, || encode(&first, &g, &spec, &mut bases));
        let mut encoded: Vec<EncodedTensor> = vec![enc];
        drop(first);
        encoded.extend((1..peers).map(|p| encode(&data(g.numel(), p as u64 + 1), &g, &spec, &mut bases)));
        let (decode_ms, _) = best(repeats, || decode(&encoded[0], &g, &spec, &mut bases));
        let refs: Vec<(u16, &EncodedTensor)> = encoded.iter().enumerate().map(|(i, e)| (i as u16, e)).collect();
        let (aggregate_ms, agg) = best(repeats, || aggregate(&refs, &g, &spec, &mut bases));
        assert!(agg.is_ok(), "aggregate failed on benchmark data");
        shapes.push(ShapeResult { shape, count, params: g.numel(), encode_ms, decode_ms, aggregate_ms });
    }
    let params: u64 = shapes.iter().map(|s| (s.params * s.count) as u64).sum();
    let total = |f: fn(&ShapeResult) -> f64| shapes.iter().map(|s| f(s) * s.count as f64).sum::<f64>() / 1e3;
    let (enc_s, dec_s, agg_s) = (total(|s| s.encode_ms), total(|s| s.decode_ms), total(|s| s.aggregate_ms));
    let reference = reference_layout_bytes(&spec);
    let mparams = params as f64 / 1e6;
    CodecReport {
        preset: config.preset.name().to_string(),
        params,
        peers,
        repeats,
        dct: spec.dct,
        quantization_bits: spec.quantization_bits,
        topk: config.compression.topk,
        chunk: config.compression.chunk,
        payload_bytes: layout.size(),
        bytes_per_param: layout.size() as f64 / params as f64,
        reference_bytes_per_param: reference as f64 / params as f64,
        encode_mparams_per_s: mparams / enc_s,
        decode_mparams_per_s: mparams / dec_s,
        aggregate_mparams_per_s: mparams / agg_s,
        model_encode_s: enc_s,
        model_decode_s: dec_s,
        model_aggregate_s: agg_s,
        shapes,
    }
}

impl CodecReport {
    /// A table for people.
    pub fn print(&self) -> std::io::Result<()> {
        outln!(
            "preset {}: {:.1} M parameters, top-{} of {}×{} blocks, {} bits, dct {}",
            self.preset,
            self.params as f64 / 1e6,
            self.topk,
            self.chunk,
            self.chunk,
            self.quantization_bits.map_or("f32".to_string(), |b| b.to_string()),
            self.dct
        )?;
        outln!(
            "payload {} bytes: {:.4} bytes/parameter (reference layout {:.4})",
            self.payload_bytes,
            self.bytes_per_param,
            self.reference_bytes_per_param
        )?;
        outln!("{:>14} {:>6} {:>11} {:>11} {:>14}", "shape", "count", "encode ms", "decode ms", "aggregate ms")?;
        for s in &self.shapes {
            outln!(
                "{:>14} {:>6} {:>11.1} {:>11.1} {:>14.1}",
                format!("{:?}", s.shape),
                s.count,
                s.encode_ms,
                s.decode_ms,
                s.aggregate_ms
            )?;
        }
        outln!(
            "whole model: encode {:.2} s ({:.0} M params/s), decode {:.2} s ({:.0} M/s), aggregate {} peers {:.2} s ({:.0} M/s)",
            self.model_encode_s,
            self.encode_mparams_per_s,
            self.model_decode_s,
            self.decode_mparams_per_s,
            self.peers,
            self.model_aggregate_s,
            self.aggregate_mparams_per_s
        )?;
        Ok(())
    }
}
