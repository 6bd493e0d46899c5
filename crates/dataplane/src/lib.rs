//! nftables dataplane for calico-rs: renders the compiled endpoint programs
//! of [`calico_policy`] into one table we own (`inet calico`) and programs
//! it, a change at a time.
//!
//! - [`render`] builds the desired sets, chains and rules (reusing unchanged
//!   policy chains through a [`RenderCache`]);
//! - [`diff`] turns what the kernel holds into what is wanted with only what
//!   differs, split into bounded commits for big changes;
//! - [`apply`] runs batches through an [`Nft`]: libnftables in process
//!   ([`NftLib`]), the `nft` command, or a recording fake; and conntrack;
//! - [`monitor`] tells someone else's changes to the table from ours.

pub mod apply;
pub mod diff;
pub mod elements;
pub mod monitor;
pub mod nat;
pub mod render;
pub mod routes;
pub mod text;

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
