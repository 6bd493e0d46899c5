//! CNI protocol pieces: the shared plumbing (`calico-cni-common`), this plugin's versions and
//! codes, and its ADD result.

use std::net::IpAddr;

use serde_json::{Value, json};

pub use calico_cni_common::{
    CODE_INCOMPATIBLE_VERSION, CODE_INTERNAL, CODE_INVALID_CONFIG, CODE_INVALID_ENV,
    CODE_TRY_AGAIN, CniError, Versions, has_check, result_ips,
};

/// Versions this plugin speaks (IPAM plugins such as host-local stop at 1.0.0 too); 1.0.0 when
/// the request names none, or one we do not know.
pub const VERSIONS: Versions = Versions {
    supported: &["0.3.0", "0.3.1", "0.4.0", "1.0.0"],
    default: "1.0.0",
};

/// No address available: pools exhausted, no usable pool.
pub const CODE_NO_ADDRESS: u32 = 100;
/// A requested address cannot be assigned.
pub const CODE_NOT_ASSIGNABLE: u32 = 101;
/// CHECK: the container's allocation is missing.
pub const CODE_ALLOCATION_MISSING: u32 = 102;

/// The IPAM library's errors as CNI errors.
pub fn ipam_error(e: calico_ipam::IpamError) -> CniError {
    use calico_ipam::IpamError as E;
    let code = match &e {
        E::NoPools { .. } | E::PoolUnavailable(_) | E::Exhausted { .. } => CODE_NO_ADDRESS,
        E::NotAssignable { .. } => CODE_NOT_ASSIGNABLE,
        // A migration holds the lock for a while: the runtime retries.
        E::Contention { .. } | E::Locked => CODE_TRY_AGAIN,
        E::Datastore { source, .. } => match source.as_ref() {
            calico_datastore::DatastoreError::Unsupported(_)
            | calico_datastore::DatastoreError::Corrupt { .. }
            | calico_datastore::DatastoreError::InvalidValue { .. } => CODE_INTERNAL,
            _ => CODE_TRY_AGAIN,
        },
        E::InvalidArgument(_) => CODE_INVALID_CONFIG,
        E::Corrupt { .. } => CODE_INTERNAL,
    };
    CniError::new(code, e.to_string())
}

/// The ADD result for `version`: each address as a host prefix (/32, /128), as upstream
/// calico-ipam returns it (no interfaces: the main plugin makes them).
pub fn add_result(version: &str, ips: &[IpAddr]) -> Value {
    let items: Vec<Value> = ips
        .iter()
        .map(|ip| calico_cni_common::ip_config(version, *ip, None))
        .collect();
    json!({"cniVersion": version, "ips": items, "dns": {}})
}
