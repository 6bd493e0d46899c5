//! The inputs of a render and what upstream derives from them before its
//! templates run: each host's BGP facts and the peerings of every node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use calico_api::v3;
use ipnet::IpNet;

/// Everything confd renders from: the resources as the sync layer hands
/// them over (validated and defaulted), keyed by name.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Nodes.
    pub nodes: BTreeMap<String, v3::Node>,
    /// BGPPeers.
    pub peers: BTreeMap<String, v3::BGPPeer>,
    /// BGPConfigurations: `default` and `node.<name>`.
    pub configs: BTreeMap<String, v3::BGPConfiguration>,
    /// BGPFilters.
    pub filters: BTreeMap<String, v3::BGPFilter>,
    /// IPPools.
    pub pools: BTreeMap<String, v3::IPPool>,
    /// Block affinities.
    pub affinities: Vec<Affinity>,
}

/// A host's claim on an IPAM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    /// The host.
    pub host: String,
    /// The block.
    pub cidr: IpNet,
    /// `confirmed`, `pending`, `pendingDeletion`, or empty (confirmed).
    pub state: String,
}

/// Where BGP passwords come from (`secretKeyRef` name and key).
pub trait Secrets {
    /// The value of `key` in secret `name`, when there is one.
    fn secret(&self, name: &str, key: &str) -> Option<String>;
}

/// No secrets at all: every password reference is unresolved.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSecrets;

impl Secrets for NoSecrets {
    fn secret(&self, _name: &str, _key: &str) -> Option<String> {
        None
    }
}

impl Secrets for BTreeMap<(String, String), String> {
    fn secret(&self, name: &str, key: &str) -> Option<String> {
        self.get(&(name.to_owned(), key.to_owned())).cloned()
    }
}

/// What the rendering node is told by its environment.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// This node's name (`NODENAME`).
    pub node_name: String,
    /// `CALICO_ROUTER_ID`: an IPv4 address, `hash` (from the node name), or
    /// empty for the node's IPv4 address.
    pub router_id: String,
}

impl Settings {
    /// Settings for `node_name`, the router id checked: empty, `hash`, or
    /// an IPv4 address.
    pub fn new(node_name: String, router_id: String) -> Result<Settings, crate::Error> {
        if !matches!(router_id.as_str(), "" | "hash")
            && router_id.parse::<std::net::Ipv4Addr>().is_err()
        {
            return Err(crate::Error::BadRouterId(router_id));
        }
        Ok(Settings {
            node_name,
            router_id,
        })
    }
}

/// The global AS number when no BGPConfiguration sets one.
pub const DEFAULT_AS: &str = "64512";

/// One host's BGP facts (upstream's `/calico/bgp/v1/host/<node>/...` keys).
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// IPv4 address, empty when the node has none.
    pub ip4: String,
    /// IPv6 address, empty when the node has none.
    pub ip6: String,
    /// The IPv4 address's network (`10.192.0.0/16`), when it parsed.
    pub net4: Option<String>,
    /// The IPv6 address's network, when it parsed.
    pub net6: Option<String>,
    /// The node's own AS number.
    pub as_num: Option<String>,
    /// Route reflector cluster id, empty when not a reflector.
    pub rr_cluster_id: String,
    /// WireGuard interface IPv4 address, empty when none.
    pub wireguard4: String,
    /// WireGuard interface IPv6 address, empty when none.
    pub wireguard6: String,
}

impl Host {
    fn of(node: &v3::Node) -> Host {
        let mut h = Host::default();
        if let Some(bgp) = &node.spec.bgp {
            (h.ip4, h.net4) = address(&bgp.ipv4_address);
            (h.ip6, h.net6) = address(&bgp.ipv6_address);
            h.as_num = bgp.as_number.map(|a| a.to_string());
            h.rr_cluster_id.clone_from(&bgp.route_reflector_cluster_id);
        }
        if let Some(wg) = &node.spec.wireguard {
            h.wireguard4.clone_from(&wg.interface_ipv4_address);
            h.wireguard6.clone_from(&wg.interface_ipv6_address);
        }
        h
    }

    /// The address of one IP version (empty when none).
    pub fn ip(&self, version: u8) -> &str {
        if version == 6 { &self.ip6 } else { &self.ip4 }
    }
}

/// `10.192.0.2/16` (or a bare address) as (address, network).
fn address(text: &str) -> (String, Option<String>) {
    if text.is_empty() {
        return (String::new(), None);
    }
    if let Ok(net) = text.parse::<IpNet>() {
        return (net.addr().to_string(), Some(net.trunc().to_string()));
    }
    match text.parse::<IpAddr>() {
        Ok(ip) => (ip.to_string(), Some(IpNet::from(ip).to_string())),
        Err(_) => (String::new(), None),
    }
}

