//! Prometheus metrics of the agent loop (served by calico-node on its
//! metrics port).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The agent's metrics; clones share the same series.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Seconds from a datastore change being seen to the kernel being programmed.
    pub programming_seconds: Histogram,
    /// Seconds felix spends getting one change into nftables (the
    /// incremental batch, or the full replacement and its fallbacks).
    pub apply_seconds: Histogram,
    /// Seconds the policy calculation takes to absorb a batch of changes.
    pub calc_seconds: Histogram,
    /// Rules in the nftables table.
    pub rules: Gauge,
    /// Sets in the nftables table.
    pub nft_sets: Gauge,
    /// Policies that apply to at least one local endpoint.
    pub local_policies: Gauge,
    /// Hosts (Node resources) in the cluster.
    pub hosts: Gauge,
    /// Workload endpoints in the cluster, on every host.
    pub workload_endpoints: Gauge,
    /// IP sets referenced by policy.
    pub ip_sets: Gauge,
    /// Local endpoints with a program.
    pub endpoints: Gauge,
    /// Errors met programming the kernel or reading the datastore.
    pub errors: Counter,
    /// Full resyncs with the datastore (start-up, after an outage or compaction).
    pub resyncs: Counter,
    /// Repairs of drift (our table or routes changed behind our back).
    pub drift_repairs: Counter,
    /// Times the desired table could not be programmed as a whole (the
    /// kernel rejected it twice) or had rules that could not be rendered:
    /// each time, what could not be programmed was failed closed.
    pub dataplane_failures: Counter,
    /// Chains dropping everything right now because they could not be
    /// programmed or rendered (the whole table counts as one when every
    /// workload interface is failed closed).
    pub failed_closed_chains: Gauge,
    /// Policies this dataplane cannot enforce that are in the datastore
    /// anyway (`preDNAT`, `doNotTrack` written past calicoctl).
    pub unenforced_policies: Gauge,
    /// Datastore records felix cannot read (each named in the log).
    pub unreadable_records: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            // 1 ms .. ~16 s.
            programming_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            // 0.5 ms .. ~16 s.
            apply_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            // 10 µs .. ~0.3 s.
            calc_seconds: Histogram::new(exponential_buckets(0.00001, 2.0, 15)),
            rules: Gauge::default(),
            nft_sets: Gauge::default(),
            local_policies: Gauge::default(),
            hosts: Gauge::default(),
            workload_endpoints: Gauge::default(),
            ip_sets: Gauge::default(),
            endpoints: Gauge::default(),
            errors: Counter::default(),
            resyncs: Counter::default(),
            drift_repairs: Counter::default(),
            dataplane_failures: Counter::default(),
            failed_closed_chains: Gauge::default(),
            unenforced_policies: Gauge::default(),
            unreadable_records: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Registers every series under `felix_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("felix");
        r.register(
            "programming_seconds",
            "Time from a datastore change to the kernel programmed",
            self.programming_seconds.clone(),
        );
        r.register(
            "int_dataplane_apply_time_seconds",
            "Time to get one change into nftables",
            self.apply_seconds.clone(),
        );
        r.register(
            "calc_graph_update_time_seconds",
            "Time the policy calculation takes to absorb a batch of changes",
            self.calc_seconds.clone(),
        );
        r.register(
            "nft_sets",
            "Sets in the owned nftables table",
            self.nft_sets.clone(),
        );
        r.register(
            "active_local_policies",
            "Policies applying to at least one local endpoint",
            self.local_policies.clone(),
        );
        r.register(
            "cluster_num_hosts",
            "Hosts in the cluster",
            self.hosts.clone(),
        );
        r.register(
            "cluster_num_workload_endpoints",
            "Workload endpoints in the cluster, on every host",
            self.workload_endpoints.clone(),
        );
        r.register(
            "nft_rules",
            "Rules in the owned nftables table",
            self.rules.clone(),
        );
        r.register(
            "ip_sets",
            "IP sets referenced by policy",
            self.ip_sets.clone(),
        );
        r.register(
            "active_local_endpoints",
            "Local endpoints with a policy program",
            self.endpoints.clone(),
        );
        r.register(
            "errors",
            "Errors programming the kernel or reading the datastore",
            self.errors.clone(),
        );
        r.register(
            "resyncs",
            "Full resyncs with the datastore",
            self.resyncs.clone(),
        );
        r.register(
            "drift_repairs",
            "Repairs of kernel state changed behind felix's back",
            self.drift_repairs.clone(),
        );
        r.register(
            "int_dataplane_failures",
            "Times the desired nftables table could not be programmed or rendered (failed closed)",
            self.dataplane_failures.clone(),
        );
        r.register(
            "failed_closed_chains",
            "Chains dropping everything because they could not be programmed",
            self.failed_closed_chains.clone(),
        );
        r.register(
            "unenforced_policies",
            "Policies in the datastore this dataplane cannot enforce",
            self.unenforced_policies.clone(),
        );
        r.register(
            "unreadable_records",
            "Datastore records felix cannot read; the last good version of each is kept",
            self.unreadable_records.clone(),
        );
    }
}
