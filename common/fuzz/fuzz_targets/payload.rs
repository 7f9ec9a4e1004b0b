//! Arbitrary bytes through the full verifying parser: it must refuse them with a reason, never
//! panic, and never accept anything but the genuine signed payload. Each input is tried as it
//! is and fitted to the exact payload size (so the header, identity, hash and signature checks
//! are reached, not only the size gate).
#![no_main]

mod common;

use ferrum_common::payload::{parse, parse_unverified};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let f = common::fixture();
    let mut fitted = f.valid.clone();
    let n = data.len().min(fitted.len());
    fitted[..n].copy_from_slice(&data[..n]);
    for bytes in [data, fitted.as_slice()] {
        if let Ok(p) = parse(bytes, &f.layout, &f.expect()) {
            // Only the genuine bytes verify: accepting anything else would be a forgery.
            assert_eq!(bytes, f.valid.as_slice(), "accepted a payload that is not the signed one");
            assert_eq!(p.header, f.header);
        }
        let _ = parse_unverified(bytes, &f.layout);
    }
});
