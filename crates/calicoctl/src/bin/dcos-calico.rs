//! `dcos-calico`: the DC/OS CLI plugin. `dcos calico <args>` runs this binary as
//! `dcos-calico calico <args>`; it behaves exactly like `calicoctl <args>`.

use std::ffi::OsString;

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
    std::process::exit(calicoctl::run(args));
}
