//! Watches: a task in the store's runtime follows etcd's watch stream and hands events to
//! the [`Watcher`] the caller polls.

use super::*;

/// A watch running in the store's runtime, feeding an [`EtcdWatcher`].
pub(super) struct WatchTask {
    pub(super) client: Client,
    pub(super) prefix: String,
    pub(super) filter: WatchFilter,
    /// The last revision delivered (or known to have nothing for this watcher).
    pub(super) last: Revision,
    pub(super) tx: mpsc::Sender<Result<WatchEvent, DatastoreError>>,
    pub(super) options: EtcdOptions,
}

/// What ended one watch stream.
pub(super) enum StreamEnd {
    /// The watcher was dropped, or the history is gone (already reported): stop.
    Stop,
    /// The stream failed: reconnect from `last`.
    Reconnect,
}

impl WatchTask {
    pub(super) async fn run(mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let end = tokio::select! {
                _ = &mut stop => return,
                end = self.stream(&mut backoff) => end,
            };
            match end {
                StreamEnd::Stop => return,
                StreamEnd::Reconnect => {
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    pub(super) async fn stream(&mut self, backoff: &mut Duration) -> StreamEnd {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.last + 1)
            .with_prev_key()
            .with_progress_notify();
        let mut wc = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE);
        let mut stream = match tokio::time::timeout(
            self.options.request_timeout,
            wc.watch(self.prefix.as_str(), Some(options)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            _ => return StreamEnd::Reconnect,
        };
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) | Err(_) => return StreamEnd::Reconnect,
            };
            if resp.compact_revision() > 0 {
                let _ = self.tx.send(Err(DatastoreError::Compacted {
                    requested: self.last,
                    compacted: resp.compact_revision(),
                }));
                return StreamEnd::Stop;
            }
            if resp.canceled() {
                return StreamEnd::Reconnect;
            }
            *backoff = MIN_BACKOFF;
            if resp.events().is_empty() {
                // A progress notification: everything up to the header revision was sent.
                if !resp.created()
                    && let Some(h) = resp.header()
                {
                    self.last = self.last.max(h.revision());
                }
                continue;
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let rev = kv.mod_revision();
                if rev <= self.last {
                    continue;
                }
                let converted = convert_event(ev, kv, &self.filter);
                if let Some(item) = converted
                    && self.tx.send(item).is_err()
                {
                    return StreamEnd::Stop;
                }
                // Events of one revision arrive in one response: mark it done after the loop.
            }
            if let Some(rev) = resp
                .events()
                .iter()
                .filter_map(|e| e.kv())
                .map(|kv| kv.mod_revision())
                .max()
            {
                self.last = self.last.max(rev);
            }
        }
    }
}

/// The datastore event for an etcd event, None when the key is outside the filter or model.
pub(super) fn convert_event(
    ev: &etcd_client::Event,
    kv: &etcd_client::KeyValue,
    filter: &WatchFilter,
) -> Option<Result<WatchEvent, DatastoreError>> {
    let ek = String::from_utf8_lossy(kv.key());
    let key = layout::decode_key(&ek)?;
    if filter.kind.as_ref().is_some_and(|k| *k != key.kind)
        || filter
            .namespace
            .as_ref()
            .is_some_and(|ns| key.namespace.as_ref() != Some(ns))
    {
        return None;
    }
    let decode =
        |kv: &etcd_client::KeyValue| layout::decode_value(&key, &ek, kv.value(), kv.mod_revision());
    // An unreadable value is reported with its event, never stops the watch.
    let prev_value = ev.prev_kv().and_then(|p| decode(p).ok());
    let (event_type, value, unreadable) = match ev.event_type() {
        EtcdEventType::Delete => (EventType::Deleted, None, None),
        EtcdEventType::Put => {
            let ty = if kv.create_revision() == kv.mod_revision() {
                EventType::Added
            } else {
                EventType::Modified
            };
            match decode(kv) {
                Ok(v) => (ty, Some(v), None),
                Err(e) => (ty, None, Some(e.to_string())),
            }
        }
    };
    Some(Ok(WatchEvent {
        event_type,
        revision: kv.mod_revision(),
        key,
        value,
        unreadable,
        prev_value,
    }))
}

/// The receiving end of a [`WatchTask`].
pub(super) struct EtcdWatcher {
    pub(super) rx: mpsc::Receiver<Result<WatchEvent, DatastoreError>>,
    /// Dropping it stops the task.
    pub(super) _stop: tokio::sync::oneshot::Sender<()>,
    /// Keeps the runtime (and so the task) alive as long as the watcher.
    pub(super) _rt: Arc<tokio::runtime::Runtime>,
    /// The compaction that ended the watch, repeated on later calls.
    pub(super) ended: Option<(Revision, Revision)>,
}

impl Watcher for EtcdWatcher {
    fn next(&mut self, timeout: Duration) -> Result<Option<WatchEvent>, DatastoreError> {
        if let Some((requested, compacted)) = self.ended {
            return Err(DatastoreError::Compacted {
                requested,
                compacted,
            });
        }
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(ev)) => Ok(Some(ev)),
            Ok(Err(e)) => {
                if let DatastoreError::Compacted {
                    requested,
                    compacted,
                } = e
                {
                    self.ended = Some((requested, compacted));
                }
                Err(e)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(DatastoreError::Backend {
                doing: "watching etcd".into(),
                source: "the watch task stopped".into(),
            }),
        }
    }
}
