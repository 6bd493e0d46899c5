//! The typed sync layer every reader of the datastore shares: felix, `calicoctl policy trace`,
//! and later confd and the Docker plugin.
//!
//! A [`Syncer`] lists the kinds its consumer asked for, then follows a watch from where the
//! lists left off, and hands the consumer [`SyncEvent`]s: typed resources ([`Resource`],
//! decoded once here), deletions, values that do not decode (named, never dropped silently),
//! and an in-sync signal once everything listed has been handed over. When the watch breaks
//! (history compacted, the store unreachable) it says so, waits with back-off and lists again,
//! handing over only what differs from what the consumer already has: a consumer never starts
//! from scratch and never sees a resource twice at the same revision.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Deref;
use std::time::{Duration, Instant};

use calico_api::Kind;
use calico_datastore::{Datastore, DatastoreError, Key, Revision, WatchFilter, Watcher};

mod resource;

pub use resource::{DecodeError, Resource};

/// What a consumer is told.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "events are handed over one at a time and consumed at once"
)]
pub enum SyncEvent {
    /// A resource was created or changed (or, after a relist, differs from what was handed
    /// over before).
    Set {
        /// Where it is stored.
        key: Key,
        /// The revision of its last write.
        revision: Revision,
        /// Its typed value.
        resource: Resource,
    },
    /// A resource is gone.
    Deleted {
        /// Where it was stored.
        key: Key,
        /// The revision of the deletion (a relist's revision when found missing there).
        revision: Revision,
    },
    /// A stored value cannot be read (not JSON, or not valid as its kind). What the consumer
    /// had for this key is its to keep or drop; the syncer goes on with everything else.
    Unreadable {
        /// Where it is stored.
        key: Key,
        /// The revision of the unreadable write.
        revision: Revision,
        /// Why it cannot be read.
        error: DecodeError,
        /// Whether a good version of it was handed over before (and not deleted since): the
        /// consumer has something to keep in its place.
        kept: bool,
    },
    /// Everything listed has been handed over: the consumer's view is complete as of
    /// `revision` and stays so as events follow.
    InSync {
        /// The revision the consumer's view is complete at.
        revision: Revision,
    },
    /// The datastore could not be read or watched; the consumer's view is no longer known to be
    /// current. The syncer retries with back-off and reports [`SyncEvent::InSync`] again once it
    /// has caught up.
    Lost {
        /// Why.
        error: String,
    },
}

/// Retry timing after a failure: doubling from `min` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub min: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// Lists, watches and resyncs a set of kinds, handing over typed events (see the crate docs).
/// `D` is how the store is held: `Arc<dyn Datastore>` by an agent, `&dyn Datastore` by a
/// one-shot command.
pub struct Syncer<D: Deref<Target: Datastore>> {
    ds: D,
    kinds: BTreeSet<Kind>,
    backoff: Backoff,
    /// Every key handed over and not deleted since: the revision it was handed over at, and
    /// whether a good version of it was ever handed over.
    known: BTreeMap<Key, (Revision, bool)>,
    /// Events decided but not yet handed over.
    pending: VecDeque<SyncEvent>,
    watcher: Option<Box<dyn Watcher>>,
    /// Per kind, the revision of the last list: watch events at or below it are already in it.
    listed_at: BTreeMap<Kind, Revision>,
    /// When to list again after a failure (None: at once).
    retry_at: Option<Instant>,
    /// The current back-off wait.
    wait: Duration,
    /// Every change at or below this revision has been handed over (or was of no interest).
    handed: Revision,
}

impl<D: Deref<Target: Datastore>> Syncer<D> {
    /// A syncer of `kinds` in `ds`. Nothing is read before the first [`Syncer::next`].
    pub fn new(ds: D, kinds: impl IntoIterator<Item = Kind>) -> Self {
        let backoff = Backoff::default();
        Syncer {
            ds,
            kinds: kinds.into_iter().collect(),
            backoff,
            known: BTreeMap::new(),
            pending: VecDeque::new(),
            watcher: None,
            listed_at: BTreeMap::new(),
            retry_at: None,
            wait: backoff.min,
            handed: 0,
        }
    }

