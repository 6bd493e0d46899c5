//! Felix-side policy calculation for calico-rs.
//!
//! [`labelindex`] keeps track of which labelled items (workload/host
//! endpoints, network sets) match which selectors, incrementally: every
//! update costs time in proportion to what it can change, never a rescan of
//! all selectors against all items.

pub mod labelindex;

pub use labelindex::{Error, LabelIndex, MatchEvent, MatchSink};
