//! CNI protocol pieces: versions, error codes, error and result documents.

use std::net::IpAddr;

use serde_json::{Value, json};

/// Versions this plugin speaks.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
/// The version used when the request names none.
pub const DEFAULT_VERSION: &str = "1.0.0";

/// Incompatible CNI version.
pub const CODE_INCOMPATIBLE_VERSION: u32 = 1;
/// Invalid or missing environment variables.
pub const CODE_INVALID_ENV: u32 = 4;
/// I/O failure (reading stdin).
pub const CODE_IO: u32 = 5;
/// The configuration is not JSON.
pub const CODE_DECODE: u32 = 6;
/// The configuration is invalid.
pub const CODE_INVALID_CONFIG: u32 = 7;
/// Transient failure: try again later.
pub const CODE_TRY_AGAIN: u32 = 11;
/// No address available: pools exhausted, no usable pool.
pub const CODE_NO_ADDRESS: u32 = 100;
/// A requested address cannot be assigned.
pub const CODE_NOT_ASSIGNABLE: u32 = 101;
/// CHECK: the container's allocation is missing.
pub const CODE_ALLOCATION_MISSING: u32 = 102;
/// Anything else (corrupt datastore content, unsupported backend).
pub const CODE_INTERNAL: u32 = 999;

/// A CNI error: code, message, details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The CNI error code.
    pub code: u32,
    /// One-line message.
    pub msg: String,
    /// Longer explanation (may be empty).
    pub details: String,
}

impl CniError {
    /// An error with `code` and `msg`.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Add details.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error document for `version`.
    pub fn to_json(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

impl From<calico_ipam::IpamError> for CniError {
    fn from(e: calico_ipam::IpamError) -> Self {
        use calico_ipam::IpamError as E;
        let code = match &e {
            E::NoPools { .. } | E::PoolUnavailable(_) | E::Exhausted { .. } => CODE_NO_ADDRESS,
            E::NotAssignable { .. } => CODE_NOT_ASSIGNABLE,
            E::Contention { .. } => CODE_TRY_AGAIN,
            E::Datastore { source, .. } => match source.as_ref() {
                calico_datastore::DatastoreError::Unsupported(_)
                | calico_datastore::DatastoreError::Corrupt { .. }
                | calico_datastore::DatastoreError::InvalidValue { .. } => CODE_INTERNAL,
                _ => CODE_TRY_AGAIN,
            },
            E::InvalidArgument(_) => CODE_INVALID_CONFIG,
            E::Corrupt { .. } => CODE_INTERNAL,
        };
        Self::new(code, e.to_string())
    }
}

/// Whether `version` predates CHECK (below 0.4.0).
pub fn before_check(version: &str) -> bool {
    matches!(version, "0.3.0" | "0.3.1")
}

/// The ADD result for `version`: each address as a host prefix (/32, /128), as upstream
/// calico-ipam returns it.
pub fn add_result(version: &str, ips: &[IpAddr]) -> Value {
    let legacy = version != "1.0.0";
    let items: Vec<Value> = ips
        .iter()
        .map(|ip| {
            let (fam, plen) = match ip {
                IpAddr::V4(_) => ("4", 32),
                IpAddr::V6(_) => ("6", 128),
            };
            if legacy {
                json!({"version": fam, "address": format!("{ip}/{plen}")})
            } else {
                json!({"address": format!("{ip}/{plen}")})
            }
        })
        .collect();
    json!({"cniVersion": version, "ips": items, "dns": {}})
}

/// The VERSION result.
pub fn version_result(version: &str) -> Value {
    json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS})
}

/// Addresses of a `prevResult` (`ips[].address`, prefix dropped).
pub fn prev_result_ips(prev: &Value) -> Vec<IpAddr> {
    prev.get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|i| i.get("address").and_then(Value::as_str))
                .filter_map(|a| a.split('/').next().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}
