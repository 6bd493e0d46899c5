//! The real `calico` binary with the real `calico-ipam` binary, a real embedded datastore in a
//! temporary directory, and real network namespaces: each test moves its own thread into a
//! fresh "host" namespace (so nothing touches the machine's), and creates a "container"
//! namespace beside it. Without the privilege to create namespaces, or without an external
//! program a test drives (portmap, iptables, podman, runc), the tests say why and skip; under
//! `CI=true` they fail instead.

use calico_cni_common::testing::{PluginOutput, run_plugin};
use calico_netlink::testing::enter_fresh_netns;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, Kind, WriteOp};
use calico_netlink::real::{NetlinkSocket, NetnsFile, ProcSysctl};
use calico_netlink::{CALICO_GATEWAY_V4, CALICO_HOST_MAC, Netlink, Netns, Route, Sysctl, VethSpec};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_calico");
/// Where Debian's containernetworking-plugins installs the reference plugins (portmap).
const SYSTEM_CNI_DIR: &str = "/usr/lib/cni";

/// The directory holding `calico` and `calico-ipam` (the CNI_PATH of the tests).
fn plugin_dir() -> PathBuf {
    let dir = Path::new(BIN)
        .parent()
        .expect("binary directory")
        .to_owned();
    assert!(
        dir.join("calico-ipam").is_file(),
        "calico-ipam is not built next to {BIN}: build the workspace first \
         (cargo build -p calico-ipam-plugin -p calico-cni)"
    );
    dir
}

/// The test host: a fresh namespace with an uplink and a default route (proxy ARP answers
/// only when the target is reachable through another interface), a datastore with a pool.
struct Host {
    dir: tempfile::TempDir,
    nl: NetlinkSocket,
}

fn new_netns() -> NetnsFile {
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        NetnsFile::current().unwrap()
    })
    .join()
    .unwrap()
}

/// A path another process can open the namespace by.
fn ns_path(ns: &NetnsFile) -> String {
    let fd: BorrowedFd<'_> = ns.fd();
    format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd())
}

impl Host {
    fn new(test: &str) -> Option<Self> {
        if !enter_fresh_netns(test) {
            return None;
        }
        let mut nl = NetlinkSocket::new().unwrap();
        nl.set_link_up("lo").unwrap();
        nl.create_veth(
            &VethSpec {
                name: "up0".into(),
                peer_name: "up1".into(),
                mtu: 1500,
                mac: None,
            },
            None,
        )
        .unwrap();
        nl.set_link_up("up0").unwrap();
        nl.set_link_up("up1").unwrap();
        nl.add_address("up0", "192.0.2.1".parse().unwrap(), 24)
            .unwrap();
        nl.add_route(&Route::default_via_onlink(
            "192.0.2.254".parse().unwrap(),
            "up0",
        ))
        .unwrap();
        let h = Self {
            dir: tempfile::tempdir().unwrap(),
            nl,
        };
        h.put(
            Kind::Node,
            "host1",
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
            "metadata": {"name": "host1"}, "spec": {}}),
        );
        Some(h)
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("calico.db")
    }

    fn ds(&self) -> SqliteDatastore {
        SqliteDatastore::open(&self.db()).unwrap()
    }

    fn put(&self, kind: Kind, name: &str, value: Value) {
        self.ds()
            .write_batch(vec![WriteOp::Upsert {
                key: Key::global(kind, name),
                value,
            }])
            .unwrap();
    }

    fn pool(&self, cidr: &str) {
        self.put(
            Kind::IpPool,
            "pool1",
            json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": "pool1"}, "spec": {"cidr": cidr, "blockSize": 26}}),
        );
    }

    fn conf(&self) -> Value {
        json!({"cniVersion": "1.0.0", "name": "calico", "type": "calico",
               "nodename": "host1", "datastore_type": "embedded",
               "datastore_path": self.db(), "ipam": {"type": "calico-ipam"}})
    }

    fn run(&self, command: &str, container: &str, netns: &str, conf: &Value) -> PluginOutput {
        self.run_env(command, container, netns, conf, &[])
    }

    fn run_env(
        &self,
        command: &str,
        container: &str,
        netns: &str,
        conf: &Value,
        extra: &[(&str, &str)],
    ) -> PluginOutput {
        exec_plugin(Path::new(BIN), command, container, netns, conf, extra)
    }

    /// Whether calico-ipam still holds addresses for `container`.
    fn ipam_holds(&self, container: &str) -> bool {
        let mut conf = self.conf();
        conf["prevResult"] = json!({"cniVersion": "1.0.0", "ips": []});
        let mut child = Command::new(plugin_dir().join("calico-ipam"))
            .env_clear()
            .env("CNI_COMMAND", "CHECK")
            .env("CNI_CONTAINERID", container)
            .env("CNI_IFNAME", "eth0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().status.success()
    }

    fn weps(&self) -> Vec<Value> {
        self.ds()
            .list(Kind::WorkloadEndpoint, None)
            .unwrap()
            .items
            .into_iter()
            .map(|kv| kv.value)
            .collect()
    }

    /// A client namespace on its own link to the host (198.51.100.2 -> host 198.51.100.1),
    /// with the host forwarding between its interfaces as a Calico node does: what reaches a
    /// host port from outside.
    fn client(&mut self) -> NetnsFile {
        ProcSysctl.set("net/ipv4/conf/all/forwarding", "1").unwrap();
        let client = new_netns();
        self.nl
            .create_veth(
                &VethSpec {
                    name: "cl0".into(),
                    peer_name: "eth0".into(),
                    mtu: 1500,
                    mac: None,
                },
                Some(calico_netlink::Netns::fd(&client)),
            )
            .unwrap();
        self.nl
            .add_address("cl0", "198.51.100.1".parse().unwrap(), 24)
            .unwrap();
        self.nl.set_link_up("cl0").unwrap();
        let mut cl = NetlinkSocket::new_in(&client).unwrap();
        cl.set_link_up("lo").unwrap();
        cl.add_address("eth0", "198.51.100.2".parse().unwrap(), 24)
            .unwrap();
        cl.set_link_up("eth0").unwrap();
        cl.add_route(&Route::default_via_onlink(
            "198.51.100.1".parse().unwrap(),
            "eth0",
        ))
        .unwrap();
        client
    }

    /// Routes left to workload addresses.
    fn pod_routes(&mut self) -> usize {
        self.nl
            .routes()
            .unwrap()
            .iter()
            .filter(|r| r.dst.to_string().starts_with("10.65."))
            .count()
    }
}

