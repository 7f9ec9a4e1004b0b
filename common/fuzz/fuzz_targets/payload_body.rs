//! A hostile miner's payloads: the fuzzer's bytes overwrite part of a valid payload, which is
//! then hashed and signed with the miner's own key, so the body parser behind the signature
//! check sees every mutation. It must accept or refuse with a reason, never panic.
#![no_main]

mod common;

use ferrum_common::payload::{HEADER_LEN, SIGNING_CONTEXT, TRAILER_LEN, parse};
use libfuzzer_sys::fuzz_target;
use sp_core::Pair;

fuzz_target!(|data: &[u8]| {
    let f = common::fixture();
    if data.len() < 4 {
        return;
    }
    let mut bytes = f.valid.clone();
    let body_end = bytes.len() - TRAILER_LEN;
    // The first four bytes pick where the rest lands (header included: it is signed too).
    let at = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize % body_end;
    for (i, &b) in data[4..].iter().enumerate() {
        if at + i >= body_end {
            break;
        }
        bytes[at + i] = b;
    }
    let hash = *blake3::hash(&bytes[..body_end]).as_bytes();
    let message = [SIGNING_CONTEXT, &bytes[..HEADER_LEN], &hash].concat();
    let sig = f.key.sign(&message);
    bytes[body_end..body_end + 32].copy_from_slice(&hash);
    bytes[body_end + 32..].copy_from_slice(&sig.0);
    let _ = parse(&bytes, &f.layout, &f.expect());
});
