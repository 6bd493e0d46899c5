//! The sync layer against the embedded store (a real SQLite file): typed lists and watches,
//! unreadable values named and skipped, resync after compaction handing over only what
//! differs, and a property that a consumer applying the events always ends with the store's
//! content.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use calico_api::Kind;
use calico_datastore::sqlite::SqliteDatastore;
use std::sync::atomic::{AtomicBool, Ordering};

use calico_datastore::{
    Datastore, DatastoreError, Key, KeyValue, ListResult, Revision, WatchFilter, Watcher, WriteOp,
};
use calico_sync::{Backoff, Resource, SyncEvent, Syncer};
use proptest::prelude::*;
use serde_json::{Value, json};

fn store() -> (tempfile::TempDir, Arc<dyn Datastore>) {
    let dir = tempfile::tempdir().unwrap();
    let ds = SqliteDatastore::open(&dir.path().join("calico.db")).unwrap();
    (dir, Arc::new(ds))
}

fn policy(name: &str, order: u32) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
           "metadata": {"name": name},
           "spec": {"order": order, "selector": "all()", "ingress": [{"action": "Allow"}]}})
}

fn gnp(name: &str) -> Key {
    Key::global(Kind::GlobalNetworkPolicy, name)
}

/// Events until the syncer is quiet for a moment.
fn drain<D: std::ops::Deref<Target: Datastore>>(s: &mut Syncer<D>) -> Vec<SyncEvent> {
    let mut out = Vec::new();
    while let Some(ev) = s.next(Duration::from_millis(100)) {
        out.push(ev);
    }
    out
}

fn summary(events: &[SyncEvent]) -> Vec<String> {
    events
        .iter()
        .map(|ev| match ev {
            SyncEvent::Set { key, resource, .. } => format!("set {key} {}", resource.kind()),
            SyncEvent::Deleted { key, .. } => format!("deleted {key}"),
            SyncEvent::Unreadable { key, .. } => format!("unreadable {key}"),
            SyncEvent::InSync { .. } => "in sync".to_owned(),
            SyncEvent::Lost { .. } => "lost".to_owned(),
        })
        .collect()
}

#[test]
fn lists_typed_then_follows_the_watch() {
    let (_dir, ds) = store();
    ds.create(&gnp("a"), policy("a", 10)).unwrap();
    ds.create(
        &Key::global(Kind::IpPool, "p"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
               "metadata": {"name": "p"}, "spec": {"cidr": "10.1.0.0/16"}}),
    )
    .unwrap();
    let mut s = Syncer::new(ds.clone(), [Kind::GlobalNetworkPolicy]);
    let first = drain(&mut s);
    assert_eq!(
        summary(&first),
        ["set GlobalNetworkPolicy(a) GlobalNetworkPolicy", "in sync"]
    );
    // Decoded once, with upstream's defaults applied.
    let SyncEvent::Set {
        resource: Resource::GlobalNetworkPolicy(p),
        ..
    } = &first[0]
    else {
        panic!("a typed policy: {first:?}");
    };
    assert_eq!(p.spec.tier, "default");
    ds.update(&gnp("a"), policy("a", 20), None).unwrap();
    ds.create(&gnp("b"), policy("b", 5)).unwrap();
    ds.delete(&gnp("a"), None).unwrap();
    let last = ds.revision().unwrap();
    ds.delete(&Key::global(Kind::IpPool, "p"), None).unwrap();
    assert_eq!(
        summary(&drain(&mut s)),
        [
            "set GlobalNetworkPolicy(a) GlobalNetworkPolicy",
            "set GlobalNetworkPolicy(b) GlobalNetworkPolicy",
            "deleted GlobalNetworkPolicy(a)"
        ]
    );
    // Handed over up to the last change of a kind it syncs.
    assert_eq!(s.revision(), last);
}

#[test]
fn an_unreadable_value_is_named_and_the_rest_goes_on() {
    let (_dir, ds) = store();
    ds.create(&gnp("good"), policy("good", 1)).unwrap();
    // Written past calicoctl: a selector that does not parse, and a value under another name.
    let mut bad = policy("bad", 1);
    bad["spec"]["selector"] = json!("has(");
    ds.create(&gnp("bad"), bad).unwrap();
    ds.create(&gnp("copied"), policy("other", 1)).unwrap();
    let mut s = Syncer::new(ds.clone(), [Kind::GlobalNetworkPolicy]);
    let events = drain(&mut s);
    assert_eq!(
        summary(&events),
        [
            "unreadable GlobalNetworkPolicy(bad)",
            "unreadable GlobalNetworkPolicy(copied)",
            "set GlobalNetworkPolicy(good) GlobalNetworkPolicy",
            "in sync"
        ]
    );
    let SyncEvent::Unreadable { error, .. } = &events[0] else {
        unreachable!()
    };
    assert!(
        error.to_string().contains("GlobalNetworkPolicy(bad)")
            && error.to_string().contains("spec.selector"),
        "the error names the key and the field: {error}"
    );
    // Repaired: handed over as a normal value.
    ds.update(&gnp("bad"), policy("bad", 2), None).unwrap();
    assert_eq!(
        summary(&drain(&mut s)),
        ["set GlobalNetworkPolicy(bad) GlobalNetworkPolicy"]
    );
}

