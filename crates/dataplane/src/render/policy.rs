//! Endpoint chains (dispatching to policies in tier order, then profiles) and the
//! policy and profile chains holding compiled rules.

use super::*;
use calico_policy::attribution::Attribution;
use calico_policy::eval::{Decision, RuleSource};

impl Renderer {
    /// An endpoint's chain for one direction: it jumps to the chain holding its
    /// policies and profiles in order, returns when they allowed the packet and drops it
    /// otherwise (counted per endpoint). The policy sequence depends only on the program, so
    /// endpoints with the same policies share one: a table with many alike endpoints holds
    /// each sequence once.
    pub(super) fn endpoint_chain(
        &mut self,
        iface: &str,
        endpoint: String,
        direction: Direction,
        program: &calico_policy::model::DirectionProgram,
    ) {
        let (chain, seq_prefix) = match direction {
            Direction::Ingress => (
                format!("{TO_ENDPOINT_PREFIX}{iface}"),
                SEQUENCE_INGRESS_PREFIX,
            ),
            Direction::Egress => (
                format!("{FROM_ENDPOINT_PREFIX}{iface}"),
                SEQUENCE_EGRESS_PREFIX,
            ),
        };
        let seq = self.sequence_chain(seq_prefix, direction, program);
        self.chain(&chain);
        self.out
            .units
            .push((chain.clone(), format!("{direction} of {endpoint}")));
        self.rule(
            &chain,
            vec![jump(&seq)],
            format!("{direction} of {endpoint}"),
        );
        self.rule(
            &chain,
            vec![mark_test(MARK_ACCEPT, true), Statement::Return(None)],
            format!("{direction} of {endpoint}: allowed"),
        );
        let decision = if program.profiles.is_empty() {
            Decision::NoProfile
        } else {
            Decision::NoProfileMatched
        };
        let mut drop = vec![counter()];
        drop.extend(self.flow_log(Attribution {
            direction,
            decision,
        }));
        drop.push(Statement::Drop(None));
        self.rule(
            &chain,
            drop,
            format!("{direction} of {endpoint}: no policy or profile allowed"),
        );
    }

