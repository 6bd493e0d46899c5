//! The embedded backend: one SQLite file in WAL mode, shared by many processes at once.
//!
//! Layout (schema version 1), modelled on etcd's MVCC store:
//! - `meta`: one row with the store revision (bumped by every write) and the compacted revision;
//! - `events`: an append-only log of every write, keyed by revision: what happened, to which
//!   key, the value written (NULL for deletes) and `prev_rev`, the revision holding the value
//!   it replaced. Watchers tail it.
//! - `kv`: the index of live keys: create and mod revisions; the current value is the `events`
//!   row at `mod_rev`.
//!
//! Each value is stored once (in its event) rather than again in `kv` and again as the next
//! event's previous value: a write costs mostly the bytes of its value, which is what keeps
//! bulk imports fast. Compaction therefore keeps the old events that are still some key's
//! current value or some retained event's previous value.
//!
//! Every write runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's single write lock
//! up front. The revision counter is read and bumped inside that transaction, so writers from
//! any number of processes are serialized and commit their revisions in increasing order: a
//! reader can never see revision N+1 committed while N is still pending, which is what lets a
//! watcher tail the `events` table without gaps.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::write;
use crate::{
    Datastore, DatastoreError, EventType, Key, KeyValue, Kind, ListResult, Revision, Unreadable,
    WatchEvent, WatchFilter, Watcher, WriteOp,
};

/// The schema version this code reads and writes (kept in `PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// How long one operation keeps retrying while other processes hold the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept per handle; more are opened on demand under concurrency.
const MAX_IDLE_CONNECTIONS: usize = 4;

/// How many events a watcher reads per query.
const WATCH_PAGE: i64 = 512;

/// First and longest sleep between a waiting watcher's checks for new commits. Starting small
/// keeps latency low right after a write; the cap bounds idle cost (one cheap pragma per check).
const WATCH_POLL_MIN: Duration = Duration::from_millis(1);
const WATCH_POLL_MAX: Duration = Duration::from_millis(10);

/// Page cache limit per connection.
const CACHE_KIB: i64 = 64 * 1024;

/// Keep the WAL file from staying at its high-water mark after big batches.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS kv (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    rev INTEGER PRIMARY KEY,
    type INTEGER NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT,
    prev_rev INTEGER
);
";

/// `events.type` codes.
const EV_ADDED: i64 = 0;
const EV_MODIFIED: i64 = 1;
const EV_DELETED: i64 = 2;

