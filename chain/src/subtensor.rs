//! `SubtensorChain`: the [`Chain`] trait over subxt's dynamic API against a node running
//! Bittensor's subtensor runtime. Metadata is read from the chain at each block, nothing is
//! generated at build time, so the client follows runtime upgrades.
//!
//! Writes are checked first with the same pure rules as [`LocalChain`](crate::LocalChain)
//! (`weights::check*`), so the common mistakes come back as the same plain errors on both
//! chains; the runtime's own rejections are mapped from their pallet error names.
//!
//! Which calls and storage keys to use is read from the runtime's metadata
//! ([`RuntimeProfile`]), and every transaction is built with the extensions that metadata lists
//! ([`extrinsic`](crate::extrinsic)): held to the spec 218 runtime under chopsticks
//! (`tests/conformance.rs`) and to today's finney metadata with an independent encoder
//! (`tests/finney.rs`). docs/chain.md says which runtimes are supported and how that was checked.

use std::time::Duration;

use ferrum_common::Hotkey;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sp_core::Pair as _;
use subxt::OnlineClient;
use subxt::dynamic::{self, At as _, Value};
use subxt::ext::scale_value::ValueDef;
use subxt::utils::{AccountId32, MultiSignature};

use crate::error::ChainError;
use crate::extrinsic::{self, CallSpec, Era, SubtensorConfig, TxParams};
use crate::runtime::RuntimeProfile;
use crate::types::{BlockInfo, Commitment, MAX_COMMITMENT_BYTES, Metagraph, Neuron, SubnetParams};
use crate::wallet::Keypair;
use crate::{Chain, calls, timelock, weights};

mod epoch;
pub use epoch::EpochState;

type Api = OnlineClient<SubtensorConfig>;
type AtBlock = subxt::client::ClientAtBlock<SubtensorConfig, subxt::client::OnlineClientAtBlockImpl<SubtensorConfig>>;

const MODULE: &str = "SubtensorModule";
/// Storage reads in flight at once while reading a metagraph.
const METAGRAPH_CONCURRENCY: usize = 32;

/// subxt's two-method signer over an sp-core sr25519 pair.
struct Signer(sp_core::sr25519::Pair);

impl subxt::tx::Signer<SubtensorConfig> for Signer {
    fn account_id(&self) -> AccountId32 {
        AccountId32(self.0.public().0)
    }

    fn sign(&self, payload: &[u8]) -> MultiSignature {
        MultiSignature::Sr25519(self.0.sign(payload).0)
    }
}

/// Storage key of `Timestamp.Now`: twox128("Timestamp") ++ twox128("Now").
const TIMESTAMP_NOW_KEY: &str = "0xf0c365c3cf59d671eb72da0e7a4113c49f1f0515f462cdcf84e0f1d6045dfcbb";

/// A subtensor node over JSON-RPC (`ws://` or `wss://`).
#[derive(Clone)]
pub struct SubtensorChain {
    api: Api,
    /// The same connection for the plain JSON-RPC reads that need no runtime call.
    rpc: subxt::rpcs::RpcClient,
    url: String,
    timeout: Duration,
    /// The subnet mechanism whose weights this client sets and reads (0: the subnet's first).
    mechanism: u8,
}

fn conn(e: impl std::fmt::Display) -> ChainError {
    ChainError::Connection(e.to_string())
}

