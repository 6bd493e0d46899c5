//! Every document the conformance corpus has that we accept must come out of
//! `parse_resource` in a form that parses again to the same value (defaults are idempotent
//! and output is valid input), and no document may make it panic.

use std::path::PathBuf;

use calico_api::{Kind, parse_resource};
use serde_json::Value;

fn corpus() -> Vec<Value> {
    let dir = std::env::var_os("CALICO_CONFORMANCE_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance"),
        PathBuf::from,
    );
    let text = std::fs::read_to_string(dir.join("validation.json")).expect("corpus readable");
    serde_json::from_str(&text).expect("corpus is JSON")
}

#[test]
fn accepted_documents_round_trip() {
    let mut accepted = 0;
    for case in corpus() {
        if case.get("kind").is_none() {
            continue;
        }
        let mut doc = case["value"].clone();
        let namespaced = case["kind"]
            .as_str()
            .and_then(Kind::from_document_kind)
            .is_some_and(Kind::is_namespaced);
        // As calicoctl does, namespaced documents without a namespace get `default`.
        if namespaced && let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.entry("namespace").or_insert_with(|| "default".into());
        }
        let Ok(first) = parse_resource(doc) else {
            continue;
        };
        let second = parse_resource(first.value.clone())
            .unwrap_or_else(|e| panic!("{}: output rejected: {e}", case["id"]));
        assert_eq!(first, second, "{}", case["id"]);
        accepted += 1;
    }
    assert!(accepted > 50, "only {accepted} documents accepted");
}
