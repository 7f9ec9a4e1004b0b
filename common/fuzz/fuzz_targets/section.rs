//! One tensor section, straight to the body parser (no signature in the way, so it runs at tens
//! of thousands of inputs a second): the first byte picks a geometry, the second the
//! quantization, the rest is the section. The reader must answer without panicking, and what it
//! accepts must be the one encoding of what it returns: written back, the same bytes.
#![no_main]

use ferrum_common::codec::CodecSpec;
use ferrum_common::config::Preset;
use ferrum_common::params::ParamSpec;
use ferrum_common::payload::section;
use libfuzzer_sys::fuzz_target;

/// Shapes and `(chunk, topk)`: the test preset's blocks, a dense block, a 1-D tensor, odd sizes.
const GEOMETRIES: [(&[usize], u32, u32); 6] =
    [(&[64, 64], 64, 64), (&[64, 64], 8, 3), (&[64], 64, 64), (&[3, 5], 8, 3), (&[15, 7], 8, 2), (&[16, 16], 4, 16)];

fuzz_target!(|data: &[u8]| {
    let [pick, quant, rest @ ..] = data else { return };
    let (shape, chunk, topk) = GEOMETRIES[usize::from(*pick) % GEOMETRIES.len()];
    let mut c = Preset::Test.config().compression;
    (c.chunk, c.topk) = (chunk, topk);
    c.quantization_bits = match quant % 9 {
        0 => None,
        b => Some(b),
    };
    let spec = CodecSpec::for_layout(vec![ParamSpec { path: "fuzz".into(), shape: shape.to_vec() }], &c);
    let g = spec.tensors[0].1;
    let mut bytes = vec![0u8; section::len(&g, c.quantization_bits)];
    let n = rest.len().min(bytes.len());
    bytes[..n].copy_from_slice(&rest[..n]);
    if let Ok(t) = section::read(&bytes, &g, c.quantization_bits, "fuzz") {
        let mut again = Vec::new();
        section::write(&t, &g, c.quantization_bits, &mut again).expect("what the reader accepts can be written");
        assert_eq!(again, bytes, "two encodings of one section");
    }
});
