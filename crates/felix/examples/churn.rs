//! Churn (issue 12): felix in this process, programming the real kernel in a
//! fresh network namespace through libnftables, from an embedded datastore
//! holding 250 policies × 20 rules for 10 local endpoints (about 10k rules).
//! A writer changes one policy RATE times a second for SECS seconds; felix's
//! own histogram says how long each change waited from being seen to being
//! in the kernel, and at the end a marker change measures the backlog (time
//! from its write until it is in the kernel). With `SHOW_COLD_START` set, the
//! time sums of felix's histograms are printed after the cold start and after
//! the churn; with `NO_MONITOR` set, felix runs without its `nft monitor`
//! (to measure what the kernel's per-rule notifications cost).
//!
//! ```text
//! sudo cargo run --release -p calico-felix --example churn -- [RATE] [SECS]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use calico_dataplane::{ConntrackCli, NftLib};
use calico_datastore::{Key, Kind};
use calico_felix::{Config, Felix, Kernel};
use calico_netlink::real::{NetlinkSocket, ProcSysctl};
use load::{RULES, policies, policy, put};
use serde_json::json;

mod load;

// As calico-node: mimalloc, also for libnftables (malloc overridden).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (quantile estimate from the buckets, count) of a histogram in text exposition.
fn quantile(text: &str, name: &str, q: f64) -> (f64, u64) {
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{name}_bucket{{le=\"")) {
            let (le, count) = rest.split_once("\"} ").unwrap_or(("", "0"));
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(0.0)
            };
            buckets.push((le, count.trim().parse().unwrap_or(0)));
        }
    }
    let total = buckets.last().map_or(0, |b| b.1);
    let want = (total as f64 * q).ceil() as u64;
    let le = buckets
        .iter()
        .find(|(_, c)| *c >= want)
        .map_or(f64::NAN, |b| b.0);
    (le, total)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rate: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let secs: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    calico_felix::without_huge_pages().expect("prctl");
    assert!(
        calico_netlink::testing::enter_fresh_netns("churn"),
        "run as root"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = load::store(dir.path());
    let mut cfg = Config::new("bench");
    cfg.nft_monitor = std::env::var_os("NO_MONITOR").is_none();
    let mut felix = Felix::new(
        cfg,
        ds.clone(),
        Kernel {
            netlink: NetlinkSocket::new().expect("netlink"),
            nft: NftLib::open().expect("libnftables"),
            conntrack: ConntrackCli::default(),
            sysctl: ProcSysctl,
        },
    );
    let status = felix.status();
    let mut registry = prometheus_client::registry::Registry::default();
    felix.metrics().register(&mut registry);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let agent = std::thread::spawn(move || felix.run(&stop2));
    let t = Instant::now();
    while !status.ready.load(Ordering::Relaxed) {
        assert!(t.elapsed() < Duration::from_secs(60), "felix never ready");
        std::thread::sleep(Duration::from_millis(1));
    }
    println!(
        "felix ready (cold start with {} policies x {RULES} rules) in {:.2?}",
        policies(),
        t.elapsed()
    );
    let encode = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        if std::env::var_os("SHOW_COLD_START").is_some() {
            for l in text.lines().filter(|l| l.contains("_sum")) {
                eprintln!("{l}");
            }
        }
        text
    };
    let before = quantile(&encode(), "felix_programming_seconds", 0.99).1;

    let period = Duration::from_secs(1) / rate;
    let start = Instant::now();
    let mut next = start;
    let mut late = Duration::ZERO;
    for i in 0..rate * secs {
        put(
            ds.as_ref(),
            Key::global(
                Kind::GlobalNetworkPolicy,
                format!("bench-{}", i % policies()),
            ),
            policy(i % policies(), i + 1),
        );
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            late = late.max(now - next);
        }
    }
    let churn = start.elapsed();
    // The backlog: a marker change after the churn, timed until it is in the kernel.
    let marker = 61_000;
    let marker_rules = json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "bench-marker"},
        "spec": {"order": 0, "selector": "app == 'bench'", "types": ["Ingress"],
                 "ingress": [{"action": "Deny", "protocol": "TCP", "destination": {"ports": [marker]}}]}});
    let t = Instant::now();
    put(
        ds.as_ref(),
        Key::global(Kind::GlobalNetworkPolicy, "bench-marker"),
        marker_rules,
    );
    let mut lib = NftLib::open().expect("libnftables");
    loop {
        use calico_dataplane::Nft as _;
        let table = lib
            .list_owned()
            .map(|t| serde_json::to_string(&t).unwrap_or_default());
        if table.is_ok_and(|t| t.contains(&format!("\"right\":{marker}"))) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the marker never arrived"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let drain = t.elapsed();
    let text = encode();
    let (p50, _) = quantile(&text, "felix_programming_seconds", 0.5);
    let (p99, total) = quantile(&text, "felix_programming_seconds", 0.99);
    let (a99, _) = quantile(&text, "felix_int_dataplane_apply_time_seconds", 0.99);
    println!(
        "churn: {} changes at {rate}/s over {churn:.2?} (writer at most {late:.2?} late); felix programmed {} times",
        rate * secs,
        total - before
    );
    println!(
        "  seen -> in the kernel (felix_programming_seconds, bucket bounds): p50 <= {:.0} ms, p99 <= {:.0} ms; nft transaction p99 <= {:.0} ms",
        p50 * 1000.0,
        p99 * 1000.0,
        a99 * 1000.0
    );
    println!(
        "  backlog after the churn: a marker change reached the kernel {drain:.2?} after its write"
    );
    stop.store(true, Ordering::Relaxed);
    agent.join().expect("felix");
}
