//! Endpoints and network sets: the items selectors match, the local endpoints that get
//! programs, and their contributions to IP sets.

use super::*;

impl PolicyCalculator {
    pub(super) fn upsert_workload(&mut self, w: &v3::WorkloadEndpoint) {
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

    pub(super) fn upsert_host(&mut self, h: &v3::HostEndpoint) {
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
    pub(super) fn profile_name(&mut self, name: &str) -> ProfileName {
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

    pub(super) fn upsert_item<'a>(
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
    pub(super) fn unlocal(&mut self, idx: ItemIdx) {
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
    pub(super) fn local_endpoint_joined(&mut self, ns: &str) {
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
    pub(super) fn local_endpoint_left(&mut self, ns: &str) {
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
    pub(super) fn namespace_policies<'a>(
        &'a self,
        ns: &'a str,
    ) -> impl Iterator<Item = (&'a (Box<str>, Box<str>), &'a Arc<v3::NetworkPolicySpec>)> + 'a {
        self.network_policies
            .range((Box::<str>::from(ns), Box::<str>::from(""))..)
            .take_while(move |((n, _), _)| **n == *ns)
    }

    pub(super) fn delete_item(&mut self, key: &ItemKey) {
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
    pub(super) fn member_events(&mut self, events: Vec<MatchEvent<IpSetId, ItemIdx>>) {
        for e in events {
            match e {
                MatchEvent::Started { selector, item } => self.contribute(&selector, item, true),
                MatchEvent::Stopped { selector, item } => self.contribute(&selector, item, false),
            }
        }
    }

    /// Adds (or withdraws) item `idx`'s members of set `id`.
    pub(super) fn contribute(&mut self, id: &IpSetId, idx: ItemIdx, add: bool) {
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
}
