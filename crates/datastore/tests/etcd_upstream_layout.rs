//! Interoperability with upstream Calico's etcdv3 data: keys and values written exactly as
//! upstream calicoctl / libcalico-go write them read back through the `Datastore` API, and
//! what this backend writes lands at upstream's keys in upstream's encoding.

use calico_datastore::etcd::testing::{EtcdServer, etcd_or_skip, upstream};
use calico_datastore::etcd::{EtcdDatastore, EtcdTls};
use calico_datastore::{Datastore, Key, Kind, WatchFilter};
use serde_json::{Value, json};

/// Raw etcd access, as upstream's client would do it.
struct Raw {
    rt: tokio::runtime::Runtime,
    client: etcd_client::Client,
}

impl Raw {
    fn connect(endpoints: &[String]) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt
            .block_on(etcd_client::Client::connect(endpoints, None))
            .unwrap();
        Self { rt, client }
    }

    fn put(&self, key: &str, value: &str) -> i64 {
        let mut c = self.client.clone();
        let resp = self.rt.block_on(c.put(key, value, None)).unwrap();
        resp.header().unwrap().revision()
    }

    fn get(&self, key: &str) -> Option<(Value, i64)> {
        let mut c = self.client.clone();
        let resp = self.rt.block_on(c.get(key, None)).unwrap();
        resp.kvs().first().map(|kv| {
            (
                serde_json::from_slice(kv.value()).unwrap(),
                kv.mod_revision(),
            )
        })
    }
}

#[test]
fn upstream_data_reads_back() {
    let Some(bin) = etcd_or_skip("upstream_data_reads_back") else {
        return;
    };
    let server = EtcdServer::single(&bin);
    let raw = Raw::connect(&server.endpoints());
    let revs: Vec<i64> = upstream::ALL.iter().map(|(k, v)| raw.put(k, v)).collect();
    let (policy_rev, pool_rev) = (revs[0], revs[2]);
    raw.put(
        "/calico/ipam/v2/config",
        r#"{"strict_affinity":true,"auto_allocate_blocks":true}"#,
    );
    // Keys of upstream components this model does not cover are left alone.
    raw.put(
        "/calico/felix/v1/host/node-1/config/LogSeverityScreen",
        "Info",
    );

    let store = EtcdDatastore::connect(&server.endpoints(), &EtcdTls::default()).unwrap();
    let pol = store
        .get(&Key::namespaced(
            Kind::NetworkPolicy,
            "production",
            "allow-tcp-6379",
        ))
        .unwrap()
        .expect("policy");
    assert_eq!(pol.mod_revision, policy_rev);
    assert_eq!(
        pol.value["metadata"]["resourceVersion"],
        policy_rev.to_string()
    );
    assert_eq!(
        pol.value["metadata"]["uid"],
        "2b3a4c5d-1111-4222-8333-444455556666"
    );
    assert_eq!(pol.value["spec"]["selector"], "role == 'database'");
    let pools = store.list(Kind::IpPool, None).unwrap();
    assert_eq!(pools.items.len(), 1);
    assert_eq!(pools.items[0].key.name, "default-ipv4-ippool");
    assert_eq!(pools.items[0].mod_revision, pool_rev);
    assert_eq!(pools.items[0].value["spec"]["cidr"], "10.0.0.0/16");

    let block = store
        .get(&Key::global(Kind::IpamBlock, "10-0-0-0-26"))
        .unwrap()
        .expect("block");
    assert_eq!(block.value["kind"], "IPAMBlock");
    assert_eq!(block.value["spec"]["cidr"], "10.0.0.0/26");
    assert_eq!(block.value["spec"]["affinity"], "host:node-1");
    let allocations = block.value["spec"]["allocations"].as_array().unwrap();
    assert_eq!(allocations.len(), 64);
    assert_eq!(allocations[..3], [json!(0), json!(1), json!(null)]);
    assert_eq!(
        block.value["spec"]["attributes"][1]["handle_id"],
        "k8s-pod-network.abc123"
    );
    let aff = store.list(Kind::BlockAffinity, None).unwrap().items;
    assert_eq!(aff.len(), 1);
    assert_eq!(aff[0].key.name, "node-1-10-0-0-0-26");
    assert_eq!(aff[0].value["spec"]["node"], "node-1");
    assert_eq!(aff[0].value["spec"]["state"], "confirmed");
    let handle = store
        .get(&Key::global(Kind::IpamHandle, "k8s-pod-network.abc123"))
        .unwrap()
        .expect("handle");
    assert_eq!(handle.value["spec"]["handleID"], "k8s-pod-network.abc123");
    assert_eq!(handle.value["spec"]["block"]["10.0.0.0/26"], 1);
    let cfg = store
        .get(&Key::global(Kind::IpamConfiguration, "default"))
        .unwrap()
        .expect("config");
    assert_eq!(cfg.value["spec"]["strictAffinity"], true);
    assert_eq!(cfg.value["spec"]["autoAllocateBlocks"], true);

    // A watch over everything replays these, skipping the Felix key.
    let mut w = store.watch(WatchFilter::default(), 0).unwrap();
    let mut kinds = Vec::new();
    while let Some(ev) = w.next(std::time::Duration::from_millis(300)).unwrap() {
        kinds.push(ev.key.kind.as_str());
    }
    assert_eq!(
        kinds,
        [
            "NetworkPolicy",
            "GlobalNetworkPolicy",
            "IPPool",
            "Profile",
            "WorkloadEndpoint",
            "IPAMBlock",
            "BlockAffinity",
            "IPAMHandle",
            "IPAMHandle",
            "IPAMConfiguration"
        ]
    );

    // An update through this backend keeps upstream's encoding.
    let mut v = pol.value.clone();
    v["spec"]["order"] = json!(200);
    let updated = store.update(&pol.key, v, Some(pol.mod_revision)).unwrap();
    let (stored, rev) = raw.get(upstream::POLICY_KEY).unwrap();
    assert_eq!(rev, updated.mod_revision);
    assert_eq!(stored["spec"]["order"], 200);
    assert_eq!(stored["metadata"].get("resourceVersion"), None);
    assert_eq!(
        stored["metadata"]["creationTimestamp"],
        "2024-03-01T10:00:00Z"
    );
}