/// The embedded store: a handle on one SQLite file. Cheap to share between threads; any number
/// of handles, in any number of processes, may use the same file at once.
pub struct SqliteDatastore {
    path: PathBuf,
    /// Idle connections; operations take one (or open a new one) and give it back.
    idle: Mutex<Vec<Connection>>,
    /// Serializes this handle's writers so they queue here rather than spin on SQLite's lock.
    write_lock: Mutex<()>,
    /// This handle used the space kept in reserve: put it back after the next write that works.
    reserve_taken: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for SqliteDatastore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDatastore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteDatastore {
    /// Open the store file, creating it (and its parent directory) with the schema if needed.
    /// Safe when several processes open a fresh file at the same moment.
    pub fn open(path: &Path) -> Result<Self, DatastoreError> {
        let doing = || format!("opening datastore {}", path.display());
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| DatastoreError::Backend {
                doing: format!(
                    "creating directory {} for datastore {}",
                    parent.display(),
                    path.display()
                ),
                source: Box::new(e),
            })?;
        }
        let mut conn = with_retry(doing, || Ok(open_connection(path)?))?;
        with_retry(doing, || init_schema(&mut conn))?;
        ensure_reserve(path);
        Ok(Self {
            path: path.to_path_buf(),
            idle: Mutex::new(vec![conn]),
            write_lock: Mutex::new(()),
            reserve_taken: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take an idle connection, or open another one.
    fn checkout(&self) -> Result<PooledConn<'_>, DatastoreError> {
        let conn = lock(&self.idle).pop();
        let conn = match conn {
            Some(c) => c,
            None => with_retry(
                || format!("opening datastore {}", self.path.display()),
                || Ok(open_connection(&self.path)?),
            )?,
        };
        Ok(PooledConn {
            conn: Some(conn),
            pool: &self.idle,
        })
    }

    /// Apply `ops` (see [`Self::apply_once`]). On a full filesystem, a batch of deletions gets
    /// the space kept in reserve beside the file (so an operator can always free space), and
    /// anything else fails naming the file and what to do.
    fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<KeyValue>, DatastoreError> {
        let only_deletes = ops.iter().all(|op| matches!(op, WriteOp::Delete { .. }));
        // Deletions are keys only: cheap to keep for a second try.
        let retry = only_deletes.then(|| ops.clone());
        match self.apply_once(ops) {
            Err(e) if is_disk_full(&e) => {
                let reserve = reserve_path(&self.path);
                if let Some(ops) = retry
                    && std::fs::remove_file(&reserve).is_ok()
                {
                    self.reserve_taken
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return self.apply_once(ops);
                }
                Err(DatastoreError::Backend {
                    doing: format!(
                        "writing to datastore {}: the filesystem is full; free space there \
                         (deleting resources still works while {} exists)",
                        self.path.display(),
                        reserve.display()
                    ),
                    source: Box::new(e),
                })
            }
            Ok(kvs) => {
                if !only_deletes
                    && self
                        .reserve_taken
                        .swap(false, std::sync::atomic::Ordering::Relaxed)
                {
                    ensure_reserve(&self.path);
                }
                Ok(kvs)
            }
            Err(e) => Err(e),
        }
    }

    /// Apply `ops` in one IMMEDIATE transaction at consecutive revisions. Errors of op `i` come
    /// back as `Batch { index: i, .. }`.
    fn apply_once(&self, mut ops: Vec<WriteOp>) -> Result<Vec<KeyValue>, DatastoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        for (index, op) in ops.iter().enumerate() {
            check_key(op_key(op)).map_err(|e| batch_err(index, e))?;
        }
        let _writer = lock(&self.write_lock);
        let mut conn = self.checkout()?;
        let conn = conn.get();
        let created_at = write::now_timestamp();
        let doing = match ops.as_slice() {
            [op] => format!("writing {}", op_key(op)),
            _ => format!("writing a batch of {} ops", ops.len()),
        };
        let applied = with_retry(
            || doing.clone(),
            || {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let base: Revision =
                    tx.query_row("SELECT revision FROM meta WHERE id = 1", [], |r| r.get(0))?;
                let mut applied = Vec::with_capacity(ops.len());
                for (index, op) in ops.iter_mut().enumerate() {
                    let rev = base + 1 + index as Revision;
                    match apply_op(&tx, op, rev, &created_at) {
                        Ok(a) => applied.push(a),
                        // A busy error must abort and retry the whole transaction.
                        Err(TxError::Sql(e)) if is_busy(&e) => return Err(TxError::Sql(e)),
                        Err(TxError::Sql(e)) => {
                            return Err(TxError::Store(batch_err(
                                index,
                                DatastoreError::Backend {
                                    doing: format!("writing {}", op_key(op)),
                                    source: Box::new(e),
                                },
                            )));
                        }
                        Err(TxError::Store(e)) => {
                            return Err(TxError::Store(batch_err(index, e)));
                        }
                    }
                }
                tx.execute(
                    "UPDATE meta SET revision = ?1 WHERE id = 1",
                    [base + ops.len() as Revision],
                )?;
                tx.commit()?;
                Ok(applied)
            },
        )?;
        Ok(ops
            .into_iter()
            .zip(applied)
            .map(|(op, a)| {
                let (key, value) = match op {
                    WriteOp::Create { key, value }
                    | WriteOp::Update { key, value, .. }
                    | WriteOp::Upsert { key, value } => (key, value),
                    WriteOp::Delete { key, .. } => {
                        (key, a.deleted.unwrap_or(Value::Object(Map::new())))
                    }
                };
                KeyValue {
                    key,
                    value,
                    create_revision: a.create_rev,
                    mod_revision: a.mod_rev,
                }
            })
            .collect())
    }

    /// Apply one op, reporting its error unwrapped.
    fn apply_one(&self, op: WriteOp) -> Result<KeyValue, DatastoreError> {
        match self.apply(vec![op]) {
            Ok(mut kvs) => Ok(kvs.remove(0)),
            Err(DatastoreError::Batch { source, .. }) => Err(*source),
            Err(e) => Err(e),
        }
    }
}

/// Bytes kept in reserve beside the store file: what a batch of deletions may need on a full
/// filesystem (a few pages of WAL).
const RESERVE_BYTES: usize = 1 << 20;

/// The reserve file of the store at `path`.
fn reserve_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".reserve");
    PathBuf::from(name)
}

/// Puts the reserve back when it is missing and there is room (best effort: without it,
/// deletion on a full filesystem fails like any write, with the same message).
fn ensure_reserve(path: &Path) {
    let reserve = reserve_path(path);
    if !reserve.exists() && std::fs::write(&reserve, vec![0u8; RESERVE_BYTES]).is_err() {
        let _ = std::fs::remove_file(&reserve);
    }
}

/// Whether SQLite said the disk (or database) is full somewhere in `e`'s causes.
fn is_disk_full(e: &DatastoreError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(rusqlite::Error::SqliteFailure(f, _)) = c.downcast_ref::<rusqlite::Error>()
            && f.code == ErrorCode::DiskFull
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A connection borrowed from a handle's idle list; returned on drop.
struct PooledConn<'a> {
    conn: Option<Connection>,
    pool: &'a Mutex<Vec<Connection>>,
}

