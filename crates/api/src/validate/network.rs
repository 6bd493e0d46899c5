//! Pools, reservations, network sets, endpoints, nodes and BGP.

use std::collections::BTreeSet;
use std::net::IpAddr;

use base64::Engine as _;
use ipnet::IpNet;

use super::{
    Check, SelectorUse, duration, fail, fail_bare, index, ip, ip_or_cidr, is_container_id,
    is_interface_name, is_mac, is_profile_name, join, one_of, one_of_ci, selector,
};
use crate::ValidationError;
use crate::numorstring::Protocol;
use crate::v3::{
    BGP_BIND_MODES, BGP_NEXT_HOP_MODES, BGP_REVERSE_PEERING, BGP_SOURCE_ADDRESSES,
    BGPConfigurationSpec, BGPPeerSpec, ENCAP_MODES, EndpointPort, HostEndpointSpec, IPNAT,
    IPPOOL_ALLOWED_USES, IPPOOL_ASSIGNMENT_MODES, IPPoolSpec, IPReservationSpec, NodeSpec,
    NodeStatus, WorkloadEndpointPort, WorkloadEndpointSpec,
};

/// Checks a list of IPs/CIDRs.
pub(crate) fn net_list(field: &str, nets: &[String]) -> Check {
    for (i, n) in nets.iter().enumerate() {
        ip_or_cidr(&index(field, i), n, None)?;
    }
    Ok(())
}

