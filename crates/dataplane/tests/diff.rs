//! Incremental programming: a change sends only what it changes, and the
//! incremental path always leaves the kernel exactly as a from-scratch load
//! of the same state would (random sequences of states, real nft in a fresh
//! network namespace per case; skips visibly without root, fails under
//! `CI=true`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use calico_dataplane::diff::{Diff, TableModel, diff};
use calico_dataplane::{HostOptions, Interface, Nft as _, NftCli, batch, render_with};
use calico_policy::{EndpointId, PolicyCalculator, Update};
use proptest::prelude::*;
use serde_json::{Value, json};

fn chains_of(d: &Diff) -> BTreeSet<String> {
    match d {
        Diff::Batch { chains, .. } => chains.clone(),
        other => panic!("expected a batch, got {other:?}"),
    }
}

#[test]
fn one_policy_change_sends_only_that_policys_chain() {
    let opts = HostOptions::default();
    let (a, ifaces) = common::bookstore();
    let (b, _) = common::bookstore_with(|p| {
        p["spec"]["ingress"][0]["destination"]["ports"] = json!([8080]);
    });
    let (ma, mb) = (
        TableModel::of(&render_with(&a, &ifaces, &opts)),
        TableModel::of(&render_with(&b, &ifaces, &opts)),
    );
    let d = diff(&ma, &mb);
    assert_eq!(
        chains_of(&d),
        BTreeSet::from(["pi-default/default/allow-bookstore-cliient-to-server".to_owned()])
    );
    let Diff::Batch {
        batch, elements, ..
    } = d
    else {
        unreachable!()
    };
    assert_eq!(elements, 0);
    let text = serde_json::to_string(&batch).unwrap();
    assert!(
        text.contains(r#"{"flush":{"chain""#) && text.contains("8080"),
        "{text}"
    );
    assert!(
        !text.contains(r#""delete":{"table""#),
        "no table replacement"
    );
    assert!(matches!(diff(&mb, &mb), Diff::Same));
}

#[test]
fn a_new_generation_rewrites_only_the_generation_chains() {
    let (a, ifaces) = common::bookstore();
    let one = HostOptions {
        generation: 1,
        ..HostOptions::default()
    };
    let two = HostOptions {
        generation: 2,
        ..HostOptions::default()
    };
    let d = diff(
        &TableModel::of(&render_with(&a, &ifaces, &one)),
        &TableModel::of(&render_with(&a, &ifaces, &two)),
    );
    assert_eq!(
        chains_of(&d),
        BTreeSet::from(["gen-fast".to_owned(), "gen-remember".to_owned()])
    );
}

/// One state of a small cluster: which of a pool of policies exist (and
/// in which variant), which local endpoints exist (and their labels), and
/// a network set's nets.
#[derive(Debug, Clone)]
struct World {
    policies: Vec<Option<(u16, usize)>>,
    endpoints: Vec<Option<usize>>,
    nets: Vec<u8>,
}

const APPS: [&str; 3] = ["web", "db", "cache"];

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(prop::option::of((0u16..3, 0usize..3)), 4),
        prop::collection::vec(prop::option::of(0usize..3), 4),
        prop::collection::vec(0u8..6, 0..4),
    )
        .prop_map(|(policies, endpoints, nets)| World {
            policies,
            endpoints,
            nets,
        })
}

/// Local endpoint `w{j}` (address 10.5.0.{j+1}, label `app`) on interface
/// `{iface_prefix}{j}`: its update, id and interface.
fn local_endpoint(j: usize, app: &str, iface_prefix: &str) -> (Update, EndpointId, Interface) {
    let ip = format!("10.5.0.{}/32", j + 1);
    let update = Update::WorkloadEndpoint(
        serde_json::from_value(json!({
            "metadata": {"name": format!("w{j}"), "namespace": "default", "labels": {"app": app}},
            "spec": {"node": "node1", "orchestrator": "mesos", "ipNetworks": [&ip],
                     "profiles": ["calico"]}}))
        .unwrap(),
    );
    let id = EndpointId::Workload {
        namespace: "default".into(),
        name: format!("w{j}"),
    };
    let iface = Interface::new(format!("{iface_prefix}{j}"), vec![ip.parse().unwrap()]);
    (update, id, iface)
}

