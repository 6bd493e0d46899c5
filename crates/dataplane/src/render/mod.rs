//! Renders a policy [`Snapshot`] into the complete desired contents of the
//! one nftables table this dataplane owns.
//!
//! Layout (all names are constants below):
//!
//! - one named set per IP set and address family (`ip4-<id>`/`ip6-<id>`,
//!   interval sets of prefixes; named-port sets are concatenations
//!   `addr . inet_proto . inet_service`), plus [`KNOWN_IFACES_SET`];
//! - a raw prerouting chain [`PREROUTING_CHAIN`]: anti-spoofing, a packet
//!   from a workload interface must come from one of that endpoint's own
//!   addresses ([`WL_SOURCES_V4_SET`], [`WL_SOURCES_V6_SET`]), before
//!   conntrack and before any policy;
//! - a forward-hook base chain [`FORWARD_CHAIN`]: established/related fast
//!   path, fail-closed drop of unknown `cali*` interfaces and of tunnel
//!   packets from workloads, then a jump to `from-<iface>` (egress of the
//!   sending workload) and `to-<iface>` (ingress of the receiving workload);
//! - an input-hook base chain [`INPUT_CHAIN`]: tunnel packets only from
//!   Calico hosts, workload-to-host traffic through [`WL_TO_HOST_CHAIN`]
//!   (the workload's egress policy, then `DefaultEndpointToHostAction`),
//!   then host endpoint policy;
//! - per endpoint and direction a chain that clears the verdict marks, jumps
//!   to each applicable policy chain in tier order, then to the profiles, and
//!   drops what nothing allowed;
//! - one shared chain per policy or profile and direction holding its rules.
//!
//! Policy chains cannot end the endpoint chain that called them (a `return`
//! only pops one level), so they report Allow and Pass through the
//! [`MARK_ACCEPT`] and [`MARK_PASS`] bits, as Felix's iptables dataplane does.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use calico_policy::Snapshot;
use calico_policy::attribution::Attribution;
use calico_policy::model::{
    Action, CompiledRule, Direction, EndOfTier, EndpointId, EntityMatch, IpSetId, IpSetMember,
    IpSetRef, PortRange,
};
use ipnet::IpNet;
use nftables::expr::Verdict;
use nftables::expr::{
    BinaryOperation, CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix,
    Range, SetItem,
};
use nftables::schema::{Chain, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{Counter, JumpTarget, Log, Mangle, Match, Operator, Statement, VerdictMap};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

pub(crate) mod expr;
mod host;
mod policy;

use expr::*;

/// Family of the table we own: `inet` sees IPv4 and IPv6 in one chain.
pub const TABLE_FAMILY: NfFamily = NfFamily::INet;
/// Name of the table we own; nothing outside it is ever touched.
pub const TABLE_NAME: &str = "calico";
/// The forward-hook base chain that dispatches to endpoint chains.
pub const FORWARD_CHAIN: &str = "forward";
/// Hook priority of [`FORWARD_CHAIN`]: `filter` (0), like an ordinary firewall.
pub const FORWARD_PRIORITY: i32 = 0;
/// The input-hook base chain policing traffic to host endpoints.
pub const INPUT_CHAIN: &str = "input";
/// The output-hook base chain policing traffic from host endpoints.
pub const OUTPUT_CHAIN: &str = "output";
/// Prefix of the host side of every workload veth; any such interface
/// without an endpoint program is dropped (fail closed).
pub const WORKLOAD_IFACE_PREFIX: &str = calico_netlink::workload::HOST_IFACE_PREFIX;
/// Set of the interfaces that have endpoint chains.
pub const KNOWN_IFACES_SET: &str = "known-ifaces";
/// Prefix of the chain for traffic to a workload (its ingress policy).
pub const TO_ENDPOINT_PREFIX: &str = "to-";
/// Prefix of the chain for traffic from a workload (its egress policy).
pub const FROM_ENDPOINT_PREFIX: &str = "from-";
/// Prefix of a chain running one ingress policy sequence (tiers, then profiles), shared by
/// every endpoint with that sequence; named by a hash of what it holds.
pub const SEQUENCE_INGRESS_PREFIX: &str = "seqi-";
/// Prefix of a chain running one egress policy sequence (see [`SEQUENCE_INGRESS_PREFIX`]).
pub const SEQUENCE_EGRESS_PREFIX: &str = "seqo-";
/// Prefix of a policy's ingress rule chain.
pub const POLICY_INGRESS_PREFIX: &str = "pi-";
/// Prefix of a policy's egress rule chain.
pub const POLICY_EGRESS_PREFIX: &str = "po-";
/// Prefix of a profile's ingress rule chain.
pub const PROFILE_INGRESS_PREFIX: &str = "pri-";
/// Prefix of a profile's egress rule chain.
pub const PROFILE_EGRESS_PREFIX: &str = "pro-";
/// Prefix of an IPv4 set.
pub const SET_V4_PREFIX: &str = "ip4-";
/// Prefix of an IPv6 set.
pub const SET_V6_PREFIX: &str = "ip6-";
/// Packet mark bit: a policy or profile allowed the packet.
pub const MARK_ACCEPT: u32 = 0x1_0000;
/// Packet mark bit: a policy passed the packet to the next tier.
pub const MARK_PASS: u32 = 0x2_0000;
/// Bits of the conntrack mark holding the policy generation a flow was last
/// allowed under: established flows skip policy only while it is current,
/// so a policy change is enforced on existing connections too. The agent
/// counts generations up and clears these bits in conntrack before the
/// counter wraps, so an old flow can never carry the current generation.
pub const CT_GENERATION_MASK: u32 = 0xffff_0000;
/// Shift of the generation into [`CT_GENERATION_MASK`].
pub const CT_GENERATION_SHIFT: u32 = 16;
/// The chain accepting established flows of the current policy generation.
pub const GEN_FAST_CHAIN: &str = "gen-fast";
/// The chain stamping the current policy generation on an allowed flow.
pub const GEN_REMEMBER_CHAIN: &str = "gen-remember";
/// The raw-priority prerouting base chain: anti-spoofing for workloads.
pub const PREROUTING_CHAIN: &str = "prerouting";
/// Hook priority of [`PREROUTING_CHAIN`]: `raw` (-300), before conntrack.
pub const PREROUTING_PRIORITY: i32 = -300;
/// The chain workload-to-host traffic goes to from [`INPUT_CHAIN`].
pub const WL_TO_HOST_CHAIN: &str = "wl-to-host";
/// `ifname . ipv4_addr` pairs a workload interface may send from.
pub const WL_SOURCES_V4_SET: &str = "wl-src4";
/// `ifname . ipv6_addr` pairs a workload interface may send from.
pub const WL_SOURCES_V6_SET: &str = "wl-src6";
/// Underlay IPv4 addresses of every Calico host: the only tunnel peers.
pub const CALICO_HOSTS_V4_SET: &str = "calico-hosts4";
/// Underlay IPv6 addresses of every Calico host.
pub const CALICO_HOSTS_V6_SET: &str = "calico-hosts6";
/// Longest policy or profile chain name before it is shortened with a hash
/// (nft allows 255 bytes; short names keep listings readable).
pub const MAX_CHAIN_NAME: usize = 64;
/// Longest rule comment in bytes (the kernel keeps at most 128 with the NUL).
pub const MAX_COMMENT: usize = 127;
/// ICMPv6 types a workload may send its host before any policy: multicast
/// listener query/report/done, router solicitation, neighbour solicitation
/// and advertisement (as upstream's `ICMPv6Filter`).
pub const ICMPV6_TO_HOST: [u8; 6] = [130, 131, 132, 133, 135, 136];
/// ICMPv6 types dropped from workloads: router advertisement and redirect.
pub const ICMPV6_FROM_WORKLOAD_DROPPED: [u8; 2] = [134, 137];
/// ICMP (v4) redirect, dropped from workloads.
pub const ICMP_REDIRECT: u8 = 5;
/// Bytes of a decided packet copied to the flow log: an IPv6 header and a
/// transport header's ports, with room for IPv4 options.
pub const FLOW_LOG_SNAPLEN: u32 = 128;
/// Log prefix of `Log` rules (nft truncates prefixes at 127 bytes).
pub const LOG_PREFIX: &str = "calico-packet: ";

/// A transport protocol of a failsafe port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl L4Protocol {
    fn name(self) -> &'static str {
        match self {
            L4Protocol::Tcp => "tcp",
            L4Protocol::Udp => "udp",
        }
    }
}

