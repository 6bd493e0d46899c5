//! felix when the kernel will not take what it is given, and the kernel work
//! around endpoints (conntrack, sysctls, policy generations), with
//! recording fakes: a chain nft rejects is failed closed alone, readiness
//! goes false and a metric counts it; a removed endpoint's flows are
//! deleted; every change uses a new policy generation whose stale flows are
//! deleted first.

mod common;

use std::sync::Arc;
use std::time::Instant;

use calico_dataplane::{
    ConntrackCall, RecordingConntrack, RecordingNft, render::CT_GENERATION_MASK,
};
use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, Kind};
use calico_felix::{Config, Felix, Kernel};
use calico_netlink::fake::{FakeNetlink, FakeSysctl};
use common::{Shared, put};
use serde_json::json;

fn wep(ds: &dyn Datastore, name: &str, iface: &str, ip: &str) {
    put(
        ds,
        Key::namespaced(Kind::WorkloadEndpoint, "default", name),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"node": "h1", "orchestrator": "mesos", "workload": name, "endpoint": "eth0",
                     "interfaceName": iface, "ipNetworks": [format!("{ip}/32")],
                     "profiles": ["calico"]}}),
    );
}

fn gnp(ds: &dyn Datastore, name: &str, port: u16) {
    put(
        ds,
        Key::global(Kind::GlobalNetworkPolicy, name),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": name},
            "spec": {"tier": "default", "order": 10, "selector": "app == 'web'",
                     "types": ["Ingress"],
                     "ingress": [{"action": "Allow", "protocol": "TCP",
                                  "destination": {"ports": [port]}}]}}),
    );
}