    /// The chain running `program`'s policies in tier order, then its profiles (emitted
    /// once per distinct program); returns its name. It ends with the accept mark set when
    /// something allowed the packet, and drops at the end of a tier where nothing decided.
    fn sequence_chain(
        &mut self,
        seq_prefix: &str,
        direction: Direction,
        program: &calico_policy::model::DirectionProgram,
    ) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let (policy_prefix, profile_prefix) = match direction {
            Direction::Ingress => (POLICY_INGRESS_PREFIX, PROFILE_INGRESS_PREFIX),
            Direction::Egress => (POLICY_EGRESS_PREFIX, PROFILE_EGRESS_PREFIX),
        };
        // The sequence is named by what it holds: the same program, the same chain.
        let mut key = String::new();
        for tier in &program.tiers {
            key.push_str(&format!("tier {} {:?}\n", tier.tier, tier.end_of_tier));
            for policy in &tier.policies {
                let name = policy.display_name();
                key.push_str(&chain_name(policy_prefix, &format!("{}/{name}", tier.tier)));
                key.push('\n');
            }
        }
        for profile in &program.profiles {
            key.push_str(&chain_name(profile_prefix, &profile.name));
            key.push('\n');
        }
        let hash =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&key));
        let seq = format!("{seq_prefix}{}", &hash[..22]);
        if !self.emitted.insert(seq.clone()) {
            return seq;
        }
        self.chain(&seq);
        let names: Vec<String> = program
            .tiers
            .iter()
            .flat_map(|t| t.policies.iter().map(|p| p.display_name().to_string()))
            .chain(
                program
                    .profiles
                    .iter()
                    .map(|p| format!("profile {}", p.name)),
            )
            .collect();
        self.out.units.push((
            seq.clone(),
            truncate_comment(&format!("{direction} policies: {}", names.join(", "))),
        ));
        self.rule(
            &seq,
            vec![mark_clear(MARK_ACCEPT | MARK_PASS)],
            format!("{direction}: start undecided"),
        );
        for tier in &program.tiers {
            for policy in &tier.policies {
                let name = policy.display_name();
                let target = chain_name(policy_prefix, &format!("{}/{name}", tier.tier));
                if self.emitted.insert(target.clone()) {
                    self.chain(&target);
                    let what = format!("tier {} policy {name}", tier.tier);
                    self.out.units.push((target.clone(), what.clone()));
                    let source = RuleSource::Policy {
                        tier: tier.tier.clone(),
                        namespace: policy.namespace.clone(),
                        name: policy.name.clone(),
                    };
                    self.program_chain(
                        &target,
                        &what,
                        Program::Policy(policy.clone()),
                        (direction, source),
                    );
                }
                // After a Pass the rest of the tier is skipped.
                self.rule(
                    &seq,
                    vec![mark_test(MARK_PASS, false), jump(&target)],
                    format!("tier {} policy {name}", tier.tier),
                );
                self.rule(
                    &seq,
                    vec![mark_test(MARK_ACCEPT, true), Statement::Return(None)],
                    format!("allowed by policy {name}"),
                );
            }
            if tier.end_of_tier == EndOfTier::Deny {
                let mut drop = vec![mark_test(MARK_PASS, false), counter()];
                drop.extend(self.flow_log(Attribution {
                    direction,
                    decision: Decision::EndOfTier {
                        tier: tier.tier.clone(),
                    },
                }));
                drop.push(Statement::Drop(None));
                self.rule(
                    &seq,
                    drop,
                    format!("tier {}: end of tier, no policy decided", tier.tier),
                );
            }
            self.rule(
                &seq,
                vec![mark_clear(MARK_PASS)],
                format!("tier {}: passed", tier.tier),
            );
        }
        for profile in &program.profiles {
            let target = chain_name(profile_prefix, &profile.name);
            if self.emitted.insert(target.clone()) {
                self.chain(&target);
                let what = format!("profile {}", profile.name);
                self.out.units.push((target.clone(), what.clone()));
                let source = RuleSource::Profile {
                    name: profile.name.clone(),
                };
                self.program_chain(
                    &target,
                    &what,
                    Program::Profile(profile.clone()),
                    (direction, source),
                );
            }
            self.rule(
                &seq,
                vec![jump(&target)],
                format!("profile {}", profile.name),
            );
            self.rule(
                &seq,
                vec![mark_test(MARK_ACCEPT, true), Statement::Return(None)],
                format!("allowed by profile {}", profile.name),
            );
        }
        seq
    }

    /// Emits a policy's or profile's chain: from the cache when it was
    /// rendered from the same program with the same sets empty, else anew
    /// (and cached).
    pub(super) fn program_chain(
        &mut self,
        chain: &str,
        what: &str,
        program: Program,
        source: (Direction, RuleSource),
    ) {
        let sets: Vec<bool> = program
            .rules()
            .iter()
            .flat_map(CompiledRule::ip_sets)
            .flat_map(|r| {
                [Family::V4, Family::V6].map(|f| self.nonempty.contains(&(r.id.clone(), f)))
            })
            .collect();
        self.cache_used.insert(chain.to_owned());
        if let Some(c) = self.cache.chains.get(chain)
            && c.program.same(&program)
            && c.sets == sets
        {
            self.rules.extend(c.rules.iter().cloned());
            self.out.errors.extend(c.errors.iter().cloned());
            self.out.skipped_rules.extend(c.skipped.iter().cloned());
            self.out.attributions.extend(c.attributions.iter().cloned());
            if c.broken {
                self.broken.insert(chain.to_owned());
            }
            return;
        }
        let (rules, errors, skipped) = (
            self.rules.len(),
            self.out.errors.len(),
            self.out.skipped_rules.len(),
        );
        let policy = matches!(program, Program::Policy(_));
        let attributions = self.rules_chain(chain, what, program.rules(), policy, source);
        let cached = CachedChain {
            sets,
            rules: self.rules[rules..].to_vec(),
            errors: self.out.errors[errors..].to_vec(),
            skipped: self.out.skipped_rules[skipped..].to_vec(),
            broken: self.broken.contains(chain),
            program,
            attributions,
        };
        self.cache.chains.insert(chain.to_owned(), cached);
    }

    /// Emits a policy's or profile's rules into `chain`; falling off its end
    /// returns undecided. `source` is the policy or profile for flow logs; returns
    /// the flow-log prefixes its rules carry.
    pub(super) fn rules_chain(
        &mut self,
        chain: &str,
        what: &str,
        rules: &[CompiledRule],
        policy: bool,
        (direction, source): (Direction, RuleSource),
    ) -> Vec<(String, Attribution)> {
        let mut attributions = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let comment = format!("{what} rule {i} {}", rule.action);
            if rule.never_matches() {
                self.out.skipped_rules.push(format!(
                    "{what} rule {i}: unsupported {}",
                    rule.unsupported.join(", ")
                ));
                continue;
            }
            let verdict: Vec<Statement<'static>> = match rule.action {
                Action::Allow => vec![mark_set(MARK_ACCEPT), Statement::Return(None)],
                Action::Deny => vec![Statement::Drop(None)],
                // In a policy Pass skips to the next tier; in a profile it
                // leaves for the next profile (upstream's profile chains).
                Action::Pass if policy => vec![mark_set(MARK_PASS), Statement::Return(None)],
                Action::Pass => vec![Statement::Return(None)],
                Action::Log => vec![Statement::Log(Some(Log {
                    prefix: Some(Cow::Owned(LOG_PREFIX.to_owned())),
                    ..Log::new(None)
                }))],
            };
            let decision = match (rule.action, policy) {
                (Action::Allow | Action::Deny, true) => Some(Decision::PolicyRule {
                    source: source.clone(),
                    rule: i,
                    action: rule.action,
                }),
                (Action::Allow | Action::Deny, false) => Some(Decision::ProfileRule {
                    source: source.clone(),
                    rule: i,
                    action: rule.action,
                }),
                (Action::Pass | Action::Log, _) => None,
            };
            let log = decision.and_then(|decision| {
                let who = Attribution {
                    direction,
                    decision,
                };
                let log = self.flow_log(who.clone())?;
                attributions.push((who.log_prefix(), who));
                Some(log)
            });
            match match_variants(rule, &self.nonempty) {
                Ok(variants) => {
                    for mut expr in variants {
                        expr.push(counter());
                        expr.extend(log.clone());
                        expr.extend(verdict.iter().cloned());
                        self.rule(chain, expr, comment.clone());
                    }
                }
                Err(why) => {
                    self.out.errors.push(format!(
                        "{what} rule {i}: {why}; the {what} drops everything"
                    ));
                    self.broken.insert(chain.to_owned());
                }
            }
        }
        attributions
    }

    /// Replaces the rules of every chain with an unrenderable rule by one
    /// drop: the policy fails closed for the endpoints it applies to.
    pub(super) fn fail_closed_broken_policies(&mut self) {
        if self.broken.is_empty() {
            return;
        }
        let broken = std::mem::take(&mut self.broken);
        self.rules.retain(
            |r| !matches!(r, NfListObject::Rule(rule) if broken.contains(rule.chain.as_ref())),
        );
        for chain in &broken {
            self.rule(
                chain,
                vec![counter(), Statement::Drop(None)],
                "fail closed: a rule of this policy could not be rendered".into(),
            );
        }
    }
}

