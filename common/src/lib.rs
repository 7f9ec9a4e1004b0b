//! Ferrum protocol core, shared by the miner, the validator and the `ferrum` tool.
//!
//! Everything here that two nodes must agree on (config hash, windows, sample assignment, the
//! dataset format, the storage key layout) is a pure function of its inputs and is specified in
//! `docs/protocol.md`, with test vectors pinned by the tests next to the code.

/// `Display` as lowercase hex and `Debug` as `Name(hex)` for a 32-byte id newtype.
macro_rules! hex_id {
    ($name:ident) => {
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

// The pure protocol core: no async runtime, no object store, no model framework.
pub mod agreement;
pub mod assignment;
pub mod checkpoint;
pub mod codec;
pub mod config;
pub mod data;
pub mod driver;
pub mod gather;
pub mod hotkey;
pub mod keys;
pub mod location;
pub mod model;
pub mod parallel;
pub mod params;
pub mod payload;
pub mod simd;
pub mod window;

// I/O at the edges (feature `io`): object storage, dataset reading, node startup, CLI helpers.
#[cfg(feature = "io")]
pub mod cli;
#[cfg(feature = "io")]
pub mod node;
#[cfg(feature = "io")]
pub mod storage;

// The training core on burn (feature `train`).
#[cfg(feature = "train")]
pub mod train;

pub use assignment::{AssignmentError, SampleRequest, assign_samples, random_identity};
pub use config::{ConfigError, ConfigHash, Preset, SubnetConfig};
#[cfg(feature = "io")]
pub use data::Dataset;
pub use data::{DatasetId, Manifest};
pub use hotkey::Hotkey;
#[cfg(feature = "io")]
pub use storage::{ObjectInfo, S3Credentials, StorageError, StorageLimits, Store};
pub use window::{Freshness, PutWindow, WindowSchedule};
