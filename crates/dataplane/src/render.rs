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
pub const WORKLOAD_IFACE_PREFIX: &str = "cali";
/// Set of the interfaces that have endpoint chains.
pub const KNOWN_IFACES_SET: &str = "known-ifaces";
/// Prefix of the chain for traffic to a workload (its ingress policy).
pub const TO_ENDPOINT_PREFIX: &str = "to-";
/// Prefix of the chain for traffic from a workload (its egress policy).
pub const FROM_ENDPOINT_PREFIX: &str = "from-";
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

/// `KEY vmap { IFACE : jump PREFIX<IFACE>, ... }`: one hash lookup from an
/// interface to its chain, whatever the number of endpoints (nothing when
/// there are none: an empty map is not valid). The map is anonymous: the
/// `nftables` crate has no verdict type for named maps.
fn dispatch(key: MetaKey, ifaces: &[&str], prefix: &str) -> Option<Statement<'static>> {
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

fn ct(key: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.to_owned().into(),
        family: None,
        dir: None,
    }))
}

pub(crate) fn s(text: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(text.to_owned()))
}

fn meta(key: MetaKey) -> Expression<'static> {
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

fn mark_bit(bit: u32) -> Expression<'static> {
    Expression::BinaryOperation(Box::new(BinaryOperation::AND(
        meta(MetaKey::Mark),
        Expression::Number(bit),
    )))
}

/// `meta mark & bit != 0` (or `== 0`).
fn mark_test(bit: u32, set: bool) -> Statement<'static> {
    let op = if set { Operator::NEQ } else { Operator::EQ };
    matches(mark_bit(bit), op, Expression::Number(0))
}

/// `meta mark set meta mark | bit`.
fn mark_set(bit: u32) -> Statement<'static> {
    Statement::Mangle(Mangle {
        key: meta(MetaKey::Mark),
        value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
            meta(MetaKey::Mark),
            Expression::Number(bit),
        ]))),
    })
}

/// `meta mark set meta mark & !bits`.
fn mark_clear(bits: u32) -> Statement<'static> {
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

fn jump(target: &str) -> Statement<'static> {
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

fn port_set(ports: &[PortRange]) -> Expression<'static> {
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

fn net_set(nets: &[&IpNet]) -> Expression<'static> {
    match nets {
        [one] => prefix(one),
        _ => Expression::Named(NamedExpression::Set(
            nets.iter().map(|n| SetItem::Element(prefix(n))).collect(),
        )),
    }
}

/// Address family of one rendered variant of a rule.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
    fn proto(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
    fn nfproto(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// Which end of the packet a rule side matches.
#[derive(Clone, Copy)]
enum Side {
    Source,
    Destination,
}

impl Side {
    fn addr_field(self) -> &'static str {
        match self {
            Side::Source => "saddr",
            Side::Destination => "daddr",
        }
    }
    fn port(self) -> Expression<'static> {
        payload(
            "th",
            match self {
                Side::Source => "sport",
                Side::Destination => "dport",
            },
        )
    }
}

impl Renderer {
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

