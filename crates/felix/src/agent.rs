//! The agent loop: sync, program, watch, repair.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use calico_dataplane::diff::{Diff, TableModel, diff, split};
use calico_dataplane::render::{
    GEN_FAST_CHAIN, GEN_REMEMBER_CHAIN, generation_objects, ip_set_objects, set_name,
};
use calico_dataplane::{
    Conntrack, EndpointToHostAction, Failsafe, HostOptions, Interface, Nft, NftMonitor,
    RenderCache, Ruleset, add_nat_outgoing, batch, fail_closed_table, render_cached,
};
use nftables::schema::NfListObject;

/// Most new rules in one nftables commit: a commit holds the netfilter lock
/// (and stalls forwarding) for as long as it runs, about 40 ms per 1,000
/// rules here.
const MAX_RULES_PER_COMMIT: usize = 1_000;

/// The chains that change with the policy generation alone.
const GENERATION_CHAINS: [&str; 2] = [GEN_FAST_CHAIN, GEN_REMEMBER_CHAIN];
use calico_datastore::{Datastore, DatastoreError};
use calico_netlink::events::RouteEvents;
use calico_netlink::{Netlink, Sysctl};
use calico_policy::model::IpSetMember;
use calico_policy::{Delta, EndpointId, INPUT_KINDS, PolicyCalculator, Snapshot, Update};
use calico_sync::{Backoff, Resource, SyncEvent, Syncer};

use crate::cluster::{self, Cluster, FelixSettings};
use crate::metrics::Metrics;
use crate::routes;
use calico_dataplane::routes::{Desired, Report as RouteReport, reconcile};

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
    /// The sync layer could not catch up with the datastore.
    #[error("{0}")]
    Sync(String),
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
    /// `DefaultEndpointToHostAction` from the environment
    /// (`FELIX_DEFAULTENDPOINTTOHOSTACTION`): overrides FelixConfiguration.
    pub endpoint_to_host: Option<EndpointToHostAction>,
    /// `workloadSourceSpoofing` from the environment
    /// (`FELIX_WORKLOADSOURCESPOOFING`, `Any`: true): overrides FelixConfiguration.
    pub source_spoofing: Option<bool>,
    /// How long a failed-closed dataplane waits before trying the desired
    /// table again (it is also tried on every datastore change).
    pub failure_retry_interval: Duration,
    /// Watch the kernel's nftables notifications (`nft monitor`) for changes
    /// to our table by another process and repair them at once. Needs our
    /// own changes to come from this process (libnftables); then the whole
    /// table is read back only every `verify_interval`.
    pub nft_monitor: bool,
    /// How often the whole table is read back and checked while the monitor
    /// runs (without it, every `resync_interval`).
    pub verify_interval: Duration,
    /// Where to say which local endpoints have their policy in force: a file
    /// `DIR/NAMESPACE/NAME` per endpoint, which the CNI plugin waits for
    /// (`policy_setup_timeout_seconds`). None: not written.
    pub endpoint_status_dir: Option<std::path::PathBuf>,
    /// `failsafeInboundHostPorts` from the environment: overrides FelixConfiguration.
    pub failsafe_inbound: Option<Vec<Failsafe>>,
    /// `failsafeOutboundHostPorts` from the environment: overrides FelixConfiguration.
    pub failsafe_outbound: Option<Vec<Failsafe>>,
    /// The start-time parameters in force and the environment's overrides
    /// of them: a FelixConfiguration change to one makes the agent stop
    /// with [`Felix::restart_reason`]. None: not watched.
    pub startup: Option<(StartupOverrides, StartupParams)>,
    /// The flow log told which rule each log prefix of the table stands for; its group
    /// goes in `host.flow_log_group`. None: no flow logs.
    pub flow_log: Option<Arc<crate::flowlog::FlowLog>>,
}

/// The parameters that take effect only when the agent starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupParams {
    /// `endpointStatusPathPrefix`.
    pub endpoint_status_prefix: std::path::PathBuf,
    /// `healthPort`.
    pub health_port: u16,
    /// `prometheusMetricsPort`.
    pub metrics_port: u16,
}

/// What the environment or command line says of [`StartupParams`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupOverrides {
    /// `FELIX_ENDPOINTSTATUSPATHPREFIX`.
    pub endpoint_status_prefix: Option<std::path::PathBuf>,
    /// `FELIX_HEALTHPORT`.
    pub health_port: Option<u16>,
    /// `FELIX_PROMETHEUSMETRICSPORT`.
    pub metrics_port: Option<u16>,
}

impl StartupParams {
    /// Felix's defaults (DC/OS ran felix's metrics on 9091 as well).
    pub fn defaults() -> Self {
        StartupParams {
            endpoint_status_prefix: "/var/run/calico".into(),
            health_port: 9099,
            metrics_port: 9091,
        }
    }

    /// The environment over the datastore's `settings` over the defaults.
    pub fn resolve(overrides: &StartupOverrides, settings: &FelixSettings) -> Self {
        let d = Self::defaults();
        StartupParams {
            endpoint_status_prefix: overrides
                .endpoint_status_prefix
                .clone()
                .or_else(|| settings.endpoint_status_prefix.clone().map(Into::into))
                .unwrap_or(d.endpoint_status_prefix),
            health_port: overrides
                .health_port
                .or(settings.health_port)
                .unwrap_or(d.health_port),
            metrics_port: overrides
                .metrics_port
                .or(settings.metrics_port)
                .unwrap_or(d.metrics_port),
        }
    }
}

