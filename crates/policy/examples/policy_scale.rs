//! Felix calc-graph snapshot workloads, for cold-start time, peak memory and
//! the cost of one endpoint label change at scale:
//!
//! ```text
//! /usr/bin/time -v cargo run --release -p calico-policy --example policy_scale -- a
//! ```
//!
//! Workloads:
//! - `a`: 250,000 endpoints (200 local), 10,000 policies each selecting
//!   `has(markerN)` with 5 inbound rules with `has(markerM)` source
//!   selectors (31 markers), 100 profiles.
//! - `b1k` / `b10k`: 10,000 endpoints (200 local) and 1,000 / 10,000
//!   NetworkSet + policy pairs (each policy allows from its own set).
//! - `c`: 100,000 single-pod namespaces, each with an isolation policy
//!   (allow from the same namespace only); 200 local pods. `c-all-local`:
//!   every pod local (100,000 programs and IP sets).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use calico_api::v3::{self, ObjectMeta};
use calico_policy::{Delta, PolicyCalculator, Update};

// The allocator the agent binary uses: glibc malloc's frees were a fifth of (a).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NODE: &str = "node-0";

fn meta(name: String, namespace: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name,
        namespace: namespace.to_owned(),
        labels,
        ..ObjectMeta::default()
    }
}

fn ip_of(i: u32) -> String {
    format!("10.{}.{}.{}/32", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn wep(
    i: u32,
    namespace: &str,
    labels: BTreeMap<String, String>,
    local: bool,
    profile: Option<String>,
) -> Update {
    let mut w = v3::WorkloadEndpoint {
        metadata: meta(format!("ep{i}"), namespace, labels),
        ..Default::default()
    };
    w.spec.node = if local {
        NODE.to_owned()
    } else {
        format!("node-{}", 1 + i % 1000)
    };
    w.spec.orchestrator = "k8s".to_owned();
    w.spec.ip_networks = vec![ip_of(i)];
    w.spec.profiles = profile.into_iter().collect();
    Update::WorkloadEndpoint(w)
}

fn allow_from(selector: String) -> v3::Rule {
    let mut r = v3::Rule {
        action: "Allow".to_owned(),
        ..Default::default()
    };
    r.source.selector = selector;
    r
}

fn gnp(name: String, selector: String, ingress: Vec<v3::Rule>) -> Update {
    let mut p = v3::GlobalNetworkPolicy {
        metadata: meta(name, "", BTreeMap::new()),
        ..Default::default()
    };
    p.spec.selector = selector;
    p.spec.ingress = ingress;
    p.spec.types = vec!["Ingress".to_owned()];
    Update::GlobalNetworkPolicy(p)
}

/// Endpoint `i`'s labels in workload (a).
fn marker_labels(i: u32, marker: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (format!("marker{marker}"), String::new()),
        ("app".to_owned(), format!("app{}", i % 100)),
        ("name".to_owned(), format!("ep{i}")),
    ])
}

/// (updates, local endpoint index to change, its new labels).
type Workload = (Box<dyn Iterator<Item = Update>>, Box<dyn Fn(u32) -> Update>);