    /// The raw prerouting chain: a packet from a workload interface must
    /// carry one of the endpoint's own source addresses (or an IPv6
    /// link-local or unspecified one, for neighbour discovery), checked
    /// against the `ifname . addr` sets before conntrack sees it. An
    /// interface without an endpoint has no pairs, so all of it drops.
    fn anti_spoofing(&mut self, endpoints: &[&Interface]) {
        let link_local: IpNet = "fe80::/10".parse().unwrap_or_default();
        let unspecified: IpNet = "::/128".parse().unwrap_or_default();
        for (family, set, addr_type) in [
            (Family::V4, WL_SOURCES_V4_SET, SetType::Ipv4Addr),
            (Family::V6, WL_SOURCES_V6_SET, SetType::Ipv6Addr),
        ] {
            let mut elems = Vec::new();
            for iface in endpoints {
                let mut nets: Vec<IpNet> = iface
                    .sources
                    .iter()
                    .filter(|n| Family::of(n) == family)
                    .copied()
                    .collect();
                if family == Family::V6 {
                    nets.extend([link_local, unspecified]);
                }
                for net in IpNet::aggregate(&nets) {
                    elems.push(Expression::Named(NamedExpression::Concat(vec![
                        s(&iface.name),
                        prefix(&net),
                    ])));
                }
            }
            self.objects.push(NfListObject::Set(Box::new(Set {
                family: TABLE_FAMILY,
                table: TABLE_NAME.into(),
                name: set.into(),
                set_type: SetTypeValue::Concatenated(vec![SetType::Ifname, addr_type].into()),
                flags: Some(HashSet::from([SetFlag::Interval])),
                elem: (!elems.is_empty()).then(|| elems.into()),
                ..Set::default()
            })));
        }
        self.objects.push(base_chain_object(
            PREROUTING_CHAIN,
            NfHook::Prerouting,
            PREROUTING_PRIORITY,
        ));
        let wildcard = format!("{WORKLOAD_IFACE_PREFIX}*");
        for (family, set) in [
            (Family::V4, WL_SOURCES_V4_SET),
            (Family::V6, WL_SOURCES_V6_SET),
        ] {
            self.rule(
                PREROUTING_CHAIN,
                vec![
                    matches(meta(MetaKey::Iifname), Operator::EQ, s(&wildcard)),
                    matches(meta(MetaKey::Nfproto), Operator::EQ, s(family.nfproto())),
                    matches(
                        Expression::Named(NamedExpression::Concat(vec![
                            meta(MetaKey::Iifname),
                            payload(family.proto(), "saddr"),
                        ])),
                        Operator::NEQ,
                        s(&format!("@{set}")),
                    ),
                    counter(),
                    Statement::Drop(None),
                ],
                format!(
                    "anti-spoofing: {} source not of the sending workload",
                    family.nfproto()
                ),
            );
        }
    }

    fn base_chain(
        &mut self,
        endpoints: &[(&str, &std::sync::Arc<calico_policy::EndpointProgram>)],
        opts: &HostOptions,
    ) {
        self.objects.push(base_chain_object(
            FORWARD_CHAIN,
            NfHook::Forward,
            FORWARD_PRIORITY,
        ));
        self.conntrack_head(FORWARD_CHAIN, true);
        let wildcard = format!("{WORKLOAD_IFACE_PREFIX}*");
        let known = format!("@{KNOWN_IFACES_SET}");
        for key in [MetaKey::Iifname, MetaKey::Oifname] {
            self.rule(
                FORWARD_CHAIN,
                vec![
                    matches(meta(key), Operator::EQ, s(&wildcard)),
                    matches(meta(key), Operator::NEQ, s(&known)),
                    counter(),
                    Statement::Drop(None),
                ],
                format!(
                    "fail closed: {} workload interface without an endpoint",
                    if key == MetaKey::Iifname {
                        "from"
                    } else {
                        "to"
                    }
                ),
            );
        }
        self.workload_tunnel_drops(FORWARD_CHAIN, opts);
        // Sender's egress before receiver's ingress, as in Felix; one
        // verdict-map lookup each, whatever the number of endpoints.
        let ifaces: Vec<&str> = endpoints.iter().map(|(i, _)| *i).collect();
        if let Some(d) = dispatch(MetaKey::Iifname, &ifaces, FROM_ENDPOINT_PREFIX) {
            self.rule(
                FORWARD_CHAIN,
                vec![d],
                "egress of the sending workload".into(),
            );
        }
        if let Some(d) = dispatch(MetaKey::Oifname, &ifaces, TO_ENDPOINT_PREFIX) {
            self.rule(
                FORWARD_CHAIN,
                vec![d],
                "ingress of the receiving workload".into(),
            );
        }
        self.remember_generation(FORWARD_CHAIN);
    }

    /// Tunnel packets (VXLAN to our port, IP-in-IP) sent by a workload are
    /// dropped: once masqueraded they would look like they came from a
    /// Calico host (upstream drops them in every from-workload chain).
    fn workload_tunnel_drops(&mut self, chain: &str, opts: &HostOptions) {
        let wildcard = format!("{WORKLOAD_IFACE_PREFIX}*");
        if let Some(port) = opts.vxlan_port {
            self.rule(
                chain,
                vec![
                    matches(meta(MetaKey::Iifname), Operator::EQ, s(&wildcard)),
                    matches(
                        payload("udp", "dport"),
                        Operator::EQ,
                        Expression::Number(u32::from(port)),
                    ),
                    counter(),
                    Statement::Drop(None),
                ],
                "VXLAN from a workload".into(),
            );
        }
        self.rule(
            chain,
            vec![
                matches(meta(MetaKey::Iifname), Operator::EQ, s(&wildcard)),
                matches(meta(MetaKey::L4proto), Operator::EQ, Expression::Number(4)),
                counter(),
                Statement::Drop(None),
            ],
            "IP-in-IP from a workload".into(),
        );
    }

