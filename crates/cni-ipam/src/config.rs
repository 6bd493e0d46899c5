//! The plugin's inputs: the network configuration on stdin and the CNI environment.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde_json::Value;

use crate::cni::{self, CniError};

/// Default file holding the node name, as calico-node writes it.
pub const DEFAULT_NODENAME_FILE: &str = "/var/lib/calico/nodename";

/// What the plugin was asked, parsed and checked.
#[derive(Debug, Clone)]
pub struct Request {
    /// The network configuration's `cniVersion`.
    pub cni_version: String,
    /// The network name.
    pub network: String,
    /// Allocate an IPv4 address.
    pub assign_ipv4: bool,
    /// Allocate an IPv6 address.
    pub assign_ipv6: bool,
    /// IPv4 pools to use (names or CIDRs).
    pub ipv4_pools: Vec<String>,
    /// IPv6 pools to use (names or CIDRs).
    pub ipv6_pools: Vec<String>,
    /// Addresses asked for explicitly (`CNI_ARGS` `IP=`, `args.cni.ips`, `runtimeConfig.ips`).
    pub static_ips: Vec<IpAddr>,
    /// The node allocating.
    pub node: String,
    /// The container.
    pub container_id: String,
    /// The interface in the container.
    pub ifname: String,
    /// Kubernetes-style workload attributes from `CNI_ARGS`, when present.
    pub namespace: Option<String>,
    /// The workload name, when present.
    pub workload: Option<String>,
    /// The datastore to use.
    pub datastore: calico_datastore::DatastoreConfig,
    /// `prevResult` (CHECK).
    pub prev_result: Option<Value>,
}

impl Request {
    /// The handle id: `<network>.<container id>`, as upstream, with `.<ifname>` appended for
    /// interfaces other than `eth0` so several attachments of one container stay apart.
    pub fn handle_id(&self) -> String {
        if self.ifname.is_empty() || self.ifname == "eth0" {
            format!("{}.{}", self.network, self.container_id)
        } else {
            format!("{}.{}.{}", self.network, self.container_id, self.ifname)
        }
    }

    /// Secondary attributes recorded with each address.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        use calico_ipam::model::{
            ATTR_CONTAINER_ID, ATTR_INTERFACE, ATTR_NAMESPACE, ATTR_NODE, ATTR_WORKLOAD,
        };
        let mut a = BTreeMap::new();
        a.insert(ATTR_NODE.to_owned(), self.node.clone());
        a.insert(ATTR_CONTAINER_ID.to_owned(), self.container_id.clone());
        if !self.ifname.is_empty() {
            a.insert(ATTR_INTERFACE.to_owned(), self.ifname.clone());
        }
        if let Some(ns) = &self.namespace {
            a.insert(ATTR_NAMESPACE.to_owned(), ns.clone());
        }
        if let Some(w) = &self.workload {
            a.insert(ATTR_WORKLOAD.to_owned(), w.clone());
        }
        a.insert("timestamp".to_owned(), calico_ipam::model::now_rfc3339());
        a
    }
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(cni::CODE_INVALID_CONFIG, msg)
}

/// A boolean written as JSON `true`/`false` or as the strings `"true"`/`"false"` (upstream's
/// `assign_ipv4` is a string).
fn flag(v: Option<&Value>, field: &str, default: bool) -> Result<bool, CniError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(invalid(format!(
                "ipam.{field} is {s:?}, expected \"true\" or \"false\""
            ))),
        },
        Some(other) => Err(invalid(format!(
            "ipam.{field} is {other}, expected true or false"
        ))),
    }
}

fn string_list(v: Option<&Value>, field: &str) -> Result<Vec<String>, CniError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(|s| s.trim().to_owned())
                    .ok_or_else(|| invalid(format!("{field} must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(invalid(format!("{field} must be a list of strings"))),
    }
}

fn opt_str<'a>(conf: &'a Value, field: &str) -> Result<Option<&'a str>, CniError> {
    match conf.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(other) => Err(invalid(format!("{field} is {other}, expected a string"))),
    }
}

fn parse_ip(s: &str, origin: &str) -> Result<IpAddr, CniError> {
    let s = s.trim();
    let addr = s.split('/').next().unwrap_or(s);
    addr.parse()
        .map_err(|_| invalid(format!("{origin}: {s:?} is not an IP address")))
}

/// `CNI_ARGS`: `K=V;K=V`.
fn parse_cni_args(s: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for pair in s.split(';').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            CniError::new(
                cni::CODE_INVALID_ENV,
                format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
            )
        })?;
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

/// The node name: `nodename` in the configuration, else `NODENAME`, else the node name file,
/// else the host name.
fn determine_node(conf: &Value, env: &dyn Fn(&str) -> Option<String>) -> Result<String, CniError> {
    if let Some(n) = opt_str(conf, "nodename")? {
        return Ok(n.to_owned());
    }
    if let Some(n) = env("NODENAME").filter(|n| !n.trim().is_empty()) {
        return Ok(n.trim().to_owned());
    }
    let file = opt_str(conf, "nodename_file")?.unwrap_or(DEFAULT_NODENAME_FILE);
    if let Ok(n) = std::fs::read_to_string(Path::new(file))
        && !n.trim().is_empty()
    {
        return Ok(n.trim().to_owned());
    }
    for f in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(n) = std::fs::read_to_string(f)
            && !n.trim().is_empty()
        {
            return Ok(n.trim().to_owned());
        }
    }
    Err(invalid(
        "cannot determine the node name: set nodename in the network configuration or NODENAME",
    ))
}

