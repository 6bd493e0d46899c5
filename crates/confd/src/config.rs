//! One node's BIRD settings for one IP version: upstream's `getBGPConfig`
//! (`confd/pkg/backends/calico/bgp_processor.go`), which its templates
//! print.

use calico_api::v3;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::model::{Host, Inputs, Password, PeerData, Scope, View};

/// 2^31 - 1: priorities (kernel metrics) and `bgp_local_pref` convert as
/// `x = BIRD_INT_MAX - y`.
pub const BIRD_INT_MAX: i64 = 2_147_483_647;

/// `preference` given to imported routes that must win over a local
/// workload's route (live migration).
const OVERRIDE_PREFERENCE: i64 = 200;

/// The interface patterns BIRD's direct protocol uses when none are ignored.
pub const DEFAULT_DIRECT_INTERFACES: &str = r#"-"cali*", -"kube-ipvs*", "*""#;

/// One BGP session as the templates print it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BirdPeer {
    /// Protocol name (`Mesh_10_0_0_2`, `Global_...`, `Node_...`).
    pub name: String,
    /// Peer address.
    pub ip: String,
    /// Peer port, empty for BGP's.
    pub port: String,
    /// Peer AS number.
    pub as_num: String,
    /// `local as` override, empty when none.
    pub local_as: String,
    /// `source address`, empty when none.
    pub source_addr: String,
    /// `off`, or the GTSM hop count.
    pub ttl_security: String,
    /// Import filter body (lines joined as upstream does).
    pub import_filter: String,
    /// Export filter body.
    pub export_filter: String,
    /// `passive on`.
    pub passive: bool,
    /// Graceful restart time, empty when default.
    pub graceful_restart: String,
    /// Keepalive time, empty when default.
    pub keepalive_time: String,
    /// This node reflects routes to the peer.
    pub route_reflector: bool,
    /// This node's cluster id, for `rr cluster id`.
    pub rr_cluster_id: String,
    /// TCP-MD5 password.
    pub password: Password,
    /// `next hop keep`.
    pub next_hop_keep: bool,
    /// `next hop self`.
    pub next_hop_self: bool,
    /// `allow local as N`, empty when not set.
    pub num_allow_local_as: String,
}

/// Community statements for routes within a CIDR.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommunityRule {
    /// The CIDR.
    pub cidr: String,
    /// `bgp_community.add((a, b));` statements.
    pub add_statements: Vec<String>,
}

/// One node's settings for one IP version (upstream's `BirdBGPConfig`).
#[derive(Debug, Clone, Default)]
pub struct BirdConfig {
    /// This node.
    pub node_name: String,
    /// This node's IPv4 address, empty when it has none.
    pub node_ip: String,
    /// This node's IPv6 address, empty when it has none.
    pub node_ipv6: String,
    /// This node's AS number.
    pub as_num: String,
    /// BIRD's router id.
    pub router_id: String,
    /// `debug` value of the device and direct protocols, empty for none.
    pub debug_mode: String,
    /// The `debug ...;` line of the BGP template, empty for none.
    pub peer_debug_mode: String,
    /// Address BGP listens on, when bound to the node's.
    pub listen_address: String,
    /// Port BGP listens on, when not BGP's.
    pub listen_port: String,
    /// The direct protocol's interface patterns.
    pub direct_interfaces: String,
    /// Kernel metric of ordinary routes.
    pub normal_route_priority: i64,
    /// Sessions, by name.
    pub peers: Vec<BirdPeer>,
    /// Community statements by CIDR.
    pub communities: Vec<CommunityRule>,
    /// Export filter lines: pools not exported.
    pub export_rejects: Vec<String>,
    /// Export filter lines: pools exported.
    pub export_accepts: Vec<String>,
    /// Kernel filter lines for pools.
    pub kernel_pool_lines: Vec<String>,
    /// Kernel filter lines for WireGuard peers.
    pub wireguard_kernel_lines: Vec<String>,
    /// Export filter lines that keep Felix's tunnel routes from iBGP peers.
    pub ibgp_tunnel_lines: Vec<String>,
    /// Kernel filter lines setting the metric of BGP routes.
    pub set_metric_lines: Vec<String>,
    /// Service external IP CIDRs (advertised by route reflectors).
    pub external_ips: Vec<String>,
    /// Service LoadBalancer IP CIDRs (advertised by route reflectors).
    pub load_balancer_ips: Vec<String>,
}

