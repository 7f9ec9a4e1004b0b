//! Datasets end to end: prepare, read through S3 and from disk, and reject damaged data.
//!
//! With `FERRUM_CORPUS` pointing at the output of `scripts/fetch-corpus` (CI sets it), the
//! cross-backend test runs on the real corpus; otherwise on a generated one.

use std::path::{Path, PathBuf};

use ferrum::prepare::{PrepareJob, prepare};
use ferrum::synth::write_corpus;
use ferrum::tokenizer::Tokenizer;
use ferrum_common::assignment::{SampleRequest, assign_samples};
use ferrum_common::data::DataError;
use ferrum_common::storage::{Location, Store};
use ferrum_common::{Dataset, DatasetId, Hotkey, Preset};

use crate::seaweed::{SeaweedFs, limits};

fn job(inputs: Vec<PathBuf>, tokenizer: &str, seq: u32, per_shard: u64) -> PrepareJob {
    PrepareJob {
        inputs,
        tokenizer: Tokenizer::load(tokenizer, None).expect("tokenizer"),
        sequence_length: seq,
        samples_per_shard: per_shard,
        text_field: "text".into(),
        threads: 2,
        progress: false,
    }
}

fn local_store(dir: &Path) -> Store {
    Store::open_location(&Location::Local { root: dir.to_path_buf() }, limits()).expect("local store")
}

