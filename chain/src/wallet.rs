//! Signing keys: Bittensor wallet files, secret URIs (`//Alice`), or a mnemonic from the
//! environment. Secrets never reach logs, errors or `Debug` output.

use std::fmt;
use std::path::{Path, PathBuf};

use ferrum_common::Hotkey;
use sp_core::{Pair as _, sr25519};

/// Why a key could not be loaded. Messages name the file or variable, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("cannot read key file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("key file {path} is not a Bittensor key file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("key file {path} is encrypted; Ferrum reads unencrypted hotkey files only")]
    Encrypted { path: PathBuf },
    #[error("the secret from {source_name} is not a valid secret URI, mnemonic or seed")]
    BadSecret { source_name: String },
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
}

/// An sr25519 key pair that can sign extrinsics and payloads.
#[derive(Clone)]
pub struct Keypair {
    pair: sr25519::Pair,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({}, secret redacted)", self.hotkey())
    }
}

impl Keypair {
    /// From a secret URI: `//Alice`, a mnemonic with optional `//derivation`, or a 0x seed.
    /// `source_name` says where the secret came from, for the error message.
    pub fn from_secret(secret: &str, source_name: &str) -> Result<Keypair, WalletError> {
        sr25519::Pair::from_string(secret.trim(), None)
            .map(|pair| Keypair { pair })
            .map_err(|_| WalletError::BadSecret { source_name: source_name.to_string() })
    }

    /// From a mnemonic or secret URI held in an environment variable.
    pub fn from_env(var: &str) -> Result<Keypair, WalletError> {
        let secret = std::env::var(var).map_err(|_| WalletError::MissingEnv(var.to_string()))?;
        Keypair::from_secret(&secret, &format!("${var}"))
    }

    /// From a Bittensor wallet: `{root}/{wallet}/hotkeys/{hotkey}` (root is usually
    /// `~/.bittensor/wallets`), a JSON file with `secretPhrase` or `secretSeed`.
    pub fn from_wallet(root: &Path, wallet: &str, hotkey: &str) -> Result<Keypair, WalletError> {
        Keypair::from_key_file(&root.join(wallet).join("hotkeys").join(hotkey))
    }

    /// From one Bittensor key file.
    pub fn from_key_file(path: &Path) -> Result<Keypair, WalletError> {
        let bytes = std::fs::read(path).map_err(|e| WalletError::Read { path: path.into(), reason: e.to_string() })?;
        if bytes.starts_with(b"$NACL") || bytes.starts_with(b"$BT") || bytes.starts_with(b"gAAAAA") {
            return Err(WalletError::Encrypted { path: path.into() });
        }
        let format = |reason: &str| WalletError::Format { path: path.into(), reason: reason.to_string() };
        // Parse into a map of strings only, so no serde error can quote a secret value.
        let json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|_| format("not a JSON object"))?;
        let field = |name: &str| json.get(name).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
        let secret = field("secretPhrase")
            .or_else(|| field("secretSeed"))
            .ok_or_else(|| format("no secretPhrase or secretSeed"))?;
        let pair = Keypair::from_secret(secret, &path.display().to_string())?;
        if let Some(addr) = field("ss58Address")
            && addr != pair.hotkey().to_ss58()
        {
            return Err(format("its ss58Address does not match its secret"));
        }
        Ok(pair)
    }

    /// The public key as a hotkey (account id).
    pub fn hotkey(&self) -> Hotkey {
        Hotkey(self.pair.public().0)
    }

    /// An sr25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.pair.sign(message).0
    }

    /// The underlying pair, for the chain client's signer.
    pub fn pair(&self) -> &sr25519::Pair {
        &self.pair
    }
}

/// `~/.bittensor/wallets`, Bittensor's default wallet root.
pub fn default_wallet_root() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".bittensor/wallets")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHRASE: &str = "bottom drive obey lake curtain smoke basket hold race lonely fit walk";

    #[test]
    fn dev_uri_and_mnemonic_and_debug_hides_secrets() {
        let alice = Keypair::from_secret("//Alice", "test").expect("alice");
        assert_eq!(alice.hotkey().to_string(), "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY");
        let dev = Keypair::from_secret(PHRASE, "test").expect("phrase");
        let derived = Keypair::from_secret(&format!("{PHRASE}//Alice"), "test").expect("derived");
        assert_eq!(derived.hotkey(), alice.hotkey(), "the dev phrase derives //Alice");
        let shown = format!("{dev:?} {derived:?}");
        assert!(!shown.contains("bottom") && shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn wallet_files_load_and_errors_never_quote_the_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hot = dir.path().join("miner/hotkeys");
        std::fs::create_dir_all(&hot).expect("mkdir");
        let bob = Keypair::from_secret("//Bob", "test").expect("bob");
        let file = |name: &str, body: String| std::fs::write(hot.join(name), body).expect("write");
        file("default", format!(r#"{{"secretPhrase": "{PHRASE}//Bob", "ss58Address": "{}"}}"#, bob.hotkey()));
        let k = Keypair::from_wallet(dir.path(), "miner", "default").expect("load");
        assert_eq!(k.hotkey(), bob.hotkey());

        file("wrongaddr", format!(r#"{{"secretPhrase": "{PHRASE}", "ss58Address": "{}"}}"#, bob.hotkey()));
        file("badsecret", r#"{"secretPhrase": "correct horse battery staple"}"#.into());
        file("encrypted", "$NACL...ciphertext".into());
        file("garbage", "hunter2 is my secret".into());
        for name in ["wrongaddr", "badsecret", "encrypted", "garbage", "missing"] {
            let err = Keypair::from_wallet(dir.path(), "miner", name).expect_err(name).to_string();
            assert!(!err.contains("horse") && !err.contains("bottom") && !err.contains("hunter2"), "{err}");
            assert!(err.contains(name), "names the file: {err}");
        }
    }

    #[test]
    fn env_secret() {
        let err = Keypair::from_env("FERRUM_TEST_UNSET_SECRET_VAR").expect_err("unset").to_string();
        assert!(err.contains("FERRUM_TEST_UNSET_SECRET_VAR"));
    }
}
