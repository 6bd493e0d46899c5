//! What felix knows of the cluster beyond policy: hosts (underlay and VXLAN
//! tunnel addresses), IP pools, IPAM blocks and their host affinity, and
//! this host's workload endpoints (interface and addresses).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use calico_api::Kind;
use calico_dataplane::{EndpointToHostAction, Failsafe, Interface};
use calico_datastore::Key;
use calico_policy::EndpointId;
use calico_sync::Resource;
use ipnet::IpNet;

/// The kinds [`Cluster`] reads (besides the policy calculation's).
pub const KINDS: [Kind; 6] = [
    Kind::Node,
    Kind::IpPool,
    Kind::IpamBlock,
    Kind::WorkloadEndpoint,
    Kind::HostEndpoint,
    Kind::FelixConfiguration,
];

/// A datastore value felix could not use.
#[derive(Debug, thiserror::Error)]
#[error("reading {kind} {name} from the datastore: {reason}")]
pub struct Error {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One host as felix needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// Underlay address (the Node's `bgp.ipv4Address` without its prefix).
    pub underlay: Option<IpAddr>,
    /// Address of its VXLAN device.
    pub vtep: Option<Ipv4Addr>,
    /// MAC of its VXLAN device.
    pub vtep_mac: Option<[u8; 6]>,
    /// Address of its IP-in-IP device (`spec.bgp.ipv4IPIPTunnelAddr`).
    pub ipip: Option<Ipv4Addr>,
}

/// One IP pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Its CIDR.
    pub cidr: IpNet,
    /// Traffic to outside every pool is masqueraded.
    pub nat_outgoing: bool,
    /// Its `vxlanMode` (`Always`, `CrossSubnet` or `Never`).
    pub vxlan_mode: String,
}

/// A workload endpoint of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// Its id in the policy calculation.
    pub id: EndpointId,
    /// Host side of its veth.
    pub iface: String,
    /// Its addresses.
    pub nets: Vec<IpNet>,
    /// Other source prefixes it asks to send from
    /// (`allowSpoofedSourcePrefixes`; honoured only when FelixConfiguration
    /// `workloadSourceSpoofing` is `Any`).
    pub allow_spoofed: Vec<IpNet>,
}

/// The FelixConfiguration parameters calico-rs implements, as one resource
/// (or the merge of several) sets them; unset: not said there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FelixSettings {
    /// `defaultEndpointToHostAction` (applied live).
    pub endpoint_to_host: Option<EndpointToHostAction>,
    /// `workloadSourceSpoofing` is `Any` (applied live).
    pub source_spoofing: Option<bool>,
    /// `failsafeInboundHostPorts` (applied live).
    pub failsafe_inbound: Option<Vec<Failsafe>>,
    /// `failsafeOutboundHostPorts` (applied live).
    pub failsafe_outbound: Option<Vec<Failsafe>>,
    /// `endpointStatusPathPrefix` (needs a restart).
    pub endpoint_status_prefix: Option<String>,
    /// `healthPort` (needs a restart).
    pub health_port: Option<u16>,
    /// `prometheusMetricsPort` (needs a restart).
    pub metrics_port: Option<u16>,
}

/// The `spec` fields of FelixConfiguration that [`FelixSettings`] carries
/// (and `nodeSelector`, which says where a resource applies).
pub const IMPLEMENTED_FELIX_FIELDS: [&str; 8] = [
    "defaultEndpointToHostAction",
    "workloadSourceSpoofing",
    "failsafeInboundHostPorts",
    "failsafeOutboundHostPorts",
    "endpointStatusPathPrefix",
    "healthPort",
    "prometheusMetricsPort",
    "nodeSelector",
];