struct Rig {
    ds: Arc<dyn Datastore>,
    nft: Shared<RecordingNft>,
    ct: Shared<RecordingConntrack>,
    sysctl: Shared<FakeSysctl>,
    felix: Felix<FakeNetlink, Shared<RecordingNft>, Shared<RecordingConntrack>, Shared<FakeSysctl>>,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let ds: Arc<dyn Datastore> = Arc::new(SqliteDatastore::open(&dir.path().join("c.db")).unwrap());
    put(
        ds.as_ref(),
        Key::global(Kind::Profile, "calico"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
            "metadata": {"name": "calico"},
            "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}}),
    );
    wep(ds.as_ref(), "w1", "caliw1", "10.65.1.2");
    wep(ds.as_ref(), "w2", "caliw2", "10.65.1.3");
    gnp(ds.as_ref(), "good", 80);
    gnp(ds.as_ref(), "bad", 81);
    let (nft, ct, sysctl) = (Shared::default(), Shared::default(), Shared::default());
    let felix = Felix::new(
        Config::new("h1"),
        ds.clone(),
        Kernel {
            netlink: FakeNetlink::new(),
            nft: nft.clone(),
            conntrack: ct.clone(),
            sysctl: sysctl.clone(),
        },
    );
    Rig {
        ds,
        nft,
        ct,
        sysctl,
        felix,
        _dir: dir,
    }
}

/// What the table holds now (every batch so far played onto it).
fn table_now(nft: &Shared<RecordingNft>) -> String {
    serde_json::to_string(&nft.0.lock().unwrap().table).unwrap_or_default()
}

#[test]
fn a_rejected_policy_chain_is_failed_closed_alone_and_readiness_says_so() {
    let mut r = rig();
    r.nft.0.lock().unwrap().reject_comments = vec!["policy bad rule 0".to_owned()];
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    let status = r.felix.status();
    assert!(
        !status.ready.load(std::sync::atomic::Ordering::Relaxed),
        "not ready while a chain is failed closed"
    );
    let table = table_now(&r.nft);
    assert!(
        table.contains("fail closed: this chain could not be programmed"),
        "{table}"
    );
    // The good policy is programmed as it is; only the bad one drops.
    assert!(table.contains("tier default policy good rule 0 Allow"));
    assert!(!table.contains("tier default policy bad rule 0 Allow"));
    assert!(r.nft.0.lock().unwrap().checks > 0, "found by nft --check");
    let text = metrics_text(&r.felix);
    assert!(
        text.contains("felix_int_dataplane_failures_total 1"),
        "{text}"
    );
    assert!(text.contains("felix_failed_closed_chains 1"), "{text}");

    // The kernel takes it again (say, the cause was fixed): the next
    // change programs the whole table and readiness comes back.
    r.nft.0.lock().unwrap().reject_comments.clear();
    gnp(r.ds.as_ref(), "bad", 82);
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    assert!(status.ready.load(std::sync::atomic::Ordering::Relaxed));
    assert!(table_now(&r.nft).contains("tier default policy bad rule 0 Allow"));
}

#[test]
fn when_nothing_can_be_programmed_every_workload_interface_drops() {
    let mut r = rig();
    // A rule in no policy's chain: no per-chain fallback can avoid it.
    r.nft.0.lock().unwrap().reject_comments = vec!["neighbour discovery".to_owned()];
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    assert!(
        !r.felix
            .status()
            .ready
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    let table = table_now(&r.nft);
    assert!(
        table.contains("fail closed: workload traffic is dropped until policy is programmed"),
        "{table}"
    );
    assert!(
        !table.contains("policy good"),
        "nothing of the desired table"
    );
}

#[test]
fn removed_endpoint_flows_deleted_and_generations_never_reused_with_stale_flows() {
    let mut r = rig();
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    let flushes = |ct: &Shared<RecordingConntrack>| ct.0.lock().unwrap().calls.clone();
    assert_eq!(
        flushes(&r.ct),
        [ConntrackCall::FlushMark(1 << 16, CT_GENERATION_MASK)],
        "generation 1's stale flows are deleted before it is used"
    );
    r.felix.idle();
    assert_eq!(
        flushes(&r.ct)[1..],
        [ConntrackCall::FlushMark(2 << 16, CT_GENERATION_MASK)],
        "generation 2's once felix is idle"
    );
    r.felix.idle();
    assert_eq!(flushes(&r.ct).len(), 2, "and only once");
    // Nothing changed: no new generation, no batch.
    let batches = r.nft.0.lock().unwrap().batches.len();
    r.felix.program(Instant::now());
    assert_eq!(r.nft.0.lock().unwrap().batches.len(), batches);
    assert_eq!(flushes(&r.ct).len(), 2);
    // Sysctls of both interfaces: strict reverse-path filtering, no RAs.
    {
        let s = r.sysctl.0.lock().unwrap();
        for iface in ["caliw1", "caliw2"] {
            assert_eq!(s.values[&format!("net/ipv4/conf/{iface}/rp_filter")], "1");
            assert_eq!(
                s.values[&format!("net/ipv4/conf/{iface}/accept_redirects")],
                "0"
            );
        }
    }
    // w2 goes: its address's flows are deleted, and the change is a new generation.
    r.ds.delete(
        &Key::namespaced(Kind::WorkloadEndpoint, "default", "w2"),
        None,
    )
    .unwrap();
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    r.felix.idle();
    let calls = flushes(&r.ct);
    assert!(
        calls.contains(&ConntrackCall::FlushAddress("10.65.1.3".parse().unwrap())),
        "{calls:?}"
    );
    // Generation 2 was cleared beforehand; 3, the next, once idle.
    assert_eq!(
        calls
            .iter()
            .filter(|c| **c == ConntrackCall::FlushMark(2 << 16, CT_GENERATION_MASK))
            .count(),
        1
    );
    assert!(calls.contains(&ConntrackCall::FlushMark(3 << 16, CT_GENERATION_MASK)));
    assert!(!calls.contains(&ConntrackCall::FlushAddress("10.65.1.2".parse().unwrap())));
}

#[test]
fn felix_configuration_is_read_at_sync_node_over_default_over_built_in() {
    let mut r = rig();
    put(
        r.ds.as_ref(),
        Key::global(Kind::FelixConfiguration, "default"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
            "metadata": {"name": "default"},
            "spec": {"defaultEndpointToHostAction": "Accept", "workloadSourceSpoofing": "Any"}}),
    );
    put(
        r.ds.as_ref(),
        Key::namespaced(Kind::WorkloadEndpoint, "default", "w1"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": "w1", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"node": "h1", "orchestrator": "mesos", "workload": "w1", "endpoint": "eth0",
                     "interfaceName": "caliw1", "ipNetworks": ["10.65.1.2/32"],
                     "allowSpoofedSourcePrefixes": ["192.0.2.0/24"],
                     "profiles": ["calico"]}}),
    );
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    let table = table_now(&r.nft);
    assert!(
        table.contains("DefaultEndpointToHostAction Accept"),
        "{table}"
    );
    assert!(
        table.contains(r#""addr":"192.0.2.0","len":24"#),
        "spoofing allowed: {table}"
    );
    assert_eq!(
        r.sysctl.0.lock().unwrap().values["net/ipv4/conf/caliw1/rp_filter"],
        "0",
        "the kernel's reverse-path check is off where nft allows extra sources"
    );

    // This node's own resource wins over default.
    put(
        r.ds.as_ref(),
        Key::global(Kind::FelixConfiguration, "node.h1"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
            "metadata": {"name": "node.h1"},
            "spec": {"defaultEndpointToHostAction": "Drop", "workloadSourceSpoofing": "Disabled"}}),
    );
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    let table = table_now(&r.nft);
    assert!(
        table.contains("DefaultEndpointToHostAction Drop"),
        "{table}"
    );
    assert!(!table.contains("192.0.2.0"), "spoofing no longer allowed");
    assert_eq!(
        r.sysctl.0.lock().unwrap().values["net/ipv4/conf/caliw1/rp_filter"],
        "1"
    );
}

