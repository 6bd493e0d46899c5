//! `calicoctl node status`: whether calico-node runs on this host, and BIRD's BGP peers as
//! upstream prints them, read from BIRD's control sockets.

use std::io::Write;
use std::path::{Path, PathBuf};

use calico_confd::bird::Peer;

use crate::cli::{NodeArgs, NodeCommand};
use crate::commands::{CommandError, Context};

/// Where BIRD's control sockets are looked for, in order (upstream's places).
const BIRD_DIRS: [&str; 2] = ["/var/run/calico", "/var/run/bird"];

/// Runs a `node` command.
pub fn run(args: NodeArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    match args.command {
        NodeCommand::Status(a) => {
            let procs = processes();
            status(&procs, a.bird_dir.as_deref(), ctx.out)
        }
        NodeCommand::Diags(a) => {
            let paths = crate::diags::NodePaths {
                config_dir: a.config_dir.clone(),
                log_dir: a.log_dir.clone(),
                bird_dir: a.bird_dir.clone(),
                cni_dir: a.cni_dir.clone(),
            };
            let bundle = crate::diags::node(&paths, crate::commands::VERSION);
            crate::diags_cmd::write(&bundle, a.output.as_deref(), "calico-node-diags", ctx)
        }
        NodeCommand::Checksystem => {
            let items = crate::checksystem::check(&crate::checksystem::HostProbe);
            let ok = crate::checksystem::print(&items, ctx.out)
                .map_err(|e| CommandError::new(format!("writing output: {e}")))?;
            if ok {
                Ok(())
            } else {
                Err(CommandError::new(
                    "this host lacks what calico-node needs: see the FAIL lines above",
                ))
            }
        }
    }
}

/// The program names (argv[0]'s file name) and first arguments of the running processes.
fn processes() -> Vec<Vec<String>> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .enumerate()
                .map(|(i, a)| {
                    let a = String::from_utf8_lossy(a).into_owned();
                    if i == 0 {
                        Path::new(&a)
                            .file_name()
                            .map_or(a.clone(), |f| f.to_string_lossy().into_owned())
                    } else {
                        a
                    }
                })
                .collect()
        })
        .collect()
}

fn running(procs: &[Vec<String>], argv: &[&str]) -> bool {
    procs.iter().any(|p| {
        argv.iter()
            .enumerate()
            .all(|(i, a)| p.get(i).map(String::as_str) == Some(*a))
    })
}

/// The status report for `procs` (each a process's program name and arguments), with BIRD's
/// sockets in `bird_dir` (else upstream's places).
pub fn status(
    procs: &[Vec<String>],
    bird_dir: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let io = |e: std::io::Error| CommandError::new(format!("writing the status: {e}"));
    if !running(procs, &["calico-node"]) && !running(procs, &["calico-felix"]) {
        return Err(CommandError::new("Calico process is not running."));
    }
    writeln!(out, "Calico process is running.").map_err(io)?;
    let (bird4, bird6) = (running(procs, &["bird"]), running(procs, &["bird6"]));
    if !bird4 && !bird6 {
        writeln!(out, "\nThe BGP backend process (BIRD) is not running.").map_err(io)?;
    } else {
        for (v, up) in [("4", bird4), ("6", bird6)] {
            if up {
                print_peers(v, bird_dir, out)?;
            } else {
                let name = if v == "4" { "bird" } else { "bird6" };
                writeln!(out, "\nINFO: BIRDv{v} process: '{name}' is not running.").map_err(io)?;
            }
        }
    }
    writeln!(out).map_err(io)
}

fn print_peers(v: &str, bird_dir: Option<&Path>, out: &mut dyn Write) -> Result<(), CommandError> {
    let io = |e: std::io::Error| CommandError::new(format!("writing the status: {e}"));
    writeln!(out, "\nIPv{v} BGP status").map_err(io)?;
    let file = if v == "6" { "bird6.ctl" } else { "bird.ctl" };
    let dirs: Vec<PathBuf> = match bird_dir {
        Some(d) => vec![d.to_owned()],
        None => BIRD_DIRS.iter().map(PathBuf::from).collect(),
    };
    let mut last = String::new();
    for dir in &dirs {
        match calico_confd::bird::peers(&dir.join(file), v == "6") {
            Ok(peers) if peers.is_empty() => {
                return writeln!(out, "No IPv{v} peers found.").map_err(io);
            }
            Ok(peers) => return out.write_all(table(&peers).as_bytes()).map_err(io),
            Err(e) => last = format!("{}: {e}", dir.join(file).display()),
        }
    }
    writeln!(
        out,
        "Error querying BIRD: unable to connect to BIRDv{v} socket: {last}"
    )
    .map_err(io)
}

/// The peers as a boxed table with upper-case headings (upstream's table style).
pub fn table(peers: &[Peer]) -> String {
    let rows: Vec<[String; 5]> =
        std::iter::once(["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"].map(str::to_owned))
            .chain(peers.iter().map(|p| {
                [
                    p.address.clone(),
                    p.kind.to_owned(),
                    p.state.clone(),
                    p.since.clone(),
                    p.info.clone(),
                ]
            }))
            .collect();
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let line = |r: &[String; 5]| {
        r.iter()
            .zip(&widths)
            .map(|(cell, w)| format!("| {cell:<w$} "))
            .collect::<String>()
            + "|\n"
    };
    let mut text = rule.clone();
    text.push_str(&line(&rows[0]));
    text.push_str(&rule);
    for r in &rows[1..] {
        text.push_str(&line(r));
    }
    text.push_str(&rule);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn procs(names: &[&str]) -> Vec<Vec<String>> {
        names.iter().map(|n| vec![(*n).to_owned()]).collect()
    }

    #[test]
    fn the_table_is_boxed_with_upper_case_headings() {
        let t = table(&[Peer {
            address: "172.17.8.102".into(),
            kind: "node-to-node mesh",
            state: "up".into(),
            since: "23:30:04".into(),
            info: "Established".into(),
        }]);
        assert_eq!(
            t,
            "+--------------+-------------------+-------+----------+-------------+\n\
             | PEER ADDRESS | PEER TYPE         | STATE | SINCE    | INFO        |\n\
             +--------------+-------------------+-------+----------+-------------+\n\
             | 172.17.8.102 | node-to-node mesh | up    | 23:30:04 | Established |\n\
             +--------------+-------------------+-------+----------+-------------+\n"
        );
    }

    #[test]
    fn without_calico_node_it_fails_and_without_bird_it_says_so() {
        let mut out = Vec::new();
        let e = status(&procs(&["bash"]), None, &mut out).unwrap_err();
        assert_eq!(e.to_string(), "Calico process is not running.");
        let mut out = Vec::new();
        status(&procs(&["calico-node"]), None, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Calico process is running.\n\nThe BGP backend process (BIRD) is not running.\n\n"
        );
    }
}
