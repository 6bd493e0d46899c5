//! `calico-libnetwork-plugin`: the Docker network driver `calico` and IPAM driver
//! `calico-ipam` on this host (the `dcos-calico-libnetwork-plugin` service).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use calico_datastore::{Datastore, DatastoreConfig};
use calico_libnetwork::server::{Driver, serve};
use calico_libnetwork::{Config, DockerSocket, Host, Plugin};
use calico_netlink::real::{NetlinkSocket, ProcSysctl};
use clap::Parser;

/// The Docker network and IPAM drivers of Calico.
#[derive(Debug, Parser)]
#[command(name = "calico-libnetwork-plugin", version)]
struct Args {
    /// This host's Calico node name; defaults to the hostname.
    #[arg(long, env = "NODENAME")]
    node: Option<String>,
    /// calicoctl.cfg-style datastore configuration (else the environment:
    /// DATASTORE_TYPE, CALICO_DATASTORE_PATH, ETCD_ENDPOINTS, ...).
    #[arg(long, env = "CALICO_DATASTORE_CONFIG")]
    datastore_config: Option<PathBuf>,
    /// Docker's plugin directory.
    #[arg(long, default_value = "/run/docker/plugins")]
    plugin_dir: PathBuf,
    /// The network driver's name; the IPAM driver is NAME-ipam.
    #[arg(long, default_value = "calico")]
    name: String,
    /// The Docker Engine API socket.
    #[arg(long, env = "DOCKER_SOCKET", default_value = "/var/run/docker.sock")]
    docker_socket: PathBuf,
    /// MTU of the container veths.
    #[arg(long, env = "CALICO_LIBNETWORK_VETH_MTU", default_value_t = 1500)]
    veth_mtu: u32,
    /// How long to wait for Docker to list a container's labels.
    #[arg(long, default_value_t = 30)]
    label_wait_secs: u64,
    /// How often to look for endpoints of containers Docker forgot to tear down.
    #[arg(long, default_value_t = 5)]
    collect_interval_secs: u64,
    /// Logging.
    #[command(flatten)]
    log: calico_logging::LogArgs,
}

fn main() {
    let args = Args::parse();
    args.log.init_or_exit();
    if let Err(e) = run(args) {
        tracing::error!(target: "calico-libnetwork-plugin", "{e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let node = match args.node {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the hostname")?
            .trim()
            .to_owned(),
    };
    let ds_cfg = DatastoreConfig::load(args.datastore_config.as_deref())
        .context("reading the datastore configuration")?;
    let ds: Arc<dyn Datastore> =
        Arc::from(calico_datastore::open(&ds_cfg).context("opening the datastore")?);
    let host = Host {
        netlink: Box::new(NetlinkSocket::new().context("opening netlink")?),
        sysctl: Box::new(ProcSysctl),
    };
    let plugin = Plugin::new(
        Config {
            node,
            mtu: args.veth_mtu,
            label_wait: Duration::from_secs(args.label_wait_secs),
        },
        ds,
        Arc::new(DockerSocket::new(args.docker_socket)),
        host,
    );
    let resumed = plugin.resume_pending().context("resuming label reads")?;
    if resumed > 0 {
        tracing::info!(target: "calico-libnetwork-plugin", "reading the labels of {resumed} pending endpoints");
    }
    let collector = plugin.clone();
    let every = Duration::from_secs(args.collect_interval_secs.max(1));
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(every);
            match collector.collect_gone() {
                Ok(gone) => {
                    for name in gone {
                        tracing::info!(target: "calico-libnetwork-plugin", "removed endpoint {name}: its container is gone and Docker never said so"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "calico-libnetwork-plugin", "looking for gone containers: {e}")
                }
            }
        }
    });
    let network = args.plugin_dir.join(format!("{}.sock", args.name));
    let ipam = args.plugin_dir.join(format!("{}-ipam.sock", args.name));
    let threads = [
        serve(plugin.clone(), Driver::Network, &network)?,
        serve(plugin, Driver::Ipam, &ipam)?,
    ];
    tracing::info!(target: "calico-libnetwork-plugin", "serving {} and {}",
        network.display(),
        ipam.display()
    );
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