#[test]
fn endpoint_status_files_say_which_endpoints_are_programmed() {
    let status = tempfile::tempdir().unwrap();
    // A file an earlier run left for an endpoint that is gone.
    std::fs::create_dir_all(status.path().join("default")).unwrap();
    std::fs::write(status.path().join("default/gone"), "up\n").unwrap();
    let mut r = rig();
    let mut cfg = Config::new("h1");
    cfg.endpoint_status_dir = Some(status.path().to_owned());
    r.felix = Felix::new(
        cfg,
        r.ds.clone(),
        Kernel {
            netlink: FakeNetlink::new(),
            nft: r.nft.clone(),
            conntrack: r.ct.clone(),
            sysctl: r.sysctl.clone(),
        },
    );
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    let files = || {
        let mut v: Vec<String> = std::fs::read_dir(status.path().join("default"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files(), ["w1", "w2"]);
    r.ds.delete(
        &Key::namespaced(Kind::WorkloadEndpoint, "default", "w2"),
        None,
    )
    .unwrap();
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    assert_eq!(files(), ["w1"]);
}

#[test]
fn a_policy_this_dataplane_cannot_enforce_is_said_and_readiness_is_false() {
    let mut r = rig();
    // Written past calicoctl (which refuses it), e.g. with etcdctl.
    put(
        r.ds.as_ref(),
        Key::global(Kind::GlobalNetworkPolicy, "raw"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "raw"},
            "spec": {"selector": "all()", "preDNAT": true, "applyOnForward": true,
                     "ingress": [{"action": "Deny"}]}}),
    );
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    assert!(
        !r.felix
            .status()
            .ready
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    let text = metrics_text(&r.felix);
    assert!(text.contains("felix_unenforced_policies 1"), "{text}");
    // Deleted: ready again.
    r.ds.delete(&Key::global(Kind::GlobalNetworkPolicy, "raw"), None)
        .unwrap();
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    assert!(
        r.felix
            .status()
            .ready
            .load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// Writes garbage (not JSON) over a global policy's stored value, behind the store's back.
fn corrupt_policy(r: &Rig, name: &str) {
    let conn = rusqlite::Connection::open(r._dir.path().join("c.db")).unwrap();
    let changed = conn
        .execute(
            "UPDATE events SET value = '{not json' WHERE rev =
             (SELECT mod_rev FROM kv WHERE kind = 'GlobalNetworkPolicy' AND name = ?1)",
            [name],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

fn metrics_text(
    felix: &Felix<
        FakeNetlink,
        Shared<RecordingNft>,
        Shared<RecordingConntrack>,
        Shared<FakeSysctl>,
    >,
) -> String {
    let mut text = String::new();
    let mut reg = prometheus_client::registry::Registry::default();
    felix.metrics().register(&mut reg);
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    text
}

#[test]
fn an_unreadable_record_never_stops_the_rest() {
    let mut r = rig();
    let ready = |r: &Rig| {
        r.felix
            .status()
            .ready
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // Garbage from the start: no good version of it is known.
    corrupt_policy(&r, "bad");
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    let table = table_now(&r.nft);
    assert!(
        table.contains("tier default policy good rule 0 Allow"),
        "{table}"
    );
    assert!(!table.contains("policy bad"));
    assert!(
        !ready(&r),
        "not ready with a record it knows nothing good of"
    );
    assert!(metrics_text(&r.felix).contains("felix_unreadable_records 1"));

    // Everything else still applies: a new policy, a new endpoint.
    gnp(r.ds.as_ref(), "later", 90);
    wep(r.ds.as_ref(), "w3", "caliw3", "10.65.1.4");
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    let table = table_now(&r.nft);
    assert!(table.contains("tier default policy later rule 0 Allow"));
    assert!(table.contains("to-caliw3"));

    // A policy that breaks keeps its last good version (dropping it would fail open).
    let mut broken = json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "good"},
        "spec": {"selector": "has(", "ingress": [{"action": "Allow"}]}});
    broken["spec"]["order"] = json!(10);
    r.ds.update(
        &Key::global(Kind::GlobalNetworkPolicy, "good"),
        broken,
        None,
    )
    .unwrap();
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    assert!(table_now(&r.nft).contains("tier default policy good rule 0 Allow"));

    // The garbage deleted (what calicoctl delete does): ready again, the broken policy
    // counted and kept.
    r.ds.delete(&Key::global(Kind::GlobalNetworkPolicy, "bad"), None)
        .unwrap();
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    assert!(ready(&r));
    assert!(metrics_text(&r.felix).contains("felix_unreadable_records 1"));
}

/// Kernel calls of both kinds in one log, to see their order.
#[derive(Clone, Default)]
struct Ordered(Arc<std::sync::Mutex<Vec<String>>>, Shared<RecordingNft>);

impl calico_dataplane::Nft for Ordered {
    fn apply(
        &mut self,
        batch: &nftables::schema::Nftables<'_>,
    ) -> Result<(), calico_dataplane::Error> {
        let rules = batch
            .objects
            .iter()
            .filter(|o| serde_json::to_string(o).is_ok_and(|s| s.contains("\"rule\"")))
            .count();
        self.0.lock().unwrap().push(format!("nft {rules} rules"));
        self.1.apply(batch)
    }
    fn check(
        &mut self,
        batch: &nftables::schema::Nftables<'_>,
    ) -> Result<(), calico_dataplane::Error> {
        self.1.check(batch)
    }
    fn list_owned(
        &mut self,
    ) -> Result<nftables::schema::Nftables<'static>, calico_dataplane::Error> {
        self.1.list_owned()
    }
}

impl calico_dataplane::Conntrack for Ordered {
    fn flush_address(&mut self, ip: std::net::IpAddr) -> Result<(), calico_dataplane::Error> {
        self.0.lock().unwrap().push(format!("flush {ip}"));
        Ok(())
    }
    fn flush_mark(&mut self, mark: u32, _mask: u32) -> Result<(), calico_dataplane::Error> {
        // Slow, as the real walk of the conntrack table is.
        std::thread::sleep(std::time::Duration::from_millis(1000));
        self.0.lock().unwrap().push(format!("sweep {}", mark >> 16));
        Ok(())
    }
}

#[test]
fn a_generation_is_swept_before_the_commit_that_puts_it_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let ds: Arc<dyn Datastore> = Arc::new(SqliteDatastore::open(&dir.path().join("c.db")).unwrap());
    put(
        ds.as_ref(),
        Key::global(Kind::Profile, "calico"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
            "metadata": {"name": "calico"}, "spec": {}}),
    );
    wep(ds.as_ref(), "w1", "caliw1", "10.65.1.2");
    // Enough rules for the cold start to go in several commits.
    for n in 0..130u16 {
        put(
            ds.as_ref(),
            Key::global(Kind::GlobalNetworkPolicy, format!("p{n}")),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                "metadata": {"name": format!("p{n}")},
                "spec": {"order": n, "selector": "app == 'web'", "types": ["Ingress"],
                         "ingress": (0..20u16).map(|k| json!({"action": "Allow", "protocol": "TCP",
                             "destination": {"ports": [1000 + n * 20 + k]}})).collect::<Vec<_>>()}}),
        );
    }
    let kernel = Ordered::default();
    let mut felix = Felix::new(
        Config::new("h1"),
        ds.clone(),
        Kernel {
            netlink: FakeNetlink::new(),
            nft: kernel.clone(),
            conntrack: kernel.clone(),
            sysctl: FakeSysctl::default(),
        },
    );
    // As at boot: the fail-closed table first, then the first sync.
    felix.fail_closed_until_synced();
    kernel.0.lock().unwrap().clear();
    felix.sync().unwrap();
    felix.program(Instant::now());
    let log = kernel.0.lock().unwrap().clone();
    let commits: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("nft"))
        .map(|(i, _)| i)
        .collect();
    assert!(commits.len() >= 2, "the cold start is one commit: {log:?}");
    let sweep = log
        .iter()
        .position(|l| l == "sweep 1")
        .expect("generation 1 swept");
    assert!(
        sweep < *commits.last().unwrap(),
        "generation 1 swept after the commit that put it in force: {log:?}"
    );
    // A later change: its generation was swept when felix was idle, before it.
    felix.idle();
    gnp(ds.as_ref(), "late", 99);
    felix.sync().unwrap();
    felix.program(Instant::now());
    let log = kernel.0.lock().unwrap().clone();
    let sweep2 = log
        .iter()
        .position(|l| l == "sweep 2")
        .expect("generation 2 swept");
    let last = log.iter().rposition(|l| l.starts_with("nft")).unwrap();
    assert!(sweep2 < last, "{log:?}");
}

