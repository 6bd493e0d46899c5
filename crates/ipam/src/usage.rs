//! What is in use: per pool, per block, borrowed addresses (`calicoctl ipam show`).

use std::net::IpAddr;

use calico_datastore::{Datastore, Kind};
use ipnet::IpNet;

use crate::cidr::{self, Family};
use crate::model::Block;
use crate::pools::{self, Pool};
use crate::{Result, decode};

/// Usage of one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockUsage {
    /// The block's CIDR.
    pub cidr: IpNet,
    /// The node it is affine to.
    pub node: Option<String>,
    /// Addresses in the block.
    pub total: u128,
    /// Addresses allocated.
    pub in_use: u128,
}

/// Usage of one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    /// The pool.
    pub pool: Pool,
    /// Addresses in the pool.
    pub total: u128,
    /// Addresses allocated.
    pub in_use: u128,
    /// The pool's blocks.
    pub blocks: Vec<BlockUsage>,
}

/// An address allocated by one node from a block affine to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Borrowed {
    /// The address.
    pub ip: IpAddr,
    /// The node that allocated it (attribute `node`).
    pub borrowing_node: String,
    /// The block.
    pub block: IpNet,
    /// The node the block is affine to (empty when none).
    pub block_owner: String,
    /// The handle.
    pub handle_id: String,
}

/// The whole picture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every pool, sorted by family then CIDR.
    pub pools: Vec<PoolUsage>,
    /// Blocks in no current pool.
    pub orphan_blocks: Vec<BlockUsage>,
    /// Borrowed addresses.
    pub borrowed: Vec<Borrowed>,
}

impl Usage {
    /// Allocated addresses across all pools and orphan blocks.
    pub fn in_use(&self) -> u128 {
        self.pools.iter().map(|p| p.in_use).sum::<u128>()
            + self.orphan_blocks.iter().map(|b| b.in_use).sum::<u128>()
    }
}

/// Read every pool and block and count.
pub fn usage(ds: &dyn Datastore) -> Result<Usage> {
    let mut pools: Vec<PoolUsage> = pools::list_pools(ds)?
        .into_iter()
        .map(|pool| PoolUsage {
            total: cidr::num_addresses(&pool.net),
            pool,
            in_use: 0,
            blocks: Vec::new(),
        })
        .collect();
    pools.sort_by_key(|p| (Family::of_net(&p.pool.net), p.pool.net));
    let list = crate::list_all(ds, Kind::IpamBlock, "listing IPAM blocks")?;
    let mut out = Usage::default();
    for kv in &list.items {
        let b: Block = decode(kv)?;
        let Some(net) = b.spec.net() else { continue };
        let owner = b.spec.affine_node().map(str::to_owned);
        let bu = BlockUsage {
            cidr: net,
            node: owner.clone(),
            total: cidr::num_addresses(&net),
            in_use: b.spec.in_use() as u128,
        };
        for (ord, a) in b.spec.allocations.iter().enumerate() {
            let Some(attr) = a.and_then(|i| b.spec.attributes.get(i)) else {
                continue;
            };
            let borrower = attr.secondary.get(crate::model::ATTR_NODE);
            if let Some(borrower) = borrower
                && owner.as_deref() != Some(borrower.as_str())
            {
                out.borrowed.push(Borrowed {
                    ip: cidr::ip_at(&net, ord),
                    borrowing_node: borrower.clone(),
                    block: net,
                    block_owner: owner.clone().unwrap_or_default(),
                    handle_id: attr.handle_id.clone().unwrap_or_default(),
                });
            }
        }
        match pools.iter_mut().find(|p| p.pool.net.contains(&net)) {
            Some(p) => {
                p.in_use += bu.in_use;
                p.blocks.push(bu);
            }
            None => out.orphan_blocks.push(bu),
        }
    }
    for p in &mut pools {
        p.blocks.sort_by_key(|b| b.cidr);
    }
    out.pools = pools;
    Ok(out)
}
