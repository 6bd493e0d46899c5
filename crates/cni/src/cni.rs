//! CNI protocol pieces: versions, error codes, error and result documents.

use std::net::IpAddr;

use serde_json::{Value, json};

/// Versions this plugin speaks (results in the pre-1.0 formats for the 0.x versions).
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The version used when the request names none, or one we do not know.
pub const DEFAULT_VERSION: &str = "1.1.0";

/// Incompatible CNI version.
pub const CODE_INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration.
pub const CODE_UNSUPPORTED_FIELD: u32 = 2;
/// The container is unknown or does not exist.
pub const CODE_UNKNOWN_CONTAINER: u32 = 3;
/// Invalid or missing environment variables.
pub const CODE_INVALID_ENV: u32 = 4;
/// I/O failure.
pub const CODE_IO: u32 = 5;
/// The network configuration could not be decoded.
pub const CODE_DECODE: u32 = 6;
/// The network configuration is invalid.
pub const CODE_INVALID_CONFIG: u32 = 7;
/// Transient failure: try again later.
pub const CODE_TRY_AGAIN: u32 = 11;
/// STATUS: the plugin is not available (cannot serve ADD).
pub const CODE_PLUGIN_NOT_AVAILABLE: u32 = 50;
/// STATUS: the plugin is available but limited (ADD may fail).
pub const CODE_PLUGIN_LIMITED: u32 = 51;
/// CHECK found the attachment not as ADD left it.
pub const CODE_CHECK_FAILED: u32 = 100;
/// A kernel operation failed.
pub const CODE_KERNEL: u32 = 101;
/// Anything else.
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

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)
    }
}

/// A kernel failure as a CNI error.
pub fn kernel(e: &calico_netlink::Error) -> CniError {
    CniError::new(CODE_KERNEL, e.to_string())
}

/// Whether `version` has CHECK (0.4.0 and later).
pub fn has_check(version: &str) -> bool {
    !matches!(version, "0.3.0" | "0.3.1")
}

/// Whether `version` has STATUS and GC (1.1.0 and later).
pub fn has_status_gc(version: &str) -> bool {
    version == "1.1.0"
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

/// The ADD result document for `version`.
pub fn add_result(version: &str, r: &AddResult) -> Value {
    let legacy = version.starts_with("0.");
    let ips: Vec<Value> = r
        .ips
        .iter()
        .map(|ip| {
            let (fam, plen) = match ip {
                IpAddr::V4(_) => ("4", 32),
                IpAddr::V6(_) => ("6", 128),
            };
            let mut v = json!({"address": format!("{ip}/{plen}"), "interface": 1});
            if legacy {
                v["version"] = json!(fam);
            }
            v
        })
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

/// The VERSION result.
pub fn version_result(version: &str) -> Value {
    json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS})
}

/// The addresses of a result document of any version (`ips[].address`, prefix dropped).
pub fn result_ips(result: &Value) -> Vec<IpAddr> {
    result
        .get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|i| i.get("address").and_then(Value::as_str))
                .filter_map(|a| a.split('/').next().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
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
    fn error_document() {
        let e = CniError::new(CODE_DECODE, "bad").with_details("more");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion": "1.0.0", "code": 6, "msg": "bad", "details": "more"})
        );
        assert!(!has_check("0.3.1") && has_check("0.4.0"));
        assert!(has_status_gc("1.1.0") && !has_status_gc("1.0.0"));
    }
}
