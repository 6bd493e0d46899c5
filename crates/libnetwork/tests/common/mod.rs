//! What the plugin's test binaries share.

use calico_datastore::{Datastore, Kind};

/// Addresses allocated in every IPAM block.
pub fn allocated(ds: &dyn Datastore) -> usize {
    ds.list(Kind::IpamBlock, None)
        .unwrap()
        .items
        .iter()
        .map(|b| {
            b.value["spec"]["allocations"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|x| !x.is_null()).count())
        })
        .sum()
}