    /// The input chain: tunnels only from Calico hosts, then the fast path,
    /// then workload-to-host traffic (to [`WL_TO_HOST_CHAIN`]), then host
    /// endpoints' ingress with their failsafes.
    fn input_chain(
        &mut self,
        workloads: &[(&str, &std::sync::Arc<calico_policy::EndpointProgram>)],
        hosts: &[(&str, &std::sync::Arc<calico_policy::EndpointProgram>)],
        opts: &HostOptions,
    ) {
        let chain = INPUT_CHAIN;
        self.objects
            .push(base_chain_object(chain, NfHook::Input, FORWARD_PRIORITY));
        for (v6, set, addr_type) in [
            (false, CALICO_HOSTS_V4_SET, SetType::Ipv4Addr),
            (true, CALICO_HOSTS_V6_SET, SetType::Ipv6Addr),
        ] {
            let elems: Vec<Expression<'static>> = opts
                .calico_hosts
                .iter()
                .filter(|a| a.is_ipv6() == v6)
                .map(|a| s(&a.to_string()))
                .collect();
            self.objects.push(NfListObject::Set(Box::new(Set {
                family: TABLE_FAMILY,
                table: TABLE_NAME.into(),
                name: set.into(),
                set_type: SetTypeValue::Single(addr_type),
                elem: (!elems.is_empty()).then(|| elems.into()),
                ..Set::default()
            })));
        }
        for family in [Family::V4, Family::V6] {
            let set = match family {
                Family::V4 => CALICO_HOSTS_V4_SET,
                Family::V6 => CALICO_HOSTS_V6_SET,
            };
            let not_a_host = || {
                matches(
                    payload(family.proto(), "saddr"),
                    Operator::NEQ,
                    s(&format!("@{set}")),
                )
            };
            if let Some(port) = opts.vxlan_port {
                self.rule(
                    chain,
                    vec![
                        matches(meta(MetaKey::Nfproto), Operator::EQ, s(family.nfproto())),
                        matches(
                            payload("udp", "dport"),
                            Operator::EQ,
                            Expression::Number(u32::from(port)),
                        ),
                        not_a_host(),
                        counter(),
                        Statement::Drop(None),
                    ],
                    "VXLAN from a host that is not a Calico host".into(),
                );
            }
            if opts.ipip && family == Family::V4 {
                self.rule(
                    chain,
                    vec![
                        matches(meta(MetaKey::Nfproto), Operator::EQ, s(family.nfproto())),
                        matches(meta(MetaKey::L4proto), Operator::EQ, Expression::Number(4)),
                        not_a_host(),
                        counter(),
                        Statement::Drop(None),
                    ],
                    "IP-in-IP from a host that is not a Calico host".into(),
                );
            }
        }
        self.conntrack_head(chain, false);
        self.rule(
            chain,
            vec![
                matches(
                    meta(MetaKey::Iifname),
                    Operator::EQ,
                    s(&format!("{WORKLOAD_IFACE_PREFIX}*")),
                ),
                Statement::Goto(JumpTarget {
                    target: Cow::Borrowed(WL_TO_HOST_CHAIN),
                }),
            ],
            "from a workload to this host".into(),
        );
        self.workload_to_host(workloads, opts);
        if !hosts.is_empty() {
            self.host_endpoint_dispatch(chain, hosts, opts, Direction::Ingress);
        }
        self.remember_generation(chain);
    }

