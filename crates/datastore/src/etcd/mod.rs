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
mod txn;
mod watch;

use txn::unbatch;
use watch::{EtcdWatcher, WatchTask};

use std::collections::HashMap;
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
    Datastore, DatastoreError, EventType, Key, KeyValue, Kind, ListResult, Revision, Unreadable,
    WatchEvent, WatchFilter, Watcher, WriteOp,
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

pub use crate::config::{EtcdTls, Pem};

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
                        // "raft proposal dropped": the new leader never applied it.
                        m.contains("leader")
                            || m.contains("timed out")
                            || m.contains("transport")
                            || m.contains("proposal dropped")
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

fn tls_options(tls: &EtcdTls) -> Result<Option<TlsOptions>, String> {
    if *tls == EtcdTls::default() {
        return Ok(None);
    }
    let mut opts = TlsOptions::new();
    if let Some(ca) = &tls.ca_cert {
        opts = opts.ca_certificate(Certificate::from_pem(ca.bytes("CA certificate")?));
    }
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            opts = opts.identity(Identity::from_pem(
                cert.bytes("client certificate")?,
                key.bytes("client key")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(
                "a client certificate needs both a certificate (ETCD_CERT_FILE or \
                 ETCD_CERT) and a key (ETCD_KEY_FILE or ETCD_KEY)"
                    .to_string(),
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
            let mut unreadable = Vec::new();
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
                match self.key_value(key.clone(), &ek, kv) {
                    Ok(item) => items.push(item),
                    // One bad record is named, never hides the others.
                    Err(e) => unreadable.push(Unreadable {
                        key,
                        mod_revision: kv.mod_revision(),
                        reason: match e {
                            DatastoreError::Corrupt { reason, .. } => reason,
                            other => other.to_string(),
                        },
                    }),
                }
            }
            items.sort_by(|a, b| {
                (&a.key.namespace, &a.key.name).cmp(&(&b.key.namespace, &b.key.name))
            });
            Ok(ListResult {
                items,
                unreadable,
                revision,
            })
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
