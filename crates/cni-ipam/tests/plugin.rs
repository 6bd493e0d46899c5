//! calico-ipam end to end: the real binary against a real datastore, the embedded store file
//! or, for the concurrency test, also a real etcd.

use calico_cni_common::testing::{PluginOutput, run_plugin};
use std::collections::HashSet;

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use calico_datastore::config::{DatastoreConfig, DatastoreType};
use calico_datastore::etcd::testing::{EtcdServer, etcd_or_skip};
use calico_datastore::{Datastore, Key, Kind, WriteOp};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_calico-ipam");

/// Where a cluster keeps its data.
enum Store {
    Embedded(tempfile::TempDir),
    /// Locked only to read endpoints or to stop a member while ADDs run.
    Etcd(std::sync::Mutex<EtcdServer>),
}

struct Cluster {
    store: Store,
}

fn pool(name: &str, cidr: &str, block_size: u32, disabled: bool) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
           "metadata": {"name": name},
           "spec": {"cidr": cidr, "blockSize": block_size, "disabled": disabled}})
}

impl Cluster {
    fn new() -> Self {
        Self {
            store: Store::Embedded(tempfile::tempdir().unwrap()),
        }
    }

    /// A cluster on a fresh single-node etcd, or None (after a visible SKIP) without etcd.
    fn etcd(test: &str) -> Option<Self> {
        let bin = etcd_or_skip(test)?;
        Some(Self {
            store: Store::Etcd(std::sync::Mutex::new(EtcdServer::single(&bin))),
        })
    }

    /// A cluster on a fresh three-member etcd, or None (after a visible SKIP) without etcd.
    fn etcd_cluster(test: &str) -> Option<Self> {
        let bin = etcd_or_skip(test)?;
        Some(Self {
            store: Store::Etcd(std::sync::Mutex::new(EtcdServer::cluster(&bin))),
        })
    }

    /// The datastore settings as `(network configuration field, environment variable, value)`:
    /// the plugin reads the fields, calicoctl the variables, as upstream's do.
    fn settings(&self) -> Vec<(&'static str, &'static str, String)> {
        match &self.store {
            Store::Embedded(dir) => vec![
                ("datastore_type", "DATASTORE_TYPE", "embedded".into()),
                (
                    "datastore_path",
                    "CALICO_DATASTORE_PATH",
                    dir.path().join("calico.db").display().to_string(),
                ),
            ],
            Store::Etcd(server) => vec![
                ("datastore_type", "DATASTORE_TYPE", "etcdv3".into()),
                (
                    "etcd_endpoints",
                    "ETCD_ENDPOINTS",
                    server.lock().unwrap().endpoints().join(","),
                ),
            ],
        }
    }

    fn ds(&self) -> Box<dyn Datastore> {
        let datastore_type = match &self.store {
            Store::Embedded(dir) => DatastoreType::Embedded {
                path: dir.path().join("calico.db"),
            },
            Store::Etcd(server) => DatastoreType::EtcdV3 {
                endpoints: server.lock().unwrap().endpoints(),
                tls: Default::default(),
            },
        };
        calico_datastore::open(&DatastoreConfig { datastore_type }).unwrap()
    }

