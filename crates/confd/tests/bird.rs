//! confd with real BIRD (Debian's `bird` 1.6): two hosts in two network
//! namespaces, each with confd following an embedded datastore and BIRD
//! reading what confd wrote. Each host's block reaches the other's kernel
//! over the BGP mesh; a new block affinity is re-rendered, BIRD is asked to
//! reload, and its route appears on the other host; a write that changes
//! nothing rewrites nothing. A configuration BIRD refuses puts the previous
//! files back. Needs root and BIRD; skips visibly without them, fails under
//! `CI=true`.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use calico_confd::daemon::{Confd, DaemonError, Options};
use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, WriteOp};
use serde_json::{Value, json};

fn skip(why: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {why}: the BIRD test cannot be skipped"
    );
    eprintln!("SKIPPED confd BIRD test: {why}");
    true
}

fn root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

fn sh(args: &[&str]) {
    let ok = Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{args:?}");
}

/// What the test started, stopped however it ends.
struct Cleanup {
    children: Vec<Child>,
    netns: Vec<String>,
    stop: Arc<AtomicBool>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Writes a resource as calicoctl would (checked and defaulted).
fn put(ds: &dyn Datastore, doc: Value) {
    let checked = calico_api::parse_resource(doc).expect("valid resource");
    let key = Key::global(checked.kind, checked.name().to_owned());
    ds.write_batch(vec![WriteOp::Upsert {
        key,
        value: checked.value,
    }])
    .expect("write");
}

fn affinity(ds: &dyn Datastore, node: &str, cidr: &str) {
    let net = cidr.parse().expect("cidr");
    let key = calico_ipam::model::affinity_key(node, &net);
    let value = json!({"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity",
        "metadata": {"name": key.name},
        "spec": {"type": "host", "state": "confirmed", "node": node, "cidr": cidr, "deleted": "false"}});
    ds.write_batch(vec![WriteOp::Upsert { key, value }])
        .expect("write affinity");
}

fn node(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
        "metadata": {"name": name}, "spec": {"bgp": {"ipv4Address": ip}}})
}

fn route(ns: &str, cidr: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "route", "show", cidr])
        .output()
        .expect("ip route");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn options(node: &str, dir: &Path) -> Options {
    Options {
        settings: calico_confd::Settings {
            node_name: node.to_owned(),
            router_id: String::new(),
        },
        config_dir: dir.to_owned(),
        secrets_dir: None,
        bird_dir: Some(dir.to_owned()),
        debounce: Duration::from_millis(50),
    }
}