/// A BGP password: Debug prints `<redacted>`, so no log or diagnostic
/// built from these types shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "<redacted>"
        })
    }
}

impl Password {
    /// Whether BIRD 1.x can take it between quotes: its strings have no
    /// escapes, so a quote or line break would end the string and let the
    /// rest be read as configuration.
    pub fn writable(&self) -> bool {
        !self
            .0
            .chars()
            .any(|c| matches!(c, '"' | '\n' | '\r' | '\0'))
    }
}

/// A peering as upstream stores it under `peer_v4`/`peer_v6` (the fields
/// of its `backends.BGPPeer`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerData {
    /// The peer's address.
    pub ip: String,
    /// The peer's AS number.
    pub as_num: String,
    /// The AS number this node uses towards the peer, when not its own.
    pub local_as: Option<String>,
    /// The peer's route reflector cluster id.
    pub rr_cluster_id: String,
    /// TCP-MD5 password.
    pub password: Option<Password>,
    /// `UseNodeIP`, `None` or empty.
    pub source_addr: String,
    /// The peer's port (0: BGP's).
    pub port: u16,
    /// `keepOriginalNextHop` (eBGP only).
    pub keep_next_hop: bool,
    /// `Self`, `Keep`, `Auto` or empty.
    pub next_hop_mode: String,
    /// The peer is a node running Calico.
    pub calico_node: bool,
    /// GTSM hop count (0: off).
    pub ttl_security: u8,
    /// BGPFilters applied, in order.
    pub filters: Vec<String>,
    /// `allow local as N`.
    pub num_allow_local_as: i64,
    /// Gateway through which the peer is reachable.
    pub reachable_by: String,
    /// Graceful restart time in seconds.
    pub restart_time: String,
    /// Keepalive time in seconds.
    pub keepalive_time: String,
    /// Passive mode.
    pub passive: bool,
    /// A peering with a local workload.
    pub local_bgp_peer: bool,
}

/// Whose peering it is: every node's, or one node's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `/calico/bgp/v1/global/peer_vN`.
    Global,
    /// `/calico/bgp/v1/host/<node>/peer_vN`.
    Node(String),
}

/// A peering's key: scope, address (as text, the key's order) and port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerKey {
    /// Global or one node's.
    pub scope: Scope,
    /// IP version of the address.
    pub version: u8,
    /// The address (`10.0.0.1`) with `-<port>` when a port is set, as in
    /// upstream's key.
    pub name: String,
}

/// The cluster as upstream's confd sees it: hosts, global settings and
/// every peering.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Every node's BGP facts.
    pub hosts: BTreeMap<String, Host>,
    /// Node labels, for selectors.
    labels: BTreeMap<String, BTreeMap<String, String>>,
    /// The global AS number.
    pub global_as: String,
    /// Port BGP listens on: per node (`node.<name>` BGPConfiguration).
    pub node_ports: BTreeMap<String, u16>,
    /// Port BGP listens on by default (0: BGP's).
    pub global_port: u16,
    /// Every peering.
    pub peerings: BTreeMap<PeerKey, PeerData>,
}

impl View {
    /// Derives hosts and peerings from `inputs`.
    pub fn of(inputs: &Inputs, secrets: &dyn Secrets) -> View {
        let global = inputs.configs.get("default");
        let mut v = View {
            hosts: inputs
                .nodes
                .iter()
                .map(|(n, node)| (n.clone(), Host::of(node)))
                .collect(),
            labels: inputs
                .nodes
                .iter()
                .map(|(n, node)| (n.clone(), node.metadata.labels.clone()))
                .collect(),
            global_as: global
                .and_then(|c| c.spec.as_number)
                .map_or_else(|| DEFAULT_AS.to_owned(), |a| a.to_string()),
            node_ports: inputs
                .configs
                .iter()
                .filter_map(|(name, c)| {
                    let node = name.strip_prefix("node.")?;
                    (c.spec.listen_port != 0).then(|| (node.to_owned(), c.spec.listen_port))
                })
                .collect(),
            global_port: global.map_or(0, |c| c.spec.listen_port),
            peerings: BTreeMap::new(),
        };
        v.peerings = v.compute_peerings(inputs, secrets);
        v
    }

