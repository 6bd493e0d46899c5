//! nftables dataplane for calico-rs: renders the compiled endpoint programs
//! of [`calico_policy`] into one table we own (`inet calico`) and replaces
//! that table's contents in one atomic `nft -j -f -` batch.
//!
//! - [`render`] builds the desired sets, chains and rules;
//! - [`apply`] turns them into the batch and runs it through an [`Nft`].

pub mod apply;
pub mod nat;
pub mod render;

pub use apply::{Error, Nft, NftCli, RecordingNft, batch};
pub use nat::add_nat_outgoing;
pub use render::{
    DEFAULT_FAILSAFE_INBOUND, DEFAULT_FAILSAFE_OUTBOUND, Failsafe, FailsafeError, HostOptions,
    L4Protocol, Ruleset, parse_failsafes, render, render_with,
};
