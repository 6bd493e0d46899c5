//! `calicoctl ipam`: show, check, release, configure.

use std::io::Write;
use std::net::IpAddr;

use calico_ipam::check::{self, Report};
use calico_ipam::{Ipam, usage};

use crate::cli::{
    IpamArgs, IpamCheckArgs, IpamCommand, IpamConfigureArgs, IpamReleaseArgs, IpamShowArgs,
    IpamSplitArgs,
};
use crate::commands::{CommandError, Context};
use calico_datastore::OpenMode;

fn err(message: impl Into<String>) -> CommandError {
    CommandError::new(message)
}

fn ipam_err(e: calico_ipam::IpamError) -> CommandError {
    err(e.to_string())
}

fn io_err(e: std::io::Error) -> CommandError {
    err(format!("writing output: {e}"))
}

/// Run one ipam command.
pub fn run(args: IpamArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    match args.command {
        IpamCommand::Show(a) => show(&a, ctx),
        IpamCommand::Check(a) => check_cmd(&a, ctx),
        IpamCommand::Release(a) => release(&a, ctx),
        IpamCommand::Configure(a) => configure(&a, ctx),
        IpamCommand::Split(a) => split(&a, ctx),
    }
}

/// A table with upstream calicoctl's borders.
fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> Result<(), CommandError> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+";
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("| {c:<w$} "))
            .collect::<String>()
            + "|"
    };
    let head: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    writeln!(out, "{rule}\n{}\n{rule}", line(&head)).map_err(io_err)?;
    for r in rows {
        writeln!(out, "{}", line(r)).map_err(io_err)?;
    }
    writeln!(out, "{rule}").map_err(io_err)
}

fn pct(part: u128, total: u128) -> String {
    if total == 0 {
        return format!("{part} (0%)");
    }
    format!("{part} ({}%)", part * 100 / total)
}

fn show(a: &IpamShowArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    let ds = (ctx.open)(OpenMode::Existing)?;
    let ipam = Ipam::new(ds.as_ref());
    if let Some(ip) = &a.ip {
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| err(format!("invalid IP address {ip:?}")))?;
        match ipam.get_allocation(addr).map_err(ipam_err)? {
            // Upstream's wording, then what calico-rs adds (block and handle).
            None => writeln!(ctx.out, "IP {addr} is not currently assigned").map_err(io_err)?,
            Some((block, attr)) => {
                writeln!(ctx.out, "IP {addr} is in use").map_err(io_err)?;
                if attr.secondary.is_empty() {
                    writeln!(ctx.out, "No attributes defined").map_err(io_err)?;
                } else {
                    writeln!(ctx.out, "Attributes:").map_err(io_err)?;
                    for (k, v) in &attr.secondary {
                        writeln!(ctx.out, "  {k}: {v}").map_err(io_err)?;
                    }
                }
                writeln!(ctx.out, "Block: {block}").map_err(io_err)?;
                if let Some(h) = &attr.handle_id {
                    writeln!(ctx.out, "Handle: {h}").map_err(io_err)?;
                }
            }
        }
        return Ok(());
    }
    if a.show_configuration {
        let c = ipam.config().map_err(ipam_err)?;
        return table(
            ctx.out,
            &["PROPERTY", "VALUE"],
            &[
                vec!["StrictAffinity".into(), c.strict_affinity.to_string()],
                vec![
                    "AutoAllocateBlocks".into(),
                    c.auto_allocate_blocks.to_string(),
                ],
                vec!["MaxBlocksPerHost".into(), c.max_blocks_per_host.to_string()],
            ],
        );
    }
    let u = usage::usage(ds.as_ref()).map_err(ipam_err)?;
    if a.show_borrowed {
        let rows: Vec<Vec<String>> = u
            .borrowed
            .iter()
            .map(|b| {
                vec![
                    b.ip.to_string(),
                    b.borrowing_node.clone(),
                    b.block.to_string(),
                    b.block_owner.clone(),
                    b.handle_id.clone(),
                ]
            })
            .collect();
        return table(
            ctx.out,
            &["IP", "BORROWING-NODE", "BLOCK", "BLOCK OWNER", "HANDLE"],
            &rows,
        );
    }
    let mut rows = Vec::new();
    for p in &u.pools {
        rows.push(vec![
            "IP Pool".to_owned(),
            p.pool.net.to_string(),
            p.total.to_string(),
            pct(p.in_use, p.total),
            pct(p.total - p.in_use, p.total),
        ]);
        if a.show_blocks {
            for b in &p.blocks {
                rows.push(vec![
                    "Block".to_owned(),
                    b.cidr.to_string(),
                    b.total.to_string(),
                    pct(b.in_use, b.total),
                    pct(b.total - b.in_use, b.total),
                ]);
            }
        }
    }
    if a.show_blocks {
        for b in &u.orphan_blocks {
            rows.push(vec![
                "Block (no pool)".to_owned(),
                b.cidr.to_string(),
                b.total.to_string(),
                pct(b.in_use, b.total),
                pct(b.total - b.in_use, b.total),
            ]);
        }
    }
    table(
        ctx.out,
        &["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"],
        &rows,
    )
}

