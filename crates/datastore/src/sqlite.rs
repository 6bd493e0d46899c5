//! STUB: the embedded SQLite backend.
use std::path::Path;
use crate::*;

/// The embedded store.
pub struct SqliteDatastore;

impl SqliteDatastore {
    /// Open or create the store file.
    pub fn open(_path: &Path) -> Result<Self, DatastoreError> {
        Err(DatastoreError::Unsupported("embedded (stub)".into()))
    }
}

impl Datastore for SqliteDatastore {
    fn get(&self, _key: &Key) -> Result<Option<KeyValue>, DatastoreError> { unimplemented!() }
    fn list(&self, _kind: &str, _namespace: Option<&str>) -> Result<ListResult, DatastoreError> { unimplemented!() }
    fn create(&self, _key: &Key, _value: serde_json::Value) -> Result<KeyValue, DatastoreError> { unimplemented!() }
    fn update(&self, _key: &Key, _value: serde_json::Value, _e: Option<Revision>) -> Result<KeyValue, DatastoreError> { unimplemented!() }
    fn delete(&self, _key: &Key, _e: Option<Revision>) -> Result<KeyValue, DatastoreError> { unimplemented!() }
    fn write_batch(&self, _ops: Vec<WriteOp>) -> Result<Vec<KeyValue>, DatastoreError> { unimplemented!() }
    fn watch(&self, _f: WatchFilter, _after: Revision) -> Result<Box<dyn Watcher>, DatastoreError> { unimplemented!() }
    fn revision(&self) -> Result<Revision, DatastoreError> { unimplemented!() }
    fn compact(&self, _r: Revision) -> Result<(), DatastoreError> { unimplemented!() }
}
