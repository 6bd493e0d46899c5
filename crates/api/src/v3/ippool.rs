//! Address pools and reservations.

use serde::{Deserialize, Serialize};

use super::ser;

/// Encapsulation modes for `ipipMode` / `vxlanMode`.
pub const ENCAP_MODES: [&str; 3] = ["Never", "Always", "CrossSubnet"];
/// Allowed uses of a pool.
pub const IPPOOL_ALLOWED_USES: [&str; 3] = ["Workload", "Tunnel", "LoadBalancer"];
/// Assignment modes of a pool.
pub const IPPOOL_ASSIGNMENT_MODES: [&str; 2] = ["Automatic", "Manual"];

/// Spec of an IPPool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IPPoolSpec {
    /// The pool's CIDR, strictly masked (no host bits).
    #[serde(rename = "cidr", default)]
    pub cidr: String,
    /// VXLAN encapsulation: `Never`, `Always` or `CrossSubnet`.
    #[serde(
        rename = "vxlanMode",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub vxlan_mode: String,
    /// IP-in-IP encapsulation: `Never`, `Always` or `CrossSubnet`.
    #[serde(rename = "ipipMode", default, skip_serializing_if = "String::is_empty")]
    pub ipip_mode: String,
    /// Masquerade traffic leaving the pool.
    #[serde(rename = "natOutgoing", default, skip_serializing_if = "ser::is_false")]
    pub nat_outgoing: bool,
    /// Stop allocating from the pool.
    #[serde(rename = "disabled", default, skip_serializing_if = "ser::is_false")]
    pub disabled: bool,
    /// Do not export the pool's routes over BGP.
    #[serde(
        rename = "disableBGPExport",
        default,
        skip_serializing_if = "ser::is_false"
    )]
    pub disable_bgp_export: bool,
    /// Prefix length of the blocks handed to nodes (v4 20-32, v6 116-128).
    #[serde(
        rename = "blockSize",
        default,
        skip_serializing_if = "ser::is_zero_i64"
    )]
    pub block_size: i64,
    /// Nodes that may allocate from the pool.
    #[serde(
        rename = "nodeSelector",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub node_selector: String,
    /// Namespaces whose workloads may allocate from the pool.
    #[serde(
        rename = "namespaceSelector",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace_selector: String,
    /// Deprecated v1-style IP-in-IP settings; superseded by `ipipMode`.
    #[serde(rename = "ipip", default, skip_serializing_if = "Option::is_none")]
    pub ipip: Option<IPIPConfiguration>,
    /// Deprecated v1-style NAT flag; superseded by `natOutgoing`.
    #[serde(
        rename = "nat-outgoing",
        default,
        skip_serializing_if = "ser::is_false"
    )]
    pub nat_outgoing_v1: bool,
    /// What addresses from the pool may be used for.
    #[serde(rename = "allowedUses", default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<String>,
    /// `Automatic` or `Manual` allocation.
    #[serde(
        rename = "assignmentMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub assignment_mode: Option<String>,
}

/// Deprecated IP-in-IP settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IPIPConfiguration {
    /// Whether IP-in-IP is on.
    #[serde(rename = "enabled", default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `always` or `cross-subnet`.
    #[serde(rename = "mode", default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

/// Spec of an IPReservation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IPReservationSpec {
    /// IPs and CIDRs IPAM must not hand out.
    #[serde(
        rename = "reservedCIDRs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub reserved_cidrs: Vec<String>,
}

super::resource!(
    /// An address pool.
    IPPool,
    IPPoolSpec
);

super::resource!(
    /// Addresses IPAM must never hand out.
    IPReservation,
    IPReservationSpec
);
