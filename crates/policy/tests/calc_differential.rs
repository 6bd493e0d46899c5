//! Differential test of the policy calculator: random small universes of
//! endpoints, profiles, network sets, tiers and policies, changed by random
//! sequences of updates. After every update, for every local endpoint and
//! a spread of packets in both directions, the compiled program (traced by
//! `eval`) and a reference evaluator written directly from the semantics
//! over the raw resources (no label index, no compilation, no IP sets) must
//! reach the same verdict for the same reason. The deltas, replayed, must
//! equal the snapshot; and the final snapshot must equal that of a fresh
//! calculator fed the final resources in one batch.

mod common;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_api::Kind;
use calico_api::numorstring::{Port, Protocol};
use calico_api::v3::{self, EntityRule, Rule};
use calico_policy::eval::{Decision, RuleSource};
use calico_policy::model::Action;
use calico_policy::{Direction, Packet, PolicyCalculator, Snapshot, Update, Verdict, evaluate};
use common::{NODE, ip, typed, workload};
use ipnet::IpNet;
use proptest::prelude::*;
use serde_json::json;

// ---------------- the universe ----------------

const NAMESPACES: &[&str] = &["ns1", "ns2"];
const PROFILES: &[&str] = &["calico", "p1", "p2"];
const TIERS: &[&str] = &["default", "t1", "t2"];
const NETS: &[&str] = &["10.0.0.0/30", "10.0.0.5/32", "192.168.0.0/24", "fd00::/120"];
const SELECTORS: &[&str] = &[
    "all()",
    "has(a)",
    "a == 'x'",
    "a != 'x'",
    "b == 'y' || a == 'y'",
    "!has(b)",
    "has(a) && b == 'x'",
];
const NS_SELECTORS: &[&str] = &[
    "projectcalico.org/name == 'ns1'",
    "projectcalico.org/name != 'ns1'",
    "global()",
    "all()",
];

/// Endpoint `i`'s addresses: a v4 one, and a v6 one for even `i`.
fn ep_ips(i: usize) -> Vec<String> {
    let mut v = vec![format!("10.0.0.{}/32", i + 1)];
    if i.is_multiple_of(2) {
        v.push(format!("fd00::{}/128", i + 1));
    }
    v
}

#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "test operations are few and short-lived"
)]
enum Op {
    Put(Update),
    Delete(Kind, Option<String>, String),
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["a", "b"]).prop_map(str::to_owned),
        prop::sample::select(vec!["x", "y"]).prop_map(str::to_owned),
        0..=2,
    )
}

fn sel() -> impl Strategy<Value = String> {
    prop::sample::select(SELECTORS).prop_map(str::to_owned)
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![2 => Just(None), 1 => s.prop_map(Some)]
}

fn nets() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(NETS).prop_map(str::to_owned), 0..=2)
}

fn ports() -> impl Strategy<Value = Vec<Port>> {
    prop::collection::vec(
        prop_oneof![
            Just(Port::single(80)),
            Just(Port::range(81, 90).unwrap()),
            Just(Port::named("http").unwrap()),
        ],
        0..=2,
    )
}

fn entity() -> impl Strategy<Value = EntityRule> {
    let sparse_nets = prop_oneof![3 => Just(Vec::new()), 1 => nets()];
    let sparse_ports = prop_oneof![3 => Just(Vec::new()), 1 => ports()];
    (
        (sparse_nets.clone(), sparse_nets),
        (opt(sel()), opt(sel())),
        opt(prop::sample::select(NS_SELECTORS).prop_map(str::to_owned)),
        (sparse_ports.clone(), sparse_ports),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |((nets, not_nets), (s, ns_), nss, (ports, not_ports), sa)| EntityRule {
                nets,
                not_nets,
                selector: s.unwrap_or_default(),
                not_selector: ns_.unwrap_or_default(),
                namespace_selector: nss.unwrap_or_default(),
                ports,
                not_ports,
                service_accounts: sa.then(|| typed(json!({"names": ["sa"]}))),
                ..EntityRule::default()
            },
        )
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::from_string("TCP")),
        Just(Protocol::from_string("UDP")),
        Just(Protocol::from_string("ICMP")),
        Just(Protocol::Num(6)),
    ]
}

