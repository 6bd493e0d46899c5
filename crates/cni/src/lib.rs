//! calico: the Calico CNI network plugin, as Mesos UCR (and any CNI runtime) runs it for every
//! container on a `calico` network.
//!
//! ADD delegates address assignment to the IPAM plugin named in the configuration (exec'd
//! from `CNI_PATH` with the same configuration), creates a veth pair (`cali…` on the host,
//! `CNI_IFNAME` in the container), routes and proxy ARP, and writes the WorkloadEndpoint.
//! DEL undoes all of it idempotently; CHECK verifies it; STATUS and GC follow CNI 1.1.0.
//! Errors are CNI error documents on stdout with exit status 1.

use serde_json::Value;

pub mod cni;
pub mod config;
pub mod dataplane;
pub mod labels;
pub mod plugin;

use cni::CniError;

/// Run the plugin with the process's stdin, stdout and environment; returns the exit status.
pub fn run() -> i32 {
    calico_cni_common::run("calico", &cni::VERSIONS, dispatch)
}

/// Dispatch on `CNI_COMMAND`.
pub fn dispatch(
    stdin: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    version: &str,
) -> Result<Option<Value>, CniError> {
    match calico_cni_common::command(env)?.as_str() {
        "VERSION" => Ok(Some(cni::VERSIONS.result(version))),
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
