//! The commit-reveal weights hash, as subtensor checks it on reveal.

use ferrum_common::Hotkey;
use parity_scale_codec::Encode;

/// `blake2_256(SCALE(hotkey, netuid, uids, values, salt, version_key))`: the account id as 32
/// raw bytes, `netuid` as u16, three compact-length-prefixed `Vec<u16>`, and `version_key` as
/// u64, all little-endian. The tuple, not the fields concatenated by hand, is what subtensor
/// hashes; test vector in `docs/protocol.md` and the tests below.
pub fn commit_hash(
    hotkey: &Hotkey,
    netuid: u16,
    uids: &[u16],
    values: &[u16],
    salt: &[u16],
    version_key: u64,
) -> [u8; 32] {
    let encoded = (hotkey.0, netuid, uids.to_vec(), values.to_vec(), salt.to_vec(), version_key).encode();
    sp_crypto_hashing::blake2_256(&encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vector computed independently (Python: hand-written SCALE bytes, `hashlib.blake2b(...,
    /// digest_size=32)`) for //Alice, netuid 3, uids [0, 1, 2], values [65535, 32768, 0],
    /// salt [1, 2, 3, 4, 5, 6, 7, 8], version key 1234.
    #[test]
    fn matches_the_pinned_vector() {
        let alice = Hotkey::from_dev_uri("//Alice").expect("alice");
        let h = commit_hash(&alice, 3, &[0, 1, 2], &[65535, 32768, 0], &[1, 2, 3, 4, 5, 6, 7, 8], 1234);
        assert_eq!(hex::encode(h), VECTOR);
    }

    #[test]
    fn encoding_is_the_scale_tuple() {
        let alice = Hotkey::from_dev_uri("//Alice").expect("alice");
        let bytes = (alice.0, 3u16, vec![7u16], Vec::<u16>::new(), vec![1u16], 9u64).encode();
        let mut want = alice.0.to_vec();
        want.extend([3, 0, 4, 7, 0, 0, 4, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes, want);
    }

    const VECTOR: &str = "47639a07fb98d58a8ecbfb319e867278cc7762fe3c7a380d219e31f5c143ff22";
}
