//! A SeaweedFS S3 server (`weed mini`) on 127.0.0.1: every port set explicitly, an identity file
//! so unsigned or wrongly signed requests are refused, and a guard shell that stops the server
//! and removes its data when the process that started it is gone (even after SIGKILL).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrum_common::S3Credentials;
use ferrum_common::storage::{Location, StorageLimits, Store};

/// A running server and the one bucket it was started with.
pub struct Seaweed {
    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub endpoint: String,
    pub bucket: String,
    pub credentials: S3Credentials,
    dir: PathBuf,
    _guard: Child,
}

/// `n` ports the OS says are free now.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

impl Seaweed {
    /// Starts `weed` with its data under `dir` and `bucket` created, and waits (up to 90 s)
    /// until a signed write to the bucket succeeds. Blocking: call it off an async runtime's
    /// worker threads (`spawn_blocking`) or from plain threads.
    pub fn start(weed: &Path, dir: &Path, bucket: &str, credentials: S3Credentials) -> Result<Seaweed> {
        std::fs::create_dir_all(dir.join("data")).with_context(|| format!("creating {}", dir.display()))?;
        let identities = serde_json::json!({
            "identities": [{
                "name": "ferrum",
                "credentials": [{
                    "accessKey": credentials.access_key_id,
                    "secretKey": credentials.secret_access_key,
                }],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]
        });
        let s3_config = dir.join("s3.json");
        std::fs::write(&s3_config, identities.to_string())?;
        let p = free_ports(11)?;
        let args = vec![
            "mini".to_string(),
            format!("-dir={}", dir.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={}", p[0]),
            format!("-master.port.grpc={}", p[1]),
            format!("-volume.port={}", p[2]),
            format!("-volume.port.grpc={}", p[3]),
            format!("-filer.port={}", p[4]),
            format!("-filer.port.grpc={}", p[5]),
            format!("-s3.port={}", p[6]),
            format!("-s3.port.grpc={}", p[7]),
            format!("-admin.port={}", p[8]),
            format!("-admin.port.grpc={}", p[9]),
            format!("-metricsPort={}", p[10]),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-master.telemetry=false".into(),
            "-master.volumeSizeLimitMB=64".into(),
            format!("-s3.config={}", s3_config.display()),
            format!("-bucket={bucket}"),
        ];
        let guard = Command::new("sh")
            .arg("-c")
            // Logs to the folder; its data goes when the starting process is gone.
            .arg(super::guard::script(r#"dir="$1"; shift"#, r#">"$dir/weed.log" 2>&1"#, r#"rm -rf "$dir/data""#))
            .arg("weed-guard")
            .arg(dir)
            .arg(weed)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting SeaweedFS")?;
        let server = Seaweed {
            endpoint: format!("http://127.0.0.1:{}", p[6]),
            bucket: bucket.to_string(),
            credentials,
            dir: dir.to_path_buf(),
            _guard: guard,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let limits = StorageLimits {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            max_retries: 0,
            retry_backoff: Duration::from_millis(50),
            max_object_bytes: 1 << 20,
        };
        let mut last = String::new();
        while Instant::now() < deadline {
            let store = self.store("readiness", limits)?;
            match rt.block_on(store.put("probe", bytes::Bytes::from_static(b"ok"))) {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let log = std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        bail!("SeaweedFS did not become ready in 90 s (last error: {last}); log tail:\n{}", tail.join("\n"))
    }

    /// The location of `prefix` in the bucket.
    pub fn location(&self, prefix: &str) -> Location {
        Location::S3 {
            bucket: self.bucket.clone(),
            prefix: prefix.into(),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
        }
    }

    /// A store on `prefix` of the bucket, signed with the server's credentials.
    pub fn store(&self, prefix: &str, limits: StorageLimits) -> Result<Store> {
        Ok(Store::open_with(&self.location(prefix), limits, Some(&self.credentials))?)
    }
}
