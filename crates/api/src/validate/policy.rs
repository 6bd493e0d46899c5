//! Rules, policies, profiles and tiers.

use ipnet::IpNet;

use super::{
    Check, SelectorUse, annotations, fail, fail_bare, index, is_dns1123_label, join, labels,
    one_of, selector, unique,
};
use crate::numorstring::{Port, Protocol};
use crate::v3::{
    ACTIONS, DEFAULT_TIER_NAME, DEFAULT_TIER_ORDER, EntityRule, GlobalNetworkPolicySpec, HTTPMatch,
    ICMPFields, KUBE_ADMIN_TIER_NAME, KUBE_ADMIN_TIER_ORDER, KUBE_BASELINE_TIER_NAME,
    KUBE_BASELINE_TIER_ORDER, NetworkPolicySpec, PERFORMANCE_HINTS, POLICY_TYPES, ProfileSpec,
    Rule, TIER_DEFAULT_ACTIONS, TierSpec,
};

/// The direction a rule is evaluated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// An ingress rule.
    Ingress,
    /// An egress rule.
    Egress,
}

/// HTTP methods are plain tokens; paths must be absolute and free of query/fragment/spaces.
fn valid_http_path(p: &str) -> bool {
    p.starts_with('/') && !p.chars().any(|c| c == '?' || c == '#' || c.is_whitespace())
}

/// Checks an HTTP match clause.
pub(crate) fn http_match(field: &str, http: &HTTPMatch) -> Check {
    unique(&join(field, "methods"), &http.methods)?;
    for (name, len) in [("methods", http.methods.len()), ("paths", http.paths.len())] {
        if len > 20 {
            return Err(fail(&join(field, name), &len, "at most 20 entries"));
        }
    }
    for (i, path) in http.paths.iter().enumerate() {
        let f = index(&join(field, "paths"), i);
        match (path.exact.is_empty(), path.prefix.is_empty()) {
            (false, false) => {
                return Err(fail(&f, path, "only one of exact and prefix may be set"));
            }
            (true, true) => return Err(fail(&f, path, "one of exact or prefix must be set")),
            _ => {}
        }
        let p = if path.exact.is_empty() {
            &path.prefix
        } else {
            &path.exact
        };
        if p.len() > 1024 {
            return Err(fail(&f, p, "an HTTP path is at most 1024 characters"));
        }
        if !valid_http_path(p) {
            return Err(fail(&f, p, "invalid HTTP path"));
        }
    }
    Ok(())
}

/// Checks ICMP type/code ranges.
pub(crate) fn icmp_fields(field: &str, icmp: &ICMPFields) -> Check {
    if let Some(t) = icmp.r#type
        && !(0..=254).contains(&t)
    {
        return Err(fail(
            &join(field, "type"),
            &t,
            "ICMP type must be between 0 and 254",
        ));
    }
    if let Some(c) = icmp.code {
        if icmp.r#type.is_none() {
            return Err(fail(
                &join(field, "code"),
                &c,
                "ICMP code specified without an ICMP type",
            ));
        }
        if !(0..=255).contains(&c) {
            return Err(fail(
                &join(field, "code"),
                &c,
                "ICMP code must be between 0 and 255",
            ));
        }
    }
    Ok(())
}

