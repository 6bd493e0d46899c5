//! The plugin under a real Docker Engine (Debian's docker.io dockerd, started by
//! `scripts/setup-debian.sh`): `docker network create` on a Calico pool, containers with
//! Calico labels that reach each other, `--ip`, a second Calico network connected to a
//! running container, a restart of the plugin, and `docker rm -f` leaving no veth, endpoint
//! or address. Needs root and dockerd; skips visibly without them, fails under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, Kind, WriteOp};
use common::allocated;
use serde_json::{Value, json};

mod common;

fn skip(why: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {why}: the Docker test cannot be skipped"
    );
    eprintln!("SKIPPED Docker test: {why}");
    true
}

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_owned())
}

fn ok(args: &[&str]) -> String {
    let (good, text) = docker(args);
    assert!(good, "docker {args:?}: {text}");
    text
}

/// Everything the test made, removed however it ends.
struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
    plugin: Option<Child>,
    sockets: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        for n in &self.networks {
            let _ = docker(&["network", "rm", n]);
        }
        if let Some(p) = self.plugin.as_mut() {
            let _ = p.kill();
            let _ = p.wait();
        }
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
    }
}

fn start_plugin(name: &str, db: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_calico-libnetwork-plugin"))
        .args([
            "--name",
            name,
            "--node",
            "docker-test",
            "--label-wait-secs",
            "20",
        ])
        .env("DATASTORE_TYPE", "embedded")
        .env("CALICO_DATASTORE_PATH", db)
        .stdout(Stdio::null())
        .spawn()
        .expect("the plugin starts")
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// A busybox image from the local busybox-static (no registry).
fn image(dir: &Path) -> String {
    let tag = "calico-rs-test/busybox:1".to_owned();
    if docker(&["image", "inspect", &tag]).0 {
        return tag;
    }
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    for tool in ["sh", "ping", "sleep", "ip", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    let import = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c . | docker import - {tag}",
            root.display()
        ))
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "docker import: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    tag
}

fn endpoints(ds: &dyn Datastore) -> Vec<Value> {
    ds.list(Kind::WorkloadEndpoint, None)
        .unwrap()
        .items
        .into_iter()
        .map(|kv| kv.value)
        .collect()
}

fn cali_links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with("cali") && n.len() == 15)
        .collect()
}

