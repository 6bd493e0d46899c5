//! Start-up writes: the default pool and profile, and this host's Node.

use std::net::{IpAddr, Ipv4Addr};

use calico_datastore::{Datastore, DatastoreError, Key, Kind, WriteOp};
use calico_ipam::pools::Use;
use calico_ipam::{AssignArgs, Ipam};
use ipnet::IpNet;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::params::Params;

/// Name of the pool created from `calico_network_cidr`.
pub const DEFAULT_POOL: &str = "default-ipv4-ippool";
/// The profile every endpoint without another gets.
pub const DEFAULT_PROFILE: &str = "calico";

/// Why start-up could not complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A datastore read or write failed.
    #[error("{doing}: {source}")]
    Datastore {
        /// What was being done.
        doing: String,
        /// The cause.
        source: Box<DatastoreError>,
    },
    /// The tunnel address could not be allocated.
    #[error("allocating the VXLAN tunnel address of {node}: {source}")]
    Ipam {
        /// This host.
        node: String,
        /// The cause.
        source: Box<calico_ipam::IpamError>,
    },
}

fn ds_err(doing: impl Into<String>) -> impl FnOnce(DatastoreError) -> Error {
    let doing = doing.into();
    move |source| Error::Datastore {
        doing,
        source: Box::new(source),
    }
}

/// Creates `value` at `key` unless something is there already (an
/// operator's edits are never overwritten).
fn create_if_missing(ds: &dyn Datastore, key: Key, value: Value) -> Result<bool, Error> {
    match ds.create(&key, value) {
        Ok(_) => Ok(true),
        Err(DatastoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(ds_err(format!("creating {key}"))(e)),
    }
}

/// What every cluster has (ClusterInformation, the default Tier and
/// FelixConfiguration), the default pool and profile, when missing. Returns
/// what was created.
pub fn ensure_defaults(ds: &dyn Datastore, params: &Params) -> Result<Vec<String>, Error> {
    let version = concat!("v", env!("CARGO_PKG_VERSION"));
    let mut created = calico_datastore::cluster::ensure_initialized(ds, version)
        .map_err(ds_err("creating the cluster's default resources"))?;
    created.extend(
        calico_datastore::cluster::ensure_felix_default(ds)
            .map_err(ds_err("creating FelixConfiguration default"))?,
    );
    let (vxlan, ipip) = if params.vxlan_enabled {
        ("Always", "Never")
    } else if params.ipinip_enabled {
        ("Never", "Always")
    } else {
        ("Never", "Never")
    };
    let pool = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": DEFAULT_POOL},
        "spec": {
            "cidr": params.network_cidr.to_string(),
            "blockSize": 26,
            "vxlanMode": vxlan,
            "ipipMode": ipip,
            "natOutgoing": true,
            "nodeSelector": "all()",
        }
    });
    let pool_key = Key::global(Kind::IpPool, DEFAULT_POOL);
    let overlap = calico_datastore::cluster::check_batch(
        ds,
        &[WriteOp::Create {
            key: pool_key.clone(),
            value: pool.clone(),
        }],
    );
    match overlap {
        // Another pool already covers (part of) calico_network_cidr: the
        // operator's pools serve, as upstream creates its default pool only
        // when no pool is there.
        Err(DatastoreError::Batch { source, .. })
            if matches!(*source, DatastoreError::Refused { .. }) =>
        {
            if ds
                .get(&pool_key)
                .map_err(ds_err(format!("reading {pool_key}")))?
                .is_none()
            {
                tracing::warn!(target: "calico-node", "not creating IPPool {DEFAULT_POOL}: {source}");
            }
        }
        Err(e) => return Err(ds_err("checking the default IPPool")(e)),
        Ok(()) => {
            if create_if_missing(ds, pool_key, pool)? {
                created.push(format!("IPPool {DEFAULT_POOL} ({})", params.network_cidr));
            }
        }
    }
    let profile = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": DEFAULT_PROFILE},
        "spec": {
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {"calico": ""},
        }
    });
    if create_if_missing(ds, Key::global(Kind::Profile, DEFAULT_PROFILE), profile)? {
        created.push(format!("Profile {DEFAULT_PROFILE}"));
    }
    Ok(created)
}