fn bird(ns: &str, dir: &Path) -> Child {
    // Relative includes (`include "bird_aggr.cfg"`) resolve from the working directory.
    Command::new("ip")
        .args(["netns", "exec", ns, "bird", "-f", "-c", "bird.cfg", "-s"])
        .arg(dir.join("bird.ctl"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("bird starts")
}

#[test]
fn birds_configured_by_confd_exchange_blocks_and_follow_a_new_one() {
    if !root() {
        skip("not root (network namespaces)");
        return;
    }
    if Command::new("bird").arg("--version").output().is_err() {
        skip("BIRD is not installed (Debian package bird)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let ds: Arc<dyn Datastore> =
        Arc::new(SqliteDatastore::open(&tmp.path().join("calico.db")).expect("store"));
    let id = std::process::id();
    let (na, nb) = (format!("cfd-a-{id}"), format!("cfd-b-{id}"));
    let stop = Arc::new(AtomicBool::new(false));
    let mut cleanup = Cleanup {
        children: Vec::new(),
        netns: vec![na.clone(), nb.clone()],
        stop: stop.clone(),
    };
    sh(&["ip", "netns", "add", &na]);
    sh(&["ip", "netns", "add", &nb]);
    sh(&[
        "ip", "link", "add", "eth0", "netns", &na, "type", "veth", "peer", "name", "eth0", "netns",
        &nb,
    ]);
    for (ns, ip) in [(&na, "10.123.1.1/24"), (&nb, "10.123.1.2/24")] {
        sh(&["ip", "-n", ns, "addr", "add", ip, "dev", "eth0"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    }
    put(ds.as_ref(), node("a", "10.123.1.1/24"));
    put(ds.as_ref(), node("b", "10.123.1.2/24"));
    put(
        ds.as_ref(),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": "bgp"},
        "spec": {"cidr": "10.70.0.0/16", "ipipMode": "Never", "vxlanMode": "Never"}}),
    );
    affinity(ds.as_ref(), "a", "10.70.1.0/26");
    affinity(ds.as_ref(), "b", "10.70.2.0/26");

    let dirs: Vec<PathBuf> = ["a", "b"].iter().map(|n| tmp.path().join(n)).collect();
    for (name, dir) in ["a", "b"].iter().zip(&dirs) {
        std::fs::create_dir_all(dir).expect("dir");
        let report = Confd::new(ds.clone(), options(name, dir))
            .once(Duration::from_secs(10))
            .expect("first render");
        assert_eq!(report.written.len(), 6, "{report:?}");
    }
    for (ns, dir) in [(&na, &dirs[0]), (&nb, &dirs[1])] {
        cleanup.children.push(bird(ns, dir));
    }
    for (name, dir) in ["a", "b"].iter().zip(&dirs) {
        let (ds, opts, stop) = (ds.clone(), options(name, dir), stop.clone());
        std::thread::spawn(move || Confd::new(ds, opts).run(&stop));
    }

    wait_for(
        "a's block routed on b over BGP",
        Duration::from_secs(20),
        || route(&nb, "10.70.1.0/26").contains("via 10.123.1.1"),
    );
    wait_for(
        "b's block routed on a over BGP",
        Duration::from_secs(20),
        || route(&na, "10.70.2.0/26").contains("via 10.123.1.2"),
    );

    // A rewrite of the same Node changes nothing: no file is written again.
    let bird_cfg = dirs[0].join("bird.cfg");
    let before = std::fs::metadata(&bird_cfg)
        .and_then(|m| m.modified())
        .expect("mtime");
    put(ds.as_ref(), node("a", "10.123.1.1/24"));

    // A new block of a's: confd renders it, BIRD reloads, b learns it.
    affinity(ds.as_ref(), "a", "10.70.1.64/26");
    wait_for("a's new block routed on b", Duration::from_secs(20), || {
        route(&nb, "10.70.1.64/26").contains("via 10.123.1.1")
    });
    let aggr = std::fs::read_to_string(dirs[0].join("bird_aggr.cfg")).expect("aggr");
    assert!(aggr.contains("route 10.70.1.64/26 blackhole;"), "{aggr}");
    let after = std::fs::metadata(&bird_cfg)
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(
        before, after,
        "bird.cfg did not change and was not rewritten"
    );
    drop(cleanup);
}

/// A BIRD that refuses every `configure`, on a socket of its own.
fn refusing_bird(socket: &Path) {
    let listener = UnixListener::bind(socket).expect("bind");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            use std::io::{BufRead, BufReader, Write};
            let _ = conn.write_all(b"0001 BIRD 1.6.8 ready.\n");
            let mut line = String::new();
            let _ = BufReader::new(conn.try_clone().expect("clone")).read_line(&mut line);
            let _ = conn.write_all(
                b"0002-Reading configuration from bird.cfg\n8002 bird.cfg, line 3: syntax error\n",
            );
        }
    });
}

#[test]
fn a_configuration_bird_refuses_puts_the_previous_files_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ds: Arc<dyn Datastore> =
        Arc::new(SqliteDatastore::open(&tmp.path().join("calico.db")).expect("store"));
    put(ds.as_ref(), node("a", "10.123.1.1/24"));
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut opts = options("a", &dir);
    opts.bird_dir = None;
    Confd::new(ds.clone(), opts)
        .once(Duration::from_secs(10))
        .expect("first render, no BIRD asked");
    let good = std::fs::read_to_string(dir.join("bird.cfg")).expect("bird.cfg");

    refusing_bird(&dir.join("bird.ctl"));
    put(ds.as_ref(), node("b", "10.123.1.2/24"));
    let err = Confd::new(ds.clone(), options("a", &dir))
        .once(Duration::from_secs(10))
        .expect_err("BIRD refuses");
    assert!(
        matches!(&err, DaemonError::Refused(_)) && err.to_string().contains("syntax error"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("bird.cfg")).expect("bird.cfg"),
        good,
        "the file BIRD runs is the one on disk"
    );
}
