//! Small builders of nftables expressions and statements the chains share.

use super::*;

/// `KEY vmap { IFACE : jump PREFIX<IFACE>, ... }`: one hash lookup from an
/// interface to its chain, whatever the number of endpoints (nothing when
/// there are none: an empty map is not valid). The map is anonymous: the
/// `nftables` crate has no verdict type for named maps.
pub(super) fn dispatch(key: MetaKey, ifaces: &[&str], prefix: &str) -> Option<Statement<'static>> {
    if ifaces.is_empty() {
        return None;
    }
    Some(Statement::VerdictMap(VerdictMap {
        key: meta(key),
        data: Expression::Named(NamedExpression::Set(
            ifaces
                .iter()
                .map(|i| {
                    SetItem::Mapping(
                        s(i),
                        Expression::Verdict(Verdict::Jump(JumpTarget {
                            target: Cow::Owned(format!("{prefix}{i}")),
                        })),
                    )
                })
                .collect(),
        )),
    }))
}

pub(super) fn ct(key: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.to_owned().into(),
        family: None,
        dir: None,
    }))
}

pub(crate) fn s(text: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(text.to_owned()))
}

pub(super) fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub(crate) fn payload(protocol: &str, field: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Owned(protocol.to_owned()),
            field: Cow::Owned(field.to_owned()),
        },
    )))
}

pub(crate) fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

pub(super) fn mark_bit(bit: u32) -> Expression<'static> {
    Expression::BinaryOperation(Box::new(BinaryOperation::AND(
        meta(MetaKey::Mark),
        Expression::Number(bit),
    )))
}

/// `meta mark & bit != 0` (or `== 0`).
pub(super) fn mark_test(bit: u32, set: bool) -> Statement<'static> {
    let op = if set { Operator::NEQ } else { Operator::EQ };
    matches(mark_bit(bit), op, Expression::Number(0))
}

/// `meta mark set meta mark | bit`.
pub(super) fn mark_set(bit: u32) -> Statement<'static> {
    Statement::Mangle(Mangle {
        key: meta(MetaKey::Mark),
        value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
            meta(MetaKey::Mark),
            Expression::Number(bit),
        ]))),
    })
}

/// `meta mark set meta mark & !bits`.
pub(super) fn mark_clear(bits: u32) -> Statement<'static> {
    Statement::Mangle(Mangle {
        key: meta(MetaKey::Mark),
        value: Expression::BinaryOperation(Box::new(BinaryOperation::AND(
            meta(MetaKey::Mark),
            Expression::Number(!bits),
        ))),
    })
}

pub(crate) fn counter() -> Statement<'static> {
    Statement::Counter(Counter::Anonymous(None))
}

pub(super) fn jump(target: &str) -> Statement<'static> {
    Statement::Jump(JumpTarget {
        target: Cow::Owned(target.to_owned()),
    })
}

pub(crate) fn prefix(net: &IpNet) -> Expression<'static> {
    let net = net.trunc();
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(&net.addr().to_string())),
        len: u32::from(net.prefix_len()),
    }))
}

pub(super) fn port_set(ports: &[PortRange]) -> Expression<'static> {
    let item = |p: &PortRange| {
        if p.min == p.max {
            Expression::Number(u32::from(p.min))
        } else {
            Expression::Range(Box::new(Range {
                range: [
                    Expression::Number(u32::from(p.min)),
                    Expression::Number(u32::from(p.max)),
                ],
            }))
        }
    };
    match ports {
        [one] => item(one),
        _ => Expression::Named(NamedExpression::Set(
            ports.iter().map(|p| SetItem::Element(item(p))).collect(),
        )),
    }
}

pub(super) fn net_set(nets: &[&IpNet]) -> Expression<'static> {
    match nets {
        [one] => prefix(one),
        _ => Expression::Named(NamedExpression::Set(
            nets.iter().map(|n| SetItem::Element(prefix(n))).collect(),
        )),
    }
}

/// Address family of one rendered variant of a rule.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Family {
    V4,
    V6,
}

impl Family {
    pub(super) fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
    pub(super) fn proto(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
    pub(super) fn nfproto(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// Which end of the packet a rule side matches.
#[derive(Clone, Copy)]
pub(super) enum Side {
    Source,
    Destination,
}

impl Side {
    pub(super) fn addr_field(self) -> &'static str {
        match self {
            Side::Source => "saddr",
            Side::Destination => "daddr",
        }
    }
    pub(super) fn port(self) -> Expression<'static> {
        payload(
            "th",
            match self {
                Side::Source => "sport",
                Side::Destination => "dport",
            },
        )
    }
}
