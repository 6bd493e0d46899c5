//! `calicoctl flows`: the flows the cluster's policy decided recently, read from every
//! host's calico-node, with the rule that decided each.

use std::time::Duration;

use calico_datastore::OpenMode;
use calico_flows::view::Flow;

use crate::cli::FlowsArgs;
use crate::commands::{CommandError, Context, io_error};

/// `--since`: a positive Go duration (`30s`, `5m`, `1h30m`), as calicoctl's durations are.
fn since(text: &str) -> Result<Duration, CommandError> {
    calico_api::parse_go_duration(text)
        .filter(|nanos| *nanos > 0.0)
        .map(|nanos| Duration::from_secs_f64(nanos / 1e9))
        .ok_or_else(|| {
            CommandError::new(format!(
                "--since {text:?}: expected a positive duration such as 30s, 5m or 1h"
            ))
        })
}

fn endpoint(p: &calico_flows::Peer, wide: bool) -> String {
    match (&p.app, wide) {
        (Some(app), true) => format!("{app} ({}, {})", p.name, p.ip),
        (Some(app), false) => app.clone(),
        (None, true) if p.name != p.ip.to_string() => format!("{} ({})", p.name, p.ip),
        (None, _) => p.name.clone(),
    }
}

/// Runs `calicoctl flows`.
pub fn run(args: &FlowsArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    let window = since(&args.since)?;
    let (wide, json) = match args.output.as_deref() {
        None => (false, false),
        Some("wide") => (true, false),
        Some("json") => (false, true),
        Some(other) => {
            return Err(CommandError::new(format!(
                "-o {other:?}: flows prints a table, wide or json"
            )));
        }
    };
    let ds = (ctx.open)(OpenMode::Existing)?;
    let (mut view, dir) = calico_flows::collect(ds.as_ref(), window)
        .map_err(|e| CommandError::new(format!("reading the cluster's flows: {e}")))?;
    if args.denied {
        view.flows.retain(|f| f.action == "deny");
    }
    for e in &view.errors {
        eprintln!("warning: {e}");
    }
    if !dir.nodes.is_empty() && view.errors.len() == dir.nodes.len() {
        return Err(CommandError::new(
            "no host's flows could be read (see the warnings above)",
        ));
    }
    if json {
        let text = serde_json::to_string_pretty(&view)
            .map_err(|e| CommandError::new(format!("formatting JSON: {e}")))?;
        return writeln!(ctx.out, "{text}").map_err(io_error);
    }
    let mut tw = tabwriter::TabWriter::new(Vec::new()).padding(2);
    let mut header = vec![
        "LAST SEEN",
        "HOST",
        "SOURCE",
        "DESTINATION",
        "PROTOCOL",
        "PORT",
        "ACTION",
        "DECIDED BY",
        "CONNECTIONS",
        "PACKETS",
        "BYTES",
    ];
    if wide {
        header.extend(["REPORTER", "FIRST SEEN"]);
    }
    let mut lines = vec![header.join("\t")];
    lines.extend(view.flows.iter().map(|f: &Flow| {
        let mut cells = vec![
            f.last_seen.clone(),
            f.host.clone(),
            endpoint(&f.source, wide),
            endpoint(&f.destination, wide),
            f.protocol.clone(),
            f.port.map_or_else(|| "-".into(), |p| p.to_string()),
            f.action.to_ascii_uppercase(),
            f.decided_by.text.clone(),
            f.connections.to_string(),
            f.packets.to_string(),
            f.bytes.to_string(),
        ];
        if wide {
            cells.extend([f.reporter.to_string(), f.first_seen.clone()]);
        }
        cells.join("\t")
    }));
    use std::io::Write as _;
    for l in lines {
        writeln!(tw, "{l}").map_err(io_error)?;
    }
    let table = tw
        .into_inner()
        .map_err(|e| CommandError::new(format!("formatting the table: {e}")))?;
    ctx.out.write_all(&table).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_nonsense_is_refused() {
        assert_eq!(since("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(since("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(since("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(since("1h30m").unwrap(), Duration::from_secs(5400));
        for bad in ["5", "m", "5d", "-5m", ""] {
            let e = since(bad).unwrap_err().to_string();
            assert!(e.contains("--since"), "{e}");
        }
    }
}