/// The FelixConfiguration settings for host `node` as the datastore holds
/// them now (for the start-time parameters, before the agent runs).
pub fn settings_from_datastore(ds: &dyn Datastore, node: &str) -> Result<FelixSettings, Error> {
    let mut cluster = Cluster::default();
    let node_key = calico_datastore::Key::global(calico_api::Kind::Node, node);
    let mut values = ds.list(calico_api::Kind::FelixConfiguration, None)?.items;
    values.extend(ds.get(&node_key)?);
    for kv in values {
        match Resource::decode(&kv.key, kv.value) {
            Ok(resource) => note(cluster.apply(node, &kv.key, Some(&resource))),
            Err(e) => tracing::warn!(target: "felix", "datastore content {}: {e}; ignored", kv.key),
        }
    }
    Ok(cluster.felix_settings(node))
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
            endpoint_to_host: None,
            source_spoofing: None,
            failure_retry_interval: Duration::from_secs(10),
            nft_monitor: false,
            verify_interval: Duration::from_secs(60),
            endpoint_status_dir: None,
            failsafe_inbound: None,
            failsafe_outbound: None,
            startup: None,
            flow_log: None,
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

/// The policy generation after `g` (0 is never used: it is an unmarked flow's).
fn next_generation(g: u16) -> u16 {
    g.checked_add(1).unwrap_or(1)
}

/// Deletes the flows whose conntrack mark carries `generation`.
fn sweep_generation(
    conntrack: &mut impl Conntrack,
    generation: u16,
) -> Result<(), calico_dataplane::Error> {
    conntrack.flush_mark(
        u32::from(generation) << calico_dataplane::render::CT_GENERATION_SHIFT,
        calico_dataplane::render::CT_GENERATION_MASK,
    )
}

/// Everything the table is rendered from besides the calculation's output.
#[derive(Debug, Clone, PartialEq)]
struct RenderInputs {
    /// The renderer's settings, generation left at 0 (it is new every pass).
    host: HostOptions,
    /// Local endpoints' interfaces.
    ifaces: BTreeMap<EndpointId, Interface>,
    /// (pools with natOutgoing, all pools).
    nat: (Vec<ipnet::IpNet>, Vec<ipnet::IpNet>),
}

/// What was last programmed, to skip no-op batches and detect drift.
struct Applied {
    /// What is in the kernel (the desired table, or a failed-closed form of
    /// it), by name: what the next change is compared with.
    model: TableModel,
    rules: usize,
    routes: Desired,
    /// What the table was rendered from, besides the calculation's output.
    inputs: RenderInputs,
    /// The policy generation flows allowed by this table carry.
    generation: u16,
    /// The desired table is not what is programmed (see [`Outcome`]).
    degraded: bool,
}

/// How a programming pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The desired table is in force.
    Programmed,
    /// The kernel rejected the desired table; it is in force with these
    /// chains (and what they are) dropping everything instead.
    FailedClosed(Vec<(String, String)>),
    /// Nothing of the desired table could be programmed: every workload
    /// interface is dropped.
    AllFailedClosed,
}

/// Messages in force, each printed once when it appears.
#[derive(Debug, Default)]
struct Said(BTreeMap<&'static str, BTreeSet<String>>);

impl Said {
    /// Prints the lines of `topic` not printed last time; forgets the ones gone.
    fn say(&mut self, topic: &'static str, lines: Vec<String>) {
        let now: BTreeSet<String> = lines.into_iter().collect();
        let before = self.0.entry(topic).or_default();
        for line in now.difference(before) {
            tracing::warn!(target: "felix", "{topic}: {line}");
        }
        *before = now;
    }
}

/// The agent: owns the kernel state of one host.
pub struct Felix<N: Netlink, F: Nft, C: Conntrack, S: Sysctl> {
    cfg: Config,
    ds: Arc<dyn Datastore>,
    nl: N,
    nft: F,
    conntrack: C,
    sysctl: S,
    /// The typed stream of datastore changes.
    syncer: Syncer<Arc<dyn Datastore>>,
    /// The model: always there, except while a programming pass has it.
    state: Option<State>,
    /// The model is complete (the syncer said so and has not lost the
    /// datastore since): programming is allowed.
    in_sync: bool,
    /// Records that cannot be read, with whether a good version of each is
    /// in force; one without is a hole in the model: not ready.
    unreadable: BTreeMap<calico_datastore::Key, bool>,
    applied: Option<Applied>,
    status: Arc<Status>,
    metrics: Metrics,
    said: Said,
    /// When the desired table last failed to program.
    failed_at: Option<Instant>,
    /// (endpoint, address) pairs of local endpoints last programmed: a pair
    /// that goes away has its flows deleted.
    local_addresses: BTreeSet<(String, IpAddr)>,
    /// Workload interfaces whose sysctls are written, with the spoofing
    /// setting they were written for.
    configured_ifaces: BTreeMap<String, bool>,
    /// Policy and profile chains rendered before, reused while unchanged.
    render_cache: RenderCache,
    /// Kernel notifications of changes to our table by others.
    monitor: Option<NftMonitor>,
    /// What our table in the kernel holds, as far as we know.
    kernel: KernelView,
    /// The policy generation whose flows were last deleted (the next one to
    /// be used, once a change has been programmed).
    cleared_generation: Option<u16>,
    /// The generation to clear when felix is next idle (the one after the
    /// one just put in force).
    pending_clear: Option<u16>,
    /// The last full pass found no policy this dataplane cannot enforce.
    enforces_every_policy: bool,
    /// Member-only changes skip the full pass (see [`Felix::program`]).
    member_fast_path: bool,
    /// `net.ipv6.conf.all.forwarding` is on (set for the first local IPv6 endpoint).
    ipv6_forwarding: bool,
    /// Endpoint status files written (`namespace/name`); None before the
    /// first write, when stale files of an earlier run are swept.
    status_written: Option<BTreeSet<String>>,
    /// (resource, field) pairs of unimplemented FelixConfiguration
    /// parameters already warned about.
    warned_unimplemented: BTreeSet<(String, String)>,
    /// Why the agent stopped to be restarted (a start-time parameter changed).
    restart_reason: Option<String>,
}

/// What our table in the kernel holds, as far as felix knows: the monitor
/// counts the rules a whole-table replacement deletes from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelView {
    /// Not known (a table from an earlier run, or changed by someone else).
    Unknown,
    /// The fail-closed table felix put in.
    FailClosed,
    /// What [`Applied::model`] says.
    Applied,
}

/// The kernel interfaces felix programs through.
pub struct Kernel<N: Netlink, F: Nft, C: Conntrack, S: Sysctl> {
    /// Routes, links, neighbours.
    pub netlink: N,
    /// nftables.
    pub nft: F,
    /// Conntrack entries.
    pub conntrack: C,
    /// `/proc/sys`.
    pub sysctl: S,
}

impl<N: Netlink, F: Nft, C: Conntrack + Send, S: Sysctl> Felix<N, F, C, S> {
    /// An agent programming `kernel` from `ds`.
    pub fn new(cfg: Config, ds: Arc<dyn Datastore>, kernel: Kernel<N, F, C, S>) -> Self {
        let kinds = INPUT_KINDS.into_iter().chain(cluster::KINDS);
        let syncer = Syncer::new(ds.clone(), kinds).with_backoff(Backoff {
            min: cfg.retry_interval,
            max: cfg.retry_interval * 8,
        });
        let state = State {
            calc: PolicyCalculator::new(cfg.node.as_str()),
            cluster: Cluster::default(),
        };
        Felix {
            cfg,
            ds,
            nl: kernel.netlink,
            nft: kernel.nft,
            conntrack: kernel.conntrack,
            sysctl: kernel.sysctl,
            syncer,
            state: Some(state),
            in_sync: false,
            unreadable: BTreeMap::new(),
            applied: None,
            status: Arc::new(Status::default()),
            metrics: Metrics::default(),
            said: Said::default(),
            failed_at: None,
            local_addresses: BTreeSet::new(),
            configured_ifaces: BTreeMap::new(),
            render_cache: RenderCache::default(),
            monitor: None,
            kernel: KernelView::Unknown,
            cleared_generation: None,
            pending_clear: None,
            status_written: None,
            enforces_every_policy: true,
            member_fast_path: true,
            ipv6_forwarding: false,
            warned_unimplemented: BTreeSet::new(),
            restart_reason: None,
        }
    }

