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

    // ---- endpoints and network sets ----

    fn upsert_workload(&mut self, w: &v3::WorkloadEndpoint) {
        let ns = w.metadata.namespace.as_str();
        let orch = w.spec.orchestrator.as_str();
        // Calico's own labels go last so that they win over user labels.
        let labels = w
            .metadata
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(namespace_labels(ns))
            .chain((!orch.is_empty()).then_some((LABEL_ORCHESTRATOR, orch)));
        let profiles: Box<[ProfileName]> = if w.spec.profiles.is_empty() {
            Box::new([self.profile_name(DEFAULT_PROFILE)])
        } else {
            w.spec
                .profiles
                .iter()
                .map(|p| self.profile_name(p))
                .collect()
        };
        let mut nets: Vec<IpNet> = w
            .spec
            .ip_networks
            .iter()
            .chain(w.spec.ip_nats.iter().map(|n| &n.internal_ip))
            .filter_map(|n| parse_net(n))
            .collect();
        nets.sort_unstable();
        nets.dedup();
        let ports = w
            .spec
            .ports
            .iter()
            .filter(|p| !p.name.is_empty())
            .filter_map(|p| Some((p.name.as_str().into(), p.protocol.number()?, p.port)))
            .collect();
        let key = ItemKey::Workload(ns.into(), w.metadata.name.as_str().into());
        let local = (w.spec.node == self.node).then(|| EndpointId::Workload {
            namespace: ns.to_owned(),
            name: w.metadata.name.clone(),
        });
        self.upsert_item(
            key,
            labels,
            &profiles,
            nets.into_boxed_slice(),
            ports,
            local,
        );
    }

    fn upsert_host(&mut self, h: &v3::HostEndpoint) {
        let labels = h
            .metadata
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let profiles: Box<[ProfileName]> = h
            .spec
            .profiles
            .iter()
            .map(|p| self.profile_name(p))
            .collect();
        let ports = h
            .spec
            .ports
            .iter()
            .filter(|p| !p.name.is_empty())
            .filter_map(|p| Some((p.name.as_str().into(), p.protocol.number()?, p.port)))
            .collect();
        let local = (h.spec.node == self.node).then(|| EndpointId::Host {
            name: h.metadata.name.clone(),
        });
        let key = ItemKey::Host(h.metadata.name.as_str().into());
        self.upsert_item(
            key,
            labels,
            &profiles,
            nets_of(&h.spec.expected_ips),
            ports,
            local,
        );
    }

    /// The shared string for profile name `name`.
    fn profile_name(&mut self, name: &str) -> ProfileName {
        if let Some(p) = self.profile_names.get(name) {
            return p.clone();
        }
        if self.profile_names.len() >= 100_000 {
            // Bound the cache; sharing is only a saving.
            self.profile_names.clear();
        }
        let p: ProfileName = name.into();
        self.profile_names.insert(p.clone());
        p
    }

    fn upsert_item<'a>(
        &mut self,
        key: ItemKey,
        labels: impl Iterator<Item = (&'a str, &'a str)>,
        profiles: &[ProfileName],
        nets: Box<[IpNet]>,
        ports: Box<[NamedPortEntry]>,
        local: Option<EndpointId>,
    ) {
        let labels: Vec<(&str, &str)> = labels.collect();
        let idx = match self.item_ids.get(&key) {
            Some(&idx) => idx,
            None => {
                let item = Item {
                    nets: Box::new([]),
                    ports: Box::new([]),
                    local: None,
                };
                let idx = match self.free_items.pop() {
                    Some(i) => {
                        self.items[i as usize] = Some(item);
                        i
                    }
                    None => {
                        self.items.push(Some(item));
                        u32::try_from(self.items.len() - 1).expect("fewer than 2^32 items")
                    }
                };
                self.item_ids.insert(key, idx);
                idx
            }
        };

        // Membership: if the item's addresses or ports changed, withdraw all
        // its old contributions and re-add them after the label update;
        // otherwise only the label index's match changes matter.
        let item = self.items[idx as usize].as_mut().expect("live item");
        let data_changed = item.nets != nets || item.ports != ports;
        if data_changed {
            let matched: Vec<IpSetId> = self
                .member_index
                .selectors_matching(&idx)
                .cloned()
                .collect();
            for id in &matched {
                self.contribute(id, idx, false);
            }
            let item = self.items[idx as usize].as_mut().expect("live item");
            item.nets = nets;
            item.ports = ports;
        }
        let mut events = Vec::new();
        self.member_index
            .update_labels(idx, labels.iter().copied(), profiles, &mut events);
        if data_changed {
            let matched: Vec<IpSetId> = self
                .member_index
                .selectors_matching(&idx)
                .cloned()
                .collect();
            for id in &matched {
                self.contribute(id, idx, true);
            }
        } else {
            self.member_events(events);
        }

        // Policy selection, for local endpoints only.
        let item = self.items[idx as usize].as_mut().expect("live item");
        match (local, item.local.as_mut()) {
            (Some(id), Some(l)) => {
                if l.profiles[..] != *profiles || l.id != id {
                    let old = std::mem::replace(&mut l.profiles, profiles.into());
                    for p in old.iter() {
                        if let Some(users) = self.profile_users.get_mut(p) {
                            users.remove(&idx);
                        }
                    }
                    for p in profiles {
                        self.profile_users.entry(p.clone()).or_default().insert(idx);
                    }
                    l.id = id;
                }
                self.policy_index
                    .update_labels(idx, labels.iter().copied(), profiles, &mut ());
                self.dirty.insert(idx);
            }
            (Some(id), None) => {
                let ns = match &id {
                    EndpointId::Workload { namespace, .. } => Some(namespace.clone()),
                    EndpointId::Host { .. } => None,
                };
                item.local = Some(Box::new(Local {
                    id,
                    profiles: profiles.into(),
                    program: None,
                    sets: Vec::new(),
                }));
                for p in profiles {
                    self.profile_users.entry(p.clone()).or_default().insert(idx);
                }
                self.policy_index
                    .update_labels(idx, labels.iter().copied(), profiles, &mut ());
                self.dirty.insert(idx);
                if let Some(ns) = ns {
                    self.local_endpoint_joined(&ns);
                }
            }
            (None, Some(_)) => self.unlocal(idx),
            (None, None) => {}
        }
    }

    /// Drops the local state of item `idx`, queueing its program's removal.
    fn unlocal(&mut self, idx: ItemIdx) {
        let item = self.items[idx as usize].as_mut().expect("live item");
        let Some(l) = item.local.take() else {
            return;
        };
        self.policy_index.delete_labels(&idx, &mut ());
        for p in l.profiles.iter() {
            if let Some(users) = self.profile_users.get_mut(p) {
                users.remove(&idx);
                if users.is_empty() {
                    self.profile_users.remove(p);
                }
            }
        }
        self.dirty.remove(&idx);
        if let EndpointId::Workload { namespace, .. } = &l.id {
            self.local_endpoint_left(namespace);
        }
        if l.program.is_some() {
            self.removed.push((l.id, l.sets));
        }
    }

    /// Counts a new local endpoint in namespace `ns`; the first one makes
    /// the namespace's NetworkPolicies live.
    fn local_endpoint_joined(&mut self, ns: &str) {
        if let Some(n) = self.local_namespaces.get_mut(ns) {
            *n += 1;
            return;
        }
        self.local_namespaces.insert(ns.into(), 1);
        let policies: Vec<(Box<str>, Arc<v3::NetworkPolicySpec>)> = self
            .namespace_policies(ns)
            .map(|((_, name), spec)| (name.clone(), spec.clone()))
            .collect();
        for (name, spec) in policies {
            // Checked when it was staged, so it compiles.
            self.index_network_policy(ns, &name, &spec)
                .expect("a staged NetworkPolicy compiles");
        }
    }

    /// Uncounts a local endpoint of namespace `ns`; after the last one the
    /// namespace's NetworkPolicies are only kept as received.
    fn local_endpoint_left(&mut self, ns: &str) {
        let n = self
            .local_namespaces
            .get_mut(ns)
            .expect("counted local namespace");
        *n -= 1;
        if *n > 0 {
            return;
        }
        self.local_namespaces.remove(ns);
        let names: Vec<Box<str>> = self
            .namespace_policies(ns)
            .map(|((_, name), _)| name.clone())
            .collect();
        for name in names {
            self.delete_policy(&(Kind::NetworkPolicy, Some(ns.into()), name));
        }
    }

    /// The NetworkPolicies of namespace `ns`, as received.
    fn namespace_policies<'a>(
        &'a self,
        ns: &'a str,
    ) -> impl Iterator<Item = (&'a (Box<str>, Box<str>), &'a Arc<v3::NetworkPolicySpec>)> + 'a {
        self.network_policies
            .range((Box::<str>::from(ns), Box::<str>::from(""))..)
            .take_while(move |((n, _), _)| **n == *ns)
    }

    fn delete_item(&mut self, key: &ItemKey) {
        let Some(&idx) = self.item_ids.get(key) else {
            return;
        };
        self.unlocal(idx);
        let mut events = Vec::new();
        self.member_index.delete_labels(&idx, &mut events);
        self.member_events(events);
        self.item_ids.remove(key);
        self.items[idx as usize] = None;
        self.free_items.push(idx);
    }

    /// Applies member-index match events to the active sets.
    fn member_events(&mut self, events: Vec<MatchEvent<IpSetId, ItemIdx>>) {
        for e in events {
            match e {
                MatchEvent::Started { selector, item } => self.contribute(&selector, item, true),
                MatchEvent::Stopped { selector, item } => self.contribute(&selector, item, false),
            }
        }
    }

    /// Adds (or withdraws) item `idx`'s members of set `id`.
    fn contribute(&mut self, id: &IpSetId, idx: ItemIdx, add: bool) {
        let Some(set) = self.sets.get_mut(id) else {
            return;
        };
        let item = self.items[idx as usize].as_ref().expect("live item");
        for m in contributions(&set.def, item) {
            let was_present;
            if add {
                let n = set.members.entry(m.clone()).or_insert(0);
                was_present = *n > 0;
                *n += 1;
                if was_present {
                    continue;
                }
            } else {
                let Some(n) = set.members.get_mut(&m) else {
                    continue;
                };
                *n -= 1;
                if *n > 0 {
                    continue;
                }
                set.members.remove(&m);
                was_present = true;
            }
            let key = (id.clone(), m);
            if !self.touched.contains_key(&key) {
                self.touched.insert(key.clone(), was_present);
                self.touched_order.push(key);
            }
        }
    }

    // ---- policies, tiers, profiles ----

    fn upsert_network_policy(&mut self, p: v3::NetworkPolicy) -> Result<(), Error> {
        let ns: Box<str> = p.metadata.namespace.into();
        let name: Box<str> = p.metadata.name.into();
        let incoming = PooledSpec(Arc::new(p.spec));
        let (s, pooled) = match self.spec_pool.get(&incoming) {
            Some(shared) => (shared.0.clone(), true),
            None => (incoming.0, false),
        };
        if self.local_namespaces.contains_key(&ns) {
            self.index_network_policy(&ns, &name, &s)?;
        } else if !pooled {
            // An equal spec was checked before: the checks do not depend on
            // the namespace.
            // Deferred: only find the errors compiling would.
            let err = |source| Error::Compile {
                kind: Kind::NetworkPolicy,
                name: format!("{ns}/{name}"),
                source: Box::new(source),
            };
            self.interner
                .check_selector("spec.selector", &s.selector)
                .map_err(err)?;
            let unsupported = policy_unsupported(&s.service_account_selector);
            network_policy_fields(&s, &unsupported)
                .check(Some(&ns), &mut self.interner)
                .map_err(err)?;
        }
        if !pooled && s.order.is_none_or(|o| !o.is_nan()) {
            // (A NaN order never equals itself, so such a spec is not pooled.)
            self.spec_pool.insert(PooledSpec(s.clone()));
        }
        if let Some(old) = self.network_policies.insert((ns, name), s) {
            self.release_spec(old);
        }
        Ok(())
    }

    /// Drops `spec` from the pool when no policy uses it any more.
    fn release_spec(&mut self, spec: Arc<v3::NetworkPolicySpec>) {
        // The pool's reference and this one.
        if Arc::strong_count(&spec) == 2 {
            self.spec_pool.remove(&PooledSpec(spec));
        }
    }

    /// Compiles and indexes a NetworkPolicy of a namespace with local
    /// endpoints.
    fn index_network_policy(
        &mut self,
        ns: &str,
        name: &str,
        s: &v3::NetworkPolicySpec,
    ) -> Result<(), Error> {
        let err = |source| Error::Compile {
            kind: Kind::NetworkPolicy,
            name: format!("{ns}/{name}"),
            source: Box::new(source),
        };
        let own = parse_selector("spec.selector", &s.selector).map_err(err)?;
        let selector = and(&in_namespace(ns), &own);
        let unsupported = policy_unsupported(&s.service_account_selector);
        self.upsert_policy(
            (Kind::NetworkPolicy, Some(ns.into()), name.into()),
            selector,
            network_policy_fields(s, &unsupported),
        )
        .map_err(err)
    }

    fn upsert_global_policy(&mut self, p: &v3::GlobalNetworkPolicy) -> Result<(), Error> {
        let name = p.metadata.name.clone();
        let s = &p.spec;
        let key = (Kind::GlobalNetworkPolicy, None, name.as_str().into());
        if s.pre_dnat || s.do_not_track {
            // These apply in host-endpoint raw/mangle tables, which this
            // calculator does not produce; noted in the snapshot.
            self.delete_policy(&key);
            self.skipped.insert(name);
            return Ok(());
        }
        if s.apply_on_forward {
            // Programmed, but not for forwarded traffic: said, not hidden.
            self.skipped.insert(name.clone());
        } else {
            self.skipped.remove(&name);
        }
        let err = |source| Error::Compile {
            kind: Kind::GlobalNetworkPolicy,
            name: name.clone(),
            source: Box::new(source),
        };
        let mut selector = parse_selector("spec.selector", &s.selector).map_err(err)?;
        if !s.namespace_selector.is_empty() {
            let ns_sel =
                namespace_selector("spec.namespaceSelector", &s.namespace_selector).map_err(err)?;
            selector = and(&ns_sel, &selector);
        }
        let unsupported = policy_unsupported(&s.service_account_selector);
        self.upsert_policy(
            key,
            selector,
            PolicyFields {
                tier: &s.tier,
                order: s.order,
                types: &s.types,
                ingress: &s.ingress,
                egress: &s.egress,
                unsupported: &unsupported,
            },
        )
        .map_err(err)
    }

    fn upsert_policy(
        &mut self,
        key: PolicyKey,
        selector: Selector,
        f: PolicyFields<'_>,
    ) -> Result<(), CompileError> {
        let (has_in, has_eg) = f.directions();
        let namespace = key.1.as_deref().map(str::to_owned);
        let mut compiler = RuleCompiler {
            namespace: key.1.as_deref(),
            policy_unsupported: f.unsupported,
            sets: &mut self.interner,
            check_only: false,
        };
        let program = |compiler: &mut RuleCompiler<'_>, field, rules| {
            Ok::<_, CompileError>(Arc::new(PolicyProgram {
                name: key.2.to_string(),
                namespace: namespace.clone(),
                rules: compiler.compile_all(field, rules)?,
            }))
        };
        let ingress = has_in
            .then(|| program(&mut compiler, "spec.ingress", f.ingress))
            .transpose()?;
        let egress = has_eg
            .then(|| program(&mut compiler, "spec.egress", f.egress))
            .transpose()?;
        let sets = distinct_sets(
            ingress
                .iter()
                .chain(&egress)
                .flat_map(|p| p.rules.iter().flat_map(CompiledRule::ip_sets)),
        );
        let tier: Arc<str> = if f.tier.is_empty() {
            v3::DEFAULT_TIER.into()
        } else {
            f.tier.into()
        };
        let sort_name = match &key.1 {
            Some(ns) => format!("{ns}/{}", key.2).into(),
            None => key.2.clone(),
        };
        let policy = Policy {
            kind: key.0,
            tier: tier.clone(),
            order: f.order,
            sort_name,
            ingress,
            egress,
            sets,
        };
        let idx = match self.policy_ids.get(&key) {
            Some(&idx) => {
                let old = self.policies[idx as usize].as_ref().expect("live policy");
                let same = old.tier == policy.tier
                    && old.order == policy.order
                    && old.ingress == policy.ingress
                    && old.egress == policy.egress;
                if !same {
                    // Every endpoint it applied to must be rebuilt; ones it
                    // starts or stops applying to come from the events below.
                    self.dirty
                        .extend(self.policy_index.matches_of_selector(&idx).copied());
                }
                if old.tier != policy.tier {
                    let old_tier = old.tier.clone();
                    if let Some(set) = self.tier_policies.get_mut(&old_tier) {
                        set.remove(&idx);
                    }
                }
                idx
            }
            None => {
                let idx = match self.free_policies.pop() {
                    Some(i) => i,
                    None => {
                        self.policies.push(None);
                        u32::try_from(self.policies.len() - 1).expect("fewer than 2^32 policies")
                    }
                };
                self.policy_ids.insert(key, idx);
                idx
            }
        };
        self.tier_policies.entry(tier).or_default().insert(idx);
        self.policies[idx as usize] = Some(policy);
        let dirty = &mut self.dirty;
        self.policy_index
            .update_selector(idx, selector, &mut |e: MatchEvent<&PolicyIdx, &ItemIdx>| {
                let (MatchEvent::Started { item, .. } | MatchEvent::Stopped { item, .. }) = e;
                dirty.insert(*item);
            });
        Ok(())
    }

    fn delete_policy(&mut self, key: &PolicyKey) {
        let Some(idx) = self.policy_ids.remove(key) else {
            return;
        };
        let dirty = &mut self.dirty;
        self.policy_index
            .delete_selector(&idx, &mut |e: MatchEvent<&PolicyIdx, &ItemIdx>| {
                let (MatchEvent::Started { item, .. } | MatchEvent::Stopped { item, .. }) = e;
                dirty.insert(*item);
            });
        let p = self.policies[idx as usize].take().expect("live policy");
        if let Some(set) = self.tier_policies.get_mut(&p.tier) {
            set.remove(&idx);
            if set.is_empty() {
                self.tier_policies.remove(&p.tier);
            }
        }
        self.free_policies.push(idx);
    }

    fn upsert_profile(&mut self, p: &v3::Profile) -> Result<(), Error> {
        let name: ProfileName = p.metadata.name.as_str().into();
        let err = |source| Error::Compile {
            kind: Kind::Profile,
            name: p.metadata.name.clone(),
            source: Box::new(source),
        };
        let mut compiler = RuleCompiler {
            namespace: None,
            policy_unsupported: &[],
            sets: &mut self.interner,
            check_only: false,
        };
        let ingress = compiler
            .compile_all("spec.ingress", &p.spec.ingress)
            .map_err(err)?;
        let egress = compiler
            .compile_all("spec.egress", &p.spec.egress)
            .map_err(err)?;
        let sets = distinct_sets(
            ingress
                .iter()
                .chain(&egress)
                .flat_map(CompiledRule::ip_sets),
        );
        let profile = Profile {
            ingress: Arc::new(ProfileProgram {
                name: name.to_string(),
                rules: ingress,
            }),
            egress: Arc::new(ProfileProgram {
                name: name.to_string(),
                rules: egress,
            }),
            sets,
        };
        let labels = &p.spec.labels_to_apply;
        let mut events = Vec::new();
        self.member_index.update_parent_labels(
            name.clone(),
            labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mut events,
        );
        self.member_events(events);
        self.policy_index.update_parent_labels(
            name.clone(),
            labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mut (),
        );
        self.profiles.insert(name.clone(), profile);
        self.dirty_profile_users(&name);
        Ok(())
    }

    fn dirty_profile_users(&mut self, name: &ProfileName) {
        if let Some(users) = self.profile_users.get(name) {
            self.dirty.extend(users.iter().copied());
        }
    }

    fn dirty_tier(&mut self, name: &Arc<str>) {
        if let Some(pols) = self.tier_policies.get(name) {
            for p in pols {
                self.dirty
                    .extend(self.policy_index.matches_of_selector(p).copied());
            }
        }
    }

    // ---- output ----

    /// Produces the deltas of everything staged since the last flush.
    pub fn flush(&mut self) -> Vec<Delta> {
        let mut out = Vec::new();
        let mut programs = Vec::new();
        let mut incs: Vec<IpSetRef> = Vec::new();
        let mut decs: Vec<IpSetRef> = Vec::new();

        let mut dirty: Vec<ItemIdx> = self.dirty.drain().collect();
        dirty.sort_unstable();
        for idx in dirty {
            let Some(Some(item)) = self.items.get(idx as usize) else {
                continue;
            };
            if item.local.is_none() {
                continue;
            }
            let (program, sets) = self.build_program(idx);
            let l = self.items[idx as usize]
                .as_mut()
                .and_then(|i| i.local.as_mut())
                .expect("local endpoint");
            diff_sorted(&l.sets, &sets, &mut incs, &mut decs);
            l.sets = sets;
            if l.program.as_deref() != Some(&program) {
                let program = Arc::new(program);
                l.program = Some(program.clone());
                programs.push(Delta::EndpointProgramSet(program));
            }
        }
        let mut removed_programs = Vec::new();
        for (endpoint, sets) in self.removed.drain(..) {
            decs.extend(sets);
            removed_programs.push(Delta::EndpointProgramRemoved { endpoint });
        }

        // Member changes of sets that were already active.
        for key in self.touched_order.drain(..) {
            let was = self.touched.remove(&key).expect("touched key");
            let Some(set) = self.sets.get(&key.0) else {
                continue;
            };
            let now = set.members.contains_key(&key.1);
            match (was, now) {
                (false, true) => out.push(Delta::IpSetMemberAdded {
                    id: key.0,
                    member: key.1,
                }),
                (true, false) => out.push(Delta::IpSetMemberRemoved {
                    id: key.0,
                    member: key.1,
                }),
                _ => {}
            }
        }
        self.touched.clear();

        // New sets before the programs that use them, retired ones after.
        for def in incs {
            if let Some(set) = self.sets.get_mut(&def.id) {
                set.refs += 1;
                continue;
            }
            self.activate(def, &mut out);
        }
        out.extend(programs);
        out.extend(removed_programs);
        for def in decs {
            let set = self
                .sets
                .get_mut(&def.id)
                .expect("referenced set is active");
            set.refs -= 1;
            if set.refs == 0 {
                self.sets.remove(&def.id);
                self.member_index.delete_selector(&def.id, &mut ());
                out.push(Delta::IpSetRemoved { id: def.id });
            }
        }
        out
    }

    fn activate(&mut self, def: IpSetRef, out: &mut Vec<Delta>) {
        let selector =
            calico_selector::parse(&def.selector).expect("set selectors are canonical forms");
        let mut matched = Vec::new();
        self.member_index
            .update_selector(def.id.clone(), selector, &mut |e: MatchEvent<
                &IpSetId,
                &ItemIdx,
            >| {
                if let MatchEvent::Started { item, .. } = e {
                    matched.push(*item);
                }
            });
        let mut members: HashMap<IpSetMember, u32> = HashMap::new();
        for idx in matched {
            let item = self.items[idx as usize].as_ref().expect("live item");
            for m in contributions(&def, item) {
                *members.entry(m).or_insert(0) += 1;
            }
        }
        out.push(Delta::IpSetAdded(def.clone()));
        let mut sorted: Vec<&IpSetMember> = members.keys().collect();
        sorted.sort_unstable();
        out.extend(sorted.into_iter().map(|m| Delta::IpSetMemberAdded {
            id: def.id.clone(),
            member: m.clone(),
        }));
        self.sets.insert(
            def.id.clone(),
            ActiveSet {
                def,
                refs: 1,
                members,
            },
        );
    }

    /// Builds local endpoint `idx`'s program and the sorted distinct sets
    /// it references.
    fn build_program(&self, idx: ItemIdx) -> (EndpointProgram, Vec<IpSetRef>) {
        let item = self.items[idx as usize].as_ref().expect("live item");
        let l = item.local.as_ref().expect("local endpoint");
        let mut pols: Vec<&Policy> = self
            .policy_index
            .selectors_matching(&idx)
            .map(|&p| self.policies[p as usize].as_ref().expect("live policy"))
            .collect();
        let tier_of = |t: &Arc<str>| {
            self.tiers.get(t).copied().unwrap_or(TierInfo {
                order: None,
                end: EndOfTier::Deny,
            })
        };
        pols.sort_by(|a, b| {
            order_cmp(tier_of(&a.tier).order, tier_of(&b.tier).order)
                .then_with(|| a.tier.cmp(&b.tier))
                .then_with(|| order_cmp(a.order, b.order))
                .then_with(|| a.sort_name.cmp(&b.sort_name))
                .then_with(|| a.kind.cmp(&b.kind))
        });
        let mut refs: Vec<&IpSetRef> = Vec::new();
        let dir = |d: Direction| {
            let mut tiers: Vec<TierProgram> = Vec::new();
            for p in &pols {
                let prog = match d {
                    Direction::Ingress => &p.ingress,
                    Direction::Egress => &p.egress,
                };
                let Some(prog) = prog else { continue };
                match tiers.last_mut() {
                    Some(t) if *t.tier == *p.tier => t.policies.push(prog.clone()),
                    _ => tiers.push(TierProgram {
                        tier: p.tier.to_string(),
                        policies: vec![prog.clone()],
                        end_of_tier: tier_of(&p.tier).end,
                    }),
                }
            }
            let profiles = l
                .profiles
                .iter()
                .map(|name| match self.profiles.get(name) {
                    Some(pr) => match d {
                        Direction::Ingress => pr.ingress.clone(),
                        Direction::Egress => pr.egress.clone(),
                    },
                    None => Arc::new(ProfileProgram {
                        name: name.to_string(),
                        rules: Vec::new(),
                    }),
                })
                .collect();
            DirectionProgram { tiers, profiles }
        };
        let ingress = dir(Direction::Ingress);
        let egress = dir(Direction::Egress);
        // Only policies that contribute a direction reference sets; a policy
        // compiles only the directions in its `types`.
        for p in &pols {
            refs.extend(p.sets.iter());
        }
        for name in l.profiles.iter() {
            if let Some(pr) = self.profiles.get(name) {
                refs.extend(pr.sets.iter());
            }
        }
        refs.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        refs.dedup_by(|a, b| a.id == b.id);
        let program = EndpointProgram {
            endpoint: l.id.clone(),
            ingress,
            egress,
        };
        (program, refs.into_iter().cloned().collect())
    }

    /// The complete current output (as of the last flush).
    pub fn snapshot(&self) -> Snapshot {
        let mut programs: Vec<Arc<EndpointProgram>> = self
            .items
            .iter()
            .flatten()
            .filter_map(|i| i.local.as_ref()?.program.clone())
            .collect();
        programs.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        Snapshot {
            programs,
            ip_sets: self
                .sets
                .iter()
                .map(|(id, s)| (id.clone(), s.members.keys().cloned().collect()))
                .collect(),
            skipped_policies: self.skipped.iter().cloned().collect(),
        }
    }

    /// The current program of local endpoint `endpoint`.
    pub fn program(&self, endpoint: &EndpointId) -> Option<&Arc<EndpointProgram>> {
        let key = match endpoint {
            EndpointId::Workload { namespace, name } => {
                ItemKey::Workload(namespace.as_str().into(), name.as_str().into())
            }
            EndpointId::Host { name } => ItemKey::Host(name.as_str().into()),
        };
        let idx = *self.item_ids.get(&key)?;
        self.items[idx as usize]
            .as_ref()?
            .local
            .as_ref()?
            .program
            .as_ref()
    }

    /// The members of active IP set `id`.
    pub fn ip_set_members(&self, id: &IpSetId) -> Option<impl Iterator<Item = &IpSetMember>> {
        self.sets.get(id).map(|s| s.members.keys())
    }

    /// Number of local endpoints with a program.
    pub fn num_programs(&self) -> usize {
        self.items
            .iter()
            .flatten()
            .filter(|i| i.local.as_ref().is_some_and(|l| l.program.is_some()))
            .count()
    }

    /// Number of active IP sets.
    pub fn num_ip_sets(&self) -> usize {
        self.sets.len()
    }
}

