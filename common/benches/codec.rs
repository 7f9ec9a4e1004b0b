//! Criterion benches of the codec on one 2048 × 2048 projection of the 1b preset (default
//! compression: top-64 of 64 × 64 blocks, 2-bit values). `ferrum bench codec` covers every shape
//! of a preset and prints whole-model figures.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrum_common::codec::{CodecSpec, EncodedTensor, aggregate, dct, decode, encode, synthetic_delta as data};
use ferrum_common::config::Preset;
use ferrum_common::params::ParamSpec;

fn bench(c: &mut Criterion) {
    let config = Preset::Large1b.config();
    let layout = vec![ParamSpec { path: "q_proj".into(), shape: vec![2048, 2048] }];
    let spec = CodecSpec::for_layout(layout, &config.compression);
    let g = spec.tensors[0].1;
    let mut bases = dct::Bases::default();
    let x = data(g.numel(), 1);
    let peers: Vec<EncodedTensor> = (0..20).map(|p| encode(&data(g.numel(), p + 2), &g, &spec, &mut bases)).collect();
    let refs: Vec<(u16, &EncodedTensor)> = peers.iter().enumerate().map(|(i, e)| (i as u16, e)).collect();

    let mut group = c.benchmark_group("codec_2048x2048");
    group.sample_size(10);
    group.throughput(Throughput::Elements(g.numel() as u64));
    group.bench_function("encode", |b| b.iter(|| encode(&x, &g, &spec, &mut bases)));
    group.bench_function("decode", |b| b.iter(|| decode(&peers[0], &g, &spec, &mut bases)));
    group.bench_function("aggregate_20_peers", |b| b.iter(|| aggregate(&refs, &g, &spec, &mut bases)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
