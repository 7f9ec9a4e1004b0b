//! The Gauntlet: per-window evaluation of miners' uploads and the scores and weights that
//! follow, as pure functions over plain data (docs/protocol.md §14). The validator measures
//! (losses, fingerprints, times, verdicts) and hands the facts here; this crate decides.
//! It depends on the protocol core only: no async runtime, storage or model framework.

pub mod ledger;
pub mod openskill;
pub mod order;
pub mod rules;
pub mod selection;
pub mod weights;

pub use ledger::{CopyOf, Ledger, MinerRecord, Outcome, Penalty, Rule, UidReport, WindowInput, WindowReport};
pub use openskill::{PlackettLuce, Rating};
