//! Allocation and release, every write a compare-and-swap.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

use calico_datastore::{Datastore, DatastoreError, KeyValue, Kind, Revision, WriteOp};
use ipnet::IpNet;

use crate::backoff::{MAX_ATTEMPTS, pause};
use crate::cidr::{self, Family, Reservations};
use crate::model::{
    self, AffinitySpec, AllocationAttribute, Block, BlockSpec, ConfigSpec, Handle, HandleSpec,
    Object,
};
use crate::pools::{self, Pool, Use};
use crate::{IpamError, Result, decode, is_race};

/// Most rounds of "affine blocks, then a new block" before falling back to borrowing.
const MAX_CLAIM_ROUNDS: u32 = 64;

/// Most candidate blocks examined when looking for an unclaimed block in one pool.
const MAX_BLOCK_SCAN: usize = 1 << 20;

/// What to allocate.
#[derive(Debug, Clone)]
pub struct AssignArgs {
    /// The handle that will own the addresses (for CNI: `<network>.<container id>`).
    pub handle_id: String,
    /// The node allocating (its affine blocks are used first).
    pub node: String,
    /// Number of IPv4 addresses.
    pub num_v4: usize,
    /// Number of IPv6 addresses.
    pub num_v6: usize,
    /// IPv4 pools to use, by name or CIDR (all eligible pools when empty).
    pub v4_pools: Vec<String>,
    /// IPv6 pools to use, by name or CIDR (all eligible pools when empty).
    pub v6_pools: Vec<String>,
    /// Secondary attributes recorded with each address (node, namespace, workload, ...).
    pub attrs: BTreeMap<String, String>,
    /// What the addresses are for.
    pub use_: Use,
}

impl AssignArgs {
    /// One IPv4 workload address for `handle_id` on `node`.
    pub fn new(handle_id: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            handle_id: handle_id.into(),
            node: node.into(),
            num_v4: 1,
            num_v6: 0,
            v4_pools: Vec::new(),
            v6_pools: Vec::new(),
            attrs: BTreeMap::new(),
            use_: Use::Workload,
        }
    }
}

/// An address handed out, with the block it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// The address.
    pub ip: IpAddr,
    /// Its block.
    pub block: IpNet,
}

/// The addresses handed out by [`Ipam::auto_assign`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assigned {
    /// IPv4 addresses.
    pub v4: Vec<Assignment>,
    /// IPv6 addresses.
    pub v6: Vec<Assignment>,
}

impl Assigned {
    /// Every address, IPv4 first.
    pub fn ips(&self) -> Vec<IpAddr> {
        self.v4.iter().chain(&self.v6).map(|a| a.ip).collect()
    }
}

/// Everything one allocation reads once: configuration, reservations, node labels.
struct Env {
    config: ConfigSpec,
    reserved: Reservations,
    pools: Vec<Pool>,
    labels: BTreeMap<String, String>,
}

/// The allocator: everything is read from the datastore on each call, except a hint of the
/// block a node last allocated from, which is only ever a first guess: the block itself (its
/// affinity, read and then compare-and-swapped) decides whether it may be used.
pub struct Ipam<'a> {
    ds: &'a dyn Datastore,
    recent: Mutex<Option<(String, IpNet)>>,
}

impl<'a> Ipam<'a> {
    /// An allocator on `ds`.
    pub fn new(ds: &'a dyn Datastore) -> Self {
        Self {
            ds,
            recent: Mutex::new(None),
        }
    }

    /// The block `node` last allocated from through this allocator, if any.
    fn recent_block(&self, node: &str) -> Option<IpNet> {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        r.as_ref().filter(|(n, _)| n == node).map(|(_, net)| *net)
    }

    fn remember_block(&self, node: &str, net: IpNet) {
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        match r.as_mut() {
            Some((n, b)) if n == node => *b = net,
            _ => *r = Some((node.to_owned(), net)),
        }
    }

