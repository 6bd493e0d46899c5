//! calicoctl: the command-line client for projectcalico.org/v3 resources. The binaries
//! `calicoctl` and `dcos-calico` (the DC/OS CLI plugin) are thin wrappers around [`run`].

pub mod cli;
pub mod commands;
pub mod input;
pub mod ipam_cmd;
pub mod output;
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
            let _ = e.print();
            return code;
        }
    };
    let config_path = cli.config.clone();
    let open = move || -> Result<Box<dyn calico_datastore::Datastore>, commands::CommandError> {
        let cfg = calico_datastore::DatastoreConfig::load(config_path.as_deref()).map_err(|e| {
            commands::CommandError {
                message: format!("Failed to create Calico API client: {e}"),
            }
        })?;
        calico_datastore::open(&cfg).map_err(|e| commands::CommandError {
            message: format!("Failed to create Calico API client: {e}"),
        })
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut ctx = commands::Context {
        open: &open,
        out: &mut out,
    };
    let result = commands::run(cli.command, &mut ctx);
    let _ = out.flush();
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