    /// Every change at or below this revision has been handed over.
    pub fn revision(&self) -> Revision {
        self.handed
    }

    /// The same syncer with other retry timing.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self.wait = backoff.min;
        self
    }

    /// The next event, waiting at most `timeout`; `None` when nothing happened in time.
    pub fn next(&mut self, timeout: Duration) -> Option<SyncEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.pending.pop_front() {
                match &ev {
                    SyncEvent::Set { revision, .. }
                    | SyncEvent::Deleted { revision, .. }
                    | SyncEvent::Unreadable { revision, .. }
                    | SyncEvent::InSync { revision } => {
                        self.handed = self.handed.max(*revision);
                    }
                    SyncEvent::Lost { .. } => {}
                }
                return Some(ev);
            }
            let now = Instant::now();
            let Some(watcher) = self.watcher.as_mut() else {
                if let Some(at) = self.retry_at
                    && at > now
                {
                    if deadline <= now {
                        return None;
                    }
                    std::thread::sleep(at.min(deadline) - now);
                    continue;
                }
                if let Err(e) = self.relist() {
                    return Some(self.lost(&e, "listing"));
                }
                continue;
            };
            match watcher.next(deadline.saturating_duration_since(now)) {
                Ok(Some(ev)) => self.take_watch_event(ev),
                Ok(None) => return None,
                Err(e) => {
                    self.watcher = None;
                    if matches!(e, DatastoreError::Compacted { .. }) {
                        // Not a failure of the store: list again at once.
                        self.retry_at = None;
                        return Some(SyncEvent::Lost {
                            error: format!("watching the datastore: {e}"),
                        });
                    }
                    return Some(self.lost(&e, "watching"));
                }
            }
        }
    }

    /// Reads until in sync (or `timeout` passes): for one-shot readers such as
    /// `calicoctl policy trace`. Returns every event up to and including the first `InSync`.
    pub fn read_until_in_sync(&mut self, timeout: Duration) -> Result<Vec<SyncEvent>, String> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(SyncEvent::Lost { error }) => return Err(error),
                Some(ev @ SyncEvent::InSync { .. }) => {
                    events.push(ev);
                    return Ok(events);
                }
                Some(ev) => events.push(ev),
                None if left.is_zero() => {
                    return Err(format!(
                        "reading the datastore: not in sync after {timeout:?}"
                    ));
                }
                None => {}
            }
        }
    }

    fn lost(&mut self, e: &DatastoreError, doing: &str) -> SyncEvent {
        self.retry_at = Some(Instant::now() + self.wait);
        self.wait = (self.wait * 2).min(self.backoff.max);
        SyncEvent::Lost {
            error: format!("{doing} the datastore: {e}"),
        }
    }

    /// Lists every kind and queues what differs from what was handed over, then `InSync`, and
    /// starts the watch where the lists began.
    fn relist(&mut self) -> Result<(), DatastoreError> {
        let start = self.ds.revision()?;
        let mut listed = Vec::new();
        let mut listed_at = BTreeMap::new();
        for &kind in &self.kinds {
            let list = self.ds.list(kind, None)?;
            listed_at.insert(kind, list.revision);
            listed.push(list);
        }
        let filter = match self.kinds.iter().collect::<Vec<_>>()[..] {
            [&only] => WatchFilter {
                kind: Some(only),
                namespace: None,
            },
            _ => WatchFilter::default(),
        };
        let watcher = self.ds.watch(filter, start)?;
        let mut seen = BTreeSet::new();
        let mut in_sync_at = start;
        let mut changed = Vec::new();
        for list in listed {
            in_sync_at = in_sync_at.max(list.revision);
            for kv in list.items {
                seen.insert(kv.key.clone());
                if self.known.get(&kv.key).map(|k| k.0) != Some(kv.mod_revision) {
                    changed.push((kv.key, kv.mod_revision, Ok(kv.value)));
                }
            }
            for bad in list.unreadable {
                seen.insert(bad.key.clone());
                if self.known.get(&bad.key).map(|k| k.0) != Some(bad.mod_revision) {
                    changed.push((bad.key, bad.mod_revision, Err(bad.reason)));
                }
            }
        }
        for (key, revision, decoded) in decode_all(changed) {
            let ev = self.record(key, revision, decoded);
            self.pending.push_back(ev);
        }
        let gone: Vec<Key> = self
            .known
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.known.remove(&key);
            let revision = listed_at.get(&key.kind).copied().unwrap_or(start);
            self.pending.push_back(SyncEvent::Deleted { key, revision });
        }
        self.pending.push_back(SyncEvent::InSync {
            revision: in_sync_at,
        });
        self.listed_at = listed_at;
        self.watcher = Some(watcher);
        self.retry_at = None;
        self.wait = self.backoff.min;
        Ok(())
    }

    fn take_watch_event(&mut self, ev: calico_datastore::WatchEvent) {
        let skip = match self.listed_at.get(&ev.key.kind) {
            None => true,
            // The list of this kind already holds every change at or below its revision.
            Some(&listed) => ev.revision <= listed,
        };
        if skip {
            if self.pending.is_empty() {
                self.handed = self.handed.max(ev.revision);
            }
            return;
        }
        let value = match (ev.value, ev.unreadable) {
            (Some(value), _) => Ok(value),
            (None, Some(reason)) => Err(reason),
            (None, None) => {
                if self.known.remove(&ev.key).is_some() {
                    self.pending.push_back(SyncEvent::Deleted {
                        key: ev.key,
                        revision: ev.revision,
                    });
                }
                return;
            }
        };
        let decoded = decode(&ev.key, value);
        let typed = self.record(ev.key, ev.revision, decoded);
        self.pending.push_back(typed);
    }

    /// The event for a decoded value (or why it cannot be read), remembering it.
    fn record(
        &mut self,
        key: Key,
        revision: Revision,
        decoded: Result<Resource, DecodeError>,
    ) -> SyncEvent {
        let had_good = self.known.get(&key).is_some_and(|k| k.1);
        match decoded {
            Ok(resource) => {
                self.known.insert(key.clone(), (revision, true));
                SyncEvent::Set {
                    key,
                    revision,
                    resource,
                }
            }
            Err(error) => {
                self.known.insert(key.clone(), (revision, had_good));
                SyncEvent::Unreadable {
                    key,
                    revision,
                    error,
                    kept: had_good,
                }
            }
        }
    }
}

