//! FelixConfiguration rules beyond the vendored vectors: where `nodeSelector` may appear.

use serde_json::json;

fn doc(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
           "metadata": {"name": name}, "spec": spec})
}

#[test]
fn node_selector_only_on_resources_named_for_neither_all_nor_one_node() {
    let selected = json!({"nodeSelector": "rack == 'a'", "healthPort": 9199});
    calico_api::parse_resource(doc("rack-a", selected.clone())).unwrap();
    for name in ["default", "node.h1"] {
        let err = calico_api::parse_resource(doc(name, selected.clone())).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("spec.nodeSelector") && text.contains(name),
            "{name}: {text}"
        );
    }
    let err =
        calico_api::parse_resource(doc("rack-a", json!({"nodeSelector": "rack =="}))).unwrap_err();
    assert!(err.to_string().contains("invalid selector"), "{err}");
}
