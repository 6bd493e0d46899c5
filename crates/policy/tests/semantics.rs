//! One test per policy semantic, checking denials as carefully as allows.

mod common;

use calico_policy::eval::Decision;
use calico_policy::model::{Action, IpSetMember};
use calico_policy::{Delta, Direction, PolicyCalculator, Update, Verdict};
use common::*;
use serde_json::json;

const EP: &str = "10.0.0.1";
const CLIENT: &str = "10.0.1.1";
const OTHER_NS_CLIENT: &str = "10.0.2.1";
const EXTERNAL: &str = "8.8.8.8";

/// A local endpoint `ns1/ep` (app=web), a remote client in ns1 and one in
/// ns2 (both role=client), a profile `calico` that denies everything.
fn base() -> Vec<Update> {
    vec![
        profile(
            "calico",
            json!({"ingress": [{"action": "Deny"}], "egress": [{"action": "Deny"}]}),
        ),
        wep_update("ns1", "ep", json!({"app": "web"}), EP, true),
        wep_update("ns1", "client", json!({"role": "client"}), CLIENT, false),
        wep_update(
            "ns2",
            "other",
            json!({"role": "client"}),
            OTHER_NS_CLIENT,
            false,
        ),
    ]
}

fn with(extra: Vec<Update>) -> PolicyCalculator {
    let mut all = base();
    all.extend(extra);
    calc_with(all)
}

fn ingress(calc: &PolicyCalculator, p: &calico_policy::Packet) -> calico_policy::Trace {
    trace(calc, &workload("ns1", "ep"), Direction::Ingress, p)
}

fn egress(calc: &PolicyCalculator, p: &calico_policy::Packet) -> calico_policy::Trace {
    trace(calc, &workload("ns1", "ep"), Direction::Egress, p)
}

fn allow_all(order: f64, tier: &str) -> serde_json::Value {
    json!({"tier": tier, "order": order, "selector": "all()", "ingress": [{"action": "Allow"}]})
}

fn deny_all(order: f64, tier: &str) -> serde_json::Value {
    json!({"tier": tier, "order": order, "selector": "all()", "ingress": [{"action": "Deny"}]})
}

fn decided_by_policy(t: &calico_policy::Trace) -> (String, usize) {
    match &t.decision {
        Decision::PolicyRule {
            source: calico_policy::eval::RuleSource::Policy { name, .. },
            rule,
            ..
        } => (name.clone(), *rule),
        other => panic!("expected a policy rule decision, got {other:?}"),
    }
}

#[test]
fn tiers_apply_in_order() {
    let calc = with(vec![
        tier("t1", json!({"order": 10})),
        tier("t2", json!({"order": 5})),
        gnp("deny", deny_all(1.0, "t1")),
        gnp("allow", allow_all(1.0, "t2")),
    ]);
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(t.verdict, Verdict::Allow, "{t}");
    assert_eq!(decided_by_policy(&t), ("allow".to_owned(), 0));

    // Swapping the tier orders swaps the verdict.
    let calc = with(vec![
        tier("t1", json!({"order": 1})),
        tier("t2", json!({"order": 5})),
        gnp("deny", deny_all(1.0, "t1")),
        gnp("allow", allow_all(1.0, "t2")),
    ]);
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(t.verdict, Verdict::Deny, "{t}");
    assert_eq!(decided_by_policy(&t), ("deny".to_owned(), 0));
}

#[test]
fn tier_without_order_comes_last_and_missing_default_tier_works() {
    let calc = with(vec![
        tier("late", json!({})),
        tier("early", json!({"order": 100})),
        gnp("deny", deny_all(1.0, "late")),
        gnp("allow", allow_all(1.0, "early")),
    ]);
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Allow);
    // No Tier resource at all for `default`: it still applies.
    let calc = with(vec![gnp(
        "p",
        json!({"selector": "all()", "ingress": [{"action": "Deny"}]}),
    )]);
    let program = calc.program(&workload("ns1", "ep")).unwrap();
    assert_eq!(program.ingress.tiers[0].tier, "default");
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Deny);
}

