//! BGPFilter rules, as upstream checks them (its validator tags and its CRD's CEL rules).

use std::sync::LazyLock;

use regex::Regex;

use super::{Check, fail, fail_bare, index, join, one_of};
use crate::v3::{
    BGP_FILTER_ACTIONS, BGP_FILTER_MATCH_OPERATORS, BGP_FILTER_PEER_TYPES, BGP_FILTER_SOURCES,
    BGPFilterOperation, BGPFilterRule, BGPFilterSpec,
};

/// An interface name with `*` wildcards, or `*`.
static FILTER_INTERFACE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_.*-]{1,15}$").expect("valid regex"));

/// Highest priority a rule may match or set.
const MAX_PRIORITY: i64 = 2_147_483_646;

/// Checks a BGPFilter spec.
pub(crate) fn bgp_filter_spec(field: &str, spec: &BGPFilterSpec) -> Check {
    for (list, rules, v6) in [
        ("exportV4", &spec.export_v4, false),
        ("importV4", &spec.import_v4, false),
        ("exportV6", &spec.export_v6, true),
        ("importV6", &spec.import_v6, true),
    ] {
        let f = join(field, list);
        for (i, rule) in rules.iter().enumerate() {
            bgp_filter_rule(&index(&f, i), rule, v6)?;
        }
    }
    Ok(())
}

/// A community value: `aa:nn` with 16-bit parts, or `aa:nn:mm` with 32-bit parts.
fn community(field: &str, value: &str) -> Check {
    let parts: Vec<&str> = value.split(':').collect();
    let fits = |p: &str, bits: u32| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" || !p.starts_with('0'))
            && p.parse::<u64>().is_ok_and(|n| n < (1u64 << bits))
    };
    let ok = value.len() <= 32
        && match parts.len() {
            2 => parts.iter().all(|p| fits(p, 16)),
            3 => parts.iter().all(|p| fits(p, 32)),
            _ => false,
        };
    if ok {
        Ok(())
    } else {
        Err(fail(
            field,
            &value,
            "invalid community: aa:nn with 16-bit parts, or aa:nn:mm with 32-bit parts",
        ))
    }
}

fn priority(field: &str, value: i64) -> Check {
    if (1..=MAX_PRIORITY).contains(&value) {
        Ok(())
    } else {
        Err(fail(
            field,
            &value,
            format!("must be between 1 and {MAX_PRIORITY}"),
        ))
    }
}

