//! The load the felix examples share: 250 policies x 20 rules (`POLICIES`
//! sets another count) selecting 10
//! local endpoints (and 50 on another host), in an embedded datastore.

#![allow(dead_code, reason = "each example uses a different part")]

use std::path::Path;
use std::sync::Arc;

use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, Kind, WriteOp};
use serde_json::{Value, json};

/// Policies in the load: `POLICIES` from the environment, else 250 (the
/// issue's 10k-rule load; 1250 is its 50k-rule load).
pub fn policies() -> u32 {
    std::env::var("POLICIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250)
}
/// Rules per policy.
pub const RULES: u32 = 20;

/// Writes one resource.
pub fn put(ds: &dyn Datastore, key: Key, value: Value) {
    ds.write_batch(vec![WriteOp::Upsert { key, value }])
        .expect("write");
}

/// Policy `n`, its ports shifted by `marker`.
pub fn policy(n: u32, marker: u32) -> Value {
    let rules: Vec<Value> = (0..RULES)
        .map(|k| {
            let port = 1000 + (n * RULES + k + marker) % 60000;
            let mut r = json!({"action": if k % 2 == 0 { "Allow" } else { "Deny" },
                "protocol": "TCP", "destination": {"ports": [port]}});
            match k % 3 {
                0 => r["source"] = json!({"nets": [format!("10.{}.{}.0/24", n % 250, k)]}),
                1 => r["source"] = json!({"selector": format!("role == 'r{}'", (n + k) % 50)}),
                _ => {}
            }
            r
        })
        .collect();
    json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": format!("bench-{n}")},
        "spec": {"order": n, "selector": "app == 'bench'", "types": ["Ingress"], "ingress": rules}})
}

/// A store in `dir` holding the load, felix's node being `bench`.
pub fn store(dir: &Path) -> Arc<dyn Datastore> {
    let ds: Arc<dyn Datastore> = Arc::new(SqliteDatastore::open(&dir.join("c.db")).expect("store"));
    put(
        ds.as_ref(),
        Key::global(Kind::Profile, "calico"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
            "metadata": {"name": "calico"}, "spec": {"ingress": [{"action": "Allow"}]}}),
    );
    for e in 0..60u32 {
        let local = e < 10;
        put(
            ds.as_ref(),
            Key::namespaced(Kind::WorkloadEndpoint, "default", format!("ep{e}")),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                "metadata": {"name": format!("ep{e}"), "namespace": "default",
                             "labels": {"app": "bench", "role": format!("r{}", e % 50)}},
                "spec": {"node": if local { "bench" } else { "other" }, "orchestrator": "mesos",
                         "interfaceName": format!("calibench{e}"),
                         "ipNetworks": [format!("10.200.0.{}/32", e + 1)], "profiles": ["calico"]}}),
        );
    }
    for n in 0..policies() {
        put(
            ds.as_ref(),
            Key::global(Kind::GlobalNetworkPolicy, format!("bench-{n}")),
            policy(n, 0),
        );
    }
    ds
}
