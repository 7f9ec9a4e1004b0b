//! The Ferrum miner as a library: [`run`] executes the window driver's actions (train, upload,
//! gather and apply) against any [`Chain`](ferrum_chain::Chain) and store; `main.rs` only
//! parses flags. A harness (the devnet, the tests) runs many miners in one process.

pub mod adversary;
pub mod run;
pub mod trainer;

pub use adversary::Behaviour;
pub use ferrum_node::NodeEvent;
pub use run::{MinerError, MinerSetup, run};