/// A port that host endpoint policy can never close (so an operator cannot
/// lock themselves, the datastore or Mesos out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failsafe {
    /// Its protocol.
    pub protocol: L4Protocol,
    /// Its port.
    pub port: u16,
}

/// A failsafe list that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failsafe port {entry:?}: {reason} (expected tcp:PORT or udp:PORT, comma-separated)")]
pub struct FailsafeError {
    /// The entry.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses Felix's failsafe syntax: `tcp:22,udp:68` (`none` for an empty list).
pub fn parse_failsafes(text: &str) -> Result<Vec<Failsafe>, FailsafeError> {
    if text.trim() == "none" {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let bad = |reason: &str| FailsafeError {
                entry: entry.to_owned(),
                reason: reason.to_owned(),
            };
            let (proto, port) = entry.split_once(':').ok_or_else(|| bad("no protocol"))?;
            let protocol = match proto.to_ascii_lowercase().as_str() {
                "tcp" => L4Protocol::Tcp,
                "udp" => L4Protocol::Udp,
                _ => return Err(bad("protocol must be tcp or udp")),
            };
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("port must be 1-65535"))?;
            Ok(Failsafe { protocol, port })
        })
        .collect()
}

/// Default inbound failsafes: SSH, DHCP, BGP, etcd, and the Mesos master and agent.
pub const DEFAULT_FAILSAFE_INBOUND: &str =
    "tcp:22,udp:68,tcp:179,tcp:2379,tcp:2380,tcp:5050,tcp:5051";
