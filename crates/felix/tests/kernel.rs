//! felix against the real kernel and `nft`, in a fresh network namespace per
//! test: it programs its table (policy and NAT), the VXLAN device, its peers
//! and routes from an embedded datastore, and repairs them when they are
//! removed behind its back. Without the privilege to create namespaces the
//! tests print why and skip; under `CI=true` they fail instead.

use calico_netlink::testing::enter_fresh_netns;
use std::process::Command;
use std::sync::Arc;

use calico_dataplane::{ConntrackCli, NftCli};
use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, Kind};
use calico_felix::{Config, Encap, Felix, Kernel, VxlanConfig};
use calico_netlink::real::{NetlinkSocket, ProcSysctl};
use calico_netlink::{Netlink, PROTO_FELIX, VethSpec};
use serde_json::json;

/// `nft list table inet calico` as text ("" when absent). Children inherit
/// the test thread's namespace.
fn nft_table() -> String {
    let out = Command::new("nft")
        .args(["list", "table", "inet", "calico"])
        .output()
        .expect("nft runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The real kernel interfaces of the calling thread's namespace, with `nft` for nftables.
fn real_kernel<F: calico_dataplane::Nft>(
    netlink: NetlinkSocket,
    nft: F,
) -> Kernel<NetlinkSocket, F, ConntrackCli, ProcSysctl> {
    Kernel {
        netlink,
        nft,
        conntrack: ConntrackCli::default(),
        sysctl: ProcSysctl,
    }
}

/// A running agent: its stop flag and thread.
struct Running {
    stop: Arc<std::sync::atomic::AtomicBool>,
    agent: std::thread::JoinHandle<()>,
}

impl Running {
    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.agent.join().unwrap();
    }
}

/// Runs felix (on the real kernel, from `ds`) in a thread, which shares this one's network
/// namespace, until it is ready and `programmed()` holds (at most 10 s).
fn run_until_programmed<F: calico_dataplane::Nft + Send + 'static>(
    cfg: Config,
    ds: &Arc<dyn Datastore>,
    nft: F,
    programmed: impl Fn() -> bool,
) -> Running {
    let mut felix = Felix::new(
        cfg,
        ds.clone(),
        real_kernel(NetlinkSocket::new().unwrap(), nft),
    );
    let status = felix.status();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let agent = std::thread::spawn(move || felix.run(&stop2));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(status.ready.load(std::sync::atomic::Ordering::Relaxed) && programmed()) {
        assert!(
            std::time::Instant::now() < deadline,
            "felix never programmed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Running { stop, agent }
}

/// An empty embedded datastore (in a directory kept while the guard lives).
fn store() -> (tempfile::TempDir, Arc<dyn Datastore>) {
    let dir = tempfile::tempdir().unwrap();
    let ds: Arc<dyn Datastore> = Arc::new(SqliteDatastore::open(&dir.path().join("c.db")).unwrap());
    (dir, ds)
}

fn put(ds: &dyn Datastore, key: Key, value: serde_json::Value) {
    ds.write_batch(vec![calico_datastore::WriteOp::Upsert { key, value }])
        .unwrap();
}

fn seed(ds: &dyn Datastore) {
    for (i, name) in [(1, "h1"), (2, "h2")] {
        put(
            ds,
            Key::global(Kind::Node, name),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                "metadata": {"name": name},
                "spec": {"bgp": {"ipv4Address": format!("172.30.0.{i}/24")},
                         "ipv4VXLANTunnelAddr": format!("10.65.{i}.0"),
                         "vxlanTunnelMACAddr": format!("66:c0:00:00:00:0{i}")}}),
        );
        put(
            ds,
            Key::global(Kind::IpamBlock, format!("10-65-{i}-0-26")),
            json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMBlock",
                "metadata": {"name": format!("10-65-{i}-0-26")},
                "spec": {"cidr": format!("10.65.{i}.0/26"), "affinity": format!("host:{name}")}}),
        );
    }
    put(
        ds,
        Key::global(Kind::IpPool, "default-ipv4-ippool"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": "default-ipv4-ippool"},
            "spec": {"cidr": "10.65.0.0/16", "natOutgoing": true, "vxlanMode": "Always"}}),
    );
    put(
        ds,
        Key::global(Kind::Profile, "calico"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
            "metadata": {"name": "calico"},
            "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                     "labelsToApply": {"calico": ""}}}),
    );
    put(
        ds,
        Key::namespaced(Kind::WorkloadEndpoint, "default", "h1-mesos-w1-eth0"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": "h1-mesos-w1-eth0", "namespace": "default",
                         "labels": {"app": "web"}},
            "spec": {"node": "h1", "orchestrator": "mesos", "workload": "w1",
                     "endpoint": "eth0", "interfaceName": "caliw1",
                     "ipNetworks": ["10.65.1.2/32"], "profiles": ["calico"]}}),
    );
}