fn workload_a() -> Workload {
    // POLICY_SCALE_ENDPOINTS shrinks it, e.g. for instruction profiling.
    let endpoints: u32 = std::env::var("POLICY_SCALE_ENDPOINTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(250_000);
    const MARKERS: u32 = 31;
    let profiles = (0..100u32).map(|p| {
        let mut prof = v3::Profile {
            metadata: meta(format!("prof{p}"), "", BTreeMap::new()),
            ..Default::default()
        };
        prof.spec.labels_to_apply = BTreeMap::from([("profile".to_owned(), format!("prof{p}"))]);
        prof.spec.ingress = vec![allow_from(String::new())];
        prof.spec.egress = vec![allow_from(String::new())];
        Update::Profile(prof)
    });
    let policies = (0..10_000u32).map(|j| {
        let rules = (0..5)
            .map(|k| allow_from(format!("has(marker{})", (j + k * 7) % MARKERS)))
            .collect();
        gnp(
            format!("pol{j}"),
            format!("has(marker{})", j % MARKERS),
            rules,
        )
    });
    // Every 1250th endpoint is local: 200 of them.
    let endpoints = (0..endpoints).map(|i| {
        wep(
            i,
            "default",
            marker_labels(i, i % MARKERS),
            i.is_multiple_of(1250),
            Some(format!("prof{}", i % 100)),
        )
    });
    let change = Box::new(|n: u32| {
        let i = 1250 * 7;
        wep(
            i,
            "default",
            marker_labels(i, (i + 1 + n) % MARKERS),
            true,
            Some(format!("prof{}", i % 100)),
        )
    });
    (Box::new(profiles.chain(policies).chain(endpoints)), change)
}

fn workload_b(pairs: u32) -> Workload {
    const ENDPOINTS: u32 = 10_000;
    // Local endpoints are every 50th; spreading apps by i / 50 gives the
    // 200 local ones all 100 apps, so every pair is in some local program.
    let app = |i: u32| BTreeMap::from([("app".to_owned(), format!("app{}", (i / 50) % 100))]);
    let sets = (0..pairs).map(|s| {
        let mut n = v3::NetworkSet {
            metadata: meta(
                format!("set{s}"),
                "default",
                BTreeMap::from([("set".to_owned(), format!("s{s}"))]),
            ),
            ..Default::default()
        };
        n.spec.nets = (0..4)
            .map(|k| {
                format!(
                    "172.{}.{}.0/24",
                    16 + (s >> 8) % 16,
                    ((s & 255) + k * 64) % 256
                )
            })
            .collect();
        Update::NetworkSet(n)
    });
    let policies = (0..pairs).map(|s| {
        gnp(
            format!("pol{s}"),
            format!("app == \"app{}\"", s % 100),
            vec![allow_from(format!("set == \"s{s}\""))],
        )
    });
    let endpoints =
        (0..ENDPOINTS).map(move |i| wep(i, "default", app(i), i.is_multiple_of(50), None));
    let change = Box::new(move |n: u32| {
        wep(
            50 * 3,
            "default",
            BTreeMap::from([("app".to_owned(), format!("app{}", (3 + n + 1) % 100))]),
            true,
            None,
        )
    });
    (Box::new(sets.chain(policies).chain(endpoints)), change)
}

fn workload_c(all_local: bool) -> Workload {
    // POLICY_SCALE_NAMESPACES shrinks it, e.g. for heap profiling.
    let namespaces: u32 = std::env::var("POLICY_SCALE_NAMESPACES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let local = move |i: u32| all_local || i.is_multiple_of(500);
    let items = (0..namespaces).flat_map(move |i| {
        let ns = format!("ns{i}");
        let mut p = v3::NetworkPolicy {
            metadata: meta("isolate".to_owned(), &ns, BTreeMap::new()),
            ..Default::default()
        };
        p.spec.selector = "all()".to_owned();
        p.spec.ingress = vec![allow_from("all()".to_owned())];
        p.spec.types = vec!["Ingress".to_owned()];
        let pod = wep(
            i,
            &ns,
            BTreeMap::from([("app".to_owned(), "pod".to_owned())]),
            local(i),
            None,
        );
        [Update::NetworkPolicy(p), pod]
    });
    let change = Box::new(|n: u32| {
        wep(
            500,
            "ns500",
            BTreeMap::from([("app".to_owned(), format!("pod{n}"))]),
            true,
            None,
        )
    });
    (Box::new(items), change)
}

/// Peak resident set size so far, from the kernel.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "a".to_owned());
    let (updates, change) = match which.as_str() {
        "a" => workload_a(),
        "b1k" => workload_b(1_000),
        "b10k" => workload_b(10_000),
        "c" => workload_c(false),
        "c-all-local" => workload_c(true),
        other => panic!("unknown workload {other}; use a, b1k, b10k, c or c-all-local"),
    };
    let mut calc = PolicyCalculator::new(NODE);
    let start = Instant::now();
    let (deltas, errors) = calc.apply_batch(updates);
    let cold = start.elapsed();
    assert!(errors.is_empty(), "{errors:?}");
    let members = deltas
        .iter()
        .filter(|d| matches!(d, Delta::IpSetMemberAdded { .. }))
        .count();
    println!(
        "workload {which}: cold start to first complete output {cold:.2?}: {} programs, {} IP sets, {members} members, {} deltas",
        calc.num_programs(),
        calc.num_ip_sets(),
        deltas.len()
    );
    drop(deltas);

    // One local endpoint's labels change, repeatedly: the per-change cost.
    let mut times: Vec<Duration> = Vec::new();
    let mut sizes = Vec::new();
    for n in 0..200 {
        let update = change(n);
        let t = Instant::now();
        let d = calc.apply(update).expect("label change accepted");
        times.push(t.elapsed());
        sizes.push(d.len());
    }
    times.sort_unstable();
    println!(
        "workload {which}: one endpoint label change: median {:.1?}, p99 {:.1?}, max {:.1?} ({} deltas typical)",
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times[times.len() - 1],
        sizes[sizes.len() / 2]
    );
    if let Some(peak) = peak_rss_mib() {
        println!("workload {which}: peak RSS {peak:.0} MiB (VmHWM)");
    }
}