#[test]
fn docker_containers_on_calico_networks() {
    if Command::new("docker")
        .arg("info")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        skip("dockerd is not running (scripts/setup-debian.sh starts it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("calico.db");
    let ds: Arc<dyn Datastore> = Arc::new(SqliteDatastore::open(&db).unwrap());
    let put = |key: Key, value: Value| {
        ds.write_batch(vec![WriteOp::Upsert { key, value }])
            .unwrap();
    };
    put(
        Key::global(Kind::IpPool, "docker-test"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": "docker-test"}, "spec": {"cidr": "10.77.0.0/16", "blockSize": 26}}),
    );
    put(
        Key::global(Kind::IpPool, "docker-test-2"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": "docker-test-2"}, "spec": {"cidr": "10.78.0.0/16", "blockSize": 26}}),
    );
    for p in ["web", "db"] {
        put(
            Key::global(Kind::Profile, p),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
                "metadata": {"name": p}, "spec": {}}),
        );
    }
    let id = std::process::id();
    let (driver, ipam) = (format!("calico-t{id}"), format!("calico-t{id}-ipam"));
    let socket = PathBuf::from(format!("/run/docker/plugins/{driver}.sock"));
    let mut clean = Cleanup {
        containers: Vec::new(),
        networks: Vec::new(),
        plugin: Some(start_plugin(&driver, &db)),
        sockets: vec![
            socket.clone(),
            PathBuf::from(format!("/run/docker/plugins/{ipam}.sock")),
        ],
    };
    wait_for(&socket);
    let img = image(dir.path());
    let (net1, net2) = (format!("calnet1-{id}"), format!("calnet2-{id}"));
    clean.networks.extend([net1.clone(), net2.clone()]);

    // A subnet outside every Calico pool is refused with the reason.
    let (good, text) = docker(&[
        "network",
        "create",
        "--driver",
        &driver,
        "--ipam-driver",
        &ipam,
        "--subnet",
        "192.168.77.0/24",
        &format!("bad-{id}"),
    ]);
    assert!(
        !good && text.contains("192.168.77.0/24") && text.contains("docker-test"),
        "{text}"
    );
    ok(&[
        "network",
        "create",
        "--driver",
        &driver,
        "--ipam-driver",
        &ipam,
        "--subnet",
        "10.77.0.0/16",
        "-o",
        "org.projectcalico.profile=web",
        &net1,
    ]);
    ok(&[
        "network",
        "create",
        "--driver",
        &driver,
        "--ipam-driver",
        &ipam,
        "--subnet",
        "10.78.0.0/16",
        "-o",
        "org.projectcalico.profile=db",
        &net2,
    ]);

    let (a, b) = (format!("a-{id}"), format!("b-{id}"));
    clean.containers.extend([a.clone(), b.clone()]);
    ok(&[
        "run",
        "-d",
        "--name",
        &a,
        "--network",
        &net1,
        "--label",
        "org.projectcalico.label.app=web",
        &img,
        "sleep",
        "600",
    ]);
    ok(&[
        "run",
        "-d",
        "--name",
        &b,
        "--network",
        &net1,
        "--ip",
        "10.77.0.50",
        "--label",
        "org.projectcalico.label.app=api",
        &img,
        "sleep",
        "600",
    ]);
    // Both endpoints get their labels (and lose the pending mark).
    assert!(
        eventually(Duration::from_secs(15), || {
            let w = endpoints(ds.as_ref());
            w.len() == 2
                && w.iter()
                    .all(|e| e["metadata"]["annotations"]["calico-rs/labels-pending"].is_null())
        }),
        "{:#?}",
        endpoints(ds.as_ref())
    );
    let apps: Vec<String> = endpoints(ds.as_ref())
        .iter()
        .map(|e| {
            e["metadata"]["labels"]["app"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert!(
        apps.contains(&"web".into()) && apps.contains(&"api".into()),
        "{apps:?}"
    );
    // a reaches b at its --ip through the host's cali veths.
    let (reached, text) = docker(&["exec", &a, "ping", "-c", "1", "-W", "2", "10.77.0.50"]);
    assert!(reached, "{text}");
    let routes = ok(&["exec", &a, "ip", "route"]);
    assert!(routes.contains("default via 169.254.1.1"), "{routes}");

    // A second Calico network connected to the running container: one gateway route only.
    ok(&["network", "connect", &net2, &a]);
    let addrs = ok(&["exec", &a, "ip", "-o", "addr"]);
    assert!(addrs.contains("10.78."), "{addrs}");
    assert_eq!(endpoints(ds.as_ref()).len(), 3);
    ok(&["network", "disconnect", &net2, &a]);
    assert!(eventually(Duration::from_secs(5), || endpoints(
        ds.as_ref()
    )
    .len()
        == 2));

    // The plugin restarts: running containers keep flowing, new ones still work.
    if let Some(mut p) = clean.plugin.take() {
        let _ = p.kill();
        let _ = p.wait();
    }
    clean.plugin = Some(start_plugin(&driver, &db));
    wait_for(&socket);
    assert!(docker(&["exec", &a, "ping", "-c", "1", "-W", "2", "10.77.0.50"]).0);
    let c = format!("c-{id}");
    clean.containers.push(c.clone());
    ok(&[
        "run",
        "-d",
        "--name",
        &c,
        "--network",
        &net1,
        &img,
        "sleep",
        "600",
    ]);
    assert!(eventually(Duration::from_secs(10), || endpoints(
        ds.as_ref()
    )
    .len()
        == 3));

    // docker rm -f: no veth, endpoint or address left.
    let veths: Vec<String> = endpoints(ds.as_ref())
        .iter()
        .filter_map(|e| e["spec"]["interfaceName"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(veths.len(), 3);
    assert!(veths.iter().all(|v| cali_links().contains(v)), "{veths:?}");
    for x in [&a, &b, &c] {
        ok(&["rm", "-f", x]);
    }
    assert!(
        eventually(Duration::from_secs(10), || endpoints(ds.as_ref())
            .is_empty()
            && allocated(ds.as_ref()) == 0),
        "endpoints {:?}, {} addresses",
        endpoints(ds.as_ref()),
        allocated(ds.as_ref())
    );
    let left: Vec<String> = cali_links()
        .into_iter()
        .filter(|l| veths.contains(l))
        .collect();
    assert!(left.is_empty(), "veths left behind: {left:?}");
    ok(&["network", "rm", &net1, &net2]);
    clean.networks.clear();
}
