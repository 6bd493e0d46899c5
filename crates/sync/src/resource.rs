//! Stored values turned typed: the one place a datastore value becomes a Rust value.

use calico_api::{Kind, ValidationError, v3};
use calico_datastore::Key;
use calico_ipam::model;
use serde_json::Value;

/// A stored value that does not decode as its kind.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("decoding {key} from the datastore: {reason}")]
pub struct DecodeError {
    /// Where the value is stored.
    pub key: Key,
    /// What is wrong with it.
    pub reason: String,
}

/// Every kind the datastore holds, typed. API kinds are checked and defaulted as calicoctl
/// checks what it writes, so a value written past calicoctl (a hand-run `etcdctl put`, a
/// version skew) is held to the same rules before anyone acts on it.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a resource is decoded once and moved to its consumer; boxing adds an allocation per value"
)]
pub enum Resource {
    /// Cluster-wide BGP settings.
    BgpConfiguration(v3::BGPConfiguration),
    /// A BGP peering.
    BgpPeer(v3::BGPPeer),
    /// Rules for the routes exchanged with BGP peers.
    BgpFilter(v3::BGPFilter),
    /// Cluster information.
    ClusterInformation(v3::ClusterInformation),
    /// Felix settings.
    FelixConfiguration(v3::FelixConfiguration),
    /// Cluster-scoped policy.
    GlobalNetworkPolicy(v3::GlobalNetworkPolicy),
    /// Cluster-scoped set of nets.
    GlobalNetworkSet(v3::GlobalNetworkSet),
    /// A host interface under policy.
    HostEndpoint(v3::HostEndpoint),
    /// An address pool.
    IpPool(v3::IPPool),
    /// Addresses IPAM must not hand out.
    IpReservation(v3::IPReservation),
    /// Namespaced policy.
    NetworkPolicy(v3::NetworkPolicy),
    /// Namespaced set of nets.
    NetworkSet(v3::NetworkSet),
    /// A host.
    Node(v3::Node),
    /// Labels and rules shared by endpoints.
    Profile(v3::Profile),
    /// An ordered group of policies.
    Tier(v3::Tier),
    /// A container's interface.
    WorkloadEndpoint(v3::WorkloadEndpoint),
    /// A staged policy (never enforced): its kind and checked document.
    Staged(Kind, Value),
    /// A request for a node's status.
    CalicoNodeStatus(v3::CalicoNodeStatus),
    /// An IPAM block.
    IpamBlock(model::Block),
    /// A block's affinity to a host.
    BlockAffinity(model::Affinity),
    /// One allocation handle.
    IpamHandle(model::Handle),
    /// IPAM settings.
    IpamConfig(model::Config),
}