/// The fetched corpus's training split when FERRUM_CORPUS is set, else a generated corpus.
fn corpus(dir: &Path) -> Vec<PathBuf> {
    match std::env::var_os("FERRUM_CORPUS") {
        Some(c) => vec![PathBuf::from(c).join("train")],
        None => {
            let f = dir.join("synthetic.jsonl");
            write_corpus(&f, 3 << 20, 11).expect("corpus");
            vec![f]
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_dataset_id_every_run_and_same_samples_through_s3_and_disk() {
    let work = tempfile::tempdir().expect("tempdir");
    let inputs = corpus(work.path());
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let ra = prepare(job(inputs.clone(), "bytes", 256, 4_000), &local_store(&a)).await.expect("prepare a");
    let rb = prepare(job(inputs.clone(), "bytes", 256, 4_000), &local_store(&b)).await.expect("prepare b");
    assert_eq!(ra.id, rb.id, "dataset id must not depend on the run");
    assert!(ra.manifest.shards.len() >= 2, "test wants several shards");
    for s in &ra.manifest.shards {
        let x = std::fs::read(a.join(&s.key)).expect("shard a");
        let y = std::fs::read(b.join(&s.key)).expect("shard b");
        assert!(x == y, "shard {} differs between runs", s.key);
    }

    let s3 = SeaweedFs::get().store(&format!("dataset-{}", std::process::id()), limits());
    let rs = prepare(job(inputs, "bytes", 256, 4_000), &s3).await.expect("prepare to S3");
    assert_eq!(rs.id, ra.id, "S3 output differs from disk output");

    let disk = Dataset::open(local_store(&a), Some(&ra.id)).await.expect("open disk");
    let remote = Dataset::open(s3, Some(&ra.id)).await.expect("open s3");
    let miner = Hotkey::from_dev_uri("//Bob").expect("bob");
    let req = SampleRequest { dataset: disk.id(), netuid: 3, window: 1234, uid: 1, hotkey: &miner };
    let picks = assign_samples(&req, 24, disk.num_samples()).expect("assign");
    let from_disk = disk.samples(&picks).await.expect("disk samples");
    let from_s3 = remote.samples(&picks).await.expect("s3 samples");
    assert_eq!(from_disk, from_s3);
    assert!(from_disk.iter().all(|s| s.len() == 256));
    remote.verify().await.expect("verify over S3");
}

/// A small two-shard dataset on disk, for the damage tests.
async fn small_dataset(dir: &Path) -> DatasetId {
    let text = dir.join("t.jsonl");
    write_corpus(&text, 200_000, 5).expect("corpus");
    let r = prepare(job(vec![text], "bytes", 128, 1000), &local_store(&dir.join("ds"))).await.expect("prepare");
    assert!(r.manifest.shards.len() >= 2);
    r.id
}

fn shard_path(dir: &Path, i: usize) -> PathBuf {
    dir.join("ds").join(ferrum_common::keys::dataset_shard(i))
}

#[tokio::test]
async fn truncated_shard_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = small_dataset(dir.path()).await;
    let p = shard_path(dir.path(), 0);
    let len = std::fs::metadata(&p).expect("meta").len();
    std::fs::OpenOptions::new().write(true).open(&p).expect("open").set_len(len - 100).expect("truncate");
    let ds = Dataset::open(local_store(&dir.path().join("ds")), Some(&id)).await.expect("manifest is intact");
    let err = ds.sample(0).await.expect_err("truncated shard");
    assert!(matches!(err, DataError::Shard { shard: 0, .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    // Samples of the intact shard still read.
    ds.sample(ds.manifest().shards[0].samples).await.expect("second shard is fine");
}

#[tokio::test]
async fn flipped_byte_is_caught_per_sample_and_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = small_dataset(dir.path()).await;
    let p = shard_path(dir.path(), 1);
    let mut bytes = std::fs::read(&p).expect("read");
    // Sample 3 of shard 1: header (96) + 3 samples of 128 two-byte tokens, plus a little.
    let at = 96 + 3 * 256 + 10;
    bytes[at] ^= 0x01;
    std::fs::write(&p, &bytes).expect("write");
    let ds = Dataset::open(local_store(&dir.path().join("ds")), Some(&id)).await.expect("open");
    let first = ds.manifest().shards[0].samples;
    match ds.sample(first + 3).await {
        Err(DataError::SampleCorrupt { index, shard: 1 }) => assert_eq!(index, first + 3),
        other => panic!("expected SampleCorrupt, got {other:?}"),
    }
    ds.sample(first + 2).await.expect("neighbouring sample is intact");
    assert!(ds.verify().await.is_err());
}

#[tokio::test]
async fn altered_header_or_manifest_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = small_dataset(dir.path()).await;
    let root = dir.path().join("ds");

    // Header: change the recorded token hash; the manifest pins the header's blake3.
    let p = shard_path(dir.path(), 0);
    let mut bytes = std::fs::read(&p).expect("read");
    bytes[30] ^= 0xff;
    std::fs::write(&p, &bytes).expect("write");
    let ds = Dataset::open(local_store(&root), Some(&id)).await.expect("open");
    let err = ds.sample(0).await.expect_err("bad header");
    assert!(err.to_string().contains("header does not match the manifest"), "{err}");

    // Manifest: any edit changes the id, so a pinned id refuses it.
    let mpath = root.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).expect("manifest");
    std::fs::write(&mpath, text.replace("\"version\": 1", "\"version\":  1")).expect("write");
    let err = Dataset::open(local_store(&root), Some(&id)).await.err().expect("wrong id");
    assert!(matches!(err, DataError::WrongDataset { .. }), "{err}");

    // Garbage where the manifest should be: a clear error, no panic.
    std::fs::write(&mpath, b"\x00\x01 not json").expect("write");
    let err = Dataset::open(local_store(&root), None).await.err().expect("garbage");
    assert!(matches!(err, DataError::Manifest { .. }), "{err}");
    std::fs::write(&mpath, br#"{"format":"ferrum-dataset","version":1}"#).expect("write");
    let err = Dataset::open(local_store(&root), None).await.err().expect("incomplete");
    assert!(matches!(err, DataError::Manifest { .. }), "{err}");
}

#[tokio::test]
async fn config_must_match_the_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = small_dataset(dir.path()).await;
    let ds = Dataset::open(local_store(&dir.path().join("ds")), None).await.expect("open");
    let mut config = Preset::Test.config();
    config.data.sequence_length = 128;
    ds.check_config(&config).expect("matches");
    config.data.dataset_id = Some(id.to_string());
    ds.check_config(&config).expect("pinned id matches");
    config.data.sequence_length = 64;
    let err = ds.check_config(&config).expect_err("length");
    assert!(err.to_string().contains("data.sequence_length"), "{err}");
    config.data.sequence_length = 128;
    config.data.tokenizer = "gpt2".into();
    let err = ds.check_config(&config).expect_err("tokenizer");
    assert!(err.to_string().contains("data.tokenizer"), "{err}");
    let err = ds.sample(ds.num_samples()).await.expect_err("past the end");
    assert!(matches!(err, DataError::NoSuchSample { .. }), "{err}");
}

#[tokio::test]
async fn gpt2_dataset_round_trips_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("doc.txt");
    let body = "The quick brown fox jumps over the lazy dog. ".repeat(200);
    std::fs::write(&text, &body).expect("write");
    let store = local_store(&dir.path().join("ds"));
    let r = prepare(job(vec![text], "gpt2", 32, 64), &store).await.expect("prepare");
    assert_eq!(r.manifest.tokenizer.id, "gpt2");
    assert_eq!(r.manifest.token_width, 2);
    let ds = Dataset::open(store, Some(&r.id)).await.expect("open");
    let tok = Tokenizer::load("gpt2", None).expect("gpt2");
    let first = ds.sample(0).await.expect("sample");
    assert!(body.starts_with(&tok.decode(&first)), "decoded text is not the input's start");
}

#[tokio::test]
async fn prepare_rejects_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"ok\"}\nnot json\n").expect("write");
    let err = prepare(job(vec![bad], "bytes", 8, 10), &local_store(&dir.path().join("o"))).await.expect_err("bad line");
    assert!(format!("{err:#}").contains("bad.jsonl:2"), "{err:#}");
    let tiny = dir.path().join("tiny.txt");
    std::fs::write(&tiny, "hi").expect("write");
    let err =
        prepare(job(vec![tiny], "bytes", 64, 10), &local_store(&dir.path().join("p"))).await.expect_err("too small");
    assert!(format!("{err:#}").contains("fewer than 64 tokens"), "{err:#}");
}

/// A shard shortened after the dataset read its index (so after any size check at open) is an
/// error from `verify`, not a panic on slicing the short download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_shortened_after_opening_is_an_error() {
    let work = tempfile::tempdir().expect("tempdir");
    let text = work.path().join("c.jsonl");
    write_corpus(&text, 200_000, 5).expect("corpus");
    let out = work.path().join("ds");
    prepare(job(vec![text], "bytes", 64, 1_000), &local_store(&out)).await.expect("prepare");
    let ds = Dataset::open(local_store(&out), None).await.expect("open");
    ds.sample(0).await.expect("reads and caches shard 0's index");
    let shard = out.join(&ds.manifest().shards[0].key);
    let len = std::fs::metadata(&shard).expect("meta").len();
    std::fs::OpenOptions::new().write(true).open(&shard).expect("open").set_len(len / 3).expect("truncate");
    match ds.verify().await {
        Err(DataError::Shard { shard: 0, reason, .. }) => assert!(reason.contains("truncated"), "{reason}"),
        other => panic!("expected a truncated-shard error, got {other:?}"),
    }
}