impl SubtensorChain {
    /// Connects through subxt's reconnecting RPC client: the first connection and every
    /// reconnection after a drop retry with exponential backoff (0.5 s doubling to 30 s, at most
    /// `attempts` tries each time); every request is bounded by `timeout`.
    pub async fn connect(url: &str, timeout: Duration, attempts: u32) -> Result<SubtensorChain, ChainError> {
        use subxt::rpcs::client::reconnecting_rpc_client::{ExponentialBackoff, RpcClient};
        let policy = ExponentialBackoff::from_millis(2)
            .factor(250)
            .max_delay(Duration::from_secs(30))
            .take(attempts.max(1) as usize);
        let connecting = async {
            let rpc = RpcClient::builder()
                .retry_policy(policy)
                .request_timeout(timeout)
                .connection_timeout(timeout)
                .build(url)
                .await
                .map_err(|e| ChainError::Connection(format!("{url}: {e}")))?;
            let raw = subxt::rpcs::RpcClient::new(rpc.clone());
            let api = Api::from_rpc_client_with_config(SubtensorConfig::new(), rpc)
                .await
                .map_err(|e| ChainError::Connection(format!("{url}: {e}")))?;
            Ok::<_, ChainError>((api, raw))
        };
        // The whole connection attempt, retries included, is bounded too.
        let budget = timeout * (attempts.max(1) + 1) + Duration::from_secs(30 * u64::from(attempts));
        let (api, rpc) = tokio::time::timeout(budget, connecting)
            .await
            .map_err(|_| ChainError::Connection(format!("{url}: no connection within {} s", budget.as_secs())))??;
        Ok(SubtensorChain { api, rpc, url: url.to_string(), timeout, mechanism: 0 })
    }

    /// Sets and reads the weights of another mechanism of the subnet (runtimes with
    /// mechanisms only; the calls fail plainly elsewhere).
    pub fn with_mechanism(mut self, mechanism: u8) -> SubtensorChain {
        self.mechanism = mechanism;
        self
    }

    /// The stake a hotkey needs to set weights, in rao (`StakeThreshold`, or `WeightsMinStake`
    /// on older runtimes).
    pub async fn stake_threshold(&self) -> Result<u64, ChainError> {
        self.timed("stake_threshold", async {
            let at = self.at(None).await?;
            let profile = RuntimeProfile::from_metadata(at.metadata_ref())?;
            let item = profile
                .stake_threshold_item
                .ok_or_else(|| ChainError::UnsupportedRuntime("no stake threshold in this runtime's storage".into()))?;
            fetch(&at, MODULE, item, ()).await
        })
        .await
    }

    /// What the connected runtime offers, from its metadata at the current block; an error when
    /// it lists a transaction extension Ferrum cannot sign for, so a node stops at start.
    pub async fn runtime_profile(&self) -> Result<RuntimeProfile, ChainError> {
        let at = self.at(None).await?;
        extrinsic::check_extensions(at.metadata_ref())?;
        RuntimeProfile::from_metadata(at.metadata_ref())
    }

    /// Number, hash and timestamp of one block, by plain RPC reads: a client "at a block" asks
    /// the runtime for its version (a runtime call) each time, which a node polling for blocks
    /// should not cost its endpoint.
    async fn block_info(&self, number: u64) -> Result<BlockInfo, ChainError> {
        let hash: Option<String> = self.rpc_call("chain_getBlockHash", subxt::rpcs::rpc_params![number]).await?;
        let hash = hash.ok_or_else(|| ChainError::Connection(format!("block {number} is not known yet")))?;
        self.block_at_hash(&hash, Some(number)).await
    }

    /// Number (from the header unless given), hash and timestamp of the block `hash` (0x-hex).
    async fn block_at_hash(&self, hash: &str, number: Option<u64>) -> Result<BlockInfo, ChainError> {
        let number = match number {
            Some(n) => n,
            None => {
                let header: serde_json::Value =
                    self.rpc_call("chain_getHeader", subxt::rpcs::rpc_params![hash]).await?;
                let n = header["number"].as_str().unwrap_or_default();
                u64::from_str_radix(n.trim_start_matches("0x"), 16)
                    .map_err(|_| ChainError::Decode(format!("block header number {n:?}")))?
            }
        };
        let raw: Option<String> =
            self.rpc_call("state_getStorage", subxt::rpcs::rpc_params![TIMESTAMP_NOW_KEY, hash]).await?;
        // Absent (genesis) reads as the storage item's default, 0.
        let timestamp_ms = match raw {
            None => 0,
            Some(r) => {
                let bytes = hex::decode(r.trim_start_matches("0x")).unwrap_or_default();
                <[u8; 8]>::try_from(bytes.as_slice())
                    .map(u64::from_le_bytes)
                    .map_err(|_| ChainError::Decode(format!("Timestamp.Now at {hash}: {} bytes", bytes.len())))?
            }
        };
        let hash = <[u8; 32]>::try_from(hex::decode(hash.trim_start_matches("0x")).unwrap_or_default().as_slice())
            .map_err(|_| ChainError::Decode(format!("block hash {hash}")))?;
        Ok(BlockInfo { number, hash, timestamp_ms })
    }

