//! Checkpoints through real storage: save, find the latest, load with the same fingerprint.

use ferrum_common::checkpoint::{self, CheckpointError};
use ferrum_common::config::Preset;
use ferrum_common::keys::Namespace;
use ferrum_common::model::MasterModel;
use ferrum_common::storage::Store;

async fn checkpoint_round_trip(store: Store) {
    let config = Preset::Test.config();
    let ns = Namespace::new(2, &config.hash());
    let mut model = MasterModel::genesis(&config);
    checkpoint::save(&store, &ns, &config.hash(), 3, 1, &model).await.expect("save 3");
    let updates: Vec<Option<Vec<f32>>> =
        model.tensors.iter().map(|t| Some(ferrum_common::codec::synthetic_delta(t.len(), 9))).collect();
    model.outer_step(&updates, 1.0, 2).expect("step");
    checkpoint::save(&store, &ns, &config.hash(), 4, 2, &model).await.expect("save 4");

    assert_eq!(checkpoint::latest(&store, &ns).await.expect("latest"), Some(4));
    let (back, manifest) = checkpoint::load(&store, &ns, &config, 4).await.expect("load");
    assert_eq!(back.fingerprint(), model.fingerprint());
    assert_eq!((manifest.window, manifest.global_step), (4, 2));
    let (older, _) = checkpoint::load(&store, &ns, &config, 3).await.expect("load 3");
    assert_eq!(older, MasterModel::genesis(&config));
    assert!(
        matches!(checkpoint::load(&store, &ns, &config, 5).await, Err(CheckpointError::Storage(e)) if e.is_not_found())
    );
}

crate::on_both_backends!(checkpoint_round_trip);
