//! calico: the Calico CNI network plugin, as Mesos UCR (and any CNI runtime) runs it for every
//! container on a `calico` network.
//!
//! ADD delegates address assignment to the IPAM plugin named in the configuration (exec'd
//! from `CNI_PATH` with the same configuration), creates a veth pair (`cali…` on the host,
//! `CNI_IFNAME` in the container), routes and proxy ARP, and writes the WorkloadEndpoint.
//! DEL undoes all of it idempotently; CHECK verifies it; STATUS and GC follow CNI 1.1.0.
//! Errors are CNI error documents on stdout with exit status 1.

use std::io::{Read, Write};

use serde_json::Value;

pub mod cni;
pub mod config;
pub mod dataplane;
pub mod labels;
pub mod plugin;

use cni::CniError;

/// Run the plugin with the process's stdin, stdout and environment; returns the exit status.
pub fn run() -> i32 {
    let env = |name: &str| std::env::var(name).ok();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let version = config::version_of(&stdin)
        .filter(|v| cni::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| cni::DEFAULT_VERSION.to_owned());
    let result = match read {
        Err(e) => Err(CniError::new(cni::CODE_IO, format!("reading stdin: {e}"))),
        Ok(_) => dispatch(&stdin, &env, &version),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match result {
        Ok(Some(doc)) => {
            let _ = writeln!(out, "{doc}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&version));
            let _ = out.flush();
            eprintln!(
                "calico: {}{}",
                e.msg,
                if e.details.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", e.details)
                }
            );
            1
        }
    }
}

/// Dispatch on `CNI_COMMAND`.
pub fn dispatch(
    stdin: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    version: &str,
) -> Result<Option<Value>, CniError> {
    let command = env("CNI_COMMAND")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            CniError::new(
                cni::CODE_INVALID_ENV,
                "required environment variable CNI_COMMAND is missing",
            )
        })?;
    match command.as_str() {
        "VERSION" => Ok(Some(cni::version_result(version))),
        "ADD" => plugin::add(&config::parse(stdin, "ADD", env)?).map(Some),
        "DEL" => plugin::del(&config::parse(stdin, "DEL", env)?).map(|()| None),
        "CHECK" => plugin::check(&config::parse(stdin, "CHECK", env)?).map(|()| None),
        "STATUS" => plugin::status(&config::parse(stdin, "STATUS", env)?).map(|()| None),
        "GC" => plugin::gc(&config::parse(stdin, "GC", env)?).map(|()| None),
        other => Err(CniError::new(
            cni::CODE_INVALID_ENV,
            format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"),
        )),
    }
}