/// The tunnel MAC of `node`: stable across restarts (derived from the name),
/// locally administered and unicast.
pub fn tunnel_mac(node: &str) -> [u8; 6] {
    let h = Sha256::digest(node.as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&h[..6]);
    mac[0] = (mac[0] | 0x02) & 0xfe;
    mac
}

/// Handle of a node's VXLAN tunnel address, as Calico names it.
pub fn tunnel_handle(node: &str) -> String {
    format!("vxlan-tunnel-addr-{node}")
}

/// Registers this host: its Node with `address` (underlay, with prefix) and
/// a tunnel address from IPAM (kept across restarts): VXLAN's (with the
/// tunnel MAC), or IP-in-IP's when VXLAN is off. Returns the tunnel address.
pub fn register_node(
    ds: &dyn Datastore,
    node: &str,
    address: IpNet,
    params: &Params,
) -> Result<Option<Ipv4Addr>, Error> {
    let key = Key::global(Kind::Node, node);
    let existing = ds
        .get(&key)
        .map_err(ds_err(format!("reading Node {node}")))?;
    let mut value = existing.map(|kv| kv.value).unwrap_or_else(|| {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
               "metadata": {"name": node}, "spec": {}})
    });
    value["spec"]["bgp"]["ipv4Address"] = json!(address.to_string());
    write_node(ds, &key, value.clone())?;

    if !params.vxlan_enabled && !params.ipinip_enabled {
        // No encapsulation: no tunnel, no tunnel address.
        if let Some(spec) = value["spec"].as_object_mut() {
            spec.remove("ipv4VXLANTunnelAddr");
            spec.remove("vxlanTunnelMACAddr");
        }
        if let Some(bgp) = value["spec"]["bgp"].as_object_mut() {
            bgp.remove("ipv4IPIPTunnelAddr");
        }
        write_node(ds, &key, value)?;
        return Ok(None);
    }
    // One tunnel address from IPAM, kept across restarts: VXLAN's, or
    // IP-in-IP's when VXLAN is off (as Calico, the other one is removed).
    let (handle, kind) = if params.vxlan_enabled {
        (tunnel_handle(node), "vxlanTunnelAddress")
    } else {
        (format!("ipip-tunnel-addr-{node}"), "ipipTunnelAddress")
    };
    let ip = tunnel_address(ds, node, &handle, kind)?;
    if params.vxlan_enabled {
        value["spec"]["ipv4VXLANTunnelAddr"] = json!(ip.to_string());
        value["spec"]["vxlanTunnelMACAddr"] = json!(calico_netlink::format_mac(&tunnel_mac(node)));
        if let Some(bgp) = value["spec"]["bgp"].as_object_mut() {
            bgp.remove("ipv4IPIPTunnelAddr");
        }
    } else {
        value["spec"]["bgp"]["ipv4IPIPTunnelAddr"] = json!(ip.to_string());
        if let Some(spec) = value["spec"].as_object_mut() {
            spec.remove("ipv4VXLANTunnelAddr");
            spec.remove("vxlanTunnelMACAddr");
        }
    }
    let tunnel = Some(ip);
    write_node(ds, &key, value)?;
    Ok(tunnel)
}

/// The address `handle` holds, or a new one from IPAM for a tunnel device.
fn tunnel_address(
    ds: &dyn Datastore,
    node: &str,
    handle: &str,
    kind: &str,
) -> Result<Ipv4Addr, Error> {
    let ipam_err = |source| Error::Ipam {
        node: node.to_owned(),
        source: Box::new(source),
    };
    let ipam = Ipam::new(ds);
    let held = ipam.ips_by_handle(handle).map_err(ipam_err)?;
    if let Some(a) = held.iter().find_map(|ip| match ip {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    }) {
        return Ok(a);
    }
    let mut args = AssignArgs::new(handle, node);
    args.use_ = Use::Tunnel;
    args.attrs.insert("node".into(), node.to_owned());
    args.attrs.insert("type".into(), kind.to_owned());
    let assigned = ipam.auto_assign(&args).map_err(ipam_err)?;
    match assigned.v4.first().map(|a| a.ip) {
        Some(IpAddr::V4(a)) => Ok(a),
        _ => unreachable!("one IPv4 address was asked for"),
    }
}

