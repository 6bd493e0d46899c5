//! Kernel programming time for a large ruleset: renders N policies × 20
//! ingress rules (ports, nets, selectors) selecting 10 local endpoints and
//! programs it in a fresh network namespace, side by side: the whole table
//! replaced through the `nft` command on every change (before), a cold start
//! through libnftables, one policy change at a time incrementally through
//! the `nft` command and through libnftables, and remote endpoints joining
//! an IP set:
//!
//! ```text
//! sudo cargo run --release -p calico-dataplane --example program_rules -- 500
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use calico_api::v3;
use calico_dataplane::diff::{Diff, TableModel, diff};
use calico_dataplane::{
    HostOptions, Interface, Nft, NftCli, NftLib, RenderCache, batch, render, render_cached,
};
use calico_policy::{EndpointId, PolicyCalculator, Update};

fn policy(n: u32, rules: u32, marker: u32) -> Update {
    let mut p = v3::GlobalNetworkPolicy::default();
    p.metadata.name = format!("bench-{n}");
    p.spec.selector = "app == 'bench'".into();
    p.spec.order = Some(f64::from(n));
    p.spec.types = vec!["Ingress".into()];
    p.spec.ingress = (0..rules)
        .map(|k| {
            let mut r = v3::Rule {
                action: if k % 2 == 0 { "Allow" } else { "Deny" }.into(),
                protocol: Some(calico_api::numorstring::Protocol::from_string("TCP")),
                ..Default::default()
            };
            r.destination.ports = vec![calico_api::numorstring::Port::single(
                u16::try_from(1000 + (n * rules + k + marker) % 60000).unwrap_or(1000),
            )];
            match k % 3 {
                0 => r.source.nets = vec![format!("10.{}.{}.0/24", n % 250, k)],
                1 => r.source.selector = format!("role == 'r{}'", (n + k) % 50),
                _ => {}
            }
            r
        })
        .collect();
    Update::GlobalNetworkPolicy(p)
}

