//! Incremental policy calculation: from endpoints, network sets, tiers,
//! policies and profiles to per-local-endpoint programs and the IP sets
//! their rules reference, emitting only deltas.
//!
//! Two [`LabelIndex`]es do the matching: one holds the policies' selectors
//! against the *local* endpoints (which policies apply where), the other
//! holds the selectors of the IP sets that local programs reference against
//! *every* endpoint and network set (who is a member). Profiles are the label
//! parents in both. Updates are staged and then flushed: staging marks the
//! local endpoints whose programs may have changed and records member
//! changes; flushing rebuilds just those programs, activates and retires IP
//! sets by reference count and emits the net deltas.
//!
//! Like felix, it only does work for policy that can apply here. A
//! NetworkPolicy can only select endpoints of its own namespace, so it is
//! checked for errors and kept as received until its namespace has a local
//! endpoint; only then is it compiled and its selector indexed (and its rule
//! IP sets computed, once a program references them). When the namespace's
//! last local endpoint goes, the compiled form is dropped again, retiring
//! its IP sets. With 100,000 namespaces of which 200 have a local pod, that
//! is 200 compiled policies instead of 100,000.

use std::collections::{BTreeMap, BTreeSet};

// foldhash's per-process random seed keeps label values and names, which
// users choose, from being turned into collisions, at a fraction of
// SipHash's cost.
use foldhash::{HashMap, HashMapExt as _, HashSet, HashSetExt as _};
use std::sync::Arc;

use calico_api::v3;
use calico_api::{Kind, Resource, ValidationError};
use calico_selector::Selector;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::labelindex::{LabelIndex, MatchEvent};
use crate::model::{
    CompileError, CompiledRule, Direction, DirectionProgram, EndOfTier, EndpointId,
    EndpointProgram, FieldPath, IpSetId, IpSetInterner, IpSetMember, IpSetRef, LABEL_NAMESPACE,
    LABEL_ORCHESTRATOR, PolicyProgram, ProfileProgram, RuleCompiler, TierProgram, and,
    in_namespace, namespace_selector, parse_net, parse_selector,
};

mod endpoints;
mod output;
mod policies;

use policies::*;

/// The profile a workload endpoint that lists none falls through to.
pub const DEFAULT_PROFILE: &str = "calico";

/// Why an update was rejected. The calculator's state is unchanged by a
/// rejected update.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A policy or profile did not compile.
    #[error("{kind} {name}: {source}")]
    Compile {
        /// The resource kind.
        kind: Kind,
        /// `namespace/name` or `name`.
        name: String,
        /// What was wrong.
        source: Box<CompileError>,
    },
    /// A generic resource document did not convert to its typed form.
    #[error("{kind} {name}: {source}")]
    Resource {
        /// The resource kind.
        kind: Kind,
        /// `namespace/name` or `name`.
        name: String,
        /// What was wrong.
        source: Box<ValidationError>,
    },
}

/// One change to the calculator's inputs.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "updates are built, moved once into the calculator and dropped; boxing would only add an allocation"
)]
pub enum Update {
    /// Add or replace a workload endpoint.
    WorkloadEndpoint(v3::WorkloadEndpoint),
    /// Add or replace a host endpoint.
    HostEndpoint(v3::HostEndpoint),
    /// Add or replace a network set.
    NetworkSet(v3::NetworkSet),
    /// Add or replace a global network set.
    GlobalNetworkSet(v3::GlobalNetworkSet),
    /// Add or replace a tier.
    Tier(v3::Tier),
    /// Add or replace a namespaced policy.
    NetworkPolicy(v3::NetworkPolicy),
    /// Add or replace a global policy.
    GlobalNetworkPolicy(v3::GlobalNetworkPolicy),
    /// Add or replace a profile.
    Profile(v3::Profile),
    /// Delete a resource of one of the kinds above (others are ignored).
    Delete {
        /// The kind.
        kind: Kind,
        /// The namespace, for namespaced kinds.
        namespace: Option<String>,
        /// The name.
        name: String,
    },
}

/// The kinds the policy calculation reads (what [`Update::from_resource`]
/// turns into updates): the agent and `calicoctl policy trace` load these.
pub const INPUT_KINDS: [Kind; 8] = [
    Kind::Profile,
    Kind::Tier,
    Kind::GlobalNetworkPolicy,
    Kind::NetworkPolicy,
    Kind::GlobalNetworkSet,
    Kind::NetworkSet,
    Kind::WorkloadEndpoint,
    Kind::HostEndpoint,
];

