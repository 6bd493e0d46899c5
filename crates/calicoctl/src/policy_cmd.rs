//! `calicoctl policy trace` and `calicoctl get workloadendpoint NAME --show-policies`: why a
//! packet is allowed or dropped, and which policies apply to an endpoint.
//!
//! Both read the datastore and run the same policy calculation as the node agent (felix),
//! so what they say is what the dataplane does.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use std::time::Duration;

use calico_api::Kind;
use calico_api::v3;
use calico_datastore::{Datastore, Key};
use calico_policy::eval::RuleSource;
use calico_policy::{
    Decision, Direction, EndpointId, INPUT_KINDS, Packet, PolicyCalculator, Trace, Update, Verdict,
};
use calico_sync::{SyncEvent, Syncer};
use serde::Serialize;

use crate::commands::CommandError;

/// Everything the policy calculation reads, loaded once.
pub struct PolicyInputs {
    resources: Vec<calico_sync::Resource>,
}

/// How long a one-shot read of the datastore may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

impl PolicyInputs {
    /// Read every policy-relevant resource from the datastore, through the sync layer felix
    /// uses, so the same values are read the same way.
    pub fn load(ds: &dyn Datastore) -> Result<Self, CommandError> {
        let mut syncer = Syncer::new(ds, INPUT_KINDS);
        let events = syncer
            .read_until_in_sync(READ_TIMEOUT)
            .map_err(CommandError::new)?;
        let mut resources = Vec::new();
        for ev in events {
            match ev {
                SyncEvent::Set { resource, .. } => resources.push(resource),
                SyncEvent::Unreadable { error, .. } => {
                    return Err(CommandError::new(format!("{error}; cannot compute policy")));
                }
                _ => {}
            }
        }
        Ok(Self { resources })
    }

    /// A calculator for `node` fed with every input.
    fn calculator(&self, node: &str) -> Result<PolicyCalculator, CommandError> {
        let mut calc = PolicyCalculator::new(node);
        for resource in &self.resources {
            if let Some(update) = Update::from_typed(resource.clone()) {
                calc.stage(update)
                    .map_err(|e| CommandError::new(format!("computing policy: {e}")))?;
            }
        }
        calc.flush();
        Ok(calc)
    }

    /// These inputs with every staged policy put in force as its `stagedAction` says: `Set`
    /// (or none) adds or replaces the policy of the same name, `Delete` removes it, `Learn`
    /// and `Ignore` change nothing. Also returns a line per staged policy saying what it did.
    fn with_staged(&self, ds: &dyn Datastore) -> Result<(Self, Vec<String>), CommandError> {
        let mut resources = self.resources.clone();
        let mut notes = Vec::new();
        for kind in [Kind::StagedGlobalNetworkPolicy, Kind::StagedNetworkPolicy] {
            let list = ds
                .list(kind, None)
                .map_err(|e| CommandError::new(format!("listing {kind}: {e}")))?;
            for kv in list.items {
                let name = match &kv.key.namespace {
                    Some(ns) => format!("{kind} {ns}/{}", kv.key.name),
                    None => format!("{kind} {}", kv.key.name),
                };
                let action = kv
                    .value
                    .pointer("/spec/stagedAction")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("Set")
                    .to_owned();
                if matches!(action.as_str(), "Learn" | "Ignore") {
                    notes.push(format!(
                        "{name}: stagedAction {action}, nothing put in force"
                    ));
                    continue;
                }
                let enforced_kind = match kind {
                    Kind::StagedNetworkPolicy => Kind::NetworkPolicy,
                    _ => Kind::GlobalNetworkPolicy,
                };
                let key = Key {
                    kind: enforced_kind,
                    namespace: kv.key.namespace.clone(),
                    name: kv.key.name.clone(),
                };
                let same = |r: &calico_sync::Resource| {
                    r.kind() == enforced_kind
                        && resource_key(r) == (key.namespace.clone(), key.name.clone())
                };
                let existed = resources.iter().any(same);
                resources.retain(|r| !same(r));
                match calico_api::staged_policy(kind, &kv.value) {
                    None => notes.push(format!(
                        "{name}: deletes {enforced_kind} {}{}",
                        key.name,
                        if existed {
                            ""
                        } else {
                            " (which does not exist)"
                        }
                    )),
                    Some((_, doc)) => match calico_sync::Resource::decode(&key, doc) {
                        Ok(policy) => {
                            resources.push(policy);
                            notes.push(format!(
                                "{name}: {} {enforced_kind} {}",
                                if existed { "replaces" } else { "adds" },
                                key.name
                            ));
                        }
                        Err(e) => notes.push(format!("{name}: cannot be simulated: {e}")),
                    },
                }
            }
        }
        Ok((Self { resources }, notes))
    }

