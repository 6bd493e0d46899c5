//! The datastore abstraction every calico-rs component reads and writes through.
//!
//! The model is etcd v3's: one cluster-wide, monotonically increasing revision; every write
//! bumps it; each stored value remembers the revision that created it and the one that last
//! modified it; a watch replays, in order, every change after a given revision, or says the
//! history it needs is gone ("compacted, relist"). The embedded SQLite backend implements the
//! same model in one file, and the etcd backend maps it onto etcd directly.
//!
//! Values are JSON objects. The store owns three metadata fields and sets them on every write:
//! `metadata.uid` (new on create, kept on update), `metadata.creationTimestamp` (RFC 3339, set
//! on create, kept on update) and `metadata.resourceVersion` (the revision of the write, as a
//! decimal string).

use std::fmt;
use std::time::Duration;

pub mod cluster;
pub mod config;
pub mod contract;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod sqlite;
mod write;

pub use calico_api::Kind;
pub use config::{DatastoreConfig, DatastoreType};

/// A datastore revision: etcd's cluster revision, or the embedded store's write counter.
pub type Revision = i64;

/// Where a value lives: its kind, its namespace (None for cluster-scoped kinds) and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The resource kind: an API kind such as `NetworkPolicy`, or an internal kind such as
    /// `IPAMBlock`.
    pub kind: Kind,
    /// The namespace of a namespaced kind; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// The resource name.
    pub name: String,
}

impl Key {
    /// A key for a cluster-scoped resource.
    pub fn global(kind: Kind, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: None,
            name: name.into(),
        }
    }

    /// A key for a namespaced resource.
    pub fn namespaced(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}({}/{})", self.kind, ns, self.name),
            None => write!(f, "{}({})", self.kind, self.name),
        }
    }
}

/// A stored value with its revisions.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    /// Where the value lives.
    pub key: Key,
    /// The stored JSON object, with the store-owned metadata fields filled in.
    pub value: serde_json::Value,
    /// Revision of the write that created this key (kept across updates).
    pub create_revision: Revision,
    /// Revision of the last write to this key; equals `metadata.resourceVersion`.
    pub mod_revision: Revision,
}

/// A stored value that cannot be read (not JSON, not an object, not in the layout its key
/// says): listed apart so that one bad record never hides the others.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// Where it is stored.
    pub key: Key,
    /// Revision of its last write.
    pub mod_revision: Revision,
    /// What is wrong with it.
    pub reason: String,
}

/// The result of a list: the items (sorted by namespace, then name) and the store revision the
/// list was read at, from which a watch can resume without missing anything.
#[derive(Debug, Clone, PartialEq)]
pub struct ListResult {
    /// The matching items, sorted by namespace then name.
    pub items: Vec<KeyValue>,
    /// Matching keys whose values cannot be read.
    pub unreadable: Vec<Unreadable>,
    /// The store revision the list is consistent with.
    pub revision: Revision,
}

/// One write inside an atomic batch.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Create; fails with [`DatastoreError::AlreadyExists`] if the key exists.
    Create { key: Key, value: serde_json::Value },
    /// Replace an existing value; with `expected_revision` set, only if its mod revision still
    /// equals it (compare-and-swap), else [`DatastoreError::Conflict`].
    Update {
        key: Key,
        value: serde_json::Value,
        expected_revision: Option<Revision>,
    },
    /// Create or replace (keeping `uid` and `creationTimestamp` of an existing value).
    Upsert { key: Key, value: serde_json::Value },
    /// Delete; with `expected_revision` set, only if the mod revision still equals it.
    Delete {
        key: Key,
        expected_revision: Option<Revision>,
    },
}

/// What happened to a key in a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The key was created.
    Added,
    /// The key existed and was replaced.
    Modified,
    /// The key was deleted.
    Deleted,
}

/// One change, as seen by a watcher.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// What happened.
    pub event_type: EventType,
    /// The revision of the write that made this change.
    pub revision: Revision,
    /// The key that changed.
    pub key: Key,
    /// The new value (None for deletions, and when it cannot be read).
    pub value: Option<serde_json::Value>,
    /// Why the new value cannot be read (an addition or modification with no value).
    pub unreadable: Option<String>,
    /// The value before the change (None for additions).
    pub prev_value: Option<serde_json::Value>,
}

/// Which changes a watcher wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchFilter {
    /// Only this kind (all kinds when None).
    pub kind: Option<Kind>,
    /// Only this namespace (all namespaces when None).
    pub namespace: Option<String>,
}

/// A stream of changes in revision order.
pub trait Watcher: Send {
    /// The next event, waiting at most `timeout`; `Ok(None)` when nothing happened in time.
    /// Returns [`DatastoreError::Compacted`] when the history the watcher needs is gone: the
    /// caller must list again and watch from the list's revision.
    fn next(&mut self, timeout: Duration) -> Result<Option<WatchEvent>, DatastoreError>;
}

/// The operations every backend provides. Implementations are safe to share between threads,
/// and (for the embedded store) between processes using the same file.
pub trait Datastore: Send + Sync {
    /// One value, or None.
    fn get(&self, key: &Key) -> Result<Option<KeyValue>, DatastoreError>;

    /// Every value of `kind`, in `namespace` when given (all namespaces otherwise).
    fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<ListResult, DatastoreError>;

    /// Create a value; fails with [`DatastoreError::AlreadyExists`] if the key exists.
    fn create(&self, key: &Key, value: serde_json::Value) -> Result<KeyValue, DatastoreError>;