/// Says on this host's Node where its flows are served (`host:port`), or that they are
/// not (None): `calicoctl flows` and the web view read every host's from there.
pub fn announce_flows(ds: &dyn Datastore, node: &str, address: Option<&str>) -> Result<(), Error> {
    let key = Key::global(Kind::Node, node);
    let Some(existing) = ds
        .get(&key)
        .map_err(ds_err(format!("reading Node {node}")))?
    else {
        return Ok(());
    };
    let mut value = existing.value;
    let annotation = calico_flows::view::FLOWS_ANNOTATION;
    if value["metadata"]["annotations"][annotation].as_str() == address {
        return Ok(());
    }
    match address {
        Some(a) => value["metadata"]["annotations"][annotation] = json!(a),
        None => {
            if let Some(a) = value["metadata"]["annotations"].as_object_mut() {
                a.remove(annotation);
            }
        }
    }
    write_node(ds, &key, value)
}

fn write_node(ds: &dyn Datastore, key: &Key, value: Value) -> Result<(), Error> {
    ds.write_batch(vec![WriteOp::Upsert {
        key: key.clone(),
        value,
    }])
    .map(drop)
    .map_err(ds_err(format!("writing {key}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_datastore::sqlite::SqliteDatastore;

    #[test]
    fn defaults_and_node_registration_are_idempotent() {
        let dir = std::env::temp_dir().join(format!("calico-node-startup-{}", std::process::id()));
        let ds = SqliteDatastore::open(&dir.join("c.db")).unwrap();
        let params = Params::default();
        let created = ensure_defaults(&ds, &params).unwrap();
        assert_eq!(
            created,
            [
                "ClusterInformation default",
                "Tier default",
                "FelixConfiguration default",
                "IPPool default-ipv4-ippool (172.29.0.0/16)",
                "Profile calico"
            ]
        );
        assert!(ensure_defaults(&ds, &params).unwrap().is_empty());
        // The operator's own pool over calico_network_cidr serves: no
        // overlapping default pool beside it.
        let dir2 = tempfile::tempdir().unwrap();
        let ds2 = SqliteDatastore::open(&dir2.path().join("c.db")).unwrap();
        ds2.create(
            &Key::global(Kind::IpPool, "mine"),
            serde_json::json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                "metadata": {"name": "mine"},
                "spec": {"cidr": params.network_cidr.to_string(), "blockSize": 26}}),
        )
        .unwrap();
        let created = ensure_defaults(&ds2, &params).unwrap();
        assert!(
            !created.iter().any(|c| c.starts_with("IPPool")),
            "{created:?}"
        );
        let pool = ds
            .get(&Key::global(Kind::IpPool, DEFAULT_POOL))
            .unwrap()
            .unwrap();
        assert_eq!(pool.value["spec"]["vxlanMode"], "Always");
        assert_eq!(pool.value["spec"]["natOutgoing"], true);

        let addr: IpNet = "172.30.0.1/24".parse().unwrap();
        let t1 = register_node(&ds, "h1", addr, &params).unwrap().unwrap();
        assert!(params.network_cidr.contains(&t1));
        let t1_again = register_node(&ds, "h1", addr, &params).unwrap().unwrap();
        assert_eq!(t1, t1_again, "the tunnel address survives a restart");
        let t2 = register_node(&ds, "h2", "172.30.0.2/24".parse().unwrap(), &params)
            .unwrap()
            .unwrap();
        assert_ne!(t1, t2);
        let node = ds
            .get(&Key::global(Kind::Node, "h1"))
            .unwrap()
            .unwrap()
            .value;
        assert_eq!(node["spec"]["bgp"]["ipv4Address"], "172.30.0.1/24");
        assert_eq!(node["spec"]["ipv4VXLANTunnelAddr"], t1.to_string());
        assert_eq!(tunnel_mac("h1")[0] & 0x03, 0x02, "local, unicast");
        // VXLAN off: an IP-in-IP tunnel address instead.
        let ipip = Params {
            vxlan_enabled: false,
            ..Params::default()
        };
        let t3 = register_node(&ds, "h3", "172.30.0.3/24".parse().unwrap(), &ipip)
            .unwrap()
            .unwrap();
        let node = ds
            .get(&Key::global(Kind::Node, "h3"))
            .unwrap()
            .unwrap()
            .value;
        assert_eq!(node["spec"]["bgp"]["ipv4IPIPTunnelAddr"], t3.to_string());
        assert!(node["spec"].get("ipv4VXLANTunnelAddr").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