impl Update {
    /// The add/replace update for a validated resource document; `None` for
    /// kinds that do not affect policy.
    pub fn from_resource(r: &Resource) -> Result<Option<Update>, Error> {
        let wrap = |source| Error::Resource {
            source: Box::new(source),
            kind: r.kind,
            name: match r.namespace() {
                Some(ns) => format!("{ns}/{}", r.name()),
                None => r.name().to_owned(),
            },
        };
        Ok(Some(match r.kind {
            Kind::WorkloadEndpoint => Update::WorkloadEndpoint(r.to_typed().map_err(wrap)?),
            Kind::HostEndpoint => Update::HostEndpoint(r.to_typed().map_err(wrap)?),
            Kind::NetworkSet => Update::NetworkSet(r.to_typed().map_err(wrap)?),
            Kind::GlobalNetworkSet => Update::GlobalNetworkSet(r.to_typed().map_err(wrap)?),
            Kind::Tier => Update::Tier(r.to_typed().map_err(wrap)?),
            Kind::NetworkPolicy => Update::NetworkPolicy(r.to_typed().map_err(wrap)?),
            Kind::GlobalNetworkPolicy => Update::GlobalNetworkPolicy(r.to_typed().map_err(wrap)?),
            Kind::Profile => Update::Profile(r.to_typed().map_err(wrap)?),
            _ => return Ok(None),
        }))
    }

    /// The add/replace update for a resource from the sync layer; `None` for kinds that do not
    /// affect policy. Nothing is parsed again: the sync layer decoded and checked it.
    pub fn from_typed(r: calico_sync::Resource) -> Option<Update> {
        use calico_sync::Resource as R;
        Some(match r {
            R::WorkloadEndpoint(w) => Update::WorkloadEndpoint(w),
            R::HostEndpoint(h) => Update::HostEndpoint(h),
            R::NetworkSet(n) => Update::NetworkSet(n),
            R::GlobalNetworkSet(n) => Update::GlobalNetworkSet(n),
            R::Tier(t) => Update::Tier(t),
            R::NetworkPolicy(p) => Update::NetworkPolicy(p),
            R::GlobalNetworkPolicy(p) => Update::GlobalNetworkPolicy(p),
            R::Profile(p) => Update::Profile(p),
            _ => return None,
        })
    }

    /// The delete update for a stored key; `None` for kinds that do not affect policy.
    pub fn delete_key(key: &calico_datastore::Key) -> Option<Update> {
        INPUT_KINDS.contains(&key.kind).then(|| Update::Delete {
            kind: key.kind,
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        })
    }
}

/// One change to the calculator's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Delta {
    /// A new IP set; its members follow as `IpSetMemberAdded`.
    #[serde(rename = "ipSetAdded")]
    IpSetAdded(IpSetRef),
    /// A member joined a set.
    #[serde(rename = "ipSetMemberAdded")]
    IpSetMemberAdded {
        /// The set.
        #[serde(rename = "id")]
        id: IpSetId,
        /// The member.
        #[serde(rename = "member")]
        member: IpSetMember,
    },
    /// A member left a set.
    #[serde(rename = "ipSetMemberRemoved")]
    IpSetMemberRemoved {
        /// The set.
        #[serde(rename = "id")]
        id: IpSetId,
        /// The member.
        #[serde(rename = "member")]
        member: IpSetMember,
    },
    /// A set no program references any more (with all its members).
    #[serde(rename = "ipSetRemoved")]
    IpSetRemoved {
        /// The set.
        #[serde(rename = "id")]
        id: IpSetId,
    },
    /// A local endpoint's complete new program.
    #[serde(rename = "endpointProgramSet")]
    EndpointProgramSet(Arc<EndpointProgram>),
    /// A local endpoint went away (or moved off this node).
    #[serde(rename = "endpointProgramRemoved")]
    EndpointProgramRemoved {
        /// The endpoint.
        #[serde(rename = "endpoint")]
        endpoint: EndpointId,
    },
}