/// The match statements of a rule, as alternatives (any one matching means
/// the rule matches): one per address family the rule needs, times one per
/// port alternative (numeric ranges, or each named-port set) of each side.
pub(super) fn match_variants(
    rule: &CompiledRule,
    nonempty: &HashSet<(IpSetId, Family)>,
) -> Result<Vec<Vec<Statement<'static>>>, String> {
    let mut common = Vec::new();
    if let Some(p) = rule.protocol {
        common.push(matches(
            meta(MetaKey::L4proto),
            Operator::EQ,
            Expression::Number(u32::from(p)),
        ));
    }
    if let Some(p) = rule.not_protocol {
        common.push(matches(
            meta(MetaKey::L4proto),
            Operator::NEQ,
            Expression::Number(u32::from(p)),
        ));
    }
    for (icmp, op) in [(&rule.icmp, Operator::EQ), (&rule.not_icmp, Operator::NEQ)] {
        let Some(icmp) = icmp else { continue };
        let proto = match rule.protocol {
            Some(1) => "icmp",
            Some(58) => "icmpv6",
            _ => return Err("icmp match without protocol ICMP or ICMPv6".into()),
        };
        // notICMP {type, code} means "not (this type and this code)": one
        // match of the concatenation against an anonymous set says exactly
        // that (two `!=` matches would mean "neither").
        if let (Operator::NEQ, Some(t), Some(c)) = (op, icmp.icmp_type, icmp.code) {
            common.push(matches(
                Expression::Named(NamedExpression::Concat(vec![
                    payload(proto, "type"),
                    payload(proto, "code"),
                ])),
                Operator::NEQ,
                Expression::Named(NamedExpression::Set(vec![SetItem::Element(
                    Expression::Named(NamedExpression::Concat(vec![
                        Expression::Number(u32::from(t)),
                        Expression::Number(u32::from(c)),
                    ])),
                )])),
            ));
            continue;
        }
        if let Some(t) = icmp.icmp_type {
            common.push(matches(
                payload(proto, "type"),
                op,
                Expression::Number(u32::from(t)),
            ));
        }
        if let Some(c) = icmp.code {
            common.push(matches(
                payload(proto, "code"),
                op,
                Expression::Number(u32::from(c)),
            ));
        }
    }
    let addressed = |e: &EntityMatch| {
        !e.nets.is_empty()
            || !e.not_nets.is_empty()
            || e.selector.is_some()
            || e.not_selector.is_some()
            || !e.named_ports.is_empty()
            || !e.not_named_ports.is_empty()
    };
    let families: Vec<Option<Family>> = if addressed(&rule.source) || addressed(&rule.destination) {
        [Family::V4, Family::V6]
            .into_iter()
            .filter(|f| match rule.ip_version {
                Some(4) => *f == Family::V4,
                Some(6) => *f == Family::V6,
                _ => true,
            })
            // A side listing only nets of the other family cannot match.
            .filter(|f| {
                [&rule.source, &rule.destination].iter().all(|e| {
                    (e.nets.is_empty() || e.nets.iter().any(|n| Family::of(n) == *f))
                        && e.selector
                            .as_ref()
                            .is_none_or(|r| nonempty.contains(&(r.id.clone(), *f)))
                })
            })
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let mut variants = Vec::new();
    for family in families {
        let mut base = common.clone();
        match (family, rule.ip_version) {
            (Some(f), _) => base.push(matches(
                meta(MetaKey::Nfproto),
                Operator::EQ,
                s(f.nfproto()),
            )),
            (None, Some(4)) => base.push(matches(meta(MetaKey::Nfproto), Operator::EQ, s("ipv4"))),
            (None, Some(6)) => base.push(matches(meta(MetaKey::Nfproto), Operator::EQ, s("ipv6"))),
            (None, _) => {}
        }
        let mut alternatives = vec![base];
        for (side, e) in [
            (Side::Source, &rule.source),
            (Side::Destination, &rule.destination),
        ] {
            let (fixed, ports) = side_matches(side, e, family, nonempty);
            let mut next = Vec::new();
            for a in &alternatives {
                for p in &ports {
                    let mut v = a.clone();
                    v.extend(fixed.iter().cloned());
                    v.extend(p.iter().cloned());
                    next.push(v);
                }
            }
            alternatives = next;
        }
        variants.extend(alternatives);
    }
    Ok(variants)
}