impl PooledConn<'_> {
    fn get(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for PooledConn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A connection left inside a transaction (only after a panic) is not reused.
            if conn.is_autocommit() {
                let mut idle = lock(self.pool);
                if idle.len() < MAX_IDLE_CONNECTIONS {
                    idle.push(conn);
                }
            }
        }
    }
}

/// Lock a mutex, ignoring poisoning: the guarded data (idle connections, or nothing) stays
/// valid whatever a panicking holder was doing.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// SQLite's busy handler: called while another connection holds a lock, with the number of
/// earlier calls for this wait. SQLite's own timeout handler backs off to 100 ms naps, but
/// writers here hold the lock for about a millisecond, so nap briefly and often; give up (and
/// let `with_retry` report the error) after about [`BUSY_TIMEOUT`].
fn busy_wait(attempt: i32) -> bool {
    const NAP_MS: u64 = 2;
    let attempt = u64::try_from(attempt).unwrap_or(0);
    if attempt * NAP_MS > BUSY_TIMEOUT.as_millis() as u64 {
        return false;
    }
    std::thread::sleep(Duration::from_millis(if attempt < 4 { 1 } else { NAP_MS }));
    true
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.busy_handler(Some(busy_wait))?;
    // Plans must not depend on bound values: otherwise SQLite (built with STAT4) re-prepares
    // cached statements on every new binding, which dominated bulk writes.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // NORMAL is durable across application crashes in WAL mode and avoids an fsync per commit.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    // Negative means KiB. Pages are allocated on demand, so small workloads stay small; big
    // batches then build in memory instead of spilling half-built pages to the WAL and
    // reading them back.
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    Ok(conn)
}

/// Switch the file to WAL (persistent in the file) and create the tables. Every step is
/// idempotent, so processes racing to initialize a fresh file all succeed.
fn init_schema(conn: &mut Connection) -> Result<(), TxError> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(TxError::Store(DatastoreError::Backend {
            doing: "switching the datastore to WAL mode".into(),
            source: format!("SQLite kept journal mode {mode:?} (is the filesystem local?)").into(),
        }));
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read again under the write lock: another process may have initialized meanwhile.
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(TxError::Store(DatastoreError::Backend {
            doing: "checking the datastore schema".into(),
            source: format!(
                "schema version {version} is newer than this program supports ({SCHEMA_VERSION})"
            )
            .into(),
        }));
    }
    tx.execute_batch(SCHEMA)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// An error inside a retried transaction: SQLite's own (retried when busy) or the store's.
enum TxError {
    Sql(rusqlite::Error),
    Store(DatastoreError),
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<DatastoreError> for TxError {
    fn from(e: DatastoreError) -> Self {
        Self::Store(e)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Run `f`, retrying while SQLite reports the database busy or locked. The busy timeout already
/// waits inside SQLite for most lock waits; this covers the cases where SQLite returns BUSY
/// without consulting it (WAL recovery, journal mode changes, snapshot upgrades).
fn with_retry<T>(
    doing: impl Fn() -> String,
    mut f: impl FnMut() -> Result<T, TxError>,
) -> Result<T, DatastoreError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut delay = Duration::from_millis(1);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(TxError::Store(e)) => return Err(e),
            Err(TxError::Sql(e)) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            Err(TxError::Sql(e)) => {
                return Err(DatastoreError::Backend {
                    doing: doing(),
                    source: Box::new(e),
                });
            }
        }
    }
}

fn batch_err(index: usize, source: DatastoreError) -> DatastoreError {
    DatastoreError::Batch {
        index,
        source: Box::new(source),
    }
}

fn op_key(op: &WriteOp) -> &Key {
    match op {
        WriteOp::Create { key, .. }
        | WriteOp::Update { key, .. }
        | WriteOp::Upsert { key, .. }
        | WriteOp::Delete { key, .. } => key,
    }
}

fn check_key(key: &Key) -> Result<(), DatastoreError> {
    let reason = if key.name.is_empty() {
        "the name is empty"
    } else if key.namespace.as_deref() == Some("") {
        "the namespace is empty (use no namespace for cluster-scoped kinds)"
    } else {
        return Ok(());
    };
    Err(DatastoreError::InvalidValue {
        key: key.clone(),
        reason: reason.into(),
    })
}

/// The namespace column: '' stands for "cluster-scoped".
fn ns_col(key: &Key) -> &str {
    key.namespace.as_deref().unwrap_or("")
}

/// What a stored row held before a write.
struct Existing {
    value: String,
    create_rev: Revision,
    mod_rev: Revision,
}

/// What a write did, beyond the value the caller handed in.
struct Applied {
    create_rev: Revision,
    mod_rev: Revision,
    /// For a delete: the value that was removed.
    deleted: Option<Value>,
}

