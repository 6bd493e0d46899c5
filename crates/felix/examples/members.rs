//! An endpoint on another host joining IP sets (issue 12): felix in this
//! process, driven step by step, programming the real kernel in a fresh
//! network namespace through libnftables, with the churn example's load
//! (250 policies x 20 rules for 10 local endpoints). Each of COUNT new
//! remote endpoints is written to the datastore and read by felix's sync;
//! then felix's programming pass is timed from its start until it returns
//! (the kernel has the change); the conntrack sweep of the next policy
//! generation runs after it, untimed, as felix's loop runs it when idle. The same run times the pass with the member fast path off
//! (`full`: the whole table rendered and compared, as before), alternating.
//!
//! ```text
//! sudo cargo run --release -p calico-felix --example members -- [COUNT]
//! ```

use std::time::{Duration, Instant};

use calico_dataplane::{ConntrackCli, NftLib};
use calico_datastore::{Key, Kind};
use calico_felix::{Config, Felix, Kernel};
use calico_netlink::real::{NetlinkSocket, ProcSysctl};
use load::{RULES, policies, put};
use serde_json::json;

mod load;

// As calico-node: mimalloc, also for libnftables (malloc overridden).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let count: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    calico_felix::without_huge_pages().expect("prctl");
    assert!(
        calico_netlink::testing::enter_fresh_netns("members"),
        "run as root"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = load::store(dir.path());
    let mut felix = Felix::new(
        Config::new("bench"),
        ds.clone(),
        Kernel {
            netlink: NetlinkSocket::new().expect("netlink"),
            nft: NftLib::open().expect("libnftables"),
            conntrack: ConntrackCli::default(),
            sysctl: ProcSysctl,
        },
    );
    let t = Instant::now();
    felix.sync().expect("sync");
    let synced = t.elapsed();
    felix.program(Instant::now());
    felix.idle();
    println!(
        "cold start, step by step ({} policies x {RULES} rules): read {synced:.2?}, programmed {:.2?} later",
        policies(),
        t.elapsed() - synced
    );
    let (mut fast, mut full) = (Vec::new(), Vec::new());
    for e in 0..count {
        // Every other endpoint carries a label no selector matches besides
        // its role, so the full pass has nothing else to do either.
        put(
            ds.as_ref(),
            Key::namespaced(Kind::WorkloadEndpoint, "default", format!("far{e}")),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                "metadata": {"name": format!("far{e}"), "namespace": "default",
                             "labels": {"role": format!("r{}", e % 50)}},
                "spec": {"node": "other", "orchestrator": "mesos",
                         "interfaceName": format!("califar{e}"),
                         "ipNetworks": [format!("10.201.{}.{}/32", e / 100, 2 * (e % 100) + 1)],
                         "profiles": ["calico"]}}),
        );
        felix.sync().expect("sync");
        let use_full = e % 2 == 1;
        felix.set_member_fast_path(!use_full);
        let t = Instant::now();
        felix.program(t);
        if use_full { &mut full } else { &mut fast }.push(t.elapsed());
        // What felix's loop does once no change is waiting.
        felix.idle();
    }
    println!(
        "remote endpoint joins IP sets, felix's programming pass: member path {}; full pass {}",
        stats(&mut fast),
        stats(&mut full)
    );
}

/// `median M, p99 P, max X (N)`.
fn stats(v: &mut [Duration]) -> String {
    v.sort_unstable();
    let p99 = v[((v.len() * 99).div_ceil(100)).saturating_sub(1)];
    format!(
        "median {:.2?}, p99 {p99:.2?}, max {:.2?} ({} changes)",
        v[v.len() / 2],
        v[v.len() - 1],
        v.len()
    )
}
