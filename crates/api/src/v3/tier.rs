//! Tiers: ordered groups of policies.

use serde::{Deserialize, Serialize};

use super::ser;

/// Name of the tier policies land in by default.
pub const DEFAULT_TIER_NAME: &str = "default";
/// Name of the tier for Kubernetes AdminNetworkPolicy.
pub const KUBE_ADMIN_TIER_NAME: &str = "kube-admin";
/// Name of the tier for Kubernetes BaselineAdminNetworkPolicy.
pub const KUBE_BASELINE_TIER_NAME: &str = "kube-baseline";
/// The default tier's fixed order.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// The kube-admin tier's fixed order.
pub const KUBE_ADMIN_TIER_ORDER: f64 = 1_000.0;
/// The kube-baseline tier's fixed order.
pub const KUBE_BASELINE_TIER_ORDER: f64 = 10_000_000.0;
/// Actions a tier may apply to traffic no policy in it decided on.
pub const TIER_DEFAULT_ACTIONS: [&str; 2] = ["Deny", "Pass"];

/// Spec of a Tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    /// Order among tiers (lower first); defaults to 1000000, the default tier's, then by name.
    #[serde(
        rename = "order",
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser::opt_f64"
    )]
    pub order: Option<f64>,
    /// `Deny` or `Pass`: what happens to traffic no policy in the tier decided on.
    #[serde(
        rename = "defaultAction",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub default_action: Option<String>,
}

super::resource!(
    /// An ordered group of policies.
    Tier,
    TierSpec
);