    /// Workload-to-host traffic: router advertisements and redirects drop,
    /// what a workload needs to talk to its gateway at all (neighbour
    /// discovery, MLD) passes, everything else goes through the workload's
    /// egress policy and then `DefaultEndpointToHostAction`.
    fn workload_to_host(
        &mut self,
        workloads: &[(&str, &std::sync::Arc<calico_policy::EndpointProgram>)],
        opts: &HostOptions,
    ) {
        let chain = WL_TO_HOST_CHAIN;
        self.chain(chain);
        let types = |list: &[u8]| {
            Expression::Named(NamedExpression::Set(
                list.iter()
                    .map(|t| SetItem::Element(Expression::Number(u32::from(*t))))
                    .collect(),
            ))
        };
        self.rule(
            chain,
            vec![
                matches(
                    payload("icmpv6", "type"),
                    Operator::EQ,
                    types(&ICMPV6_FROM_WORKLOAD_DROPPED),
                ),
                counter(),
                Statement::Drop(None),
            ],
            "router advertisement or redirect from a workload".into(),
        );
        self.rule(
            chain,
            vec![
                matches(
                    payload("icmp", "type"),
                    Operator::EQ,
                    Expression::Number(u32::from(ICMP_REDIRECT)),
                ),
                counter(),
                Statement::Drop(None),
            ],
            "ICMP redirect from a workload".into(),
        );
        self.rule(
            chain,
            vec![
                matches(
                    payload("icmpv6", "type"),
                    Operator::EQ,
                    types(&ICMPV6_TO_HOST),
                ),
                Statement::Accept(None),
            ],
            "neighbour discovery and MLD to the host".into(),
        );
        self.rule(
            chain,
            vec![
                matches(
                    meta(MetaKey::Iifname),
                    Operator::NEQ,
                    s(&format!("@{KNOWN_IFACES_SET}")),
                ),
                counter(),
                Statement::Drop(None),
            ],
            "fail closed: workload interface without an endpoint".into(),
        );
        self.workload_tunnel_drops(chain, opts);
        // The egress chain drops what its policy denies and returns what
        // it allows.
        let ifaces: Vec<&str> = workloads.iter().map(|(i, _)| *i).collect();
        if let Some(d) = dispatch(MetaKey::Iifname, &ifaces, FROM_ENDPOINT_PREFIX) {
            self.rule(chain, vec![d], "egress of the sending workload".into());
        }
        match opts.endpoint_to_host {
            EndpointToHostAction::Drop => self.rule(
                chain,
                vec![counter(), Statement::Drop(None)],
                "DefaultEndpointToHostAction Drop".into(),
            ),
            EndpointToHostAction::Accept => {
                self.remember_generation(chain);
                self.rule(
                    chain,
                    vec![Statement::Accept(None)],
                    "DefaultEndpointToHostAction Accept".into(),
                );
            }
            EndpointToHostAction::Return => self.rule(
                chain,
                vec![Statement::Return(None)],
                "DefaultEndpointToHostAction Return: other tables decide".into(),
            ),
        }
    }

    /// The first rules of a base chain: established flows allowed under the
    /// current policy generation pass; invalid ones drop (when asked);
    /// replies of flows allowed under an older policy pass, since their
    /// original direction is judged again below and a flow the new policy
    /// denies stops there.
    fn conntrack_head(&mut self, chain: &str, drop_invalid: bool) {
        let established = || {
            matches(
                ct("state"),
                Operator::IN,
                Expression::List(vec![s("established"), s("related")]),
            )
        };
        self.rule(
            chain,
            vec![jump(GEN_FAST_CHAIN)],
            "fast path: flow allowed under the current policy".into(),
        );
        if drop_invalid {
            self.rule(
                chain,
                vec![
                    matches(ct("state"), Operator::IN, s("invalid")),
                    counter(),
                    Statement::Drop(None),
                ],
                "invalid conntrack state".into(),
            );
        }
        self.rule(
            chain,
            vec![
                established(),
                matches(ct("direction"), Operator::EQ, s("reply")),
                Statement::Accept(None),
            ],
            "reply of an established flow".into(),
        );
    }

