//! Kernel programming time for a large ruleset: renders N policies × 20
//! ingress rules (ports, nets, selectors) selecting 10 local endpoints and
//! applies the table with the real `nft` in a fresh network namespace,
//! timing each atomic batch (first load, then re-applies of a changed table):
//!
//! ```text
//! sudo cargo run --release -p calico-dataplane --example program_rules -- 500
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use calico_api::v3;
use calico_dataplane::{Interface, Nft, NftCli, batch, render};
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
        rules = ruleset
            .objects
            .iter()
            .filter(|o| matches!(o, nftables::schema::NfListObject::Rule(_)))
            .count();
        let b = batch(&ruleset);
        let t = Instant::now();
        nft.apply(&b).expect("nft accepted the batch");
        times.push(t.elapsed());
    }
    let first = times[0];
    let mut rest: Vec<Duration> = times[1..].to_vec();
    rest.sort_unstable();
    println!(
        "program {policies} policies x {RULES} rules for 10 local endpoints: {rules} nft rules; first load {first:.2?}, re-apply median {:.2?} (max {:.2?}, {} runs)",
        rest[rest.len() / 2],
        rest[rest.len() - 1],
        rest.len()
    );
}
