//! Pieces of result documents.

use std::net::IpAddr;

use serde_json::{Value, json};

use crate::version::is_legacy;

/// The `ips[]` entry for `ip` as a host prefix (/32, /128) in `version`'s format, naming the
/// result's `interface` index when there is one.
pub fn ip_config(version: &str, ip: IpAddr, interface: Option<usize>) -> Value {
    let (family, prefix) = match ip {
        IpAddr::V4(_) => ("4", 32),
        IpAddr::V6(_) => ("6", 128),
    };
    let mut v = json!({"address": format!("{ip}/{prefix}")});
    if let Some(i) = interface {
        v["interface"] = json!(i);
    }
    if is_legacy(version) {
        v["version"] = json!(family);
    }
    v
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

    #[test]
    fn ip_configs() {
        let v4: IpAddr = "10.0.0.2".parse().unwrap();
        let v6: IpAddr = "fd00::2".parse().unwrap();
        assert_eq!(
            ip_config("1.0.0", v4, Some(1)),
            json!({"address": "10.0.0.2/32", "interface": 1})
        );
        assert_eq!(
            ip_config("0.3.1", v6, None),
            json!({"address": "fd00::2/128", "version": "6"})
        );
        let doc = json!({"ips": [ip_config("0.4.0", v4, None), {"address": "junk"}, ip_config("1.0.0", v6, None)]});
        assert_eq!(result_ips(&doc), vec![v4, v6]);
        assert!(result_ips(&json!({})).is_empty());
    }
}
