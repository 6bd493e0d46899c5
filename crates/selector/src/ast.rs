//! The parsed selector tree: evaluation, canonical printing, label restrictions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use crate::{LabelRestriction, Labels};

/// A node of the selector tree. Built once by the parser and then only read,
/// so everything evaluation needs is laid out up front (sorted sets, flat
/// n-ary `&&`/`||` operand lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// `all()`
    All,
    /// `global()`: matches like `all()` here.
    Global,
    /// `has(label)`
    Has(Box<str>),
    /// `label == "value"`
    Eq(Box<str>, Box<str>),
    /// `label != "value"`; true when the label is absent.
    Ne(Box<str>, Box<str>),
    /// `label contains "value"`
    Contains(Box<str>, Box<str>),
    /// `label starts with "value"`
    StartsWith(Box<str>, Box<str>),
    /// `label ends with "value"`
    EndsWith(Box<str>, Box<str>),
    /// `label in {...}`
    In(Box<str>, ValueSet),
    /// `label not in {...}`; true when the label is absent.
    NotIn(Box<str>, ValueSet),
    /// `!operand`; never directly wraps another `Not` (the parser cancels pairs).
    Not(Box<Node>),
    /// `(a && b && ...)`, at least two operands.
    And(Box<[Node]>),
    /// `(a || b || ...)`, at least two operands.
    Or(Box<[Node]>),
}

/// The value set of `in` / `not in`: sorted and de-duplicated, which is both
/// the canonical print order and what binary search needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueSet(Box<[Box<str>]>);

/// Up to this many values a linear scan beats binary search: most sets are
/// tiny, and `==` on strings rejects on length first.
const LINEAR_SCAN_MAX: usize = 8;

impl ValueSet {
    pub(crate) fn new(mut values: Vec<Box<str>>) -> Self {
        values.sort_unstable();
        values.dedup();
        ValueSet(values.into_boxed_slice())
    }

    fn contains(&self, value: &str) -> bool {
        if self.0.len() <= LINEAR_SCAN_MAX {
            self.0.iter().any(|v| **v == *value)
        } else {
            self.0.binary_search_by(|v| (**v).cmp(value)).is_ok()
        }
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|v| &**v)
    }
}

