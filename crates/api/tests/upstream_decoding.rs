//! Documents decode as upstream's YAML decoder (sigs.k8s.io/yaml over encoding/json) reads
//! them: field names in any case, and YAML booleans or numbers where a string is expected.

use serde_json::json;

#[test]
fn field_names_match_in_any_case() {
    let doc = json!({
        "APIVersion": "projectcalico.org/v3",
        "Kind": "FelixConfiguration",
        "Metadata": {"Name": "default"},
        "Spec": {"XDPRefreshInterval": "90s", "logseverityscreen": "Info", "IPIPEnabled": true}
    });
    let r = calico_api::parse_resource(doc).unwrap();
    assert_eq!(r.value["metadata"]["name"], "default");
    assert_eq!(r.value["spec"]["xdpRefreshInterval"], "90s");
    assert_eq!(r.value["spec"]["logSeverityScreen"], "Info");
    assert_eq!(r.value["spec"]["ipipEnabled"], true);

    // Nested structs and lists too.
    let doc = json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "p"},
        "spec": {"Selector": "all()", "Ingress": [{"Action": "Allow", "Source": {"Nets": ["10.0.0.0/8"]}}]}
    });
    let r = calico_api::parse_resource(doc).unwrap();
    assert_eq!(
        r.value["spec"]["ingress"][0]["source"]["nets"][0],
        "10.0.0.0/8"
    );

    // Label keys are data, never renamed.
    let doc = json!({
        "apiVersion": "projectcalico.org/v3", "kind": "Profile",
        "metadata": {"name": "p", "labels": {"Role": "db"}}, "spec": {}
    });
    let r = calico_api::parse_resource(doc).unwrap();
    assert_eq!(r.value["metadata"]["labels"]["Role"], "db");
}

#[test]
fn scalars_where_strings_are_expected_are_their_text() {
    let doc = json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
        "metadata": {"name": "blacklist", "labels": {"IP-blacklist": true, "rank": 3}},
        "spec": {"nets": ["192.0.2.0/24"]}
    });
    let r = calico_api::parse_resource(doc).unwrap();
    assert_eq!(r.value["metadata"]["labels"]["IP-blacklist"], "true");
    assert_eq!(r.value["metadata"]["labels"]["rank"], "3");
}

#[test]
fn what_upstream_refuses_is_still_refused() {
    // A field no spelling matches.
    let err = calico_api::parse_resource(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "Profile",
        "metadata": {"name": "p"}, "spec": {"Ingres": []}
    }))
    .unwrap_err();
    assert!(err.to_string().contains("spec.Ingres"), "{err}");
    // A list where a string is expected.
    let err = calico_api::parse_resource(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "p"}, "spec": {"selector": ["all()"]}
    }))
    .unwrap_err();
    assert!(err.to_string().contains("spec.selector"), "{err}");
    // A boolean where a number is expected.
    let err = calico_api::parse_resource(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "p"}, "spec": {"order": true}
    }))
    .unwrap_err();
    assert!(err.to_string().contains("spec.order"), "{err}");
}
