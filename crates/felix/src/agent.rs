//! The agent loop: sync, program, watch, repair.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use calico_api::Kind;
use calico_dataplane::{HostOptions, Nft, add_nat_outgoing, batch, render_with};
use calico_datastore::{Datastore, DatastoreError, WatchEvent, WatchFilter, Watcher};
use calico_netlink::Netlink;
use calico_policy::{INPUT_KINDS, PolicyCalculator, Update};
use serde_json::Value;

use crate::cluster::{self, Cluster};
use crate::metrics::Metrics;
use crate::routes::{self, Desired};

pub use crate::routes::{Encap, VxlanParams as VxlanConfig};

/// Why a sync or a programming pass failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The datastore could not be read.
    #[error("reading the datastore: {0}")]
    Datastore(#[from] DatastoreError),
    /// nftables rejected the batch (nothing was changed).
    #[error("programming nftables: {0}")]
    Nft(#[from] calico_dataplane::Error),
    /// Serializing the batch failed.
    #[error("serializing the nftables batch: {0}")]
    Json(#[from] serde_json::Error),
}

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// This host's name (its `Node` resource).
    pub node: String,
    /// How traffic to other hosts is carried (VXLAN, IP-in-IP or none).
    pub encap: Encap,
    /// How often the kernel is checked for drift (our table or routes
    /// changed behind our back).
    pub resync_interval: Duration,
    /// How long to wait before retrying an unreachable datastore.
    pub retry_interval: Duration,
    /// Longest time a change waits for more changes before being programmed.
    pub batch_window: Duration,
    /// Failsafe ports of host endpoints (the VXLAN port is added from `encap`).
    pub host: HostOptions,
}

impl Config {
    /// Defaults for host `node`: no encapsulation, drift check every 2 s, retry every second.
    pub fn new(node: impl Into<String>) -> Self {
        Config {
            node: node.into(),
            encap: Encap::None,
            resync_interval: Duration::from_secs(2),
            retry_interval: Duration::from_secs(1),
            batch_window: Duration::from_millis(100),
            host: HostOptions::default(),
        }
    }
}

/// Health, shared with the HTTP endpoints.
#[derive(Debug, Default)]
pub struct Status {
    /// The dataplane has been programmed from a complete sync.
    pub ready: AtomicBool,
    /// The datastore is in sync right now (false during an outage).
    pub in_sync: AtomicBool,
    /// When the loop last ran (ms since the epoch): liveness.
    pub heartbeat_ms: AtomicU64,
}

impl Status {
    fn beat(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.heartbeat_ms.store(now, Ordering::Relaxed);
    }

    /// Whether the loop ran within `within`.
    pub fn live(&self, within: Duration) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let last = self.heartbeat_ms.load(Ordering::Relaxed);
        last != 0
            && now.saturating_sub(last) <= u64::try_from(within.as_millis()).unwrap_or(u64::MAX)
    }
}

struct State {
    calc: PolicyCalculator,
    cluster: Cluster,
}

/// What was last programmed, to skip no-op batches and detect drift.
struct Applied {
    batch: Value,
    rules: usize,
    routes: Desired,
}

/// The agent: owns the kernel state of one host.
pub struct Felix<N: Netlink, F: Nft> {
    cfg: Config,
    ds: Arc<dyn Datastore>,
    nl: N,
    nft: F,
    state: Option<State>,
    applied: Option<Applied>,
    status: Arc<Status>,
    metrics: Metrics,
    /// Route errors last reported, so a lasting one (e.g. no ipip module) is said once.
    reported: Vec<String>,
}

fn policy_kind(kind: &str) -> Option<Kind> {
    Kind::from_document_kind(kind).filter(|k| INPUT_KINDS.contains(k))
}

impl<N: Netlink, F: Nft> Felix<N, F> {
    /// An agent programming through `nl` and `nft` from `ds`.
    pub fn new(cfg: Config, ds: Arc<dyn Datastore>, nl: N, nft: F) -> Self {
        Felix {
            cfg,
            ds,
            nl,
            nft,
            state: None,
            applied: None,
            status: Arc::new(Status::default()),
            metrics: Metrics::default(),
            reported: Vec::new(),
        }
    }

