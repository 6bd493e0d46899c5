//! The behaviour every [`Datastore`] backend must show, as reusable checks.
//!
//! Each function checks one property and panics (like `assert!`) when the backend falls short.
//! A backend's test file calls each one from its own `#[test]`. Most take a `fresh` factory:
//! every call must yield a new, empty store. [`concurrent_cas_counter`] instead takes a factory
//! whose every call opens another handle onto one shared store. The multi-process property is
//! split into [`multi_process_writer`] (run in each child process) and [`multi_process_watch`]
//! (run in the parent, which supplies the way to spawn children).

use crate::Kind;
use std::collections::{BTreeMap, HashSet};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Datastore, DatastoreError, EventType, Key, Revision, WatchFilter, Watcher, WriteOp};

/// A factory of store handles (see the module docs for what each property expects of it).
pub type Factory<'a> = &'a dyn Fn() -> Box<dyn Datastore>;

/// How long a check waits for an event that must arrive.
const EVENT_WAIT: Duration = Duration::from_secs(10);

fn policy(ns: &str, name: &str) -> Key {
    Key::namespaced(Kind::NetworkPolicy, ns, name)
}

fn doc(spec: Value) -> Value {
    json!({ "spec": spec })
}

fn meta<'a>(v: &'a Value, field: &str) -> &'a str {
    v["metadata"][field]
        .as_str()
        .unwrap_or_else(|| panic!("metadata.{field} missing in {v}"))
}

/// The next event, which must arrive within [`EVENT_WAIT`].
fn expect_event(w: &mut dyn Watcher) -> crate::WatchEvent {
    w.next(EVENT_WAIT)
        .expect("watch failed")
        .expect("timed out waiting for a watch event")
}

/// Nothing more arrives within a short wait.
fn expect_quiet(w: &mut dyn Watcher) {
    if let Some(ev) = w.next(Duration::from_millis(150)).expect("watch failed") {
        panic!("unexpected watch event {ev:?}");
    }
}

/// Get, list, create, update and delete on an empty store, and the revisions they report.
pub fn crud_basics(fresh: Factory<'_>) {
    let s = fresh();
    let r0 = s.revision().unwrap();
    let key = policy("default", "p1");
    assert_eq!(s.get(&key).unwrap(), None);
    assert!(s.list(Kind::NetworkPolicy, None).unwrap().items.is_empty());

    let created = s.create(&key, doc(json!({"order": 1}))).unwrap();
    assert_eq!(created.key, key);
    assert!(created.mod_revision > r0);
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(created.value["spec"]["order"], 1);
    assert_eq!(s.revision().unwrap(), created.mod_revision);
    assert_eq!(s.get(&key).unwrap().as_ref(), Some(&created));

    let updated = s.update(&key, doc(json!({"order": 2})), None).unwrap();
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(updated.value["spec"]["order"], 2);
    assert_eq!(s.get(&key).unwrap().as_ref(), Some(&updated));

    let upserted = s
        .write_batch(vec![WriteOp::Upsert {
            key: key.clone(),
            value: doc(json!({"order": 3})),
        }])
        .unwrap()
        .remove(0);
    assert!(upserted.mod_revision > updated.mod_revision);
    assert_eq!(upserted.create_revision, created.create_revision);

    let list = s.list(Kind::NetworkPolicy, Some("default")).unwrap();
    assert_eq!(list.items, vec![upserted.clone()]);
    assert_eq!(list.revision, upserted.mod_revision);

    let deleted = s.delete(&key, None).unwrap();
    assert_eq!(deleted.key, key);
    assert_eq!(deleted.value, upserted.value);
    assert_eq!(s.get(&key).unwrap(), None);
    assert!(s.revision().unwrap() > upserted.mod_revision);
    assert!(s.list(Kind::NetworkPolicy, None).unwrap().items.is_empty());
}