    async fn rpc_call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: subxt::rpcs::client::RpcParams,
    ) -> Result<T, ChainError> {
        self.rpc.request(method, params).await.map_err(|e| conn(format!("{method}: {e}")))
    }

    /// The URL this client talks to.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn timed<T>(&self, call: &str, f: impl Future<Output = Result<T, ChainError>>) -> Result<T, ChainError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .unwrap_or_else(|_| Err(ChainError::Timeout { call: call.to_string(), secs: self.timeout.as_secs() }))
    }

    async fn at(&self, block: Option<u64>) -> Result<AtBlock, ChainError> {
        match block {
            None => self.api.at_current_block().await.map_err(conn),
            Some(n) => self.api.at_block(n).await.map_err(conn),
        }
    }

    /// Signs a call of `pallet` by name and submits it (dev tooling: sudo and staking setup).
    pub async fn submit(
        &self,
        signer: &Keypair,
        pallet: &'static str,
        call: &'static str,
        args: Vec<Value>,
    ) -> Result<(), ChainError> {
        self.submit_call(signer, CallSpec { pallet, call, args }).await
    }

    /// Signs with the extensions the runtime lists (mortal for [`extrinsic::MORTAL_PERIOD`]
    /// blocks from the current one, the account's next nonce, no tip), submits, and waits for
    /// finalization; a failed dispatch becomes a plain error.
    pub async fn submit_call(&self, signer: &Keypair, call: CallSpec) -> Result<(), ChainError> {
        let label = format!("{}.{}", call.pallet, call.call);
        let payload = call.payload();
        let signer = Signer(signer.pair().clone());
        self.timed(&label, async {
            let at = self.at(None).await?;
            let extensions = extrinsic::check_extensions(at.metadata_ref())?;
            let txs = at.tx();
            let account = AccountId32(signer.0.public().0);
            let nonce = txs.account_nonce(&account).await.map_err(conn)?;
            let params = TxParams {
                nonce,
                tip: 0,
                era: Era::Mortal {
                    period: extrinsic::MORTAL_PERIOD,
                    from: at.block_number(),
                    from_hash: at.block_hash().0,
                },
            };
            let mut signable = txs
                .create_v4_signable_offline(&payload, extrinsic::subxt_params(&params, &extensions))
                .map_err(|e| submit_error(&label, e))?;
            let tx = signable.sign(&signer).map_err(|e| submit_error(&label, e))?;
            let progress = tx.submit_and_watch().await.map_err(|e| submit_error(&label, e))?;
            progress.wait_for_finalized_success().await.map_err(|e| dispatch_error(&label, e))?;
            Ok(())
        })
        .await
    }

    async fn uid_or_err(&self, netuid: u16, hotkey: &Hotkey) -> Result<u16, ChainError> {
        self.uid_of(netuid, hotkey).await?.ok_or(ChainError::NotRegistered { hotkey: *hotkey, netuid })
    }

    /// The key of this client's mechanism in per-mechanism storage at `at`'s runtime.
    fn storage_index(&self, at: &AtBlock, netuid: u16) -> Result<u16, ChainError> {
        RuntimeProfile::from_metadata(at.metadata_ref())?.storage_index(netuid, self.mechanism)
    }

    /// The pre-flight of every weights call, read at one block: the caller is registered and the
    /// subnet's commit-reveal setting matches the call. Returns that block, the runtime's
    /// profile, the subnet's params and the caller's uid.
    async fn weights_caller(
        &self,
        netuid: u16,
        hotkey: &Hotkey,
        commit_reveal_call: bool,
    ) -> Result<WeightsCaller, ChainError> {
        let at = self.at(None).await?;
        let profile = RuntimeProfile::from_metadata(at.metadata_ref())?;
        let index = profile.storage_index(netuid, self.mechanism)?;
        let p = params_at(&at, &profile, netuid).await?;
        let uid = uid_at(&at, netuid, hotkey).await?.ok_or(ChainError::NotRegistered { hotkey: *hotkey, netuid })?;
        weights::check_mode(&p, netuid, commit_reveal_call)?;
        Ok(WeightsCaller { at, profile, index, params: p, uid })
    }

    /// The dev chain's rules for the weights themselves, so mistakes never cost a transaction.
    async fn check_weights(
        at: &AtBlock,
        p: &SubnetParams,
        netuid: u16,
        uid: u16,
        uids: &[u16],
        values: &[u16],
        version_key: u64,
    ) -> Result<(), ChainError> {
        weights::check_version(p, version_key)?;
        let n: u16 = fetch(at, MODULE, "SubnetworkN", (netuid,)).await?;
        weights::check(p, netuid, n, uid, uids, values)
    }
}

