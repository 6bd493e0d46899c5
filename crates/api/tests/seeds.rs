//! The seed resources shipped with the DC/OS package must parse and keep every field.

use calico_api::{Kind, parse_resource};
use serde_json::{Value, json};

fn parse(doc: Value) -> Value {
    match parse_resource(doc) {
        Ok(r) => r.value,
        Err(e) => panic!("seed rejected: {e}"),
    }
}

/// Keys in `value`'s top-level order.
fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn network_policy_seed() {
    // The caller (calicoctl) sets the default namespace before parsing.
    let doc = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-bookstore-cliient-to-server", "namespace": "default"},
        "spec": {
            "selector": "biz_type == 'bookstore' && role == 'server'",
            "types": ["Ingress"],
            "ingress": [
                {"action": "Allow", "protocol": "TCP",
                 "source": {"selector": " biz_type == 'bookstore'"},
                 "destination": {"ports": [80]}},
                {"action": "Deny", "protocol": "TCP",
                 "source": {"selector": "biz_type == 'fruitstore'"},
                 "destination": {"ports": [80]}}
            ]
        }
    });
    let r = parse_resource(doc).expect("valid");
    assert_eq!(r.kind, Kind::NetworkPolicy);
    assert_eq!(r.name(), "allow-bookstore-cliient-to-server");
    assert_eq!(r.namespace(), Some("default"));
    let v = r.value;
    assert_eq!(keys(&v), ["apiVersion", "kind", "metadata", "spec"]);
    assert_eq!(
        v["spec"],
        json!({
            "tier": "default",
            "ingress": [
                {"action": "Allow", "protocol": "TCP",
                 "source": {"selector": " biz_type == 'bookstore'"},
                 "destination": {"ports": [80]}},
                {"action": "Deny", "protocol": "TCP",
                 "source": {"selector": "biz_type == 'fruitstore'"},
                 "destination": {"ports": [80]}}
            ],
            "selector": "biz_type == 'bookstore' && role == 'server'",
            "types": ["Ingress"]
        })
    );
    assert_eq!(
        keys(&v["spec"]),
        ["tier", "ingress", "selector", "types"],
        "upstream's field order"
    );
}

#[test]
fn profile_seed() {
    let doc = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {
            "creationTimestamp": "2019-12-23T04:16:55Z",
            "name": "calico",
            "resourceVersion": "75",
            "uid": "0e105ecb-253b-11ea-9e52-065b6833052c"
        },
        "spec": {
            "egress": [{"action": "Allow", "destination": {}, "source": {}}],
            "ingress": [{"action": "Allow", "destination": {},
                         "source": {"selector": "has(calico)"}}],
            "labelsToApply": {"calico": ""}
        }
    });
    let v = parse(doc);
    assert_eq!(
        v,
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {
                "name": "calico",
                "uid": "0e105ecb-253b-11ea-9e52-065b6833052c",
                "resourceVersion": "75",
                "creationTimestamp": "2019-12-23T04:16:55Z"
            },
            "spec": {
                "ingress": [{"action": "Allow", "source": {"selector": "has(calico)"},
                             "destination": {}}],
                "egress": [{"action": "Allow", "source": {}, "destination": {}}],
                "labelsToApply": {"calico": ""}
            }
        })
    );
    // Empty entity rules are printed, as calicoctl (Go) prints them.
    assert_eq!(
        keys(&v["spec"]["egress"][0]),
        ["action", "source", "destination"]
    );
    assert_eq!(
        keys(&v["metadata"]),
        ["name", "uid", "resourceVersion", "creationTimestamp"]
    );
}

#[test]
fn ippool_seed() {
    let doc = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "net2"},
        "spec": {"cidr": "10.1.0.0/16", "natOutgoing": true, "disabled": false}
    });
    let v = parse(doc);
    assert_eq!(
        v["spec"],
        json!({
            "cidr": "10.1.0.0/16",
            "vxlanMode": "Never",
            "ipipMode": "Never",
            "natOutgoing": true,
            "blockSize": 26,
            "nodeSelector": "all()",
            "allowedUses": ["Workload", "Tunnel"],
            "assignmentMode": "Automatic"
        })
    );
}

#[test]
fn output_parses_again_unchanged() {
    let doc = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "gnp", "labels": {"a": "b"}},
        "spec": {"order": 100, "egress": [{"action": "Allow", "protocol": "UDP",
                 "destination": {"ports": ["53", "1000:2000"]}}]}
    });
    let once = parse(doc);
    assert_eq!(once["spec"]["order"], json!(100));
    assert_eq!(once["spec"]["types"], json!(["Egress"]));
    assert_eq!(
        once["spec"]["egress"][0]["destination"]["ports"],
        json!([53, "1000:2000"])
    );
    assert_eq!(parse(once.clone()), once);
}
