//! The object key layout (docs/protocol.md §Storage keys).
//!
//! Protocol objects live under `ferrum/v1/{netuid}/{config hash, 16 hex}/`, so a config change
//! starts a fresh namespace and nodes on different protocol versions never read each other's
//! objects. Windows are zero-padded to 12 digits so listings sort by window. Datasets are keyed
//! relative to their own location and shared across protocol versions.

use crate::config::ConfigHash;
use crate::hotkey::Hotkey;

/// Key of a dataset's manifest, relative to the dataset location.
pub const DATASET_MANIFEST: &str = "manifest.json";

/// Key of dataset shard `index`, relative to the dataset location.
pub fn dataset_shard(index: usize) -> String {
    format!("shards/{index:05}.fts")
}

/// The protocol namespace of one subnet and config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    /// `ferrum/v1/{netuid}/{config hash short}`.
    pub fn new(netuid: u16, config: &ConfigHash) -> Self {
        Namespace(format!("ferrum/v1/{netuid}/{}", config.short()))
    }

    /// The namespace prefix itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A miner's pseudo-gradient payload for a window, in the miner's bucket.
    pub fn payload(&self, window: u64, uid: u16, hotkey: &Hotkey) -> String {
        format!("{}/payloads/{window:012}/{uid:05}-{hotkey}.frp", self.0)
    }

    /// Prefix under which all payloads of a window sit.
    pub fn payloads_of(&self, window: u64) -> String {
        format!("{}/payloads/{window:012}", self.0)
    }

    /// Checkpoint tensors after the outer step of `window` (safetensors).
    pub fn checkpoint_tensors(&self, window: u64) -> String {
        format!("{}/checkpoints/{window:012}/model.safetensors", self.0)
    }

    /// Checkpoint manifest, written after the tensors: its presence marks a complete checkpoint.
    pub fn checkpoint_manifest(&self, window: u64) -> String {
        format!("{}/checkpoints/{window:012}/manifest.json", self.0)
    }

    /// A copy of a payload a validator accepted, by its content id (hex), in the validator's
    /// bucket: what a node that lacks an agreed payload fetches instead of the miner's object.
    pub fn mirror(&self, window: u64, id: &[u8; 32]) -> String {
        format!("{}/mirror/{window:012}/{}.frp", self.0, hex::encode(id))
    }

    /// Prefix under which a window's mirrored payloads sit.
    pub fn mirrors_of(&self, window: u64) -> String {
        format!("{}/mirror/{window:012}", self.0)
    }

    /// A validator's record of which payloads it aggregated for a window (for catch-up replay).
    pub fn gather_record(&self, window: u64, validator: &Hotkey) -> String {
        format!("{}/gathers/{window:012}/{validator}.json", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_pinned() {
        let ns = Namespace::new(3, &ConfigHash([0xab; 32]));
        let alice: Hotkey = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY".parse().expect("alice");
        assert_eq!(ns.as_str(), "ferrum/v1/3/abababababababab");
        assert_eq!(
            ns.payload(51_802, 7, &alice),
            "ferrum/v1/3/abababababababab/payloads/000000051802/00007-5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY.frp"
        );
        assert!(ns.payload(51_802, 7, &alice).starts_with(&ns.payloads_of(51_802)));
        assert_eq!(ns.checkpoint_manifest(10), "ferrum/v1/3/abababababababab/checkpoints/000000000010/manifest.json");
        assert_eq!(
            ns.gather_record(10, &alice),
            "ferrum/v1/3/abababababababab/gathers/000000000010/5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY.json"
        );
        assert_eq!(
            ns.mirror(10, &[0xcd; 32]),
            format!("ferrum/v1/3/abababababababab/mirror/000000000010/{}.frp", "cd".repeat(32))
        );
        assert!(ns.mirror(10, &[0; 32]).starts_with(&ns.mirrors_of(10)));
        assert_eq!(dataset_shard(12), "shards/00012.fts");
    }
}
