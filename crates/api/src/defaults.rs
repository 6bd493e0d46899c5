//! Defaults upstream's client fills in before storing a resource.

use ipnet::IpNet;

use crate::v3::{
    DEFAULT_TIER, DEFAULT_TIER_NAME, DEFAULT_TIER_ORDER, IPPoolSpec, KUBE_ADMIN_TIER_NAME,
    KUBE_ADMIN_TIER_ORDER, KUBE_BASELINE_TIER_NAME, KUBE_BASELINE_TIER_ORDER, TierSpec,
};

/// Default IPv4 block size.
pub const DEFAULT_BLOCK_SIZE_V4: i64 = 26;
/// Default IPv6 block size.
pub const DEFAULT_BLOCK_SIZE_V6: i64 = 122;

/// Policy defaults: the `default` tier, and `types` inferred from the rules (egress rules
/// add `Egress`; ingress rules, or no rules at all, give `Ingress`).
pub fn policy(tier: &mut String, types: &mut Vec<String>, has_ingress: bool, has_egress: bool) {
    if tier.is_empty() {
        DEFAULT_TIER.clone_into(tier);
    }
    if types.is_empty() {
        if has_ingress || !has_egress {
            types.push("Ingress".to_owned());
        }
        if has_egress {
            types.push("Egress".to_owned());
        }
    }
}

/// IPPool defaults: normalised CIDR, block size by family, encapsulation off, all nodes,
/// workload and tunnel use (workload only with a namespaceSelector), automatic assignment. An unparseable CIDR is left for the
/// validator to report.
pub fn ippool(spec: &mut IPPoolSpec) {
    if let Ok(net) = spec.cidr.parse::<IpNet>() {
        // Printed canonically (`fd00::0/64` is `fd00::/64`); host bits stay, for the
        // validator to refuse as upstream does.
        spec.cidr = net.to_string();
        if spec.block_size == 0 {
            spec.block_size = match net {
                IpNet::V4(_) => DEFAULT_BLOCK_SIZE_V4,
                IpNet::V6(_) => DEFAULT_BLOCK_SIZE_V6,
            };
        }
    }
    if spec.ipip_mode.is_empty() {
        "Never".clone_into(&mut spec.ipip_mode);
    }
    if spec.vxlan_mode.is_empty() {
        "Never".clone_into(&mut spec.vxlan_mode);
    }
    if spec.node_selector.is_empty() {
        "all()".clone_into(&mut spec.node_selector);
    }
    if spec.allowed_uses.is_empty() {
        // A pool restricted to some namespaces cannot also serve tunnel addresses (the
        // validator rejects that combination), so such a pool defaults to workloads only.
        spec.allowed_uses = if spec.namespace_selector.is_empty() {
            vec!["Workload".to_owned(), "Tunnel".to_owned()]
        } else {
            vec!["Workload".to_owned()]
        };
    }
    if spec.assignment_mode.is_none() {
        spec.assignment_mode = Some("Automatic".to_owned());
    }
}

/// Tier defaults: the built-in tiers get their fixed order; every tier gets a default action
/// (`Pass` for the Kubernetes admin tiers, `Deny` otherwise).
pub fn tier(name: &str, spec: &mut TierSpec) {
    let (order, action) = match name {
        DEFAULT_TIER_NAME => (Some(DEFAULT_TIER_ORDER), "Deny"),
        KUBE_ADMIN_TIER_NAME => (Some(KUBE_ADMIN_TIER_ORDER), "Pass"),
        KUBE_BASELINE_TIER_NAME => (Some(KUBE_BASELINE_TIER_ORDER), "Pass"),
        // As upstream's DefaultTierFields: a tier without an order sits with the default
        // tier, then by name.
        _ => (Some(DEFAULT_TIER_ORDER), "Deny"),
    };
    if spec.order.is_none() {
        spec.order = order;
    }
    if spec.default_action.is_none() {
        spec.default_action = Some(action.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_types_inferred() {
        let infer = |i, e| {
            let mut tier = String::new();
            let mut types = Vec::new();
            policy(&mut tier, &mut types, i, e);
            assert_eq!(tier, "default");
            types
        };
        assert_eq!(infer(true, false), ["Ingress"]);
        assert_eq!(infer(false, false), ["Ingress"]);
        assert_eq!(infer(false, true), ["Egress"]);
        assert_eq!(infer(true, true), ["Ingress", "Egress"]);
    }

    #[test]
    fn ippool_defaults_by_family() {
        let mut v4 = IPPoolSpec {
            cidr: "10.1.0.0/16".into(),
            ..Default::default()
        };
        ippool(&mut v4);
        assert_eq!(v4.cidr, "10.1.0.0/16");
        assert_eq!(v4.block_size, 26);
        assert_eq!(v4.ipip_mode, "Never");
        assert_eq!(v4.node_selector, "all()");
        let mut v6 = IPPoolSpec {
            cidr: "fd00::/48".into(),
            ..Default::default()
        };
        ippool(&mut v6);
        assert_eq!(v6.block_size, 122);
    }

    #[test]
    fn builtin_tier_orders() {
        let mut spec = TierSpec::default();
        tier("kube-admin", &mut spec);
        assert_eq!(spec.order, Some(1000.0));
        assert_eq!(spec.default_action.as_deref(), Some("Pass"));
        let mut spec = TierSpec::default();
        tier("mine", &mut spec);
        assert_eq!(
            spec.order,
            Some(1_000_000.0),
            "with the default tier, as upstream"
        );
        assert_eq!(spec.default_action.as_deref(), Some("Deny"));
    }
}