fn check_cmd(a: &IpamCheckArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    let ds = (ctx.open)(OpenMode::Existing)?;
    let out = &mut *ctx.out;
    writeln!(out, "Checking IPAM for inconsistencies...\n").map_err(io_err)?;
    let r = check::check(ds.as_ref()).map_err(ipam_err)?;
    let lines = [
        format!("Found {} IPAM blocks.", r.blocks),
        format!("Found {} IPAM handles.", r.handles),
        format!("Found {} workload endpoints.", r.workload_endpoints),
        format!("Found {} allocated IP addresses.", r.allocations.len()),
        format!(
            "Found {} leaked IP addresses (allocated, but used by no workload endpoint).",
            r.leaked.len()
        ),
        format!(
            "Found {} allocations whose handle is missing.",
            r.missing_handles.len()
        ),
        format!(
            "Found {} handles without allocations.",
            r.orphan_handles.len()
        ),
        format!(
            "Found {} handles whose counts disagree with their blocks.",
            r.mismatched_handles.len()
        ),
        format!(
            "Found {} blocks affine to nodes that no longer exist.",
            r.orphan_blocks.len()
        ),
        format!(
            "Found {} workload endpoints whose interface is gone (their node removes them after its grace period).",
            r.stale_endpoints.len()
        ),
    ];
    for l in &lines {
        writeln!(out, "{l}").map_err(io_err)?;
    }
    if a.show_all_ips {
        writeln!(out, "\nAllocated IP addresses:").map_err(io_err)?;
        for i in &r.allocations {
            writeln!(
                out,
                "  {}  handle={}  node={}",
                i.ip,
                i.handle_id.as_deref().unwrap_or("-"),
                i.attributes.get("node").map_or("-", String::as_str)
            )
            .map_err(io_err)?;
        }
    }
    if a.show_problem_ips {
        writeln!(out, "\nProblems:").map_err(io_err)?;
        for i in &r.leaked {
            writeln!(
                out,
                "  {} leaked (handle {})",
                i.ip,
                i.handle_id.as_deref().unwrap_or("-")
            )
            .map_err(io_err)?;
        }
        for i in &r.missing_handles {
            writeln!(
                out,
                "  {} has a missing handle ({})",
                i.ip,
                i.handle_id.as_deref().unwrap_or("none")
            )
            .map_err(io_err)?;
        }
        for h in &r.orphan_handles {
            writeln!(out, "  handle {h} holds no address").map_err(io_err)?;
        }
        for h in &r.mismatched_handles {
            writeln!(out, "  handle {h} has wrong counts").map_err(io_err)?;
        }
        for b in &r.orphan_blocks {
            writeln!(
                out,
                "  block {} is affine to missing node {}",
                b.block, b.node
            )
            .map_err(io_err)?;
        }
        for e in &r.stale_endpoints {
            writeln!(out, "  workload endpoint {e} has no interface on its node")
                .map_err(io_err)?;
        }
    }
    writeln!(out, "\nCheck complete; found {} problems.", r.problems()).map_err(io_err)?;
    if let Some(path) = &a.output {
        let text = serde_json::to_string_pretty(&r).map_err(|e| err(e.to_string()))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| err(format!("writing report {}: {e}", path.display())))?;
        writeln!(out, "Report written to {}", path.display()).map_err(io_err)?;
    }
    // Scripts rely on the exit status: problems found is a failure.
    match r.problems() {
        0 => Ok(()),
        n => Err(err(format!(
            "ipam check found {n} problem(s); see above (`--show-problem-ips` lists them, \
             `calicoctl ipam release --from-report` releases leaked addresses)"
        ))),
    }
}