/// The store-owned fields of a stored value's metadata.
#[derive(Deserialize, Default)]
struct StoredMeta {
    #[serde(default)]
    metadata: StoredMetaFields,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StoredMetaFields {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    creation_timestamp: Option<String>,
}

fn apply_op(
    tx: &rusqlite::Transaction<'_>,
    op: &mut WriteOp,
    rev: Revision,
    now: &str,
) -> Result<Applied, TxError> {
    let existing = read_existing(tx, op_key(op))?;
    // An unreadable value can still be deleted or overwritten (as a value without metadata):
    // that is how an operator repairs it.
    let current = existing.as_ref().map(|e| {
        let prev: StoredMeta = serde_json::from_str(&e.value).unwrap_or_default();
        write::Current {
            uid: prev.metadata.uid,
            created: prev.metadata.creation_timestamp,
            mod_revision: e.mod_rev,
        }
    });
    write::check(op, current.as_ref())?;
    let (key, value) = match op {
        WriteOp::Delete { key, .. } => (&*key, None),
        WriteOp::Create { key, value }
        | WriteOp::Update { key, value, .. }
        | WriteOp::Upsert { key, value } => (&*key, Some(value)),
    };
    match (value, existing) {
        (None, Some(existing)) => {
            let deleted = decode_value(key, &existing.value).unwrap_or(Value::Null);
            tx.prepare_cached("DELETE FROM kv WHERE kind = ?1 AND namespace = ?2 AND name = ?3")?
                .execute(params![key.kind.stored_name(), ns_col(key), key.name])?;
            insert_event(tx, rev, EV_DELETED, key, None, Some(existing.mod_rev))?;
            Ok(Applied {
                create_rev: existing.create_rev,
                mod_rev: existing.mod_rev,
                deleted: Some(deleted),
            })
        }
        // Checked above: a delete needs the key.
        (None, None) => Err(DatastoreError::NotFound { key: key.clone() }.into()),
        (Some(value), None) => {
            write::stamp(key, value, None, now, Some(rev))?;
            let text = to_json(value);
            tx.prepare_cached(
                "INSERT INTO kv (kind, namespace, name, create_rev, mod_rev)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![key.kind.stored_name(), ns_col(key), key.name, rev])?;
            insert_event(tx, rev, EV_ADDED, key, Some(&text), None)?;
            Ok(Applied {
                create_rev: rev,
                mod_rev: rev,
                deleted: None,
            })
        }
        (Some(value), Some(existing)) => {
            write::stamp(key, value, current.as_ref(), now, Some(rev))?;
            let text = to_json(value);
            tx.prepare_cached(
                "UPDATE kv SET mod_rev = ?4 WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            )?
            .execute(params![key.kind.stored_name(), ns_col(key), key.name, rev])?;
            insert_event(
                tx,
                rev,
                EV_MODIFIED,
                key,
                Some(&text),
                Some(existing.mod_rev),
            )?;
            Ok(Applied {
                create_rev: existing.create_rev,
                mod_rev: rev,
                deleted: None,
            })
        }
    }
}

/// The current value, create and mod revisions of a key. A value missing from `events` reads
/// as Corrupt.
fn read_existing(tx: &rusqlite::Transaction<'_>, key: &Key) -> Result<Option<Existing>, TxError> {
    let row = tx
        .prepare_cached(
            "SELECT e.value, k.create_rev, k.mod_rev FROM kv k LEFT JOIN events e ON e.rev = k.mod_rev
             WHERE k.kind = ?1 AND k.namespace = ?2 AND k.name = ?3",
        )?
        .query_row(params![key.kind.stored_name(), ns_col(key), key.name], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Revision>(1)?,
                r.get::<_, Revision>(2)?,
            ))
        })
        .optional()?;
    let Some((value, create_rev, mod_rev)) = row else {
        return Ok(None);
    };
    let value = value.ok_or_else(|| missing_value(key, mod_rev))?;
    Ok(Some(Existing {
        value,
        create_rev,
        mod_rev,
    }))
}

fn missing_value(key: &Key, rev: Revision) -> DatastoreError {
    DatastoreError::Corrupt {
        key: key.clone(),
        reason: format!("the value written at revision {rev} is missing"),
    }
}

fn insert_event(
    tx: &rusqlite::Transaction<'_>,
    rev: Revision,
    ty: i64,
    key: &Key,
    value: Option<&str>,
    prev_rev: Option<Revision>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO events (rev, type, kind, namespace, name, value, prev_rev)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        rev,
        ty,
        key.kind.stored_name(),
        ns_col(key),
        key.name,
        value,
        prev_rev
    ])?;
    Ok(())
}

