//! `calico-node`: start-up checks and writes, then felix, health and metrics
//! endpoints, and the periodic stale-endpoint and IPAM leak collectors, until killed.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use calico_dataplane::{ConntrackCli, KernelNft};
use calico_datastore::{Datastore, DatastoreConfig};
use calico_felix::{
    Config, Encap, Felix, Kernel, StartupOverrides, StartupParams, Status, VxlanConfig,
};
use calico_netlink::real::{NetlinkSocket, ProcSysctl};
use calico_netlink::{Netlink, Sysctl};
use calico_node::params::Params;
use calico_node::startup;
use clap::Parser;
use ipnet::IpNet;
use prometheus_client::registry::Registry;

// The agent's allocator, for libnftables too (the `override` feature replaces
// malloc): glibc malloc's frees were a fifth of policy cold start.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Calico agent of one host.
#[derive(Debug, Parser)]
#[command(name = "calico-node", version)]
struct Args {
    /// This host's name (its Node resource); defaults to the hostname.
    #[arg(long, env = "NODENAME")]
    node: Option<String>,
    /// This host's underlay address with prefix (e.g. 172.30.0.1/24); found
    /// from the interface of the default route when not given.
    #[arg(long, env = "IP")]
    ip: Option<IpNet>,
    /// The DC/OS parameters file (calico_network_cidr, calico_vxlan_*, MTUs).
    #[arg(long, env = "CALICO_NODE_PARAMS")]
    params: Option<PathBuf>,
    /// calicoctl.cfg-style datastore configuration (else the environment:
    /// DATASTORE_TYPE, CALICO_DATASTORE_PATH, ETCD_ENDPOINTS, ...).
    #[arg(long, env = "CALICO_DATASTORE_CONFIG")]
    datastore_config: Option<PathBuf>,
    /// Port of /liveness and /readiness (overrides FelixConfiguration
    /// healthPort; default 9099).
    #[arg(long, env = "FELIX_HEALTHPORT")]
    health_port: Option<u16>,
    /// Port of /metrics (overrides FelixConfiguration prometheusMetricsPort;
    /// default 9091; DC/OS used 62091).
    #[arg(long, env = "FELIX_PROMETHEUSMETRICSPORT")]
    metrics_port: Option<u16>,
    /// Ports host endpoint policy never closes inbound, in Felix's syntax
    /// (overrides FelixConfiguration failsafeInboundHostPorts; default
    /// tcp:22,udp:68,tcp:179,tcp:2379,tcp:2380,tcp:5050,tcp:5051).
    #[arg(long, env = "FELIX_FAILSAFEINBOUNDHOSTPORTS")]
    failsafe_inbound: Option<String>,
    /// Ports host endpoint policy never closes outbound (overrides
    /// FelixConfiguration failsafeOutboundHostPorts).
    #[arg(long, env = "FELIX_FAILSAFEOUTBOUNDHOSTPORTS")]
    failsafe_outbound: Option<String>,
    /// What happens to traffic from a workload to this host after its egress
    /// policy: Drop, Accept or Return (overrides FelixConfiguration).
    #[arg(long, env = "FELIX_DEFAULTENDPOINTTOHOSTACTION")]
    default_endpoint_to_host_action: Option<calico_dataplane::EndpointToHostAction>,
    /// Disabled, or Any: workloads may send from their
    /// allowSpoofedSourcePrefixes (overrides FelixConfiguration).
    #[arg(long, env = "FELIX_WORKLOADSOURCESPOOFING", value_parser = parse_spoofing)]
    workload_source_spoofing: Option<bool>,
    /// felix writes `PREFIX/endpoint-status/NAMESPACE/NAME` once an endpoint's
    /// policy is in force (the CNI plugin's `policy_setup_timeout_seconds`
    /// waits for it); overrides FelixConfiguration endpointStatusPathPrefix;
    /// default /var/run/calico.
    #[arg(long, env = "FELIX_ENDPOINTSTATUSPATHPREFIX")]
    endpoint_status_prefix: Option<PathBuf>,
    /// How long an address must look leaked before the collector frees it.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    leak_grace: Duration,
    /// How often the leak collector runs.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    leak_interval: Duration,
    /// The Docker network created on this host once Docker and the Calico Docker plugin
    /// run (on the default pool, with the default profile); empty: none.
    #[arg(long, default_value = "calico")]
    docker_network: String,
    /// The Docker Engine API socket.
    #[arg(long, env = "DOCKER_SOCKET", default_value = "/var/run/docker.sock")]
    docker_socket: PathBuf,
    /// Run confd in this process (the seed's `dcos-calico-confd`), writing
    /// BIRD's configuration into this directory; /readiness then also
    /// needs BIRD's BGP sessions established.
    #[arg(long, env = "CALICO_CONFD_CONFIG_DIR")]
    confd_config_dir: Option<PathBuf>,
    /// Where BIRD's control sockets are (`bird.ctl`, `bird6.ctl`).
    #[arg(long, default_value = "/var/run/calico")]
    bird_dir: PathBuf,
    /// BGP passwords for confd: `<dir>/<secret name>/<key>`.
    #[arg(long, env = "CALICO_BGP_SECRETS_DIR")]
    bgp_secrets_dir: Option<PathBuf>,
    /// BIRD's router id: an IPv4 address, `hash`, or unset for the node's address.
    #[arg(long, env = "CALICO_ROUTER_ID", default_value = "")]
    router_id: String,
    /// Docker's plugin directory, where the Calico plugin's sockets appear.
    #[arg(long, default_value = "/run/docker/plugins")]
    docker_plugin_dir: PathBuf,
    /// Record the flows policy decides (each deciding rule logs to an nflog group) and
    /// serve them at /flows on the metrics port, for `calicoctl flows` and the web view.
    #[arg(long, env = "FELIX_FLOWLOGSENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    flow_logs: bool,
    /// How long flows are aggregated before they are recorded.
    #[arg(long, env = "FELIX_FLOWLOGSFLUSHINTERVAL", default_value = "5s", value_parser = parse_duration)]
    flow_logs_interval: Duration,
    /// Most logged packets felix reads per second; the kernel drops the rest (counted in
    /// felix_flow_log_rate_limited and felix_flow_log_overruns).
    #[arg(long, env = "FELIX_FLOWLOGSMAXRATE", default_value_t = 20_000)]
    flow_logs_max_rate: u32,
    /// Most flows recorded per interval (packets of further flows are counted as lost).
    #[arg(long, env = "FELIX_FLOWLOGSMAXFLOWS", default_value_t = 10_000)]
    flow_logs_max_flows: usize,
    /// Where the read-only web view listens (`address:port`); empty: not served. Keep it
    /// on localhost unless the network it is bound to is trusted: it shows the cluster's
    /// endpoints, policies and flows.
    #[arg(long, env = "CALICO_UI_LISTEN", default_value = "127.0.0.1:9098")]
    ui_listen: String,
    /// Log level: Trace, Debug, Info, Warning, Error, Fatal, Panic or None.
    #[arg(
        short = 'l',
        long = "log-level",
        env = "FELIX_LOGSEVERITYSCREEN",
        default_value = "Info"
    )]
    log_level: String,
    /// Log lines as `text` or `json`.
    #[arg(long = "log-format", env = "CALICO_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