/// Checks one rule of the IPv4 (`v6` false) or IPv6 lists.
pub(crate) fn bgp_filter_rule(field: &str, rule: &BGPFilterRule, v6: bool) -> Check {
    if !rule.cidr.is_empty() {
        let f = join(field, "cidr");
        let family = match rule.cidr.parse::<ipnet::IpNet>() {
            Ok(ipnet::IpNet::V4(_)) => Some(false),
            Ok(ipnet::IpNet::V6(_)) => Some(true),
            Err(_) => None,
        };
        if family != Some(v6) {
            return Err(fail(
                &f,
                &rule.cidr,
                if v6 {
                    "must be an IPv6 CIDR"
                } else {
                    "must be an IPv4 CIDR"
                },
            ));
        }
        super::strict_cidr(&f, &rule.cidr)?;
    }
    if let Some(pl) = &rule.prefix_length {
        let top = if v6 { 128 } else { 32 };
        for (name, v) in [("min", pl.min), ("max", pl.max)] {
            if let Some(v) = v
                && !(0..=top).contains(&v)
            {
                return Err(fail(
                    &join(&join(field, "prefixLength"), name),
                    &v,
                    format!("must be between 0 and {top}"),
                ));
            }
        }
    }
    if !rule.source.is_empty() {
        one_of(&join(field, "source"), &rule.source, &BGP_FILTER_SOURCES)?;
    }
    if !rule.interface.is_empty()
        && rule.interface != "*"
        && !FILTER_INTERFACE.is_match(&rule.interface)
    {
        return Err(fail(
            &join(field, "interface"),
            &rule.interface,
            "invalid interface name (letters, digits, _ . - and * wildcards, at most 15)",
        ));
    }
    if !rule.match_operator.is_empty() {
        one_of(
            &join(field, "matchOperator"),
            &rule.match_operator,
            &BGP_FILTER_MATCH_OPERATORS,
        )?;
    }
    if !rule.peer_type.is_empty() {
        one_of(
            &join(field, "peerType"),
            &rule.peer_type,
            &BGP_FILTER_PEER_TYPES,
        )?;
    }
    if let Some(c) = &rule.communities {
        let f = join(&join(field, "communities"), "values");
        if c.values.len() != 1 {
            return Err(fail_bare(&f, "exactly one community value must be given"));
        }
        community(&index(&f, 0), &c.values[0])?;
    }
    if let Some(p) = rule.priority {
        priority(&join(field, "priority"), p)?;
    }
    if rule.action.is_empty() {
        return Err(fail_bare(&join(field, "action"), "action is required"));
    }
    one_of(&join(field, "action"), &rule.action, &BGP_FILTER_ACTIONS)?;
    if rule.operations.len() > 10 {
        return Err(fail_bare(
            &join(field, "operations"),
            "must have at most 10 items",
        ));
    }
    for (i, op) in rule.operations.iter().enumerate() {
        bgp_filter_operation(&index(&join(field, "operations"), i), op)?;
    }
    // The CRD's cross-field rules.
    if rule.cidr.is_empty() != rule.match_operator.is_empty() {
        return Err(fail_bare(
            field,
            "cidr and matchOperator must both be set or both be empty",
        ));
    }
    if rule.prefix_length.is_some() && rule.cidr.is_empty() {
        return Err(fail_bare(
            field,
            "cidr is required when prefixLength is set",
        ));
    }
    if !rule.operations.is_empty() && rule.action != "Accept" {
        return Err(fail_bare(
            &join(field, "operations"),
            "operations may only be used with action Accept",
        ));
    }
    Ok(())
}

/// Checks one route modification: exactly one of its fields.
pub(crate) fn bgp_filter_operation(field: &str, op: &BGPFilterOperation) -> Check {
    let set = usize::from(op.add_community.is_some())
        + usize::from(op.prepend_as_path.is_some())
        + usize::from(op.set_priority.is_some());
    match set {
        0 => return Err(fail_bare(field, "should have at least 1 properties")),
        1 => {}
        _ => {
            return Err(fail_bare(
                field,
                "must have at most 1 item: exactly one of addCommunity, prependASPath, setPriority",
            ));
        }
    }
    if let Some(a) = &op.add_community {
        let f = join(&join(field, "addCommunity"), "value");
        match &a.value {
            Some(v) => community(&f, v)?,
            None => return Err(fail_bare(&f, "value is required")),
        }
    }
    if let Some(p) = &op.prepend_as_path {
        let f = join(&join(field, "prependASPath"), "prefix");
        if p.prefix.is_empty() || p.prefix.len() > 10 {
            return Err(fail_bare(&f, "between 1 and 10 AS numbers are required"));
        }
    }
    if let Some(s) = &op.set_priority {
        let f = join(&join(field, "setPriority"), "value");
        match s.value {
            Some(v) => priority(&f, v)?,
            None => return Err(fail_bare(&f, "value is required")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn communities_are_16_or_32_bit_parts() {
        for ok in ["65000:100", "0:0", "65535:65535", "4294967295:1:2"] {
            assert!(community("c", ok).is_ok(), "{ok}");
        }
        for bad in [
            "65536:1",
            "1",
            "1:2:3:4",
            "a:b",
            "01:2",
            "4294967296:1:1",
            "",
        ] {
            assert!(community("c", bad).is_err(), "{bad}");
        }
    }
}