/// The store stamps `uid`, `creationTimestamp` and `resourceVersion`, keeping the first two
/// across updates and upserts.
pub fn metadata_stamping(fresh: Factory<'_>) {
    let s = fresh();
    let key = Key::global(Kind::GlobalNetworkPolicy, "g");
    let v = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "g", "uid": "caller-supplied", "labels": {"a": "b"}},
        "spec": {"order": 1},
    });
    let created = s.create(&key, v).unwrap();
    let uid = meta(&created.value, "uid").to_string();
    assert_ne!(uid, "caller-supplied", "uid is store-owned");
    assert!(is_uuid_v4(&uid), "uid {uid} is not a UUID v4");
    let ts = meta(&created.value, "creationTimestamp").to_string();
    assert!(is_rfc3339_utc_seconds(&ts), "creationTimestamp {ts}");
    assert_eq!(
        meta(&created.value, "resourceVersion"),
        created.mod_revision.to_string()
    );
    assert_eq!(created.value["metadata"]["labels"]["a"], "b");

    // Caller-supplied store-owned fields on update are replaced by the stored ones.
    let updated = s
        .update(
            &key,
            json!({"metadata": {"uid": "x", "creationTimestamp": "1999-01-01T00:00:00Z",
                                "resourceVersion": "1"}, "spec": {}}),
            None,
        )
        .unwrap();
    assert_eq!(meta(&updated.value, "uid"), uid);
    assert_eq!(meta(&updated.value, "creationTimestamp"), ts);
    assert_eq!(
        meta(&updated.value, "resourceVersion"),
        updated.mod_revision.to_string()
    );
    assert_eq!(s.get(&key).unwrap().unwrap().value, updated.value);

    // A value without metadata gets it.
    let bare = s
        .write_batch(vec![
            WriteOp::Upsert {
                key: key.clone(),
                value: json!({"spec": {}}),
            },
            WriteOp::Upsert {
                key: Key::global(Kind::GlobalNetworkPolicy, "h"),
                value: json!({"spec": {}}),
            },
        ])
        .unwrap();
    assert_eq!(meta(&bare[0].value, "uid"), uid);
    assert_ne!(meta(&bare[1].value, "uid"), uid);
    assert_eq!(
        meta(&bare[1].value, "resourceVersion"),
        bare[1].mod_revision.to_string()
    );

    // A recreated key is a new object.
    s.delete(&key, None).unwrap();
    let again = s.create(&key, json!({})).unwrap();
    assert_ne!(meta(&again.value, "uid"), uid);
}

fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b.iter()
            .enumerate()
            .all(|(i, c)| [8, 13, 18, 23].contains(&i) || c.is_ascii_hexdigit())
        && b[14] == b'4'
}

