//! calicoctl: the command-line client for projectcalico.org/v3 resources. The binaries
//! `calicoctl` and `dcos-calico` (the DC/OS CLI plugin) are thin wrappers around [`run`].

pub mod checksystem;
pub mod cli;
pub mod commands;
pub mod datastore_cmd;
pub mod diags;
pub mod diags_cmd;
pub mod flows_cmd;
pub mod input;
pub mod ipam_cmd;
pub mod node_cmd;
pub mod output;
pub mod overlay;
pub mod overlay_cmd;
pub mod policy_cmd;
pub mod template;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

/// Parse `args` (including the program name), run the command, print errors to stderr and
/// return the process exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            // clap's own printing: colours on a terminal, plain text otherwise.
            let _ = e.print();
            return code;
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    execute(
        cli,
        &|name| std::env::var(name).ok(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    )
}

/// [`run`] with the environment read through `env` and output written to `out` and `err`, so
/// that other programs' tests can run calicoctl in-process against a chosen datastore without
/// touching the process environment, which concurrent tests share.
pub fn run_with<I, T>(
    args: I,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match cli::Cli::try_parse_from(args) {
        Ok(cli) => execute(cli, env, out, err),
        Err(e) => {
            // Help and version are successes on stdout, usage errors failures on stderr.
            if e.use_stderr() {
                let _ = write!(err, "{}", e.render());
                1
            } else {
                let _ = write!(out, "{}", e.render());
                0
            }
        }
    }
}

fn execute(
    cli: cli::Cli,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let config_path = cli.config.clone();
    if matches!(cli.log_level.as_str(), "debug" | "trace") {
        let said =
            match calico_datastore::DatastoreConfig::load_with_env(config_path.as_deref(), env) {
                Ok(cfg) => format!("datastore: {}", cfg.datastore_type),
                Err(e) => format!("datastore configuration: {e}"),
            };
        let _ = writeln!(
            err,
            "level=debug component=calicoctl msg=\"{}\"",
            said.replace('"', "'")
        );
    }
    let open = move |mode: calico_datastore::OpenMode| -> Result<Box<dyn calico_datastore::Datastore>, commands::CommandError> {
        let cfg = calico_datastore::DatastoreConfig::load_with_env(config_path.as_deref(), env)
            .map_err(|e| {
                commands::CommandError::new(format!("Failed to create Calico API client: {e}"))
            })?;
        calico_datastore::open_with(&cfg, mode).map_err(|e| {
            commands::CommandError::new(format!("Failed to create Calico API client: {e}"))
        })
    };
    let mut ctx = commands::Context { open: &open, out };
    let result = commands::run(cli.command, &mut ctx);
    let _ = ctx.out.flush();
    match result {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            e.code
        }
    }
}
