//! The incremental selector/label index.
//!
//! [`LabelIndex`] holds selectors (each under one or more caller ids) and
//! labelled items (each optionally inheriting labels from parents, i.e.
//! profiles), and reports through a [`MatchSink`] every (selector id, item)
//! pair that starts or stops matching as either side changes.
//!
//! ```
//! use calico_policy::{LabelIndex, MatchEvent};
//!
//! let mut index: LabelIndex<&str, &str> = LabelIndex::new();
//! let mut events = Vec::new();
//! index.update_selector("web-ingress", calico_selector::parse("role == 'web'").unwrap(), &mut events);
//! index.update_labels("ep1", [("role", "web")], &[], &mut events);
//! assert_eq!(events, [MatchEvent::Started { selector: "web-ingress", item: "ep1" }]);
//! ```
//!
//! How it avoids scanning:
//! - Items are indexed by their effective labels (own labels over inherited
//!   ones), key -> value -> items, so a new selector only evaluates the items
//!   that carry the label value (or label) it most narrowly requires.
//! - Selectors are indexed by that one requirement, so an item update only
//!   evaluates the selectors that its labels could satisfy, plus the few
//!   "unindexed" selectors that require no label at all (`all()`,
//!   `!has(x)`, `a != "b"`). Of those, only the ones that read a changed
//!   label are evaluated: a selector's result depends on nothing else.
//! - Selectors with the same canonical form share one entry: its matches are
//!   computed once, and only the events fan out to each id.

mod idset;
mod labelset;

use std::borrow::Borrow;
use std::hash::Hash;

use calico_selector::{Labels, ParseError, Selector};
// Keyed fast hashing: label keys and values are user-chosen, so a fixed
// hash would invite collisions; foldhash's per-process seed resists that
// at a fraction of SipHash's cost.
use foldhash::{HashMap, HashMapExt as _};

use idset::{IdSet, Slab};
use labelset::LabelSet;

/// A change in which items a selector matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MatchEvent<S, I> {
    /// `selector` now matches `item`.
    Started {
        /// The selector's id.
        selector: S,
        /// The item's id.
        item: I,
    },
    /// `selector` no longer matches `item`.
    Stopped {
        /// The selector's id.
        selector: S,
        /// The item's id.
        item: I,
    },
}

/// Receives match changes from a [`LabelIndex`] update.
///
/// Implemented by `Vec<MatchEvent<S, I>>` (collects clones), by any
/// `FnMut(MatchEvent<&S, &I>)`, and by `()` (discards).
pub trait MatchSink<S, I> {
    /// `selector` started matching `item`.
    fn match_started(&mut self, selector: &S, item: &I);
    /// `selector` stopped matching `item`.
    fn match_stopped(&mut self, selector: &S, item: &I);
}

impl<S: Clone, I: Clone> MatchSink<S, I> for Vec<MatchEvent<S, I>> {
    fn match_started(&mut self, selector: &S, item: &I) {
        self.push(MatchEvent::Started {
            selector: selector.clone(),
            item: item.clone(),
        });
    }

    fn match_stopped(&mut self, selector: &S, item: &I) {
        self.push(MatchEvent::Stopped {
            selector: selector.clone(),
            item: item.clone(),
        });
    }
}

impl<S, I, F: FnMut(MatchEvent<&S, &I>)> MatchSink<S, I> for F {
    fn match_started(&mut self, selector: &S, item: &I) {
        self(MatchEvent::Started { selector, item });
    }

    fn match_stopped(&mut self, selector: &S, item: &I) {
        self(MatchEvent::Stopped { selector, item });
    }
}

impl<S, I> MatchSink<S, I> for () {
    fn match_started(&mut self, _: &S, _: &I) {}

    fn match_stopped(&mut self, _: &S, _: &I) {}
}

/// Errors from the index's convenience entry points.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A selector given as text did not parse.
    #[error(transparent)]
    Selector(#[from] ParseError),
}

