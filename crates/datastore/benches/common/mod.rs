//! The documents both datastore benchmarks write, so their figures compare.

use calico_datastore::{Key, Kind};
use serde_json::{Value, json};

/// A NetworkPolicy-shaped document of roughly 1 KB.
pub fn policy_value(i: usize) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": format!("policy-{i:05}"), "namespace": "bench",
                     "labels": {"app": "bench", "tier": "backend", "index": i.to_string()}},
        "spec": {
            "order": 100,
            "selector": "app == 'bench' && tier == 'backend'",
            "types": ["Ingress", "Egress"],
            "ingress": [{
                "action": "Allow", "protocol": "TCP",
                "source": {"selector": "role == 'frontend'", "nets": ["10.0.0.0/8", "192.168.0.0/16"]},
                "destination": {"ports": [80, 443, 8080, "9000:9100"]}
            }, {
                "action": "Deny", "protocol": "UDP",
                "source": {"notNets": ["172.16.0.0/12"], "namespaceSelector": "env != 'prod'"},
                "destination": {"ports": [53]}
            }],
            "egress": [{
                "action": "Allow", "protocol": "TCP",
                "destination": {"selector": "role == 'database' && zone in {'a', 'b', 'c'}",
                                "ports": [5432, 6379], "nets": ["10.10.0.0/16"]}
            }, {
                "action": "Log",
                "destination": {"domains": ["example.com", "api.example.com"]}
            }, {"action": "Pass"}]
        }
    })
}

pub fn key(i: usize) -> Key {
    Key::namespaced(Kind::NetworkPolicy, "bench", format!("policy-{i:05}"))
}
