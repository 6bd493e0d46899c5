//! The compiled, dataplane-neutral form of policy: what a dataplane (or the
//! trace evaluator in [`crate::eval`]) needs to enforce it, with selectors
//! already turned into references to IP sets.
//!
//! Rules are numbered from 0, as in Calico: the rule index a trace reports
//! is the rule's position in the `rules` vector (`rule 0` is the first).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use calico_api::numorstring::{Port, Protocol};
use calico_api::v3::{EntityRule, ICMPFields, Rule};
use calico_selector::Selector;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Label every namespaced item carries with its namespace's name.
pub const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
/// Label every workload endpoint carries with its orchestrator.
pub const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
/// The one namespace label we know (there are no Namespace resources here):
/// a namespace is labelled `projectcalico.org/name: <namespace>`.
pub const NAMESPACE_NAME_LABEL: &str = "projectcalico.org/name";
/// Prefix under which namespace labels are copied onto namespaced items, so
/// that a `namespaceSelector` can be folded into an ordinary selector
/// (upstream's `pcns.` convention).
pub const NAMESPACE_LABEL_PREFIX: &str = "pcns.";

/// Traffic direction, relative to the endpoint whose program it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Direction {
    /// Traffic arriving at the endpoint.
    #[serde(rename = "ingress")]
    Ingress,
    /// Traffic leaving the endpoint.
    #[serde(rename = "egress")]
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Accept the packet; evaluation stops.
    #[serde(rename = "Allow")]
    Allow,
    /// Drop the packet; evaluation stops.
    #[serde(rename = "Deny")]
    Deny,
    /// Log and carry on with the next rule.
    #[serde(rename = "Log")]
    Log,
    /// Skip the rest of this tier; continue with the next tier (or profiles).
    #[serde(rename = "Pass")]
    Pass,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
            Action::Log => "Log",
            Action::Pass => "Pass",
        })
    }
}

/// What happens to traffic that reaches the end of a tier undecided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EndOfTier {
    /// Drop it (the default).
    #[serde(rename = "Deny")]
    Deny,
    /// Continue with the next tier, or the profiles after the last tier.
    #[serde(rename = "Pass")]
    Pass,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    #[serde(rename = "min")]
    pub min: u16,
    /// Last port.
    #[serde(rename = "max")]
    pub max: u16,
}

impl PortRange {
    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.min..=self.max).contains(&port)
    }
}

/// An IP set's id: a short stable hash of what defines its contents, so
/// equal selectors in different rules share one set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IpSetId(pub Arc<str>);

impl fmt::Display for IpSetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The named-port part of a named-port IP set's definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NamedPort {
    /// The port name, as the endpoints' `ports` list it.
    #[serde(rename = "name")]
    pub name: Arc<str>,
    /// The rule's protocol number; `None` accepts a port of that name with
    /// any protocol.
    #[serde(rename = "protocol")]
    pub protocol: Option<u8>,
}

/// A reference from a rule to an IP set, with what defines the set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IpSetRef {
    /// The set's id.
    #[serde(rename = "id")]
    pub id: IpSetId,
    /// The (scoped) selector whose matches are the members, canonical form.
    #[serde(rename = "selector")]
    pub selector: Arc<str>,
    /// For a named-port set: members are (ip, protocol, port) of the
    /// matching endpoints' ports with this name.
    #[serde(rename = "namedPort", default, skip_serializing_if = "Option::is_none")]
    pub named_port: Option<NamedPort>,
}

/// An IP set member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IpSetMember {
    /// An address or CIDR (endpoint address, network set net).
    #[serde(rename = "net")]
    Net(IpNet),
    /// An endpoint's address with one of its named ports.
    #[serde(rename = "namedPort")]
    NamedPort {
        /// The endpoint's address.
        #[serde(rename = "net")]
        net: IpNet,
        /// The port's protocol number.
        #[serde(rename = "protocol")]
        protocol: u8,
        /// The port number.
        #[serde(rename = "port")]
        port: u16,
    },
}

impl fmt::Display for IpSetMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpSetMember::Net(net) => write!(f, "{net}"),
            IpSetMember::NamedPort {
                net,
                protocol,
                port,
            } => write!(f, "{net},{protocol}:{port}"),
        }
    }
}

/// ICMP type (and optionally code) to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IcmpMatch {
    /// ICMP type; `None` matches any.
    #[serde(rename = "type")]
    pub icmp_type: Option<u8>,
    /// ICMP code; `None` matches any.
    #[serde(rename = "code")]
    pub code: Option<u8>,
}

