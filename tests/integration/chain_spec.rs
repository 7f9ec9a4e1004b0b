//! `scripts/fetch-chain-spec` (what `scripts/test` runs on a machine without `../shared`),
//! against a copy of the chain spec served over HTTP on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The real chain spec: `FERRUM_SUBTENSOR_SPEC` (scripts/test sets it), else `../shared`.
fn real_spec() -> Vec<u8> {
    let path = std::env::var_os("FERRUM_SUBTENSOR_SPEC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/subtensor/raonet.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("chain spec {}: {e} (run scripts/test)", path.display()))
}

/// Serves `/good` (the spec) and `/bad` (the spec with one byte changed) until the test ends.
fn serve(spec: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                head.push(byte[0]);
            }
            let request = String::from_utf8_lossy(&head);
            let mut body = spec.clone();
            let status = if request.starts_with("GET /good ") {
                "200 OK"
            } else if request.starts_with("GET /bad ") {
                body[1000] ^= 1;
                "200 OK"
            } else {
                body.clear();
                "404 Not Found"
            };
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(&body);
        }
    });
    port
}

fn fetch(cache: &Path, url: &str) -> Output {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-chain-spec"))
        .args(["--no-shared", "--cache", cache.to_str().expect("utf8"), "--url", url])
        .env_remove("FERRUM_SUBTENSOR_SPEC")
        .env_remove("FERRUM_SUBTENSOR_SPEC_URL")
        .output()
        .expect("run scripts/fetch-chain-spec")
}

fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr).lines().filter(|l| !l.starts_with("fetching")).map(String::from).collect()
}

#[test]
fn fetches_checks_and_caches_the_pinned_spec() {
    let spec = real_spec();
    let port = serve(spec.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let o = fetch(dir.path(), &format!("http://127.0.0.1:{port}/good"));
    assert!(o.status.success(), "{:?}", stderr_lines(&o));
    let path = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    assert_eq!(path, dir.path().join("raonet.json"));
    assert_eq!(std::fs::read(&path).expect("cached"), spec);
    // Cached: no network needed the second time (nothing listens on port 9 of 127.0.0.1).
    let o = fetch(dir.path(), "http://127.0.0.1:9/good");
    assert!(o.status.success(), "{:?}", stderr_lines(&o));
}

#[test]
fn a_wrong_or_missing_spec_stops_with_one_line_that_says_where_to_get_it() {
    let port = serve(real_spec());
    for url in
        [format!("http://127.0.0.1:{port}/bad"), format!("http://127.0.0.1:{port}/gone"), "http://127.0.0.1:9/x".into()]
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = fetch(dir.path(), &url);
        let lines = stderr_lines(&o);
        assert_eq!(o.status.code(), Some(1), "{url}: {lines:?}");
        assert_eq!(lines.len(), 1, "{url}: {lines:?}");
        assert!(lines[0].contains("opentensor/subtensor") && lines[0].contains("FERRUM_SUBTENSOR_SPEC"), "{lines:?}");
        assert!(o.stdout.is_empty());
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("cache dir").collect();
        assert!(left.is_empty(), "{url}: nothing half-written is left in the cache");
    }
}