/// The complete current output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every local endpoint's program, by endpoint.
    #[serde(rename = "programs")]
    pub programs: Vec<Arc<EndpointProgram>>,
    /// Every IP set with its members.
    #[serde(rename = "ipSets")]
    pub ip_sets: BTreeMap<IpSetId, BTreeSet<IpSetMember>>,
    /// GlobalNetworkPolicies not fully enforced: preDNAT or doNotTrack ones
    /// are skipped (host-endpoint special tables this calculator does not
    /// produce); applyOnForward ones apply on input and output only.
    #[serde(rename = "skippedPolicies", default)]
    pub skipped_policies: Vec<String>,
}

impl Snapshot {
    /// Applies `deltas` to the snapshot, as a dataplane would.
    pub fn apply(&mut self, deltas: &[Delta]) {
        for d in deltas {
            match d {
                Delta::IpSetAdded(r) => {
                    self.ip_sets.insert(r.id.clone(), BTreeSet::new());
                }
                Delta::IpSetMemberAdded { id, member } => {
                    self.ip_sets
                        .get_mut(id)
                        .expect("member added to a known set")
                        .insert(member.clone());
                }
                Delta::IpSetMemberRemoved { id, member } => {
                    self.ip_sets
                        .get_mut(id)
                        .expect("member removed from a known set")
                        .remove(member);
                }
                Delta::IpSetRemoved { id } => {
                    self.ip_sets.remove(id);
                }
                Delta::EndpointProgramSet(p) => {
                    match self
                        .programs
                        .binary_search_by(|q| q.endpoint.cmp(&p.endpoint))
                    {
                        Ok(i) => self.programs[i] = p.clone(),
                        Err(i) => self.programs.insert(i, p.clone()),
                    }
                }
                Delta::EndpointProgramRemoved { endpoint } => {
                    if let Ok(i) = self.programs.binary_search_by(|q| q.endpoint.cmp(endpoint)) {
                        self.programs.remove(i);
                    }
                }
            }
        }
    }

    /// The program of `endpoint`.
    pub fn program(&self, endpoint: &EndpointId) -> Option<&Arc<EndpointProgram>> {
        self.programs
            .binary_search_by(|p| p.endpoint.cmp(endpoint))
            .ok()
            .map(|i| &self.programs[i])
    }
}

type ItemIdx = u32;
type PolicyIdx = u32;
type ProfileName = Arc<str>;
/// A policy's kind, namespace (NetworkPolicy) and name.
type PolicyKey = (Kind, Option<Box<str>>, Box<str>);

/// What kind of labelled thing an item is, and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ItemKey {
    Workload(Box<str>, Box<str>),
    Host(Box<str>),
    NetworkSet(Box<str>, Box<str>),
    GlobalNetworkSet(Box<str>),
}

/// A named port of an endpoint: name, protocol number, port.
type NamedPortEntry = (Box<str>, u8, u16);

#[derive(Debug)]
struct Item {
    nets: Box<[IpNet]>,
    ports: Box<[NamedPortEntry]>,
    local: Option<Box<Local>>,
}

/// The extra state of an endpoint on this node.
#[derive(Debug)]
struct Local {
    id: EndpointId,
    profiles: Box<[ProfileName]>,
    program: Option<Arc<EndpointProgram>>,
    /// The IP sets the current program references, sorted by id.
    sets: Vec<IpSetRef>,
}

#[derive(Debug)]
struct Policy {
    kind: Kind,
    tier: Arc<str>,
    order: Option<f64>,
    /// `namespace/name` or `name`: the tie-break within an order.
    sort_name: Box<str>,
    ingress: Option<Arc<PolicyProgram>>,
    egress: Option<Arc<PolicyProgram>>,
    /// The distinct IP sets of the directions above.
    sets: Box<[IpSetRef]>,
}

#[derive(Debug, Clone, Copy)]
struct TierInfo {
    order: Option<f64>,
    end: EndOfTier,
}

#[derive(Debug)]
struct Profile {
    ingress: Arc<ProfileProgram>,
    egress: Arc<ProfileProgram>,
    sets: Box<[IpSetRef]>,
}

#[derive(Debug)]
struct ActiveSet {
    def: IpSetRef,
    refs: u32,
    /// Member -> number of items contributing it.
    members: HashMap<IpSetMember, u32>,
}