impl FelixSettings {
    /// `self` with every parameter `over` sets replaced by its value.
    fn overlaid(mut self, over: &FelixSettings) -> Self {
        fn take<T: Clone>(into: &mut Option<T>, from: &Option<T>) {
            if from.is_some() {
                into.clone_from(from);
            }
        }
        take(&mut self.endpoint_to_host, &over.endpoint_to_host);
        take(&mut self.source_spoofing, &over.source_spoofing);
        take(&mut self.failsafe_inbound, &over.failsafe_inbound);
        take(&mut self.failsafe_outbound, &over.failsafe_outbound);
        take(
            &mut self.endpoint_status_prefix,
            &over.endpoint_status_prefix,
        );
        take(&mut self.health_port, &over.health_port);
        take(&mut self.metrics_port, &over.metrics_port);
        self
    }
}

/// One FelixConfiguration resource as felix uses it.
#[derive(Debug, Clone, Default)]
pub struct FelixConfigEntry {
    /// What it sets.
    pub settings: FelixSettings,
    /// `spec.nodeSelector`: the hosts it applies to (resources named
    /// neither `default` nor `node.NAME`).
    pub node_selector: Option<calico_selector::Selector>,
    /// The `spec` fields it sets that calico-rs does not implement.
    pub unimplemented: Vec<String>,
}