#[test]
fn policy_order_then_name() {
    // Same order: name decides ("a-allow" before "b-deny").
    let calc = with(vec![
        gnp("b-deny", deny_all(1.0, "default")),
        gnp("a-allow", allow_all(1.0, "default")),
    ]);
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(decided_by_policy(&t), ("a-allow".to_owned(), 0));
    assert_eq!(t.verdict, Verdict::Allow);
    // Lower order wins over name.
    let calc = with(vec![
        gnp("b-deny", deny_all(0.5, "default")),
        gnp("a-allow", allow_all(1.0, "default")),
    ]);
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(decided_by_policy(&t), ("b-deny".to_owned(), 0));
    assert_eq!(t.verdict, Verdict::Deny);
    // A policy without order comes after ordered ones.
    let calc = with(vec![
        gnp(
            "a-unordered",
            json!({"selector": "all()", "ingress": [{"action": "Deny"}]}),
        ),
        gnp("z-allow", allow_all(1000.0, "default")),
    ]);
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Allow);
}

#[test]
fn pass_skips_to_next_tier() {
    let calc = with(vec![
        tier("t1", json!({"order": 1})),
        tier("t2", json!({"order": 2})),
        gnp(
            "pass",
            json!({"tier": "t1", "order": 1, "selector": "all()", "ingress": [{"action": "Pass"}]}),
        ),
        // Would deny if Pass did not skip the rest of t1.
        gnp("deny", deny_all(2.0, "t1")),
        gnp("allow", allow_all(1.0, "t2")),
    ]);
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(t.verdict, Verdict::Allow, "{t}");
    assert_eq!(decided_by_policy(&t), ("allow".to_owned(), 0));
}

#[test]
fn pass_in_last_tier_goes_to_profiles() {
    let pass = json!({"selector": "all()", "ingress": [{"action": "Pass"}]});
    // The base profile denies.
    let calc = with(vec![gnp("pass", pass.clone())]);
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(t.verdict, Verdict::Deny);
    assert!(
        matches!(t.decision, Decision::NoProfileMatched)
            || matches!(t.decision, Decision::ProfileRule { .. })
    );
    assert!(
        matches!(
            t.decision,
            Decision::ProfileRule {
                action: Action::Deny,
                rule: 0,
                ..
            }
        ),
        "{t}"
    );
    // An allowing profile allows.
    let calc = with(vec![
        gnp("pass", pass),
        profile("calico", json!({"ingress": [{"action": "Allow"}]})),
    ]);
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(t.verdict, Verdict::Allow);
    assert!(matches!(
        t.decision,
        Decision::ProfileRule {
            action: Action::Allow,
            rule: 0,
            ..
        }
    ));
}

#[test]
fn selected_but_unmatched_is_denied_at_end_of_tier() {
    let calc = with(vec![
        profile("calico", json!({"ingress": [{"action": "Allow"}]})),
        gnp(
            "only-443",
            json!({"selector": "app == 'web'", "ingress": [
                {"action": "Allow", "protocol": "TCP", "destination": {"ports": [443]}}]}),
        ),
    ]);
    assert_eq!(
        ingress(&calc, &tcp(CLIENT, EP, 443)).verdict,
        Verdict::Allow
    );
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(t.verdict, Verdict::Deny, "profile must not be reached: {t}");
    assert_eq!(
        t.decision,
        Decision::EndOfTier {
            tier: "default".to_owned()
        }
    );
    // Egress is not selected (types inferred as Ingress): profile decides.
    assert!(matches!(
        egress(&calc, &tcp(EP, CLIENT, 80)).decision,
        Decision::NoProfileMatched
    ));
}

#[test]
fn default_action_pass_falls_through() {
    let calc = with(vec![
        tier("t1", json!({"order": 1, "defaultAction": "Pass"})),
        gnp(
            "nothing",
            json!({"tier": "t1", "selector": "all()", "ingress": [
                {"action": "Allow", "protocol": "UDP"}]}),
        ),
        gnp("allow", allow_all(1.0, "default")),
    ]);
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(t.verdict, Verdict::Allow, "{t}");
    assert_eq!(decided_by_policy(&t), ("allow".to_owned(), 0));
}

#[test]
fn log_continues() {
    let calc = with(vec![gnp(
        "p",
        json!({"selector": "all()", "ingress": [{"action": "Log"}, {"action": "Allow"}]}),
    )]);
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(t.verdict, Verdict::Allow);
    assert_eq!(decided_by_policy(&t), ("p".to_owned(), 1));
    // Log alone: end of tier.
    let calc = with(vec![gnp(
        "p",
        json!({"selector": "all()", "ingress": [{"action": "Log"}]}),
    )]);
    assert!(matches!(
        ingress(&calc, &tcp(CLIENT, EP, 80)).decision,
        Decision::EndOfTier { .. }
    ));
}

