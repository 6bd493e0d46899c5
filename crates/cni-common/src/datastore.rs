//! The datastore as both plugins open it (feature `datastore`).

use std::path::Path;

use calico_datastore::{Datastore, DatastoreConfig, DatastoreError};
use serde_json::Value;

use crate::error::{CODE_INVALID_CONFIG, CniError, invalid_config};
use crate::input::DatastoreSettings;

/// The datastore: settings in the network configuration win over the environment and
/// `/etc/calico/calicoctl.cfg`, as upstream's plugin exports them to its environment.
pub fn datastore_config(
    conf: &Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DatastoreConfig, CniError> {
    let settings = DatastoreSettings::from_conf(conf)?;
    DatastoreConfig::load_with(
        None,
        Some(Path::new(calico_datastore::config::DEFAULT_CONFIG_PATH)),
        &|name: &str| settings.lookup(name, env),
    )
    .map_err(|e| invalid_config(format!("datastore configuration: {e}")))
}

/// An open datastore, left open when the process exits: closing the last connection to the
/// embedded store checkpoints its write-ahead log and fsyncs, which would cost a short-lived
/// plugin process far more than its whole work. Exiting without closing is as safe as a
/// crash, which the store's WAL mode handles; SQLite still checkpoints as the log grows.
pub struct Store(Option<Box<dyn Datastore>>);

impl Store {
    /// The datastore.
    pub fn get(&self) -> &dyn Datastore {
        self.0.as_deref().expect("the store is present until drop")
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(ds) = self.0.take() {
            std::mem::forget(ds);
        }
    }
}

/// Open the datastore: an unsupported backend is code 7, any other failure `unavailable_code`
/// (11 "try again" for most commands, 50 for STATUS).
pub fn open_store(config: &DatastoreConfig, unavailable_code: u32) -> Result<Store, CniError> {
    calico_datastore::open(config)
        .map(|ds| Store(Some(ds)))
        .map_err(|e| {
            let code = match e {
                DatastoreError::Unsupported(_) => CODE_INVALID_CONFIG,
                _ => unavailable_code,
            };
            CniError::new(code, format!("opening the datastore: {e}"))
        })
}