fn icmp_fields() -> impl Strategy<Value = v3::ICMPFields> {
    (
        prop_oneof![Just(0i64), Just(8)],
        opt(prop_oneof![Just(0i64), Just(1)]),
    )
        .prop_map(|(t, c)| v3::ICMPFields {
            r#type: Some(t),
            code: c,
        })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::sample::select(vec!["Allow", "Deny", "Log", "Pass"]),
        opt(prop_oneof![Just(4i64), Just(6)]),
        (opt(protocol()), opt(protocol())),
        (opt(icmp_fields()), opt(icmp_fields())),
        entity(),
        entity(),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(action, ipv, (p, np), (icmp, nicmp), src, dst, http)| Rule {
                action: action.to_owned(),
                ip_version: ipv,
                protocol: p,
                not_protocol: np,
                icmp,
                not_icmp: nicmp,
                source: src,
                destination: dst,
                http: http.then(|| typed(json!({"methods": ["GET"]}))),
                ..Rule::default()
            },
        )
}

fn rules() -> impl Strategy<Value = Vec<Rule>> {
    prop::collection::vec(rule(), 0..=3)
}

fn order() -> impl Strategy<Value = Option<f64>> {
    opt(prop_oneof![Just(1.0), Just(2.0)])
}

fn types() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        3 => Just(vec![]),
        1 => Just(vec!["Ingress".to_owned()]),
        1 => Just(vec!["Egress".to_owned()]),
        1 => Just(vec!["Ingress".to_owned(), "Egress".to_owned()]),
    ]
}

fn meta(name: &str, ns: Option<&str>, labels: BTreeMap<String, String>) -> v3::ObjectMeta {
    v3::ObjectMeta {
        name: name.to_owned(),
        namespace: ns.unwrap_or_default().to_owned(),
        labels,
        ..v3::ObjectMeta::default()
    }
}

fn put_op() -> impl Strategy<Value = Op> {
    let wep = (
        0..5usize,
        labels(),
        prop::bool::weighted(0.6),
        prop::collection::vec(prop::sample::select(PROFILES), 0..=2),
        prop::bool::ANY,
    )
        .prop_map(|(i, labels, local, profiles, port)| {
            let ns = NAMESPACES[i % 2];
            let mut w = v3::WorkloadEndpoint {
                metadata: meta(&format!("ep{i}"), Some(ns), labels),
                ..Default::default()
            };
            w.spec.node = if local { NODE } else { "node2" }.to_owned();
            w.spec.orchestrator = "k8s".to_owned();
            w.spec.ip_networks = ep_ips(i);
            w.spec.profiles = profiles.iter().map(|p| (*p).to_owned()).collect();
            if port {
                w.spec.ports = vec![typed(
                    json!({"name": "http", "protocol": "TCP", "port": 85}),
                )];
            }
            Op::Put(Update::WorkloadEndpoint(w))
        });
    let profile = (prop::sample::select(PROFILES), labels(), rules(), rules()).prop_map(
        |(name, labels, ingress, egress)| {
            let mut p = v3::Profile {
                metadata: meta(name, None, BTreeMap::new()),
                ..Default::default()
            };
            p.spec.labels_to_apply = labels;
            p.spec.ingress = ingress;
            p.spec.egress = egress;
            Op::Put(Update::Profile(p))
        },
    );
    let netset = (0..3usize, labels(), nets()).prop_map(|(i, labels, nets)| {
        if i == 0 {
            let mut n = v3::GlobalNetworkSet {
                metadata: meta("gns", None, labels),
                ..Default::default()
            };
            n.spec.nets = nets;
            Op::Put(Update::GlobalNetworkSet(n))
        } else {
            let mut n = v3::NetworkSet {
                metadata: meta("ns", Some(NAMESPACES[i - 1]), labels),
                ..Default::default()
            };
            n.spec.nets = nets;
            Op::Put(Update::NetworkSet(n))
        }
    });
    let tier =
        (prop::sample::select(TIERS), order(), prop::bool::ANY).prop_map(|(name, order, pass)| {
            let mut t = v3::Tier {
                metadata: meta(name, None, BTreeMap::new()),
                ..Default::default()
            };
            t.spec.order = order;
            t.spec.default_action = Some(if pass { "Pass" } else { "Deny" }.to_owned());
            Op::Put(Update::Tier(t))
        });
    let policy = (
        (0..4usize, prop::bool::ANY),
        prop::sample::select(TIERS),
        order(),
        sel(),
        types(),
        (rules(), rules()),
        (
            opt(prop::sample::select(NS_SELECTORS)),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.05),
        ),
    )
        .prop_map(
            |((i, global), tier, order, selector, types, (ingress, egress), (nss, dnt, sas))| {
                let name = format!("pol{i}");
                if global {
                    let mut p = v3::GlobalNetworkPolicy {
                        metadata: meta(&name, None, BTreeMap::new()),
                        ..Default::default()
                    };
                    let s = &mut p.spec;
                    (s.tier, s.order, s.selector, s.types) =
                        (tier.to_owned(), order, selector, types);
                    (s.ingress, s.egress) = (ingress, egress);
                    s.namespace_selector = nss.unwrap_or_default().to_owned();
                    s.do_not_track = dnt;
                    Op::Put(Update::GlobalNetworkPolicy(p))
                } else {
                    let mut p = v3::NetworkPolicy {
                        metadata: meta(&name, Some(NAMESPACES[i % 2]), BTreeMap::new()),
                        ..Default::default()
                    };
                    let s = &mut p.spec;
                    (s.tier, s.order, s.selector, s.types) =
                        (tier.to_owned(), order, selector, types);
                    (s.ingress, s.egress) = (ingress, egress);
                    if sas {
                        s.service_account_selector = "all()".to_owned();
                    }
                    Op::Put(Update::NetworkPolicy(p))
                }
            },
        );
    prop_oneof![3 => wep, 2 => profile, 2 => netset, 1 => tier, 4 => policy]
}

