//! `calico-lab`: bring up a multi-host Calico cluster in network namespaces,
//! run Marathon apps on it, and run the seed's demo.

use std::path::PathBuf;

use anyhow::Context as _;
use calico_lab::{App, Lab, Setup};
use clap::{Parser, Subcommand};

/// A Calico cluster on one machine.
#[derive(Debug, Parser)]
#[command(name = "calico-lab", version)]
struct Args {
    /// Prefix of every namespace the lab makes.
    #[arg(long, default_value = "cl", global = true)]
    prefix: String,
    /// The lab's directory (state, datastore, logs); default /run/calico-lab-PREFIX.
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// Where calico-node, calico, calico-ipam and calicoctl are (default:
    /// next to this program).
    #[arg(long, global = true)]
    bin: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create the hosts and start calico-node on each.
    Up {
        /// Number of hosts.
        #[arg(long, default_value_t = 3)]
        hosts: u8,
        /// Run the datastore as etcd on the underlay instead of the embedded file.
        #[arg(long)]
        etcd: bool,
        /// Every host also runs its own dockerd and the Calico Docker plugin (for
        /// `"type": "DOCKER"` apps).
        #[arg(long)]
        docker: bool,
        /// BGP mode: no encapsulation, BIRD on every host (configured by the
        /// confd in calico-node) routes between hosts.
        #[arg(long)]
        bgp: bool,
    },
    /// Start a Marathon app's instances (its JSON definition).
    App {
        /// The app definition.
        file: PathBuf,
        /// Pin its tasks to this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Run a command in a task's network namespace (TASK: task id or app name).
    Exec {
        /// The task.
        task: String,
        /// The command.
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Show hosts and tasks.
    Status,
    /// Restart calico-node on a host (kill, start, wait until ready).
    Restart {
        /// The host.
        host: String,
    },
    /// Serve calico-node's web view of the lab (host h1's, which shows every host's
    /// flows) on this machine and print its address; runs until interrupted.
    Ui {
        /// Where to listen on this machine.
        #[arg(long, default_value = "127.0.0.1:9098")]
        listen: String,
        /// Whose calico-node serves it.
        #[arg(long, default_value = "h1")]
        host: String,
    },
    /// Remove everything the lab made.
    Down,
    /// Test helper (run inside a task): accept one TCP connection on PORT and
    /// append what arrives to FILE, as it arrives.
    #[command(hide = true)]
    TcpSink {
        /// Port to listen on.
        port: u16,
        /// File to append to.
        file: PathBuf,
    },
    /// Test helper (run inside a task): connect to ADDR:PORT and send a
    /// line every 50 ms until the connection fails.
    #[command(hide = true)]
    TcpSource {
        /// Address.
        addr: std::net::IpAddr,
        /// Port.
        port: u16,
    },
    /// The seed's demo end to end on 3 hosts; exit 0 only if it all held.
    Demo {
        /// Directory with the seed's apps/*.json and policy-bookstore.yaml.
        #[arg(long, default_value = "examples/seed")]
        seed: PathBuf,
        /// Leave the lab up afterwards.
        #[arg(long)]
        keep: bool,
        /// Run on etcd instead of the embedded datastore.
        #[arg(long)]
        etcd: bool,
        /// bookstore-server and fruitstore-frontend as Docker containers (the Calico
        /// Docker plugin), bookstore-frontend as a Mesos container.
        #[arg(long)]
        docker: bool,
        /// In BGP mode (see `up --bgp`).
        #[arg(long)]
        bgp: bool,
    },
}

fn main() {
    match run(Args::parse()) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("calico-lab: {e:#}");
            std::process::exit(1);
        }
    }
}

fn tcp_sink(port: u16, file: &std::path::Path) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind(("0.0.0.0", port))?;
    let (mut conn, _) = listener.accept()?;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
    }
}

fn tcp_source(addr: std::net::IpAddr, port: u16) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut conn = std::net::TcpStream::connect((addr, port))?;
    loop {
        conn.write_all(b"line\n")?;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn run(args: Args) -> anyhow::Result<i32> {
    let bin = match args.bin {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("locating this program's directory")?
            .to_owned(),
    };
    let lab = Lab {
        dir: args
            .dir
            .unwrap_or_else(|| PathBuf::from(format!("/run/calico-lab-{}", args.prefix))),
        prefix: args.prefix,
        bin,
        verbose: true,
    };
    match args.command {
        Cmd::Up {
            hosts,
            etcd,
            docker,
            bgp,
        } => lab.up_with(
            hosts,
            Setup {
                etcd,
                docker,
                bgp,
                ..Setup::default()
            },
        )?,
        Cmd::App { file, host } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let app: App = serde_json::from_str(&text)
                .with_context(|| format!("parsing Marathon app {}", file.display()))?;
            for t in lab.add_app(&app, host.as_deref())? {
                println!("{} on {} at {}", t.id, t.host, t.ip);
            }
        }
        Cmd::Exec { task, command } => {
            let out = lab.exec(&task, &command)?;
            use std::io::Write as _;
            std::io::stdout().write_all(&out.stdout)?;
            std::io::stderr().write_all(&out.stderr)?;
            return Ok(out.status.code().unwrap_or(1));
        }
        Cmd::Ui { listen, host } => {
            let at = lab.ui_proxy(&host, &listen)?;
            println!(
                "web view of lab {}: http://{at}/ (Ctrl-C to stop)",
                lab.prefix
            );
            loop {
                std::thread::park();
            }
        }
        Cmd::Status => {
            let s = lab.state()?;
            if s.hosts.is_empty() {
                println!("lab {} is down", lab.prefix);
            }
            for h in &s.hosts {
                println!("host {} netns {} {}", h.name, h.netns, h.ip);
            }
            for t in &s.tasks {
                println!(
                    "task {} on {} at {} netns {}{}",
                    t.id,
                    t.host,
                    t.ip,
                    t.netns,
                    if t.docker { " (Docker)" } else { "" }
                );
            }
        }
        Cmd::Restart { host } => lab.restart_node(&host)?,
        Cmd::TcpSink { port, file } => tcp_sink(port, &file)?,
        Cmd::TcpSource { addr, port } => tcp_source(addr, port)?,
        Cmd::Down => lab.down()?,
        Cmd::Demo {
            seed,
            keep,
            etcd,
            docker,
            bgp,
        } => {
            lab.down()?;
            lab.up_with(
                3,
                Setup {
                    etcd,
                    docker,
                    bgp,
                    ..Setup::default()
                },
            )?;
            let held = calico_lab::demo::run(&lab, &seed, docker);
            if !keep {
                lab.down()?;
            }
            return Ok(if held? { 0 } else { 1 });
        }
    }
    Ok(0)
}