/// What every weights call reads first, at one block.
struct WeightsCaller {
    at: AtBlock,
    profile: RuntimeProfile,
    /// The key of the mechanism's weights storage.
    index: u16,
    params: SubnetParams,
    uid: u16,
}

async fn params_at(at: &AtBlock, profile: &RuntimeProfile, netuid: u16) -> Result<SubnetParams, ChainError> {
    let exists: bool = fetch(at, MODULE, "NetworksAdded", (netuid,)).await?;
    if !exists {
        return Err(ChainError::NoSubnet { netuid });
    }
    Ok(SubnetParams {
        tempo: fetch(at, MODULE, "Tempo", (netuid,)).await?,
        weights_rate_limit: fetch(at, MODULE, "WeightsSetRateLimit", (netuid,)).await?,
        weights_version_key: fetch(at, MODULE, "WeightsVersionKey", (netuid,)).await?,
        min_allowed_weights: fetch(at, MODULE, "MinAllowedWeights", (netuid,)).await?,
        max_weight_limit: fetch(at, MODULE, "MaxWeightsLimit", (netuid,)).await?,
        commit_reveal: fetch(at, MODULE, "CommitRevealWeightsEnabled", (netuid,)).await?,
        reveal_period_epochs: fetch(at, MODULE, "RevealPeriodEpochs", (netuid,)).await?,
        max_uids: fetch(at, MODULE, "MaxAllowedUids", (netuid,)).await?,
        max_validators: fetch(at, MODULE, "MaxAllowedValidators", (netuid,)).await?,
        // Where reveal rounds cannot be computed (stateful epochs), validators take the hash
        // commit-reveal path, which such runtimes still accept.
        timelocked_commits: profile.timelocked_commits && !profile.stateful_epochs,
    })
}

async fn uid_at(at: &AtBlock, netuid: u16, hotkey: &Hotkey) -> Result<Option<u16>, ChainError> {
    try_fetch(at, MODULE, "Uids", (netuid, hotkey.0)).await
}