#[test]
fn an_endpoint_whose_labels_are_pending_has_no_interface_so_its_traffic_drops() {
    let r = rig();
    // w1 as the Docker plugin writes it before it knows the container's labels.
    let key = Key::namespaced(Kind::WorkloadEndpoint, "default", "w1");
    let mut w1 = r.ds.get(&key).unwrap().unwrap().value;
    w1["metadata"]["annotations"] = json!({ calico_api::v3::LABELS_PENDING_ANNOTATION: "true" });
    put(r.ds.as_ref(), key.clone(), w1.clone());
    let mut felix = r.felix;
    felix.sync().unwrap();
    felix.program(Instant::now());
    let known = |nft: &Shared<RecordingNft>| -> Vec<String> {
        nft.0
            .lock()
            .unwrap()
            .table
            .iter()
            .filter_map(|o| o.get("set"))
            .filter(|s| s["name"] == calico_dataplane::render::KNOWN_IFACES_SET)
            .flat_map(|s| s["elem"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect()
    };
    let ifaces = known(&r.nft);
    assert!(
        ifaces.contains(&"caliw2".to_owned()) && !ifaces.contains(&"caliw1".to_owned()),
        "a pending endpoint's interface is unknown (dropped as every unknown cali*): {ifaces:?}"
    );
    // The labels arrive and the annotation goes: its interface is known and programmed.
    w1["metadata"]["annotations"] = json!({});
    w1["metadata"]["labels"] = json!({"app": "web"});
    put(r.ds.as_ref(), key, w1);
    felix.sync().unwrap();
    felix.program(Instant::now());
    assert!(known(&r.nft).contains(&"caliw1".to_owned()));
}

fn felix_config(ds: &dyn Datastore, name: &str, spec: serde_json::Value) {
    put(
        ds,
        Key::global(Kind::FelixConfiguration, name),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
            "metadata": {"name": name}, "spec": spec}),
    );
}