    /// The two one-rule chains that hold the policy generation, so a new
    /// generation rewrites them alone: [`GEN_FAST_CHAIN`] accepts an
    /// established flow allowed under it, [`GEN_REMEMBER_CHAIN`] stamps it
    /// on a flow every endpoint chain allowed.
    fn generation_chains(&mut self) {
        self.chain(GEN_FAST_CHAIN);
        self.rule(
            GEN_FAST_CHAIN,
            vec![
                matches(
                    ct("state"),
                    Operator::IN,
                    Expression::List(vec![s("established"), s("related")]),
                ),
                matches(
                    Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                        ct("mark"),
                        Expression::Number(CT_GENERATION_MASK),
                    ))),
                    Operator::EQ,
                    Expression::Number(self.generation),
                ),
                Statement::Accept(None),
            ],
            "established flow allowed under the current policy generation".into(),
        );
        self.chain(GEN_REMEMBER_CHAIN);
        self.rule(
            GEN_REMEMBER_CHAIN,
            vec![Statement::Mangle(Mangle {
                key: ct("mark"),
                value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
                    Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                        ct("mark"),
                        Expression::Number(!CT_GENERATION_MASK),
                    ))),
                    Expression::Number(self.generation),
                ]))),
            })],
            "stamp the current policy generation".into(),
        );
    }

    /// The last rule of a base chain, reached only by what every endpoint
    /// chain allowed: the flow is good under this policy generation.
    fn remember_generation(&mut self, chain: &str) {
        self.rule(
            chain,
            vec![jump(GEN_REMEMBER_CHAIN)],
            "remember the policy generation the flow was allowed under".into(),
        );
    }

    /// The output chain, present with host endpoints: failsafe ports and
    /// the tunnel to Calico hosts pass, then each host interface's egress.
    fn output_chain(
        &mut self,
        hosts: &[(&str, &std::sync::Arc<calico_policy::EndpointProgram>)],
        opts: &HostOptions,
    ) {
        self.objects.push(base_chain_object(
            OUTPUT_CHAIN,
            NfHook::Output,
            FORWARD_PRIORITY,
        ));
        self.conntrack_head(OUTPUT_CHAIN, false);
        self.host_endpoint_dispatch(OUTPUT_CHAIN, hosts, opts, Direction::Egress);
        self.remember_generation(OUTPUT_CHAIN);
    }

    /// Host endpoint policing in a base chain: failsafe ports and the VXLAN
    /// tunnel between Calico hosts always pass (the tunnel's sources were
    /// checked above), then each host interface's program.
    fn host_endpoint_dispatch(
        &mut self,
        chain: &str,
        hosts: &[(&str, &std::sync::Arc<calico_policy::EndpointProgram>)],
        opts: &HostOptions,
        direction: Direction,
    ) {
        let (key, failsafe, prefix, what) = match direction {
            Direction::Ingress => (
                MetaKey::Iifname,
                &opts.failsafe_inbound,
                TO_ENDPOINT_PREFIX,
                "ingress",
            ),
            Direction::Egress => (
                MetaKey::Oifname,
                &opts.failsafe_outbound,
                FROM_ENDPOINT_PREFIX,
                "egress",
            ),
        };
        for proto in [L4Protocol::Tcp, L4Protocol::Udp] {
            let ports: Vec<PortRange> = failsafe
                .iter()
                .filter(|f| f.protocol == proto)
                .map(|f| PortRange {
                    min: f.port,
                    max: f.port,
                })
                .collect();
            if !ports.is_empty() {
                self.rule(
                    chain,
                    vec![
                        matches(
                            payload(proto.name(), "dport"),
                            Operator::EQ,
                            port_set(&ports),
                        ),
                        Statement::Accept(None),
                    ],
                    format!("failsafe {} ports", proto.name()),
                );
            }
        }
        if let Some(port) = opts.vxlan_port {
            self.rule(
                chain,
                vec![
                    matches(
                        payload("udp", "dport"),
                        Operator::EQ,
                        Expression::Number(u32::from(port)),
                    ),
                    Statement::Accept(None),
                ],
                "VXLAN between hosts".into(),
            );
        }
        let ifaces: Vec<&str> = hosts.iter().map(|(i, _)| *i).collect();
        if let Some(d) = dispatch(key, &ifaces, prefix) {
            self.rule(chain, vec![d], format!("{what} of the host endpoint"));
        }
    }

    fn endpoint_chain(
        &mut self,
        iface: &str,
        endpoint: String,
        direction: Direction,
        program: &calico_policy::model::DirectionProgram,
    ) {
        let (chain, policy_prefix, profile_prefix) = match direction {
            Direction::Ingress => (
                format!("{TO_ENDPOINT_PREFIX}{iface}"),
                POLICY_INGRESS_PREFIX,
                PROFILE_INGRESS_PREFIX,
            ),
            Direction::Egress => (
                format!("{FROM_ENDPOINT_PREFIX}{iface}"),
                POLICY_EGRESS_PREFIX,
                PROFILE_EGRESS_PREFIX,
            ),
        };
        self.chain(&chain);
        self.out
            .units
            .push((chain.clone(), format!("{direction} of {endpoint}")));
        self.rule(
            &chain,
            vec![mark_clear(MARK_ACCEPT | MARK_PASS)],
            format!("{direction} of {endpoint}: start undecided"),
        );
        for tier in &program.tiers {
            for policy in &tier.policies {
                let name = policy.display_name();
                let target = chain_name(policy_prefix, &format!("{}/{name}", tier.tier));
                if self.emitted.insert(target.clone()) {
                    self.chain(&target);
                    let what = format!("tier {} policy {name}", tier.tier);
                    self.out.units.push((target.clone(), what.clone()));
                    self.program_chain(&target, &what, Program::Policy(policy.clone()));
                }
                // After a Pass the rest of the tier is skipped.
                self.rule(
                    &chain,
                    vec![mark_test(MARK_PASS, false), jump(&target)],
                    format!("tier {} policy {name}", tier.tier),
                );
                self.rule(
                    &chain,
                    vec![mark_test(MARK_ACCEPT, true), Statement::Return(None)],
                    format!("allowed by policy {name}"),
                );
            }
            if tier.end_of_tier == EndOfTier::Deny {
                self.rule(
                    &chain,
                    vec![
                        mark_test(MARK_PASS, false),
                        counter(),
                        Statement::Drop(None),
                    ],
                    format!("tier {}: end of tier, no policy decided", tier.tier),
                );
            }
            self.rule(
                &chain,
                vec![mark_clear(MARK_PASS)],
                format!("tier {}: passed", tier.tier),
            );
        }
        for profile in &program.profiles {
            let target = chain_name(profile_prefix, &profile.name);
            if self.emitted.insert(target.clone()) {
                self.chain(&target);
                let what = format!("profile {}", profile.name);
                self.out.units.push((target.clone(), what.clone()));
                self.program_chain(&target, &what, Program::Profile(profile.clone()));
            }
            self.rule(
                &chain,
                vec![jump(&target)],
                format!("profile {}", profile.name),
            );
            self.rule(
                &chain,
                vec![mark_test(MARK_ACCEPT, true), Statement::Return(None)],
                format!("allowed by profile {}", profile.name),
            );
        }
        self.rule(
            &chain,
            vec![counter(), Statement::Drop(None)],
            format!("{direction} of {endpoint}: no policy or profile allowed"),
        );
    }

    /// Emits a policy's or profile's chain: from the cache when it was
    /// rendered from the same program with the same sets empty, else anew
    /// (and cached).
    fn program_chain(&mut self, chain: &str, what: &str, program: Program) {
        let sets: Vec<bool> = program
            .rules()
            .iter()
            .flat_map(CompiledRule::ip_sets)
            .flat_map(|r| {
                [Family::V4, Family::V6].map(|f| self.nonempty.contains(&(r.id.clone(), f)))
            })
            .collect();
        self.cache_used.insert(chain.to_owned());
        if let Some(c) = self.cache.chains.get(chain)
            && c.program.same(&program)
            && c.sets == sets
        {
            self.rules.extend(c.rules.iter().cloned());
            self.out.errors.extend(c.errors.iter().cloned());
            self.out.skipped_rules.extend(c.skipped.iter().cloned());
            if c.broken {
                self.broken.insert(chain.to_owned());
            }
            return;
        }
        let (rules, errors, skipped) = (
            self.rules.len(),
            self.out.errors.len(),
            self.out.skipped_rules.len(),
        );
        let policy = matches!(program, Program::Policy(_));
        self.rules_chain(chain, what, program.rules(), policy);
        let cached = CachedChain {
            sets,
            rules: self.rules[rules..].to_vec(),
            errors: self.out.errors[errors..].to_vec(),
            skipped: self.out.skipped_rules[skipped..].to_vec(),
            broken: self.broken.contains(chain),
            program,
        };
        self.cache.chains.insert(chain.to_owned(), cached);
    }

    /// Emits a policy's or profile's rules into `chain`; falling off its end
    /// returns undecided.
    fn rules_chain(&mut self, chain: &str, what: &str, rules: &[CompiledRule], policy: bool) {
        for (i, rule) in rules.iter().enumerate() {
            let comment = format!("{what} rule {i} {}", rule.action);
            if rule.never_matches() {
                self.out.skipped_rules.push(format!(
                    "{what} rule {i}: unsupported {}",
                    rule.unsupported.join(", ")
                ));
                continue;
            }
            let verdict: Vec<Statement<'static>> = match rule.action {
                Action::Allow => vec![mark_set(MARK_ACCEPT), Statement::Return(None)],
                Action::Deny => vec![Statement::Drop(None)],
                // In a policy Pass skips to the next tier; in a profile it
                // leaves for the next profile (upstream's profile chains).
                Action::Pass if policy => vec![mark_set(MARK_PASS), Statement::Return(None)],
                Action::Pass => vec![Statement::Return(None)],
                Action::Log => vec![Statement::Log(Some(Log {
                    prefix: Some(Cow::Owned(LOG_PREFIX.to_owned())),
                    ..Log::new(None)
                }))],
            };
            match match_variants(rule, &self.nonempty) {
                Ok(variants) => {
                    for mut expr in variants {
                        expr.push(counter());
                        expr.extend(verdict.iter().cloned());
                        self.rule(chain, expr, comment.clone());
                    }
                }
                Err(why) => {
                    self.out.errors.push(format!(
                        "{what} rule {i}: {why}; the {what} drops everything"
                    ));
                    self.broken.insert(chain.to_owned());
                }
            }
        }
    }

    /// Replaces the rules of every chain with an unrenderable rule by one
    /// drop: the policy fails closed for the endpoints it applies to.
    fn fail_closed_broken_policies(&mut self) {
        if self.broken.is_empty() {
            return;
        }
        let broken = std::mem::take(&mut self.broken);
        self.rules.retain(
            |r| !matches!(r, NfListObject::Rule(rule) if broken.contains(rule.chain.as_ref())),
        );
        for chain in &broken {
            self.rule(
                chain,
                vec![counter(), Statement::Drop(None)],
                "fail closed: a rule of this policy could not be rendered".into(),
            );
        }
    }
}