fn main() {
    let policies: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    const RULES: u32 = 20;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("a fresh network namespace (run as root)");
    let mut calc = PolicyCalculator::new("bench");
    let mut ifaces = BTreeMap::new();
    let mut updates = Vec::new();
    for e in 0..60u32 {
        let mut w = v3::WorkloadEndpoint::default();
        w.metadata.name = format!("ep{e}");
        w.metadata.namespace = "default".into();
        w.metadata.labels = BTreeMap::from([
            ("app".to_owned(), "bench".to_owned()),
            ("role".to_owned(), format!("r{}", e % 50)),
        ]);
        // 10 local endpoints, the rest remote (they fill the selector sets).
        w.spec.node = if e < 10 {
            "bench".into()
        } else {
            "other".into()
        };
        w.spec.ip_networks = vec![format!("10.200.{}.{}/32", e / 200, e % 200 + 1)];
        if e < 10 {
            ifaces.insert(
                EndpointId::Workload {
                    namespace: "default".into(),
                    name: format!("ep{e}"),
                },
                Interface::new(format!("calibench{e}"), Vec::new()),
            );
        }
        updates.push(Update::WorkloadEndpoint(w));
    }
    updates.extend((0..policies).map(|n| policy(n, RULES, 0)));
    let (_, errors) = calc.apply_batch(updates);
    assert!(errors.is_empty(), "{errors:?}");
    let mut nft = NftCli::default();
    let mut times = Vec::new();
    let mut rules = 0;
    for round in 0..6u32 {
        if round > 0 {
            // A change: one policy's ports move, so the whole table is re-rendered.
            calc.apply(policy(0, RULES, round))
                .expect("update accepted");
        }
        let ruleset = render(&calc.snapshot(), &ifaces);
        rules = ruleset.rule_count();
        let b = batch(&ruleset);
        let t = Instant::now();
        nft.apply(&b).expect("nft accepted the batch");
        times.push(t.elapsed());
    }
    let first = times[0];
    let mut rest: Vec<Duration> = times[1..].to_vec();
    rest.sort_unstable();
    println!(
        "program {policies} policies x {RULES} rules for 10 local endpoints: {rules} nft rules; full replace via nft: first load {first:.2?}, re-apply median {:.2?} (max {:.2?}, {} runs)",
        rest[rest.len() / 2],
        rest[rest.len() - 1],
        rest.len()
    );

    // Cold start through libnftables, into an empty table.
    let mut lib = NftLib::open().expect("libnftables (Debian libnftables1)");
    lib.apply(&batch(&calico_dataplane::fail_closed_table()))
        .expect("fail-closed table");
    let ruleset = render(&calc.snapshot(), &ifaces);
    if let Ok(path) = std::env::var("DUMP_BATCH") {
        // For comparing transports by hand (`nft -j -f`, `nft -f` on a listing).
        std::fs::write(&path, serde_json::to_vec(&batch(&ruleset)).expect("JSON"))
            .expect("writing DUMP_BATCH");
    }
    let full = batch(&ruleset);
    let t = Instant::now();
    let text = calico_dataplane::text::to_text(&full).expect("a text form");
    let written = t.elapsed();
    let t = Instant::now();
    lib.apply(&full).expect("full load");
    println!(
        "  cold start, full load via libnftables: {:.2?} (of which writing nft syntax {written:.2?}, {} bytes)",
        t.elapsed(),
        text.len()
    );
    // The same cold start as felix does it: onto the fail-closed table, in
    // commits of at most 1,000 new rules, dispatch switched in the last;
    // first one commit after the other (each commit timed), then as felix
    // sends them (rule pieces from two threads).
    let closed = TableModel::of(&calico_dataplane::fail_closed_table());
    let cold_start = || {
        let Diff::Batch { batch: cold, .. } = diff(&closed, &TableModel::of(&ruleset)) else {
            panic!("a cold start is a batch")
        };
        calico_dataplane::diff::split(cold, &closed, 1_000)
    };
    lib.apply(&batch(&calico_dataplane::fail_closed_table()))
        .expect("fail-closed table again");
    let mut commits = Vec::new();
    let t = Instant::now();
    for piece in cold_start() {
        let c = Instant::now();
        lib.apply(&piece).expect("piece");
        commits.push(c.elapsed());
    }
    println!(
        "  cold start in commits of <= 1,000 rules via libnftables, one after the other: {} commits, longest {:.2?}, total {:.2?}",
        commits.len(),
        commits.iter().max().copied().unwrap_or_default(),
        t.elapsed()
    );
    lib.apply(&batch(&calico_dataplane::fail_closed_table()))
        .expect("fail-closed table again");
    let pieces = cold_start();
    let t = Instant::now();
    lib.apply_split(&pieces, &mut |_| {}).expect("pieces");
    println!(
        "  cold start in commits of <= 1,000 rules via libnftables, rule pieces from two threads: total {:.2?}",
        t.elapsed()
    );

    // One policy change at a time, incrementally, through each transport;
    // policy chains whose program did not change come from the cache.
    let mut have = TableModel::of(&ruleset);
    let mut cache = RenderCache::default();
    render_cached(
        &calc.snapshot(),
        &ifaces,
        &HostOptions::default(),
        &mut cache,
    );
    let mut marker = 100;
    for (name, n) in [
        ("nft command", &mut nft as &mut dyn Nft),
        ("libnftables", &mut lib),
    ] {
        let (mut apply, mut total) = (Vec::new(), Vec::new());
        for _ in 0..50 {
            marker += 1;
            calc.apply(policy(marker % policies, RULES, marker))
                .expect("update accepted");
            let t0 = Instant::now();
            let mut ruleset = render_cached(
                &calc.snapshot(),
                &ifaces,
                &HostOptions::default(),
                &mut cache,
            );
            let want = TableModel::take(&mut ruleset);
            let Diff::Batch { batch, chains, .. } = diff(&have, &want) else {
                panic!("a policy change is a batch")
            };
            assert_eq!(chains.len(), 1, "{chains:?}");
            let t1 = Instant::now();
            n.apply(&batch).expect("incremental batch");
            apply.push(t1.elapsed());
            total.push(t0.elapsed());
            have = want;
        }
        println!(
            "  one policy change, incremental via {name}: apply {}; render+diff+apply {}",
            stats(&mut apply),
            stats(&mut total)
        );
    }

    // An endpoint on another host joins a selector's IP set.
    let mut apply = Vec::new();
    for e in 0..50u32 {
        let mut w = v3::WorkloadEndpoint::default();
        w.metadata.name = format!("far{e}");
        w.metadata.namespace = "default".into();
        w.metadata.labels = BTreeMap::from([("role".to_owned(), format!("r{}", e % 50))]);
        w.spec.node = "other".into();
        w.spec.ip_networks = vec![format!("10.201.{}.{}/32", e / 200, e % 200 + 1)];
        calc.apply(Update::WorkloadEndpoint(w)).expect("endpoint");
        let want = TableModel::of(&render(&calc.snapshot(), &ifaces));
        let Diff::Batch {
            batch, elements, ..
        } = diff(&have, &want)
        else {
            panic!("a new member is a batch")
        };
        assert!(elements > 0);
        let t = Instant::now();
        lib.apply(&batch).expect("member batch");
        apply.push(t.elapsed());
        have = want;
    }
    println!(
        "  remote endpoint added (IP set member), incremental via libnftables: apply {}",
        stats(&mut apply)
    );
}

/// `median M, p99 P, max X`.
fn stats(v: &mut [Duration]) -> String {
    v.sort_unstable();
    let p99 = v[((v.len() * 99).div_ceil(100)).saturating_sub(1)];
    format!(
        "median {:.2?}, p99 {p99:.2?}, max {:.2?}",
        v[v.len() / 2],
        v[v.len() - 1]
    )
}
