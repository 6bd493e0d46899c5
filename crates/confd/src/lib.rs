//! confd for calico-rs: BIRD's configuration from the datastore.
//!
//! Upstream's confd keeps a cache of `/calico/bgp/v1/...` keys computed
//! from the v3 resources and runs Go templates over it. Here the same
//! computation is typed: [`model`] turns Nodes, BGPPeers,
//! BGPConfigurations, BGPFilters, IPPools and block affinities into each
//! host's BGP facts and the peerings of every node (upstream's v1 peering
//! keys, reverse peerings included), [`config`] derives one node's BIRD
//! settings per IP version (upstream's `getBGPConfig`), [`filters`] writes
//! BGPFilters as BIRD functions, and [`render`] writes the six files
//! (`bird.cfg`, `bird_ipam.cfg`, `bird_aggr.cfg` and their IPv6 twins)
//! line for line as upstream's templates do.

pub mod bird;
pub mod config;
pub mod daemon;
pub mod filters;
pub mod model;
pub mod render;

pub use model::{Affinity, Inputs, NoSecrets, Secrets, Settings};
pub use render::{FILE_NAMES, render};

/// Why a node's configuration cannot be rendered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The node has no Node resource: upstream fails the render rather than
    /// write a configuration without the node's address.
    #[error("rendering BIRD configuration for node {0:?}: no Node resource of that name")]
    NoSuchNode(String),
    /// A session's password holds a quote, a line break or NUL, which BIRD's
    /// quoted strings cannot carry: written as is it would be read as
    /// configuration. The session is not configured without it either.
    #[error(
        "rendering BGP session {0}: its password cannot be written into BIRD's configuration (it holds a quote, a line break or NUL)"
    )]
    UnwritablePassword(String),
    /// `CALICO_ROUTER_ID` is neither empty, `hash`, nor an IPv4 address.
    #[error("router id (--router-id, CALICO_ROUTER_ID) {0:?}: not an IPv4 address or \"hash\"")]
    BadRouterId(String),
    /// A BGPFilter cannot be written as BIRD code.
    #[error("rendering BGPFilter {filter:?}: {reason}")]
    Filter {
        /// The filter's name.
        filter: String,
        /// What is wrong with it.
        reason: String,
    },
}
