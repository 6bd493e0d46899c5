//! The commands: ADD, DEL, CHECK, STATUS, GC.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use calico_api::names::WorkloadEndpointIdentifiers;
use calico_api::v3;
use calico_datastore::{Datastore, DatastoreError, Key, Kind};
use calico_netlink::real::{NetlinkSocket, NetnsFile, ProcSysctl};
use calico_netlink::{Netlink, format_mac};
use serde_json::Value;

use crate::cni::{self, AddResult, CniError};
use crate::config::Request;
use crate::dataplane::{self, Plan};
use crate::labels;
use calico_cni_common::open_store;

/// Names derived from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The endpoint's namespace.
    pub namespace: String,
    /// The endpoint's labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The WorkloadEndpoint name.
    pub wep: String,
    /// The host-side veth.
    pub host_veth: String,
}

/// The names for `req`.
pub fn names(req: &Request) -> Result<Names, CniError> {
    let (labels, namespace) = labels::from_mesos(&req.mesos_labels);
    let ids = WorkloadEndpointIdentifiers {
        node: req.node.clone(),
        orchestrator: labels::ORCHESTRATOR_MESOS.to_owned(),
        workload: req.container_id.clone(),
        endpoint: req.ifname.clone(),
        ..Default::default()
    };
    let wep = ids
        .calculate_name()
        .map_err(|e| CniError::new(cni::CODE_INVALID_ENV, format!("naming the endpoint: {e}")))?;
    Ok(Names {
        host_veth: labels::veth_name(&namespace, &req.container_id),
        namespace,
        labels,
        wep,
    })
}

fn ds_err(doing: &str, e: &DatastoreError) -> CniError {
    CniError::new(cni::CODE_TRY_AGAIN, format!("{doing}: {e}"))
}

fn find_plugin(req: &Request, name: &str) -> Result<PathBuf, CniError> {
    req.cni_path
        .iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                cni::CODE_INVALID_CONFIG,
                format!(
                    "IPAM plugin {name} not found in CNI_PATH {}",
                    std::env::join_paths(&req.cni_path)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
            )
        })
}