fn parse_spoofing(s: &str) -> Result<bool, String> {
    match s {
        "Any" => Ok(true),
        "Disabled" => Ok(false),
        _ => Err(format!("{s:?}: expected Disabled or Any")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|e| format!("{s:?}: {e}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unit must be ms, s, m or h")),
    }
}

fn main() {
    let args = Args::parse();
    calico_logging::init_or_exit(&args.log_level, &args.log_format);
    if let Err(e) = calico_felix::without_huge_pages() {
        tracing::warn!(target: "calico-node", "turning transparent huge pages off: {e}; starting anyway");
    }
    match run(args) {
        Ok(()) => {}
        Err(e) => {
            tracing::error!(target: "calico-node", "{e:#}");
            std::process::exit(1);
        }
    }
    // felix stopped by itself: a parameter that applies at start changed.
    // Start again in place, with the same arguments and environment.
    use std::os::unix::process::CommandExt as _;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "calico-node".into());
    let e = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .exec();
    tracing::info!(target: "calico-node", "restarting: {e}");
    std::process::exit(1);
}

/// (underlay address, its link's MTU, every host network) from the kernel.
fn host_networks(
    nl: &mut NetlinkSocket,
    ip: Option<IpNet>,
) -> anyhow::Result<(IpNet, u32, Vec<IpNet>)> {
    let links = nl.links().context("listing links")?;
    let mut nets = Vec::new();
    let mut found = None;
    let default_oif = nl
        .routes()
        .context("listing routes")?
        .into_iter()
        .find(|r| r.prefix_len == 0 && r.dst.is_ipv4())
        .map(|r| r.oif);
    for link in &links {
        if link.name == "lo" || link.name.starts_with("cali") || link.name.starts_with("vxlan.") {
            continue;
        }
        for (addr, len) in nl.addresses(&link.name).context("listing addresses")? {
            let net = IpNet::new(addr, len).context("address prefix")?;
            nets.push(net);
            let wanted = match ip {
                Some(ip) => ip.addr() == addr,
                None => Some(link.index) == default_oif && addr.is_ipv4(),
            };
            if wanted && found.is_none() {
                found = Some((net, link.mtu));
            }
        }
    }
    let Some((net, mtu)) = found else {
        match ip {
            Some(ip) => bail!("--ip {ip}: no interface of this host has {}", ip.addr()),
            None => {
                bail!("no IPv4 address on the default route's interface: pass --ip ADDR/PREFIX")
            }
        }
    };
    Ok((net, mtu, nets))
}