/// Serialize a value for storage; the buffer starts at a typical resource's size so that
/// serializing rarely reallocates.
fn to_json(value: &Value) -> String {
    let mut buf = Vec::with_capacity(1024);
    serde_json::to_writer(&mut buf, value).expect("serializing a JSON value cannot fail");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// Parse a stored value, which must be a JSON object.
/// The reason a [`DatastoreError::Corrupt`] gives (or the whole error, for another kind).
fn corrupt_reason(e: DatastoreError) -> String {
    match e {
        DatastoreError::Corrupt { reason, .. } => reason,
        other => other.to_string(),
    }
}

fn decode_value(key: &Key, text: &str) -> Result<Value, DatastoreError> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(DatastoreError::Corrupt {
            key: key.clone(),
            reason: "stored value is not a JSON object".into(),
        }),
        Err(e) => Err(DatastoreError::Corrupt {
            key: key.clone(),
            reason: format!("stored value is not valid JSON: {e}"),
        }),
    }
}

fn make_key(kind: &str, namespace: String, name: String) -> Result<Key, DatastoreError> {
    let Some(kind) = Kind::from_store_row(kind) else {
        return Err(DatastoreError::UnknownKind {
            kind: kind.to_owned(),
            name,
        });
    };
    Ok(Key {
        kind,
        namespace: (!namespace.is_empty()).then_some(namespace),
        name,
    })
}