impl BirdConfig {
    /// The settings of `view`'s node `settings.node_name` for IP `version` (4 or 6).
    pub fn of(
        inputs: &Inputs,
        view: &View,
        settings: &crate::Settings,
        version: u8,
        secrets: &dyn crate::Secrets,
    ) -> Result<BirdConfig, Error> {
        let node = settings.node_name.as_str();
        let host = view
            .hosts
            .get(node)
            .ok_or_else(|| Error::NoSuchNode(node.to_owned()))?;
        let global = inputs.configs.get("default");
        let node_config = inputs.configs.get(&format!("node.{node}"));
        let mut c = BirdConfig {
            node_name: node.to_owned(),
            node_ip: host.ip4.clone(),
            node_ipv6: host.ip6.clone(),
            as_num: host
                .as_num
                .clone()
                .unwrap_or_else(|| view.global_as.clone()),
            external_ips: service_cidrs(global.map(|g| &g.spec.service_external_ips)),
            load_balancer_ips: service_cidrs(global.map(|g| &g.spec.service_load_balancer_ips)),
            ..BirdConfig::default()
        };
        let log_level = [node_config, global]
            .into_iter()
            .flatten()
            .map(|cfg| bird_log_level(&cfg.spec.log_severity_screen))
            .find(|l| !l.is_empty())
            .unwrap_or("info");
        (c.debug_mode, c.peer_debug_mode) = match log_level {
            "none" => (String::new(), String::new()),
            "debug" => ("all".to_owned(), "debug all;".to_owned()),
            _ => (
                "{ states }".to_owned(),
                "debug { states, routes, filters, events };".to_owned(),
            ),
        };
        c.router_id = match settings.router_id.as_str() {
            "hash" => hash_to_ipv4(node),
            "" => c.node_ip.clone(),
            literal => literal.to_owned(),
        };
        if global.and_then(|g| g.spec.bind_mode.as_deref()) == Some("NodeIP") {
            c.listen_address = if version == 6 {
                c.node_ipv6.clone()
            } else {
                c.node_ip.clone()
            };
        }
        let port = view
            .node_ports
            .get(node)
            .copied()
            .unwrap_or(view.global_port);
        if port != 0 {
            c.listen_port = port.to_string();
        }
        let mut patterns: Vec<String> = global
            .map(|g| {
                g.spec
                    .ignored_interfaces
                    .iter()
                    .map(|i| format!("-\"{i}\""))
                    .collect()
            })
            .unwrap_or_default();
        patterns.extend([r#"-"cali*""#, r#"-"kube-ipvs*""#, r#""*""#].map(String::from));
        c.direct_interfaces = patterns.join(", ");
        c.normal_route_priority = global
            .and_then(|g| {
                if version == 6 {
                    g.spec.ipv6_normal_route_priority
                } else {
                    g.spec.ipv4_normal_route_priority
                }
            })
            .unwrap_or(1024);
        let p = c.normal_route_priority;
        c.set_metric_lines = vec![
            "  if (defined(source) && (source = RTS_BGP) && !defined(krt_metric)) then {"
                .to_owned(),
            format!("      krt_metric = {p};"),
            "      if (defined(bgp_local_pref)) then {".to_owned(),
            format!("          krt_metric = {BIRD_INT_MAX} - bgp_local_pref;"),
            "      }".to_owned(),
            format!("      if (krt_metric < {p}) then {{"),
            format!("          preference = {OVERRIDE_PREFERENCE};"),
            "      }".to_owned(),
            "  }".to_owned(),
        ];
        c.peers = peers(inputs, view, &c, host, version, global, secrets);
        c.peers.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(p) = c.peers.iter().find(|p| !p.password.writable()) {
            return Err(Error::UnwritablePassword(p.name.clone()));
        }
        c.communities = communities(node_config, global, version);
        c.pools(inputs, host, version, global);
        c.wireguard(view, version);
        Ok(c)
    }

    /// The node's address of `version`.
    fn own_ip(&self, version: u8) -> &str {
        if version == 6 {
            &self.node_ipv6
        } else {
            &self.node_ip
        }
    }

    /// Upstream's `processIPPools`.
    fn pools(
        &mut self,
        inputs: &Inputs,
        host: &Host,
        version: u8,
        global: Option<&v3::BGPConfiguration>,
    ) {
        let (bird_ipip, bird_no_encap) =
            match global.and_then(|g| g.spec.program_cluster_routes.as_deref()) {
                Some("Disabled") => (false, false),
                Some("Enabled") => (true, true),
                Some("EnabledIPIPOnly") => (true, false),
                _ => (false, true),
            };
        let mut tunnels = vec!["*.cali", "*.calico"];
        if !bird_ipip {
            tunnels.push("tunl0");
        }
        let conditions: Vec<String> = tunnels
            .iter()
            .map(|t| format!("(ifname ~ \"{t}\")"))
            .collect();
        self.ibgp_tunnel_lines = vec![
            "if (defined(ifname)) then {".to_owned(),
            format!("  if ({}) then {{", conditions.join(" || ")),
            "    reject;".to_owned(),
            "  }".to_owned(),
            "}".to_owned(),
        ];
        let kernel_action = if version == 6 { "reject" } else { "" };
        let local_subnet = if version == 6 {
            host.net6.clone()
        } else {
            host.net4.clone()
        };
        for pool in inputs.pools.values() {
            let Ok(cidr) = pool.spec.cidr.parse::<ipnet::IpNet>() else {
                continue;
            };
            if (version == 6) != matches!(cidr, ipnet::IpNet::V6(_)) {
                continue;
            }
            let cidr = cidr.trunc().to_string();
            let vxlan = matches!(pool.spec.vxlan_mode.as_str(), "Always" | "CrossSubnet");
            let ipip = matches!(pool.spec.ipip_mode.as_str(), "Always" | "CrossSubnet");
            let bird_programs = !vxlan && if ipip { bird_ipip } else { bird_no_encap };
            let statement = |kernel: bool, filter: &str, subnet: &str| -> Option<String> {
                if pool.spec.disable_bgp_export && !kernel {
                    return pool_statement(&cidr, "", "reject", filter, "BGP export is disabled.");
                }
                if vxlan {
                    return if kernel {
                        pool_statement(
                            &cidr,
                            "",
                            "reject",
                            filter,
                            "VXLAN routes are handled by Felix.",
                        )
                    } else {
                        pool_statement(&cidr, "", "accept", filter, "")
                    };
                }
                if bird_programs {
                    let extra = if kernel && version == 4 {
                        match pool.spec.ipip_mode.as_str() {
                            "Always" => r#"krt_tunnel="tunl0";"#.to_owned(),
                            "CrossSubnet" => format!(
                                r#"if (defined(bgp_next_hop)&&(bgp_next_hop ~ {subnet})) then krt_tunnel=""; else krt_tunnel="tunl0";"#
                            ),
                            _ => String::new(),
                        }
                    } else {
                        String::new()
                    };
                    return pool_statement(&cidr, &extra, "accept", filter, "");
                }
                if kernel {
                    return pool_statement(
                        &cidr,
                        "",
                        "reject",
                        filter,
                        "Cluster routes are handled by Felix.",
                    );
                }
                pool_statement(&cidr, "", "accept", filter, "")
            };
            self.export_rejects.extend(statement(false, "reject", ""));
            self.export_accepts.extend(statement(false, "accept", ""));
            if version == 6 || local_subnet.is_some() {
                let subnet = local_subnet.as_deref().unwrap_or_default();
                self.kernel_pool_lines
                    .extend(statement(true, kernel_action, subnet));
            }
        }
        self.kernel_pool_lines.sort();
        self.export_rejects.sort();
        self.export_accepts.sort();
    }

    /// Upstream's `processWireguardPeerFilter`: when this node runs
    /// WireGuard, BIRD installs no route to a peer that does too.
    fn wireguard(&mut self, view: &View, version: u8) {
        let wg = |h: &Host| {
            if version == 6 {
                h.wireguard6.clone()
            } else {
                h.wireguard4.clone()
            }
        };
        if view
            .hosts
            .get(&self.node_name)
            .is_none_or(|h| wg(h).is_empty())
        {
            return;
        }
        for (name, h) in &view.hosts {
            let ip = h.ip(version);
            if *name == self.node_name || ip.is_empty() || wg(h).is_empty() {
                continue;
            }
            self.wireguard_kernel_lines.push(format!(
                "  if (defined(bgp_next_hop) && bgp_next_hop = {ip}) then {{ reject; }} # WireGuard routes handled by Felix."
            ));
        }
        self.wireguard_kernel_lines.sort();
    }
}

/// A pool's filter statement, when its action is the one wanted (`filter`
/// empty: any).
fn pool_statement(
    cidr: &str,
    extra: &str,
    action: &str,
    filter: &str,
    comment: &str,
) -> Option<String> {
    if !filter.is_empty() && filter != action {
        return None;
    }
    let mut s = if extra.is_empty() {
        format!("  if (net ~ {cidr}) then {{ {action}; }}")
    } else {
        format!("  if (net ~ {cidr}) then {{ {extra} {action}; }}")
    };
    if !comment.is_empty() {
        s.push_str(&format!(" # {comment}"));
    }
    Some(s)
}

/// BIRD's log level for a `logSeverityScreen` (empty when not set).
fn bird_log_level(severity: &str) -> &'static str {
    match severity.to_ascii_lowercase().as_str() {
        "" => "",
        "debug" => "debug",
        "info" => "info",
        _ => "none",
    }
}

fn service_cidrs(blocks: Option<&Vec<v3::ServiceIPBlock>>) -> Vec<String> {
    blocks
        .into_iter()
        .flatten()
        .filter(|b| !b.cidr.is_empty())
        .map(|b| b.cidr.clone())
        .collect()
}

/// A router id from the node's name: the first four bytes of its SHA-256,
/// the first kept out of the multicast range (upstream's `HashToIPv4`).
pub fn hash_to_ipv4(node: &str) -> String {
    let h = Sha256::digest(node.as_bytes());
    let first = if h[0] > 223 { h[0] - 32 } else { h[0] };
    format!("{first}.{}.{}.{}", h[1], h[2], h[3])
}

/// Upstream's `processCommunityRules`: the node's prefix advertisements
/// when it has any, else the global ones.
fn communities(
    node: Option<&v3::BGPConfiguration>,
    global: Option<&v3::BGPConfiguration>,
    version: u8,
) -> Vec<CommunityRule> {
    let Some(cfg) = [node, global]
        .into_iter()
        .flatten()
        .find(|c| !c.spec.prefix_advertisements.is_empty())
    else {
        return Vec::new();
    };
    let mut rules = Vec::new();
    for adv in &cfg.spec.prefix_advertisements {
        if adv.cidr.is_empty() || adv.cidr.contains(':') != (version == 6) {
            continue;
        }
        let mut values: Vec<String> = adv
            .communities
            .iter()
            .filter_map(|c| {
                if is_community_value(c) {
                    Some(c.clone())
                } else {
                    // A name: its value from the communities defined in the
                    // same resource.
                    cfg.spec
                        .communities
                        .iter()
                        .find(|d| d.name == *c)
                        .map(|d| d.value.clone())
                }
            })
            .collect();
        values.sort();
        values.dedup();
        let add_statements: Vec<String> = values
            .iter()
            .filter_map(|v| {
                let parts: Vec<&str> = v.split(':').collect();
                match parts[..] {
                    [a, b] => Some(format!("bgp_community.add(({a}, {b}));")),
                    [a, b, c] => Some(format!("bgp_large_community.add(({a}, {b}, {c}));")),
                    _ => None,
                }
            })
            .collect();
        if !add_statements.is_empty() {
            rules.push(CommunityRule {
                cidr: adv.cidr.clone(),
                add_statements,
            });
        }
    }
    rules
}

/// `aa:nn` or `aa:nn:mm` in digits.
fn is_community_value(v: &str) -> bool {
    let parts: Vec<&str> = v.split(':').collect();
    (parts.len() == 2 || parts.len() == 3)
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Every session of the node for `version`: the mesh, then global and
/// node-specific peerings (upstream's `processPeers`).
fn peers(
    inputs: &Inputs,
    view: &View,
    c: &BirdConfig,
    host: &Host,
    version: u8,
    global: Option<&v3::BGPConfiguration>,
    secrets: &dyn crate::Secrets,
) -> Vec<BirdPeer> {
    let own_ip = c.own_ip(version).to_owned();
    let cluster_id = host.rr_cluster_id.as_str();
    let mut out = Vec::new();
    let mesh = global
        .and_then(|g| g.spec.node_to_node_mesh_enabled)
        .unwrap_or(true);
    if cluster_id.is_empty() && mesh {
        let password = global
            .and_then(|g| g.spec.node_mesh_password.as_ref())
            .and_then(|p| p.secret_key_ref.as_ref())
            .and_then(|r| secrets.secret(&r.name, &r.key))
            .map(Password)
            .unwrap_or_default();
        let restart = global
            .and_then(|g| g.spec.node_mesh_max_restart_time.as_deref())
            .map(crate::model::whole_seconds)
            .unwrap_or_default();
        for (name, h) in &view.hosts {
            let ip = h.ip(version);
            if ip.is_empty() || ip == own_ip || !h.rr_cluster_id.is_empty() {
                continue;
            }
            let as_num = h.as_num.clone().unwrap_or_else(|| c.as_num.clone());
            let port = view
                .node_ports
                .get(name)
                .copied()
                .unwrap_or(view.global_port);
            out.push(BirdPeer {
                name: format!("Mesh_{}", ip.replace(['.', ':'], "_")),
                ip: ip.to_owned(),
                port: if port == 0 {
                    String::new()
                } else {
                    port.to_string()
                },
                import_filter: import_filter(
                    inputs,
                    &[],
                    &as_num,
                    &c.as_num,
                    version,
                    c.normal_route_priority,
                ),
                export_filter: export_filter(
                    inputs,
                    &[],
                    &as_num,
                    &c.as_num,
                    version,
                    c.normal_route_priority,
                ),
                as_num,
                source_addr: own_ip.clone(),
                ttl_security: "off".to_owned(),
                password: password.clone(),
                graceful_restart: restart.clone(),
                passive: ip > own_ip.as_str(),
                ..BirdPeer::default()
            });
        }
    }
    let scopes = [
        (Scope::Global, "Global"),
        (Scope::Node(c.node_name.clone()), "Node"),
    ];
    for (scope, prefix) in scopes {
        let data: Vec<&PeerData> = view
            .peerings
            .iter()
            .filter(|(k, _)| k.scope == scope && k.version == version)
            .map(|(_, d)| d)
            .collect();
        // Remote peers first, then local workloads (upstream's order; the
        // list is sorted by name in the end anyway).
        for d in data.iter().filter(|d| !d.local_bgp_peer) {
            out.extend(peer_from_data(inputs, d, prefix, c, cluster_id, version));
        }
        for d in data.iter().filter(|d| d.local_bgp_peer) {
            out.extend(peer_from_data(
                inputs,
                d,
                "Local_Workload",
                c,
                cluster_id,
                version,
            ));
        }
    }
    out
}

/// Upstream's `buildPeerFromData`.
fn peer_from_data(
    inputs: &Inputs,
    d: &PeerData,
    prefix: &str,
    c: &BirdConfig,
    cluster_id: &str,
    version: u8,
) -> Option<BirdPeer> {
    let own_ip = c.own_ip(version);
    if d.ip.is_empty() || d.ip == own_ip {
        return None;
    }
    let mut name = format!("{prefix}_{}", d.ip.replace(['.', ':'], "_"));
    if d.port > 0 {
        name = format!("{name}_port_{}", d.port);
    }
    let kind = prefix.to_ascii_lowercase();
    let local_as = d.local_as.clone().filter(|a| a != "0").unwrap_or_default();
    let node_as = if local_as.is_empty() {
        c.as_num.clone()
    } else {
        local_as.clone()
    };
    let mut p = BirdPeer {
        name,
        ip: d.ip.clone(),
        port: if d.port > 0 {
            d.port.to_string()
        } else {
            String::new()
        },
        as_num: d.as_num.clone(),
        local_as,
        ttl_security: if d.ttl_security > 0 {
            d.ttl_security.to_string()
        } else {
            "off".to_owned()
        },
        source_addr: if d.source_addr == "UseNodeIP" {
            own_ip.to_owned()
        } else {
            String::new()
        },
        import_filter: import_filter(
            inputs,
            &d.filters,
            &d.as_num,
            &node_as,
            version,
            c.normal_route_priority,
        ),
        export_filter: export_filter(
            inputs,
            &d.filters,
            &d.as_num,
            &node_as,
            version,
            c.normal_route_priority,
        ),
        password: d.password.clone().unwrap_or_default(),
        graceful_restart: d.restart_time.clone(),
        keepalive_time: d.keepalive_time.clone(),
        passive: d.passive,
        num_allow_local_as: if d.num_allow_local_as > 0 {
            d.num_allow_local_as.to_string()
        } else {
            String::new()
        },
        ..BirdPeer::default()
    };
    match d.next_hop_mode.as_str() {
        "Self" => p.next_hop_self = true,
        "Keep" => p.next_hop_keep = true,
        _ => {}
    }
    if d.keep_next_hop && p.as_num != node_as {
        p.next_hop_keep = true;
    }
    if p.as_num == node_as
        && !cluster_id.is_empty()
        && (d.rr_cluster_id.is_empty() || d.rr_cluster_id != cluster_id)
    {
        p.route_reflector = true;
        p.rr_cluster_id = cluster_id.to_owned();
    }
    if matches!(kind.as_str(), "global" | "local_workload")
        && !p.passive
        && d.calico_node
        && d.ip.as_str() > own_ip
    {
        p.passive = true;
    }
    Some(p)
}

/// Calls of the peer's BGPFilters that have rules for `direction` and
/// `version`, as upstream writes them.
fn filter_calls(
    inputs: &Inputs,
    names: &[String],
    direction: &str,
    same_as: bool,
    version: u8,
) -> Vec<String> {
    names
        .iter()
        .filter_map(|name| {
            let filter = inputs.filters.get(name)?;
            let rules = crate::filters::rules(filter, direction, version);
            if rules.is_empty() {
                return None;
            }
            let function = crate::filters::function_name(name, direction, version);
            Some(if rules.iter().any(|r| !r.peer_type.is_empty()) {
                format!("{function}({same_as});")
            } else {
                format!("{function}();")
            })
        })
        .collect()
}

/// Upstream's `buildImportFilter`.
fn import_filter(
    inputs: &Inputs,
    filters: &[String],
    peer_as: &str,
    node_as: &str,
    version: u8,
    normal_priority: i64,
) -> String {
    let mut lines = filter_calls(inputs, filters, "import", peer_as == node_as, version);
    lines.push(format!(
        "if (defined(bgp_local_pref)&&(bgp_local_pref > {})) then",
        BIRD_INT_MAX - normal_priority
    ));
    lines.push(format!("  preference = {OVERRIDE_PREFERENCE};"));
    lines.push("accept;".to_owned());
    lines.join("\n    ")
}

/// Upstream's `buildExportFilter`.
fn export_filter(
    inputs: &Inputs,
    filters: &[String],
    peer_as: &str,
    node_as: &str,
    version: u8,
    normal_priority: i64,
) -> String {
    let same_as = peer_as == node_as;
    let mut lines = vec![
        "if (defined(source) && source = RTS_BGP && defined(bgp_local_pref)) then {".to_owned(),
        format!("  krt_metric = {BIRD_INT_MAX} - bgp_local_pref;"),
        "} else {".to_owned(),
        format!("  if (!defined(krt_metric)) then {{ krt_metric = {normal_priority}; }}"),
        format!("  bgp_local_pref = {BIRD_INT_MAX} - krt_metric;"),
        "}".to_owned(),
    ];
    lines.extend(filter_calls(inputs, filters, "export", same_as, version));
    lines.push(format!("calico_export_to_bgp_peers({same_as});"));
    lines.push("reject;".to_owned());
    lines.join("\n    ")
}