    /// Names of the nodes `selector` matches, in name order; none when it
    /// does not parse (validation rejects such a BGPPeer before here).
    fn nodes_matching(&self, selector: &str) -> Vec<String> {
        let Ok(sel) = calico_selector::parse(selector) else {
            return Vec::new();
        };
        self.labels
            .iter()
            .filter(|(_, labels)| sel.evaluate(*labels))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn node_port(&self, node: &str) -> u16 {
        self.node_ports
            .get(node)
            .copied()
            .unwrap_or(self.global_port)
    }

    /// Nodes with address `ip` and AS `as_num` (0: the global AS), and, when
    /// `port` is set, that port.
    fn nodes_with_ip_port_and_as(&self, ip: &str, as_num: u32, port: u16) -> Vec<String> {
        let wanted = if as_num == 0 {
            self.global_as.clone()
        } else {
            as_num.to_string()
        };
        self.hosts
            .iter()
            .filter(|(name, h)| {
                if h.ip4 != ip && h.ip6 != ip {
                    return false;
                }
                if *h.as_num.as_ref().unwrap_or(&self.global_as) != wanted {
                    return false;
                }
                if port != 0 {
                    if let Some(&p) = self.node_ports.get(*name) {
                        if p != port {
                            return false;
                        }
                    } else if self.global_port != 0 && self.global_port != port {
                        return false;
                    }
                }
                true
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// A node as the peer of a BGPPeer (by selector or reverse peering).
    fn node_as_peers(&self, node: &str, v4: bool, v6: bool, peer: &v3::BGPPeer) -> Vec<PeerData> {
        let Some(h) = self.hosts.get(node) else {
            return Vec::new();
        };
        let (keep_next_hop, next_hop_mode) = next_hop_mode(peer);
        [(v4, &h.ip4), (v6, &h.ip6)]
            .into_iter()
            .filter(|(wanted, ip)| *wanted && ip.parse::<IpAddr>().is_ok())
            .map(|(_, ip)| PeerData {
                ip: ip.clone(),
                ttl_security: peer.spec.ttl_security.unwrap_or(0),
                filters: peer.spec.filters.clone(),
                reachable_by: peer.spec.reachable_by.clone(),
                port: self.node_port(node),
                as_num: h.as_num.clone().unwrap_or_else(|| self.global_as.clone()),
                rr_cluster_id: h.rr_cluster_id.clone(),
                keep_next_hop,
                next_hop_mode: next_hop_mode.clone(),
                ..PeerData::default()
            })
            .collect()
    }

    /// Upstream's `updatePeersV1`: global peerings first, then per-node
    /// ones (skipped where a global one to the same address and port
    /// exists), then the reverse peerings not already there. The first
    /// peering written under a key wins; BGPPeers are taken in name order.
    fn compute_peerings(
        &self,
        inputs: &Inputs,
        secrets: &dyn Secrets,
    ) -> BTreeMap<PeerKey, PeerData> {
        let mut out: BTreeMap<PeerKey, PeerData> = BTreeMap::new();
        let emit = |out: &mut BTreeMap<PeerKey, PeerData>, scope: Scope, peer: PeerData| {
            let Ok(ip) = peer.ip.parse::<IpAddr>() else {
                return;
            };
            let version = if ip.is_ipv4() { 4 } else { 6 };
            let name = if peer.port == 0 {
                ip.to_string()
            } else {
                format!("{ip}-{}", peer.port)
            };
            let key = PeerKey {
                scope,
                version,
                name,
            };
            if out.contains_key(&key) {
                return;
            }
            if matches!(key.scope, Scope::Node(_)) {
                let global = PeerKey {
                    scope: Scope::Global,
                    ..key.clone()
                };
                if out.contains_key(&global) {
                    return;
                }
            }
            out.insert(key, peer);
        };
        let node_ips: BTreeSet<&str> = self
            .hosts
            .values()
            .flat_map(|h| [h.ip4.as_str(), h.ip6.as_str()])
            .filter(|ip| !ip.is_empty())
            .collect();
        for global_pass in [true, false] {
            for peer in inputs.peers.values() {
                let spec = &peer.spec;
                if global_pass != (spec.node_selector.is_empty() && spec.node.is_empty()) {
                    continue;
                }
                let local_nodes = if !spec.node_selector.is_empty() {
                    self.nodes_matching(&spec.node_selector)
                } else if !spec.node.is_empty() {
                    vec![spec.node.clone()]
                } else {
                    Vec::new()
                };
                let mut peers = Vec::new();
                if !spec.local_workload_selector.is_empty() {
                    // Peerings with local workloads come from the endpoint
                    // status files, which this confd does not read yet.
                    continue;
                } else if !spec.peer_selector.is_empty() {
                    for node in self.nodes_matching(&spec.peer_selector) {
                        peers.extend(self.node_as_peers(&node, true, true, peer));
                    }
                    set_common_fields(&mut peers, peer, secrets);
                } else {
                    let (host, mut port) = ip_and_port(&spec.peer_ip);
                    let Ok(ip) = host.parse::<IpAddr>() else {
                        continue;
                    };
                    let as_num = spec.as_number.map_or(0, |a| a.0);
                    if port == 0 {
                        // A peer that is a Calico node is reached on its listen port.
                        if let Some(node) = self.nodes_with_ip_port_and_as(&host, as_num, 0).first()
                        {
                            port = self.node_port(node);
                        }
                    }
                    let reachable_by = if spec.reachable_by.is_empty() {
                        String::new()
                    } else {
                        match spec.reachable_by.parse::<IpAddr>() {
                            Ok(via) if via.is_ipv4() == ip.is_ipv4() => spec.reachable_by.clone(),
                            _ => continue,
                        }
                    };
                    let (keep_next_hop, next_hop_mode) = next_hop_mode(peer);
                    peers.push(PeerData {
                        ip: ip.to_string(),
                        as_num: as_num.to_string(),
                        local_as: spec.local_as_number.map(|a| a.to_string()),
                        source_addr: spec.source_address.clone(),
                        port,
                        keep_next_hop,
                        next_hop_mode,
                        calico_node: node_ips.contains(host.as_str()),
                        ttl_security: spec.ttl_security.unwrap_or(0),
                        filters: spec.filters.clone(),
                        num_allow_local_as: spec.num_allowed_local_as_numbers.unwrap_or(0),
                        reachable_by,
                        ..PeerData::default()
                    });
                    set_common_fields(&mut peers, peer, secrets);
                }
                for p in peers {
                    if global_pass {
                        emit(&mut out, Scope::Global, p);
                    } else {
                        for node in &local_nodes {
                            emit(&mut out, Scope::Node(node.clone()), p.clone());
                        }
                    }
                }
            }
        }
        // Reverse peerings: the nodes a BGPPeer names as peers peer back
        // with the nodes it applies to.
        for peer in inputs.peers.values() {
            let spec = &peer.spec;
            if spec.reverse_peering.as_deref() == Some("Manual")
                || !spec.local_workload_selector.is_empty()
            {
                continue;
            }
            let (local_nodes, v4, v6) = if !spec.peer_selector.is_empty() {
                (self.nodes_matching(&spec.peer_selector), true, true)
            } else {
                let (host, port) = ip_and_port(&spec.peer_ip);
                let as_num = spec.as_number.map_or(0, |a| a.0);
                let v6 = host.contains(':');
                (self.nodes_with_ip_port_and_as(&host, as_num, port), !v6, v6)
            };
            if local_nodes.is_empty() {
                continue;
            }
            let peer_nodes = if !spec.node_selector.is_empty() {
                self.nodes_matching(&spec.node_selector)
            } else if !spec.node.is_empty() {
                vec![spec.node.clone()]
            } else {
                self.nodes_matching("all()")
            };
            let mut peers: Vec<PeerData> = peer_nodes
                .iter()
                .flat_map(|n| self.node_as_peers(n, v4, v6, peer))
                .collect();
            if peers.is_empty() {
                continue;
            }
            set_common_fields(&mut peers, peer, secrets);
            for p in peers {
                for node in &local_nodes {
                    emit(&mut out, Scope::Node(node.clone()), p.clone());
                }
            }
        }
        out
    }
}

/// (keepOriginalNextHop, nextHopMode): the mode wins when set.
fn next_hop_mode(peer: &v3::BGPPeer) -> (bool, String) {
    match &peer.spec.next_hop_mode {
        Some(mode) => (false, mode.clone()),
        None => (peer.spec.keep_original_next_hop, String::new()),
    }
}

/// `10.0.0.1:179` or `[fd00::1]:179` as (address, port); a bare address has port 0.
fn ip_and_port(text: &str) -> (String, u16) {
    if let Ok(sa) = text.parse::<std::net::SocketAddr>() {
        return (sa.ip().to_string(), sa.port());
    }
    (text.to_owned(), 0)
}

/// Upstream's `setPeerConfigFieldsFromV3Resource`.
fn set_common_fields(peers: &mut [PeerData], peer: &v3::BGPPeer, secrets: &dyn Secrets) {
    let spec = &peer.spec;
    let password = spec
        .password
        .as_ref()
        .and_then(|p| p.secret_key_ref.as_ref())
        .and_then(|r| secrets.secret(&r.name, &r.key))
        .map(Password);
    for p in peers {
        p.password.clone_from(&password);
        p.source_addr = if spec.source_address.is_empty() {
            "UseNodeIP".to_owned()
        } else {
            spec.source_address.clone()
        };
        if let Some(d) = &spec.max_restart_time {
            p.restart_time = whole_seconds(d);
        }
        if let Some(d) = &spec.keepalive_time {
            p.keepalive_time = whole_seconds(d);
        }
    }
}

/// A Go duration in whole seconds, rounded as upstream does.
pub(crate) fn whole_seconds(duration: &str) -> String {
    let ns = calico_api::parse_go_duration(duration).unwrap_or(0.0);
    format!("{}", (ns / 1e9).round())
}
