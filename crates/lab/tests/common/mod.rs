//! What the lab test binaries share: a lab per test (torn down when
//! dropped), Marathon app definitions, polling and reachability.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use calico_lab::{App, AppNetwork, Lab, Task};

/// A lab that is torn down when dropped (also when the test panics).
pub struct TestLab(Lab);

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Err(e) = self.0.down() {
            eprintln!("teardown: {e:#}");
        }
    }
}

impl std::ops::Deref for TestLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.0
    }
}

pub fn lab(prefix: &str, hosts: u8) -> Option<TestLab> {
    lab_on(prefix, hosts, false)
}

pub fn lab_on(prefix: &str, hosts: u8, etcd: bool) -> Option<TestLab> {
    lab_with(prefix, hosts, etcd, false)
}

/// A lab whose hosts also run dockerd and the Calico Docker plugin (`docker`).
pub fn lab_with(prefix: &str, hosts: u8, etcd: bool, docker: bool) -> Option<TestLab> {
    lab_setup(
        prefix,
        hosts,
        calico_lab::Setup {
            etcd,
            docker,
            ..calico_lab::Setup::default()
        },
    )
}

/// A lab set up as `setup` says.
pub fn lab_setup(prefix: &str, hosts: u8, setup: calico_lab::Setup) -> Option<TestLab> {
    if !nix_is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{prefix}: the lab needs root; CI must run as root"
        );
        eprintln!("SKIPPED {prefix}: the lab needs root (network namespaces)");
        return None;
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_calico-lab"))
        .parent()
        .unwrap()
        .to_owned();
    for b in [
        "calico-node",
        "calico",
        "calico-ipam",
        "calicoctl",
        "calico-libnetwork-plugin",
    ] {
        assert!(
            bin.join(b).is_file(),
            "{b} is not built next to calico-lab: build the workspace first (cargo build --workspace)"
        );
    }
    let l = Lab {
        prefix: prefix.to_owned(),
        dir: std::env::temp_dir().join(format!("calico-lab-test-{prefix}")),
        bin,
        verbose: false,
    };
    // A previous run killed half-way may have left it behind.
    l.down().unwrap();
    let l = TestLab(l);
    l.up_with(hosts, setup).unwrap();
    Some(l)
}

pub fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

pub fn app(id: &str, instances: u32, labels: &[(&str, &str)]) -> App {
    App {
        id: format!("/{id}"),
        instances,
        networks: vec![AppNetwork {
            mode: "container".into(),
            name: "calico".into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }],
        container: None,
    }
}

pub fn url(t: &Task) -> String {
    format!("http://{}:80/id", t.ip)
}

/// Polls `f` until it is true or `within` passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

pub fn reaches(lab: &Lab, from: &Task, to: &Task) -> bool {
    lab.fetch(&from.id, &url(to)).as_deref() == Ok(to.id.as_str())
}

/// Hand-made packets (`tests/packets.py`, run in a namespace).
pub const PACKETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/packets.py");

/// A `packets.py udp-sink` in a task: what arrives on a UDP port.
pub struct UdpSink {
    child: Child,
    file: PathBuf,
}

impl UdpSink {
    /// Listens on `port` in `on`'s namespace (until dropped).
    pub fn start(lab: &Lab, on: &Task, port: u16) -> UdpSink {
        let file = lab.dir.join(format!("udp-{}-{port}.received", on.id));
        let _ = std::fs::remove_file(&file);
        let child = Command::new("ip")
            .args(["netns", "exec", &on.netns, "python3", PACKETS, "udp-sink"])
            .arg(port.to_string())
            .arg(&file)
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let sink = UdpSink { child, file };
        // The file appears once the socket is bound.
        assert!(
            eventually(Duration::from_secs(5), || sink.file.exists()),
            "udp-sink in {} did not start",
            on.id
        );
        sink
    }

    /// Everything received so far, one "PAYLOAD SRC:PORT" line per datagram.
    pub fn contents(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }

    /// Whether a datagram carrying `payload` arrived.
    pub fn got(&self, payload: &str) -> bool {
        self.contents()
            .lines()
            .any(|l| l.split_whitespace().next() == Some(payload))
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