/// The source or destination half of a compiled rule. Every non-empty
/// criterion must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityMatch {
    /// The address must be in one of these.
    #[serde(rename = "nets", default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<IpNet>,
    /// The address must be in none of these.
    #[serde(rename = "notNets", default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<IpNet>,
    /// The port must be in one of these ranges or one of `named_ports`.
    #[serde(rename = "ports", default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
    /// Named-port sets: (address, protocol, port) must be in one of them
    /// (or the port in one of `ports`).
    #[serde(rename = "namedPorts", default, skip_serializing_if = "Vec::is_empty")]
    pub named_ports: Vec<IpSetRef>,
    /// The port must be in none of these ranges, nor any `not_named_ports`.
    #[serde(rename = "notPorts", default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<PortRange>,
    /// Named-port sets that (address, protocol, port) must not be in.
    #[serde(
        rename = "notNamedPorts",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_named_ports: Vec<IpSetRef>,
    /// The address must be in this set (the selector, namespace scoping
    /// and namespaceSelector folded into one).
    #[serde(rename = "selector", default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<IpSetRef>,
    /// The address must not be in this set.
    #[serde(
        rename = "notSelector",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_selector: Option<IpSetRef>,
}

impl EntityMatch {
    /// Every IP set the half refers to.
    pub fn ip_sets(&self) -> impl Iterator<Item = &IpSetRef> {
        self.named_ports
            .iter()
            .chain(&self.not_named_ports)
            .chain(&self.selector)
            .chain(&self.not_selector)
    }
}

/// A compiled rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledRule {
    /// The action when the rule matches.
    #[serde(rename = "action")]
    pub action: Action,
    /// 4 or 6: only packets of that IP version match.
    #[serde(rename = "ipVersion", default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    /// The packet's protocol must be this.
    #[serde(rename = "protocol", default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// The packet's protocol must not be this.
    #[serde(
        rename = "notProtocol",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_protocol: Option<u8>,
    /// The packet must be ICMP with this type/code.
    #[serde(rename = "icmp", default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpMatch>,
    /// The packet must not be ICMP with this type/code.
    #[serde(rename = "notICMP", default, skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpMatch>,
    /// Source criteria.
    #[serde(rename = "source")]
    pub source: EntityMatch,
    /// Destination criteria.
    #[serde(rename = "destination")]
    pub destination: EntityMatch,
    /// Match criteria this implementation cannot enforce (e.g. `http`,
    /// `source.serviceAccounts`). Fail closed: a rule with any never matches
    /// unless it is a `Deny`, which matches on its remaining criteria.
    #[serde(rename = "unsupported", default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<String>,
}

impl CompiledRule {
    /// Whether the rule is disabled because of unsupported criteria.
    pub fn never_matches(&self) -> bool {
        !self.unsupported.is_empty() && self.action != Action::Deny
    }

    /// Every IP set the rule refers to.
    pub fn ip_sets(&self) -> impl Iterator<Item = &IpSetRef> {
        self.source.ip_sets().chain(self.destination.ip_sets())
    }
}

/// One policy's rules for one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyProgram {
    /// The policy's name.
    #[serde(rename = "name")]
    pub name: String,
    /// The namespace of a NetworkPolicy; `None` for a GlobalNetworkPolicy.
    #[serde(rename = "namespace", default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The rules, in order.
    #[serde(rename = "rules")]
    pub rules: Vec<CompiledRule>,
}

impl PolicyProgram {
    /// `namespace/name` or `name`, as people refer to the policy.
    pub fn display_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The policies of one tier that apply to an endpoint in one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierProgram {
    /// The tier's name.
    #[serde(rename = "tier")]
    pub tier: String,
    /// The policies, in evaluation order.
    #[serde(rename = "policies")]
    pub policies: Vec<Arc<PolicyProgram>>,
    /// What happens when no rule of the tier decided.
    #[serde(rename = "endOfTier")]
    pub end_of_tier: EndOfTier,
}

/// One profile's rules for one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileProgram {
    /// The profile's name.
    #[serde(rename = "name")]
    pub name: String,
    /// The rules, in order (empty for a profile that does not exist).
    #[serde(rename = "rules")]
    pub rules: Vec<CompiledRule>,
}

