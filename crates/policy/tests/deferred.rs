//! NetworkPolicies of namespaces without a local endpoint are kept as
//! received and compiled only when the namespace gains its first local
//! endpoint; these tests check the program and IP sets at each transition,
//! and that the output always equals a fresh calculator's.

mod common;

use calico_api::Kind;
use calico_policy::eval::{Decision, RuleSource};
use calico_policy::{Delta, Direction, PolicyCalculator, Snapshot, Update, Verdict};
use common::*;
use serde_json::json;

const SERVER: &str = "10.0.2.5";
const SERVER2: &str = "10.0.2.6";
const NS2_CLIENT: &str = "10.0.2.1";
const NS1_CLIENT: &str = "10.0.1.1";

/// ns2 has remote clients and an isolation policy, but no local endpoint;
/// ns1 has one local endpoint with no policy.
fn base() -> Vec<Update> {
    vec![
        profile(
            "calico",
            json!({"ingress": [{"action": "Deny"}], "egress": [{"action": "Allow"}]}),
        ),
        wep_update("ns1", "local", json!({"app": "x"}), "10.0.1.9", true),
        wep_update(
            "ns1",
            "client",
            json!({"role": "client"}),
            NS1_CLIENT,
            false,
        ),
        wep_update(
            "ns2",
            "client",
            json!({"role": "client"}),
            NS2_CLIENT,
            false,
        ),
        isolate("Allow"),
    ]
}

/// ns2's policy: `action` from ns2's clients (the selector is scoped to ns2).
fn isolate(action: &str) -> Update {
    np(
        "ns2",
        "isolate",
        json!({"selector": "all()", "ingress": [
            {"action": action, "source": {"selector": "role == 'client'"}}]}),
    )
}

fn server(local: bool) -> Update {
    wep_update("ns2", "server", json!({"app": "server"}), SERVER, local)
}

/// Applies `u`, checking that it was accepted, that the deltas replayed onto
/// `replayed` give the snapshot, and that the snapshot equals a fresh
/// calculator's given the same resources in one batch.
fn step(
    calc: &mut PolicyCalculator,
    replayed: &mut Snapshot,
    u: Update,
    all: &[Update],
) -> Vec<Delta> {
    let deltas = calc.apply(u).expect("update accepted");
    replayed.apply(&deltas);
    let snap = calc.snapshot();
    assert_eq!(*replayed, snap, "deltas replay to the snapshot");
    assert_eq!(
        snap,
        calc_with(all.to_vec()).snapshot(),
        "incremental == fresh"
    );
    deltas
}

fn ingress_from(calc: &PolicyCalculator, name: &str, dst: &str, src: &str) -> calico_policy::Trace {
    trace(
        calc,
        &workload("ns2", name),
        Direction::Ingress,
        &tcp(src, dst, 80),
    )
}

fn sets_added(deltas: &[Delta]) -> usize {
    deltas
        .iter()
        .filter(|d| matches!(d, Delta::IpSetAdded(_)))
        .count()
}

fn sets_removed(deltas: &[Delta]) -> usize {
    deltas
        .iter()
        .filter(|d| matches!(d, Delta::IpSetRemoved { .. }))
        .count()
}