/// Default outbound failsafes: DNS, DHCP, BGP, etcd, and the Mesos master and agent.
pub const DEFAULT_FAILSAFE_OUTBOUND: &str =
    "udp:53,udp:67,tcp:179,tcp:2379,tcp:2380,tcp:5050,tcp:5051";

/// What happens to workload-to-host traffic that the workload's egress
/// policy allowed (Felix's `DefaultEndpointToHostAction`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EndpointToHostAction {
    /// Dropped: a workload reaches nothing on its host (the default).
    #[default]
    Drop,
    /// Accepted.
    Accept,
    /// Leaves our table undecided: other tables (the host's own firewall)
    /// decide; host endpoint policy is not applied (as upstream).
    Return,
}

/// A `DefaultEndpointToHostAction` value that is none of Drop, Accept, Return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DefaultEndpointToHostAction {0:?}: expected Drop, Accept or Return")]
pub struct EndpointToHostActionError(pub String);

impl std::str::FromStr for EndpointToHostAction {
    type Err = EndpointToHostActionError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "drop" => Ok(EndpointToHostAction::Drop),
            "accept" => Ok(EndpointToHostAction::Accept),
            "return" => Ok(EndpointToHostAction::Return),
            _ => Err(EndpointToHostActionError(text.to_owned())),
        }
    }
}

/// A local endpoint's interface as the dataplane needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Interface {
    /// The interface name (a workload's host-side veth, a host endpoint's NIC).
    pub name: String,
    /// Source prefixes packets from a workload interface may carry: the
    /// endpoint's own addresses, plus its `allowSpoofedSourcePrefixes` where
    /// FelixConfiguration allows spoofing. Anything else is dropped.
    pub sources: Vec<IpNet>,
}