    /// `calicoctl <args>` in-process (this package cannot build the calicoctl binary), with
    /// only this cluster's datastore variables as its environment: exit code, stdout, stderr.
    fn calicoctl_code(&self, args: &[&str]) -> (i32, String, String) {
        let settings = self.settings();
        let env = |name: &str| {
            settings
                .iter()
                .find(|(_, var, _)| *var == name)
                .map(|(_, _, v)| v.clone())
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = calicoctl::run_with(
            std::iter::once("calicoctl").chain(args.iter().copied()),
            &env,
            &mut out,
            &mut err,
        );
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    /// [`Self::calicoctl_code`]'s stdout, after checking it succeeded.
    fn calicoctl(&self, args: &[&str]) -> String {
        let (code, out, err) = self.calicoctl_code(args);
        assert_eq!(code, 0, "calicoctl {args:?}: stdout {out} stderr {err}");
        out
    }

    /// The "IPS IN USE" count of `calicoctl ipam show` for the pool `cidr`.
    fn shown_in_use(&self, cidr: &str) -> u64 {
        let out = self.calicoctl(&["ipam", "show"]);
        let row: Vec<&str> = out
            .lines()
            .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
            .find(|cols| cols.get(1) == Some(&"IP Pool") && cols.get(2) == Some(&cidr))
            .unwrap_or_else(|| panic!("no IP Pool row for {cidr} in:\n{out}"));
        // "1600 (2%)"
        row[4]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unreadable IPS IN USE {:?} in:\n{out}", row[4]))
    }

    /// `calicoctl ipam check`'s JSON report (`-o FILE`).
    fn checked(&self) -> Value {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("report.json");
        // Exit status 1 says problems were found; the report is written either way.
        let (code, out, err) =
            self.calicoctl_code(&["ipam", "check", "-o", file.to_str().unwrap()]);
        assert!(code == 0 || code == 1, "ipam check: {out} {err}");
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
    }

    fn put(&self, kind: Kind, name: &str, value: Value) {
        self.ds()
            .write_batch(vec![WriteOp::Upsert {
                key: Key::global(kind, name),
                value,
            }])
            .unwrap();
    }

    fn add_pool(&self, name: &str, cidr: &str, block_size: u32, disabled: bool) {
        self.put(Kind::IpPool, name, pool(name, cidr, block_size, disabled));
    }

    fn add_node(&self, name: &str) {
        self.put(
            Kind::Node,
            name,
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                   "metadata": {"name": name}, "spec": {}}),
        );
    }

    fn conf(&self, ipam: Value) -> Value {
        let mut conf = json!({"cniVersion": "1.0.0", "name": "net1", "type": "calico",
                              "nodename": "host1", "ipam": ipam});
        for (field, _, value) in self.settings() {
            conf[field] = json!(value);
        }
        conf
    }

    fn run(
        &self,
        command: &str,
        container: &str,
        conf: &Value,
        extra: &[(&str, &str)],
    ) -> PluginOutput {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/opt/cni/bin")
            .envs(extra.iter().copied());
        run_plugin(&mut cmd, &conf.to_string())
    }

    fn add(&self, container: &str, ipam: Value) -> PluginOutput {
        self.run("ADD", container, &self.conf(ipam), &[])
    }

    fn in_use(&self) -> u128 {
        calico_ipam::usage::usage(self.ds().as_ref())
            .unwrap()
            .in_use()
    }
}

fn ipam() -> Value {
    json!({"type": "calico-ipam"})
}