fn render(w: &World) -> calico_dataplane::Ruleset {
    let mut updates = vec![Update::Profile(
        serde_json::from_value(json!({"metadata": {"name": "calico"}, "spec": {
            "ingress": [{"action": "Allow", "source": {"selector": "has(app)"}}],
            "egress": [{"action": "Allow"}]}}))
        .unwrap(),
    )];
    if !w.nets.is_empty() {
        let nets: Vec<String> = w
            .nets
            .iter()
            .map(|n| format!("192.0.2.{}/32", n * 8))
            .collect();
        updates.push(Update::GlobalNetworkSet(
            serde_json::from_value(
                json!({"metadata": {"name": "blocked", "labels": {"kind": "blocked"}},
                "spec": {"nets": nets}}),
            )
            .unwrap(),
        ));
    }
    for (i, p) in w.policies.iter().enumerate() {
        let Some((port, app)) = p else { continue };
        updates.push(Update::GlobalNetworkPolicy(
            serde_json::from_value(json!({"metadata": {"name": format!("p{i}")}, "spec": {
                "order": i, "selector": format!("app == '{}'", APPS[*app]),
                "ingress": [
                    {"action": "Deny", "source": {"selector": "kind == 'blocked'"}},
                    {"action": "Allow", "protocol": "TCP",
                     "source": {"selector": format!("app == '{}'", APPS[(app + 1) % 3])},
                     "destination": {"ports": [80 + port]}}],
                "egress": [{"action": "Allow", "destination": {"notSelector": "kind == 'blocked'"}}]}}))
            .unwrap(),
        ));
    }
    let mut ifaces = BTreeMap::new();
    for (j, e) in w.endpoints.iter().enumerate() {
        let Some(app) = e else { continue };
        let (update, id, iface) = local_endpoint(j, APPS[*app], "calidf");
        updates.push(update);
        ifaces.insert(id, iface);
    }
    let mut calc = PolicyCalculator::new("node1");
    let (_, errors) = calc.apply_batch(updates);
    assert!(errors.is_empty(), "{errors:?}");
    render_with(&calc.snapshot(), &ifaces, &HostOptions::default())
}

/// Our table as the kernel lists it, without handles and in a canonical
/// order: sets with their sorted elements, chains with their rules in order.
fn listing() -> BTreeMap<String, Value> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "inet", "calico"])
        .output()
        .expect("nft runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut m = BTreeMap::new();
    for o in v["nftables"].as_array().into_iter().flatten() {
        let (kind, body) = o.as_object().and_then(|o| o.iter().next()).expect("object");
        let mut body = body.clone();
        body.as_object_mut().map(|b| b.remove("handle"));
        // nft 1.0.6 keeps set comments from text input and drops them from JSON.
        if kind == "set" {
            body.as_object_mut().map(|b| b.remove("comment"));
        }
        match kind.as_str() {
            "set" | "map" | "chain" => {
                if let Some(elem) = body.get_mut("elem").and_then(Value::as_array_mut) {
                    elem.sort_by_key(Value::to_string);
                }
                let name = body["name"].as_str().unwrap_or_default().to_owned();
                m.insert(format!("{kind} {name}"), body);
            }
            "rule" => {
                let chain = body["chain"].as_str().unwrap_or_default().to_owned();
                let rules = m
                    .entry(format!("rules {chain}"))
                    .or_insert_with(|| json!([]));
                rules.as_array_mut().unwrap().push(body);
            }
            _ => {}
        }
    }
    m
}