/// What an endpoint does in one direction: tiers, then profiles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionProgram {
    /// The tiers with at least one policy that applies, in order.
    #[serde(rename = "tiers")]
    pub tiers: Vec<TierProgram>,
    /// The endpoint's profiles, in order, consulted when no tier applies or
    /// the last tier passed.
    #[serde(rename = "profiles")]
    pub profiles: Vec<Arc<ProfileProgram>>,
}

/// Identifies an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EndpointId {
    /// A WorkloadEndpoint.
    #[serde(rename = "workload")]
    Workload {
        /// Its namespace.
        #[serde(rename = "namespace")]
        namespace: String,
        /// Its name.
        #[serde(rename = "name")]
        name: String,
    },
    /// A HostEndpoint.
    #[serde(rename = "host")]
    Host {
        /// Its name.
        #[serde(rename = "name")]
        name: String,
    },
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointId::Workload { namespace, name } => {
                write!(f, "workloadendpoint {namespace}/{name}")
            }
            EndpointId::Host { name } => write!(f, "hostendpoint {name}"),
        }
    }
}

/// The complete program of one local endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointProgram {
    /// The endpoint.
    #[serde(rename = "endpoint")]
    pub endpoint: EndpointId,
    /// Ingress program.
    #[serde(rename = "ingress")]
    pub ingress: DirectionProgram,
    /// Egress program.
    #[serde(rename = "egress")]
    pub egress: DirectionProgram,
}

impl EndpointProgram {
    /// The program for `direction`.
    pub fn direction(&self, direction: Direction) -> &DirectionProgram {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// Why a rule or resource could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A selector did not parse.
    #[error("{field}: invalid selector {text:?}: {source}")]
    Selector {
        /// Which field.
        field: String,
        /// The selector text.
        text: String,
        /// The parse error.
        source: Box<calico_selector::ParseError>,
    },
    /// A CIDR or address did not parse.
    #[error("{field}: invalid network {text:?}")]
    Net {
        /// Which field.
        field: String,
        /// The text.
        text: String,
    },
    /// An unknown action.
    #[error("{field}: unknown action {text:?}")]
    Action {
        /// Which field.
        field: String,
        /// The text.
        text: String,
    },
    /// A protocol with no number.
    #[error("{field}: unknown protocol {text:?}")]
    Protocol {
        /// Which field.
        field: String,
        /// The text.
        text: String,
    },
    /// A value out of range (ipVersion, ICMP type/code).
    #[error("{field}: value {value} out of range")]
    Range {
        /// Which field.
        field: String,
        /// The value.
        value: i64,
    },
}

/// Parses an address or CIDR, normalising to the network address.
pub fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .map(|n| n.trunc())
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Where in a resource a value is, e.g. `spec.ingress[0].source.selector`.
/// Formatted only when an error names it: a snapshot compiles hundreds of
/// thousands of fields, and formatting each path up front was a fifth of
/// the cost of compiling.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FieldPath<'a> {
    /// A top-level field such as `spec.ingress`.
    Root(&'a str),
    /// An element of a list field.
    Index(&'a FieldPath<'a>, usize),
    /// A field of a struct field.
    Field(&'a FieldPath<'a>, &'a str),
}

impl<'a> FieldPath<'a> {
    /// Element `i` of this list.
    pub(crate) fn index(&'a self, i: usize) -> FieldPath<'a> {
        FieldPath::Index(self, i)
    }

    /// Field `name` of this struct.
    pub(crate) fn field(&'a self, name: &'a str) -> FieldPath<'a> {
        FieldPath::Field(self, name)
    }
}

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Root(name) => f.write_str(name),
            FieldPath::Index(parent, i) => write!(f, "{parent}[{i}]"),
            FieldPath::Field(parent, name) => write!(f, "{parent}.{name}"),
        }
    }
}

/// Parses `text` as a selector, naming `field` on error.
pub(crate) fn parse_selector(
    field: impl fmt::Display,
    text: &str,
) -> Result<Selector, CompileError> {
    calico_selector::parse_shared(text).map_err(|source| CompileError::Selector {
        field: field.to_string(),
        text: text.to_owned(),
        source: Box::new(source),
    })
}

/// Folds a `namespaceSelector` into a selector over item labels: namespace
/// labels live on namespaced items under [`NAMESPACE_LABEL_PREFIX`], and
/// `global()` means "not namespaced".
pub(crate) fn namespace_selector(
    field: impl fmt::Display,
    text: &str,
) -> Result<Selector, CompileError> {
    let sel = parse_selector(&field, text)?;
    if sel.canonical() == "global()" {
        return parse_selector(field, &format!("!has({LABEL_NAMESPACE})"));
    }
    Ok(sel.with_label_prefix(NAMESPACE_LABEL_PREFIX))
}

