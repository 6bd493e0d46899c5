//! Incremental programming: the batch that turns the table the kernel has
//! into the one wanted, touching only what differs.
//!
//! A [`TableModel`] is a rendered [`Ruleset`] by name: each set with its
//! elements, each chain with its rules. [`diff`] compares two models and
//! emits, in an order the kernel accepts within one transaction:
//! new sets and chains; set elements deleted, then added; each changed
//! chain flushed and refilled; then chains and sets no longer wanted
//! deleted (by then nothing refers to them). A change it cannot express
//! this way (a set or base chain whose definition changed) makes it ask for
//! the full replacement [`crate::batch`] instead.

use std::collections::{BTreeMap, BTreeSet};

use nftables::batch::Batch;
use nftables::expr::Expression;
use nftables::schema::{Chain, Element, FlushObject, NfCmd, NfListObject, NfObject, Nftables, Set};

use crate::render::{Ruleset, TABLE_FAMILY, TABLE_NAME};

/// One set: its definition (without elements) and its elements in render
/// order (deterministic, so equal contents compare equal without sorting).
#[derive(Debug, Clone)]
struct SetModel {
    definition: Set<'static>,
    elements: Vec<Expression<'static>>,
}

/// One chain: its definition and its rules.
#[derive(Debug, Clone)]
struct ChainModel {
    definition: Chain<'static>,
    rules: Vec<NfListObject<'static>>,
}

/// A rendered table by name, the unit of comparison of [`diff`].
#[derive(Debug, Clone, Default)]
pub struct TableModel {
    sets: BTreeMap<String, SetModel>,
    chains: BTreeMap<String, ChainModel>,
    /// Chain names in render order, so new chains are added in a stable order.
    chain_order: Vec<String>,
}

impl TableModel {
    /// The model of `ruleset`.
    pub fn of(ruleset: &Ruleset) -> TableModel {
        TableModel::from_objects(ruleset.objects.clone())
    }

    /// The model of `ruleset`'s objects, taken out of it (no copy: a
    /// 10,000-rule table is worth not cloning on every change).
    pub fn take(ruleset: &mut Ruleset) -> TableModel {
        TableModel::from_objects(std::mem::take(&mut ruleset.objects))
    }

    /// The table's objects again, in an order a batch can add them: sets
    /// (with their elements), chains, then each chain's rules.
    pub fn objects(&self) -> Vec<NfListObject<'static>> {
        let mut out = Vec::with_capacity(self.sets.len() + self.chains.len() + self.rule_count());
        for s in self.sets.values() {
            let mut set = s.definition.clone();
            if !s.elements.is_empty() {
                set.elem = Some(s.elements.clone().into());
            }
            out.push(NfListObject::Set(Box::new(set)));
        }
        for name in &self.chain_order {
            out.push(NfListObject::Chain(self.chains[name].definition.clone()));
        }
        for name in &self.chain_order {
            out.extend(self.chains[name].rules.iter().cloned());
        }
        out
    }

    /// The model of a list of objects (sets, chains, then their rules).
    pub fn from_objects(objects: Vec<NfListObject<'static>>) -> TableModel {
        let mut m = TableModel::default();
        for o in objects {
            match o {
                NfListObject::Set(s) => {
                    let mut definition = *s;
                    let elements = definition
                        .elem
                        .take()
                        .map(std::borrow::Cow::into_owned)
                        .unwrap_or_default();
                    m.sets.insert(
                        definition.name.to_string(),
                        SetModel {
                            definition,
                            elements,
                        },
                    );
                }
                NfListObject::Chain(c) => {
                    m.chain_order.push(c.name.to_string());
                    m.chains.insert(
                        c.name.to_string(),
                        ChainModel {
                            definition: c,
                            rules: Vec::new(),
                        },
                    );
                }
                NfListObject::Rule(ref r) => {
                    if let Some(chain) = m.chains.get_mut(r.chain.as_ref()) {
                        chain.rules.push(o);
                    }
                }
                _ => {}
            }
        }
        m
    }

    /// A copy of just the named sets and chains, for comparing a change
    /// that touches nothing else without copying the whole table; None when
    /// one of them is not in the table.
    pub fn part(&self, sets: &[String], chains: &[&str]) -> Option<TableModel> {
        let mut m = TableModel::default();
        for name in sets {
            m.sets.insert(name.clone(), self.sets.get(name)?.clone());
        }
        for &name in chains {
            m.chains
                .insert(name.to_owned(), self.chains.get(name)?.clone());
        }
        m.chain_order = self
            .chain_order
            .iter()
            .filter(|c| m.chains.contains_key(*c))
            .cloned()
            .collect();
        Some(m)
    }

    /// Replaces the sets and chains `part` holds with its versions (the
    /// kernel took a [`diff`] of them against [`TableModel::part`]).
    pub fn overwrite(&mut self, part: TableModel) {
        for (name, set) in part.sets {
            self.sets.insert(name, set);
        }
        for (name, chain) in part.chains {
            if !self.chains.contains_key(&name) {
                self.chain_order.push(name.clone());
            }
            self.chains.insert(name, chain);
        }
    }

    /// Whether the named set has elements (None: no such set).
    pub fn set_has_elements(&self, name: &str) -> Option<bool> {
        self.sets.get(name).map(|s| !s.elements.is_empty())
    }

    /// Whether the named set's elements are concatenations (address,
    /// protocol, port: a named-port set); None: no such set.
    pub fn set_is_concatenated(&self, name: &str) -> Option<bool> {
        self.sets.get(name).map(|s| {
            matches!(
                s.definition.set_type,
                nftables::schema::SetTypeValue::Concatenated(_)
            )
        })
    }

    /// (chain, number of rules) of every chain with rules.
    pub fn rule_counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.chains
            .iter()
            .filter(|(_, c)| !c.rules.is_empty())
            .map(|(n, c)| (n.as_str(), c.rules.len()))
    }

    /// Number of rules of chain `name`, if there is such a chain.
    pub fn chain_rule_count(&self, name: &str) -> Option<usize> {
        self.chains.get(name).map(|c| c.rules.len())
    }

    /// Number of elements of each set that has any.
    pub fn element_counts(&self) -> BTreeMap<String, usize> {
        self.sets
            .iter()
            .filter(|(_, s)| !s.elements.is_empty())
            .map(|(n, s)| (n.clone(), s.elements.len()))
            .collect()
    }

    /// Number of sets.
    pub fn set_count(&self) -> usize {
        self.sets.len()
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum()
    }
}

