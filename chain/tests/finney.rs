//! Today's mainnet runtime without a chain: every call Ferrum makes is built from
//! `finney.scale` (the finney runtime's V16 metadata, spec 393, April 2026) and held to
//! polkadot.js, an encoder that reads the same metadata on its own.
//!
//! The metadata is read from `../shared/subtensor/finney.scale` (or `FERRUM_FINNEY_METADATA`);
//! it is data of the workplace, not of the project. Without it the tests say so and pass,
//! unless `FERRUM_REQUIRE_FINNEY=1` (`scripts/test` sets it where the file exists).
//! The expected bytes are in `fixtures/finney-extrinsics.json`, written by
//! `chain/tests/encoder/polkadotjs.cjs`; where Node and the pinned polkadot.js are installed
//! (`FERRUM_CHOPSTICKS`, as `scripts/test` provides), the encoder also runs live.

use std::path::PathBuf;

use ferrum_chain::calls;
use ferrum_chain::extrinsic::{self, BuiltTx, CallSpec, Era, ExtensionSupport, RuntimeVersion, TxParams};
use ferrum_chain::runtime::RuntimeProfile;
use ferrum_chain::{ChainError, Keypair};
use parity_scale_codec::Decode;
use serde_json::{Value as Json, json};
use subxt::dynamic::Value;
use subxt::metadata::{ArcMetadata, Metadata};

/// sha256 of `finney.scale` (finney, spec 393, April 2026).
const FINNEY_SHA256: &str = "27decab52d3bb92188347a95e010e270ad3978e3bba0d8f325279e96fff421df";

/// Finney's genesis block.
const FINNEY_GENESIS: &str = "2f0555cc76fc2840a25a6ea3b9637146806f1f44b090c175ffde2a7e5ab36c03";

fn finney_path() -> PathBuf {
    std::env::var_os("FERRUM_FINNEY_METADATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/subtensor/finney.scale"))
}

fn metadata_bytes() -> Option<Vec<u8>> {
    let path = finney_path();
    match std::fs::read(&path) {
        Ok(b) => {
            // The metadata this suite and its recorded encoder output were made from.
            let sum = hex::encode(sp_crypto_hashing::sha2_256(&b));
            assert_eq!(sum, FINNEY_SHA256, "{} is not the finney metadata these tests were made for", path.display());
            Some(b)
        }
        Err(e) if std::env::var("FERRUM_REQUIRE_FINNEY").is_ok_and(|v| v == "1") => {
            panic!("finney metadata {}: {e}", path.display())
        }
        Err(_) => {
            eprintln!("skipped: no finney metadata at {} (set FERRUM_FINNEY_METADATA)", path.display());
            None
        }
    }
}

fn metadata() -> Option<ArcMetadata> {
    metadata_bytes().map(|b| Metadata::decode_from(&b).expect("finney.scale decodes as runtime metadata").arc())
}

/// `System.Version` from the metadata's constants: spec and transaction versions.
fn runtime_version(m: &Metadata) -> RuntimeVersion {
    let raw = m.pallet_by_name("System").and_then(|p| p.constant_by_name("Version")).expect("System.Version").value();
    let mut input = raw;
    let _spec_name = String::decode(&mut input).expect("spec name");
    let _impl_name = String::decode(&mut input).expect("impl name");
    let _authoring = u32::decode(&mut input).expect("authoring version");
    let spec_version = u32::decode(&mut input).expect("spec version");
    let _impl_version = u32::decode(&mut input).expect("impl version");
    let _apis = Vec::<([u8; 8], u32)>::decode(&mut input).expect("apis");
    let transaction_version = u32::decode(&mut input).expect("transaction version");
    let mut genesis_hash = [0u8; 32];
    hex::decode_to_slice(FINNEY_GENESIS, &mut genesis_hash).expect("genesis hex");
    RuntimeVersion { genesis_hash, spec_version, transaction_version }
}