    /// The health flags, to share with the HTTP endpoints.
    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    /// The metrics, to register with a registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.status.beat();
            let mut watcher = match self.sync() {
                Ok(w) => w,
                Err(e) => {
                    // The last programmed state stays in force; keep it intact.
                    eprintln!("felix: {e}; keeping the last programmed state, retrying");
                    self.metrics.errors.inc();
                    self.status.in_sync.store(false, Ordering::Relaxed);
                    self.repair_drift();
                    std::thread::sleep(self.cfg.retry_interval);
                    continue;
                }
            };
            self.metrics.resyncs.inc();
            self.program(Instant::now());
            self.status.in_sync.store(true, Ordering::Relaxed);
            self.watch(watcher.as_mut(), stop);
        }
    }

    /// Follows the watch until it fails or `stop` is set.
    fn watch(&mut self, watcher: &mut dyn Watcher, stop: &AtomicBool) {
        let mut dirty_since: Option<Instant> = None;
        let mut last_check = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.status.beat();
            let wait = if dirty_since.is_some() {
                Duration::from_millis(10)
            } else {
                Duration::from_millis(200)
            };
            match watcher.next(wait) {
                Ok(Some(ev)) => {
                    self.handle(ev);
                    let since = *dirty_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.cfg.batch_window {
                        dirty_since = None;
                        self.program(since);
                    }
                }
                Ok(None) => {
                    if let Some(since) = dirty_since.take() {
                        self.program(since);
                    }
                }
                Err(e) => {
                    eprintln!("felix: watching the datastore: {e}; resyncing");
                    self.metrics.errors.inc();
                    self.status.in_sync.store(false, Ordering::Relaxed);
                    if let Some(since) = dirty_since.take() {
                        self.program(since);
                    }
                    std::thread::sleep(self.cfg.retry_interval);
                    return;
                }
            }
            if last_check.elapsed() >= self.cfg.resync_interval {
                self.repair_drift();
                last_check = Instant::now();
            }
        }
    }

    /// Reads everything anew into a fresh calculation and starts a watch
    /// right after it. The kernel is not touched here.
    pub fn sync(&mut self) -> Result<Box<dyn Watcher>, Error> {
        let node = self.cfg.node.clone();
        let rev = self.ds.revision()?;
        let mut calc = PolicyCalculator::new(node.as_str());
        let mut cluster = Cluster::default();
        for kind in INPUT_KINDS {
            for kv in self.ds.list(kind.as_str(), None)?.items {
                if matches!(kind, Kind::WorkloadEndpoint | Kind::HostEndpoint) {
                    note(cluster.apply(
                        &node,
                        kind.as_str(),
                        kv.key.namespace.as_deref(),
                        &kv.key.name,
                        Some(&kv.value),
                    ));
                }
                stage(&mut calc, &kv.key.to_string(), Some(kv.value), None);
            }
        }
        for kind in [cluster::KIND_NODE, cluster::KIND_POOL, cluster::KIND_BLOCK] {
            for kv in self.ds.list(kind, None)?.items {
                note(cluster.apply(
                    &node,
                    kind,
                    kv.key.namespace.as_deref(),
                    &kv.key.name,
                    Some(&kv.value),
                ));
            }
        }
        // Events after `rev` replay on top of the lists: upserts are
        // idempotent and every delete comes after what it deletes.
        let watcher = self.ds.watch(WatchFilter::default(), rev)?;
        self.state = Some(State { calc, cluster });
        Ok(watcher)
    }

    /// Applies one datastore change to the model (not yet to the kernel).
    fn handle(&mut self, ev: WatchEvent) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let kind = ev.key.kind.as_str();
        if cluster::KINDS.contains(&kind) {
            note(state.cluster.apply(
                &self.cfg.node,
                kind,
                ev.key.namespace.as_deref(),
                &ev.key.name,
                ev.value.as_ref(),
            ));
        }
        if let Some(k) = policy_kind(kind) {
            let delete = Update::Delete {
                kind: k,
                namespace: ev.key.namespace.clone(),
                name: ev.key.name.clone(),
            };
            stage(&mut state.calc, &ev.key.to_string(), ev.value, Some(delete));
        }
    }

    /// Programs the kernel from the model: one nftables batch (skipped when
    /// identical to the last) and the routes. `since` is when the oldest
    /// change it carries was seen.
    pub fn program(&mut self, since: Instant) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        state.calc.flush();
        let snapshot = state.calc.snapshot();
        let mut host = self.cfg.host.clone();
        if let Encap::Vxlan(v) = &self.cfg.encap {
            host.vxlan_port = Some(v.port);
        }
        let mut ruleset = render_with(&snapshot, &state.cluster.interfaces(), &host);
        let (masq, all) = state.cluster.nat_pools();
        add_nat_outgoing(&mut ruleset, &masq, &all);
        let rules = ruleset
            .objects
            .iter()
            .filter(|o| matches!(o, nftables::schema::NfListObject::Rule(_)))
            .count();
        let routes = routes::desired(&self.cfg.node, &self.cfg.encap, &state.cluster);
        self.metrics
            .endpoints
            .set(i64::try_from(snapshot.programs.len()).unwrap_or(i64::MAX));
        self.metrics
            .ip_sets
            .set(i64::try_from(snapshot.ip_sets.len()).unwrap_or(i64::MAX));
        let nft_batch = batch(&ruleset);
        let result = serde_json::to_value(&nft_batch)
            .map_err(Error::from)
            .and_then(|json| {
                let same = self.applied.as_ref().is_some_and(|a| a.batch == json);
                if !same {
                    self.nft.apply(&nft_batch)?;
                }
                Ok(json)
            });
        match result {
            Ok(json) => {
                self.metrics
                    .rules
                    .set(i64::try_from(rules).unwrap_or(i64::MAX));
                self.applied = Some(Applied {
                    batch: json,
                    rules,
                    routes: routes.clone(),
                });
            }
            Err(e) => {
                eprintln!("felix: {e}");
                self.metrics.errors.inc();
            }
        }
        let report = routes::reconcile(&mut self.nl, &routes);
        self.report_route_errors(&report);
        if let Some(a) = self.applied.as_mut() {
            a.routes = routes;
        }
        self.metrics
            .programming_seconds
            .observe(since.elapsed().as_secs_f64());
        self.status.ready.store(true, Ordering::Relaxed);
    }

    /// Puts back what was last programmed if the kernel lost it.
    pub fn repair_drift(&mut self) {
        let Some(applied) = self.applied.as_ref() else {
            return;
        };
        let listed_rules = self.nft.list_owned().ok().and_then(|t| {
            let v = serde_json::to_value(&t).ok()?;
            Some(
                v["nftables"]
                    .as_array()?
                    .iter()
                    .filter(|o| o.get("rule").is_some())
                    .count(),
            )
        });
        if listed_rules != Some(applied.rules) {
            eprintln!(
                "felix: nftables table drifted ({} rules, expected {}); reprogramming",
                listed_rules.map_or("no table".to_owned(), |n| n.to_string()),
                applied.rules
            );
            let json = applied.batch.clone();
            match serde_json::from_value::<nftables::schema::Nftables<'_>>(json)
                .map_err(Error::from)
                .and_then(|b| Ok(self.nft.apply(&b)?))
            {
                Ok(()) => {
                    self.metrics.drift_repairs.inc();
                }
                Err(e) => {
                    eprintln!("felix: repairing nftables: {e}");
                    self.metrics.errors.inc();
                }
            }
        }
        let routes = applied.routes.clone();
        let report = routes::reconcile(&mut self.nl, &routes);
        if !report.changes.is_empty() {
            eprintln!("felix: repaired routes: {}", report.changes.join("; "));
            self.metrics.drift_repairs.inc();
        }
        self.report_route_errors(&report);
    }

    /// Counts every route error and prints the ones not printed last time.
    fn report_route_errors(&mut self, report: &routes::Report) {
        let now: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        for e in &now {
            self.metrics.errors.inc();
            if !self.reported.contains(e) {
                eprintln!("felix: programming routes: {e}");
            }
        }
        self.reported = now;
    }
}

/// Feeds one stored value (or its deletion) to the calculation. Invalid
/// content is reported and left out: one bad object must not stop the host.
fn stage(calc: &mut PolicyCalculator, what: &str, value: Option<Value>, delete: Option<Update>) {
    let update = match value {
        Some(v) => match calico_api::parse_resource(v) {
            Ok(r) => match Update::from_resource(&r) {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("felix: datastore content {what}: {e}; ignored");
                    return;
                }
            },
            Err(e) => {
                eprintln!("felix: datastore content {what} is invalid: {e}; ignored");
                return;
            }
        },
        None => delete,
    };
    if let Some(u) = update
        && let Err(e) = calc.stage(u)
    {
        eprintln!("felix: datastore content {what}: {e}; ignored");
    }
}

fn note(r: Result<(), cluster::Error>) {
    if let Err(e) = r {
        eprintln!("felix: {e}; ignored");
    }
}
