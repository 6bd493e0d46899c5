//! Upstream's validation rules (libcalico-go's v3 validator plus the CRD schema rules that
//! upstream enforces when no API server does it), applied to typed resources.
//!
//! Each check returns the first problem found as a [`ValidationError`] naming the JSON path
//! of the offending field.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::LazyLock;

use ipnet::IpNet;
use regex::Regex;
use serde::Serialize;

use crate::{Kind, ValidationError};

mod bgpfilter;
mod felix;
mod network;
mod policy;

pub(crate) use bgpfilter::{bgp_filter_operation, bgp_filter_rule, bgp_filter_spec};
pub(crate) use felix::{felix_configuration, felix_spec, proto_port};
pub(crate) use network::{
    bgp_configuration_spec, bgp_peer_spec, host_endpoint_spec, ip_nat, ip_reservation_spec,
    ippool_spec, net_list, node_spec, node_status, workload_endpoint_port, workload_endpoint_spec,
};
pub(crate) use policy::{
    Direction, entity_rule, global_network_policy_spec, http_match, icmp_fields,
    network_policy_spec, profile_spec, rule, tier,
};

/// Result of a check.
pub(crate) type Check = Result<(), ValidationError>;

/// An error about `field` holding `value` (printed as JSON).
pub(crate) fn fail(
    field: &str,
    value: &impl Serialize,
    reason: impl Into<String>,
) -> ValidationError {
    ValidationError::new(field, serde_json::to_string(value).ok(), reason)
}

/// An error about a missing or structurally wrong field (no value to show).
pub(crate) fn fail_bare(field: &str, reason: impl Into<String>) -> ValidationError {
    ValidationError::new(field, None, reason)
}

/// Joins a parent path and a child field name.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// `parent[i]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid regex")
}

static DNS1123_LABEL: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"));
static DNS1123_SUBDOMAIN: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"));
/// Policy names: a DNS label, optionally preceded by one `tier.` style prefix.
static POLICY_NAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"));
/// Profile names: dot-separated segments (`kns.default`, `ksa.ns.sa`), no empty segment.
static PROFILE_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)*$"));
static QUALIFIED_NAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"));
static LABEL_VALUE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"));
/// Linux interface names: at most 15 characters, no separators the kernel or iptables reject.
static INTERFACE_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-zA-Z0-9_.-]{1,15}$"));
static CONTAINER_ID: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"));
static DOTTED_MAC: LazyLock<Regex> = LazyLock::new(|| re(r"^([0-9a-fA-F]{4}\.){2}[0-9a-fA-F]{4}$"));
static MAC: LazyLock<Regex> = LazyLock::new(|| re(r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$"));

/// Maximum length of a DNS-1123 subdomain (most resource names).
pub(crate) const MAX_SUBDOMAIN: usize = 253;
/// Maximum length of a DNS-1123 label (tier names, label names).
pub(crate) const MAX_LABEL: usize = 63;
/// Maximum total size of a resource's annotations, as Kubernetes enforces.
pub(crate) const MAX_ANNOTATIONS_SIZE: usize = 256 * 1024;

/// Whether `s` is a DNS-1123 subdomain.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= MAX_SUBDOMAIN && DNS1123_SUBDOMAIN.is_match(s)
}

/// Whether `s` is a DNS-1123 label.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= MAX_LABEL && DNS1123_LABEL.is_match(s)
}

/// Whether `s` is a valid Linux interface name.
pub(crate) fn is_interface_name(s: &str) -> bool {
    INTERFACE_NAME.is_match(s)
}

/// Whether `s` is a valid container id.
pub(crate) fn is_container_id(s: &str) -> bool {
    CONTAINER_ID.is_match(s)
}

/// Whether `s` is a MAC address.
pub(crate) fn is_mac(s: &str) -> bool {
    // Go's net.ParseMAC also reads the dotted form `0000.5e00.5301`.
    MAC.is_match(s) || DOTTED_MAC.is_match(s)
}

/// Whether `s` is a valid profile name.
pub(crate) fn is_profile_name(s: &str) -> bool {
    s.len() <= MAX_SUBDOMAIN && PROFILE_NAME.is_match(s)
}

