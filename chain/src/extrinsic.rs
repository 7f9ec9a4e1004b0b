//! Signed extrinsics for the runtime a node talks to, built from that runtime's metadata.
//!
//! subxt encodes the transaction extensions it knows by name (nonce, era, tip, genesis, spec
//! and transaction versions, metadata hash) and skips those whose explicit and implicit types
//! encode to nothing (subtensor's `SudoTransactionExtension`, `CheckShieldedTxValidity`,
//! `SubtensorTransactionExtension`, `DrandPriority`, and the standard `CheckNonZeroSender`
//! and `CheckWeight`). [`check_extensions`] says before signing whether a runtime lists an
//! extension that is neither, so a node on a runtime it cannot sign for fails with the name of
//! the extension instead of an opaque pool rejection. A renamed tip extension (some spec 4xx
//! builds call it `ChargeTransactionPaymentWrapper`) carries the same compact tip.
//!
//! The same [`TxParams`] feed the online submission and the offline builder ([`build_signed`]),
//! so the bytes held to an independent encoder in the tests are the bytes nodes submit.

use subxt::client::OfflineClient;
use subxt::config::substrate::{SubstrateConfig, SubstrateConfigBuilder};
use subxt::config::{Config, DefaultExtrinsicParamsBuilder, DefaultTransactionExtensions, HashFor};
use subxt::dynamic::Value;
use subxt::ext::scale_value::Composite;
use subxt::metadata::{ArcMetadata, Metadata};
use subxt::utils::{AccountId32, H256, MultiAddress, MultiSignature};

use crate::error::ChainError;

/// Subtensor's transaction types: sr25519/ed25519 `MultiSignature`, `MultiAddress` without
/// account indices, BlakeTwo256 — Substrate's defaults with Polkadot's address form.
#[derive(Debug, Clone)]
pub struct SubtensorConfig(SubstrateConfig);

impl SubtensorConfig {
    /// A configuration for connecting: everything else is read from the chain.
    pub fn new() -> SubtensorConfig {
        SubtensorConfig(SubstrateConfig::new())
    }

    /// A configuration that holds one runtime's metadata and versions, for building
    /// extrinsics with no chain at all.
    pub fn offline(runtime: &RuntimeVersion, metadata: ArcMetadata) -> SubtensorConfig {
        use subxt::config::substrate::SpecVersionForRange;
        let inner = SubstrateConfigBuilder::new()
            .set_genesis_hash(H256(runtime.genesis_hash))
            .set_spec_version_for_block_ranges([SpecVersionForRange {
                block_range: 0..u64::MAX,
                spec_version: runtime.spec_version,
                transaction_version: runtime.transaction_version,
            }])
            .set_metadata_for_spec_versions([(runtime.spec_version, metadata)])
            .build();
        SubtensorConfig(inner)
    }
}

impl Default for SubtensorConfig {
    fn default() -> Self {
        SubtensorConfig::new()
    }
}

impl Config for SubtensorConfig {
    type AccountId = AccountId32;
    type Address = MultiAddress<AccountId32, ()>;
    type Signature = MultiSignature;
    type Header = <SubstrateConfig as Config>::Header;
    type AssetId = <SubstrateConfig as Config>::AssetId;
    type Hasher = <SubstrateConfig as Config>::Hasher;
    type TransactionExtensions = DefaultTransactionExtensions<Self>;

    fn genesis_hash(&self) -> Option<HashFor<Self>> {
        self.0.genesis_hash()
    }

    fn spec_and_transaction_version_for_block_number(&self, block_number: u64) -> Option<(u32, u32)> {
        self.0.spec_and_transaction_version_for_block_number(block_number)
    }

    fn metadata_for_spec_version(&self, spec_version: u32) -> Option<ArcMetadata> {
        self.0.metadata_for_spec_version(spec_version)
    }

    fn set_metadata_for_spec_version(&self, spec_version: u32, metadata: ArcMetadata) {
        self.0.set_metadata_for_spec_version(spec_version, metadata)
    }
}

/// What a signature commits to besides the call: the chain and runtime it is valid on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeVersion {
    pub genesis_hash: [u8; 32],
    pub spec_version: u32,
    pub transaction_version: u32,
}

/// How long a transaction stays valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    Immortal,
    /// Valid for `period` blocks (rounded to a power of two, 4..=65536) from block `from`,
    /// whose hash the signature commits to.
    Mortal {
        period: u64,
        from: u64,
        from_hash: [u8; 32],
    },
}

/// The per-transaction values of the extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxParams {
    pub nonce: u64,
    /// Priority fee, in rao.
    pub tip: u128,
    pub era: Era,
}

/// Blocks a node's transactions stay valid: long enough to survive a few slow blocks, short
/// enough that a stuck one is gone within minutes (64 blocks, about 13 minutes at 12 s).
pub const MORTAL_PERIOD: u64 = 64;

/// Tip extensions known under another name: same explicit compact tip, empty implicit.
const TIP_EXTENSION_ALIASES: &[&str] = &["ChargeTransactionPaymentWrapper"];

/// The name an extension type of subxt's default set answers to.
macro_rules! names {
    ($($ty:ty),+ $(,)?) => {
        [$(<$ty as subxt::ext::frame_decode::extrinsics::TransactionExtension<scale_info::PortableRegistry>>::NAME),+]
    };
}

/// Extensions subxt's default set (`KnownDefaultTransactionExtensions`) encodes by name, read
/// from its own types so the list cannot drift from what it encodes.
const KNOWN_EXTENSIONS: [&str; 9] = {
    use subxt::config::transaction_extensions as te;
    names!(
        te::VerifySignature<SubtensorConfig>,
        te::CheckSpecVersion,
        te::CheckTxVersion,
        te::CheckNonce,
        te::CheckGenesis<SubtensorConfig>,
        te::CheckMortality<SubtensorConfig>,
        te::ChargeAssetTxPayment<SubtensorConfig>,
        te::ChargeTransactionPayment,
        te::CheckMetadataHash,
    )
};

