//! An endpoint on another host coming, going or changing labels moves only
//! IP set members: felix programs those sets' elements and the next policy
//! generation, nothing else, and the kernel ends up exactly as a
//! from-scratch pass leaves it (a differential test over random sequences
//! that mix member changes with changes that need the full pass).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use calico_dataplane::render::{CT_GENERATION_MASK, GEN_FAST_CHAIN, GEN_REMEMBER_CHAIN};
use calico_dataplane::{ConntrackCall, RecordingConntrack, RecordingNft};
use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, Kind};
use calico_felix::{Config, Felix, Kernel};
use calico_netlink::fake::{FakeNetlink, FakeSysctl};
use common::{Shared, put};
use serde_json::{Value, json};

type Agent = Felix<FakeNetlink, Shared<RecordingNft>, Shared<RecordingConntrack>, FakeSysctl>;

fn agent(ds: &Arc<dyn Datastore>) -> (Agent, Shared<RecordingNft>, Shared<RecordingConntrack>) {
    let (nft, ct) = (Shared::default(), Shared::default());
    let felix = Felix::new(
        Config::new("h1"),
        ds.clone(),
        Kernel {
            netlink: FakeNetlink::new(),
            nft: nft.clone(),
            conntrack: ct.clone(),
            sysctl: FakeSysctl::default(),
        },
    );
    (felix, nft, ct)
}

/// Catches up with the datastore and programs what it found.
fn pass(felix: &mut Agent) {
    felix.sync().unwrap();
    felix.program(Instant::now());
}

/// A local endpoint (`caliw1`, app `web`), allowed from `role == 'db'` on
/// 5432 and denied from `role == 'bad'` (policy order `deny_order`).
fn seed(ds: &dyn Datastore, deny_order: u32) {
    put(
        ds,
        Key::global(Kind::Profile, "calico"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
            "metadata": {"name": "calico"}, "spec": {}}),
    );
    put(
        ds,
        Key::namespaced(Kind::WorkloadEndpoint, "default", "h1-mesos-w1-eth0"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": "h1-mesos-w1-eth0", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"node": "h1", "orchestrator": "mesos", "workload": "w1", "endpoint": "eth0",
                     "interfaceName": "caliw1", "ipNetworks": ["10.65.1.2/32"], "profiles": ["calico"]}}),
    );
    put(
        ds,
        Key::global(Kind::GlobalNetworkPolicy, "from-db"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "from-db"},
            "spec": {"order": 20, "selector": "app == 'web'", "types": ["Ingress"],
                     "ingress": [{"action": "Allow", "protocol": "TCP",
                                  "source": {"selector": "role == 'db'"},
                                  "destination": {"ports": [5432]}}]}}),
    );
    put(
        ds,
        Key::global(Kind::GlobalNetworkPolicy, "deny-bad"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "deny-bad"},
            "spec": {"order": deny_order, "selector": "app == 'web'", "types": ["Ingress"],
                     "ingress": [{"action": "Deny", "source": {"selector": "role == 'bad'"}}]}}),
    );
}

/// A global network set with `role` (none: no label) and `net`.
fn network_set(ds: &dyn Datastore, name: &str, role: Option<&str>, net: &str) {
    let labels = role.map_or(json!({}), |r| json!({ "role": r }));
    put(
        ds,
        Key::global(Kind::GlobalNetworkSet, name),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
            "metadata": {"name": name, "labels": labels}, "spec": {"nets": [net]}}),
    );
}

/// An endpoint on host h2 with `role` (none: no label) and `net`.
fn remote(ds: &dyn Datastore, name: &str, role: Option<&str>, net: &str) {
    let labels = role.map_or(json!({}), |r| json!({ "role": r }));
    put(
        ds,
        Key::namespaced(Kind::WorkloadEndpoint, "default", name),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"node": "h2", "orchestrator": "mesos", "workload": name, "endpoint": "eth0",
                     "interfaceName": format!("cali{name}"), "ipNetworks": [net],
                     "profiles": ["calico"]}}),
    );
}