    /// The datastore.
    pub fn datastore(&self) -> &'a dyn Datastore {
        self.ds
    }

    fn env(&self, node: &str) -> Result<Env> {
        if pools::is_locked(self.ds)? {
            return Err(IpamError::Locked);
        }
        Ok(Env {
            config: pools::load_config(self.ds)?.0,
            reserved: pools::reservations(self.ds)?,
            pools: pools::list_pools(self.ds)?,
            labels: pools::node_labels(self.ds, node)?,
        })
    }

    /// Allocate addresses for a handle: from the node's affine blocks first, then from a newly
    /// claimed block, then (unless strict affinity is on) from other nodes' blocks. All or
    /// nothing: on failure nothing stays allocated.
    pub fn auto_assign(&self, args: &AssignArgs) -> Result<Assigned> {
        if args.handle_id.is_empty() {
            return Err(IpamError::InvalidArgument("empty handle id".into()));
        }
        if args.node.is_empty() {
            return Err(IpamError::InvalidArgument("empty node name".into()));
        }
        let env = self.env(&args.node)?;
        let mut out = Assigned::default();
        for (family, n, requested) in [
            (Family::V4, args.num_v4, &args.v4_pools),
            (Family::V6, args.num_v6, &args.v6_pools),
        ] {
            if n == 0 {
                continue;
            }
            let res = pools::select_pools(&env.pools, family, requested, &env.labels, args.use_)
                .and_then(|p| {
                    if p.is_empty() {
                        Err(IpamError::NoPools {
                            family: family.number(),
                            node: args.node.clone(),
                        })
                    } else {
                        self.assign_family(&env, &p, family, n, args)
                    }
                });
            match res {
                Ok(got) => match family {
                    Family::V4 => out.v4 = got,
                    Family::V6 => out.v6 = got,
                },
                Err(e) => {
                    self.release_assignments(&out.v4)?;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn assign_family(
        &self,
        env: &Env,
        pools: &[Pool],
        family: Family,
        n: usize,
        args: &AssignArgs,
    ) -> Result<Vec<Assignment>> {
        let attr = AllocationAttribute {
            handle_id: Some(args.handle_id.clone()),
            secondary: args.attrs.clone(),
        };
        let node = args.node.as_str();
        let mut got: Vec<Assignment> = Vec::with_capacity(n);
        let max_blocks = env.config.max_blocks_per_host;
        // Fast path: the block this node allocated from last time, without listing every
        // affinity. Only taken while the block still names the node as its affine host.
        if let Some(net) = self.recent_block(node)
            && pools.iter().any(|p| p.net.contains(&net))
        {
            let more = self.assign_from_block(&net, n, &attr, Some(node), &env.reserved)?;
            got.extend(more);
            if got.len() == n {
                return Ok(got);
            }
        }
        for _ in 0..MAX_CLAIM_ROUNDS {
            let affs = self.host_affinities(node, pools)?;
            let mut affine = 0u32;
            for (net, kv) in &affs {
                affine += 1;
                let spec: model::Affinity = decode(kv)?;
                match spec.spec.state.as_str() {
                    model::STATE_CONFIRMED => {}
                    model::STATE_PENDING => {
                        if !self.finish_claim(node, net, kv.clone(), &env.config)? {
                            continue;
                        }
                    }
                    _ => continue,
                }
                let more =
                    self.assign_from_block(net, n - got.len(), &attr, Some(node), &env.reserved)?;
                if !more.is_empty() {
                    self.remember_block(node, *net);
                }
                got.extend(more);
                if got.len() == n {
                    return Ok(got);
                }
            }
            if !env.config.auto_allocate_blocks || (max_blocks > 0 && affine >= max_blocks) {
                break;
            }
            if self
                .claim_new_block(node, pools, &env.reserved, &env.config)?
                .is_none()
            {
                break;
            }
        }
        if !env.config.strict_affinity {
            let blocks = crate::list_all(self.ds, Kind::IpamBlock, "listing IPAM blocks")?;
            for kv in &blocks.items {
                let b: Block = decode(kv)?;
                let Some(net) = b.spec.net() else { continue };
                if b.spec.affine_node() == Some(node)
                    || b.spec.strict_affinity
                    || !pools.iter().any(|p| p.net.contains(&net))
                    || b.spec.free_count(&net, &env.reserved) == 0
                {
                    continue;
                }
                let more =
                    self.assign_from_block(&net, n - got.len(), &attr, None, &env.reserved)?;
                got.extend(more);
                if got.len() == n {
                    return Ok(got);
                }
            }
        }
        let wanted = n;
        let have = got.len();
        self.release_assignments(&got)?;
        Err(IpamError::Exhausted {
            family: family.number(),
            pools: pools
                .iter()
                .map(|p| p.net.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            node: node.to_owned(),
            wanted,
            got: have,
        })
    }

    fn release_assignments(&self, got: &[Assignment]) -> Result<()> {
        let mut by_block: BTreeMap<IpNet, Vec<usize>> = BTreeMap::new();
        for a in got {
            if let Some(o) = cidr::ordinal_of(&a.block, a.ip) {
                by_block.entry(a.block).or_default().push(o);
            }
        }
        for (net, ords) in by_block {
            self.release_in_block(&net, |_| ords.clone())?;
        }
        Ok(())
    }

    /// `node`'s affinities to blocks inside `pools`, with their stored values.
    fn host_affinities(&self, node: &str, pools: &[Pool]) -> Result<Vec<(IpNet, KeyValue)>> {
        let list = crate::list_all(self.ds, Kind::BlockAffinity, "listing block affinities")?;
        let mut out = Vec::new();
        for kv in list.items {
            let node_matches =
                kv.value.pointer("/spec/node").and_then(|v| v.as_str()) == Some(node);
            if !node_matches {
                continue;
            }
            let Some(net) = kv
                .value
                .pointer("/spec/cidr")
                .and_then(|v| v.as_str())
                .and_then(cidr::parse_net)
            else {
                continue;
            };
            if pools.iter().any(|p| p.net.contains(&net)) {
                out.push((net, kv));
            }
        }
        // Newest claims first: the block claimed last is the one most likely to have room,
        // so a node with many full blocks does not read each of them on every allocation.
        out.sort_by_key(|(_, kv)| std::cmp::Reverse(kv.create_revision));
        Ok(out)
    }

    /// Second phase of a claim (also recovery of a claim a crash interrupted): make sure the
    /// block exists and is `node`'s, then confirm the pending affinity. False when the block
    /// belongs to someone else (the affinity is then removed).
    fn finish_claim(
        &self,
        node: &str,
        net: &IpNet,
        mut aff_kv: KeyValue,
        config: &ConfigSpec,
    ) -> Result<bool> {
        let bkey = model::block_key(net);
        let doing = || format!("claiming block {net} for node {node}");
        for attempt in 0..MAX_ATTEMPTS {
            pause(attempt);
            let block = self.ds.get(&bkey).map_err(|e| IpamError::ds(doing(), e))?;
            match block {
                None => {
                    let spec = BlockSpec::new(net, Some(node), config.strict_affinity);
                    let obj = Object::new(Kind::IpamBlock, bkey.name.clone(), spec);
                    match self.ds.create(&bkey, obj.to_value()) {
                        Ok(_) => {}
                        Err(e) if is_race(&e) => continue,
                        Err(e) => return Err(IpamError::ds(doing(), e)),
                    }
                }
                Some(kv) => {
                    let b: Block = decode(&kv)?;
                    if b.spec.affine_node() != Some(node) {
                        // Lost the race for this block: withdraw the claim.
                        match self.ds.delete(&aff_kv.key, Some(aff_kv.mod_revision)) {
                            Ok(_) => {}
                            Err(e) if is_race(&e) => {}
                            Err(e) => return Err(IpamError::ds(doing(), e)),
                        }
                        return Ok(false);
                    }
                }
            }
            let mut aff: model::Affinity = decode(&aff_kv)?;
            if aff.spec.state == model::STATE_CONFIRMED {
                return Ok(true);
            }
            aff.spec.state = model::STATE_CONFIRMED.to_owned();
            match self
                .ds
                .update(&aff_kv.key, aff.to_value(), Some(aff_kv.mod_revision))
            {
                Ok(_) => return Ok(true),
                Err(e) if is_race(&e) => {
                    match self
                        .ds
                        .get(&aff_kv.key)
                        .map_err(|e| IpamError::ds(doing(), e))?
                    {
                        Some(kv) => aff_kv = kv,
                        None => return Ok(false),
                    }
                }
                Err(e) => return Err(IpamError::ds(doing(), e)),
            }
        }
        Err(IpamError::Contention {
            doing: doing(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Claim `net` for `node` in two phases; true when the block is now the node's.
    fn claim_block(&self, node: &str, net: &IpNet, config: &ConfigSpec) -> Result<bool> {
        let akey = model::affinity_key(node, net);
        let spec = AffinitySpec {
            affinity_type: "host".to_owned(),
            state: model::STATE_PENDING.to_owned(),
            node: node.to_owned(),
            cidr: net.to_string(),
            deleted: "false".to_owned(),
        };
        let obj = Object::new(Kind::BlockAffinity, akey.name.clone(), spec);
        let doing = || format!("claiming block {net} for node {node}");
        let kv = match self.ds.create(&akey, obj.to_value()) {
            Ok(kv) => kv,
            Err(DatastoreError::AlreadyExists { .. }) => {
                // Another process of this node is claiming it, or a claim was interrupted:
                // finish it.
                match self.ds.get(&akey).map_err(|e| IpamError::ds(doing(), e))? {
                    Some(kv) => kv,
                    None => return Ok(false),
                }
            }
            Err(e) => return Err(IpamError::ds(doing(), e)),
        };
        self.finish_claim(node, net, kv, config)
    }

    /// Find an unclaimed block in `pools` (in order) and claim it for `node`.
    fn claim_new_block(
        &self,
        node: &str,
        pools: &[Pool],
        reserved: &Reservations,
        config: &ConfigSpec,
    ) -> Result<Option<IpNet>> {
        let list = crate::list_all(self.ds, Kind::IpamBlock, "listing IPAM blocks")?;
        let existing: HashSet<IpNet> = list
            .items
            .iter()
            .filter_map(|kv| {
                kv.value
                    .pointer("/spec/cidr")
                    .and_then(|v| v.as_str())
                    .and_then(cidr::parse_net)
            })
            .collect();
        let start = u128::from(fnv1a(node.as_bytes()));
        for pool in pools {
            for net in blocks_in_pool_bounded(pool, start) {
                if existing.contains(&net) || reserved.covers(&net) {
                    continue;
                }
                if self.claim_block(node, &net, config)? {
                    return Ok(Some(net));
                }
            }
        }
        Ok(None)
    }

    /// Allocate up to `n` addresses from one block: compare-and-swap of the block and the
    /// handle in one batch, retried on conflict. With `affine_to`, only while the block is
    /// still that node's; without, never from a strict-affinity block.
    fn assign_from_block(
        &self,
        net: &IpNet,
        n: usize,
        attr: &AllocationAttribute,
        affine_to: Option<&str>,
        reserved: &Reservations,
    ) -> Result<Vec<Assignment>> {
        let bkey = model::block_key(net);
        let handle_id = attr.handle_id.clone().unwrap_or_default();
        let doing = || format!("allocating from block {net} for {handle_id}");
        // The handle is created optimistically in the batch (one read less); a batch that
        // fails because it exists already is retried at once, reading it first.
        let mut read_handle = false;
        let mut attempt = 0;
        while attempt < MAX_ATTEMPTS {
            pause(attempt);
            attempt += 1;
            let Some(mut bkv) = self.ds.get(&bkey).map_err(|e| IpamError::ds(doing(), e))? else {
                return Ok(Vec::new());
            };
            // A full block is skipped without decoding it.
            let full = bkv
                .value
                .pointer("/spec/unallocated")
                .and_then(|u| u.as_array())
                .is_some_and(Vec::is_empty);
            if full {
                return Ok(Vec::new());
            }
            // The common shape is changed in place (no decoding into a typed block and
            // encoding again); anything unusual goes through the typed model.
            let (ords, value) =
                match model::allocate_in_value(&mut bkv.value, net, n, attr, reserved, affine_to) {
                    model::InPlace::Skip => return Ok(Vec::new()),
                    model::InPlace::Done(ords) => (ords, std::mem::take(&mut bkv.value)),
                    model::InPlace::Unusual => {
                        let mut b: Block = decode(&bkv)?;
                        let allowed = match affine_to {
                            Some(node) => b.spec.affine_node() == Some(node),
                            None => !b.spec.strict_affinity,
                        };
                        if !allowed || b.spec.deleted {
                            return Ok(Vec::new());
                        }
                        let ords = b.spec.allocate_ordinals(n, attr.clone(), reserved, net);
                        if ords.is_empty() {
                            return Ok(Vec::new());
                        }
                        (ords, b.to_value())
                    }
                };
            let handle_op = if read_handle {
                self.handle_add_op(&handle_id, net, ords.len() as u64)?
            } else {
                handle_create_op(&handle_id, net, ords.len() as u64)
            };
            let ops = vec![
                WriteOp::Update {
                    key: bkey.clone(),
                    value,
                    expected_revision: Some(bkv.mod_revision),
                },
                handle_op,
            ];
            match self.ds.write_batch(ops) {
                Ok(_) => {
                    return Ok(ords
                        .into_iter()
                        .map(|o| Assignment {
                            ip: cidr::ip_at(net, o),
                            block: *net,
                        })
                        .collect());
                }
                Err(DatastoreError::Batch { index: 1, source })
                    if !read_handle && matches!(*source, DatastoreError::AlreadyExists { .. }) =>
                {
                    // The handle exists: not contention, retry at once reading it.
                    read_handle = true;
                    attempt -= 1;
                }
                Err(e) if is_race(&e) => read_handle = true,
                Err(e) => return Err(IpamError::ds(doing(), e)),
            }
        }
        Err(IpamError::Contention {
            doing: doing(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// The write adding `count` addresses in block `net` to handle `handle_id`.
    fn handle_add_op(&self, handle_id: &str, net: &IpNet, count: u64) -> Result<WriteOp> {
        let key = model::handle_key(handle_id);
        let current = self
            .ds
            .get(&key)
            .map_err(|e| IpamError::ds(format!("reading handle {handle_id}"), e))?;
        Ok(match current {
            Some(kv) => {
                let mut h: Handle = decode(&kv)?;
                *h.spec.block.entry(net.to_string()).or_default() += count;
                WriteOp::Update {
                    key,
                    value: h.to_value(),
                    expected_revision: Some(kv.mod_revision),
                }
            }
            None => handle_create_op(handle_id, net, count),
        })
    }

    /// Assign one specific address (a static request) to a handle, claiming its block for
    /// `node` when the block does not exist yet.
    pub fn assign_ip(
        &self,
        ip: IpAddr,
        handle_id: &str,
        attrs: BTreeMap<String, String>,
        node: &str,
    ) -> Result<Assignment> {
        let not = |reason: String| IpamError::NotAssignable { ip, reason };
        let env = self.env(node)?;
        let pool = env
            .pools
            .iter()
            .find(|p| p.net.contains(&ip))
            .ok_or_else(|| not("the address is not in a configured pool".into()))?;
        if pool.disabled {
            return Err(not(format!("pool {} is disabled", pool.name)));
        }
        if env.reserved.contains(ip) {
            return Err(not("the address is reserved by an IPReservation".into()));
        }
        let net = cidr::net_containing(ip, pool.block_prefix);
        let ord = cidr::ordinal_of(&net, ip).unwrap_or_default();
        let bkey = model::block_key(&net);
        let attr = AllocationAttribute {
            handle_id: Some(handle_id.to_owned()),
            secondary: attrs,
        };
        let doing = || format!("assigning {ip} to {handle_id}");
        for attempt in 0..MAX_ATTEMPTS {
            pause(attempt);
            let Some(bkv) = self.ds.get(&bkey).map_err(|e| IpamError::ds(doing(), e))? else {
                self.claim_block(node, &net, &env.config)?;
                continue;
            };
            let mut b: Block = decode(&bkv)?;
            if !b.spec.allocate_ordinal(ord, attr.clone()) {
                return Err(not("the address is already assigned".into()));
            }
            let ops = vec![
                WriteOp::Update {
                    key: bkey.clone(),
                    value: b.to_value(),
                    expected_revision: Some(bkv.mod_revision),
                },
                self.handle_add_op(handle_id, &net, 1)?,
            ];
            match self.ds.write_batch(ops) {
                Ok(_) => return Ok(Assignment { ip, block: net }),
                Err(e) if is_race(&e) => continue,
                Err(e) => return Err(IpamError::ds(doing(), e)),
            }
        }
        Err(IpamError::Contention {
            doing: doing(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Free the ordinals `select` picks in block `net`, updating (or deleting) their handles in
    /// the same batch; an emptied block without affinity is deleted. Returns the freed
    /// addresses.
    pub(crate) fn release_in_block(
        &self,
        net: &IpNet,
        select: impl Fn(&BlockSpec) -> Vec<usize>,
    ) -> Result<Vec<IpAddr>> {
        let bkey = model::block_key(net);
        let doing = || format!("releasing addresses in block {net}");
        for attempt in 0..MAX_ATTEMPTS {
            pause(attempt);
            let Some(bkv) = self.ds.get(&bkey).map_err(|e| IpamError::ds(doing(), e))? else {
                return Ok(Vec::new());
            };
            let mut b: Block = decode(&bkv)?;
            let ords: Vec<usize> = select(&b.spec)
                .into_iter()
                .filter(|&o| matches!(b.spec.allocations.get(o), Some(Some(_))))
                .collect();
            if ords.is_empty() {
                return Ok(Vec::new());
            }
            let freed = b.spec.release(&ords);
            let mut ops = Vec::with_capacity(1 + freed.len());
            if b.spec.is_empty() && b.spec.affinity.is_none() {
                ops.push(WriteOp::Delete {
                    key: bkey.clone(),
                    expected_revision: Some(bkv.mod_revision),
                });
            } else {
                ops.push(WriteOp::Update {
                    key: bkey.clone(),
                    value: b.to_value(),
                    expected_revision: Some(bkv.mod_revision),
                });
            }
            for (handle_id, count) in &freed {
                if handle_id.is_empty() {
                    continue;
                }
                let hkey = model::handle_key(handle_id);
                let Some(hkv) = self.ds.get(&hkey).map_err(|e| IpamError::ds(doing(), e))? else {
                    continue;
                };
                let mut h: Handle = decode(&hkv)?;
                let cidr = net.to_string();
                let left = h
                    .spec
                    .block
                    .get(&cidr)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(*count);
                if left == 0 {
                    h.spec.block.remove(&cidr);
                } else {
                    h.spec.block.insert(cidr, left);
                }
                ops.push(if h.spec.block.is_empty() {
                    WriteOp::Delete {
                        key: hkey,
                        expected_revision: Some(hkv.mod_revision),
                    }
                } else {
                    WriteOp::Update {
                        key: hkey,
                        value: h.to_value(),
                        expected_revision: Some(hkv.mod_revision),
                    }
                });
            }
            match self.ds.write_batch(ops) {
                Ok(_) => return Ok(ords.iter().map(|&o| cidr::ip_at(net, o)).collect()),
                Err(e) if is_race(&e) => continue,
                Err(e) => return Err(IpamError::ds(doing(), e)),
            }
        }
        Err(IpamError::Contention {
            doing: doing(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Release every address of a handle and delete the handle. Idempotent: an unknown handle
    /// releases nothing. Returns the freed addresses.
    pub fn release_by_handle(&self, handle_id: &str) -> Result<Vec<IpAddr>> {
        let hkey = model::handle_key(handle_id);
        let doing = || format!("releasing handle {handle_id}");
        let Some(hkv) = self.ds.get(&hkey).map_err(|e| IpamError::ds(doing(), e))? else {
            return Ok(Vec::new());
        };
        let h: Handle = decode(&hkv)?;
        let mut freed = Vec::new();
        for cidr_s in h.spec.block.keys() {
            let Some(net) = cidr::parse_net(cidr_s) else {
                continue;
            };
            freed.extend(self.release_in_block(&net, |b| b.ordinals_of_handle(handle_id))?);
        }
        // A handle whose counts disagree with its blocks would survive the loop above; its
        // addresses are all gone now, so remove it.
        if let Some(hkv) = self.ds.get(&hkey).map_err(|e| IpamError::ds(doing(), e))?
            && self.ips_by_handle(handle_id)?.is_empty()
        {
            match self.ds.delete(&hkey, Some(hkv.mod_revision)) {
                Ok(_) => {}
                Err(e) if is_race(&e) => {}
                Err(e) => return Err(IpamError::ds(doing(), e)),
            }
        }
        Ok(freed)
    }

    /// Release specific addresses, whoever holds them. Returns the addresses that were not
    /// allocated.
    pub fn release_ips(&self, ips: &[IpAddr]) -> Result<Vec<IpAddr>> {
        let blocks = self.block_nets()?;
        let mut by_block: BTreeMap<IpNet, Vec<usize>> = BTreeMap::new();
        let mut unallocated = Vec::new();
        for &ip in ips {
            match blocks.iter().find(|b| b.contains(&ip)) {
                Some(b) => by_block
                    .entry(*b)
                    .or_default()
                    .push(cidr::ordinal_of(b, ip).unwrap_or_default()),
                None => unallocated.push(ip),
            }
        }
        for (net, ords) in by_block {
            let freed = self.release_in_block(&net, |_| ords.clone())?;
            for o in ords {
                let ip = cidr::ip_at(&net, o);
                if !freed.contains(&ip) {
                    unallocated.push(ip);
                }
            }
        }
        Ok(unallocated)
    }

    /// Release `ip` only if it is still allocated to `handle_id` (`None`: to no handle).
    /// True when released.
    pub fn release_ip_if_held_by(&self, ip: IpAddr, handle_id: Option<&str>) -> Result<bool> {
        let Some(net) = self.block_nets()?.into_iter().find(|b| b.contains(&ip)) else {
            return Ok(false);
        };
        let ord = cidr::ordinal_of(&net, ip).unwrap_or_default();
        let freed = self.release_in_block(&net, |b| match b.attribute_of(ord) {
            Some(a) if a.handle_id.as_deref() == handle_id => vec![ord],
            _ => Vec::new(),
        })?;
        Ok(!freed.is_empty())
    }

    /// CIDRs of every stored block.
    fn block_nets(&self) -> Result<Vec<IpNet>> {
        let list = crate::list_all(self.ds, Kind::IpamBlock, "listing IPAM blocks")?;
        Ok(list
            .items
            .iter()
            .filter_map(|kv| {
                kv.value
                    .pointer("/spec/cidr")
                    .and_then(|v| v.as_str())
                    .and_then(cidr::parse_net)
            })
            .collect())
    }

    /// The addresses a handle holds.
    pub fn ips_by_handle(&self, handle_id: &str) -> Result<Vec<IpAddr>> {
        let doing = || format!("reading handle {handle_id}");
        let Some(hkv) = self
            .ds
            .get(&model::handle_key(handle_id))
            .map_err(|e| IpamError::ds(doing(), e))?
        else {
            return Ok(Vec::new());
        };
        let h: Handle = decode(&hkv)?;
        let mut out = Vec::new();
        for cidr_s in h.spec.block.keys() {
            let Some(net) = cidr::parse_net(cidr_s) else {
                continue;
            };
            let Some(bkv) = self
                .ds
                .get(&model::block_key(&net))
                .map_err(|e| IpamError::ds(doing(), e))?
            else {
                continue;
            };
            let b: Block = decode(&bkv)?;
            out.extend(
                b.spec
                    .ordinals_of_handle(handle_id)
                    .into_iter()
                    .map(|o| cidr::ip_at(&net, o)),
            );
        }
        Ok(out)
    }

    /// The allocation holding `ip`: its block and attribute, or None when free (or in no
    /// block).
    pub fn get_allocation(&self, ip: IpAddr) -> Result<Option<(IpNet, AllocationAttribute)>> {
        let Some(net) = self.block_nets()?.into_iter().find(|b| b.contains(&ip)) else {
            return Ok(None);
        };
        let Some(bkv) = self
            .ds
            .get(&model::block_key(&net))
            .map_err(|e| IpamError::ds(format!("reading block {net}"), e))?
        else {
            return Ok(None);
        };
        let b: Block = decode(&bkv)?;
        let ord = cidr::ordinal_of(&net, ip).unwrap_or_default();
        Ok(b.spec.attribute_of(ord).cloned().map(|a| (net, a)))
    }

    /// The IPAM configuration.
    pub fn config(&self) -> Result<ConfigSpec> {
        Ok(pools::load_config(self.ds)?.0)
    }

    /// Change the IPAM configuration with `change` (compare-and-swap, retried).
    pub fn update_config(&self, change: impl Fn(&mut ConfigSpec)) -> Result<ConfigSpec> {
        let key = model::config_key();
        for attempt in 0..MAX_ATTEMPTS {
            pause(attempt);
            let (mut spec, rev) = pools::load_config(self.ds)?;
            change(&mut spec);
            let value = Object::new(
                Kind::IpamConfiguration,
                model::CONFIG_NAME.into(),
                spec.clone(),
            )
            .to_value();
            let res = match rev {
                Some(r) => self.ds.update(&key, value, Some(r)),
                None => self.ds.create(&key, value),
            };
            match res {
                Ok(_) => return Ok(spec),
                Err(e) if is_race(&e) => continue,
                Err(e) => return Err(IpamError::ds("writing the IPAM configuration", e)),
            }
        }
        Err(IpamError::Contention {
            doing: "writing the IPAM configuration".into(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Give up `node`'s affinity to block `net`: in one batch, delete the affinity and either
    /// delete the block (when empty) or leave it without affinity. With `only_if_empty`,
    /// nothing happens unless the block is empty. `expect_block` pins the block revision
    /// (nothing happens if the block changed since). True when released.
    pub fn release_affinity(
        &self,
        node: &str,
        net: &IpNet,
        only_if_empty: bool,
        expect_block: Option<Revision>,
    ) -> Result<bool> {
        let bkey = model::block_key(net);
        let akey = model::affinity_key(node, net);
        let doing = || format!("releasing block {net} of node {node}");
        for attempt in 0..MAX_ATTEMPTS {
            pause(attempt);
            let bkv = self.ds.get(&bkey).map_err(|e| IpamError::ds(doing(), e))?;
            let akv = self.ds.get(&akey).map_err(|e| IpamError::ds(doing(), e))?;
            let mut ops = Vec::new();
            if let Some(bkv) = &bkv {
                if expect_block.is_some_and(|r| r != bkv.mod_revision) {
                    return Ok(false);
                }
                let mut b: Block = decode(bkv)?;
                if b.spec.affine_node() == Some(node) {
                    if b.spec.is_empty() {
                        ops.push(WriteOp::Delete {
                            key: bkey.clone(),
                            expected_revision: Some(bkv.mod_revision),
                        });
                    } else if only_if_empty {
                        return Ok(false);
                    } else {
                        b.spec.affinity = None;
                        b.spec.affinity_claim_time = None;
                        b.spec.sequence_number += 1;
                        ops.push(WriteOp::Update {
                            key: bkey.clone(),
                            value: b.to_value(),
                            expected_revision: Some(bkv.mod_revision),
                        });
                    }
                }
            } else if expect_block.is_some() {
                return Ok(false);
            }
            if let Some(akv) = &akv {
                ops.push(WriteOp::Delete {
                    key: akey.clone(),
                    expected_revision: Some(akv.mod_revision),
                });
            }
            if ops.is_empty() {
                return Ok(false);
            }
            match self.ds.write_batch(ops) {
                Ok(_) => return Ok(true),
                Err(e) if is_race(&e) => continue,
                Err(e) => return Err(IpamError::ds(doing(), e)),
            }
        }
        Err(IpamError::Contention {
            doing: doing(),
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// The write creating handle `handle_id` with `count` addresses in block `net`.
fn handle_create_op(handle_id: &str, net: &IpNet, count: u64) -> WriteOp {
    let spec = HandleSpec {
        handle_id: handle_id.to_owned(),
        block: BTreeMap::from([(net.to_string(), count)]),
        deleted: false,
    };
    WriteOp::Create {
        key: model::handle_key(handle_id),
        value: Object::new(Kind::IpamHandle, handle_id.to_owned(), spec).to_value(),
    }
}

/// Candidate blocks of a pool, starting at a node-dependent block so nodes spread out.
fn blocks_in_pool_bounded(pool: &Pool, start: u128) -> impl Iterator<Item = IpNet> {
    cidr::blocks_in_pool(&pool.net, pool.block_prefix, start).take(MAX_BLOCK_SCAN)
}

/// FNV-1a: a stable hash of the node name (block search start).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
