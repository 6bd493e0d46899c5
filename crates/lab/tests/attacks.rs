//! Hostile workloads (issue 11): each attack sends the real packet through a
//! real lab and asserts it is dropped, beside a control showing that the
//! allowed path still works (so a broken lab cannot pass for a protected
//! one). The packets come from `tests/packets.py` (python3, standard library,
//! raw sockets) run inside the attacker's namespace; it was checked by hand
//! to carry out each attack against unprotected namespaces.
//!
//! A spoofed SYN is answered to the real owner of the address, never to the
//! attacker: so besides the attacker's own `syn` (which sees nothing either
//! way) a watcher in the owner's namespace reports whether the SYN-ACK came.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use calico_lab::{Lab, Task};
use serde_json::Value;

mod common;
use common::*;

/// How long a change may take to reach the kernel.
const SETTLE: Duration = Duration::from_secs(10);

/// The UDP port the server's policy allows from bookstore.
const UDP_PORT: u16 = 9999;

/// The policy of the common set-up: the server takes TCP 80 and UDP 9999
/// from bookstore and nothing else.
const SERVER_FROM_BOOKSTORE: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: server-from-bookstore}
spec:
  selector: role == 'server'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: biz_type == 'bookstore'}
    destination: {ports: [80]}
  - action: Allow
    protocol: UDP
    source: {selector: biz_type == 'bookstore'}
    destination: {ports: [9999]}
  - action: Deny
"#;

// --- running things -----------------------------------------------------------

/// Runs `args` in namespace `ns`.
fn ns_run(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {args:?} in {ns}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `args` in `ns`, which must succeed: its standard output.
fn ns_ok(ns: &str, args: &[&str]) -> String {
    let o = ns_run(ns, args);
    assert!(
        o.status.success(),
        "{args:?} in {ns} failed ({}): {}",
        o.status,
        text(&o.stderr).trim()
    );
    text(&o.stdout)
}

/// `ip ARGS` (from the test's namespace: name others with `-n`), which must
/// succeed: its standard output.
fn ip_ok(args: &[&str]) -> String {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e}"));
    assert!(
        o.status.success(),
        "ip {args:?} failed ({}): {}",
        o.status,
        text(&o.stderr).trim()
    );
    text(&o.stdout)
}

/// Runs `packets.py ARGS` in `ns`: whether it exited 0 (the answer came),
/// false for 1 (it did not). Anything else (python3 missing, a usage or
/// set-up error) fails the test: a broken tool must never pass for a
/// dropped packet.
fn probe(ns: &str, args: &[&str]) -> bool {
    let mut argv = vec!["python3", PACKETS];
    argv.extend_from_slice(args);
    let o = ns_run(ns, &argv);
    match o.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!(
            "packets.py {args:?} in {ns} failed ({}): {}",
            o.status,
            text(&o.stderr).trim()
        ),
    }
}

/// Sends `payload` as UDP from `src` (an address of `ns`) to `dst`:`port`,
/// 5 datagrams.
fn udp_send(ns: &str, src: &str, dst: &str, port: u16, payload: &str) {
    // Exit 1 only says the sends were refused locally: for an attack, fine.
    probe(ns, &["udp-send", src, dst, &port.to_string(), payload]);
}

/// An HTTP GET from `ns` (3 s): the body, or None.
fn http_get(ns: &str, url: &str) -> Option<String> {
    let o = ns_run(
        ns,
        &["timeout", "3", "busybox", "wget", "-q", "-O", "-", url],
    );
    o.status
        .success()
        .then(|| text(&o.stdout).trim().to_owned())
}

/// The host's own readiness, asked from inside the host.
fn host_ready(lab: &Lab, host: &str) -> bool {
    let ns = lab.host_netns(host).unwrap();
    http_get(&ns, "http://127.0.0.1:9099/readiness").as_deref() == Some("ok")
}

/// Network namespaces a test makes itself, deleted when dropped (also when
/// the test panics; `Lab::down` would find them by the prefix too).
struct Netns(Vec<String>);