/// Reads one FelixConfiguration; an error names the field.
fn felix_entry(c: &calico_api::v3::FelixConfiguration) -> Result<FelixConfigEntry, String> {
    let spec = &c.spec;
    let mut settings = FelixSettings::default();
    if let Some(a) = &spec.default_endpoint_to_host_action {
        settings.endpoint_to_host = Some(
            a.parse()
                .map_err(|e| format!("spec.defaultEndpointToHostAction: {e}"))?,
        );
    }
    if let Some(a) = &spec.workload_source_spoofing {
        settings.source_spoofing = Some(match a.as_str() {
            "Any" => true,
            "Disabled" => false,
            _ => {
                return Err(format!(
                    "spec.workloadSourceSpoofing {a:?}: expected Disabled or Any"
                ));
            }
        });
    }
    let failsafes = |field: &str, list: &Option<Vec<calico_api::v3::ProtoPort>>| {
        list.as_ref()
            .map(|ports| {
                ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| failsafe(p).map_err(|e| format!("spec.{field}[{i}]: {e}")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
    };
    settings.failsafe_inbound = failsafes(
        "failsafeInboundHostPorts",
        &spec.failsafe_inbound_host_ports,
    )?;
    settings.failsafe_outbound = failsafes(
        "failsafeOutboundHostPorts",
        &spec.failsafe_outbound_host_ports,
    )?;
    settings.endpoint_status_prefix = spec.endpoint_status_path_prefix.clone();
    let port = |field: &str, v: Option<i64>| {
        v.map(|p| u16::try_from(p).map_err(|_| format!("spec.{field} {p}: not a port")))
            .transpose()
    };
    settings.health_port = port("healthPort", spec.health_port)?;
    settings.metrics_port = port("prometheusMetricsPort", spec.prometheus_metrics_port)?;
    let node_selector = spec
        .node_selector
        .as_deref()
        .map(|s| calico_selector::parse(s).map_err(|e| format!("spec.nodeSelector {s:?}: {e}")))
        .transpose()?;
    let unimplemented = match serde_json::to_value(spec) {
        Ok(serde_json::Value::Object(fields)) => fields
            .keys()
            .filter(|k| !IMPLEMENTED_FELIX_FIELDS.contains(&k.as_str()))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    Ok(FelixConfigEntry {
        settings,
        node_selector,
        unimplemented,
    })
}

/// A failsafe port felix can program: TCP or UDP, any source. A `net`
/// restriction cannot be honoured, and opening the port to everyone
/// instead would be wider than asked, so it is refused.
fn failsafe(p: &calico_api::v3::ProtoPort) -> Result<Failsafe, String> {
    let protocol = match p.protocol.to_ascii_lowercase().as_str() {
        "tcp" => calico_dataplane::L4Protocol::Tcp,
        "udp" => calico_dataplane::L4Protocol::Udp,
        other => {
            return Err(format!(
                "protocol {other:?}: calico-rs programs TCP and UDP failsafes"
            ));
        }
    };
    if !p.net.is_empty() {
        return Err(format!(
            "net {:?}: calico-rs cannot restrict a failsafe port to a network",
            p.net
        ));
    }
    if p.port == 0 {
        return Err("port 0 is not a port".to_string());
    }
    Ok(Failsafe {
        protocol,
        port: p.port,
    })
}

/// Hosts, pools, blocks and local endpoints, kept from datastore events.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Hosts by name.
    pub hosts: BTreeMap<String, Host>,
    /// Pools by name.
    pub pools: BTreeMap<String, Pool>,
    /// Blocks by stored name: CIDR and the host it is affine to.
    pub blocks: BTreeMap<String, (IpNet, Option<String>)>,
    /// This host's workload endpoints by `namespace/name`.
    pub local: BTreeMap<String, LocalEndpoint>,
    /// This host's host endpoints with an interface, by name: the interface.
    pub host_endpoints: BTreeMap<String, String>,
    /// FelixConfiguration resources by name (`default`, `node.NAME`, others
    /// with a node selector).
    pub felix_configs: BTreeMap<String, FelixConfigEntry>,
    /// This host's Node labels (for FelixConfiguration node selectors).
    pub node_labels: BTreeMap<String, String>,
    /// Every workload endpoint of the cluster (`namespace/name`), any host.
    pub workload_endpoints: std::collections::BTreeSet<String>,
}

fn err(kind: Kind, name: &str, reason: impl Into<String>) -> Error {
    Error {
        kind,
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// A kernel interface name: 1 to 15 of letters, digits, `_`, `.` and `-`.
fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl Cluster {
    /// Applies one resource (`None`: deleted) of one of [`KINDS`] stored at
    /// `key`; other kinds are ignored. `node` is this host's name.
    pub fn apply(&mut self, node: &str, key: &Key, value: Option<&Resource>) -> Result<(), Error> {
        let (kind, name, namespace) = (key.kind, key.name.as_str(), key.namespace.as_deref());
        match (kind, value) {
            (Kind::Node, Some(Resource::Node(n))) => {
                let underlay = n
                    .spec
                    .bgp
                    .as_ref()
                    .map(|b| b.ipv4_address.as_str())
                    .filter(|a| !a.is_empty())
                    .map(|a| {
                        a.split('/')
                            .next()
                            .unwrap_or(a)
                            .parse::<IpAddr>()
                            .map_err(|e| {
                                err(kind, name, format!("spec.bgp.ipv4Address {a:?}: {e}"))
                            })
                    })
                    .transpose()?;
                let vtep = Some(n.spec.ipv4_vxlan_tunnel_addr.as_str())
                    .filter(|a| !a.is_empty())
                    .map(|a| {
                        a.parse::<Ipv4Addr>().map_err(|e| {
                            err(kind, name, format!("spec.ipv4VXLANTunnelAddr {a:?}: {e}"))
                        })
                    })
                    .transpose()?;
                let mac_text = n.spec.vxlan_tunnel_mac_addr.as_str();
                let vtep_mac = if mac_text.is_empty() {
                    None
                } else {
                    Some(parse_mac(mac_text).ok_or_else(|| {
                        err(
                            kind,
                            name,
                            format!("spec.vxlanTunnelMACAddr {mac_text:?} is not a MAC"),
                        )
                    })?)
                };
                let ipip = n
                    .spec
                    .bgp
                    .as_ref()
                    .map(|b| b.ipv4_ipip_tunnel_addr.as_str())
                    .filter(|a| !a.is_empty())
                    .map(|a| {
                        a.parse::<Ipv4Addr>().map_err(|e| {
                            err(
                                kind,
                                name,
                                format!("spec.bgp.ipv4IPIPTunnelAddr {a:?}: {e}"),
                            )
                        })
                    })
                    .transpose()?;
                self.hosts.insert(
                    name.to_owned(),
                    Host {
                        underlay,
                        vtep,
                        vtep_mac,
                        ipip,
                    },
                );
                if name == node {
                    self.node_labels.clone_from(&n.metadata.labels);
                }
            }
            (Kind::IpPool, Some(Resource::IpPool(p))) => {
                let cidr =
                    p.spec.cidr.parse::<IpNet>().map_err(|e| {
                        err(kind, name, format!("spec.cidr {:?}: {e}", p.spec.cidr))
                    })?;
                self.pools.insert(
                    name.to_owned(),
                    Pool {
                        cidr: cidr.trunc(),
                        nat_outgoing: p.spec.nat_outgoing,
                        vxlan_mode: p.spec.vxlan_mode.clone(),
                    },
                );
            }
            (Kind::IpamBlock, Some(Resource::IpamBlock(b))) => {
                let cidr_text = b.spec.cidr.as_str();
                let cidr = cidr_text
                    .parse::<IpNet>()
                    .map_err(|e| err(kind, name, format!("spec.cidr {cidr_text:?}: {e}")))?;
                let host = b.spec.affine_node().map(str::to_owned);
                self.blocks.insert(name.to_owned(), (cidr, host));
            }
            (Kind::HostEndpoint, value) => {
                let iface = match value {
                    Some(Resource::HostEndpoint(h)) => {
                        // One without an interface (only expected IPs) has
                        // nothing to police here.
                        (h.spec.node == node && !h.spec.interface_name.is_empty())
                            .then(|| h.spec.interface_name.clone())
                    }
                    _ => None,
                };
                match iface {
                    Some(i) => {
                        self.host_endpoints.insert(name.to_owned(), i);
                    }
                    None => {
                        self.host_endpoints.remove(name);
                    }
                }
            }
            (Kind::WorkloadEndpoint, value) => {
                let ns = namespace.unwrap_or("default");
                let key = format!("{ns}/{name}");
                // Whatever is wrong with it, the endpoint is no longer
                // known: its interface (if any) is dropped, fail closed.
                self.local.remove(&key);
                if value.is_some() {
                    self.workload_endpoints.insert(key.clone());
                } else {
                    self.workload_endpoints.remove(&key);
                }
                let local = match value {
                    Some(Resource::WorkloadEndpoint(w)) => {
                        // Written past validation, a name like `cali*` would
                        // be a wildcard in nftables.
                        if !is_interface_name(&w.spec.interface_name) {
                            return Err(err(
                                kind,
                                &key,
                                format!(
                                    "spec.interfaceName {:?} is not an interface name",
                                    w.spec.interface_name
                                ),
                            ));
                        }
                        let allow_spoofed = w
                            .spec
                            .allow_spoofed_source_prefixes
                            .iter()
                            .map(|n| {
                                n.parse::<IpNet>().map_err(|e| {
                                    err(
                                        kind,
                                        &key,
                                        format!("spec.allowSpoofedSourcePrefixes {n:?}: {e}"),
                                    )
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        (w.spec.node == node).then(|| LocalEndpoint {
                            id: EndpointId::Workload {
                                namespace: ns.to_owned(),
                                name: name.to_owned(),
                            },
                            // An endpoint whose labels are pending has no
                            // interface yet: its traffic drops (see the annotation).
                            iface: if w
                                .metadata
                                .annotations
                                .contains_key(calico_api::v3::LABELS_PENDING_ANNOTATION)
                            {
                                String::new()
                            } else {
                                w.spec.interface_name.clone()
                            },
                            nets: w
                                .spec
                                .ip_networks
                                .iter()
                                .filter_map(|n| n.parse::<IpNet>().ok())
                                .collect(),
                            allow_spoofed,
                        })
                    }
                    _ => None,
                };
                match local {
                    Some(l) => {
                        self.local.insert(key, l);
                    }
                    None => {
                        self.local.remove(&key);
                    }
                }
            }
            (Kind::FelixConfiguration, Some(Resource::FelixConfiguration(c))) => {
                let entry = felix_entry(c).map_err(|reason| {
                    err(
                        kind,
                        name,
                        format!("{reason}; its previous settings stay in force"),
                    )
                })?;
                self.felix_configs.insert(name.to_owned(), entry);
            }
            (Kind::Node, _) => {
                self.hosts.remove(name);
                if name == node {
                    self.node_labels.clear();
                }
            }
            (Kind::IpPool, _) => {
                self.pools.remove(name);
            }
            (Kind::IpamBlock, _) => {
                self.blocks.remove(name);
            }
            (Kind::FelixConfiguration, _) => {
                self.felix_configs.remove(name);
            }
            _ => {}
        }
        Ok(())
    }

    /// The FelixConfiguration resources that apply to host `node`, weakest
    /// first: `default`, those whose node selector matches this host's
    /// labels (in name order), then `node.NAME`.
    pub fn felix_configs_for(&self, node: &str) -> Vec<(&str, &FelixConfigEntry)> {
        let own = format!("node.{node}");
        let mut applied: Vec<(&str, &FelixConfigEntry)> = Vec::new();
        if let Some(global) = self.felix_configs.get("default") {
            applied.push(("default", global));
        }
        for (name, entry) in &self.felix_configs {
            if name != "default"
                && !name.starts_with("node.")
                && entry
                    .node_selector
                    .as_ref()
                    .is_some_and(|s| s.evaluate(&self.node_labels))
            {
                applied.push((name, entry));
            }
        }
        if let Some((name, entry)) = self.felix_configs.get_key_value(&own) {
            applied.push((name, entry));
        }
        applied
    }

    /// The settings in force for host `node` from the datastore (the
    /// environment's overrides come on top, in the agent).
    pub fn felix_settings(&self, node: &str) -> FelixSettings {
        self.felix_configs_for(node)
            .into_iter()
            .fold(FelixSettings::default(), |acc, (_, e)| {
                acc.overlaid(&e.settings)
            })
    }

    /// Underlay addresses of every host: the only accepted tunnel peers.
    pub fn host_addresses(&self) -> Vec<IpAddr> {
        self.hosts.values().filter_map(|h| h.underlay).collect()
    }

    /// Endpoint -> interface (a workload's host-side veth with the sources
    /// it may send from, a host endpoint's interface), for the renderer.
    /// `spoofing`: `allowSpoofedSourcePrefixes` are honoured.
    pub fn interfaces(&self, spoofing: bool) -> BTreeMap<EndpointId, Interface> {
        self.local
            .values()
            .filter(|l| !l.iface.is_empty())
            .map(|l| {
                let mut sources = l.nets.clone();
                if spoofing {
                    sources.extend(&l.allow_spoofed);
                }
                (l.id.clone(), Interface::new(l.iface.clone(), sources))
            })
            .chain(self.host_endpoints.iter().map(|(name, iface)| {
                (
                    EndpointId::Host { name: name.clone() },
                    Interface::new(iface.clone(), Vec::new()),
                )
            }))
            .collect()
    }

    /// (pools with natOutgoing, every pool).
    pub fn nat_pools(&self) -> (Vec<IpNet>, Vec<IpNet>) {
        let all: Vec<IpNet> = self.pools.values().map(|p| p.cidr).collect();
        let masq = self
            .pools
            .values()
            .filter(|p| p.nat_outgoing)
            .map(|p| p.cidr)
            .collect();
        (masq, all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn key(kind: Kind, ns: Option<&str>, name: &str) -> Key {
        match ns {
            Some(ns) => Key::namespaced(kind, ns, name),
            None => Key::global(kind, name),
        }
    }

    fn typed(key: &Key, mut doc: Value) -> Resource {
        if !key.kind.is_internal() {
            doc["apiVersion"] = json!("projectcalico.org/v3");
            doc["kind"] = json!(key.kind.as_str());
        }
        Resource::decode(key, doc).unwrap()
    }

    fn put(c: &mut Cluster, kind: Kind, ns: Option<&str>, name: &str, doc: Value) {
        let k = key(kind, ns, name);
        let r = typed(&k, doc);
        c.apply("h1", &k, Some(&r)).unwrap();
    }

    #[test]
    fn hosts_pools_blocks_and_local_endpoints() {
        let mut c = Cluster::default();
        put(
            &mut c,
            Kind::Node,
            None,
            "h2",
            json!({"metadata": {"name": "h2"},
                "spec": {"bgp": {"ipv4Address": "172.30.0.2/24"},
                         "ipv4VXLANTunnelAddr": "10.65.2.0",
                         "vxlanTunnelMACAddr": "66:c0:00:00:00:02"}}),
        );
        assert_eq!(
            c.hosts["h2"],
            Host {
                underlay: Some("172.30.0.2".parse().unwrap()),
                vtep: Some("10.65.2.0".parse().unwrap()),
                vtep_mac: Some([0x66, 0xc0, 0, 0, 0, 2]),
                ipip: None,
            }
        );
        // A value the API would refuse, set on the typed form: the model
        // checks what it uses on its own too.
        let h3 = key(Kind::Node, None, "h3");
        let Resource::Node(mut node) = typed(&h3, json!({"metadata": {"name": "h3"}})) else {
            unreachable!("a Node decodes as a Node")
        };
        node.spec.vxlan_tunnel_mac_addr = "nope".into();
        let bad = c.apply("h1", &h3, Some(&Resource::Node(node)));
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("spec.vxlanTunnelMACAddr \"nope\""),
            "errors name the field and value"
        );
        put(
            &mut c,
            Kind::IpamBlock,
            None,
            "10-65-2-0-26",
            json!({"apiVersion": "projectcalico.org/v3", "kind": "IPAMBlock",
                "metadata": {"name": "10-65-2-0-26"},
                "spec": {"cidr": "10.65.2.0/26", "affinity": "host:h2",
                         "allocations": [], "unallocated": [], "attributes": []}}),
        );
        assert_eq!(
            c.blocks["10-65-2-0-26"],
            ("10.65.2.0/26".parse().unwrap(), Some("h2".to_owned()))
        );
        put(
            &mut c,
            Kind::IpPool,
            None,
            "default",
            json!({"metadata": {"name": "default"},
                "spec": {"cidr": "172.29.0.0/16", "natOutgoing": true, "vxlanMode": "Always"}}),
        );
        assert_eq!(
            c.nat_pools(),
            (
                vec!["172.29.0.0/16".parse().unwrap()],
                vec!["172.29.0.0/16".parse().unwrap()]
            )
        );
        let wep = |node: &str| {
            json!({"metadata": {"name": "w1", "namespace": "default"},
                "spec": {"node": node, "interfaceName": "cali123", "ipNetworks": ["172.29.1.2/32"]}})
        };
        put(
            &mut c,
            Kind::WorkloadEndpoint,
            Some("default"),
            "w1",
            wep("h1"),
        );
        assert_eq!(
            c.interfaces(false).values().collect::<Vec<_>>(),
            [&Interface::new(
                "cali123",
                vec!["172.29.1.2/32".parse().unwrap()]
            )]
        );
        // A hostile interface name (a wildcard in nftables) is refused and
        // the endpoint forgotten (its interface then drops).
        let w1 = key(Kind::WorkloadEndpoint, Some("default"), "w1");
        let Resource::WorkloadEndpoint(mut hostile) = typed(&w1, wep("h1")) else {
            unreachable!("a WorkloadEndpoint decodes as one")
        };
        hostile.spec.interface_name = "cali*".into();
        let refused = c.apply("h1", &w1, Some(&Resource::WorkloadEndpoint(hostile)));
        assert!(refused.unwrap_err().to_string().contains("\"cali*\""));
        assert!(c.local.is_empty());
        put(
            &mut c,
            Kind::WorkloadEndpoint,
            Some("default"),
            "w1",
            wep("h1"),
        );
        // Moving to another host makes it non-local.
        put(
            &mut c,
            Kind::WorkloadEndpoint,
            Some("default"),
            "w1",
            wep("h2"),
        );
        assert!(c.local.is_empty());
        c.apply("h1", &key(Kind::Node, None, "h2"), None).unwrap();
        assert!(!c.hosts.contains_key("h2"));
    }
}