/// Applies what changed, in nft's own syntax (what libnftables is given in felix).
fn apply_incrementally(nft: &mut NftCli, have: &TableModel, want: &calico_dataplane::Ruleset) {
    match diff(have, &TableModel::of(want)) {
        Diff::Same => {}
        Diff::Batch { batch, .. } => common::apply_text(Command::new("nft"), &batch),
        Diff::Replace => nft.apply(&batch(want)).expect("full batch accepted"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn incremental_path_ends_where_a_fresh_load_does(worlds in prop::collection::vec(world(), 2..6)) {
        if !calico_netlink::testing::enter_fresh_netns("incremental vs fresh") {
            return Ok(());
        }
        let mut nft = NftCli::default();
        let rendered: Vec<_> = worlds.iter().map(render).collect();

        nft.apply(&batch(&rendered[0])).expect("first load");
        // Forward through the states, then back (reversed), then the first
        // straight to the last (squashed).
        let mut path: Vec<usize> = (0..rendered.len()).collect();
        path.extend((0..rendered.len() - 1).rev());
        path.push(rendered.len() - 1);
        for pair in path.windows(2) {
            let (from, to) = (&rendered[pair[0]], &rendered[pair[1]]);
            if pair[0] + 1 != pair[1] && pair[0] != pair[1] + 1 {
                // The squashed step starts from a fresh load of its origin.
                nft.apply(&batch(from)).expect("reload");
            }
            apply_incrementally(&mut nft, &TableModel::of(from), to);
            let incremental = listing();
            nft.apply(&batch(to)).expect("fresh load");
            let fresh = listing();
            prop_assert_eq!(incremental, fresh, "step {:?}", pair);
        }
    }
}

#[test]
fn cached_render_equals_a_fresh_one_as_policies_and_sets_change() {
    let policy = |i: u32, port: u32, role: &str| {
        Update::GlobalNetworkPolicy(
            serde_json::from_value(json!({"metadata": {"name": format!("p{i}")}, "spec": {
                "order": i, "selector": "app == 'web'",
                "ingress": [{"action": "Allow", "protocol": "TCP",
                             "source": {"selector": format!("role == '{role}'")},
                             "destination": {"ports": [port]}}]}}))
            .unwrap(),
        )
    };
    let remote = |j: u32, role: &str| {
        Update::WorkloadEndpoint(
            serde_json::from_value(json!({
                "metadata": {"name": format!("r{j}"), "namespace": "default", "labels": {"role": role}},
                "spec": {"node": "other", "orchestrator": "mesos",
                         "ipNetworks": [format!("10.6.0.{}/32", j + 1)], "profiles": ["calico"]}}))
            .unwrap(),
        )
    };
    let mut calc = PolicyCalculator::new("node1");
    let mut updates = vec![Update::Profile(
        serde_json::from_value(json!({"metadata": {"name": "calico"}, "spec": {
            "ingress": [{"action": "Allow", "source": {"selector": "has(role)"}}]}}))
        .unwrap(),
    )];
    updates.extend((0..6).map(|i| policy(i, 80, &format!("r{i}"))));
    let mut ifaces = BTreeMap::new();
    for j in 0..2 {
        let (update, id, iface) = local_endpoint(j, "web", "calic");
        updates.push(update);
        ifaces.insert(id, iface);
    }
    let (_, errors) = calc.apply_batch(updates);
    assert!(errors.is_empty(), "{errors:?}");
    let opts = HostOptions::default();
    let mut cache = calico_dataplane::RenderCache::default();
    for step in 0..40u32 {
        // A policy's port moves, or a remote endpoint makes a selector's
        // set non-empty (and then empty again): rule variants change.
        let change = match step % 3 {
            0 => policy(step % 6, 81 + step, &format!("r{}", step % 6)),
            1 => remote(step % 5, &format!("r{}", step % 6)),
            _ => Update::Delete {
                kind: calico_api::Kind::WorkloadEndpoint,
                namespace: Some("default".into()),
                name: format!("r{}", (step + 2) % 5),
            },
        };
        calc.apply(change).expect("change accepted");
        let snap = calc.snapshot();
        let cached = calico_dataplane::render_cached(&snap, &ifaces, &opts, &mut cache);
        let fresh = render_with(&snap, &ifaces, &opts);
        assert_eq!(cached.objects, fresh.objects, "step {step}");
        assert_eq!(cached.errors, fresh.errors);
        assert_eq!(cached.skipped_rules, fresh.skipped_rules);
    }
}

/// Four policies over four endpoints and two nets: enough chains and rules
/// for a cold start in several pieces.
fn cold_start_world() -> World {
    World {
        policies: vec![Some((0, 0)), Some((1, 1)), Some((2, 2)), Some((0, 1))],
        endpoints: vec![Some(0), Some(1), Some(2), Some(0)],
        nets: vec![1, 2],
    }
}

#[test]
fn a_cold_start_in_pieces_keeps_the_fail_closed_table_until_the_last() {
    if !calico_netlink::testing::enter_fresh_netns("cold start in pieces") {
        return;
    }
    let want = render(&cold_start_world());
    let fail_closed = calico_dataplane::fail_closed_table();
    let mut nft = NftCli::default();
    nft.apply(&batch(&fail_closed)).expect("fail-closed table");
    let closed = listing();
    let have = TableModel::of(&fail_closed);
    let Diff::Batch { batch: b, .. } = diff(&have, &TableModel::of(&want)) else {
        panic!("a cold start is a batch")
    };
    let pieces = calico_dataplane::diff::split(b, &have, 5);
    assert!(pieces.len() > 3, "{} pieces", pieces.len());
    for (i, piece) in pieces.iter().enumerate() {
        let rules = piece
            .objects
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    nftables::schema::NfObject::CmdObject(nftables::schema::NfCmd::Add(
                        nftables::schema::NfListObject::Rule(_)
                    ))
                )
            })
            .count();
        nft.apply(piece).expect("piece accepted");
        if i + 1 < pieces.len() {
            assert!(rules < 5 + longest_chain(piece), "piece {i}: {rules} rules");
            // Until the last piece, traffic sees the fail-closed base chains.
            for chain in ["prerouting", "forward", "input", "output"] {
                let key = format!("rules {chain}");
                assert_eq!(listing().get(&key), closed.get(&key), "piece {i}, {chain}");
            }
        }
    }
    let incremental = listing();
    nft.apply(&batch(&want)).expect("fresh load");
    assert_eq!(incremental, listing());
}