/// `(a) && (b)`, with `all()` operands dropped.
pub(crate) fn and(a: &Selector, b: &Selector) -> Selector {
    match (a.canonical(), b.canonical()) {
        ("all()", _) => b.clone(),
        (_, "all()") => a.clone(),
        (x, y) => calico_selector::parse_shared(&format!("({x}) && ({y})"))
            .expect("the conjunction of two canonical selectors parses"),
    }
}

/// The selector `projectcalico.org/namespace == "<ns>"`.
pub(crate) fn in_namespace(ns: &str) -> Selector {
    calico_selector::parse_shared(&format!("{LABEL_NAMESPACE} == \"{ns}\""))
        .expect("namespace names are label values")
}

/// Builds [`IpSetRef`]s, sharing ids and strings between equal selectors:
/// rules of thousands of policies typically use a few distinct selectors.
#[derive(Debug, Default)]
pub(crate) struct IpSetInterner {
    by_key: foldhash::HashMap<(Box<str>, Option<NamedPort>), IpSetRef>,
    /// Selector texts known to parse: checking a deferred policy needs no
    /// parse of a selector seen before (100,000 namespaces' isolation
    /// policies typically share a handful of selector texts).
    valid: foldhash::HashSet<Box<str>>,
    /// The selector and notSelector sets of a rule side without named
    /// ports, by what defines them (see [`entity_key`]): 10,000 policies
    /// whose rules use 31 distinct selectors parse 31 selectors, not 50,000.
    entities: foldhash::HashMap<Box<str>, (Option<IpSetRef>, Option<IpSetRef>)>,
    /// Reused buffer for building [`Self::entities`] keys.
    key_buf: String,
}

/// Writes the key of a rule side's selector sets into `buf`: the policy's
/// namespace and the side's three selector texts, each length-prefixed so
/// that no two different inputs give the same key.
fn entity_key(buf: &mut String, namespace: Option<&str>, e: &EntityRule) {
    buf.clear();
    match namespace {
        Some(ns) => {
            buf.push('n');
            push_prefixed(buf, ns);
        }
        None => buf.push('g'),
    }
    for text in [&e.namespace_selector, &e.selector, &e.not_selector] {
        push_prefixed(buf, text);
    }
}

/// Appends `text`'s length in decimal, `:`, and `text`. By hand: `write!`
/// cost more than the rest of a cache hit.
fn push_prefixed(buf: &mut String, text: &str) {
    let mut digits = [0u8; 20];
    let mut n = text.len();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        buf.push(char::from(d));
    }
    buf.push(':');
    buf.push_str(text);
}

impl IpSetInterner {
    /// Checks that `text` parses as a selector, parsing each text once.
    pub(crate) fn check_selector(
        &mut self,
        field: impl fmt::Display,
        text: &str,
    ) -> Result<(), CompileError> {
        if !self.valid.contains(text) {
            parse_selector(field, text)?;
            if self.valid.len() >= 100_000 {
                // Bound the cache; it only saves parses.
                self.valid.clear();
            }
            self.valid.insert(text.into());
        }
        Ok(())
    }

    /// The reference for the set of `selector` (or its named port).
    pub(crate) fn get(&mut self, selector: &Selector, named_port: Option<NamedPort>) -> IpSetRef {
        let key = (Box::<str>::from(selector.canonical()), named_port);
        if let Some(r) = self.by_key.get(&key) {
            return r.clone();
        }
        let id = match &key.1 {
            None => selector.uid().to_owned(),
            Some(np) => {
                // Same shape as the selector uid, with its own prefix so a
                // named-port set never collides with a selector set.
                let proto = np
                    .protocol
                    .map_or_else(|| "*".to_owned(), |p| p.to_string());
                let digest = sha2::Sha224::new()
                    .chain_update(b"n:")
                    .chain_update(selector.canonical().as_bytes())
                    .chain_update(format!(",{proto},{}", np.name).as_bytes())
                    .finalize();
                let mut id = String::from("n:");
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(digest, &mut id);
                id
            }
        };
        let r = IpSetRef {
            id: IpSetId(id.into()),
            selector: selector.canonical().into(),
            named_port: key.1.clone(),
        };
        if self.by_key.len() > 100_000 {
            // Bound the cache; entries are only a speed-up.
            self.by_key.clear();
        }
        self.by_key.insert(key, r.clone());
        r
    }
}