fn delete_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..5usize).prop_map(|i| Op::Delete(
            Kind::WorkloadEndpoint,
            Some(NAMESPACES[i % 2].to_owned()),
            format!("ep{i}")
        )),
        prop::sample::select(PROFILES).prop_map(|p| Op::Delete(Kind::Profile, None, p.to_owned())),
        prop::sample::select(TIERS).prop_map(|t| Op::Delete(Kind::Tier, None, t.to_owned())),
        (0..4usize).prop_map(|i| Op::Delete(Kind::GlobalNetworkPolicy, None, format!("pol{i}"))),
        (0..4usize).prop_map(|i| Op::Delete(
            Kind::NetworkPolicy,
            Some(NAMESPACES[i % 2].to_owned()),
            format!("pol{i}")
        )),
        Just(Op::Delete(Kind::GlobalNetworkSet, None, "gns".to_owned())),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![6 => put_op(), 1 => delete_op()]
}

// ---------------- the reference ----------------

/// The raw resources, keyed by (kind, namespace, name).
#[derive(Debug, Default, Clone)]
struct World {
    res: BTreeMap<(Kind, String, String), Update>,
}

fn key_of(u: &Update) -> (Kind, String, String) {
    let (k, m) = match u {
        Update::WorkloadEndpoint(r) => (Kind::WorkloadEndpoint, &r.metadata),
        Update::HostEndpoint(r) => (Kind::HostEndpoint, &r.metadata),
        Update::NetworkSet(r) => (Kind::NetworkSet, &r.metadata),
        Update::GlobalNetworkSet(r) => (Kind::GlobalNetworkSet, &r.metadata),
        Update::Tier(r) => (Kind::Tier, &r.metadata),
        Update::NetworkPolicy(r) => (Kind::NetworkPolicy, &r.metadata),
        Update::GlobalNetworkPolicy(r) => (Kind::GlobalNetworkPolicy, &r.metadata),
        Update::Profile(r) => (Kind::Profile, &r.metadata),
        Update::Delete { .. } => unreachable!("not stored"),
    };
    (k, m.namespace.clone(), m.name.clone())
}

/// Something with labels and addresses that a rule selector can pick.
struct Entity {
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    nets: Vec<IpNet>,
    /// (name, protocol number, port)
    ports: Vec<(String, u8, u16)>,
}

fn net(s: &str) -> IpNet {
    calico_policy::model::parse_net(s).expect("test net")
}

fn parse(s: &str) -> calico_selector::Selector {
    calico_selector::parse(s).expect("test selector")
}