fn run(args: Args) -> anyhow::Result<()> {
    let node = match args.node.clone() {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the hostname (or pass --node)")?
            .trim()
            .to_owned(),
    };
    let failsafe_inbound = args
        .failsafe_inbound
        .as_deref()
        .map(calico_dataplane::parse_failsafes)
        .transpose()
        .context("--failsafe-inbound (FELIX_FAILSAFEINBOUNDHOSTPORTS)")?;
    let failsafe_outbound = args
        .failsafe_outbound
        .as_deref()
        .map(calico_dataplane::parse_failsafes)
        .transpose()
        .context("--failsafe-outbound (FELIX_FAILSAFEOUTBOUNDHOSTPORTS)")?;
    let mut nl = NetlinkSocket::new().context("opening netlink")?;
    let (address, underlay_mtu, host_nets) = host_networks(&mut nl, args.ip)?;
    let params = Params::load(
        args.params.as_deref(),
        &|k| std::env::var(k).ok(),
        &host_nets,
        underlay_mtu,
    )?;
    let ds_cfg = DatastoreConfig::load(args.datastore_config.as_deref())
        .context("reading the datastore configuration")?;
    let ds: Arc<dyn Datastore> =
        Arc::from(calico_datastore::open(&ds_cfg).context("opening the datastore")?);

    for created in startup::ensure_defaults(ds.as_ref(), &params)? {
        tracing::info!(target: "calico-node", "created {created}");
    }
    let overrides = StartupOverrides {
        endpoint_status_prefix: args.endpoint_status_prefix.clone(),
        health_port: args.health_port,
        metrics_port: args.metrics_port,
    };
    let settings = calico_felix::settings_from_datastore(ds.as_ref(), &node)
        .context("reading FelixConfiguration")?;
    let in_force = StartupParams::resolve(&overrides, &settings);
    let tunnel = startup::register_node(ds.as_ref(), &node, address, &params)?;
    tracing::info!(target: "calico-node", "registered {node} at {address}{}",
        tunnel
            .map(|t| format!(", VXLAN tunnel address {t}"))
            .unwrap_or_default()
    );
    let mut sysctl = ProcSysctl;
    sysctl
        .set("net/ipv4/ip_forward", "1")
        .context("enabling IPv4 forwarding")?;

    let mut cfg = Config::new(node.clone());
    cfg.failsafe_inbound = failsafe_inbound;
    cfg.failsafe_outbound = failsafe_outbound;
    cfg.endpoint_to_host = args.default_endpoint_to_host_action;
    cfg.source_spoofing = args.workload_source_spoofing;
    cfg.endpoint_status_dir = Some(in_force.endpoint_status_prefix.join("endpoint-status"));
    cfg.startup = Some((overrides, in_force.clone()));
    cfg.encap = if params.vxlan_enabled {
        Encap::Vxlan(VxlanConfig {
            vni: params.vxlan_vni,
            port: params.vxlan_port,
            mtu: params.vxlan_mtu,
        })
    } else if params.ipinip_enabled {
        Encap::Ipip(params.ipinip_mtu)
    } else {
        // BIRD programs the routes to other hosts' blocks.
        Encap::None
    };
    let (nft, no_lib) = KernelNft::open();
    match no_lib {
        Some(why) => {
            tracing::warn!(target: "calico-node", "{why}; programming nftables through the nft command instead")
        }
        // Our own changes come from this process: the kernel's change
        // notifications tell others' apart.
        None => cfg.nft_monitor = true,
    }
    let flow_log = if args.flow_logs {
        start_flow_log(
            &node,
            calico_felix::flowlog::FlowLogConfig {
                interval: args.flow_logs_interval,
                max_rate: args.flow_logs_max_rate,
                max_flows: args.flow_logs_max_flows,
                ..calico_felix::flowlog::FlowLogConfig::default()
            },
            &mut sysctl,
        )
    } else {
        None
    };
    cfg.host.flow_log_group = flow_log.as_ref().map(|l| l.config().group);
    cfg.flow_log.clone_from(&flow_log);
    let flows_at = flow_log
        .as_ref()
        .map(|_| format!("{}:{}", address.addr(), in_force.metrics_port));
    startup::announce_flows(ds.as_ref(), &node, flows_at.as_deref())?;
    let kernel = Kernel {
        netlink: NetlinkSocket::new()?,
        nft,
        conntrack: ConntrackCli::default(),
        sysctl: ProcSysctl,
    };
    let mut felix = Felix::new(cfg, ds.clone(), kernel);
    let status = felix.status();
    let mut registry = Registry::default();
    felix.metrics().register(&mut registry);
    if let Some(log) = &flow_log {
        log.metrics().register(&mut registry);
    }
    let stale = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    registry.register(
        "calico_node_stale_workload_endpoints",
        "This host's workload endpoints whose interface is missing (removed after the grace period)",
        stale.clone(),
    );
    let registry = Arc::new(Mutex::new(registry));

    let bird_ready = match &args.confd_config_dir {
        Some(dir) => {
            spawn_confd(&args, &node, dir, ds.clone())?;
            Some(args.bird_dir.clone())
        }
        None => None,
    };
    serve_health(in_force.health_port, status.clone(), bird_ready)?;
    serve_metrics(in_force.metrics_port, registry, flow_log)?;
    if !args.ui_listen.is_empty() {
        serve_ui(&args.ui_listen, ds.clone())?;
    }
    spawn_leak_collector(ds.clone(), args.leak_grace, args.leak_interval);
    if !args.docker_network.is_empty() {
        spawn_docker_network(
            args.docker_network.clone(),
            args.docker_socket.clone(),
            args.docker_plugin_dir.clone(),
            IpNet::V4(params.network_cidr),
        );
    }
    spawn_stale_endpoint_collector(
        ds.clone(),
        node.clone(),
        (args.leak_grace, args.leak_interval),
        stale,
    );

    let stop = AtomicBool::new(false);
    felix.run(&stop);
    match felix.restart_reason() {
        Some(reason) => {
            tracing::info!(target: "calico-node", "restarting: {reason}");
            Ok(())
        }
        None => bail!("felix stopped"),
    }
}