#[test]
fn deferred_policy_compiles_when_its_namespace_gains_a_local_endpoint_and_retires_after_the_last() {
    let mut all = base();
    let mut calc = PolicyCalculator::new(NODE);
    let (deltas, errors) = calc.apply_batch(all.clone());
    assert!(errors.is_empty(), "{errors:?}");
    let mut replayed = Snapshot::default();
    replayed.apply(&deltas);
    // Deferred: no program references ns2's rule set, so it does not exist.
    assert_eq!(calc.num_ip_sets(), 0);
    assert_eq!(sets_added(&deltas), 0);

    // While deferred the policy changes: the newest version is what compiles.
    all.push(isolate("Deny"));
    let d = step(&mut calc, &mut replayed, isolate("Deny"), &all);
    assert_eq!(sets_added(&d), 0, "a deferred policy activates no set");
    all.push(isolate("Allow"));
    step(&mut calc, &mut replayed, isolate("Allow"), &all);

    // The first local endpoint of ns2 arrives.
    all.push(server(true));
    let d = step(&mut calc, &mut replayed, server(true), &all);
    assert_eq!(sets_added(&d), 1, "{d:?}");
    let t = ingress_from(&calc, "server", SERVER, NS2_CLIENT);
    assert_eq!(t.verdict, Verdict::Allow, "{t}");
    assert_eq!(
        t.decision,
        Decision::PolicyRule {
            source: RuleSource::Policy {
                tier: "default".into(),
                namespace: Some("ns2".into()),
                name: "isolate".into(),
            },
            rule: 0,
            action: calico_policy::model::Action::Allow,
        }
    );
    // The rule's selector is scoped to ns2: ns1's client is not in the set.
    let t = ingress_from(&calc, "server", SERVER, NS1_CLIENT);
    assert_eq!(t.verdict, Verdict::Deny, "{t}");
    assert!(matches!(t.decision, Decision::EndOfTier { .. }), "{t}");

    // Active: a change recompiles and rebuilds the program.
    all.push(isolate("Deny"));
    step(&mut calc, &mut replayed, isolate("Deny"), &all);
    let t = ingress_from(&calc, "server", SERVER, NS2_CLIENT);
    assert_eq!(t.verdict, Verdict::Deny, "{t}");
    assert!(
        matches!(t.decision, Decision::PolicyRule { rule: 0, .. }),
        "{t}"
    );
    all.push(isolate("Allow"));
    step(&mut calc, &mut replayed, isolate("Allow"), &all);

    // A second local endpoint, then the first leaves: still active.
    let server2 = wep_update("ns2", "server2", json!({}), SERVER2, true);
    all.push(server2.clone());
    let d = step(&mut calc, &mut replayed, server2, &all);
    assert_eq!(sets_added(&d), 0, "the set is shared");
    let del = Update::Delete {
        kind: Kind::WorkloadEndpoint,
        namespace: Some("ns2".into()),
        name: "server".into(),
    };
    all.retain(|u| !matches!(u, Update::WorkloadEndpoint(w) if w.metadata.name == "server"));
    let d = step(&mut calc, &mut replayed, del, &all);
    assert_eq!(sets_removed(&d), 0, "{d:?}");
    let t = ingress_from(&calc, "server2", SERVER2, NS2_CLIENT);
    assert_eq!(t.verdict, Verdict::Allow, "{t}");

    // The last local endpoint moves off the node: programs and sets retire.
    let remote = wep_update("ns2", "server2", json!({}), SERVER2, false);
    all.push(remote.clone());
    let d = step(&mut calc, &mut replayed, remote, &all);
    assert_eq!(sets_removed(&d), 1, "{d:?}");
    assert!(
        d.iter()
            .any(|d| matches!(d, Delta::EndpointProgramRemoved { .. }))
    );
    assert_eq!(calc.num_ip_sets(), 0);
    assert_eq!(calc.num_programs(), 1, "only ns1's endpoint");

    // And back: the kept policy compiles again.
    all.push(server(true));
    let d = step(&mut calc, &mut replayed, server(true), &all);
    assert_eq!(sets_added(&d), 1, "{d:?}");
    let t = ingress_from(&calc, "server", SERVER, NS2_CLIENT);
    assert_eq!(t.verdict, Verdict::Allow, "{t}");

    // Deleting the policy while active removes it from the program.
    let del = Update::Delete {
        kind: Kind::NetworkPolicy,
        namespace: Some("ns2".into()),
        name: "isolate".into(),
    };
    all.retain(|u| !matches!(u, Update::NetworkPolicy(_)));
    let d = step(&mut calc, &mut replayed, del, &all);
    assert_eq!(sets_removed(&d), 1, "{d:?}");
    let t = ingress_from(&calc, "server", SERVER, NS2_CLIENT);
    assert!(matches!(t.decision, Decision::ProfileRule { .. }), "{t}");
}

