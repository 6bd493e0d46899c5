//! calico-ipam: the Calico CNI IPAM plugin.
//!
//! `CNI_COMMAND=ADD` allocates addresses for the container (`CNI_CONTAINERID`, `CNI_IFNAME`)
//! under the handle `<network>.<container id>` and prints the CNI result; `DEL` releases the
//! handle's addresses (idempotent); `CHECK` verifies the allocation exists; `VERSION` lists the
//! supported versions. Errors are CNI error documents on stdout with a non-zero exit status. No
//! network namespace is needed: the plugin only talks to the datastore.

use std::io::{Read, Write};

use calico_ipam::{AssignArgs, Ipam};
use serde_json::Value;

mod cni;
mod config;

use cni::CniError;
use config::Request;

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let env = |name: &str| std::env::var(name).ok();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    // The version errors are reported in: the request's, when it can be read.
    let version = serde_json::from_slice::<Value>(&stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
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
            eprintln!("calico-ipam: {}", e.msg);
            1
        }
    }
}

fn dispatch(
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
        "VERSION" => {
            let v = if cni::SUPPORTED_VERSIONS.contains(&version) {
                version
            } else {
                cni::DEFAULT_VERSION
            };
            Ok(Some(cni::version_result(v)))
        }
        "ADD" => add(&config::parse(stdin, "ADD", env)?).map(Some),
        "DEL" => del(&config::parse(stdin, "DEL", env)?).map(|()| None),
        "CHECK" => check(&config::parse(stdin, "CHECK", env)?).map(|()| None),
        other => Err(CniError::new(
            cni::CODE_INVALID_ENV,
            format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION"),
        )),
    }
}

/// The datastore, left open when the process exits: closing the last connection to the
/// embedded store checkpoints its write-ahead log and fsyncs, which would cost a short-lived
/// plugin process far more than its whole allocation. Exiting without closing is as safe as a
/// crash, which the store's WAL mode handles; SQLite still checkpoints as the log grows.
struct Store(Option<Box<dyn calico_datastore::Datastore>>);

impl Store {
    fn get(&self) -> &dyn calico_datastore::Datastore {
        self.0.as_deref().expect("the store is present until drop")
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(ds) = self.0.take() {
            std::mem::forget(ds);
        }
    }
}

fn open(req: &Request) -> Result<Store, CniError> {
    calico_datastore::open(&req.datastore)
        .map(|ds| Store(Some(ds)))
        .map_err(|e| {
            let code = match e {
                calico_datastore::DatastoreError::Unsupported(_) => cni::CODE_INVALID_CONFIG,
                _ => cni::CODE_TRY_AGAIN,
            };
            CniError::new(code, format!("opening the datastore: {e}"))
        })
}

fn add(req: &Request) -> Result<Value, CniError> {
    let ds = open(req)?;
    let ipam = Ipam::new(ds.get());
    let handle = req.handle_id();
    // A repeated ADD for the same attachment gets the same addresses back, never a second set.
    let existing = ipam.ips_by_handle(&handle)?;
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
        ipam.auto_assign(&args)?.ips()
    } else {
        let mut ips = Vec::with_capacity(req.static_ips.len());
        for ip in &req.static_ips {
            match ipam.assign_ip(*ip, &handle, req.attributes(), &req.node) {
                Ok(a) => ips.push(a.ip),
                Err(e) => {
                    let _ = ipam.release_by_handle(&handle);
                    return Err(e.into());
                }
            }
        }
        ips
    };
    Ok(cni::add_result(&req.cni_version, &ips))
}

fn del(req: &Request) -> Result<(), CniError> {
    let ds = open(req)?;
    Ipam::new(ds.get()).release_by_handle(&req.handle_id())?;
    Ok(())
}

fn check(req: &Request) -> Result<(), CniError> {
    if cni::before_check(&req.cni_version) {
        return Err(CniError::new(
            cni::CODE_INCOMPATIBLE_VERSION,
            format!(
                "CHECK is not supported by CNI version {}; it needs 0.4.0 or later",
                req.cni_version
            ),
        ));
    }
    let ds = open(req)?;
    let handle = req.handle_id();
    let held = Ipam::new(ds.get()).ips_by_handle(&handle)?;
    if held.is_empty() {
        return Err(CniError::new(
            cni::CODE_ALLOCATION_MISSING,
            format!("no addresses are allocated to {handle}"),
        ));
    }
    if let Some(prev) = &req.prev_result {
        for ip in cni::prev_result_ips(prev) {
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
