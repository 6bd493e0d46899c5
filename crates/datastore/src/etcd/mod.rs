//! The etcd v3 backend.
//!
//! Keys and values follow upstream Calico's etcdv3 layout (see [`layout`]). `resourceVersion`
//! is the etcd mod revision of the key; compare-and-swap and batches are etcd transactions.
//!
//! **Batches.** etcd applies one transaction at one revision, so every op of a batch reports
//! the same revision (the embedded store uses consecutive ones; the contract accepts both).
//! A batch is read, checked op by op in order against that snapshot (so the first failing op
//! is the one reported, as with the embedded store), then written by one transaction guarded
//! on the mod revision of every key it touches; if another client wrote one of them in
//! between, the batch is checked again against the new state. Several ops on one key collapse
//! into one write. A batch touching more distinct keys than the server's `--max-txn-ops`
//! (128 by default) fails as a whole with an error naming that limit: it is never split into
//! non-atomic pieces.
//!
//! **Failures.** Every request has a timeout; transient failures (member down, leader change,
//! timeout) are retried with exponential backoff for [`EtcdOptions::retry_for`], then reported
//! as [`DatastoreError::Backend`]. A write whose outcome is unknown is never resent blindly:
//! the keys are read again, and the write counts as done if they hold exactly what it wrote.
//!
//! **Watches** run in a task that resumes, after any stream failure, from the last revision it
//! delivered, so a watcher misses nothing across reconnects and leader changes; history
//! compacted away surfaces as [`DatastoreError::Compacted`] (relist, then watch again).
//!
//! The trait is synchronous: each store owns a small tokio runtime and blocks on it. Do not
//! call it from inside another tokio runtime's worker thread.

pub mod layout;
pub mod testing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType as EtcdEventType,
    GetOptions, Identity, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use serde_json::Value;

use crate::write;
use crate::{
    Datastore, DatastoreError, EventType, Key, KeyValue, Kind, ListResult, Revision, WatchEvent,
    WatchFilter, Watcher, WriteOp,
};

/// Largest gRPC message accepted from etcd (a list of 10,000 ~1 KB resources is ~12 MB).
const MAX_MESSAGE: usize = 512 * 1024 * 1024;
/// First retry delay; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Timeouts and retry budget of an etcd store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdOptions {
    /// How long connecting (and the first request) may take before `connect` fails.
    pub connect_timeout: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// How long transient failures are retried before an operation fails.
    pub retry_for: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(30),
        }
    }
}

/// Client TLS settings: `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA bundle to verify the servers with.
    pub ca_cert_file: Option<PathBuf>,
    /// Client certificate.
    pub cert_file: Option<PathBuf>,
    /// Key of the client certificate.
    pub key_file: Option<PathBuf>,
}

/// A failure below the datastore error: an etcd client error or a timeout.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Other(String),
}

impl Failure {
    /// Worth retrying: the cluster may answer later (member down, leader change, overload).
    fn is_transient(&self) -> bool {
        // gRPC status codes (tonic's `Code` discriminants).
        const CANCELLED: i32 = 1;
        const UNKNOWN: i32 = 2;
        const DEADLINE_EXCEEDED: i32 = 4;
        const RESOURCE_EXHAUSTED: i32 = 8;
        const ABORTED: i32 = 10;
        const UNAVAILABLE: i32 = 14;
        match self {
            Failure::Timeout(_) => true,
            Failure::Other(_) => false,
            Failure::Etcd(e) => match e {
                etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
                etcd_client::Error::GRpcStatus(s) => match s.code() as i32 {
                    UNAVAILABLE | DEADLINE_EXCEEDED | ABORTED | RESOURCE_EXHAUSTED | CANCELLED => {
                        true
                    }
                    UNKNOWN => {
                        let m = s.message();
                        m.contains("leader") || m.contains("timed out") || m.contains("transport")
                    }
                    _ => false,
                },
                _ => false,
            },
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Etcd(etcd_client::Error::GRpcStatus(s)) => s.message().to_string(),
            other => other.to_string(),
        }
    }
}

