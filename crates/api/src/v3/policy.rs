//! Policy resources and the rule types shared with profiles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ser;
use crate::numorstring::{Port, Protocol};

/// Rule actions.
pub const ACTIONS: [&str; 4] = ["Allow", "Deny", "Log", "Pass"];
/// Policy types.
pub const POLICY_TYPES: [&str; 2] = ["Ingress", "Egress"];
/// Performance hints a policy may carry.
pub const PERFORMANCE_HINTS: [&str; 1] = ["AssumeNeededOnEveryNode"];
/// The tier a policy belongs to when it names none.
pub const DEFAULT_TIER: &str = "default";

/// A policy rule: an action plus match criteria.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `Allow`, `Deny`, `Log` or `Pass`.
    #[serde(rename = "action", default)]
    pub action: String,
    /// Restrict the rule to IPv4 (4) or IPv6 (6).
    #[serde(rename = "ipVersion", default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<i64>,
    /// Match this IP protocol.
    #[serde(rename = "protocol", default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Match these ICMP type/code values.
    #[serde(rename = "icmp", default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<ICMPFields>,
    /// Match any protocol but this one.
    #[serde(
        rename = "notProtocol",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_protocol: Option<Protocol>,
    /// Match any ICMP type/code but these.
    #[serde(rename = "notICMP", default, skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<ICMPFields>,
    /// Source match criteria; always printed, as Go prints non-pointer structs.
    #[serde(rename = "source", default)]
    pub source: EntityRule,
    /// Destination match criteria; always printed, as Go prints non-pointer structs.
    #[serde(rename = "destination", default)]
    pub destination: EntityRule,
    /// Application-layer HTTP match criteria.
    #[serde(rename = "http", default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HTTPMatch>,
    /// Free-form rule metadata.
    #[serde(rename = "metadata", default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

/// Per-rule metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMetadata {
    /// Annotations attached to the rule.
    #[serde(
        rename = "annotations",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// ICMP type and code to match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ICMPFields {
    /// ICMP type (0-254).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<i64>,
    /// ICMP code (0-255); requires a type.
    #[serde(rename = "code", default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

/// One side (source or destination) of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityRule {
    /// Match addresses in any of these CIDRs.
    #[serde(rename = "nets", default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    /// Match endpoints matching this selector.
    #[serde(rename = "selector", default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Match endpoints in namespaces matching this selector.
    #[serde(
        rename = "namespaceSelector",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace_selector: String,
    /// Match the endpoints of a Kubernetes Service.
    #[serde(rename = "services", default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceMatch>,
    /// Match these ports.
    #[serde(rename = "ports", default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Match addresses outside all of these CIDRs.
    #[serde(rename = "notNets", default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    /// Match endpoints not matching this selector.
    #[serde(
        rename = "notSelector",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub not_selector: String,
    /// Match any port but these.
    #[serde(rename = "notPorts", default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
    /// Match endpoints running as these service accounts.
    #[serde(
        rename = "serviceAccounts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub service_accounts: Option<ServiceAccountMatch>,
}

/// Service-account match criteria.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountMatch {
    /// Match any of these service-account names.
    #[serde(rename = "names", default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Match service accounts whose labels match this selector.
    #[serde(rename = "selector", default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
}

/// A Kubernetes Service to match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceMatch {
    /// The Service's name.
    #[serde(rename = "name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The Service's namespace.
    #[serde(
        rename = "namespace",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
}

/// HTTP request match criteria.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HTTPMatch {
    /// Match any of these methods.
    #[serde(rename = "methods", default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Match any of these paths.
    #[serde(rename = "paths", default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<HTTPPath>,
}

/// An HTTP path match; exactly one of `exact` and `prefix`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HTTPPath {
    /// Match this path exactly.
    #[serde(rename = "exact", default, skip_serializing_if = "String::is_empty")]
    pub exact: String,
    /// Match paths starting with this.
    #[serde(rename = "prefix", default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// Spec of a namespaced NetworkPolicy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicySpec {
    /// The tier; defaults to `default`.
    #[serde(rename = "tier", default, skip_serializing_if = "String::is_empty")]
    pub tier: String,
    /// Order within the tier (lower first); unset orders last.
    #[serde(
        rename = "order",
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser::opt_f64"
    )]
    pub order: Option<f64>,
    /// Ingress rules.
    #[serde(rename = "ingress", default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules.
    #[serde(rename = "egress", default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Endpoints the policy applies to.
    #[serde(rename = "selector", default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Directions the policy applies to; inferred from the rules when empty.
    #[serde(rename = "types", default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Restrict to endpoints whose service account matches this selector.
    #[serde(
        rename = "serviceAccountSelector",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub service_account_selector: String,
    /// Hints for the dataplane.
    #[serde(
        rename = "performanceHints",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub performance_hints: Vec<String>,
}

/// Spec of a cluster-scoped GlobalNetworkPolicy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalNetworkPolicySpec {
    /// The tier; defaults to `default`.
    #[serde(rename = "tier", default, skip_serializing_if = "String::is_empty")]
    pub tier: String,
    /// Order within the tier (lower first); unset orders last.
    #[serde(
        rename = "order",
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser::opt_f64"
    )]
    pub order: Option<f64>,
    /// Ingress rules.
    #[serde(rename = "ingress", default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules.
    #[serde(rename = "egress", default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Endpoints the policy applies to.
    #[serde(rename = "selector", default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Directions the policy applies to; inferred from the rules when empty.
    #[serde(rename = "types", default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Apply before connection tracking (untracked policy).
    #[serde(rename = "doNotTrack", default, skip_serializing_if = "ser::is_false")]
    pub do_not_track: bool,
    /// Apply before DNAT.
    #[serde(rename = "preDNAT", default, skip_serializing_if = "ser::is_false")]
    pub pre_dnat: bool,
    /// Also apply to forwarded traffic.
    #[serde(
        rename = "applyOnForward",
        default,
        skip_serializing_if = "ser::is_false"
    )]
    pub apply_on_forward: bool,
    /// Restrict to endpoints whose service account matches this selector.
    #[serde(
        rename = "serviceAccountSelector",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub service_account_selector: String,
    /// Restrict to endpoints in namespaces matching this selector.
    #[serde(
        rename = "namespaceSelector",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace_selector: String,
    /// Hints for the dataplane.
    #[serde(
        rename = "performanceHints",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub performance_hints: Vec<String>,
}

super::resource!(
    /// A namespaced network policy.
    NetworkPolicy,
    NetworkPolicySpec
);

super::resource!(
    /// A cluster-scoped network policy.
    GlobalNetworkPolicy,
    GlobalNetworkPolicySpec
);