impl Interface {
    /// An interface whose packets may come only from `sources`.
    pub fn new(name: impl Into<String>, sources: Vec<IpNet>) -> Self {
        Interface {
            name: name.into(),
            sources,
        }
    }
}

/// This host's dataplane settings besides policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOptions {
    /// Always allowed in, whatever host endpoint policy says.
    pub failsafe_inbound: Vec<Failsafe>,
    /// Always allowed out.
    pub failsafe_outbound: Vec<Failsafe>,
    /// The VXLAN port between hosts: accepted only from Calico hosts (and
    /// then always, whatever host endpoint policy says).
    pub vxlan_port: Option<u16>,
    /// IP-in-IP is in use: accepted only from Calico hosts.
    pub ipip: bool,
    /// Underlay addresses of every Calico host (the only tunnel peers).
    pub calico_hosts: Vec<std::net::IpAddr>,
    /// What happens to workload-to-host traffic after egress policy.
    pub endpoint_to_host: EndpointToHostAction,
    /// The policy generation stamped on allowed flows (1..=65535; see
    /// [`CT_GENERATION_MASK`]). The agent bumps it on every change.
    pub generation: u16,
    /// The nflog group every deciding rule logs the packets it decides to, under its
    /// [`Attribution`]'s prefix (flow logs). None: no flow logs.
    pub flow_log_group: Option<u16>,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            failsafe_inbound: parse_failsafes(DEFAULT_FAILSAFE_INBOUND).unwrap_or_default(),
            failsafe_outbound: parse_failsafes(DEFAULT_FAILSAFE_OUTBOUND).unwrap_or_default(),
            vxlan_port: None,
            ipip: false,
            calico_hosts: Vec::new(),
            endpoint_to_host: EndpointToHostAction::Drop,
            generation: 1,
            flow_log_group: None,
        }
    }
}

/// The desired contents of our table.
#[derive(Debug, Clone, Default)]
pub struct Ruleset {
    /// Sets, chains and rules in the order they must be added (sets and
    /// chains before the rules that refer to them).
    pub objects: Vec<NfListObject<'static>>,
    /// Endpoints with a program but no interface in the map: they get no
    /// chains, so their interface (when it appears) is dropped.
    pub unmapped: Vec<EndpointId>,
    /// Rules left out because they use criteria this dataplane cannot
    /// enforce (`http`, `serviceAccounts`): an Allow or Pass that never
    /// matches (fail closed). With why (`policy ... rule N: reason`).
    pub skipped_rules: Vec<String>,
    /// Rules that could not be rendered: their whole policy chain drops
    /// instead (fail closed). With why.
    pub errors: Vec<String>,
    /// Chains that can be failed closed one by one when the kernel rejects
    /// the batch: policy, profile and endpoint chains, with what they are.
    pub units: Vec<(String, String)>,
    /// The rule each flow-log prefix in the table stands for (empty without flow logs).
    pub attributions: BTreeMap<String, Attribution>,
}

impl Ruleset {
    /// This ruleset with the rules of `chains` replaced by one drop each:
    /// what is programmed when the kernel rejects those chains.
    pub fn fail_closed(&self, chains: &BTreeSet<String>) -> Ruleset {
        let objects = self
            .objects
            .iter()
            .filter(|o| !matches!(o, NfListObject::Rule(r) if chains.contains(r.chain.as_ref())))
            .cloned()
            .chain(chains.iter().map(|chain| {
                rule_object(
                    chain,
                    vec![counter(), Statement::Drop(None)],
                    "fail closed: this chain could not be programmed",
                )
            }))
            .collect();
        Ruleset {
            objects,
            unmapped: self.unmapped.clone(),
            skipped_rules: self.skipped_rules.clone(),
            errors: self.errors.clone(),
            units: self.units.clone(),
            attributions: self.attributions.clone(),
        }
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| matches!(o, NfListObject::Rule(_)))
            .count()
    }
}

