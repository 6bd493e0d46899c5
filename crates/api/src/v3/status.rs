//! CalicoNodeStatus (a request for a node's status, answered in its `status`) and
//! IPAMConfiguration (cluster-wide IPAM settings).

use serde::{Deserialize, Serialize};

/// Spec of CalicoNodeStatus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalicoNodeStatusSpec {
    /// The node whose status is wanted.
    #[serde(rename = "node", default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// What to report: `Agent`, `BGP`, `Routes`.
    #[serde(rename = "classes", default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// How often the status is refreshed, in seconds (0: never).
    #[serde(
        rename = "updatePeriodSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub update_period_seconds: Option<u32>,
}

/// A request for a node's status; the node writes the answer in `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalicoNodeStatus {
    /// Always `projectcalico.org/v3`.
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    /// The kind's name.
    #[serde(rename = "kind", default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(rename = "metadata", default)]
    pub metadata: super::ObjectMeta,
    /// What is asked for.
    #[serde(rename = "spec", default)]
    pub spec: CalicoNodeStatusSpec,
    /// The node's answer (`lastUpdated`, `agent`, `bgp`, `routes`), written by the node.
    #[serde(rename = "status", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// Spec of IPAMConfiguration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IPAMConfigurationSpec {
    /// Never borrow addresses from other nodes' blocks.
    #[serde(rename = "strictAffinity", default)]
    pub strict_affinity: bool,
    /// Most blocks a node may be affine to (per family); 0 means no limit.
    #[serde(rename = "maxBlocksPerHost", default)]
    pub max_blocks_per_host: i64,
    /// Claim new blocks when the affine ones are full.
    #[serde(rename = "autoAllocateBlocks", default = "yes")]
    pub auto_allocate_blocks: bool,
}

fn yes() -> bool {
    true
}

impl Default for IPAMConfigurationSpec {
    fn default() -> Self {
        Self {
            strict_affinity: false,
            max_blocks_per_host: 0,
            auto_allocate_blocks: true,
        }
    }
}

super::resource!(
    /// Cluster-wide IPAM settings (a singleton named `default`).
    IPAMConfiguration,
    IPAMConfigurationSpec
);

/// Spec of a BlockAffinity as the v3 API carries it (a node's claim on an IPAM block).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockAffinitySpec {
    /// `pending`, `confirmed` or `pendingDeletion`.
    #[serde(rename = "state", default)]
    pub state: String,
    /// The node.
    #[serde(rename = "node", default)]
    pub node: String,
    /// `host`.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub affinity_type: String,
    /// The block's CIDR.
    #[serde(rename = "cidr", default)]
    pub cidr: String,
    /// Set only by the datastore while deleting; never by a client.
    #[serde(rename = "deleted", default)]
    pub deleted: bool,
}
