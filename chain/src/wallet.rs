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
    #[error(
        "key file {path} is encrypted; Ferrum reads unencrypted hotkey files only (pass the key as --hotkey \
         with a secret URI or mnemonic from the environment, or regenerate the hotkey without a password)"
    )]
    Encrypted { path: PathBuf },
    #[error("key file {path} holds an {scheme} key; Ferrum signs with sr25519 keys only, as Bittensor hotkeys are")]
    NotSr25519 { path: PathBuf, scheme: &'static str },
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

    /// From one Bittensor key file, in any unencrypted sr25519 form `bittensor-wallet` writes:
    /// a mnemonic (`secretPhrase`), a 32-byte seed (`secretSeed`), or only the 64-byte sr25519
    /// secret (`privateKey`, what `create_hotkey_from_uri` and seed-made keys hold). The key
    /// derived must match the file's `publicKey` / `ss58Address` when it names them.
    pub fn from_key_file(path: &Path) -> Result<Keypair, WalletError> {
        let bytes = std::fs::read(path).map_err(|e| WalletError::Read { path: path.into(), reason: e.to_string() })?;
        // The markers bittensor-wallet uses for its NaCl, Ansible Vault and legacy Fernet forms.
        if [&b"$NACL"[..], b"$ANSIBLE_VAULT", b"gAAAAA", b"$BT"].iter().any(|m| bytes.starts_with(m)) {
            return Err(WalletError::Encrypted { path: path.into() });
        }
        let format = |reason: &str| WalletError::Format { path: path.into(), reason: reason.to_string() };
        // Parse into a map of values only, so no serde error can quote a secret value.
        let json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|_| format("not a JSON object"))?;
        let field = |name: &str| json.get(name).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
        match json.get("cryptoType").and_then(|v| v.as_u64()) {
            None | Some(1) => {}
            Some(0) => return Err(WalletError::NotSr25519 { path: path.into(), scheme: "ed25519" }),
            Some(2) => return Err(WalletError::NotSr25519 { path: path.into(), scheme: "ecdsa" }),
            Some(_) => return Err(format("unknown cryptoType (Bittensor uses 1 for sr25519)")),
        }
        let expected = expected_public(&json).map_err(&format)?;
        let pair = if let Some(phrase) = field("secretPhrase") {
            Keypair::from_secret(phrase, &path.display().to_string())?
        } else if let Some(seed) = field("secretSeed").and_then(|s| hex_secret(s, 32)) {
            Keypair::from_seed_bytes(&seed).ok_or_else(|| format("its secretSeed is not a valid sr25519 seed"))?
        } else if let Some(secret) = field("privateKey").and_then(|s| hex_secret(s, 64)) {
            Keypair::from_seed_bytes(&secret).ok_or_else(|| format("its privateKey is not a valid sr25519 secret"))?
        } else if json.contains_key("privateKey") || json.contains_key("secretSeed") {
            return Err(format("its secretSeed and privateKey are not 0x-hex secrets of 32 or 64 bytes"));
        } else {
            return Err(format("no secret in it (a public-only file such as *pub.txt?)"));
        };
        if expected.is_some_and(|public| public != pair.hotkey()) {
            return Err(format("its ss58Address or publicKey does not match its secret"));
        }
        Ok(pair)
    }

    /// From raw secret bytes: a 32-byte seed or a 64-byte sr25519 secret key (key and nonce).
    fn from_seed_bytes(secret: &[u8]) -> Option<Keypair> {
        sr25519::Pair::from_seed_slice(secret).ok().map(|pair| Keypair { pair })
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

/// The public key a key file names (`publicKey` hex, else `ss58Address`), when it names one.
fn expected_public(json: &serde_json::Map<String, serde_json::Value>) -> Result<Option<Hotkey>, &'static str> {
    let field = |name: &str| json.get(name).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    if let Some(hex) = field("publicKey") {
        return hex.parse().map(Some).map_err(|_| "its publicKey is not 0x followed by 64 hex digits");
    }
    match field("ss58Address") {
        Some(addr) => addr.parse().map(Some).map_err(|_| "its ss58Address is not an SS58 address"),
        None => Ok(None),
    }
}