#[test]
fn no_policy_falls_to_profiles_default_calico() {
    let calc = with(vec![profile(
        "calico",
        json!({"ingress": [{"action": "Allow", "protocol": "TCP"}]}),
    )]);
    // The endpoint lists no profiles: it gets `calico`.
    let program = calc.program(&workload("ns1", "ep")).unwrap();
    assert_eq!(program.ingress.profiles[0].name, "calico");
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Allow);
    // No matching profile rule: deny.
    let t = ingress(&calc, &udp(CLIENT, EP, 80));
    assert_eq!(t.verdict, Verdict::Deny);
    assert_eq!(t.decision, Decision::NoProfileMatched);
    // A missing profile has no rules: deny.
    let calc = calc_with(vec![wep_update("ns1", "ep", json!({}), EP, true)]);
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(t.decision, Decision::NoProfileMatched);
    // A host endpoint with no profiles: nothing to fall through to.
    let calc = calc_with(vec![Update::HostEndpoint(typed(json!({
        "metadata": {"name": "eth0"},
        "spec": {"node": NODE, "interfaceName": "eth0", "expectedIPs": ["10.9.9.9"]}
    })))]);
    let program = calc
        .program(&calico_policy::EndpointId::Host {
            name: "eth0".to_owned(),
        })
        .unwrap();
    let t = calico_policy::evaluate(
        program,
        Direction::Ingress,
        &tcp(CLIENT, "10.9.9.9", 22),
        &calc,
    );
    assert_eq!(
        (t.verdict, t.decision),
        (Verdict::Deny, Decision::NoProfile)
    );
}

#[test]
fn profile_labels_count_for_selectors() {
    let calc = with(vec![
        profile(
            "calico",
            json!({"labelsToApply": {"team": "blue"}, "ingress": [{"action": "Deny"}]}),
        ),
        gnp(
            "blue",
            json!({"selector": "team == 'blue'", "ingress": [
            {"action": "Allow", "source": {"selector": "team == 'blue'"}}]}),
        ),
    ]);
    // Both endpoints get team=blue from the default profile.
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Allow);
    assert_eq!(
        ingress(&calc, &tcp(EXTERNAL, EP, 80)).verdict,
        Verdict::Deny
    );
    // Own labels win over the profile's.
    let mut calc = calc;
    calc.apply(wep_update(
        "ns1",
        "client",
        json!({"team": "red"}),
        CLIENT,
        false,
    ))
    .unwrap();
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Deny);
}

#[test]
fn network_policy_applies_only_in_its_namespace() {
    let calc = calc_with(vec![
        profile("calico", json!({"ingress": [{"action": "Allow"}]})),
        wep_update("ns1", "ep", json!({"app": "web"}), EP, true),
        wep_update("ns2", "ep2", json!({"app": "web"}), "10.0.0.2", true),
        np(
            "ns1",
            "deny",
            json!({"selector": "all()", "ingress": [{"action": "Deny"}]}),
        ),
    ]);
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Deny);
    let t = trace(
        &calc,
        &workload("ns2", "ep2"),
        Direction::Ingress,
        &tcp(CLIENT, "10.0.0.2", 80),
    );
    assert_eq!(t.verdict, Verdict::Allow, "{t}");
}

#[test]
fn network_policy_rule_selectors_are_scoped_to_its_namespace() {
    let calc = with(vec![np(
        "ns1",
        "from-clients",
        json!({"selector": "app == 'web'", "ingress": [
            {"action": "Allow", "source": {"selector": "role == 'client'"}}]}),
    )]);
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Allow);
    let t = ingress(&calc, &tcp(OTHER_NS_CLIENT, EP, 80));
    assert_eq!(
        t.verdict,
        Verdict::Deny,
        "same labels, other namespace: {t}"
    );
    // A GlobalNetworkPolicy's rule selector is not scoped.
    let calc = with(vec![gnp(
        "from-clients",
        json!({"selector": "app == 'web'", "ingress": [
            {"action": "Allow", "source": {"selector": "role == 'client'"}}]}),
    )]);
    assert_eq!(
        ingress(&calc, &tcp(OTHER_NS_CLIENT, EP, 80)).verdict,
        Verdict::Allow
    );
    // An empty rule selector in a NetworkPolicy matches any address.
    let calc = with(vec![np(
        "ns1",
        "any",
        json!({"selector": "all()", "ingress": [{"action": "Allow"}]}),
    )]);
    assert_eq!(
        ingress(&calc, &tcp(EXTERNAL, EP, 80)).verdict,
        Verdict::Allow
    );
}

