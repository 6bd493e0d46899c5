//! BGPFilters as BIRD functions (upstream's `bgpFilterBIRDFuncs` in
//! `confd/pkg/resource/template/template_funcs.go`).

use calico_api::v3;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::config::BIRD_INT_MAX;
use crate::model::Inputs;

/// BIRD's longest symbol.
const MAX_SYMBOL: usize = 64;

/// The rules of `filter` for `direction` (`import` or `export`) and IP `version`.
pub fn rules<'a>(
    filter: &'a v3::BGPFilter,
    direction: &str,
    version: u8,
) -> &'a [v3::BGPFilterRule] {
    let s = &filter.spec;
    match (direction, version) {
        ("import", 6) => &s.import_v6,
        ("import", _) => &s.import_v4,
        (_, 6) => &s.export_v6,
        _ => &s.export_v4,
    }
}

/// `name` cut to `max` characters with a hash of the whole when longer
/// (upstream's `TruncateAndHashName`: the name's first `max - 17`
/// characters, `_`, the first 16 hex digits of its SHA-256).
pub fn truncate_and_hash(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let hash: String = Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let keep = max.saturating_sub(17);
    // Resource names are ASCII (DNS-1123), so byte and char cuts agree.
    format!("{}_{}", &name[..keep.min(name.len())], &hash[..16])
}

/// The quoted BIRD function name of a filter's `direction` for `version`:
/// `'bgp_<name>_importFilterV4'`, the name truncated to fit 64 characters.
pub fn function_name(filter: &str, direction: &str, version: u8) -> String {
    let fixed = format!("bgp__{direction}FilterV{version}");
    let name = truncate_and_hash(filter, MAX_SYMBOL - fixed.len());
    format!("'bgp_{name}_{direction}FilterV{version}'")
}

/// Every BGPFilter's functions for IP `version`, in filter name order.
pub fn functions(inputs: &Inputs, version: u8) -> Result<Vec<String>, Error> {
    let mut lines = Vec::new();
    for (name, filter) in &inputs.filters {
        let directions: Vec<(&str, &[v3::BGPFilterRule])> = ["import", "export"]
            .into_iter()
            .map(|d| (d, rules(filter, d, version)))
            .filter(|(_, r)| !r.is_empty())
            .collect();
        if directions.is_empty() {
            continue;
        }
        lines.push(format!("# v{version} BGPFilter {name}"));
        for (direction, rules) in directions {
            let function = function_name(name, direction, version);
            if rules.iter().any(|r| !r.peer_type.is_empty()) {
                lines.push(format!("function {function}(bool is_same_as) {{"));
            } else {
                lines.push(format!("function {function}() {{"));
            }
            for rule in rules {
                let statement = statement(rule).map_err(|reason| Error::Filter {
                    filter: name.clone(),
                    reason,
                })?;
                let statement = match rule.peer_type.as_str() {
                    "iBGP" => format!("if (is_same_as) then {{ {statement} }}"),
                    "eBGP" => format!("if (!is_same_as) then {{ {statement} }}"),
                    _ => statement,
                };
                lines.push(format!("  {statement}"));
            }
            lines.push("}".to_owned());
        }
    }
    if lines.is_empty() {
        lines.push(format!("# No v{version} BGPFilters configured"));
    }
    Ok(lines)
}

/// One rule as a BIRD statement (upstream's `filterStatement`).
fn statement(rule: &v3::BGPFilterRule) -> Result<String, String> {
    let action = match rule.action.as_str() {
        "Accept" => "accept;",
        "Reject" => "reject;",
        other => return Err(format!("unexpected action {other:?}")),
    };
    let mut conditions = Vec::new();
    if !rule.cidr.is_empty() {
        let op = match rule.match_operator.as_str() {
            "Equal" => "=",
            "NotEqual" => "!=",
            "In" => "~",
            "NotIn" => "!~",
            other => return Err(format!("unexpected matchOperator {other:?}")),
        };
        let target = match &rule.prefix_length {
            Some(len) => prefix_range(&rule.cidr, len.min, len.max)?,
            None => rule.cidr.clone(),
        };
        conditions.push(format!("(net {op} {target})"));
    }
    match rule.source.as_str() {
        "" => {}
        "RemotePeers" => conditions.push("((defined(source))&&(source ~ [ RTS_BGP ]))".to_owned()),
        other => return Err(format!("unexpected source {other:?}")),
    }
    if !rule.interface.is_empty() {
        conditions.push(format!(
            "((defined(ifname))&&(ifname ~ \"{}\"))",
            rule.interface
        ));
    }
    if let Some(c) = &rule.communities {
        let value = c.values.first().ok_or("empty communities")?;
        conditions.push(match value.split(':').collect::<Vec<_>>()[..] {
            [a, b] => format!("(({a}, {b}) ~ bgp_community)"),
            [a, b, c] => format!("(({a}, {b}, {c}) ~ bgp_large_community)"),
            _ => return Err(format!("invalid community value {value:?}")),
        });
    }
    if !rule.as_path_prefix.is_empty() {
        let asns: Vec<String> = rule
            .as_path_prefix
            .iter()
            .map(ToString::to_string)
            .collect();
        conditions.push(format!("(bgp_path ~ [= {} * =])", asns.join(" ")));
    }
    if let Some(p) = rule.priority {
        conditions.push(format!(
            "(defined(bgp_local_pref)&&(bgp_local_pref = {}))",
            BIRD_INT_MAX - p
        ));
    }
    let mut body = Vec::new();
    for op in &rule.operations {
        if let Some(add) = &op.add_community {
            let value = add.value.as_deref().ok_or("addCommunity without a value")?;
            body.push(match value.split(':').collect::<Vec<_>>()[..] {
                [a, b] => format!("bgp_community.add(({a}, {b}));"),
                [a, b, c] => format!("bgp_large_community.add(({a}, {b}, {c}));"),
                _ => return Err(format!("invalid community value {value:?}")),
            });
        } else if let Some(prepend) = &op.prepend_as_path {
            // BIRD prepends one at a time: the last prepended ends up first.
            for asn in prepend.prefix.iter().rev() {
                body.push(format!("bgp_path.prepend({asn});"));
            }
        } else if let Some(set) = &op.set_priority {
            let value = set.value.ok_or("setPriority without a value")?;
            body.push(format!("bgp_local_pref = {};", BIRD_INT_MAX - value));
        } else {
            return Err("an operation with no field set".to_owned());
        }
    }
    body.push(action.to_owned());
    let body = body.join(" ");
    if conditions.is_empty() {
        Ok(body)
    } else {
        Ok(format!("if ({}) then {{ {body} }}", conditions.join("&&")))
    }
}

/// `[ cidr{min,max} ]`: the prefix lengths clamped to the CIDR's own and
/// the family's longest.
fn prefix_range(cidr: &str, min: Option<i32>, max: Option<i32>) -> Result<String, String> {
    let net: ipnet::IpNet = cidr
        .parse()
        .map_err(|e| format!("parsing cidr {cidr:?}: {e}"))?;
    let own = i32::from(net.prefix_len());
    let longest = i32::from(net.max_prefix_len());
    let lo = min.map_or(own, |m| own.max(m));
    let hi = max.map_or(longest, |m| longest.min(m));
    Ok(format!("[ {cidr}{{{lo},{hi}}} ]"))
}
