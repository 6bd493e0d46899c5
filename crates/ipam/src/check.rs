//! Consistency checks and leak collection (`calicoctl ipam check` / `release`, and the
//! periodic collector the node agent runs).
//!
//! A leaked address is allocated but listed by no WorkloadEndpoint (tunnel addresses of live
//! nodes excepted). Releasing re-validates every finding against fresh reads first: an address
//! a live endpoint lists, or that changed hands since the report, is never released.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use calico_datastore::{Datastore, Kind, Revision};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::allocator::Ipam;
use crate::cidr::{self, Family};
use crate::model::{self, Block, Handle};
use crate::{IpamError, Result, decode, is_race};

/// Version of the report format.
pub const REPORT_VERSION: u32 = 1;

/// One allocated address as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatedIp {
    /// The address.
    #[serde(rename = "ip")]
    pub ip: IpAddr,
    /// The handle holding it.
    #[serde(rename = "handle", default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// Its block.
    #[serde(rename = "block")]
    pub block: String,
    /// Its secondary attributes (node, namespace, workload, ...).
    #[serde(rename = "attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// A block affine to a node that has no Node resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanBlock {
    /// The block.
    #[serde(rename = "block")]
    pub block: String,
    /// The missing node.
    #[serde(rename = "node")]
    pub node: String,
    /// Addresses still allocated in it.
    #[serde(rename = "inUse")]
    pub in_use: u64,
}

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Report format version ([`REPORT_VERSION`]).
    #[serde(rename = "version")]
    pub version: u32,
    /// Store revision when the check started.
    #[serde(rename = "revision")]
    pub revision: Revision,
    /// When the check ran (RFC 3339).
    #[serde(rename = "generatedAt")]
    pub generated_at: String,
    /// Number of blocks.
    #[serde(rename = "blocks")]
    pub blocks: usize,
    /// Number of handles.
    #[serde(rename = "handles")]
    pub handles: usize,
    /// Number of workload endpoints.
    #[serde(rename = "workloadEndpoints")]
    pub workload_endpoints: usize,
    /// Every allocated address.
    #[serde(rename = "allocations")]
    pub allocations: Vec<AllocatedIp>,
    /// Allocated addresses no workload endpoint (or live node tunnel) uses.
    #[serde(rename = "leakedIPs")]
    pub leaked: Vec<AllocatedIp>,
    /// Allocations whose handle object does not exist.
    #[serde(rename = "missingHandles")]
    pub missing_handles: Vec<AllocatedIp>,
    /// Handles with no allocation in any block.
    #[serde(rename = "handlesWithoutAllocations")]
    pub orphan_handles: Vec<String>,
    /// Handles whose per-block counts disagree with the blocks.
    #[serde(rename = "handlesWithWrongCounts")]
    pub mismatched_handles: Vec<String>,
    /// Blocks affine to nodes that no longer exist.
    #[serde(rename = "blocksOfMissingNodes")]
    pub orphan_blocks: Vec<OrphanBlock>,
    /// Workload endpoints (`namespace/name`) whose interface their node's calico-node found
    /// gone ([`INTERFACE_MISSING_ANNOTATION`]); it removes them after its grace period.
    #[serde(rename = "endpointsWithoutInterface", default)]
    pub stale_endpoints: Vec<String>,
}

/// Annotation calico-node puts on a local workload endpoint whose interface is gone, with the
/// time it was first found gone (RFC 3339); removed if the interface comes back.
pub const INTERFACE_MISSING_ANNOTATION: &str = "calico-rs/interface-missing-since";

impl Report {
    /// What every one of `reports` found: releasing only problems seen in reports taken at
    /// different times guards against addresses caught between assignment and their endpoint
    /// (upstream's rule for several `--from-report`). The first report gives everything else.
    pub fn common(mut reports: Vec<Report>) -> Option<Report> {
        let mut merged = reports.pop()?;
        for other in reports {
            merged.leaked.retain(|a| other.leaked.contains(a));
            merged
                .missing_handles
                .retain(|a| other.missing_handles.contains(a));
            merged
                .orphan_handles
                .retain(|h| other.orphan_handles.contains(h));
            merged
                .mismatched_handles
                .retain(|h| other.mismatched_handles.contains(h));
            merged.orphan_blocks.retain(|b| {
                other
                    .orphan_blocks
                    .iter()
                    .any(|o| o.block == b.block && o.node == b.node)
            });
            merged
                .stale_endpoints
                .retain(|e| other.stale_endpoints.contains(e));
        }
        Some(merged)
    }

