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

mod arbitrary_documents {
    use calico_api::{ALL_KIND_NAMES, parse_resource, validate_fragment};
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    /// Keys the parser knows, so random documents reach deep into the typed structs.
    const KEYS: [&str; 16] = [
        "metadata",
        "spec",
        "name",
        "namespace",
        "ingress",
        "egress",
        "action",
        "protocol",
        "source",
        "destination",
        "ports",
        "nets",
        "selector",
        "cidr",
        "icmp",
        "labels",
    ];

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "[a-zA-Z0-9:./ ()=!&|'\"-]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..5).prop_map(
                    |kv| {
                        Value::Object(
                            kv.into_iter()
                                .map(|(k, v)| (k.to_owned(), v))
                                .collect::<Map<_, _>>(),
                        )
                    }
                ),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics(kind in prop::sample::select(ALL_KIND_NAMES.to_vec()), body in json_value()) {
            let mut doc = json!({"apiVersion": "projectcalico.org/v3", "kind": kind});
            if let (Some(d), Value::Object(extra)) = (doc.as_object_mut(), &body) {
                d.extend(extra.clone());
            }
            if let Ok(r) = parse_resource(doc) {
                prop_assert_eq!(parse_resource(r.value.clone()).ok(), Some(r));
            }
            let _ = validate_fragment("v3.Rule", &body);
            let _ = validate_fragment("v3.FelixConfigurationSpec", &body);
        }
    }
}