#[test]
fn namespace_selector() {
    let calc = with(vec![
        np(
            "ns1",
            "from-ns2",
            json!({"selector": "all()", "ingress": [{"action": "Allow", "source": {
                "namespaceSelector": "projectcalico.org/name == 'ns2'", "selector": "role == 'client'"}}]}),
        ),
        gns("ext", json!({"kind": "ext"}), &["192.168.0.0/16"]),
    ]);
    assert_eq!(
        ingress(&calc, &tcp(OTHER_NS_CLIENT, EP, 80)).verdict,
        Verdict::Allow
    );
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Deny);
    // global() selects non-namespaced things: the global network set, not endpoints.
    let calc = with(vec![
        np(
            "ns1",
            "from-global",
            json!({"selector": "all()", "ingress": [{"action": "Allow", "source": {
                "namespaceSelector": "global()"}}]}),
        ),
        gns("ext", json!({"kind": "ext"}), &["192.168.0.0/16"]),
    ]);
    assert_eq!(
        ingress(&calc, &tcp("192.168.3.4", EP, 80)).verdict,
        Verdict::Allow
    );
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Deny);
}

#[test]
fn network_sets_are_rule_selector_members_only() {
    let mut calc = with(vec![
        gns(
            "ext",
            json!({"kind": "ext"}),
            &["192.168.0.0/16", "172.16.0.1"],
        ),
        ns_set(
            "ns1",
            "local-nets",
            json!({"kind": "ns"}),
            &["10.50.0.0/16"],
        ),
        gnp(
            "from-sets",
            json!({"selector": "all()", "ingress": [
                {"action": "Allow", "source": {"selector": "kind == 'ext'"}},
                {"action": "Allow", "source": {"selector": "kind == 'ns'"}}]}),
        ),
    ]);
    assert_eq!(
        ingress(&calc, &tcp("192.168.1.1", EP, 80)).verdict,
        Verdict::Allow
    );
    assert_eq!(
        ingress(&calc, &tcp("172.16.0.1", EP, 80)).verdict,
        Verdict::Allow
    );
    assert_eq!(
        ingress(&calc, &tcp("172.16.0.2", EP, 80)).verdict,
        Verdict::Deny
    );
    assert_eq!(
        ingress(&calc, &tcp("10.50.1.1", EP, 80)).verdict,
        Verdict::Allow
    );
    // Only endpoints get programs.
    assert_eq!(calc.snapshot().programs.len(), 1);
    // Shrinking the set is one member delta.
    let d = calc
        .apply(gns("ext", json!({"kind": "ext"}), &["192.168.0.0/16"]))
        .unwrap();
    assert!(
        matches!(&d[..], [Delta::IpSetMemberRemoved { member: IpSetMember::Net(n), .. }] if n.to_string() == "172.16.0.1/32"),
        "{d:?}"
    );
    assert_eq!(
        ingress(&calc, &tcp("172.16.0.1", EP, 80)).verdict,
        Verdict::Deny
    );
}

#[test]
fn named_ports() {
    let mut local = wep("ns1", "ep", json!({"app": "web"}), &[EP], true);
    local.spec.ports = vec![typed(
        json!({"name": "http", "protocol": "TCP", "port": 8080}),
    )];
    let mut calc = PolicyCalculator::new(NODE);
    let (_, errors) = calc.apply_batch(vec![
        profile("calico", json!({})),
        Update::WorkloadEndpoint(local),
        gnp(
            "http",
            json!({"selector": "all()", "ingress": [
                {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}}]}),
        ),
    ]);
    assert!(errors.is_empty());
    assert_eq!(
        ingress(&calc, &tcp(CLIENT, EP, 8080)).verdict,
        Verdict::Allow
    );
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Deny);
    assert_eq!(
        ingress(&calc, &udp(CLIENT, EP, 8080)).verdict,
        Verdict::Deny
    );
    let snap = calc.snapshot();
    assert!(snap.ip_sets.values().any(|m| m.iter().any(|m| matches!(
        m,
        IpSetMember::NamedPort {
            protocol: 6,
            port: 8080,
            ..
        }
    ))));
}

