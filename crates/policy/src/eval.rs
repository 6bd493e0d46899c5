//! Evaluates a packet against a compiled endpoint program, recording the
//! decision path: what `calicoctl policy trace` shows.
//!
//! Rules are numbered from 0, as in Calico (felix's rule indices, the rule
//! index `calicoctl policy trace -o json` reports): `rule: 0` in [`Step`] and
//! [`Decision`] is the first rule of its policy or profile, `rule: 1` the
//! second. The text form names the rule's action beside its index, e.g.
//! `rule 1 (Deny) of policy default/p (tier default)`, so that it reads
//! unambiguously whichever way a person counts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::calc::PolicyCalculator;
use crate::model::{
    Action, CompiledRule, Direction, EndOfTier, EndpointProgram, EntityMatch, IcmpMatch, IpSetId,
    IpSetMember, IpSetRef,
};

/// A packet to trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Packet {
    /// Source address.
    #[serde(rename = "srcIP")]
    pub src_ip: IpAddr,
    /// Destination address.
    #[serde(rename = "dstIP")]
    pub dst_ip: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 132 SCTP).
    #[serde(rename = "protocol")]
    pub protocol: u8,
    /// Source port, for protocols with ports.
    #[serde(rename = "srcPort", default)]
    pub src_port: Option<u16>,
    /// Destination port, for protocols with ports.
    #[serde(rename = "dstPort", default)]
    pub dst_port: Option<u16>,
    /// ICMP type, for ICMP packets.
    #[serde(rename = "icmpType", default)]
    pub icmp_type: Option<u8>,
    /// ICMP code, for ICMP packets.
    #[serde(rename = "icmpCode", default)]
    pub icmp_code: Option<u8>,
}

impl Packet {
    /// The packet's IP version (by its source address).
    pub fn ip_version(&self) -> u8 {
        if self.src_ip.is_ipv4() { 4 } else { 6 }
    }
}

/// Read access to IP set contents.
pub trait IpSetView {
    /// Whether set `id` holds `ip` (for a named-port set: `ip` with
    /// `port` = (protocol, port number)).
    fn contains(&self, id: &IpSetId, ip: IpAddr, port: Option<(u8, u16)>) -> bool;
}

/// Whether `member` matches `ip` (and `port`, for named-port members).
pub fn member_matches(member: &IpSetMember, ip: IpAddr, port: Option<(u8, u16)>) -> bool {
    match member {
        IpSetMember::Net(net) => net.contains(&ip),
        IpSetMember::NamedPort {
            net,
            protocol,
            port: p,
        } => port == Some((*protocol, *p)) && net.contains(&ip),
    }
}

impl IpSetView for BTreeMap<IpSetId, BTreeSet<IpSetMember>> {
    fn contains(&self, id: &IpSetId, ip: IpAddr, port: Option<(u8, u16)>) -> bool {
        self.get(id)
            .is_some_and(|m| m.iter().any(|m| member_matches(m, ip, port)))
    }
}

impl IpSetView for PolicyCalculator {
    fn contains(&self, id: &IpSetId, ip: IpAddr, port: Option<(u8, u16)>) -> bool {
        self.ip_set_members(id)
            .is_some_and(|mut m| m.any(|m| member_matches(m, ip, port)))
    }
}

/// The final verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// The packet is allowed.
    #[serde(rename = "Allow")]
    Allow,
    /// The packet is dropped.
    #[serde(rename = "Deny")]
    Deny,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "ALLOW",
            Verdict::Deny => "DENY",
        })
    }
}

/// Where a rule comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleSource {
    /// A policy in a tier.
    #[serde(rename = "policy")]
    Policy {
        /// The tier.
        #[serde(rename = "tier")]
        tier: String,
        /// The namespace of a NetworkPolicy.
        #[serde(rename = "namespace", default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        /// The policy name.
        #[serde(rename = "name")]
        name: String,
    },
    /// A profile.
    #[serde(rename = "profile")]
    Profile {
        /// The profile name.
        #[serde(rename = "name")]
        name: String,
    },
}

impl fmt::Display for RuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleSource::Policy {
                tier,
                namespace: Some(ns),
                name,
            } => write!(f, "policy {ns}/{name} (tier {tier})"),
            RuleSource::Policy { tier, name, .. } => write!(f, "policy {name} (tier {tier})"),
            RuleSource::Profile { name } => write!(f, "profile {name}"),
        }
    }
}

/// Which side of a rule a criterion is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// `source`.
    #[serde(rename = "source")]
    Source,
    /// `destination`.
    #[serde(rename = "destination")]
    Destination,
}