/// The table that drops every packet from or to a workload interface: in
/// force before the first complete sync when there is no table yet, and
/// when the desired table cannot be programmed at all.
pub fn fail_closed_table() -> Ruleset {
    let wildcard = format!("{WORKLOAD_IFACE_PREFIX}*");
    let mut objects = Vec::new();
    let mut rules = Vec::new();
    for (chain, hook, prio, keys) in [
        (
            PREROUTING_CHAIN,
            NfHook::Prerouting,
            PREROUTING_PRIORITY,
            &[MetaKey::Iifname][..],
        ),
        (
            FORWARD_CHAIN,
            NfHook::Forward,
            FORWARD_PRIORITY,
            &[MetaKey::Iifname, MetaKey::Oifname][..],
        ),
        (
            INPUT_CHAIN,
            NfHook::Input,
            FORWARD_PRIORITY,
            &[MetaKey::Iifname][..],
        ),
        (
            OUTPUT_CHAIN,
            NfHook::Output,
            FORWARD_PRIORITY,
            &[MetaKey::Oifname][..],
        ),
    ] {
        objects.push(base_chain_object(chain, hook, prio));
        for key in keys {
            rules.push(rule_object(
                chain,
                vec![
                    matches(meta(*key), Operator::EQ, s(&wildcard)),
                    counter(),
                    Statement::Drop(None),
                ],
                "fail closed: workload traffic is dropped until policy is programmed",
            ));
        }
    }
    objects.extend(rules);
    Ruleset {
        objects,
        ..Ruleset::default()
    }
}

fn base_chain_object(name: &str, hook: NfHook, prio: i32) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: TABLE_FAMILY,
        table: TABLE_NAME.into(),
        name: Cow::Owned(name.to_owned()),
        _type: Some(NfChainType::Filter),
        hook: Some(hook),
        prio: Some(prio),
        // Accept: we only police workload (and host endpoint) interfaces;
        // other tables keep their own say over everything else.
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    })
}

fn rule_object(chain: &str, expr: Vec<Statement<'static>>, comment: &str) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: TABLE_FAMILY,
        table: TABLE_NAME.into(),
        chain: Cow::Owned(chain.to_owned()),
        expr: expr.into(),
        comment: Some(Cow::Owned(truncate_comment(comment))),
        ..Rule::default()
    })
}

/// `text` cut to [`MAX_COMMENT`] bytes at a character boundary.
pub fn truncate_comment(text: &str) -> String {
    if text.len() <= MAX_COMMENT {
        return text.to_owned();
    }
    let mut end = MAX_COMMENT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The chain name of a policy or profile: `prefix` + `name`, or when that
/// is longer than [`MAX_CHAIN_NAME`], a readable head of it, `~` and a hash
/// of the whole name (as upstream's length-limited ids), so any name the
/// API accepts fits and distinct names stay distinct.
pub fn chain_name(prefix: &str, name: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let full = format!("{prefix}{name}");
    if full.len() <= MAX_CHAIN_NAME {
        return full;
    }
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(name));
    let hash = &hash[..22];
    let mut head = MAX_CHAIN_NAME - prefix.len() - 1 - hash.len();
    while !name.is_char_boundary(head) {
        head -= 1;
    }
    format!("{prefix}{}~{hash}", &name[..head])
}

/// Renders `snapshot` for the endpoints in `ifaces` (endpoint → host-side
/// interface), with the default [`HostOptions`].
pub fn render(snapshot: &Snapshot, ifaces: &BTreeMap<EndpointId, Interface>) -> Ruleset {
    render_with(snapshot, ifaces, &HostOptions::default())
}

