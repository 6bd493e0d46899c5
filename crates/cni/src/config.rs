//! The plugin's inputs: the network configuration on stdin (a single plugin configuration,
//! or a conflist whose `calico` entry is used) and the CNI environment.

use std::path::PathBuf;

use calico_cni_common::{env_missing, invalid_config as invalid};

use serde::Deserialize;
use serde_json::Value;

use crate::cni::{self, CniError};

/// MTU when the configuration sets none.
pub const DEFAULT_MTU: u32 = 1500;

/// The network configuration keys this plugin reads (besides the node name and datastore
/// settings, which `calico-cni-common` reads from the JSON as calico-ipam does).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetConf {
    /// CNI version of the configuration and of the result.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: Option<String>,
    /// The network name.
    #[serde(rename = "name", default)]
    pub name: Option<String>,
    /// The plugin type (`calico`).
    #[serde(rename = "type", default)]
    pub plugin_type: Option<String>,
    /// MTU of both veth ends.
    #[serde(rename = "mtu", default)]
    pub mtu: Option<Value>,
    /// DC/OS: MTU of both veth ends (wins over `mtu`).
    #[serde(rename = "calico_veth_mtu", default)]
    pub calico_veth_mtu: Option<Value>,
    /// The IPAM plugin's configuration (`type` names the plugin to exec).
    #[serde(rename = "ipam", default)]
    pub ipam: Option<Value>,
    /// Log level (`debug`, `info`, `warning`, `error`); diagnostics go to stderr.
    #[serde(rename = "log_level", default)]
    pub log_level: Option<String>,
    /// The profile to apply (default: the network name).
    #[serde(rename = "profile", default)]
    pub profile: Option<String>,
    /// Runtime arguments (Mesos passes `org.apache.mesos` here).
    #[serde(rename = "args", default)]
    pub args: Option<Value>,
    /// Runtime configuration (capabilities: `portMappings`, `ips`).
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: Option<RuntimeConfig>,
    /// The previous plugin's result (CHECK, DEL, chained ADD).
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    /// GC: the attachments that must be kept.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// ADD waits up to this long for felix to say the endpoint's policy is
    /// in force before returning (0 or absent: no wait), as upstream.
    #[serde(rename = "policy_setup_timeout_seconds", default)]
    pub policy_setup_timeout_seconds: Option<u64>,
    /// Where felix writes its endpoint status files
    /// (default [`DEFAULT_ENDPOINT_STATUS_DIR`]).
    #[serde(rename = "endpoint_status_dir", default)]
    pub endpoint_status_dir: Option<PathBuf>,
}

/// Where felix writes endpoint status files unless configured otherwise.
pub const DEFAULT_ENDPOINT_STATUS_DIR: &str = "/var/run/calico/endpoint-status";

/// Runtime configuration passed through capabilities.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    /// Port mappings (`portMappings` capability).
    #[serde(rename = "portMappings", default)]
    pub port_mappings: Vec<PortMapping>,
}

/// One port mapping.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PortMapping {
    /// The host port.
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    /// The container port.
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    #[serde(rename = "protocol", default)]
    pub protocol: Option<String>,
    /// The host address, if bound to one.
    #[serde(rename = "hostIP", default)]
    pub host_ip: Option<String>,
}

/// A GC attachment to keep.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    /// The container.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Its interface.
    #[serde(rename = "ifname", default)]
    pub ifname: Option<String>,
}

/// Mesos' `args."org.apache.mesos"`.
#[derive(Debug, Clone, Default, Deserialize)]
struct MesosArgs {
    /// The NetworkInfo of the container's network.
    #[serde(rename = "network_info", default)]
    network_info: MesosNetworkInfo,
}

/// Mesos NetworkInfo (only what the plugin reads).
#[derive(Debug, Clone, Default, Deserialize)]
struct MesosNetworkInfo {
    /// The network's labels.
    #[serde(rename = "labels", default)]
    labels: MesosLabels,
}

