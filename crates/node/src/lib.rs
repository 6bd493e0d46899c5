//! calico-node: what runs on every host.
//!
//! - [`params`]: the DC/OS installer parameters (`calico_network_cidr`,
//!   `calico_vxlan_*`, MTUs), from a file and the environment, validated;
//! - [`startup`]: registers the Node (underlay address, VXLAN tunnel
//!   address from IPAM, tunnel MAC) and creates the default IPPool and the
//!   `calico` Profile when missing;
//! - [`stale`]: finds this host's workload endpoints whose interface is gone
//!   (a runtime that crashed mid-ADD) and removes them after a grace period;
//! - the binary then runs felix, the health and metrics endpoints, the stale
//!   endpoint collector and the IPAM leak collector.

pub mod params;
pub mod stale;
pub mod startup;
pub mod ui;
