//! etcd failure handling: unreachable at start, server down and back, leader failover in a
//! 3-member cluster while writers and a watcher run.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use calico_datastore::etcd::testing::{EtcdServer, etcd_or_skip};
use calico_datastore::etcd::{EtcdDatastore, EtcdOptions, EtcdTls};
use calico_datastore::{Datastore, DatastoreError, EventType, Key, Kind, WatchFilter};
use serde_json::json;

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn unreachable_etcd_fails_fast_with_a_clear_error() {
    let port = closed_port();
    let endpoints = vec![format!("http://127.0.0.1:{port}")];
    let started = Instant::now();
    let err = EtcdDatastore::connect(&endpoints, &EtcdTls::default()).unwrap_err();
    let took = started.elapsed();
    let msg = err.to_string();
    assert!(took < Duration::from_secs(8), "took {took:?}: {msg}");
    assert!(
        msg.contains(&format!("connecting to etcd at http://127.0.0.1:{port}")),
        "{msg}"
    );
    // Through the configuration path too (ETCD_ENDPOINTS, as DC/OS sets it).
    let env = |name: &str| match name {
        "DATASTORE_TYPE" => Some("etcdv3".to_string()),
        "ETCD_ENDPOINTS" => Some(format!("http://127.0.0.1:{port}")),
        _ => None,
    };
    let cfg = calico_datastore::DatastoreConfig::load_with(None, None, &env).unwrap();
    let started = Instant::now();
    let Err(err) = calico_datastore::open(&cfg) else {
        panic!("opening an unreachable etcd succeeded");
    };
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(err.to_string().contains("connecting to etcd"), "{err}");
}

#[test]
fn server_down_then_back() {
    let Some(bin) = etcd_or_skip("server_down_then_back") else {
        return;
    };
    let mut server = EtcdServer::single(&bin);
    let options = EtcdOptions {
        retry_for: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        ..EtcdOptions::default()
    };
    let store =
        EtcdDatastore::connect_with(&server.endpoints(), &EtcdTls::default(), options).unwrap();
    let k1 = Key::global(Kind::GlobalNetworkPolicy, "before");
    let before = store.create(&k1, json!({"spec": {}})).unwrap();
    let mut w = store.watch(WatchFilter::default(), 0).unwrap();
    let ev = w.next(Duration::from_secs(10)).unwrap().expect("event");
    assert_eq!(ev.revision, before.mod_revision);

    server.stop(0);
    let started = Instant::now();
    let err = store.get(&k1).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, DatastoreError::Backend { .. }), "{err}");
    assert!(err.to_string().contains("reading"), "{err}");
    assert!(
        store
            .create(&Key::global(Kind::GlobalNetworkPolicy, "during"), json!({}))
            .is_err()
    );
    // The watcher keeps quiet (its last state stands) while etcd is away.
    assert!(w.next(Duration::from_millis(300)).unwrap().is_none());

    server.restart(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        match store.get(&k1) {
            Ok(v) => break v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not back yet: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("store did not recover: {e}"),
        }
    };
    assert_eq!(got, Some(before));
    let after = store
        .create(&Key::global(Kind::GlobalNetworkPolicy, "after"), json!({}))
        .unwrap();
    // The watcher resynced by itself and resumes right after what it had seen.
    let ev = w
        .next(Duration::from_secs(20))
        .unwrap()
        .expect("event after restart");
    assert_eq!(ev.revision, after.mod_revision);
    assert_eq!(ev.key.name, "after");
}

#[test]
fn leader_failover_loses_no_acknowledged_write_or_event() {
    const WRITERS: usize = 3;
    let Some(bin) = etcd_or_skip("leader_failover_loses_no_acknowledged_write_or_event") else {
        return;
    };
    let mut cluster = EtcdServer::cluster(&bin);
    let endpoints = cluster.endpoints();
    let watcher_store = EtcdDatastore::connect(&endpoints, &EtcdTls::default()).unwrap();
    let start = watcher_store.revision().unwrap();
    let mut w = watcher_store
        .watch(
            WatchFilter {
                kind: Some(Kind::NetworkPolicy),
                namespace: None,
            },
            start,
        )
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|wr| {
            let endpoints = endpoints.clone();
            let (stop, acked, failures) = (stop.clone(), acked.clone(), failures.clone());
            std::thread::spawn(move || {
                let store = EtcdDatastore::connect(&endpoints, &EtcdTls::default()).unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key =
                        Key::namespaced(Kind::NetworkPolicy, format!("w{wr}"), format!("p{i}"));
                    match store.create(&key, json!({"spec": {"i": i}})) {
                        Ok(kv) => {
                            acked.lock().unwrap().insert((key, kv.mod_revision));
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                    i += 1;
                }
            })
        })
        .collect();

    let wait_writes = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "writers stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_writes(100);
    let leader = cluster.leader().expect("a leader");
    eprintln!("stopping leader m{leader}");
    cluster.stop(leader);
    let n = acked.lock().unwrap().len();
    wait_writes(n + 200);
    stop.store(true, Ordering::Relaxed);
    for h in writers {
        h.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "writes failed: {failures:?}");

    // Every acknowledged write is there, at the revision it was acknowledged at.
    let acked = acked.lock().unwrap().clone();
    let check = EtcdDatastore::connect(&endpoints, &EtcdTls::default()).unwrap();
    let listed: BTreeSet<(Key, i64)> = check
        .list(Kind::NetworkPolicy, None)
        .unwrap()
        .items
        .into_iter()
        .map(|kv| (kv.key, kv.mod_revision))
        .collect();
    assert_eq!(listed, acked);

    // The watcher saw each of them exactly once, in revision order.
    let mut seen = BTreeSet::new();
    let mut last = start;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < acked.len() {
        assert!(
            Instant::now() < deadline,
            "watcher saw {} of {}",
            seen.len(),
            acked.len()
        );
        let Some(ev) = w.next(Duration::from_millis(500)).unwrap() else {
            continue;
        };
        assert!(
            ev.revision > last,
            "out of order: {} after {last}",
            ev.revision
        );
        last = ev.revision;
        assert_eq!(ev.event_type, EventType::Added);
        assert!(seen.insert((ev.key, ev.revision)), "duplicate event");
    }
    assert_eq!(seen, acked);
    assert!(w.next(Duration::from_millis(300)).unwrap().is_none());
    eprintln!("{} writes across the failover", acked.len());
}