/// A stored value typed as its key's kind (or why it cannot be read).
fn decode(key: &Key, value: Result<serde_json::Value, String>) -> Result<Resource, DecodeError> {
    value
        .map_err(|reason| DecodeError {
            key: key.clone(),
            reason,
        })
        .and_then(|v| Resource::decode(key, v))
}

/// Listed values below this many are decoded on the calling thread.
const PARALLEL_DECODE_FROM: usize = 256;

/// Decodes a list's values, in order, on every core when there are many: at
/// a cold start decoding (strict fields and upstream's validation) was most
/// of reading the store.
fn decode_all(
    listed: Vec<(Key, Revision, Result<serde_json::Value, String>)>,
) -> Vec<(Key, Revision, Result<Resource, DecodeError>)> {
    let one = |(key, revision, value): (Key, Revision, Result<serde_json::Value, String>)| {
        let decoded = decode(&key, value);
        (key, revision, decoded)
    };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if threads < 2 || listed.len() < PARALLEL_DECODE_FROM {
        return listed.into_iter().map(one).collect();
    }
    let per_thread = listed.len().div_ceil(threads);
    let mut chunks = Vec::with_capacity(threads);
    let mut rest = listed.into_iter();
    loop {
        let chunk: Vec<_> = rest.by_ref().take(per_thread).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    std::thread::scope(|scope| {
        let mut chunks = chunks.into_iter();
        // The calling thread decodes the first chunk itself.
        let first = chunks.next().unwrap_or_default();
        let others: Vec<_> = chunks
            .map(|c| scope.spawn(move || c.into_iter().map(one).collect::<Vec<_>>()))
            .collect();
        let mut out: Vec<_> = first.into_iter().map(one).collect();
        for handle in others {
            match handle.join() {
                Ok(decoded) => out.extend(decoded),
                // A panic while decoding is a bug: let it be one here too.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}
