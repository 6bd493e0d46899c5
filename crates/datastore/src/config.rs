//! Datastore configuration: `calicoctl.cfg` (`CalicoAPIConfig`), environment, defaults.
//! STUB: replaced by the datastore implementation.

use std::path::{Path, PathBuf};

/// Default location of the embedded datastore file.
pub const DEFAULT_EMBEDDED_PATH: &str = "/var/lib/calico/calico.db";
/// Default location of the client configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/calico/calicoctl.cfg";

/// Which backend to use and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastoreConfig {
    /// The backend and its settings.
    pub datastore_type: DatastoreType,
}

/// The backend and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatastoreType {
    /// The embedded single-file SQLite store.
    Embedded { path: PathBuf },
    /// An etcd v3 cluster.
    EtcdV3 {
        endpoints: Vec<String>,
        ca_cert_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    },
}

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("reading datastore config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

impl DatastoreConfig {
    /// Load from `config_path` (or the default file when present), then the environment.
    pub fn load(config_path: Option<&Path>) -> Result<Self, ConfigError> {
        let _ = config_path;
        let path = std::env::var_os("CALICO_DATASTORE_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_EMBEDDED_PATH));
        Ok(Self { datastore_type: DatastoreType::Embedded { path } })
    }
}