/// The incremental policy calculator; see the [module docs](self).
#[derive(Debug)]
pub struct PolicyCalculator {
    node: String,
    items: Vec<Option<Item>>,
    free_items: Vec<ItemIdx>,
    item_ids: HashMap<ItemKey, ItemIdx>,
    policies: Vec<Option<Policy>>,
    free_policies: Vec<PolicyIdx>,
    policy_ids: HashMap<PolicyKey, PolicyIdx>,
    tiers: HashMap<Arc<str>, TierInfo>,
    tier_policies: HashMap<Arc<str>, HashSet<PolicyIdx>>,
    profiles: HashMap<ProfileName, Profile>,
    /// Every NetworkPolicy as received, by (namespace, name): ordered so a
    /// namespace's policies are one range. Compiled (and in `policies`)
    /// only while the namespace is in `local_namespaces`.
    network_policies: BTreeMap<(Box<str>, Box<str>), Arc<v3::NetworkPolicySpec>>,
    /// The distinct specs of `network_policies`: namespaces typically share
    /// a few templates (a rule is ~800 bytes as received), so 100,000
    /// isolation policies are stored once, and checked for errors once.
    spec_pool: HashSet<PooledSpec>,
    /// Namespaces with local workload endpoints, with how many.
    local_namespaces: HashMap<Box<str>, u32>,
    /// Profile names endpoints list, shared so that 250,000 endpoints
    /// naming 100 profiles cost 100 strings, not 250,000 allocations.
    profile_names: HashSet<ProfileName>,
    /// Local endpoints listing each profile.
    profile_users: HashMap<ProfileName, HashSet<ItemIdx>>,
    skipped: BTreeSet<String>,
    /// Policy selectors against local endpoints.
    policy_index: LabelIndex<PolicyIdx, ItemIdx, ProfileName>,
    /// Active IP sets' selectors against all endpoints and network sets.
    member_index: LabelIndex<IpSetId, ItemIdx, ProfileName>,
    sets: HashMap<IpSetId, ActiveSet>,
    interner: IpSetInterner,
    // ---- staged, consumed by flush ----
    dirty: HashSet<ItemIdx>,
    removed: Vec<(EndpointId, Vec<IpSetRef>)>,
    /// Members touched since the last flush, with whether each was present
    /// then, in first-touch order.
    touched: HashMap<(IpSetId, IpSetMember), bool>,
    touched_order: Vec<(IpSetId, IpSetMember)>,
}

/// Total order of optional orders: present ones ascending, missing last.
fn order_cmp(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// Sorted, de-duplicated set references.
fn distinct_sets<'a>(refs: impl Iterator<Item = &'a IpSetRef>) -> Box<[IpSetRef]> {
    let mut v: Vec<IpSetRef> = refs.cloned().collect();
    v.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    v.dedup_by(|a, b| a.id == b.id);
    v.into_boxed_slice()
}

/// The members `item` contributes to the set `def`.
fn contributions<'a>(def: &'a IpSetRef, item: &'a Item) -> impl Iterator<Item = IpSetMember> + 'a {
    let nets = item.nets.iter().copied();
    let plain = def
        .named_port
        .is_none()
        .then(|| nets.clone().map(IpSetMember::Net));
    let named = def.named_port.as_ref().map(move |np| {
        item.ports
            .iter()
            .filter(move |(name, proto, _)| {
                **name == *np.name && np.protocol.is_none_or(|p| p == *proto)
            })
            .flat_map(move |&(_, protocol, port)| {
                item.nets.iter().map(move |&net| IpSetMember::NamedPort {
                    net,
                    protocol,
                    port,
                })
            })
    });
    plain
        .into_iter()
        .flatten()
        .chain(named.into_iter().flatten())
}

impl PolicyCalculator {
    /// A calculator for the node named `node`: endpoints whose `node` is
    /// this one are local and get programs.
    pub fn new(node: impl Into<String>) -> Self {
        PolicyCalculator {
            node: node.into(),
            items: Vec::new(),
            free_items: Vec::new(),
            item_ids: HashMap::new(),
            policies: Vec::new(),
            free_policies: Vec::new(),
            policy_ids: HashMap::new(),
            tiers: HashMap::new(),
            tier_policies: HashMap::new(),
            profiles: HashMap::new(),
            network_policies: BTreeMap::new(),
            spec_pool: HashSet::new(),
            local_namespaces: HashMap::new(),
            profile_names: HashSet::new(),
            profile_users: HashMap::new(),
            skipped: BTreeSet::new(),
            policy_index: LabelIndex::new(),
            member_index: LabelIndex::new(),
            sets: HashMap::new(),
            interner: IpSetInterner::default(),
            dirty: HashSet::new(),
            removed: Vec::new(),
            touched: HashMap::new(),
            touched_order: Vec::new(),
        }
    }

