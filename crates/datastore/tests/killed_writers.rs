//! Writers of the embedded store killed (SIGKILL) at arbitrary moments: every batch they wrote
//! is all there or not at all, SQLite's integrity check is clean, revisions and events agree,
//! and the store takes writes afterwards.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, Kind, WatchFilter, WriteOp};
use serde_json::json;

/// Tells a re-executed test binary to act as a writer: `<path>|<writer>`.
const CHILD_ENV: &str = "CALICO_DATASTORE_KILLED_WRITER";
const CHILD_TEST: &str = "killed_writer_child";
/// Ops in each batch a writer writes.
const PARTS: usize = 3;

fn spawn(path: &std::path::Path, writer: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored"])
        .env(CHILD_ENV, format!("{}|{writer}", path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn writers_killed_at_any_moment_leave_whole_batches_and_a_sound_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.db");
    drop(SqliteDatastore::open(&path).unwrap());
    let mut writers: Vec<Child> = (0..3).map(|w| spawn(&path, w)).collect();
    // Kill one writer after a spread of delays (so kills land in every phase of a batch),
    // start a new one in its place.
    for round in 0..24u64 {
        std::thread::sleep(Duration::from_millis(20 + (round * 37) % 90));
        let victim = usize::try_from(round).unwrap() % writers.len();
        writers[victim].kill().unwrap();
        writers[victim].wait().unwrap();
        writers[victim] = spawn(&path, 3 + usize::try_from(round).unwrap());
    }
    for mut w in writers {
        w.kill().unwrap();
        w.wait().unwrap();
    }

    let conn = rusqlite::Connection::open(&path).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    drop(conn);

    let store = SqliteDatastore::open(&path).unwrap();
    let list = store.list(Kind::NetworkSet, None).unwrap();
    assert!(list.unreadable.is_empty());
    // Every batch is whole: its parts are all there, or none is.
    let mut batches: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for kv in &list.items {
        let writer = kv.key.namespace.clone().unwrap_or_default();
        let seq = kv.value["spec"]["seq"].as_u64().unwrap();
        *batches.entry((writer, seq)).or_default() += 1;
    }
    assert!(
        batches.len() > 24,
        "the writers got somewhere: {}",
        batches.len()
    );
    for (batch, parts) in &batches {
        assert_eq!(*parts, PARTS, "batch {batch:?} is partly written");
    }
    // The history agrees with the state: one event per item written.
    let mut w = store.watch(WatchFilter::default(), 0).unwrap();
    let mut events = 0;
    while w.next(Duration::from_millis(200)).unwrap().is_some() {
        events += 1;
    }
    assert_eq!(events, list.items.len());
    assert_eq!(store.revision().unwrap(), i64::try_from(events).unwrap());
    // And it takes writes.
    store
        .create(
            &Key::namespaced(Kind::NetworkSet, "after", "x"),
            json!({"spec": {}}),
        )
        .unwrap();
}

/// A writer for the test above, run in child processes it spawns (does nothing run directly):
/// batches of [`PARTS`] creates sharing one sequence number, as fast as it can, until killed.
#[test]
#[ignore = "helper: runs only when spawned by writers_killed_at_any_moment_leave_whole_batches_and_a_sound_file"]
fn killed_writer_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, writer) = spec.rsplit_once('|').unwrap();
    let store = SqliteDatastore::open(&PathBuf::from(path)).unwrap();
    for seq in 0u64.. {
        let ops = (0..PARTS)
            .map(|part| WriteOp::Create {
                key: Key::namespaced(
                    Kind::NetworkSet,
                    format!("w{writer}"),
                    format!("{seq}-{part}"),
                ),
                value: json!({"spec": {"seq": seq, "part": part}}),
            })
            .collect();
        store.write_batch(ops).unwrap();
    }
}
