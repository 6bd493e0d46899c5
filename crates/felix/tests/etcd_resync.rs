//! The agent loop against a real etcd that goes away and comes back: the
//! last programmed state stays in force during the outage (nothing is
//! flushed or rewritten), and once etcd is back a change made there is
//! programmed. Kernel calls go to recording fakes; the datastore is real.
//! Without etcd the test skips visibly; under `CI=true` it fails.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use calico_datastore::Datastore;
use calico_datastore::etcd::testing::{EtcdServer, etcd_or_skip};
use calico_datastore::etcd::{EtcdDatastore, EtcdTls};
use calico_felix::Config;
use serde_json::Value;

mod common;

use common::{db_deny, eventually, seed, start};

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