    /// Why [`Felix::run`] returned by itself: a FelixConfiguration change to
    /// a parameter that takes effect only at start. The caller restarts.
    pub fn restart_reason(&self) -> Option<&str> {
        self.restart_reason.as_deref()
    }

    /// After a FelixConfiguration or Node change: warns once per resource
    /// and field about parameters calico-rs does not implement, and asks for
    /// a restart when a start-time parameter changed.
    fn check_felix_settings(&mut self) {
        let Some(state) = self.state.as_ref() else {
            return;
        };
        for (name, entry) in state.cluster.felix_configs_for(&self.cfg.node) {
            for field in &entry.unimplemented {
                if self
                    .warned_unimplemented
                    .insert((name.to_owned(), field.clone()))
                {
                    tracing::warn!(
                        target: "felix",
                        "FelixConfiguration {name} sets {field}, which calico-rs does not \
                         implement: it has no effect"
                    );
                }
            }
        }
        if let Some((overrides, in_force)) = &self.cfg.startup {
            let wanted =
                StartupParams::resolve(overrides, &state.cluster.felix_settings(&self.cfg.node));
            if wanted != *in_force && self.restart_reason.is_none() {
                let reason = format!(
                    "FelixConfiguration changed a parameter that applies at start \
                     (now {wanted:?}, running with {in_force:?})"
                );
                tracing::warn!(target: "felix", "{reason}: stopping to restart");
                self.restart_reason = Some(reason);
            }
        }
    }

    /// Applies a batch that replaces the whole table (telling the monitor
    /// the events to come are ours).
    fn apply_whole(
        &mut self,
        whole: &nftables::schema::Nftables<'_>,
    ) -> Result<(), calico_dataplane::Error> {
        if let Some(m) = &self.monitor {
            match self.kernel {
                KernelView::Unknown => m.expect(whole, None),
                KernelView::FailClosed => {
                    m.expect(whole, Some(&TableModel::of(&fail_closed_table())));
                }
                KernelView::Applied => m.expect(whole, self.applied.as_ref().map(|a| &a.model)),
            }
        }
        let applied = self.nft.apply(whole);
        match &applied {
            Ok(()) => self.kernel = KernelView::Unknown,
            Err(_) => {
                if let Some(m) = &self.monitor {
                    m.forget();
                }
            }
        }
        applied
    }

    /// Before anything else: without a table of ours (a fresh boot, or it
    /// was deleted while felix was down), put one in that drops every
    /// workload interface, so nothing runs open until the first complete
    /// sync. An existing table stays as it is (restart-safe).
    pub fn fail_closed_until_synced(&mut self) {
        if self.nft.list_owned().is_ok() {
            return;
        }
        tracing::warn!(target: "felix", "no nftables table yet: dropping workload traffic until the first sync");
        // There is no table: nothing to delete.
        self.kernel = KernelView::FailClosed;
        let empty = TableModel::default();
        if let Some(m) = &self.monitor {
            m.expect(&batch(&fail_closed_table()), Some(&empty));
        }
        if let Err(e) = self.nft.apply(&batch(&fail_closed_table())) {
            tracing::warn!(target: "felix", "installing the fail-closed table: {e}");
            self.metrics.errors.inc();
            self.kernel = KernelView::Unknown;
            if let Some(m) = &self.monitor {
                m.forget();
            }
        }
    }

    /// Whether a change that only moves IP set members is programmed as
    /// those members alone (the default) or by a full pass: off only to
    /// measure one against the other.
    pub fn set_member_fast_path(&mut self, on: bool) {
        self.member_fast_path = on;
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
        // The monitor starts once the first table is in: the kernel sends
        // it a notification per rule, which would slow the cold start.
        let mut monitor_wanted = self.cfg.nft_monitor;
        // Routes, links and neighbours changed by others are noticed from
        // the kernel's notifications; the timer below stays as the fallback.
        let route_events = match RouteEvents::spawn() {
            Ok(events) => Some(events),
            Err(e) => {
                tracing::warn!(target: "felix", "{e}; checking routes every {:?} instead",
                    self.cfg.resync_interval
                );
                None
            }
        };
        self.fail_closed_until_synced();
        let mut dirty_since: Option<Instant> = None;
        let mut last_check = Instant::now();
        let mut last_verify = Instant::now();
        while !stop.load(Ordering::Relaxed) && self.restart_reason.is_none() {
            self.status.beat();
            let wait = if dirty_since.is_some() {
                Duration::from_millis(10)
            } else if self.pending_clear.is_some() {
                Duration::ZERO
            } else {
                Duration::from_millis(200)
            };
            match self.syncer.next(wait) {
                Some(ev) => {
                    let was_in_sync = self.in_sync;
                    let settings_event = match &ev {
                        SyncEvent::Set { key, .. } | SyncEvent::Deleted { key, .. } => {
                            matches!(
                                key.kind,
                                calico_api::Kind::FelixConfiguration | calico_api::Kind::Node
                            )
                        }
                        SyncEvent::InSync { .. } => true,
                        _ => false,
                    };
                    let changed = self.take(ev);
                    if settings_event && self.in_sync {
                        self.check_felix_settings();
                    }
                    if changed {
                        dirty_since.get_or_insert_with(Instant::now);
                    }
                    if self.in_sync && !was_in_sync {
                        // Complete again (or for the first time): program at once.
                        self.metrics.resyncs.inc();
                        self.program(dirty_since.take().unwrap_or_else(Instant::now));
                    } else if let Some(since) = dirty_since
                        && self.in_sync
                        && since.elapsed() >= self.cfg.batch_window
                    {
                        dirty_since = None;
                        self.program(since);
                    }
                }
                None => {
                    if self.in_sync
                        && let Some(since) = dirty_since.take()
                    {
                        self.program(since);
                    } else {
                        self.idle();
                    }
                }
            }
            if self.applied.is_none() {
                // Nothing programmed yet: the fail-closed table stays as it is.
                continue;
            }
            if std::mem::take(&mut monitor_wanted) {
                self.start_monitor();
            }
            if self
                .monitor
                .as_ref()
                .is_some_and(NftMonitor::take_foreign_change)
            {
                self.kernel = KernelView::Unknown;
                self.reload_table("changed by another process");
            }
            if route_events.as_ref().is_some_and(RouteEvents::take_change) {
                self.repair_routes_and_interfaces();
            }
            if last_check.elapsed() >= self.cfg.resync_interval {
                let monitored = self.monitor.as_mut().is_some_and(NftMonitor::alive);
                if !monitored || last_verify.elapsed() >= self.cfg.verify_interval {
                    self.verify_table();
                    last_verify = Instant::now();
                }
                self.repair_routes_and_interfaces();
                last_check = Instant::now();
            }
            if self.in_sync
                && dirty_since.is_none()
                && self
                    .failed_at
                    .is_some_and(|t| t.elapsed() >= self.cfg.failure_retry_interval)
            {
                self.program(Instant::now());
            }
        }
    }