/// The chains a piece adds rules to, once each per rule.
fn chains_in(piece: &nftables::schema::Nftables<'_>) -> Vec<String> {
    piece
        .objects
        .iter()
        .filter_map(|c| match c {
            nftables::schema::NfObject::CmdObject(nftables::schema::NfCmd::Add(
                nftables::schema::NfListObject::Rule(r),
            )) => Some(r.chain.to_string()),
            _ => None,
        })
        .collect()
}

/// The most rules a piece adds to one chain (at least 1).
fn longest_chain(piece: &nftables::schema::Nftables<'_>) -> usize {
    let mut counts = BTreeMap::new();
    for chain in chains_in(piece) {
        *counts.entry(chain).or_insert(0) += 1;
    }
    counts.into_values().max().unwrap_or(1)
}

fn is_rule(c: &nftables::schema::NfObject<'_>) -> bool {
    matches!(
        c,
        nftables::schema::NfObject::CmdObject(nftables::schema::NfCmd::Add(
            nftables::schema::NfListObject::Rule(_)
        ))
    )
}

/// A cold start split as felix splits it, with libnftables sending the
/// pieces between the first and the last from two threads: the first piece
/// creates (no rules), the ones between only add rules, and the table ends
/// exactly as a fresh load; a piece refused in the middle stops the rest,
/// and the last (which puts the policy in force) is never sent.
#[test]
fn pieces_sent_from_two_threads_end_as_a_fresh_load_and_stop_at_a_refusal() {
    if !calico_netlink::testing::enter_fresh_netns("pieces from two threads") {
        return;
    }
    let want = render(&cold_start_world());
    let fail_closed = calico_dataplane::fail_closed_table();
    let have = TableModel::of(&fail_closed);
    let cold_start = || match diff(&have, &TableModel::of(&want)) {
        Diff::Batch { batch: b, .. } => calico_dataplane::diff::split(b, &have, 3),
        other => panic!("a cold start is a batch, got {other:?}"),
    };
    let pieces = cold_start();
    assert!(pieces.len() > 4, "{} pieces", pieces.len());
    assert!(
        !pieces[0].objects.iter().any(is_rule),
        "the first piece only creates"
    );
    let mut piece_of_chain = BTreeMap::new();
    for (i, piece) in pieces[1..pieces.len() - 1].iter().enumerate() {
        assert!(
            piece.objects.iter().all(is_rule),
            "piece {}: rules only",
            i + 1
        );
        let rules = piece.objects.len();
        assert!(
            rules < 3 + longest_chain(piece),
            "piece {}: {rules} rules",
            i + 1
        );
        for chain in chains_in(piece) {
            let first = *piece_of_chain.entry(chain.clone()).or_insert(i);
            assert_eq!(first, i, "chain {chain}: its rules in one piece");
        }
    }

    let mut lib = calico_dataplane::NftLib::open().expect("libnftables");
    lib.apply(&batch(&fail_closed)).expect("fail-closed table");
    let closed = listing();
    let mut called = Vec::new();
    lib.apply_split(&pieces, &mut |i| called.push(i))
        .expect("every piece accepted");
    assert_eq!(called, (0..pieces.len()).collect::<Vec<_>>());
    let split_load = listing();
    NftCli::default().apply(&batch(&want)).expect("fresh load");
    assert_eq!(split_load, listing());

    // Again from the fail-closed table, one piece in the middle refused (a
    // jump to a chain that does not exist).
    lib.apply(&batch(&fail_closed)).expect("fail-closed table");
    let mut pieces = cold_start();
    let bad: nftables::schema::NfObject<'static> = serde_json::from_value(json!({"add": {"rule": {
        "family": "inet", "table": "calico", "chain": "cali-nonexistent-src",
        "expr": [{"jump": {"target": "cali-nowhere"}}]}}}))
    .expect("a rule");
    let middle = pieces.len() / 2;
    let mut objects = pieces[middle].objects.to_vec();
    objects.push(bad);
    pieces[middle].objects = objects.into();
    let mut called = Vec::new();
    let refused = lib.apply_split(&pieces, &mut |i| called.push(i));
    assert!(refused.is_err(), "a refused piece is an error");
    assert!(
        !called.contains(&(pieces.len() - 1)),
        "the last piece never goes: {called:?}"
    );
    for chain in ["prerouting", "forward", "input", "output"] {
        let key = format!("rules {chain}");
        assert_eq!(
            listing().get(&key),
            closed.get(&key),
            "{chain} still fail-closed"
        );
    }
}
