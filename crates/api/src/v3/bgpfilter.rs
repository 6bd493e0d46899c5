//! BGP filters: rules that accept, reject or modify routes exchanged with BGP peers.

use serde::{Deserialize, Serialize};

use crate::numorstring::ASNumber;

/// Match operators of a filter rule's `cidr`.
pub const BGP_FILTER_MATCH_OPERATORS: [&str; 4] = ["Equal", "NotEqual", "In", "NotIn"];
/// Actions of a filter rule.
pub const BGP_FILTER_ACTIONS: [&str; 2] = ["Accept", "Reject"];
/// Route sources a filter rule can match.
pub const BGP_FILTER_SOURCES: [&str; 1] = ["RemotePeers"];
/// Peer types a filter rule can match.
pub const BGP_FILTER_PEER_TYPES: [&str; 2] = ["eBGP", "iBGP"];

/// Prefix-length bounds of a rule's routes (IPv4: 0-32, IPv6: 0-128).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BGPFilterPrefixLength {
    /// Shortest prefix length matched.
    #[serde(rename = "min", default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    /// Longest prefix length matched.
    #[serde(rename = "max", default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
}

/// Routes carrying a community.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BGPFilterCommunityMatch {
    /// The community (`aa:nn` or `aa:nn:mm`); exactly one.
    #[serde(rename = "values", default)]
    pub values: Vec<String>,
}

/// A community to add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BGPFilterAddCommunity {
    /// The community (`aa:nn` or `aa:nn:mm`).
    #[serde(rename = "value", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// AS numbers to prepend to the AS path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BGPFilterPrependASPath {
    /// The AS numbers, in the order the path will start with (1 to 10).
    #[serde(rename = "prefix", default)]
    pub prefix: Vec<ASNumber>,
}

/// A priority to set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BGPFilterSetPriority {
    /// The priority (1 to 2147483646), in FelixConfiguration's route-priority units.
    #[serde(rename = "value", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
}

/// One route modification: exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BGPFilterOperation {
    /// Add a community.
    #[serde(
        rename = "addCommunity",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub add_community: Option<BGPFilterAddCommunity>,
    /// Prepend AS numbers to the AS path.
    #[serde(
        rename = "prependASPath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prepend_as_path: Option<BGPFilterPrependASPath>,
    /// Set the route's priority.
    #[serde(
        rename = "setPriority",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub set_priority: Option<BGPFilterSetPriority>,
}

/// One filter rule (the IPv4 and IPv6 lists share the shape; the family of `cidr` and the
/// prefix-length bounds differ).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BGPFilterRule {
    /// Routes compared with this CIDR (with `matchOperator`).
    #[serde(rename = "cidr", default, skip_serializing_if = "String::is_empty")]
    pub cidr: String,
    /// Prefix-length bounds of the routes (needs `cidr`).
    #[serde(
        rename = "prefixLength",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prefix_length: Option<BGPFilterPrefixLength>,
    /// `RemotePeers`: only routes learned from BGP peers.
    #[serde(rename = "source", default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Routes through interfaces matching this name (`*` wildcards allowed).
    #[serde(
        rename = "interface",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub interface: String,
    /// How routes are compared with `cidr`: Equal, NotEqual, In or NotIn.
    #[serde(
        rename = "matchOperator",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub match_operator: String,
    /// Only routes to or from peers of this type: eBGP or iBGP.
    #[serde(rename = "peerType", default, skip_serializing_if = "String::is_empty")]
    pub peer_type: String,
    /// Only routes carrying this community.
    #[serde(
        rename = "communities",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub communities: Option<BGPFilterCommunityMatch>,
    /// Only routes whose AS path starts with these AS numbers.
    #[serde(
        rename = "asPathPrefix",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub as_path_prefix: Vec<ASNumber>,
    /// Only routes of this priority (1 to 2147483646).
    #[serde(rename = "priority", default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Accept or Reject.
    #[serde(rename = "action", default)]
    pub action: String,
    /// Modifications applied to accepted routes, in order (1 to 10; Accept only).
    #[serde(rename = "operations", default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<BGPFilterOperation>,
}

/// Spec of a BGPFilter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BGPFilterSpec {
    /// Rules for IPv4 routes exported to peers.
    #[serde(rename = "exportV4", default, skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BGPFilterRule>,
    /// Rules for IPv4 routes imported from peers.
    #[serde(rename = "importV4", default, skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BGPFilterRule>,
    /// Rules for IPv6 routes exported to peers.
    #[serde(rename = "exportV6", default, skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BGPFilterRule>,
    /// Rules for IPv6 routes imported from peers.
    #[serde(rename = "importV6", default, skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BGPFilterRule>,
}

super::resource!(
    /// Rules for the routes exchanged with the BGP peers that name it.
    BGPFilter,
    BGPFilterSpec
);
