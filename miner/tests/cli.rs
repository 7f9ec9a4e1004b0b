//! The `miner` binary as a new user first runs it.

use std::process::Command;

/// In an empty directory: a plain pointer to the quick start, no folders made, no colour codes
/// in logs that go to a pipe.
#[test]
fn check_without_a_dataset_says_how_to_make_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = Command::new(env!("CARGO_BIN_EXE_miner"))
        .current_dir(dir.path())
        .args(["--hotkey", "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty", "check", "--uid", "1", "--window", "3"])
        .env_remove("FERRUM_CONFIG")
        .env_remove("NO_COLOR")
        .output()
        .expect("run miner");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("ferrum quickstart") && err.contains("data prepare"), "{err}");
    assert!(err.contains("WARN"), "the unpinned-dataset warning is logged: {err}");
    assert!(!err.contains('\u{1b}'), "no ANSI escapes in piped logs: {err:?}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "nothing created");
}
