//! One conformance suite for every `Chain`: each case runs against a fresh dev network from a
//! `Harness`. `LocalChain` runs here; the subtensor runtime (chopsticks) harness plugs into the
//! same cases.

use ferrum_chain::commit_reveal::commit_hash;
use ferrum_chain::{Chain, ChainError, Keypair, SubnetParams, weights};
use ferrum_common::Hotkey;
use futures::StreamExt;

const NETUID: u16 = 3;
const TAO: u64 = 1_000_000_000;

/// A fresh chain with subnet `NETUID` created by //Alice (funded), and dev-only controls.
trait Harness {
    type C: Chain;
    fn chain(&self) -> &Self::C;
    /// Produces `n` empty blocks.
    fn advance(&self, n: u64) -> impl Future<Output = ()>;
    /// Sets the subnet's hyperparameters (sudo on a real chain).
    fn configure(&self, params: SubnetParams) -> impl Future<Output = ()>;
}

fn key(uri: &str) -> Keypair {
    Keypair::from_secret(uri, "test").expect("dev key")
}

fn params() -> SubnetParams {
    SubnetParams {
        tempo: 10,
        weights_rate_limit: 5,
        weights_version_key: 0,
        min_allowed_weights: 1,
        max_weight_limit: u16::MAX,
        commit_reveal: false,
        reveal_period_epochs: 1,
        max_uids: 64,
        max_validators: 8,
    }
}

/// Registers //Bob, //Charlie and //Dave (paid by //Alice); returns their uids.
async fn register_three<H: Harness>(h: &H) -> Vec<u16> {
    let alice = key("//Alice");
    let mut uids = Vec::new();
    for who in ["//Bob", "//Charlie", "//Dave"] {
        uids.push(h.chain().register(&alice, NETUID, &key(who).hotkey()).await.expect("register"));
    }
    uids
}

async fn register_and_read_the_metagraph<H: Harness>(h: &H) {
    let c = h.chain();
    let before = c.best_block().await.expect("block").number;
    let uids = register_three(h).await;
    let bob = key("//Bob").hotkey();
    assert_eq!(c.uid_of(NETUID, &bob).await.expect("uid"), Some(uids[0]));
    assert_eq!(c.uid_of(NETUID, &key("//Eve").hotkey()).await.expect("uid"), None);
    let m = c.metagraph(NETUID, None).await.expect("metagraph");
    let n = m.by_hotkey(&bob).expect("bob in metagraph");
    assert_eq!(n.uid, uids[0]);
    assert_eq!(n.coldkey, key("//Alice").hotkey());
    assert!(n.registered_at > before);
    assert_eq!(
        c.register(&key("//Alice"), NETUID, &bob).await,
        Err(ChainError::AlreadyRegistered { hotkey: bob, netuid: NETUID })
    );
    // The metagraph at the block before the last registration lacks //Dave.
    let dave = key("//Dave").hotkey();
    let at = m.by_hotkey(&dave).expect("dave").registered_at - 1;
    let old = c.metagraph(NETUID, Some(at)).await.expect("old metagraph");
    assert!(old.by_hotkey(&bob).is_some() && old.by_hotkey(&dave).is_none());
}

async fn commitments_round_trip<H: Harness>(h: &H) {
    let c = h.chain();
    register_three(h).await;
    let bob = key("//Bob");
    let data = b"s3://ferrum-bob?endpoint=https://r2.example.com&region=auto".to_vec();
    c.set_commitment(&bob, NETUID, &data).await.expect("commit");
    let got = c.commitment(NETUID, &bob.hotkey()).await.expect("read").expect("present");
    assert_eq!(got.data, data);
    assert_eq!(c.commitment(NETUID, &key("//Charlie").hotkey()).await.expect("read"), None);
    let too_big = vec![7u8; ferrum_chain::MAX_COMMITMENT_BYTES + 1];
    assert!(matches!(c.set_commitment(&bob, NETUID, &too_big).await, Err(ChainError::CommitmentTooLarge { .. })));
    let eve = key("//Eve");
    assert_eq!(
        c.set_commitment(&eve, NETUID, b"x").await,
        Err(ChainError::NotRegistered { hotkey: eve.hotkey(), netuid: NETUID })
    );
}

async fn set_weights_and_read_them_back<H: Harness>(h: &H) {
    let c = h.chain();
    let uids = register_three(h).await;
    let bob = key("//Bob");
    let (u, v) = weights::to_u16(&[(uids[1], 3.0), (uids[2], 1.0)], u16::MAX).expect("weights");
    c.set_weights(&bob, NETUID, &u, &v, 0).await.expect("set weights");
    let stored = c.weights(NETUID, uids[0]).await.expect("read");
    assert_eq!(stored, vec![(uids[1], 65535), (uids[2], 21845)]);
    let m = c.metagraph(NETUID, None).await.expect("metagraph");
    assert_eq!(m.neurons[usize::from(uids[0])].last_update, m.block);
}