fn is_rfc3339_utc_seconds(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Values must be JSON objects, with an object (or no) `metadata`.
pub fn invalid_values_rejected(fresh: Factory<'_>) {
    let s = fresh();
    let r0 = s.revision().unwrap();
    let key = policy("ns", "bad");
    for v in [
        json!([1]),
        json!("s"),
        json!(null),
        json!({"metadata": "x"}),
    ] {
        match s.create(&key, v.clone()) {
            Err(DatastoreError::InvalidValue { key: k, .. }) => assert_eq!(k, key),
            other => panic!("create {v}: expected InvalidValue, got {other:?}"),
        }
    }
    assert_eq!(s.revision().unwrap(), r0);
    assert_eq!(s.get(&key).unwrap(), None);
}

/// Creating a key that exists fails and changes nothing.
pub fn create_existing_fails(fresh: Factory<'_>) {
    let s = fresh();
    let key = policy("default", "dup");
    let first = s.create(&key, doc(json!({"v": 1}))).unwrap();
    match s.create(&key, doc(json!({"v": 2}))) {
        Err(DatastoreError::AlreadyExists { key: k }) => assert_eq!(k, key),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(s.get(&key).unwrap(), Some(first.clone()));
    assert_eq!(s.revision().unwrap(), first.mod_revision);
}

/// Update and delete of a missing key fail with NotFound.
pub fn missing_key_errors(fresh: Factory<'_>) {
    let s = fresh();
    let key = policy("default", "ghost");
    assert!(matches!(
        s.update(&key, json!({}), None),
        Err(DatastoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.update(&key, json!({}), Some(1)),
        Err(DatastoreError::NotFound { .. })
    ));
    match s.delete(&key, None) {
        Err(DatastoreError::NotFound { key: k }) => assert_eq!(k, key),
        other => panic!("expected NotFound, got {other:?}"),
    }
    s.create(&key, json!({})).unwrap();
    s.delete(&key, None).unwrap();
    assert!(matches!(
        s.delete(&key, None),
        Err(DatastoreError::NotFound { .. })
    ));
}

/// Update with a stale expected revision fails with Conflict; with the current one it works.
pub fn update_cas_conflict(fresh: Factory<'_>) {
    let s = fresh();
    let key = policy("default", "cas");
    let v1 = s.create(&key, doc(json!({"v": 1}))).unwrap();
    let v2 = s
        .update(&key, doc(json!({"v": 2})), Some(v1.mod_revision))
        .unwrap();
    match s.update(&key, doc(json!({"v": 3})), Some(v1.mod_revision)) {
        Err(DatastoreError::Conflict {
            key: k,
            expected,
            actual,
        }) => {
            assert_eq!(k, key);
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(actual, v2.mod_revision);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get(&key).unwrap(), Some(v2.clone()));
    assert_eq!(s.revision().unwrap(), v2.mod_revision);
}

/// Delete with a stale expected revision fails with Conflict and keeps the value.
pub fn delete_cas_conflict(fresh: Factory<'_>) {
    let s = fresh();
    let key = policy("default", "cas-del");
    let v1 = s.create(&key, json!({})).unwrap();
    let v2 = s.update(&key, json!({}), None).unwrap();
    match s.delete(&key, Some(v1.mod_revision)) {
        Err(DatastoreError::Conflict {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (v1.mod_revision, v2.mod_revision));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get(&key).unwrap(), Some(v2.clone()));
    let gone = s.delete(&key, Some(v2.mod_revision)).unwrap();
    assert_eq!(gone.value, v2.value);
    assert_eq!(s.get(&key).unwrap(), None);
}

/// A successful batch applies every op in order, at the next revision(s): consecutive ones
/// (embedded store) or one shared revision (etcd, one transaction = one revision).
pub fn batch_consecutive_revisions(fresh: Factory<'_>) {
    let s = fresh();
    let a = policy("ns", "a");
    let b = policy("ns", "b");
    s.create(&b, json!({})).unwrap();
    let r0 = s.revision().unwrap();
    let out = s
        .write_batch(vec![
            WriteOp::Create {
                key: a.clone(),
                value: doc(json!({"v": 1})),
            },
            WriteOp::Update {
                key: a.clone(),
                value: doc(json!({"v": 2})),
                expected_revision: Some(r0 + 1),
            },
            WriteOp::Delete {
                key: b.clone(),
                expected_revision: None,
            },
        ])
        .unwrap();
    assert_eq!(out.len(), 3);
    // Either every op at the transaction's one revision (etcd) or consecutive revisions
    // (embedded store); nothing else.
    let step = if out[1].mod_revision == out[0].mod_revision {
        0
    } else {
        1
    };
    assert_eq!(out[0].mod_revision, r0 + 1);
    assert_eq!(out[1].mod_revision, r0 + 1 + step);
    assert_eq!(out[1].create_revision, r0 + 1);
    assert_eq!(out[2].key, b);
    assert_eq!(s.revision().unwrap(), r0 + 1 + 2 * step);
    assert_eq!(s.get(&a).unwrap().unwrap().value["spec"]["v"], 2);
    assert_eq!(s.get(&b).unwrap(), None);
    assert_eq!(s.write_batch(Vec::new()).unwrap(), Vec::new());
    assert_eq!(s.revision().unwrap(), r0 + 1 + 2 * step);
}

/// A failing op aborts the whole batch: nothing is written, the revision does not move, no
/// event is emitted, and the error names the op.
pub fn batch_atomicity(fresh: Factory<'_>) {
    let s = fresh();
    let existing = policy("ns", "existing");
    let before = s.create(&existing, doc(json!({"v": 0}))).unwrap();
    let r0 = s.revision().unwrap();
    let mut w = s.watch(WatchFilter::default(), r0).unwrap();
    let failing: Vec<(Vec<WriteOp>, usize)> = vec![
        (
            vec![
                WriteOp::Create {
                    key: policy("ns", "new1"),
                    value: json!({}),
                },
                WriteOp::Update {
                    key: existing.clone(),
                    value: doc(json!({"v": 1})),
                    expected_revision: None,
                },
                WriteOp::Create {
                    key: existing.clone(),
                    value: json!({}),
                },
            ],
            2,
        ),
        (
            vec![
                WriteOp::Delete {
                    key: existing.clone(),
                    expected_revision: None,
                },
                WriteOp::Update {
                    key: existing.clone(),
                    value: json!({}),
                    expected_revision: None,
                },
            ],
            1,
        ),
        (
            vec![
                WriteOp::Create {
                    key: policy("ns", "new2"),
                    value: json!({}),
                },
                WriteOp::Update {
                    key: existing.clone(),
                    value: json!({}),
                    expected_revision: Some(before.mod_revision + 100),
                },
            ],
            1,
        ),
        (
            vec![
                WriteOp::Create {
                    key: policy("ns", "new3"),
                    value: json!({}),
                },
                WriteOp::Create {
                    key: policy("ns", "new4"),
                    value: json!(42),
                },
            ],
            1,
        ),
    ];
    for (ops, want_index) in failing {
        match s.write_batch(ops) {
            Err(DatastoreError::Batch { index, .. }) => assert_eq!(index, want_index),
            other => panic!("expected Batch error at op {want_index}, got {other:?}"),
        }
    }
    assert_eq!(s.revision().unwrap(), r0);
    assert_eq!(s.get(&existing).unwrap(), Some(before));
    let names: Vec<String> = s
        .list(Kind::NetworkPolicy, None)
        .unwrap()
        .items
        .into_iter()
        .map(|kv| kv.key.name)
        .collect();
    assert_eq!(names, vec!["existing"]);
    expect_quiet(w.as_mut());
}

/// List is per kind, filters by namespace, sorts by namespace then name and reports the revision.
pub fn list_sorted_and_filtered(fresh: Factory<'_>) {
    let s = fresh();
    let mut ops = Vec::new();
    for (ns, name) in [("b", "z"), ("a", "y"), ("b", "a"), ("a", "x"), ("c", "m")] {
        ops.push(WriteOp::Create {
            key: policy(ns, name),
            value: json!({}),
        });
    }
    for name in ["g2", "g1"] {
        ops.push(WriteOp::Create {
            key: Key::global(Kind::GlobalNetworkPolicy, name),
            value: json!({}),
        });
    }
    ops.push(WriteOp::Create {
        key: Key::namespaced(Kind::NetworkSet, "a", "x"),
        value: json!({}),
    });
    s.write_batch(ops).unwrap();
    let rev = s.revision().unwrap();

    let names = |kind: Kind, ns: Option<&str>| -> Vec<(Option<String>, String)> {
        let list = s.list(kind, ns).unwrap();
        assert_eq!(list.revision, rev);
        list.items
            .into_iter()
            .map(|kv| {
                assert_eq!(kv.key.kind, kind);
                (kv.key.namespace, kv.key.name)
            })
            .collect()
    };
    let some = |ns: &str, n: &str| (Some(ns.to_string()), n.to_string());
    assert_eq!(
        names(Kind::NetworkPolicy, None),
        vec![
            some("a", "x"),
            some("a", "y"),
            some("b", "a"),
            some("b", "z"),
            some("c", "m")
        ]
    );
    assert_eq!(
        names(Kind::NetworkPolicy, Some("b")),
        vec![some("b", "a"), some("b", "z")]
    );
    assert_eq!(names(Kind::NetworkPolicy, Some("none")), vec![]);
    assert_eq!(
        names(Kind::GlobalNetworkPolicy, None),
        vec![(None, "g1".to_string()), (None, "g2".to_string())]
    );
    assert_eq!(names(Kind::NetworkSet, None), vec![some("a", "x")]);
    assert_eq!(names(Kind::HostEndpoint, None), vec![]);
}

/// A watch from a list's revision replays exactly the later writes, in order, with values and
/// previous values; a second watch from the middle resumes exactly there.
pub fn watch_resume_in_order(fresh: Factory<'_>) {
    let s = fresh();
    let k1 = policy("default", "w1");
    let k2 = policy("default", "w2");
    s.create(&k1, doc(json!({"v": 0}))).unwrap();
    let list = s.list(Kind::NetworkPolicy, None).unwrap();
    let r = list.revision;

    let c2 = s.create(&k2, doc(json!({"v": 1}))).unwrap();
    let u1 = s.update(&k1, doc(json!({"v": 2})), None).unwrap();
    let d2 = s.delete(&k2, None).unwrap();

    let mut w = s.watch(WatchFilter::default(), r).unwrap();
    let e1 = expect_event(w.as_mut());
    assert_eq!(e1.event_type, EventType::Added);
    assert_eq!(e1.revision, c2.mod_revision);
    assert_eq!(e1.key, k2);
    assert_eq!(e1.value.as_ref(), Some(&c2.value));
    assert_eq!(e1.prev_value, None);

    let e2 = expect_event(w.as_mut());
    assert_eq!(e2.event_type, EventType::Modified);
    assert_eq!(e2.revision, u1.mod_revision);
    assert_eq!(e2.value.as_ref(), Some(&u1.value));
    assert_eq!(e2.prev_value.as_ref(), Some(&list.items[0].value));

    let e3 = expect_event(w.as_mut());
    assert_eq!(e3.event_type, EventType::Deleted);
    assert_eq!(e3.key, k2);
    assert_eq!(e3.value, None);
    assert_eq!(e3.prev_value.as_ref(), Some(&d2.value));
    assert_eq!(e3.revision, s.revision().unwrap());
    expect_quiet(w.as_mut());

    // Live: a write after the watcher caught up arrives too.
    let live = s.create(&policy("default", "w3"), json!({})).unwrap();
    let e4 = expect_event(w.as_mut());
    assert_eq!(e4.revision, live.mod_revision);

    // Resume from the middle.
    let mut w2 = s.watch(WatchFilter::default(), e1.revision).unwrap();
    let revs: Vec<Revision> = (0..3).map(|_| expect_event(w2.as_mut()).revision).collect();
    assert_eq!(revs, vec![e2.revision, e3.revision, e4.revision]);
    expect_quiet(w2.as_mut());

    // A watch from the head sees nothing until the next write.
    let mut w3 = s
        .watch(WatchFilter::default(), s.revision().unwrap())
        .unwrap();
    expect_quiet(w3.as_mut());
}

/// Kind and namespace filters select exactly the matching events, still in order.
pub fn watch_filters(fresh: Factory<'_>) {
    let s = fresh();
    let r = s.revision().unwrap();
    let keys = [
        policy("ns1", "a"),
        Key::namespaced(Kind::NetworkSet, "ns1", "a"),
        policy("ns2", "a"),
        Key::global(Kind::GlobalNetworkPolicy, "a"),
        policy("ns1", "b"),
    ];
    for k in &keys {
        s.create(k, json!({})).unwrap();
    }
    let seen = |kind: Option<Kind>, ns: Option<&str>| -> Vec<Key> {
        let filter = WatchFilter {
            kind,
            namespace: ns.map(String::from),
        };
        let mut w = s.watch(filter, r).unwrap();
        let mut out = Vec::new();
        let mut last = r;
        while let Some(ev) = w.next(Duration::from_millis(150)).unwrap() {
            assert!(ev.revision > last, "events out of order");
            last = ev.revision;
            out.push(ev.key);
        }
        out
    };
    assert_eq!(seen(None, None), keys.to_vec());
    assert_eq!(
        seen(Some(Kind::NetworkPolicy), None),
        vec![keys[0].clone(), keys[2].clone(), keys[4].clone()]
    );
    assert_eq!(
        seen(Some(Kind::NetworkPolicy), Some("ns1")),
        vec![keys[0].clone(), keys[4].clone()]
    );
    assert_eq!(
        seen(None, Some("ns1")),
        vec![keys[0].clone(), keys[1].clone(), keys[4].clone()]
    );
    assert_eq!(
        seen(Some(Kind::GlobalNetworkPolicy), None),
        vec![keys[3].clone()]
    );
    assert_eq!(seen(Some(Kind::HostEndpoint), None), Vec::<Key>::new());
}

/// `next` returns `Ok(None)` after about the timeout when nothing happens.
pub fn watch_timeout(fresh: Factory<'_>) {
    let s = fresh();
    let mut w = s
        .watch(WatchFilter::default(), s.revision().unwrap())
        .unwrap();
    let start = Instant::now();
    assert!(w.next(Duration::from_millis(200)).unwrap().is_none());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(5),
        "next(200ms) returned after {took:?}"
    );
}

/// After compaction, watching from an older revision reports Compacted; relisting and watching
/// from the list's revision works.
pub fn compaction_then_relist(fresh: Factory<'_>) {
    let s = fresh();
    let r0 = s.revision().unwrap();
    for i in 0..5 {
        s.create(&policy("ns", &format!("c{i}")), json!({}))
            .unwrap();
    }
    let head = s.revision().unwrap();
    s.compact(r0 + 3).unwrap();

    // The error may come from watch() or from the first next().
    let err = match s.watch(WatchFilter::default(), r0) {
        Err(e) => e,
        Ok(mut w) => match w.next(EVENT_WAIT) {
            Err(e) => e,
            Ok(ev) => panic!("watch from a compacted revision returned {ev:?}"),
        },
    };
    match err {
        DatastoreError::Compacted {
            requested,
            compacted,
        } => {
            assert_eq!(requested, r0);
            assert!(compacted >= r0 + 3, "compacted {compacted}");
        }
        other => panic!("expected Compacted, got {other:?}"),
    }

    // History after the compaction point is still there.
    let mut w = s.watch(WatchFilter::default(), r0 + 3).unwrap();
    assert_eq!(expect_event(w.as_mut()).revision, r0 + 4);
    assert_eq!(expect_event(w.as_mut()).revision, head);

    let list = s.list(Kind::NetworkPolicy, None).unwrap();
    assert_eq!(list.items.len(), 5);
    let mut w = s.watch(WatchFilter::default(), list.revision).unwrap();
    let kv = s.create(&policy("ns", "after"), json!({})).unwrap();
    let ev = expect_event(w.as_mut());
    assert_eq!((ev.revision, ev.key), (kv.mod_revision, kv.key));

    // Data survives compaction; only history is gone.
    s.compact(s.revision().unwrap()).unwrap();
    assert_eq!(s.list(Kind::NetworkPolicy, None).unwrap().items.len(), 6);
}

/// Threads, each with its own handle onto one store, increment a counter with compare-and-swap,
/// retrying on Conflict; no increment is lost. `same_store` opens another handle onto one shared
/// store on every call.
pub fn concurrent_cas_counter(same_store: Factory<'_>) {
    const THREADS: usize = 4;
    const INCREMENTS: u64 = 50;
    let key = Key::global(Kind::ClusterInformation, "threads");
    let setup = same_store();
    setup.create(&key, json!({"spec": {"count": 0}})).unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let store = same_store();
            let key = key.clone();
            std::thread::spawn(move || {
                let mut conflicts = 0u64;
                for _ in 0..INCREMENTS {
                    conflicts += cas_increment(store.as_ref(), &key);
                }
                conflicts
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread panicked");
    }
    let end = setup.get(&key).unwrap().unwrap();
    assert_eq!(end.value["spec"]["count"], THREADS as u64 * INCREMENTS);
}

/// Read the counter at `key` and write it back plus one with compare-and-swap, retrying on
/// Conflict. Returns how many conflicts it met.
fn cas_increment(store: &dyn Datastore, key: &Key) -> u64 {
    let mut conflicts = 0;
    loop {
        let kv = store.get(key).unwrap().expect("counter exists");
        let count = kv.value["spec"]["count"].as_u64().expect("count");
        let mut value = kv.value.clone();
        value["spec"]["count"] = json!(count + 1);
        match store.update(key, value, Some(kv.mod_revision)) {
            Ok(_) => return conflicts,
            Err(DatastoreError::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("counter update failed: {e}"),
        }
    }
}

const MP_ITEM_KIND: Kind = Kind::WorkloadEndpoint;
const MP_COUNTER: &str = "processes";

fn mp_counter_key() -> Key {
    Key::global(Kind::ClusterInformation, MP_COUNTER)
}

/// What writer `writer`'s iteration `i` does in the multi-process property: 1 = create one
/// item, 2 = a batch creating two items, 0 = a CAS increment of the shared counter.
fn mp_step(i: usize) -> usize {
    match i % 4 {
        2 => 2,
        3 => 0,
        _ => 1,
    }
}

/// The child half of the multi-process property: perform writer `writer`'s `iterations` writes
/// on `store` (a handle onto the parent's store). Each write is a create of an item, a batch of
/// two, or a CAS increment of a shared counter, so writers race on both the revision counter and
/// one key.
pub fn multi_process_writer(store: &dyn Datastore, writer: usize, iterations: usize) {
    let item = |i: usize, part: usize| WriteOp::Create {
        key: Key::namespaced(
            MP_ITEM_KIND,
            format!("w{writer}"),
            format!("i{i:05}-{part}"),
        ),
        value: json!({"spec": {"writer": writer, "seq": i, "part": part}}),
    };
    for i in 0..iterations {
        match mp_step(i) {
            0 => {
                cas_increment(store, &mp_counter_key());
            }
            1 => {
                store.write_batch(vec![item(i, 0)]).unwrap();
            }
            _ => {
                store.write_batch(vec![item(i, 0), item(i, 1)]).unwrap();
            }
        }
    }
}

/// The parent half of the multi-process property. `store` is the parent's handle; `spawn(w)`
/// must start an OS process that runs [`multi_process_writer`] as writer `w` with
/// `iterations` on the same store. While `writers` children write concurrently, one watcher
/// must see every write exactly once, in revision order, with no gaps.
pub fn multi_process_watch(
    store: &dyn Datastore,
    writers: usize,
    iterations: usize,
    spawn: &dyn Fn(usize) -> Child,
) {
    store
        .create(&mp_counter_key(), json!({"spec": {"count": 0}}))
        .unwrap();
    let start = store.revision().unwrap();
    let per_writer: usize = (0..iterations).map(mp_step).sum::<usize>();
    let increments_per_writer = (0..iterations).filter(|&i| mp_step(i) == 0).count();
    let expected = writers * (per_writer + increments_per_writer);

    let mut w = store.watch(WatchFilter::default(), start).unwrap();
    let mut children: Vec<Option<Child>> = (0..writers).map(|i| Some(spawn(i))).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut events = Vec::with_capacity(expected);
    while events.len() < expected {
        assert!(
            Instant::now() < deadline,
            "saw {} of {expected} events before the deadline",
            events.len()
        );
        if let Some(ev) = w.next(Duration::from_millis(200)).unwrap() {
            events.push(ev);
            continue;
        }
        // Quiet: make sure no child died, else we would wait for events that never come.
        for slot in &mut children {
            if let Some(child) = slot
                && let Some(status) = child.try_wait().unwrap()
                && !status.success()
            {
                let child = slot.take().unwrap();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "writer process failed ({status}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    for child in children.into_iter().flatten() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "writer process failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    expect_quiet(w.as_mut());

    // Revisions climb by one from start+1 with no gap; only the two items of one batch may
    // share a revision (etcd gives a transaction one revision).
    let same_batch = |a: &crate::WatchEvent, b: &crate::WatchEvent| {
        a.key.kind == MP_ITEM_KIND
            && b.key.kind == MP_ITEM_KIND
            && a.key.namespace == b.key.namespace
            && a.key.name.split('-').next() == b.key.name.split('-').next()
    };
    for (i, ev) in events.iter().enumerate() {
        let ok = match i.checked_sub(1).map(|p| &events[p]) {
            None => ev.revision == start + 1,
            Some(prev) => {
                ev.revision == prev.revision + 1
                    || (ev.revision == prev.revision && same_batch(prev, ev))
            }
        };
        assert!(ok, "gap or reorder at {i}: {ev:?}");
        if let Some(v) = &ev.value {
            assert_eq!(meta(v, "resourceVersion"), ev.revision.to_string());
        }
    }
    let last = events.last().map_or(start, |ev| ev.revision);
    assert_eq!(store.revision().unwrap(), last);

    // Each writer's items arrive once each, in its program order; the counter climbs by one.
    let mut per: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    let mut unique = HashSet::new();
    let mut count = 0;
    for ev in &events {
        assert_eq!(
            ev.event_type,
            if ev.key.kind == MP_ITEM_KIND {
                EventType::Added
            } else {
                EventType::Modified
            }
        );
        let v = ev.value.as_ref().expect("value");
        if ev.key.kind == MP_ITEM_KIND {
            let spec = &v["spec"];
            let (wr, seq, part) = (
                spec["writer"].as_u64().unwrap(),
                spec["seq"].as_u64().unwrap(),
                spec["part"].as_u64().unwrap(),
            );
            assert!(unique.insert((wr, seq, part)), "duplicate event {ev:?}");
            per.entry(wr).or_default().push((seq, part));
        } else {
            assert_eq!(ev.key, mp_counter_key());
            let prev = ev.prev_value.as_ref().expect("prev value");
            assert_eq!(prev["spec"]["count"], count);
            count += 1;
            assert_eq!(v["spec"]["count"], count);
        }
    }
    assert_eq!(count as usize, writers * increments_per_writer);
    assert_eq!(per.len(), writers);
    for (wr, seen) in per {
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "writer {wr}'s writes arrived out of order");
        assert_eq!(seen.len(), per_writer);
    }
}

/// One unreadable value (made so by `corrupt`, which writes garbage under a key behind the
/// store's back) never hides the others: a list returns every readable item and names the bad
/// one apart; a get of it says what is wrong; it can be overwritten and deleted, which is how an
/// operator repairs it.
pub fn unreadable_values(s: &dyn Datastore, corrupt: &dyn Fn(&Key)) {
    let v = |name: &str| json!({"metadata": {"name": name, "namespace": "default"}, "spec": {}});
    for name in ["a", "b", "c"] {
        s.create(&policy("default", name), v(name)).unwrap();
    }
    let b = policy("default", "b");
    corrupt(&b);
    let list = s.list(Kind::NetworkPolicy, None).unwrap();
    let names: Vec<&str> = list.items.iter().map(|kv| kv.key.name.as_str()).collect();
    assert_eq!(names, ["a", "c"], "the readable items are all listed");
    assert_eq!(list.unreadable.len(), 1);
    assert_eq!(list.unreadable[0].key, b);
    assert!(!list.unreadable[0].reason.is_empty());
    assert!(
        matches!(s.get(&b), Err(DatastoreError::Corrupt { ref key, .. }) if *key == b),
        "a get of the bad value names it"
    );
    // Overwritten with a valid value: readable again, as a new identity.
    let fixed = s.update(&b, v("b"), None).unwrap();
    assert!(fixed.value["metadata"]["uid"].is_string());
    assert!(
        s.list(Kind::NetworkPolicy, None)
            .unwrap()
            .unreadable
            .is_empty()
    );
    // Broken again, then deleted.
    corrupt(&b);
    let deleted = s.delete(&b, None).unwrap();
    assert_eq!(deleted.key, b);
    let list = s.list(Kind::NetworkPolicy, None).unwrap();
    assert!(list.unreadable.is_empty());
    assert_eq!(list.items.len(), 2);
    // An upsert in a batch repairs too.
    let c = policy("default", "c");
    corrupt(&c);
    s.write_batch(vec![WriteOp::Upsert {
        key: c.clone(),
        value: v("c"),
    }])
    .unwrap();
    assert_eq!(s.list(Kind::NetworkPolicy, None).unwrap().items.len(), 2);
}
