//! The resource kinds, and the names users call them by on the command line.

use std::fmt;

/// A `projectcalico.org/v3` resource kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Cluster-wide BGP settings.
    BgpConfiguration,
    /// A BGP peering.
    BgpPeer,
    /// Rules for the routes exchanged with BGP peers.
    BgpFilter,
    /// Cluster information written by the node agent.
    ClusterInformation,
    /// Felix (agent) settings, cluster-wide or per node.
    FelixConfiguration,
    /// Cluster-scoped policy.
    GlobalNetworkPolicy,
    /// Cluster-scoped set of nets.
    GlobalNetworkSet,
    /// A host interface under policy.
    HostEndpoint,
    /// An address pool.
    IpPool,
    /// Addresses IPAM must never hand out.
    IpReservation,
    /// Namespaced policy.
    NetworkPolicy,
    /// Namespaced set of nets.
    NetworkSet,
    /// A host running calico-node.
    Node,
    /// Labels and default rules shared by endpoints.
    Profile,
    /// An ordered group of policies.
    Tier,
    /// A container's network interface.
    WorkloadEndpoint,
    /// A namespaced policy stored to preview, never enforced.
    StagedNetworkPolicy,
    /// A cluster-scoped policy stored to preview, never enforced.
    StagedGlobalNetworkPolicy,
    /// A request for a node's status (agent, BGP, routes), answered in its `status`.
    CalicoNodeStatus,
    /// Cluster-wide IPAM settings (`default`), which `calicoctl ipam configure` also sets.
    IpamConfiguration,
    /// Internal: an IPAM block (addresses carved from a pool, with their owners).
    IpamBlock,
    /// Internal: a block's affinity to a host.
    BlockAffinity,
    /// Internal: the addresses one allocation handle holds.
    IpamHandle,
}

/// The internal kinds IPAM stores beside the API resources; not documents users write.
pub const INTERNAL_KINDS: [Kind; 3] = [Kind::IpamBlock, Kind::BlockAffinity, Kind::IpamHandle];

/// Every kind, in the order `calicoctl get all`-style listings use.
pub const ALL_KINDS: [Kind; 20] = [
    Kind::BgpConfiguration,
    Kind::BgpPeer,
    Kind::BgpFilter,
    Kind::ClusterInformation,
    Kind::FelixConfiguration,
    Kind::GlobalNetworkPolicy,
    Kind::GlobalNetworkSet,
    Kind::HostEndpoint,
    Kind::IpPool,
    Kind::IpReservation,
    Kind::NetworkPolicy,
    Kind::NetworkSet,
    Kind::Node,
    Kind::Profile,
    Kind::Tier,
    Kind::WorkloadEndpoint,
    Kind::StagedNetworkPolicy,
    Kind::StagedGlobalNetworkPolicy,
    Kind::CalicoNodeStatus,
    Kind::IpamConfiguration,
];

/// The document `kind` names of [`ALL_KINDS`], in the same order.
pub const ALL_KIND_NAMES: [&str; 20] = [
    "BGPConfiguration",
    "BGPPeer",
    "BGPFilter",
    "ClusterInformation",
    "FelixConfiguration",
    "GlobalNetworkPolicy",
    "GlobalNetworkSet",
    "HostEndpoint",
    "IPPool",
    "IPReservation",
    "NetworkPolicy",
    "NetworkSet",
    "Node",
    "Profile",
    "Tier",
    "WorkloadEndpoint",
    "StagedNetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "CalicoNodeStatus",
    "IPAMConfiguration",
];

