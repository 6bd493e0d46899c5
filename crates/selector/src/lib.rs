//! Calico's label-selector language (`projectcalico.org/v3` selectors).
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! let sel = calico_selector::parse("role == 'server' && has(biz_type)").unwrap();
//! let labels = BTreeMap::from([
//!     ("role".to_owned(), "server".to_owned()),
//!     ("biz_type".to_owned(), "bookstore".to_owned()),
//! ]);
//! assert!(sel.evaluate(&labels));
//! assert_eq!(sel.to_string(), r#"(role == "server" && has(biz_type))"#);
//! ```
//!
//! Syntax: `==`, `!=`, `in {..}`, `not in {..}`, `contains`, `starts with`,
//! `ends with`, `has(l)`, `all()`, `global()`, `!`, `&&`, `||` and
//! parentheses; string literals in `"` or `'` without escapes. `!=` and
//! `not in` match when the label is absent; the empty selector is `all()`.

mod ast;
mod error;
mod parser;
pub mod tokenizer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::str::FromStr;
use std::sync::OnceLock;

use base64::Engine as _;
use sha2::Digest as _;

pub use error::{ErrorKind, ParseError};

/// Longest label name the language accepts.
pub const MAX_LABEL_LENGTH: usize = 512;

/// Deepest parenthesis nesting accepted. Upstream has no limit; ours keeps
/// the recursive parser, printer and evaluator safe from stack overflow on
/// hostile input, far beyond anything a person writes.
pub const MAX_NESTING: usize = 128;

/// Parses a selector. Leading/trailing spaces and tabs are ignored; an empty
/// selector means `all()`.
pub fn parse(selector: &str) -> Result<Selector, ParseError> {
    #[cfg(test)]
    PARSES.with(|n| n.set(n.get() + 1));
    parser::parse_node(selector).map(Selector::from_root)
}

/// Most selector texts [`parse_shared`] remembers; past that it starts afresh (a cluster has
/// far fewer distinct selectors).
const SHARED_CAPACITY: usize = 16_384;

/// Parses like [`parse`], remembering every selector text that parsed: the same text is parsed
/// once per process however many times it is asked for. Validation at the datastore boundary
/// and the policy calculation both see every policy's selectors; this is how they share one
/// parse (a hand-written memo: no kept crate offers a bounded map for this one use).
pub fn parse_shared(selector: &str) -> Result<Selector, ParseError> {
    static SHARED: OnceLock<std::sync::Mutex<HashMap<Box<str>, Selector>>> = OnceLock::new();
    let shared = SHARED.get_or_init(Default::default);
    let lock = || {
        shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(found) = lock().get(selector) {
        return Ok(found.clone());
    }
    let parsed = parse(selector)?;
    let mut map = lock();
    if map.len() >= SHARED_CAPACITY {
        map.clear();
    }
    map.insert(selector.into(), parsed.clone());
    Ok(parsed)
}

#[cfg(test)]
thread_local! {
    /// How many parses [`parse`] has done on this thread (for tests of [`parse_shared`]).
    static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Read access to a set of labels, as a selector sees it.
pub trait Labels {
    /// The value of label `key`, if the label is present.
    fn get(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

impl Labels for BTreeMap<&str, &str> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).copied()
    }
}

impl<S: BuildHasher> Labels for HashMap<&str, &str, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).copied()
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn get(&self, key: &str) -> Option<&str> {
        (**self).get(key)
    }
}

/// What a selector requires of one label for it to match at all; see
/// [`Selector::label_restrictions`]. Used to index selectors by label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelRestriction {
    /// The selector cannot match a label set without this label (e.g. `has(a)`, `a == "b"`).
    pub must_be_present: bool,
    /// The selector cannot match a label set with this label (e.g. `!has(a)`).
    pub must_be_absent: bool,
    /// If set, the label's value must be one of these; an empty set means
    /// the selector can never match. `None` = any value.
    pub must_have_one_of_values: Option<BTreeSet<String>>,
}

impl LabelRestriction {
    /// False if the restriction is self-contradictory, i.e. nothing can match.
    pub fn possible_to_satisfy(&self) -> bool {
        !(self.must_be_present && self.must_be_absent)
            && self
                .must_have_one_of_values
                .as_ref()
                .is_none_or(|v| !v.is_empty())
    }
}

/// A parsed selector.
///
/// Equality, ordering and hashing go by the canonical form, so two spellings
/// of the same selector (`a=='b'` and `a == "b"`) are equal.
#[derive(Clone)]
pub struct Selector {
    root: ast::Node,
    /// Printed once at construction: it is what `Display`, `Eq` and `Hash` use.
    canonical: Box<str>,
    /// Hashing costs more than printing and is needed less often.
    uid: OnceLock<Box<str>>,
}

impl Selector {
    fn from_root(root: ast::Node) -> Self {
        let canonical = root.to_string().into_boxed_str();
        Selector {
            root,
            canonical,
            uid: OnceLock::new(),
        }
    }

    /// The selector that matches everything, `all()`.
    pub fn all() -> Self {
        Self::from_root(ast::Node::All)
    }

    /// Whether the selector matches `labels`. Does not allocate.
    #[inline]
    pub fn evaluate(&self, labels: &(impl Labels + ?Sized)) -> bool {
        self.root.evaluate(labels)
    }

    /// The canonical form: re-parsing it gives an equal selector.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// Upstream-compatible unique ID:
    /// `"s:" + base64url_nopad(SHA-224("s:" + canonical))`.
    pub fn uid(&self) -> &str {
        self.uid.get_or_init(|| {
            let digest = sha2::Sha224::new()
                .chain_update(b"s:")
                .chain_update(self.canonical.as_bytes())
                .finalize();
            let mut uid = String::from("s:");
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(digest, &mut uid);
            uid.into_boxed_str()
        })
    }

    /// Per label, what a label set must satisfy to possibly match; labels the
    /// selector places no requirement on are left out (so `{}` for `all()`).
    /// Conservative: a label set meeting all restrictions may still not match.
    pub fn label_restrictions(&self) -> BTreeMap<String, LabelRestriction> {
        self.root.label_restrictions()
    }

    /// A copy with `prefix` prepended to every label name the selector
    /// references (upstream's `PrefixVisitor`), e.g. `pcns.` for namespace labels.
    pub fn with_label_prefix(&self, prefix: &str) -> Selector {
        self.map_labels(|label| format!("{prefix}{label}"))
    }

    /// A copy with every referenced label name replaced by `f(name)`.
    /// The caller must return valid label names (see
    /// [`tokenizer::is_valid_label`]) for the canonical form to re-parse.
    pub fn map_labels(&self, mut f: impl FnMut(&str) -> String) -> Selector {
        Self::from_root(self.root.map_labels(&mut f))
    }

    /// The label names the selector references, sorted and de-duplicated.
    pub fn labels(&self) -> BTreeSet<&str> {
        let mut labels = BTreeSet::new();
        self.root.for_each_label(&mut |l| {
            labels.insert(l);
        });
        labels
    }
}

impl Default for Selector {
    /// `all()`, like the empty selector.
    fn default() -> Self {
        Self::all()
    }
}

impl FromStr for Selector {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Prints the canonical form.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Selector").field(&self.canonical).finish()
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for Selector {}

impl PartialOrd for Selector {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Selector {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.canonical.cmp(&other.canonical)
    }
}

impl Hash for Selector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical.hash(state);
    }
}

#[cfg(test)]
mod tests;