/// Mesos `Labels` message.
#[derive(Debug, Clone, Default, Deserialize)]
struct MesosLabels {
    /// The label list.
    #[serde(rename = "labels", default)]
    labels: Vec<MesosLabel>,
}

/// One Mesos label.
#[derive(Debug, Clone, Default, Deserialize)]
struct MesosLabel {
    /// The key.
    #[serde(rename = "key", default)]
    key: String,
    /// The value (may be absent).
    #[serde(rename = "value", default)]
    value: Option<String>,
}

/// Everything a command needs, parsed and checked.
#[derive(Debug, Clone)]
pub struct Request {
    /// The CNI command.
    pub command: String,
    /// The configuration's `cniVersion`.
    pub cni_version: String,
    /// The network name.
    pub network: String,
    /// The plugin configuration (the conflist entry, with `name`/`cniVersion` filled in), as
    /// passed on to the IPAM plugin.
    pub conf_bytes: Vec<u8>,
    /// The parsed configuration.
    pub conf: NetConf,
    /// The IPAM plugin's type.
    pub ipam_type: Option<String>,
    /// veth MTU.
    pub mtu: u32,
    /// The node.
    pub node: String,
    /// The container (empty for STATUS/GC).
    pub container_id: String,
    /// `CNI_NETNS` (may be empty for DEL, STATUS, GC).
    pub netns: String,
    /// The container-side interface name.
    pub ifname: String,
    /// `CNI_PATH` directories.
    pub cni_path: Vec<PathBuf>,
    /// The profile for the endpoint.
    pub profile: String,
    /// Mesos label pairs, raw.
    pub mesos_labels: Vec<(String, String)>,
    /// The datastore to use.
    pub datastore: calico_datastore::DatastoreConfig,
}

fn mtu_value(v: Option<&Value>, field: &str) -> Result<Option<u32>, CniError> {
    let n = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(n @ 68..=65535) => Ok(Some(u32::try_from(n).unwrap_or(DEFAULT_MTU))),
        _ => Err(invalid(format!(
            "{field} must be an MTU between 68 and 65535, got {}",
            v.map(Value::to_string).unwrap_or_default()
        ))),
    }
}

/// Decode stdin: JSON syntax errors are code 6; a conflist yields its `calico` entry with the
/// list's `name` and `cniVersion`.
pub fn decode(stdin: &[u8]) -> Result<Value, CniError> {
    let mut conf = calico_cni_common::decode(stdin)?;
    if let Some(plugins) = conf.get("plugins").and_then(Value::as_array) {
        let mut entry = plugins
            .iter()
            .find(|p| p.get("type").and_then(Value::as_str) == Some("calico"))
            .cloned()
            .ok_or_else(|| invalid("the conflist has no plugin of type calico"))?;
        for k in ["name", "cniVersion"] {
            if let Some(v) = conf.get(k) {
                entry[k] = v.clone();
            }
        }
        conf = entry;
    }
    Ok(conf)
}

