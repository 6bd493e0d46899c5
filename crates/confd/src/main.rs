//! `calico-confd` (the seed's `dcos-calico-confd`): renders BIRD's
//! configuration for this node from the datastore and keeps it current.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use calico_confd::daemon::{Confd, Options};
use calico_datastore::DatastoreConfig;
use clap::Parser;

/// Renders bird.cfg, bird_ipam.cfg, bird_aggr.cfg and their IPv6 twins.
#[derive(Debug, Parser)]
#[command(name = "calico-confd", version)]
struct Args {
    /// This node's name (its Node resource); defaults to the hostname.
    #[arg(long, env = "NODENAME")]
    node: Option<String>,
    /// BIRD's router id: an IPv4 address, `hash` (from the node name), or
    /// unset for the node's IPv4 address.
    #[arg(long, env = "CALICO_ROUTER_ID", default_value = "")]
    router_id: String,
    /// Where the files are written.
    #[arg(long, default_value = "/etc/calico/confd/config")]
    config_dir: PathBuf,
    /// BGP passwords: `<dir>/<secret name>/<key>`.
    #[arg(long, env = "CALICO_BGP_SECRETS_DIR")]
    secrets_dir: Option<PathBuf>,
    /// Where BIRD's control sockets are (`bird.ctl`, `bird6.ctl`).
    #[arg(long, default_value = "/var/run/calico")]
    bird_dir: PathBuf,
    /// Do not ask BIRD to reload.
    #[arg(long)]
    no_reload: bool,
    /// calicoctl.cfg-style datastore configuration (else the environment).
    #[arg(long, env = "CALICO_DATASTORE_CONFIG")]
    datastore_config: Option<PathBuf>,
    /// Render once and exit.
    #[arg(long)]
    onetime: bool,
    /// Quiet time after a change before rendering, in milliseconds.
    #[arg(long, default_value_t = 100)]
    debounce_ms: u64,
    /// Logging.
    #[command(flatten)]
    log: calico_logging::LogArgs,
}

fn main() {
    let args = Args::parse();
    args.log.init_or_exit();
    if let Err(e) = run(args) {
        tracing::error!(target: "confd", "{e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let node = match args.node {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the hostname (or pass --node)")?
            .trim()
            .to_owned(),
    };
    let settings = calico_confd::Settings::new(node, args.router_id)?;
    std::fs::create_dir_all(&args.config_dir)
        .with_context(|| format!("creating {}", args.config_dir.display()))?;
    let ds_cfg = DatastoreConfig::load(args.datastore_config.as_deref())
        .context("reading the datastore configuration")?;
    let ds = calico_datastore::open(&ds_cfg).context("opening the datastore")?;
    let mut confd = Confd::new(
        ds,
        Options {
            settings,
            config_dir: args.config_dir,
            secrets_dir: args.secrets_dir,
            bird_dir: (!args.no_reload).then_some(args.bird_dir),
            debounce: Duration::from_millis(args.debounce_ms),
        },
    );
    if args.onetime {
        let report = confd.once(Duration::from_secs(30))?;
        tracing::warn!(target: "confd", "wrote {} of {} files{}",
            report.written.len(),
            calico_confd::FILE_NAMES.len(),
            if report.reloaded.is_empty() {
                String::new()
            } else {
                format!("; {}", report.reloaded.join("; "))
            }
        );
        return Ok(());
    }
    confd.run(&AtomicBool::new(false));
    Ok(())
}