fn alice() -> Keypair {
    Keypair::from_secret("//Alice", "test").expect("alice")
}

fn bob() -> [u8; 32] {
    Keypair::from_secret("//Bob", "test").expect("bob").hotkey().0
}

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// One case: the call as Ferrum builds it, and the same call in polkadot.js's argument terms.
struct Case {
    name: &'static str,
    call: CallSpec,
    js: Json,
}

fn cases(p: &RuntimeProfile) -> Vec<Case> {
    let hash = [7u8; 32];
    // Past 256 bytes of signer payload, where the signer signs its blake2-256 instead.
    let ciphertext: Vec<u8> = (0..300u32).map(|i| (i * 31 % 251) as u8).collect();
    let commitment = b"s3://ferrum-bucket/miner-1";
    let tempo = |n: u16| vec![Value::u128(n.into()), Value::u128(360)];
    vec![
        Case {
            name: "set_weights",
            call: calls::set_weights(p, 3, 0, &[0, 1, 2], &[65535, 32768, 1], 7).expect("set_weights"),
            js: json!(["SubtensorModule", "set_weights", [3, [0, 1, 2], [65535, 32768, 1], 7]]),
        },
        Case {
            name: "set_mechanism_weights",
            call: calls::set_weights(p, 3, 1, &[4, 9], &[100, 200], 0).expect("set_mechanism_weights"),
            js: json!(["SubtensorModule", "set_mechanism_weights", [3, 1, [4, 9], [100, 200], 0]]),
        },
        Case {
            name: "commit_weights",
            call: calls::commit_weights(p, 3, 0, hash).expect("commit_weights"),
            js: json!(["SubtensorModule", "commit_weights", [3, hex0x(&hash)]]),
        },
        Case {
            name: "reveal_weights",
            call: calls::reveal_weights(p, 3, 0, &[1, 2], &[10, 20], &[5, 6, 7], 9).expect("reveal_weights"),
            js: json!(["SubtensorModule", "reveal_weights", [3, [1, 2], [10, 20], [5, 6, 7], 9]]),
        },
        Case {
            name: "commit_timelocked_weights",
            call: calls::commit_timelocked_weights(p, 3, 0, &ciphertext, 21_000_000, 4).expect("timelocked"),
            js: json!(["SubtensorModule", "commit_timelocked_weights", [3, hex0x(&ciphertext), 21_000_000u64, 4]]),
        },
        Case {
            name: "commit_timelocked_mechanism_weights",
            call: calls::commit_timelocked_weights(p, 3, 2, &ciphertext[..40], 21_000_001, 4).expect("timelocked"),
            js: json!([
                "SubtensorModule",
                "commit_timelocked_mechanism_weights",
                [3, 2, hex0x(&ciphertext[..40]), 21_000_001u64, 4]
            ]),
        },
        Case {
            name: "set_commitment",
            call: calls::set_commitment(3, commitment),
            js: json!([
                "Commitments",
                "set_commitment",
                [3, { "fields": [{ format!("Raw{}", commitment.len()): hex0x(commitment) }] }]
            ]),
        },
        Case {
            name: "burned_register",
            call: calls::burned_register(3, bob()),
            js: json!(["SubtensorModule", "burned_register", [3, hex0x(&bob())]]),
        },
        Case {
            name: "register_network",
            call: calls::register_network(p, bob()),
            js: json!(["SubtensorModule", "register_network", [hex0x(&bob())]]),
        },
        Case {
            name: "start_call",
            call: calls::start_call(p, 3).expect("start_call"),
            js: json!(["SubtensorModule", "start_call", [3]]),
        },
        Case {
            name: "add_stake",
            call: calls::add_stake(bob(), 3, 1_000_000_000_000),
            js: json!(["SubtensorModule", "add_stake", [hex0x(&bob()), 3, 1_000_000_000_000u64]]),
        },
        Case {
            name: "sudo_set_tempo",
            call: calls::sudo_admin("sudo_set_tempo", tempo(3)),
            js: json!(["Sudo", "sudo", [["AdminUtils", "sudo_set_tempo", [3, 360]]]]),
        },
    ]
}