/// Renders `snapshot` for the endpoints in `ifaces`: workload endpoints are
/// policed on the forward hook (and on input for traffic to this host),
/// host endpoints (their interface, e.g. `eth0`) on input and output with
/// `opts`' failsafes.
pub fn render_with(
    snapshot: &Snapshot,
    ifaces: &BTreeMap<EndpointId, Interface>,
    opts: &HostOptions,
) -> Ruleset {
    render_cached(snapshot, ifaces, opts, &mut RenderCache::default())
}

/// [`render_with`], reusing the policy and profile chains of earlier renders
/// kept in `cache` (which then holds this render's).
pub fn render_cached(
    snapshot: &Snapshot,
    ifaces: &BTreeMap<EndpointId, Interface>,
    opts: &HostOptions,
    cache: &mut RenderCache,
) -> Ruleset {
    let mut r = Renderer {
        generation: u32::from(opts.generation.max(1)) << CT_GENERATION_SHIFT,
        cache: std::mem::take(cache),
        flow_log_group: opts.flow_log_group,
        ..Renderer::default()
    };
    let named_port_sets = named_port_set_ids(snapshot);
    for (id, members) in &snapshot.ip_sets {
        r.ip_set(id, members, named_port_sets.contains(id));
        for m in members {
            let (IpSetMember::Net(net) | IpSetMember::NamedPort { net, .. }) = m;
            r.nonempty.insert((id.clone(), Family::of(net)));
        }
    }
    let mut endpoints = Vec::new();
    let mut hosts = Vec::new();
    for program in &snapshot.programs {
        match (ifaces.get(&program.endpoint), &program.endpoint) {
            (Some(iface), EndpointId::Workload { .. }) => endpoints.push((iface, program)),
            (Some(iface), EndpointId::Host { .. }) => hosts.push((iface.name.as_str(), program)),
            (None, _) => r.out.unmapped.push(program.endpoint.clone()),
        }
    }
    // Sorted by interface so the ruleset (and its diff) is deterministic.
    endpoints.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    hosts.sort_by(|a, b| a.0.cmp(b.0));
    r.objects.push(NfListObject::Set(Box::new(Set {
        family: TABLE_FAMILY,
        table: TABLE_NAME.into(),
        name: KNOWN_IFACES_SET.into(),
        set_type: SetTypeValue::Single(SetType::Ifname),
        elem: (!endpoints.is_empty()).then(|| {
            endpoints
                .iter()
                .map(|(i, _)| s(&i.name))
                .collect::<Vec<_>>()
                .into()
        }),
        ..Set::default()
    })));
    let workloads: Vec<(&str, &std::sync::Arc<calico_policy::EndpointProgram>)> = endpoints
        .iter()
        .map(|(i, p)| (i.name.as_str(), *p))
        .collect();
    r.generation_chains();
    r.anti_spoofing(&endpoints.iter().map(|(i, _)| *i).collect::<Vec<_>>());
    r.base_chain(&workloads, opts);
    r.input_chain(&workloads, &hosts, opts);
    if !hosts.is_empty() {
        r.output_chain(&hosts, opts);
    }
    for (iface, program) in workloads.iter().chain(&hosts) {
        for direction in [Direction::Ingress, Direction::Egress] {
            r.endpoint_chain(
                iface,
                program.endpoint.to_string(),
                direction,
                program.direction(direction),
            );
        }
    }
    r.fail_closed_broken_policies();
    let used = std::mem::take(&mut r.cache_used);
    r.cache.chains.retain(|name, _| used.contains(name));
    *cache = std::mem::take(&mut r.cache);
    let mut out = r.out;
    // Chains and sets first: a rule may only refer to what already exists.
    out.objects = r.objects;
    out.objects.extend(r.rules);
    out
}