/// How one transaction extension of a runtime gets its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionSupport {
    /// subxt encodes it by name.
    Known,
    /// Both its types encode to nothing, so there is nothing to encode.
    Empty,
    /// A renamed tip: the compact tip as explicit data, nothing implicit.
    Tip,
}

/// Every transaction extension the runtime lists for signed (v4) transactions, with how it is
/// encoded; an extension that needs data Ferrum cannot supply is an error naming it.
pub fn check_extensions(metadata: &Metadata) -> Result<Vec<(String, ExtensionSupport)>, ChainError> {
    let types = metadata.types();
    let Some(extensions) = metadata.extrinsic().transaction_extensions_by_version(0) else {
        return Err(ChainError::UnsupportedRuntime("the metadata lists no transaction extensions".into()));
    };
    extensions
        .map(|e| {
            let name = e.identifier();
            let support = if KNOWN_EXTENSIONS.contains(&name) {
                ExtensionSupport::Known
            } else if encodes_nothing(e.extra_ty(), types) && encodes_nothing(e.additional_ty(), types) {
                ExtensionSupport::Empty
            } else if TIP_EXTENSION_ALIASES.contains(&name) && encodes_nothing(e.additional_ty(), types) {
                ExtensionSupport::Tip
            } else {
                return Err(ChainError::UnsupportedRuntime(format!(
                    "transaction extension {name} carries data Ferrum does not know how to fill"
                )));
            };
            Ok((name.to_string(), support))
        })
        .collect()
}

/// Whether values of a type encode to zero bytes (unit, empty tuples and structs of such).
fn encodes_nothing(id: u32, types: &scale_info::PortableRegistry) -> bool {
    use scale_info::TypeDef;
    let Some(ty) = types.resolve(id) else { return false };
    match &ty.type_def {
        TypeDef::Composite(c) => c.fields.iter().all(|f| encodes_nothing(f.ty.id, types)),
        TypeDef::Tuple(t) => t.fields.iter().all(|f| encodes_nothing(f.id, types)),
        TypeDef::Array(a) => a.len == 0 || encodes_nothing(a.type_param.id, types),
        _ => false,
    }
}

/// subxt's parameters for these values, with the renamed tip extensions filled in.
pub(crate) fn subxt_params(
    p: &TxParams,
    extensions: &[(String, ExtensionSupport)],
) -> <DefaultTransactionExtensions<SubtensorConfig> as subxt::config::TransactionExtensions<SubtensorConfig>>::Params {
    let mut b = DefaultExtrinsicParamsBuilder::<SubtensorConfig>::new().nonce(p.nonce).tip(p.tip);
    b = match p.era {
        Era::Immortal => b.immortal(),
        Era::Mortal { period, from, from_hash } => b.mortal_from_unchecked(period, from, H256(from_hash)),
    };
    for (name, support) in extensions {
        if *support == ExtensionSupport::Tip {
            b = b.custom_extension(name.clone(), Value::u128(p.tip));
        }
    }
    b.build()
}

/// One call, as the dynamic API takes it.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub pallet: &'static str,
    pub call: &'static str,
    pub args: Vec<Value>,
}

impl CallSpec {
    pub(crate) fn payload(&self) -> subxt::transactions::DynamicPayload<Composite<()>> {
        subxt::dynamic::tx(self.pallet, self.call, Composite::unnamed(self.args.clone()))
    }
}

/// A transaction built offline: what is signed and what is submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltTx {
    /// The encoded call (pallet index, call index, arguments).
    pub call_data: Vec<u8>,
    /// The bytes the signer signs (blake2-256 of them when longer than 256 bytes).
    pub signer_payload: Vec<u8>,
    /// The complete signed v4 extrinsic, length-prefixed.
    pub extrinsic: Vec<u8>,
    /// The same call as an unsigned v4 extrinsic (no extensions), length-prefixed.
    pub unsigned: Vec<u8>,
}

/// Builds a signed v4 extrinsic for `call` with the runtime's metadata and no chain. The
/// signature is `sign(signer_payload)`; tests pass a fixed one to compare bytes, nodes sign.
pub fn build_signed(
    metadata: &ArcMetadata,
    runtime: &RuntimeVersion,
    call: &CallSpec,
    params: &TxParams,
    account: [u8; 32],
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Result<BuiltTx, ChainError> {
    let extensions = check_extensions(metadata)?;
    let client = OfflineClient::new_with_config(SubtensorConfig::offline(runtime, ArcMetadata::clone(metadata)));
    let at = client.at_block(0u64).map_err(|e| ChainError::Decode(e.to_string()))?;
    let payload = call.payload();
    let txs = at.tx();
    let enc = |e: subxt::error::ExtrinsicError| ChainError::Encode(format!("{}.{}: {e}", call.pallet, call.call));
    let call_data = txs.call_data(&payload).map_err(enc)?;
    let unsigned = txs.create_v4_unsigned(&payload).map_err(enc)?.into_encoded();
    let mut signable = txs.create_v4_signable_offline(&payload, subxt_params(params, &extensions)).map_err(enc)?;
    let signer_payload = signable.signer_payload().map_err(enc)?;
    let signature = MultiSignature::Sr25519(sign(&signer_payload));
    let tx = signable.sign_with_account_and_signature(&AccountId32(account), &signature).map_err(enc)?;
    Ok(BuiltTx { call_data, signer_payload, extrinsic: tx.into_encoded(), unsigned })
}
