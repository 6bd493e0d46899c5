//! Outgoing NAT for pools with `natOutgoing`: traffic from such a pool to
//! anywhere outside every pool leaves with the host's address, as Felix's
//! `cali-nat-outgoing` chain does.

use std::borrow::Cow;
use std::collections::HashSet;

use ipnet::IpNet;
use nftables::schema::{Chain, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfHook};

use crate::render::expr::{counter, matches, payload, prefix, s};
use crate::render::{Ruleset, TABLE_FAMILY, TABLE_NAME};

/// The postrouting NAT chain.
pub const NAT_CHAIN: &str = "nat-postrouting";
/// Hook priority of [`NAT_CHAIN`]: `srcnat` (100).
pub const NAT_PRIORITY: i32 = 100;
/// Set of the IPv4 pools with `natOutgoing`.
pub const MASQ_POOLS_V4: &str = "masq-pools4";
/// Set of every IPv4 pool.
pub const ALL_POOLS_V4: &str = "all-pools4";
/// Set of the IPv6 pools with `natOutgoing`.
pub const MASQ_POOLS_V6: &str = "masq-pools6";
/// Set of every IPv6 pool.
pub const ALL_POOLS_V6: &str = "all-pools6";

/// Adds the NAT chain and its pool sets to `ruleset`: `masq` are the pools
/// with `natOutgoing`, `all` every pool (enabled or not: traffic between
/// pools is never masqueraded).
pub fn add_nat_outgoing(ruleset: &mut Ruleset, masq: &[IpNet], all: &[IpNet]) {
    let mut heads = Vec::new();
    let mut rules = Vec::new();
    for (v6, masq_set, all_set, proto) in [
        (false, MASQ_POOLS_V4, ALL_POOLS_V4, "ip"),
        (true, MASQ_POOLS_V6, ALL_POOLS_V6, "ip6"),
    ] {
        let pick = |nets: &[IpNet]| -> Vec<IpNet> {
            IpNet::aggregate(
                &nets
                    .iter()
                    .filter(|n| matches!(n, IpNet::V6(_)) == v6)
                    .copied()
                    .collect::<Vec<_>>(),
            )
        };
        let (masq_nets, all_nets) = (pick(masq), pick(all));
        for (name, nets) in [(masq_set, &masq_nets), (all_set, &all_nets)] {
            heads.push(NfListObject::Set(Box::new(Set {
                family: TABLE_FAMILY,
                table: TABLE_NAME.into(),
                name: name.into(),
                set_type: SetTypeValue::Single(if v6 {
                    SetType::Ipv6Addr
                } else {
                    SetType::Ipv4Addr
                }),
                flags: Some(HashSet::from([SetFlag::Interval])),
                elem: (!nets.is_empty())
                    .then(|| nets.iter().map(prefix).collect::<Vec<_>>().into()),
                ..Set::default()
            })));
        }
        if masq_nets.is_empty() {
            continue;
        }
        rules.push(NfListObject::Rule(Rule {
            family: TABLE_FAMILY,
            table: TABLE_NAME.into(),
            chain: NAT_CHAIN.into(),
            expr: vec![
                matches(
                    payload(proto, "saddr"),
                    Operator::EQ,
                    s(&format!("@{masq_set}")),
                ),
                matches(
                    payload(proto, "daddr"),
                    Operator::NEQ,
                    s(&format!("@{all_set}")),
                ),
                counter(),
                Statement::Masquerade(None),
            ]
            .into(),
            comment: Some(Cow::Borrowed("natOutgoing: pool to outside every pool")),
            ..Rule::default()
        }));
    }
    heads.push(NfListObject::Chain(Chain {
        family: TABLE_FAMILY,
        table: TABLE_NAME.into(),
        name: NAT_CHAIN.into(),
        _type: Some(NfChainType::NAT),
        hook: Some(NfHook::Postrouting),
        prio: Some(NAT_PRIORITY),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }));
    // Sets and chains must exist before any rule refers to them.
    ruleset.objects.splice(0..0, heads);
    ruleset.objects.extend(rules);
}
