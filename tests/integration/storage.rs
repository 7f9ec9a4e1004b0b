//! One storage suite, run against the local filesystem and against SeaweedFS over S3.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferrum_common::S3Credentials;
use ferrum_common::storage::{Location, StorageError, StorageLimits, Store};

use crate::seaweed::{SeaweedFs, limits};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn put_head_get_round_trip(store: Store) {
    let data = Bytes::from(pattern(10_000));
    store.put("a/b/obj.bin", data.clone()).await.expect("put");
    let info = store.head("a/b/obj.bin").await.expect("head");
    assert_eq!(info.key, "a/b/obj.bin");
    assert_eq!(info.size, 10_000);
    // LastModified is the server's clock at second resolution; both run on this machine.
    let skew = info.last_modified_ms.abs_diff(now_ms());
    assert!(skew < 10_000, "LastModified {} is {skew} ms from now", info.last_modified_ms);
    assert_eq!(store.get("a/b/obj.bin", None).await.expect("get"), data);
    // Overwrite replaces the whole object.
    store.put("a/b/obj.bin", Bytes::from_static(b"second")).await.expect("overwrite");
    assert_eq!(store.get("a/b/obj.bin", None).await.expect("get"), Bytes::from_static(b"second"));
}

async fn range_reads(store: Store) {
    let data = pattern(5_000);
    store.put("r.bin", Bytes::from(data.clone())).await.expect("put");
    assert_eq!(store.get_range("r.bin", 100..164).await.expect("range"), &data[100..164]);
    assert_eq!(store.get_range("r.bin", 4_999..5_000).await.expect("last byte"), &data[4_999..]);
    assert!(store.get_range("r.bin", 10..10).await.is_err(), "empty range");
    assert!(store.get_range("r.bin", 4_990..6_000).await.is_err(), "past the end");
    assert!(store.get_range("missing.bin", 0..4).await.expect_err("missing").is_not_found());
}

async fn list_and_delete(store: Store) {
    for k in ["w/000000000002/b", "w/000000000001/a", "w/000000000001/c", "other/x"] {
        store.put(k, Bytes::from_static(b"x")).await.expect("put");
    }
    let keys: Vec<String> = store.list("w").await.expect("list").into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["w/000000000001/a", "w/000000000001/c", "w/000000000002/b"]);
    let scoped = store.scoped("w/000000000001").expect("scoped");
    let keys: Vec<String> = scoped.list("").await.expect("list").into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["a", "c"]);
    assert_eq!(scoped.get("c", None).await.expect("scoped get"), Bytes::from_static(b"x"));

    store.delete("w/000000000001/a").await.expect("delete");
    assert!(store.head("w/000000000001/a").await.expect_err("gone").is_not_found());
    store.delete("w/000000000001/a").await.expect("deleting a missing object is fine");
    assert_eq!(store.list("w").await.expect("list").len(), 2);
}

async fn size_cap_refuses_before_download(store: Store) {
    store.put("big.bin", Bytes::from(pattern(4_096))).await.expect("put");
    match store.get("big.bin", Some(4_095)).await {
        Err(StorageError::TooLarge { size, cap, .. }) => assert_eq!((size, cap), (4_096, 4_095)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(store.get("big.bin", Some(4_096)).await.expect("at the cap").len(), 4_096);
}

async fn missing_and_invalid_keys(store: Store) {
    assert!(store.get("nope", None).await.expect_err("missing").is_not_found());
    assert!(store.head("nope").await.expect_err("missing").is_not_found());
    for bad in ["", "../escape", "a//b", "/abs"] {
        assert!(matches!(store.put(bad, Bytes::new()).await, Err(StorageError::InvalidKey { .. })), "{bad}");
    }
}

async fn large_file_upload_in_parts(store: Store) {
    // Above the 8 MiB part size, so it goes through a multipart upload.
    let data = pattern(9 << 20 | 12_345);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("big");
    std::fs::write(&file, &data).expect("write");
    let n = store.put_file("parts/big", &file).await.expect("put_file");
    assert_eq!(n, data.len() as u64);
    assert_eq!(store.head("parts/big").await.expect("head").size, data.len() as u64);
    let back = store.get("parts/big", None).await.expect("get");
    assert!(back == data, "multipart upload corrupted the object");
}

crate::on_both_backends!(
    put_head_get_round_trip,
    range_reads,
    list_and_delete,
    size_cap_refuses_before_download,
    missing_and_invalid_keys,
    large_file_upload_in_parts,
);

/// The identity file is in force: a request signed with an unknown key is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_refuses_wrong_credentials() {
    let server = SeaweedFs::get();
    let wrong = S3Credentials { access_key_id: "ferrumtestaccess".into(), secret_access_key: "not-the-secret".into() };
    let store = server.store_with("wrong-creds", StorageLimits { max_retries: 0, ..limits() }, &wrong);
    let err = store.put("x", Bytes::from_static(b"x")).await.expect_err("must be refused");
    assert!(matches!(err, StorageError::Backend { .. }), "{err}");
    let shown = format!("{err} {wrong:?}");
    assert!(!shown.contains("not-the-secret"), "secret leaked: {shown}");
}

/// A peer's bucket at an endpoint the operator did not configure is read unsigned: the node's
/// keys (here in the environment as well) never reach it, so this private bucket refuses the
/// read that the same location with the node's credentials is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_buckets_are_read_without_the_nodes_credentials() {
    let server = SeaweedFs::get();
    let owner = server.store("anonymous-read", limits());
    owner.put("p.bin", Bytes::from_static(b"payload")).await.expect("put");
    let anonymous = server.store_anonymous("anonymous-read", StorageLimits { max_retries: 0, ..limits() });
    let err = anonymous.get("p.bin", None).await.expect_err("an unsigned read of a private bucket is refused");
    assert!(matches!(err, StorageError::Backend { .. }), "{err}");
    assert_eq!(owner.get("p.bin", None).await.expect("signed read"), Bytes::from_static(b"payload"));
}

/// A server that accepts connections and never answers: every operation ends in an error within
/// the configured bound instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresponsive_endpoint_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c);
        }
    });
    let location = Location::S3 {
        bucket: "b".into(),
        prefix: String::new(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
    };
    let limits = StorageLimits {
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        max_retries: 1,
        retry_backoff: Duration::from_millis(10),
        max_object_bytes: 1 << 20,
    };
    let creds = S3Credentials { access_key_id: "k".into(), secret_access_key: "s".into() };
    let store = Store::open_with(&location, limits, Some(&creds)).expect("open");
    let err = store.head("x").await.expect_err("no answer");
    assert!(matches!(err, StorageError::Timeout { .. } | StorageError::Backend { .. }), "unexpected {err}");
}