impl World {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Put(u) => {
                self.res.insert(key_of(u), u.clone());
            }
            Op::Delete(k, ns, name) => {
                self.res
                    .remove(&(*k, ns.clone().unwrap_or_default(), name.clone()));
            }
        }
    }

    fn profile(&self, name: &str) -> Option<&v3::Profile> {
        match self
            .res
            .get(&(Kind::Profile, String::new(), name.to_owned()))
        {
            Some(Update::Profile(p)) => Some(p),
            _ => None,
        }
    }

    fn ep_profiles(w: &v3::WorkloadEndpoint) -> Vec<String> {
        if w.spec.profiles.is_empty() {
            vec!["calico".to_owned()]
        } else {
            w.spec.profiles.clone()
        }
    }

    fn wep_labels(&self, w: &v3::WorkloadEndpoint) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        // Earlier profiles win over later ones, own labels over all, and
        // Calico's own labels over everything.
        for p in Self::ep_profiles(w).iter().rev() {
            if let Some(p) = self.profile(p) {
                labels.extend(p.spec.labels_to_apply.clone());
            }
        }
        labels.extend(w.metadata.labels.clone());
        labels.insert(
            "projectcalico.org/namespace".to_owned(),
            w.metadata.namespace.clone(),
        );
        labels.insert(
            "projectcalico.org/orchestrator".to_owned(),
            w.spec.orchestrator.clone(),
        );
        labels
    }

    fn entities(&self) -> Vec<Entity> {
        let mut out = Vec::new();
        for u in self.res.values() {
            match u {
                Update::WorkloadEndpoint(w) => out.push(Entity {
                    namespace: Some(w.metadata.namespace.clone()),
                    labels: self.wep_labels(w),
                    nets: w.spec.ip_networks.iter().map(|n| net(n)).collect(),
                    ports: w
                        .spec
                        .ports
                        .iter()
                        .map(|p| (p.name.clone(), p.protocol.number().unwrap(), p.port))
                        .collect(),
                }),
                Update::NetworkSet(n) => {
                    let mut labels = n.metadata.labels.clone();
                    labels.insert(
                        "projectcalico.org/namespace".to_owned(),
                        n.metadata.namespace.clone(),
                    );
                    out.push(Entity {
                        namespace: Some(n.metadata.namespace.clone()),
                        labels,
                        nets: n.spec.nets.iter().map(|n| net(n)).collect(),
                        ports: vec![],
                    });
                }
                Update::GlobalNetworkSet(n) => out.push(Entity {
                    namespace: None,
                    labels: n.metadata.labels.clone(),
                    nets: n.spec.nets.iter().map(|n| net(n)).collect(),
                    ports: vec![],
                }),
                _ => {}
            }
        }
        out
    }
}

/// Whether namespace selector `nss` picks `e`'s namespace: namespaces have
/// the one label `projectcalico.org/name`; `global()` picks non-namespaced.
fn ns_selects(nss: &str, namespace: Option<&str>) -> bool {
    let s = parse(nss);
    if s.canonical() == "global()" {
        return namespace.is_none();
    }
    let mut labels = BTreeMap::new();
    if let Some(ns) = namespace {
        labels.insert("projectcalico.org/name".to_owned(), ns.to_owned());
    }
    s.evaluate(&labels)
}

struct Ctx<'a> {
    entities: &'a [Entity],
    /// The namespace of the NetworkPolicy being evaluated.
    policy_ns: Option<&'a str>,
    /// Whether the policy has a serviceAccountSelector.
    policy_sa: bool,
}