/// `["Pallet", "call", [args]]` (nested for sudo) as the encoder's request form.
fn js_call(name: &str, v: &Json) -> Json {
    let pallet = &v[0];
    let call = &v[1];
    let args: Vec<Json> =
        if pallet == "Sudo" { vec![js_call(name, &v[2][0])] } else { v[2].as_array().expect("args").clone() };
    json!({ "name": name, "pallet": pallet, "call": call, "args": args })
}

struct Setup {
    metadata: ArcMetadata,
    runtime: RuntimeVersion,
    profile: RuntimeProfile,
    params: TxParams,
}

fn setup(era: Era) -> Option<Setup> {
    let metadata = metadata()?;
    let runtime = runtime_version(&metadata);
    let profile = RuntimeProfile::from_metadata(&metadata).expect("profile");
    Some(Setup { runtime, profile, metadata, params: TxParams { nonce: 42, tip: 1_000, era } })
}

fn mortal() -> Era {
    Era::Mortal { period: 64, from: 5_123_456, from_hash: [0xab; 32] }
}

/// A fixed signature, so the extrinsic's bytes are comparable (sr25519 signatures are random).
const FIXED_SIGNATURE: [u8; 64] = [0x5a; 64];

fn build_all(s: &Setup, real_signature: bool) -> Vec<(&'static str, Json, BuiltTx)> {
    let key = alice();
    cases(&s.profile)
        .into_iter()
        .map(|c| {
            let built =
                extrinsic::build_signed(&s.metadata, &s.runtime, &c.call, &s.params, key.hotkey().0, |payload| {
                    if real_signature { key.sign(payload) } else { FIXED_SIGNATURE }
                })
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            (c.name, js_call(c.name, &c.js), built)
        })
        .collect()
}

fn request(s: &Setup, built: &[(&str, Json, BuiltTx)], signature: &[u8]) -> Json {
    let era = match s.params.era {
        Era::Immortal => Json::Null,
        Era::Mortal { period, from, from_hash } => {
            json!({ "period": period, "current": from, "block_hash": hex0x(&from_hash) })
        }
    };
    json!({
        "genesis_hash": hex0x(&s.runtime.genesis_hash),
        "nonce": s.params.nonce,
        "tip": s.params.tip.to_string(),
        "era": era,
        "account": hex0x(&alice().hotkey().0),
        "signature": hex0x(signature),
        "calls": built.iter().map(|(_, js, _)| js.clone()).collect::<Vec<_>>(),
        "storage": storage_reads(s).into_iter().map(|(_, js)| js).collect::<Vec<_>>(),
    })
}

