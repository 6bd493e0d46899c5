//! The request: the network configuration on stdin and the CNI environment.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{CODE_DECODE, CODE_INVALID_ENV, CniError, env_missing, invalid_config};

/// Default file holding the node name, as calico-node writes it.
pub const DEFAULT_NODENAME_FILE: &str = "/var/lib/calico/nodename";

/// Decode stdin as a JSON object; anything else is code 6.
pub fn decode(stdin: &[u8]) -> Result<Value, CniError> {
    let conf: Value = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(CODE_DECODE, format!("decoding network configuration: {e}")))?;
    if !conf.is_object() {
        return Err(CniError::new(
            CODE_DECODE,
            "decoding network configuration: not a JSON object",
        ));
    }
    Ok(conf)
}

/// The configuration's `cniVersion` when stdin is JSON and it is a string (the version error
/// documents are written in, before the request is fully parsed).
pub fn version_of(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_owned)
}

/// `CNI_COMMAND`, which must be set.
pub fn command(env: &dyn Fn(&str) -> Option<String>) -> Result<String, CniError> {
    require_env(env, "CNI_COMMAND")
}

/// A variable that must be set and not empty.
pub fn require_env(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<String, CniError> {
    env(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| env_missing(name))
}

/// A string field of `conf`: absent, null and blank are `None`, other types are code 7.
pub fn opt_str<'a>(conf: &'a Value, field: &str) -> Result<Option<&'a str>, CniError> {
    match conf.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(other) => Err(invalid_config(format!(
            "{field} is {other}, expected a string"
        ))),
    }
}

/// `CNI_ARGS`: `K=V;K=V` (blank pairs are skipped; a pair without `=` is code 4).
pub fn parse_cni_args(s: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for pair in s.split(';').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            CniError::new(
                CODE_INVALID_ENV,
                format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
            )
        })?;
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

/// The node name: `nodename` in the configuration, else `NODENAME`, else the file named by
/// `nodename_file` (default [`DEFAULT_NODENAME_FILE`]), else the host name.
pub fn node_name(conf: &Value, env: &dyn Fn(&str) -> Option<String>) -> Result<String, CniError> {
    if let Some(n) = opt_str(conf, "nodename")? {
        return Ok(n.to_owned());
    }
    if let Some(n) = env("NODENAME").filter(|n| !n.trim().is_empty()) {
        return Ok(n.trim().to_owned());
    }
    let file = opt_str(conf, "nodename_file")?.unwrap_or(DEFAULT_NODENAME_FILE);
    for f in [file, "/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(n) = std::fs::read_to_string(Path::new(f))
            && !n.trim().is_empty()
        {
            return Ok(n.trim().to_owned());
        }
    }
    Err(invalid_config(
        "cannot determine the node name: set nodename in the network configuration or NODENAME",
    ))
}

/// Datastore settings in the network configuration (`datastore_type`, `datastore_path`,
/// `etcd_endpoints`, `etcd_ca_cert_file`, `etcd_cert_file`, `etcd_key_file`). They win over
/// the environment, as upstream's plugin exports them to its environment; the plugins hand
/// [`DatastoreSettings::lookup`] to the datastore's configuration loader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatastoreSettings {
    /// Environment variable name to value.
    overrides: BTreeMap<&'static str, String>,
}

impl DatastoreSettings {
    /// The settings present in `conf`; a non-string value is code 7.
    pub fn from_conf(conf: &Value) -> Result<Self, CniError> {
        let mut overrides = BTreeMap::new();
        for (field, var) in [
            ("datastore_type", "DATASTORE_TYPE"),
            ("datastore_path", "CALICO_DATASTORE_PATH"),
            ("etcd_endpoints", "ETCD_ENDPOINTS"),
            ("etcd_ca_cert_file", "ETCD_CA_CERT_FILE"),
            ("etcd_cert_file", "ETCD_CERT_FILE"),
            ("etcd_key_file", "ETCD_KEY_FILE"),
        ] {
            if let Some(v) = opt_str(conf, field)? {
                overrides.insert(var, v.to_owned());
            }
        }
        Ok(Self { overrides })
    }

    /// The environment variable `name` as the datastore loader should see it: the
    /// configuration's setting (also under the name without `CALICO_`), else `env`.
    pub fn lookup(&self, name: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        let bare = name.strip_prefix("CALICO_").unwrap_or(name);
        self.overrides
            .get(name)
            .or_else(|| self.overrides.get(bare))
            .cloned()
            .or_else(|| env(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CODE_INVALID_CONFIG;
    use serde_json::json;

    #[test]
    fn decoding() {
        assert_eq!(decode(b"{oops").unwrap_err().code, CODE_DECODE);
        assert_eq!(decode(b"[]").unwrap_err().code, CODE_DECODE);
        assert_eq!(decode(b"{\"a\":1}").unwrap(), json!({"a": 1}));
        assert_eq!(
            version_of(br#"{"cniVersion":"0.4.0"}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(version_of(br#"{"cniVersion":4}"#), None);
        assert_eq!(version_of(b"oops"), None);
    }

    #[test]
    fn environment() {
        let env = |k: &str| (k == "CNI_COMMAND").then(|| "ADD".to_owned());
        assert_eq!(command(&env).unwrap(), "ADD");
        assert_eq!(
            require_env(&env, "CNI_NETNS").unwrap_err().code,
            CODE_INVALID_ENV
        );
        let args = parse_cni_args("IgnoreUnknown=1; IP=10.0.0.1 ;;").unwrap();
        assert_eq!(args.get("IP").map(String::as_str), Some("10.0.0.1"));
        assert_eq!(parse_cni_args("IP").unwrap_err().code, CODE_INVALID_ENV);
    }

    #[test]
    fn strings_and_node() {
        let conf = json!({"a": " x ", "b": "  ", "c": 3, "nodename": "n1"});
        assert_eq!(opt_str(&conf, "a").unwrap(), Some("x"));
        assert_eq!(opt_str(&conf, "b").unwrap(), None);
        assert_eq!(opt_str(&conf, "c").unwrap_err().code, CODE_INVALID_CONFIG);
        let no_env = |_: &str| None;
        assert_eq!(node_name(&conf, &no_env).unwrap(), "n1");
        let env = |k: &str| (k == "NODENAME").then(|| " n2 ".to_owned());
        assert_eq!(node_name(&json!({}), &env).unwrap(), "n2");
        assert_eq!(
            node_name(&json!({"nodename": 5}), &env).unwrap_err().code,
            CODE_INVALID_CONFIG
        );
    }

    #[test]
    fn datastore_settings_win_over_env() {
        let s =
            DatastoreSettings::from_conf(&json!({"datastore_path": "/x.db", "etcd_endpoints": ""}))
                .unwrap();
        let env = |k: &str| Some(format!("env-{k}"));
        assert_eq!(
            s.lookup("CALICO_DATASTORE_PATH", &env).as_deref(),
            Some("/x.db")
        );
        assert_eq!(
            s.lookup("ETCD_ENDPOINTS", &env).as_deref(),
            Some("env-ETCD_ENDPOINTS")
        );
        assert!(DatastoreSettings::from_conf(&json!({"datastore_type": true})).is_err());
    }
}
