//! The operator docs name only metrics the nodes export, and every metric the nodes export is
//! documented.

use std::collections::BTreeSet;

fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("ferrum_") {
        let name: String = text[i..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
        // Crate paths (ferrum_node::…) are not metrics.
        if !text[i + name.len()..].starts_with("::") && name.len() > "ferrum_".len() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn documented_metrics_are_the_exported_ones() {
    let root = env!("CARGO_MANIFEST_DIR");
    let read = |p: &str| std::fs::read_to_string(format!("{root}/{p}")).unwrap_or_else(|e| panic!("{p}: {e}"));
    let code = ["miner/src/run.rs", "validator/src/run.rs"].map(read).join("\n");
    let exported: BTreeSet<String> = names(&code)
        .into_iter()
        .filter(|n| !matches!(n.as_str(), "ferrum_miner" | "ferrum_validator" | "ferrum_common" | "ferrum_gauntlet"))
        .collect();
    let doc = names(&read("docs/metrics.md"));
    let dashboard = names(&read("docs/grafana/ferrum.json"));
    assert!(!exported.is_empty());
    for n in &exported {
        assert!(doc.contains(n), "{n} is exported but not in docs/metrics.md");
    }
    for n in doc.iter().chain(&dashboard) {
        assert!(exported.contains(n), "{n} is documented but no node exports it");
    }
    serde_json::from_str::<serde_json::Value>(&read("docs/grafana/ferrum.json")).expect("dashboard is JSON");
}
