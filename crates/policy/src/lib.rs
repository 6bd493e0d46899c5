//! Felix-side policy calculation for calico-rs.
//!
//! - [`labelindex`] keeps track of which labelled items (workload/host
//!   endpoints, network sets) match which selectors, incrementally: every
//!   update costs time in proportion to what it can change, never a rescan of
//!   all selectors against all items.
//! - [`model`] is the compiled, dataplane-neutral form of policy: ordered
//!   tier/policy/profile programs whose rules refer to IP sets by id.
//! - [`calc`] turns endpoints, network sets, tiers, policies and profiles
//!   into a program per local endpoint plus the IP sets those reference,
//!   incrementally, as deltas.
//! - [`eval`] traces a packet through a program, recording why it was
//!   allowed or denied (rules are numbered from 0, as in Calico).

pub mod attribution;
pub mod calc;
pub mod eval;
pub mod labelindex;
pub mod model;

pub use calc::{Delta, INPUT_KINDS, PolicyCalculator, Snapshot, Update};
pub use eval::{Decision, IpSetView, Packet, Step, Trace, Verdict, evaluate};
pub use labelindex::{Error, LabelIndex, MatchEvent, MatchSink};
pub use model::{Direction, EndpointId, EndpointProgram};