/// The TCP ports of the inbound failsafe rule in the table last programmed.
fn inbound_tcp_failsafes(r: &Rig) -> Vec<u64> {
    let table: serde_json::Value = serde_json::from_str(&table_now(&r.nft)).unwrap();
    let rule = table
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .find(|rule| rule["chain"] == "input" && rule["comment"] == "failsafe tcp ports");
    let Some(rule) = rule else {
        return Vec::new();
    };
    let right = &rule["expr"][0]["match"]["right"];
    match right.get("set") {
        Some(set) => set
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.as_u64())
            .collect(),
        None => right.as_u64().into_iter().collect(),
    }
}

fn failsafe(port: u16) -> serde_json::Value {
    json!({"failsafeInboundHostPorts": [{"protocol": "TCP", "port": port}]})
}

#[test]
fn felix_configuration_layers_default_selected_node_and_environment() {
    let mut r = rig();
    // A host endpoint on h1, so that failsafe ports are programmed.
    put(
        r.ds.as_ref(),
        Key::global(Kind::HostEndpoint, "h1-eth0"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "HostEndpoint",
            "metadata": {"name": "h1-eth0"},
            "spec": {"node": "h1", "interfaceName": "eth0"}}),
    );
    put(
        r.ds.as_ref(),
        Key::global(Kind::Node, "h1"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
            "metadata": {"name": "h1", "labels": {"rack": "a"}}, "spec": {}}),
    );
    let has_port = |r: &Rig, port: u16| inbound_tcp_failsafes(r).contains(&u64::from(port));
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    assert!(
        has_port(&r, 5050),
        "built-in failsafes: {}",
        table_now(&r.nft)
    );

    felix_config(r.ds.as_ref(), "default", failsafe(2222));
    // Selected by label: over default.
    let mut rack = failsafe(3333);
    rack["nodeSelector"] = json!("rack == 'a'");
    felix_config(r.ds.as_ref(), "rack-a", rack);
    // A selector that does not match this host changes nothing.
    let mut other = failsafe(6666);
    other["nodeSelector"] = json!("rack == 'b'");
    felix_config(r.ds.as_ref(), "rack-b", other);
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    assert!(has_port(&r, 3333), "{}", table_now(&r.nft));
    assert!(!has_port(&r, 2222) && !has_port(&r, 6666) && !has_port(&r, 5050));

    // The node's own resource wins over both, live.
    felix_config(r.ds.as_ref(), "node.h1", failsafe(4444));
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    assert!(has_port(&r, 4444) && !has_port(&r, 3333));

    // A failsafe felix cannot program as asked (restricted to a network) is
    // refused loudly; the resource's previous settings stay.
    felix_config(
        r.ds.as_ref(),
        "node.h1",
        json!({"failsafeInboundHostPorts": [{"protocol": "TCP", "port": 5555, "net": "10.0.0.0/8"}]}),
    );
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    assert!(has_port(&r, 4444) && !has_port(&r, 5555));

    // The environment wins over every resource.
    let mut cfg = Config::new("h1");
    cfg.failsafe_inbound = Some(calico_dataplane::parse_failsafes("tcp:7777").unwrap());
    // Started with healthPort 9099; the datastore now says otherwise.
    cfg.startup = Some((
        calico_felix::StartupOverrides::default(),
        calico_felix::StartupParams::defaults(),
    ));
    r.felix = Felix::new(
        cfg,
        r.ds.clone(),
        Kernel {
            netlink: FakeNetlink::new(),
            nft: r.nft.clone(),
            conntrack: r.ct.clone(),
            sysctl: r.sysctl.clone(),
        },
    );
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    assert!(has_port(&r, 7777) && !has_port(&r, 4444));
    assert_eq!(r.felix.restart_reason(), None);
    felix_config(
        r.ds.as_ref(),
        "rack-a",
        json!({"nodeSelector": "rack == 'a'", "healthPort": 9199}),
    );
    r.felix.sync().unwrap();
    let reason = r
        .felix
        .restart_reason()
        .expect("a start-time parameter changed");
    assert!(reason.contains("health_port: 9199"), "{reason}");
}

#[test]
fn staged_policies_are_never_enforced() {
    let mut r = rig();
    put(
        r.ds.as_ref(),
        Key::global(Kind::StagedGlobalNetworkPolicy, "lockdown"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "StagedGlobalNetworkPolicy",
            "metadata": {"name": "lockdown"},
            "spec": {"stagedAction": "Set", "order": 1, "selector": "all()",
                     "types": ["Ingress", "Egress"],
                     "ingress": [{"action": "Deny"}], "egress": [{"action": "Deny"}]}}),
    );
    r.felix.sync().unwrap();
    r.felix.program(Instant::now());
    let table = table_now(&r.nft);
    assert!(table.contains("policy good"), "{table}");
    assert!(!table.contains("lockdown"), "{table}");
}
