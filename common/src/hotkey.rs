//! A node's hotkey as the 32 bytes of its sr25519 public key.

use std::fmt;
use std::str::FromStr;

use sp_core::crypto::{AccountId32, Ss58Codec};

/// A hotkey account id. Displays as SS58 (prefix 42, as Bittensor uses).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hotkey(pub [u8; 32]);

/// A string that is neither an SS58 address nor 32 bytes of hex.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a hotkey: expected an SS58 address (5F…) or 0x followed by 64 hex digits")]
pub struct HotkeyParseError(String);

impl Hotkey {
    /// The raw public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The public key of a development secret URI such as `//Alice` (never for real funds).
    pub fn from_dev_uri(uri: &str) -> Result<Hotkey, HotkeyParseError> {
        use sp_core::Pair;
        sp_core::sr25519::Pair::from_string(uri, None)
            .map(|p| Hotkey(p.public().0))
            .map_err(|_| HotkeyParseError(uri.to_string()))
    }

    /// SS58 form.
    pub fn to_ss58(&self) -> String {
        AccountId32::from(self.0).to_ss58check()
    }
}

impl FromStr for Hotkey {
    type Err = HotkeyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(h) = s.strip_prefix("0x") {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h, &mut out).map_err(|_| HotkeyParseError(s.to_string()))?;
            return Ok(Hotkey(out));
        }
        AccountId32::from_ss58check(s).map(|a| Hotkey(a.into())).map_err(|_| HotkeyParseError(s.to_string()))
    }
}

impl fmt::Display for Hotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ss58())
    }
}

impl fmt::Debug for Hotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hotkey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// //Alice's sr25519 public key, well known across Substrate tooling.
    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const ALICE_HEX: &str = "0xd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d";

    #[test]
    fn ss58_and_hex_agree() {
        let a: Hotkey = ALICE.parse().expect("ss58");
        let b: Hotkey = ALICE_HEX.parse().expect("hex");
        assert_eq!(a, b);
        assert_eq!(a.to_string(), ALICE);
    }

    #[test]
    fn dev_uri_gives_the_well_known_key() {
        assert_eq!(Hotkey::from_dev_uri("//Alice").expect("alice").to_string(), ALICE);
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "5Grwva", "0x1234", "not a key", &ALICE[..47]] {
            assert!(s.parse::<Hotkey>().is_err(), "{s}");
        }
        // A flipped character breaks the SS58 checksum.
        let bad = ALICE.replace('G', "H");
        assert!(bad.parse::<Hotkey>().is_err());
    }
}
