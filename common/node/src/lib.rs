//! What every Ferrum node shares on top of the protocol core and the chain client: gathering
//! and applying each window's payloads exactly as every other node does ([`sync`]), the node's
//! own state on disk that survives a kill ([`state`]), retries that back off only when a retry
//! can help ([`retry`]), and Prometheus metrics ([`metrics`]).

pub mod agree;
pub mod cli;
pub mod cpu;
pub mod events;
pub mod metrics;
pub mod record;
pub mod retry;
pub mod startup;
pub mod state;
pub mod sync;

pub use agree::Unsettled;
pub use events::NodeEvent;
pub use metrics::Metrics;
pub use record::{AcceptedPayload, GatherRecord};
pub use startup::{Follower, NodeSetup, StartError, join};
pub use state::{NodeState, StateDir, StateError};
pub use sync::{
    Agreement, Applied, Fetched, Gathered, PeerAccess, Recheck, Skip, StoreHook, Sync, WindowPlan, left_out,
};