    /// Number of problems found.
    pub fn problems(&self) -> usize {
        self.leaked.len()
            + self.missing_handles.len()
            + self.orphan_handles.len()
            + self.mismatched_handles.len()
            + self.orphan_blocks.len()
            + self.stale_endpoints.len()
    }
}

/// Addresses listed by workload endpoints (`spec.ipNetworks`), and how many endpoints there are.
pub fn endpoint_ips(ds: &dyn Datastore) -> Result<(HashSet<IpAddr>, usize)> {
    let (ips, weps, _) = endpoints(ds)?;
    Ok((ips, weps))
}

/// [`endpoint_ips`], and the endpoints marked as without interface.
fn endpoints(ds: &dyn Datastore) -> Result<(HashSet<IpAddr>, usize, Vec<String>)> {
    let list = crate::list_all(ds, Kind::WorkloadEndpoint, "listing workload endpoints")?;
    let mut ips = HashSet::new();
    let mut stale = Vec::new();
    for kv in &list.items {
        if kv
            .value
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(INTERFACE_MISSING_ANNOTATION))
            .is_some()
        {
            stale.push(format!(
                "{}/{}",
                kv.key.namespace.as_deref().unwrap_or_default(),
                kv.key.name
            ));
        }
        if let Some(nets) = kv
            .value
            .pointer("/spec/ipNetworks")
            .and_then(|v| v.as_array())
        {
            for n in nets.iter().filter_map(|v| v.as_str()) {
                if let Some(net) = cidr::parse_net(n) {
                    ips.insert(net.addr());
                }
            }
        }
    }
    Ok((ips, list.items.len(), stale))
}

fn node_names(ds: &dyn Datastore) -> Result<HashSet<String>> {
    let list = crate::list_all(ds, Kind::Node, "listing nodes")?;
    Ok(list.items.into_iter().map(|kv| kv.key.name).collect())
}

fn is_tunnel(attrs: &BTreeMap<String, String>) -> bool {
    attrs
        .get(model::ATTR_TYPE)
        .is_some_and(|t| t.ends_with("TunnelAddress"))
}

/// Cross-check blocks, handles, workload endpoints and nodes.
pub fn check(ds: &dyn Datastore) -> Result<Report> {
    let revision = ds
        .revision()
        .map_err(|e| IpamError::ds("reading the store revision", e))?;
    // Blocks first: a handle is written in the same batch as its allocations, so every
    // allocation read here has its handle unless it was released since.
    let blocks = crate::list_all(ds, Kind::IpamBlock, "listing IPAM blocks")?;
    let handles = crate::list_all(ds, Kind::IpamHandle, "listing IPAM handles")?;
    let (wep_ips, weps, stale_endpoints) = endpoints(ds)?;
    let nodes = node_names(ds)?;

    let mut handle_specs: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for kv in &handles.items {
        let h: Handle = decode(kv)?;
        handle_specs.insert(h.spec.handle_id.clone(), h.spec.block);
    }
    let mut report = Report {
        version: REPORT_VERSION,
        revision,
        generated_at: model::now_rfc3339(),
        blocks: blocks.items.len(),
        handles: handles.items.len(),
        workload_endpoints: weps,
        stale_endpoints,
        ..Report::default()
    };
    let mut found: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for kv in &blocks.items {
        let b: Block = decode(kv)?;
        let Some(net) = b.spec.net() else { continue };
        if let Some(node) = b.spec.affine_node()
            && !nodes.contains(node)
        {
            report.orphan_blocks.push(OrphanBlock {
                block: net.to_string(),
                node: node.to_owned(),
                in_use: b.spec.in_use() as u64,
            });
        }
        for (ord, a) in b.spec.allocations.iter().enumerate() {
            let Some(attr) = a.and_then(|i| b.spec.attributes.get(i)) else {
                continue;
            };
            let ip = cidr::ip_at(&net, ord);
            let item = AllocatedIp {
                ip,
                handle_id: attr.handle_id.clone(),
                block: net.to_string(),
                attributes: attr.secondary.clone(),
            };
            match &attr.handle_id {
                Some(h) => {
                    *found
                        .entry(h.clone())
                        .or_default()
                        .entry(net.to_string())
                        .or_default() += 1;
                    if !handle_specs.contains_key(h) {
                        report.missing_handles.push(item.clone());
                    }
                }
                None => report.missing_handles.push(item.clone()),
            }
            let tunnel_in_use = is_tunnel(&attr.secondary)
                && attr
                    .secondary
                    .get(model::ATTR_NODE)
                    .is_some_and(|n| nodes.contains(n));
            if !wep_ips.contains(&ip) && !tunnel_in_use {
                report.leaked.push(item.clone());
            }
            report.allocations.push(item);
        }
    }
    for (h, counts) in &handle_specs {
        match found.get(h) {
            None => report.orphan_handles.push(h.clone()),
            Some(actual) if actual != counts => report.mismatched_handles.push(h.clone()),
            Some(_) => {}
        }
    }
    Ok(report)
}