    /// Applies one update and returns the resulting deltas.
    pub fn apply(&mut self, update: Update) -> Result<Vec<Delta>, Error> {
        let staged = self.stage(update);
        let deltas = self.flush();
        staged.map(|()| deltas)
    }

    /// Applies many updates and returns the deltas of all of them together:
    /// the way to load a snapshot, since each program is built once.
    /// Rejected updates are skipped and their errors returned alongside.
    pub fn apply_batch(
        &mut self,
        updates: impl IntoIterator<Item = Update>,
    ) -> (Vec<Delta>, Vec<Error>) {
        let errors = updates
            .into_iter()
            .filter_map(|u| self.stage(u).err())
            .collect();
        (self.flush(), errors)
    }

    /// Records one update without producing output; [`flush`](Self::flush)
    /// produces the deltas of everything staged since the last flush.
    pub fn stage(&mut self, update: Update) -> Result<(), Error> {
        match update {
            Update::WorkloadEndpoint(w) => self.upsert_workload(&w),
            Update::HostEndpoint(h) => self.upsert_host(&h),
            Update::NetworkSet(n) => {
                let ns = n.metadata.namespace.as_str();
                let labels = n
                    .metadata
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .chain(namespace_labels(ns));
                let key = ItemKey::NetworkSet(ns.into(), n.metadata.name.as_str().into());
                self.upsert_item(key, labels, &[], nets_of(&n.spec.nets), Box::new([]), None);
            }
            Update::GlobalNetworkSet(n) => {
                let labels = n
                    .metadata
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()));
                let key = ItemKey::GlobalNetworkSet(n.metadata.name.as_str().into());
                self.upsert_item(key, labels, &[], nets_of(&n.spec.nets), Box::new([]), None);
            }
            Update::Tier(t) => {
                let end = match t.spec.default_action.as_deref() {
                    Some("Pass") => EndOfTier::Pass,
                    _ => EndOfTier::Deny,
                };
                let name: Arc<str> = t.metadata.name.as_str().into();
                self.tiers.insert(
                    name.clone(),
                    TierInfo {
                        order: t.spec.order,
                        end,
                    },
                );
                self.dirty_tier(&name);
            }
            Update::NetworkPolicy(p) => self.upsert_network_policy(p)?,
            Update::GlobalNetworkPolicy(p) => self.upsert_global_policy(&p)?,
            Update::Profile(p) => self.upsert_profile(&p)?,
            Update::Delete {
                kind,
                namespace,
                name,
            } => self.delete(kind, namespace, name),
        }
        Ok(())
    }

    fn delete(&mut self, kind: Kind, namespace: Option<String>, name: String) {
        let ns = namespace.unwrap_or_default();
        match kind {
            Kind::WorkloadEndpoint => {
                self.delete_item(&ItemKey::Workload(ns.into(), name.into()));
            }
            Kind::HostEndpoint => self.delete_item(&ItemKey::Host(name.into())),
            Kind::NetworkSet => {
                self.delete_item(&ItemKey::NetworkSet(ns.into(), name.into()));
            }
            Kind::GlobalNetworkSet => {
                self.delete_item(&ItemKey::GlobalNetworkSet(name.into()));
            }
            Kind::Tier => {
                let name: Arc<str> = name.into();
                self.tiers.remove(&name);
                self.dirty_tier(&name);
            }
            Kind::NetworkPolicy => {
                let key = (Box::<str>::from(ns), Box::<str>::from(name));
                if let Some(spec) = self.network_policies.remove(&key) {
                    self.release_spec(spec);
                    self.delete_policy(&(kind, Some(key.0), key.1));
                }
            }
            Kind::GlobalNetworkPolicy => {
                self.skipped.remove(&name);
                self.delete_policy(&(kind, None, name.into()));
            }
            Kind::Profile => {
                let name: ProfileName = name.into();
                if self.profiles.remove(&name).is_some() {
                    let mut events = Vec::new();
                    self.member_index.delete_parent_labels(&name, &mut events);
                    self.member_events(events);
                    self.policy_index.delete_parent_labels(&name, &mut ());
                    self.dirty_profile_users(&name);
                }
            }
            _ => {}
        }
    }
}
