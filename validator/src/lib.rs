//! The Ferrum validator as a library: [`run`] follows the chain's windows, applies each one as
//! every node does, scores every miner with the Gauntlet (`ferrum-gauntlet`), publishes signed
//! gather records and checkpoints, and sets weights. `main.rs` only parses flags.

pub mod eval;
pub mod originality;
pub mod run;
pub mod state;

pub use ferrum_node::GatherRecord;
pub use run::{ValidatorError, ValidatorSetup, run};
pub use state::{ValidatorFiles, ValidatorState};
