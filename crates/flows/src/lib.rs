//! Flow logs: what felix records of the flows its policy decided ([`record`]), and the
//! cluster-wide view of them that `calicoctl flows` and calico-node's web view show
//! ([`view`]).

pub mod record;
pub mod view;

pub use record::{FlowRecord, HostFlows, Lost};
pub use view::{Directory, Flow, FlowsView, Peer, collect};