/// A pooled NetworkPolicy spec. Equal by value; hashed on the fields that
/// tell templates apart cheaply (equal specs hash alike; a collision only
/// costs a full comparison).
#[derive(Debug)]
struct PooledSpec(Arc<v3::NetworkPolicySpec>);

impl PartialEq for PooledSpec {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl Eq for PooledSpec {}

impl std::hash::Hash for PooledSpec {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let s = &*self.0;
        s.selector.hash(h);
        s.tier.hash(h);
        s.types.hash(h);
        // 0.0 == -0.0: hash them alike.
        s.order
            .map(|o| if o == 0.0 { 0 } else { o.to_bits() })
            .hash(h);
        for rules in [&s.ingress, &s.egress] {
            rules.len().hash(h);
            for r in rules {
                r.action.hash(h);
                for e in [&r.source, &r.destination] {
                    e.selector.hash(h);
                    e.namespace_selector.hash(h);
                    e.nets.hash(h);
                }
            }
        }
    }
}

/// The policy fields [`PolicyCalculator::upsert_policy`] reads.
struct PolicyFields<'a> {
    tier: &'a str,
    order: Option<f64>,
    types: &'a [String],
    ingress: &'a [v3::Rule],
    egress: &'a [v3::Rule],
    unsupported: &'a [String],
}