impl Resource {
    /// The value stored at `key`, typed as `key`'s kind. Checks that the value's own name and
    /// namespace are the key's: a value copied under another key must not act under either.
    pub fn decode(key: &Key, value: Value) -> Result<Resource, DecodeError> {
        let fail = |reason: String| DecodeError {
            key: key.clone(),
            reason,
        };
        let api = |e: ValidationError| fail(e.to_string());
        let json = |e: serde_json::Error| fail(e.to_string());
        let resource = match key.kind {
            Kind::BgpConfiguration => {
                Resource::BgpConfiguration(calico_api::decode(value).map_err(api)?)
            }
            Kind::BgpPeer => Resource::BgpPeer(calico_api::decode(value).map_err(api)?),
            Kind::BgpFilter => Resource::BgpFilter(calico_api::decode(value).map_err(api)?),
            Kind::ClusterInformation => {
                Resource::ClusterInformation(calico_api::decode(value).map_err(api)?)
            }
            Kind::FelixConfiguration => {
                Resource::FelixConfiguration(calico_api::decode(value).map_err(api)?)
            }
            Kind::GlobalNetworkPolicy => {
                Resource::GlobalNetworkPolicy(calico_api::decode(value).map_err(api)?)
            }
            Kind::GlobalNetworkSet => {
                Resource::GlobalNetworkSet(calico_api::decode(value).map_err(api)?)
            }
            Kind::HostEndpoint => Resource::HostEndpoint(calico_api::decode(value).map_err(api)?),
            Kind::IpPool => Resource::IpPool(calico_api::decode(value).map_err(api)?),
            Kind::IpReservation => Resource::IpReservation(calico_api::decode(value).map_err(api)?),
            Kind::NetworkPolicy => Resource::NetworkPolicy(calico_api::decode(value).map_err(api)?),
            Kind::NetworkSet => Resource::NetworkSet(calico_api::decode(value).map_err(api)?),
            Kind::Node => Resource::Node(calico_api::decode(value).map_err(api)?),
            Kind::Profile => Resource::Profile(calico_api::decode(value).map_err(api)?),
            Kind::Tier => Resource::Tier(calico_api::decode(value).map_err(api)?),
            Kind::WorkloadEndpoint => {
                Resource::WorkloadEndpoint(calico_api::decode(value).map_err(api)?)
            }
            Kind::StagedNetworkPolicy | Kind::StagedGlobalNetworkPolicy => {
                let checked = calico_api::parse_resource(value).map_err(api)?;
                if checked.kind != key.kind {
                    return Err(fail(format!(
                        "the value is a {}, not a {}",
                        checked.kind, key.kind
                    )));
                }
                Resource::Staged(key.kind, checked.value)
            }
            Kind::CalicoNodeStatus => {
                Resource::CalicoNodeStatus(calico_api::decode(value).map_err(api)?)
            }
            Kind::IpamBlock => Resource::IpamBlock(serde_json::from_value(value).map_err(json)?),
            Kind::BlockAffinity => {
                Resource::BlockAffinity(serde_json::from_value(value).map_err(json)?)
            }
            Kind::IpamHandle => Resource::IpamHandle(serde_json::from_value(value).map_err(json)?),
            Kind::IpamConfiguration => {
                Resource::IpamConfig(serde_json::from_value(value).map_err(json)?)
            }
        };
        let (name, namespace) = resource.name_and_namespace();
        if name != key.name || namespace != key.namespace.as_deref().unwrap_or("") {
            return Err(fail(format!(
                "the value names itself {namespace:?}/{name:?}, not the key's name"
            )));
        }
        Ok(resource)
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::BgpConfiguration(_) => Kind::BgpConfiguration,
            Resource::BgpPeer(_) => Kind::BgpPeer,
            Resource::BgpFilter(_) => Kind::BgpFilter,
            Resource::ClusterInformation(_) => Kind::ClusterInformation,
            Resource::FelixConfiguration(_) => Kind::FelixConfiguration,
            Resource::GlobalNetworkPolicy(_) => Kind::GlobalNetworkPolicy,
            Resource::GlobalNetworkSet(_) => Kind::GlobalNetworkSet,
            Resource::HostEndpoint(_) => Kind::HostEndpoint,
            Resource::IpPool(_) => Kind::IpPool,
            Resource::IpReservation(_) => Kind::IpReservation,
            Resource::NetworkPolicy(_) => Kind::NetworkPolicy,
            Resource::NetworkSet(_) => Kind::NetworkSet,
            Resource::Node(_) => Kind::Node,
            Resource::Profile(_) => Kind::Profile,
            Resource::Tier(_) => Kind::Tier,
            Resource::WorkloadEndpoint(_) => Kind::WorkloadEndpoint,
            Resource::Staged(kind, _) => *kind,
            Resource::CalicoNodeStatus(_) => Kind::CalicoNodeStatus,
            Resource::IpamBlock(_) => Kind::IpamBlock,
            Resource::BlockAffinity(_) => Kind::BlockAffinity,
            Resource::IpamHandle(_) => Kind::IpamHandle,
            Resource::IpamConfig(_) => Kind::IpamConfiguration,
        }
    }

    /// `metadata.name` and `metadata.namespace` (empty for cluster-scoped kinds).
    fn name_and_namespace(&self) -> (&str, &str) {
        let m = match self {
            Resource::BgpConfiguration(r) => &r.metadata,
            Resource::BgpPeer(r) => &r.metadata,
            Resource::BgpFilter(r) => &r.metadata,
            Resource::ClusterInformation(r) => &r.metadata,
            Resource::FelixConfiguration(r) => &r.metadata,
            Resource::GlobalNetworkPolicy(r) => &r.metadata,
            Resource::GlobalNetworkSet(r) => &r.metadata,
            Resource::HostEndpoint(r) => &r.metadata,
            Resource::IpPool(r) => &r.metadata,
            Resource::IpReservation(r) => &r.metadata,
            Resource::NetworkPolicy(r) => &r.metadata,
            Resource::NetworkSet(r) => &r.metadata,
            Resource::Node(r) => &r.metadata,
            Resource::Profile(r) => &r.metadata,
            Resource::Tier(r) => &r.metadata,
            Resource::WorkloadEndpoint(r) => &r.metadata,
            Resource::Staged(_, v) => {
                let field = |f: &str| {
                    v.pointer(&format!("/metadata/{f}"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                };
                return (field("name"), field("namespace"));
            }
            Resource::CalicoNodeStatus(r) => &r.metadata,
            Resource::IpamBlock(r) => return (&r.metadata.name, ""),
            Resource::BlockAffinity(r) => return (&r.metadata.name, ""),
            Resource::IpamHandle(r) => return (&r.metadata.name, ""),
            Resource::IpamConfig(r) => return (&r.metadata.name, ""),
        };
        (&m.name, &m.namespace)
    }
}
