//! etcd backend benchmarks, the same operations as `benches/embedded.rs` so the two read side
//! by side: bulk load, list of 10,000, single create, get, CAS update and write-to-watch
//! latency, each against its own single-node etcd (`/usr/bin/etcd`) on loopback. Without an
//! etcd binary the benchmarks print SKIP and measure nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use calico_datastore::etcd::testing::{WithServer, etcd_binary};
use calico_datastore::{Datastore, Key, Kind, WatchFilter, WriteOp};
use divan::Bencher;

fn main() {
    if etcd_binary().is_none() {
        println!("SKIP etcd benchmarks: etcd binary not found (install Debian's etcd-server)");
        return;
    }
    divan::main();
}

const BULK: usize = 10_000;
/// Ops per transaction when loading: etcd allows 128 by default.
const CHUNK: usize = 100;

mod common;

use common::{key, policy_value};

fn fresh_store() -> WithServer {
    WithServer::fresh(&etcd_binary().expect("checked in main"))
}

/// Load 10,000 policies in transactions of [`CHUNK`] creates.
fn load(store: &dyn Datastore) {
    let ops: Vec<WriteOp> = (0..BULK)
        .map(|i| WriteOp::Create {
            key: key(i),
            value: policy_value(i),
        })
        .collect();
    for chunk in ops.chunks(CHUNK) {
        store.write_batch(chunk.to_vec()).unwrap();
    }
}

/// 10,000 ~1 KB policies created in 100 transactions of 100 (etcd caps a transaction at 128
/// ops by default, so the embedded benchmark's single 10,000-op batch has no etcd equivalent).
#[divan::bench(sample_count = 5, sample_size = 1)]
fn create_10k_chunked(bencher: Bencher<'_, '_>) {
    bencher
        .with_inputs(fresh_store)
        .bench_local_values(|store| {
            load(&store);
            store
        });
}

/// Listing 10,000 policies (one range read, parse, sort).
#[divan::bench(sample_count = 20, sample_size = 1)]
fn list_10k(bencher: Bencher<'_, '_>) {
    let store = fresh_store();
    load(&store);
    bencher.bench_local(|| {
        let list = store.list(Kind::NetworkPolicy, None).unwrap();
        assert_eq!(list.items.len(), BULK);
        list
    });
}

/// Latency of one create (one guarded transaction) in a store holding 10,000 policies.
#[divan::bench(sample_count = 200)]
fn create_one(bencher: Bencher<'_, '_>) {
    let store = fresh_store();
    load(&store);
    let next = AtomicU64::new(0);
    let value = policy_value(0);
    bencher.bench_local(|| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let k = Key::namespaced(Kind::NetworkPolicy, "single", format!("p{n}"));
        store.create(&k, value.clone()).unwrap()
    });
}

/// Latency of one get.
#[divan::bench(sample_count = 200)]
fn get_one(bencher: Bencher<'_, '_>) {
    let store = fresh_store();
    load(&store);
    let k = key(42);
    bencher.bench_local(|| store.get(&k).unwrap().unwrap());
}

/// Latency of a compare-and-swap update (get, then update at the read revision).
#[divan::bench(sample_count = 200)]
fn cas_update(bencher: Bencher<'_, '_>) {
    let store = fresh_store();
    load(&store);
    let k = key(42);
    bencher.bench_local(|| {
        let kv = store.get(&k).unwrap().unwrap();
        store.update(&k, kv.value, Some(kv.mod_revision)).unwrap()
    });
}

/// From starting a create to a watcher (on its own connection) returning its event.
#[divan::bench(sample_count = 100)]
fn watch_latency(bencher: Bencher<'_, '_>) {
    let store = fresh_store();
    let other = WithServer::on(store.server.clone());
    let mut watcher = other
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
