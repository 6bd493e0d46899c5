//! `calicoctl ipam` end to end: the real binary on a real embedded store; allocations made
//! through the calico-ipam library on the same file.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, Kind, WriteOp};
use calico_ipam::{AssignArgs, Ipam};
use serde_json::{Value, json};

mod common;

use common::Cluster;

impl Cluster {
    fn apply(&self, yaml: &str) {
        self.ctl_stdin(&["apply", "-f", "-"], yaml).ok();
    }

    fn ds(&self) -> SqliteDatastore {
        SqliteDatastore::open(&self.db()).unwrap()
    }

    fn alloc(&self, handle: &str, node: &str) -> IpAddr {
        let ds = self.ds();
        let mut args = AssignArgs::new(handle, node);
        args.attrs.insert("node".into(), node.into());
        Ipam::new(&ds).auto_assign(&args).unwrap().v4[0].ip
    }

    fn endpoint(&self, name: &str, node: &str, ip: IpAddr) {
        let value = json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"node": node, "orchestrator": "mesos", "workload": name,
                     "endpoint": "eth0", "ipNetworks": [format!("{ip}/32")]}});
        self.ds()
            .write_batch(vec![WriteOp::Upsert {
                key: Key::namespaced(Kind::WorkloadEndpoint, "default", name),
                value,
            }])
            .unwrap();
    }
}

fn pool(cidr: &str, block_size: u32) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pool1\nspec:\n  cidr: {cidr}\n  blockSize: {block_size}\n"
    )
}

fn node(name: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\nspec: {{}}\n")
}

#[test]
fn show_totals_blocks_ip_and_configuration() {
    let c = Cluster::new();
    c.apply(&pool("10.1.0.0/24", 26));
    let ips: Vec<IpAddr> = (0..10).map(|i| c.alloc(&format!("h{i}"), "n1")).collect();

    let out = c.ctl(&["ipam", "show"]).ok().stdout;
    assert!(out.contains("| IP Pool "), "{out}");
    assert!(out.contains("10.1.0.0/24"), "{out}");
    assert!(out.contains("| 256 "), "{out}");
    assert!(out.contains("10 (3%)"), "{out}");
    assert!(out.contains("246 (96%)"), "{out}");
    assert!(!out.contains("| Block "), "{out}");

    let out = c.ctl(&["ipam", "show", "--show-blocks"]).ok().stdout;
    assert!(out.contains("| Block "), "{out}");
    assert!(out.contains("10 (15%)"), "{out}");

    let ip = ips[3].to_string();
    let out = c.ctl(&["ipam", "show", "--ip", &ip]).ok().stdout;
    assert!(
        out.starts_with(&format!("IP {ip} is in use\nAttributes:\n  node: n1\n")),
        "upstream's wording first: {out}"
    );
    assert!(out.contains("Handle: h3"), "{out}");
    let out = c.ctl(&["ipam", "show", "--ip=10.1.0.250"]).ok().stdout;
    assert_eq!(out, "IP 10.1.0.250 is not currently assigned\n");
    c.ctl(&["ipam", "show", "--ip", "nope"]).fails();

    let out = c.ctl(&["ipam", "show", "--show-configuration"]).ok().stdout;
    assert!(out.contains("| StrictAffinity     | false"), "{out}");
    assert!(out.contains("| MaxBlocksPerHost   | 0"), "{out}");
    let out = c
        .ctl(&[
            "ipam",
            "configure",
            "--strictaffinity=true",
            "--max-blocks-per-host=4",
        ])
        .ok()
        .stdout;
    assert!(
        out.contains("Successfully set StrictAffinity to: true"),
        "{out}"
    );
    let out = c.ctl(&["ipam", "show", "--show-configuration"]).ok().stdout;
    assert!(out.contains("| StrictAffinity     | true"), "{out}");
    assert!(out.contains("| MaxBlocksPerHost   | 4"), "{out}");
    c.ctl(&["ipam", "configure"]).fails();
    c.ctl(&["ipam", "configure", "--strictaffinity=maybe"])
        .fails();
}