fn side_matches(
    ctx: &Ctx<'_>,
    e: &EntityRule,
    addr: IpAddr,
    proto: u8,
    rule_proto: Option<u8>,
    port: Option<u16>,
) -> bool {
    if !e.nets.is_empty() && !e.nets.iter().any(|n| net(n).contains(&addr)) {
        return false;
    }
    if e.not_nets.iter().any(|n| net(n).contains(&addr)) {
        return false;
    }
    let selects =
        !e.selector.is_empty() || !e.not_selector.is_empty() || !e.namespace_selector.is_empty();
    // Whether entity `x` is in scope of this side's selector.
    let picked = |x: &Entity| {
        let ns_ok = if !e.namespace_selector.is_empty() {
            ns_selects(&e.namespace_selector, x.namespace.as_deref())
        } else if let Some(pns) = ctx.policy_ns {
            x.namespace.as_deref() == Some(pns)
        } else {
            true
        };
        ns_ok && (e.selector.is_empty() || parse(&e.selector).evaluate(&x.labels))
    };
    let has_addr = |x: &Entity| x.nets.iter().any(|n| n.contains(&addr));
    // The address must belong to a picked entity if the rule names a
    // selector, or selects at all under some namespace scope (a
    // notSelector alone in a GlobalNetworkPolicy restricts nothing else).
    let scoped = !e.namespace_selector.is_empty() || ctx.policy_ns.is_some();
    let positive = !e.selector.is_empty() || (selects && scoped);
    if positive && !ctx.entities.iter().any(|x| picked(x) && has_addr(x)) {
        return false;
    }
    if !e.not_selector.is_empty() {
        let ns = parse(&e.not_selector);
        if ctx
            .entities
            .iter()
            .any(|x| ns.evaluate(&x.labels) && has_addr(x))
        {
            return false;
        }
    }
    let port_in = |list: &[Port], p: u16| {
        list.iter().any(|q| {
            if q.is_named() {
                ctx.entities.iter().any(|x| {
                    (!positive || picked(x))
                        && has_addr(x)
                        && x.ports.iter().any(|(n, pr, pp)| {
                            *n == q.port_name
                                && *pr == proto
                                && rule_proto.is_none_or(|r| r == *pr)
                                && *pp == p
                        })
                })
            } else {
                (q.min_port..=q.max_port).contains(&p)
            }
        })
    };
    if !e.ports.is_empty() && !port.is_some_and(|p| port_in(&e.ports, p)) {
        return false;
    }
    if !e.not_ports.is_empty() && port.is_none_or(|p| port_in(&e.not_ports, p)) {
        return false;
    }
    true
}

fn icmp_ok(f: &v3::ICMPFields, p: &Packet) -> bool {
    p.icmp_type.is_some()
        && f.r#type
            .is_none_or(|t| p.icmp_type.map(i64::from) == Some(t))
        && f.code.is_none_or(|c| p.icmp_code.map(i64::from) == Some(c))
}

fn rule_matches(ctx: &Ctx<'_>, r: &Rule, p: &Packet) -> bool {
    let unsupported = ctx.policy_sa
        || r.http.is_some()
        || r.source.service_accounts.is_some()
        || r.destination.service_accounts.is_some()
        || r.source.services.is_some()
        || r.destination.services.is_some();
    if unsupported && r.action != "Deny" {
        return false;
    }
    let version = if p.src_ip.is_ipv4() { 4 } else { 6 };
    if r.ip_version.is_some_and(|v| v != version) {
        return false;
    }
    let rule_proto = r.protocol.as_ref().and_then(Protocol::number);
    if rule_proto.is_some_and(|n| n != p.protocol) {
        return false;
    }
    if r.not_protocol.as_ref().and_then(Protocol::number) == Some(p.protocol) {
        return false;
    }
    if r.icmp.as_ref().is_some_and(|f| !icmp_ok(f, p))
        || r.not_icmp.as_ref().is_some_and(|f| icmp_ok(f, p))
    {
        return false;
    }
    side_matches(ctx, &r.source, p.src_ip, p.protocol, rule_proto, p.src_port)
        && side_matches(
            ctx,
            &r.destination,
            p.dst_ip,
            p.protocol,
            rule_proto,
            p.dst_port,
        )
}

fn action(s: &str) -> Action {
    match s {
        "Allow" => Action::Allow,
        "Deny" => Action::Deny,
        "Log" => Action::Log,
        _ => Action::Pass,
    }
}

/// A policy as the reference sees it.
struct RefPolicy<'a> {
    ns: Option<&'a str>,
    name: &'a str,
    tier: &'a str,
    order: Option<f64>,
    rules: &'a [Rule],
    sa: bool,
}