/// A labelled item. Its caller id lives in [`LabelIndex::item_keys`].
#[derive(Debug)]
struct Item {
    labels: LabelSet,
    /// Internal parent ids, de-duplicated, in precedence order.
    parents: Box<[u32]>,
    /// Internal ids of the distinct selectors that match the item.
    matches: IdSet,
}

/// A parent (profile) whose labels its items inherit.
#[derive(Debug)]
struct Parent<P> {
    id: P,
    labels: LabelSet,
    /// Internal ids of the items that list this parent.
    children: IdSet,
    /// Whether the caller set the labels; a parent that only exists because
    /// an item names it is dropped with its last child.
    explicit: bool,
}

/// Where a distinct selector is filed for item updates to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placement {
    /// Self-contradictory (e.g. `a == "x" && a == "y"`): matches nothing,
    /// so it is filed nowhere.
    Never,
    /// Requires no label to be present: considered for every item.
    Unindexed,
    /// Requires label `key`, with any value.
    Present(Box<str>),
    /// Requires label `key` with one of `values`.
    Values(Box<str>, Box<[Box<str>]>),
}

/// One distinct selector (by canonical form), shared by all ids that use it.
#[derive(Debug)]
struct Distinct<S> {
    selector: Selector,
    /// Caller ids with this selector; events fan out to each.
    ids: Vec<S>,
    /// Internal ids of the matching items.
    matches: IdSet,
    /// The labels the selector reads, sorted: if none of these changed on an
    /// item, neither did the selector's verdict on it.
    keys: Box<[Box<str>]>,
    placement: Placement,
}

impl<S> Distinct<S> {
    /// Whether the selector reads any of `changed` (`None`: everything changed).
    #[inline]
    fn reads_any(&self, changed: Option<&[Change]>) -> bool {
        changed.is_none_or(|changed| {
            changed
                .iter()
                .any(|c| self.keys.binary_search_by(|k| (**k).cmp(&*c.key)).is_ok())
        })
    }
}

/// Items with one label key, by value.
#[derive(Debug, Default)]
struct KeyItems {
    /// Items with the key, whatever the value.
    count: usize,
    by_value: HashMap<Box<str>, IdSet>,
}

/// Distinct selectors filed under one label key.
#[derive(Debug, Default)]
struct KeySelectors {
    /// Those that need the key with any value.
    present: IdSet,
    /// Those that need the key with one of some values, under each value.
    by_value: HashMap<Box<str>, IdSet>,
}

/// A change of one effective label of one item.
#[derive(Debug)]
struct Change {
    key: Box<str>,
    old: Option<Box<str>>,
    new: Option<Box<str>>,
}

/// An item's effective labels: its own, then each parent's in order; the
/// first to have a key wins.
struct View<'a, P> {
    own: &'a LabelSet,
    parents: &'a [u32],
    slab: &'a Slab<Parent<P>>,
    /// A parent whose labels are read from here rather than the slab: the
    /// old labels, while working out what a parent update changed.
    replaced: Option<(u32, &'a LabelSet)>,
}

impl<P> View<'_, P> {
    #[inline]
    fn parent(&self, p: u32) -> &LabelSet {
        match self.replaced {
            Some((rp, labels)) if rp == p => labels,
            _ => &self.slab[p].labels,
        }
    }

    /// Calls `f` on every effective label.
    fn for_each(&self, mut f: impl FnMut(&str, &str)) {
        for (k, v) in self.own.iter() {
            f(k, v);
        }
        for (n, &p) in self.parents.iter().enumerate() {
            for (k, v) in self.parent(p).iter() {
                let shadowed = self.own.get(k).is_some()
                    || self.parents[..n]
                        .iter()
                        .any(|&q| self.parent(q).get(k).is_some());
                if !shadowed {
                    f(k, v);
                }
            }
        }
    }
}

impl<P> Labels for View<'_, P> {
    #[inline]
    fn get(&self, key: &str) -> Option<&str> {
        self.own
            .get(key)
            .or_else(|| self.parents.iter().find_map(|&p| self.parent(p).get(key)))
    }
}