    /// Replace an existing value, compare-and-swap on `expected_revision` when given.
    fn update(
        &self,
        key: &Key,
        value: serde_json::Value,
        expected_revision: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError>;

    /// Delete a value (compare-and-swap when `expected_revision` is given); returns what was
    /// deleted (`null` as the value when it could not be read). Unreadable values can be
    /// deleted, and replaced by [`Datastore::update`] or an upsert.
    fn delete(
        &self,
        key: &Key,
        expected_revision: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError>;

    /// Apply every op or none: the first failing op aborts the batch and its error is returned
    /// (wrapped in [`DatastoreError::Batch`] with the op's index). On success, returns one
    /// `KeyValue` per op (for deletions, the deleted value). The batch is one transaction:
    /// the embedded store gives its ops consecutive revisions, etcd gives them all the same
    /// revision (an op that refers to an earlier op of the same batch sees that revision as
    /// the key's mod revision).
    fn write_batch(&self, ops: Vec<WriteOp>) -> Result<Vec<KeyValue>, DatastoreError>;

    /// Watch changes with revision greater than `after` (pass a list's revision to resume
    /// exactly after it).
    fn watch(
        &self,
        filter: WatchFilter,
        after: Revision,
    ) -> Result<Box<dyn Watcher>, DatastoreError>;

    /// The current store revision.
    fn revision(&self) -> Result<Revision, DatastoreError>;

    /// Forget watch history at and below `revision`; watchers that need it get
    /// [`DatastoreError::Compacted`].
    fn compact(&self, revision: Revision) -> Result<(), DatastoreError>;
}

/// Errors from any backend.
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// The key does not exist.
    #[error("resource does not exist: {key}")]
    NotFound { key: Key },
    /// Create of a key that exists.
    #[error("resource already exists: {key}")]
    AlreadyExists { key: Key },
    /// A compare-and-swap lost: the value changed since the caller read it.
    #[error(
        "update conflict: {key} is at revision {actual}, expected {expected}; read it again and retry"
    )]
    Conflict {
        key: Key,
        expected: Revision,
        actual: Revision,
    },
    /// The watch history needed is gone.
    #[error("watch from revision {requested} is too old (compacted up to {compacted}): relist")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// One op of a batch failed; nothing of the batch was written.
    #[error("batch op {index} failed, nothing written: {source}")]
    Batch {
        index: usize,
        #[source]
        source: Box<DatastoreError>,
    },
    /// A value in the store cannot be used (not JSON, not an object, ...).
    #[error("corrupt datastore content at {key}: {reason}")]
    Corrupt { key: Key, reason: String },
    /// A value handed to the store cannot be stored.
    #[error("invalid value for {key}: {reason}")]
    InvalidValue { key: Key, reason: String },
    /// The backend failed (I/O, SQLite, network).
    #[error("{doing}: {source}")]
    Backend {
        doing: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored key names a kind this build does not know (a newer writer, or a hand edit).
    #[error("the datastore holds a value of unknown kind {kind:?} (named {name:?})")]
    UnknownKind {
        /// The kind as stored.
        kind: String,
        /// The value's name as stored.
        name: String,
    },
    /// The configured backend is not built into this binary.
    #[error("datastore type {0} is not available in this build")]
    Unsupported(String),
    /// A write breaks a rule that spans resources (see [`cluster`]).
    #[error("{key}: {reason}")]
    Refused {
        /// The resource written or deleted.
        key: Key,
        /// The rule it breaks.
        reason: String,
    },
    /// A reader asked for an embedded store file that nobody has written yet.
    #[error(
        "the embedded datastore {} does not exist: nothing has been written to it yet \
         (calico-node creates it when it starts; check CALICO_DATASTORE_PATH, or datastoreType \
         and etcdEndpoints in the calicoctl configuration)",
        path.display()
    )]
    Missing {
        /// The path that was asked for.
        path: std::path::PathBuf,
    },
}

/// Whether opening may create an embedded store file that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file (and its directory) when missing: for writers.
    Create,
    /// Refuse a missing file with [`DatastoreError::Missing`]: for readers, so that a typo in a
    /// path is an error rather than an empty table and a stray file.
    Existing,
}

/// Open the datastore a configuration names, creating an embedded store file if needed.
pub fn open(cfg: &DatastoreConfig) -> Result<Box<dyn Datastore>, DatastoreError> {
    open_with(cfg, OpenMode::Create)
}

/// Open the datastore a configuration names; `mode` says what to do about a missing embedded
/// store file (an etcd cluster always exists once reachable).
pub fn open_with(
    cfg: &DatastoreConfig,
    mode: OpenMode,
) -> Result<Box<dyn Datastore>, DatastoreError> {
    match &cfg.datastore_type {
        DatastoreType::Embedded { path } => {
            if mode == OpenMode::Existing && !path.exists() {
                return Err(DatastoreError::Missing { path: path.clone() });
            }
            Ok(Box::new(sqlite::SqliteDatastore::open(path)?))
        }
        #[cfg(feature = "etcd")]
        DatastoreType::EtcdV3 { endpoints, tls } => {
            Ok(Box::new(etcd::EtcdDatastore::connect(endpoints, tls)?))
        }
        #[cfg(not(feature = "etcd"))]
        DatastoreType::EtcdV3 { .. } => Err(DatastoreError::Unsupported("etcdv3".into())),
    }
}