/// Checks a resource name against the rules of its kind.
pub(crate) fn resource_name(kind: Kind, name: &str) -> Check {
    let field = "metadata.name";
    if name.is_empty() {
        return Err(fail_bare(field, "name is required"));
    }
    let ok = match kind {
        Kind::Tier => is_dns1123_label(name),
        Kind::NetworkPolicy | Kind::GlobalNetworkPolicy => {
            name.len() <= MAX_SUBDOMAIN && POLICY_NAME.is_match(name)
        }
        Kind::Profile => is_profile_name(name),
        _ => is_dns1123_subdomain(name),
    };
    if ok {
        return Ok(());
    }
    let rule = match kind {
        Kind::Tier => "a lower-case DNS label of at most 63 characters (no dots)",
        Kind::NetworkPolicy | Kind::GlobalNetworkPolicy => {
            "at most 253 lower-case alphanumeric characters, '-' and at most one '.'"
        }
        Kind::Profile => "alphanumeric characters, '-', '_' and '.'-separated segments",
        _ => "a lower-case DNS-1123 subdomain of at most 253 characters",
    };
    Err(fail(field, &name, format!("invalid name: must be {rule}")))
}

/// Checks a label key (Kubernetes qualified name: optional DNS-subdomain prefix and `/`).
pub(crate) fn qualified_name(field: &str, key: &str) -> Check {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns1123_subdomain(prefix)
    {
        return Err(fail(
            field,
            &key,
            "prefix part must be a lower-case DNS-1123 subdomain",
        ));
    }
    if name.len() > MAX_LABEL || !QUALIFIED_NAME.is_match(name) {
        return Err(fail(
            field,
            &key,
            "name part must be at most 63 alphanumeric characters, '-', '_' or '.', \
             starting and ending with an alphanumeric character",
        ));
    }
    Ok(())
}

/// Checks a map of labels.
pub(crate) fn labels<'a>(
    field: &str,
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Check {
    for (k, v) in labels {
        let f = format!("{field}[{k}]");
        qualified_name(&f, k)?;
        if v.len() > MAX_LABEL || !LABEL_VALUE.is_match(v) {
            return Err(fail(
                &f,
                v,
                "label value must be at most 63 alphanumeric characters, '-', '_' or '.', \
                 starting and ending with an alphanumeric character",
            ));
        }
    }
    Ok(())
}

/// Checks a map of annotations (keys are compared case-insensitively, as Kubernetes does).
pub(crate) fn annotations<'a>(
    field: &str,
    annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Check {
    let mut total = 0usize;
    for (k, v) in annotations {
        qualified_name(&format!("{field}[{k}]"), &k.to_ascii_lowercase())?;
        total += k.len() + v.len();
    }
    if total > MAX_ANNOTATIONS_SIZE {
        return Err(fail_bare(
            field,
            format!("annotations may not exceed {MAX_ANNOTATIONS_SIZE} bytes in total"),
        ));
    }
    Ok(())
}

/// Parses an IP address.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    IpAddr::from_str(s).ok()
}

/// Parses a CIDR, or a bare IP as a full-length prefix.
pub(crate) fn parse_ip_or_cidr(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        IpNet::from_str(s).ok()
    } else {
        parse_ip(s).map(IpNet::from)
    }
}

/// Checks an IP address, optionally of one family (4 or 6).
pub(crate) fn ip(field: &str, s: &str, version: Option<u8>) -> Result<IpAddr, ValidationError> {
    let Some(addr) = parse_ip(s) else {
        return Err(fail(field, &s, "invalid IP address"));
    };
    match version {
        Some(4) if !addr.is_ipv4() => Err(fail(field, &s, "must be an IPv4 address")),
        Some(6) if !addr.is_ipv6() => Err(fail(field, &s, "must be an IPv6 address")),
        _ => Ok(addr),
    }
}

