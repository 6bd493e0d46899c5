//! The output side: flushing staged changes into deltas, building endpoint programs, and
//! the snapshot the dataplane renders.

use super::*;

impl PolicyCalculator {
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

    pub(super) fn activate(&mut self, def: IpSetRef, out: &mut Vec<Delta>) {
        let selector = calico_selector::parse_shared(&def.selector)
            .expect("set selectors are canonical forms");
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
    pub(super) fn build_program(&self, idx: ItemIdx) -> (EndpointProgram, Vec<IpSetRef>) {
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
