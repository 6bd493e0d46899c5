//! Named sets of networks, for use in selectors.

use serde::{Deserialize, Serialize};

/// Spec of a NetworkSet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSetSpec {
    /// IPs and CIDRs in the set.
    #[serde(rename = "nets", default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
}

/// Spec of a GlobalNetworkSet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalNetworkSetSpec {
    /// IPs and CIDRs in the set.
    #[serde(rename = "nets", default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
}

super::resource!(
    /// A namespaced set of networks.
    NetworkSet,
    NetworkSetSpec
);

super::resource!(
    /// A cluster-scoped set of networks.
    GlobalNetworkSet,
    GlobalNetworkSetSpec
);