fn release(a: &IpamReleaseArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    let ds = (ctx.open)(OpenMode::Existing)?;
    if !a.from_report.is_empty() {
        let mut reports = Vec::new();
        for path in &a.from_report {
            let text = std::fs::read_to_string(path)
                .map_err(|e| err(format!("reading report {}: {e}", path.display())))?;
            let report: Report = serde_json::from_str(&text)
                .map_err(|e| err(format!("parsing report {}: {e}", path.display())))?;
            if report.version != check::REPORT_VERSION {
                return Err(err(format!(
                    "report {} has version {}, expected {}",
                    path.display(),
                    report.version,
                    check::REPORT_VERSION
                )));
            }
            reports.push(report);
        }
        if !calico_ipam::pools::is_locked(ds.as_ref()).map_err(ipam_err)? {
            if !a.force {
                return Err(err(
                    "the datastore is not locked: run `calicoctl datastore migrate lock` first \
                     (or re-run with --force)",
                ));
            }
            writeln!(
                ctx.out,
                "WARNING: the datastore is not locked; releasing anyway (--force)"
            )
            .map_err(io_err)?;
        }
        let Some(report) = Report::common(reports) else {
            return Err(err("no report given"));
        };
        let o = check::release_leaks(ds.as_ref(), &report).map_err(ipam_err)?;
        for (what, why) in &o.skipped {
            writeln!(ctx.out, "Skipped {what}: {why}").map_err(io_err)?;
        }
        writeln!(
            ctx.out,
            "Released {} leaked IP address(es), deleted {} handle(s), released {} block(s) of missing nodes.",
            o.released.len(),
            o.handles_deleted.len(),
            o.blocks_released.len()
        )
        .map_err(io_err)?;
        return Ok(());
    }
    let Some(ip) = &a.ip else {
        return Err(err("give --ip or --from-report"));
    };
    let addr: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| err(format!("invalid IP address {ip:?}")))?;
    let (live, _) = check::endpoint_ips(ds.as_ref()).map_err(ipam_err)?;
    if live.contains(&addr) {
        return Err(err(format!(
            "IP {addr} is in use by a workload endpoint; not released"
        )));
    }
    let not = Ipam::new(ds.as_ref())
        .release_ips(&[addr])
        .map_err(ipam_err)?;
    if not.contains(&addr) {
        return Err(err(format!("IP address {addr} is not assigned")));
    }
    writeln!(ctx.out, "Successfully released IP address {addr}").map_err(io_err)
}

fn configure(a: &IpamConfigureArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    if a.strict_affinity.is_none() && a.max_blocks_per_host.is_none() {
        return Err(err(
            "nothing to configure: give --strictaffinity and/or --max-blocks-per-host",
        ));
    }
    let ds = (ctx.open)(OpenMode::Create)?;
    let c = Ipam::new(ds.as_ref())
        .update_config(|c| {
            if let Some(s) = a.strict_affinity {
                c.strict_affinity = s;
            }
            if let Some(m) = a.max_blocks_per_host {
                c.max_blocks_per_host = m;
            }
        })
        .map_err(ipam_err)?;
    if a.strict_affinity.is_some() {
        writeln!(
            ctx.out,
            "Successfully set StrictAffinity to: {}",
            c.strict_affinity
        )
        .map_err(io_err)?;
    }
    if a.max_blocks_per_host.is_some() {
        writeln!(
            ctx.out,
            "Successfully set MaxBlocksPerHost to: {}",
            c.max_blocks_per_host
        )
        .map_err(io_err)?;
    }
    Ok(())
}

fn split(a: &IpamSplitArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    let which = match (&a.cidr, &a.name) {
        (Some(c), _) => calico_ipam::pools::PoolRef::Cidr(
            c.trim()
                .parse()
                .map_err(|_| err(format!("--cidr {c:?} is not a CIDR")))?,
        ),
        (None, Some(n)) => calico_ipam::pools::PoolRef::Name(n.clone()),
        (None, None) => return Err(err("give --cidr or --name")),
    };
    let ds = (ctx.open)(OpenMode::Existing)?;
    let made = calico_ipam::pools::split_pool(ds.as_ref(), &which, a.parts).map_err(ipam_err)?;
    writeln!(
        ctx.out,
        "Successfully split the IP pool into {} pools:",
        made.len()
    )
    .map_err(io_err)?;
    for (name, net) in made {
        writeln!(ctx.out, "  {name}: {net}").map_err(io_err)?;
    }
    writeln!(ctx.out, "You may now unlock the data store.").map_err(io_err)
}
