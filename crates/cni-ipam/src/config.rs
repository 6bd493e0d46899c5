//! The plugin's inputs: the network configuration on stdin and the CNI environment.

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_cni_common::{invalid_config as invalid, opt_str, parse_cni_args, require_env};
use serde_json::Value;

use crate::cni::{self, CniError};

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

fn parse_ip(s: &str, origin: &str) -> Result<IpAddr, CniError> {
    let s = s.trim();
    let addr = s.split('/').next().unwrap_or(s);
    addr.parse()
        .map_err(|_| invalid(format!("{origin}: {s:?} is not an IP address")))
}

/// Parse the configuration `stdin` for `command` with the environment `env`.
pub fn parse(
    stdin: &[u8],
    command: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Request, CniError> {
    let conf = calico_cni_common::decode(stdin)?;
    let cni_version = opt_str(&conf, "cniVersion")?
        .ok_or_else(|| invalid("cniVersion is missing"))?
        .to_owned();
    cni::VERSIONS.require(&cni_version)?;
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

    let container_id = require_env(env, "CNI_CONTAINERID")?;
    let ifname = if command == "DEL" {
        env("CNI_IFNAME").unwrap_or_default()
    } else {
        require_env(env, "CNI_IFNAME")?
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
        node: calico_cni_common::node_name(&conf, env)?,
        datastore: calico_cni_common::datastore_config(&conf, env)?,
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
