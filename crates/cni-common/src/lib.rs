//! The CNI protocol plumbing both Calico plugins (`calico`, `calico-ipam`) share: error
//! documents and codes, version negotiation, result pieces, the request's JSON and environment,
//! the node name, datastore settings from the configuration, and the process entry point.

#[cfg(feature = "datastore")]
mod datastore;
mod error;
mod input;
mod result;
pub mod testing;
mod version;

#[cfg(feature = "datastore")]
pub use datastore::*;
pub use error::*;
pub use input::*;
pub use result::*;
pub use version::*;

use std::io::{Read, Write};

/// Run a plugin: read stdin, pick the version documents are written in (the request's when
/// supported, else the default), call `dispatch` with stdin, the process environment and that
/// version, print its result or error document on stdout; returns the exit status.
pub fn run(
    plugin: &str,
    versions: &Versions,
    dispatch: impl FnOnce(
        &[u8],
        &dyn Fn(&str) -> Option<String>,
        &str,
    ) -> Result<Option<serde_json::Value>, CniError>,
) -> i32 {
    let env = |name: &str| std::env::var(name).ok();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let requested = version_of(&stdin);
    let version = versions.negotiate(requested.as_deref());
    let result = match read {
        Err(e) => Err(CniError::new(CODE_IO, format!("reading stdin: {e}"))),
        Ok(_) => dispatch(&stdin, &env, version),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // A closed stdout leaves only the exit status to report with; there is nothing else to do.
    match result {
        Ok(Some(doc)) => {
            let _ = writeln!(out, "{doc}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(version));
            let _ = out.flush();
            if e.details.is_empty() {
                eprintln!("{plugin}: {}", e.msg);
            } else {
                eprintln!("{plugin}: {} ({})", e.msg, e.details);
            }
            1
        }
    }
}