/// The changes from `old` to `new` effective labels.
fn diff<P>(old: &View<'_, P>, new: &View<'_, P>) -> Vec<Change> {
    let mut changes = Vec::new();
    old.for_each(|k, v| {
        let now = new.get(k);
        if now != Some(v) {
            changes.push(Change {
                key: k.into(),
                old: Some(v.into()),
                new: now.map(Into::into),
            });
        }
    });
    new.for_each(|k, v| {
        if old.get(k).is_none() {
            changes.push(Change {
                key: k.into(),
                old: None,
                new: Some(v.into()),
            });
        }
    });
    changes
}

/// The incremental selector/label index; see the [module docs](self).
///
/// `S` identifies selectors (e.g. a policy rule's ipset id), `I` items
/// (endpoints, network sets) and `P` parents (profiles).
pub struct LabelIndex<S, I, P = I> {
    items: Slab<Item>,
    /// Caller id of each item, by internal id. Kept apart from `items` so
    /// that fanning a selector's matches out to a new selector id walks a
    /// small dense array rather than missing cache on every item record.
    item_keys: Vec<Option<I>>,
    item_ids: HashMap<I, u32>,
    parents: Slab<Parent<P>>,
    parent_ids: HashMap<P, u32>,
    distinct: Slab<Distinct<S>>,
    /// Caller selector id -> (distinct selector, position in its `ids`).
    selector_ids: HashMap<S, (u32, u32)>,
    by_canonical: HashMap<Box<str>, u32>,
    /// Items by effective label.
    item_index: HashMap<Box<str>, KeyItems>,
    /// Distinct selectors by the label requirement they are filed under.
    selector_index: HashMap<Box<str>, KeySelectors>,
    /// Distinct selectors with [`Placement::Unindexed`].
    unindexed: IdSet,
    /// Buffers for [`Self::reevaluate`], kept to save two allocations per update.
    scratch: (Vec<u32>, Vec<u32>),
}

impl<S, I, P> Default for LabelIndex<S, I, P> {
    fn default() -> Self {
        LabelIndex {
            items: Slab::default(),
            item_keys: Vec::new(),
            item_ids: HashMap::new(),
            parents: Slab::default(),
            parent_ids: HashMap::new(),
            distinct: Slab::default(),
            selector_ids: HashMap::new(),
            by_canonical: HashMap::new(),
            item_index: HashMap::new(),
            selector_index: HashMap::new(),
            unindexed: IdSet::default(),
            scratch: (Vec::new(), Vec::new()),
        }
    }
}

impl<S, I, P> std::fmt::Debug for LabelIndex<S, I, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelIndex")
            .field("selector_ids", &self.selector_ids.len())
            .field("distinct_selectors", &self.distinct.len())
            .field("unindexed_selectors", &self.unindexed.len())
            .field("items", &self.items.len())
            .field("parents", &self.parents.len())
            .finish()
    }
}

