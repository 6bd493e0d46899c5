//! Nodes (upstream's `internalapi.Node`).

use serde::{Deserialize, Serialize};

use crate::numorstring::ASNumber;

/// Spec of a Node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// BGP settings; absent when the node does not run BGP.
    #[serde(rename = "bgp", default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBGPSpec>,
    /// IPv4 address of the VXLAN tunnel device.
    #[serde(
        rename = "ipv4VXLANTunnelAddr",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_vxlan_tunnel_addr: String,
    /// MAC address of the IPv4 VXLAN tunnel device.
    #[serde(
        rename = "vxlanTunnelMACAddr",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub vxlan_tunnel_mac_addr: String,
    /// IPv6 address of the VXLAN tunnel device.
    #[serde(
        rename = "ipv6VXLANTunnelAddr",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_vxlan_tunnel_addr: String,
    /// MAC address of the IPv6 VXLAN tunnel device.
    #[serde(
        rename = "vxlanTunnelMACAddrV6",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub vxlan_tunnel_mac_addr_v6: String,
    /// The node's names in orchestrators.
    #[serde(rename = "orchRefs", default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    /// WireGuard settings.
    #[serde(rename = "wireguard", default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
    /// The node's addresses.
    #[serde(rename = "addresses", default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
}

/// BGP settings of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBGPSpec {
    /// The node's AS number; the cluster default when unset.
    #[serde(rename = "asNumber", default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<ASNumber>,
    /// IPv4 address and subnet (`10.0.0.1/24`).
    #[serde(
        rename = "ipv4Address",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_address: String,
    /// IPv6 address and subnet.
    #[serde(
        rename = "ipv6Address",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_address: String,
    /// IPv4 address of the IP-in-IP tunnel device.
    #[serde(
        rename = "ipv4IPIPTunnelAddr",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_ipip_tunnel_addr: String,
    /// Route-reflector cluster id (an IPv4 address); set on route reflectors.
    #[serde(
        rename = "routeReflectorClusterID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub route_reflector_cluster_id: String,
}

/// A node's name in an orchestrator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrchRef {
    /// The name the orchestrator uses.
    #[serde(rename = "nodeName", default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// The orchestrator.
    #[serde(rename = "orchestrator", default)]
    pub orchestrator: String,
}

/// WireGuard settings of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeWireguardSpec {
    /// IPv4 address of the WireGuard device.
    #[serde(
        rename = "interfaceIPv4Address",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_ipv4_address: String,
    /// IPv6 address of the WireGuard device.
    #[serde(
        rename = "interfaceIPv6Address",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_ipv6_address: String,
}

/// One address of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddress {
    /// The address (or CIDR).
    #[serde(rename = "address", default)]
    pub address: String,
    /// `InternalIP`, `ExternalIP`, `CalicoNodeIP`, ...
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub r#type: String,
}

/// Status of a node, reported by calico-node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStatus {
    /// The node's IPv4 WireGuard public key (base64).
    #[serde(
        rename = "wireguardPublicKey",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub wireguard_public_key: String,
    /// The node's IPv6 WireGuard public key (base64).
    #[serde(
        rename = "wireguardPublicKeyV6",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub wireguard_public_key_v6: String,
    /// Pod CIDRs assigned to the node.
    #[serde(rename = "podCIDRs", default, skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
}

impl NodeStatus {
    /// Whether nothing is set (the status is then omitted from output).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A host running calico-node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Always `projectcalico.org/v3`.
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    /// Always `Node`.
    #[serde(rename = "kind", default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(rename = "metadata", default)]
    pub metadata: super::ObjectMeta,
    /// The desired state.
    #[serde(rename = "spec", default)]
    pub spec: NodeSpec,
    /// The observed state.
    #[serde(
        rename = "status",
        default,
        skip_serializing_if = "NodeStatus::is_empty"
    )]
    pub status: NodeStatus,
}
