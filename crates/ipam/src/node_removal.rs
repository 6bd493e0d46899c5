//! What deleting a Node takes with it, as upstream's node client does: the node's workload
//! endpoints, every address allocated to it (endpoints' and tunnel addresses), its block
//! affinities, and the configuration resources named for it (`node.<name>` FelixConfiguration
//! and BGPConfiguration, BGPPeers and CalicoNodeStatus with `spec.node` set to it). Best
//! effort: every step runs, and every failure is reported.

use std::net::IpAddr;

use calico_datastore::{Datastore, DatastoreError, Key, Kind};

use crate::Ipam;
use crate::model::{self, Affinity, Block};

/// What [`remove_node`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NodeRemoval {
    /// Workload endpoints deleted.
    pub endpoints: usize,
    /// Addresses released.
    pub addresses: usize,
    /// Block affinities released.
    pub affinities: usize,
    /// Other resources deleted (`Kind name`).
    pub resources: Vec<String>,
    /// Every resource key deleted (endpoints and the others).
    pub deleted: Vec<Key>,
    /// Every step that failed, as "doing X: cause".
    pub errors: Vec<String>,
}

/// Kinds whose resources belong to one node through `spec.node`.
const PER_NODE_KINDS: [Kind; 2] = [Kind::BgpPeer, Kind::CalicoNodeStatus];

/// Remove what belongs to `node` (not the Node itself: the caller deletes it once this reports
/// no errors, so that a failed removal can be run again).
pub fn remove_node(ds: &dyn Datastore, node: &str) -> NodeRemoval {
    let mut done = NodeRemoval::default();
    let ipam = Ipam::new(ds);
    let spec_node = |v: &serde_json::Value| {
        v.pointer("/spec/node")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };

    // Endpoints first: once gone, their addresses are nobody's.
    let mut endpoint_ips: Vec<IpAddr> = Vec::new();
    match ds.list(Kind::WorkloadEndpoint, None) {
        Ok(list) => {
            for kv in list.items {
                if spec_node(&kv.value).as_deref() != Some(node) {
                    continue;
                }
                if let Some(nets) = kv
                    .value
                    .pointer("/spec/ipNetworks")
                    .and_then(|n| n.as_array())
                {
                    endpoint_ips.extend(
                        nets.iter()
                            .filter_map(|n| n.as_str())
                            .filter_map(|n| n.split('/').next()?.parse::<IpAddr>().ok()),
                    );
                }
                match ds.delete(&kv.key, Some(kv.mod_revision)) {
                    Ok(_) => {
                        done.endpoints += 1;
                        done.deleted.push(kv.key.clone());
                    }
                    Err(DatastoreError::NotFound { .. }) => {}
                    Err(e) => done.errors.push(format!("deleting {}: {e}", kv.key)),
                }
            }
        }
        Err(e) => done.errors.push(format!("listing workload endpoints: {e}")),
    }

    // Addresses allocated to the node (its endpoints' and its tunnel addresses), by handle
    // where they have one.
    let mut handles = std::collections::BTreeSet::new();
    let mut bare: Vec<IpAddr> = Vec::new();
    match ds.list(Kind::IpamBlock, None) {
        Ok(list) => {
            for kv in &list.items {
                let block: Block = match crate::decode(kv) {
                    Ok(b) => b,
                    Err(e) => {
                        done.errors.push(format!("reading {}: {e}", kv.key));
                        continue;
                    }
                };
                let Some(net) = block.spec.net() else {
                    continue;
                };
                for ordinal in 0..block.spec.allocations.len() {
                    let Some(attr) = block.spec.attribute_of(ordinal) else {
                        continue;
                    };
                    let ip = crate::cidr::ip_at(&net, ordinal);
                    let ours = attr.secondary.get(model::ATTR_NODE).map(String::as_str)
                        == Some(node)
                        || endpoint_ips.contains(&ip);
                    if !ours {
                        continue;
                    }
                    match &attr.handle_id {
                        Some(h) => {
                            handles.insert(h.clone());
                        }
                        None => bare.push(ip),
                    }
                }
            }
        }
        Err(e) => done.errors.push(format!("listing IPAM blocks: {e}")),
    }
    for handle in handles {
        match ipam.release_by_handle(&handle) {
            Ok(freed) => done.addresses += freed.len(),
            Err(e) => done.errors.push(format!("releasing handle {handle}: {e}")),
        }
    }
    if !bare.is_empty() {
        match ipam.release_ips(&bare) {
            Ok(not_allocated) => done.addresses += bare.len() - not_allocated.len(),
            Err(e) => done
                .errors
                .push(format!("releasing addresses of {node}: {e}")),
        }
    }

    // The node's claims on blocks.
    match ds.list(Kind::BlockAffinity, None) {
        Ok(list) => {
            for kv in &list.items {
                let affinity: Affinity = match crate::decode(kv) {
                    Ok(a) => a,
                    Err(e) => {
                        done.errors.push(format!("reading {}: {e}", kv.key));
                        continue;
                    }
                };
                if affinity.spec.node != node {
                    continue;
                }
                let Some(net) = crate::cidr::parse_net(&affinity.spec.cidr) else {
                    done.errors.push(format!(
                        "{}: spec.cidr {:?} is not a CIDR",
                        kv.key, affinity.spec.cidr
                    ));
                    continue;
                };
                match ipam.release_affinity(node, &net, false, None) {
                    Ok(_) => done.affinities += 1,
                    Err(e) => done
                        .errors
                        .push(format!("releasing block {net} of {node}: {e}")),
                }
            }
        }
        Err(e) => done.errors.push(format!("listing block affinities: {e}")),
    }

    // Configuration named for the node, and resources that point at it.
    let mut owned: Vec<Key> = [Kind::FelixConfiguration, Kind::BgpConfiguration]
        .into_iter()
        .map(|kind| Key::global(kind, format!("node.{node}")))
        .collect();
    for kind in PER_NODE_KINDS {
        match ds.list(kind, None) {
            Ok(list) => owned.extend(
                list.items
                    .into_iter()
                    .filter(|kv| spec_node(&kv.value).as_deref() == Some(node))
                    .map(|kv| kv.key),
            ),
            Err(e) => done.errors.push(format!("listing {kind}: {e}")),
        }
    }
    for key in owned {
        match ds.delete(&key, None) {
            Ok(_) => {
                done.resources.push(format!("{} {}", key.kind, key.name));
                done.deleted.push(key);
            }
            Err(DatastoreError::NotFound { .. }) => {}
            Err(e) => done.errors.push(format!("deleting {key}: {e}")),
        }
    }
    done
}