/// Exec the IPAM plugin with `command`, the same configuration and the process environment
/// (with `overrides`); its result on success, its error document as ours on failure.
fn delegate(
    req: &Request,
    command: &str,
    overrides: &[(&str, &str)],
) -> Result<Option<Value>, CniError> {
    let Some(ipam) = &req.ipam_type else {
        return Err(CniError::new(
            cni::CODE_INVALID_CONFIG,
            "ipam.type is missing",
        ));
    };
    let path = find_plugin(req, ipam)?;
    let mut child = Command::new(&path)
        .env("CNI_COMMAND", command)
        .envs(overrides.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            CniError::new(
                cni::CODE_IO,
                format!("running IPAM plugin {}: {e}", path.display()),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading gives EPIPE; its exit status tells the story.
        let _ = stdin.write_all(&ipam_stdin(req));
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(cni::CODE_IO, format!("waiting for IPAM plugin {ipam}: {e}")))?;
    let doc: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if out.status.success() {
        return Ok(doc);
    }
    let (code, msg) = doc
        .as_ref()
        .map(|d| {
            (
                d.get("code")
                    .and_then(Value::as_u64)
                    .and_then(|c| u32::try_from(c).ok())
                    .unwrap_or(cni::CODE_INTERNAL),
                d.get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .unwrap_or((
            cni::CODE_INTERNAL,
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        ));
    Err(CniError::new(
        code,
        format!("IPAM plugin {ipam} {command}: {msg}"),
    ))
}

/// The configuration for the IPAM plugin: ours, except that 1.1.0 is passed on as 1.0.0
/// (the result format is the same, and IPAM plugins such as calico-ipam and host-local stop
/// at 1.0.0).
fn ipam_stdin(req: &Request) -> Vec<u8> {
    if req.cni_version != "1.1.0" {
        return req.conf_bytes.clone();
    }
    match serde_json::from_slice::<Value>(&req.conf_bytes) {
        Ok(mut v) => {
            v["cniVersion"] = Value::from("1.0.0");
            if let Some(prev) = v.get_mut("prevResult").filter(|p| p.is_object()) {
                prev["cniVersion"] = Value::from("1.0.0");
            }
            serde_json::to_vec(&v).unwrap_or_else(|_| req.conf_bytes.clone())
        }
        Err(_) => req.conf_bytes.clone(),
    }
}

fn open_netns(req: &Request) -> Result<NetnsFile, CniError> {
    NetnsFile::open(Path::new(&req.netns)).map_err(|e| {
        CniError::new(
            cni::CODE_INVALID_ENV,
            format!("opening network namespace CNI_NETNS={}: {e}", req.netns),
        )
    })
}

fn wep_document(req: &Request, n: &Names, ips: &[IpAddr], mac: &str) -> Result<Value, CniError> {
    let mut wep = v3::WorkloadEndpoint {
        api_version: "projectcalico.org/v3".to_owned(),
        kind: Kind::WorkloadEndpoint.as_str().to_owned(),
        ..Default::default()
    };
    wep.metadata.name.clone_from(&n.wep);
    wep.metadata.namespace.clone_from(&n.namespace);
    wep.metadata.labels.clone_from(&n.labels);
    let s = &mut wep.spec;
    s.orchestrator = labels::ORCHESTRATOR_MESOS.to_owned();
    s.workload.clone_from(&req.container_id);
    s.node.clone_from(&req.node);
    s.container_id.clone_from(&req.container_id);
    s.endpoint.clone_from(&req.ifname);
    s.interface_name.clone_from(&n.host_veth);
    s.mac = mac.to_owned();
    s.profiles = vec![req.profile.clone()];
    s.ip_networks = ips
        .iter()
        .map(|ip| format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 }))
        .collect();
    if let Some(rc) = &req.conf.runtime_config {
        for pm in &rc.port_mappings {
            let port = serde_json::json!({
                "name": "",
                "protocol": pm.protocol.clone().unwrap_or_else(|| "tcp".to_owned()).to_ascii_uppercase(),
                "port": pm.container_port,
                "hostPort": pm.host_port,
                "hostIP": pm.host_ip.clone().unwrap_or_default(),
            });
            s.ports.push(serde_json::from_value(port).map_err(|e| {
                CniError::new(
                    cni::CODE_INVALID_CONFIG,
                    format!("runtimeConfig.portMappings: {e}"),
                )
            })?);
        }
    }
    serde_json::to_value(&wep)
        .map_err(|e| CniError::new(cni::CODE_INTERNAL, format!("encoding the endpoint: {e}")))
}

/// Best-effort undo of a partial ADD; returns what failed.
fn rollback(
    req: &Request,
    n: &Names,
    host: Option<&mut NetlinkSocket>,
    ds: Option<&dyn Datastore>,
    wep_written: bool,
) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(host) = host
        && let Err(e) = host.delete_link(&n.host_veth)
    {
        errors.push(e.to_string());
    }
    if wep_written
        && let Some(ds) = ds
        && let Err(e) = ds.delete(
            &Key::namespaced(Kind::WorkloadEndpoint, &n.namespace, &n.wep),
            None,
        )
        && !matches!(e, DatastoreError::NotFound { .. })
    {
        errors.push(format!("deleting endpoint {}: {e}", n.wep));
    }
    if let Err(e) = delegate(req, "DEL", &[]) {
        errors.push(e.msg);
    }
    errors
}

/// ADD: IPAM, interfaces, endpoint; everything undone on failure.
pub fn add(req: &Request) -> Result<Value, CniError> {
    let n = names(req)?;
    // Everything that can fail without side effects comes first.
    let netns = open_netns(req)?;
    let store = open_store(&req.datastore, cni::CODE_TRY_AGAIN)?;
    let mut host = NetlinkSocket::new().map_err(|e| cni::kernel(&e))?;
    if host
        .link(&n.host_veth)
        .map_err(|e| cni::kernel(&e))?
        .is_some()
    {
        return Err(CniError::new(
            cni::CODE_INTERNAL,
            format!(
                "interface {} for container {} already exists: DEL the container first",
                n.host_veth, req.container_id
            ),
        ));
    }
    let mut container = NetlinkSocket::new_in(&netns).map_err(|e| {
        CniError::new(
            cni::CODE_INVALID_ENV,
            format!("entering network namespace {}: {e}", req.netns),
        )
    })?;

    let ipam_result = delegate(req, "ADD", &[])?.unwrap_or(Value::Null);
    let ips = cni::result_ips(&ipam_result);
    let fail = |err: CniError, host: &mut NetlinkSocket, wep_written: bool| {
        let undo = rollback(req, &n, Some(host), Some(store.get()), wep_written);
        if undo.is_empty() {
            err
        } else {
            let d = format!("rollback also failed: {}", undo.join("; "));
            err.with_details(d)
        }
    };
    if ips.is_empty() {
        let e = CniError::new(
            cni::CODE_INTERNAL,
            format!("IPAM plugin returned no addresses: {ipam_result}"),
        );
        return Err(fail(e, &mut host, false));
    }
    let plan = Plan {
        host_veth: n.host_veth.clone(),
        ifname: req.ifname.clone(),
        mtu: req.mtu,
        ips: ips.clone(),
    };
    let mac = match dataplane::setup(
        &mut host,
        &mut ProcSysctl,
        &mut container,
        calico_netlink::Netns::fd(&netns),
        &plan,
    ) {
        Ok(mac) => format_mac(&mac),
        Err(e) => return Err(fail(cni::kernel(&e), &mut host, false)),
    };
    let doc = match wep_document(req, &n, &ips, &mac) {
        Ok(d) => d,
        Err(e) => return Err(fail(e, &mut host, false)),
    };
    let key = Key::namespaced(Kind::WorkloadEndpoint, &n.namespace, &n.wep);
    if let Err(e) = store
        .get()
        .write_batch(vec![calico_datastore::WriteOp::Upsert { key, value: doc }])
    {
        return Err(fail(
            ds_err(&format!("writing endpoint {}", n.wep), &e),
            &mut host,
            true,
        ));
    }
    if let Some(secs) = req.conf.policy_setup_timeout_seconds.filter(|s| *s > 0) {
        let dir = req
            .conf
            .endpoint_status_dir
            .clone()
            .unwrap_or_else(|| crate::config::DEFAULT_ENDPOINT_STATUS_DIR.into());
        let status = dir.join(&n.namespace).join(&n.wep);
        if !wait_for_file(&status, std::time::Duration::from_secs(secs)) {
            // As upstream: the container starts anyway; its interface stays
            // dropped (fail closed) until felix programs it.
            eprintln!(
                "calico: policy for {} not in force after {secs} s (no {}); continuing",
                n.wep,
                status.display()
            );
        }
    }
    Ok(cni::add_result(
        &req.cni_version,
        &AddResult {
            host_ifname: n.host_veth,
            host_mac: format_mac(&calico_netlink::CALICO_HOST_MAC),
            ifname: req.ifname.clone(),
            mac,
            sandbox: req.netns.clone(),
            ips,
        },
    ))
}

/// Whether `path` exists within `timeout` (checked every 20 ms).
pub fn wait_for_file(path: &std::path::Path, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if path.exists() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// DEL: remove the veth (and with it the routes), the endpoint and the addresses; anything
/// already gone is fine. Every step is tried; failures are reported together.
pub fn del(req: &Request) -> Result<(), CniError> {
    let n = names(req)?;
    let mut errors: Vec<CniError> = Vec::new();
    match NetlinkSocket::new().and_then(|mut h| h.delete_link(&n.host_veth)) {
        Ok(_) => {}
        Err(e) => errors.push(cni::kernel(&e)),
    }
    match open_store(&req.datastore, cni::CODE_TRY_AGAIN) {
        Ok(store) => {
            match store.get().delete(
                &Key::namespaced(Kind::WorkloadEndpoint, &n.namespace, &n.wep),
                None,
            ) {
                Ok(_) | Err(DatastoreError::NotFound { .. }) => {}
                Err(e) => errors.push(ds_err(&format!("deleting endpoint {}", n.wep), &e)),
            }
        }
        Err(e) => errors.push(e),
    }
    if req.ipam_type.is_some()
        && let Err(e) = delegate(req, "DEL", &[])
    {
        errors.push(e);
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => {
            let first = errors[0].code;
            let all: Vec<String> = errors.iter().map(|e| e.msg.clone()).collect();
            Err(
                CniError::new(first, format!("DEL failed in {} steps", all.len()))
                    .with_details(all.join("; ")),
            )
        }
    }
}

/// CHECK: the interfaces, routes, sysctls, the endpoint, then the IPAM plugin's own CHECK.
pub fn check(req: &Request) -> Result<(), CniError> {
    if !cni::has_check(&req.cni_version) {
        return Err(CniError::new(
            cni::CODE_INCOMPATIBLE_VERSION,
            format!(
                "CHECK needs CNI version 0.4.0 or later, the configuration says {}",
                req.cni_version
            ),
        ));
    }
    let prev = req.conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            cni::CODE_INVALID_CONFIG,
            "CHECK needs prevResult in the configuration",
        )
    })?;
    let n = names(req)?;
    let ips = cni::result_ips(prev);
    let store = open_store(&req.datastore, cni::CODE_TRY_AGAIN)?;
    let key = Key::namespaced(Kind::WorkloadEndpoint, &n.namespace, &n.wep);
    let wep = store
        .get()
        .get(&key)
        .map_err(|e| ds_err("reading the endpoint", &e))?
        .ok_or_else(|| {
            CniError::new(
                cni::CODE_UNKNOWN_CONTAINER,
                format!(
                    "container {}: endpoint {} does not exist",
                    req.container_id, n.wep
                ),
            )
        })?;
    let mut problems = Vec::new();
    let nets: BTreeSet<String> = wep.value["spec"]["ipNetworks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for ip in &ips {
        let want = format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 });
        if !nets.contains(&want) {
            problems.push(format!("endpoint {} lacks {want}", n.wep));
        }
    }
    let plan = Plan {
        host_veth: n.host_veth.clone(),
        ifname: req.ifname.clone(),
        mtu: req.mtu,
        ips,
    };
    let mut host = NetlinkSocket::new().map_err(|e| cni::kernel(&e))?;
    let mut container = NetnsFile::open(Path::new(&req.netns))
        .ok()
        .and_then(|ns| NetlinkSocket::new_in(&ns).ok());
    let found = dataplane::check(
        &mut host,
        &mut ProcSysctl,
        container.as_mut().map(|c| c as &mut dyn Netlink),
        &plan,
    )
    .map_err(|e| cni::kernel(&e))?;
    problems.extend(found);
    if !problems.is_empty() {
        return Err(CniError::new(cni::CODE_CHECK_FAILED, problems.join("; ")));
    }
    delegate(req, "CHECK", &[]).map(drop)
}