#[test]
fn after_compaction_only_what_differs_is_handed_over() {
    let (_dir, ds) = store();
    for name in ["keep", "change", "remove"] {
        ds.create(&gnp(name), policy(name, 1)).unwrap();
    }
    let mut s = Syncer::new(ds.clone(), [Kind::GlobalNetworkPolicy]);
    assert_eq!(drain(&mut s).len(), 4);
    // Changes the watch has not delivered yet, then their history is compacted away.
    ds.update(&gnp("change"), policy("change", 2), None)
        .unwrap();
    ds.delete(&gnp("remove"), None).unwrap();
    ds.create(&gnp("new"), policy("new", 1)).unwrap();
    ds.compact(ds.revision().unwrap()).unwrap();
    let events = drain(&mut s);
    assert_eq!(
        summary(&events),
        [
            "lost",
            "set GlobalNetworkPolicy(change) GlobalNetworkPolicy",
            "set GlobalNetworkPolicy(new) GlobalNetworkPolicy",
            "deleted GlobalNetworkPolicy(remove)",
            "in sync"
        ],
        "the unchanged policy is not handed over again"
    );
}

/// The embedded store, with reads failing while `down` is set (an unreachable etcd).
struct Flaky {
    inner: SqliteDatastore,
    down: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<(), DatastoreError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(DatastoreError::Unsupported("the store is down".into()));
        }
        Ok(())
    }
}

impl Datastore for Flaky {
    fn get(&self, key: &Key) -> Result<Option<KeyValue>, DatastoreError> {
        self.check()?;
        self.inner.get(key)
    }
    fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<ListResult, DatastoreError> {
        self.check()?;
        self.inner.list(kind, namespace)
    }
    fn create(&self, key: &Key, value: Value) -> Result<KeyValue, DatastoreError> {
        self.inner.create(key, value)
    }
    fn update(
        &self,
        key: &Key,
        value: Value,
        expected_revision: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError> {
        self.inner.update(key, value, expected_revision)
    }
    fn delete(
        &self,
        key: &Key,
        expected_revision: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError> {
        self.inner.delete(key, expected_revision)
    }
    fn write_batch(&self, ops: Vec<WriteOp>) -> Result<Vec<KeyValue>, DatastoreError> {
        self.inner.write_batch(ops)
    }
    fn watch(
        &self,
        filter: WatchFilter,
        after: Revision,
    ) -> Result<Box<dyn Watcher>, DatastoreError> {
        self.check()?;
        self.inner.watch(filter, after)
    }
    fn revision(&self) -> Result<Revision, DatastoreError> {
        self.check()?;
        self.inner.revision()
    }
    fn compact(&self, revision: Revision) -> Result<(), DatastoreError> {
        self.inner.compact(revision)
    }
}

#[test]
fn a_store_that_fails_is_reported_and_retried_with_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = Arc::new(Flaky {
        inner: SqliteDatastore::open(&dir.path().join("calico.db")).unwrap(),
        down: AtomicBool::new(true),
    });
    flaky.create(&gnp("a"), policy("a", 1)).unwrap();
    let backoff = Backoff {
        min: Duration::from_millis(200),
        max: Duration::from_secs(1),
    };
    let mut s = Syncer::new(flaky.clone(), [Kind::GlobalNetworkPolicy]).with_backoff(backoff);
    match s.next(Duration::from_millis(50)) {
        Some(SyncEvent::Lost { error }) => {
            assert!(error.contains("the store is down"), "{error}");
        }
        other => panic!("a failing store is reported: {other:?}"),
    }
    // Back in service: within the back-off nothing happens, then everything is handed over.
    flaky.down.store(false, Ordering::Relaxed);
    assert_eq!(
        s.next(Duration::from_millis(50)),
        None,
        "waits out the back-off"
    );
    let mut events = vec![
        s.next(Duration::from_secs(2))
            .expect("listed after the back-off"),
    ];
    events.extend(drain(&mut s));
    assert_eq!(
        summary(&events),
        ["set GlobalNetworkPolicy(a) GlobalNetworkPolicy", "in sync"]
    );
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u32),
    Delete(u8),
    Compact,
    Read,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 0u32..4).prop_map(|(n, o)| Op::Put(n, o)),
        2 => (0u8..6).prop_map(Op::Delete),
        1 => Just(Op::Compact),
        2 => Just(Op::Read),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever happens between reads (writes, deletes, compactions that force a relist), a
    /// consumer applying the events ends with exactly the store's content.
    #[test]
    fn a_consumer_always_ends_with_the_stores_content(ops in proptest::collection::vec(op(), 1..30)) {
        let (_dir, ds) = store();
        let mut s = Syncer::new(ds.clone(), [Kind::GlobalNetworkPolicy]);
        let mut view: BTreeMap<String, u32> = BTreeMap::new();
        let apply = |events: Vec<SyncEvent>, view: &mut BTreeMap<String, u32>| {
            for ev in events {
                match ev {
                    SyncEvent::Set { key, resource: Resource::GlobalNetworkPolicy(p), .. } => {
                        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "orders written here are 0..4")]
                        let order = p.spec.order.map_or(0, |o| o as u32);
                        view.insert(key.name, order);
                    }
                    SyncEvent::Deleted { key, .. } => {
                        view.remove(&key.name);
                    }
                    other @ (SyncEvent::Set { .. } | SyncEvent::Unreadable { .. }) => {
                        panic!("unexpected {other:?}")
                    }
                    SyncEvent::InSync { .. } | SyncEvent::Lost { .. } => {}
                }
            }
        };
        for op in ops {
            match op {
                Op::Put(n, order) => {
                    let name = format!("p{n}");
                    let key = gnp(&name);
                    let value = policy(&name, order);
                    if ds.get(&key).unwrap().is_some() {
                        ds.update(&key, value, None).unwrap();
                    } else {
                        ds.create(&key, value).unwrap();
                    }
                }
                Op::Delete(n) => {
                    let _ = ds.delete(&gnp(&format!("p{n}")), None);
                }
                Op::Compact => ds.compact(ds.revision().unwrap()).unwrap(),
                Op::Read => apply(drain(&mut s), &mut view),
            }
        }
        apply(drain(&mut s), &mut view);
        let stored: BTreeMap<String, u32> = ds
            .list(Kind::GlobalNetworkPolicy, None)
            .unwrap()
            .items
            .into_iter()
            .map(|kv| (kv.key.name, kv.value["spec"]["order"].as_u64().unwrap() as u32))
            .collect();
        prop_assert_eq!(view, stored);
    }
}