/// `0x`-hex of exactly `len` bytes, else `None`.
fn hex_secret(s: &str, len: usize) -> Option<Vec<u8>> {
    let digits = s.strip_prefix("0x")?;
    (digits.len() == 2 * len).then(|| hex::decode(digits).ok()).flatten()
}

/// A path with a leading `~` (alone or before `/`) read as the home directory, as
/// bittensor-wallet reads `--wallet.path`; any other path as given.
pub fn expand_home(path: &Path) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    match path.strip_prefix("~") {
        Ok(rest) => home().map_or_else(|| path.to_path_buf(), |h| h.join(rest)),
        Err(_) => path.to_path_buf(),
    }
}

/// A wallet hotkey's address without its secret: the public fields of
/// `{root}/{wallet}/hotkeys/{hotkey}`, else those of `{hotkey}pub.txt` beside it (what
/// bittensor-wallet writes next to every key, and all a public-only wallet holds). When neither
/// names one, the error is the hotkey file's own (missing, encrypted, not a key file).
pub fn wallet_address(root: &Path, wallet: &str, hotkey: &str) -> Result<Hotkey, WalletError> {
    let dir = root.join(wallet).join("hotkeys");
    let public_of = |path: &Path| -> Option<Hotkey> {
        let bytes = std::fs::read(path).ok()?;
        let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
        // An ed25519 or ecdsa key's address is no hotkey: left to the key file's own refusal.
        let sr25519 = json.get("cryptoType").is_none_or(|t| t.as_u64() == Some(1));
        sr25519.then(|| expected_public(&json).ok().flatten()).flatten()
    };
    let file = dir.join(hotkey);
    if let Some(address) = public_of(&file).or_else(|| public_of(&dir.join(format!("{hotkey}pub.txt")))) {
        return Ok(address);
    }
    Keypair::from_key_file(&file).map(|k| k.hotkey())
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

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wallets/w/hotkeys").join(name)
    }

    fn file_field(name: &str, field: &str) -> String {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture(name)).expect("read")).expect("json");
        json[field].as_str().expect("field").to_string()
    }

    /// Every unencrypted sr25519 form the official `bittensor-wallet` 4.1.1 writes, read from
    /// files it wrote (tests/fixtures/wallets/README.md).
    #[test]
    fn bittensor_wallet_files_open_in_every_sr25519_form() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wallets");
        for name in ["m12", "m24"] {
            let k = Keypair::from_wallet(&root, "w", name).expect(name);
            assert_eq!(k.hotkey().to_ss58(), file_field(name, "ss58Address"), "{name}");
            let phrase = Keypair::from_secret(&file_field(name, "secretPhrase"), "test").expect("phrase");
            assert_eq!(k.hotkey(), phrase.hotkey());
        }
        let uri = |u: &str| Keypair::from_secret(u, "test").expect("uri").hotkey();
        assert_eq!(Keypair::from_key_file(&fixture("uri")).expect("uri").hotkey(), uri("//Alice"));
        assert_eq!(Keypair::from_key_file(&fixture("uri2")).expect("uri2").hotkey(), uri("//Bob//stash"));
        let seed = Keypair::from_key_file(&fixture("seed")).expect("seed-made key");
        assert_eq!(seed.hotkey(), uri(&format!("0x{}", "11".repeat(32))));

        // Each secret field alone gives the same key as the phrase.
        let dir = tempfile::tempdir().expect("tempdir");
        let full: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&std::fs::read(fixture("m24")).expect("read")).expect("json");
        for keep in ["secretSeed", "privateKey"] {
            let mut one = full.clone();
            one.retain(|k, _| !k.starts_with("secret") && k != "privateKey" || k == keep);
            let path = dir.path().join(keep);
            std::fs::write(&path, serde_json::to_vec(&one).expect("json")).expect("write");
            let k = Keypair::from_key_file(&path).expect(keep);
            assert_eq!(k.hotkey().to_ss58(), file_field("m24", "ss58Address"), "{keep} alone");
        }
        // A signature made from a file-loaded key verifies under its hotkey.
        let sig = sr25519::Signature::from_raw(seed.sign(b"msg"));
        assert!(<sr25519::Pair as sp_core::Pair>::verify(&sig, b"msg", &sr25519::Public::from_raw(seed.hotkey().0)));
    }

    #[test]
    fn other_key_files_are_refused_with_the_real_reason() {
        let reason = |name: &str| Keypair::from_key_file(&fixture(name)).expect_err(name);
        assert!(matches!(reason("ed"), WalletError::NotSr25519 { scheme: "ed25519", .. }), "{}", reason("ed"));
        assert!(matches!(reason("enc"), WalletError::Encrypted { .. }));
        assert!(matches!(reason("ansible"), WalletError::Encrypted { .. }));
        let public_only = reason("uripub.txt").to_string();
        assert!(public_only.contains("no secret"), "{public_only}");
        // A privateKey that does not belong to the file's publicKey.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("uri")).expect("read")).expect("json");
        json["publicKey"] = serde_json::Value::String(format!(
            "0x{}",
            hex::encode(Keypair::from_secret("//Eve", "t").expect("eve").hotkey().0)
        ));
        let path = dir.path().join("mismatch");
        std::fs::write(&path, serde_json::to_vec(&json).expect("json")).expect("write");
        let err = Keypair::from_key_file(&path).expect_err("mismatch").to_string();
        assert!(err.contains("does not match") && !err.contains(&file_field("uri", "privateKey")[2..20]), "{err}");
    }

    #[test]
    fn an_address_comes_from_the_public_file_when_the_secret_is_locked_or_absent() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wallets");
        let alice = Keypair::from_secret("//Alice", "t").expect("alice").hotkey();
        // The `uri` key's public file stands in for a secret that cannot be read.
        assert_eq!(wallet_address(&root, "w", "uri").expect("secret file's public fields"), alice);
        let dir = tempfile::tempdir().expect("tempdir");
        let hotkeys = dir.path().join("w/hotkeys");
        std::fs::create_dir_all(&hotkeys).expect("dir");
        std::fs::copy(fixture("uripub.txt"), hotkeys.join("lockedpub.txt")).expect("copy");
        std::fs::copy(fixture("enc"), hotkeys.join("locked")).expect("copy");
        assert_eq!(wallet_address(dir.path(), "w", "locked").expect("pub.txt beside an encrypted key"), alice);
        // Neither file: the hotkey file's own error, naming it.
        let err = wallet_address(dir.path(), "w", "absent").expect_err("absent");
        assert!(matches!(&err, WalletError::Read { path, .. } if path.ends_with("w/hotkeys/absent")), "{err}");
        std::fs::copy(fixture("enc"), hotkeys.join("lonely")).expect("copy");
        assert!(matches!(wallet_address(dir.path(), "w", "lonely"), Err(WalletError::Encrypted { .. })));
    }

    #[test]
    fn a_leading_tilde_is_home() {
        let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
        assert_eq!(expand_home(Path::new("~/.bittensor/wallets")), home.join(".bittensor/wallets"));
        assert_eq!(expand_home(Path::new("~")), home);
        assert_eq!(expand_home(Path::new("/srv/~x")), PathBuf::from("/srv/~x"));
        assert_eq!(expand_home(Path::new("~other/w")), PathBuf::from("~other/w"));
    }

    #[test]
    fn env_secret() {
        let err = Keypair::from_env("FERRUM_TEST_UNSET_SECRET_VAR").expect_err("unset").to_string();
        assert!(err.contains("FERRUM_TEST_UNSET_SECRET_VAR"));
    }
}