#[test]
fn programs_table_tunnel_and_routes_then_repairs_drift() {
    if !enter_fresh_netns("felix programs") {
        return;
    }
    let (_dir, ds) = store();
    seed(ds.as_ref());
    let mut nl = NetlinkSocket::new().unwrap();
    nl.set_link_up("lo").unwrap();
    // The workload's host-side interface, as the CNI plugin leaves it.
    nl.create_veth(
        &VethSpec {
            name: "caliw1".into(),
            peer_name: "w1peer".into(),
            mtu: 1500,
            mac: None,
        },
        None,
    )
    .unwrap();
    nl.set_link_up("caliw1").unwrap();
    let mut cfg = Config::new("h1");
    cfg.encap = Encap::Vxlan(VxlanConfig {
        vni: 4096,
        port: 4789,
        mtu: 1450,
    });
    let mut felix = Felix::new(
        cfg,
        ds.clone(),
        real_kernel(NetlinkSocket::new().unwrap(), NftCli::default()),
    );
    assert!(nft_table().is_empty(), "nothing before the first sync");
    felix.sync().unwrap();
    felix.program(std::time::Instant::now());

    let table = nft_table();
    for want in [
        "iifname vmap { \"caliw1\" : jump from-caliw1 }",
        "oifname vmap { \"caliw1\" : jump to-caliw1 }",
        "masquerade",
        "hook postrouting",
        "10.65.0.0/16",
    ] {
        assert!(table.contains(want), "table lacks {want:?}:\n{table}");
    }
    let link = nl.link("vxlan.calico").unwrap().expect("vxlan.calico");
    assert_eq!((link.mtu, link.up), (1450, true));
    assert_eq!(link.mac, [0x66, 0xc0, 0, 0, 0, 1]);
    let ours = |nl: &mut NetlinkSocket| -> Vec<String> {
        let mut v: Vec<String> = nl
            .routes()
            .unwrap()
            .into_iter()
            .filter(|r| r.protocol == PROTO_FELIX)
            .map(|r| format!("{}/{} via {:?}", r.dst, r.prefix_len, r.gateway))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ours(&mut nl),
        ["10.65.1.2/32 via None", "10.65.2.0/26 via Some(10.65.2.0)"]
    );
    assert_eq!(nl.fdb("vxlan.calico").unwrap().len(), 1);

    // An intact table is left alone by the full check (sets included:
    // nft lists their elements as felix added them).
    felix.repair_drift();
    assert_eq!(felix.metrics().drift_repairs.get(), 0, "no drift seen");
    // Someone removes an address from a set: no rule changes, still repaired.
    assert!(
        Command::new("nft")
            .args([
                "delete",
                "element",
                "inet",
                "calico",
                "wl-src4",
                "{ \"caliw1\" . 10.65.1.2 }",
            ])
            .status()
            .unwrap()
            .success()
    );
    assert_ne!(nft_table(), table);
    felix.repair_drift();
    assert_eq!(nft_table(), table, "the element is back");
    assert_eq!(felix.metrics().drift_repairs.get(), 1);

    // Someone deletes our table and a route: both come back.
    assert!(
        Command::new("nft")
            .args(["delete", "table", "inet", "calico"])
            .status()
            .unwrap()
            .success()
    );
    let route = nl
        .routes()
        .unwrap()
        .into_iter()
        .find(|r| r.protocol == PROTO_FELIX && r.prefix_len == 26)
        .unwrap();
    assert!(nl.delete_route(&route).unwrap());
    felix.repair_drift();
    assert_eq!(nft_table(), table, "table restored exactly");
    assert_eq!(ours(&mut nl).len(), 2);

    // The remote host leaves the cluster: its route and tunnel peer go.
    ds.delete(&Key::global(Kind::IpamBlock, "10-65-2-0-26"), None)
        .unwrap();
    ds.delete(&Key::global(Kind::Node, "h2"), None).unwrap();
    felix.sync().unwrap();
    felix.program(std::time::Instant::now());
    assert_eq!(ours(&mut nl), ["10.65.1.2/32 via None"]);
    assert!(nl.fdb("vxlan.calico").unwrap().is_empty());
    // Only the kernel's own entries (IPv6 multicast) are left.
    assert!(
        !nl.neighbours("vxlan.calico")
            .unwrap()
            .iter()
            .any(|n| n.ip.is_ipv4()),
        "the peer's neighbour entry is gone"
    );
}