impl Netns {
    fn create(names: &[&str]) -> Netns {
        let guard = Netns(names.iter().map(|n| (*n).to_owned()).collect());
        for &n in names {
            // Left behind by a run killed half-way?
            let _ = Command::new("ip")
                .args(["netns", "del", n])
                .stderr(Stdio::null())
                .status();
            ip_ok(&["netns", "add", n]);
            ip_ok(&["-n", n, "link", "set", "lo", "up"]);
        }
        guard
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

impl UdpSink {
    /// Sends `marker` from `allowed` (a client the policy allows) until it
    /// arrives: what an attacker sent before it through the same host would
    /// have arrived by then too.
    fn mark(&self, allowed: &Task, dst: &str, port: u16, marker: &str) {
        assert!(
            eventually(SETTLE, || {
                udp_send(&allowed.netns, &allowed.ip, dst, port, marker);
                self.got(marker)
            }),
            "the allowed path stopped working: {marker} from {} never arrived; received:\n{}",
            allowed.id,
            self.contents()
        );
    }
}

/// A `packets.py synack-watch` in the namespace owning an address.
struct SynAckWatch {
    child: Child,
}

impl SynAckWatch {
    fn start(ns: &str, src: &str, dst: &str, port: &str, sport: &str) -> SynAckWatch {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", PACKETS, "synack-watch"])
            .args([src, dst, port, sport, "3"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        BufReader::new(out).read_line(&mut line).unwrap();
        let watch = SynAckWatch { child };
        assert_eq!(line.trim(), "ready", "synack-watch in {ns} did not start");
        watch
    }

    /// Whether the SYN-ACK came (waits out the watcher's 3 s when it did not).
    fn seen(mut self) -> bool {
        let status = self.child.wait().unwrap();
        match status.code() {
            Some(0) => true,
            Some(1) => false,
            _ => panic!("synack-watch failed ({status})"),
        }
    }
}

impl Drop for SynAckWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh source port per SYN, below the ephemeral range.
static SPORT: AtomicU16 = AtomicU16::new(31000);

/// A SYN to `dst`:80 sent from namespace `from` with `claimed`'s address as
/// its source: (whether `from` got the SYN-ACK, whether `claimed` did).
fn syn_probe(from: &str, claimed: &Task, dst: &str) -> (bool, bool) {
    let sport = SPORT.fetch_add(1, Ordering::Relaxed).to_string();
    let watch = SynAckWatch::start(&claimed.netns, &claimed.ip, dst, "80", &sport);
    let answered = probe(from, &["syn", &claimed.ip, dst, "80", &sport]);
    (answered, watch.seen())
}

/// The host-side interface of task `t` (from its host's route to it).
fn host_iface(lab: &Lab, t: &Task) -> String {
    let ns = lab.host_netns(&t.host).unwrap();
    let route = ip_ok(&["-n", &ns, "route", "get", &t.ip]);
    let iface = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or_else(|| panic!("no interface in {route:?}"));
    assert!(
        iface.starts_with("cali"),
        "{} is routed through {iface}",
        t.id
    );
    iface.to_owned()
}

// --- the common set-up ----------------------------------------------------------

struct Apps {
    /// role=server, on h2.
    server: Task,
    /// biz_type=bookstore, on h1.
    bookstore: Task,
    /// biz_type=fruitstore, on h1.
    fruitstore: Task,
}

fn one(lab: &Lab, id: &str, label: (&str, &str), host: &str) -> Task {
    lab.add_app(&app(id, 1, &[label]), Some(host))
        .unwrap()
        .remove(0)
}

fn apps(lab: &Lab) -> Apps {
    Apps {
        server: one(lab, "server", ("role", "server"), "h2"),
        bookstore: one(lab, "bookstore", ("biz_type", "bookstore"), "h1"),
        fruitstore: one(lab, "fruitstore", ("biz_type", "fruitstore"), "h1"),
    }
}

/// The three apps and the server-from-bookstore policy, in force.
fn setup(lab: &Lab) -> Apps {
    let a = apps(lab);
    lab.apply_yaml(SERVER_FROM_BOOKSTORE).unwrap();
    assert!(
        eventually(SETTLE, || !reaches(lab, &a.fruitstore, &a.server)),
        "server-from-bookstore denies fruitstore"
    );
    assert!(
        reaches(lab, &a.bookstore, &a.server),
        "server-from-bookstore allows bookstore"
    );
    a
}

// --- the attacks ------------------------------------------------------------------

#[test]
fn spoofed_source_is_dropped_same_host_and_cross_host() {
    let Some(lab) = lab("atkspf", 2) else { return };
    let s = setup(&lab);
    let local = one(&lab, "local-server", ("role", "server"), "h1");
    let (book, fruit) = (&s.bookstore, &s.fruitstore);
    let targets = [
        (
            &s.server,
            "cross-host",
            UdpSink::start(&lab, &s.server, UDP_PORT),
        ),
        (&local, "same-host", UdpSink::start(&lab, &local, UDP_PORT)),
    ];

    // Controls, before any spoofing: bookstore is allowed (UDP and TCP),
    // fruitstore under its own address is not.
    for (server, place, sink) in &targets {
        let control = format!("control-{place}");
        assert!(
            eventually(SETTLE, || {
                udp_send(&book.netns, &book.ip, &server.ip, UDP_PORT, &control);
                sink.got(&control)
            }),
            "{place}: bookstore's UDP to the server's port {UDP_PORT} arrives"
        );
        assert!(reaches(&lab, book, server), "{place}: bookstore fetches");
        let own = format!("fruitstore-own-{place}");
        udp_send(&fruit.netns, &fruit.ip, &server.ip, UDP_PORT, &own);
        sink.mark(book, &server.ip, UDP_PORT, &format!("marker-own-{place}"));
        assert!(
            !sink.got(&own),
            "{place}: policy denies fruitstore's own UDP; received:\n{}",
            sink.contents()
        );
        assert!(!reaches(&lab, fruit, server), "{place}: fruitstore denied");
        let (answered, watched) = syn_probe(&book.netns, book, &server.ip);
        assert!(
            answered && watched,
            "{place}: control: bookstore's own SYN to port 80 is answered \
             (seen by syn: {answered}, by the watcher: {watched})"
        );
    }

    // The attack: fruitstore takes bookstore's address, as any workload
    // with NET_ADMIN in its own namespace can, and sends from it.
    ip_ok(&[
        "-n",
        &fruit.netns,
        "addr",
        "add",
        &format!("{}/32", book.ip),
        "dev",
        "eth0",
    ]);
    for (server, place, sink) in &targets {
        let spoofed = format!("spoofed-{place}");
        udp_send(&fruit.netns, &book.ip, &server.ip, UDP_PORT, &spoofed);
        sink.mark(book, &server.ip, UDP_PORT, &format!("marker-{place}"));
        assert!(
            !sink.got(&spoofed),
            "{place}: UDP from fruitstore with bookstore's source address arrived; received:\n{}",
            sink.contents()
        );
        let (answered, watched) = syn_probe(&fruit.netns, book, &server.ip);
        assert!(
            !answered,
            "{place}: fruitstore got a SYN-ACK for a SYN with bookstore's address"
        );
        assert!(
            !watched,
            "{place}: the server answered (to bookstore) a SYN fruitstore sent with bookstore's address"
        );
        assert!(
            reaches(&lab, book, server),
            "{place}: the real bookstore still fetches"
        );
    }
}

#[test]
fn workload_to_own_host_is_policed() {
    let Some(lab) = lab("atkhost", 2) else { return };
    let s = setup(&lab);
    let (book, fruit) = (&s.bookstore, &s.fruitstore);
    // Both workloads run on h1 (172.30.0.1).
    let to_host = |t: &Task, port: u16, path: &str| {
        lab.fetch(&t.id, &format!("http://172.30.0.1:{port}/{path}"))
    };
    let health_ok = |t: &Task| to_host(t, 9099, "readiness").as_deref() == Ok("ok");
    let metrics_ok = |t: &Task| to_host(t, 9091, "metrics").is_ok_and(|m| m.contains("felix_"));

    // DefaultEndpointToHostAction is Drop unless configured.
    for t in [book, fruit] {
        let got = to_host(t, 9099, "readiness");
        assert!(
            got.is_err(),
            "{} reached its host's health port by default: {got:?}",
            t.id
        );
    }
    assert!(
        host_ready(&lab, "h1"),
        "control: the host itself reaches it"
    );

    lab.apply_yaml(
        r#"
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Accept}
"#,
    )
    .unwrap();
    assert!(
        eventually(SETTLE, || health_ok(book)),
        "defaultEndpointToHostAction Accept: bookstore reaches 172.30.0.1:9099"
    );
    assert!(metrics_ok(book), "and the metrics on 9091");
    assert!(health_ok(fruit) && metrics_ok(fruit), "fruitstore too");

    // The workload's egress policy applies before the default action.
    lab.apply_yaml(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: bookstore-egress-deny}
spec:
  selector: biz_type == 'bookstore'
  types: [Egress]
  egress:
  - action: Deny
"#,
    )
    .unwrap();
    assert!(
        eventually(SETTLE, || !health_ok(book) && !metrics_ok(book)),
        "an egress Deny-all stops bookstore reaching its host, Accept or not"
    );
    assert!(
        to_host(book, 9099, "readiness").is_err() && to_host(book, 9091, "metrics").is_err(),
        "and keeps it stopped"
    );
    assert!(
        health_ok(fruit) && metrics_ok(fruit),
        "a workload without that policy still reaches its host"
    );
    assert!(host_ready(&lab, "h1"));
}

#[test]
fn router_advertisement_from_a_workload_is_ignored() {
    let Some(lab) = lab("atkra", 2) else { return };
    let w = one(&lab, "bookstore", ("biz_type", "bookstore"), "h1");
    let h1 = lab.host_netns("h1").unwrap();
    let iface = host_iface(&lab, &w);

    // The attacker makes sure its side speaks IPv6 (its own namespace, its
    // own choice), then advertises itself as a router.
    ns_ok(
        &w.netns,
        &[
            "sh",
            "-c",
            "echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6",
        ],
    );
    assert!(
        probe(&w.netns, &["ra", "eth0"]),
        "sending the router advertisement"
    );

    // Control (which also gives the attack's packets time to be processed):
    // the very same advertisement configures a host that accepts them.
    {
        let (tx, rx) = (
            format!("{}-ratx", lab.prefix),
            format!("{}-rarx", lab.prefix),
        );
        let _ns = Netns::create(&[tx.as_str(), rx.as_str()]);
        ip_ok(&[
            "link", "add", "ra0", "netns", &tx, "type", "veth", "peer", "name", "ra1", "netns", &rx,
        ]);
        ns_ok(
            &rx,
            &[
                "sh",
                "-c",
                "echo 2 > /proc/sys/net/ipv6/conf/ra1/accept_ra && \
                 echo 0 > /proc/sys/net/ipv6/conf/ra1/forwarding",
            ],
        );
        ip_ok(&["-n", &tx, "link", "set", "ra0", "up"]);
        ip_ok(&["-n", &rx, "link", "set", "ra1", "up"]);
        assert!(probe(&tx, &["ra", "ra0"]), "sending the control's RA");
        assert!(
            eventually(Duration::from_secs(5), || {
                ip_ok(&["-n", &rx, "-6", "route", "show", "default"]).contains("dev ra1")
                    && ip_ok(&["-n", &rx, "-6", "addr", "show", "dev", "ra1"])
                        .contains("2001:db8:bad:")
            }),
            "control: the advertisement gives a receiver with accept_ra=2 a default route \
             and a 2001:db8:bad::/64 address: routes {:?}, addresses {:?}",
            ip_ok(&["-n", &rx, "-6", "route"]),
            ip_ok(&["-n", &rx, "-6", "addr"])
        );
    }

    let defaults = ip_ok(&["-n", &h1, "-6", "route", "show", "default"]);
    assert!(
        !defaults.contains("cali"),
        "h1 took a default route from a workload:\n{defaults}"
    );
    let routes = ip_ok(&["-n", &h1, "-6", "route", "show"]);
    assert!(
        !routes.contains("2001:db8:bad:"),
        "h1 took the workload's prefix on-link:\n{routes}"
    );
    let addrs = ip_ok(&["-n", &h1, "-6", "addr"]);
    assert!(
        !addrs.contains("2001:db8:bad:"),
        "h1 configured an address from a workload's advertisement:\n{addrs}"
    );
    let accept_ra = ns_ok(
        &h1,
        &["cat", &format!("/proc/sys/net/ipv6/conf/{iface}/accept_ra")],
    );
    assert_eq!(
        accept_ra.trim(),
        "0",
        "accept_ra of the workload's host-side interface {iface}"
    );
    assert!(host_ready(&lab, "h1"));
}

#[test]
fn vxlan_from_a_non_calico_host_is_dropped() {
    let Some(lab) = lab("atkvx", 2) else { return };
    let s = setup(&lab);
    let (book, server) = (&s.bookstore, &s.server);
    let (h1, h2) = (lab.host_netns("h1").unwrap(), lab.host_netns("h2").unwrap());
    let vtep = |ns: &str| -> (String, String) {
        let link: Value =
            serde_json::from_str(&ip_ok(&["-n", ns, "-j", "link", "show", "vxlan.calico"]))
                .unwrap();
        let mac = link[0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no MAC of vxlan.calico in {ns}: {link}"))
            .to_owned();
        let addr: Value = serde_json::from_str(&ip_ok(&[
            "-n",
            ns,
            "-j",
            "addr",
            "show",
            "dev",
            "vxlan.calico",
        ]))
        .unwrap();
        let tunnel = addr[0]["addr_info"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["family"] == "inet"))
            .and_then(|i| i["local"].as_str())
            .unwrap_or_else(|| panic!("no IPv4 address on vxlan.calico in {ns}: {addr}"))
            .to_owned();
        (mac, tunnel)
    };
    let (h2_mac, h2_tunnel) = vtep(&h2);
    let (_, h1_tunnel) = vtep(&h1);

    let sink = UdpSink::start(&lab, server, UDP_PORT);
    // Controls: the real bookstore, through h1's real VXLAN.
    assert!(
        eventually(SETTLE, || {
            udp_send(&book.netns, &book.ip, &server.ip, UDP_PORT, "control");
            sink.got("control")
        }),
        "bookstore's UDP reaches the server across hosts"
    );
    assert!(
        probe(&h1, &["icmp-echo", &h1_tunnel, &h2_tunnel, "0"]),
        "control: h1's tunnel address pings h2's through the tunnel"
    );

    // The attacker: a machine on the underlay that is no Calico host,
    // forging h1's tunnel traffic to h2.
    let evil = format!("{}-evil", lab.prefix);
    let _evil = Netns::create(&[evil.as_str()]);
    let ul = format!("{}-ul", lab.prefix);
    ip_ok(&[
        "link", "add", "ul-evil", "netns", &ul, "type", "veth", "peer", "name", "eth0", "netns",
        &evil,
    ]);
    ip_ok(&["-n", &ul, "link", "set", "ul-evil", "master", "br-ul", "up"]);
    ip_ok(&["-n", &evil, "addr", "add", "172.30.0.99/24", "dev", "eth0"]);
    ip_ok(&["-n", &evil, "link", "set", "eth0", "up"]);
    ip_ok(&[
        "-n",
        &evil,
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "4096",
        "dstport",
        "4789",
        "local",
        "172.30.0.99",
        "dev",
        "eth0",
        "nolearning",
    ]);
    ip_ok(&["-n", &evil, "link", "set", "vx0", "mtu", "1450", "up"]);
    ip_ok(&[
        "-n",
        &evil,
        "addr",
        "add",
        &format!("{}/32", book.ip),
        "dev",
        "vx0",
    ]);
    for dst in [&server.ip, &h2_tunnel] {
        ip_ok(&[
            "-n",
            &evil,
            "route",
            "add",
            &format!("{dst}/32"),
            "dev",
            "vx0",
        ]);
        ip_ok(&[
            "-n",
            &evil,
            "neigh",
            "add",
            dst,
            "lladdr",
            &h2_mac,
            "dev",
            "vx0",
            "nud",
            "permanent",
        ]);
    }
    for mac in ["00:00:00:00:00:00", h2_mac.as_str()] {
        ns_ok(
            &evil,
            &[
                "bridge",
                "fdb",
                "append",
                mac,
                "dev",
                "vx0",
                "dst",
                "172.30.0.2",
            ],
        );
    }

    udp_send(&evil, &book.ip, &server.ip, UDP_PORT, "forged-vxlan");
    sink.mark(book, &server.ip, UDP_PORT, "marker");
    assert!(
        !sink.got("forged-vxlan"),
        "UDP forged in VXLAN from a non-Calico host reached the server; received:\n{}",
        sink.contents()
    );
    let (answered, watched) = syn_probe(&evil, book, &server.ip);
    assert!(!answered, "the attacker got a SYN-ACK");
    assert!(
        !watched,
        "the server answered (to bookstore) a SYN forged in VXLAN from a non-Calico host"
    );
    // Not blind: h2 answers a ping of its tunnel address over the underlay,
    // straight back to the attacker, if it decapsulated the request at all.
    assert!(
        !probe(&evil, &["icmp-echo", "172.30.0.99", &h2_tunnel, "0"]),
        "h2 decapsulated VXLAN from a non-Calico host (its tunnel address answered)"
    );
    assert!(
        reaches(&lab, book, server),
        "the real VXLAN path still works"
    );
}

#[test]
fn deny_with_not_icmp_type_and_code_is_enforced() {
    let Some(lab) = lab("atkicmp", 2) else { return };
    let a = apps(&lab);
    let (book, server) = (&a.bookstore, &a.server);
    let ping = |code: &str| probe(&book.netns, &["icmp-echo", &book.ip, &server.ip, code]);
    assert!(
        eventually(SETTLE, || ping("0")),
        "control: an echo request (code 0) is answered"
    );
    assert!(
        ping("1"),
        "control: Linux answers an echo request with code 1 too, so only policy stops it"
    );
    lab.apply_yaml(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: server-icmp}
spec:
  order: 1
  selector: role == 'server'
  types: [Ingress]
  ingress:
  - action: Deny
    protocol: ICMP
    notICMP: {type: 8, code: 0}
  - action: Allow
"#,
    )
    .unwrap();
    assert!(
        eventually(SETTLE, || !ping("1")),
        "Deny ICMP notICMP {{type: 8, code: 0}} denies type 8 code 1"
    );
    assert!(ping("0"), "type 8 code 0 is excluded from the Deny");
    assert!(!ping("1"), "type 8 code 1 stays denied");
    assert!(
        reaches(&lab, book, server),
        "the Allow rule passes the rest"
    );
}

#[test]
fn long_policy_names_are_programmed_and_an_emergency_deny_still_works() {
    let Some(lab) = lab("atkname", 2) else { return };
    let a = apps(&lab);
    let other = one(&lab, "other", ("biz_type", "other"), "h1");
    let (book, fruit, server) = (&a.bookstore, &a.fruitstore, &a.server);
    assert!(reaches(&lab, &other, server), "control: no policy yet");

    // Two 230-character names (lower case and '-', as a DNS subdomain
    // allows) that differ only in their last character: a truncated name
    // would make them one.
    let body = "long-policy-name-from-the-bookstore-to-the-server-".repeat(5);
    let name = |last: char| format!("{}{last}", &body[..229]);
    let (name_a, name_b) = (name('a'), name('b'));
    assert_eq!((name_a.len(), name_b.len()), (230, 230));
    let allow = |policy: &str, client: &str| {
        format!(
            r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: {policy}}}
spec:
  order: 10
  selector: role == 'server'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {{selector: biz_type == '{client}'}}
    destination: {{ports: [80]}}
"#
        )
    };
    lab.apply_yaml(&format!(
        "{}---{}",
        allow(&name_a, "bookstore"),
        allow(&name_b, "fruitstore")
    ))
    .unwrap();
    for n in [&name_a, &name_b] {
        let got = lab
            .calicoctl(&["get", "globalnetworkpolicy", n, "-o", "yaml"])
            .unwrap();
        assert!(
            got.contains(n.as_str()),
            "stored under its full name:\n{got}"
        );
    }
    assert!(
        eventually(SETTLE, || !reaches(&lab, &other, server)),
        "the long-named policies select the server: what they do not allow is dropped"
    );
    assert!(reaches(&lab, book, server), "the first allows bookstore");
    assert!(
        reaches(&lab, fruit, server),
        "the second, named as the first but for its last character, allows fruitstore"
    );

    lab.apply_yaml(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: emergency-deny}
