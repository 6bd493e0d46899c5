//! Felix (per-host agent) configuration.
//!
//! Every field is optional: unset fields take Felix's built-in default (or the value from the
//! cluster-wide `default` resource, for per-node `node.<name>` resources).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::numorstring::Port;

/// Spec of FelixConfiguration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FelixConfigurationSpec {
    /// The nodes this configuration applies to, for a resource named neither `default` nor
    /// `node.<name>`: applied over `default` and under `node.<name>`, in name order.
    #[serde(
        rename = "nodeSelector",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node_selector: Option<String>,
    /// Use Felix's built-in dataplane driver.
    #[serde(
        rename = "useInternalDataplaneDriver",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub use_internal_dataplane_driver: Option<bool>,
    /// Path of an external dataplane driver.
    #[serde(
        rename = "dataplaneDriver",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dataplane_driver: Option<String>,
    /// Deprecated: how long the dataplane may stall before Felix is reported unhealthy.
    #[serde(
        rename = "dataplaneWatchdogTimeout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dataplane_watchdog_timeout: Option<String>,
    /// Enable IPv6 programming.
    #[serde(
        rename = "ipv6Support",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_support: Option<bool>,
    /// Period between full route resyncs.
    #[serde(
        rename = "routeRefreshInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub route_refresh_interval: Option<String>,
    /// Period between interface rescans.
    #[serde(
        rename = "interfaceRefreshInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_refresh_interval: Option<String>,
    /// Period between full iptables resyncs.
    #[serde(
        rename = "iptablesRefreshInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_refresh_interval: Option<String>,
    /// Delay before re-checking iptables after a write.
    #[serde(
        rename = "iptablesPostWriteCheckInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_post_write_check_interval: Option<String>,
    /// Path of the iptables lock file.
    #[serde(
        rename = "iptablesLockFilePath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_lock_file_path: Option<String>,
    /// How long to wait for the iptables lock.
    #[serde(
        rename = "iptablesLockTimeout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_lock_timeout: Option<String>,
    /// How often to probe the iptables lock.
    #[serde(
        rename = "iptablesLockProbeInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_lock_probe_interval: Option<String>,
    /// Overrides for dataplane feature detection.
    #[serde(
        rename = "featureDetectOverride",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub feature_detect_override: Option<String>,
    /// Experimental features to turn on.
    #[serde(
        rename = "featureGates",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub feature_gates: Option<String>,
    /// Period between full ipset resyncs.
    #[serde(
        rename = "ipsetsRefreshInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipsets_refresh_interval: Option<String>,
    /// Maximum ipset size.
    #[serde(
        rename = "maxIpsetSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ipset_size: Option<i64>,
    /// `Legacy`, `NFT` or `Auto`.
    #[serde(
        rename = "iptablesBackend",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_backend: Option<String>,
    /// Period between XDP resyncs.
    #[serde(
        rename = "xdpRefreshInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub xdp_refresh_interval: Option<String>,
    /// Timeout of netlink calls.
    #[serde(
        rename = "netlinkTimeout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub netlink_timeout: Option<String>,
    /// OpenStack metadata server address.
    #[serde(
        rename = "metadataAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata_addr: Option<String>,
    /// OpenStack metadata server port.
    #[serde(
        rename = "metadataPort",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata_port: Option<i64>,
    /// OpenStack region name.
    #[serde(
        rename = "openstackRegion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub openstack_region: Option<String>,
    /// Prefixes of workload interface names.
    #[serde(
        rename = "interfacePrefix",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_prefix: Option<String>,
    /// Interfaces Felix ignores.
    #[serde(
        rename = "interfaceExclude",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_exclude: Option<String>,
    /// `Insert` or `Append` for Calico's top-level chains.
    #[serde(
        rename = "chainInsertMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub chain_insert_mode: Option<String>,
    /// `Drop`, `Return` or `Accept` for workload-to-host traffic.
    #[serde(
        rename = "defaultEndpointToHostAction",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub default_endpoint_to_host_action: Option<String>,
    /// `Accept` or `Return` in the filter table.
    #[serde(
        rename = "iptablesFilterAllowAction",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_filter_allow_action: Option<String>,
    /// `Accept` or `Return` in the mangle table.
    #[serde(
        rename = "iptablesMangleAllowAction",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_mangle_allow_action: Option<String>,
    /// `Drop` or `Reject` in the filter table.
    #[serde(
        rename = "iptablesFilterDenyAction",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_filter_deny_action: Option<String>,
    /// Prefix of dataplane log entries.
    #[serde(rename = "logPrefix", default, skip_serializing_if = "Option::is_none")]
    pub log_prefix: Option<String>,
    /// Log the action a drop rule would have taken.
    #[serde(
        rename = "logDropActionOverride",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub log_drop_action_override: Option<bool>,
    /// Rate limit of Log actions.
    #[serde(
        rename = "logActionRateLimit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub log_action_rate_limit: Option<String>,
    /// Burst of Log actions.
    #[serde(
        rename = "logActionRateLimitBurst",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub log_action_rate_limit_burst: Option<i64>,
    /// Felix log file.
    #[serde(
        rename = "logFilePath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub log_file_path: Option<String>,
    /// Log level of the log file.
    #[serde(
        rename = "logSeverityFile",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub log_severity_file: Option<String>,
    /// Log level on stdout.
    #[serde(
        rename = "logSeverityScreen",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub log_severity_screen: Option<String>,
    /// Log level of syslog.
    #[serde(
        rename = "logSeveritySys",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub log_severity_sys: Option<String>,
    /// Only log debug messages from matching files.
    #[serde(
        rename = "logDebugFilenameRegex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub log_debug_filename_regex: Option<String>,
    /// Enable IP-in-IP.
    #[serde(
        rename = "ipipEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipip_enabled: Option<bool>,
    /// MTU of the IP-in-IP device.
    #[serde(rename = "ipipMTU", default, skip_serializing_if = "Option::is_none")]
    pub ipip_mtu: Option<i64>,
    /// Enable VXLAN.
    #[serde(
        rename = "vxlanEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_enabled: Option<bool>,
    /// MTU of the IPv4 VXLAN device.
    #[serde(rename = "vxlanMTU", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<i64>,
    /// MTU of the IPv6 VXLAN device.
    #[serde(
        rename = "vxlanMTUV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_mtu_v6: Option<i64>,
    /// VXLAN UDP port.
    #[serde(rename = "vxlanPort", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<i64>,
    /// VXLAN network identifier.
    #[serde(rename = "vxlanVNI", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_vni: Option<i64>,
    /// Let workloads send VXLAN packets.
    #[serde(
        rename = "allowVXLANPacketsFromWorkloads",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_vxlan_packets_from_workloads: Option<bool>,
    /// Let workloads send IP-in-IP packets.
    #[serde(
        rename = "allowIPIPPacketsFromWorkloads",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_ipip_packets_from_workloads: Option<bool>,
    /// Period between status reports.
    #[serde(
        rename = "reportingInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reporting_interval: Option<String>,
    /// TTL of status reports.
    #[serde(
        rename = "reportingTTL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reporting_ttl: Option<String>,
    /// Report endpoint status.
    #[serde(
        rename = "endpointReportingEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_reporting_enabled: Option<bool>,
    /// Delay before reporting endpoint status.
    #[serde(
        rename = "endpointReportingDelay",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_reporting_delay: Option<String>,
    /// Directory for endpoint status files.
    #[serde(
        rename = "endpointStatusPathPrefix",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_status_path_prefix: Option<String>,
    /// Packet-mark bits Felix may use.
    #[serde(
        rename = "iptablesMarkMask",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_mark_mask: Option<u32>,
    /// Accept packets conntrack considers invalid.
    #[serde(
        rename = "disableConntrackInvalidCheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_conntrack_invalid_check: Option<bool>,
    /// Serve the health endpoint.
    #[serde(
        rename = "healthEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub health_enabled: Option<bool>,
    /// Health endpoint address.
    #[serde(
        rename = "healthHost",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub health_host: Option<String>,
    /// Health endpoint port.
    #[serde(
        rename = "healthPort",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub health_port: Option<i64>,
    /// Per-component health timeouts.
    #[serde(
        rename = "healthTimeoutOverrides",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub health_timeout_overrides: Option<Vec<HealthTimeoutOverride>>,
    /// Serve Prometheus metrics.
    #[serde(
        rename = "prometheusMetricsEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_enabled: Option<bool>,
    /// Metrics endpoint address.
    #[serde(
        rename = "prometheusMetricsHost",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_host: Option<String>,
    /// Metrics endpoint port.
    #[serde(
        rename = "prometheusMetricsPort",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_port: Option<i64>,
    /// Export Go runtime metrics.
    #[serde(
        rename = "prometheusGoMetricsEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_go_metrics_enabled: Option<bool>,
    /// Export process metrics.
    #[serde(
        rename = "prometheusProcessMetricsEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_process_metrics_enabled: Option<bool>,
    /// Export WireGuard metrics.
    #[serde(
        rename = "prometheusWireGuardMetricsEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_wire_guard_metrics_enabled: Option<bool>,
    /// Inbound host ports always allowed.
    #[serde(
        rename = "failsafeInboundHostPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub failsafe_inbound_host_ports: Option<Vec<ProtoPort>>,
    /// Outbound host ports always allowed.
    #[serde(
        rename = "failsafeOutboundHostPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub failsafe_outbound_host_ports: Option<Vec<ProtoPort>>,
    /// Kubernetes NodePort ranges (at most 7).
    #[serde(
        rename = "kubeNodePortRanges",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kube_node_port_ranges: Option<Vec<Port>>,
    /// Directory of the policy-sync API socket.
    #[serde(
        rename = "policySyncPathPrefix",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub policy_sync_path_prefix: Option<String>,
    /// Report anonymous usage statistics.
    #[serde(
        rename = "usageReportingEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub usage_reporting_enabled: Option<bool>,
    /// Delay before the first usage report.
    #[serde(
        rename = "usageReportingInitialDelay",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub usage_reporting_initial_delay: Option<String>,
    /// Period between usage reports.
    #[serde(
        rename = "usageReportingInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub usage_reporting_interval: Option<String>,
    /// Port range used for SNAT.
    #[serde(
        rename = "natPortRange",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nat_port_range: Option<Port>,
    /// Source address for outgoing NAT (IPv4).
    #[serde(
        rename = "natOutgoingAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nat_outgoing_address: Option<String>,
    /// `IPPoolsOnly` or `IPPoolsAndHostIPs`.
    #[serde(
        rename = "natOutgoingExclusions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nat_outgoing_exclusions: Option<String>,
    /// IPv4 source address of device routes.
    #[serde(
        rename = "deviceRouteSourceAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_route_source_address: Option<String>,
    /// IPv6 source address of device routes.
    #[serde(
        rename = "deviceRouteSourceAddressIPv6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_route_source_address_ipv6: Option<String>,
    /// Protocol number of device routes.
    #[serde(
        rename = "deviceRouteProtocol",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_route_protocol: Option<i64>,
    /// Remove routes Felix did not program.
    #[serde(
        rename = "removeExternalRoutes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub remove_external_routes: Option<bool>,
    /// `Enabled` or `Disabled`.
    #[serde(
        rename = "ipForwarding",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_forwarding: Option<String>,
    /// IPv4 CIDRs of non-cluster hosts allowed to send tunnelled traffic.
    #[serde(
        rename = "externalNodesList",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub external_nodes_list: Option<Vec<String>>,
    /// Path for heap profiles.
    #[serde(
        rename = "debugMemoryProfilePath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_memory_profile_path: Option<String>,
    /// Never drop log messages.
    #[serde(
        rename = "debugDisableLogDropping",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_disable_log_dropping: Option<bool>,
    /// Testing only.
    #[serde(
        rename = "debugSimulateCalcGraphHangAfter",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_simulate_calc_graph_hang_after: Option<String>,
    /// Testing only.
    #[serde(
        rename = "debugSimulateDataplaneHangAfter",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_simulate_dataplane_hang_after: Option<String>,
    /// Testing only.
    #[serde(
        rename = "debugSimulateDataplaneApplyDelay",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_simulate_dataplane_apply_delay: Option<String>,
    /// Debug server address.
    #[serde(rename = "debugHost", default, skip_serializing_if = "Option::is_none")]
    pub debug_host: Option<String>,
    /// Debug server port.
    #[serde(rename = "debugPort", default, skip_serializing_if = "Option::is_none")]
    pub debug_port: Option<i64>,
    /// Interfaces outgoing NAT applies to.
    #[serde(
        rename = "iptablesNATOutgoingInterfaceFilter",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_nat_outgoing_interface_filter: Option<String>,
    /// Accelerate sidecar traffic.
    #[serde(
        rename = "sidecarAccelerationEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sidecar_acceleration_enabled: Option<bool>,
    /// Use XDP for untracked deny rules.
    #[serde(
        rename = "xdpEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub xdp_enabled: Option<bool>,
    /// Allow generic XDP.
    #[serde(
        rename = "genericXDPEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub generic_xdp_enabled: Option<bool>,
    /// `Enabled`, `Disabled` or `Auto`.
    #[serde(
        rename = "nftablesMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_mode: Option<String>,
    /// Period between full nftables resyncs.
    #[serde(
        rename = "nftablesRefreshInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_refresh_interval: Option<String>,
    /// `Accept` or `Return` in the nftables filter table.
    #[serde(
        rename = "nftablesFilterAllowAction",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_filter_allow_action: Option<String>,
    /// `Accept` or `Return` in the nftables mangle table.
    #[serde(
        rename = "nftablesMangleAllowAction",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_mangle_allow_action: Option<String>,
    /// `Drop` or `Reject` in the nftables filter table.
    #[serde(
        rename = "nftablesFilterDenyAction",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_filter_deny_action: Option<String>,
    /// Packet-mark bits Felix may use with nftables.
    #[serde(
        rename = "nftablesMarkMask",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_mark_mask: Option<u32>,
    /// Use the eBPF dataplane.
    #[serde(
        rename = "bpfEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_enabled: Option<bool>,
    /// Disable unprivileged eBPF.
    #[serde(
        rename = "bpfDisableUnprivileged",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_disable_unprivileged: Option<bool>,
    /// `Off`, `Info` or `Debug`.
    #[serde(
        rename = "bpfLogLevel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_log_level: Option<String>,
    /// Per-interface pcap-style log filters.
    #[serde(
        rename = "bpfLogFilters",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_log_filters: Option<BTreeMap<String, String>>,
    /// Connect-time load-balancer log filter.
    #[serde(
        rename = "bpfCTLBLogFilter",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ctlb_log_filter: Option<String>,
    /// Regex of host data interfaces.
    #[serde(
        rename = "bpfDataIfacePattern",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_data_iface_pattern: Option<String>,
    /// Regex of layer-3 host interfaces.
    #[serde(
        rename = "bpfL3IfacePattern",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_l3_iface_pattern: Option<String>,
    /// Deprecated: connect-time load balancing.
    #[serde(
        rename = "bpfConnectTimeLoadBalancingEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_connect_time_load_balancing_enabled: Option<bool>,
    /// `TCP`, `Enabled` or `Disabled`.
    #[serde(
        rename = "bpfConnectTimeLoadBalancing",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_connect_time_load_balancing: Option<String>,
    /// `Enabled` or `Disabled`.
    #[serde(
        rename = "bpfHostNetworkedNATWithoutCTLB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_host_networked_nat_without_ctlb: Option<String>,
    /// `Tunnel` or `DSR`.
    #[serde(
        rename = "bpfExternalServiceMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_external_service_mode: Option<String>,
    /// CIDRs excluded from DSR.
    #[serde(
        rename = "bpfDSROptoutCIDRs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_dsr_optout_cidrs: Option<Vec<String>>,
    /// Connmark for external-to-service traffic (32-bit).
    #[serde(
        rename = "bpfExtToServiceConnmark",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ext_to_service_connmark: Option<i64>,
    /// Clean up kube-proxy's iptables rules.
    #[serde(
        rename = "bpfKubeProxyIptablesCleanupEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_kube_proxy_iptables_cleanup_enabled: Option<bool>,
    /// Minimum period between service resyncs.
    #[serde(
        rename = "bpfKubeProxyMinSyncPeriod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_kube_proxy_min_sync_period: Option<String>,
    /// Port of the kube-proxy health server.
    #[serde(
        rename = "bpfKubeProxyHealthzPort",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_kube_proxy_healthz_port: Option<i64>,
    /// Deprecated: use EndpointSlices.
    #[serde(
        rename = "bpfKubeProxyEndpointSlicesEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_kube_proxy_endpoint_slices_enabled: Option<bool>,
    /// Port range for source NAT on port collisions.
    #[serde(
        rename = "bpfPSNATPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_psnat_ports: Option<Port>,
    /// Size of the NAT frontend map.
    #[serde(
        rename = "bpfMapSizeNATFrontend",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_frontend: Option<i64>,
    /// Size of the NAT backend map.
    #[serde(
        rename = "bpfMapSizeNATBackend",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_backend: Option<i64>,
    /// Size of the NAT affinity map.
    #[serde(
        rename = "bpfMapSizeNATAffinity",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_affinity: Option<i64>,
    /// Size of the route map.
    #[serde(
        rename = "bpfMapSizeRoute",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_route: Option<i64>,
    /// Size of the conntrack map.
    #[serde(
        rename = "bpfMapSizeConntrack",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_conntrack: Option<i64>,
    /// Per-CPU conntrack map size.
    #[serde(
        rename = "bpfMapSizePerCpuConntrack",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_per_cpu_conntrack: Option<i64>,
    /// Size of the IP sets map.
    #[serde(
        rename = "bpfMapSizeIPSets",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_ip_sets: Option<i64>,
    /// Size of the interface state map.
    #[serde(
        rename = "bpfMapSizeIfState",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_if_state: Option<i64>,
    /// Skip Linux conntrack for host traffic.
    #[serde(
        rename = "bpfHostConntrackBypass",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_host_conntrack_bypass: Option<bool>,
    /// `Disabled`, `Strict` or `Loose`.
    #[serde(
        rename = "bpfEnforceRPF",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_enforce_rpf: Option<String>,
    /// Record policy debug info.
    #[serde(
        rename = "bpfPolicyDebugEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_policy_debug_enabled: Option<bool>,
    /// Interfaces whose packets are always conntracked.
    #[serde(
        rename = "bpfForceTrackPacketsFromIfaces",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_force_track_packets_from_ifaces: Option<Vec<String>>,
    /// Regex of interfaces with GRO disabled.
    #[serde(
        rename = "bpfDisableGROForIfaces",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_disable_gro_for_ifaces: Option<String>,
    /// CIDRs never NATed.
    #[serde(
        rename = "bpfExcludeCIDRsFromNAT",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_exclude_cidrs_from_nat: Option<Vec<String>>,
    /// `Enabled`, `Disabled` or `L2Only`.
    #[serde(
        rename = "bpfRedirectToPeer",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_redirect_to_peer: Option<String>,
    /// `TCX` or `TC`.
    #[serde(
        rename = "bpfAttachType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_attach_type: Option<String>,
    /// Size of the event export buffer.
    #[serde(
        rename = "bpfExportBufferSizeMB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_export_buffer_size_mb: Option<i64>,
    /// `Auto`, `Userspace` or `BPFProgram`.
    #[serde(
        rename = "bpfConntrackCleanupMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_conntrack_cleanup_mode: Option<String>,
    /// Conntrack timeouts of the eBPF dataplane.
    #[serde(
        rename = "bpfConntrackTimeouts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_conntrack_timeouts: Option<BPFConntrackTimeouts>,
    /// `Off` or `Debug`.
    #[serde(
        rename = "bpfConntrackLogLevel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_conntrack_log_level: Option<String>,
    /// `Enabled` or `Disabled`.
    #[serde(
        rename = "bpfProfiling",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_profiling: Option<String>,
    /// Maglev: endpoints per service.
    #[serde(
        rename = "bpfMaglevMaxEndpointsPerService",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_maglev_max_endpoints_per_service: Option<i64>,
    /// Maglev: services.
    #[serde(
        rename = "bpfMaglevMaxServices",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_maglev_max_services: Option<i64>,
    /// `CalicoIPAM` or `WorkloadIPs`.
    #[serde(
        rename = "routeSource",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub route_source: Option<String>,
    /// Route table indices Felix may use.
    #[serde(
        rename = "routeTableRanges",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub route_table_ranges: Option<Vec<RouteTableIDRange>>,
    /// Deprecated single route table range (1-250).
    #[serde(
        rename = "routeTableRange",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub route_table_range: Option<RouteTableRange>,
    /// Do not program routes.
    #[serde(
        rename = "routeSyncDisabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub route_sync_disabled: Option<bool>,
    /// Enable IPv4 WireGuard.
    #[serde(
        rename = "wireguardEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_enabled: Option<bool>,
    /// Enable IPv6 WireGuard.
    #[serde(
        rename = "wireguardEnabledV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_enabled_v6: Option<bool>,
    /// IPv4 WireGuard port.
    #[serde(
        rename = "wireguardListeningPort",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_listening_port: Option<i64>,
    /// IPv6 WireGuard port.
    #[serde(
        rename = "wireguardListeningPortV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_listening_port_v6: Option<i64>,
    /// Priority of the WireGuard routing rule.
    #[serde(
        rename = "wireguardRoutingRulePriority",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_routing_rule_priority: Option<i64>,
    /// IPv4 WireGuard device name.
    #[serde(
        rename = "wireguardInterfaceName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_interface_name: Option<String>,
    /// IPv6 WireGuard device name.
    #[serde(
        rename = "wireguardInterfaceNameV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_interface_name_v6: Option<String>,
    /// IPv4 WireGuard MTU.
    #[serde(
        rename = "wireguardMTU",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtu: Option<i64>,
    /// IPv6 WireGuard MTU.
    #[serde(
        rename = "wireguardMTUV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtu_v6: Option<i64>,
    /// Also encrypt host traffic.
    #[serde(
        rename = "wireguardHostEncryptionEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_host_encryption_enabled: Option<bool>,
    /// WireGuard persistent keepalive.
    #[serde(
        rename = "wireguardKeepAlive",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_keep_alive: Option<String>,
    /// Threaded NAPI for WireGuard.
    #[serde(
        rename = "wireguardThreadingEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_threading_enabled: Option<bool>,
    /// `DoNothing`, `Enable` or `Disable`.
    #[serde(
        rename = "awsSrcDstCheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub aws_src_dst_check: Option<String>,
    /// `Drop`, `Reject` or `Disabled`.
    #[serde(
        rename = "serviceLoopPrevention",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub service_loop_prevention: Option<String>,
    /// `Disabled` or `Any`.
    #[serde(
        rename = "workloadSourceSpoofing",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub workload_source_spoofing: Option<String>,
    /// Regex of interfaces used for MTU detection.
    #[serde(
        rename = "mtuIfacePattern",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mtu_iface_pattern: Option<String>,
    /// `Enabled` or `Disabled`.
    #[serde(
        rename = "floatingIPs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub floating_ips: Option<String>,
    /// `Enabled` or `Disabled`.
    #[serde(
        rename = "windowsManageFirewallRules",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub windows_manage_firewall_rules: Option<String>,
    /// Go GC target percentage.
    #[serde(
        rename = "goGCThreshold",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub go_gc_threshold: Option<i64>,
    /// Go soft memory limit.
    #[serde(
        rename = "goMemoryLimitMB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub go_memory_limit_mb: Option<i64>,
    /// Go GOMAXPROCS.
    #[serde(
        rename = "goMaxProcs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub go_max_procs: Option<i64>,
    /// `Enabled` or `Disabled`.
    #[serde(
        rename = "programClusterRoutes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub program_cluster_routes: Option<String>,
    /// Priority of elevated IPv4 routes.
    #[serde(
        rename = "ipv4ElevatedRoutePriority",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_elevated_route_priority: Option<i64>,
    /// Priority of elevated IPv6 routes.
    #[serde(
        rename = "ipv6ElevatedRoutePriority",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_elevated_route_priority: Option<i64>,
    /// Wait for the MTU file before starting.
    #[serde(
        rename = "requireMTUFile",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub require_mtu_file: Option<bool>,
    /// Path of the cgroup v2 mount.
    #[serde(
        rename = "cgroupV2Path",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cgroup_v2_path: Option<String>,
    /// Period between flow log flushes.
    #[serde(
        rename = "flowLogsFlushInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_flush_interval: Option<String>,
    /// Trace flow log collection.
    #[serde(
        rename = "flowLogsCollectorDebugTrace",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_collector_debug_trace: Option<bool>,
    /// Address of the flow log server.
    #[serde(
        rename = "flowLogsGoldmaneServer",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_goldmane_server: Option<String>,
    /// `None` or `Continuous`.
    #[serde(
        rename = "flowLogsPolicyEvaluationMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_policy_evaluation_mode: Option<String>,
}