/// Elements by their JSON text, to tell two element lists apart.
fn keyed<'e>(elements: &'e [Expression<'static>]) -> BTreeMap<String, &'e Expression<'static>> {
    elements
        .iter()
        .map(|e| (serde_json::to_string(e).unwrap_or_default(), e))
        .collect()
}

/// What [`diff`] found.
#[derive(Debug)]
pub enum Diff {
    /// The kernel already has the wanted table.
    Same,
    /// This batch makes it so.
    Batch {
        /// The commands, one transaction.
        batch: Nftables<'static>,
        /// Chains rewritten, added or deleted.
        chains: BTreeSet<String>,
        /// Set elements added or deleted.
        elements: usize,
    },
    /// Only a full replacement can make it so (a definition changed).
    Replace,
}

/// The batch that turns `have` into `want`.
pub fn diff(have: &TableModel, want: &TableModel) -> Diff {
    for (name, s) in &want.sets {
        if have
            .sets
            .get(name)
            .is_some_and(|h| h.definition != s.definition)
        {
            return Diff::Replace;
        }
    }
    for (name, c) in &want.chains {
        if have
            .chains
            .get(name)
            .is_some_and(|h| h.definition != c.definition)
        {
            return Diff::Replace;
        }
    }
    let mut b = Batch::new();
    let (mut chains, mut elements) = (BTreeSet::new(), 0);
    // 1. New sets, with their elements, and new chains (empty).
    for (name, s) in &want.sets {
        if !have.sets.contains_key(name) {
            let mut set = s.definition.clone();
            if !s.elements.is_empty() {
                set.elem = Some(s.elements.clone().into());
            }
            b.add(NfListObject::Set(Box::new(set)));
            elements += s.elements.len();
        }
    }
    for name in &want.chain_order {
        if !have.chains.contains_key(name) {
            b.add(NfListObject::Chain(want.chains[name].definition.clone()));
        }
    }
    // 2. Elements of existing sets: deletions first, so an interval added
    //    in place of an overlapping one never collides with it.
    for (name, s) in &want.sets {
        let Some(h) = have.sets.get(name) else {
            continue;
        };
        if h.elements == s.elements {
            continue;
        }
        let (before, after) = (keyed(&h.elements), keyed(&s.elements));
        let gone: Vec<_> = before
            .iter()
            .filter(|(k, _)| !after.contains_key(*k))
            .map(|(_, e)| (*e).clone())
            .collect();
        let new: Vec<_> = after
            .iter()
            .filter(|(k, _)| !before.contains_key(*k))
            .map(|(_, e)| (*e).clone())
            .collect();
        elements += gone.len() + new.len();
        if !gone.is_empty() {
            b.delete(NfListObject::Element(element(name, gone)));
        }
        if !new.is_empty() {
            b.add(NfListObject::Element(element(name, new)));
        }
    }
    // 3. Chains whose rules differ (new chains included): flushed, refilled.
    for name in &want.chain_order {
        let c = &want.chains[name];
        let old = have.chains.get(name);
        if old.is_some_and(|h| h.rules == c.rules) {
            continue;
        }
        if old.is_none() && c.rules.is_empty() {
            continue;
        }
        chains.insert(name.clone());
        if old.is_some() {
            b.add_cmd(NfCmd::Flush(FlushObject::Chain(named_chain(name))));
        }
        for r in &c.rules {
            b.add(r.clone());
        }
    }
    // 4. What is no longer wanted, once nothing refers to it.
    let removed_chains: Vec<&ChainModel> = have
        .chain_order
        .iter()
        .filter(|n| !want.chains.contains_key(*n))
        .map(|n| &have.chains[n])
        .collect();
    // Their rules may jump to one another: empty them all before deleting any.
    for c in &removed_chains {
        if !c.rules.is_empty() {
            b.add_cmd(NfCmd::Flush(FlushObject::Chain(named_chain(
                &c.definition.name,
            ))));
        }
    }
    for c in &removed_chains {
        chains.insert(c.definition.name.to_string());
        b.delete(NfListObject::Chain(named_chain(&c.definition.name)));
    }
    let removed_sets: BTreeSet<&String> = have
        .sets
        .keys()
        .filter(|n| !want.sets.contains_key(*n))
        .collect();
    for name in removed_sets {
        b.delete(NfListObject::Set(Box::new(Set {
            family: TABLE_FAMILY,
            table: TABLE_NAME.into(),
            name: name.clone().into(),
            ..Set::default()
        })));
    }
    let batch = b.to_nftables();
    if batch.objects.is_empty() {
        Diff::Same
    } else {
        Diff::Batch {
            batch,
            chains,
            elements,
        }
    }
}