fn ord(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.partial_cmp(&b).unwrap(),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn applies(types: &[String], ingress: &[Rule], egress: &[Rule], dir: Direction) -> bool {
    let t = if types.is_empty() {
        let mut t = vec![];
        if !ingress.is_empty() || egress.is_empty() {
            t.push("Ingress");
        }
        if !egress.is_empty() {
            t.push("Egress");
        }
        t
    } else {
        types.iter().map(String::as_str).collect()
    };
    t.contains(&match dir {
        Direction::Ingress => "Ingress",
        Direction::Egress => "Egress",
    })
}

fn reference(
    world: &World,
    ep: &v3::WorkloadEndpoint,
    dir: Direction,
    p: &Packet,
) -> (Verdict, Decision) {
    let entities = world.entities();
    let labels = world.wep_labels(ep);
    let ep_ns = ep.metadata.namespace.as_str();
    let mut pols: Vec<RefPolicy<'_>> = Vec::new();
    for u in world.res.values() {
        match u {
            Update::NetworkPolicy(np) if np.metadata.namespace == ep_ns => {
                let s = &np.spec;
                if parse(if s.selector.is_empty() {
                    "all()"
                } else {
                    &s.selector
                })
                .evaluate(&labels)
                    && applies(&s.types, &s.ingress, &s.egress, dir)
                {
                    pols.push(RefPolicy {
                        ns: Some(&np.metadata.namespace),
                        name: &np.metadata.name,
                        tier: if s.tier.is_empty() {
                            "default"
                        } else {
                            &s.tier
                        },
                        order: s.order,
                        rules: if dir == Direction::Ingress {
                            &s.ingress
                        } else {
                            &s.egress
                        },
                        sa: !s.service_account_selector.is_empty(),
                    });
                }
            }
            Update::GlobalNetworkPolicy(g) => {
                let s = &g.spec;
                if s.do_not_track || s.pre_dnat {
                    continue;
                }
                let ns_ok = s.namespace_selector.is_empty()
                    || ns_selects(&s.namespace_selector, Some(ep_ns));
                if ns_ok
                    && parse(if s.selector.is_empty() {
                        "all()"
                    } else {
                        &s.selector
                    })
                    .evaluate(&labels)
                    && applies(&s.types, &s.ingress, &s.egress, dir)
                {
                    pols.push(RefPolicy {
                        ns: None,
                        name: &g.metadata.name,
                        tier: if s.tier.is_empty() {
                            "default"
                        } else {
                            &s.tier
                        },
                        order: s.order,
                        rules: if dir == Direction::Ingress {
                            &s.ingress
                        } else {
                            &s.egress
                        },
                        sa: !s.service_account_selector.is_empty(),
                    });
                }
            }
            _ => {}
        }
    }
    let tier = |name: &str| match world.res.get(&(Kind::Tier, String::new(), name.to_owned())) {
        Some(Update::Tier(t)) => (
            t.spec.order,
            t.spec.default_action.as_deref() == Some("Pass"),
        ),
        _ => (None, false),
    };
    let full = |p: &RefPolicy<'_>| match p.ns {
        Some(ns) => format!("{ns}/{}", p.name),
        None => p.name.to_owned(),
    };
    pols.sort_by(|a, b| {
        ord(tier(a.tier).0, tier(b.tier).0)
            .then_with(|| a.tier.cmp(b.tier))
            .then_with(|| ord(a.order, b.order))
            .then_with(|| full(a).cmp(&full(b)))
    });
    let mut i = 0;
    while i < pols.len() {
        let t = pols[i].tier;
        let end = pols[i..]
            .iter()
            .position(|p| p.tier != t)
            .map_or(pols.len(), |n| i + n);
        let mut passed = false;
        'tier: for pol in &pols[i..end] {
            let ctx = Ctx {
                entities: &entities,
                policy_ns: pol.ns,
                policy_sa: pol.sa,
            };
            for (n, r) in pol.rules.iter().enumerate() {
                if !rule_matches(&ctx, r, p) {
                    continue;
                }
                match action(&r.action) {
                    a @ (Action::Allow | Action::Deny) => {
                        let source = RuleSource::Policy {
                            tier: t.to_owned(),
                            namespace: pol.ns.map(str::to_owned),
                            name: pol.name.to_owned(),
                        };
                        let v = if a == Action::Allow {
                            Verdict::Allow
                        } else {
                            Verdict::Deny
                        };
                        return (
                            v,
                            Decision::PolicyRule {
                                source,
                                rule: n,
                                action: a,
                            },
                        );
                    }
                    Action::Pass => {
                        passed = true;
                        break 'tier;
                    }
                    Action::Log => {}
                }
            }
        }
        if !passed && !tier(t).1 {
            return (Verdict::Deny, Decision::EndOfTier { tier: t.to_owned() });
        }
        i = end;
    }
    let ctx = Ctx {
        entities: &entities,
        policy_ns: None,
        policy_sa: false,
    };
    for name in World::ep_profiles(ep) {
        let Some(prof) = world.profile(&name) else {
            continue;
        };
        let rules = if dir == Direction::Ingress {
            &prof.spec.ingress
        } else {
            &prof.spec.egress
        };
        for (n, r) in rules.iter().enumerate() {
            if !rule_matches(&ctx, r, p) {
                continue;
            }
            match action(&r.action) {
                a @ (Action::Allow | Action::Deny) => {
                    let v = if a == Action::Allow {
                        Verdict::Allow
                    } else {
                        Verdict::Deny
                    };
                    let source = RuleSource::Profile { name: name.clone() };
                    return (
                        v,
                        Decision::ProfileRule {
                            source,
                            rule: n,
                            action: a,
                        },
                    );
                }
                Action::Pass => break,
                Action::Log => {}
            }
        }
    }
    (Verdict::Deny, Decision::NoProfileMatched)
}