/// The first criterion that stopped a rule from matching.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mismatch {
    /// The rule has criteria this implementation cannot check, and is not
    /// a Deny: it never matches (fail closed).
    #[serde(rename = "unsupported")]
    Unsupported {
        /// The criteria.
        #[serde(rename = "criteria")]
        criteria: Vec<String>,
    },
    /// `ipVersion` differs.
    #[serde(rename = "ipVersion")]
    IpVersion,
    /// `protocol` differs.
    #[serde(rename = "protocol")]
    Protocol,
    /// The protocol is the `notProtocol`.
    #[serde(rename = "notProtocol")]
    NotProtocol,
    /// `icmp` type/code differ.
    #[serde(rename = "icmp")]
    Icmp,
    /// The ICMP type/code is the `notICMP` one.
    #[serde(rename = "notICMP")]
    NotIcmp,
    /// The address is in none of `nets`.
    #[serde(rename = "nets")]
    Nets {
        /// Which side.
        #[serde(rename = "side")]
        side: Side,
    },
    /// The address is in one of `notNets`.
    #[serde(rename = "notNets")]
    NotNets {
        /// Which side.
        #[serde(rename = "side")]
        side: Side,
    },
    /// The address is not in the `selector`'s set.
    #[serde(rename = "selector")]
    Selector {
        /// Which side.
        #[serde(rename = "side")]
        side: Side,
        /// The (scoped) selector.
        #[serde(rename = "selector")]
        selector: String,
    },
    /// The address is in the `notSelector`'s set.
    #[serde(rename = "notSelector")]
    NotSelector {
        /// Which side.
        #[serde(rename = "side")]
        side: Side,
        /// The selector.
        #[serde(rename = "selector")]
        selector: String,
    },
    /// The port is in none of `ports` (numeric or named).
    #[serde(rename = "ports")]
    Ports {
        /// Which side.
        #[serde(rename = "side")]
        side: Side,
    },
    /// The port is one of `notPorts`.
    #[serde(rename = "notPorts")]
    NotPorts {
        /// Which side.
        #[serde(rename = "side")]
        side: Side,
    },
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Unsupported { criteria } => write!(
                f,
                "uses unsupported criteria ({}), so never matches",
                criteria.join(", ")
            ),
            Mismatch::IpVersion => f.write_str("IP version differs"),
            Mismatch::Protocol => f.write_str("protocol differs"),
            Mismatch::NotProtocol => f.write_str("protocol is the notProtocol"),
            Mismatch::Icmp => f.write_str("ICMP type/code differs"),
            Mismatch::NotIcmp => f.write_str("ICMP type/code is the notICMP one"),
            Mismatch::Nets { side } => write!(f, "{side} address not in nets"),
            Mismatch::NotNets { side } => write!(f, "{side} address in notNets"),
            Mismatch::Selector { side, selector } => {
                write!(f, "{side} address not selected by {selector}")
            }
            Mismatch::NotSelector { side, selector } => {
                write!(f, "{side} address selected by notSelector {selector}")
            }
            Mismatch::Ports { side } => write!(f, "{side} port not in ports"),
            Mismatch::NotPorts { side } => write!(f, "{side} port in notPorts"),
        }
    }
}

/// One thing the evaluation consulted, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Entered a tier.
    #[serde(rename = "tier")]
    Tier {
        /// The tier.
        #[serde(rename = "tier")]
        tier: String,
    },
    /// Entered a policy or profile.
    #[serde(rename = "enter")]
    Enter {
        /// The policy or profile.
        #[serde(rename = "source")]
        source: RuleSource,
    },
    /// Checked a rule.
    #[serde(rename = "rule")]
    Rule {
        /// 0-based index of the rule within its policy or profile.
        #[serde(rename = "rule")]
        rule: usize,
        /// The rule's action.
        #[serde(rename = "action")]
        action: Action,
        /// Why it did not match; `None` if it matched.
        #[serde(rename = "mismatch", default, skip_serializing_if = "Option::is_none")]
        mismatch: Option<Mismatch>,
    },
    /// Reached the end of a tier with no decision.
    #[serde(rename = "endOfTier")]
    EndOfTier {
        /// The tier.
        #[serde(rename = "tier")]
        tier: String,
        /// What the tier does then.
        #[serde(rename = "action")]
        action: EndOfTier,
    },
}