#[test]
fn icmp_and_not_icmp() {
    let calc = with(vec![gnp(
        "ping",
        json!({"selector": "all()", "ingress": [
            {"action": "Deny", "protocol": "ICMP", "icmp": {"type": 8, "code": 1}},
            {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}},
            {"action": "Allow", "protocol": "ICMP", "notICMP": {"type": 13}}]}),
    )]);
    assert_eq!(
        ingress(&calc, &icmp(CLIENT, EP, 8, 0)).verdict,
        Verdict::Allow
    );
    assert_eq!(
        ingress(&calc, &icmp(CLIENT, EP, 8, 1)).verdict,
        Verdict::Deny
    );
    assert_eq!(
        ingress(&calc, &icmp(CLIENT, EP, 0, 0)).verdict,
        Verdict::Allow
    );
    let t = ingress(&calc, &icmp(CLIENT, EP, 13, 0));
    assert_eq!(
        t.decision,
        Decision::EndOfTier {
            tier: "default".into()
        },
        "{t}"
    );
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Deny);
}

#[test]
fn negated_matches() {
    let calc = with(vec![gnp(
        "neg",
        json!({"selector": "all()", "ingress": [{
            "action": "Allow", "notProtocol": "UDP",
            "source": {"notNets": ["10.0.2.0/24"], "notSelector": "role == 'blocked'"},
            "destination": {"notPorts": [22, "1000:2000"]}}]}),
    )]);
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Allow);
    assert_eq!(ingress(&calc, &udp(CLIENT, EP, 80)).verdict, Verdict::Deny);
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 22)).verdict, Verdict::Deny);
    assert_eq!(
        ingress(&calc, &tcp(CLIENT, EP, 1500)).verdict,
        Verdict::Deny
    );
    assert_eq!(
        ingress(&calc, &tcp(CLIENT, EP, 2001)).verdict,
        Verdict::Allow
    );
    assert_eq!(
        ingress(&calc, &tcp(OTHER_NS_CLIENT, EP, 80)).verdict,
        Verdict::Deny
    );
    let mut calc = calc;
    calc.apply(wep_update(
        "ns1",
        "client",
        json!({"role": "blocked"}),
        CLIENT,
        false,
    ))
    .unwrap();
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(t.verdict, Verdict::Deny, "{t}");
}

#[test]
fn nets_and_ip_version() {
    let calc = calc_with(vec![
        profile("calico", json!({})),
        Update::WorkloadEndpoint(wep("ns1", "ep", json!({}), &[EP, "fd00::1"], true)),
        gnp(
            "v",
            json!({"selector": "all()", "ingress": [
                {"action": "Allow", "ipVersion": 6},
                {"action": "Allow", "source": {"nets": ["10.0.1.0/24"]}}]}),
        ),
    ]);
    assert_eq!(
        ingress(&calc, &tcp("fd00::9", "fd00::1", 80)).verdict,
        Verdict::Allow
    );
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Allow);
    assert_eq!(
        ingress(&calc, &tcp("10.0.3.1", EP, 80)).verdict,
        Verdict::Deny
    );
}

#[test]
fn unsupported_criteria_fail_closed() {
    let calc = with(vec![
        profile("calico", json!({"ingress": [{"action": "Allow"}]})),
        gnp(
            "l7",
            json!({"selector": "all()", "ingress": [
                {"action": "Deny", "source": {"serviceAccounts": {"names": ["x"]}, "nets": ["10.0.2.0/24"]}},
                {"action": "Allow", "http": {"methods": ["GET"]}}]}),
        ),
    ]);
    // The Allow with http never matches: end of tier.
    let t = ingress(&calc, &tcp(CLIENT, EP, 80));
    assert_eq!(t.verdict, Verdict::Deny);
    assert!(t.to_string().contains("unsupported criteria (http)"), "{t}");
    // The Deny with serviceAccounts still denies on its other criteria.
    let t = ingress(&calc, &tcp(OTHER_NS_CLIENT, EP, 80));
    assert_eq!(decided_by_policy(&t), ("l7".to_owned(), 0));
    let program = calc.program(&workload("ns1", "ep")).unwrap();
    assert_eq!(
        program.ingress.tiers[0].policies[0].rules[1].unsupported,
        ["http"]
    );
}

