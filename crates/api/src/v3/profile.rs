//! Profiles: labels and default rules shared by endpoints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Rule;

/// Spec of a Profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// Ingress rules.
    #[serde(rename = "ingress", default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules.
    #[serde(rename = "egress", default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Labels applied to every endpoint using the profile.
    #[serde(
        rename = "labelsToApply",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels_to_apply: BTreeMap<String, String>,
}

super::resource!(
    /// Labels and rules shared by endpoints.
    Profile,
    ProfileSpec
);