/// What [`release_leaks`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseOutcome {
    /// Addresses released.
    pub released: Vec<IpAddr>,
    /// Findings not acted on, with why.
    pub skipped: Vec<(String, String)>,
    /// Handles deleted.
    pub handles_deleted: Vec<String>,
    /// Blocks whose affinity to a missing node was released.
    pub blocks_released: Vec<String>,
}

/// Release what `report` found, re-validating each finding against fresh reads first: an
/// address is released only if no workload endpoint lists it now and it is still held by the
/// same handle; a handle is deleted only if it still holds nothing; a block's affinity is
/// released only if its node still does not exist.
pub fn release_leaks(ds: &dyn Datastore, report: &Report) -> Result<ReleaseOutcome> {
    let ipam = Ipam::new(ds);
    let (wep_ips, _) = endpoint_ips(ds)?;
    let nodes = node_names(ds)?;
    let mut out = ReleaseOutcome::default();
    let mut done: HashSet<IpAddr> = HashSet::new();
    for item in report.leaked.iter().chain(&report.missing_handles) {
        if !done.insert(item.ip) {
            continue;
        }
        if wep_ips.contains(&item.ip) {
            out.skipped
                .push((item.ip.to_string(), "in use by a workload endpoint".into()));
            continue;
        }
        if is_tunnel(&item.attributes)
            && item
                .attributes
                .get(model::ATTR_NODE)
                .is_some_and(|n| nodes.contains(n))
        {
            out.skipped
                .push((item.ip.to_string(), "tunnel address of a live node".into()));
            continue;
        }
        if ipam.release_ip_if_held_by(item.ip, item.handle_id.as_deref())? {
            out.released.push(item.ip);
        } else {
            out.skipped.push((
                item.ip.to_string(),
                "no longer allocated to the same handle".into(),
            ));
        }
    }
    for h in &report.orphan_handles {
        let key = model::handle_key(h);
        let Some(kv) = ds
            .get(&key)
            .map_err(|e| IpamError::ds(format!("reading handle {h}"), e))?
        else {
            continue;
        };
        if !ipam.ips_by_handle(h)?.is_empty() {
            out.skipped
                .push((h.clone(), "handle holds addresses again".into()));
            continue;
        }
        match ds.delete(&key, Some(kv.mod_revision)) {
            Ok(_) => out.handles_deleted.push(h.clone()),
            Err(e) if is_race(&e) => out
                .skipped
                .push((h.clone(), "handle changed concurrently".into())),
            Err(e) => return Err(IpamError::ds(format!("deleting handle {h}"), e)),
        }
    }
    for ob in &report.orphan_blocks {
        if nodes.contains(&ob.node) {
            out.skipped
                .push((ob.block.clone(), format!("node {} exists again", ob.node)));
            continue;
        }
        let Some(net) = cidr::parse_net(&ob.block) else {
            continue;
        };
        if ipam.release_affinity(&ob.node, &net, false, None)? {
            out.blocks_released.push(ob.block.clone());
        }
    }
    Ok(out)
}