/// The match statements of a rule, as alternatives (any one matching means
/// the rule matches): one per address family the rule needs, times one per
/// port alternative (numeric ranges, or each named-port set) of each side.
fn match_variants(
    rule: &CompiledRule,
    nonempty: &HashSet<(IpSetId, Family)>,
) -> Result<Vec<Vec<Statement<'static>>>, String> {
    let mut common = Vec::new();
    if let Some(p) = rule.protocol {
        common.push(matches(
            meta(MetaKey::L4proto),
            Operator::EQ,
            Expression::Number(u32::from(p)),
        ));
    }
    if let Some(p) = rule.not_protocol {
        common.push(matches(
            meta(MetaKey::L4proto),
            Operator::NEQ,
            Expression::Number(u32::from(p)),
        ));
    }
    for (icmp, op) in [(&rule.icmp, Operator::EQ), (&rule.not_icmp, Operator::NEQ)] {
        let Some(icmp) = icmp else { continue };
        let proto = match rule.protocol {
            Some(1) => "icmp",
            Some(58) => "icmpv6",
            _ => return Err("icmp match without protocol ICMP or ICMPv6".into()),
        };
        // notICMP {type, code} means "not (this type and this code)": one
        // match of the concatenation against an anonymous set says exactly
        // that (two `!=` matches would mean "neither").
        if let (Operator::NEQ, Some(t), Some(c)) = (op, icmp.icmp_type, icmp.code) {
            common.push(matches(
                Expression::Named(NamedExpression::Concat(vec![
                    payload(proto, "type"),
                    payload(proto, "code"),
                ])),
                Operator::NEQ,
                Expression::Named(NamedExpression::Set(vec![SetItem::Element(
                    Expression::Named(NamedExpression::Concat(vec![
                        Expression::Number(u32::from(t)),
                        Expression::Number(u32::from(c)),
                    ])),
                )])),
            ));
            continue;
        }
        if let Some(t) = icmp.icmp_type {
            common.push(matches(
                payload(proto, "type"),
                op,
                Expression::Number(u32::from(t)),
            ));
        }
        if let Some(c) = icmp.code {
            common.push(matches(
                payload(proto, "code"),
                op,
                Expression::Number(u32::from(c)),
            ));
        }
    }
    let addressed = |e: &EntityMatch| {
        !e.nets.is_empty()
            || !e.not_nets.is_empty()
            || e.selector.is_some()
            || e.not_selector.is_some()
            || !e.named_ports.is_empty()
            || !e.not_named_ports.is_empty()
    };
    let families: Vec<Option<Family>> = if addressed(&rule.source) || addressed(&rule.destination) {
        [Family::V4, Family::V6]
            .into_iter()
            .filter(|f| match rule.ip_version {
                Some(4) => *f == Family::V4,
                Some(6) => *f == Family::V6,
                _ => true,
            })
            // A side listing only nets of the other family cannot match.
            .filter(|f| {
                [&rule.source, &rule.destination].iter().all(|e| {
                    (e.nets.is_empty() || e.nets.iter().any(|n| Family::of(n) == *f))
                        && e.selector
                            .as_ref()
                            .is_none_or(|r| nonempty.contains(&(r.id.clone(), *f)))
                })
            })
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let mut variants = Vec::new();
    for family in families {
        let mut base = common.clone();
        match (family, rule.ip_version) {
            (Some(f), _) => base.push(matches(
                meta(MetaKey::Nfproto),
                Operator::EQ,
                s(f.nfproto()),
            )),
            (None, Some(4)) => base.push(matches(meta(MetaKey::Nfproto), Operator::EQ, s("ipv4"))),
            (None, Some(6)) => base.push(matches(meta(MetaKey::Nfproto), Operator::EQ, s("ipv6"))),
            (None, _) => {}
        }
        let mut alternatives = vec![base];
        for (side, e) in [
            (Side::Source, &rule.source),
            (Side::Destination, &rule.destination),
        ] {
            let (fixed, ports) = side_matches(side, e, family, nonempty);
            let mut next = Vec::new();
            for a in &alternatives {
                for p in &ports {
                    let mut v = a.clone();
                    v.extend(fixed.iter().cloned());
                    v.extend(p.iter().cloned());
                    next.push(v);
                }
            }
            alternatives = next;
        }
        variants.extend(alternatives);
    }
    Ok(variants)
}

