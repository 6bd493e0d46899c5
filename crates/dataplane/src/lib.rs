//! nftables dataplane for calico-rs: renders the compiled endpoint programs
//! of [`calico_policy`] into one table we own (`inet calico`) and replaces
//! that table's contents in one atomic `nft -j -f -` batch.
//!
//! - [`render`] builds the desired sets, chains and rules;
//! - [`apply`] turns them into the batch and runs it through an [`Nft`].

pub mod apply;
pub mod diff;
pub mod monitor;
pub mod nat;
pub mod render;

pub use apply::{
    Conntrack, ConntrackCall, ConntrackCli, Error, KernelNft, Nft, NftCli, NftLib,
    RecordingConntrack, RecordingNft, batch,
};
pub use monitor::NftMonitor;
pub use nat::add_nat_outgoing;
pub use render::{
    DEFAULT_FAILSAFE_INBOUND, DEFAULT_FAILSAFE_OUTBOUND, EndpointToHostAction,
    EndpointToHostActionError, Failsafe, FailsafeError, HostOptions, Interface, L4Protocol,
    RenderCache, Ruleset, fail_closed_table, parse_failsafes, render, render_cached, render_with,
};