#[test]
fn borrowed_addresses_and_strict_affinity() {
    let c = Cluster::new();
    // One block only: the second node must borrow.
    c.apply(&pool("10.2.0.0/26", 26));
    c.alloc("a", "n1");
    let borrowed = c.alloc("b", "n2");
    let out = c.ctl(&["ipam", "show", "--show-borrowed"]).ok().stdout;
    assert!(out.contains(&borrowed.to_string()), "{out}");
    assert!(out.contains("| n2 "), "{out}");
    assert!(out.contains("| n1 "), "{out}");

    c.ctl(&["ipam", "configure", "--strictaffinity=true"]).ok();
    let ds = c.ds();
    let e = Ipam::new(&ds)
        .auto_assign(&AssignArgs::new("c", "n2"))
        .unwrap_err();
    assert!(e.to_string().contains("no more free"), "{e}");
}

#[test]
fn check_report_and_release_revalidate() {
    let c = Cluster::new();
    c.apply(&pool("10.3.0.0/24", 26));
    c.apply(&node("n1"));
    let ips: Vec<IpAddr> = (0..3).map(|i| c.alloc(&format!("h{i}"), "n1")).collect();
    c.endpoint("wep0", "n1", ips[0]);

    let report = c.dir.path().join("report.json");
    let report_s = report.display().to_string();
    let out = c
        .ctl(&["ipam", "check", "-o", &report_s, "--show-problem-ips"])
        .fails()
        .stdout;
    assert!(out.contains("Found 3 allocated IP addresses."), "{out}");
    assert!(out.contains("Found 2 leaked IP addresses"), "{out}");
    assert!(out.contains("found 2 problems"), "{out}");
    assert!(out.contains(&format!("{} leaked", ips[2])), "{out}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["leakedIPs"].as_array().unwrap().len(), 2);

    // Releasing from a report needs the datastore locked (or --force), as upstream.
    let run = c
        .ctl(&["ipam", "release", "--from-report", &report_s])
        .fails();
    assert!(run.stderr.contains("not locked"), "{}", run.stderr);
    c.ctl(&["datastore", "migrate", "lock"]).ok();
    // Locked: IPAM hands out nothing.
    let ds = c.ds();
    let mut args = AssignArgs::new("h-locked", "n1");
    args.attrs.insert("node".into(), "n1".into());
    let locked = Ipam::new(&ds).auto_assign(&args).unwrap_err();
    assert!(
        locked.to_string().contains("locked for migration"),
        "{locked}"
    );

    // An endpoint for one of the "leaks" appears after the report: it must not be released.
    c.endpoint("wep1", "n1", ips[1]);
    let out = c
        .ctl(&["ipam", "release", "--from-report", &report_s])
        .ok()
        .stdout;
    assert!(
        out.contains(&format!("Skipped {}: in use", ips[1])),
        "{out}"
    );
    assert!(out.contains("Released 1 leaked IP"), "{out}");
    let ds = c.ds();
    let ipam = Ipam::new(&ds);
    assert!(ipam.get_allocation(ips[1]).unwrap().is_some());
    assert!(ipam.get_allocation(ips[2]).unwrap().is_none());
    // Releasing the same report again changes nothing.
    let out = c
        .ctl(&["ipam", "release", "--from-report", &report_s])
        .ok()
        .stdout;
    assert!(out.contains("Released 0 leaked"), "{out}");

    let out = c.ctl(&["ipam", "check"]).ok().stdout;
    assert!(out.contains("found 0 problems"), "{out}");
    c.ctl(&["datastore", "migrate", "unlock"]).ok();

    // --ip: refused for a live endpoint's address, refused when not assigned, else released.
    let ip0 = ips[0].to_string();
    let r = c.ctl(&["ipam", "release", "--ip", &ip0]).fails();
    assert!(
        r.stderr.contains("in use by a workload endpoint"),
        "{}",
        r.stderr
    );
    let r = c.ctl(&["ipam", "release", "--ip", "10.3.0.200"]).fails();
    assert!(r.stderr.contains("not assigned"), "{}", r.stderr);
    let extra = c.alloc("h9", "n1");
    c.ctl(&["ipam", "release", "--ip", &extra.to_string()]).ok();
    assert!(ipam.get_allocation(extra).unwrap().is_none());
    c.ctl(&["ipam", "release"]).fails();
}

#[test]
fn check_finds_blocks_of_missing_nodes() {
    let c = Cluster::new();
    c.apply(&pool("10.4.0.0/24", 26));
    c.apply(&node("n1"));
    let ip = c.alloc("h-gone", "gone");
    c.endpoint("w", "gone", ip);
    let report = c.dir.path().join("r.json").display().to_string();
    let run = c.ctl(&["ipam", "check", "-o", &report]).fails();
    assert!(run.stderr.contains("found 1 problem"), "{}", run.stderr);
    let out = run.stdout;
    assert!(
        out.contains("Found 1 blocks affine to nodes that no longer exist."),
        "{out}"
    );
    let out = c
        .ctl(&["ipam", "release", "--from-report", &report, "--force"])
        .ok()
        .stdout;
    assert!(
        out.contains("released 1 block(s) of missing nodes")
            && out.contains("WARNING: the datastore is not locked"),
        "{out}"
    );
    // The block lost its affinity but keeps the live endpoint's address.
    let ds = c.ds();
    assert!(Ipam::new(&ds).get_allocation(ip).unwrap().is_some());
    let out = c.ctl(&["ipam", "check"]).ok().stdout;
    assert!(out.contains("found 0 problems"), "{out}");
}

#[test]
fn an_unreadable_endpoint_stops_leak_judgement_instead_of_freeing_its_address() {
    let c = Cluster::new();
    c.apply(&pool("10.5.0.0/24", 26));
    c.apply(&node("n1"));
    let ip = c.alloc("h-w", "n1");
    c.endpoint("w", "n1", ip);
    // The endpoint's record turns to garbage: its address may be in use, nobody can tell.
    let conn = rusqlite::Connection::open(c.db()).unwrap();
    conn.execute(
        "UPDATE events SET value = '{not json' WHERE rev =
         (SELECT mod_rev FROM kv WHERE kind = 'WorkloadEndpoint' AND name = 'w')",
        [],
    )
    .unwrap();
    let run = c.ctl(&["ipam", "check"]).fails();
    assert!(
        run.stderr.contains("WorkloadEndpoint(default/w)"),
        "{}",
        run.stderr
    );
    let ds = c.ds();
    let mut collector = calico_ipam::check::Collector::new(Duration::ZERO);
    assert!(collector.run_once(&ds, Instant::now()).is_err());
    assert!(collector.run_once(&ds, Instant::now()).is_err());
    assert!(
        Ipam::new(&ds).get_allocation(ip).unwrap().is_some(),
        "the address was not released"
    );
}

#[test]
fn deleting_a_node_takes_its_endpoints_addresses_blocks_and_configuration() {
    let c = Cluster::new();
    c.apply(&pool("10.4.0.0/24", 26));
    c.apply(&node("n1"));
    c.apply(&node("n2"));
    let w1 = c.alloc("h-w1", "n1");
    let w2 = c.alloc("h-w2", "n1");
    let tunnel = c.alloc("vxlan-tunnel-addr-n1", "n1");
    let other = c.alloc("h-o", "n2");
    c.endpoint("w1", "n1", w1);
    c.endpoint("w2", "n1", w2);
    c.endpoint("o", "n2", other);
    c.apply(
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.n1}\nspec: {healthPort: 9199}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: n1-tor}\nspec: {node: n1, peerIP: 192.0.2.1, asNumber: 65001}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: n2-tor}\nspec: {node: n2, peerIP: 192.0.2.1, asNumber: 65001}\n",
    );
    assert_ne!(tunnel, w1);

    c.ctl(&["delete", "node", "n1"]).ok();

    let ds = c.ds();
    let ipam = Ipam::new(&ds);
    for ip in [w1, w2, tunnel] {
        assert!(ipam.get_allocation(ip).unwrap().is_none(), "{ip} released");
    }
    assert!(
        ipam.get_allocation(other).unwrap().is_some(),
        "n2's address stays"
    );
    let names = |kind: Kind| -> Vec<String> {
        ds.list(kind, None)
            .unwrap()
            .items
            .into_iter()
            .map(|kv| kv.key.name)
            .collect()
    };
    assert_eq!(names(Kind::WorkloadEndpoint), ["o"]);
    assert_eq!(names(Kind::Node), ["n2"]);
    assert_eq!(names(Kind::BgpPeer), ["n2-tor"]);
    assert!(!names(Kind::FelixConfiguration).contains(&"node.n1".to_string()));
    assert!(
        names(Kind::BlockAffinity)
            .iter()
            .all(|a| !a.starts_with("n1-")),
        "{:?}",
        names(Kind::BlockAffinity)
    );
    let out = c.ctl(&["ipam", "check"]).ok().stdout;
    assert!(out.contains("found 0 problems"), "{out}");
}