/// One side's conjunctive matches, and its port alternatives (at least one,
/// possibly empty).
fn side_matches(
    side: Side,
    e: &EntityMatch,
    family: Option<Family>,
    nonempty: &HashSet<(IpSetId, Family)>,
) -> (Vec<Statement<'static>>, Vec<Vec<Statement<'static>>>) {
    let mut fixed = Vec::new();
    let mut alternatives = Vec::new();
    let Some(family) = family else {
        // No address criteria on either side: only port ranges can remain.
        if !e.ports.is_empty() {
            fixed.push(matches(side.port(), Operator::EQ, port_set(&e.ports)));
        }
        if !e.not_ports.is_empty() {
            fixed.push(matches(side.port(), Operator::NEQ, port_set(&e.not_ports)));
        }
        return (fixed, vec![Vec::new()]);
    };
    let addr = payload(family.proto(), side.addr_field());
    let v6 = family == Family::V6;
    let nets: Vec<&IpNet> = e.nets.iter().filter(|n| Family::of(n) == family).collect();
    if !nets.is_empty() {
        fixed.push(matches(addr.clone(), Operator::EQ, net_set(&nets)));
    }
    let not_nets: Vec<&IpNet> = e
        .not_nets
        .iter()
        .filter(|n| Family::of(n) == family)
        .collect();
    if !not_nets.is_empty() {
        fixed.push(matches(addr.clone(), Operator::NEQ, net_set(&not_nets)));
    }
    let set_ref = |r: &IpSetRef| s(&format!("@{}", set_name(&r.id, v6)));
    if let Some(r) = &e.selector {
        fixed.push(matches(addr.clone(), Operator::EQ, set_ref(r)));
    }
    if let Some(r) = &e.not_selector {
        fixed.push(matches(addr.clone(), Operator::NEQ, set_ref(r)));
    }
    let triple = || {
        Expression::Named(NamedExpression::Concat(vec![
            addr.clone(),
            meta(MetaKey::L4proto),
            side.port(),
        ]))
    };
    if !e.not_ports.is_empty() {
        fixed.push(matches(side.port(), Operator::NEQ, port_set(&e.not_ports)));
    }
    for r in &e.not_named_ports {
        fixed.push(matches(triple(), Operator::NEQ, set_ref(r)));
    }
    // The port must be in one of the ranges or one of the named-port sets:
    // a disjunction, so each is its own rule.
    if !e.ports.is_empty() {
        alternatives.push(vec![matches(side.port(), Operator::EQ, port_set(&e.ports))]);
    }
    for r in &e.named_ports {
        if !nonempty.contains(&(r.id.clone(), family)) {
            continue;
        }
        alternatives.push(vec![matches(triple(), Operator::EQ, set_ref(r))]);
    }
    // Only named ports, all with empty sets: nothing can match.
    if alternatives.is_empty() && e.named_ports.is_empty() {
        alternatives.push(Vec::new());
    }
    (fixed, alternatives)
}
