//! Small building blocks: a hasher for dense internal ids, a set of such ids
//! that stays cheap when tiny, and a slab that hands those ids out.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiplicative hasher for the index's own dense `u32` ids.
///
/// Only ever fed ids this crate allocates, never outside input, so it needs
/// no protection against chosen collisions, and SipHash would be most of the
/// cost of the hot set operations.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

/// Odd constant from the golden ratio: spreads consecutive ids over all bits.
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(SEED);
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(SEED);
    }

    fn finish(&self) -> u64 {
        // The multiply leaves the best-mixed bits at the top; hashbrown picks
        // buckets from the bottom bits, so bring them down.
        self.0.rotate_left(26)
    }
}

type IdBuildHasher = BuildHasherDefault<IdHasher>;

/// Up to this many ids a set is a plain vector: most sets (an item's
/// matches, the items with one label value) hold one or two ids, and a hash
/// table for those costs several times the memory.
const SMALL_MAX: usize = 16;
/// A large set shrinks back to a vector below this, with a gap to
/// `SMALL_MAX` so a set hovering at the boundary does not convert each time.
const SHRINK_BELOW: usize = 4;

/// A set of internal ids.
#[derive(Debug, Clone)]
pub(crate) enum IdSet {
    /// Exactly one id, without an allocation: the commonest case by far
    /// (the items with a unique label value such as a name, an item that
    /// matches one selector).
    One(u32),
    /// Zero or 2..=`SMALL_MAX` ids.
    Small(Vec<u32>),
    Large(HashSet<u32, IdBuildHasher>),
}

impl Default for IdSet {
    fn default() -> Self {
        IdSet::Small(Vec::new())
    }
}

impl IdSet {
    /// Adds `id`; false if it was already there.
    pub(crate) fn insert(&mut self, id: u32) -> bool {
        match self {
            IdSet::One(x) => {
                if *x == id {
                    return false;
                }
                *self = IdSet::Small(vec![*x, id]);
                true
            }
            IdSet::Small(v) if v.is_empty() => {
                *self = IdSet::One(id);
                true
            }
            IdSet::Small(v) => {
                if v.contains(&id) {
                    return false;
                }
                if v.len() < SMALL_MAX {
                    v.push(id);
                } else {
                    let mut set: HashSet<u32, IdBuildHasher> =
                        HashSet::with_capacity_and_hasher(SMALL_MAX * 2, IdBuildHasher::default());
                    set.extend(v.iter().copied());
                    set.insert(id);
                    *self = IdSet::Large(set);
                }
                true
            }
            IdSet::Large(s) => s.insert(id),
        }
    }

    /// Removes `id`; false if it was not there.
    pub(crate) fn remove(&mut self, id: u32) -> bool {
        match self {
            IdSet::One(x) => {
                if *x != id {
                    return false;
                }
                *self = IdSet::default();
                true
            }
            IdSet::Small(v) => match v.iter().position(|&x| x == id) {
                Some(pos) => {
                    v.swap_remove(pos);
                    if let [last] = v[..] {
                        // Give the memory back: sets are often kept at one
                        // or zero ids (e.g. an item's matches).
                        *self = IdSet::One(last);
                    }
                    true
                }
                None => false,
            },
            IdSet::Large(s) => {
                let removed = s.remove(&id);
                if removed && s.len() < SHRINK_BELOW {
                    let v: Vec<u32> = s.iter().copied().collect();
                    *self = match v[..] {
                        [one] => IdSet::One(one),
                        _ => IdSet::Small(v),
                    };
                }
                removed
            }
        }
    }

    /// Whether `id` is in the set.
    pub(crate) fn contains(&self, id: u32) -> bool {
        match self {
            IdSet::One(x) => *x == id,
            IdSet::Small(v) => v.contains(&id),
            IdSet::Large(s) => s.contains(&id),
        }
    }

    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        match self {
            IdSet::One(_) => 1,
            IdSet::Small(v) => v.len(),
            IdSet::Large(s) => s.len(),
        }
    }

    /// Whether the set is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids, in no particular order.
    pub(crate) fn iter(&self) -> IdIter<'_> {
        match self {
            IdSet::One(x) => IdIter::Small(std::slice::from_ref(x).iter()),
            IdSet::Small(v) => IdIter::Small(v.iter()),
            IdSet::Large(s) => IdIter::Large(s.iter()),
        }
    }
}

/// Iterator over an [`IdSet`].
pub(crate) enum IdIter<'a> {
    Small(std::slice::Iter<'a, u32>),
    Large(std::collections::hash_set::Iter<'a, u32>),
}

impl Iterator for IdIter<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        match self {
            IdIter::Small(it) => it.next().copied(),
            IdIter::Large(it) => it.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            IdIter::Small(it) => it.size_hint(),
            IdIter::Large(it) => it.size_hint(),
        }
    }
}

/// Storage that hands out small, reused `u32` ids, so the rest of the index
/// can refer to items, parents and selectors by a 4-byte id rather than by
/// the caller's (possibly long, string) ids.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value`, returning its id.
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        self.len += 1;
        if let Some(id) = self.free.pop() {
            self.slots[id as usize] = Some(value);
            id
        } else {
            let id = u32::try_from(self.slots.len()).expect("fewer than 2^32 entries");
            self.slots.push(Some(value));
            id
        }
    }

    /// Removes and returns the value with id `id`, which must be live.
    pub(crate) fn remove(&mut self, id: u32) -> T {
        let value = self.slots[id as usize]
            .take()
            .expect("slab id is live (index invariant)");
        self.free.push(id);
        self.len -= 1;
        value
    }

    /// Number of live entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Live entries with their ids.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|v| (i as u32, v)))
    }
}

impl<T> std::ops::Index<u32> for Slab<T> {
    type Output = T;

    #[inline]
    fn index(&self, id: u32) -> &T {
        self.slots[id as usize]
            .as_ref()
            .expect("slab id is live (index invariant)")
    }
}

impl<T> std::ops::IndexMut<u32> for Slab<T> {
    #[inline]
    fn index_mut(&mut self, id: u32) -> &mut T {
        self.slots[id as usize]
            .as_mut()
            .expect("slab id is live (index invariant)")
    }
}
