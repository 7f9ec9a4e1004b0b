//! The `validator` binary as a new user first runs it.

use std::process::Command;

/// `--seed-block-hash` is optional: without it the check gets as far as the dataset.
#[test]
fn check_needs_no_seed_block_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = Command::new(env!("CARGO_BIN_EXE_validator"))
        .current_dir(dir.path())
        .args(["--hotkey", "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty", "check", "--window", "3"])
        .env_remove("FERRUM_CONFIG")
        .env_remove("FERRUM_SEED_BLOCK_HASH")
        .output()
        .expect("run validator");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("seed-block-hash") && err.contains("ferrum quickstart"), "{err}");
}