/// Ids of the sets whose members are (address, protocol, port) triples.
fn named_port_set_ids(snapshot: &Snapshot) -> HashSet<IpSetId> {
    let mut ids = HashSet::new();
    for p in &snapshot.programs {
        for d in [&p.ingress, &p.egress] {
            let rules = d
                .tiers
                .iter()
                .flat_map(|t| &t.policies)
                .flat_map(|p| &p.rules)
                .chain(d.profiles.iter().flat_map(|p| &p.rules));
            for rule in rules {
                ids.extend(
                    rule.ip_sets()
                        .filter(|s| s.named_port.is_some())
                        .map(|s| s.id.clone()),
                );
            }
        }
    }
    ids
}

/// The nft set name of an IP set for one family. Set ids are URL-safe
/// base64, possibly with an `n:` prefix; `:` is replaced to keep names that
/// also read back cleanly in `nft list` text.
pub fn set_name(id: &IpSetId, v6: bool) -> String {
    let prefix = if v6 { SET_V6_PREFIX } else { SET_V4_PREFIX };
    format!("{prefix}{}", id.0.replace(':', "."))
}

/// The two nft sets (IPv4, IPv6) of one IP set with these members, as
/// [`render`] writes them: for re-rendering only the sets whose members
/// changed.
pub fn ip_set_objects(
    id: &IpSetId,
    members: &BTreeSet<IpSetMember>,
    named_port: bool,
) -> Vec<NfListObject<'static>> {
    let mut r = Renderer::default();
    r.ip_set(id, members, named_port);
    r.objects
}

/// The chains that hold the policy generation, with their rules, as
/// [`render`] writes them for `generation`.
pub fn generation_objects(generation: u16) -> Vec<NfListObject<'static>> {
    let mut r = Renderer {
        generation: u32::from(generation.max(1)) << CT_GENERATION_SHIFT,
        ..Renderer::default()
    };
    r.generation_chains();
    let mut objects = r.objects;
    objects.append(&mut r.rules);
    objects
}

#[derive(Default)]
struct Renderer {
    /// The policy generation (see [`CT_GENERATION_MASK`]).
    generation: u32,
    out: Ruleset,
    objects: Vec<NfListObject<'static>>,
    rules: Vec<NfListObject<'static>>,
    /// Policy/profile chains already emitted (shared between endpoints).
    emitted: HashSet<String>,
    /// IP sets with at least one member of the family: a rule variant
    /// needing membership of an empty set can never match and is left out
    /// (the whole table is re-rendered whenever a set changes).
    nonempty: HashSet<(IpSetId, Family)>,
    /// Policy and profile chains with a rule that could not be rendered:
    /// they drop everything instead.
    broken: BTreeSet<String>,
    /// Policy and profile chains of earlier renders.
    cache: RenderCache,
    /// Chains taken from or put into the cache by this render.
    cache_used: HashSet<String>,
    /// See [`HostOptions::flow_log_group`].
    flow_log_group: Option<u16>,
}

/// The program a cached chain was rendered from.
#[derive(Debug, Clone)]
enum Program {
    Policy(std::sync::Arc<calico_policy::model::PolicyProgram>),
    Profile(std::sync::Arc<calico_policy::model::ProfileProgram>),
}