/// Checks an IP or CIDR, optionally of one family (4 or 6).
/// Parses a CIDR whose host bits are all zero (upstream's `net` tag and CIDR parse): a bare
/// address or `10.0.0.1/8` is refused.
pub(crate) fn strict_cidr(field: &str, s: &str) -> Result<IpNet, ValidationError> {
    let Ok(net) = s.parse::<IpNet>() else {
        return Err(fail(field, &s, "invalid CIDR"));
    };
    if net.trunc() != net {
        return Err(fail(
            field,
            &s,
            format!(
                "CIDR is not strictly masked: host bits are set (did you mean {}?)",
                net.trunc()
            ),
        ));
    }
    Ok(net)
}

/// An address, or a CIDR without host bits (upstream's `net` tag).
pub(crate) fn ip_or_strict_cidr(field: &str, s: &str) -> Check {
    if parse_ip(s).is_some() {
        return Ok(());
    }
    strict_cidr(field, s).map(drop)
}

/// Kubernetes' port name rule (IANA service names), upstream's `portName` tag: at most 15
/// characters of `a-z`, `0-9` and `-`, at least one letter, no `--`, no `-` at either end.
pub(crate) fn is_iana_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.contains("--")
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(crate) fn ip_or_cidr(
    field: &str,
    s: &str,
    version: Option<u8>,
) -> Result<IpNet, ValidationError> {
    let Some(net) = parse_ip_or_cidr(s) else {
        return Err(fail(field, &s, "invalid IP address or CIDR"));
    };
    match version {
        Some(4) if !matches!(net, IpNet::V4(_)) => Err(fail(field, &s, "must be an IPv4 CIDR")),
        Some(6) if !matches!(net, IpNet::V6(_)) => Err(fail(field, &s, "must be an IPv6 CIDR")),
        _ => Ok(net),
    }
}

/// Longest selector (the CRD's maxLength).
const MAX_SELECTOR: usize = 1024;

/// Where a selector appears, which decides whether `global()` is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SelectorUse {
    /// Any selector other than an entity rule's namespaceSelector.
    Plain,
    /// An entity rule's namespaceSelector, where `global()` alone means "non-namespaced".
    EntityNamespace,
}

/// Checks a selector's syntax (and `global()` placement).
pub(crate) fn selector(field: &str, s: &str, usage: SelectorUse) -> Check {
    if s.len() > MAX_SELECTOR {
        return Err(fail(
            field,
            &s,
            format!("a selector is at most {MAX_SELECTOR} characters"),
        ));
    }
    let parsed = calico_selector::parse_shared(s)
        .map_err(|e| fail(field, &s, format!("invalid selector: {e}")))?;
    let canonical = parsed.to_string();
    if uses_global(&canonical) {
        let alone = canonical.trim() == "global()";
        if !(alone && usage == SelectorUse::EntityNamespace) {
            return Err(fail(
                field,
                &s,
                "global() can only be used in an EntityRule namespaceSelector",
            ));
        }
    }
    Ok(())
}

/// Whether `global()` appears outside string literals.
fn uses_global(selector: &str) -> bool {
    let mut quote: Option<char> = None;
    for (i, c) in selector.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => {
                if selector[i..].starts_with("global(") {
                    let before = selector[..i].chars().next_back();
                    if !before.is_some_and(|b| b.is_ascii_alphanumeric() || "_./-".contains(b)) {
                        return true;
                    }
                }
            }
        }
    }
    false
}

/// Parses a Go duration (`1h2m3.5s`, `-1ns`, `0`), returning nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<f64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(if neg { -total } else { total })
}

/// Checks a Go duration string; `non_negative` rejects negative durations.
pub(crate) fn duration(field: &str, s: &str, non_negative: bool) -> Check {
    match parse_go_duration(s) {
        None => Err(fail(
            field,
            &s,
            "invalid duration (expected e.g. \"10s\", \"1m30s\")",
        )),
        Some(ns) if non_negative && ns < 0.0 => {
            Err(fail(field, &s, "duration must not be negative"))
        }
        Some(_) => Ok(()),
    }
}

/// Checks that `value` is one of `allowed` (exact spelling).
pub(crate) fn one_of(field: &str, value: &str, allowed: &[&str]) -> Check {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(fail(
            field,
            &value,
            format!(
                "unsupported value; supported values: {}",
                allowed.join(", ")
            ),
        ))
    }
}