/// A node's blocks of one family: whether any is in use, and the empty ones with revisions.
type NodeBlocks = (bool, Vec<(IpNet, Revision)>);

/// What one collector pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectorPass {
    /// Problems the check found this pass.
    pub problems: usize,
    /// Leaked addresses released (seen leaked for at least the grace period).
    pub released: Vec<IpAddr>,
    /// Empty blocks given back (empty and unchanged for at least the grace period).
    pub empty_blocks_released: Vec<IpNet>,
}

/// The periodic leak and empty-block collector (Calico on DC/OS had none). Keep one per
/// process and call [`Collector::run_once`] periodically: a leak is released only after it
/// has been seen in passes spanning the grace period (so an address allocated moments before
/// its endpoint is written is never taken), and then only after re-validation; an affine
/// block is given back when it stayed empty and unchanged for the grace period (a node keeps
/// one empty block per family when it has no other).
#[derive(Debug, Clone)]
pub struct Collector {
    grace: Duration,
    leak_seen: HashMap<(IpAddr, Option<String>), Instant>,
    empty_seen: HashMap<(IpNet, Revision), Instant>,
}

impl Collector {
    /// A collector with grace period `grace`.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            leak_seen: HashMap::new(),
            empty_seen: HashMap::new(),
        }
    }

    /// One pass at time `now`.
    pub fn run_once(&mut self, ds: &dyn Datastore, now: Instant) -> Result<CollectorPass> {
        let report = check(ds)?;
        let mut pass = CollectorPass {
            problems: report.problems(),
            ..CollectorPass::default()
        };
        let current: HashSet<(IpAddr, Option<String>)> = report
            .leaked
            .iter()
            .map(|l| (l.ip, l.handle_id.clone()))
            .collect();
        self.leak_seen.retain(|k, _| current.contains(k));
        for k in current {
            self.leak_seen.entry(k).or_insert(now);
        }
        let due: Vec<_> = report
            .leaked
            .iter()
            .filter(|l| {
                self.leak_seen
                    .get(&(l.ip, l.handle_id.clone()))
                    .is_some_and(|t| now.duration_since(*t) >= self.grace)
            })
            .cloned()
            .collect();
        if !due.is_empty() {
            let sub = Report {
                leaked: due,
                ..Report::default()
            };
            let outcome = release_leaks(ds, &sub)?;
            for ip in &outcome.released {
                self.leak_seen.retain(|k, _| k.0 != *ip);
            }
            pass.released = outcome.released;
        }
        pass.empty_blocks_released = self.collect_empty_blocks(ds, now)?;
        Ok(pass)
    }

    fn collect_empty_blocks(&mut self, ds: &dyn Datastore, now: Instant) -> Result<Vec<IpNet>> {
        let list = crate::list_all(ds, Kind::IpamBlock, "listing IPAM blocks")?;
        let mut per_node: BTreeMap<(String, Family), NodeBlocks> = BTreeMap::new();
        for kv in &list.items {
            let b: Block = decode(kv)?;
            let (Some(net), Some(node)) = (b.spec.net(), b.spec.affine_node()) else {
                continue;
            };
            let entry = per_node
                .entry((node.to_owned(), Family::of_net(&net)))
                .or_default();
            if b.spec.is_empty() {
                entry.1.push((net, kv.mod_revision));
            } else {
                entry.0 = true;
            }
        }
        let mut current = HashSet::new();
        let mut due = Vec::new();
        for ((node, _), (has_used, mut empties)) in per_node {
            empties.sort();
            let skip = usize::from(!has_used);
            for (net, rev) in empties.into_iter().skip(skip) {
                current.insert((net, rev));
                let seen = *self.empty_seen.entry((net, rev)).or_insert(now);
                if now.duration_since(seen) >= self.grace {
                    due.push((node.clone(), net, rev));
                }
            }
        }
        self.empty_seen.retain(|k, _| current.contains(k));
        let ipam = Ipam::new(ds);
        let mut released = Vec::new();
        for (node, net, rev) in due {
            if ipam.release_affinity(&node, &net, true, Some(rev))? {
                self.empty_seen.remove(&(net, rev));
                released.push(net);
            }
        }
        Ok(released)
    }
}