spec:
  order: 1
  selector: role == 'server'
  types: [Ingress]
  ingress:
  - action: Deny
"#,
    )
    .unwrap();
    assert!(
        eventually(SETTLE, || !reaches(&lab, book, server)
            && !reaches(&lab, fruit, server)),
        "the emergency deny is programmed next to the long names"
    );
    assert!(!reaches(&lab, book, server), "and stays");
    for h in ["h1", "h2"] {
        assert!(host_ready(&lab, h), "{h} reports ready");
    }
}

#[test]
fn removed_endpoint_leaves_no_conntrack_entries() {
    let Some(lab) = lab("atkct", 2) else { return };
    let s = setup(&lab);
    let (book, server) = (&s.bookstore, &s.server);
    let h1 = lab.host_netns("h1").unwrap();
    for _ in 0..3 {
        assert!(reaches(&lab, book, server));
    }
    // And connections to bookstore (it has no policy: its profile allows).
    for _ in 0..3 {
        assert!(reaches(&lab, server, book));
    }
    // Entries go to standard output, the "N flow entries" summary to standard error.
    let flows = |dir: &str| ns_ok(&h1, &["conntrack", "-L", dir, &book.ip]);
    for dir in ["-s", "-d"] {
        assert!(
            !flows(dir).trim().is_empty(),
            "control: h1 tracks flows with bookstore's address ({dir})"
        );
    }
    lab.remove_task(&book.id).unwrap();
    assert!(
        eventually(SETTLE, || flows("-s").trim().is_empty()
            && flows("-d").trim().is_empty()),
        "conntrack entries of a removed endpoint stay on h1:\n{}{}",
        flows("-s"),
        flows("-d")
    );
}