/// Parse the request for `command`.
pub fn parse(
    stdin: &[u8],
    command: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Request, CniError> {
    let value = decode(stdin)?;
    let conf: NetConf = serde_json::from_value(value.clone())
        .map_err(|e| invalid(format!("network configuration: {e}")))?;
    let cni_version = conf
        .cni_version
        .clone()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("cniVersion is missing"))?;
    cni::VERSIONS.require(&cni_version)?;
    let network = conf
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| invalid("name (the network name) is missing"))?;
    if let Some(t) = &conf.plugin_type
        && t != "calico"
    {
        return Err(invalid(format!("type is {t:?}; this plugin is calico")));
    }
    if let Some(level) = &conf.log_level
        && !matches!(
            level.to_ascii_lowercase().as_str(),
            "" | "debug" | "info" | "warning" | "warn" | "error" | "fatal" | "panic" | "none"
        )
    {
        return Err(invalid(format!("log_level {level:?} is not a log level")));
    }
    // Kubernetes-only sections of upstream's configuration have no meaning here.
    for field in ["kubernetes", "policy"] {
        if value.get(field).is_some_and(|v| !v.is_null()) {
            return Err(CniError::new(
                cni::CODE_UNSUPPORTED_FIELD,
                format!(
                    "{field} is a Kubernetes setting; this plugin serves Mesos (orchestrator mesos)"
                ),
            ));
        }
    }
    let ipam_type = match &conf.ipam {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => match m.get("type") {
            Some(Value::String(t)) if !t.is_empty() => {
                if t.contains('/') {
                    return Err(invalid(format!("ipam.type {t:?} must be a plain name")));
                }
                Some(t.clone())
            }
            _ => return Err(invalid("ipam.type is missing")),
        },
        Some(_) => return Err(invalid("ipam must be an object")),
    };
    let mtu = match mtu_value(conf.calico_veth_mtu.as_ref(), "calico_veth_mtu")? {
        Some(m) => m,
        None => mtu_value(conf.mtu.as_ref(), "mtu")?.unwrap_or(DEFAULT_MTU),
    };
    let mesos_labels = match conf.args.as_ref().and_then(|a| a.get("org.apache.mesos")) {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => {
            let m: MesosArgs = serde_json::from_value(v.clone())
                .map_err(|e| invalid(format!("args.\"org.apache.mesos\": {e}")))?;
            m.network_info
                .labels
                .labels
                .into_iter()
                .map(|l| (l.key, l.value.unwrap_or_default()))
                .collect()
        }
    };

    let needs_container = matches!(command, "ADD" | "DEL" | "CHECK");
    let container_id = env("CNI_CONTAINERID").unwrap_or_default();
    if needs_container && container_id.is_empty() {
        return Err(env_missing("CNI_CONTAINERID"));
    }
    if !container_id.is_empty()
        && !container_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(CniError::new(
            cni::CODE_INVALID_ENV,
            format!("CNI_CONTAINERID {container_id:?} has characters outside [A-Za-z0-9_.-]"),
        ));
    }
    let netns = env("CNI_NETNS").unwrap_or_default();
    if matches!(command, "ADD" | "CHECK") && netns.is_empty() {
        return Err(env_missing("CNI_NETNS"));
    }
    let ifname = env("CNI_IFNAME")
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| "eth0".to_owned());
    if ifname.len() > 15 || ifname.contains('/') || ifname == "." || ifname == ".." {
        return Err(CniError::new(
            cni::CODE_INVALID_ENV,
            format!("CNI_IFNAME {ifname:?} is not a valid interface name"),
        ));
    }
    let cni_path: Vec<PathBuf> = env("CNI_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if ipam_type.is_some() && cni_path.is_empty() && command != "VERSION" {
        return Err(env_missing("CNI_PATH"));
    }
    let profile = conf
        .profile
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| network.clone());
    Ok(Request {
        command: command.to_owned(),
        node: calico_cni_common::node_name(&value, env)?,
        datastore: calico_cni_common::datastore_config(&value, env)?,
        conf_bytes: serde_json::to_vec(&value).unwrap_or_else(|_| stdin.to_vec()),
        cni_version,
        network,
        ipam_type,
        mtu,
        container_id,
        netns,
        ifname,
        cni_path,
        profile,
        mesos_labels,
        conf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn env(extra: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut m: BTreeMap<String, String> = [
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            m.insert((*k).to_owned(), (*v).to_owned());
        }
        move |k| m.get(k).cloned()
    }

    fn conf(extra: Value) -> Vec<u8> {
        let mut c = json!({"cniVersion": "1.0.0", "name": "calico", "type": "calico",
            "nodename": "n1", "datastore_type": "embedded", "datastore_path": "/tmp/x.db",
            "ipam": {"type": "calico-ipam"}});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        serde_json::to_vec(&c).unwrap()
    }

    #[test]
    fn keys_and_defaults() {
        let r = parse(&conf(json!({})), "ADD", &env(&[])).unwrap();
        assert_eq!(
            (r.mtu, r.node.as_str(), r.profile.as_str()),
            (1500, "n1", "calico")
        );
        assert_eq!(r.ipam_type.as_deref(), Some("calico-ipam"));
        let r = parse(
            &conf(json!({"mtu": 1450, "calico_veth_mtu": "1400"})),
            "ADD",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(r.mtu, 1400);
        let r = parse(
            &conf(json!({"mtu": 9000, "profile": "p1"})),
            "ADD",
            &env(&[]),
        )
        .unwrap();
        assert_eq!((r.mtu, r.profile.as_str()), (9000, "p1"));
    }

    #[test]
    fn mesos_labels_are_read() {
        let args = json!({"org.apache.mesos": {"network_info": {"name": "calico",
            "labels": {"labels": [{"key": "app", "value": "web"}, {"key": "k"}]}}}});
        let r = parse(&conf(json!({"args": args})), "ADD", &env(&[])).unwrap();
        assert_eq!(
            r.mesos_labels,
            vec![
                ("app".to_owned(), "web".to_owned()),
                ("k".to_owned(), String::new())
            ]
        );
    }

    #[test]
    fn conflist_entry() {
        let list = json!({"cniVersion": "0.4.0", "name": "net9", "plugins": [
            {"type": "calico", "nodename": "n1", "datastore_path": "/tmp/y.db", "ipam": {"type": "host-local"}},
            {"type": "portmap"}]});
        let r = parse(&serde_json::to_vec(&list).unwrap(), "ADD", &env(&[])).unwrap();
        assert_eq!(
            (r.network.as_str(), r.cni_version.as_str()),
            ("net9", "0.4.0")
        );
        let passed: Value = serde_json::from_slice(&r.conf_bytes).unwrap();
        assert_eq!(passed["name"], "net9");
    }

    #[test]
    fn error_codes() {
        let code = |stdin: &[u8], cmd: &str, e: &[(&str, &str)]| {
            parse(stdin, cmd, &env(e)).unwrap_err().code
        };
        assert_eq!(code(b"{not json", "ADD", &[]), cni::CODE_DECODE);
        assert_eq!(code(b"[]", "ADD", &[]), cni::CODE_DECODE);
        assert_eq!(
            code(&conf(json!({"cniVersion": "9.9.9"})), "ADD", &[]),
            cni::CODE_INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code(&conf(json!({"mtu": 10})), "ADD", &[]),
            cni::CODE_INVALID_CONFIG
        );
        assert_eq!(
            code(&conf(json!({"type": "bridge"})), "ADD", &[]),
            cni::CODE_INVALID_CONFIG
        );
        assert_eq!(
            code(&conf(json!({"ipam": {}})), "ADD", &[]),
            cni::CODE_INVALID_CONFIG
        );
        assert_eq!(
            code(&conf(json!({"policy": {"type": "k8s"}})), "ADD", &[]),
            cni::CODE_UNSUPPORTED_FIELD
        );
        assert_eq!(
            code(&conf(json!({})), "ADD", &[("CNI_NETNS", "")]),
            cni::CODE_INVALID_ENV
        );
        assert_eq!(
            code(&conf(json!({})), "ADD", &[("CNI_CONTAINERID", "")]),
            cni::CODE_INVALID_ENV
        );
        assert_eq!(
            code(
                &conf(json!({})),
                "ADD",
                &[("CNI_IFNAME", "a-very-long-ifname0")]
            ),
            cni::CODE_INVALID_ENV
        );
        assert!(parse(&conf(json!({})), "DEL", &env(&[("CNI_NETNS", "")])).is_ok());
    }
}
