//! BGP peers and cluster BGP configuration.

use serde::{Deserialize, Serialize};

use super::{SecretKeySelector, ser};
use crate::numorstring::ASNumber;

/// Source-address modes of a BGP peering.
pub const BGP_SOURCE_ADDRESSES: [&str; 2] = ["UseNodeIP", "None"];
/// Next-hop modes of a BGP peering.
pub const BGP_NEXT_HOP_MODES: [&str; 3] = ["Auto", "Self", "Keep"];
/// Reverse-peering modes of a BGP peering.
pub const BGP_REVERSE_PEERING: [&str; 2] = ["Auto", "Manual"];
/// Bind modes of the BGP daemon.
pub const BGP_BIND_MODES: [&str; 2] = ["None", "NodeIP"];

/// A password taken from a Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BGPPassword {
    /// The Secret key holding the password.
    #[serde(
        rename = "secretKeyRef",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_key_ref: Option<SecretKeySelector>,
}

/// Spec of a BGPPeer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BGPPeerSpec {
    /// The node that peers (all nodes when neither this nor `nodeSelector` is set).
    #[serde(rename = "node", default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Nodes that peer.
    #[serde(
        rename = "nodeSelector",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub node_selector: String,
    /// The peer's address, optionally with a port (`10.0.0.1:179`, `[fd00::1]:179`).
    #[serde(rename = "peerIP", default, skip_serializing_if = "String::is_empty")]
    pub peer_ip: String,
    /// Peer with the nodes matching this selector instead of `peerIP`.
    #[serde(
        rename = "peerSelector",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub peer_selector: String,
    /// The peer's AS number.
    #[serde(rename = "asNumber", default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<ASNumber>,
    /// Peer with local workloads matching this selector.
    #[serde(
        rename = "localWorkloadSelector",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub local_workload_selector: String,
    /// TCP-MD5 password.
    #[serde(rename = "password", default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BGPPassword>,
    /// `UseNodeIP` or `None`.
    #[serde(
        rename = "sourceAddress",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub source_address: String,
    /// Graceful-restart time (Go duration).
    #[serde(
        rename = "maxRestartTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_restart_time: Option<String>,
    /// How often the local AS may appear in an AS path.
    #[serde(
        rename = "numAllowedLocalASNumbers",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_allowed_local_as_numbers: Option<i64>,
    /// GTSM hop count.
    #[serde(
        rename = "ttlSecurity",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl_security: Option<u8>,
    /// Keep the original next hop (deprecated; see `nextHopMode`).
    #[serde(
        rename = "keepOriginalNextHop",
        default,
        skip_serializing_if = "ser::is_false"
    )]
    pub keep_original_next_hop: bool,
    /// `Auto`, `Self` or `Keep`.
    #[serde(
        rename = "nextHopMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_hop_mode: Option<String>,
    /// Gateway address through which the peer is reachable.
    #[serde(
        rename = "reachableBy",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub reachable_by: String,
    /// BGPFilter names applied to the peering.
    #[serde(rename = "filters", default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// `Auto` or `Manual`.
    #[serde(
        rename = "reversePeering",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reverse_peering: Option<String>,
    /// The AS number this node uses towards this peer instead of its own.
    #[serde(
        rename = "localASNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<ASNumber>,
    /// BGP keepalive time (Go duration).
    #[serde(
        rename = "keepaliveTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub keepalive_time: Option<String>,
}

/// A community name and value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Community {
    /// The name prefix advertisements refer to.
    #[serde(rename = "name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `aa:nn` (standard) or `aa:nn:mm` (large).
    #[serde(rename = "value", default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// Communities attached to an advertised prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixAdvertisement {
    /// The prefix.
    #[serde(rename = "cidr", default, skip_serializing_if = "String::is_empty")]
    pub cidr: String,
    /// Community names or values.
    #[serde(rename = "communities", default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

/// A block of service addresses to advertise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceIPBlock {
    /// The CIDR (or single IP).
    #[serde(rename = "cidr", default, skip_serializing_if = "String::is_empty")]
    pub cidr: String,
}

/// Spec of BGPConfiguration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BGPConfigurationSpec {
    /// BGP daemon log level.
    #[serde(
        rename = "logSeverityScreen",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub log_severity_screen: String,
    /// Full node-to-node mesh (default true).
    #[serde(
        rename = "nodeToNodeMeshEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// Default AS number of nodes.
    #[serde(rename = "asNumber", default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<ASNumber>,
    /// LoadBalancer service addresses to advertise.
    #[serde(
        rename = "serviceLoadBalancerIPs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<ServiceIPBlock>,
    /// External service addresses to advertise.
    #[serde(
        rename = "serviceExternalIPs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<ServiceIPBlock>,
    /// Cluster service addresses to advertise.
    #[serde(
        rename = "serviceClusterIPs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<ServiceIPBlock>,
    /// Named communities.
    #[serde(rename = "communities", default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    /// Communities per advertised prefix.
    #[serde(
        rename = "prefixAdvertisements",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// BGP listen port.
    #[serde(
        rename = "listenPort",
        default,
        skip_serializing_if = "ser::is_zero_u16"
    )]
    pub listen_port: u16,
    /// Password of the node-to-node mesh.
    #[serde(
        rename = "nodeMeshPassword",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node_mesh_password: Option<BGPPassword>,
    /// Graceful-restart time of the mesh (Go duration).
    #[serde(
        rename = "nodeMeshMaxRestartTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node_mesh_max_restart_time: Option<String>,
    /// `None` or `NodeIP`.
    #[serde(rename = "bindMode", default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<String>,
    /// Interfaces the BGP daemon ignores.
    #[serde(
        rename = "ignoredInterfaces",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ignored_interfaces: Vec<String>,
    /// IPv4 address local workloads peer with.
    #[serde(
        rename = "localWorkloadPeeringIPV4",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub local_workload_peering_ipv4: String,
    /// IPv6 address local workloads peer with.
    #[serde(
        rename = "localWorkloadPeeringIPV6",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub local_workload_peering_ipv6: String,
    /// Which pools' cluster routes BIRD programs: `Enabled`, `Disabled`,
    /// `EnabledIPIPOnly` or `EnabledNoEncapOnly` (the default).
    #[serde(
        rename = "programClusterRoutes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub program_cluster_routes: Option<String>,
    /// Kernel route priority (metric) of ordinary IPv4 routes BIRD programs (default 1024).
    #[serde(
        rename = "ipv4NormalRoutePriority",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_normal_route_priority: Option<i64>,
    /// Kernel route priority (metric) of ordinary IPv6 routes BIRD programs (default 1024).
    #[serde(
        rename = "ipv6NormalRoutePriority",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_normal_route_priority: Option<i64>,
    /// `Enabled` or `Disabled`: advertise LoadBalancer service IPs aggregated.
    #[serde(
        rename = "serviceLoadBalancerAggregation",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub service_load_balancer_aggregation: Option<String>,
}

super::resource!(
    /// A BGP peering.
    BGPPeer,
    BGPPeerSpec
);

super::resource!(
    /// Cluster-wide (`default`) or per-node (`node.<name>`) BGP settings.
    BGPConfiguration,
    BGPConfigurationSpec
);