/// Run the plugin at `bin` as a CNI runtime does: the CNI variables (PATH kept, for plugins
/// such as portmap that run iptables), `conf` on stdin.
/// The command a runtime runs for a CNI `command` on `container` in `netns`.
fn plugin_command(bin: &Path, command: &str, container: &str, netns: &str) -> Command {
    let cni_path = std::env::join_paths([plugin_dir(), PathBuf::from(SYSTEM_CNI_DIR)]).unwrap();
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_path);
    cmd
}

fn exec_plugin(
    bin: &Path,
    command: &str,
    container: &str,
    netns: &str,
    conf: &Value,
    extra: &[(&str, &str)],
) -> PluginOutput {
    let mut cmd = plugin_command(bin, command, container, netns);
    cmd.envs(extra.iter().copied());
    run_plugin(&mut cmd, &conf.to_string())
}

fn ping(ip: &str) -> bool {
    assert!(
        Command::new("busybox")
            .arg("true")
            .status()
            .is_ok_and(|s| s.success()),
        "busybox is needed for ping: apt-get install -y busybox-static"
    );
    Command::new("busybox")
        .args(["ping", "-c", "1", "-W", "2", ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn add_check_del_with_labels_ping_and_cleanup() {
    let Some(mut h) = Host::new("add_check_del") else {
        return;
    };
    h.pool("10.65.0.0/16");
    let cont = new_netns();
    let path = ns_path(&cont);
    let long = "v".repeat(70);
    let mut conf = h.conf();
    conf["calico_veth_mtu"] = json!(1400);
    conf["args"] = json!({"org.apache.mesos": {"network_info": {"name": "calico", "labels": {"labels": [
        {"key": "app", "value": "web server"},
        {"key": "projectcalico.org/namespace", "value": "team-a"},
        {"key": "long", "value": long},
    ]}}}});
    conf["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let res = h.run("ADD", "ctr-1", &path, &conf).ok().json();
    assert_eq!(res["cniVersion"], "1.0.0");
    let addr = res["ips"][0]["address"].as_str().unwrap().to_owned();
    assert!(addr.starts_with("10.65.") && addr.ends_with("/32"), "{res}");
    let ip: IpAddr = addr.trim_end_matches("/32").parse().unwrap();
    let veth = calico_cni::labels::veth_name("team-a", "ctr-1");
    assert_eq!(res["interfaces"][0]["name"], veth.as_str());

    // Host side.
    let hl = h.nl.link(&veth).unwrap().expect("host veth");
    assert_eq!(
        (hl.mtu, hl.up, hl.mac.as_slice()),
        (1400, true, &CALICO_HOST_MAC[..])
    );
    assert!(
        h.nl.routes()
            .unwrap()
            .iter()
            .any(|r| r.dst == ip && r.prefix_len == 32 && r.oif == hl.index)
    );
    assert_eq!(
        ProcSysctl
            .get(&format!("net/ipv4/conf/{veth}/proxy_arp"))
            .unwrap(),
        "1"
    );
    // Container side.
    let mut c = NetlinkSocket::new_in(&cont).unwrap();
    let cl = c.link("eth0").unwrap().expect("container eth0");
    assert_eq!(cl.mtu, 1400);
    assert!(c.addresses("eth0").unwrap().contains(&(ip, 32)));
    assert!(
        c.routes()
            .unwrap()
            .iter()
            .any(|r| r.prefix_len == 0 && r.gateway == Some(CALICO_GATEWAY_V4))
    );
    assert!(
        c.neighbours("eth0")
            .unwrap()
            .iter()
            .any(|n| n.ip == CALICO_GATEWAY_V4 && n.permanent)
    );
    // The endpoint.
    let weps = h.weps();
    assert_eq!(weps.len(), 1);
    let w = &weps[0];
    assert_eq!(w["metadata"]["name"], "host1-mesos-ctr--1-eth0");
    assert_eq!(w["metadata"]["namespace"], "team-a");
    let labels = &w["metadata"]["labels"];
    assert_eq!(labels["app"], "web-server");
    assert_eq!(labels["projectcalico.org/namespace"], "team-a");
    assert_eq!(labels["projectcalico.org/orchestrator"], "mesos");
    assert_eq!(labels["long"].as_str().unwrap().len(), 63);
    assert!(labels["long"].as_str().unwrap().ends_with(&"v".repeat(53)));
    let spec = &w["spec"];
    assert_eq!(
        (spec["orchestrator"].as_str(), spec["workload"].as_str()),
        (Some("mesos"), Some("ctr-1"))
    );
    assert_eq!(spec["interfaceName"], veth.as_str());
    assert_eq!(spec["ipNetworks"], json!([addr]));
    assert_eq!(spec["profiles"], json!(["calico"]));
    assert_eq!(spec["ports"][0]["hostPort"], 8080);
    assert_eq!(spec["mac"], calico_netlink::format_mac(&cl.mac));

    assert!(
        ping(&ip.to_string()),
        "host cannot ping the container at {ip}"
    );

    let mut check = conf.clone();
    check["prevResult"] = res.clone();
    h.run("CHECK", "ctr-1", &path, &check).ok();

    h.run("DEL", "ctr-1", &path, &check).ok();
    assert!(h.nl.link(&veth).unwrap().is_none());
    assert!(c.link("eth0").unwrap().is_none());
    assert!(!h.nl.routes().unwrap().iter().any(|r| r.dst == ip));
    assert!(h.weps().is_empty());
    assert!(!h.ipam_holds("ctr-1"));
    assert_eq!(h.run("CHECK", "ctr-1", &path, &check).err_code(), 3);
    h.run("DEL", "ctr-1", &path, &check).ok();
    h.run("DEL", "ctr-1", "", &check).ok();
    assert_eq!(h.pod_routes(), 0);
}

#[test]
fn failed_add_leaves_nothing() {
    let Some(mut h) = Host::new("failed_add") else {
        return;
    };
    let cont = new_netns();
    let path = ns_path(&cont);
    // No pool: IPAM fails first, its code is passed on.
    assert_eq!(h.run("ADD", "ctr-2", &path, &h.conf()).err_code(), 100);
    h.pool("10.65.0.0/16");
    // The container already has an eth0: the veth cannot be made after IPAM assigned.
    let mut c = NetlinkSocket::new_in(&cont).unwrap();
    c.create_veth(
        &VethSpec {
            name: "eth0".into(),
            peer_name: "x0".into(),
            mtu: 1500,
            mac: None,
        },
        None,
    )
    .unwrap();
    let out = h.run("ADD", "ctr-2", &path, &h.conf());
    assert_eq!(out.err_code(), 101, "{}", out.stdout);
    assert!(!h.ipam_holds("ctr-2"), "the address was not released");
    assert!(
        h.nl.link(&calico_cni::labels::veth_name("default", "ctr-2"))
            .unwrap()
            .is_none()
    );
    assert!(h.weps().is_empty());
    // A namespace that vanished: nothing is assigned.
    let out = h.run("ADD", "ctr-3", "/proc/self/fd/999999", &h.conf());
    assert_eq!(out.err_code(), 4);
    assert!(!h.ipam_holds("ctr-3"));
    assert_eq!(h.pod_routes(), 0);
}

#[test]
fn bad_input_codes_status_version_gc() {
    let Some(h) = Host::new("bad_input") else {
        return;
    };
    h.pool("10.65.0.0/16");
    let cont = new_netns();
    let path = ns_path(&cont);
    let raw = |cmd: &str, stdin: &str| {
        run_plugin(
            Command::new(BIN)
                .env_clear()
                .env("CNI_COMMAND", cmd)
                .env("CNI_CONTAINERID", "c")
                .env("CNI_NETNS", &path)
                .env("CNI_PATH", plugin_dir()),
            stdin,
        )
    };
    assert_eq!(raw("ADD", "{oops").err_code(), 6);
    let mut v = h.conf();
    v["cniVersion"] = json!("7.0.0");
    assert_eq!(raw("ADD", &v.to_string()).err_code(), 1);
    let ver = raw("VERSION", r#"{"cniVersion":"1.1.0"}"#).ok().json();
    assert_eq!(
        ver["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    assert_eq!(h.run("ADD", "c", "", &h.conf()).err_code(), 4);

    let mut down = h.conf();
    // A datastore that cannot be reached: its directory is a regular file.
    let blocker = h.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    down["datastore_path"] = json!(blocker.join("calico.db"));
    assert_eq!(h.run("ADD", "c", &path, &down).err_code(), 11);
    down["cniVersion"] = json!("1.1.0");
    assert_eq!(h.run("STATUS", "", "", &down).err_code(), 50);
    let mut v11 = h.conf();
    v11["cniVersion"] = json!("1.1.0");
    h.run("STATUS", "", "", &v11).ok();

    // GC keeps the valid attachment and removes the other.
    let c2 = new_netns();
    let p2 = ns_path(&c2);
    let r0 = h.run("ADD", "keep", &path, &v11).ok().json();
    assert_eq!(r0["cniVersion"], "1.1.0");
    h.run("ADD", "stale", &p2, &v11).ok();
    assert_eq!(h.weps().len(), 2);
    let mut gc = v11.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    h.run("GC", "", "", &gc).ok();
    let left = h.weps();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["spec"]["workload"], "keep");
    assert!(!h.ipam_holds("stale") && h.ipam_holds("keep"));
    let mut nl = NetlinkSocket::new().unwrap();
    assert!(
        nl.link(&calico_cni::labels::veth_name("default", "stale"))
            .unwrap()
            .is_none()
    );

    // A static address from CNI_ARGS.
    let c4 = new_netns();
    let r = h
        .run_env(
            "ADD",
            "static",
            &ns_path(&c4),
            &h.conf(),
            &[("CNI_ARGS", "IgnoreUnknown=1;IP=10.65.200.7")],
        )
        .ok()
        .json();
    assert_eq!(r["ips"][0]["address"], "10.65.200.7/32");

    // Older result versions.
    let mut v04 = h.conf();
    v04["cniVersion"] = json!("0.4.0");
    let c3 = new_netns();
    let r = h.run("ADD", "old", &ns_path(&c3), &v04).ok().json();
    assert_eq!(r["ips"][0]["version"], "4");
}

/// Whether the external program `path` (from Debian `package`) is installed: when it is not,
/// the test says so and skips, and under `CI=true` fails.
fn have(test: &str, path: &str, package: &str) -> bool {
    if Path::new(path).is_file() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {path} is missing; scripts/setup-debian.sh installs {package}"
    );
    eprintln!("SKIPPED {test}: {path} is missing (apt-get install -y {package})");
    false
}

/// `args` run inside the namespace at `ns` (nsenter: the tests forbid unsafe `pre_exec`).
fn in_netns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={ns}")).args(args);
    c
}

/// A body fetched over HTTP from inside the namespace at `ns`; `None` when the fetch fails.
/// (busybox 1.35's `wget -T` crashes, hence `timeout`.)
fn fetch(ns: &str, url: &str) -> Option<String> {
    let out = in_netns(
        ns,
        &["timeout", "3", "busybox", "wget", "-q", "-O", "-", url],
    )
    .stderr(Stdio::null())
    .output()
    .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// [`fetch`], retried for up to 5 s while a server starts listening.
fn fetch_when_up(ns: &str, url: &str) -> Option<String> {
    (0..25).find_map(|_| {
        fetch(ns, url).or_else(|| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            None
        })
    })
}

/// A process a test started (an HTTP server in a namespace): killed and reaped on drop.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        if let Err(e) = self.0.kill() {
            eprintln!("stopping background process {}: {e}", self.0.id());
        }
        let _ = self.0.wait();
    }
}

/// A network configuration list run as libcni runs one: ADD through the plugins in order,
/// each given the list's `name` and `cniVersion`, the `runtimeConfig` entries its
/// `capabilities` ask for and the previous plugin's result as `prevResult`; DEL and CHECK in
/// reverse order with the list's final ADD result.
struct NetList {
    list: Value,
    runtime_config: Value,
}

impl NetList {
    fn plugin_conf(&self, plugin: &Value, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = self.list["name"].clone();
        conf["cniVersion"] = self.list["cniVersion"].clone();
        let mut rc = serde_json::Map::new();
        if let Some(caps) = plugin["capabilities"].as_object() {
            for (cap, on) in caps {
                if on == &json!(true)
                    && let Some(v) = self.runtime_config.get(cap)
                {
                    rc.insert(cap.clone(), v.clone());
                }
            }
        }
        if !rc.is_empty() {
            conf["runtimeConfig"] = Value::Object(rc);
        }
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    fn plugins(&self) -> Vec<Value> {
        self.list["plugins"].as_array().unwrap().clone()
    }

    fn binary(plugin: &Value) -> PathBuf {
        let name = plugin["type"].as_str().unwrap();
        [plugin_dir(), PathBuf::from(SYSTEM_CNI_DIR)]
            .iter()
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("plugin {name} is in neither CNI directory"))
    }

    fn add(&self, container: &str, netns: &str) -> Value {
        let mut prev: Option<Value> = None;
        for p in self.plugins() {
            let conf = self.plugin_conf(&p, prev.as_ref());
            let out = exec_plugin(&Self::binary(&p), "ADD", container, netns, &conf, &[]);
            assert_eq!(
                out.code, 0,
                "{} ADD: {} {}",
                p["type"], out.stdout, out.stderr
            );
            prev = Some(out.json());
        }
        prev.expect("the list has plugins")
    }

    /// Every plugin's CHECK or DEL; the failures, all of them.
    fn each_reversed(
        &self,
        command: &str,
        container: &str,
        netns: &str,
        result: &Value,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        for p in self.plugins().iter().rev() {
            let conf = self.plugin_conf(p, Some(result));
            let out = exec_plugin(&Self::binary(p), command, container, netns, &conf, &[]);
            if out.code != 0 {
                failures.push(format!(
                    "{} {command}: {} {}",
                    p["type"], out.stdout, out.stderr
                ));
            }
        }
        failures
    }
}

/// The host's iptables NAT rules mentioning `needle`.
fn nat_rules_with(needle: &str) -> Vec<String> {
    let out = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S"])
        .output()
        .unwrap();
    assert!(out.status.success(), "iptables -t nat -S: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn conflist_with_portmap_serves_the_host_port() {
    const TEST: &str = "conflist_with_portmap";
    if !have(TEST, "/usr/lib/cni/portmap", "containernetworking-plugins")
        || !have(TEST, "/usr/sbin/iptables", "iptables")
        || !have(TEST, "/usr/bin/nsenter", "util-linux")
    {
        return;
    }
    let Some(mut h) = Host::new(TEST) else {
        return;
    };
    h.pool("10.65.0.0/16");
    let client = h.client();
    let client_path = ns_path(&client);
    let mut calico = h.conf();
    calico["capabilities"] = json!({"portMappings": true});
    for k in ["name", "cniVersion"] {
        calico.as_object_mut().unwrap().remove(k);
    }
    let net = NetList {
        list: json!({"cniVersion": "1.0.0", "name": "calico", "plugins": [
            calico,
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
        ]}),
        runtime_config: json!({"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        ]}),
    };
    let cont = new_netns();
    let path = ns_path(&cont);
    let result = net.add("web-1", &path);
    // portmap passes calico's result on: the address on the sandbox interface it mapped to.
    assert_eq!(
        result["interfaces"][1]["sandbox"],
        path.as_str(),
        "{result}"
    );
    let addr = result["ips"][0]["address"].as_str().unwrap();
    let ip = addr.trim_end_matches("/32").to_owned();
    assert_eq!(result["ips"][0]["interface"], 1, "{result}");
    let dnat = nat_rules_with(&format!("--to-destination {ip}:80"));
    assert_eq!(dnat.len(), 1, "portmap's DNAT rule for {ip}:80: {dnat:?}");
    assert_eq!(h.weps()[0]["spec"]["ports"][0]["hostPort"], 8080);

    let www = h.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from web-1\n").unwrap();
    let _httpd = Background(
        in_netns(
            &path,
            &[
                "busybox",
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
                www.to_str().unwrap(),
            ],
        )
        .spawn()
        .unwrap(),
    );
    let url = "http://198.51.100.1:8080/";
    let body = fetch_when_up(&client_path, url);
    assert_eq!(
        body.as_deref(),
        Some("hello from web-1"),
        "no answer on host port 8080 from the client namespace"
    );
    // CHECK with the list's final result, calico only: portmap 1.1.1's CHECK also looks for
    // ip6tables rules an IPv4-only container never gets (containernetworking/plugins#819).
    let calico_check = net.plugin_conf(&net.plugins()[0], Some(&result));
    h.run("CHECK", "web-1", &path, &calico_check).ok();

    let failures = net.each_reversed("DEL", "web-1", &path, &result);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        nat_rules_with(&ip),
        Vec::<String>::new(),
        "mapping left behind"
    );
    assert_eq!(
        fetch(&client_path, url),
        None,
        "host port 8080 still answers"
    );
    assert!(h.weps().is_empty());
    assert!(!h.ipam_holds("web-1"));
    assert_eq!(h.pod_routes(), 0);
    // DEL again is fine for both plugins.
    let failures = net.each_reversed("DEL", "web-1", &path, &result);
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn static_address_from_cni_args() {
    let Some(mut h) = Host::new("static_address") else {
        return;
    };
    h.pool("10.65.0.0/16");
    let args = [("CNI_ARGS", "IgnoreUnknown=1;IP=10.65.3.9")];
    let c1 = new_netns();
    let p1 = ns_path(&c1);
    let r = h.run_env("ADD", "fixed", &p1, &h.conf(), &args).ok().json();
    assert_eq!(r["ips"][0]["address"], "10.65.3.9/32");
    let mut c = NetlinkSocket::new_in(&c1).unwrap();
    assert!(
        c.addresses("eth0")
            .unwrap()
            .contains(&("10.65.3.9".parse().unwrap(), 32))
    );
    assert_eq!(h.weps()[0]["spec"]["ipNetworks"], json!(["10.65.3.9/32"]));
    assert!(ping("10.65.3.9"), "host cannot ping the static address");

    // Taken, outside every pool, not an address: refused, nothing left behind.
    let c2 = new_netns();
    let p2 = ns_path(&c2);
    for (cni_args, code) in [
        ("IP=10.65.3.9", 101),
        ("IP=192.168.77.1", 101),
        ("IP=10.65.3", 7),
        ("IP", 4),
    ] {
        let out = h.run_env("ADD", "other", &p2, &h.conf(), &[("CNI_ARGS", cni_args)]);
        assert_eq!(out.err_code(), code, "CNI_ARGS {cni_args}: {}", out.stdout);
        assert!(!h.ipam_holds("other"), "CNI_ARGS {cni_args}");
        assert_eq!(h.weps().len(), 1, "CNI_ARGS {cni_args}");
        assert!(
            NetlinkSocket::new_in(&c2)
                .unwrap()
                .link("eth0")
                .unwrap()
                .is_none()
        );
    }

    // DEL frees the address for the next container.
    h.run_env("DEL", "fixed", &p1, &h.conf(), &args).ok();
    assert!(!h.ipam_holds("fixed"));
    let r = h.run_env("ADD", "other", &p2, &h.conf(), &args).ok().json();
    assert_eq!(r["ips"][0]["address"], "10.65.3.9/32");
    h.run_env("DEL", "other", &p2, &h.conf(), &args).ok();
    assert_eq!(h.pod_routes(), 0);
}

/// podman (Debian's, CNI backend, runc) with its state in one temporary directory.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn cmd(&self, args: &[&str]) -> Command {
        let d = |p: &str| self.dir.join(p).to_str().unwrap().to_owned();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d("containers.conf"))
            .args(["--root", &d("storage"), "--runroot", &d("runroot")])
            .args(["--storage-driver", "vfs"])
            .args(args);
        c
    }

    /// stdout of a podman command that must succeed.
    fn run(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "podman {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Podman {
    /// Best effort: every container goes (and with it its namespace and CNI attachment).
    fn drop(&mut self) {
        match self.cmd(&["rm", "-af", "-t", "0"]).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("podman rm -af: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("podman rm -af: {e}"),
        }
    }
}

#[test]
fn podman_runs_a_container_on_the_calico_network() {
    const TEST: &str = "podman";
    if !have(TEST, "/usr/bin/podman", "podman")
        || !have(TEST, "/usr/sbin/runc", "runc")
        || !have(TEST, "/usr/lib/cni/portmap", "containernetworking-plugins")
        || !have(TEST, "/bin/busybox", "busybox-static")
        || !have(TEST, "/usr/bin/nsenter", "util-linux")
    {
        return;
    }
    let Some(mut h) = Host::new(TEST) else {
        return;
    };
    h.pool("10.65.0.0/16");
    let client = h.client();
    let client_path = ns_path(&client);
    let host_ns = NetnsFile::current().unwrap();
    let host_path = ns_path(&host_ns);
    let w = h.dir.path().to_owned();
    let bin = w.join("cni-bin");
    std::fs::create_dir(&bin).unwrap();
    for (name, dir) in [
        ("calico", plugin_dir()),
        ("calico-ipam", plugin_dir()),
        ("portmap", PathBuf::from(SYSTEM_CNI_DIR)),
    ] {
        std::os::unix::fs::symlink(dir.join(name), bin.join(name)).unwrap();
    }
    std::fs::create_dir(w.join("net.d")).unwrap();
    std::fs::write(
        w.join("containers.conf"),
        format!(
            r#"[containers]
netns = "private"
# The sandbox's hard limits are below podman's defaults; runc refuses to raise them.
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{w}/events.log"
# crun fails in this sandbox; runc works.
runtime = "runc"
[network]
network_backend = "cni"
cni_plugin_dirs = ["{w}/cni-bin"]
network_config_dir = "{w}/net.d"
default_network = "calico"
"#,
            w = w.display()
        ),
    )
    .unwrap();
    let mut calico = h.conf();
    calico["capabilities"] = json!({"portMappings": true});
    calico["mtu"] = json!(1450);
    for k in ["name", "cniVersion"] {
        calico.as_object_mut().unwrap().remove(k);
    }
    let list = json!({"cniVersion": "1.0.0", "name": "calico", "plugins": [
        calico, {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}]});
    std::fs::write(w.join("net.d/calico.conflist"), list.to_string()).unwrap();

    // The image: busybox-static and a web page, imported from a tarball (no registry).
    let rootfs = w.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("www")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "ip", "httpd"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(rootfs.join("www/index.html"), "hello from podman\n").unwrap();
    let tarball = w.join("busybox.tar");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success(), "tar of the image root");
    let podman = Podman { dir: w.clone() };
    podman.run(&[
        "import",
        tarball.to_str().unwrap(),
        "localhost/calico-test-busybox:1",
    ]);

    let id = podman.run(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "calico",
        "-p",
        "8080:80",
        "localhost/calico-test-busybox:1",
        "/bin/httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let addr = podman.run(&["exec", "web", "/bin/ip", "-4", "-o", "addr", "show", "eth0"]);
    let ip = addr
        .split_whitespace()
        .find_map(|f| f.strip_suffix("/32"))
        .unwrap_or_else(|| panic!("no /32 address on the container's eth0: {addr}"))
        .to_owned();
    assert!(ip.starts_with("10.65."), "{ip} is not from the pool");
    let mtu = podman.run(&["exec", "web", "/bin/ip", "-o", "link", "show", "eth0"]);
    assert!(mtu.contains(" mtu 1450 "), "{mtu}");
    let routes = podman.run(&["exec", "web", "/bin/ip", "route"]);
    assert!(routes.contains("default via 169.254.1.1"), "{routes}");

    let weps = h.weps();
    assert_eq!(weps.len(), 1, "{weps:?}");
    assert_eq!(weps[0]["spec"]["ipNetworks"], json!([format!("{ip}/32")]));
    assert_eq!(weps[0]["spec"]["orchestrator"], "mesos");
    assert_eq!(weps[0]["spec"]["containerID"], id.as_str());
    assert_eq!(weps[0]["spec"]["ports"][0]["hostPort"], 8080);
    assert!(h.ipam_holds(&id));
    assert!(ping(&ip), "host cannot ping the container at {ip}");
    assert_eq!(
        fetch_when_up(&host_path, &format!("http://{ip}/")).as_deref(),
        Some("hello from podman"),
        "the host cannot fetch from the container: podman ps: {} logs: {:?}",
        podman.run(&["ps", "-a"]),
        podman.cmd(&["logs", "web"]).output().map(|o| o.stderr)
    );
    assert_eq!(
        fetch(&client_path, "http://198.51.100.1:8080/").as_deref(),
        Some("hello from podman"),
        "host port 8080 does not answer from the client namespace"
    );

    podman.run(&["rm", "-f", "-t", "0", "web"]);
    let veth = calico_cni::labels::veth_name("default", &id);
    assert!(h.nl.link(&veth).unwrap().is_none(), "{veth} left behind");
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains(": cali"), "veths left behind: {links}");
    assert!(h.weps().is_empty(), "endpoint left behind");
    assert!(!h.ipam_holds(&id), "address still allocated");
    assert_eq!(h.pod_routes(), 0);
    assert_eq!(
        nat_rules_with(&ip),
        Vec::<String>::new(),
        "port mapping left behind"
    );
}

#[test]
fn a_container_gone_without_del_is_reclaimed_and_nothing_live_is_touched() {
    let Some(mut h) = Host::new("gone_without_del") else {
        return;
    };
    h.pool("10.65.0.0/16");
    let (live, gone) = (new_netns(), new_netns());
    h.run("ADD", "ctr-live", &ns_path(&live), &h.conf()).ok();
    h.run("ADD", "ctr-gone", &ns_path(&gone), &h.conf()).ok();
    // The runtime died with the container: its interface is gone, and DEL never comes.
    assert!(
        h.nl.delete_link(&calico_cni::labels::veth_name("default", "ctr-gone"))
            .unwrap()
    );
    let ds = h.ds();
    let grace = std::time::Duration::from_secs(60);
    let t0 = std::time::Instant::now();
    let mut stale = calico_node::stale::StaleEndpoints::new(grace);
    let mut leaks = calico_ipam::check::Collector::new(grace);
    // Within the grace period: seen, nothing removed.
    let pass = stale.run_once(&ds, "host1", &host_links(), t0).unwrap();
    assert_eq!(pass.stale.len(), 1);
    assert!(pass.removed.is_empty());
    assert_eq!(h.weps().len(), 2);
    // After it: the endpoint goes, then its address, after the collector's own grace period.
    let pass = stale
        .run_once(&ds, "host1", &host_links(), t0 + grace)
        .unwrap();
    assert_eq!(pass.removed.len(), 1);
    assert!(
        h.ipam_holds("ctr-gone"),
        "the address waits for the leak collector"
    );
    leaks.run_once(&ds, t0 + grace).unwrap();
    let released = leaks.run_once(&ds, t0 + grace * 2).unwrap().released;
    assert_eq!(released.len(), 1);
    assert!(!h.ipam_holds("ctr-gone"));
    // The live container keeps its endpoint and address; IPAM is consistent.
    assert!(h.ipam_holds("ctr-live"));
    let weps = h.weps();
    assert_eq!(weps.len(), 1);
    assert_eq!(weps[0]["spec"]["containerID"], "ctr-live");
    assert_eq!(calico_ipam::check::check(&ds).unwrap().problems(), 0);
}

#[test]
fn adds_killed_at_every_point_with_or_without_del_are_all_reclaimed() {
    let Some(h) = Host::new("killed_adds") else {
        return;
    };
    h.pool("10.65.0.0/16");
    let live: Vec<NetnsFile> = (0..3).map(|_| new_netns()).collect();
    for (i, ns) in live.iter().enumerate() {
        h.run("ADD", &format!("live-{i}"), &ns_path(ns), &h.conf())
            .ok();
    }
    // One ADD killed after 0, 1, 2, ... ms: every point of its work, from before IPAM to
    // after the endpoint is written. Mostly the runtime dies too: no DEL, and the container's
    // namespace (with its end of the veth) goes away.
    let conf = h.conf().to_string();
    for k in 0..40u64 {
        let ns = new_netns();
        let mut child =
            plugin_command(Path::new(BIN), "ADD", &format!("killed-{k}"), &ns_path(&ns))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
        let _ = child.stdin.take().unwrap().write_all(conf.as_bytes());
        std::thread::sleep(std::time::Duration::from_millis(k));
        let _ = child.kill();
        let _ = child.wait();
        // Every third one, the runtime lives on and sends DEL, which cleans up at once.
        if k % 3 == 0 {
            h.run("DEL", &format!("killed-{k}"), &ns_path(&ns), &h.conf())
                .ok();
        }
        drop(ns);
    }
    // An orphaned calico-ipam may still be finishing; the namespaces' veths go asynchronously.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let ds = h.ds();
    let grace = std::time::Duration::from_secs(60);
    let t0 = std::time::Instant::now();
    let mut stale = calico_node::stale::StaleEndpoints::new(grace);
    let mut leaks = calico_ipam::check::Collector::new(grace);
    // The test is only as good as what the kills left: addresses without endpoints, and
    // endpoints without interfaces.
    let left = calico_ipam::check::check(&ds).unwrap();
    let first = stale.run_once(&ds, "host1", &host_links(), t0).unwrap();
    eprintln!(
        "left by the killed ADDs: {} leaked addresses, {} endpoints without interface",
        left.leaked.len(),
        first.stale.len()
    );
    assert!(!left.leaked.is_empty() || !first.stale.is_empty());
    leaks.run_once(&ds, t0).unwrap();
    stale
        .run_once(&ds, "host1", &host_links(), t0 + grace)
        .unwrap();
    leaks.run_once(&ds, t0 + grace).unwrap();
    leaks.run_once(&ds, t0 + grace * 2).unwrap();
    // Nothing of the killed ADDs is left; the live containers are untouched.
    let report = calico_ipam::check::check(&ds).unwrap();
    assert_eq!(report.problems(), 0, "{report:?}");
    let weps: Vec<String> = h
        .weps()
        .iter()
        .map(|w| {
            w["spec"]["containerID"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(weps.len(), 3, "{weps:?}");
    assert!(weps.iter().all(|c| c.starts_with("live-")), "{weps:?}");
    for i in 0..3 {
        assert!(h.ipam_holds(&format!("live-{i}")));
    }
    for k in 0..40 {
        assert!(
            !h.ipam_holds(&format!("killed-{k}")),
            "killed-{k} still holds an address"
        );
    }
    assert_eq!(
        report.allocations.len(),
        3,
        "only the live containers' addresses"
    );
}

/// The interfaces of the test's host namespace now (what calico-node's collector looks at).
fn host_links() -> std::collections::BTreeSet<String> {
    NetlinkSocket::new()
        .unwrap()
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect()
}