    fn workload_endpoints(&self) -> impl Iterator<Item = &v3::WorkloadEndpoint> {
        self.resources.iter().filter_map(|r| match r {
            calico_sync::Resource::WorkloadEndpoint(w) => Some(w),
            _ => None,
        })
    }

    /// The endpoint a `--src`/`--dst` argument names: `namespace/name`, `name` (namespace
    /// `default`), the endpoint's workload id, or one of its IP addresses. An address no
    /// endpoint has is outside Calico.
    fn resolve(&self, what: &str, flag: &str) -> Result<Party, CommandError> {
        if let Ok(ip) = what.parse::<IpAddr>() {
            let owner = self
                .workload_endpoints()
                .find(|w| endpoint_ips(w).contains(&ip));
            return Ok(match owner {
                Some(w) => Party::endpoint(w, Some(ip)),
                None => Party::External(ip),
            });
        }
        let (namespace, name) = what.split_once('/').unwrap_or(("default", what));
        let in_namespace = |w: &&v3::WorkloadEndpoint| w.metadata.namespace == namespace;
        let by_name: Vec<&v3::WorkloadEndpoint> = self
            .workload_endpoints()
            .filter(in_namespace)
            .filter(|w| w.metadata.name == name)
            .collect();
        let candidates = if by_name.is_empty() {
            self.workload_endpoints()
                .filter(in_namespace)
                .filter(|w| w.spec.workload == name)
                .collect()
        } else {
            by_name
        };
        match candidates.as_slice() {
            [one] => Ok(Party::endpoint(one, None)),
            [] => Err(CommandError::new(format!(
                "{flag} {what:?}: no workload endpoint {namespace}/{name} (by name or workload), and not an IP address"
            ))),
            many => Err(CommandError::new(format!(
                "{flag} {what:?} is ambiguous: it names {}",
                many.iter()
                    .map(|w| format!("{namespace}/{}", w.metadata.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

fn endpoint_ips(w: &v3::WorkloadEndpoint) -> Vec<IpAddr> {
    w.spec
        .ip_networks
        .iter()
        .filter_map(|net| net.split('/').next()?.parse().ok())
        .collect()
}

/// One end of a traced packet.
enum Party {
    /// A workload endpoint.
    Endpoint {
        id: EndpointId,
        node: String,
        ips: Vec<IpAddr>,
        chosen_ip: Option<IpAddr>,
    },
    /// An address outside Calico.
    External(IpAddr),
}

impl Party {
    fn endpoint(w: &v3::WorkloadEndpoint, chosen_ip: Option<IpAddr>) -> Self {
        Party::Endpoint {
            id: EndpointId::Workload {
                namespace: w.metadata.namespace.clone(),
                name: w.metadata.name.clone(),
            },
            node: w.spec.node.clone(),
            ips: endpoint_ips(w),
            chosen_ip,
        }
    }

    /// The address to use, of IP version `version` when given.
    fn ip(&self, version: Option<bool>) -> Option<IpAddr> {
        match self {
            Party::External(ip) => Some(*ip),
            Party::Endpoint {
                chosen_ip: Some(ip),
                ..
            } => Some(*ip),
            Party::Endpoint { ips, .. } => ips
                .iter()
                .find(|ip| version.is_none_or(|v4| ip.is_ipv4() == v4))
                .copied(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Party::Endpoint { id, node, .. } => format!("{id} on node {node}"),
            Party::External(ip) => format!("{ip} (not a Calico endpoint)"),
        }
    }
}

/// What `policy trace` was asked.
#[derive(Debug, Clone)]
pub struct TraceRequest {
    /// `--src`.
    pub src: String,
    /// `--dst`.
    pub dst: String,
    /// `--protocol`: a name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite) or a number.
    pub protocol: String,
    /// `--port`: destination port.
    pub port: Option<u16>,
    /// `--src-port`.
    pub src_port: Option<u16>,
    /// `--icmp-type`.
    pub icmp_type: Option<u8>,
    /// `--icmp-code`.
    pub icmp_code: Option<u8>,
    /// `-o json` instead of text.
    pub json: bool,
    /// `--staged`: also show the verdict with every staged policy put in force.
    pub staged: bool,
}

/// The namespace and name of a policy resource.
fn resource_key(r: &calico_sync::Resource) -> (Option<String>, String) {
    match r {
        calico_sync::Resource::NetworkPolicy(p) => {
            (Some(p.metadata.namespace.clone()), p.metadata.name.clone())
        }
        calico_sync::Resource::GlobalNetworkPolicy(p) => (None, p.metadata.name.clone()),
        _ => (None, String::new()),
    }
}

fn protocol_number(protocol: &str) -> Result<u8, CommandError> {
    let number = match protocol.to_ascii_uppercase().as_str() {
        "TCP" => 6,
        "UDP" => 17,
        "ICMP" => 1,
        "ICMPV6" => 58,
        "SCTP" => 132,
        "UDPLITE" => 136,
        other => other.parse().map_err(|_| {
            CommandError::new(format!(
                "--protocol {protocol:?}: use TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255"
            ))
        })?,
    };
    if number == 0 {
        return Err(CommandError::new("--protocol 0 is not a protocol"));
    }
    Ok(number)
}

/// The JSON form of one direction's trace.
#[derive(Serialize)]
struct DirectionReport {
    /// The endpoint whose policy was evaluated.
    #[serde(rename = "endpoint")]
    endpoint: EndpointId,
    /// Its node.
    #[serde(rename = "node")]
    node: String,
    /// allow or deny.
    #[serde(rename = "verdict")]
    verdict: &'static str,
    /// The deciding tier, when a policy or the end of a tier decided.
    #[serde(rename = "tier", skip_serializing_if = "Option::is_none")]
    tier: Option<String>,
    /// The deciding policy (`namespace/name` for a NetworkPolicy).
    #[serde(rename = "policy", skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    /// The deciding profile.
    #[serde(rename = "profile", skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    /// The deciding rule, 1-based as in the policy's rule list.
    #[serde(rename = "rule", skip_serializing_if = "Option::is_none")]
    rule: Option<usize>,
    /// The decision in words.
    #[serde(rename = "reason")]
    reason: String,
    /// Every tier, policy and rule consulted.
    #[serde(rename = "trace")]
    trace: Trace,
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    }
}

fn report(id: &EndpointId, node: &str, trace: Trace) -> DirectionReport {
    let (mut tier, mut policy, mut profile, mut rule) = (None, None, None, None);
    match &trace.decision {
        Decision::PolicyRule {
            source, rule: r, ..
        }
        | Decision::ProfileRule {
            source, rule: r, ..
        } => {
            rule = Some(*r);
            match source {
                RuleSource::Policy {
                    tier: t,
                    namespace,
                    name,
                } => {
                    tier = Some(t.clone());
                    policy = Some(match namespace {
                        Some(ns) => format!("{ns}/{name}"),
                        None => name.clone(),
                    });
                }
                RuleSource::Profile { name } => profile = Some(name.clone()),
            }
        }
        Decision::EndOfTier { tier: t } => tier = Some(t.clone()),
        Decision::NoProfileMatched | Decision::NoProfile => {}
    }
    DirectionReport {
        endpoint: id.clone(),
        node: node.to_owned(),
        verdict: verdict_word(trace.verdict),
        tier,
        policy,
        profile,
        rule,
        reason: trace.decision.to_string(),
        trace,
    }
}

/// Run `calicoctl policy trace`; returns the text to print (JSON with `req.json`).
pub fn trace(ds: &dyn Datastore, req: &TraceRequest) -> Result<String, CommandError> {
    let (text, doc) = trace_both(ds, req)?;
    if req.json {
        serde_json::to_string_pretty(&doc)
            .map(|s| s + "\n")
            .map_err(|e| CommandError::new(format!("formatting JSON: {e}")))
    } else {
        Ok(text)
    }
}

/// The trace of `req`'s packet, as text and as the `-o json` document, from one
/// evaluation (`req.json` is not consulted).
pub fn trace_both(
    ds: &dyn Datastore,
    req: &TraceRequest,
) -> Result<(String, serde_json::Value), CommandError> {
    let inputs = PolicyInputs::load(ds)?;
    let src = inputs.resolve(&req.src, "--src")?;
    let dst = inputs.resolve(&req.dst, "--dst")?;
    let protocol = protocol_number(&req.protocol)?;
    let has_ports = matches!(protocol, 6 | 17 | 132 | 136);
    if !has_ports && (req.port.is_some() || req.src_port.is_some()) {
        return Err(CommandError::new(format!(
            "--port/--src-port need a protocol with ports (TCP, UDP, SCTP, UDPLite), not {}",
            req.protocol
        )));
    }
    if has_ports && req.port.is_none() {
        return Err(CommandError::new(format!(
            "--port is required for {}",
            req.protocol
        )));
    }
    // Pick addresses of one IP version: the one an explicit address fixes, else IPv4 first.
    let version = [&src, &dst].iter().find_map(|p| match p {
        Party::External(ip)
        | Party::Endpoint {
            chosen_ip: Some(ip),
            ..
        } => Some(ip.is_ipv4()),
        Party::Endpoint { .. } => None,
    });
    let pick = |p: &Party, what: &str| {
        p.ip(version)
            .or_else(|| p.ip(version.map(|v| !v)))
            .ok_or_else(|| CommandError::new(format!("{what} {} has no IP address", p.describe())))
    };
    let (src_ip, dst_ip) = (pick(&src, "--src")?, pick(&dst, "--dst")?);
    if src_ip.is_ipv4() != dst_ip.is_ipv4() {
        return Err(CommandError::new(format!(
            "--src {src_ip} and --dst {dst_ip} are of different IP versions"
        )));
    }
    let packet = Packet {
        src_ip,
        dst_ip,
        protocol,
        src_port: has_ports.then_some(req.src_port.unwrap_or(40000)),
        dst_port: if has_ports { req.port } else { None },
        icmp_type: req.icmp_type,
        icmp_code: req.icmp_code,
    };

    let (egress, ingress, allowed) = decide(&inputs, &src, &dst, &packet)?;
    let staged = if req.staged {
        let (staged_inputs, notes) = inputs.with_staged(ds)?;
        Some((decide(&staged_inputs, &src, &dst, &packet)?, notes))
    } else {
        None
    };
    let verdict = if allowed { "allow" } else { "deny" };

    let mut doc = serde_json::json!({
        "verdict": verdict,
        "packet": packet,
        "egress": egress,
        "ingress": ingress,
    });
    if let Some(((s_egress, s_ingress, s_allowed), notes)) = &staged {
        doc["staged"] = serde_json::json!({
            "verdict": if *s_allowed { "allow" } else { "deny" },
            "egress": s_egress,
            "ingress": s_ingress,
            "notes": notes,
        });
    }
    let mut out = String::new();
    let ports = |p: Option<u16>| p.map_or_else(String::new, |p| format!(":{p}"));
    let _ = writeln!(
        out,
        "Packet: {} {}{} -> {}{}",
        req.protocol.to_ascii_uppercase(),
        src_ip,
        ports(packet.src_port),
        dst_ip,
        ports(packet.dst_port)
    );
    let _ = writeln!(out, "From:   {}", src.describe());
    let _ = writeln!(out, "To:     {}", dst.describe());
    let _ = writeln!(out, "Verdict: {}", verdict.to_ascii_uppercase());
    for (label, party, section) in [("Egress", &src, &egress), ("Ingress", &dst, &ingress)] {
        let _ = writeln!(out);
        match section {
            None => {
                let _ = writeln!(
                    out,
                    "{label}: not evaluated: {} is outside Calico, so no {} policy applies there",
                    party.describe(),
                    label.to_ascii_lowercase()
                );
            }
            Some(r) => {
                let _ = writeln!(
                    out,
                    "{label} at {}: {} by {}",
                    r.endpoint,
                    r.verdict.to_ascii_uppercase(),
                    r.reason
                );
                let steps = r.trace.to_string();
                for line in steps.lines().skip(1) {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
    }
    if let Some(((s_egress, s_ingress, s_allowed), notes)) = &staged {
        let s_verdict = if *s_allowed { "ALLOW" } else { "DENY" };
        let _ = writeln!(out);
        let change = if *s_allowed == allowed {
            "no change"
        } else {
            "CHANGED"
        };
        let _ = writeln!(
            out,
            "With staged policies in force: {s_verdict} ({change} from {})",
            verdict.to_ascii_uppercase()
        );
        for note in notes {
            let _ = writeln!(out, "  {note}");
        }
        for (label, section) in [("Egress", s_egress), ("Ingress", s_ingress)] {
            if let Some(r) = section {
                let _ = writeln!(
                    out,
                    "  {label} at {}: {} by {}",
                    r.endpoint,
                    r.verdict.to_ascii_uppercase(),
                    r.reason
                );
            }
        }
    }
    Ok((out, doc))
}

/// The reports of both directions for `packet` from `src` to `dst`, and whether it passes.
type Decided = (Option<DirectionReport>, Option<DirectionReport>, bool);

fn decide(
    inputs: &PolicyInputs,
    src: &Party,
    dst: &Party,
    packet: &Packet,
) -> Result<Decided, CommandError> {
    let mut calculators: BTreeMap<String, PolicyCalculator> = BTreeMap::new();
    let mut run =
        |party: &Party, direction: Direction| -> Result<Option<DirectionReport>, CommandError> {
            let Party::Endpoint { id, node, .. } = party else {
                return Ok(None);
            };
            if !calculators.contains_key(node) {
                calculators.insert(node.clone(), inputs.calculator(node)?);
            }
            let calc = &calculators[node];
            let program = calc.program(id).ok_or_else(|| {
                CommandError::new(format!("no policy program for {id} on node {node:?}"))
            })?;
            let trace = calico_policy::evaluate(program, direction, packet, calc);
            Ok(Some(report(id, node, trace)))
        };
    let egress = run(src, Direction::Egress)?;
    let ingress = run(dst, Direction::Ingress)?;
    let allowed = [&egress, &ingress]
        .iter()
        .all(|r| r.as_ref().is_none_or(|r| r.verdict == "allow"));
    Ok((egress, ingress, allowed))
}

/// The policies that apply to a workload endpoint, per direction and in evaluation order,
/// then its profiles; the text `get workloadendpoint NAME --show-policies` prints.
pub fn show_policies(
    ds: &dyn Datastore,
    namespace: &str,
    name: &str,
) -> Result<String, CommandError> {
    let inputs = PolicyInputs::load(ds)?;
    let endpoint = inputs
        .workload_endpoints()
        .find(|w| w.metadata.namespace == namespace && w.metadata.name == name)
        .ok_or_else(|| {
            CommandError::new(format!(
                "resource does not exist: WorkloadEndpoint({namespace}/{name})"
            ))
        })?;
    let Party::Endpoint { id, node, .. } = Party::endpoint(endpoint, None) else {
        unreachable!("Party::endpoint always builds an endpoint");
    };
    let calc = inputs.calculator(&node)?;
    let program = calc
        .program(&id)
        .ok_or_else(|| CommandError::new(format!("no policy program for {id} on node {node:?}")))?;
    let mut out = format!("Policies applying to {id}, in evaluation order:\n");
    for direction in [Direction::Ingress, Direction::Egress] {
        let dir = program.direction(direction);
        let _ = writeln!(out, "{direction}:");
        if dir.tiers.is_empty() {
            let _ = writeln!(out, "  (no policy selects it)");
        }
        for tier in &dir.tiers {
            for policy in &tier.policies {
                let policy_name = match &policy.namespace {
                    Some(ns) => format!("NetworkPolicy {ns}/{}", policy.name),
                    None => format!("GlobalNetworkPolicy {}", policy.name),
                };
                let _ = writeln!(out, "  tier {}: {policy_name}", tier.tier);
            }
        }
        let profiles: Vec<&str> = dir.profiles.iter().map(|p| p.name.as_str()).collect();
        let _ = writeln!(
            out,
            "  then profiles: {}",
            if profiles.is_empty() {
                "(none)".to_owned()
            } else {
                profiles.join(", ")
            }
        );
    }
    Ok(out)
}