/// Checks one side of a rule, on its own.
pub(crate) fn entity_rule(field: &str, er: &EntityRule) -> Check {
    // The CRD's list limits.
    for (name, len, max) in [
        ("nets", er.nets.len(), 256),
        ("notNets", er.not_nets.len(), 256),
        ("ports", er.ports.len(), 50),
        ("notPorts", er.not_ports.len(), 50),
    ] {
        if len > max {
            return Err(fail(
                &join(field, name),
                &len,
                format!("at most {max} entries"),
            ));
        }
    }
    for (name, nets) in [("nets", &er.nets), ("notNets", &er.not_nets)] {
        for (i, n) in nets.iter().enumerate() {
            let f = index(&join(field, name), i);
            // Upstream parses each as a CIDR and refuses host bits: `10.0.0.1/8` would
            // otherwise match the whole /8.
            let net = super::strict_cidr(&f, n)?;
            if name == "notNets" && net.prefix_len() == 0 {
                return Err(fail(
                    &f,
                    n,
                    "a catch-all CIDR in notNets matches nothing; remove the rule instead",
                ));
            }
        }
    }
    selector(&join(field, "selector"), &er.selector, SelectorUse::Plain)?;
    selector(
        &join(field, "notSelector"),
        &er.not_selector,
        SelectorUse::Plain,
    )?;
    selector(
        &join(field, "namespaceSelector"),
        &er.namespace_selector,
        SelectorUse::EntityNamespace,
    )?;
    if let Some(sa) = &er.service_accounts {
        selector(
            &join(field, "serviceAccounts.selector"),
            &sa.selector,
            SelectorUse::Plain,
        )?;
    }
    for (name, ports) in [("ports", &er.ports), ("notPorts", &er.not_ports)] {
        for (i, p) in ports.iter().enumerate() {
            if !p.is_named() && p.min_port == 0 {
                return Err(fail(
                    &index(&join(field, name), i),
                    p,
                    "port range invalid, port number must be between 1 and 65535",
                ));
            }
        }
    }
    if let Some(services) = &er.services {
        let f = join(field, "services");
        if services.name.is_empty() {
            return Err(fail_bare(
                &join(&f, "name"),
                "services must specify a service name",
            ));
        }
        for (sub, v) in [("name", &services.name), ("namespace", &services.namespace)] {
            if !v.is_empty() && !super::is_dns1123_subdomain(v) {
                return Err(fail(
                    &join(&f, sub),
                    v,
                    "must be a lower-case DNS-1123 subdomain",
                ));
            }
        }
        let conflicts = [
            (er.service_accounts.is_some(), "ServiceAccounts"),
            (!er.namespace_selector.is_empty(), "NamespaceSelector"),
            (
                !er.nets.is_empty() || !er.not_nets.is_empty(),
                "Nets/NotNets",
            ),
            (!er.selector.is_empty(), "Selector"),
            (!er.not_selector.is_empty(), "NotSelector"),
        ];
        if let Some((_, what)) = conflicts.iter().find(|(set, _)| *set) {
            return Err(fail_bare(
                &f,
                format!("cannot specify {what} and Services on the same rule"),
            ));
        }
    }
    Ok(())
}

fn is_icmp(p: &Protocol) -> Option<u8> {
    match p.number() {
        Some(1) => Some(4),
        Some(58) => Some(6),
        _ => None,
    }
}

/// Checks a rule; `direction` decides what is allowed where (HTTP only on ingress).
pub(crate) fn rule(field: &str, r: &Rule, direction: Direction) -> Check {
    one_of(&join(field, "action"), &r.action, &ACTIONS)?;
    if let Some(v) = r.ip_version
        && v != 4
        && v != 6
    {
        return Err(fail(
            &join(field, "ipVersion"),
            &v,
            "ipVersion must be 4 or 6",
        ));
    }
    for (name, proto) in [("protocol", &r.protocol), ("notProtocol", &r.not_protocol)] {
        if let Some(p) = proto
            && !p.is_valid()
        {
            return Err(fail(
                &join(field, name),
                p,
                "protocol must be TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255",
            ));
        }
    }
    for (name, icmp) in [("icmp", &r.icmp), ("notICMP", &r.not_icmp)] {
        if let Some(icmp) = icmp {
            let f = join(field, name);
            icmp_fields(&f, icmp)?;
            if r.protocol.as_ref().and_then(is_icmp).is_none() {
                return Err(fail(
                    &f,
                    icmp,
                    "ICMP fields require protocol ICMP or ICMPv6",
                ));
            }
        }
    }
    for proto in [&r.protocol, &r.not_protocol] {
        if let (Some(p), Some(v)) = (proto, r.ip_version)
            && let Some(needed) = is_icmp(p)
            && i64::from(needed) != v
        {
            return Err(fail(
                &join(field, "ipVersion"),
                &v,
                format!("protocol {p} requires ipVersion {needed}"),
            ));
        }
    }
    if let Some(http) = &r.http {
        let f = join(field, "http");
        http_match(&f, http)?;
        if direction == Direction::Egress {
            return Err(fail_bare(&f, "HTTP match is only valid on ingress rules"));
        }
        if r.action != "Allow" {
            return Err(fail_bare(&f, "HTTP match is only valid on Allow rules"));
        }
        if r.protocol.as_ref().is_some_and(|p| p.number() != Some(6)) {
            return Err(fail_bare(
                &f,
                "rules with HTTP match must have protocol TCP or unset",
            ));
        }
    }
    if let Some(meta) = &r.metadata {
        annotations(&join(field, "metadata.annotations"), &meta.annotations)?;
    }
    for (name, er) in [("source", &r.source), ("destination", &r.destination)] {
        let f = join(field, name);
        entity_rule(&f, er)?;
        rule_ports(&f, r.protocol.as_ref(), "ports", &er.ports)?;
        rule_ports(&f, r.protocol.as_ref(), "notPorts", &er.not_ports)?;
    }
    if r.destination.services.is_some()
        && (!r.destination.ports.is_empty() || !r.destination.not_ports.is_empty())
    {
        return Err(fail_bare(
            &join(field, "destination.services"),
            "cannot specify Ports/NotPorts and Services on a rule destination",
        ));
    }
    rule_ip_versions(field, r)
}

