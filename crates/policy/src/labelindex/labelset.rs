//! A compact, immutable label map.

use calico_selector::Labels;

/// Labels in two allocations: all keys and values back to back in one
/// string, and their end offsets, sorted by key.
///
/// At 250,000 endpoints the per-item label storage dominates memory; a
/// `BTreeMap<String, String>` costs a ~500-byte node plus two allocations
/// per label, this a few bytes per label.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSet {
    buf: Box<str>,
    /// Per label: (end of key, end of value) in `buf`; the key starts where
    /// the previous value ends.
    ends: Box<[(u32, u32)]>,
}

impl LabelSet {
    /// Builds a set from pairs; when a key repeats, the last value wins.
    pub(crate) fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut pairs: Vec<(K, V)> = pairs.into_iter().collect();
        // A stable sort keeps equal keys in arrival order, so the last of
        // each run is the one that wins. Sorting the pairs in place (rather
        // than an index) saves allocations on the hot path of every update.
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        let kept = |n: usize| {
            pairs
                .get(n + 1)
                .is_none_or(|next| next.0.as_ref() != pairs[n].0.as_ref())
        };
        // Sized exactly, so boxing below does not reallocate.
        let (mut len, mut count) = (0, 0);
        for (n, (k, v)) in pairs.iter().enumerate() {
            if kept(n) {
                len += k.as_ref().len() + v.as_ref().len();
                count += 1;
            }
        }
        let mut buf = String::with_capacity(len);
        let mut ends = Vec::with_capacity(count);
        for (n, (k, v)) in pairs.iter().enumerate() {
            if kept(n) {
                buf.push_str(k.as_ref());
                let key_end = offset(buf.len());
                buf.push_str(v.as_ref());
                ends.push((key_end, offset(buf.len())));
            }
        }
        LabelSet {
            buf: buf.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// The `n`th label, in key order.
    #[inline]
    fn entry(&self, n: usize) -> (&str, &str) {
        let start = if n == 0 {
            0
        } else {
            self.ends[n - 1].1 as usize
        };
        let (key_end, val_end) = self.ends[n];
        (
            &self.buf[start..key_end as usize],
            &self.buf[key_end as usize..val_end as usize],
        )
    }

    /// The labels, sorted by key.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        (0..self.ends.len()).map(|n| self.entry(n))
    }
}

fn offset(len: usize) -> u32 {
    u32::try_from(len).expect("a label set is under 4 GiB")
}

impl Labels for LabelSet {
    #[inline]
    fn get(&self, key: &str) -> Option<&str> {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (k, v) = self.entry(mid);
            match k.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(v),
            }
        }
        None
    }
}

impl std::fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}
