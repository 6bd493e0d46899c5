//! Atomic batches: the keys a batch touches are read, the batch is checked against them
//! with the write rules, and committed in one transaction guarded on their revisions.

use super::*;

impl EtcdDatastore {
    /// One snapshot of `keys`: per etcd key, its value and revisions; and the revision read at.
    pub(super) async fn snapshot(
        &self,
        keys: &[String],
    ) -> Result<(Snapshot, Revision), DatastoreError> {
        let ops: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(k.as_str(), None)).collect();
        let resp = self
            .retrying(&|| format!("reading {} keys from etcd", keys.len()), || {
                let mut kv = self.kv();
                let txn = Txn::new().and_then(ops.clone());
                async move { kv.txn(txn).await }
            })
            .await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        Ok((snapshot_of(&resp.op_responses()), rev))
    }

    pub(super) fn key_value(
        &self,
        key: Key,
        etcd_key: &str,
        kv: &etcd_client::KeyValue,
    ) -> Result<KeyValue, DatastoreError> {
        let value = layout::decode_value(&key, etcd_key, kv.value(), kv.mod_revision())?;
        Ok(KeyValue {
            key,
            value,
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    pub(super) async fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<KeyValue>, DatastoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        // Resolve every op's etcd key first; a bad key fails its op.
        let mut etcd_keys = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            let (key, value) = op_parts(op);
            let ek = layout::encode_key(key, value).map_err(|e| batch_err(index, e))?;
            etcd_keys.push(ek);
        }
        let mut distinct: Vec<String> = Vec::new();
        for k in &etcd_keys {
            if !distinct.contains(k) {
                distinct.push(k.clone());
            }
        }
        let describe = || {
            if ops.len() == 1 {
                format!("writing {} to etcd", op_parts(&ops[0]).0)
            } else {
                format!("writing a batch of {} ops to etcd", ops.len())
            }
        };
        let all_creates = ops.iter().all(|op| matches!(op, WriteOp::Create { .. }))
            && distinct.len() == ops.len();
        // Creates need no prior read: assume the keys are absent and let the guard check.
        let (mut state, mut read_rev) = if all_creates {
            (Snapshot::new(), 0)
        } else {
            self.snapshot(&distinct).await?
        };
        let mut attempts: Vec<Plan> = Vec::new();
        let deadline = Instant::now() + self.options.retry_for;
        let mut backoff = MIN_BACKOFF;
        loop {
            let plan = simulate(&ops, &etcd_keys, &distinct, &state, read_rev + 1)?;
            let txn = plan.txn(&distinct);
            let result = {
                let mut kv = self.kv();
                tokio::time::timeout(self.options.request_timeout, kv.txn(txn)).await
            };
            let failure = match result {
                Ok(Ok(resp)) if resp.succeeded() => {
                    let rev = resp.header().map_or(0, |h| h.revision());
                    return plan.results(rev);
                }
                Ok(Ok(resp)) => {
                    // A guard failed: the else branch read the keys again.
                    state = snapshot_of(&resp.op_responses());
                    read_rev = resp.header().map_or(0, |h| h.revision());
                    attempts.push(plan);
                    continue;
                }
                Ok(Err(e)) => Failure::Etcd(e),
                Err(_) => Failure::Timeout(self.options.request_timeout),
            };
            if !failure.is_transient() || Instant::now() + backoff > deadline {
                return Err(backend(describe(), failure));
            }
            attempts.push(plan);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            // The outcome is unknown: read again and see whether an attempt took effect.
            let (now, now_rev) = self.snapshot(&distinct).await?;
            if let Some((plan, rev)) = attempts
                .iter()
                .find_map(|p| p.applied_in(&now).map(|r| (p, r)))
            {
                let rev = if rev == 0 { now_rev } else { rev };
                return plan.results(rev);
            }
            state = now;
            read_rev = now_rev;
        }
    }
}

/// What a snapshot knows of one etcd key.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    bytes: Vec<u8>,
    create_rev: Revision,
    mod_rev: Revision,
}

/// etcd key → stored entry, for the keys read (absent keys are missing).
pub(super) type Snapshot = HashMap<String, Stored>;

