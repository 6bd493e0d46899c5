//! The backend contract (`calico_datastore::contract`) run against the embedded SQLite store.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use calico_datastore::Datastore;
use calico_datastore::contract;
use calico_datastore::sqlite::SqliteDatastore;

/// Tells a re-executed test binary to act as a writer child: `<path>|<writer>|<iterations>`.
const CHILD_ENV: &str = "CALICO_DATASTORE_CONTRACT_CHILD";
const CHILD_TEST: &str = "multi_process_writer_child";

/// Run `check` with a factory of fresh stores, each its own file in one temporary directory.
fn with_fresh(check: fn(contract::Factory<'_>)) {
    let dir = tempfile::tempdir().unwrap();
    let n = Cell::new(0);
    let fresh = || -> Box<dyn Datastore> {
        n.set(n.get() + 1);
        let path = dir.path().join(format!("store{}.db", n.get()));
        Box::new(SqliteDatastore::open(&path).unwrap())
    };
    check(&fresh);
}

fn open(path: &Path) -> Box<dyn Datastore> {
    Box::new(SqliteDatastore::open(path).unwrap())
}

#[test]
fn crud_basics() {
    with_fresh(contract::crud_basics);
}

#[test]
fn metadata_stamping() {
    with_fresh(contract::metadata_stamping);
}

#[test]
fn invalid_values_rejected() {
    with_fresh(contract::invalid_values_rejected);
}

#[test]
fn create_existing_fails() {
    with_fresh(contract::create_existing_fails);
}

#[test]
fn missing_key_errors() {
    with_fresh(contract::missing_key_errors);
}

#[test]
fn update_cas_conflict() {
    with_fresh(contract::update_cas_conflict);
}

#[test]
fn delete_cas_conflict() {
    with_fresh(contract::delete_cas_conflict);
}

#[test]
fn batch_consecutive_revisions() {
    with_fresh(contract::batch_consecutive_revisions);
}

#[test]
fn batch_atomicity() {
    with_fresh(contract::batch_atomicity);
}

#[test]
fn list_sorted_and_filtered() {
    with_fresh(contract::list_sorted_and_filtered);
}

#[test]
fn watch_resume_in_order() {
    with_fresh(contract::watch_resume_in_order);
}

#[test]
fn watch_filters() {
    with_fresh(contract::watch_filters);
}

#[test]
fn watch_timeout() {
    with_fresh(contract::watch_timeout);
}

#[test]
fn compaction_then_relist() {
    with_fresh(contract::compaction_then_relist);
}

#[test]
fn concurrent_cas_counter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    contract::concurrent_cas_counter(&|| open(&path));
}

#[test]
fn multi_process_writers_watched() {
    const WRITERS: usize = 4;
    const ITERATIONS: usize = 120;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let store = SqliteDatastore::open(&path).unwrap();
    let exe = std::env::current_exe().unwrap();
    let spawn = |writer: usize| {
        Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored"])
            .env(
                CHILD_ENV,
                format!("{}|{writer}|{ITERATIONS}", path.display()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    contract::multi_process_watch(&store, WRITERS, ITERATIONS, &spawn);
}

/// The writer half of `multi_process_writers_watched`, run in child processes it spawns;
/// does nothing when run directly.
#[test]
#[ignore = "helper: runs only when spawned by multi_process_writers_watched"]
fn multi_process_writer_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.rsplitn(3, '|');
    let iterations: usize = parts.next().unwrap().parse().unwrap();
    let writer: usize = parts.next().unwrap().parse().unwrap();
    let path = PathBuf::from(parts.next().unwrap());
    let store = SqliteDatastore::open(&path).unwrap();
    contract::multi_process_writer(&store, writer, iterations);
}

#[test]
fn unreadable_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteDatastore::open(&path).unwrap();
    contract::unreadable_values(&store, &|key| {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let changed = conn
            .execute(
                "UPDATE events SET value = 'not json' WHERE rev =
                 (SELECT mod_rev FROM kv WHERE kind = ?1 AND namespace = ?2 AND name = ?3)",
                rusqlite::params![
                    key.kind.as_str(),
                    key.namespace.as_deref().unwrap_or(""),
                    key.name
                ],
            )
            .unwrap();
        assert_eq!(changed, 1);
    });
}