fn version(net: &IpNet) -> u8 {
    if matches!(net, IpNet::V4(_)) { 4 } else { 6 }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Checks an IPPool spec (after defaulting).
pub(crate) fn ippool_spec(field: &str, spec: &IPPoolSpec) -> Check {
    let cidr_field = join(field, "cidr");
    if spec.cidr.is_empty() {
        return Err(fail_bare(&cidr_field, "IPPool CIDR is required"));
    }
    let Ok(cidr) = spec.cidr.parse::<IpNet>() else {
        return Err(fail(
            &cidr_field,
            &spec.cidr,
            "IPPool CIDR must be a valid CIDR",
        ));
    };
    if cidr.trunc() != cidr {
        return Err(fail(
            &cidr_field,
            &spec.cidr,
            format!(
                "IPPool CIDR is not strictly masked (did you mean {}?)",
                cidr.trunc()
            ),
        ));
    }
    let v = version(&cidr);
    let link_local: IpNet = if v == 4 {
        "169.254.0.0/16".parse().expect("valid CIDR")
    } else {
        "fe80::/10".parse().expect("valid CIDR")
    };
    if overlaps(&cidr, &link_local) {
        return Err(fail(
            &cidr_field,
            &spec.cidr,
            format!("IP pool range overlaps with IPv{v} Link Local range {link_local}"),
        ));
    }
    let bs_field = join(field, "blockSize");
    let (lo, hi) = if v == 4 { (20, 32) } else { (116, 128) };
    if spec.block_size != 0 && !(lo..=hi).contains(&spec.block_size) {
        return Err(fail(
            &bs_field,
            &spec.block_size,
            format!("IPv{v} block size must be between {lo} and {hi}"),
        ));
    }
    if !spec.disabled && spec.block_size != 0 && i64::from(cidr.prefix_len()) > spec.block_size {
        return Err(fail(
            &cidr_field,
            &spec.cidr,
            format!(
                "IP pool size is too small (min /{}) for use with Calico IPAM",
                spec.block_size
            ),
        ));
    }
    let ipip_f = join(field, "ipipMode");
    let vxlan_f = join(field, "vxlanMode");
    if !spec.ipip_mode.is_empty() {
        one_of(&ipip_f, &spec.ipip_mode, &ENCAP_MODES)?;
    }
    if !spec.vxlan_mode.is_empty() {
        one_of(&vxlan_f, &spec.vxlan_mode, &ENCAP_MODES)?;
    }
    let ipip_on = !spec.ipip_mode.is_empty() && spec.ipip_mode != "Never";
    let vxlan_on = !spec.vxlan_mode.is_empty() && spec.vxlan_mode != "Never";
    if ipip_on && vxlan_on {
        return Err(fail_bare(
            &ipip_f,
            "ipipMode and vxlanMode cannot both be enabled",
        ));
    }
    if ipip_on && v == 6 {
        return Err(fail(
            &ipip_f,
            &spec.ipip_mode,
            "IPIP is not supported on an IPv6 IP pool",
        ));
    }
    selector(
        &join(field, "nodeSelector"),
        &spec.node_selector,
        SelectorUse::Plain,
    )
    .map_err(|e| global_reason(e, "global() selector is not valid for IPPool nodeSelector"))?;
    selector(
        &join(field, "namespaceSelector"),
        &spec.namespace_selector,
        SelectorUse::Plain,
    )
    .map_err(|e| {
        global_reason(
            e,
            "global() selector is not valid for IPPool namespaceSelector",
        )
    })?;
    let uses_f = join(field, "allowedUses");
    for (i, u) in spec.allowed_uses.iter().enumerate() {
        one_of(&index(&uses_f, i), u, &IPPOOL_ALLOWED_USES)?;
    }
    super::unique(&uses_f, &spec.allowed_uses)?;
    let has = |u: &str| spec.allowed_uses.iter().any(|x| x == u);
    if has("LoadBalancer") {
        if spec.allowed_uses.len() > 1 {
            return Err(fail(
                &uses_f,
                &spec.allowed_uses,
                "LoadBalancer cannot be combined with other allowed uses",
            ));
        }
        if spec.disable_bgp_export {
            return Err(fail_bare(
                &join(field, "disableBGPExport"),
                "LoadBalancer IP pools cannot disable BGP export",
            ));
        }
        if ipip_on || vxlan_on {
            return Err(fail_bare(
                &uses_f,
                "LoadBalancer IP pools cannot use IPIP or VXLAN encapsulation",
            ));
        }
        if !spec.node_selector.is_empty() && spec.node_selector.trim() != "all()" {
            return Err(fail(
                &join(field, "nodeSelector"),
                &spec.node_selector,
                "LoadBalancer IP pools must have nodeSelector all()",
            ));
        }
    }
    if has("Tunnel") && !spec.namespace_selector.is_empty() {
        return Err(fail_bare(
            &join(field, "namespaceSelector"),
            "IP Pool with AllowedUse Tunnel cannot have namespaceSelector",
        ));
    }
    if let Some(mode) = &spec.assignment_mode {
        one_of(
            &join(field, "assignmentMode"),
            mode,
            &IPPOOL_ASSIGNMENT_MODES,
        )?;
    }
    Ok(())
}

/// Replaces the generic `global()` message with a more specific one.
fn global_reason(mut e: ValidationError, reason: &str) -> ValidationError {
    if e.reason.starts_with("global()") {
        e.reason = reason.to_owned();
    }
    e
}

/// Checks an IPReservation spec.
pub(crate) fn ip_reservation_spec(field: &str, spec: &IPReservationSpec) -> Check {
    net_list(&join(field, "reservedCIDRs"), &spec.reserved_cidrs)
}

fn profiles(field: &str, list: &[String]) -> Check {
    for (i, p) in list.iter().enumerate() {
        if !is_profile_name(p) {
            return Err(fail(&index(field, i), p, "invalid profile name"));
        }
    }
    Ok(())
}

fn endpoint_protocol(field: &str, p: &Protocol) -> Check {
    if matches!(p.number(), Some(6 | 17 | 132)) && p.is_valid() {
        Ok(())
    } else {
        Err(fail(
            field,
            p,
            "endpoint port protocol must be TCP, UDP or SCTP",
        ))
    }
}

/// Checks a WorkloadEndpoint port.
pub(crate) fn workload_endpoint_port(field: &str, p: &WorkloadEndpointPort) -> Check {
    if p.name.is_empty() {
        if p.host_port == 0 {
            return Err(fail_bare(
                &join(field, "name"),
                "port name is required unless a hostPort is set",
            ));
        }
    } else if !super::is_iana_port_name(&p.name) {
        return Err(fail(
            &join(field, "name"),
            &p.name,
            "invalid port name: at most 15 lower-case letters, digits and '-', with a letter",
        ));
    }
    endpoint_protocol(&join(field, "protocol"), &p.protocol)?;
    if p.port == 0 {
        return Err(fail(
            &join(field, "port"),
            &p.port,
            "port must be between 1 and 65535",
        ));
    }
    if !p.host_ip.is_empty() {
        ip(&join(field, "hostIP"), &p.host_ip, None)?;
    }
    Ok(())
}

/// Checks a 1:1 NAT mapping.
pub(crate) fn ip_nat(field: &str, nat: &IPNAT) -> Result<(IpAddr, IpAddr), ValidationError> {
    let int = ip(&join(field, "internalIP"), &nat.internal_ip, None)?;
    let ext = ip(&join(field, "externalIP"), &nat.external_ip, None)?;
    if int.is_ipv4() != ext.is_ipv4() {
        return Err(fail(
            field,
            nat,
            "internal and external IPs must be of the same version",
        ));
    }
    Ok((int, ext))
}

/// Checks a WorkloadEndpoint spec.
pub(crate) fn workload_endpoint_spec(field: &str, spec: &WorkloadEndpointSpec) -> Check {
    let if_f = join(field, "interfaceName");
    if spec.interface_name.is_empty() {
        return Err(fail_bare(&if_f, "interfaceName is required"));
    }
    if !is_interface_name(&spec.interface_name) {
        return Err(fail(&if_f, &spec.interface_name, "invalid interface name"));
    }
    // Upstream's `name` tag on the fields naming what the endpoint belongs to.
    for (name, value) in [
        ("orchestrator", &spec.orchestrator),
        ("workload", &spec.workload),
        ("node", &spec.node),
        ("pod", &spec.pod),
        ("endpoint", &spec.endpoint),
        ("serviceAccountName", &spec.service_account_name),
    ] {
        if !value.is_empty() && !super::is_dns1123_subdomain(value) {
            return Err(fail(
                &join(field, name),
                value,
                "must be a lower-case DNS-1123 subdomain",
            ));
        }
    }
    if !spec.container_id.is_empty() && !is_container_id(&spec.container_id) {
        return Err(fail(
            &join(field, "containerID"),
            &spec.container_id,
            "invalid container ID",
        ));
    }
    let mut networks = Vec::new();
    for (i, n) in spec.ip_networks.iter().enumerate() {
        let f = index(&join(field, "ipNetworks"), i);
        let net = ip_or_cidr(&f, n, None)?;
        if net.prefix_len() != net.max_prefix_len() {
            return Err(fail(&f, n, "IP network contains multiple addresses"));
        }
        networks.push(net);
    }
    for (i, nat) in spec.ip_nats.iter().enumerate() {
        let f = index(&join(field, "ipNATs"), i);
        let (int, _) = ip_nat(&f, nat)?;
        if !networks.iter().any(|n| n.contains(&int)) {
            return Err(fail(
                &f,
                nat,
                "NAT internal IP is not one of the endpoint's ipNetworks",
            ));
        }
    }
    if !spec.ipv4_gateway.is_empty() {
        ip(&join(field, "ipv4Gateway"), &spec.ipv4_gateway, Some(4))?;
    }
    if !spec.ipv6_gateway.is_empty() {
        ip(&join(field, "ipv6Gateway"), &spec.ipv6_gateway, Some(6))?;
    }
    profiles(&join(field, "profiles"), &spec.profiles)?;
    if !spec.mac.is_empty() && !is_mac(&spec.mac) {
        return Err(fail(&join(field, "mac"), &spec.mac, "invalid MAC address"));
    }
    for (i, p) in spec.ports.iter().enumerate() {
        workload_endpoint_port(&index(&join(field, "ports"), i), p)?;
    }
    net_list(
        &join(field, "allowSpoofedSourcePrefixes"),
        &spec.allow_spoofed_source_prefixes,
    )?;
    if let Some(qos) = &spec.qos_controls
        && let Some(d) = &qos.dscp
        && !d.is_valid()
    {
        return Err(fail(
            &join(field, "qosControls.dscp"),
            d,
            "invalid DSCP value",
        ));
    }
    Ok(())
}

fn endpoint_port(field: &str, p: &EndpointPort) -> Check {
    if !super::is_iana_port_name(&p.name) {
        return Err(fail(
            &join(field, "name"),
            &p.name,
            "port name is required and must be valid",
        ));
    }
    endpoint_protocol(&join(field, "protocol"), &p.protocol)?;
    if p.port == 0 {
        return Err(fail(
            &join(field, "port"),
            &p.port,
            "port must be between 1 and 65535",
        ));
    }
    Ok(())
}

/// Checks a HostEndpoint spec.
pub(crate) fn host_endpoint_spec(field: &str, spec: &HostEndpointSpec) -> Check {
    if spec.node.is_empty() {
        return Err(fail_bare(&join(field, "node"), "node is required"));
    }
    node_name(&join(field, "node"), &spec.node)?;
    if spec.interface_name.is_empty() && spec.expected_ips.is_empty() {
        return Err(fail_bare(
            field,
            "at least one of interfaceName or expectedIPs must be specified",
        ));
    }
    if !spec.interface_name.is_empty()
        && spec.interface_name != "*"
        && !is_interface_name(&spec.interface_name)
    {
        return Err(fail(
            &join(field, "interfaceName"),
            &spec.interface_name,
            "invalid interface name",
        ));
    }
    for (i, a) in spec.expected_ips.iter().enumerate() {
        ip(&index(&join(field, "expectedIPs"), i), a, None)?;
    }
    profiles(&join(field, "profiles"), &spec.profiles)?;
    for (i, p) in spec.ports.iter().enumerate() {
        endpoint_port(&index(&join(field, "ports"), i), p)?;
    }
    Ok(())
}

/// Checks a Node spec.
pub(crate) fn node_spec(field: &str, spec: &NodeSpec) -> Check {
    if let Some(bgp) = &spec.bgp {
        let f = join(field, "bgp");
        // Upstream refuses only an empty BGP section.
        if *bgp == crate::v3::NodeBGPSpec::default() {
            return Err(fail_bare(&f, "no BGP IP address and subnet specified"));
        }
        if !bgp.ipv4_address.is_empty() {
            ip_or_cidr(&join(&f, "ipv4Address"), &bgp.ipv4_address, Some(4))?;
        }
        if !bgp.ipv6_address.is_empty() {
            ip_or_cidr(&join(&f, "ipv6Address"), &bgp.ipv6_address, Some(6))?;
        }
        if !bgp.ipv4_ipip_tunnel_addr.is_empty() {
            ip(
                &join(&f, "ipv4IPIPTunnelAddr"),
                &bgp.ipv4_ipip_tunnel_addr,
                Some(4),
            )?;
        }
        if !bgp.route_reflector_cluster_id.is_empty() {
            ip(
                &join(&f, "routeReflectorClusterID"),
                &bgp.route_reflector_cluster_id,
                Some(4),
            )?;
        }
    }
    if !spec.ipv4_vxlan_tunnel_addr.is_empty() {
        ip(
            &join(field, "ipv4VXLANTunnelAddr"),
            &spec.ipv4_vxlan_tunnel_addr,
            Some(4),
        )?;
    }
    if !spec.ipv6_vxlan_tunnel_addr.is_empty() {
        ip(
            &join(field, "ipv6VXLANTunnelAddr"),
            &spec.ipv6_vxlan_tunnel_addr,
            Some(6),
        )?;
    }
    for (name, mac) in [
        ("vxlanTunnelMACAddr", &spec.vxlan_tunnel_mac_addr),
        ("vxlanTunnelMACAddrV6", &spec.vxlan_tunnel_mac_addr_v6),
    ] {
        if !mac.is_empty() && !is_mac(mac) {
            return Err(fail(&join(field, name), mac, "invalid MAC address"));
        }
    }
    if let Some(wg) = &spec.wireguard {
        let f = join(field, "wireguard");
        if !wg.interface_ipv4_address.is_empty() {
            ip(
                &join(&f, "interfaceIPv4Address"),
                &wg.interface_ipv4_address,
                Some(4),
            )?;
        }
        if !wg.interface_ipv6_address.is_empty() {
            ip(
                &join(&f, "interfaceIPv6Address"),
                &wg.interface_ipv6_address,
                Some(6),
            )?;
        }
    }
    for (i, a) in spec.addresses.iter().enumerate() {
        let f = index(&join(field, "addresses"), i);
        ip_or_cidr(&join(&f, "address"), &a.address, None)?;
        if !a.r#type.is_empty() {
            one_of(
                &join(&f, "type"),
                &a.r#type,
                &["CalicoNodeIP", "InternalIP", "ExternalIP"],
            )?;
        }
    }
    Ok(())
}

