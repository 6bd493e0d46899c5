//! CNI protocol pieces: the shared plumbing (`calico-cni-common`), this plugin's versions and
//! codes, and its ADD result.

use std::net::IpAddr;

use serde_json::{Value, json};

pub use calico_cni_common::{
    CODE_DECODE, CODE_INCOMPATIBLE_VERSION, CODE_INTERNAL, CODE_INVALID_CONFIG, CODE_INVALID_ENV,
    CODE_IO, CODE_PLUGIN_LIMITED, CODE_PLUGIN_NOT_AVAILABLE, CODE_TRY_AGAIN,
    CODE_UNKNOWN_CONTAINER, CODE_UNSUPPORTED_FIELD, CniError, Versions, has_check, has_status_gc,
    result_ips,
};

/// Versions this plugin speaks (results in the pre-1.0 formats for the 0.x versions); 1.1.0
/// when the request names none, or one we do not know.
pub const VERSIONS: Versions = Versions {
    supported: &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    default: "1.1.0",
};

/// CHECK found the attachment not as ADD left it.
pub const CODE_CHECK_FAILED: u32 = 100;
/// A kernel operation failed.
pub const CODE_KERNEL: u32 = 101;

/// A kernel failure as a CNI error.
pub fn kernel(e: &calico_netlink::Error) -> CniError {
    CniError::new(CODE_KERNEL, e.to_string())
}

/// What an ADD produced, ready to print in any version's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddResult {
    /// Host-side interface name.
    pub host_ifname: String,
    /// Host-side MAC.
    pub host_mac: String,
    /// Container interface name.
    pub ifname: String,
    /// Container interface MAC.
    pub mac: String,
    /// The namespace path.
    pub sandbox: String,
    /// The addresses, as host prefixes.
    pub ips: Vec<IpAddr>,
}

/// The ADD result document for `version`. Every address names interface 1, the container
/// side with its `sandbox`: chained plugins such as `portmap` use only addresses on a sandbox
/// interface.
pub fn add_result(version: &str, r: &AddResult) -> Value {
    let ips: Vec<Value> = r
        .ips
        .iter()
        .map(|ip| calico_cni_common::ip_config(version, *ip, Some(1)))
        .collect();
    let mut routes = Vec::new();
    if r.ips.iter().any(IpAddr::is_ipv4) {
        routes.push(json!({"dst": "0.0.0.0/0"}));
    }
    if r.ips.iter().any(IpAddr::is_ipv6) {
        routes.push(json!({"dst": "::/0"}));
    }
    json!({
        "cniVersion": version,
        "interfaces": [
            {"name": r.host_ifname, "mac": r.host_mac},
            {"name": r.ifname, "mac": r.mac, "sandbox": r.sandbox},
        ],
        "ips": ips,
        "routes": routes,
        "dns": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AddResult {
        AddResult {
            host_ifname: "cali0123456789a".into(),
            host_mac: "ee:ee:ee:ee:ee:ee".into(),
            ifname: "eth0".into(),
            mac: "02:00:00:00:00:01".into(),
            sandbox: "/run/netns/x".into(),
            ips: vec!["10.0.0.2".parse().unwrap()],
        }
    }

    #[test]
    fn results_per_version() {
        let v1 = add_result("1.1.0", &sample());
        assert_eq!(
            v1["ips"][0],
            json!({"address": "10.0.0.2/32", "interface": 1})
        );
        assert_eq!(v1["interfaces"][1]["sandbox"], "/run/netns/x");
        let v04 = add_result("0.4.0", &sample());
        assert_eq!(v04["ips"][0]["version"], "4");
        assert_eq!(v04["cniVersion"], "0.4.0");
        assert_eq!(result_ips(&v04), sample().ips);
    }

    #[test]
    fn versions() {
        assert_eq!(VERSIONS.negotiate(Some("0.3.1")), "0.3.1");
        assert_eq!(VERSIONS.negotiate(Some("9.9.9")), "1.1.0");
        assert!(!has_check("0.3.1") && has_check("0.4.0"));
        assert!(has_status_gc("1.1.0") && !has_status_gc("1.0.0"));
    }
}