/// 8 runtimes each running 200 ADDs one after another, one plugin process per ADD, then as
/// many DELs: every address distinct and inside the pool, and calicoctl agrees on the counts.
fn eight_processes_two_hundred_containers_each(c: &Cluster) {
    const POOL: &str = "10.64.0.0/16";
    c.add_pool("pool1", POOL, 26, false);
    c.add_node("host1");
    let conf = c.conf(ipam());
    let all: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|w| {
                let conf = &conf;
                s.spawn(move || {
                    (0..200)
                        .map(|i| {
                            let out = c.run("ADD", &format!("c-{w}-{i}"), conf, &[]).ok();
                            let ips = out.ips();
                            assert_eq!(ips.len(), 1);
                            ips[0].clone()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(all.len(), 1600);
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), 1600, "an address was handed out twice");
    let pool: ipnet::IpNet = POOL.parse().unwrap();
    for a in &all {
        assert!(a.ends_with("/32"), "{a}");
        let ip: IpAddr = a.trim_end_matches("/32").parse().unwrap();
        assert!(pool.contains(&ip), "{ip} outside the pool");
    }
    assert_eq!(c.shown_in_use(POOL), 1600);
    let report = c.checked();
    assert_eq!(report["allocations"].as_array().unwrap().len(), 1600);
    // No workload endpoints exist here, so every address counts as leaked; the handles,
    // which the plugin writes, must all agree with the blocks.
    for clean in [
        "missingHandles",
        "handlesWithoutAllocations",
        "handlesWithWrongCounts",
        "blocksOfMissingNodes",
    ] {
        assert_eq!(report[clean], json!([]), "{clean}: {report}");
    }
    assert_eq!(report["handles"], 1600);

    std::thread::scope(|s| {
        for w in 0..8 {
            let conf = &conf;
            s.spawn(move || {
                for i in 0..200 {
                    c.run("DEL", &format!("c-{w}-{i}"), conf, &[]).ok();
                }
            });
        }
    });
    assert_eq!(c.shown_in_use(POOL), 0);
    let out = c.calicoctl(&["ipam", "check"]);
    assert!(out.contains("found 0 problems"), "{out}");
    let report = c.checked();
    assert_eq!(report["allocations"], json!([]), "{report}");
    assert_eq!(report["handles"], 0, "{report}");
}

#[test]
fn eight_processes_two_hundred_containers_each_embedded() {
    eight_processes_two_hundred_containers_each(&Cluster::new());
}

#[test]
fn eight_processes_two_hundred_containers_each_etcd() {
    let Some(c) = Cluster::etcd("eight_processes_two_hundred_containers_each_etcd") else {
        return;
    };
    eight_processes_two_hundred_containers_each(&c);
}

#[test]
fn etcd_leader_killed_under_concurrent_adds_loses_nothing_and_duplicates_nothing() {
    let Some(c) = Cluster::etcd_cluster("etcd_leader_killed_under_concurrent_adds") else {
        return;
    };
    const POOL: &str = "10.66.0.0/16";
    c.add_pool("pool1", POOL, 26, false);
    c.add_node("host1");
    let conf = c.conf(ipam());
    let outcomes: Vec<(String, Option<String>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (c, conf) = (&c, &conf);
                s.spawn(move || {
                    (0..60)
                        .map(|i| {
                            let id = format!("c-{w}-{i}");
                            let out = c.run("ADD", &id, conf, &[]);
                            let ip = (out.code == 0).then(|| out.ips()[0].clone());
                            (id, ip)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // The leader dies while the ADDs run.
        std::thread::sleep(Duration::from_millis(700));
        let Store::Etcd(server) = &c.store else {
            unreachable!("an etcd cluster")
        };
        let mut server = server.lock().unwrap();
        let leader = server.leader().expect("a leader");
        eprintln!("stopping leader m{leader}");
        server.stop(leader);
        drop(server);
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let granted: Vec<&String> = outcomes.iter().filter_map(|(_, ip)| ip.as_ref()).collect();
    let distinct: HashSet<&&String> = granted.iter().collect();
    assert_eq!(
        distinct.len(),
        granted.len(),
        "an address was handed out twice"
    );
    // None lost: what IPAM holds is exactly what the successful ADDs were given (a failed
    // ADD released what it took), and the handles agree with the blocks.
    let report = c.checked();
    let held: HashSet<String> = report["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/32", a["ip"].as_str().unwrap()))
        .collect();
    let given: HashSet<String> = granted.iter().map(|ip| (*ip).clone()).collect();
    assert_eq!(held, given);
    for clean in [
        "missingHandles",
        "handlesWithoutAllocations",
        "handlesWithWrongCounts",
    ] {
        assert_eq!(report[clean], json!([]), "{clean}");
    }
    eprintln!(
        "{} of {} ADDs succeeded across the failover",
        granted.len(),
        outcomes.len()
    );
}

#[test]
fn exhaustion_is_a_clear_error_not_a_hang() {
    let c = Cluster::new();
    c.add_pool("tiny", "10.9.0.0/30", 30, false);
    for i in 0..4 {
        c.add(&format!("c{i}"), ipam()).ok();
    }
    let start = Instant::now();
    let out = c.add("c4", ipam());
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(out.err_code(), 100);
    assert!(
        out.json()["msg"].as_str().unwrap().contains("no more free"),
        "{}",
        out.stdout
    );
    assert_eq!(c.in_use(), 4);
    // A freed address is handed out again.
    c.run("DEL", "c2", &c.conf(ipam()), &[]).ok();
    assert_eq!(c.add("c5", ipam()).ok().ips().len(), 1);
}

#[test]
fn disabled_pool_is_never_used() {
    let c = Cluster::new();
    c.add_pool("off", "10.2.0.0/16", 26, true);
    c.add_pool("on", "10.3.0.0/16", 26, false);
    for i in 0..70 {
        let ip = &c.add(&format!("c{i}"), ipam()).ok().ips()[0];
        assert!(ip.starts_with("10.3."), "{ip} came from the disabled pool");
    }
    let out = c.add("x", json!({"type": "calico-ipam", "ipv4_pools": ["off"]}));
    assert_eq!(out.err_code(), 100);
    let out = c.add(
        "y",
        json!({"type": "calico-ipam", "ipv4_pools": ["10.2.0.0/16"]}),
    );
    assert_eq!(out.err_code(), 100);
    // Only a disabled pool: nothing to allocate from.
    let c2 = Cluster::new();
    c2.add_pool("off", "10.2.0.0/16", 26, true);
    assert_eq!(c2.add("z", ipam()).err_code(), 100);
}

#[test]
fn reservations_are_never_handed_out() {
    let c = Cluster::new();
    c.add_pool("p", "10.5.0.0/29", 29, false);
    c.put(
        Kind::IpReservation,
        "r",
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPReservation",
               "metadata": {"name": "r"},
               "spec": {"reservedCIDRs": ["10.5.0.0/30", "10.5.0.6"]}}),
    );
    let mut got = Vec::new();
    for i in 0..3 {
        got.extend(c.add(&format!("c{i}"), ipam()).ok().ips());
    }
    got.sort();
    assert_eq!(got, ["10.5.0.4/32", "10.5.0.5/32", "10.5.0.7/32"]);
    assert_eq!(c.add("c9", ipam()).err_code(), 100);
    let out = c.run(
        "ADD",
        "s",
        &c.conf(ipam()),
        &[("CNI_ARGS", "IgnoreUnknown=1;IP=10.5.0.1")],
    );
    assert_eq!(out.err_code(), 101);
}

#[test]
fn del_is_idempotent_and_check_verifies() {
    let c = Cluster::new();
    c.add_pool("p", "10.6.0.0/24", 26, false);
    let conf = c.conf(ipam());
    let first = c.add("c1", ipam()).ok().ips();
    // A repeated ADD gets the same address back.
    assert_eq!(c.add("c1", ipam()).ok().ips(), first);
    assert_eq!(c.in_use(), 1);
    c.run("CHECK", "c1", &conf, &[]).ok();
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [{"address": first[0]}]});
    c.run("CHECK", "c1", &with_prev, &[]).ok();
    with_prev["prevResult"]["ips"][0]["address"] = json!("10.6.0.200/32");
    assert_eq!(c.run("CHECK", "c1", &with_prev, &[]).err_code(), 102);
    let mut old = conf.clone();
    old["cniVersion"] = json!("0.3.1");
    assert_eq!(c.run("CHECK", "c1", &old, &[]).err_code(), 1);

    let out = c.run("DEL", "c1", &conf, &[]).ok();
    assert!(out.stdout.is_empty());
    c.run("DEL", "c1", &conf, &[]).ok();
    c.run("DEL", "never-added", &conf, &[]).ok();
    assert_eq!(c.in_use(), 0);
    assert_eq!(c.run("CHECK", "c1", &conf, &[]).err_code(), 102);
}

#[test]
fn version_and_result_formats() {
    let c = Cluster::new();
    c.add_pool("p4", "10.7.0.0/24", 26, false);
    c.add_pool("p6", "fd00:7::/120", 122, false);
    let out = c
        .run("VERSION", "", &json!({"cniVersion": "0.4.0"}), &[])
        .ok();
    let v = out.json();
    assert_eq!(v["cniVersion"], "0.4.0");
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
    );

    let mut conf =
        c.conf(json!({"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "true"}));
    let out = c.run("ADD", "dual", &conf, &[]).ok();
    let v = out.json();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert!(v["ips"][0].get("version").is_none());
    assert!(v["ips"][0]["address"].as_str().unwrap().ends_with("/32"));
    assert!(
        v["ips"][1]["address"]
            .as_str()
            .unwrap()
            .starts_with("fd00:7::")
    );
    assert!(v["ips"][1]["address"].as_str().unwrap().ends_with("/128"));

    conf["cniVersion"] = json!("0.3.1");
    let v = c.run("ADD", "old", &conf, &[]).ok().json();
    assert_eq!(v["cniVersion"], "0.3.1");
    assert_eq!(v["ips"][0]["version"], "4");
    assert_eq!(v["ips"][1]["version"], "6");

    let v6only = c.conf(json!({"type": "calico-ipam", "assign_ipv4": false, "assign_ipv6": true}));
    let ips = c.run("ADD", "six", &v6only, &[]).ok().ips();
    assert_eq!(ips.len(), 1);
    assert!(ips[0].contains(':'));
}

#[test]
fn static_address_from_cni_args() {
    let c = Cluster::new();
    c.add_pool("p", "10.8.0.0/24", 26, false);
    let conf = c.conf(ipam());
    let out = c
        .run(
            "ADD",
            "s1",
            &conf,
            &[("CNI_ARGS", "IgnoreUnknown=1;IP=10.8.0.77")],
        )
        .ok();
    assert_eq!(out.ips(), ["10.8.0.77/32"]);
    let out = c.run("ADD", "s2", &conf, &[("CNI_ARGS", "IP=10.8.0.77")]);
    assert_eq!(out.err_code(), 101);
    let out = c.run("ADD", "s3", &conf, &[("CNI_ARGS", "IP=192.168.0.1")]);
    assert_eq!(out.err_code(), 101);
    c.run("DEL", "s1", &conf, &[]).ok();
    assert_eq!(c.in_use(), 0);
}

#[test]
fn bad_input_gets_the_right_codes() {
    let c = Cluster::new();
    c.add_pool("p", "10.10.0.0/24", 26, false);
    let raw = |stdin: &str, env: &[(&str, &str)]| {
        run_plugin(
            Command::new(BIN).env_clear().envs(env.iter().copied()),
            stdin,
        )
    };
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "x"),
        ("CNI_IFNAME", "eth0"),
    ];
    assert_eq!(raw("{not json", &env).err_code(), 6);
    assert_eq!(raw("[1,2]", &env).err_code(), 6);
    assert_eq!(raw(r#"{"cniVersion":"1.0.0"}"#, &env).err_code(), 7);
    assert_eq!(raw(r#"{"name":"n"}"#, &env).err_code(), 7);
    assert_eq!(
        raw(r#"{"cniVersion":"9.9.9","name":"n"}"#, &env).err_code(),
        1
    );
    let mut conf = c.conf(json!({"type": "calico-ipam", "assign_ipv4": "maybe"}));
    assert_eq!(c.run("ADD", "a", &conf, &[]).err_code(), 7);
    conf["ipam"] = json!({"type": "host-local"});
    assert_eq!(c.run("ADD", "a", &conf, &[]).err_code(), 7);
    conf["ipam"] = json!({"type": "calico-ipam", "ipv4_pools": "p"});
    assert_eq!(c.run("ADD", "a", &conf, &[]).err_code(), 7);
    conf["ipam"] = json!({"type": "calico-ipam", "assign_ipv4": false});
    assert_eq!(c.run("ADD", "a", &conf, &[]).err_code(), 7);
    let good = c.conf(ipam()).to_string();
    assert_eq!(
        raw(&good, &[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")]).err_code(),
        4
    );
    assert_eq!(raw(&good, &[("CNI_CONTAINERID", "x")]).err_code(), 4);
    assert_eq!(
        raw(&good, &[("CNI_COMMAND", "BOGUS"), ("CNI_CONTAINERID", "x")]).err_code(),
        4
    );
    assert_eq!(c.in_use(), 0);
}
