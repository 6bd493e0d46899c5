//! Cluster-wide information written by calico-node.

use serde::{Deserialize, Serialize};

/// Spec of ClusterInformation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterInformationSpec {
    /// Unique id of the cluster.
    #[serde(
        rename = "clusterGUID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_guid: String,
    /// Comma-separated description of the deployment.
    #[serde(
        rename = "clusterType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_type: String,
    /// Calico version that last wrote the resource.
    #[serde(
        rename = "calicoVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub calico_version: String,
    /// Whether clients may use the datastore.
    #[serde(
        rename = "datastoreReady",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub datastore_ready: Option<bool>,
    /// Product variant (`Calico`).
    #[serde(rename = "variant", default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

super::resource!(
    /// Cluster information (a singleton named `default`).
    ClusterInformation,
    ClusterInformationSpec
);