#[test]
fn types_inference_and_explicit_types() {
    // Only egress rules: egress only; ingress falls through to profiles.
    let calc = with(vec![
        profile(
            "calico",
            json!({"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}),
        ),
        gnp(
            "eg",
            json!({"selector": "all()", "egress": [{"action": "Deny"}]}),
        ),
    ]);
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Allow);
    assert_eq!(egress(&calc, &tcp(EP, CLIENT, 80)).verdict, Verdict::Deny);
    // No rules at all: Ingress, which then denies at the end of the tier.
    let calc = with(vec![
        profile(
            "calico",
            json!({"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}),
        ),
        gnp("empty", json!({"selector": "all()"})),
    ]);
    assert!(matches!(
        ingress(&calc, &tcp(CLIENT, EP, 80)).decision,
        Decision::EndOfTier { .. }
    ));
    assert_eq!(egress(&calc, &tcp(EP, CLIENT, 80)).verdict, Verdict::Allow);
    // Explicit types: Egress listed with no egress rules isolates egress;
    // ingress rules are ignored when Ingress is not listed.
    let calc = with(vec![
        profile(
            "calico",
            json!({"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}),
        ),
        gnp(
            "t",
            json!({"selector": "all()", "types": ["Egress"], "ingress": [{"action": "Deny"}]}),
        ),
    ]);
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Allow);
    assert_eq!(egress(&calc, &tcp(EP, CLIENT, 80)).verdict, Verdict::Deny);
}

#[test]
fn special_global_policies_are_skipped_and_noted() {
    let calc = with(vec![
        profile("calico", json!({"ingress": [{"action": "Allow"}]})),
        gnp(
            "raw",
            json!({"selector": "all()", "doNotTrack": true, "applyOnForward": true, "ingress": [{"action": "Deny"}]}),
        ),
    ]);
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Allow);
    assert_eq!(calc.snapshot().skipped_policies, ["raw"]);
}

#[test]
fn apply_on_forward_policies_apply_and_are_noted_as_not_fully_enforced() {
    let calc = with(vec![
        profile("calico", json!({"ingress": [{"action": "Allow"}]})),
        gnp(
            "fwd",
            json!({"selector": "all()", "applyOnForward": true, "ingress": [{"action": "Deny"}]}),
        ),
    ]);
    assert_eq!(ingress(&calc, &tcp(CLIENT, EP, 80)).verdict, Verdict::Deny);
    assert_eq!(calc.snapshot().skipped_policies, ["fwd"]);
}

#[test]
fn deltas_are_incremental_and_sets_exist_only_when_referenced() {
    let mut calc = with(vec![]);
    assert!(calc.snapshot().ip_sets.is_empty());
    // A policy that selects no local endpoint creates no set.
    let d = calc
        .apply(gnp(
            "p",
            json!({"selector": "app == 'none'", "ingress": [
            {"action": "Allow", "source": {"selector": "role == 'client'"}}]}),
        ))
        .unwrap();
    assert!(d.is_empty(), "{d:?}");
    // The local endpoint gains the label: program + set with both clients.
    let d = calc
        .apply(wep_update("ns1", "ep", json!({"app": "none"}), EP, true))
        .unwrap();
    assert!(matches!(d[0], Delta::IpSetAdded(_)), "{d:?}");
    assert_eq!(
        d.iter()
            .filter(|d| matches!(d, Delta::IpSetMemberAdded { .. }))
            .count(),
        2
    );
    assert!(matches!(d.last(), Some(Delta::EndpointProgramSet(_))));
    // A client losing its label: exactly one member removal.
    let d = calc
        .apply(wep_update("ns1", "client", json!({}), CLIENT, false))
        .unwrap();
    assert!(
        matches!(&d[..], [Delta::IpSetMemberRemoved { .. }]),
        "{d:?}"
    );
    // The endpoint stops being selected: program changes, set goes.
    let d = calc
        .apply(wep_update("ns1", "ep", json!({}), EP, true))
        .unwrap();
    assert!(
        matches!(
            &d[..],
            [Delta::EndpointProgramSet(_), Delta::IpSetRemoved { .. }]
        ),
        "{d:?}"
    );
    // Moving the endpoint off the node removes its program.
    let d = calc
        .apply(wep_update("ns1", "ep", json!({}), EP, false))
        .unwrap();
    assert!(
        matches!(&d[..], [Delta::EndpointProgramRemoved { .. }]),
        "{d:?}"
    );
    assert!(calc.snapshot().programs.is_empty());
}

#[test]
fn bookstore_seed_example() {
    fn yaml(path: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(format!(
            "{}/../../examples/seed/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("seed file");
        serde_saphyr::from_str(&text).expect("seed YAML")
    }
    let prof = calico_api::parse_resource(yaml("profile-calico.yaml")).expect("valid profile");
    let mut pol = yaml("policy-bookstore.yaml");
    pol["metadata"]["namespace"] = json!("default");
    let pol = calico_api::parse_resource(pol).expect("valid policy");
    let mut calc = PolicyCalculator::new(NODE);
    let eps = [
        (
            "bookstore-frontend",
            json!({"biz_type": "bookstore"}),
            "10.1.0.1",
        ),
        (
            "bookstore-server",
            json!({"biz_type": "bookstore", "role": "server"}),
            "10.1.0.2",
        ),
        (
            "fruitstore-frontend",
            json!({"biz_type": "fruitstore"}),
            "10.1.0.3",
        ),
    ];
    let mut updates = vec![
        Update::from_resource(&prof).unwrap().unwrap(),
        Update::from_resource(&pol).unwrap().unwrap(),
    ];
    for (name, labels, ip) in eps {
        let mut w = wep("default", name, labels, &[ip], true);
        w.spec.profiles = vec!["calico".to_owned()];
        updates.push(Update::WorkloadEndpoint(w));
    }
    let (_, errors) = calc.apply_batch(updates);
    assert!(errors.is_empty(), "{errors:?}");
    let server = workload("default", "bookstore-server");

    let t = trace(
        &calc,
        &server,
        Direction::Ingress,
        &tcp("10.1.0.1", "10.1.0.2", 80),
    );
    assert_eq!(t.verdict, Verdict::Allow, "{t}");
    assert_eq!(
        decided_by_policy(&t),
        ("allow-bookstore-cliient-to-server".to_owned(), 0)
    );
    assert!(t.to_string().contains("rule 0 (Allow): matched"), "{t}");
    assert!(t.to_string().starts_with(
        "ingress: ALLOW by rule 0 (Allow) of policy default/allow-bookstore-cliient-to-server (tier default)"
    ), "{t}");

    let t = trace(
        &calc,
        &server,
        Direction::Ingress,
        &tcp("10.1.0.3", "10.1.0.2", 80),
    );
    assert_eq!(t.verdict, Verdict::Deny, "{t}");
    assert_eq!(
        decided_by_policy(&t),
        ("allow-bookstore-cliient-to-server".to_owned(), 1)
    );
    assert!(t.to_string().contains("rule 1 (Deny): matched"), "{t}");
    assert!(t.to_string().starts_with(
        "ingress: DENY by rule 1 (Deny) of policy default/allow-bookstore-cliient-to-server (tier default)"
    ), "{t}");

    // Other ports: selected, so denied at the end of the tier.
    let t = trace(
        &calc,
        &server,
        Direction::Ingress,
        &tcp("10.1.0.1", "10.1.0.2", 8080),
    );
    assert_eq!(
        t.decision,
        Decision::EndOfTier {
            tier: "default".into()
        }
    );

    // Egress: no policy, falls to profile calico which allows.
    let t = trace(
        &calc,
        &server,
        Direction::Egress,
        &tcp("10.1.0.2", "10.1.0.3", 80),
    );
    assert_eq!(t.verdict, Verdict::Allow);
    assert!(
        matches!(&t.decision, Decision::ProfileRule { source: calico_policy::eval::RuleSource::Profile { name }, rule: 0, .. } if name == "calico"),
        "{t}"
    );
    // The frontends are not selected: their ingress goes to the profile,
    // which allows endpoints carrying its `calico` label only.
    let front = workload("default", "fruitstore-frontend");
    let t = trace(
        &calc,
        &front,
        Direction::Ingress,
        &tcp("10.1.0.1", "10.1.0.3", 80),
    );
    assert_eq!(t.verdict, Verdict::Allow, "{t}");
    let t = trace(
        &calc,
        &front,
        Direction::Ingress,
        &tcp(EXTERNAL, "10.1.0.3", 80),
    );
    assert_eq!(
        (t.verdict, t.decision.clone()),
        (Verdict::Deny, Decision::NoProfileMatched)
    );
    // The trace serialises.
    let js = serde_json::to_value(&t).unwrap();
    assert_eq!(js["verdict"], "Deny");
}