/// Checks that `value` is one of `allowed`, ignoring case.
pub(crate) fn one_of_ci(field: &str, value: &str, allowed: &[&str]) -> Check {
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
        Ok(())
    } else {
        Err(fail(
            field,
            &value,
            format!(
                "unsupported value; supported values: {}",
                allowed.join(", ")
            ),
        ))
    }
}

/// Checks that a list has no repeated entries.
pub(crate) fn unique(field: &str, values: &[String]) -> Check {
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(fail(&index(field, i), v, "duplicate value"));
        }
    }
    Ok(())
}

/// Checks a CalicoNodeStatus spec: the node's name and the classes of status asked for.
pub(crate) fn calico_node_status_spec(
    field: &str,
    spec: &crate::v3::CalicoNodeStatusSpec,
) -> Check {
    if spec.node.is_empty() {
        return Err(fail_bare(&join(field, "node"), "the node is required"));
    }
    if !is_dns1123_subdomain(&spec.node) {
        return Err(fail(
            &join(field, "node"),
            &spec.node,
            "must be a node name (a lower-case DNS-1123 subdomain)",
        ));
    }
    if spec.classes.is_empty() {
        return Err(fail_bare(
            &join(field, "classes"),
            "at least one of Agent, BGP, Routes is required",
        ));
    }
    for (i, class) in spec.classes.iter().enumerate() {
        let f = format!("{}[{i}]", join(field, "classes"));
        one_of(&f, class, &["Agent", "BGP", "Routes"])?;
        if spec.classes[..i].contains(class) {
            return Err(fail(&f, class, "each class at most once"));
        }
    }
    match spec.update_period_seconds {
        None => Err(fail_bare(
            &join(field, "updatePeriodSeconds"),
            "updatePeriodSeconds is required (0 reports once)",
        )),
        Some(p) if p > 86_400 => Err(fail(
            &join(field, "updatePeriodSeconds"),
            &p,
            "must be at most 86400 (a day)",
        )),
        Some(_) => Ok(()),
    }
}

/// Checks an IPAMConfiguration: the singleton `default`, with a block limit an int32 holds.
pub(crate) fn ipam_configuration(name: &str, spec: &crate::v3::IPAMConfigurationSpec) -> Check {
    if name != "default" {
        return Err(fail(
            "metadata.name",
            &name,
            "the IPAM configuration is a singleton named default",
        ));
    }
    if !(0..=1_000_000).contains(&spec.max_blocks_per_host) {
        return Err(fail(
            "spec.maxBlocksPerHost",
            &spec.max_blocks_per_host,
            "must be between 0 and 1000000",
        ));
    }
    Ok(())
}

/// Checks a BlockAffinity spec: a known state, a node, a CIDR, and not marked deleted (only
/// the datastore sets that while it removes one).
pub(crate) fn block_affinity_spec(field: &str, spec: &crate::v3::BlockAffinitySpec) -> Check {
    one_of(
        &join(field, "state"),
        &spec.state,
        &["pending", "confirmed", "pendingDeletion"],
    )?;
    if spec.node.is_empty() {
        return Err(fail_bare(&join(field, "node"), "the node is required"));
    }
    if spec.cidr.parse::<ipnet::IpNet>().is_err() {
        return Err(fail(&join(field, "cidr"), &spec.cidr, "must be a CIDR"));
    }
    if spec.deleted {
        return Err(fail(
            &join(field, "deleted"),
            &true,
            "cannot be set to true: only the datastore marks an affinity deleted",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("3m20s"), Some(200e9));
        assert_eq!(parse_go_duration("-1ns"), Some(-1.0));
        assert_eq!(parse_go_duration("0"), Some(0.0));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn global_detection_ignores_literals() {
        assert!(uses_global("global()"));
        assert!(uses_global("(global() && all())"));
        assert!(!uses_global("a == \"global()\""));
    }

    #[test]
    fn label_rules() {
        assert!(qualified_name("f", "projectcalico.org/Label").is_ok());
        assert!(qualified_name("f", "ProjectCalico.org/label").is_err());
        assert!(qualified_name("f", "projectcalico.org$label").is_err());
    }
}