#[test]
fn several_reports_release_only_what_all_of_them_list() {
    let c = Cluster::new();
    c.apply(&pool("10.5.0.0/24", 26));
    c.apply(&node("n1"));
    let a = c.alloc("h-a", "n1");
    let report = |name: &str| {
        let path = c.dir.path().join(name).display().to_string();
        c.ctl(&["ipam", "check", "-o", &path]).fails();
        path
    };
    let first = report("r1.json");
    // A second leak appears between the reports: only `a` is in both.
    let b = c.alloc("h-b", "n1");
    let second = report("r2.json");
    c.ctl(&["datastore", "migrate", "lock"]).ok();
    let out = c
        .ctl(&[
            "ipam",
            "release",
            "--from-report",
            &first,
            "--from-report",
            &second,
        ])
        .ok()
        .stdout;
    assert!(out.contains("Released 1 leaked IP"), "{out}");
    let ds = c.ds();
    let ipam = Ipam::new(&ds);
    assert!(ipam.get_allocation(a).unwrap().is_none());
    assert!(
        ipam.get_allocation(b).unwrap().is_some(),
        "only in one report: kept"
    );
}

#[test]
fn split_a_pool_keeps_its_addresses_and_settings() {
    let c = Cluster::new();
    c.apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pool1\nspec:\n  cidr: 10.6.0.0/24\n  blockSize: 26\n  natOutgoing: true\n  vxlanMode: Always\n",
    );
    c.apply(&node("n1"));
    let ip = c.alloc("h-1", "n1");
    c.endpoint("w1", "n1", ip);
    let run = c.ctl(&["ipam", "split", "2", "--name", "pool1"]).fails();
    assert!(run.stderr.contains("not locked"), "{}", run.stderr);
    c.ctl(&["datastore", "migrate", "lock"]).ok();
    let run = c.ctl(&["ipam", "split", "3", "--name", "pool1"]).fails();
    assert!(run.stderr.contains("power of two"), "{}", run.stderr);
    let run = c
        .ctl(&["ipam", "split", "8", "--cidr", "10.6.0.0/24"])
        .fails();
    assert!(
        run.stderr.contains("smaller than the pool's blocks"),
        "{}",
        run.stderr
    );
    let out = c
        .ctl(&["ipam", "split", "4", "--cidr", "10.6.0.0/24"])
        .ok()
        .stdout;
    assert!(out.contains("pool1-split-3: 10.6.0.192/26"), "{out}");
    c.ctl(&["datastore", "migrate", "unlock"]).ok();
    let pools: Value =
        serde_json::from_str(&c.ctl(&["get", "ippools", "-o", "json"]).ok().stdout).unwrap();
    let items = pools["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    for p in items {
        assert_eq!(p["spec"]["natOutgoing"], true, "{p}");
        assert_eq!(p["spec"]["vxlanMode"], "Always", "{p}");
        assert_eq!(p["spec"]["blockSize"], 26, "{p}");
    }
    let ds = c.ds();
    assert!(Ipam::new(&ds).get_allocation(ip).unwrap().is_some());
    let out = c.ctl(&["ipam", "check"]).ok().stdout;
    assert!(out.contains("found 0 problems"), "{out}");
    // New addresses come from the new pools.
    let next = c.alloc("h-2", "n1");
    assert!(next.to_string().starts_with("10.6.0."), "{next}");
    c.ctl(&["ipam", "split", "2", "--name", "nope"]).fails();
    c.ctl(&["ipam", "split", "2"]).fails();
}
