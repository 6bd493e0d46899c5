//! Allocations per second through the library on the embedded store, one process: one address
//! per call (the CNI case, a block and handle compare-and-swap each), and release by handle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, Kind, WriteOp};
use calico_ipam::{AssignArgs, Ipam};

fn main() {
    divan::main();
}

struct Fixture {
    _dir: tempfile::TempDir,
    ds: SqliteDatastore,
}

static FIXTURE: LazyLock<Mutex<Fixture>> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let ds = SqliteDatastore::open(&dir.path().join("calico.db")).unwrap();
    let pool = serde_json::json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": "bench"}, "spec": {"cidr": "10.0.0.0/8", "blockSize": 26}});
    ds.write_batch(vec![WriteOp::Upsert {
        key: Key::global(Kind::IpPool, "bench"),
        value: pool,
    }])
    .unwrap();
    Mutex::new(Fixture { _dir: dir, ds })
});

static NEXT: AtomicU64 = AtomicU64::new(0);

fn args() -> AssignArgs {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut a = AssignArgs::new(format!("net.c{n}"), "bench-node");
    a.attrs.insert("node".into(), "bench-node".into());
    a.attrs.insert("containerID".into(), format!("c{n}"));
    a
}

/// One IPv4 address per call, with a fresh handle (what `calico-ipam ADD` does).
#[divan::bench(sample_count = 20, sample_size = 100)]
fn auto_assign_one(b: divan::Bencher<'_, '_>) {
    let f = FIXTURE.lock().unwrap();
    let ipam = Ipam::new(&f.ds);
    b.counter(divan::counter::ItemsCount::new(1usize))
        .bench_local(|| ipam.auto_assign(&args()).unwrap());
}

/// Allocate then release by handle (ADD + DEL).
#[divan::bench(sample_count = 20, sample_size = 50)]
fn assign_then_release(b: divan::Bencher<'_, '_>) {
    let f = FIXTURE.lock().unwrap();
    let ipam = Ipam::new(&f.ds);
    b.bench_local(|| {
        let a = args();
        ipam.auto_assign(&a).unwrap();
        ipam.release_by_handle(&a.handle_id).unwrap();
    });
}