/// A chain by name only, as delete and flush want it.
fn named_chain(name: &str) -> Chain<'static> {
    Chain {
        family: TABLE_FAMILY,
        table: TABLE_NAME.into(),
        name: name.to_owned().into(),
        ..Chain::default()
    }
}

fn element(set: &str, elem: Vec<nftables::expr::Expression<'static>>) -> Element<'static> {
    Element {
        family: TABLE_FAMILY,
        table: TABLE_NAME.into(),
        name: set.to_owned().into(),
        elem: elem.into(),
    }
}

/// Splits a [`diff`] batch into transactions of at most `max_rules` new
/// rules each, so no single commit holds the netfilter lock for long (a
/// cold start of 10,000 rules in one commit takes over 400 ms). Only what
/// nothing refers to yet goes early: new sets with their elements, new
/// chains and their rules. Everything that changes what traffic sees (the
/// chains that already exist, with the dispatch to the new ones, element
/// changes of existing sets, deletions) is the last transaction, so every
/// commit leaves a table as safe as before it: the old policy until the
/// last one, the new one after.
///
/// The first piece creates the new sets and chains; the pieces between the
/// first and the last add rules to them only, each chain's rules in one
/// piece, so they depend on the first and on nothing else:
/// [`crate::Nft::apply_split`] may send them in any order, or at once.
pub fn split(
    batch: Nftables<'static>,
    have: &TableModel,
    max_rules: usize,
) -> Vec<Nftables<'static>> {
    let mut creates = Vec::new();
    let mut rules: Vec<Vec<NfObject<'static>>> = vec![Vec::new()];
    let mut piece_of_chain = std::collections::HashMap::new();
    let mut last = Vec::new();
    // A new base chain sees traffic as soon as it exists: it goes last.
    let mut new_base = std::collections::HashSet::new();
    for cmd in batch.objects.into_owned() {
        match &cmd {
            NfObject::CmdObject(NfCmd::Add(NfListObject::Set(s)))
                if !have.sets.contains_key(s.name.as_ref()) =>
            {
                creates.push(cmd);
            }
            NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(c)))
                if c.hook.is_none() && !have.chains.contains_key(c.name.as_ref()) =>
            {
                creates.push(cmd);
            }
            NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(r)))
                if !have.chains.contains_key(r.chain.as_ref())
                    && !new_base.contains(r.chain.as_ref()) =>
            {
                // A chain's rules stay in one piece, in order: pieces may
                // go in any order. (A chain longer than `max_rules` makes
                // its piece longer.)
                let at = match piece_of_chain.get(r.chain.as_ref()) {
                    Some(&at) => at,
                    None => {
                        if rules.last().is_some_and(|p| p.len() >= max_rules) {
                            rules.push(Vec::new());
                        }
                        piece_of_chain.insert(r.chain.to_string(), rules.len() - 1);
                        rules.len() - 1
                    }
                };
                rules[at].push(cmd);
            }
            _ => {
                if let NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(c))) = &cmd
                    && c.hook.is_some()
                {
                    new_base.insert(c.name.to_string());
                }
                last.push(cmd);
            }
        }
    }
    std::iter::once(creates)
        .chain(rules)
        .chain(std::iter::once(last))
        .filter(|p| !p.is_empty())
        .map(|p| Nftables { objects: p.into() })
        .collect()
}