fn read_meta(conn: &Connection) -> rusqlite::Result<(Revision, Revision)> {
    conn.query_row(
        "SELECT revision, compacted FROM meta WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

impl Datastore for SqliteDatastore {
    fn get(&self, key: &Key) -> Result<Option<KeyValue>, DatastoreError> {
        let mut conn = self.checkout()?;
        let conn = conn.get();
        let row = with_retry(
            || format!("reading {key}"),
            || {
                Ok(conn
                    .prepare_cached(
                        "SELECT e.value, k.create_rev, k.mod_rev
                         FROM kv k LEFT JOIN events e ON e.rev = k.mod_rev
                         WHERE k.kind = ?1 AND k.namespace = ?2 AND k.name = ?3",
                    )?
                    .query_row(
                        params![key.kind.stored_name(), ns_col(key), key.name],
                        |r| {
                            Ok((
                                r.get::<_, Option<String>>(0)?,
                                r.get::<_, Revision>(1)?,
                                r.get::<_, Revision>(2)?,
                            ))
                        },
                    )
                    .optional()?)
            },
        )?;
        row.map(|(text, create_revision, mod_revision)| {
            let text = text.ok_or_else(|| missing_value(key, mod_revision))?;
            Ok(KeyValue {
                value: decode_value(key, &text)?,
                key: key.clone(),
                create_revision,
                mod_revision,
            })
        })
        .transpose()
    }

    fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<ListResult, DatastoreError> {
        let mut conn = self.checkout()?;
        let conn = conn.get();
        let (items, unreadable, revision) = with_retry(
            || match namespace {
                Some(ns) => format!("listing {kind} in namespace {ns}"),
                None => format!("listing {kind}"),
            },
            || {
                // One read transaction: the items and the revision come from the same snapshot.
                let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let (revision, _) = read_meta(&tx)?;
                let mut items = Vec::new();
                let mut unreadable = Vec::new();
                {
                    let mut stmt = tx.prepare_cached(
                        "SELECT k.namespace, k.name, e.value, k.create_rev, k.mod_rev
                         FROM kv k LEFT JOIN events e ON e.rev = k.mod_rev
                         WHERE k.kind = ?1 AND (?2 IS NULL OR k.namespace = ?2)
                         ORDER BY k.namespace, k.name",
                    )?;
                    let mut q = stmt.query(params![kind.stored_name(), namespace])?;
                    while let Some(r) = q.next()? {
                        let key = Key {
                            kind,
                            namespace: Some(r.get::<_, String>(0)?).filter(|n| !n.is_empty()),
                            name: r.get(1)?,
                        };
                        let mod_revision: Revision = r.get(4)?;
                        // Parsed straight from SQLite's buffer: no intermediate String per row.
                        let decoded = match r.get_ref(2)?.as_str_or_null() {
                            Ok(Some(text)) => decode_value(&key, text),
                            Ok(None) => Err(missing_value(&key, mod_revision)),
                            Err(e) => Err(DatastoreError::Corrupt {
                                key: key.clone(),
                                reason: format!("stored value is not text: {e}"),
                            }),
                        };
                        match decoded {
                            Ok(value) => items.push(KeyValue {
                                value,
                                key,
                                create_revision: r.get(3)?,
                                mod_revision,
                            }),
                            // One bad record is named, never hides the others.
                            Err(e) => unreadable.push(Unreadable {
                                reason: corrupt_reason(e),
                                key,
                                mod_revision,
                            }),
                        }
                    }
                }
                tx.finish()?;
                Ok((items, unreadable, revision))
            },
        )?;
        Ok(ListResult {
            items,
            unreadable,
            revision,
        })
    }

    fn create(&self, key: &Key, value: Value) -> Result<KeyValue, DatastoreError> {
        self.apply_one(WriteOp::Create {
            key: key.clone(),
            value,
        })
    }

    fn update(
        &self,
        key: &Key,
        value: Value,
        expected_revision: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError> {
        self.apply_one(WriteOp::Update {
            key: key.clone(),
            value,
            expected_revision,
        })
    }

    fn delete(
        &self,
        key: &Key,
        expected_revision: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError> {
        self.apply_one(WriteOp::Delete {
            key: key.clone(),
            expected_revision,
        })
    }

    fn write_batch(&self, ops: Vec<WriteOp>) -> Result<Vec<KeyValue>, DatastoreError> {
        self.apply(ops)
    }

    fn watch(
        &self,
        filter: WatchFilter,
        after: Revision,
    ) -> Result<Box<dyn Watcher>, DatastoreError> {
        // A watcher polls on its own connection: `PRAGMA data_version` then reports exactly the
        // commits made through other connections, i.e. all of them.
        let doing = || format!("watching datastore {}", self.path.display());
        let conn = with_retry(doing, || Ok(open_connection(&self.path)?))?;
        let (_, compacted) = with_retry(doing, || Ok(read_meta(&conn)?))?;
        if after < compacted {
            return Err(DatastoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        Ok(Box::new(SqliteWatcher {
            conn,
            path: self.path.clone(),
            filter,
            pos: after,
            buf: VecDeque::new(),
            data_version: None,
            more: true,
        }))
    }

    fn revision(&self) -> Result<Revision, DatastoreError> {
        let mut conn = self.checkout()?;
        let conn = conn.get();
        with_retry(
            || format!("reading the revision of datastore {}", self.path.display()),
            || Ok(read_meta(conn)?.0),
        )
    }

    /// Compaction past the current revision compacts up to the current revision.
    fn compact(&self, revision: Revision) -> Result<(), DatastoreError> {
        let _writer = lock(&self.write_lock);
        let mut conn = self.checkout()?;
        let conn = conn.get();
        with_retry(
            || {
                format!(
                    "compacting datastore {} to revision {revision}",
                    self.path.display()
                )
            },
            || {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let (current, compacted) = read_meta(&tx)?;
                let target = revision.min(current);
                if target > compacted {
                    // Keep what is still needed: current values of live keys, and the values
                    // that retained events replaced.
                    tx.execute(
                        "DELETE FROM events WHERE rev <= ?1
                           AND rev NOT IN (SELECT mod_rev FROM kv WHERE mod_rev <= ?1)
                           AND rev NOT IN (SELECT prev_rev FROM events
                                           WHERE rev > ?1 AND prev_rev <= ?1)",
                        [target],
                    )?;
                    tx.execute("UPDATE meta SET compacted = ?1 WHERE id = 1", [target])?;
                }
                tx.commit()?;
                Ok(())
            },
        )
    }
}

/// One event as read from the `events` table, joined with the value it replaced.
struct EventRow {
    rev: Revision,
    ty: i64,
    kind: String,
    namespace: String,
    name: String,
    value: Option<String>,
    prev_rev: Option<Revision>,
    prev_value: Option<String>,
}

/// A watcher tailing the `events` table on its own connection.
struct SqliteWatcher {
    conn: Connection,
    path: PathBuf,
    filter: WatchFilter,
    /// Every event at or below this revision has been delivered or filtered out.
    pos: Revision,
    /// Fetched events not yet delivered.
    buf: VecDeque<WatchEvent>,
    /// `PRAGMA data_version` at the last fetch; it changes when another connection commits.
    data_version: Option<i64>,
    /// The last fetch filled a page, so more events may be waiting regardless of commits.
    more: bool,
}

impl SqliteWatcher {
    /// Whether anything was committed since the last fetch (cheap: no table is read).
    fn changed(&mut self) -> Result<bool, DatastoreError> {
        let conn = &self.conn;
        let v: i64 = with_retry(
            || format!("watching datastore {}", self.path.display()),
            || Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?),
        )?;
        let changed = self.data_version != Some(v);
        self.data_version = Some(v);
        Ok(changed)
    }

    /// Read the next page of matching events after `pos` into `buf`.
    fn fetch(&mut self) -> Result<(), DatastoreError> {
        let Self {
            conn,
            path,
            filter,
            pos,
            ..
        } = self;
        let start = *pos;
        let (rows, revision, compacted) = with_retry(
            || format!("watching datastore {}", path.display()),
            || {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let (revision, compacted) = read_meta(&tx)?;
                let mut rows = Vec::new();
                if start >= compacted {
                    let mut stmt = tx.prepare_cached(
                        "SELECT e.rev, e.type, e.kind, e.namespace, e.name, e.value, e.prev_rev,
                                p.value
                         FROM events e LEFT JOIN events p ON p.rev = e.prev_rev
                         WHERE e.rev > ?1 AND (?2 IS NULL OR e.kind = ?2)
                           AND (?3 IS NULL OR e.namespace = ?3)
                         ORDER BY e.rev LIMIT ?4",
                    )?;
                    let mut q = stmt.query(params![
                        start,
                        filter.kind.map(Kind::stored_name),
                        filter.namespace,
                        WATCH_PAGE
                    ])?;
                    while let Some(r) = q.next()? {
                        rows.push(EventRow {
                            rev: r.get(0)?,
                            ty: r.get(1)?,
                            kind: r.get(2)?,
                            namespace: r.get(3)?,
                            name: r.get(4)?,
                            value: r.get(5)?,
                            prev_rev: r.get(6)?,
                            prev_value: r.get(7)?,
                        });
                    }
                }
                tx.finish()?;
                Ok((rows, revision, compacted))
            },
        )?;
        if start < compacted {
            return Err(DatastoreError::Compacted {
                requested: start,
                compacted,
            });
        }
        self.more = rows.len() as i64 == WATCH_PAGE;
        for row in rows {
            let rev = row.rev;
            let key = make_key(&row.kind, row.namespace, row.name)?;
            let event_type = match row.ty {
                EV_ADDED => EventType::Added,
                EV_MODIFIED => EventType::Modified,
                EV_DELETED => EventType::Deleted,
                other => {
                    return Err(DatastoreError::Corrupt {
                        key,
                        reason: format!("event at revision {rev} has unknown type {other}"),
                    });
                }
            };
            // An unreadable value is reported with its event, never stops the watch.
            let (value, unreadable) = match row.value.map(|t| decode_value(&key, &t)) {
                None => (None, None),
                Some(Ok(v)) => (Some(v), None),
                Some(Err(e)) => (None, Some(e.to_string())),
            };
            let prev_value = match (row.prev_rev, row.prev_value) {
                (Some(_), Some(text)) => decode_value(&key, &text).ok(),
                _ => None,
            };
            self.pos = rev;
            self.buf.push_back(WatchEvent {
                event_type,
                revision: rev,
                key,
                value,
                unreadable,
                prev_value,
            });
        }
        if !self.more {
            // Everything up to the snapshot's revision has been seen, matching or not, so a
            // filtered watcher does not rescan other kinds' events next time.
            self.pos = self.pos.max(revision);
        }
        Ok(())
    }
}

impl Watcher for SqliteWatcher {
    fn next(&mut self, timeout: Duration) -> Result<Option<WatchEvent>, DatastoreError> {
        if let Some(ev) = self.buf.pop_front() {
            return Ok(Some(ev));
        }
        let deadline = Instant::now() + timeout;
        let mut delay = WATCH_POLL_MIN;
        loop {
            // Read data_version before fetching: a commit landing after this read is either in
            // the fetch or changes data_version for the next round, so none is missed.
            let changed = self.changed()?;
            if changed || self.more {
                self.fetch()?;
                if let Some(ev) = self.buf.pop_front() {
                    return Ok(Some(ev));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(delay.min(deadline - now));
            delay = (delay * 2).min(WATCH_POLL_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, SqliteDatastore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteDatastore::open(&dir.path().join("sub/dir/calico.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn corrupt_value_names_the_key() {
        let (_dir, store) = store();
        let key = Key::namespaced(Kind::NetworkPolicy, "default", "bad");
        store.create(&key, json!({"spec": {}})).unwrap();
        let conn = Connection::open(store.path()).unwrap();
        conn.execute(
            "UPDATE events SET value = 'not json' WHERE name = 'bad'",
            [],
        )
        .unwrap();
        let err = store.get(&key).unwrap_err();
        assert!(matches!(&err, DatastoreError::Corrupt { key: k, .. } if *k == key));
        assert!(
            err.to_string().contains("NetworkPolicy(default/bad)"),
            "{err}"
        );
        // A list names it apart; an update repairs it.
        let list = store.list(Kind::NetworkPolicy, None).unwrap();
        assert!(list.items.is_empty());
        assert_eq!(list.unreadable[0].key, key);
        conn.execute("UPDATE events SET value = '[1]' WHERE name = 'bad'", [])
            .unwrap();
        assert!(store.get(&key).is_err());
        store.update(&key, json!({}), None).unwrap();
        assert!(store.get(&key).unwrap().is_some());
    }

    #[test]
    fn open_creates_parent_dir_and_is_reopenable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c.db");
        let s1 = SqliteDatastore::open(&path).unwrap();
        s1.create(&Key::global(Kind::Profile, "x"), json!({}))
            .unwrap();
        drop(s1);
        let s2 = SqliteDatastore::open(&path).unwrap();
        assert_eq!(s2.revision().unwrap(), 1);
        let mode: String = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn concurrent_first_open_is_race_safe() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.db");
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let s = SqliteDatastore::open(&path).unwrap();
                    s.create(&Key::global(Kind::Profile, format!("k{i}")), json!({}))
                        .unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = SqliteDatastore::open(&path).unwrap();
        assert_eq!(s.list(Kind::Profile, None).unwrap().items.len(), 8);
        assert_eq!(s.revision().unwrap(), 8);
    }

    #[test]
    fn open_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        // The parent "directory" is a regular file.
        let err = SqliteDatastore::open(&file.join("calico.db")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&file.display().to_string()), "{msg}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let (_dir, store) = store();
        Connection::open(store.path())
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = SqliteDatastore::open(store.path()).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    #[test]
    fn unconsumed_watcher_behind_compaction_reports_compacted() {
        let (_dir, store) = store();
        let mut w = store.watch(WatchFilter::default(), 0).unwrap();
        for i in 0..3 {
            store
                .create(&Key::global(Kind::Profile, format!("k{i}")), json!({}))
                .unwrap();
        }
        store.compact(2).unwrap();
        let err = w.next(Duration::from_millis(100)).unwrap_err();
        assert!(matches!(
            err,
            DatastoreError::Compacted {
                requested: 0,
                compacted: 2
            }
        ));
        // Compacting beyond the head clamps to the head.
        store.compact(100).unwrap();
        assert!(matches!(
            store.watch(WatchFilter::default(), 2).err(),
            Some(DatastoreError::Compacted { compacted: 3, .. })
        ));
        assert!(store.watch(WatchFilter::default(), 3).is_ok());
    }

    #[test]
    fn writes_wait_for_a_lock_held_elsewhere() {
        let (_dir, store) = store();
        let path = store.path().to_path_buf();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let mut other = Connection::open(path).unwrap();
            let tx = other
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            tx.commit().unwrap();
        });
        locked_rx.recv().unwrap();
        let start = Instant::now();
        let kv = store
            .create(&Key::global(Kind::Profile, "waited"), json!({}))
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(kv.mod_revision, 1);
        holder.join().unwrap();
    }

    #[test]
    fn compaction_keeps_values_still_referenced() {
        let (_dir, store) = store();
        let (a, b, c) = (
            Key::global(Kind::Profile, "a"),
            Key::global(Kind::Profile, "b"),
            Key::global(Kind::Profile, "c"),
        );
        store.create(&a, json!({"spec": 1})).unwrap(); // 1
        store.create(&b, json!({"spec": 2})).unwrap(); // 2
        store.update(&a, json!({"spec": 3}), None).unwrap(); // 3, replaces 1
        store.update(&b, json!({"spec": 4}), None).unwrap(); // 4, replaces 2
        store.delete(&b, None).unwrap(); // 5, replaces 4
        store.create(&c, json!({"spec": 6})).unwrap(); // 6
        store.compact(4).unwrap();
        let revs: Vec<i64> = {
            let conn = Connection::open(store.path()).unwrap();
            let mut stmt = conn.prepare("SELECT rev FROM events ORDER BY rev").unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        // 3 is a's current value; 4 is what retained event 5 replaced.
        assert_eq!(revs, vec![3, 4, 5, 6]);
        assert_eq!(store.get(&a).unwrap().unwrap().value["spec"], 3);
        let mut w = store.watch(WatchFilter::default(), 4).unwrap();
        let ev = w.next(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(ev.event_type, EventType::Deleted);
        assert_eq!(ev.prev_value.unwrap()["spec"], 4);
        assert_eq!(w.next(Duration::from_secs(5)).unwrap().unwrap().revision, 6);
        // Once the head is compacted only live values remain.
        store.compact(6).unwrap();
        assert_eq!(store.list(Kind::Profile, None).unwrap().items.len(), 2);
    }

    #[test]
    fn filtered_watcher_pages_through_many_events() {
        let (_dir, store) = store();
        let mut ops = Vec::new();
        for i in 0..1500 {
            let kind = if i % 3 == 0 {
                Kind::Profile
            } else {
                Kind::Tier
            };
            ops.push(WriteOp::Create {
                key: Key::global(kind, format!("k{i}")),
                value: json!({}),
            });
        }
        store.write_batch(ops).unwrap();
        let filter = WatchFilter {
            kind: Some(Kind::Profile),
            namespace: None,
        };
        let mut w = store.watch(filter, 0).unwrap();
        let mut n = 0;
        let mut last = 0;
        while let Some(ev) = w.next(Duration::from_millis(50)).unwrap() {
            assert_eq!(ev.key.kind, Kind::Profile);
            assert!(ev.revision > last);
            last = ev.revision;
            n += 1;
        }
        assert_eq!(n, 500);
    }

    #[test]
    fn invalid_keys_are_rejected() {
        let (_dir, store) = store();
        for key in [
            Key::global(Kind::Profile, ""),
            Key::namespaced(Kind::NetworkPolicy, "", "x"),
        ] {
            let err = store.create(&key, json!({})).unwrap_err();
            assert!(matches!(err, DatastoreError::InvalidValue { .. }), "{err}");
        }
        assert_eq!(store.revision().unwrap(), 0);
    }
}