/// The storage keys the client reads, as subxt builds them from the metadata, with the same
/// reads in polkadot.js's terms. Mechanism 2 of netuid 3 shows the `NetUidStorageIndex` key.
fn storage_reads(s: &Setup) -> Vec<(Vec<u8>, Json)> {
    use subxt::dynamic::storage;
    let p = &s.profile;
    let client = subxt::client::OfflineClient::new_with_config(extrinsic::SubtensorConfig::offline(
        &s.runtime,
        ArcMetadata::clone(&s.metadata),
    ));
    let at = client.at_block(0u64).expect("offline block");
    let st = at.storage();
    let alice = alice().hotkey().0;
    let m2 = p.storage_index(3, 2).expect("mechanism 2");
    let m0 = p.storage_index(3, 0).expect("mechanism 0");
    let key = |e: Result<Vec<u8>, subxt::error::StorageError>| e.expect("storage key");
    macro_rules! read {
        ($pallet:expr, $item:expr, $k:ty, $keys:expr, $js:expr) => {{
            let entry = st.entry(storage::<$k, Value>($pallet, $item)).expect($item);
            (key(entry.fetch_key($keys)), json!({ "pallet": $pallet, "item": $item, "keys": $js }))
        }};
    }
    vec![
        read!("SubtensorModule", "Weights", (u16, u16), (m2, 5), json!([m2, 5])),
        read!("SubtensorModule", "LastUpdate", (u16,), (m2,), json!([m2])),
        read!("SubtensorModule", "LastUpdate", (u16,), (m0,), json!([m0])),
        read!("SubtensorModule", "WeightCommits", (u16, [u8; 32]), (m0, alice), json!([m0, hex0x(&alice)])),
        read!("SubtensorModule", "StakeThreshold", (), (), json!([])),
        read!("SubtensorModule", "CommitRevealWeightsVersion", (), (), json!([])),
        read!("SubtensorModule", "Uids", (u16, [u8; 32]), (3, alice), json!([3, hex0x(&alice)])),
        read!("SubtensorModule", "Keys", (u16, u16), (3, 5), json!([3, 5])),
        read!("SubtensorModule", "TotalHotkeyAlpha", ([u8; 32], u16), (alice, 3), json!([hex0x(&alice), 3])),
        read!("SubtensorModule", "RevealPeriodEpochs", (u16,), (3,), json!([3])),
        read!("Commitments", "CommitmentOf", (u16, [u8; 32]), (3, alice), json!([3, hex0x(&alice)])),
        read!("Timestamp", "Now", (), (), json!([])),
    ]
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/finney-extrinsics.json")
}

/// Runs the polkadot.js encoder, when Node and the pinned polkadot.js are installed.
fn run_encoder(request: &Json) -> Option<Json> {
    let chopsticks = std::env::var_os("FERRUM_CHOPSTICKS").map(PathBuf::from)?;
    // .../node_modules/@acala-network/chopsticks/chopsticks.cjs -> .../node_modules
    let node_modules = chopsticks.ancestors().find(|p| p.ends_with("node_modules"))?.to_path_buf();
    let dir = tempfile::tempdir().expect("tempdir");
    let req = dir.path().join("request.json");
    std::fs::write(&req, serde_json::to_vec(request).expect("json")).expect("write request");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/encoder/polkadotjs.cjs");
    let out = std::process::Command::new("node")
        .arg(script)
        .arg(finney_path())
        .arg(&req)
        .env("NODE_PATH", node_modules)
        .output()
        .expect("node runs");
    assert!(out.status.success(), "polkadot.js encoder failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("encoder output is JSON"))
}

fn assert_storage_matches(s: &Setup, encoded: &Json, who: &str) {
    let theirs = encoded["storage"].as_array().expect("storage keys");
    let ours = storage_reads(s);
    assert_eq!(theirs.len(), ours.len(), "{who}: one key per read");
    for ((key, read), their) in ours.iter().zip(theirs) {
        assert_eq!(hex0x(key), *their, "{read}: storage key differs from {who}");
    }
}

fn assert_matches(built: &[(&str, Json, BuiltTx)], encoded: &Json, who: &str) {
    let calls = encoded["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), built.len(), "{who}: one result per call");
    for ((name, _, tx), theirs) in built.iter().zip(calls) {
        assert_eq!(theirs["name"], *name);
        assert_eq!(hex0x(&tx.call_data), theirs["call_data"], "{name}: call data differs from {who}");
        assert_eq!(hex0x(&tx.signer_payload), theirs["signer_payload"], "{name}: signer payload differs from {who}");
        assert_eq!(hex0x(&tx.extrinsic), theirs["extrinsic"], "{name}: extrinsic differs from {who}");
        assert_eq!(hex0x(&tx.unsigned), theirs["unsigned"], "{name}: unsigned extrinsic differs from {who}");
    }
}

#[test]
fn the_runtime_profile_reads_todays_calls_and_storage() {
    let Some(s) = setup(Era::Immortal) else { return };
    assert_eq!(s.runtime.spec_version, 393);
    let p = &s.profile;
    assert!(p.mechanisms, "weights keyed by netuid and mechanism");
    assert_eq!(p.stake_threshold_item, Some("StakeThreshold"));
    assert!(!p.register_network_takes_mechid, "register_network takes only the hotkey");
    assert!(p.start_call && p.timelocked_commits && p.commit_reveal_version_item);
    assert!(!p.stateful_epochs, "spec 393 counts epochs from the block number");
    assert_eq!(p.sudo_stake_threshold_call, Some("sudo_set_stake_threshold"));
    assert_eq!(p.storage_index(3, 0).expect("mechanism 0"), 3);
    assert_eq!(p.storage_index(3, 2).expect("mechanism 2"), 2 * 4096 + 3);
    // The block time the timelocked reveal round is computed with.
    assert_eq!(ferrum_chain::runtime::block_time_secs(&s.metadata).expect("block time"), 12.0);
}

#[test]
fn every_extension_finney_lists_is_known_or_empty() {
    let Some(s) = setup(Era::Immortal) else { return };
    let ext = extrinsic::check_extensions(&s.metadata).expect("finney's extensions are all supported");
    let names: Vec<&str> = ext.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "CheckNonZeroSender",
            "CheckSpecVersion",
            "CheckTxVersion",
            "CheckGenesis",
            "CheckMortality",
            "CheckNonce",
            "CheckWeight",
            "ChargeTransactionPayment",
            "SudoTransactionExtension",
            "CheckShieldedTxValidity",
            "SubtensorTransactionExtension",
            "DrandPriority",
            "CheckMetadataHash"
        ]
    );
    for (name, support) in &ext {
        let empty = [
            "CheckNonZeroSender",
            "CheckWeight",
            "SudoTransactionExtension",
            "CheckShieldedTxValidity",
            "SubtensorTransactionExtension",
            "DrandPriority",
        ];
        let expected = if empty.contains(&name.as_str()) { ExtensionSupport::Empty } else { ExtensionSupport::Known };
        assert_eq!(*support, expected, "{name}");
    }
}