/// Compiles rules of one policy or profile.
pub(crate) struct RuleCompiler<'a> {
    /// The namespace of a NetworkPolicy (rule selectors are scoped to it).
    pub(crate) namespace: Option<&'a str>,
    /// Unsupported criteria that apply to every rule (e.g. the policy's
    /// serviceAccountSelector).
    pub(crate) policy_unsupported: &'a [String],
    /// Shares IP set references.
    pub(crate) sets: &'a mut IpSetInterner,
    /// Only check the rules for errors, building no selectors or sets: the
    /// cheap validation of a policy whose compilation is deferred.
    pub(crate) check_only: bool,
}

impl RuleCompiler<'_> {
    /// Compiles `rules`; `field` is e.g. `spec.ingress`.
    pub(crate) fn compile_all(
        &mut self,
        field: &str,
        rules: &[Rule],
    ) -> Result<Vec<CompiledRule>, CompileError> {
        let field = FieldPath::Root(field);
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| self.compile(field.index(i), r))
            .collect()
    }

    /// Compiles one rule.
    pub(crate) fn compile(
        &mut self,
        field: FieldPath<'_>,
        rule: &Rule,
    ) -> Result<CompiledRule, CompileError> {
        let action = match rule.action.as_str() {
            "Allow" | "allow" => Action::Allow,
            "Deny" | "deny" => Action::Deny,
            "Log" | "log" => Action::Log,
            "Pass" | "pass" | "next-tier" => Action::Pass,
            other => {
                return Err(CompileError::Action {
                    field: field.field("action").to_string(),
                    text: other.to_owned(),
                });
            }
        };
        let ip_version = rule
            .ip_version
            .map(|v| match v {
                4 => Ok(4),
                6 => Ok(6),
                _ => Err(CompileError::Range {
                    field: field.field("ipVersion").to_string(),
                    value: v,
                }),
            })
            .transpose()?;
        let protocol = proto(field.field("protocol"), rule.protocol.as_ref())?;
        let not_protocol = proto(field.field("notProtocol"), rule.not_protocol.as_ref())?;
        let icmp_match = icmp(field.field("icmp"), rule.icmp.as_ref())?;
        let not_icmp = icmp(field.field("notICMP"), rule.not_icmp.as_ref())?;
        let mut unsupported = self.policy_unsupported.to_vec();
        if rule.http.is_some() {
            unsupported.push("http".to_owned());
        }
        let source = self.entity(
            field.field("source"),
            "source",
            &rule.source,
            protocol,
            &mut unsupported,
        )?;
        let destination = self.entity(
            field.field("destination"),
            "destination",
            &rule.destination,
            protocol,
            &mut unsupported,
        )?;
        Ok(CompiledRule {
            action,
            ip_version,
            protocol,
            not_protocol,
            icmp: icmp_match,
            not_icmp,
            source,
            destination,
            unsupported,
        })
    }

    fn entity(
        &mut self,
        field: FieldPath<'_>,
        side: &str,
        e: &EntityRule,
        protocol: Option<u8>,
        unsupported: &mut Vec<String>,
    ) -> Result<EntityMatch, CompileError> {
        if e.services.is_some() {
            unsupported.push(format!("{side}.services"));
        }
        if e.service_accounts.is_some() {
            unsupported.push(format!("{side}.serviceAccounts"));
        }
        let nets = |what: &str, list: &[String]| -> Result<Vec<IpNet>, CompileError> {
            list.iter()
                .map(|n| {
                    parse_net(n).ok_or_else(|| CompileError::Net {
                        field: field.field(what).to_string(),
                        text: n.clone(),
                    })
                })
                .collect()
        };
        let mut m = EntityMatch {
            nets: nets("nets", &e.nets)?,
            not_nets: nets("notNets", &e.not_nets)?,
            ..EntityMatch::default()
        };
        // Namespace scoping (upstream's rule conversion): an explicit
        // namespaceSelector replaces the policy's own namespace; either is
        // ANDed into the selector whenever the rule selects endpoints at all.
        if self.check_only {
            for (what, text) in [
                ("namespaceSelector", &e.namespace_selector),
                ("selector", &e.selector),
                ("notSelector", &e.not_selector),
            ] {
                if !text.is_empty() {
                    self.sets.check_selector(field.field(what), text)?;
                }
            }
            return Ok(m);
        }
        // Rule sides repeat across policies: their sets come from a cache
        // when no named port needs the parsed selector.
        let sets = &mut *self.sets;
        let plain_ports = !e.ports.iter().chain(&e.not_ports).any(Port::is_named);
        let mut key = std::mem::take(&mut sets.key_buf);
        if plain_ports {
            entity_key(&mut key, self.namespace, e);
            if let Some((sel, not_sel)) = sets.entities.get(key.as_str()) {
                m.selector = sel.clone();
                m.not_selector = not_sel.clone();
                // Every port is numeric: no selector is needed for them.
                for (list, ranges) in [(&e.ports, &mut m.ports), (&e.not_ports, &mut m.not_ports)] {
                    ranges.extend(list.iter().map(|p| PortRange {
                        min: p.min_port,
                        max: p.max_port,
                    }));
                }
                sets.key_buf = key;
                return Ok(m);
            }
        }
        let explicit_ns = if e.namespace_selector.is_empty() {
            None
        } else {
            Some(namespace_selector(
                field.field("namespaceSelector"),
                &e.namespace_selector,
            )?)
        };
        let own = if e.selector.is_empty() {
            None
        } else {
            Some(parse_selector(field.field("selector"), &e.selector)?)
        };
        let not_sel = if e.not_selector.is_empty() {
            None
        } else {
            Some(parse_selector(field.field("notSelector"), &e.not_selector)?)
        };
        let sets = &mut *self.sets;
        let selects = own.is_some() || not_sel.is_some() || explicit_ns.is_some();
        // Scoping to the policy's own namespace costs a parse, so it is only
        // built when the rule selects at all.
        let ns_sel = || explicit_ns.or_else(|| self.namespace.map(in_namespace));
        let scoped = match (selects, own) {
            (false, _) => None,
            (true, own) => match (ns_sel(), own) {
                (Some(ns), Some(own)) => Some(and(&ns, &own)),
                (Some(ns), None) => Some(ns),
                (None, own) => own,
            },
        };
        if let Some(sel) = &scoped {
            m.selector = Some(sets.get(sel, None));
        }
        if let Some(sel) = &not_sel {
            m.not_selector = Some(sets.get(sel, None));
        }
        if plain_ports {
            if sets.entities.len() >= 100_000 {
                // Bound the cache; it only saves parses.
                sets.entities.clear();
            }
            sets.entities.insert(
                key.as_str().into(),
                (m.selector.clone(), m.not_selector.clone()),
            );
        }
        sets.key_buf = key;
        let port_owner = scoped.unwrap_or_default();
        for (list, ranges, named) in [
            (&e.ports, &mut m.ports, &mut m.named_ports),
            (&e.not_ports, &mut m.not_ports, &mut m.not_named_ports),
        ] {
            for p in list {
                port(p, protocol, &port_owner, sets, ranges, named);
            }
        }
        Ok(m)
    }
}

