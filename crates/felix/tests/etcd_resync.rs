//! The agent loop against a real etcd that goes away and comes back: the
//! last programmed state stays in force during the outage (nothing is
//! flushed or rewritten), and once etcd is back a change made there is
//! programmed. Kernel calls go to recording fakes; the datastore is real.
//! Without etcd the test skips visibly; under `CI=true` it fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use calico_dataplane::{Nft, RecordingConntrack};
use calico_datastore::etcd::testing::{EtcdServer, etcd_or_skip};
use calico_datastore::etcd::{EtcdDatastore, EtcdTls};
use calico_datastore::{Datastore, Key, Kind, WriteOp};
use calico_felix::{Config, Felix, Kernel};
use calico_netlink::fake::{FakeNetlink, FakeSysctl};
use nftables::schema::Nftables;
use serde_json::{Value, json};

/// Records batches where the test can see them; lists back the last one.
#[derive(Clone, Default)]
struct SharedNft(Arc<Mutex<Vec<Value>>>);

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

fn put(ds: &dyn Datastore, key: Key, value: Value) {
    ds.write_batch(vec![WriteOp::Upsert { key, value }])
        .unwrap();
}

fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
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
fn seed(ds: &dyn Datastore) {
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
fn db_deny(ds: &dyn Datastore) {
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
type Batches = Arc<Mutex<Vec<Value>>>;

/// felix in a thread on `ds`, kernel calls to recording fakes (`caliw1` exists): its health,
/// the batches it applied, its stop flag and its thread.
fn start(
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

#[test]
fn keeps_last_state_while_etcd_is_down_and_resyncs_when_it_returns() {
    let Some(bin) = etcd_or_skip("felix etcd resync") else {
        return;
    };
    let mut server = EtcdServer::single(&bin);
    let ds: Arc<dyn Datastore> =
        Arc::new(EtcdDatastore::connect(&server.endpoints(), &EtcdTls::default()).unwrap());
    seed(ds.as_ref());

    let mut cfg = Config::new("h1");
    cfg.retry_interval = Duration::from_millis(200);
    cfg.resync_interval = Duration::from_millis(300);
    let (status, batches, stop, agent) = start(cfg, &ds);

    let last = || {
        batches
            .lock()
            .unwrap()
            .last()
            .map(Value::to_string)
            .unwrap_or_default()
    };
    assert!(
        eventually(Duration::from_secs(20), || status
            .ready
            .load(Ordering::Relaxed)
            && last().contains("to-caliw1")),
        "programmed from the first sync"
    );
    let programmed = last();

    server.stop(0);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        last(),
        programmed,
        "the last state stays in force while etcd is down"
    );
    assert!(
        !last().contains("db-deny"),
        "and nothing new appears from nowhere"
    );

    server.restart(0);
    db_deny(ds.as_ref());
    assert!(
        eventually(Duration::from_secs(30), || last().contains("db-deny")),
        "a change made after etcd returned is programmed"
    );
    assert!(status.in_sync.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    agent.join().unwrap();
}

#[test]
fn a_garbage_record_put_by_hand_does_not_stop_a_running_felix() {
    let Some(bin) = etcd_or_skip("felix and an unreadable etcd record") else {
        return;
    };
    let server = EtcdServer::single(&bin);
    let ds: Arc<dyn Datastore> =
        Arc::new(EtcdDatastore::connect(&server.endpoints(), &EtcdTls::default()).unwrap());
    seed(ds.as_ref());
    let (status, batches, stop, agent) = start(Config::new("h1"), &ds);
    let all = || {
        batches
            .lock()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect::<String>()
    };
    assert!(
        eventually(Duration::from_secs(20), || status
            .ready
            .load(Ordering::Relaxed)),
        "ready from the first sync"
    );

    // A hand-run `etcdctl put` of garbage under a policy's key.
    let garbage = Key::global(Kind::GlobalNetworkPolicy, "garbage");
    let etcd_key = calico_datastore::etcd::layout::encode_key(&garbage, None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = etcd_client::Client::connect(server.endpoints(), None)
            .await
            .unwrap();
        c.put(etcd_key, "{not json", None).await.unwrap();
    });
    assert!(
        eventually(Duration::from_secs(10), || !status
            .ready
            .load(Ordering::Relaxed)),
        "not ready while a record it knows nothing good of is unreadable"
    );
    // Every other change still applies.
    db_deny(ds.as_ref());
    assert!(
        eventually(Duration::from_secs(10), || all().contains("db-deny")),
        "a policy written after the garbage is programmed"
    );
    // Deleted (as `calicoctl delete` does): ready again.
    ds.delete(&garbage, None).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || status
            .ready
            .load(Ordering::Relaxed)),
        "ready once the bad record is gone"
    );
    stop.store(true, Ordering::Relaxed);
    agent.join().unwrap();
}
