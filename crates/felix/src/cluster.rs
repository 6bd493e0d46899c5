//! What felix knows of the cluster beyond policy: hosts (underlay and VXLAN
//! tunnel addresses), IP pools, IPAM blocks and their host affinity, and
//! this host's workload endpoints (interface and addresses).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use calico_api::Kind;
use calico_dataplane::{EndpointToHostAction, Interface};
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

/// The security settings of one FelixConfiguration resource (unset: not
/// said there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FelixSettings {
    /// `defaultEndpointToHostAction`.
    pub endpoint_to_host: Option<EndpointToHostAction>,
    /// `workloadSourceSpoofing` is `Any`.
    pub source_spoofing: Option<bool>,
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
    /// FelixConfiguration settings by resource name (`default`, `node.NAME`).
    pub felix_configs: BTreeMap<String, FelixSettings>,
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
                let mut settings = FelixSettings::default();
                if let Some(a) = &c.spec.default_endpoint_to_host_action {
                    settings.endpoint_to_host = Some(a.parse().map_err(|e| {
                        err(kind, name, format!("spec.defaultEndpointToHostAction: {e}"))
                    })?);
                }
                if let Some(a) = &c.spec.workload_source_spoofing {
                    settings.source_spoofing = Some(match a.as_str() {
                        "Any" => true,
                        "Disabled" => false,
                        _ => {
                            return Err(err(
                                kind,
                                name,
                                format!(
                                    "spec.workloadSourceSpoofing {a:?}: expected Disabled or Any"
                                ),
                            ));
                        }
                    });
                }
                self.felix_configs.insert(name.to_owned(), settings);
            }
            (Kind::Node, _) => {
                self.hosts.remove(name);
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

    /// The settings in force for host `node`: its `node.NAME` resource
    /// over `default` over the built-in defaults.
    pub fn felix_settings(&self, node: &str) -> FelixSettings {
        let node_cfg = self.felix_configs.get(&format!("node.{node}"));
        let global = self.felix_configs.get("default");
        FelixSettings {
            endpoint_to_host: node_cfg
                .and_then(|s| s.endpoint_to_host)
                .or(global.and_then(|s| s.endpoint_to_host)),
            source_spoofing: node_cfg
                .and_then(|s| s.source_spoofing)
                .or(global.and_then(|s| s.source_spoofing)),
        }
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