#[test]
fn writes_land_in_upstream_layout() {
    let Some(bin) = etcd_or_skip("writes_land_in_upstream_layout") else {
        return;
    };
    let server = EtcdServer::single(&bin);
    let raw = Raw::connect(&server.endpoints());
    let store = EtcdDatastore::connect(&server.endpoints(), &EtcdTls::default()).unwrap();

    let gnp = store
        .create(
            &Key::global(Kind::GlobalNetworkPolicy, "deny-all"),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                   "metadata": {"name": "deny-all"},
                   "spec": {"selector": "all()", "types": ["Ingress"]}}),
        )
        .unwrap();
    let (stored, rev) = raw
        .get("/calico/resources/v3/projectcalico.org/globalnetworkpolicies/deny-all")
        .expect("upstream key");
    assert_eq!(rev, gnp.mod_revision);
    assert_eq!(stored["kind"], "GlobalNetworkPolicy");
    assert_eq!(stored["metadata"]["uid"], gnp.value["metadata"]["uid"]);
    assert_eq!(stored["metadata"].get("resourceVersion"), None);

    store
        .create(
            &Key::global(Kind::IpamBlock, "10-0-0-0-30"),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "IPAMBlock",
                   "metadata": {"name": "10-0-0-0-30"},
                   "spec": {"cidr": "10.0.0.0/30", "affinity": "host:n1", "strictAffinity": false,
                            "allocations": [0, null, null, null], "unallocated": [1, 2, 3],
                            "attributes": [{"handle_id": "h1", "secondary": {"node": "n1"}}],
                            "sequenceNumber": 1, "sequenceNumberForAllocation": {"0": 0},
                            "deleted": false}}),
        )
        .unwrap();
    let (block, _) = raw
        .get("/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-30")
        .expect("upstream block key");
    assert_eq!(block["cidr"], "10.0.0.0/30");
    assert_eq!(block["affinity"], "host:n1");
    assert_eq!(block["allocations"], json!([0, null, null, null]));
    assert_eq!(block["attributes"][0]["handle_id"], "h1");

    store
        .create(
            &Key::global(Kind::BlockAffinity, "n1-10-0-0-0-30"),
            json!({"spec": {"type": "host", "state": "confirmed", "node": "n1",
                            "cidr": "10.0.0.0/30", "deleted": "false"}}),
        )
        .unwrap();
    let (aff, _) = raw
        .get("/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-30")
        .expect("upstream affinity key");
    assert_eq!(aff["state"], "confirmed");
    assert_eq!(aff["deleted"], false);

    store
        .create(
            &Key::global(Kind::IpamHandle, "h1"),
            json!({"spec": {"handleID": "h1", "block": {"10.0.0.0/30": 1}, "deleted": false}}),
        )
        .unwrap();
    let (handle, _) = raw.get("/calico/ipam/v2/handle/h1").expect("handle key");
    assert_eq!(handle["block"]["10.0.0.0/30"], 1);
    assert_eq!(handle["deleted"], false);
}