impl Kind {
    /// The kind as written in a document's `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::BgpConfiguration => "BGPConfiguration",
            Kind::BgpPeer => "BGPPeer",
            Kind::BgpFilter => "BGPFilter",
            Kind::ClusterInformation => "ClusterInformation",
            Kind::FelixConfiguration => "FelixConfiguration",
            Kind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Kind::GlobalNetworkSet => "GlobalNetworkSet",
            Kind::HostEndpoint => "HostEndpoint",
            Kind::IpPool => "IPPool",
            Kind::IpReservation => "IPReservation",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::NetworkSet => "NetworkSet",
            Kind::Node => "Node",
            Kind::Profile => "Profile",
            Kind::Tier => "Tier",
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::StagedNetworkPolicy => "StagedNetworkPolicy",
            Kind::StagedGlobalNetworkPolicy => "StagedGlobalNetworkPolicy",
            Kind::CalicoNodeStatus => "CalicoNodeStatus",
            Kind::IpamConfiguration => "IPAMConfiguration",
            Kind::IpamBlock => "IPAMBlock",
            Kind::BlockAffinity => "BlockAffinity",
            Kind::IpamHandle => "IPAMHandle",
        }
    }

    /// Whether this is one of IPAM's [`INTERNAL_KINDS`].
    pub fn is_internal(self) -> bool {
        INTERNAL_KINDS.contains(&self)
    }

    /// Any kind the datastore holds, API or internal, by its stored name (exact spelling).
    pub fn from_stored_name(name: &str) -> Option<Kind> {
        ALL_KINDS
            .into_iter()
            .chain(INTERNAL_KINDS)
            .find(|k| k.as_str() == name)
    }

    /// The name the embedded store files a kind under. The IPAM configuration was an internal
    /// kind, `IPAMConfig`, before it became the API kind `IPAMConfiguration`; it keeps its
    /// stored name so that existing store files still hold their settings.
    pub fn stored_name(self) -> &'static str {
        match self {
            Kind::IpamConfiguration => "IPAMConfig",
            other => other.as_str(),
        }
    }

    /// The kind filed under `name` in the embedded store (see [`Kind::stored_name`]).
    pub fn from_store_row(name: &str) -> Option<Kind> {
        ALL_KINDS
            .into_iter()
            .chain(INTERNAL_KINDS)
            .find(|k| k.stored_name() == name)
    }

    /// Lower-case plural, as in upstream's etcd key layout
    /// (`/calico/resources/v3/projectcalico.org/<plural>/...`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::BgpConfiguration => "bgpconfigurations",
            Kind::BgpPeer => "bgppeers",
            Kind::BgpFilter => "bgpfilters",
            Kind::ClusterInformation => "clusterinformations",
            Kind::FelixConfiguration => "felixconfigurations",
            Kind::GlobalNetworkPolicy => "globalnetworkpolicies",
            Kind::GlobalNetworkSet => "globalnetworksets",
            Kind::HostEndpoint => "hostendpoints",
            Kind::IpPool => "ippools",
            Kind::IpReservation => "ipreservations",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::NetworkSet => "networksets",
            Kind::Node => "nodes",
            Kind::Profile => "profiles",
            Kind::Tier => "tiers",
            Kind::WorkloadEndpoint => "workloadendpoints",
            Kind::StagedNetworkPolicy => "stagednetworkpolicies",
            Kind::StagedGlobalNetworkPolicy => "stagedglobalnetworkpolicies",
            Kind::CalicoNodeStatus => "caliconodestatuses",
            Kind::IpamConfiguration => "ipamconfigurations",
            Kind::IpamBlock => "ipamblocks",
            Kind::BlockAffinity => "blockaffinities",
            Kind::IpamHandle => "ipamhandles",
        }
    }

    /// Whether resources of this kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        matches!(
            self,
            Kind::NetworkPolicy
                | Kind::NetworkSet
                | Kind::WorkloadEndpoint
                | Kind::StagedNetworkPolicy
        )
    }

    /// The API kind named by a document's `kind` field (exact spelling); never an internal kind.
    pub fn from_document_kind(kind: &str) -> Option<Kind> {
        ALL_KINDS.into_iter().find(|k| k.as_str() == kind)
    }

    /// The kind a user names on the command line: any case, singular, plural or calicoctl's
    /// short names (`gnp`, `pol`, `ipp`, `wep`, ...).
    pub fn from_cli_name(name: &str) -> Option<Kind> {
        let lower = name.to_ascii_lowercase();
        let kind = match lower.as_str() {
            "bgpconfiguration" | "bgpconfigurations" | "bgpconfig" | "bgpconfigs" => {
                Kind::BgpConfiguration
            }
            "bgppeer" | "bgppeers" | "bgpp" | "bgpps" | "bp" | "bps" => Kind::BgpPeer,
            "bgpfilter" | "bgpfilters" => Kind::BgpFilter,
            "clusterinformation" | "clusterinformations" | "clusterinfo" | "clusterinfos" => {
                Kind::ClusterInformation
            }
            "felixconfiguration" | "felixconfigurations" | "felixconfig" | "felixconfigs" => {
                Kind::FelixConfiguration
            }
            "globalnetworkpolicy" | "globalnetworkpolicies" | "gnp" | "gnps" => {
                Kind::GlobalNetworkPolicy
            }
            "globalnetworkset" | "globalnetworksets" => Kind::GlobalNetworkSet,
            "hostendpoint" | "hostendpoints" | "hep" | "heps" => Kind::HostEndpoint,
            "ippool" | "ippools" | "ipp" | "ipps" | "pool" | "pools" => Kind::IpPool,
            "ipreservation" | "ipreservations" | "ipr" | "iprs" => Kind::IpReservation,
            "networkpolicy" | "networkpolicies" | "policy" | "policies" | "np" | "nps" | "pol"
            | "pols" => Kind::NetworkPolicy,
            "networkset" | "networksets" | "netset" | "netsets" => Kind::NetworkSet,
            "node" | "nodes" | "no" | "nos" => Kind::Node,
            "profile" | "profiles" | "pro" | "pros" => Kind::Profile,
            "tier" | "tiers" => Kind::Tier,
            "workloadendpoint" | "workloadendpoints" | "wep" | "weps" => Kind::WorkloadEndpoint,
            "stagednetworkpolicy" | "stagednetworkpolicies" | "snp" | "snps" => {
                Kind::StagedNetworkPolicy
            }
            "stagedglobalnetworkpolicy" | "stagedglobalnetworkpolicies" | "sgnp" | "sgnps" => {
                Kind::StagedGlobalNetworkPolicy
            }
            "caliconodestatus" | "caliconodestatuses" | "cns" | "cnss" => Kind::CalicoNodeStatus,
            "ipamconfiguration" | "ipamconfigurations" | "ipamconfig" | "ipamconfigs" => {
                Kind::IpamConfiguration
            }
            _ => return None,
        };
        Some(kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_names() {
        for (kind, name) in ALL_KINDS.into_iter().zip(ALL_KIND_NAMES) {
            assert_eq!(kind.as_str(), name);
            assert_eq!(Kind::from_document_kind(kind.as_str()), Some(kind));
            assert_eq!(Kind::from_cli_name(kind.as_str()), Some(kind));
            assert_eq!(Kind::from_cli_name(kind.plural()), Some(kind));
        }
        assert_eq!(Kind::from_cli_name("gnp"), Some(Kind::GlobalNetworkPolicy));
        assert_eq!(Kind::from_cli_name("networkpolicy "), None);
        assert_eq!(Kind::from_document_kind("networkpolicy"), None);
        for kind in ALL_KINDS.into_iter().chain(INTERNAL_KINDS) {
            assert_eq!(Kind::from_stored_name(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::from_document_kind("IPAMBlock"), None);
        assert_eq!(Kind::from_cli_name("ipamblock"), None);
        assert_eq!(
            Kind::from_store_row("IPAMConfig"),
            Some(Kind::IpamConfiguration)
        );
    }
}