/// What decided the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// A policy rule (Allow or Deny) matched.
    #[serde(rename = "policyRule")]
    PolicyRule {
        /// The policy.
        #[serde(rename = "source")]
        source: RuleSource,
        /// 0-based index of the rule within its policy or profile.
        #[serde(rename = "rule")]
        rule: usize,
        /// The rule's action.
        #[serde(rename = "action")]
        action: Action,
    },
    /// A tier applied to the endpoint but no rule of it decided, and its
    /// default action is Deny.
    #[serde(rename = "endOfTier")]
    EndOfTier {
        /// The tier.
        #[serde(rename = "tier")]
        tier: String,
    },
    /// A profile rule (Allow or Deny) matched.
    #[serde(rename = "profileRule")]
    ProfileRule {
        /// The profile.
        #[serde(rename = "source")]
        source: RuleSource,
        /// 0-based index of the rule within its policy or profile.
        #[serde(rename = "rule")]
        rule: usize,
        /// The rule's action.
        #[serde(rename = "action")]
        action: Action,
    },
    /// The endpoint's profiles were consulted and none decided: deny.
    #[serde(rename = "noProfileMatched")]
    NoProfileMatched,
    /// The endpoint has no profiles to fall through to: deny.
    #[serde(rename = "noProfile")]
    NoProfile,
}

/// The result of tracing one packet in one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// The direction evaluated.
    #[serde(rename = "direction")]
    pub direction: Direction,
    /// The verdict.
    #[serde(rename = "verdict")]
    pub verdict: Verdict,
    /// What decided it.
    #[serde(rename = "decision")]
    pub decision: Decision,
    /// Everything consulted, in order.
    #[serde(rename = "steps")]
    pub steps: Vec<Step>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::PolicyRule {
                source,
                rule,
                action,
            }
            | Decision::ProfileRule {
                source,
                rule,
                action,
            } => write!(f, "rule {rule} ({action}) of {source}"),
            Decision::EndOfTier { tier } => {
                write!(
                    f,
                    "end of tier {tier}: no policy rule matched (default Deny)"
                )
            }
            Decision::NoProfileMatched => f.write_str("no profile rule matched"),
            Decision::NoProfile => f.write_str("no policy applies and the endpoint has no profile"),
        }
    }
}

/// Human-readable, one line per step.
impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} by {}",
            self.direction, self.verdict, self.decision
        )?;
        for step in &self.steps {
            match step {
                Step::Tier { tier } => writeln!(f, "  tier {tier}")?,
                Step::Enter { source } => writeln!(f, "    {source}")?,
                Step::Rule {
                    rule,
                    action,
                    mismatch: None,
                } => writeln!(f, "      rule {rule} ({action}): matched")?,
                Step::Rule {
                    rule,
                    action,
                    mismatch: Some(m),
                } => writeln!(f, "      rule {rule} ({action}): no match, {m}")?,
                Step::EndOfTier { tier, action } => {
                    writeln!(f, "    end of tier {tier}: {action:?}")?;
                }
            }
        }
        Ok(())
    }
}

/// Evaluates `packet` against `program` in `direction`, with IP set
/// contents from `sets`.
pub fn evaluate(
    program: &EndpointProgram,
    direction: Direction,
    packet: &Packet,
    sets: &impl IpSetView,
) -> Trace {
    let dir = program.direction(direction);
    let mut steps = Vec::new();
    let done = |verdict, decision, steps| Trace {
        direction,
        verdict,
        decision,
        steps,
    };
    'tiers: for tier in &dir.tiers {
        steps.push(Step::Tier {
            tier: tier.tier.clone(),
        });
        for policy in &tier.policies {
            let source = RuleSource::Policy {
                tier: tier.tier.clone(),
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
            };
            steps.push(Step::Enter {
                source: source.clone(),
            });
            for (i, rule) in policy.rules.iter().enumerate() {
                let mismatch = rule_mismatch(rule, packet, sets).err();
                let matched = mismatch.is_none();
                steps.push(Step::Rule {
                    rule: i,
                    action: rule.action,
                    mismatch,
                });
                if !matched {
                    continue;
                }
                match rule.action {
                    Action::Allow | Action::Deny => {
                        let decision = Decision::PolicyRule {
                            source,
                            rule: i,
                            action: rule.action,
                        };
                        return done(verdict_of(rule.action), decision, steps);
                    }
                    Action::Pass => continue 'tiers,
                    Action::Log => {}
                }
            }
        }
        steps.push(Step::EndOfTier {
            tier: tier.tier.clone(),
            action: tier.end_of_tier,
        });
        if tier.end_of_tier == EndOfTier::Deny {
            let decision = Decision::EndOfTier {
                tier: tier.tier.clone(),
            };
            return done(Verdict::Deny, decision, steps);
        }
    }
    if dir.profiles.is_empty() {
        return done(Verdict::Deny, Decision::NoProfile, steps);
    }
    for profile in &dir.profiles {
        let source = RuleSource::Profile {
            name: profile.name.clone(),
        };
        steps.push(Step::Enter {
            source: source.clone(),
        });
        for (i, rule) in profile.rules.iter().enumerate() {
            let mismatch = rule_mismatch(rule, packet, sets).err();
            let matched = mismatch.is_none();
            steps.push(Step::Rule {
                rule: i,
                action: rule.action,
                mismatch,
            });
            if !matched {
                continue;
            }
            match rule.action {
                Action::Allow | Action::Deny => {
                    let decision = Decision::ProfileRule {
                        source,
                        rule: i,
                        action: rule.action,
                    };
                    return done(verdict_of(rule.action), decision, steps);
                }
                // Pass leaves this profile for the next one, as upstream's
                // profile chains return on it.
                Action::Pass => break,
                Action::Log => {}
            }
        }
    }
    done(Verdict::Deny, Decision::NoProfileMatched, steps)
}

