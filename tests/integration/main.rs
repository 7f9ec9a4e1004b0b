//! Integration tests of the whole system, against real components: the local filesystem and a
//! real S3-compatible server (SeaweedFS) on 127.0.0.1.

mod chain_spec;
mod checkpoint;
mod cli;
mod dataset;
mod devnet;
mod docs;
mod export;
mod hostile_s3;
mod localnet;
mod payload;
mod seaweed;
mod storage;

use ferrum_common::storage::Store;

/// The tests that keep both cores busy for minutes: devnet tests share it (they wait for their
/// nodes, so load only slows them); the localnet test takes it alone, because its chain keeps
/// wall-clock time and a starved machine makes every upload late.
pub static CPU_HEAVY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The backends every storage-facing test runs against.
pub enum Backend {
    Local,
    S3,
}

/// A fresh, empty store of the given kind, unique to `name`. The guard keeps a local
/// directory alive for the test's duration.
pub fn fresh_store(backend: Backend, name: &str) -> (Store, Option<tempfile::TempDir>) {
    match backend {
        Backend::Local => {
            let dir = tempfile::tempdir().expect("tempdir");
            let location = ferrum_common::storage::Location::Local { root: dir.path().to_path_buf() };
            let store = Store::open_location(&location, seaweed::limits()).expect("local store");
            (store, Some(dir))
        }
        Backend::S3 => {
            let unique = format!("{name}-{}", std::process::id());
            (seaweed::SeaweedFs::get().store(&unique, seaweed::limits()), None)
        }
    }
}

/// Declares one async test per backend for a suite function `fn(Store) -> impl Future`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _guard) = $crate::fresh_store($crate::Backend::Local, stringify!($name));
                    super::$name(store).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _guard) = $crate::fresh_store($crate::Backend::S3, stringify!($name));
                    super::$name(store).await;
                }
            )*
        }
    };
}