#[test]
fn calls_signing_payloads_and_extrinsics_equal_the_independent_encoders() {
    let Some(s) = setup(mortal()) else { return };
    let built = build_all(&s, false);
    let req = request(&s, &built, &FIXED_SIGNATURE);
    if std::env::var("FERRUM_WRITE_FIXTURE").is_ok_and(|v| v == "1") {
        let result = run_encoder(&req).expect("FERRUM_WRITE_FIXTURE needs FERRUM_CHOPSTICKS (polkadot.js)");
        let how = "FERRUM_WRITE_FIXTURE=1 FERRUM_CHOPSTICKS=... cargo test -p ferrum-chain --test finney \
                   (runs chain/tests/encoder/polkadotjs.cjs on ../shared/subtensor/finney.scale)";
        let doc = json!({ "how": how, "request": req, "result": result });
        std::fs::write(fixture_path(), serde_json::to_string_pretty(&doc).expect("json") + "\n")
            .expect("write fixture");
    }
    let fixture: Json = serde_json::from_slice(&std::fs::read(fixture_path()).expect("fixture")).expect("fixture JSON");
    assert_eq!(fixture["request"], req, "the fixture's request is stale: regenerate it (see the fixture's `how`)");
    assert_eq!(fixture["result"]["spec_version"], s.runtime.spec_version);
    assert_eq!(fixture["result"]["transaction_version"], s.runtime.transaction_version);
    assert_matches(&built, &fixture["result"], "the recorded polkadot.js output");
    assert_storage_matches(&s, &fixture["result"], "the recorded polkadot.js output");
    match run_encoder(&req) {
        Some(live) => {
            assert_matches(&built, &live, "polkadot.js");
            assert_storage_matches(&s, &live, "polkadot.js");
            assert_eq!(live, fixture["result"], "polkadot.js now encodes differently from the recorded fixture");
        }
        None => {
            eprintln!("polkadot.js not installed (FERRUM_CHOPSTICKS unset): compared with the recorded output only")
        }
    }
}