fn commands(batch: &Value) -> Vec<Value> {
    batch["nftables"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_remote_endpoint_joining_a_set_sends_that_element_and_the_generation_only() {
    let dir = tempfile::tempdir().unwrap();
    let ds: Arc<dyn Datastore> = Arc::new(SqliteDatastore::open(&dir.path().join("c.db")).unwrap());
    seed(ds.as_ref(), 10);
    remote(ds.as_ref(), "r1", Some("db"), "10.66.0.1/32");
    remote(ds.as_ref(), "r9", Some("bad"), "10.66.9.9/32");
    let (mut felix, nft, ct) = agent(&ds);
    pass(&mut felix);
    let before = nft.0.lock().unwrap().batches.len();

    remote(ds.as_ref(), "r2", Some("db"), "10.66.0.5/32");
    pass(&mut felix);
    let batches = nft.0.lock().unwrap().batches.clone();
    assert_eq!(
        batches.len(),
        before + 2,
        "the elements, then the generation"
    );
    assert!(
        commands(&batches[before])
            .iter()
            .all(|c| c.pointer("/add/element").is_some()),
        "elements first, alone (they go over netlink): {:?}",
        batches[before]
    );
    let last: Vec<Value> = batches[before..].iter().flat_map(commands).collect();
    let mut elements = Vec::new();
    for cmd in &last {
        if let Some(e) = cmd.pointer("/add/element") {
            elements.push(e.clone());
            continue;
        }
        let chain = cmd
            .pointer("/flush/chain/name")
            .or_else(|| cmd.pointer("/add/rule/chain"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("neither an element nor a generation chain: {cmd}"));
        assert!(
            [GEN_FAST_CHAIN, GEN_REMEMBER_CHAIN].contains(&chain),
            "{chain} rewritten for a member change"
        );
    }
    assert_eq!(elements.len(), 1, "{last:?}");
    assert!(elements[0]["name"].as_str().unwrap().starts_with("ip4-s."));
    assert!(elements[0]["elem"].to_string().contains("10.66.0.5"));
    // The generation it moved to had its stale flows deleted before, the
    // next one once felix is idle (as for every change).
    felix.idle();
    let calls = ct.0.lock().unwrap().calls.clone();
    assert!(calls.ends_with(&[
        ConntrackCall::FlushMark(2 << 16, CT_GENERATION_MASK),
        ConntrackCall::FlushMark(3 << 16, CT_GENERATION_MASK),
    ]));

    // A member already covered by a net in the set changes nothing in the kernel.
    network_set(ds.as_ref(), "n3", Some("db"), "10.66.0.0/30");
    pass(&mut felix);
    let n = nft.0.lock().unwrap().batches.len();
    remote(ds.as_ref(), "r4", Some("db"), "10.66.0.2/32");
    pass(&mut felix);
    assert_eq!(nft.0.lock().unwrap().batches.len(), n);
}

/// The table by name: set definitions with their elements sorted, chains
/// with their rules in order. The generation (which differs between two
/// agents) is checked to be the same in both generation chains and then
/// replaced by 0.
fn canonical(table: &[Value]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut rules: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for o in table {
        if let Some(set) = o.get("set") {
            let mut set = set.clone();
            let mut elems: Vec<String> = set["elem"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect();
            elems.sort();
            set["elem"] = json!(elems);
            out.insert(format!("set {}", set["name"]), set);
        } else if let Some(chain) = o.get("chain") {
            out.insert(format!("chain {}", chain["name"]), chain.clone());
        } else if let Some(rule) = o.get("rule") {
            let chain = rule["chain"].as_str().unwrap_or_default().to_owned();
            rules.entry(chain).or_default().push(rule.clone());
        }
    }
    let mut generation = |chain: &str, at: &str| {
        rules
            .get_mut(chain)
            .and_then(|r| r.first_mut())
            .and_then(|r| r.pointer_mut(at))
            .map(std::mem::take)
            .unwrap_or_else(|| panic!("{chain} holds the generation at {at}"))
    };
    let fast = generation(GEN_FAST_CHAIN, "/expr/1/match/right");
    let remember = generation(GEN_REMEMBER_CHAIN, "/expr/0/mangle/value/|/1");
    assert_eq!(
        fast, remember,
        "both generation chains carry one generation"
    );
    for (chain, rules) in rules {
        out.insert(format!("rules {chain}"), json!(rules));
    }
    out
}

/// A small deterministic generator (the test must be repeatable).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn member_changes_leave_the_table_as_a_full_pass_would() {
    let dir = tempfile::tempdir().unwrap();
    let ds: Arc<dyn Datastore> = Arc::new(SqliteDatastore::open(&dir.path().join("c.db")).unwrap());
    seed(ds.as_ref(), 10);
    let (mut felix, nft, _ct) = agent(&ds);
    pass(&mut felix);
    let roles = [Some("db"), Some("bad"), None];
    // Adjacent addresses, so elements merge and split.
    let addresses = [
        "10.66.0.0/32",
        "10.66.0.1/32",
        "10.66.0.2/32",
        "10.66.1.7/32",
        "fd00:66::1/128",
        "fd00:66::/128",
    ];
    // Nets that overlap the endpoints' addresses.
    let nets = ["10.66.0.0/30", "10.66.0.2/31", "fd00:66::/127"];
    let mut rng = Lcg(7);
    let mut member_only = 0;
    for step in 0..250 {
        let before = nft.0.lock().unwrap().batches.len();
        let name = format!("r{}", rng.below(6));
        let role = roles[usize::try_from(rng.below(3)).unwrap()];
        match rng.below(12) {
            0..=5 => {
                let address = addresses[usize::try_from(rng.below(6)).unwrap()];
                remote(ds.as_ref(), &name, role, address);
            }
            6..=7 => {
                let _ = ds.delete(
                    &Key::namespaced(Kind::WorkloadEndpoint, "default", &name),
                    None,
                );
            }
            8 => {
                let net = nets[usize::try_from(rng.below(3)).unwrap()];
                network_set(ds.as_ref(), &format!("n{}", rng.below(2)), role, net);
            }
            9..=10 => {
                let set = format!("n{}", rng.below(2));
                let _ = ds.delete(&Key::global(Kind::GlobalNetworkSet, &set), None);
            }
            // A policy change: a full pass between member changes.
            _ => seed(ds.as_ref(), u32::try_from(rng.below(30)).unwrap()),
        }
        pass(&mut felix);
        let batches = nft.0.lock().unwrap().batches.clone();
        if batches.len() > before
            && batches[before..].iter().flat_map(commands).all(|c| {
                c.pointer("/add/element").is_some()
                    || c.pointer("/delete/element").is_some()
                    || c.to_string().contains("gen-")
            })
        {
            member_only += 1;
        }

        let (mut fresh, fresh_nft, _) = agent(&ds);
        pass(&mut fresh);
        let incremental = canonical(&nft.0.lock().unwrap().table);
        let scratch = canonical(&fresh_nft.0.lock().unwrap().table);
        assert!(
            incremental == scratch,
            "step {step}: the table differs from a from-scratch pass:\n{}",
            incremental
                .iter()
                .filter(|(k, v)| scratch.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k}: have {v}, want {:?}", scratch.get(k)))
                .chain(
                    scratch
                        .keys()
                        .filter(|k| !incremental.contains_key(*k))
                        .map(|k| format!("{k}: missing"))
                )
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        member_only >= 30,
        "only {member_only} of 250 steps were member-only transactions: the fast path is not tested"
    );
}