/// STATUS: the datastore must be reachable.
pub fn status(req: &Request) -> Result<(), CniError> {
    if !cni::has_status_gc(&req.cni_version) {
        return Err(CniError::new(
            cni::CODE_INCOMPATIBLE_VERSION,
            format!(
                "STATUS needs CNI version 1.1.0, the configuration says {}",
                req.cni_version
            ),
        ));
    }
    let store = open_store(&req.datastore, cni::CODE_PLUGIN_NOT_AVAILABLE)?;
    store.get().revision().map_err(|e| {
        CniError::new(
            cni::CODE_PLUGIN_NOT_AVAILABLE,
            format!("reading the datastore: {e}"),
        )
    })?;
    Ok(())
}

/// GC: endpoints of this node, orchestrator and profile whose container is not among the
/// valid attachments lose their veth, endpoint and addresses.
pub fn gc(req: &Request) -> Result<(), CniError> {
    if !cni::has_status_gc(&req.cni_version) {
        return Err(CniError::new(
            cni::CODE_INCOMPATIBLE_VERSION,
            format!(
                "GC needs CNI version 1.1.0, the configuration says {}",
                req.cni_version
            ),
        ));
    }
    let keep: BTreeSet<(String, String)> = req
        .conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| {
            (
                a.container_id.clone(),
                a.ifname.clone().unwrap_or_else(|| "eth0".to_owned()),
            )
        })
        .collect();
    let store = open_store(&req.datastore, cni::CODE_TRY_AGAIN)?;
    let list = store
        .get()
        .list(Kind::WorkloadEndpoint, None)
        .map_err(|e| ds_err("listing endpoints", &e))?;
    let mut errors = Vec::new();
    for kv in list.items {
        let spec = &kv.value["spec"];
        let s = |k: &str| spec[k].as_str().unwrap_or_default().to_owned();
        let profile_ok = spec["profiles"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x.as_str() == Some(req.profile.as_str())));
        if s("node") != req.node || s("orchestrator") != labels::ORCHESTRATOR_MESOS || !profile_ok {
            continue;
        }
        let (cid, ifname) = (s("workload"), s("endpoint"));
        if keep.contains(&(cid.clone(), ifname.clone())) {
            continue;
        }
        if let Err(e) = NetlinkSocket::new().and_then(|mut h| h.delete_link(&s("interfaceName"))) {
            errors.push(e.to_string());
        }
        if let Err(e) = delegate(
            req,
            "DEL",
            &[("CNI_CONTAINERID", &cid), ("CNI_IFNAME", &ifname)],
        ) {
            errors.push(e.msg);
        }
        match store.get().delete(&kv.key, None) {
            Ok(_) | Err(DatastoreError::NotFound { .. }) => {}
            Err(e) => errors.push(format!("deleting {}: {e}", kv.key)),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(
            CniError::new(cni::CODE_TRY_AGAIN, "GC left some attachments behind")
                .with_details(errors.join("; ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::wait_for_file;
    use std::time::{Duration, Instant};

    #[test]
    fn waits_for_the_status_file_or_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("default").join("w1");
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, "up\n").unwrap();
            })
        };
        assert!(wait_for_file(&path, Duration::from_secs(5)));
        writer.join().unwrap();
        let t = Instant::now();
        assert!(!wait_for_file(
            &dir.path().join("absent"),
            Duration::from_millis(100)
        ));
        assert!(t.elapsed() >= Duration::from_millis(100));
    }
}