#[test]
fn an_immortal_transaction_and_a_real_signature_verify_in_polkadot_js() {
    let Some(s) = setup(Era::Immortal) else { return };
    let built = build_all(&s, true);
    // Real sr25519 signatures differ per call; the encoder checks each over its own payload.
    for (name, js, tx) in &built {
        let one = [(*name, js.clone(), tx.clone())];
        // The signature sits after the address (0x00 + 32 bytes) and the signature kind byte.
        let at = compact_len(&tx.extrinsic) + 1 + 33 + 1;
        let signature = &tx.extrinsic[at..at + 64];
        let req = request(&s, &one, signature);
        let Some(live) = run_encoder(&req) else {
            eprintln!("polkadot.js not installed (FERRUM_CHOPSTICKS unset): skipped");
            return;
        };
        assert_matches(&one, &live, "polkadot.js");
        assert_eq!(live["calls"][0]["signature_valid"], true, "{name}: Ferrum's signature does not verify");
    }
}

/// Bytes of the SCALE compact length prefix at the start of an extrinsic.
fn compact_len(b: &[u8]) -> usize {
    let mut rest = b;
    parity_scale_codec::Compact::<u32>::decode(&mut rest).expect("length prefix");
    b.len() - rest.len()
}

/// finney's metadata with its tip extension (the last `ChargeTransactionPayment` identifier,
/// after `CheckWeight`'s in the extension list) renamed to `name`.
fn with_tip_extension_named(bytes: &[u8], name: &str) -> ArcMetadata {
    use parity_scale_codec::{Compact, Encode};
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).rposition(|w| w == needle);
    let weight = find(bytes, &"CheckWeight".encode()).expect("CheckWeight identifier");
    let old = "ChargeTransactionPayment".encode();
    let at = weight + find(&bytes[weight..], &old).expect("tip identifier after CheckWeight");
    let mut renamed = bytes[..at].to_vec();
    Compact(name.len() as u32).encode_to(&mut renamed);
    renamed.extend_from_slice(name.as_bytes());
    renamed.extend_from_slice(&bytes[at + old.len()..]);
    Metadata::decode_from(&renamed).expect("renamed metadata decodes").arc()
}

#[test]
fn a_renamed_tip_extension_encodes_the_same_tip() {
    let Some(bytes) = metadata_bytes() else { return };
    // Some spec 4xx builds name the tip extension `ChargeTransactionPaymentWrapper`: the
    // transaction must not change.
    let wrapped = with_tip_extension_named(&bytes, "ChargeTransactionPaymentWrapper");
    let ext = extrinsic::check_extensions(&wrapped).expect("supported");
    assert!(ext.contains(&("ChargeTransactionPaymentWrapper".to_string(), ExtensionSupport::Tip)));

    let s = setup(mortal()).expect("metadata");
    let call = calls::set_weights(&s.profile, 3, 0, &[1], &[1], 0).expect("call");
    let plain = extrinsic::build_signed(&s.metadata, &s.runtime, &call, &s.params, [1; 32], |_| FIXED_SIGNATURE);
    let wrapper = extrinsic::build_signed(&wrapped, &s.runtime, &call, &s.params, [1; 32], |_| FIXED_SIGNATURE);
    assert_eq!(plain.expect("plain"), wrapper.expect("wrapper"));
}

#[test]
fn an_extension_with_data_ferrum_cannot_fill_is_named_before_signing() {
    let Some(bytes) = metadata_bytes() else { return };
    // Renaming the tip extension to an unknown name leaves a compact tip nobody fills in.
    let m = with_tip_extension_named(&bytes, "ChargeSomethingElseEntry");
    let err = extrinsic::check_extensions(&m).expect_err("unknown extension with data");
    assert!(matches!(&err, ChainError::UnsupportedRuntime(msg) if msg.contains("ChargeSomethingElseEntry")), "{err}");
}