/// A storage value that may be absent (no default applied).
async fn try_fetch<K, V>(at: &AtBlock, pallet: &str, entry: &str, keys: K) -> Result<Option<V>, ChainError>
where
    K: subxt::ext::frame_decode::storage::IntoEncodableValues + subxt::ext::frame_decode::storage::IntoDecodableValues,
    V: subxt::ext::scale_decode::DecodeAsType,
{
    let err = |e: &dyn std::fmt::Display| ChainError::Decode(format!("{pallet}.{entry}: {e}"));
    let addr = dynamic::storage::<K, V>(pallet, entry);
    match at.storage().try_fetch(addr, keys).await.map_err(|e| err(&e))? {
        Some(v) => v.decode().map(Some).map_err(|e| err(&e)),
        None => Ok(None),
    }
}

/// A storage value, or its default when absent.
async fn fetch<K, V>(at: &AtBlock, pallet: &str, entry: &str, keys: K) -> Result<V, ChainError>
where
    K: subxt::ext::frame_decode::storage::IntoEncodableValues + subxt::ext::frame_decode::storage::IntoDecodableValues,
    V: subxt::ext::scale_decode::DecodeAsType,
{
    let addr = dynamic::storage::<K, V>(pallet, entry);
    let value =
        at.storage().fetch(addr, keys).await.map_err(|e| ChainError::Decode(format!("{pallet}.{entry}: {e}")))?;
    value.decode().map_err(|e| ChainError::Decode(format!("{pallet}.{entry}: {e}")))
}

fn submit_error(call: &str, e: impl std::fmt::Display) -> ChainError {
    let text = e.to_string();
    // check_extensions vets the list first; a runtime upgrade between that and signing is the
    // one way here, and reconnecting picks the new metadata up.
    if text.to_lowercase().contains("transaction extension") {
        return ChainError::UnsupportedRuntime(format!("{call}: {text}"));
    }
    ChainError::Dispatch { call: call.to_string(), pallet: "pool".into(), error: text }
}

/// A failed dispatch as `Pallet.Error` from the metadata; a lost connection as such.
fn dispatch_error(call: &str, e: subxt::error::TransactionFinalizedSuccessError) -> ChainError {
    use subxt::error::{DispatchError, TransactionEventsError, TransactionFinalizedSuccessError as Failed};
    let (pallet, error) = match &e {
        Failed::SuccessError(TransactionEventsError::ExtrinsicFailed(DispatchError::Module(m))) => match m.details() {
            Ok(d) => (d.pallet.name().to_string(), d.variant.name.clone()),
            Err(_) => ("runtime".to_string(), m.to_string()),
        },
        Failed::SuccessError(TransactionEventsError::ExtrinsicFailed(other)) => {
            ("runtime".to_string(), other.to_string())
        }
        _ => return ChainError::Connection(format!("{call}: {e}")),
    };
    ChainError::Dispatch { call: call.to_string(), pallet, error }
}

/// The first enum value inside `v`, looking through the newtype and vector wrappers
/// (`BoundedVec<Data>` decodes as a composite holding a composite).
fn first_variant(mut v: &Value) -> Option<&subxt::ext::scale_value::Variant<()>> {
    loop {
        match &v.value {
            ValueDef::Variant(var) => return Some(var),
            ValueDef::Composite(c) => v = c.values().next()?,
            _ => return None,
        }
    }
}

fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    match &v.value {
        ValueDef::Composite(c) => c
            .values()
            .map(|x| match &x.value {
                ValueDef::Primitive(p) => p.as_u128().and_then(|n| u8::try_from(n).ok()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

impl Chain for SubtensorChain {
    async fn best_block(&self) -> Result<BlockInfo, ChainError> {
        self.timed("best_block", async {
            // Finalized, as a client "at the current block" reads it.
            let hash: String = self.rpc_call("chain_getFinalizedHead", subxt::rpcs::rpc_params![]).await?;
            self.block_at_hash(&hash, None).await
        })
        .await
    }

    async fn block_hash(&self, number: u64) -> Result<[u8; 32], ChainError> {
        self.timed("block_hash", async { Ok(self.block_info(number).await?.hash) }).await
    }

    /// Polls the best block every quarter second and yields each block from `from` on, so a
    /// dropped connection can never skip or repeat a window boundary.
    fn blocks(&self, from: u64) -> BoxStream<'static, Result<BlockInfo, ChainError>> {
        let chain = self.clone();
        futures::stream::unfold((chain, from), |(chain, next)| async move {
            loop {
                match chain.best_block().await {
                    Ok(best) if best.number == next => return Some((Ok(best), (chain, next + 1))),
                    Ok(best) if best.number > next => {
                        return Some((chain.block_info(next).await, (chain, next + 1)));
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                    Err(e) => return Some((Err(e), (chain, next))),
                }
            }
        })
        .boxed()
    }

    async fn subnet_params(&self, netuid: u16) -> Result<SubnetParams, ChainError> {
        self.timed("subnet_params", async {
            let at = self.at(None).await?;
            let profile = RuntimeProfile::from_metadata(at.metadata_ref())?;
            params_at(&at, &profile, netuid).await
        })
        .await
    }

    async fn metagraph(&self, netuid: u16, at: Option<u64>) -> Result<Metagraph, ChainError> {
        self.timed("metagraph", async {
            let at = self.at(at).await?;
            let n: u16 = fetch(&at, MODULE, "SubnetworkN", (netuid,)).await?;
            let permits: Vec<bool> = fetch(&at, MODULE, "ValidatorPermit", (netuid,)).await?;
            let incentive: Vec<u16> = fetch(&at, MODULE, "Incentive", (netuid,)).await?;
            let dividends: Vec<u16> = fetch(&at, MODULE, "Dividends", (netuid,)).await?;
            let active: Vec<bool> = fetch(&at, MODULE, "Active", (netuid,)).await?;
            let last_update: Vec<u64> = fetch(&at, MODULE, "LastUpdate", (self.storage_index(&at, netuid)?,)).await?;
            // Per-uid reads go out together (one round trip each, not one after another).
            let at = &at;
            // Collected first, so the future stays `Send` for nodes that run in spawned tasks.
            let reads: Vec<_> = (0..n)
                .map(|uid| async move {
                    let hotkey: [u8; 32] = fetch(at, MODULE, "Keys", (netuid, uid)).await?;
                    let coldkey: [u8; 32] = fetch(at, MODULE, "Owner", (hotkey,)).await?;
                    let stake: u64 = fetch(at, MODULE, "TotalHotkeyAlpha", (hotkey, netuid)).await?;
                    let registered_at: u64 = fetch(at, MODULE, "BlockAtRegistration", (netuid, uid)).await?;
                    Ok::<_, ChainError>((uid, hotkey, coldkey, stake, registered_at))
                })
                .collect();
            let rows: Vec<_> = futures::stream::iter(reads).buffered(METAGRAPH_CONCURRENCY).try_collect().await?;
            let mut neurons = Vec::with_capacity(usize::from(n));
            for (uid, hotkey, coldkey, stake, registered_at) in rows {
                let i = usize::from(uid);
                neurons.push(Neuron {
                    uid,
                    hotkey: Hotkey(hotkey),
                    coldkey: Hotkey(coldkey),
                    stake,
                    validator_permit: permits.get(i).copied().unwrap_or(false),
                    incentive: incentive.get(i).copied().unwrap_or(0),
                    dividends: dividends.get(i).copied().unwrap_or(0),
                    active: active.get(i).copied().unwrap_or(false),
                    last_update: last_update.get(i).copied().unwrap_or(0),
                    registered_at,
                });
            }
            Ok(Metagraph { netuid, block: at.block_number(), neurons })
        })
        .await
    }

    async fn uid_of(&self, netuid: u16, hotkey: &Hotkey) -> Result<Option<u16>, ChainError> {
        self.timed("uid_of", async { uid_at(&self.at(None).await?, netuid, hotkey).await }).await
    }

    async fn register(&self, coldkey: &Keypair, netuid: u16, hotkey: &Hotkey) -> Result<u16, ChainError> {
        if self.uid_of(netuid, hotkey).await?.is_some() {
            return Err(ChainError::AlreadyRegistered { hotkey: *hotkey, netuid });
        }
        self.submit_call(coldkey, calls::burned_register(netuid, hotkey.0)).await?;
        self.uid_or_err(netuid, hotkey).await
    }

    async fn set_commitment(&self, signer: &Keypair, netuid: u16, data: &[u8]) -> Result<(), ChainError> {
        if data.len() > MAX_COMMITMENT_BYTES {
            return Err(ChainError::CommitmentTooLarge { max: MAX_COMMITMENT_BYTES, got: data.len() });
        }
        self.uid_or_err(netuid, &signer.hotkey()).await?;
        self.submit_call(signer, calls::set_commitment(netuid, data)).await
    }

    async fn commitment(&self, netuid: u16, hotkey: &Hotkey) -> Result<Option<Commitment>, ChainError> {
        self.timed("commitment", async {
            let at = self.at(None).await?;
            let Some(v): Option<Value> = try_fetch(&at, "Commitments", "CommitmentOf", (netuid, hotkey.0)).await?
            else {
                return Ok(None);
            };
            let bad = || ChainError::Decode("CommitmentOf: not a single raw field".into());
            let block = v.at("block").and_then(|b| b.as_u128()).ok_or_else(bad)? as u64;
            let fields = v.at("info").and_then(|i| i.at("fields")).ok_or_else(bad)?;
            let data = match first_variant(fields) {
                Some(var) if var.name.starts_with("Raw") => {
                    var.values.values().next().and_then(bytes_of).ok_or_else(bad)?
                }
                _ => return Err(bad()),
            };
            Ok(Some(Commitment { block, data }))
        })
        .await
    }

    async fn set_weights(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        version_key: u64,
    ) -> Result<(), ChainError> {
        let call = self
            .timed("set_weights pre-flight", async {
                let c = self.weights_caller(netuid, &signer.hotkey(), false).await?;
                Self::check_weights(&c.at, &c.params, netuid, c.uid, uids, values, version_key).await?;
                let last: Vec<u64> = fetch(&c.at, MODULE, "LastUpdate", (c.index,)).await?;
                // The extrinsic executes in the next block.
                let last = last.get(usize::from(c.uid)).copied().unwrap_or(0);
                weights::check_rate(&c.params, last, c.at.block_number() + 1)?;
                calls::set_weights(&c.profile, netuid, self.mechanism, uids, values, version_key)
            })
            .await?;
        self.submit_call(signer, call).await
    }

    async fn commit_weights(&self, signer: &Keypair, netuid: u16, hash: [u8; 32]) -> Result<(), ChainError> {
        let call = self
            .timed("commit_weights pre-flight", async {
                let c = self.weights_caller(netuid, &signer.hotkey(), true).await?;
                calls::commit_weights(&c.profile, netuid, self.mechanism, hash)
            })
            .await?;
        self.submit_call(signer, call).await
    }

    async fn commit_timelocked_weights(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        version_key: u64,
    ) -> Result<u64, ChainError> {
        let hotkey = signer.hotkey();
        let (call, round) = self
            .timed("commit_timelocked_weights pre-flight", async {
                let c = self.weights_caller(netuid, &hotkey, true).await?;
                if !c.profile.timelocked_commits {
                    return Err(ChainError::UnsupportedRuntime(
                        "this runtime has no timelocked weight commits: commit and reveal instead".into(),
                    ));
                }
                if c.profile.stateful_epochs {
                    return Err(ChainError::UnsupportedRuntime(
                        "this runtime counts epochs statefully (SubnetEpochIndex); Ferrum computes drand reveal \
                         rounds for the stateless schedule of spec 393 and earlier, so it does not commit \
                         timelocked weights here (docs/chain.md)"
                            .into(),
                    ));
                }
                Self::check_weights(&c.at, &c.params, netuid, c.uid, uids, values, version_key).await?;
                let version: u16 = fetch(&c.at, MODULE, "CommitRevealWeightsVersion", ()).await?;
                let schedule = timelock::RevealSchedule {
                    netuid,
                    tempo: c.params.tempo,
                    reveal_period_epochs: c.params.reveal_period_epochs,
                    block_time_secs: crate::runtime::block_time_secs(c.at.metadata_ref())?,
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or_default();
                let round = timelock::reveal_round(&schedule, c.at.block_number(), now);
                let payload = timelock::weights_payload(&hotkey, uids, values, version_key);
                let ciphertext = timelock::encrypt(&payload, round, &mut rand08::rngs::OsRng)
                    .map_err(|e| ChainError::Encode(e.to_string()))?;
                let call =
                    calls::commit_timelocked_weights(&c.profile, netuid, self.mechanism, &ciphertext, round, version)?;
                Ok((call, round))
            })
            .await?;
        self.submit_call(signer, call).await?;
        Ok(round)
    }

    async fn reveal_weights(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        salt: &[u16],
        version_key: u64,
    ) -> Result<(), ChainError> {
        let hotkey = signer.hotkey();
        let call = self
            .timed("reveal_weights pre-flight", async {
                let c = self.weights_caller(netuid, &hotkey, true).await?;
                let at = &c.at;
                Self::check_weights(at, &c.params, netuid, c.uid, uids, values, version_key).await?;
                // The pallet keeps (hash, commit block, first reveal block, last reveal block)
                // through finney's spec 393; later sources keep (hash, commit epoch, commit block,
                // 0) under a stateful epoch counter, where the window is the chain's to judge.
                let commits: Vec<([u8; 32], u64, u64, u64)> =
                    try_fetch(at, MODULE, "WeightCommits", (c.index, hotkey.0)).await?.unwrap_or_default();
                let hash = crate::commit_reveal::commit_hash(&hotkey, netuid, uids, values, salt, version_key);
                let &(_, _, first, last) =
                    commits.iter().find(|c| c.0 == hash).ok_or(ChainError::NoMatchingCommit { hotkey, netuid })?;
                let next = at.block_number() + 1;
                if last != 0 && next < first {
                    return Err(ChainError::RevealTooEarly { from: first });
                }
                if last != 0 && next > last {
                    return Err(ChainError::CommitExpired { expired: last + 1 });
                }
                calls::reveal_weights(&c.profile, netuid, self.mechanism, uids, values, salt, version_key)
            })
            .await?;
        self.submit_call(signer, call).await
    }

    async fn weights(&self, netuid: u16, uid: u16) -> Result<Vec<(u16, u16)>, ChainError> {
        self.timed("weights", async {
            let at = self.at(None).await?;
            fetch(&at, MODULE, "Weights", (self.storage_index(&at, netuid)?, uid)).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_node_is_a_plain_connection_error_after_retries() {
        // Bind then drop a listener: the port is free and nothing answers on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let url = format!("ws://127.0.0.1:{port}");
        let err = SubtensorChain::connect(&url, Duration::from_secs(2), 2).await.err().expect("nothing listens");
        assert!(matches!(&err, ChainError::Connection(m) if m.contains(&url)), "{err}");
    }

    #[test]
    fn the_timestamp_key_is_twox128_of_its_names() {
        let key = [sp_crypto_hashing::twox_128(b"Timestamp"), sp_crypto_hashing::twox_128(b"Now")].concat();
        assert_eq!(TIMESTAMP_NOW_KEY, format!("0x{}", hex::encode(key)));
    }

    #[test]
    fn an_unknown_transaction_extension_is_reported_as_such() {
        let e = submit_error("X.y", "Transaction extension NewThing not found");
        assert!(matches!(e, ChainError::UnsupportedRuntime(m) if m.contains("NewThing") && m.contains("X.y")));
    }
}