/// Checks a Node status (WireGuard keys are base64 of 32 bytes).
pub(crate) fn node_status(field: &str, status: &NodeStatus) -> Check {
    for (name, key) in [
        ("wireguardPublicKey", &status.wireguard_public_key),
        ("wireguardPublicKeyV6", &status.wireguard_public_key_v6),
    ] {
        if key.is_empty() {
            continue;
        }
        let ok = base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|b| b.len() == 32);
        if !ok {
            return Err(fail(
                &join(field, name),
                key,
                "invalid WireGuard public key",
            ));
        }
    }
    net_list(&join(field, "podCIDRs"), &status.pod_cidrs)
}

/// Parses `ip`, `ip:port` or `[ipv6]:port`.
fn peer_ip(field: &str, s: &str) -> Result<IpAddr, ValidationError> {
    let bad = |reason: &str| fail(field, &s, reason.to_owned());
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok(addr);
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| bad("invalid peer IP"))?;
        (h, p)
    } else {
        s.rsplit_once(':').ok_or_else(|| bad("invalid peer IP"))?
    };
    let addr: IpAddr = host.parse().map_err(|_| bad("invalid peer IP"))?;
    if s.starts_with('[') != addr.is_ipv6() {
        return Err(bad(
            "IPv6 peer addresses with a port must be written [addr]:port",
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(addr),
        _ => Err(bad("peer port must be between 1 and 65535")),
    }
}

/// Checks a BGPPeer spec.
/// A Node's name as another resource refers to it: a lower-case DNS-1123 subdomain
/// (upstream's `name` tag).
fn node_name(field: &str, node: &str) -> Check {
    if super::is_dns1123_subdomain(node) {
        Ok(())
    } else {
        Err(fail(
            field,
            &node,
            "must be a node name (a lower-case DNS-1123 subdomain)",
        ))
    }
}

pub(crate) fn bgp_peer_spec(field: &str, spec: &BGPPeerSpec) -> Check {
    let f = |n: &str| join(field, n);
    if !spec.node.is_empty() {
        node_name(&f("node"), &spec.node)?;
    }
    if !spec.node.is_empty() && !spec.node_selector.is_empty() {
        return Err(fail_bare(
            &f("node"),
            "node and nodeSelector cannot both be set",
        ));
    }
    if !spec.peer_ip.is_empty() && !spec.peer_selector.is_empty() {
        return Err(fail_bare(
            &f("peerIP"),
            "peerIP and peerSelector cannot both be set",
        ));
    }
    // An asNumber of 0 is no asNumber (upstream's omitempty drops it).
    let as_number = spec.as_number.filter(|a| a.0 != 0);
    if !spec.local_workload_selector.is_empty() {
        if as_number.is_none() {
            return Err(fail_bare(
                &f("asNumber"),
                "asNumber is required when localWorkloadSelector is set",
            ));
        }
        if !spec.peer_ip.is_empty() {
            return Err(fail_bare(
                &f("peerIP"),
                "peerIP must be empty when localWorkloadSelector is set",
            ));
        }
        if !spec.peer_selector.is_empty() {
            return Err(fail_bare(
                &f("peerSelector"),
                "peerSelector must be empty when localWorkloadSelector is set",
            ));
        }
    }
    if !spec.peer_selector.is_empty() && as_number.is_some() {
        return Err(fail_bare(
            &f("asNumber"),
            "asNumber must be empty when peerSelector is set",
        ));
    }
    selector(&f("nodeSelector"), &spec.node_selector, SelectorUse::Plain)?;
    selector(&f("peerSelector"), &spec.peer_selector, SelectorUse::Plain)?;
    selector(
        &f("localWorkloadSelector"),
        &spec.local_workload_selector,
        SelectorUse::Plain,
    )?;
    let peer = if spec.peer_ip.is_empty() {
        None
    } else {
        Some(peer_ip(&f("peerIP"), &spec.peer_ip)?)
    };
    if !spec.reachable_by.is_empty() {
        let Some(peer) = peer else {
            return Err(fail_bare(&f("reachableBy"), "reachableBy requires peerIP"));
        };
        let via = ip(&f("reachableBy"), &spec.reachable_by, None)?;
        if via.is_ipv4() != peer.is_ipv4() {
            return Err(fail(
                &f("reachableBy"),
                &spec.reachable_by,
                "reachableBy and peerIP must be of the same IP family",
            ));
        }
    }
    if !spec.source_address.is_empty() {
        one_of(
            &f("sourceAddress"),
            &spec.source_address,
            &BGP_SOURCE_ADDRESSES,
        )?;
    }
    if let Some(m) = &spec.next_hop_mode {
        one_of(&f("nextHopMode"), m, &BGP_NEXT_HOP_MODES)?;
        if spec.keep_original_next_hop {
            return Err(fail_bare(
                &f("nextHopMode"),
                "keepOriginalNextHop and nextHopMode cannot both be set",
            ));
        }
    }
    if let Some(m) = &spec.reverse_peering {
        one_of(&f("reversePeering"), m, &BGP_REVERSE_PEERING)?;
    }
    if let Some(d) = &spec.max_restart_time {
        duration(&f("maxRestartTime"), d, true)?;
    }
    if let Some(d) = &spec.keepalive_time {
        duration(&f("keepaliveTime"), d, true)?;
    }
    if let Some(pw) = &spec.password
        && let Some(r) = &pw.secret_key_ref
        && r.key.is_empty()
    {
        return Err(fail_bare(
            &f("password.secretKeyRef.key"),
            "key is required",
        ));
    }
    for (i, name) in spec.filters.iter().enumerate() {
        if !super::is_dns1123_subdomain(name) {
            return Err(fail(
                &index(&f("filters"), i),
                name,
                "invalid BGPFilter name",
            ));
        }
    }
    Ok(())
}

/// Whether `v` is a standard (`aa:nn`, 16-bit parts) or large (`aa:nn:mm`, 32-bit parts)
/// BGP community value.
fn is_community_value(v: &str) -> bool {
    let parts: Vec<&str> = v.split(':').collect();
    let num = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [a, b] => num(a) && num(b) && a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(),
        [a, b, c] => [a, b, c].iter().all(|p| num(p) && p.parse::<u32>().is_ok()),
        _ => false,
    }
}

