//! calico-ipam: the Calico CNI IPAM plugin.
//!
//! `CNI_COMMAND=ADD` allocates addresses for the container (`CNI_CONTAINERID`, `CNI_IFNAME`)
//! under the handle `<network>.<container id>` and prints the CNI result; `DEL` releases the
//! handle's addresses (idempotent); `CHECK` verifies the allocation exists; `VERSION` lists the
//! supported versions. Errors are CNI error documents on stdout with a non-zero exit status. No
//! network namespace is needed: the plugin only talks to the datastore.

use calico_cni_common::open_store;
use calico_ipam::{AssignArgs, Ipam};
use serde_json::Value;

mod cni;
mod config;

use cni::{CniError, ipam_error};
use config::Request;

fn main() {
    std::process::exit(calico_cni_common::run(
        "calico-ipam",
        &cni::VERSIONS,
        dispatch,
    ));
}

fn dispatch(
    stdin: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    version: &str,
) -> Result<Option<Value>, CniError> {
    match calico_cni_common::command(env)?.as_str() {
        "VERSION" => Ok(Some(cni::VERSIONS.result(version))),
        "ADD" => add(&config::parse(stdin, "ADD", env)?).map(Some),
        "DEL" => del(&config::parse(stdin, "DEL", env)?).map(|()| None),
        "CHECK" => check(&config::parse(stdin, "CHECK", env)?).map(|()| None),
        other => Err(CniError::new(
            cni::CODE_INVALID_ENV,
            format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION"),
        )),
    }
}

fn add(req: &Request) -> Result<Value, CniError> {
    let ds = open_store(&req.datastore, cni::CODE_TRY_AGAIN)?;
    let ipam = Ipam::new(ds.get());
    let handle = req.handle_id();
    // A repeated ADD for the same attachment gets the same addresses back, never a second set.
    let existing = ipam.ips_by_handle(&handle).map_err(ipam_error)?;
    if !existing.is_empty() {
        return Ok(cni::add_result(&req.cni_version, &existing));
    }
    let ips = if req.static_ips.is_empty() {
        let args = AssignArgs {
            handle_id: handle,
            node: req.node.clone(),
            num_v4: usize::from(req.assign_ipv4),
            num_v6: usize::from(req.assign_ipv6),
            v4_pools: req.ipv4_pools.clone(),
            v6_pools: req.ipv6_pools.clone(),
            attrs: req.attributes(),
            use_: calico_ipam::pools::Use::Workload,
        };
        ipam.auto_assign(&args).map_err(ipam_error)?.ips()
    } else {
        let mut ips = Vec::with_capacity(req.static_ips.len());
        for ip in &req.static_ips {
            match ipam.assign_ip(*ip, &handle, req.attributes(), &req.node) {
                Ok(a) => ips.push(a.ip),
                Err(e) => {
                    let _ = ipam.release_by_handle(&handle);
                    return Err(ipam_error(e));
                }
            }
        }
        ips
    };
    Ok(cni::add_result(&req.cni_version, &ips))
}

fn del(req: &Request) -> Result<(), CniError> {
    let ds = open_store(&req.datastore, cni::CODE_TRY_AGAIN)?;
    Ipam::new(ds.get())
        .release_by_handle(&req.handle_id())
        .map_err(ipam_error)?;
    Ok(())
}

fn check(req: &Request) -> Result<(), CniError> {
    if !cni::has_check(&req.cni_version) {
        return Err(CniError::new(
            cni::CODE_INCOMPATIBLE_VERSION,
            format!(
                "CHECK is not supported by CNI version {}; it needs 0.4.0 or later",
                req.cni_version
            ),
        ));
    }
    let ds = open_store(&req.datastore, cni::CODE_TRY_AGAIN)?;
    let handle = req.handle_id();
    let held = Ipam::new(ds.get())
        .ips_by_handle(&handle)
        .map_err(ipam_error)?;
    if held.is_empty() {
        return Err(CniError::new(
            cni::CODE_ALLOCATION_MISSING,
            format!("no addresses are allocated to {handle}"),
        ));
    }
    if let Some(prev) = &req.prev_result {
        for ip in cni::result_ips(prev) {
            if !held.contains(&ip) {
                return Err(CniError::new(
                    cni::CODE_ALLOCATION_MISSING,
                    format!("{ip} from prevResult is not allocated to {handle}"),
                ));
            }
        }
    }
    Ok(())
}