pub(super) fn snapshot_of(responses: &[TxnOpResponse]) -> Snapshot {
    let mut snap = Snapshot::new();
    for r in responses {
        if let TxnOpResponse::Get(g) = r {
            for kv in g.kvs() {
                snap.insert(
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    Stored {
                        bytes: kv.value().to_vec(),
                        create_rev: kv.create_revision(),
                        mod_rev: kv.mod_revision(),
                    },
                );
            }
        }
    }
    snap
}

pub(super) fn op_parts(op: &WriteOp) -> (&Key, Option<&Value>) {
    match op {
        WriteOp::Create { key, value }
        | WriteOp::Update { key, value, .. }
        | WriteOp::Upsert { key, value } => (key, Some(value)),
        WriteOp::Delete { key, .. } => (key, None),
    }
}

pub(super) fn batch_err(index: usize, source: DatastoreError) -> DatastoreError {
    DatastoreError::Batch {
        index,
        source: Box::new(source),
    }
}

pub(super) fn unbatch(e: DatastoreError) -> DatastoreError {
    match e {
        DatastoreError::Batch { source, .. } => *source,
        other => other,
    }
}

/// A key's state while a batch is simulated. `None` revisions mean "written by this batch".
#[derive(Debug, Clone)]
pub(super) struct SimEntry {
    value: Value,
    create_rev: Option<Revision>,
    mod_rev: Option<Revision>,
}

/// One op's outcome, revisions to be filled in with the commit revision.
#[derive(Debug, Clone)]
pub(super) struct OpResult {
    key: Key,
    etcd_key: String,
    /// Bytes as stored (deleted value for deletions; None for an unreadable one deleted).
    bytes: Option<Vec<u8>>,
    create_rev: Option<Revision>,
    mod_rev: Option<Revision>,
}

/// A checked batch: guards, final writes and per-op results.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// etcd key → mod revision it must still have (0: absent).
    guards: Vec<(String, Revision)>,
    /// etcd key → bytes to put, or None to delete.
    writes: Vec<(String, Option<Vec<u8>>)>,
    results: Vec<OpResult>,
}

impl Plan {
    pub(super) fn txn(&self, distinct: &[String]) -> Txn {
        let compares: Vec<Compare> = self
            .guards
            .iter()
            .map(|(k, rev)| Compare::mod_revision(k.as_str(), CompareOp::Equal, *rev))
            .collect();
        let writes: Vec<TxnOp> = self
            .writes
            .iter()
            .map(|(k, v)| match v {
                Some(bytes) => TxnOp::put(k.as_str(), bytes.clone(), None),
                None => TxnOp::delete(k.as_str(), None),
            })
            .collect();
        let reads: Vec<TxnOp> = distinct
            .iter()
            .map(|k| TxnOp::get(k.as_str(), None))
            .collect();
        Txn::new().when(compares).and_then(writes).or_else(reads)
    }

    /// Whether `now` shows this plan's writes: the revision they landed at (0 when only
    /// deletions, whose revision `now` cannot tell).
    pub(super) fn applied_in(&self, now: &Snapshot) -> Option<Revision> {
        let mut rev = 0;
        for (k, w) in &self.writes {
            match (w, now.get(k)) {
                (Some(bytes), Some(s)) if &s.bytes == bytes => {
                    let guard = self.guards.iter().find(|(g, _)| g == k).map_or(0, |g| g.1);
                    if s.mod_rev <= guard || (rev != 0 && s.mod_rev != rev) {
                        return None;
                    }
                    rev = s.mod_rev;
                }
                (None, None) => {}
                _ => return None,
            }
        }
        Some(rev)
    }

    pub(super) fn results(&self, rev: Revision) -> Result<Vec<KeyValue>, DatastoreError> {
        self.results
            .iter()
            .map(|r| {
                let mod_revision = r.mod_rev.unwrap_or(rev);
                let value = match &r.bytes {
                    Some(bytes) => layout::decode_value(&r.key, &r.etcd_key, bytes, mod_revision)?,
                    None => Value::Null,
                };
                Ok(KeyValue {
                    value,
                    key: r.key.clone(),
                    create_revision: r.create_rev.unwrap_or(rev),
                    mod_revision,
                })
            })
            .collect()
    }
}

