//! What allocation reads besides blocks: pools, reservations, the IPAM configuration and the
//! node's labels.

use std::collections::BTreeMap;

use calico_api::v3::{IPPool, IPReservation};
use calico_datastore::{Datastore, Key, Kind, Revision};
use ipnet::IpNet;

use crate::cidr::{self, Family, Reservations};
use crate::model::{self, ConfigSpec};
use crate::{IpamError, Result, decode};

/// What an address is for, matched against a pool's `allowedUses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A workload (container) address.
    Workload,
    /// A tunnel device address of a node.
    Tunnel,
}

impl Use {
    fn as_str(self) -> &'static str {
        match self {
            Self::Workload => "Workload",
            Self::Tunnel => "Tunnel",
        }
    }
}

/// An IP pool as IPAM uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// The pool's CIDR.
    pub net: IpNet,
    /// Prefix length of its blocks (never shorter than the pool's).
    pub block_prefix: u8,
    /// Allocation from the pool is off.
    pub disabled: bool,
    /// Nodes that may allocate from it.
    pub node_selector: String,
    /// What its addresses may be used for.
    pub allowed_uses: Vec<String>,
    /// Only used when asked for by name (`assignmentMode: Manual`).
    pub manual: bool,
}

impl Pool {
    /// The pool's family.
    pub fn family(&self) -> Family {
        Family::of_net(&self.net)
    }

    fn allows(&self, u: Use) -> bool {
        self.allowed_uses.is_empty() || self.allowed_uses.iter().any(|a| a == u.as_str())
    }
}

/// A stored pool with its defaults filled in, and its CIDR.
fn decode_pool(kv: &calico_datastore::KeyValue) -> Result<(IPPool, IpNet)> {
    let mut pool: IPPool = decode(kv)?;
    calico_api::defaults::ippool(&mut pool.spec);
    let net = cidr::parse_net(&pool.spec.cidr).ok_or_else(|| IpamError::Corrupt {
        what: kv.key.to_string(),
        reason: format!("spec.cidr {:?} is not a CIDR", pool.spec.cidr),
    })?;
    Ok((pool, net))
}

/// Every pool in the store, sorted by name.
pub fn list_pools(ds: &dyn Datastore) -> Result<Vec<Pool>> {
    let list = crate::list_all(ds, Kind::IpPool, "listing IP pools")?;
    let mut out = Vec::with_capacity(list.items.len());
    for kv in &list.items {
        let (pool, net) = decode_pool(kv)?;
        let bs = u8::try_from(pool.spec.block_size).unwrap_or(net.max_prefix_len());
        out.push(Pool {
            name: kv.key.name.clone(),
            net,
            block_prefix: cidr::effective_block_prefix(&net, bs),
            disabled: pool.spec.disabled,
            node_selector: pool.spec.node_selector.clone(),
            allowed_uses: pool.spec.allowed_uses.clone(),
            manual: pool.spec.assignment_mode.as_deref() == Some("Manual"),
        });
    }
    Ok(out)
}

/// Every reserved range (IPReservation `reservedCIDRs`).
pub fn reservations(ds: &dyn Datastore) -> Result<Reservations> {
    let list = crate::list_all(ds, Kind::IpReservation, "listing IP reservations")?;
    let mut nets = Vec::new();
    for kv in &list.items {
        let r: IPReservation = decode(kv)?;
        for c in &r.spec.reserved_cidrs {
            nets.push(cidr::parse_net(c).ok_or_else(|| IpamError::Corrupt {
                what: kv.key.to_string(),
                reason: format!("reservedCIDRs entry {c:?} is not an address or CIDR"),
            })?);
        }
    }
    Ok(Reservations::new(nets))
}

/// The IPAM configuration (defaults when none is stored) and its revision.
pub fn load_config(ds: &dyn Datastore) -> Result<(ConfigSpec, Option<Revision>)> {
    match ds
        .get(&model::config_key())
        .map_err(|e| IpamError::ds("reading the IPAM configuration", e))?
    {
        Some(kv) => {
            let c: model::Config = decode(&kv)?;
            Ok((c.spec, Some(kv.mod_revision)))
        }
        None => Ok((ConfigSpec::default(), None)),
    }
}

/// The labels of Node `node` (none when the node has no resource).
pub fn node_labels(ds: &dyn Datastore, node: &str) -> Result<BTreeMap<String, String>> {
    let kv = ds
        .get(&Key::global(Kind::Node, node))
        .map_err(|e| IpamError::ds(format!("reading node {node}"), e))?;
    let mut labels = BTreeMap::new();
    if let Some(obj) = kv
        .as_ref()
        .and_then(|kv| kv.value.pointer("/metadata/labels"))
        .and_then(|l| l.as_object())
    {
        for (k, v) in obj {
            if let Some(s) = v.as_str() {
                labels.insert(k.clone(), s.to_owned());
            }
        }
    }
    Ok(labels)
}