#[test]
fn garbage_in_the_store_is_named_and_the_watch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calico.db");
    let ds: Arc<dyn Datastore> = Arc::new(SqliteDatastore::open(&path).unwrap());
    ds.create(&gnp("good"), policy("good", 1)).unwrap();
    ds.create(&gnp("garbage"), policy("garbage", 1)).unwrap();
    // Not even JSON: written behind the store's back.
    rusqlite_corrupt(&path, "garbage");
    let mut s = Syncer::new(ds.clone(), [Kind::GlobalNetworkPolicy]);
    let events = drain(&mut s);
    assert_eq!(
        summary(&events),
        [
            "set GlobalNetworkPolicy(good) GlobalNetworkPolicy",
            "unreadable GlobalNetworkPolicy(garbage)",
            "in sync"
        ]
    );
    assert!(
        matches!(&events[1], SyncEvent::Unreadable { kept: false, error, .. }
            if error.to_string().contains("not valid JSON")),
        "{events:?}"
    );
    // Everything else still flows.
    ds.create(&gnp("later"), policy("later", 1)).unwrap();
    assert_eq!(
        summary(&drain(&mut s)),
        ["set GlobalNetworkPolicy(later) GlobalNetworkPolicy"]
    );
    // A record that breaks after a good version was handed over says so: the consumer keeps it.
    let mut bad = policy("good", 1);
    bad["spec"]["selector"] = json!("has(");
    ds.update(&gnp("good"), bad, None).unwrap();
    let events = drain(&mut s);
    assert!(
        matches!(&events[..], [SyncEvent::Unreadable { kept: true, .. }]),
        "{events:?}"
    );
}

fn rusqlite_corrupt(path: &std::path::Path, name: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute(
        "UPDATE events SET value = 'not json' WHERE rev = (SELECT mod_rev FROM kv WHERE name = ?1)",
        [name],
    )
    .unwrap();
}

/// A list long enough to be decoded on several threads comes out exactly
/// as one thread would give it: in the store's order, each bad value named
/// at its own key.
#[test]
fn a_long_list_is_handed_over_in_order_with_each_bad_value_named() {
    let (_dir, ds) = store();
    let ops = (0..600u32)
        .map(|i| {
            let name = format!("p{i:03}");
            let mut value = policy(&name, i);
            if i % 7 == 3 {
                value["spec"]["selector"] = json!("has(");
            }
            calico_datastore::WriteOp::Upsert {
                key: gnp(&name),
                value,
            }
        })
        .collect();
    ds.write_batch(ops).unwrap();
    let mut s = Syncer::new(ds.clone(), [Kind::GlobalNetworkPolicy]);
    let events = drain(&mut s);
    let want: Vec<String> = (0..600u32)
        .map(|i| {
            let key = gnp(&format!("p{i:03}"));
            if i % 7 == 3 {
                format!("unreadable {key}")
            } else {
                format!("set {key} GlobalNetworkPolicy")
            }
        })
        .chain(std::iter::once("in sync".to_owned()))
        .collect();
    assert_eq!(summary(&events), want);
    for ev in &events {
        if let SyncEvent::Set {
            key,
            resource: Resource::GlobalNetworkPolicy(p),
            ..
        } = ev
        {
            assert_eq!(p.metadata.name, key.name, "each value at its own key");
        }
    }
}
