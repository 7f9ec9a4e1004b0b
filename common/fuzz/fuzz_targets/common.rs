//! A valid payload of the `test` preset, signed by //Bob, shared by the fuzz targets.

use std::sync::OnceLock;

use ferrum_common::codec::{dct, encode};
use ferrum_common::config::Preset;
use ferrum_common::payload::{Expectation, PayloadHeader, PayloadLayout, build};
use ferrum_common::{ConfigHash, Hotkey};
use sp_core::{Pair, sr25519};

pub struct Fixture {
    pub layout: PayloadLayout,
    pub header: PayloadHeader,
    // Each target compiles this module on its own; only `payload_body` signs.
    #[allow(dead_code)]
    pub key: sr25519::Pair,
    pub valid: Vec<u8>,
}

impl Fixture {
    pub fn expect(&self) -> Expectation<'_> {
        Expectation {
            netuid: self.header.netuid,
            window: self.header.window,
            uid: self.header.uid,
            hotkey: &self.header.hotkey,
            config_hash: &self.header.config_hash,
        }
    }
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let config = Preset::Test.config();
        let layout = PayloadLayout::new(&config);
        let key = sr25519::Pair::from_string("//Bob", None).expect("dev key");
        let header = PayloadHeader {
            netuid: 3,
            uid: 7,
            window: 51_802,
            hotkey: Hotkey(key.public().0),
            config_hash: ConfigHash(config.hash().0),
            base_fingerprint: [1; 32],
            samples_digest: [2; 32],
        };
        let mut bases = dct::Bases::default();
        let tensors: Vec<_> = layout
            .spec
            .tensors
            .iter()
            .map(|(_, g)| {
                let x: Vec<f32> = (0..g.numel()).map(|i| ((i as f32) * 0.37).sin() * 0.01).collect();
                encode(&x, g, &layout.spec, &mut bases)
            })
            .collect();
        let valid = build(&header, &tensors, &layout, &key).expect("build");
        Fixture { layout, header, key, valid }
    })
}
