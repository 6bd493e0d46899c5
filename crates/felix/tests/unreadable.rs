//! A garbage record appears under a running felix, on each backend: felix says it is not ready
//! (it knows nothing good of that record), keeps programming every other change, and is ready
//! again once the record is deleted. Kernel calls go to recording fakes; the datastores are
//! real. Without etcd the etcd half skips visibly; under `CI=true` it fails.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use calico_datastore::etcd::testing::{EtcdServer, etcd_or_skip};
use calico_datastore::etcd::{EtcdDatastore, EtcdTls};
use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, Kind};
use calico_felix::Config;
use common::{db_deny, eventually, seed, start};
use serde_json::Value;

/// The scenario, with `write_garbage` putting a value that is not JSON under `key` behind
/// the store's back (a new revision a watcher sees).
fn garbage_under_a_running_felix(ds: &Arc<dyn Datastore>, write_garbage: &dyn Fn(&Key)) {
    seed(ds.as_ref());
    let (status, batches, stop, agent) = start(Config::new("h1"), ds);
    let all = || {
        batches
            .lock()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect::<String>()
    };
    let ready = || status.ready.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(20), ready),
        "ready from the first sync"
    );
    let garbage = Key::global(Kind::GlobalNetworkPolicy, "garbage");
    write_garbage(&garbage);
    assert!(
        eventually(Duration::from_secs(10), || !ready()),
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
        eventually(Duration::from_secs(10), ready),
        "ready once the bad record is gone"
    );
    stop.store(true, Ordering::Relaxed);
    agent.join().unwrap();
}

#[test]
fn a_garbage_record_does_not_stop_a_running_felix_on_etcd() {
    let Some(bin) = etcd_or_skip("felix and an unreadable etcd record") else {
        return;
    };
    let server = EtcdServer::single(&bin);
    let ds: Arc<dyn Datastore> =
        Arc::new(EtcdDatastore::connect(&server.endpoints(), &EtcdTls::default()).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A hand-run `etcdctl put` of garbage.
    garbage_under_a_running_felix(&ds, &|key| {
        let etcd_key = calico_datastore::etcd::layout::encode_key(key, None).unwrap();
        rt.block_on(async {
            let mut c = etcd_client::Client::connect(server.endpoints(), None)
                .await
                .unwrap();
            c.put(etcd_key, "{not json", None).await.unwrap();
        });
    });
}

#[test]
fn a_garbage_record_does_not_stop_a_running_felix_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calico.db");
    let ds: Arc<dyn Datastore> = Arc::new(SqliteDatastore::open(&path).unwrap());
    // A buggy writer: a new revision whose value is not JSON, written with plain SQL.
    garbage_under_a_running_felix(&ds, &|key| {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        let rev: i64 = tx
            .query_row("SELECT revision FROM meta WHERE id = 1", [], |r| r.get(0))
            .unwrap();
        let rev = rev + 1;
        tx.execute(
            "INSERT INTO events (rev, type, kind, namespace, name, value, prev_rev)
             VALUES (?1, 0, ?2, '', ?3, '{not json', NULL)",
            rusqlite::params![rev, key.kind.as_str(), key.name],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO kv (kind, namespace, name, create_rev, mod_rev) VALUES (?1, '', ?2, ?3, ?3)",
            rusqlite::params![key.kind.as_str(), key.name, rev],
        )
        .unwrap();
        tx.execute("UPDATE meta SET revision = ?1 WHERE id = 1", [rev])
            .unwrap();
        tx.commit().unwrap();
    });
}
