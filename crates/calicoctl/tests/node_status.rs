//! `calicoctl node status` against real BIRD (Debian's `bird` 1.6): two BIRDs in two
//! network namespaces peer over a veth with Calico's protocol names; the status shows the
//! established mesh peer and a node-specific peer that cannot connect, as upstream prints
//! them. Needs root and BIRD; skips visibly without them, fails under `CI=true`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn skip(why: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {why}: the BIRD test cannot be skipped"
    );
    eprintln!("SKIPPED node status test: {why}");
    true
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
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn bird(ns: &str, dir: &Path, me: &str, peer: &str) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = format!(
        "router id {me};\n\
         protocol device {{ scan time 2; }}\n\
         protocol bgp Mesh_{peer_id} {{\n  local as 64512;\n  neighbor {peer} as 64512;\n  \
         source address {me};\n  connect delay time 1;\n  connect retry time 1;\n  \
         import all;\n  export none;\n}}\n\
         protocol bgp Node_10_123_0_9 {{\n  local as 64512;\n  neighbor 10.123.0.9 as 65001;\n  \
         connect retry time 1;\n  import all;\n  export none;\n}}\n",
        peer_id = peer.replace('.', "_"),
    );
    std::fs::write(dir.join("bird.cfg"), cfg).unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns, "bird", "-f", "-c"])
        .arg(dir.join("bird.cfg"))
        .arg("-s")
        .arg(dir.join("bird.ctl"))
        .stdout(Stdio::null())
        .spawn()
        .expect("bird starts")
}

#[test]
fn node_status_lists_birds_peers_as_upstream_prints_them() {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    if !root {
        skip("not root (network namespaces)");
        return;
    }
    if Command::new("bird").arg("--version").output().is_err() {
        skip("BIRD is not installed (Debian package bird)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let (a, b) = (format!("ns-bird-a-{id}"), format!("ns-bird-b-{id}"));
    let mut clean = Cleanup {
        children: Vec::new(),
        netns: vec![a.clone(), b.clone()],
    };
    sh(&["ip", "netns", "add", &a]);
    sh(&["ip", "netns", "add", &b]);
    sh(&[
        "ip", "-n", &a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b,
    ]);
    for (ns, addr) in [(&a, "10.123.0.1/24"), (&b, "10.123.0.2/24")] {
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", "eth0"]);
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    let calicoctl = env!("CARGO_BIN_EXE_calicoctl");
    let status = |dir: &Path| {
        let out = Command::new(calicoctl)
            .args(["node", "status", "--bird-dir"])
            .arg(dir)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // Without calico-node running on this machine the status says so (unless another test
    // runs one right now).
    let (ok, text) = status(tmp.path());
    assert!(
        ok || text.contains("Calico process is not running."),
        "{text}"
    );

    // A process named calico-node, as the real one is.
    let fake = tmp.path().join("calico-node");
    std::fs::copy("/bin/sleep", &fake).unwrap();
    // A just-written executable can be briefly busy (ETXTBSY) for exec.
    let sleeper = (0..50)
        .find_map(|_| match Command::new(&fake).arg("120").spawn() {
            Ok(c) => Some(c),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                None
            }
        })
        .expect("the fake calico-node starts");
    clean.children.push(sleeper);
    let dir_a = tmp.path().join("a");
    clean
        .children
        .push(bird(&a, &dir_a, "10.123.0.1", "10.123.0.2"));
    clean
        .children
        .push(bird(&b, &tmp.path().join("b"), "10.123.0.2", "10.123.0.1"));

    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (ok, text) = status(&dir_a);
        // BIRD shows `feed` for a moment after a session comes up, then `up`.
        if ok
            && text
                .lines()
                .any(|l| l.contains("| up ") && l.contains("Established"))
        {
            break text;
        }
        assert!(Instant::now() < deadline, "never established:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        text.starts_with("Calico process is running.\n\nIPv4 BGP status\n"),
        "{text}"
    );
    assert!(
        text.contains("| PEER ADDRESS | PEER TYPE         | STATE | SINCE"),
        "{text}"
    );
    let mesh = text
        .lines()
        .find(|l| l.starts_with("| 10.123.0.2 "))
        .unwrap_or_else(|| panic!("no mesh row:\n{text}"));
    assert!(
        mesh.contains("| node-to-node mesh | up ") && mesh.contains("Established"),
        "{mesh}"
    );
    let node = text
        .lines()
        .find(|l| l.starts_with("| 10.123.0.9 "))
        .unwrap_or_else(|| panic!("no node-specific row:\n{text}"));
    assert!(
        node.contains("| node specific ") && node.contains("| start "),
        "{node}"
    );
    assert!(
        text.contains("INFO: BIRDv6 process: 'bird6' is not running."),
        "{text}"
    );
}