/// Ports need a protocol that has ports; named ports need one that can resolve names.
fn rule_ports(field: &str, protocol: Option<&Protocol>, name: &str, ports: &[Port]) -> Check {
    for (i, p) in ports.iter().enumerate() {
        let f = index(&join(field, name), i);
        if p.is_named() && !super::is_iana_port_name(&p.port_name) {
            return Err(fail(
                &f,
                p,
                "a named port is at most 15 lower-case letters, digits and '-', with a letter, \
                 no '--' and no '-' at either end",
            ));
        }
        match protocol {
            None if !p.is_named() => {
                return Err(fail(
                    &f,
                    p,
                    "rules that specify ports must set protocol to TCP, UDP or SCTP",
                ));
            }
            None => {}
            Some(proto) if !proto.supports_ports() => {
                return Err(fail(
                    &f,
                    p,
                    format!("protocol {proto} does not support ports"),
                ));
            }
            Some(proto) if p.is_named() && !proto.supports_named_ports() => {
                return Err(fail(
                    &f,
                    p,
                    "named ports are only supported with protocol TCP, UDP or SCTP",
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// All nets of a rule must be of one IP version, matching `ipVersion` when set.
fn rule_ip_versions(field: &str, r: &Rule) -> Check {
    let mut seen: Option<u8> = r.ip_version.and_then(|v| u8::try_from(v).ok());
    let sides = [("source", &r.source), ("destination", &r.destination)];
    for (side, er) in sides {
        for (name, nets) in [("nets", &er.nets), ("notNets", &er.not_nets)] {
            for (i, n) in nets.iter().enumerate() {
                let Some(net) = super::parse_ip_or_cidr(n) else {
                    continue;
                };
                let v = if matches!(net, IpNet::V4(_)) { 4 } else { 6 };
                match seen {
                    Some(prev) if prev != v => {
                        return Err(fail(
                            &index(&join(&join(field, side), name), i),
                            n,
                            "rule contains an IPv4 and IPv6 mix of nets/ipVersion",
                        ));
                    }
                    _ => seen = Some(v),
                }
            }
        }
    }
    Ok(())
}

fn rules(field: &str, list: &[Rule], direction: Direction) -> Check {
    for (i, r) in list.iter().enumerate() {
        rule(&index(field, i), r, direction)?;
    }
    Ok(())
}

fn policy_common(
    tier_name: &str,
    selector_str: &str,
    sa_selector: &str,
    types: &[String],
    hints: &[String],
) -> Check {
    if !tier_name.is_empty() && !is_dns1123_label(tier_name) {
        return Err(fail("spec.tier", &tier_name, "invalid tier name"));
    }
    selector("spec.selector", selector_str, SelectorUse::Plain)?;
    selector(
        "spec.serviceAccountSelector",
        sa_selector,
        SelectorUse::Plain,
    )?;
    for (i, t) in types.iter().enumerate() {
        one_of(&index("spec.types", i), t, &POLICY_TYPES)?;
    }
    unique("spec.types", types)?;
    for (i, h) in hints.iter().enumerate() {
        one_of(&index("spec.performanceHints", i), h, &PERFORMANCE_HINTS)?;
    }
    unique("spec.performanceHints", hints)
}

/// Checks a NetworkPolicy spec.
pub(crate) fn network_policy_spec(spec: &NetworkPolicySpec) -> Check {
    policy_common(
        &spec.tier,
        &spec.selector,
        &spec.service_account_selector,
        &spec.types,
        &spec.performance_hints,
    )?;
    rules("spec.ingress", &spec.ingress, Direction::Ingress)?;
    rules("spec.egress", &spec.egress, Direction::Egress)?;
    service_directions(&spec.ingress, &spec.egress, false)
}

/// Services match where a Service's endpoints are the peer: an ingress rule's source or an
/// egress rule's destination. A GlobalNetworkPolicy must also name the namespace.
fn service_directions(ingress: &[Rule], egress: &[Rule], global: bool) -> Check {
    for (i, r) in ingress.iter().enumerate() {
        if r.destination.services.is_some() {
            return Err(fail_bare(
                &format!("spec.ingress[{i}].destination.services"),
                "not allowed in ingress rule destination",
            ));
        }
    }
    for (i, r) in egress.iter().enumerate() {
        if r.source.services.is_some() {
            return Err(fail_bare(
                &format!("spec.egress[{i}].source.services"),
                "not allowed in egress rule source",
            ));
        }
    }
    if global {
        let peers = ingress
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    format!("spec.ingress[{i}].source.services"),
                    &r.source.services,
                )
            })
            .chain(egress.iter().enumerate().map(|(i, r)| {
                (
                    format!("spec.egress[{i}].destination.services"),
                    &r.destination.services,
                )
            }));
        for (f, services) in peers {
            if services.as_ref().is_some_and(|s| s.namespace.is_empty()) {
                return Err(fail_bare(&f, "must specify a namespace"));
            }
        }
    }
    Ok(())
}

/// Checks a GlobalNetworkPolicy spec.
pub(crate) fn global_network_policy_spec(spec: &GlobalNetworkPolicySpec) -> Check {
    policy_common(
        &spec.tier,
        &spec.selector,
        &spec.service_account_selector,
        &spec.types,
        &spec.performance_hints,
    )?;
    selector(
        "spec.namespaceSelector",
        &spec.namespace_selector,
        SelectorUse::Plain,
    )?;
    rules("spec.ingress", &spec.ingress, Direction::Ingress)?;
    rules("spec.egress", &spec.egress, Direction::Egress)?;
    service_directions(&spec.ingress, &spec.egress, true)?;
    if spec.do_not_track && spec.pre_dnat {
        return Err(fail_bare(
            "spec.preDNAT",
            "PreDNAT and DoNotTrack cannot both be true",
        ));
    }
    if (spec.do_not_track || spec.pre_dnat) && !spec.apply_on_forward {
        return Err(fail_bare(
            "spec.applyOnForward",
            "ApplyOnForward must be true if either PreDNAT or DoNotTrack is true",
        ));
    }
    if spec.pre_dnat {
        if !spec.egress.is_empty() {
            return Err(fail_bare(
                "spec.egress",
                "PreDNAT policy cannot have any egress rules",
            ));
        }
        if spec.types.iter().any(|t| t == "Egress") {
            return Err(fail_bare(
                "spec.types",
                "PreDNAT policy cannot have 'Egress' type",
            ));
        }
    }
    Ok(())
}

/// Checks a Profile spec.
pub(crate) fn profile_spec(field: &str, spec: &ProfileSpec) -> Check {
    rules(&join(field, "ingress"), &spec.ingress, Direction::Ingress)?;
    rules(&join(field, "egress"), &spec.egress, Direction::Egress)?;
    labels(&join(field, "labelsToApply"), &spec.labels_to_apply)
}

/// Checks a Tier (the built-in tiers have fixed orders and default actions).
pub(crate) fn tier(name: &str, spec: &TierSpec) -> Check {
    if let Some(a) = &spec.default_action {
        one_of("spec.defaultAction", a, &TIER_DEFAULT_ACTIONS)?;
    }
    let fixed = match name {
        DEFAULT_TIER_NAME => Some((DEFAULT_TIER_ORDER, "Deny")),
        KUBE_ADMIN_TIER_NAME => Some((KUBE_ADMIN_TIER_ORDER, "Pass")),
        KUBE_BASELINE_TIER_NAME => Some((KUBE_BASELINE_TIER_ORDER, "Pass")),
        _ => None,
    };
    if let Some((order, action)) = fixed {
        if let Some(o) = spec.order
            && (o - order).abs() > f64::EPSILON
        {
            return Err(fail(
                "spec.order",
                &o,
                format!("{name} tier order must be {order}"),
            ));
        }
        if let Some(a) = &spec.default_action
            && a != action
        {
            return Err(fail(
                "spec.defaultAction",
                a,
                format!("{name} tier must have default action {action}"),
            ));
        }
    }
    Ok(())
}
