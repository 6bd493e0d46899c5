//! A Calico cluster on one machine: hosts are network namespaces on an
//! underlay bridge, each running the real `calico-node`; Marathon apps'
//! instances are namespaces attached by the real `calico` CNI plugin with
//! Mesos-style arguments, each serving its task id over HTTP on port 80.
//!
//! Every name starts with the lab's prefix, so `down` finds everything it
//! made (namespaces, their links and processes, `/etc/netns` files) and
//! several labs can coexist.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub mod demo;
pub mod docker;

/// Suffix Marathon's DNS gives container IPs of an app.
pub const DNS_SUFFIX: &str = "marathon.containerip.dcos.thisdcos.directory";

/// A lab host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    /// Node name (`h1`).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Underlay address with prefix.
    pub ip: String,
}

/// One running instance of an app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    /// Task id (`bookstore-server.instance-1`), also the CNI container id.
    pub id: String,
    /// The app (`bookstore-server`).
    pub app: String,
    /// The host it runs on.
    pub host: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address.
    pub ip: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The Mesos container id the CNI plugin was given (the endpoint's workload); for a
    /// Docker task, its container's name.
    pub container_id: String,
    /// A Docker container on its host's dockerd (else a Mesos container through CNI).
    #[serde(default)]
    pub docker: bool,
}

/// What the lab has made, kept in `state.json` in its directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Hosts.
    pub hosts: Vec<Host>,
    /// Tasks.
    pub tasks: Vec<Task>,
    /// Tasks ever started (numbers namespaces).
    pub started: u32,
    /// The etcd client URL when the lab runs on etcd (else the embedded store).
    #[serde(default)]
    pub etcd: Option<String>,
    /// Every host runs dockerd and the Calico Docker plugin.
    #[serde(default)]
    pub docker: bool,
    /// No encapsulation: routes between hosts come from BIRD, configured by
    /// the confd in each calico-node.
    #[serde(default)]
    pub bgp: bool,
    /// Extra environment of every calico-node (e.g. flow-log bounds).
    #[serde(default)]
    pub node_env: Vec<(String, String)>,
}

/// How a lab is set up beyond its host count.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// The datastore is etcd on the underlay (else the embedded file).
    pub etcd: bool,
    /// Every host also runs dockerd and the Calico Docker plugin.
    pub docker: bool,
    /// BGP mode: an unencapsulated pool, BIRD on every host (a full mesh
    /// configured by confd), no VXLAN.
    pub bgp: bool,
    /// Extra environment of every calico-node, e.g. `FELIX_FLOWLOGSMAXRATE`.
    pub node_env: Vec<(String, String)>,
}

/// Where the etcd of a lab listens: the underlay router, reachable from every host.
pub const LAB_ETCD: &str = "http://172.30.0.254:2379";

/// A lab: its prefix, directory and the binaries it runs.
#[derive(Debug, Clone)]
pub struct Lab {
    /// Prefix of every namespace name.
    pub prefix: String,
    /// State, datastore, logs and served files.
    pub dir: PathBuf,
    /// Where `calico-node`, `calico`, `calico-ipam` and `calicoctl` are.
    pub bin: PathBuf,
    /// Print progress.
    pub verbose: bool,
}

/// A Marathon app definition, as much as the lab reads.
#[derive(Debug, Clone, Deserialize)]
pub struct App {
    /// `/bookstore-server`.
    #[serde(rename = "id")]
    pub id: String,
    /// How many tasks.
    #[serde(rename = "instances", default = "one")]
    pub instances: u32,
    /// Networks; the lab joins the one named `calico`.
    #[serde(rename = "networks", default)]
    pub networks: Vec<AppNetwork>,
    /// The containerizer (`MESOS` when absent).
    #[serde(rename = "container", default)]
    pub container: Option<AppContainer>,
}

/// An app's `container`, as much as the lab reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppContainer {
    /// `MESOS` (the CNI plugin) or `DOCKER` (the Docker plugin).
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl App {
    /// Whether Docker runs its tasks.
    pub fn is_docker(&self) -> bool {
        self.container.as_ref().is_some_and(|c| c.kind == "DOCKER")
    }
}

fn one() -> u32 {
    1
}

