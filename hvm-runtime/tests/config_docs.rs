//! `docs/config.md` describes every key pvio knows, honoured or accepted
//! without effect.

use pvio_hvm_runtime::config::keys::{KEYS, NO_EFFECT};

#[test]
fn every_key_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/config.md"))
        .expect("docs/config.md exists");
    let missing: Vec<&str> = KEYS
        .iter()
        .map(|k| k.name)
        .chain(NO_EFFECT.iter().map(|i| i.name))
        .filter(|name| !doc.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/config.md lacks a table row for {missing:?}"
    );
}