fn port(
    p: &Port,
    protocol: Option<u8>,
    owner: &Selector,
    sets: &mut IpSetInterner,
    ranges: &mut Vec<PortRange>,
    named: &mut Vec<IpSetRef>,
) {
    if p.is_named() {
        let np = NamedPort {
            name: p.port_name.as_str().into(),
            protocol,
        };
        named.push(sets.get(owner, Some(np)));
    } else {
        ranges.push(PortRange {
            min: p.min_port,
            max: p.max_port,
        });
    }
}

fn proto(field: FieldPath<'_>, p: Option<&Protocol>) -> Result<Option<u8>, CompileError> {
    p.map(|p| {
        p.number().ok_or_else(|| CompileError::Protocol {
            field: field.to_string(),
            text: match p {
                Protocol::Num(n) => n.to_string(),
                Protocol::Str(s) => s.clone(),
            },
        })
    })
    .transpose()
}

fn icmp(field: FieldPath<'_>, f: Option<&ICMPFields>) -> Result<Option<IcmpMatch>, CompileError> {
    let byte = |what: &str, v: Option<i64>| {
        v.map(|v| {
            u8::try_from(v).map_err(|_| CompileError::Range {
                field: field.field(what).to_string(),
                value: v,
            })
        })
        .transpose()
    };
    f.map(|f| {
        Ok(IcmpMatch {
            icmp_type: byte("type", f.r#type)?,
            code: byte("code", f.code)?,
        })
    })
    .transpose()
}
