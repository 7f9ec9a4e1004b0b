//! What a node reports to a harness (the devnet, the tests) as it goes; production nodes send
//! nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrum_common::model::MasterModel;
use ferrum_gauntlet::WindowReport;

use crate::sync::Applied;

/// One thing a node did.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// The outer step of `applied.window` is applied; `model` is the base of the next window.
    Applied { uid: u16, applied: Applied, model: Arc<MasterModel> },
    /// A miner's payload of `window` is uploaded.
    Uploaded { uid: u16, window: u64, bytes: usize },
    /// Nothing to do until the block after `block`.
    Idle { uid: u16, block: u64 },
    /// A validator scored a window.
    Scored { uid: u16, report: Arc<WindowReport> },
    /// A validator's weights are on chain (uid → share, summing to 1).
    WeightsSet { uid: u16, window: u64, weights: BTreeMap<u16, f64> },
}