fn backend(doing: String, failure: Failure) -> DatastoreError {
    let failure = match failure {
        Failure::Etcd(e) => {
            let msg = Failure::Etcd(e).message();
            if msg.contains("too many operations in txn request") {
                Failure::Other(format!(
                    "{msg} (the batch touches more keys than the server's --max-txn-ops, \
                     128 by default, allows in one transaction)"
                ))
            } else if msg.contains("request is too large") {
                Failure::Other(format!(
                    "{msg} (the server's --max-request-bytes, 1.5 MiB by default)"
                ))
            } else {
                Failure::Other(msg)
            }
        }
        other => other,
    };
    DatastoreError::Backend {
        doing,
        source: Box::new(failure),
    }
}

/// A store on an etcd v3 cluster.
pub struct EtcdDatastore {
    rt: Arc<tokio::runtime::Runtime>,
    client: Client,
    endpoints: String,
    options: EtcdOptions,
}

impl std::fmt::Debug for EtcdDatastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDatastore")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {what} {}: {e}", path.display()))
}

fn tls_options(tls: &EtcdTls) -> Result<Option<TlsOptions>, String> {
    if tls.ca_cert_file.is_none() && tls.cert_file.is_none() && tls.key_file.is_none() {
        return Ok(None);
    }
    let mut opts = TlsOptions::new();
    if let Some(ca) = &tls.ca_cert_file {
        opts = opts.ca_certificate(Certificate::from_pem(read_file("CA certificate", ca)?));
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            opts = opts.identity(Identity::from_pem(
                read_file("client certificate", cert)?,
                read_file("client key", key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(
                "a client certificate needs both ETCD_CERT_FILE and ETCD_KEY_FILE".to_string(),
            );
        }
    }
    Ok(Some(opts))
}

impl EtcdDatastore {
    /// Connect with default [`EtcdOptions`].
    pub fn connect(endpoints: &[String], tls: &EtcdTls) -> Result<Self, DatastoreError> {
        Self::connect_with(endpoints, tls, EtcdOptions::default())
    }

    /// Connect to `endpoints` (`http://host:port` or `https://host:port`), checking within
    /// `options.connect_timeout` that the cluster answers.
    pub fn connect_with(
        endpoints: &[String],
        tls: &EtcdTls,
        options: EtcdOptions,
    ) -> Result<Self, DatastoreError> {
        let joined = endpoints.join(",");
        let fail = |source: Failure| DatastoreError::Backend {
            doing: format!("connecting to etcd at {joined}"),
            source: Box::new(source),
        };
        if endpoints.is_empty() {
            return Err(fail(Failure::Other("no endpoints given".into())));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd-client")
            .enable_all()
            .build()
            .map_err(|e| fail(Failure::Other(format!("starting the I/O runtime: {e}"))))?;
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_require_leader(true);
        let any_https = endpoints.iter().any(|e| e.starts_with("https://"));
        let tls_opts = tls_options(tls).map_err(|e| fail(Failure::Other(e)))?;
        match tls_opts {
            Some(t) if any_https => connect = connect.with_tls(t),
            Some(_) => {
                return Err(fail(Failure::Other(
                    "TLS files are set but no endpoint is https://".into(),
                )));
            }
            None if any_https => connect = connect.with_tls(TlsOptions::new()),
            None => {}
        }
        let client = rt.block_on(async {
            let client = tokio::time::timeout(
                options.connect_timeout,
                Client::connect(endpoints, Some(connect)),
            )
            .await
            .map_err(|_| Failure::Timeout(options.connect_timeout))??;
            // The channel connects lazily: one request proves the cluster answers. With several
            // endpoints, one may be down: retry (the balancer moves on) until the deadline.
            let deadline = tokio::time::Instant::now() + options.connect_timeout;
            loop {
                let mut kv = client.kv_client();
                let failure =
                    match tokio::time::timeout_at(deadline, kv.get("/calico/", None)).await {
                        Ok(Ok(_)) => break,
                        Ok(Err(e)) => Failure::Etcd(e),
                        Err(_) => Failure::Timeout(options.connect_timeout),
                    };
                if !failure.is_transient() || tokio::time::Instant::now() + MIN_BACKOFF >= deadline
                {
                    return Err(failure);
                }
                tokio::time::sleep(MIN_BACKOFF).await;
            }
            Ok::<_, Failure>(client)
        });
        let client = client.map_err(fail)?;
        Ok(Self {
            rt: Arc::new(rt),
            client,
            endpoints: joined,
            options,
        })
    }

    /// The endpoints this store talks to, comma-separated.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    /// Run `f` until it succeeds, fails for good, or transient failures outlast the budget.
    async fn retrying<T, F, Fut>(
        &self,
        doing: &dyn Fn() -> String,
        mut f: F,
    ) -> Result<T, DatastoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.options.retry_for;
        let mut backoff = MIN_BACKOFF;
        loop {
            let failure = match tokio::time::timeout(self.options.request_timeout, f()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => Failure::Etcd(e),
                Err(_) => Failure::Timeout(self.options.request_timeout),
            };
            if !failure.is_transient() || Instant::now() + backoff > deadline {
                return Err(backend(doing(), failure));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One snapshot of `keys`: per etcd key, its value and revisions; and the revision read at.
    async fn snapshot(&self, keys: &[String]) -> Result<(Snapshot, Revision), DatastoreError> {
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

    fn key_value(
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

    async fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<KeyValue>, DatastoreError> {
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
struct Stored {
    bytes: Vec<u8>,
    create_rev: Revision,
    mod_rev: Revision,
}

/// etcd key → stored entry, for the keys read (absent keys are missing).
type Snapshot = HashMap<String, Stored>;

fn snapshot_of(responses: &[TxnOpResponse]) -> Snapshot {
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

fn op_parts(op: &WriteOp) -> (&Key, Option<&Value>) {
    match op {
        WriteOp::Create { key, value }
        | WriteOp::Update { key, value, .. }
        | WriteOp::Upsert { key, value } => (key, Some(value)),
        WriteOp::Delete { key, .. } => (key, None),
    }
}

fn batch_err(index: usize, source: DatastoreError) -> DatastoreError {
    DatastoreError::Batch {
        index,
        source: Box::new(source),
    }
}

fn unbatch(e: DatastoreError) -> DatastoreError {
    match e {
        DatastoreError::Batch { source, .. } => *source,
        other => other,
    }
}

/// A key's state while a batch is simulated. `None` revisions mean "written by this batch".
#[derive(Debug, Clone)]
struct SimEntry {
    value: Value,
    create_rev: Option<Revision>,
    mod_rev: Option<Revision>,
}

/// One op's outcome, revisions to be filled in with the commit revision.
#[derive(Debug, Clone)]
struct OpResult {
    key: Key,
    etcd_key: String,
    /// Bytes as stored (deleted value for deletions).
    bytes: Vec<u8>,
    create_rev: Option<Revision>,
    mod_rev: Option<Revision>,
}

/// A checked batch: guards, final writes and per-op results.
#[derive(Debug, Clone)]
struct Plan {
    /// etcd key → mod revision it must still have (0: absent).
    guards: Vec<(String, Revision)>,
    /// etcd key → bytes to put, or None to delete.
    writes: Vec<(String, Option<Vec<u8>>)>,
    results: Vec<OpResult>,
}

impl Plan {
    fn txn(&self, distinct: &[String]) -> Txn {
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
    fn applied_in(&self, now: &Snapshot) -> Option<Revision> {
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

    fn results(&self, rev: Revision) -> Result<Vec<KeyValue>, DatastoreError> {
        self.results
            .iter()
            .map(|r| {
                let mod_revision = r.mod_rev.unwrap_or(rev);
                Ok(KeyValue {
                    value: layout::decode_value(&r.key, &r.etcd_key, &r.bytes, mod_revision)?,
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
fn simulate(
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
        let entry = match state.get(ek) {
            Some(s) => Some(SimEntry {
                value: layout::decode_value(key, ek, &s.bytes, s.mod_rev)
                    .map_err(|e| batch_err(idx, e))?,
                create_rev: Some(s.create_rev),
                mod_rev: Some(s.mod_rev),
            }),
            None => None,
        };
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
                    bytes: layout::encode_value(key, &entry.value).map_err(fail)?,
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
                    bytes,
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

impl Datastore for EtcdDatastore {
    fn get(&self, key: &Key) -> Result<Option<KeyValue>, DatastoreError> {
        let ek = layout::encode_key(key, None)?;
        self.rt.block_on(async {
            let resp = self
                .retrying(
                    &|| format!("reading {key} from etcd at {}", self.endpoints),
                    || {
                        let mut kv = self.kv();
                        let ek = ek.clone();
                        async move { kv.get(ek, None).await }
                    },
                )
                .await?;
            resp.kvs()
                .first()
                .map(|kv| self.key_value(key.clone(), &ek, kv))
                .transpose()
        })
    }

    fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<ListResult, DatastoreError> {
        let prefix = layout::kind_prefix(kind, namespace);
        self.rt.block_on(async {
            let resp = self
                .retrying(
                    &|| format!("listing {kind} from etcd at {}", self.endpoints),
                    || {
                        let mut kv = self.kv();
                        let prefix = prefix.clone();
                        async move { kv.get(prefix, Some(GetOptions::new().with_prefix())).await }
                    },
                )
                .await?;
            let revision = resp.header().map_or(0, |h| h.revision());
            let mut items = Vec::with_capacity(resp.kvs().len());
            for kv in resp.kvs() {
                let ek = String::from_utf8_lossy(kv.key());
                let Some(key) = layout::decode_key(&ek) else {
                    continue;
                };
                if key.kind != kind
                    || (namespace.is_some() && key.namespace.as_deref() != namespace)
                {
                    continue;
                }
                items.push(self.key_value(key, &ek, kv)?);
            }
            items.sort_by(|a, b| {
                (&a.key.namespace, &a.key.name).cmp(&(&b.key.namespace, &b.key.name))
            });
            Ok(ListResult { items, revision })
        })
    }

    fn create(&self, key: &Key, value: Value) -> Result<KeyValue, DatastoreError> {
        let op = WriteOp::Create {
            key: key.clone(),
            value,
        };
        self.rt
            .block_on(self.apply(vec![op]))
            .map(|mut v| v.remove(0))
            .map_err(unbatch)
    }

    fn update(
        &self,
        key: &Key,
        value: Value,
        expected_revision: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError> {
        let op = WriteOp::Update {
            key: key.clone(),
            value,
            expected_revision,
        };
        self.rt
            .block_on(self.apply(vec![op]))
            .map(|mut v| v.remove(0))
            .map_err(unbatch)
    }

    fn delete(
        &self,
        key: &Key,
        expected_revision: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError> {
        let op = WriteOp::Delete {
            key: key.clone(),
            expected_revision,
        };
        self.rt
            .block_on(self.apply(vec![op]))
            .map(|mut v| v.remove(0))
            .map_err(unbatch)
    }

    fn write_batch(&self, ops: Vec<WriteOp>) -> Result<Vec<KeyValue>, DatastoreError> {
        self.rt.block_on(self.apply(ops))
    }

    fn watch(
        &self,
        filter: WatchFilter,
        after: Revision,
    ) -> Result<Box<dyn Watcher>, DatastoreError> {
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let task = WatchTask {
            client: self.client.clone(),
            prefix: match &filter.kind {
                Some(kind) => layout::kind_prefix(*kind, filter.namespace.as_deref()),
                None => layout::ROOT.to_string(),
            },
            filter,
            last: after,
            tx,
            options: self.options,
        };
        self.rt.spawn(task.run(stop_rx));
        Ok(Box::new(EtcdWatcher {
            rx,
            _stop: stop_tx,
            _rt: self.rt.clone(),
            ended: None,
        }))
    }

    fn revision(&self) -> Result<Revision, DatastoreError> {
        self.rt.block_on(async {
            let resp = self
                .retrying(
                    &|| format!("reading the revision of etcd at {}", self.endpoints),
                    || {
                        let mut kv = self.kv();
                        async move {
                            kv.get(
                                layout::IPAM_CONFIG_KEY,
                                Some(GetOptions::new().with_count_only()),
                            )
                            .await
                        }
                    },
                )
                .await?;
            Ok(resp.header().map_or(0, |h| h.revision()))
        })
    }

    /// Compaction past the current revision compacts up to the current revision; compacting
    /// an already compacted revision is a no-op.
    fn compact(&self, revision: Revision) -> Result<(), DatastoreError> {
        let current = self.revision()?;
        let target = revision.min(current);
        if target <= 0 {
            return Ok(());
        }
        self.rt.block_on(async {
            let res = self
                .retrying(
                    &|| format!("compacting etcd at {} to revision {target}", self.endpoints),
                    || {
                        let mut kv = self.kv();
                        async move {
                            kv.compact(
                                target,
                                Some(etcd_client::CompactionOptions::new().with_physical()),
                            )
                            .await
                        }
                    },
                )
                .await;
            match res {
                Err(DatastoreError::Backend { source, .. })
                    if source.to_string().contains("has been compacted") =>
                {
                    Ok(())
                }
                other => other.map(|_| ()),
            }
        })
    }
}

/// A watch running in the store's runtime, feeding an [`EtcdWatcher`].
struct WatchTask {
    client: Client,
    prefix: String,
    filter: WatchFilter,
    /// The last revision delivered (or known to have nothing for this watcher).
    last: Revision,
    tx: mpsc::Sender<Result<WatchEvent, DatastoreError>>,
    options: EtcdOptions,
}

/// What ended one watch stream.
enum StreamEnd {
    /// The watcher was dropped, or the history is gone (already reported): stop.
    Stop,
    /// The stream failed: reconnect from `last`.
    Reconnect,
}

impl WatchTask {
    async fn run(mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
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

    async fn stream(&mut self, backoff: &mut Duration) -> StreamEnd {
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
fn convert_event(
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
    let prev_value = match ev.prev_kv().map(decode).transpose() {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    let (event_type, value) = match ev.event_type() {
        EtcdEventType::Delete => (EventType::Deleted, None),
        EtcdEventType::Put => {
            let value = match decode(kv) {
                Ok(v) => v,
                Err(e) => return Some(Err(e)),
            };
            let ty = if kv.create_revision() == kv.mod_revision() {
                EventType::Added
            } else {
                EventType::Modified
            };
            (ty, Some(value))
        }
    };
    Some(Ok(WatchEvent {
        event_type,
        revision: kv.mod_revision(),
        key,
        value,
        prev_value,
    }))
}

/// The receiving end of a [`WatchTask`].
struct EtcdWatcher {
    rx: mpsc::Receiver<Result<WatchEvent, DatastoreError>>,
    /// Dropping it stops the task.
    _stop: tokio::sync::oneshot::Sender<()>,
    /// Keeps the runtime (and so the task) alive as long as the watcher.
    _rt: Arc<tokio::runtime::Runtime>,
    /// The compaction that ended the watch, repeated on later calls.
    ended: Option<(Revision, Revision)>,
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
