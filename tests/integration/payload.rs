//! Payloads through real storage: a valid one verifies, any other size is refused on HEAD.

use ferrum_common::Hotkey;
use ferrum_common::codec::{dct, encode};
use ferrum_common::config::Preset;
use ferrum_common::keys::Namespace;
use ferrum_common::payload::{Expectation, FetchError, PayloadHeader, PayloadLayout, Rejection, build, fetch};
use ferrum_common::storage::Store;
use sp_core::Pair;

async fn fetch_verifies_and_refuses_wrong_sizes(store: Store) {
    let config = Preset::Test.config();
    let layout = PayloadLayout::new(&config);
    let key = sp_core::sr25519::Pair::from_string("//Charlie", None).expect("dev key");
    let header = PayloadHeader {
        netuid: 1,
        uid: 2,
        window: 9,
        hotkey: Hotkey(key.public().0),
        config_hash: config.hash(),
        base_fingerprint: [0; 32],
        samples_digest: [0; 32],
    };
    let mut bases = dct::Bases::default();
    let tensors: Vec<_> = layout
        .spec
        .tensors
        .iter()
        .map(|(_, g)| encode(&vec![0.5f32; g.numel()], g, &layout.spec, &mut bases))
        .collect();
    let bytes = build(&header, &tensors, &layout, &key).expect("build");
    let ns = Namespace::new(1, &header.config_hash);
    let k = ns.payload(9, 2, &header.hotkey);
    store.put(&k, bytes.into()).await.expect("put");
    let expect = Expectation { netuid: 1, window: 9, uid: 2, hotkey: &header.hotkey, config_hash: &header.config_hash };
    let (info, payload, bytes) = fetch(&store, &k, &layout, &expect).await.expect("fetch");
    assert_eq!(
        payload.hash.as_slice(),
        &bytes[bytes.len() - 96..bytes.len() - 64],
        "the content id is the stored hash"
    );
    assert_eq!(info.size as usize, layout.size());
    assert_eq!(payload.tensors, tensors);

    let big = ns.payload(9, 3, &header.hotkey);
    store.put(&big, vec![0u8; 10 * layout.size()].into()).await.expect("put");
    match fetch(&store, &big, &layout, &Expectation { uid: 3, ..expect }).await {
        Err(FetchError::Rejected(Rejection::Size { got, .. })) => assert_eq!(got as usize, 10 * layout.size()),
        other => panic!("expected a size rejection, got {other:?}"),
    }
    let replay = Expectation { window: 10, ..expect };
    assert!(matches!(fetch(&store, &k, &layout, &replay).await, Err(FetchError::Rejected(Rejection::Window { .. }))));
}

crate::on_both_backends!(fetch_verifies_and_refuses_wrong_sizes);
