//! felix for calico-rs: the agent loop of every host.
//!
//! It lists and then watches the datastore, keeps the policy calculation
//! ([`calico_policy`]) and a small model of the cluster's hosts, pools and
//! blocks ([`cluster`]) up to date, and programs the kernel: one nftables
//! table through [`calico_dataplane`] and routes, the VXLAN device and its
//! peers through [`calico_netlink`] ([`routes`]). [`agent::Felix`] ties
//! them together: workload interfaces drop until the first complete sync,
//! every change sends only what it changed, a rule or chain the kernel
//! refuses fails closed (and says so), someone else's change to the table
//! is repaired at once, and a datastore outage leaves the last state in
//! force.

pub mod agent;
pub mod cluster;
pub mod flowlog;
pub mod metrics;
pub mod routes;

pub use agent::{
    Config, Encap, Felix, Kernel, Outcome, StartupOverrides, StartupParams, Status, VxlanConfig,
    settings_from_datastore,
};
pub use metrics::Metrics;

/// Turns transparent huge pages off for this process; calico-node calls it
/// first thing. With them on, the allocator's fresh regions are zeroed 2 MiB
/// at a fault, and the same cold start took 250 or 420 ms depending on what
/// the process before had left in the kernel's free memory (265-290 ms
/// without).
pub fn without_huge_pages() -> std::io::Result<()> {
    nix::sys::prctl::set_thp_disable(true).map_err(std::io::Error::from)
}
