//! Workload and host endpoints.

use serde::{Deserialize, Serialize};

use super::ser;
use crate::numorstring::{Dscp, Protocol};

/// Annotation of a WorkloadEndpoint whose labels are not known yet (a Docker
/// container the plugin has not read yet): felix leaves its interface
/// unknown, so its traffic is dropped until the labels are written and the
/// annotation removed; it never carries traffic under an identity without
/// them.
pub const LABELS_PENDING_ANNOTATION: &str = "calico-rs/labels-pending";

/// The label naming a workload endpoint's namespace, set by whoever writes it.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";

/// The label naming the orchestrator of a workload endpoint, as libcalico-go adds it.
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";

/// Spec of a WorkloadEndpoint (upstream's `internalapi.WorkloadEndpointSpec`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    /// The orchestrator that created the endpoint.
    #[serde(
        rename = "orchestrator",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub orchestrator: String,
    /// The workload, for orchestrators other than k8s/cni/libnetwork.
    #[serde(rename = "workload", default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    /// The hosting node.
    #[serde(rename = "node", default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// The container ID.
    #[serde(
        rename = "containerID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub container_id: String,
    /// The pod, for Kubernetes.
    #[serde(rename = "pod", default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// The endpoint's name within the workload.
    #[serde(rename = "endpoint", default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// The workload's service account.
    #[serde(
        rename = "serviceAccountName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub service_account_name: String,
    /// The endpoint's addresses (/32 or /128).
    #[serde(rename = "ipNetworks", default, skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    /// 1:1 NAT mappings.
    #[serde(rename = "ipNATs", default, skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IPNAT>,
    /// IPv4 gateway.
    #[serde(
        rename = "ipv4Gateway",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_gateway: String,
    /// IPv6 gateway.
    #[serde(
        rename = "ipv6Gateway",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_gateway: String,
    /// Profiles applied to the endpoint.
    #[serde(rename = "profiles", default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// The host-side interface.
    #[serde(
        rename = "interfaceName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_name: String,
    /// The workload-side MAC address.
    #[serde(rename = "mac", default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// Named ports.
    #[serde(rename = "ports", default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WorkloadEndpointPort>,
    /// Source prefixes the workload may spoof.
    #[serde(
        rename = "allowSpoofedSourcePrefixes",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_spoofed_source_prefixes: Vec<String>,
    /// Bandwidth and packet-rate limits.
    #[serde(
        rename = "qosControls",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub qos_controls: Option<QoSControls>,
}

/// A 1:1 NAT mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IPNAT {
    /// The workload's address.
    #[serde(rename = "internalIP", default)]
    pub internal_ip: String,
    /// The address it is reachable at.
    #[serde(rename = "externalIP", default)]
    pub external_ip: String,
}

/// A named port of a workload endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadEndpointPort {
    /// The port's name (may be empty when `hostPort` is set).
    #[serde(rename = "name", default)]
    pub name: String,
    /// TCP, UDP or SCTP.
    #[serde(rename = "protocol", default)]
    pub protocol: Protocol,
    /// The port number.
    #[serde(rename = "port", default)]
    pub port: u16,
    /// The host port mapped to it, if any.
    #[serde(rename = "hostPort", default, skip_serializing_if = "ser::is_zero_u16")]
    pub host_port: u16,
    /// The host IP the host port binds to.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// Quality-of-service limits of a workload endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QoSControls {
    /// Ingress bandwidth limit, bits/s.
    #[serde(
        rename = "ingressBandwidth",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub ingress_bandwidth: i64,
    /// Egress bandwidth limit, bits/s.
    #[serde(
        rename = "egressBandwidth",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub egress_bandwidth: i64,
    /// Ingress burst size, bits.
    #[serde(
        rename = "ingressBurst",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub ingress_burst: i64,
    /// Egress burst size, bits.
    #[serde(
        rename = "egressBurst",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub egress_burst: i64,
    /// Ingress peak rate, bits/s.
    #[serde(
        rename = "ingressPeakrate",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub ingress_peakrate: i64,
    /// Egress peak rate, bits/s.
    #[serde(
        rename = "egressPeakrate",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub egress_peakrate: i64,
    /// Ingress minimum burst, bytes.
    #[serde(
        rename = "ingressMinburst",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub ingress_minburst: i64,
    /// Egress minimum burst, bytes.
    #[serde(
        rename = "egressMinburst",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub egress_minburst: i64,
    /// Ingress packet rate limit, packets/s.
    #[serde(
        rename = "ingressPacketRate",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub ingress_packet_rate: i64,
    /// Egress packet rate limit, packets/s.
    #[serde(
        rename = "egressPacketRate",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub egress_packet_rate: i64,
    /// Ingress packet burst.
    #[serde(
        rename = "ingressPacketBurst",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub ingress_packet_burst: i64,
    /// Egress packet burst.
    #[serde(
        rename = "egressPacketBurst",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub egress_packet_burst: i64,
    /// Ingress connection limit.
    #[serde(
        rename = "ingressMaxConnections",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub ingress_max_connections: i64,
    /// Egress connection limit.
    #[serde(
        rename = "egressMaxConnections",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub egress_max_connections: i64,
    /// DSCP value set on egress traffic.
    #[serde(rename = "dscp", default, skip_serializing_if = "Option::is_none")]
    pub dscp: Option<Dscp>,
}

/// Spec of a HostEndpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEndpointSpec {
    /// The node the interface is on.
    #[serde(rename = "node", default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// The interface (`*` for all of the host's interfaces).
    #[serde(
        rename = "interfaceName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_name: String,
    /// The interface's expected addresses.
    #[serde(rename = "expectedIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<String>,
    /// Profiles applied to the endpoint.
    #[serde(rename = "profiles", default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Named ports.
    #[serde(rename = "ports", default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

/// A named port of a host endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointPort {
    /// The port's name.
    #[serde(rename = "name", default)]
    pub name: String,
    /// TCP, UDP or SCTP.
    #[serde(rename = "protocol", default)]
    pub protocol: Protocol,
    /// The port number.
    #[serde(rename = "port", default)]
    pub port: u16,
}

super::resource!(
    /// A workload's network interface.
    WorkloadEndpoint,
    WorkloadEndpointSpec
);

super::resource!(
    /// A host interface under policy.
    HostEndpoint,
    HostEndpointSpec
);
