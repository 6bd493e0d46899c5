//! Embedded (SQLite) backend benchmarks: bulk writes, listing, single-write latency and
//! write-to-watch latency, on a file in a temporary directory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, Kind, WatchFilter, WriteOp};
use divan::Bencher;

fn main() {
    divan::main();
}

const BULK: usize = 10_000;

mod common;

use common::{key, policy_value};

fn bulk_ops() -> Vec<WriteOp> {
    (0..BULK)
        .map(|i| WriteOp::Create {
            key: key(i),
            value: policy_value(i),
        })
        .collect()
}

fn fresh_store() -> (tempfile::TempDir, SqliteDatastore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteDatastore::open(&dir.path().join("bench.db")).unwrap();
    (dir, store)
}

/// One atomic batch creating 10,000 ~1 KB policies in a fresh store.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn create_10k_batch(bencher: Bencher<'_, '_>) {
    bencher
        .with_inputs(|| (fresh_store(), bulk_ops()))
        .bench_local_values(|((dir, store), ops)| {
            let written = store.write_batch(ops).unwrap();
            // Returned so that freeing the results, closing the store and removing the file
            // are not timed.
            (written, dir, store)
        });
}

/// Listing 10,000 policies (read, parse, sort).
#[divan::bench(sample_count = 20, sample_size = 1)]
fn list_10k(bencher: Bencher<'_, '_>) {
    let (_dir, store) = fresh_store();
    store.write_batch(bulk_ops()).unwrap();
    bencher.bench_local(|| {
        let list = store.list(Kind::NetworkPolicy, None).unwrap();
        assert_eq!(list.items.len(), BULK);
        list
    });
}

/// Latency of one create (one transaction) in a store that already holds 10,000 policies.
#[divan::bench(sample_count = 200)]
fn create_one(bencher: Bencher<'_, '_>) {
    let (_dir, store) = fresh_store();
    store.write_batch(bulk_ops()).unwrap();
    let next = AtomicU64::new(0);
    let value = policy_value(0);
    bencher.bench_local(|| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let k = Key::namespaced(Kind::NetworkPolicy, "single", format!("p{n}"));
        store.create(&k, value.clone()).unwrap()
    });
}

/// Latency of one get in a store holding 10,000 policies.
#[divan::bench(sample_count = 200)]
fn get_one(bencher: Bencher<'_, '_>) {
    let (_dir, store) = fresh_store();
    store.write_batch(bulk_ops()).unwrap();
    let k = key(42);
    bencher.bench_local(|| store.get(&k).unwrap().unwrap());
}

/// Latency of a compare-and-swap update (get, then update at the read revision).
#[divan::bench(sample_count = 200)]
fn cas_update(bencher: Bencher<'_, '_>) {
    let (_dir, store) = fresh_store();
    store.write_batch(bulk_ops()).unwrap();
    let k = key(42);
    bencher.bench_local(|| {
        let kv = store.get(&k).unwrap().unwrap();
        store.update(&k, kv.value, Some(kv.mod_revision)).unwrap()
    });
}

/// From starting a create to a watcher (on its own connection) returning its event.
#[divan::bench(sample_count = 100)]
fn watch_latency(bencher: Bencher<'_, '_>) {
    let (_dir, store) = fresh_store();
    let mut watcher = store
        .watch(WatchFilter::default(), store.revision().unwrap())
        .unwrap();
    let next = AtomicU64::new(0);
    let value = policy_value(0);
    bencher.bench_local(|| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let k = Key::namespaced(Kind::NetworkPolicy, "watch", format!("p{n}"));
        let kv = store.create(&k, value.clone()).unwrap();
        let ev = watcher
            .next(Duration::from_secs(10))
            .unwrap()
            .expect("event");
        assert_eq!(ev.revision, kv.mod_revision);
    });
}
