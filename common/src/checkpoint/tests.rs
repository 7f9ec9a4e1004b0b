use super::*;
use crate::config::Preset;
use crate::storage::{Location, StorageLimits};

fn setup() -> (tempfile::TempDir, Store, SubnetConfig, Namespace) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Preset::Test.config();
    let store =
        Store::open_location(&Location::Local { root: dir.path().to_path_buf() }, StorageLimits::from(&config.storage))
            .expect("store");
    let ns = Namespace::new(1, &config.hash());
    (dir, store, config, ns)
}

fn stepped(config: &SubnetConfig) -> MasterModel {
    let mut m = MasterModel::genesis(config);
    let updates: Vec<Option<Vec<f32>>> =
        m.tensors.iter().enumerate().map(|(i, t)| Some(crate::codec::synthetic_delta(t.len(), i as u64))).collect();
    m.outer_step(&updates, 1.0, 2).expect("step");
    m
}

#[tokio::test]
async fn round_trip_keeps_the_fingerprint() {
    let (_dir, store, config, ns) = setup();
    let model = stepped(&config);
    let manifest = save(&store, &ns, &config.hash(), 12, 3, &model).await.expect("save");
    assert_eq!(manifest.fingerprint, model.fingerprint().to_string());
    let (back, m2) = load(&store, &ns, &config, 12).await.expect("load");
    assert_eq!(back, model);
    assert_eq!(back.fingerprint(), model.fingerprint());
    assert_eq!(m2, manifest);
    assert_eq!(latest(&store, &ns).await.expect("latest"), Some(12));
}

#[tokio::test]
async fn tensors_follow_the_hugging_face_names() {
    let (_dir, store, config, ns) = setup();
    let model = MasterModel::genesis(&config);
    let manifest = save(&store, &ns, &config.hash(), 1, 0, &model).await.expect("save");
    let bytes = store.get(&manifest.tensors_key, None).await.expect("get");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let v = st.tensor("model.layers.1.self_attn.k_proj.weight").expect("k_proj");
    assert_eq!(v.shape(), [32, 64]);
    assert!(st.tensor("model.embed_tokens.weight").is_ok());
    assert!(st.tensor("model.norm.weight").is_ok());
}

#[tokio::test]
async fn a_checkpoint_without_its_manifest_does_not_exist() {
    let (_dir, store, config, ns) = setup();
    let model = MasterModel::genesis(&config);
    save(&store, &ns, &config.hash(), 5, 1, &model).await.expect("save");
    // Tensors of a newer window, uploaded but not yet completed by a manifest.
    store.put(&ns.checkpoint_tensors(9), vec![1u8; 10].into()).await.expect("put");
    assert_eq!(latest(&store, &ns).await.expect("latest"), Some(5));
    assert!(matches!(load(&store, &ns, &config, 9).await, Err(CheckpointError::Storage(_))));
}

#[tokio::test]
async fn truncated_altered_or_foreign_checkpoints_are_refused() {
    let (dir, store, config, ns) = setup();
    let model = stepped(&config);
    let manifest = save(&store, &ns, &config.hash(), 7, 2, &model).await.expect("save");
    let tensors_path = dir.path().join(&manifest.tensors_key);
    let good = std::fs::read(&tensors_path).expect("read");

    // Truncated.
    std::fs::write(&tensors_path, &good[..good.len() - 1]).expect("write");
    assert!(matches!(load(&store, &ns, &config, 7).await, Err(CheckpointError::TensorsHash)));
    // One value altered, same size.
    let mut bad = good.clone();
    let at = bad.len() - 3;
    bad[at] ^= 0x40;
    std::fs::write(&tensors_path, &bad).expect("write");
    assert!(matches!(load(&store, &ns, &config, 7).await, Err(CheckpointError::TensorsHash)));
    // Altered and the manifest's hash "fixed" to match: the fingerprint still catches it.
    let mpath = dir.path().join(ns.checkpoint_manifest(7));
    let mut m = manifest.clone();
    m.tensors_blake3 = blake3::hash(&bad).to_hex().to_string();
    std::fs::write(&mpath, serde_json::to_vec(&m).expect("json")).expect("write");
    assert!(matches!(load(&store, &ns, &config, 7).await, Err(CheckpointError::Fingerprint { .. })));
    // Garbage where the tensors should be (hash matching): a format error, no panic.
    std::fs::write(&tensors_path, b"not safetensors at all").expect("write");
    m.tensors_bytes = 22;
    m.tensors_blake3 = blake3::hash(b"not safetensors at all").to_hex().to_string();
    std::fs::write(&mpath, serde_json::to_vec(&m).expect("json")).expect("write");
    assert!(matches!(load(&store, &ns, &config, 7).await, Err(CheckpointError::Format(_))));
    // Another config's checkpoint.
    std::fs::write(&tensors_path, &good).expect("write");
    std::fs::write(&mpath, serde_json::to_vec(&manifest).expect("json")).expect("write");
    let mut other = config.clone();
    other.training.inner_steps += 1;
    assert!(matches!(load(&store, &ns, &other, 7).await, Err(CheckpointError::Config { .. })));
    // Intact again: loads.
    load(&store, &ns, &config, 7).await.expect("restored");
    // A manifest that is not JSON.
    std::fs::write(&mpath, b"{").expect("write");
    assert!(matches!(load(&store, &ns, &config, 7).await, Err(CheckpointError::Manifest(_))));
}

#[test]
fn wrong_shapes_and_non_finite_values_are_refused() {
    let config = Preset::Test.config();
    let mut model = MasterModel::genesis(&config);
    model.tensors[2][0] = f32::NAN;
    let bytes = to_safetensors(&model, HashMap::new()).expect("serialize");
    assert!(matches!(from_safetensors(&bytes, &config), Err(CheckpointError::Tensor { .. })));
    let mut bigger = config.clone();
    bigger.model.hidden_size = 128;
    let bytes = to_safetensors(&MasterModel::genesis(&config), HashMap::new()).expect("serialize");
    assert!(from_safetensors(&bytes, &bigger).is_err());
}