impl Node {
    /// Evaluates against `labels`. Allocation-free.
    pub(crate) fn evaluate<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Node::All | Node::Global => true,
            Node::Has(label) => labels.get(label).is_some(),
            Node::Eq(label, value) => labels.get(label) == Some(&**value),
            Node::Ne(label, value) => labels.get(label) != Some(&**value),
            Node::Contains(label, value) => labels.get(label).is_some_and(|v| v.contains(&**value)),
            Node::StartsWith(label, value) => {
                labels.get(label).is_some_and(|v| v.starts_with(&**value))
            }
            Node::EndsWith(label, value) => {
                labels.get(label).is_some_and(|v| v.ends_with(&**value))
            }
            Node::In(label, set) => labels.get(label).is_some_and(|v| set.contains(v)),
            Node::NotIn(label, set) => !labels.get(label).is_some_and(|v| set.contains(v)),
            Node::Not(operand) => !operand.evaluate(labels),
            Node::And(operands) => operands.iter().all(|n| n.evaluate(labels)),
            Node::Or(operands) => operands.iter().any(|n| n.evaluate(labels)),
        }
    }

    /// Negates `self`, cancelling a double negation so that the canonical
    /// form (which cannot express `!!x`: the parser folds runs of `!`)
    /// re-parses to the same tree.
    pub(crate) fn negate(self) -> Node {
        match self {
            Node::Not(inner) => *inner,
            other => Node::Not(Box::new(other)),
        }
    }

    /// A copy with every referenced label name replaced by `f(name)`.
    pub(crate) fn map_labels(&self, f: &mut impl FnMut(&str) -> String) -> Node {
        let mut m = |l: &str| f(l).into_boxed_str();
        match self {
            Node::All => Node::All,
            Node::Global => Node::Global,
            Node::Has(l) => Node::Has(m(l)),
            Node::Eq(l, v) => Node::Eq(m(l), v.clone()),
            Node::Ne(l, v) => Node::Ne(m(l), v.clone()),
            Node::Contains(l, v) => Node::Contains(m(l), v.clone()),
            Node::StartsWith(l, v) => Node::StartsWith(m(l), v.clone()),
            Node::EndsWith(l, v) => Node::EndsWith(m(l), v.clone()),
            Node::In(l, s) => Node::In(m(l), s.clone()),
            Node::NotIn(l, s) => Node::NotIn(m(l), s.clone()),
            Node::Not(n) => Node::Not(Box::new(n.map_labels(f))),
            Node::And(ns) => Node::And(ns.iter().map(|n| n.map_labels(f)).collect()),
            Node::Or(ns) => Node::Or(ns.iter().map(|n| n.map_labels(f)).collect()),
        }
    }

    /// Calls `f` on every label name referenced, in print order.
    pub(crate) fn for_each_label<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Node::All | Node::Global => {}
            Node::Has(l)
            | Node::Eq(l, _)
            | Node::Ne(l, _)
            | Node::Contains(l, _)
            | Node::StartsWith(l, _)
            | Node::EndsWith(l, _)
            | Node::In(l, _)
            | Node::NotIn(l, _) => f(l),
            Node::Not(n) => n.for_each_label(f),
            Node::And(ns) | Node::Or(ns) => ns.iter().for_each(|n| n.for_each_label(f)),
        }
    }

    /// What any label set matched by this node must satisfy, per label.
    /// Labels without restrictions are absent from the map.
    pub(crate) fn label_restrictions(&self) -> BTreeMap<String, LabelRestriction> {
        let present = |label: &str, values: Option<BTreeSet<String>>| {
            BTreeMap::from([(
                label.to_owned(),
                LabelRestriction {
                    must_be_present: true,
                    must_be_absent: false,
                    must_have_one_of_values: values,
                },
            )])
        };
        match self {
            Node::Eq(l, v) => present(l, Some(BTreeSet::from([v.to_string()]))),
            Node::In(l, s) => present(l, Some(s.iter().map(str::to_owned).collect())),
            Node::Has(l) | Node::Contains(l, _) | Node::StartsWith(l, _) | Node::EndsWith(l, _) => {
                present(l, None)
            }
            // These can all match a label set without the label, or with any
            // value of it, so they restrict nothing.
            Node::All | Node::Global | Node::Ne(..) | Node::NotIn(..) => BTreeMap::new(),
            Node::Not(operand) => match &**operand {
                Node::Has(l) => BTreeMap::from([(
                    l.to_string(),
                    LabelRestriction {
                        must_be_present: false,
                        must_be_absent: true,
                        must_have_one_of_values: None,
                    },
                )]),
                // `!(a == "b")` does not require `a` to be absent (nor
                // present), so nothing else can be inverted.
                _ => BTreeMap::new(),
            },
            Node::And(operands) => {
                let mut acc: BTreeMap<String, LabelRestriction> = BTreeMap::new();
                for op in operands.iter() {
                    for (label, r) in op.label_restrictions() {
                        let base = acc.entry(label).or_default();
                        base.must_be_present |= r.must_be_present;
                        base.must_be_absent |= r.must_be_absent;
                        base.must_have_one_of_values = match (
                            base.must_have_one_of_values.take(),
                            r.must_have_one_of_values,
                        ) {
                            (None, other) | (other, None) => other,
                            (Some(a), Some(b)) => Some(a.intersection(&b).cloned().collect()),
                        };
                    }
                }
                acc
            }
            Node::Or(operands) => {
                let mut iter = operands.iter();
                let mut acc = iter
                    .next()
                    .map(Node::label_restrictions)
                    .unwrap_or_default();
                for op in iter {
                    let other = op.label_restrictions();
                    // Only what every branch requires survives.
                    acc.retain(|label, r| {
                        let o = other.get(label).cloned().unwrap_or_default();
                        r.must_be_present &= o.must_be_present;
                        r.must_have_one_of_values = if r.must_be_present {
                            match (r.must_have_one_of_values.take(), o.must_have_one_of_values) {
                                (Some(mut a), Some(b)) => {
                                    a.extend(b);
                                    Some(a)
                                }
                                // One side only needs presence: any value may do.
                                _ => None,
                            }
                        } else {
                            None
                        };
                        r.must_be_absent &= o.must_be_absent;
                        r.must_be_present || r.must_be_absent
                    });
                }
                acc
            }
        }
    }
}

/// Writes `value` quoted: double quotes unless it contains one. A literal can
/// never contain both kinds (there are no escapes), so this always re-parses.
fn write_quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let quote = if value.contains('"') { '\'' } else { '"' };
    f.write_char(quote)?;
    f.write_str(value)?;
    f.write_char(quote)
}

/// The canonical form.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (label, op, value) = match self {
            Node::All => return f.write_str("all()"),
            Node::Global => return f.write_str("global()"),
            Node::Has(l) => return write!(f, "has({l})"),
            Node::In(l, set) | Node::NotIn(l, set) => {
                let op = if matches!(self, Node::In(..)) {
                    "in"
                } else {
                    "not in"
                };
                write!(f, "{l} {op} {{")?;
                for (i, v) in set.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_quoted(f, v)?;
                }
                return f.write_char('}');
            }
            Node::Not(operand) => return write!(f, "!{operand}"),
            Node::And(ns) | Node::Or(ns) => {
                let sep = if matches!(self, Node::And(_)) {
                    " && "
                } else {
                    " || "
                };
                f.write_char('(')?;
                for (i, n) in ns.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    write!(f, "{n}")?;
                }
                return f.write_char(')');
            }
            Node::Eq(l, v) => (l, "==", v),
            Node::Ne(l, v) => (l, "!=", v),
            Node::Contains(l, v) => (l, "contains", v),
            Node::StartsWith(l, v) => (l, "starts with", v),
            Node::EndsWith(l, v) => (l, "ends with", v),
        };
        write!(f, "{label} {op} ")?;
        write_quoted(f, value)
    }
}