/// Runs `cmd` (through `ip netns exec NS` when given) and says whether it succeeded.
fn succeeds(ns: Option<&str>, cmd: &[&str]) -> bool {
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]);
            c.args(cmd);
            c
        }
        None => {
            let mut c = Command::new(cmd[0]);
            c.args(&cmd[1..]);
            c
        }
    };
    c.output().is_ok_and(|o| o.status.success())
}

/// A named namespace for the workload side, deleted on drop.
struct Workload(String);

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn before_the_first_sync_workload_interfaces_are_dropped_then_policy_decides() {
    if !enter_fresh_netns("felix fail closed before sync") {
        return;
    }
    let w = Workload(format!("felix-fc-{}", std::process::id()));
    let ip = |args: &[&str]| {
        let mut all = vec!["ip"];
        all.extend_from_slice(args);
        assert!(succeeds(None, &all), "ip {args:?}");
    };
    ip(&["netns", "add", &w.0]);
    ip(&["link", "set", "lo", "up"]);
    ip(&[
        "link", "add", "califc", "type", "veth", "peer", "name", "eth0", "netns", &w.0,
    ]);
    ip(&["addr", "add", "10.99.0.1/24", "dev", "califc"]);
    ip(&["link", "set", "califc", "up"]);
    ip(&["-n", &w.0, "addr", "add", "10.99.0.2/24", "dev", "eth0"]);
    ip(&["-n", &w.0, "link", "set", "eth0", "up"]);
    // IPv6 too, without duplicate address detection's delay.
    ip(&["addr", "add", "fd99::1/64", "dev", "califc", "nodad"]);
    ip(&[
        "-n",
        &w.0,
        "addr",
        "add",
        "fd99::2/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    let ping = || succeeds(Some(&w.0), &["busybox", "ping", "-c1", "-W1", "10.99.0.1"]);
    let ping6 = |from: &str| {
        succeeds(
            Some(&w.0),
            &["busybox", "ping", "-6", "-c1", "-W2", "-I", from, "fd99::1"],
        )
    };
    assert!(
        ping() && ping6("fd99::2"),
        "without a table the workload reaches its host (the control)"
    );

    let (_dir, ds) = store();
    let mut cfg = Config::new("h1");
    cfg.endpoint_to_host = Some(calico_dataplane::EndpointToHostAction::Accept);
    let mut felix = Felix::new(
        cfg,
        ds.clone(),
        real_kernel(NetlinkSocket::new().unwrap(), NftCli::default()),
    );
    // Started, datastore not read yet: no table, so one that drops
    // every workload interface goes in.
    felix.fail_closed_until_synced();
    let table = nft_table();
    assert!(
        table.contains("iifname \"cali*\" counter packets 0 bytes 0 drop"),
        "{table}"
    );
    assert!(!ping(), "before the first sync the workload is dropped");
    // A table that is already there (a restart) is left as it is.
    felix.fail_closed_until_synced();
    assert_eq!(
        nft_table().lines().filter(|l| l.contains("drop")).count(),
        table.lines().filter(|l| l.contains("drop")).count()
    );

    // Synced: the endpoint exists, policy (its profile allows all, and
    // DefaultEndpointToHostAction Accept) decides.
    put(
        ds.as_ref(),
        Key::global(Kind::Profile, "calico"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
            "metadata": {"name": "calico"},
            "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}}),
    );
    put(
        ds.as_ref(),
        Key::namespaced(Kind::WorkloadEndpoint, "default", "h1-mesos-fc-eth0"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": "h1-mesos-fc-eth0", "namespace": "default"},
            "spec": {"node": "h1", "orchestrator": "mesos", "workload": "fc", "endpoint": "eth0",
                     "interfaceName": "califc", "ipNetworks": ["10.99.0.2/32", "fd99::2/128"],
                     "profiles": ["calico"]}}),
    );
    felix.sync().unwrap();
    felix.program(std::time::Instant::now());
    assert!(
        ping() && ping6("fd99::2"),
        "programmed: the profile and Accept let it reach its host"
    );
    // The host side of the veth was configured on the way.
    let sysctl = |k: &str| std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap();
    assert_eq!(sysctl("net/ipv4/conf/califc/rp_filter").trim(), "1");
    assert_eq!(sysctl("net/ipv6/conf/califc/accept_ra").trim(), "0");
    // Spoofing from the workload is dropped: another source on its eth0.
    ip(&["-n", &w.0, "addr", "add", "10.99.0.3/24", "dev", "eth0"]);
    assert!(
        !succeeds(
            Some(&w.0),
            &[
                "busybox",
                "ping",
                "-c1",
                "-W1",
                "-I",
                "10.99.0.3",
                "10.99.0.1"
            ]
        ),
        "a source that is not the endpoint's is dropped"
    );
    // The same for IPv6 (no kernel reverse-path filter there: nft alone).
    ip(&[
        "-n",
        &w.0,
        "addr",
        "add",
        "fd99::3/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    assert!(
        !ping6("fd99::3"),
        "an IPv6 source that is not the endpoint's is dropped"
    );
    assert!(ping6("fd99::2"), "its own IPv6 address still works");

    // A deny policy whose record breaks keeps denying (dropping it would fail open): IPv4
    // ICMP from the workload is the packet that must stay dropped, IPv6 the control.
    let deny = Key::global(Kind::GlobalNetworkPolicy, "no-icmp4");
    let deny_doc = |selector: &str| {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "no-icmp4"},
            "spec": {"selector": selector, "types": ["Egress"],
                     "egress": [{"action": "Deny", "protocol": "ICMP"}, {"action": "Allow"}]}})
    };
    put(ds.as_ref(), deny.clone(), deny_doc("all()"));
    felix.sync().unwrap();
    felix.program(std::time::Instant::now());
    assert!(!ping(), "the policy denies IPv4 ICMP");
    assert!(ping6("fd99::2"), "and nothing else (the control)");
    // Written past calicoctl: a selector that does not parse.
    ds.update(&deny, deny_doc("has("), None).unwrap();
    felix.sync().unwrap();
    felix.program(std::time::Instant::now());
    assert!(
        !ping(),
        "the broken policy's last good version still denies"
    );
    assert!(ping6("fd99::2"), "the control still passes");
    // Deleted: IPv4 ICMP passes again.
    ds.delete(&deny, None).unwrap();
    felix.sync().unwrap();
    felix.program(std::time::Instant::now());
    assert!(
        ping(),
        "without the policy the workload reaches its host again"
    );

    // The same endpoint as the Docker plugin writes it before it knows the container's
    // labels: nothing passes, though its profile allows everything, until they come.
    let wep = Key::namespaced(Kind::WorkloadEndpoint, "default", "h1-mesos-fc-eth0");
    let mut doc = ds.get(&wep).unwrap().unwrap().value;
    doc["metadata"]["annotations"] = json!({ calico_api::v3::LABELS_PENDING_ANNOTATION: "true" });
    put(ds.as_ref(), wep.clone(), doc.clone());
    felix.sync().unwrap();
    felix.program(std::time::Instant::now());
    assert!(
        !ping() && !ping6("fd99::2"),
        "an endpoint whose labels are pending carries no traffic"
    );
    doc["metadata"]["annotations"] = json!({});
    put(ds.as_ref(), wep, doc);
    felix.sync().unwrap();
    felix.program(std::time::Instant::now());
    assert!(
        ping() && ping6("fd99::2"),
        "its labels known: policy decides again"
    );
}