/// Creates the local Calico Docker network once Docker and the plugin (`calico.sock`) are
/// there: what DC/OS did with Docker's cluster store and a ZooKeeper lock, per host instead.
fn spawn_docker_network(name: String, socket: PathBuf, plugin_dir: PathBuf, subnet: IpNet) {
    std::thread::spawn(move || {
        let plugin = plugin_dir.join("calico.sock");
        let docker = calico_libnetwork::DockerSocket::new(&socket);
        let mut said = String::new();
        loop {
            if socket.exists() && plugin.exists() {
                match docker.ensure_network(&name, "calico", &subnet, startup::DEFAULT_PROFILE) {
                    Ok(true) => {
                        tracing::info!(target: "calico-node", "created Docker network {name} ({subnet})");
                        return;
                    }
                    Ok(false) => return,
                    Err(e) => {
                        let e = e.to_string();
                        if e != said {
                            tracing::warn!(target: "calico-node", "Docker network {name}: {e}; trying again");
                            said = e;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    });
}

fn listen(port: u16) -> anyhow::Result<tiny_http::Server> {
    tiny_http::Server::http(("0.0.0.0", port))
        .map_err(|e| anyhow::anyhow!("listening on port {port}: {e}"))
}

/// Runs confd beside felix: BIRD's configuration for this node in `dir`.
fn spawn_confd(args: &Args, node: &str, dir: &Path, ds: Arc<dyn Datastore>) -> anyhow::Result<()> {
    let settings = calico_confd::Settings::new(node.to_owned(), args.router_id.clone())?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let opts = calico_confd::daemon::Options {
        settings,
        config_dir: dir.to_owned(),
        secrets_dir: args.bgp_secrets_dir.clone(),
        bird_dir: Some(args.bird_dir.clone()),
        debounce: Duration::from_millis(100),
    };
    std::thread::spawn(move || {
        calico_confd::daemon::Confd::new(ds, opts).run(&AtomicBool::new(false));
    });
    Ok(())
}

/// Serves /liveness and /readiness; with `bird_dir`, readiness also needs
/// BIRD's Calico sessions established (upstream's `-bird-ready`).
fn serve_health(port: u16, status: Arc<Status>, bird_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let server = listen(port)?;
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let felix_ready = || {
                status.ready.load(std::sync::atomic::Ordering::Relaxed)
                    && status.in_sync.load(std::sync::atomic::Ordering::Relaxed)
            };
            let ok = match req.url() {
                "/liveness" => Some(Ok(status.live(Duration::from_secs(30)))),
                "/readiness" => Some(match &bird_dir {
                    _ if !felix_ready() => Ok(false),
                    Some(dir) => {
                        calico_confd::bird::established(&dir.join("bird.ctl"), false).map(|()| true)
                    }
                    None => Ok(true),
                }),
                _ => None,
            };
            let (code, body) = match ok {
                Some(Ok(true)) => (200, "ok\n".to_owned()),
                Some(Ok(false)) => (503, "not ready\n".to_owned()),
                Some(Err(why)) => (503, format!("not ready: {why}\n")),
                None => (404, "not found\n".to_owned()),
            };
            let _ = req.respond(tiny_http::Response::from_string(body).with_status_code(code));
        }
    });
    Ok(())
}

/// Starts the flow log (None, with a warning, when the kernel refuses it: policy is
/// enforced the same without it).
fn start_flow_log(
    node: &str,
    cfg: calico_felix::flowlog::FlowLogConfig,
    sysctl: &mut ProcSysctl,
) -> Option<Arc<calico_felix::flowlog::FlowLog>> {
    use calico_felix::flowlog::FlowLog;
    // Allowed connections' packets and bytes come from conntrack's counters.
    if let Err(e) = sysctl.set("net/netfilter/nf_conntrack_acct", "1") {
        tracing::warn!(target: "calico-node", "flow logs: turning conntrack accounting on: {e}; allowed flows count their first packet only");
    }
    let log = FlowLog::new(node, cfg);
    match calico_felix::flowlog::spawn(log.clone()) {
        Ok(()) => Some(log),
        Err(e) => {
            tracing::error!(target: "calico-node", "flow logs are off: {e}");
            None
        }
    }
}

/// The web view: the page and its JSON API, read-only.
fn serve_ui(listen: &str, ds: Arc<dyn Datastore>) -> anyhow::Result<()> {
    let server = tiny_http::Server::http(listen)
        .map_err(|e| anyhow::anyhow!("listening on {listen} for the web view: {e}"))?;
    tracing::info!(target: "calico-node", "web view on http://{listen}/");
    let server = Arc::new(server);
    // A few workers: /api/why runs a trace while the page keeps polling.
    for _ in 0..4 {
        let server = server.clone();
        let ds = ds.clone();
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                let url = req.url().to_owned();
                let path = url.split('?').next().unwrap_or("");
                let json = |r: Result<serde_json::Value, calico_node::ui::Error>| match r {
                    Ok(v) => (200, v.to_string(), "application/json"),
                    Err(e) => (e.status(), format!("{e}\n"), "text/plain; charset=utf-8"),
                };
                let read = matches!(
                    req.method(),
                    tiny_http::Method::Get | tiny_http::Method::Head
                );
                let (code, body, kind) = match path {
                    // Read-only: nothing but GET (and HEAD) is answered.
                    _ if !read => (
                        405,
                        "read-only: GET only\n".into(),
                        "text/plain; charset=utf-8",
                    ),
                    "/" | "/index.html" => (
                        200,
                        calico_node::ui::INDEX_HTML.to_owned(),
                        "text/html; charset=utf-8",
                    ),
                    "/api/cluster" => json(calico_node::ui::cluster(ds.as_ref())),
                    "/api/flows" => {
                        let since = calico_node::ui::query_param(&url, "since")
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(900);
                        json(calico_node::ui::flows(
                            ds.as_ref(),
                            Duration::from_secs(since),
                        ))
                    }
                    "/api/why" => match calico_node::ui::query_param(&url, "id") {
                        Some(id) => json(calico_node::ui::why(ds.as_ref(), &id)),
                        None => (400, "id is required\n".into(), "text/plain; charset=utf-8"),
                    },
                    _ => (404, "not found\n".into(), "text/plain; charset=utf-8"),
                };
                let resp = tiny_http::Response::from_string(body)
                    .with_status_code(code)
                    .with_header(header("Content-Type", kind))
                    // Read-only, and never framed or scripted from elsewhere.
                    .with_header(header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'"))
                    .with_header(header("X-Content-Type-Options", "nosniff"));
                let _ = req.respond(resp);
            }
        });
    }
    Ok(())
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    // Both are static ASCII here; tiny_http refuses only non-ASCII.
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| unreachable!("static ASCII header {name}"))
}

