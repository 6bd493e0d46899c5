//! `dcos-calico`: the DC/OS CLI plugin. `dcos calico <args>` runs this binary as
//! `dcos-calico calico <args>`; it behaves exactly like `calicoctl <args>`.
//!
//! From outside the cluster it reads the datastore configuration the operator keeps with the
//! DC/OS CLI's own files, `$DCOS_DIR/calico/calicoctl.cfg` (`~/.dcos/calico/calicoctl.cfg`):
//! the cluster's etcd endpoints and TLS files. `-c/--config`, then calicoctl's usual places
//! and variables, still win.

use std::ffi::OsString;
use std::path::PathBuf;

/// The plugin's datastore configuration beside the DC/OS CLI's files, when present.
fn plugin_config() -> Option<PathBuf> {
    let dir = std::env::var_os("DCOS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".dcos")))?;
    let path = dir.join("calico").join("calicoctl.cfg");
    path.is_file().then_some(path)
}

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    // The DC/OS CLI passes the subcommand name first; calicoctl does not expect it.
    if args.get(1).is_some_and(|a| a == "calico") {
        args.remove(1);
    }
    if args.get(1).is_some_and(|a| a == "--info") {
        println!("Manage Calico networking and network policy (calicoctl)");
        return;
    }
    args[0] = OsString::from("dcos calico");
    let has_config = args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == "-c" || a == "--config" || a.starts_with("--config=") || a.starts_with("-c=")
    });
    if !has_config && let Some(cfg) = plugin_config() {
        args.insert(1, cfg.into_os_string());
        args.insert(1, OsString::from("--config"));
    }
    std::process::exit(calicoctl::run(args));
}
