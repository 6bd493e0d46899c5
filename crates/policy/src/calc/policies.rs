//! Policies, tiers and profiles: compiled once, indexed by the endpoints they select.

use super::*;

impl PolicyCalculator {
    pub(super) fn upsert_network_policy(&mut self, p: v3::NetworkPolicy) -> Result<(), Error> {
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
    pub(super) fn release_spec(&mut self, spec: Arc<v3::NetworkPolicySpec>) {
        // The pool's reference and this one.
        if Arc::strong_count(&spec) == 2 {
            self.spec_pool.remove(&PooledSpec(spec));
        }
    }

    /// Compiles and indexes a NetworkPolicy of a namespace with local
    /// endpoints.
    pub(super) fn index_network_policy(
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

    pub(super) fn upsert_global_policy(
        &mut self,
        p: &v3::GlobalNetworkPolicy,
    ) -> Result<(), Error> {
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

    pub(super) fn upsert_policy(
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

    pub(super) fn delete_policy(&mut self, key: &PolicyKey) {
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

    pub(super) fn upsert_profile(&mut self, p: &v3::Profile) -> Result<(), Error> {
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

    pub(super) fn dirty_profile_users(&mut self, name: &ProfileName) {
        if let Some(users) = self.profile_users.get(name) {
            self.dirty.extend(users.iter().copied());
        }
    }

    pub(super) fn dirty_tier(&mut self, name: &Arc<str>) {
        if let Some(pols) = self.tier_policies.get(name) {
            for p in pols {
                self.dirty
                    .extend(self.policy_index.matches_of_selector(p).copied());
            }
        }
    }
}

/// A pooled NetworkPolicy spec. Equal by value; hashed on the fields that
/// tell templates apart cheaply (equal specs hash alike; a collision only
/// costs a full comparison).
#[derive(Debug)]
pub(super) struct PooledSpec(Arc<v3::NetworkPolicySpec>);

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
pub(super) struct PolicyFields<'a> {
    tier: &'a str,
    order: Option<f64>,
    types: &'a [String],
    ingress: &'a [v3::Rule],
    egress: &'a [v3::Rule],
    unsupported: &'a [String],
}

/// The fields of a NetworkPolicy's spec.
pub(super) fn network_policy_fields<'a>(
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
    pub(super) fn directions(&self) -> (bool, bool) {
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
    pub(super) fn check(
        &self,
        namespace: Option<&str>,
        sets: &mut IpSetInterner,
    ) -> Result<(), CompileError> {
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
pub(super) fn policy_unsupported(service_account_selector: &str) -> Vec<String> {
    if service_account_selector.is_empty() {
        Vec::new()
    } else {
        vec!["serviceAccountSelector".to_owned()]
    }
}

/// The labels Calico puts on every item of namespace `ns`: its namespace,
/// and the namespace's own labels (only its name here) under the `pcns.`
/// prefix for namespaceSelectors.
pub(super) fn namespace_labels(ns: &str) -> [(&'static str, &str); 2] {
    [(LABEL_NAMESPACE, ns), (PCNS_NAME_LABEL, ns)]
}

/// The namespace-name label under the namespace prefix. Spelled out because
/// concatenating consts needs a macro crate; a test keeps it in step.
const PCNS_NAME_LABEL: &str = "pcns.projectcalico.org/name";

pub(super) fn nets_of(list: &[String]) -> Box<[IpNet]> {
    let mut nets: Vec<IpNet> = list.iter().filter_map(|n| parse_net(n)).collect();
    nets.sort_unstable();
    nets.dedup();
    nets.into_boxed_slice()
}

/// Splits the difference of two id-sorted lists into additions and removals.
pub(super) fn diff_sorted(
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