fn serve_metrics(
    port: u16,
    registry: Arc<Mutex<Registry>>,
    flow_log: Option<Arc<calico_felix::flowlog::FlowLog>>,
) -> anyhow::Result<()> {
    let server = listen(port)?;
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            if let (Some(log), true) = (&flow_log, req.url().starts_with("/flows")) {
                let since = calico_node::ui::query_param(req.url(), "since")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(900);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                let body = serde_json::to_string(&log.recent(Duration::from_secs(since), now))
                    .unwrap_or_default();
                let _ = req.respond(
                    tiny_http::Response::from_string(body)
                        .with_header(header("Content-Type", "application/json")),
                );
                continue;
            }
            if req.url() != "/metrics" {
                let _ = req
                    .respond(tiny_http::Response::from_string("not found\n").with_status_code(404));
                continue;
            }
            let mut body = String::new();
            let encoded = registry
                .lock()
                .map_err(|_| std::fmt::Error)
                .and_then(|r| prometheus_client::encoding::text::encode(&mut body, &r));
            let resp = match encoded {
                Ok(()) => tiny_http::Response::from_string(body),
                Err(_) => {
                    tiny_http::Response::from_string("encoding failed\n").with_status_code(500)
                }
            };
            let _ = req.respond(resp);
        }
    });
    Ok(())
}

