//! Helpers the agent-loop tests share: felix in a thread on a real datastore, kernel calls to
//! recording fakes.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use calico_dataplane::{Conntrack, Nft, RecordingConntrack, RecordingNft};
use calico_datastore::{Datastore, Key, Kind, WriteOp};
use calico_felix::{Config, Felix, Kernel};
use calico_netlink::fake::{FakeNetlink, FakeSysctl};
use nftables::schema::Nftables;
use serde_json::{Value, json};

/// A fake the test keeps a handle on after felix owns it.
#[derive(Default)]
pub struct Shared<T>(pub Arc<Mutex<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl Nft for Shared<RecordingNft> {
    fn apply(&mut self, batch: &Nftables<'_>) -> Result<(), calico_dataplane::Error> {
        self.0.lock().unwrap().apply(batch)
    }
    fn check(&mut self, batch: &Nftables<'_>) -> Result<(), calico_dataplane::Error> {
        self.0.lock().unwrap().check(batch)
    }
    fn list_owned(&mut self) -> Result<Nftables<'static>, calico_dataplane::Error> {
        self.0.lock().unwrap().list_owned()
    }
}

impl Conntrack for Shared<RecordingConntrack> {
    fn flush_address(&mut self, ip: std::net::IpAddr) -> Result<(), calico_dataplane::Error> {
        self.0.lock().unwrap().flush_address(ip)
    }
    fn flush_mark(&mut self, mark: u32, mask: u32) -> Result<(), calico_dataplane::Error> {
        self.0.lock().unwrap().flush_mark(mark, mask)
    }
}

impl calico_netlink::Sysctl for Shared<FakeSysctl> {
    fn set(&mut self, key: &str, value: &str) -> calico_netlink::Result<()> {
        self.0.lock().unwrap().set(key, value)
    }
    fn get(&mut self, key: &str) -> calico_netlink::Result<String> {
        self.0.lock().unwrap().get(key)
    }
}

/// Records batches where the test can see them; lists back the last one.
#[derive(Clone, Default)]
pub struct SharedNft(pub Arc<Mutex<Vec<Value>>>);

impl Nft for SharedNft {
    fn apply(&mut self, batch: &Nftables<'_>) -> Result<(), calico_dataplane::Error> {
        self.0.lock().unwrap().push(serde_json::to_value(batch)?);
        Ok(())
    }

    fn check(&mut self, _batch: &Nftables<'_>) -> Result<(), calico_dataplane::Error> {
        Ok(())
    }

    fn list_owned(&mut self) -> Result<Nftables<'static>, calico_dataplane::Error> {
        let last = self
            .0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or(Value::Null);
        let added: Vec<Value> = last["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("add").cloned())
            .skip(1)
            .collect();
        Ok(serde_json::from_value(json!({"nftables": added}))?)
    }
}

pub fn put(ds: &dyn Datastore, key: Key, value: Value) {
    ds.write_batch(vec![WriteOp::Upsert { key, value }])
        .unwrap();
}

pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// The profile and the one local endpoint (`caliw1`, app `db`) both tests start from.
pub fn seed(ds: &dyn Datastore) {
    put(
        ds,
        Key::global(Kind::Profile, "calico"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
            "metadata": {"name": "calico"},
            "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}}),
    );
    put(
        ds,
        Key::namespaced(Kind::WorkloadEndpoint, "default", "h1-mesos-w1-eth0"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": "h1-mesos-w1-eth0", "namespace": "default", "labels": {"app": "db"}},
            "spec": {"node": "h1", "orchestrator": "mesos", "workload": "w1", "endpoint": "eth0",
                     "interfaceName": "caliw1", "ipNetworks": ["10.65.1.2/32"], "profiles": ["calico"]}}),
    );
}

/// A policy denying everything to the endpoint (`db-deny`).
pub fn db_deny(ds: &dyn Datastore) {
    put(
        ds,
        Key::global(Kind::GlobalNetworkPolicy, "db-deny"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "db-deny"},
            "spec": {"selector": "app == 'db'", "types": ["Ingress"],
                     "ingress": [{"action": "Deny"}]}}),
    );
}

/// The batches felix applied, as JSON.
pub type Batches = Arc<Mutex<Vec<Value>>>;

/// felix in a thread on `ds`, kernel calls to recording fakes (`caliw1` exists): its health,
/// the batches it applied, its stop flag and its thread.
pub fn start(
    cfg: Config,
    ds: &Arc<dyn Datastore>,
) -> (
    Arc<calico_felix::Status>,
    Batches,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let nft = SharedNft::default();
    let batches = nft.0.clone();
    let mut nl = FakeNetlink::new();
    nl.insert_link("caliw1", 1500, vec![0xee; 6]);
    let kernel = Kernel {
        netlink: nl,
        nft,
        conntrack: RecordingConntrack::default(),
        sysctl: FakeSysctl::default(),
    };
    let mut felix = Felix::new(cfg, ds.clone(), kernel);
    let status = felix.status();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let agent = std::thread::spawn(move || felix.run(&stop2));
    (status, batches, stop, agent)
}