/// Check `ops` in order against `state`; on success, the plan to commit. `pending` is the
/// revision the commit is expected at, which is what an op sees as the mod revision of a key
/// an earlier op of the batch wrote.
pub(super) fn simulate(
    ops: &[WriteOp],
    etcd_keys: &[String],
    distinct: &[String],
    state: &Snapshot,
    pending: Revision,
) -> Result<Plan, DatastoreError> {
    let now = write::now_timestamp();
    let mut sim: HashMap<&str, Option<SimEntry>> = HashMap::new();
    let mut guards = Vec::with_capacity(distinct.len());
    for ek in distinct {
        let idx = etcd_keys
            .iter()
            .position(|k| k == ek)
            .expect("distinct key comes from ops");
        let key = op_parts(&ops[idx]).0;
        // An unreadable value can still be deleted or overwritten (as a value without
        // metadata): that is how an operator repairs it.
        let entry = state.get(ek).map(|s| SimEntry {
            value: layout::decode_value(key, ek, &s.bytes, s.mod_rev).unwrap_or(Value::Null),
            create_rev: Some(s.create_rev),
            mod_rev: Some(s.mod_rev),
        });
        guards.push((ek.clone(), state.get(ek).map_or(0, |s| s.mod_rev)));
        sim.insert(ek.as_str(), entry);
    }
    let mut dirty: Vec<&str> = Vec::new();
    let mut results = Vec::with_capacity(ops.len());
    for (index, (op, ek)) in ops.iter().zip(etcd_keys).enumerate() {
        let fail = |e: DatastoreError| batch_err(index, e);
        let current = sim.get(ek.as_str()).cloned().flatten();
        let (key, _) = op_parts(op);
        let state_now = current
            .as_ref()
            .map(|entry| write::Current::of(&entry.value, entry.mod_rev.unwrap_or(pending)));
        write::check(op, state_now.as_ref()).map_err(fail)?;
        let new_entry = match (op, current) {
            (WriteOp::Delete { .. }, Some(entry)) => {
                results.push(OpResult {
                    key: key.clone(),
                    etcd_key: ek.clone(),
                    bytes: match entry.value {
                        Value::Null => None,
                        ref v => Some(layout::encode_value(key, v).map_err(fail)?),
                    },
                    create_rev: entry.create_rev.or(Some(pending)),
                    mod_rev: entry.mod_rev.or(Some(pending)),
                });
                None
            }
            // Checked above: a delete needs the key.
            (WriteOp::Delete { .. }, None) => {
                return Err(fail(DatastoreError::NotFound { key: key.clone() }));
            }
            (
                WriteOp::Create { value, .. }
                | WriteOp::Update { value, .. }
                | WriteOp::Upsert { value, .. },
                current,
            ) => {
                let mut value = value.clone();
                let create_rev = current.as_ref().and_then(|e| e.create_rev);
                write::stamp(key, &mut value, state_now.as_ref(), &now, None).map_err(fail)?;
                let bytes = layout::encode_value(key, &value).map_err(fail)?;
                // Store what a reader will see, so the result equals a later get.
                let value = layout::decode_value(key, ek, &bytes, pending).map_err(fail)?;
                results.push(OpResult {
                    key: key.clone(),
                    etcd_key: ek.clone(),
                    bytes: Some(bytes),
                    create_rev,
                    mod_rev: None,
                });
                Some(SimEntry {
                    value,
                    create_rev,
                    mod_rev: None,
                })
            }
        };
        sim.insert(ek.as_str(), new_entry);
        if !dirty.contains(&ek.as_str()) {
            dirty.push(ek.as_str());
        }
    }
    let mut writes = Vec::with_capacity(dirty.len());
    for ek in dirty {
        let key = op_parts(&ops[etcd_keys.iter().position(|k| k == ek).unwrap_or(0)]).0;
        match sim.get(ek).cloned().flatten() {
            Some(entry) => writes.push((
                ek.to_string(),
                Some(layout::encode_value(key, &entry.value)?),
            )),
            None if state.contains_key(ek) => writes.push((ek.to_string(), None)),
            // Created and deleted within the batch: nothing to write.
            None => {}
        }
    }
    Ok(Plan {
        guards,
        writes,
        results,
    })
}
