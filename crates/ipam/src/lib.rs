//! Calico IPAM on the calico-rs datastore.
//!
//! The model is upstream libcalico-go's: IP pools are carved into blocks (`IPAMBlock`, one per
//! block CIDR, default /26 for IPv4 and /122 for IPv6); a node claims blocks through a
//! `BlockAffinity` in two phases (create the affinity `pending`, create the block, confirm the
//! affinity); every address handed out is recorded in its block with an attribute naming its
//! handle (`IPAMHandle`, one per container attachment) and the workload; the handle counts its
//! addresses per block so release by handle only reads the blocks it needs.
//!
//! Every write is a compare-and-swap on the datastore, and the block and handle of one
//! allocation or release are written in one atomic batch, so any number of processes on any
//! number of hosts can allocate at once: a loser of a race re-reads and retries (bounded, with
//! jittered backoff). Nothing is cached between calls.
//!
//! [`Ipam`] allocates and releases; [`check`] finds leaks and inconsistencies and
//! [`check::release_leaks`] frees them after re-validating each; [`check::Collector`] is the
//! periodic leak and empty-block collector a node agent runs; [`usage`] reports what is in
//! use.

use std::net::IpAddr;

use calico_datastore::DatastoreError;

pub mod allocator;
pub mod check;
pub mod cidr;
pub mod model;
pub mod node_removal;
pub mod pools;
pub mod usage;

pub use allocator::{AssignArgs, Assigned, Ipam};
pub use cidr::Family;

/// Errors from IPAM operations.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The datastore failed.
    #[error("{doing}: {source}")]
    Datastore {
        /// What was being done.
        doing: String,
        /// The datastore's error.
        #[source]
        source: Box<DatastoreError>,
    },
    /// The datastore is locked for migration (ClusterInformation `datastoreReady: false`).
    #[error(
        "the datastore is locked for migration (ClusterInformation datastoreReady is false): \
         no addresses are handed out until `calicoctl datastore migrate unlock`"
    )]
    Locked,
    /// A stored object could not be understood.
    #[error("reading {what}: {reason}")]
    Corrupt {
        /// The object.
        what: String,
        /// Why it is unusable.
        reason: String,
    },
    /// No enabled pool of the family may be used by this node.
    #[error("no configured Calico IPv{family} pools for node {node}")]
    NoPools {
        /// 4 or 6.
        family: u8,
        /// The node.
        node: String,
    },
    /// A requested pool is missing, disabled, or of the wrong family or use.
    #[error("the given pool ({0}) does not exist, or is not enabled")]
    PoolUnavailable(String),
    /// Every usable address of the pools is taken (or the node may claim no more blocks).
    #[error(
        "no more free IPv{family} addresses in pools [{pools}] for node {node}: wanted {wanted}, got {got}"
    )]
    Exhausted {
        /// 4 or 6.
        family: u8,
        /// The pools tried, comma separated.
        pools: String,
        /// The node.
        node: String,
        /// How many addresses were asked for.
        wanted: usize,
        /// How many were free.
        got: usize,
    },
    /// A specific address was asked for and is not assignable.
    #[error("cannot assign {ip}: {reason}")]
    NotAssignable {
        /// The address.
        ip: IpAddr,
        /// Why.
        reason: String,
    },
    /// Too many compare-and-swap conflicts in a row: other writers keep winning.
    #[error("{doing}: gave up after {attempts} conflicting concurrent updates; try again later")]
    Contention {
        /// What was being done.
        doing: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// An argument is unusable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl IpamError {
    pub(crate) fn ds(doing: impl Into<String>, source: DatastoreError) -> Self {
        Self::Datastore {
            doing: doing.into(),
            source: Box::new(source),
        }
    }
}

/// Result of IPAM operations.
pub type Result<T, E = IpamError> = std::result::Result<T, E>;

/// Every value of `kind`, all readable: IPAM judges addresses from whole lists only, so an
/// unreadable block, handle or endpoint stops it (naming the record) rather than letting it
/// hand out or release an address that record may hold.
pub(crate) fn list_all(
    ds: &dyn calico_datastore::Datastore,
    kind: calico_datastore::Kind,
    doing: &str,
) -> Result<calico_datastore::ListResult> {
    let list = ds.list(kind, None).map_err(|e| IpamError::ds(doing, e))?;
    if let Some(bad) = list.unreadable.first() {
        return Err(IpamError::ds(
            doing,
            DatastoreError::Corrupt {
                key: bad.key.clone(),
                reason: format!(
                    "{} (repair it with calicoctl apply, or remove it with calicoctl delete)",
                    bad.reason
                ),
            },
        ));
    }
    Ok(list)
}

/// Whether a datastore error means "someone else wrote first": re-read and retry.
pub(crate) fn is_race(e: &DatastoreError) -> bool {
    match e {
        DatastoreError::Conflict { .. }
        | DatastoreError::AlreadyExists { .. }
        | DatastoreError::NotFound { .. } => true,
        DatastoreError::Batch { source, .. } => is_race(source),
        _ => false,
    }
}

/// Decode a stored value.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(kv: &calico_datastore::KeyValue) -> Result<T> {
    T::deserialize(&kv.value).map_err(|e| IpamError::Corrupt {
        what: kv.key.to_string(),
        reason: e.to_string(),
    })
}

/// Retry pacing for compare-and-swap loops.
pub(crate) mod backoff {
    use std::hash::{BuildHasher, Hasher};
    use std::time::Duration;

    /// Most attempts of one compare-and-swap loop.
    pub(crate) const MAX_ATTEMPTS: u32 = 200;

    /// A random number (std's per-instance random hash keys, no extra dependency).
    pub(crate) fn random_u64() -> u64 {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    }

    /// Sleep before retry `attempt` (0-based): a random time up to a cap that doubles from
    /// 50 µs to 20 ms, so colliding writers spread out.
    pub(crate) fn pause(attempt: u32) {
        if attempt == 0 {
            return;
        }
        let cap_us = (50u64 << attempt.min(9)).min(20_000);
        std::thread::sleep(Duration::from_micros(random_u64() % cap_us + 1));
    }
}