impl<S, I, P> LabelIndex<S, I, P>
where
    S: Clone + Eq + Hash,
    I: Clone + Eq + Hash,
    P: Clone + Eq + Hash,
{
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    // ---- selectors ----

    /// Adds or replaces the selector with id `id`, reporting the matches it
    /// gains and loses: on a replacement only the difference, never a stop
    /// and restart of an item both selectors match. Re-setting an equal
    /// selector (same canonical form) reports nothing.
    pub fn update_selector(&mut self, id: S, selector: Selector, sink: &mut impl MatchSink<S, I>) {
        let old = self.selector_ids.get(&id).map(|&(d, _)| d);
        if old.is_some_and(|o| self.distinct[o].selector == selector) {
            return;
        }
        let d = match self.by_canonical.get(selector.canonical()) {
            Some(&d) => d,
            None => self.add_distinct(selector),
        };
        let new = &self.distinct[d];
        match old {
            None => {
                for item in new.matches.iter() {
                    sink.match_started(&id, key_of(&self.item_keys, item));
                }
            }
            Some(o) => {
                let old = &self.distinct[o];
                for item in old.matches.iter().filter(|&i| !new.matches.contains(i)) {
                    sink.match_stopped(&id, key_of(&self.item_keys, item));
                }
                for item in new.matches.iter().filter(|&i| !old.matches.contains(i)) {
                    sink.match_started(&id, key_of(&self.item_keys, item));
                }
                self.unregister(&id);
            }
        }
        let entry = &mut self.distinct[d];
        let pos = u32::try_from(entry.ids.len()).expect("fewer than 2^32 selector ids");
        entry.ids.push(id.clone());
        self.selector_ids.insert(id, (d, pos));
    }

    /// Parses `selector` and calls [`update_selector`](Self::update_selector).
    pub fn update_selector_str(
        &mut self,
        id: S,
        selector: &str,
        sink: &mut impl MatchSink<S, I>,
    ) -> Result<(), Error> {
        let selector = calico_selector::parse_shared(selector)?;
        self.update_selector(id, selector, sink);
        Ok(())
    }

    /// Removes the selector with id `id`, reporting each match as stopped.
    /// Unknown ids are ignored.
    pub fn delete_selector<Q>(&mut self, id: &Q, sink: &mut impl MatchSink<S, I>)
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(&(d, _)) = self.selector_ids.get(id) else {
            return;
        };
        let entry = &self.distinct[d];
        let owned_id = &entry.ids[self.selector_ids[id].1 as usize];
        for item in entry.matches.iter() {
            sink.match_stopped(owned_id, key_of(&self.item_keys, item));
        }
        self.unregister(id);
    }

    /// Drops id `id` from its distinct selector, and the distinct selector
    /// if that was its last id. Reports nothing.
    fn unregister<Q>(&mut self, id: &Q)
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (d, pos) = self
            .selector_ids
            .remove(id)
            .expect("unregistering a registered id");
        let entry = &mut self.distinct[d];
        entry.ids.swap_remove(pos as usize);
        if let Some(moved) = entry.ids.get(pos as usize) {
            self.selector_ids
                .get_mut::<S>(moved)
                .expect("every id of a distinct selector is registered")
                .1 = pos;
        }
        if entry.ids.is_empty() {
            self.remove_distinct(d);
        }
    }

    /// Files a new distinct selector and computes its matches.
    fn add_distinct(&mut self, selector: Selector) -> u32 {
        let placement = self.choose_placement(&selector);
        let keys = selector
            .labels()
            .into_iter()
            .map(Into::into)
            .collect::<Vec<Box<str>>>()
            .into_boxed_slice();
        let mut matches = IdSet::default();
        {
            let mut consider = |item: u32| {
                let it = &self.items[item];
                let view = View {
                    own: &it.labels,
                    parents: &it.parents,
                    slab: &self.parents,
                    replaced: None,
                };
                if selector.evaluate(&view) {
                    matches.insert(item);
                }
            };
            match &placement {
                Placement::Never => {}
                Placement::Unindexed => self.items.iter().for_each(|(i, _)| consider(i)),
                Placement::Present(key) => {
                    if let Some(ki) = self.item_index.get(key) {
                        ki.by_value
                            .values()
                            .flat_map(IdSet::iter)
                            .for_each(consider);
                    }
                }
                Placement::Values(key, values) => {
                    if let Some(ki) = self.item_index.get(key) {
                        values
                            .iter()
                            .filter_map(|v| ki.by_value.get(v))
                            .flat_map(IdSet::iter)
                            .for_each(consider);
                    }
                }
            }
        }
        let canonical: Box<str> = selector.canonical().into();
        let d = self.distinct.insert(Distinct {
            selector,
            ids: Vec::new(),
            matches,
            keys,
            placement: placement.clone(),
        });
        for item in self.distinct[d].matches.iter() {
            self.items[item].matches.insert(d);
        }
        match placement {
            Placement::Never => {}
            Placement::Unindexed => {
                self.unindexed.insert(d);
            }
            Placement::Present(key) => {
                self.selector_index
                    .entry(key)
                    .or_default()
                    .present
                    .insert(d);
            }
            Placement::Values(key, values) => {
                let ks = self.selector_index.entry(key).or_default();
                for v in values {
                    ks.by_value.entry(v).or_default().insert(d);
                }
            }
        }
        self.by_canonical.insert(canonical, d);
        d
    }

    /// Picks the label requirement that the fewest current items satisfy.
    /// On a tie (e.g. no items yet) it prefers a value requirement over a
    /// bare key, since values are what tell items apart, and then the place
    /// with the fewest selectors already filed: 10,000 selectors
    /// `app == "web" && name == "x<i>"` arriving before any item then spread
    /// over the `name` values instead of piling up under `app == "web"`,
    /// where every `web` item update would have to consider them all.
    fn choose_placement(&self, selector: &Selector) -> Placement {
        let restrictions = selector.label_restrictions();
        if restrictions.values().any(|r| !r.possible_to_satisfy()) {
            return Placement::Never;
        }
        let mut best: Option<((usize, bool, usize), Placement)> = None;
        for (key, r) in restrictions {
            if !r.must_be_present {
                continue;
            }
            let ki = self.item_index.get(key.as_str());
            let ks = self.selector_index.get(key.as_str());
            let (cost, placement) = match r.must_have_one_of_values {
                Some(values) => {
                    let items = values
                        .iter()
                        .filter_map(|v| ki.and_then(|ki| ki.by_value.get(v.as_str())))
                        .map(IdSet::len)
                        .sum();
                    let filed = values
                        .iter()
                        .filter_map(|v| ks.and_then(|ks| ks.by_value.get(v.as_str())))
                        .map(IdSet::len)
                        .sum();
                    let values = values.into_iter().map(Into::into).collect();
                    ((items, false, filed), Placement::Values(key.into(), values))
                }
                None => (
                    (
                        ki.map_or(0, |ki| ki.count),
                        true,
                        ks.map_or(0, |ks| ks.present.len()),
                    ),
                    Placement::Present(key.into()),
                ),
            };
            if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                best = Some((cost, placement));
            }
        }
        best.map_or(Placement::Unindexed, |(_, p)| p)
    }

    /// Drops a distinct selector that no id uses any more.
    fn remove_distinct(&mut self, d: u32) {
        let entry = self.distinct.remove(d);
        for item in entry.matches.iter() {
            self.items[item].matches.remove(d);
        }
        match entry.placement {
            Placement::Never => {}
            Placement::Unindexed => {
                self.unindexed.remove(d);
            }
            Placement::Present(key) => {
                let ks = self
                    .selector_index
                    .get_mut(&key)
                    .expect("filed selector's key");
                ks.present.remove(d);
                if ks.present.is_empty() && ks.by_value.is_empty() {
                    self.selector_index.remove(&key);
                }
            }
            Placement::Values(key, values) => {
                let ks = self
                    .selector_index
                    .get_mut(&key)
                    .expect("filed selector's key");
                for v in values {
                    let set = ks.by_value.get_mut(&v).expect("filed selector's value");
                    set.remove(d);
                    if set.is_empty() {
                        ks.by_value.remove(&v);
                    }
                }
                if ks.present.is_empty() && ks.by_value.is_empty() {
                    self.selector_index.remove(&key);
                }
            }
        }
        self.by_canonical.remove(entry.selector.canonical());
    }

    // ---- items ----

    /// Adds or replaces item `item`: its own `labels` (a repeated key: the
    /// last value wins) and the `parents` it inherits labels from. Its own
    /// labels win over inherited ones, and earlier parents over later ones.
    /// Reports the matches it gains and loses.
    pub fn update_labels<K, V>(
        &mut self,
        item: I,
        labels: impl IntoIterator<Item = (K, V)>,
        parents: &[P],
        sink: &mut impl MatchSink<S, I>,
    ) where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let labels = LabelSet::from_pairs(labels);
        let mut parent_idxs: Vec<u32> = Vec::with_capacity(parents.len());
        for p in parents {
            let idx = self.parent_idx(p);
            if !parent_idxs.contains(&idx) {
                parent_idxs.push(idx);
            }
        }
        let parent_idxs = parent_idxs.into_boxed_slice();

        let Some(&idx) = self.item_ids.get(&item) else {
            let idx = self.items.insert(Item {
                labels,
                parents: parent_idxs,
                matches: IdSet::default(),
            });
            if idx as usize == self.item_keys.len() {
                self.item_keys.push(Some(item.clone()));
            } else {
                self.item_keys[idx as usize] = Some(item.clone());
            }
            self.item_ids.insert(item, idx);
            for &p in &self.items[idx].parents {
                self.parents[p].children.insert(idx);
            }
            let it = &self.items[idx];
            let view = View {
                own: &it.labels,
                parents: &it.parents,
                slab: &self.parents,
                replaced: None,
            };
            view.for_each(|k, v| index_insert(&mut self.item_index, k, v, idx));
            self.reevaluate(idx, None, sink);
            return;
        };

        let it = &mut self.items[idx];
        let old_labels = std::mem::replace(&mut it.labels, labels);
        let old_parents = std::mem::replace(&mut it.parents, parent_idxs);
        let it = &self.items[idx];
        let changes = diff(
            &View {
                own: &old_labels,
                parents: &old_parents,
                slab: &self.parents,
                replaced: None,
            },
            &View {
                own: &it.labels,
                parents: &it.parents,
                slab: &self.parents,
                replaced: None,
            },
        );
        if old_parents != it.parents {
            let new_parents = it.parents.clone();
            for &p in old_parents.iter().filter(|p| !new_parents.contains(p)) {
                self.parents[p].children.remove(idx);
                self.gc_parent(p);
            }
            for &p in new_parents.iter() {
                self.parents[p].children.insert(idx);
            }
        }
        self.apply_changes(idx, &changes, sink);
    }

    /// Removes item `item`, reporting each of its matches as stopped.
    /// Unknown ids are ignored.
    pub fn delete_labels<Q>(&mut self, item: &Q, sink: &mut impl MatchSink<S, I>)
    where
        I: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(idx) = self.item_ids.remove(item) else {
            return;
        };
        let it = &self.items[idx];
        let key = self.item_keys[idx as usize]
            .take()
            .expect("live item has a key");
        for d in it.matches.iter() {
            let entry = &mut self.distinct[d];
            entry.matches.remove(idx);
            for id in &entry.ids {
                sink.match_stopped(id, &key);
            }
        }
        let view = View {
            own: &it.labels,
            parents: &it.parents,
            slab: &self.parents,
            replaced: None,
        };
        view.for_each(|k, v| index_remove(&mut self.item_index, k, v, idx));
        let it = self.items.remove(idx);
        for &p in it.parents.iter() {
            self.parents[p].children.remove(idx);
            self.gc_parent(p);
        }
    }

    // ---- parents ----

    /// Sets the labels of parent `parent` (e.g. a profile's labels), which
    /// its items inherit; only those items are re-evaluated, and only
    /// against selectors that read a label that changed for them.
    pub fn update_parent_labels<K, V>(
        &mut self,
        parent: P,
        labels: impl IntoIterator<Item = (K, V)>,
        sink: &mut impl MatchSink<S, I>,
    ) where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let labels = LabelSet::from_pairs(labels);
        let p = self.parent_idx(&parent);
        self.parents[p].explicit = true;
        self.set_parent_labels(p, labels, sink);
    }

    /// Clears the labels of parent `parent`. Items that list it keep doing
    /// so, and inherit nothing from it until its labels are set again.
    pub fn delete_parent_labels<Q>(&mut self, parent: &Q, sink: &mut impl MatchSink<S, I>)
    where
        P: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(&p) = self.parent_ids.get(parent) else {
            return;
        };
        self.parents[p].explicit = false;
        self.set_parent_labels(p, LabelSet::default(), sink);
        self.gc_parent(p);
    }

    fn set_parent_labels(&mut self, p: u32, labels: LabelSet, sink: &mut impl MatchSink<S, I>) {
        let old = std::mem::replace(&mut self.parents[p].labels, labels);
        if old == self.parents[p].labels {
            return;
        }
        // Only labels the parent changed can change for its items; working
        // them out once saves walking every child's full label set.
        let new = &self.parents[p].labels;
        let mut keys: Vec<Box<str>> = old
            .iter()
            .filter(|&(k, v)| new.get(k) != Some(v))
            .map(|(k, _)| k.into())
            .collect();
        keys.extend(
            new.iter()
                .filter(|&(k, _)| old.get(k).is_none())
                .map(|(k, _)| k.into()),
        );
        let children: Vec<u32> = self.parents[p].children.iter().collect();
        let mut changes = Vec::new();
        for child in children {
            let it = &self.items[child];
            let old_view = View {
                own: &it.labels,
                parents: &it.parents,
                slab: &self.parents,
                replaced: Some((p, &old)),
            };
            let new_view = View {
                replaced: None,
                ..old_view
            };
            changes.clear();
            for key in &keys {
                let (was, now) = (old_view.get(key), new_view.get(key));
                if was != now {
                    changes.push(Change {
                        key: key.clone(),
                        old: was.map(Into::into),
                        new: now.map(Into::into),
                    });
                }
            }
            self.apply_changes(child, &changes, sink);
        }
    }

    /// The internal id of parent `parent`, creating an empty one if needed.
    fn parent_idx(&mut self, parent: &P) -> u32 {
        if let Some(&p) = self.parent_ids.get(parent) {
            return p;
        }
        let p = self.parents.insert(Parent {
            id: parent.clone(),
            labels: LabelSet::default(),
            children: IdSet::default(),
            explicit: false,
        });
        self.parent_ids.insert(parent.clone(), p);
        p
    }

    /// Forgets a parent that has neither labels set nor items.
    fn gc_parent(&mut self, p: u32) {
        let parent = &self.parents[p];
        if !parent.explicit && parent.children.is_empty() {
            let parent = self.parents.remove(p);
            self.parent_ids.remove(&parent.id);
        }
    }

    // ---- matching ----

    /// Moves item `idx` in the label index per `changes`, then re-evaluates it.
    fn apply_changes(&mut self, idx: u32, changes: &[Change], sink: &mut impl MatchSink<S, I>) {
        if changes.is_empty() {
            return;
        }
        for c in changes {
            if let Some(old) = &c.old {
                index_remove(&mut self.item_index, &c.key, old, idx);
            }
            if let Some(new) = &c.new {
                index_insert(&mut self.item_index, &c.key, new, idx);
            }
        }
        self.reevaluate(idx, Some(changes), sink);
    }

    /// Brings item `idx`'s matches up to date with its labels, considering
    /// only selectors that read a label in `changed` (`None`: all).
    fn reevaluate(
        &mut self,
        idx: u32,
        changed: Option<&[Change]>,
        sink: &mut impl MatchSink<S, I>,
    ) {
        let (mut stopped, mut started) = std::mem::take(&mut self.scratch);
        let it = &self.items[idx];
        let view = View {
            own: &it.labels,
            parents: &it.parents,
            slab: &self.parents,
            replaced: None,
        };
        for d in it.matches.iter() {
            let entry = &self.distinct[d];
            if entry.reads_any(changed) && !entry.selector.evaluate(&view) {
                stopped.push(d);
            }
        }
        // Every selector that can match now is filed under one of the item's
        // labels or is unindexed; each is filed in one place, and an item has
        // one value per key, so none is seen twice.
        let mut consider = |d: u32| {
            if !it.matches.contains(d) {
                let entry = &self.distinct[d];
                if entry.reads_any(changed) && entry.selector.evaluate(&view) {
                    started.push(d);
                }
            }
        };
        view.for_each(|k, v| {
            if let Some(ks) = self.selector_index.get(k) {
                ks.present.iter().for_each(&mut consider);
                if let Some(set) = ks.by_value.get(v) {
                    set.iter().for_each(&mut consider);
                }
            }
        });
        self.unindexed.iter().for_each(&mut consider);

        let it = &mut self.items[idx];
        let key = key_of(&self.item_keys, idx);
        for d in stopped.drain(..) {
            it.matches.remove(d);
            let entry = &mut self.distinct[d];
            entry.matches.remove(idx);
            for id in &entry.ids {
                sink.match_stopped(id, key);
            }
        }
        for d in started.drain(..) {
            it.matches.insert(d);
            let entry = &mut self.distinct[d];
            entry.matches.insert(idx);
            for id in &entry.ids {
                sink.match_started(id, key);
            }
        }
        self.scratch = (stopped, started);
    }

    // ---- queries ----

    /// The items that selector `id` matches (none for an unknown id).
    pub fn matches_of_selector<Q>(&self, id: &Q) -> impl Iterator<Item = &I>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.selector_ids
            .get(id)
            .into_iter()
            .flat_map(|&(d, _)| self.distinct[d].matches.iter())
            .map(|item| key_of(&self.item_keys, item))
    }

    /// The ids of the selectors that match item `item` (none for an unknown item).
    pub fn selectors_matching<Q>(&self, item: &Q) -> impl Iterator<Item = &S>
    where
        I: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.item_ids
            .get(item)
            .into_iter()
            .flat_map(|&idx| self.items[idx].matches.iter())
            .flat_map(|d| self.distinct[d].ids.iter())
    }

    /// Whether selector `selector` matches item `item`.
    pub fn is_match<QS, QI>(&self, selector: &QS, item: &QI) -> bool
    where
        S: Borrow<QS>,
        QS: Hash + Eq + ?Sized,
        I: Borrow<QI>,
        QI: Hash + Eq + ?Sized,
    {
        match (self.selector_ids.get(selector), self.item_ids.get(item)) {
            (Some(&(d, _)), Some(&idx)) => self.distinct[d].matches.contains(idx),
            _ => false,
        }
    }

    /// The selector registered under `id`.
    pub fn selector<Q>(&self, id: &Q) -> Option<&Selector>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.selector_ids
            .get(id)
            .map(|&(d, _)| &self.distinct[d].selector)
    }

    /// Number of selector ids.
    pub fn num_selectors(&self) -> usize {
        self.selector_ids.len()
    }

    /// Number of distinct selectors (by canonical form) among them.
    pub fn num_distinct_selectors(&self) -> usize {
        self.distinct.len()
    }

    /// Number of distinct selectors that no label narrows down (e.g.
    /// `all()`, `!has(a)`): each is evaluated against every new item and
    /// against every item whose labels it reads changed.
    pub fn num_unindexed_selectors(&self) -> usize {
        self.unindexed.len()
    }

    /// Number of items.
    pub fn num_items(&self) -> usize {
        self.items.len()
    }

    /// Number of parents known (with labels set or listed by an item).
    pub fn num_parents(&self) -> usize {
        self.parents.len()
    }
}

/// The caller id of live item `idx`.
#[inline]
fn key_of<I>(keys: &[Option<I>], idx: u32) -> &I {
    keys[idx as usize].as_ref().expect("live item has a key")
}

fn index_insert(index: &mut HashMap<Box<str>, KeyItems>, key: &str, value: &str, item: u32) {
    let ki = match index.get_mut(key) {
        Some(ki) => ki,
        None => index.entry(key.into()).or_default(),
    };
    let set = match ki.by_value.get_mut(value) {
        Some(set) => set,
        None => ki.by_value.entry(value.into()).or_default(),
    };
    if set.insert(item) {
        ki.count += 1;
    }
}

fn index_remove(index: &mut HashMap<Box<str>, KeyItems>, key: &str, value: &str, item: u32) {
    let Some(ki) = index.get_mut(key) else {
        return;
    };
    let Some(set) = ki.by_value.get_mut(value) else {
        return;
    };
    if set.remove(item) {
        ki.count -= 1;
    }
    if set.is_empty() {
        ki.by_value.remove(value);
        if ki.by_value.is_empty() {
            index.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