/// BIRD's log levels (compared case-insensitively).
const BGP_LOG_LEVELS: [&str; 6] = ["Trace", "Debug", "Info", "Warning", "Error", "Fatal"];

/// Checks a BGPConfiguration spec.
pub(crate) fn bgp_configuration_spec(field: &str, spec: &BGPConfigurationSpec) -> Check {
    let f = |n: &str| join(field, n);
    if !spec.log_severity_screen.is_empty() {
        one_of_ci(
            &f("logSeverityScreen"),
            &spec.log_severity_screen,
            &BGP_LOG_LEVELS,
        )?;
    }
    // Upstream's ignoredInterface pattern; it also keeps quotes and braces
    // out of the BIRD configuration these patterns are written into.
    for (i, iface) in spec.ignored_interfaces.iter().enumerate() {
        let ok = (1..=15).contains(&iface.len())
            && iface
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.*-".contains(&b));
        if !ok {
            return Err(fail(
                &index(&f("ignoredInterfaces"), i),
                iface,
                "invalid interface pattern (1-15 of a-z, A-Z, 0-9, _ . * -)",
            ));
        }
    }
    for (name, blocks) in [
        ("serviceLoadBalancerIPs", &spec.service_load_balancer_ips),
        ("serviceExternalIPs", &spec.service_external_ips),
        ("serviceClusterIPs", &spec.service_cluster_ips),
    ] {
        for (i, b) in blocks.iter().enumerate() {
            super::ip_or_strict_cidr(&join(&index(&f(name), i), "cidr"), &b.cidr)?;
        }
    }
    let mesh_off = spec.node_to_node_mesh_enabled == Some(false);
    if mesh_off && spec.node_mesh_password.is_some() {
        return Err(fail_bare(
            &f("nodeMeshPassword"),
            "nodeMeshPassword cannot be set when nodeToNodeMeshEnabled is false",
        ));
    }
    if let Some(d) = &spec.node_mesh_max_restart_time {
        if mesh_off {
            return Err(fail_bare(
                &f("nodeMeshMaxRestartTime"),
                "nodeMeshMaxRestartTime cannot be set when nodeToNodeMeshEnabled is false",
            ));
        }
        duration(&f("nodeMeshMaxRestartTime"), d, true)?;
    }
    for (name, priority) in [
        ("ipv4NormalRoutePriority", spec.ipv4_normal_route_priority),
        ("ipv6NormalRoutePriority", spec.ipv6_normal_route_priority),
    ] {
        // Upstream's range: a kernel metric that bgp_local_pref (2^31-1 minus it) can carry.
        if let Some(p) = priority
            && !(1..=2_147_483_646).contains(&p)
        {
            return Err(fail(&f(name), &p, "must be between 1 and 2147483646"));
        }
    }
    if let Some(a) = &spec.service_load_balancer_aggregation {
        one_of(
            &f("serviceLoadBalancerAggregation"),
            a,
            &["Enabled", "Disabled"],
        )?;
    }
    let mut names = BTreeSet::new();
    for (i, c) in spec.communities.iter().enumerate() {
        let cf = index(&f("communities"), i);
        if c.name.is_empty() || c.value.is_empty() {
            return Err(fail(&cf, c, "community must have both name and value"));
        }
        if !super::is_dns1123_subdomain(&c.name) {
            return Err(fail(
                &join(&cf, "name"),
                &c.name,
                "must be a lower-case DNS-1123 subdomain",
            ));
        }
        if !is_community_value(&c.value) {
            return Err(fail(
                &join(&cf, "value"),
                &c.value,
                "invalid community value; expected aa:nn (16-bit parts) or aa:nn:mm (32-bit parts)",
            ));
        }
        names.insert(c.name.as_str());
    }
    for (i, pa) in spec.prefix_advertisements.iter().enumerate() {
        let pf = index(&f("prefixAdvertisements"), i);
        if pa.cidr.is_empty() {
            return Err(fail_bare(&join(&pf, "cidr"), "cidr is required"));
        }
        super::ip_or_strict_cidr(&join(&pf, "cidr"), &pa.cidr)?;
        if pa.communities.is_empty() {
            return Err(fail_bare(
                &join(&pf, "communities"),
                "communities is required: what the prefix is advertised with",
            ));
        }
        for (j, c) in pa.communities.iter().enumerate() {
            if !is_community_value(c) && !names.contains(c.as_str()) {
                return Err(fail(
                    &index(&join(&pf, "communities"), j),
                    c,
                    "community used is invalid or not defined",
                ));
            }
        }
    }
    if let Some(m) = &spec.bind_mode {
        one_of(&f("bindMode"), m, &BGP_BIND_MODES)?;
    }
    if let Some(m) = &spec.program_cluster_routes {
        one_of(
            &f("programClusterRoutes"),
            m,
            &[
                "Enabled",
                "Disabled",
                "EnabledIPIPOnly",
                "EnabledNoEncapOnly",
            ],
        )?;
    }
    for (i, iface) in spec.ignored_interfaces.iter().enumerate() {
        // Wildcards are allowed inside a name, but a pattern of only wildcards would hide
        // every interface.
        let base: String = iface.chars().filter(|c| *c != '*').collect();
        if base.is_empty() || !is_interface_name(&base) {
            return Err(fail(
                &index(&f("ignoredInterfaces"), i),
                iface,
                "invalid interface name",
            ));
        }
    }
    if !spec.local_workload_peering_ipv4.is_empty() {
        ip(
            &f("localWorkloadPeeringIPV4"),
            &spec.local_workload_peering_ipv4,
            Some(4),
        )?;
    }
    if !spec.local_workload_peering_ipv6.is_empty() {
        ip(
            &f("localWorkloadPeeringIPV6"),
            &spec.local_workload_peering_ipv6,
            Some(6),
        )?;
    }
    Ok(())
}