/// Removes this host's workload endpoints whose interface has been gone for `grace` (a
/// runtime that crashed mid-ADD); their addresses then go to the IPAM leak collector.
fn spawn_stale_endpoint_collector(
    ds: Arc<dyn Datastore>,
    node: String,
    (grace, interval): (Duration, Duration),
    gauge: prometheus_client::metrics::gauge::Gauge<i64>,
) {
    std::thread::spawn(move || {
        let mut collector = calico_node::stale::StaleEndpoints::new(grace);
        let mut nl = match NetlinkSocket::new() {
            Ok(nl) => nl,
            Err(e) => {
                tracing::warn!(target: "calico-node", "stale endpoint collector: {e}; not running");
                return;
            }
        };
        loop {
            std::thread::sleep(interval);
            let links = match nl.links() {
                Ok(l) => l.into_iter().map(|l| l.name).collect(),
                Err(e) => {
                    tracing::warn!(target: "calico-node", "stale endpoint collector: listing links: {e}");
                    continue;
                }
            };
            match collector.run_once(ds.as_ref(), &node, &links, Instant::now()) {
                Ok(pass) => {
                    gauge.set(i64::try_from(pass.stale.len()).unwrap_or(i64::MAX));
                    for key in &pass.removed {
                        tracing::info!(
                        target: "calico-node",
                        "removed {key}: its interface was gone for {grace:?} \
                             (a runtime that died mid-ADD); the leak collector releases its addresses"
                        );
                    }
                }
                Err(e) => tracing::warn!(target: "calico-node", "stale endpoint collector: {e}"),
            }
        }
    });
}

fn spawn_leak_collector(ds: Arc<dyn Datastore>, grace: Duration, interval: Duration) {
    std::thread::spawn(move || {
        let mut collector = calico_ipam::check::Collector::new(grace);
        loop {
            std::thread::sleep(interval);
            match collector.run_once(ds.as_ref(), Instant::now()) {
                Ok(pass) => {
                    for ip in &pass.released {
                        tracing::info!(target: "calico-node", "released leaked address {ip}");
                    }
                    for b in &pass.empty_blocks_released {
                        tracing::info!(target: "calico-node", "released empty block {b}");
                    }
                }
                Err(e) => tracing::warn!(target: "calico-node", "leak collector: {e}"),
            }
        }
    });
}