/// The pools of `family` an allocation for `node` may use, in order: the requested ones (by
/// name or CIDR; each must exist, be enabled and allow `use_`), or else every enabled,
/// automatic pool of the family whose node selector matches the node's labels.
pub fn select_pools(
    all: &[Pool],
    family: Family,
    requested: &[String],
    labels: &BTreeMap<String, String>,
    use_: Use,
) -> Result<Vec<Pool>> {
    if !requested.is_empty() {
        let mut out = Vec::with_capacity(requested.len());
        for r in requested {
            let want = cidr::parse_net(r);
            let pool = all
                .iter()
                .find(|p| p.name == *r || Some(p.net) == want)
                .filter(|p| !p.disabled && p.family() == family && p.allows(use_))
                .ok_or_else(|| IpamError::PoolUnavailable(r.clone()))?;
            out.push(pool.clone());
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for p in all {
        if p.disabled || p.manual || p.family() != family || !p.allows(use_) {
            continue;
        }
        let sel =
            calico_selector::parse_shared(&p.node_selector).map_err(|e| IpamError::Corrupt {
                what: format!("IPPool({})", p.name),
                reason: format!("nodeSelector {:?}: {e}", p.node_selector),
            })?;
        if sel.evaluate(labels) {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Whether ClusterInformation `default` says the datastore is locked for migration
/// (`datastoreReady: false`); a cluster without one is not locked.
pub fn is_locked(ds: &dyn Datastore) -> Result<bool> {
    let key = calico_datastore::Key::global(Kind::ClusterInformation, "default");
    let info = ds
        .get(&key)
        .map_err(|e| IpamError::ds("reading ClusterInformation default", e))?;
    Ok(info
        .and_then(|kv| kv.value.pointer("/spec/datastoreReady").cloned())
        .is_some_and(|ready| ready == serde_json::Value::Bool(false)))
}

/// Which pool `split_pool` splits.
#[derive(Debug, Clone)]
pub enum PoolRef {
    /// By name.
    Name(String),
    /// By CIDR.
    Cidr(IpNet),
}

/// Split a pool into `parts` (a power of two) equal pools `<name>-split-<i>` with the same
/// settings, in one batch that deletes the original: the addresses and blocks already handed
/// out stay where they are, each inside one new pool. Needs the datastore locked
/// (`calicoctl datastore migrate lock`), as upstream, so that nothing allocates meanwhile; a
/// new pool may not be smaller than a block. Returns the new pools' names and CIDRs.
pub fn split_pool(ds: &dyn Datastore, which: &PoolRef, parts: u32) -> Result<Vec<(String, IpNet)>> {
    let bad = |m: String| IpamError::InvalidArgument(m);
    if !is_locked(ds)? {
        return Err(bad(
            "the datastore is not locked: run `calicoctl datastore migrate lock` first, so that \
             nothing allocates while the pool is split"
                .into(),
        ));
    }
    if parts < 2 || !parts.is_power_of_two() {
        return Err(bad(format!(
            "{parts}: a pool splits into a power of two (2, 4, 8, ...) of pools"
        )));
    }
    let list = crate::list_all(ds, Kind::IpPool, "listing IP pools")?;
    let found = list.items.iter().find(|kv| match which {
        PoolRef::Name(n) => &kv.key.name == n,
        PoolRef::Cidr(c) => kv
            .value
            .pointer("/spec/cidr")
            .and_then(serde_json::Value::as_str)
            .and_then(cidr::parse_net)
            .is_some_and(|n| n == *c),
    });
    let Some(kv) = found else {
        return Err(bad(match which {
            PoolRef::Name(n) => format!("no IP pool named {n:?}"),
            PoolRef::Cidr(c) => format!("no IP pool with CIDR {c}"),
        }));
    };
    let (pool, net) = decode_pool(kv)?;
    let extra_bits = u8::try_from(parts.trailing_zeros()).unwrap_or(u8::MAX);
    let prefix = net.prefix_len().saturating_add(extra_bits);
    if i64::from(prefix) > pool.spec.block_size || prefix > net.max_prefix_len() {
        return Err(bad(format!(
            "{} into {parts} gives /{prefix} pools, smaller than the pool's blocks \
             (blockSize {}): split into fewer",
            net, pool.spec.block_size
        )));
    }
    let subnets: Vec<IpNet> = net
        .subnets(prefix)
        .map_err(|e| bad(format!("splitting {net}: {e}")))?
        .collect();
    let mut ops = vec![calico_datastore::WriteOp::Delete {
        key: kv.key.clone(),
        expected_revision: Some(kv.mod_revision),
    }];
    let mut made = Vec::with_capacity(subnets.len());
    for (i, subnet) in subnets.into_iter().enumerate() {
        let name = format!("{}-split-{i}", kv.key.name);
        let mut child = pool.clone();
        child.metadata = calico_api::v3::ObjectMeta {
            name: name.clone(),
            labels: pool.metadata.labels.clone(),
            annotations: pool.metadata.annotations.clone(),
            ..Default::default()
        };
        child.spec.cidr = subnet.to_string();
        let value = serde_json::to_value(&child).map_err(|e| bad(e.to_string()))?;
        let checked =
            calico_api::parse_resource(value).map_err(|e| bad(format!("IP pool {name}: {e}")))?;
        ops.push(calico_datastore::WriteOp::Create {
            key: Key::global(Kind::IpPool, name.clone()),
            value: checked.value,
        });
        made.push((name, subnet));
    }
    let doing = || format!("splitting IP pool {}", kv.key.name);
    calico_datastore::cluster::check_batch(ds, &ops).map_err(|e| IpamError::ds(doing(), e))?;
    ds.write_batch(ops).map_err(|e| IpamError::ds(doing(), e))?;
    Ok(made)
}