async fn weight_errors_are_plain<H: Harness>(h: &H) {
    let c = h.chain();
    let uids = register_three(h).await;
    let eve = key("//Eve");
    let err = c.set_weights(&eve, NETUID, &[uids[0]], &[1], 0).await.expect_err("unregistered");
    assert_eq!(err, ChainError::NotRegistered { hotkey: eve.hotkey(), netuid: NETUID });
    assert!(err.to_string().contains(&format!("hotkey {} is not registered on netuid {NETUID}", eve.hotkey())));

    let mut p = params();
    p.weights_version_key = 5;
    h.configure(p.clone()).await;
    let bob = key("//Bob");
    let err = c.set_weights(&bob, NETUID, &[uids[1]], &[1], 4).await.expect_err("old version");
    assert_eq!(err, ChainError::VersionKey { required: 5, got: 4 });

    c.set_weights(&bob, NETUID, &[uids[1]], &[1], 5).await.expect("first");
    let last = c.metagraph(NETUID, None).await.expect("mg").neurons[usize::from(uids[0])].last_update;
    let err = c.set_weights(&bob, NETUID, &[uids[2]], &[1], 5).await.expect_err("too fast");
    assert_eq!(err, ChainError::TooFast { next_allowed: last + p.weights_rate_limit });
    assert!(err.to_string().starts_with("setting weights too fast: next allowed at block"));
    h.advance(p.weights_rate_limit).await;
    c.set_weights(&bob, NETUID, &[uids[2]], &[1], 5).await.expect("after the rate limit");
}

async fn commit_then_reveal<H: Harness>(h: &H) {
    let c = h.chain();
    let uids = register_three(h).await;
    let mut p = params();
    p.commit_reveal = true;
    p.weights_rate_limit = 0;
    h.configure(p.clone()).await;
    let bob = key("//Bob");
    let (u, v) = (vec![uids[1], uids[2]], vec![65535, 100]);
    let salt = [9u16, 8, 7, 6];
    assert_eq!(c.set_weights(&bob, NETUID, &u, &v, 0).await, Err(ChainError::CommitRevealEnabled { netuid: NETUID }));
    // Commit in the first block of an epoch, so the reveal right after is still in that epoch.
    let now = c.best_block().await.expect("block").number;
    let epoch_start = p.epoch_start(NETUID, p.epoch(NETUID, now + 1) + 1);
    h.advance(epoch_start - now - 1).await;
    c.commit_weights(&bob, NETUID, commit_hash(&bob.hotkey(), NETUID, &u, &v, &salt, 0)).await.expect("commit");
    let early = c.reveal_weights(&bob, NETUID, &u, &v, &salt, 0).await.expect_err("too early");
    let ChainError::RevealTooEarly { from } = early else { panic!("{early:?}") };
    let now = c.best_block().await.expect("block").number;
    h.advance(from.saturating_sub(now + 1)).await;
    let wrong = c.reveal_weights(&bob, NETUID, &u, &v, &[1, 2, 3], 0).await.expect_err("wrong salt");
    assert_eq!(wrong, ChainError::NoMatchingCommit { hotkey: bob.hotkey(), netuid: NETUID });
    c.reveal_weights(&bob, NETUID, &u, &v, &salt, 0).await.expect("reveal in the next epoch");
    assert_eq!(c.weights(NETUID, uids[0]).await.expect("read"), vec![(uids[1], 65535), (uids[2], 100)]);
}

async fn blocks_stream_and_hashes<H: Harness>(h: &H) {
    let c = h.chain();
    let mut stream = c.blocks();
    let start = c.best_block().await.expect("block");
    h.advance(2).await;
    let a = stream.next().await.expect("a block").expect("ok");
    let b = stream.next().await.expect("a block").expect("ok");
    assert_eq!((a.number, b.number), (start.number + 1, start.number + 2));
    assert_eq!(c.block_hash(b.number).await.expect("hash"), b.hash);
    assert_ne!(a.hash, b.hash);
    assert!(b.timestamp_ms >= start.timestamp_ms);
}

mod local {
    use super::*;
    use ferrum_chain::LocalChain;

    struct Local(LocalChain);

    impl Local {
        fn new() -> Local {
            let chain = LocalChain::new();
            chain.fund(&key("//Alice").hotkey(), 1_000 * TAO);
            chain.create_subnet(NETUID, params(), TAO);
            Local(chain)
        }
    }

    impl Harness for Local {
        type C = LocalChain;
        fn chain(&self) -> &LocalChain {
            &self.0
        }
        async fn advance(&self, n: u64) {
            self.0.advance(n);
        }
        async fn configure(&self, params: SubnetParams) {
            self.0.set_subnet_params(NETUID, params).expect("subnet exists");
        }
    }

    macro_rules! cases {
        ($($case:ident),*) => {$(
            #[tokio::test]
            async fn $case() {
                super::$case(&Local::new()).await;
            }
        )*};
    }

    cases!(
        register_and_read_the_metagraph,
        commitments_round_trip,
        set_weights_and_read_them_back,
        weight_errors_are_plain,
        commit_then_reveal,
        blocks_stream_and_hashes
    );

    #[tokio::test]
    async fn registration_costs_the_burn() {
        let h = Local::new();
        let poor = key("//Ferdie");
        let err = h.0.register(&poor, NETUID, &Hotkey([1; 32])).await.expect_err("unfunded");
        assert!(matches!(err, ChainError::InsufficientBalance { needed: TAO, balance: 0, .. }), "{err}");
    }
}