/// The fields of a NetworkPolicy's spec.
fn network_policy_fields<'a>(
    s: &'a v3::NetworkPolicySpec,
    unsupported: &'a [String],
) -> PolicyFields<'a> {
    PolicyFields {
        tier: &s.tier,
        order: s.order,
        types: &s.types,
        ingress: &s.ingress,
        egress: &s.egress,
        unsupported,
    }
}

impl PolicyFields<'_> {
    /// Whether the policy has an ingress and an egress program: `types`,
    /// or inferred from the rules as upstream's defaulting does it.
    fn directions(&self) -> (bool, bool) {
        if self.types.is_empty() {
            (
                !self.ingress.is_empty() || self.egress.is_empty(),
                !self.egress.is_empty(),
            )
        } else {
            (
                self.types.iter().any(|t| t == "Ingress"),
                self.types.iter().any(|t| t == "Egress"),
            )
        }
    }

    /// Finds every error compiling the policy would, building nothing.
    fn check(&self, namespace: Option<&str>, sets: &mut IpSetInterner) -> Result<(), CompileError> {
        let (has_in, has_eg) = self.directions();
        let mut compiler = RuleCompiler {
            namespace,
            policy_unsupported: self.unsupported,
            sets,
            check_only: true,
        };
        for (has, field, rules) in [
            (has_in, "spec.ingress", self.ingress),
            (has_eg, "spec.egress", self.egress),
        ] {
            if has {
                let field = FieldPath::Root(field);
                for (i, r) in rules.iter().enumerate() {
                    compiler.compile(field.index(i), r)?;
                }
            }
        }
        Ok(())
    }
}

