//! Differential test: after every random operation, the index's matches
//! equal a brute-force evaluation of every selector against every item's
//! effective labels, and the events emitted turn the previous match set
//! into the new one exactly.

use std::collections::{BTreeMap, BTreeSet};

use calico_policy::{LabelIndex, MatchEvent};
use calico_selector::Selector;
use proptest::prelude::*;

type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone)]
enum Op {
    UpdateSelector(u8, String),
    /// Gives selector id `.1` the selector of id `.0`, so ids share selectors often.
    CopySelector(u8, u8),
    DeleteSelector(u8),
    UpdateItem(u8, Labels, Vec<u8>),
    DeleteItem(u8),
    UpdateParent(u8, Labels),
    DeleteParent(u8),
}

const KEYS: &[&str] = &["a", "b", "c"];
const VALUES: &[&str] = &["", "x", "y"];

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(KEYS)
}

fn value() -> impl Strategy<Value = &'static str> {
    prop::sample::select(VALUES)
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("all()".to_owned()),
        key().prop_map(|k| format!("has({k})")),
        key().prop_map(|k| format!("!has({k})")),
        (key(), value()).prop_map(|(k, v)| format!("{k} == '{v}'")),
        (key(), value()).prop_map(|(k, v)| format!("{k} != '{v}'")),
        (key(), value(), value()).prop_map(|(k, v, w)| format!("{k} in {{'{v}', '{w}'}}")),
        (key(), value()).prop_map(|(k, v)| format!("{k} not in {{'{v}'}}")),
        (key(), value()).prop_map(|(k, v)| format!("{k} starts with '{v}'")),
    ]
}

fn selector() -> impl Strategy<Value = String> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || ({b})")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

fn labels() -> impl Strategy<Value = Labels> {
    prop::collection::btree_map(
        key().prop_map(str::to_owned),
        value().prop_map(str::to_owned),
        0..=3,
    )
}

/// Operations on selector ids `0..sels` and item ids `0..items`.
fn op(sels: u8, items: u8) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..sels, selector()).prop_map(|(s, sel)| Op::UpdateSelector(s, sel)),
        1 => (0..sels, 0..sels).prop_map(|(a, b)| Op::CopySelector(a, b)),
        1 => (0..sels).prop_map(Op::DeleteSelector),
        4 => (0..items, labels(), prop::collection::vec(0..3u8, 0..=3))
            .prop_map(|(i, l, p)| Op::UpdateItem(i, l, p)),
        1 => (0..items).prop_map(Op::DeleteItem),
        2 => (0..3u8, labels()).prop_map(|(p, l)| Op::UpdateParent(p, l)),
        1 => (0..3u8).prop_map(Op::DeleteParent),
    ]
}

/// The straightforward model the index must agree with.
#[derive(Default)]
struct Model {
    selectors: BTreeMap<u8, Selector>,
    items: BTreeMap<u8, (Labels, Vec<u8>)>,
    parents: BTreeMap<u8, Labels>,
}

impl Model {
    /// Own labels, then each parent's in order; the first to set a key wins.
    fn effective(&self, item: u8) -> Labels {
        let (own, parents) = &self.items[&item];
        let mut labels = own.clone();
        for p in parents {
            for (k, v) in self.parents.get(p).into_iter().flatten() {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        labels
    }

    fn matches(&self) -> BTreeSet<(u8, u8)> {
        let mut out = BTreeSet::new();
        for &i in self.items.keys() {
            let labels = self.effective(i);
            for (&s, sel) in &self.selectors {
                if sel.evaluate(&labels) {
                    out.insert((s, i));
                }
            }
        }
        out
    }
}

fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut index: LabelIndex<u8, u8, u8> = LabelIndex::new();
    let mut model = Model::default();
    let mut current: BTreeSet<(u8, u8)> = BTreeSet::new();
    for op in ops {
        let mut events: Vec<MatchEvent<u8, u8>> = Vec::new();
        match &op {
            Op::UpdateSelector(s, text) => {
                let sel = calico_selector::parse(text).unwrap();
                model.selectors.insert(*s, sel.clone());
                index.update_selector(*s, sel, &mut events);
            }
            Op::CopySelector(from, to) => {
                if let Some(sel) = model.selectors.get(from).cloned() {
                    model.selectors.insert(*to, sel.clone());
                    index.update_selector(*to, sel, &mut events);
                }
            }
            Op::DeleteSelector(s) => {
                model.selectors.remove(s);
                index.delete_selector(s, &mut events);
            }
            Op::UpdateItem(i, labels, parents) => {
                model.items.insert(*i, (labels.clone(), parents.clone()));
                index.update_labels(*i, labels, parents, &mut events);
            }
            Op::DeleteItem(i) => {
                model.items.remove(i);
                index.delete_labels(i, &mut events);
            }
            Op::UpdateParent(p, labels) => {
                model.parents.insert(*p, labels.clone());
                index.update_parent_labels(*p, labels, &mut events);
            }
            Op::DeleteParent(p) => {
                model.parents.remove(p);
                index.delete_parent_labels(p, &mut events);
            }
        }
        // Deltas only: no pair is both started and stopped by one operation.
        let touched: BTreeSet<(u8, u8)> = events
            .iter()
            .map(|e| match e {
                MatchEvent::Started { selector, item } | MatchEvent::Stopped { selector, item } => {
                    (*selector, *item)
                }
            })
            .collect();
        prop_assert_eq!(
            touched.len(),
            events.len(),
            "redundant events after {:?}",
            op
        );
        for e in events {
            match e {
                MatchEvent::Started { selector, item } => {
                    prop_assert!(
                        current.insert((selector, item)),
                        "duplicate start {:?} after {:?}",
                        (selector, item),
                        op
                    );
                }
                MatchEvent::Stopped { selector, item } => {
                    prop_assert!(
                        current.remove(&(selector, item)),
                        "stop of non-match {:?} after {:?}",
                        (selector, item),
                        op
                    );
                }
            }
        }
        let expected = model.matches();
        prop_assert_eq!(&current, &expected, "after {:?}", op);
        // The queries agree with the events.
        let mut from_selectors = BTreeSet::new();
        for &s in model.selectors.keys() {
            for &i in index.matches_of_selector(&s) {
                prop_assert!(from_selectors.insert((s, i)));
            }
        }
        prop_assert_eq!(&from_selectors, &expected);
        let mut from_items = BTreeSet::new();
        for &i in model.items.keys() {
            for &s in index.selectors_matching(&i) {
                prop_assert!(from_items.insert((s, i)));
                prop_assert!(index.is_match(&s, &i));
            }
        }
        prop_assert_eq!(&from_items, &expected);
        prop_assert_eq!(index.num_selectors(), model.selectors.len());
        prop_assert_eq!(index.num_items(), model.items.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn index_matches_brute_force(ops in prop::collection::vec(op(5, 6), 1..60)) {
        check(ops)?;
    }
}

proptest! {
    // Enough ids that the per-label and per-selector sets outgrow their
    // small-vector form and shrink back.
    #![proptest_config(ProptestConfig { cases: 60, ..ProptestConfig::default() })]

    #[test]
    fn index_matches_brute_force_many_ids(ops in prop::collection::vec(op(30, 40), 100..250)) {
        check(ops)?;
    }
}