/// One entry of an app's `networks`.
#[derive(Debug, Clone, Deserialize)]
pub struct AppNetwork {
    /// `container` for a CNI network.
    #[serde(rename = "mode", default)]
    pub mode: String,
    /// The CNI network's name.
    #[serde(rename = "name", default)]
    pub name: String,
    /// Labels Marathon passes to the network (become endpoint labels).
    #[serde(rename = "labels", default)]
    pub labels: BTreeMap<String, String>,
}

/// Runs `cmd`, failing with its command line and standard error.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("ip").args(args))
}

impl Lab {
    pub(crate) fn say(&self, what: impl AsRef<str>) {
        if self.verbose {
            println!("==> {}", what.as_ref());
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The lab's state (empty when it is down).
    pub fn state(&self) -> anyhow::Result<State> {
        match std::fs::read(self.state_path()) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("reading {}", self.state_path().display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.state_path().display())),
        }
    }

    fn save(&self, s: &State) -> anyhow::Result<()> {
        let tmp = self.dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(s)?)?;
        std::fs::rename(&tmp, self.state_path())?;
        Ok(())
    }

    /// The embedded datastore file every process of the lab shares.
    pub fn datastore(&self) -> PathBuf {
        self.dir.join("calico.db")
    }

    pub(crate) fn binary(&self, name: &str) -> anyhow::Result<PathBuf> {
        let p = self.bin.join(name);
        if !p.is_file() {
            bail!(
                "{} not found: build the workspace's binaries first (cargo build --release)",
                p.display()
            );
        }
        Ok(p)
    }

    /// The underlay's namespace (its bridge is the hosts' default gateway,
    /// 172.30.0.254: where a lab's "top-of-rack router" runs).
    pub fn underlay(&self) -> String {
        format!("{}-ul", self.prefix)
    }

    /// Creates `n` hosts on an underlay bridge and starts calico-node on
    /// each; returns once every node reports ready. With `etcd`, the
    /// datastore is an etcd server on the underlay (Debian's `etcd-server`)
    /// instead of the embedded file.
    pub fn up(&self, n: u8, etcd: bool) -> anyhow::Result<()> {
        self.up_with(
            n,
            Setup {
                etcd,
                ..Setup::default()
            },
        )
    }

    /// [`Lab::up`] as `setup` says: with `docker`, every host also runs its own
    /// dockerd and the Calico Docker plugin (calico-node then creates the host's
    /// `calico` Docker network); with `bgp`, BIRD routes between hosts.
    pub fn up_with(&self, n: u8, setup: Setup) -> anyhow::Result<()> {
        let Setup {
            etcd,
            docker,
            bgp,
            node_env,
        } = setup;
        if !self.state()?.hosts.is_empty() {
            bail!("the lab {} is already up: run down first", self.prefix);
        }
        if n == 0 || n > 200 {
            bail!("--hosts {n}: between 1 and 200");
        }
        let node_bin = self.binary("calico-node")?;
        for b in ["calico", "calico-ipam", "calicoctl"] {
            self.binary(b)?;
        }
        if docker {
            self.binary("calico-libnetwork-plugin")?;
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let ul = self.underlay();
        self.say(format!(
            "creating the underlay {ul} (bridge 172.30.0.254/24)"
        ));
        ip(&["netns", "add", &ul])?;
        ip(&["-n", &ul, "link", "set", "lo", "up"])?;
        ip(&["-n", &ul, "link", "add", "br-ul", "type", "bridge"])?;
        ip(&["-n", &ul, "link", "set", "br-ul", "up"])?;
        ip(&["-n", &ul, "addr", "add", "172.30.0.254/24", "dev", "br-ul"])?;
        let mut state = State {
            docker,
            bgp,
            node_env,
            ..State::default()
        };
        if etcd {
            self.start_etcd(&ul)?;
            state.etcd = Some(LAB_ETCD.to_owned());
        }
        self.save(&state)?;
        for i in 1..=n {
            let name = format!("h{i}");
            let ns = format!("{}-{name}", self.prefix);
            let addr = format!("172.30.0.{i}/24");
            self.say(format!("host {name}: namespace {ns}, eth0 {addr}"));
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let port = format!("ul-{name}");
            ip(&[
                "link", "add", &port, "netns", &ul, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            ip(&["-n", &ul, "link", "set", &port, "master", "br-ul", "up"])?;
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            // Proxy ARP answers workloads only when the host has a default route.
            ip(&["-n", &ns, "route", "add", "default", "via", "172.30.0.254"])?;
            state.hosts.push(Host {
                name,
                netns: ns,
                ip: addr,
            });
            self.save(&state)?;
        }
        for h in &state.hosts {
            self.start_node(&node_bin, h)?;
        }
        if bgp {
            for h in &state.hosts {
                self.start_bird(h)?;
            }
        }
        for h in &state.hosts {
            self.say(format!("waiting for calico-node on {} to be ready", h.name));
            self.wait_ready(h, Duration::from_secs(30))?;
        }
        if docker {
            for h in &state.hosts {
                self.start_docker(h)?;
            }
        }
        Ok(())
    }

    /// Starts etcd in the underlay namespace and waits until it answers.
    fn start_etcd(&self, ul: &str) -> anyhow::Result<()> {
        self.say(format!("starting etcd on the underlay ({LAB_ETCD})"));
        let log = std::fs::File::create(self.dir.join("etcd.log"))?;
        Command::new("ip")
            .args(["netns", "exec", ul, "etcd", "--name", "lab"])
            .arg("--data-dir")
            .arg(self.dir.join("etcd"))
            .args([
                "--listen-client-urls",
                LAB_ETCD,
                "--advertise-client-urls",
                LAB_ETCD,
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "lab=http://127.0.0.1:2380",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting etcd (Debian package etcd-server)")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let healthy = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    ul,
                    "etcdctl",
                    "--endpoints",
                    LAB_ETCD,
                    "endpoint",
                    "health",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if healthy {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd did not become healthy; see {}",
                    self.dir.join("etcd.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Datastore settings as environment variables, for calico-node and calicoctl.
    pub(crate) fn datastore_env(&self, state: &State) -> Vec<(&'static str, String)> {
        match &state.etcd {
            Some(url) => vec![
                ("DATASTORE_TYPE", "etcdv3".into()),
                ("ETCD_ENDPOINTS", url.clone()),
            ],
            None => vec![
                ("DATASTORE_TYPE", "embedded".into()),
                (
                    "CALICO_DATASTORE_PATH",
                    self.datastore().display().to_string(),
                ),
            ],
        }
    }

    /// Where calico-node on `host` says which endpoints are programmed
    /// (each host its own: the hosts share this machine's filesystem).
    fn status_prefix(&self, host: &str) -> PathBuf {
        self.dir.join("run").join(host)
    }

    /// A CNI network configuration naming the lab's datastore. ADD waits
    /// until felix has programmed the endpoint's policy, so a task never
    /// runs before its policy is in force.
    fn cni_conf(&self, state: &State, node: &str) -> Value {
        let mut conf = json!({
            "cniVersion": "1.0.0",
            "name": "calico",
            "type": "calico",
            "nodename": node,
            "ipam": {"type": "calico-ipam"},
            "policy_setup_timeout_seconds": 10,
            "endpoint_status_dir": self.status_prefix(node).join("endpoint-status"),
        });
        match &state.etcd {
            Some(url) => {
                conf["datastore_type"] = json!("etcdv3");
                conf["etcd_endpoints"] = json!(url);
            }
            None => {
                conf["datastore_type"] = json!("embedded");
                conf["datastore_path"] = json!(self.datastore());
            }
        }
        conf
    }

    fn start_node(&self, node_bin: &Path, h: &Host) -> anyhow::Result<()> {
        let log = self.dir.join(format!("calico-node-{}.log", h.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        self.say(format!("starting calico-node on {}", h.name));
        let state = self.state()?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &h.netns])
            .arg(node_bin)
            .args(["--node", &h.name, "--ip", &h.ip, "--leak-grace", "15m"])
            .arg("--endpoint-status-prefix")
            .arg(self.status_prefix(&h.name));
        if state.bgp {
            // No encapsulation: confd in calico-node configures BIRD, which
            // programs the routes to other hosts' blocks.
            let dir = self.bird_dir(&h.name);
            cmd.arg("--confd-config-dir")
                .arg(&dir)
                .arg("--bird-dir")
                .arg(&dir)
                .env("CALICO_VXLAN_ENABLED", "false")
                .env("CALICO_IPINIP_ENABLED", "false");
        }
        if state.docker {
            cmd.arg("--docker-socket")
                .arg(self.docker_socket(&h.name))
                .arg("--docker-plugin-dir")
                .arg(self.docker_plugins(&h.name));
        } else {
            // This machine's own dockerd is not a lab host's.
            cmd.args(["--docker-network", ""]);
        }
        if std::env::var_os("FELIX_FLOWLOGSFLUSHINTERVAL").is_none() {
            // Flows show within a second in the lab (the default is 5 s).
            cmd.env("FELIX_FLOWLOGSFLUSHINTERVAL", "1s");
        }
        cmd.envs(self.datastore_env(&state))
            .envs(state.node_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C of the lab command leaves it running.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting calico-node on {}", h.name))?;
        Ok(())
    }

    /// Makes `host`'s web view (calico-node serves it on the loopback of the host's
    /// namespace, its default) reachable from this machine at `listen`: each connection
    /// is relayed to 127.0.0.1:9098 inside the namespace. Returns the address bound.
    pub fn ui_proxy(&self, host: &str, listen: &str) -> anyhow::Result<std::net::SocketAddr> {
        use calico_netlink::Netns as _;
        let ns_path = PathBuf::from("/run/netns").join(self.host_netns(host)?);
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("listening on {listen} for the web view"))?;
        let bound = listener.local_addr()?;
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let ns_path = ns_path.clone();
                std::thread::spawn(move || {
                    let Ok(ns) = calico_netlink::real::NetnsFile::open(&ns_path) else {
                        return;
                    };
                    // The socket is made inside the host's namespace and stays there.
                    let Ok(Ok(upstream)) =
                        ns.run(|| std::net::TcpStream::connect((UI_ADDRESS, UI_PORT)))
                    else {
                        return;
                    };
                    relay(client, upstream);
                });
            }
        });
        Ok(bound)
    }

    /// Where `host`'s BIRD configuration and control socket are.
    pub fn bird_dir(&self, host: &str) -> PathBuf {
        self.dir.join(format!("bird-{host}"))
    }

    /// Starts BIRD (Debian's `bird`, 1.x) in `h`'s namespace once confd has
    /// written its configuration.
    fn start_bird(&self, h: &Host) -> anyhow::Result<()> {
        let dir = self.bird_dir(&h.name);
        let cfg = dir.join("bird.cfg");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cfg.exists() {
            if Instant::now() > deadline {
                bail!("confd on {} wrote no {} within 30 s", h.name, cfg.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.say(format!("starting BIRD on {}", h.name));
        let log = std::fs::File::create(self.dir.join(format!("bird-{}.log", h.name)))?;
        Command::new("ip")
            .args([
                "netns", "exec", &h.netns, "bird", "-f", "-c", "bird.cfg", "-s",
            ])
            .arg(dir.join("bird.ctl"))
            // `include "bird_aggr.cfg"` is relative to the working directory.
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting BIRD on {} (Debian package bird)", h.name))?;
        Ok(())
    }

    /// Stops calico-node on `host` (kill) and starts it again, as a restart.
    pub fn restart_node(&self, host: &str) -> anyhow::Result<()> {
        let h = self.host(host)?;
        self.stop_program(&h, "calico-node")?;
        self.start_node(&self.binary("calico-node")?, &h)?;
        self.wait_ready(&h, Duration::from_secs(30))
    }

    /// Host `name`.
    pub(crate) fn host(&self, name: &str) -> anyhow::Result<Host> {
        self.state()?
            .hosts
            .into_iter()
            .find(|h| h.name == name)
            .with_context(|| format!("no host {name}"))
    }

    /// Stops (SIGTERM) every process of `program` in host `h`'s namespace and waits until
    /// they are gone (the kernel state they made stays).
    pub(crate) fn stop_program(&self, h: &Host, program: &str) -> anyhow::Result<()> {
        let pids = || -> anyhow::Result<Vec<String>> {
            Ok(ip(&["netns", "pids", &h.netns])?
                .split_whitespace()
                .filter(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/exe"))
                        .is_ok_and(|e| e.file_name().is_some_and(|n| n == program))
                })
                .map(str::to_owned)
                .collect())
        };
        for pid in pids()? {
            run(Command::new("kill").arg(pid))?;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if pids()?.is_empty() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{program} on {} did not exit", h.name)
    }

    /// Stops BIRD on `host` as a drained host does: its protocols disabled
    /// first (each BGP session closed with a Cease, so peers withdraw its
    /// routes at once), then the process. A BIRD that dies without the
    /// Cease leaves its routes on its peers for the graceful-restart time.
    pub fn stop_bird(&self, host: &str) -> anyhow::Result<()> {
        let socket = self.bird_dir(host).join("bird.ctl");
        match calico_confd::bird::request(&socket, "disable all") {
            // `disable` only starts closing: the Cease must be out before
            // the process ends, or the peers see a lost connection.
            Ok(_) => {
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline
                    && calico_confd::bird::peers(&socket, false)
                        .is_ok_and(|peers| peers.iter().any(|p| p.state != "down"))
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Err(e) => self.say(format!("BIRD on {host}: {e}; stopping it anyway")),
        }
        self.stop_program(&self.host(host)?, "bird")
    }

    /// Starts BIRD on `host` again (BGP mode).
    pub fn restart_bird(&self, host: &str) -> anyhow::Result<()> {
        self.start_bird(&self.host(host)?)
    }

    /// Whether calico-node on `host` answers /readiness with 200.
    pub fn is_ready(&self, host: &str) -> anyhow::Result<bool> {
        Ok(self.readiness(&self.host(host)?))
    }

    fn readiness(&self, h: &Host) -> bool {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &h.netns,
                "timeout",
                "2",
                "busybox",
                "wget",
                "-q",
                "-O",
                "/dev/null",
            ])
            .arg("http://127.0.0.1:9099/readiness")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn wait_ready(&self, h: &Host, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.readiness(h);
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.dir.join(format!("calico-node-{}.log", h.name));
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                bail!(
                    "calico-node on {} not ready within {within:?}; its log ({}):\n{tail}",
                    h.name,
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts an app's instances from its Marathon definition; `host` pins
    /// them (else they go round-robin over the hosts). Returns the new tasks.
    pub fn add_app(&self, app: &App, host: Option<&str>) -> anyhow::Result<Vec<Task>> {
        let mut state = self.state()?;
        if state.hosts.is_empty() {
            bail!("the lab {} is down: run up first", self.prefix);
        }
        let name = app.id.trim_start_matches('/').replace('/', "-");
        if name.is_empty() {
            bail!("app id {:?} is empty", app.id);
        }
        let Some(net) = app.networks.iter().find(|n| n.name == "calico") else {
            bail!("app {}: no network named calico in networks[]", app.id);
        };
        if !net.mode.is_empty() && net.mode != "container" {
            bail!(
                "app {}: networks[calico].mode {:?}: must be container",
                app.id,
                net.mode
            );
        }
        let mut new = Vec::new();
        for _ in 0..app.instances {
            state.started += 1;
            let k = state.started;
            let h = match host {
                Some(h) => state
                    .hosts
                    .iter()
                    .find(|x| x.name == h)
                    .with_context(|| format!("no host {h}"))?
                    .clone(),
                None => state.hosts[(k as usize - 1) % state.hosts.len()].clone(),
            };
            let id = format!("{name}.instance-{k}");
            self.say(format!("starting task {id} on {}", h.name));
            let task = if app.is_docker() {
                if !state.docker {
                    bail!(
                        "app {}: a DOCKER app needs a lab brought up with --docker",
                        app.id
                    );
                }
                self.start_docker_task(&h, &id, &name, &net.labels, k)?
            } else {
                self.start_task(&h, &id, &name, &net.labels, k)?
            };
            state.tasks.push(task.clone());
            self.save(&state)?;
            new.push(task);
        }
        self.write_hosts_files(&state)?;
        Ok(new)
    }

    fn start_task(
        &self,
        h: &Host,
        id: &str,
        app: &str,
        labels: &BTreeMap<String, String>,
        k: u32,
    ) -> anyhow::Result<Task> {
        let netns = format!("{}-t{k}", self.prefix);
        ip(&["netns", "add", &netns])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        // The app's network labels, and (as this lab's Marathon stand-in) the app and
        // task ids, so flow logs and the web view can name them. A real Marathon passes
        // only `networks[].labels`: there, an `app` label does the same.
        let mut labels = labels.clone();
        labels.insert(calico_flows::view::APP_LABELS[1].into(), format!("/{app}"));
        labels.insert(calico_flows::view::TASK_LABELS[0].into(), id.to_owned());
        let mesos_labels: Vec<Value> = labels
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let mut conf = self.cni_conf(&self.state()?, &h.name);
        conf["args"] = json!({"org.apache.mesos": {"network_info": {
            "name": "calico",
            "labels": {"labels": mesos_labels}
        }}});
        let container_id = container_id(id);
        let result = self.cni(h, "ADD", &container_id, &netns, &conf)?;
        let addr = result["ips"][0]["address"]
            .as_str()
            .with_context(|| format!("CNI ADD for {id} returned no address: {result}"))?;
        let ip_addr = addr.split('/').next().unwrap_or(addr).to_owned();
        // The host fails closed for a new interface until felix has
        // programmed its endpoint: wait for that, so the task is usable.
        let iface = result["interfaces"][0]["name"]
            .as_str()
            .with_context(|| format!("CNI ADD for {id} named no host interface: {result}"))?;
        self.wait_programmed(h, iface, Duration::from_secs(10))?;
        let www = self.dir.join("www").join(id);
        std::fs::create_dir_all(&www)?;
        std::fs::write(www.join("id"), format!("{id}\n"))?;
        run(Command::new("ip")
            .args([
                "netns", "exec", &netns, "busybox", "httpd", "-p", "80", "-h",
            ])
            .arg(&www))?;
        Ok(Task {
            id: id.to_owned(),
            app: app.to_owned(),
            host: h.name.clone(),
            netns,
            ip: ip_addr,
            labels: labels.clone(),
            container_id,
            docker: false,
        })
    }

    /// Waits until felix on `h` has endpoint chains for interface `iface`.
    pub(crate) fn wait_programmed(
        &self,
        h: &Host,
        iface: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let quoted = format!("\"{iface}\"");
        loop {
            let set = ip(&[
                "netns",
                "exec",
                &h.netns,
                "nft",
                "list",
                "set",
                "inet",
                "calico",
                "known-ifaces",
            ])
            .unwrap_or_default();
            if set.contains(&quoted) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "felix on {} did not program {iface} within {within:?}",
                    h.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the `calico` CNI plugin in host `h` as the Mesos containerizer would.
    fn cni(
        &self,
        h: &Host,
        command: &str,
        id: &str,
        netns: &str,
        conf: &Value,
    ) -> anyhow::Result<Value> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &h.netns])
            .arg(self.binary("calico")?)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", format!("/run/netns/{netns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running the calico CNI plugin")?;
        child
            .stdin
            .take()
            .context("plugin stdin")?
            .write_all(conf.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "calico CNI {command} for {id} on {} failed: {} {}",
                h.name,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout).with_context(|| format!("CNI {command} output {stdout:?}"))
    }

    /// Gives every task's namespace an `/etc/hosts` (through `ip netns
    /// exec`'s `/etc/netns/NAME/`) naming every app, short and with
    /// Marathon's DNS suffix.
    fn write_hosts_files(&self, state: &State) -> anyhow::Result<()> {
        let mut text = String::from("127.0.0.1 localhost\n");
        let mut seen = std::collections::BTreeSet::new();
        for t in &state.tasks {
            // One address per app name (the first instance), as a resolver would pick one.
            if seen.insert(t.app.clone()) {
                text.push_str(&format!("{} {} {}.{DNS_SUFFIX}\n", t.ip, t.app, t.app));
            }
            text.push_str(&format!("{} {}\n", t.ip, t.id));
        }
        for t in &state.tasks {
            let dir = Path::new("/etc/netns").join(&t.netns);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("hosts"), &text)?;
        }
        Ok(())
    }

    /// The task named `what`: a task id, or an app (its first task).
    pub fn task(&self, what: &str) -> anyhow::Result<Task> {
        let state = self.state()?;
        state
            .tasks
            .iter()
            .find(|t| t.id == what)
            .or_else(|| state.tasks.iter().find(|t| t.app == what))
            .cloned()
            .with_context(|| format!("no task or app {what:?} in the lab"))
    }

    /// `ip netns exec` into task `what`'s namespace: the command's output
    /// and whether it succeeded.
    pub fn exec(&self, what: &str, argv: &[String]) -> anyhow::Result<std::process::Output> {
        let t = self.task(what)?;
        Command::new("ip")
            .args(["netns", "exec", &t.netns])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {argv:?} in {}", t.id))
    }

    /// An HTTP GET of `url` from task `from` (3 s timeout): the body, or why it failed.
    pub fn fetch(&self, from: &str, url: &str) -> Result<String, String> {
        let argv: Vec<String> = ["timeout", "3", "busybox", "wget", "-q", "-O", "-", url]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        match self.exec(from, &argv) {
            Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
            Ok(o) if o.status.code() == Some(124) => Err("timed out".into()),
            Ok(o) => Err(format!(
                "failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Runs the lab's `calicoctl` against its datastore.
    pub fn calicoctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let state = self.state()?;
        // From the underlay's namespace: etcd listens there, and every host (whose
        // calico-node serves its flows) is reachable from it.
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.underlay()])
            .arg(self.binary("calicoctl")?);
        run(cmd.args(args).envs(self.datastore_env(&state)))
    }

    /// `calicoctl apply` of YAML text (written to a file in the lab's directory).
    pub fn apply_yaml(&self, yaml: &str) -> anyhow::Result<String> {
        let path = self.dir.join("apply.yaml");
        std::fs::write(&path, yaml)?;
        self.calicoctl(&["apply", "-f", &path.to_string_lossy()])
    }

    /// The namespace of host `name`.
    pub fn host_netns(&self, name: &str) -> anyhow::Result<String> {
        self.host(name).map(|h| h.netns)
    }

    /// Stops a task: CNI DEL, then its namespace goes.
    pub fn remove_task(&self, what: &str) -> anyhow::Result<()> {
        let t = self.task(what)?;
        let mut state = self.state()?;
        let h = state
            .hosts
            .iter()
            .find(|h| h.name == t.host)
            .cloned()
            .context("task's host is gone")?;
        if t.docker {
            self.docker(&h.name, &["rm", "-f", &t.container_id])?;
            ip(&["netns", "del", &t.netns])?;
        } else {
            let conf = self.cni_conf(&state, &h.name);
            self.cni(&h, "DEL", &t.container_id, &t.netns, &conf)?;
            kill_netns(&t.netns)?;
        }
        state.tasks.retain(|x| x.id != t.id);
        self.save(&state)?;
        self.write_hosts_files(&state)
    }

    /// Removes everything the lab made: processes, namespaces (with their
    /// links, routes and tables), `/etc/netns` entries and its directory.
    /// Best effort: carries on past failures and reports them all.
    pub fn down(&self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        let listed = ip(&["netns", "list"]).unwrap_or_default();
        let mine: Vec<String> = listed
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{}-", self.prefix)))
            .map(str::to_owned)
            .collect();
        // Workloads first, then hosts, then the underlay.
        let rank = |n: &str| {
            if n.contains("-t") {
                0
            } else if n.ends_with("-ul") {
                2
            } else {
                1
            }
        };
        let mut ordered = mine.clone();
        ordered.sort_by_key(|n| rank(n));
        for ns in &ordered {
            self.say(format!("removing {ns}"));
            if let Err(e) = kill_netns(ns) {
                errors.push(format!("{e:#}"));
            }
            let etc = Path::new("/etc/netns").join(ns);
            if etc.exists()
                && let Err(e) = std::fs::remove_dir_all(&etc)
            {
                errors.push(format!("removing {}: {e}", etc.display()));
            }
        }
        if self.dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.dir)
        {
            errors.push(format!("removing {}: {e}", self.dir.display()));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!(
                "tearing down the lab {}: {}",
                self.prefix,
                errors.join("; ")
            )
        }
    }
}

/// A Mesos-style container id (a UUID) for task `id`, stable for the id.
/// Where calico-node serves its web view by default (inside its host's namespace).
pub const UI_ADDRESS: &str = "127.0.0.1";
/// The web view's default port.
pub const UI_PORT: u16 = 9098;

/// Copies both ways between two connections until either closes.
fn relay(a: std::net::TcpStream, b: std::net::TcpStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut b2, &mut a2);
        let _ = a2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut a, &mut b);
    let _ = b.shutdown(std::net::Shutdown::Write);
    let _ = back.join();
}

fn container_id(id: &str) -> String {
    // FNV-1a over the id, twice with different seeds: 128 bits, no dependency.
    let mut parts = [0xcbf2_9ce4_8422_2325_u64, 0x6c62_272e_07bb_0142_u64];
    for p in &mut parts {
        for b in id.bytes() {
            *p ^= u64::from(b);
            *p = p.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let hex = format!("{:016x}{:016x}", parts[0], parts[1]);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Kills every process in namespace `ns` and deletes it.
fn kill_netns(ns: &str) -> anyhow::Result<()> {
    let pids = ip(&["netns", "pids", ns]).unwrap_or_default();
    for pid in pids.split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    // The namespace cannot go while a process still holds it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ip(&["netns", "pids", ns])
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("processes in {ns} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ip(&["netns", "del", ns]).map(drop)
}