/// One side's conjunctive matches, and its port alternatives (at least one,
/// possibly empty).
pub(super) fn side_matches(
    side: Side,
    e: &EntityMatch,
    family: Option<Family>,
    nonempty: &HashSet<(IpSetId, Family)>,
) -> (Vec<Statement<'static>>, Vec<Vec<Statement<'static>>>) {
    let mut fixed = Vec::new();
    let mut alternatives = Vec::new();
    let Some(family) = family else {
        // No address criteria on either side: only port ranges can remain.
        if !e.ports.is_empty() {
            fixed.push(matches(side.port(), Operator::EQ, port_set(&e.ports)));
        }
        if !e.not_ports.is_empty() {
            fixed.push(matches(side.port(), Operator::NEQ, port_set(&e.not_ports)));
        }
        return (fixed, vec![Vec::new()]);
    };
    let addr = payload(family.proto(), side.addr_field());
    let v6 = family == Family::V6;
    let nets: Vec<&IpNet> = e.nets.iter().filter(|n| Family::of(n) == family).collect();
    if !nets.is_empty() {
        fixed.push(matches(addr.clone(), Operator::EQ, net_set(&nets)));
    }
    let not_nets: Vec<&IpNet> = e
        .not_nets
        .iter()
        .filter(|n| Family::of(n) == family)
        .collect();
    if !not_nets.is_empty() {
        fixed.push(matches(addr.clone(), Operator::NEQ, net_set(&not_nets)));
    }
    let set_ref = |r: &IpSetRef| s(&format!("@{}", set_name(&r.id, v6)));
    if let Some(r) = &e.selector {
        fixed.push(matches(addr.clone(), Operator::EQ, set_ref(r)));
    }
    if let Some(r) = &e.not_selector {
        fixed.push(matches(addr.clone(), Operator::NEQ, set_ref(r)));
    }
    let triple = || {
        Expression::Named(NamedExpression::Concat(vec![
            addr.clone(),
            meta(MetaKey::L4proto),
            side.port(),
        ]))
    };
    if !e.not_ports.is_empty() {
        fixed.push(matches(side.port(), Operator::NEQ, port_set(&e.not_ports)));
    }
    for r in &e.not_named_ports {
        fixed.push(matches(triple(), Operator::NEQ, set_ref(r)));
    }
    // The port must be in one of the ranges or one of the named-port sets:
    // a disjunction, so each is its own rule.
    if !e.ports.is_empty() {
        alternatives.push(vec![matches(side.port(), Operator::EQ, port_set(&e.ports))]);
    }
    for r in &e.named_ports {
        if !nonempty.contains(&(r.id.clone(), family)) {
            continue;
        }
        alternatives.push(vec![matches(triple(), Operator::EQ, set_ref(r))]);
    }
    // Only named ports, all with empty sets: nothing can match.
    if alternatives.is_empty() && e.named_ports.is_empty() {
        alternatives.push(Vec::new());
    }
    (fixed, alternatives)
}