#[test]
fn a_table_flushed_or_deleted_by_hand_is_back_within_a_second() {
    if !enter_fresh_netns("felix repairs a foreign change") {
        return;
    }
    let (_dir, ds) = store();
    seed(ds.as_ref());
    let mut nl = NetlinkSocket::new().unwrap();
    nl.set_link_up("lo").unwrap();
    let mut cfg = Config::new("h1");
    cfg.nft_monitor = true;
    // Only the kernel's notifications can bring it back this fast: the
    // full read-back is a minute away.
    cfg.verify_interval = std::time::Duration::from_secs(60);
    let running = run_until_programmed(
        cfg,
        &ds,
        calico_dataplane::NftLib::open().expect("libnftables"),
        || nft_table().contains("from-caliw1"),
    );
    // Chains and sets may be listed in another order after a reload.
    let sorted = |t: String| {
        let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    let full = sorted(nft_table());
    for how in [
        ["flush", "table", "inet", "calico"],
        ["delete", "table", "inet", "calico"],
    ] {
        assert!(Command::new("nft").args(how).status().unwrap().success());
        let t = std::time::Instant::now();
        while sorted(nft_table()) != full {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(1),
                "`nft {}` not repaired within 1 s:\n{}",
                how.join(" "),
                nft_table()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        eprintln!("nft {}: back in {:?}", how.join(" "), t.elapsed());
    }
    running.stop();
}

#[test]
fn a_route_deleted_by_hand_is_back_within_a_second() {
    if !enter_fresh_netns("felix repairs a foreign route change") {
        return;
    }
    let (_dir, ds) = store();
    seed(ds.as_ref());
    let mut nl = NetlinkSocket::new().unwrap();
    nl.set_link_up("lo").unwrap();
    let mut cfg = Config::new("h1");
    cfg.encap = Encap::Vxlan(VxlanConfig {
        vni: 4096,
        port: 4789,
        mtu: 1450,
    });
    // Only the kernel's notifications can bring it back this fast: the
    // timer's check is a minute away.
    cfg.resync_interval = std::time::Duration::from_secs(60);
    let remote_block = |nl: &mut NetlinkSocket| {
        nl.routes()
            .unwrap()
            .into_iter()
            .find(|r| r.protocol == PROTO_FELIX && r.prefix_len == 26)
    };
    let running = run_until_programmed(cfg, &ds, NftCli::default(), || {
        remote_block(&mut NetlinkSocket::new().unwrap()).is_some()
    });
    let route = remote_block(&mut nl).unwrap();
    assert!(nl.delete_route(&route).unwrap());
    let t = std::time::Instant::now();
    while remote_block(&mut nl).is_none() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(1),
            "the route to the remote block was not repaired within 1 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    eprintln!("route to 10.65.2.0/26: back in {:?}", t.elapsed());
    running.stop();
}

#[test]
fn ipv6_between_workloads_is_forwarded_and_policed() {
    if !enter_fresh_netns("felix IPv6 forwarding") {
        return;
    }
    let id = std::process::id();
    let (a, b) = (
        Workload(format!("felix-6a-{id}")),
        Workload(format!("felix-6b-{id}")),
    );
    let run = |args: &[&str]| assert!(succeeds(None, args), "{args:?}");
    for (w, host, addr) in [(&a, "cali6a", "fd66::a"), (&b, "cali6b", "fd66::b")] {
        run(&["ip", "netns", "add", &w.0]);
        run(&["ip", "-n", &w.0, "link", "set", "lo", "up"]);
        run(&[
            "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", &w.0,
        ]);
        run(&["ip", "link", "set", host, "address", "ee:ee:ee:ee:ee:ee"]);
        run(&["ip", "link", "set", host, "up"]);
        run(&[
            "ip",
            "-n",
            &w.0,
            "addr",
            "add",
            &format!("{addr}/128"),
            "dev",
            "eth0",
            "nodad",
        ]);
        run(&["ip", "-n", &w.0, "link", "set", "eth0", "up"]);
        run(&[
            "ip",
            "-n",
            &w.0,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fe80::ecee:eeff:feee:eeee",
            "dev",
            "eth0",
        ]);
    }
    let (_dir, ds) = store();
    put(
        ds.as_ref(),
        Key::global(Kind::Profile, "calico"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
            "metadata": {"name": "calico"},
            "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}}),
    );
    for (name, iface, addr) in [("a6", "cali6a", "fd66::a"), ("b6", "cali6b", "fd66::b")] {
        put(
            ds.as_ref(),
            Key::namespaced(
                Kind::WorkloadEndpoint,
                "default",
                format!("h1-mesos-{name}-eth0"),
            ),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                "metadata": {"name": format!("h1-mesos-{name}-eth0"), "namespace": "default",
                             "labels": {"app": name}},
                "spec": {"node": "h1", "orchestrator": "mesos", "workload": name, "endpoint": "eth0",
                         "interfaceName": iface, "ipNetworks": [format!("{addr}/128")],
                         "profiles": ["calico"]}}),
        );
    }
    let mut felix = Felix::new(
        Config::new("h1"),
        ds.clone(),
        real_kernel(NetlinkSocket::new().unwrap(), NftCli::default()),
    );
    felix.fail_closed_until_synced();
    felix.sync().unwrap();
    felix.program(std::time::Instant::now());
    let ping6 = || {
        succeeds(
            Some(&a.0),
            &["busybox", "ping", "-6", "-c1", "-W2", "fd66::b"],
        )
    };
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding")
            .unwrap()
            .trim(),
        "1",
        "felix turned IPv6 forwarding on for its IPv6 endpoints"
    );
    // The host veths' link-local gateway address passes duplicate address detection first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ping6() {
        assert!(
            std::time::Instant::now() < deadline,
            "IPv6 from one workload to another through the host"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Policy decides for IPv6 as for IPv4: a deny on b's ingress cuts it.
    put(
        ds.as_ref(),
        Key::global(Kind::GlobalNetworkPolicy, "deny-to-b"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "deny-to-b"},
            "spec": {"selector": "app == 'b6'", "types": ["Ingress"], "ingress": [{"action": "Deny"}]}}),
    );
    felix.sync().unwrap();
    felix.program(std::time::Instant::now());
    assert!(!ping6(), "denied by policy");
}