impl Program {
    fn same(&self, other: &Program) -> bool {
        match (self, other) {
            (Program::Policy(a), Program::Policy(b)) => std::sync::Arc::ptr_eq(a, b),
            (Program::Profile(a), Program::Profile(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn rules(&self) -> &[CompiledRule] {
        match self {
            Program::Policy(p) => &p.rules,
            Program::Profile(p) => &p.rules,
        }
    }
}

/// One policy or profile chain as rendered, with what it was rendered from.
#[derive(Debug, Clone)]
struct CachedChain {
    program: Program,
    /// Whether each set the rules refer to had members (per family): the
    /// variants rendered depend on it.
    sets: Vec<bool>,
    rules: Vec<NfListObject<'static>>,
    errors: Vec<String>,
    skipped: Vec<String>,
    broken: bool,
    /// The flow-log prefixes its rules carry.
    attributions: Vec<(String, Attribution)>,
}

/// Policy and profile chains kept between renders ([`render_cached`]): a
/// chain whose compiled program is the very same (the calculation shares
/// unchanged programs) and whose sets are as empty or not as before is
/// reused instead of rendered again. Most of a table is policy chains, so
/// a change renders little more than what it changed.
#[derive(Debug, Default, Clone)]
pub struct RenderCache {
    chains: std::collections::HashMap<String, CachedChain>,
}

impl Renderer {
    /// The statement logging a decided packet to the flow-log group under `who`'s
    /// prefix (nothing without flow logs). It goes before the verdict: `log` never
    /// ends a rule, so the verdict holds whether or not anyone listens.
    fn flow_log(&mut self, who: Attribution) -> Option<Statement<'static>> {
        let group = self.flow_log_group?;
        let prefix = who.log_prefix();
        self.out.attributions.insert(prefix.clone(), who);
        Some(Statement::Log(Some(Log {
            prefix: Some(Cow::Owned(prefix)),
            group: Some(u32::from(group)),
            // Enough for the IP header and the ports; the payload is never needed.
            snaplen: Some(FLOW_LOG_SNAPLEN),
            ..Log::new(None)
        })))
    }

    fn rule(&mut self, chain: &str, expr: Vec<Statement<'static>>, comment: String) {
        self.rules.push(rule_object(chain, expr, &comment));
    }

    fn chain(&mut self, name: &str) {
        self.objects.push(NfListObject::Chain(Chain {
            family: TABLE_FAMILY,
            table: TABLE_NAME.into(),
            name: Cow::Owned(name.to_owned()),
            ..Chain::default()
        }));
    }

    fn ip_set(&mut self, id: &IpSetId, members: &BTreeSet<IpSetMember>, named_port: bool) {
        for family in [Family::V4, Family::V6] {
            let (addr_type, name) = match family {
                Family::V4 => (SetType::Ipv4Addr, set_name(id, false)),
                Family::V6 => (SetType::Ipv6Addr, set_name(id, true)),
            };
            let elems: Vec<Expression<'static>> = if named_port {
                // Interval sets reject overlapping elements, so nets are
                // merged per (protocol, port) before they are listed.
                let mut by_port: BTreeMap<(u8, u16), Vec<IpNet>> = BTreeMap::new();
                for m in members {
                    if let IpSetMember::NamedPort {
                        net,
                        protocol,
                        port,
                    } = m
                        && Family::of(net) == family
                    {
                        by_port.entry((*protocol, *port)).or_default().push(*net);
                    }
                }
                by_port
                    .into_iter()
                    .flat_map(|((proto, port), nets)| {
                        IpNet::aggregate(&nets).into_iter().map(move |n| {
                            Expression::Named(NamedExpression::Concat(vec![
                                prefix(&n),
                                Expression::Number(u32::from(proto)),
                                Expression::Number(u32::from(port)),
                            ]))
                        })
                    })
                    .collect()
            } else {
                let nets: Vec<IpNet> = members
                    .iter()
                    .filter_map(|m| match m {
                        IpSetMember::Net(n) if Family::of(n) == family => Some(*n),
                        _ => None,
                    })
                    .collect();
                IpNet::aggregate(&nets).iter().map(prefix).collect()
            };
            let set_type = if named_port {
                SetTypeValue::Concatenated(
                    vec![addr_type, SetType::InetProto, SetType::InetService].into(),
                )
            } else {
                SetTypeValue::Single(addr_type)
            };
            self.objects.push(NfListObject::Set(Box::new(Set {
                family: TABLE_FAMILY,
                table: TABLE_NAME.into(),
                name: name.into(),
                set_type,
                flags: Some(std::collections::HashSet::from([SetFlag::Interval])),
                elem: (!elems.is_empty()).then(|| elems.into()),
                comment: Some(Cow::Owned(format!("ipset {id}"))),
                ..Set::default()
            })));
        }
    }
}