#[test]
fn deferred_policy_errors_are_reported_and_leave_the_kept_version() {
    let mut calc = calc_with(base());
    for bad in [
        json!({"selector": "all(", "ingress": [{"action": "Allow"}]}),
        json!({"selector": "all()", "ingress": [{"action": "Allowed"}]}),
        json!({"selector": "all()", "ingress": [{"action": "Allow", "source": {"selector": "a =="}}]}),
        json!({"selector": "all()", "ingress": [{"action": "Allow", "source": {"nets": ["10.0.0.0/33"]}}]}),
        json!({"selector": "all()", "ingress": [{"action": "Allow", "protocol": "QUIC"}]}),
        json!({"selector": "all()", "egress": [{"action": "Allow", "destination": {"namespaceSelector": "x =="}}]}),
    ] {
        let err = calc
            .apply(np("ns2", "isolate", bad.clone()))
            .expect_err("invalid policy rejected while deferred");
        assert!(
            err.to_string().starts_with("NetworkPolicy ns2/isolate: "),
            "{err}"
        );
    }
    // The valid version staged first is the one that compiles.
    calc.apply(server(true)).unwrap();
    let t = ingress_from(&calc, "server", SERVER, NS2_CLIENT);
    assert_eq!(t.verdict, Verdict::Allow, "{t}");
    assert!(
        matches!(t.decision, Decision::PolicyRule { rule: 0, .. }),
        "{t}"
    );
}

#[test]
fn deferred_namespace_label_changes_of_remote_endpoints_reach_active_sets_only() {
    let mut all = base();
    all.push(server(true));
    let mut calc = calc_with(all.clone());
    // A remote ns2 endpoint becomes a client: the active ns2 set gains it.
    let joined = wep_update("ns2", "late", json!({"role": "client"}), "10.0.2.7", false);
    all.push(joined.clone());
    let d = calc.apply(joined).unwrap();
    assert!(
        d.iter()
            .any(|d| matches!(d, Delta::IpSetMemberAdded { .. })),
        "{d:?}"
    );
    assert_eq!(calc.snapshot(), calc_with(all).snapshot());
    let t = ingress_from(&calc, "server", SERVER, "10.0.2.7");
    assert_eq!(t.verdict, Verdict::Allow, "{t}");
}

#[test]
fn namespaces_sharing_a_policy_spec_stay_independent() {
    let same = |ns: &str, action: &str| {
        np(
            ns,
            "isolate",
            json!({"selector": "all()", "ingress": [
                {"action": action, "source": {"selector": "role == 'client'"}}]}),
        )
    };
    let mut all = base();
    all.extend([
        same("ns3", "Allow"),
        same("ns4", "Allow"),
        wep_update(
            "ns3",
            "client",
            json!({"role": "client"}),
            "10.0.3.1",
            false,
        ),
        wep_update(
            "ns4",
            "client",
            json!({"role": "client"}),
            "10.0.4.1",
            false,
        ),
    ]);
    let mut calc = calc_with(all.clone());
    // ns3's copy is deleted and ns4's changed; ns2's is untouched.
    let del = Update::Delete {
        kind: Kind::NetworkPolicy,
        namespace: Some("ns3".into()),
        name: "isolate".into(),
    };
    calc.apply(del).unwrap();
    calc.apply(same("ns4", "Deny")).unwrap();
    all.retain(|u| !matches!(u, Update::NetworkPolicy(p) if p.metadata.namespace != "ns2"));
    all.push(same("ns4", "Deny"));
    for (ns, ip) in [("ns2", SERVER), ("ns3", "10.0.3.5"), ("ns4", "10.0.4.5")] {
        let ep = wep_update(ns, "server", json!({}), ip, true);
        all.push(ep.clone());
        calc.apply(ep).unwrap();
    }
    assert_eq!(calc.snapshot(), calc_with(all).snapshot());
    let verdict = |ns: &str, dst: &str, src: &str| {
        trace(
            &calc,
            &workload(ns, "server"),
            Direction::Ingress,
            &tcp(src, dst, 80),
        )
        .verdict
    };
    assert_eq!(verdict("ns2", SERVER, NS2_CLIENT), Verdict::Allow);
    // No policy left in ns3: the profile denies, but not by a policy rule.
    let t = trace(
        &calc,
        &workload("ns3", "server"),
        Direction::Ingress,
        &tcp("10.0.3.1", "10.0.3.5", 80),
    );
    assert!(matches!(t.decision, Decision::ProfileRule { .. }), "{t}");
    assert_eq!(verdict("ns4", "10.0.4.5", "10.0.4.1"), Verdict::Deny);
}