/// The datastore: settings in the network configuration (`datastore_type`, `datastore_path`,
/// `etcd_endpoints`, `etcd_ca_cert_file`, `etcd_cert_file`, `etcd_key_file`) win over the
/// environment and `/etc/calico/calicoctl.cfg`, as upstream's plugin exports them to its
/// environment.
fn datastore_config(
    conf: &Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<calico_datastore::DatastoreConfig, CniError> {
    let mut overrides: BTreeMap<&str, String> = BTreeMap::new();
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
    let lookup = |name: &str| {
        let bare = name.strip_prefix("CALICO_").unwrap_or(name);
        overrides
            .get(name)
            .or_else(|| overrides.get(bare))
            .cloned()
            .or_else(|| env(name))
    };
    calico_datastore::DatastoreConfig::load_with(
        None,
        Some(Path::new(calico_datastore::config::DEFAULT_CONFIG_PATH)),
        &lookup,
    )
    .map_err(|e| invalid(format!("datastore configuration: {e}")))
}

/// Parse the configuration `stdin` for `command` with the environment `env`.
pub fn parse(
    stdin: &[u8],
    command: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Request, CniError> {
    let conf: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            cni::CODE_DECODE,
            format!("decoding network configuration: {e}"),
        )
    })?;
    if !conf.is_object() {
        return Err(CniError::new(
            cni::CODE_DECODE,
            "decoding network configuration: not a JSON object",
        ));
    }
    let cni_version = opt_str(&conf, "cniVersion")?
        .ok_or_else(|| invalid("cniVersion is missing"))?
        .to_owned();
    if !cni::SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
        return Err(CniError::new(
            cni::CODE_INCOMPATIBLE_VERSION,
            format!("incompatible CNI version {cni_version}"),
        )
        .with_details(format!(
            "supported versions: {}",
            cni::SUPPORTED_VERSIONS.join(", ")
        )));
    }
    let network = opt_str(&conf, "name")?
        .ok_or_else(|| invalid("name (the network name) is missing"))?
        .to_owned();
    let ipam = match conf.get("ipam") {
        None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(invalid("ipam must be an object")),
    };
    if let Some(t) = opt_str(&ipam, "type")?
        && t != "calico-ipam"
    {
        return Err(invalid(format!(
            "ipam.type is {t:?}; this plugin is calico-ipam"
        )));
    }
    let assign_ipv4 = flag(ipam.get("assign_ipv4"), "assign_ipv4", true)?;
    let assign_ipv6 = flag(ipam.get("assign_ipv6"), "assign_ipv6", false)?;
    let ipv4_pools = string_list(ipam.get("ipv4_pools"), "ipam.ipv4_pools")?;
    let ipv6_pools = string_list(ipam.get("ipv6_pools"), "ipam.ipv6_pools")?;

    let need = |name: &str| {
        env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            CniError::new(
                cni::CODE_INVALID_ENV,
                format!("required environment variable {name} is missing"),
            )
        })
    };
    let container_id = need("CNI_CONTAINERID")?;
    let ifname = if command == "DEL" {
        env("CNI_IFNAME").unwrap_or_default()
    } else {
        need("CNI_IFNAME")?
    };
    let args = parse_cni_args(&env("CNI_ARGS").unwrap_or_default())?;

    let mut static_ips = Vec::new();
    if let Some(ips) = args.get("IP") {
        for ip in ips.split(',').filter(|s| !s.trim().is_empty()) {
            static_ips.push(parse_ip(ip, "CNI_ARGS IP")?);
        }
    }
    for (ptr, origin) in [
        ("/args/cni/ips", "args.cni.ips"),
        ("/runtimeConfig/ips", "runtimeConfig.ips"),
    ] {
        for ip in string_list(conf.pointer(ptr), origin)? {
            static_ips.push(parse_ip(&ip, origin)?);
        }
    }
    static_ips.dedup();
    if static_ips.is_empty() && !assign_ipv4 && !assign_ipv6 && command == "ADD" {
        return Err(invalid(
            "ipam.assign_ipv4 and ipam.assign_ipv6 are both false: nothing to assign",
        ));
    }

    Ok(Request {
        node: determine_node(&conf, env)?,
        datastore: datastore_config(&conf, env)?,
        cni_version,
        network,
        assign_ipv4,
        assign_ipv6,
        ipv4_pools,
        ipv6_pools,
        static_ips,
        container_id,
        ifname,
        namespace: args.get("K8S_POD_NAMESPACE").cloned(),
        workload: args.get("K8S_POD_NAME").cloned(),
        prev_result: conf.get("prevResult").cloned(),
    })
}