/// A protocol/port pair (failsafe ports).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtoPort {
    /// `TCP`, `UDP` or `SCTP`.
    #[serde(rename = "protocol", default)]
    pub protocol: String,
    /// The port (0 allowed).
    #[serde(rename = "port", default)]
    pub port: u16,
    /// Restrict to this CIDR.
    #[serde(rename = "net", default, skip_serializing_if = "String::is_empty")]
    pub net: String,
}

/// A per-component health timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthTimeoutOverride {
    /// The component's health name.
    #[serde(rename = "name", default)]
    pub name: String,
    /// The timeout (Go duration, not negative).
    #[serde(rename = "timeout", default)]
    pub timeout: String,
}

/// A range of route table indices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTableIDRange {
    /// First index.
    #[serde(rename = "min", default)]
    pub min: i64,
    /// Last index.
    #[serde(rename = "max", default)]
    pub max: i64,
}

/// The deprecated single route table range (indices 1-250).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTableRange {
    /// First index.
    #[serde(rename = "min", default)]
    pub min: i64,
    /// Last index.
    #[serde(rename = "max", default)]
    pub max: i64,
}

/// Conntrack timeouts of the eBPF dataplane (Go durations, or `Auto`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BPFConntrackTimeouts {
    /// Grace period for new connections.
    #[serde(
        rename = "creationGracePeriod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub creation_grace_period: Option<String>,
    /// TCP SYN-sent timeout.
    #[serde(
        rename = "tcpSynSent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_syn_sent: Option<String>,
    /// TCP established timeout.
    #[serde(
        rename = "tcpEstablished",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_established: Option<String>,
    /// TCP FIN-seen timeout.
    #[serde(
        rename = "tcpFinsSeen",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_fins_seen: Option<String>,
    /// TCP RST-seen timeout.
    #[serde(
        rename = "tcpResetSeen",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_reset_seen: Option<String>,
    /// UDP timeout.
    #[serde(
        rename = "udpTimeout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub udp_timeout: Option<String>,
    /// Timeout of other protocols.
    #[serde(
        rename = "genericTimeout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub generic_timeout: Option<String>,
    /// ICMP timeout.
    #[serde(
        rename = "icmpTimeout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub icmp_timeout: Option<String>,
}

super::resource!(
    /// Felix settings: cluster-wide (`default`) or per node (`node.<name>`).
    FelixConfiguration,
    FelixConfigurationSpec
);