fn verdict_of(action: Action) -> Verdict {
    if action == Action::Allow {
        Verdict::Allow
    } else {
        Verdict::Deny
    }
}

fn icmp_matches(m: &IcmpMatch, packet: &Packet) -> bool {
    packet.icmp_type.is_some()
        && m.icmp_type.is_none_or(|t| packet.icmp_type == Some(t))
        && m.code.is_none_or(|c| packet.icmp_code == Some(c))
}

/// Checks `rule` against `packet`: `Ok` if it matches, else the first
/// criterion that failed.
pub fn rule_mismatch(
    rule: &CompiledRule,
    packet: &Packet,
    sets: &impl IpSetView,
) -> Result<(), Mismatch> {
    if rule.never_matches() {
        return Err(Mismatch::Unsupported {
            criteria: rule.unsupported.clone(),
        });
    }
    if rule.ip_version.is_some_and(|v| v != packet.ip_version()) {
        return Err(Mismatch::IpVersion);
    }
    if rule.protocol.is_some_and(|p| p != packet.protocol) {
        return Err(Mismatch::Protocol);
    }
    if rule.not_protocol == Some(packet.protocol) {
        return Err(Mismatch::NotProtocol);
    }
    if rule.icmp.is_some_and(|m| !icmp_matches(&m, packet)) {
        return Err(Mismatch::Icmp);
    }
    if rule.not_icmp.is_some_and(|m| icmp_matches(&m, packet)) {
        return Err(Mismatch::NotIcmp);
    }
    entity_mismatch(
        &rule.source,
        Side::Source,
        packet.src_ip,
        packet.protocol,
        packet.src_port,
        sets,
    )?;
    entity_mismatch(
        &rule.destination,
        Side::Destination,
        packet.dst_ip,
        packet.protocol,
        packet.dst_port,
        sets,
    )
}

fn entity_mismatch(
    m: &EntityMatch,
    side: Side,
    ip: IpAddr,
    protocol: u8,
    port: Option<u16>,
    sets: &impl IpSetView,
) -> Result<(), Mismatch> {
    if !m.nets.is_empty() && !m.nets.iter().any(|n| n.contains(&ip)) {
        return Err(Mismatch::Nets { side });
    }
    if m.not_nets.iter().any(|n| n.contains(&ip)) {
        return Err(Mismatch::NotNets { side });
    }
    if let Some(r) = &m.selector
        && !sets.contains(&r.id, ip, None)
    {
        return Err(Mismatch::Selector {
            side,
            selector: r.selector.to_string(),
        });
    }
    if let Some(r) = &m.not_selector
        && sets.contains(&r.id, ip, None)
    {
        return Err(Mismatch::NotSelector {
            side,
            selector: r.selector.to_string(),
        });
    }
    let in_ports = |ranges: &[crate::model::PortRange], named: &[IpSetRef], port: u16| {
        ranges.iter().any(|r| r.contains(port))
            || named
                .iter()
                .any(|r| sets.contains(&r.id, ip, Some((protocol, port))))
    };
    if !m.ports.is_empty() || !m.named_ports.is_empty() {
        match port {
            Some(p) if in_ports(&m.ports, &m.named_ports, p) => {}
            _ => return Err(Mismatch::Ports { side }),
        }
    }
    if !m.not_ports.is_empty() || !m.not_named_ports.is_empty() {
        // A packet without ports cannot satisfy a port criterion at all.
        match port {
            Some(p) if !in_ports(&m.not_ports, &m.not_named_ports, p) => {}
            _ => return Err(Mismatch::NotPorts { side }),
        }
    }
    Ok(())
}