// ---------------- packets and the property ----------------

const PEERS: &[&str] = &[
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.5",
    "192.168.0.9",
    "8.8.8.8",
    "fd00::1",
    "fd00::3",
    "fd00::77",
    "2001:db8::1",
];

fn packets(own: IpAddr, dir: Direction) -> Vec<Packet> {
    let mut out = Vec::new();
    for peer in PEERS {
        let peer = ip(peer);
        if peer.is_ipv4() != own.is_ipv4() {
            continue;
        }
        let (src, dst) = match dir {
            Direction::Ingress => (peer, own),
            Direction::Egress => (own, peer),
        };
        for (protocol, port) in [(6u8, 80u16), (6, 85), (17, 85), (6, 100)] {
            out.push(Packet {
                src_ip: src,
                dst_ip: dst,
                protocol,
                src_port: Some(port),
                dst_port: Some(port),
                icmp_type: None,
                icmp_code: None,
            });
        }
        for (t, c) in [(8u8, 0u8), (8, 1), (0, 0)] {
            out.push(Packet {
                src_ip: src,
                dst_ip: dst,
                protocol: 1,
                src_port: None,
                dst_port: None,
                icmp_type: Some(t),
                icmp_code: Some(c),
            });
        }
    }
    out
}

fn check(world: &World, calc: &PolicyCalculator) -> Result<(), TestCaseError> {
    for u in world.res.values() {
        let Update::WorkloadEndpoint(w) = u else {
            continue;
        };
        if w.spec.node != NODE {
            continue;
        }
        let id = workload(&w.metadata.namespace, &w.metadata.name);
        let program = calc.program(&id).expect("local endpoint has a program");
        for own in &w.spec.ip_networks {
            let own = net(own).addr();
            for dir in [Direction::Ingress, Direction::Egress] {
                for p in packets(own, dir) {
                    let got = evaluate(program, dir, &p, calc);
                    let want = reference(world, w, dir, &p);
                    prop_assert_eq!(
                        (got.verdict, &got.decision),
                        (want.0, &want.1),
                        "{} {:?}\n{}",
                        id,
                        p,
                        got
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES raises it for a longer soak.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(200),
        ..ProptestConfig::default()
    })]

    #[test]
    fn compiled_programs_agree_with_reference(ops in prop::collection::vec(op(), 1..30)) {
        let mut calc = PolicyCalculator::new(NODE);
        let mut world = World::default();
        let mut mirror = Snapshot::default();
        for op in &ops {
            world.apply(op);
            let update = match op {
                Op::Put(u) => u.clone(),
                Op::Delete(kind, namespace, name) => Update::Delete {
                    kind: *kind,
                    namespace: namespace.clone(),
                    name: name.clone(),
                },
            };
            let deltas = calc.apply(update).expect("generated resources compile");
            mirror.apply(&deltas);
            let snap = calc.snapshot();
            // Skipped policies are a note, not dataplane output.
            mirror.skipped_policies.clone_from(&snap.skipped_policies);
            prop_assert_eq!(&mirror, &snap, "deltas replayed differ from the snapshot");
            check(&world, &calc)?;
        }
        // A fresh calculator fed the final resources in one batch agrees.
        let mut fresh = PolicyCalculator::new(NODE);
        let (deltas, errors) = fresh.apply_batch(world.res.values().cloned());
        prop_assert!(errors.is_empty());
        let mut replay = Snapshot::default();
        replay.apply(&deltas);
        replay.skipped_policies = fresh.snapshot().skipped_policies;
        prop_assert_eq!(&replay, &fresh.snapshot());
        prop_assert_eq!(fresh.snapshot(), calc.snapshot());
    }
}