    /// Starts the nft monitor, then reads the table back once: a change by
    /// someone else before the monitor listened is found now.
    fn start_monitor(&mut self) {
        match NftMonitor::spawn() {
            Ok(m) => self.monitor = Some(m),
            Err(e) => {
                tracing::info!(target: "felix", "starting nft monitor: {e}; checking the table every {:?} instead",
                    self.cfg.resync_interval
                )
            }
        }
        self.verify_table();
    }

    /// Catches up with the datastore as it is now (the first call reads
    /// everything), without touching the kernel: for tests and tools that
    /// drive the agent step by step.
    pub fn sync(&mut self) -> Result<(), Error> {
        let target = self.ds.revision()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(self.in_sync && self.syncer.revision() >= target) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.syncer.next(left) {
                Some(SyncEvent::Lost { error }) => return Err(Error::Sync(error)),
                Some(ev) => {
                    self.take(ev);
                }
                None if left.is_zero() => {
                    return Err(Error::Sync(format!(
                        "not caught up with revision {target} within 30s"
                    )));
                }
                None => {}
            }
        }
        self.check_felix_settings();
        Ok(())
    }

    /// Applies one event of the sync layer to the model (not yet to the
    /// kernel). Returns whether the model may have changed.
    fn take(&mut self, ev: SyncEvent) -> bool {
        let Some(state) = self.state.as_mut() else {
            return false;
        };
        match ev {
            SyncEvent::Set { key, resource, .. } => {
                self.unreadable.remove(&key);
                note(state.cluster.apply(&self.cfg.node, &key, Some(&resource)));
                if let Some(update) = Update::from_typed(resource)
                    && let Err(e) = state.calc.stage(update)
                {
                    tracing::warn!(target: "felix", "datastore content {key}: {e}; ignored");
                }
                true
            }
            SyncEvent::Deleted { key, .. } => {
                self.unreadable.remove(&key);
                note(state.cluster.apply(&self.cfg.node, &key, None));
                if let Some(update) = Update::delete_key(&key)
                    && let Err(e) = state.calc.stage(update)
                {
                    tracing::warn!(target: "felix", "datastore content {key}: {e}; ignored");
                }
                true
            }
            SyncEvent::Unreadable {
                key, error, kept, ..
            } => {
                // What was known of it stays in force: dropping a policy
                // because its record broke would fail open. With nothing
                // known, everything else is programmed and felix is not ready.
                if kept {
                    tracing::warn!(target: "felix", "{error}; keeping the last good version of it");
                } else {
                    tracing::warn!(
                        target: "felix",
                        "{error}; no good version of it is known: programming everything \
                         else, not ready until it is repaired or deleted"
                    );
                }
                self.metrics.errors.inc();
                self.unreadable.insert(key, kept);
                // Readiness and the count change even when nothing else does.
                true
            }
            SyncEvent::InSync { .. } => {
                self.in_sync = true;
                self.status.in_sync.store(true, Ordering::Relaxed);
                false
            }
            SyncEvent::Lost { error } => {
                // The last programmed state stays in force until the
                // syncer has caught up again.
                tracing::warn!(target: "felix", "{error}; keeping the last programmed state, resyncing");
                self.metrics.errors.inc();
                self.in_sync = false;
                self.status.in_sync.store(false, Ordering::Relaxed);
                false
            }
        }
    }

    /// The renderer's settings for the current model, with `generation`.
    fn host_options(&self, cluster: &Cluster, generation: u16) -> HostOptions {
        let settings = cluster.felix_settings(&self.cfg.node);
        let mut host = self.cfg.host.clone();
        match &self.cfg.encap {
            Encap::Vxlan(v) => host.vxlan_port = Some(v.port),
            Encap::Ipip(_) => host.ipip = true,
            Encap::None => {}
        }
        host.calico_hosts = cluster.host_addresses();
        host.endpoint_to_host = self
            .cfg
            .endpoint_to_host
            .or(settings.endpoint_to_host)
            .unwrap_or_default();
        if let Some(ports) = self
            .cfg
            .failsafe_inbound
            .as_ref()
            .or(settings.failsafe_inbound.as_ref())
        {
            host.failsafe_inbound.clone_from(ports);
        }
        if let Some(ports) = self
            .cfg
            .failsafe_outbound
            .as_ref()
            .or(settings.failsafe_outbound.as_ref())
        {
            host.failsafe_outbound.clone_from(ports);
        }
        host.generation = generation;
        host
    }

    fn spoofing(&self, cluster: &Cluster) -> bool {
        self.cfg
            .source_spoofing
            .or(cluster.felix_settings(&self.cfg.node).source_spoofing)
            .unwrap_or(false)
    }

    /// What the cluster model gives the renderer.
    fn render_inputs(&self, cluster: &Cluster) -> RenderInputs {
        RenderInputs {
            host: self.host_options(cluster, 0),
            ifaces: cluster.interfaces(self.spoofing(cluster)),
            nat: cluster.nat_pools(),
        }
    }

    /// The desired table for `snapshot` and `inputs`, stamped with `generation`.
    fn render(&mut self, inputs: &RenderInputs, snapshot: &Snapshot, generation: u16) -> Ruleset {
        let mut host = inputs.host.clone();
        host.generation = generation;
        let mut ruleset = render_cached(snapshot, &inputs.ifaces, &host, &mut self.render_cache);
        if let Some(log) = &self.cfg.flow_log {
            log.set_attributions(&ruleset.attributions);
        }
        add_nat_outgoing(&mut ruleset, &inputs.nat.0, &inputs.nat.1);
        ruleset
    }

    /// Programs a pass whose only change is members of IP sets already in
    /// the table (an endpoint on another host came, went or was relabelled):
    /// those sets' elements, then the next policy generation, without
    /// rendering or comparing the rest of the table. False when the
    /// pass is more than that (or the kernel refused it): the full pass
    /// then does it.
    fn program_members(&mut self, state: &State, deltas: &[Delta], since: Instant) -> bool {
        let Some(applied) = self.applied.as_ref() else {
            return false;
        };
        if applied.degraded || self.kernel != KernelView::Applied || deltas.is_empty() {
            return false;
        }
        let mut ids = BTreeSet::new();
        for d in deltas {
            match d {
                Delta::IpSetMemberAdded { id, .. } | Delta::IpSetMemberRemoved { id, .. } => {
                    ids.insert(id);
                }
                _ => return false,
            }
        }
        if self.render_inputs(&state.cluster) != applied.inputs
            || routes::desired(&self.cfg.node, &self.cfg.encap, &state.cluster) != applied.routes
        {
            return false;
        }
        let mut names = Vec::new();
        let mut objects = Vec::new();
        for id in ids {
            let Some(named_port) = applied.model.set_is_concatenated(&set_name(id, false)) else {
                return false;
            };
            let Some(members) = state.calc.ip_set_members(id) else {
                return false;
            };
            let members: BTreeSet<IpSetMember> = members.cloned().collect();
            for o in ip_set_objects(id, &members, named_port) {
                let NfListObject::Set(set) = &o else {
                    return false;
                };
                // A set turning empty or not changes which rule variants
                // the policy chains hold: that is a full pass.
                let has = set.elem.as_ref().is_some_and(|e| !e.is_empty());
                if applied.model.set_has_elements(&set.name) != Some(has) {
                    return false;
                }
                names.push(set.name.to_string());
                objects.push(o);
            }
        }
        let (Some(have_sets), Some(have_generation)) = (
            applied.model.part(&names, &[]),
            applied.model.part(&[], &GENERATION_CHAINS),
        ) else {
            return false;
        };
        let want_sets = TableModel::from_objects(objects);
        let elements = match diff(&have_sets, &want_sets) {
            Diff::Batch { batch, .. } => batch,
            // The sets' elements are as they were (a member inside a net
            // already there): nothing for the kernel, as in a full pass.
            Diff::Same => return true,
            Diff::Replace => return false,
        };
        let generation = next_generation(applied.generation);
        let want_generation = TableModel::from_objects(generation_objects(generation));
        let Diff::Batch {
            batch: generation_batch,
            ..
        } = diff(&have_generation, &want_generation)
        else {
            return false;
        };
        if self.cleared_generation != Some(generation) {
            self.clear_generation(generation);
        }
        // Elements first (sent straight over netlink by libnftables'
        // wrapper, a tenth of a millisecond), then the generation: a flow
        // judged in between is judged by the new members and re-judged under
        // the new generation. The other order would stamp flows judged by
        // the old members with the new generation.
        let started = Instant::now();
        if let Err(e) = self.nft.apply(&elements) {
            tracing::warn!(target: "felix", "IP set update refused ({e}); programming the whole table");
            return false;
        }
        if let Some(a) = self.applied.as_mut() {
            a.model.overwrite(want_sets);
        }
        if let Some(m) = &self.monitor {
            m.expect(&generation_batch, Some(&have_generation));
        }
        if let Err(e) = self.nft.apply(&generation_batch) {
            if let Some(m) = &self.monitor {
                m.forget();
            }
            tracing::warn!(target: "felix", "new policy generation refused ({e}); programming the whole table");
            return false;
        }
        self.metrics
            .apply_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Some(a) = self.applied.as_mut() {
            a.model.overwrite(want_generation);
            a.generation = generation;
        }
        self.pending_clear = Some(next_generation(generation));
        self.metrics
            .workload_endpoints
            .set(i64::try_from(state.cluster.workload_endpoints.len()).unwrap_or(i64::MAX));
        self.metrics
            .programming_seconds
            .observe(since.elapsed().as_secs_f64());
        true
    }

    /// Programs the kernel from the model: one nftables batch (skipped when
    /// identical to the last), the workload interfaces' sysctls, the routes,
    /// and the flows of removed endpoints deleted. A change that only moved
    /// IP set members is programmed as those sets' elements alone. `since`
    /// is when the oldest change it carries was seen.
    pub fn program(&mut self, since: Instant) {
        if !self.in_sync {
            return;
        }
        let Some(mut state) = self.state.take() else {
            return;
        };
        let calc_started = Instant::now();
        let deltas = state.calc.flush();
        self.metrics
            .calc_seconds
            .observe(calc_started.elapsed().as_secs_f64());
        if self.member_fast_path && self.program_members(&state, &deltas, since) {
            self.configure_interfaces(&state.cluster);
            self.flush_removed_endpoints(&state.cluster);
            self.finish_pass();
            self.state = Some(state);
            return;
        }
        // Once per pass: a snapshot copies every IP set's members.
        let snapshot = state.calc.snapshot();
        let unenforced = snapshot.skipped_policies.clone();
        let current = self.applied.as_ref().map_or(0, |a| a.generation);
        // A new generation for every change: flows allowed before it are
        // judged again. Rendered with the next one; when nothing but the
        // generation differs, nothing is programmed and it is not used.
        let generation = next_generation(current);
        let inputs = self.render_inputs(&state.cluster);
        let mut ruleset = self.render(&inputs, &snapshot, generation);
        // A policy's chains (ingress and egress) share what they are.
        let policies: std::collections::HashSet<&str> = ruleset
            .units
            .iter()
            .filter(|(c, _)| {
                c.starts_with(calico_dataplane::render::POLICY_INGRESS_PREFIX)
                    || c.starts_with(calico_dataplane::render::POLICY_EGRESS_PREFIX)
            })
            .map(|(_, what)| what.as_str())
            .collect();
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.local_policies.set(gauge(policies.len()));
        self.metrics.hosts.set(gauge(state.cluster.hosts.len()));
        self.metrics
            .workload_endpoints
            .set(gauge(state.cluster.workload_endpoints.len()));
        let (programs, ip_sets) = (snapshot.programs.len(), snapshot.ip_sets.len());
        drop(snapshot);
        // The objects move into the model; the ruleset keeps what it says
        // about them (units, errors) and gets them back only for a full load.
        let model = TableModel::take(&mut ruleset);
        let plan = match (&self.applied, self.kernel) {
            (Some(a), _) if !a.degraded => diff(&a.model, &model),
            // Right after start the fail-closed table is in: build on it,
            // in pieces, rather than replace it in one long commit.
            (None, KernelView::FailClosed) => diff(&TableModel::of(&fail_closed_table()), &model),
            _ => Diff::Replace,
        };
        let unchanged = match &plan {
            Diff::Same => true,
            Diff::Batch {
                chains, elements, ..
            } => {
                *elements == 0
                    && chains
                        .iter()
                        .all(|c| GENERATION_CHAINS.contains(&c.as_str()))
            }
            Diff::Replace => false,
        };
        let routes = routes::desired(&self.cfg.node, &self.cfg.encap, &state.cluster);
        self.metrics
            .endpoints
            .set(i64::try_from(programs).unwrap_or(i64::MAX));
        self.metrics
            .ip_sets
            .set(i64::try_from(ip_sets).unwrap_or(i64::MAX));
        self.configure_interfaces(&state.cluster);
        if !unchanged {
            // Flows still carrying the generation about to be used (from
            // 65,535 changes ago, or an earlier run) are deleted first, so
            // no flow can skip the new policy by chance. After the first
            // change this was done for it once felix was idle after the
            // previous one (nothing can carry a generation not yet in
            // force), off the path of the change. A batch in pieces sweeps
            // while its first pieces (which nothing refers to yet) go in.
            let sweep_alongside = matches!(plan, Diff::Batch { .. });
            if self.cleared_generation != Some(generation) && !sweep_alongside {
                self.clear_generation(generation);
            }
            self.say_render_problems(&ruleset, &unenforced);
            let started = Instant::now();
            // Only what changed, in one transaction; the full replacement
            // (with its fallbacks) when that cannot be or is refused.
            let incremental = match plan {
                Diff::Batch { batch, .. } => {
                    let fail_closed;
                    let have = match &self.applied {
                        Some(a) => &a.model,
                        None => {
                            fail_closed = TableModel::of(&fail_closed_table());
                            &fail_closed
                        }
                    };
                    let pieces = split(batch, have, MAX_RULES_PER_COMMIT);
                    let sweep = (self.cleared_generation != Some(generation)).then_some(generation);
                    let (nft, conntrack, monitor) =
                        (&mut self.nft, &mut self.conntrack, &self.monitor);
                    let (applied, swept) = std::thread::scope(|scope| {
                        // The sweep walks the whole conntrack table (about
                        // 10 ms per family); it must end before the last
                        // piece puts the generation in force.
                        let mut sweeper =
                            sweep.map(|g| scope.spawn(move || sweep_generation(conntrack, g)));
                        let mut swept = None;
                        let last = pieces.len().saturating_sub(1);
                        let applied = nft.apply_split(&pieces, &mut |i| {
                            if i == last
                                && let Some(s) = sweeper.take()
                            {
                                swept = Some(s.join());
                            }
                            if let Some(m) = monitor {
                                m.expect(&pieces[i], Some(have));
                            }
                        });
                        if applied.is_err()
                            && let Some(m) = monitor
                        {
                            m.forget();
                        }
                        if let Some(s) = sweeper {
                            swept = Some(s.join());
                        }
                        (applied, swept)
                    });
                    if let (Some(g), Some(swept)) = (sweep, swept) {
                        self.note_sweep(
                            g,
                            swept.unwrap_or_else(|_| {
                                Err(calico_dataplane::Error::Conntrack {
                                    filter: format!("policy generation {g}"),
                                    stderr: "the sweep panicked".to_owned(),
                                })
                            }),
                        );
                    }
                    match applied {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(target: "felix", "incremental nftables update refused ({e}); replacing the table"
                            );
                            false
                        }
                    }
                }
                Diff::Same | Diff::Replace => false,
            };
            let outcome = if incremental {
                Outcome::Programmed
            } else {
                ruleset.objects = model.objects();
                self.apply_or_fail_closed(&ruleset)
            };
            self.metrics
                .apply_seconds
                .observe(started.elapsed().as_secs_f64());
            self.record_outcome(&outcome, ruleset, model, generation, routes.clone(), inputs);
            self.pending_clear = Some(next_generation(generation));
        }
        if self.applied.as_ref().is_some_and(|a| !a.degraded) {
            self.write_endpoint_status(&state.cluster);
        }
        self.metrics
            .unenforced_policies
            .set(i64::try_from(unenforced.len()).unwrap_or(i64::MAX));
        self.enforces_every_policy = unenforced.is_empty();
        self.flush_removed_endpoints(&state.cluster);
        let report = reconcile(&mut self.nl, &routes);
        self.report_route_errors(&report);
        if let Some(a) = self.applied.as_mut() {
            a.routes = routes;
        }
        self.metrics
            .programming_seconds
            .observe(since.elapsed().as_secs_f64());
        self.finish_pass();
        self.state = Some(state);
    }

    /// The end of every programming pass: the unreadable-record count and
    /// readiness.
    fn finish_pass(&mut self) {
        self.metrics
            .unreadable_records
            .set(i64::try_from(self.unreadable.len()).unwrap_or(i64::MAX));
        let ready = self.applied.as_ref().is_some_and(|a| !a.degraded)
            && self.enforces_every_policy
            && self.unreadable.values().all(|&kept| kept);
        self.status.ready.store(ready, Ordering::Relaxed);
    }

    /// Says which local endpoints have their policy in force (all of them:
    /// the table is programmed as desired): one file each, for the CNI
    /// plugin to wait on; the files of endpoints gone are removed.
    fn write_endpoint_status(&mut self, cluster: &Cluster) {
        let Some(dir) = self.cfg.endpoint_status_dir.clone() else {
            return;
        };
        let now: BTreeSet<String> = cluster
            .local
            .iter()
            .filter(|(_, l)| !l.iface.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        let before = match self.status_written.take() {
            Some(b) => b,
            // First time: whatever an earlier run left is swept below.
            None => status_files(&dir),
        };
        let mut problems = Vec::new();
        for key in now.difference(&before) {
            let path = dir.join(key);
            let tmp = dir.join(format!("{key}.tmp"));
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&tmp, "up\n"))
                .and_then(|()| std::fs::rename(&tmp, &path));
            if let Err(e) = written {
                problems.push(format!("{}: {e}", path.display()));
            }
        }
        for key in before.difference(&now) {
            let _ = std::fs::remove_file(dir.join(key));
        }
        self.said.say("writing endpoint status files", problems);
        self.status_written = Some(now);
    }

    /// Work that waits until no change is pending: deleting the flows that
    /// carry the policy generation to be used next (a walk of the whole
    /// conntrack table, about 10 ms per family here), so the next change
    /// does not wait for it.
    pub fn idle(&mut self) {
        if let Some(g) = self.pending_clear.take()
            && self.cleared_generation != Some(g)
        {
            self.clear_generation(g);
        }
    }

    /// Deletes the flows whose conntrack mark carries `generation`.
    fn clear_generation(&mut self, generation: u16) {
        let swept = sweep_generation(&mut self.conntrack, generation);
        self.note_sweep(generation, swept);
    }

    /// Records how deleting the flows of `generation` went.
    fn note_sweep(&mut self, generation: u16, swept: Result<(), calico_dataplane::Error>) {
        match swept {
            Ok(()) => self.cleared_generation = Some(generation),
            Err(e) => {
                self.cleared_generation = None;
                self.metrics.errors.inc();
                tracing::warn!(target: "felix", "clearing flows of policy generation {generation}: {e}");
            }
        }
    }

    /// Logs (once each) rules left out for unsupported criteria, rules that
    /// could not be rendered, and policies this dataplane cannot enforce.
    fn say_render_problems(&mut self, ruleset: &Ruleset, unenforced: &[String]) {
        self.said.say(
            "rule never matches (unsupported criteria, fail closed)",
            ruleset.skipped_rules.clone(),
        );
        self.said.say(
            "ERROR policy failed closed (a rule could not be rendered)",
            ruleset.errors.clone(),
        );
        self.said.say(
            "ERROR policy in the datastore cannot be fully enforced (preDNAT, doNotTrack, applyOnForward); delete it",
            unenforced.to_vec(),
        );
    }

    /// Applies `ruleset`; when the kernel rejects it twice, finds the
    /// chains it rejects and programs the table with those chains dropping
    /// everything; when even that fails, drops every workload interface.
    fn apply_or_fail_closed(&mut self, ruleset: &Ruleset) -> Outcome {
        let full = batch(ruleset);
        let first = match self.apply_whole(&full) {
            Ok(()) => return Outcome::Programmed,
            Err(e) => e,
        };
        std::thread::sleep(Duration::from_millis(50));
        let cause = match self.apply_whole(&full) {
            Ok(()) => return Outcome::Programmed,
            Err(e) => e,
        };
        self.metrics.dataplane_failures.inc();
        self.metrics.errors.inc();
        self.said.say(
            "ERROR programming nftables failed twice; failing closed",
            vec![format!("{cause} (first attempt: {first})")],
        );
        let all: BTreeSet<String> = ruleset.units.iter().map(|(c, _)| c.clone()).collect();
        let ok = |nft: &mut F, chains: &BTreeSet<String>| {
            nft.check(&batch(&ruleset.fail_closed(chains))).is_ok()
        };
        if !ok(&mut self.nft, &all) {
            return self.all_failed_closed();
        }
        // Each round finds one more rejected chain by bisection: with the
        // known ones failed closed, the smallest prefix of the others that
        // must be failed closed too ends with a rejected chain.
        let mut bad = BTreeSet::new();
        while !ok(&mut self.nft, &bad) {
            let rest: Vec<&String> = all.iter().filter(|c| !bad.contains(*c)).collect();
            let (mut lo, mut hi) = (1, rest.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                let mut trial = bad.clone();
                trial.extend(rest[..mid].iter().map(|c| (*c).clone()));
                if ok(&mut self.nft, &trial) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            bad.insert(rest[lo - 1].clone());
        }
        match self.apply_whole(&batch(&ruleset.fail_closed(&bad))) {
            Ok(()) => Outcome::FailedClosed(
                ruleset
                    .units
                    .iter()
                    .filter(|(c, _)| bad.contains(c))
                    .cloned()
                    .collect(),
            ),
            Err(_) => self.all_failed_closed(),
        }
    }

    fn all_failed_closed(&mut self) -> Outcome {
        match self.apply_whole(&batch(&fail_closed_table())) {
            Ok(()) => self.kernel = KernelView::FailClosed,
            Err(e) => self.said.say(
                "ERROR even the fail-closed table could not be programmed",
                vec![e.to_string()],
            ),
        }
        Outcome::AllFailedClosed
    }

    fn record_outcome(
        &mut self,
        outcome: &Outcome,
        ruleset: Ruleset,
        model: TableModel,
        generation: u16,
        routes: Desired,
        inputs: RenderInputs,
    ) {
        let model = match outcome {
            Outcome::Programmed => model,
            Outcome::FailedClosed(chains) => TableModel::of(
                &ruleset.fail_closed(&chains.iter().map(|(c, _)| c.clone()).collect()),
            ),
            Outcome::AllFailedClosed => TableModel::of(&fail_closed_table()),
        };
        let failed: Vec<String> = match outcome {
            Outcome::Programmed => Vec::new(),
            Outcome::FailedClosed(chains) => chains
                .iter()
                .map(|(c, what)| format!("{what} (chain {c}) drops everything"))
                .collect(),
            Outcome::AllFailedClosed => {
                vec!["every workload interface drops everything".to_owned()]
            }
        };
        let degraded = !failed.is_empty() || !ruleset.errors.is_empty();
        self.metrics
            .failed_closed_chains
            .set(i64::try_from(failed.len() + ruleset.errors.len()).unwrap_or(i64::MAX));
        if !ruleset.errors.is_empty() {
            self.metrics.dataplane_failures.inc();
        }
        self.said.say("ERROR failed closed", failed);
        if *outcome == Outcome::Programmed {
            self.said.say(
                "ERROR programming nftables failed twice; failing closed",
                Vec::new(),
            );
        }
        self.failed_at = (*outcome != Outcome::Programmed).then(Instant::now);
        let rules = model.rule_count();
        self.metrics
            .nft_sets
            .set(i64::try_from(model.set_count()).unwrap_or(i64::MAX));
        self.metrics
            .rules
            .set(i64::try_from(rules).unwrap_or(i64::MAX));
        self.kernel = KernelView::Applied;
        self.applied = Some(Applied {
            model,
            rules,
            routes,
            inputs,
            generation,
            degraded,
        });
    }

    /// Writes the sysctls of every local workload interface not yet
    /// configured (anti-spoofing, no router advertisements or redirects);
    /// one that does not exist yet is tried again next time.
    fn configure_interfaces(&mut self, cluster: &Cluster) {
        let spoofing = self.spoofing(cluster);
        let mut problems = Vec::new();
        let mut wanted = BTreeMap::new();
        for l in cluster.local.values().filter(|l| !l.iface.is_empty()) {
            let allow = spoofing && !l.allow_spoofed.is_empty();
            wanted.insert(l.iface.clone(), allow);
            if self.configured_ifaces.get(&l.iface) == Some(&allow) {
                continue;
            }
            let v4 = l.nets.iter().any(|n| matches!(n, ipnet::IpNet::V4(_)));
            let v6 = l.nets.iter().any(|n| matches!(n, ipnet::IpNet::V6(_)));
            match calico_netlink::set_workload_iface_sysctls(
                &mut self.sysctl,
                &l.iface,
                v4,
                v6,
                allow,
            ) {
                Ok(()) => {
                    self.configured_ifaces.insert(l.iface.clone(), allow);
                }
                Err(e) => problems.push(format!("{}: {e}", l.iface)),
            }
        }
        self.configured_ifaces.retain(|i, _| wanted.contains_key(i));
        // Linux forwards IPv6 only with the global switch on (the per-interface one above
        // does not suffice): set once a local endpoint has an IPv6 address, as upstream
        // felix does with IPv6 support. (Interfaces then accept router advertisements only
        // with accept_ra=2.)
        let v6 = cluster
            .local
            .values()
            .any(|l| l.nets.iter().any(|n| matches!(n, ipnet::IpNet::V6(_))));
        if v6 && !self.ipv6_forwarding {
            match self.sysctl.set("net/ipv6/conf/all/forwarding", "1") {
                Ok(()) => self.ipv6_forwarding = true,
                Err(e) => problems.push(format!("enabling IPv6 forwarding: {e}")),
            }
        }
        self.said.say("configuring workload interfaces", problems);
    }

    /// Deletes the flows of addresses that left a local endpoint, so an
    /// address handed to a new workload never inherits the old one's flows.
    fn flush_removed_endpoints(&mut self, cluster: &Cluster) {
        let now: BTreeSet<(String, IpAddr)> = cluster
            .local
            .iter()
            .flat_map(|(key, l)| l.nets.iter().map(move |n| (key.clone(), n.addr())))
            .collect();
        let gone: BTreeSet<IpAddr> = self
            .local_addresses
            .difference(&now)
            .map(|(_, ip)| *ip)
            .collect();
        for ip in gone {
            if let Err(e) = self.conntrack.flush_address(ip) {
                self.metrics.errors.inc();
                tracing::info!(target: "felix", "deleting the flows of removed endpoint address {ip}: {e}");
            }
        }
        self.local_addresses = now;
    }

    /// Puts back what was last programmed if the kernel lost it: the whole
    /// table is read back and checked, routes and interfaces reconciled.
    pub fn repair_drift(&mut self) {
        self.verify_table();
        self.repair_routes_and_interfaces();
    }

    /// Reads our table back; reloads it when its rules are not what was
    /// programmed.
    fn verify_table(&mut self) {
        let Some((expected_rules, expected_elements)) = self
            .applied
            .as_ref()
            .map(|a| (a.rules, a.model.element_counts()))
        else {
            return;
        };
        let listed = self.nft.list_owned().ok().and_then(|t| {
            let v = serde_json::to_value(&t).ok()?;
            let objects = v["nftables"].as_array()?;
            let rules = objects.iter().filter(|o| o.get("rule").is_some()).count();
            // Someone deleting an element (an address from a deny set, say)
            // changes no rule: set sizes are compared too.
            let elements: BTreeMap<String, usize> = objects
                .iter()
                .filter_map(|o| o.get("set"))
                .map(|s| {
                    let n = s["elem"].as_array().map_or(0, Vec::len);
                    (s["name"].as_str().unwrap_or_default().to_owned(), n)
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            Some((rules, elements))
        });
        let drift = match &listed {
            None => Some("no table".to_owned()),
            Some((rules, _)) if *rules != expected_rules => {
                Some(format!("{rules} rules, expected {expected_rules}"))
            }
            Some((_, elements)) if *elements != expected_elements => Some(
                expected_elements
                    .iter()
                    .filter(|(set, n)| elements.get(*set) != Some(n))
                    .map(|(set, n)| {
                        format!(
                            "set {set} has {}, expected {n}",
                            elements.get(set).unwrap_or(&0)
                        )
                    })
                    .chain(
                        elements
                            .keys()
                            .filter(|s| !expected_elements.contains_key(*s))
                            .map(|s| format!("set {s} has unexpected elements")),
                    )
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Some(_) => None,
        };
        if let Some(why) = drift {
            self.reload_table(&format!("drifted ({why})"));
        }
    }

    /// Loads what was last programmed again, whole.
    fn reload_table(&mut self, why: &str) {
        let Some(full) = self.applied.as_ref().map(|a| {
            batch(&Ruleset {
                objects: a.model.objects(),
                ..Ruleset::default()
            })
        }) else {
            return;
        };
        tracing::warn!(target: "felix", "nftables table {why}; reprogramming");
        match self.apply_whole(&full) {
            Ok(()) => {
                self.kernel = KernelView::Applied;
                self.metrics.drift_repairs.inc();
            }
            Err(e) => {
                tracing::warn!(target: "felix", "repairing nftables: {e}");
                self.metrics.errors.inc();
                // Whatever is there now must not stay open.
                self.all_failed_closed();
            }
        }
    }

    /// Routes back as programmed; sysctls of interfaces that appeared.
    fn repair_routes_and_interfaces(&mut self) {
        let Some(routes) = self.applied.as_ref().map(|a| a.routes.clone()) else {
            return;
        };
        let report = reconcile(&mut self.nl, &routes);
        if !report.changes.is_empty() {
            tracing::info!(target: "felix", "repaired routes: {}", report.changes.join("; "));
            self.metrics.drift_repairs.inc();
        }
        self.report_route_errors(&report);
        if let Some(state) = self.state.take() {
            self.configure_interfaces(&state.cluster);
            self.state = Some(state);
        }
    }

    /// Counts every route error and prints the ones not printed last time.
    fn report_route_errors(&mut self, report: &RouteReport) {
        let now: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        for _ in &now {
            self.metrics.errors.inc();
        }
        self.said.say("programming routes", now);
    }
}

/// The `namespace/name` status files under `dir`.
fn status_files(dir: &std::path::Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for ns in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            found.insert(format!(
                "{}/{}",
                ns.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            ));
        }
    }
    found
}

fn note(r: Result<(), cluster::Error>) {
    if let Err(e) = r {
        tracing::warn!(target: "felix", "{e}; ignored");
    }
}