/// Unsupported policy-level criteria, which fail every rule of the policy
/// closed.
fn policy_unsupported(service_account_selector: &str) -> Vec<String> {
    if service_account_selector.is_empty() {
        Vec::new()
    } else {
        vec!["serviceAccountSelector".to_owned()]
    }
}

/// The labels Calico puts on every item of namespace `ns`: its namespace,
/// and the namespace's own labels (only its name here) under the `pcns.`
/// prefix for namespaceSelectors.
fn namespace_labels(ns: &str) -> [(&'static str, &str); 2] {
    [(LABEL_NAMESPACE, ns), (PCNS_NAME_LABEL, ns)]
}

/// The namespace-name label under the namespace prefix. Spelled out because
/// concatenating consts needs a macro crate; a test keeps it in step.
const PCNS_NAME_LABEL: &str = "pcns.projectcalico.org/name";

fn nets_of(list: &[String]) -> Box<[IpNet]> {
    let mut nets: Vec<IpNet> = list.iter().filter_map(|n| parse_net(n)).collect();
    nets.sort_unstable();
    nets.dedup();
    nets.into_boxed_slice()
}

/// Splits the difference of two id-sorted lists into additions and removals.
fn diff_sorted(
    old: &[IpSetRef],
    new: &[IpSetRef],
    incs: &mut Vec<IpSetRef>,
    decs: &mut Vec<IpSetRef>,
) {
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if o.id == n.id => {
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if o.id < n.id => {
                decs.push(o.clone());
                i += 1;
            }
            (Some(_), Some(n)) | (None, Some(n)) => {
                incs.push(n.clone());
                j += 1;
            }
            (Some(o), None) => {
                decs.push(o.clone());
                i += 1;
            }
            (None, None) => unreachable!("loop condition"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NAMESPACE_LABEL_PREFIX, NAMESPACE_NAME_LABEL};

    #[test]
    fn pcns_name_label_is_prefix_plus_name() {
        assert_eq!(
            PCNS_NAME_LABEL,
            format!("{NAMESPACE_LABEL_PREFIX}{NAMESPACE_NAME_LABEL}")
        );
    }
}
