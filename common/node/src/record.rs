//! The signed gather record a validator publishes per window (docs/protocol.md §15): which
//! payloads it accepted, by content id, and the model that resulted. Records weighted by stake
//! decide the window's agreed set (`ferrum_common::agreement`, §16).

use ferrum_chain::Keypair;
use ferrum_common::agreement::PayloadId;
use serde::{Deserialize, Serialize};

/// Domain separation for the record signature.
const RECORD_CONTEXT: &[u8] = b"ferrum 2026-12 gather record v2";

/// One accepted payload: the miner's uid and the payload's content id (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedPayload {
    pub uid: u16,
    pub payload: String,
}

/// A window's gather record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatherRecord {
    pub netuid: u16,
    pub window: u64,
    pub config_hash: String,
    /// The validator's hotkey (SS58).
    pub validator: String,
    /// Fingerprint of the window's base model.
    pub base_fingerprint: String,
    /// Payloads aggregated, in candidate order.
    pub accepted: Vec<AcceptedPayload>,
    /// `(uid, reason)` for candidates skipped.
    pub skipped: Vec<(u16, String)>,
    /// Fingerprint after the outer step.
    pub fingerprint: String,
    /// sr25519 signature (hex) over the context and the record's JSON without this field.
    #[serde(default)]
    pub signature: String,
}

impl GatherRecord {
    /// The accepted entries as `(uid, content id)`; `None` when an id is not 32 bytes of hex or
    /// a uid appears twice (such a record is refused whole).
    pub fn entries(&self) -> Option<Vec<(u16, PayloadId)>> {
        let mut seen = std::collections::BTreeSet::new();
        self.accepted
            .iter()
            .map(|a| {
                let id = hex::decode(&a.payload).ok().and_then(|b| PayloadId::try_from(b.as_slice()).ok())?;
                seen.insert(a.uid).then_some((a.uid, id))
            })
            .collect()
    }

    fn message(&self) -> Vec<u8> {
        let unsigned = GatherRecord { signature: String::new(), ..self.clone() };
        // Serializing a struct of plain fields cannot fail.
        let json = serde_json::to_vec(&unsigned).unwrap_or_default();
        [RECORD_CONTEXT, &json].concat()
    }

    /// Signs the record with the validator's key.
    pub fn sign(mut self, key: &Keypair) -> GatherRecord {
        self.signature = hex::encode(key.sign(&self.message()));
        self
    }

    /// Whether the signature is the named validator's.
    pub fn verify(&self) -> bool {
        use sp_core::Pair as _;
        let (Ok(hotkey), Ok(sig)) = (self.validator.parse::<ferrum_common::Hotkey>(), hex::decode(&self.signature))
        else {
            return false;
        };
        let Ok(sig) = <[u8; 64]>::try_from(sig.as_slice()) else { return false };
        sp_core::sr25519::Pair::verify(
            &sp_core::sr25519::Signature::from_raw(sig),
            self.message(),
            &sp_core::sr25519::Public::from_raw(hotkey.0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_records_verify_and_edits_do_not() {
        let key = Keypair::from_secret("//Alice", "test").expect("key");
        let r = GatherRecord {
            netuid: 1,
            window: 7,
            config_hash: "ab".into(),
            validator: key.hotkey().to_ss58(),
            base_fingerprint: "00".into(),
            accepted: vec![
                AcceptedPayload { uid: 3, payload: hex::encode([3; 32]) },
                AcceptedPayload { uid: 1, payload: hex::encode([1; 32]) },
            ],
            skipped: vec![(2, "late".into())],
            fingerprint: "11".into(),
            signature: String::new(),
        }
        .sign(&key);
        assert!(r.verify());
        assert_eq!(r.entries(), Some(vec![(3, [3; 32]), (1, [1; 32])]));
        let mut twice = r.clone();
        twice.accepted.push(AcceptedPayload { uid: 3, payload: hex::encode([4; 32]) });
        assert_eq!(twice.entries(), None, "a uid twice");
        let mut short = r.clone();
        short.accepted[0].payload = "abcd".into();
        assert_eq!(short.entries(), None, "not a 32-byte id");
        let mut edited = r.clone();
        edited.accepted[0].payload = hex::encode([9; 32]);
        assert!(!edited.verify());
        let mut other = r;
        other.validator = Keypair::from_secret("//Bob", "test").expect("key").hotkey().to_ss58();
        assert!(!other.verify());
    }
}
