//! FelixConfiguration.

use super::{
    Check, duration, fail, fail_bare, index, ip, ip_or_cidr, is_dns1123_label, is_interface_name,
    join, one_of, one_of_ci,
};
use crate::v3::FelixConfigurationSpec;

const LOG_LEVELS: [&str; 6] = ["Trace", "Debug", "Info", "Warning", "Error", "Fatal"];
/// Longest OpenStack region: it becomes part of a 63-character label
/// (`openstack-region-<region>`).
const MAX_OPENSTACK_REGION: usize = 63 - "openstack-region-".len();

fn regex_pattern(field: &str, p: &str) -> Check {
    regex::Regex::new(p)
        .map(|_| ())
        .map_err(|_| fail(field, &p, "invalid regular expression"))
}

fn range(field: &str, v: i64, lo: i64, hi: i64) -> Check {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(fail(field, &v, format!("must be between {lo} and {hi}")))
    }
}

fn hostname_or_ip(field: &str, s: &str) -> Check {
    if super::parse_ip(s).is_some() {
        return Ok(());
    }
    let ok = s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(fail(field, &s, "must be a hostname or IP address"))
    }
}

/// Checks a FelixConfiguration: its spec, and that `nodeSelector` is only on a resource that
/// is neither the global `default` nor a `node.<name>` one (their names say where they apply).
pub(crate) fn felix_configuration(name: &str, s: &FelixConfigurationSpec) -> Check {
    if s.node_selector.is_some() && (name == "default" || name.starts_with("node.")) {
        return Err(fail(
            "spec.nodeSelector",
            &s.node_selector.as_deref().unwrap_or_default(),
            format!(
                "not allowed on FelixConfiguration {name:?}: its name already says which nodes it applies to"
            ),
        ));
    }
    felix_spec("spec", s)
}

/// Checks a FelixConfiguration spec.
pub(crate) fn felix_spec(field: &str, s: &FelixConfigurationSpec) -> Check {
    let f = |n: &str| join(field, n);
    if let Some(sel) = &s.node_selector {
        super::selector(&f("nodeSelector"), sel, super::SelectorUse::Plain)?;
    }
    let enums: [(&str, &Option<String>, &[&str], bool); 26] = [
        (
            "iptablesBackend",
            &s.iptables_backend,
            &["Legacy", "NFT", "Auto"],
            // The CRD's enum is case-sensitive.
            false,
        ),
        (
            "chainInsertMode",
            &s.chain_insert_mode,
            &["Insert", "Append"],
            true,
        ),
        (
            "defaultEndpointToHostAction",
            &s.default_endpoint_to_host_action,
            &["Drop", "Return", "Accept"],
            true,
        ),
        (
            "iptablesFilterAllowAction",
            &s.iptables_filter_allow_action,
            &["Accept", "Return"],
            true,
        ),
        (
            "iptablesMangleAllowAction",
            &s.iptables_mangle_allow_action,
            &["Accept", "Return"],
            true,
        ),
        (
            "iptablesFilterDenyAction",
            &s.iptables_filter_deny_action,
            &["Drop", "Reject"],
            true,
        ),
        (
            "nftablesFilterAllowAction",
            &s.nftables_filter_allow_action,
            &["Accept", "Return"],
            true,
        ),
        (
            "nftablesMangleAllowAction",
            &s.nftables_mangle_allow_action,
            &["Accept", "Return"],
            true,
        ),
        (
            "nftablesFilterDenyAction",
            &s.nftables_filter_deny_action,
            &["Drop", "Reject"],
            true,
        ),
        (
            "nftablesMode",
            &s.nftables_mode,
            &["Enabled", "Disabled", "Auto"],
            false,
        ),
        ("logSeverityFile", &s.log_severity_file, &LOG_LEVELS, true),
        (
            "logSeverityScreen",
            &s.log_severity_screen,
            &LOG_LEVELS,
            true,
        ),
        ("logSeveritySys", &s.log_severity_sys, &LOG_LEVELS, true),
        (
            "bpfLogLevel",
            &s.bpf_log_level,
            &["Off", "Info", "Debug"],
            true,
        ),
        (
            "bpfExternalServiceMode",
            &s.bpf_external_service_mode,
            &["Tunnel", "DSR"],
            true,
        ),
        (
            "bpfConnectTimeLoadBalancing",
            &s.bpf_connect_time_load_balancing,
            &["TCP", "Enabled", "Disabled"],
            false,
        ),
        (
            "bpfHostNetworkedNATWithoutCTLB",
            &s.bpf_host_networked_nat_without_ctlb,
            &["Enabled", "Disabled"],
            false,
        ),
        (
            "bpfEnforceRPF",
            &s.bpf_enforce_rpf,
            &["Disabled", "Strict", "Loose"],
            true,
        ),
        (
            "awsSrcDstCheck",
            &s.aws_src_dst_check,
            &["DoNothing", "Enable", "Disable"],
            false,
        ),
        (
            "serviceLoopPrevention",
            &s.service_loop_prevention,
            &["Drop", "Reject", "Disabled"],
            false,
        ),
        (
            "workloadSourceSpoofing",
            &s.workload_source_spoofing,
            &["Disabled", "Any"],
            false,
        ),
        (
            "windowsManageFirewallRules",
            &s.windows_manage_firewall_rules,
            &["Enabled", "Disabled"],
            false,
        ),
        (
            "floatingIPs",
            &s.floating_ips,
            &["Enabled", "Disabled"],
            false,
        ),
        (
            "routeSource",
            &s.route_source,
            &["CalicoIPAM", "WorkloadIPs"],
            false,
        ),
        (
            "ipForwarding",
            &s.ip_forwarding,
            &["Enabled", "Disabled"],
            false,
        ),
        (
            "natOutgoingExclusions",
            &s.nat_outgoing_exclusions,
            &["IPPoolsOnly", "IPPoolsAndHostIPs"],
            false,
        ),
    ];
    // CRD enums (case-sensitive) the struct tags do not carry.
    let crd_enums: [(&str, &Option<String>, &[&str], bool); 6] = [
        (
            "bpfAttachType",
            &s.bpf_attach_type,
            &["TC", "TCX", "Netkit"],
            false,
        ),
        (
            "bpfConntrackLogLevel",
            &s.bpf_conntrack_log_level,
            &["Off", "Debug"],
            false,
        ),
        (
            "bpfRedirectToPeer",
            &s.bpf_redirect_to_peer,
            &["Enabled", "Disabled"],
            false,
        ),
        (
            "bpfProfiling",
            &s.bpf_profiling,
            &["Enabled", "Disabled"],
            false,
        ),
        (
            "flowLogsPolicyEvaluationMode",
            &s.flow_logs_policy_evaluation_mode,
            &["None", "Continuous"],
            false,
        ),
        (
            "programClusterRoutes",
            &s.program_cluster_routes,
            &[
                "Enabled",
                "Disabled",
                "EnabledIPIPOnly",
                "EnabledNoEncapOnly",
            ],
            false,
        ),
    ];
    for (name, value, allowed, case_insensitive) in enums.into_iter().chain(crd_enums) {
        if let Some(v) = value {
            if case_insensitive {
                one_of_ci(&f(name), v, allowed)?;
            } else {
                one_of(&f(name), v, allowed)?;
            }
        }
    }
    if let Some(r) = &s.openstack_region
        && !r.is_empty()
        && (r.len() > MAX_OPENSTACK_REGION || !is_dns1123_label(r))
    {
        return Err(fail(
            &f("openstackRegion"),
            r,
            format!("must be a lower-case DNS label of at most {MAX_OPENSTACK_REGION} characters"),
        ));
    }
    if let Some(ports) = &s.kube_node_port_ranges {
        if ports.len() > 7 {
            return Err(fail_bare(
                &f("kubeNodePortRanges"),
                "at most 7 port ranges may be given",
            ));
        }
        for (i, p) in ports.iter().enumerate() {
            if p.is_named() {
                return Err(fail(
                    &index(&f("kubeNodePortRanges"), i),
                    p,
                    "named ports are not allowed",
                ));
            }
        }
    }
    for (name, port) in [
        ("natPortRange", &s.nat_port_range),
        ("bpfPSNATPorts", &s.bpf_psnat_ports),
    ] {
        if let Some(p) = port
            && p.is_named()
        {
            return Err(fail(&f(name), p, "named ports are not allowed"));
        }
    }
    if let Some(list) = &s.external_nodes_list {
        for (i, n) in list.iter().enumerate() {
            ip_or_cidr(&index(&f("externalNodesList"), i), n, Some(4))?;
        }
    }
    for (name, list) in [
        ("bpfDSROptoutCIDRs", &s.bpf_dsr_optout_cidrs),
        ("bpfExcludeCIDRsFromNAT", &s.bpf_exclude_cidrs_from_nat),
    ] {
        if let Some(list) = list {
            for (i, n) in list.iter().enumerate() {
                ip_or_cidr(&index(&f(name), i), n, None)?;
            }
        }
    }
    if let Some(v) = s.bpf_ext_to_service_connmark {
        range(&f("bpfExtToServiceConnmark"), v, 0, i64::from(u32::MAX))?;
    }
    for (name, p) in [
        ("bpfDataIfacePattern", &s.bpf_data_iface_pattern),
        ("bpfL3IfacePattern", &s.bpf_l3_iface_pattern),
        ("mtuIfacePattern", &s.mtu_iface_pattern),
        ("bpfDisableGROForIfaces", &s.bpf_disable_gro_for_ifaces),
        ("logDebugFilenameRegex", &s.log_debug_filename_regex),
    ] {
        if let Some(p) = p {
            regex_pattern(&f(name), p)?;
        }
    }
    if let Some(r) = &s.route_table_range {
        if s.route_table_ranges.is_some() {
            return Err(fail_bare(
                &f("routeTableRange"),
                "routeTableRange and routeTableRanges cannot both be set",
            ));
        }
        if r.min < 1 || r.max > 250 || r.min > r.max {
            return Err(fail(
                &f("routeTableRange"),
                r,
                "must be a range of route table indices within 1..250",
            ));
        }
    }
    if let Some(ranges) = &s.route_table_ranges {
        // Felix designates at most 65535 tables over all the ranges.
        let total: i64 = ranges.iter().map(|r| (r.max - r.min + 1).max(0)).sum();
        if total > 65535 {
            return Err(fail(
                &f("routeTableRanges"),
                &total,
                "the ranges designate more than 65535 route tables in all",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            let rf = index(&f("routeTableRanges"), i);
            if r.min < 1 {
                return Err(fail(&join(&rf, "min"), &r.min, "min must be >= 1"));
            }
            if r.max > i64::from(u32::MAX) {
                return Err(fail(&join(&rf, "max"), &r.max, "max must be <= 4294967295"));
            }
            if r.min > r.max {
                return Err(fail(&rf, r, "min must be <= max"));
            }
            // Felix refuses to manage more than a 16-bit range of tables per entry.
            if r.max - r.min + 1 > 65535 {
                return Err(fail(
                    &rf,
                    r,
                    "a single range may target at most 65535 tables",
                ));
            }
        }
    }
    if let Some(list) = &s.health_timeout_overrides {
        for (i, o) in list.iter().enumerate() {
            let of = index(&f("healthTimeoutOverrides"), i);
            let ok = !o.name.is_empty()
                && o.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(fail(
                    &join(&of, "name"),
                    &o.name,
                    "invalid health component name",
                ));
            }
            duration(&join(&of, "timeout"), &o.timeout, true)?;
        }
    }
    for (name, v) in [
        ("ipv4ElevatedRoutePriority", s.ipv4_elevated_route_priority),
        ("ipv6ElevatedRoutePriority", s.ipv6_elevated_route_priority),
    ] {
        if let Some(v) = v {
            range(&f(name), v, 1, i64::from(i32::MAX) - 1)?;
        }
    }
    if let Some(a) = &s.nat_outgoing_address
        && !a.is_empty()
    {
        ip(&f("natOutgoingAddress"), a, Some(4))?;
    }
    if let Some(a) = &s.device_route_source_address
        && !a.is_empty()
    {
        ip(&f("deviceRouteSourceAddress"), a, Some(4))?;
    }
    if let Some(a) = &s.device_route_source_address_ipv6
        && !a.is_empty()
    {
        ip(&f("deviceRouteSourceAddressIPv6"), a, Some(6)).map_err(|mut e| {
            e.reason = "deviceRouteSourceAddressIPv6 must be a valid IPv6 address".to_owned();
            e
        })?;
    }
    for (name, h) in [
        ("prometheusMetricsHost", &s.prometheus_metrics_host),
        ("healthHost", &s.health_host),
        ("debugHost", &s.debug_host),
    ] {
        if let Some(h) = h
            && !h.is_empty()
        {
            hostname_or_ip(&f(name), h)?;
        }
    }
    if let Some(h) = &s.prometheus_metrics_host
        && h.len() > 64
    {
        return Err(fail(
            &f("prometheusMetricsHost"),
            h,
            "must be at most 64 characters",
        ));
    }
    for (name, v, lo, hi) in [
        ("goGCThreshold", s.go_gc_threshold, -1, i64::MAX),
        ("goMemoryLimitMB", s.go_memory_limit_mb, -1, i64::MAX),
        ("goMaxProcs", s.go_max_procs, -1, i64::MAX),
        ("bpfMaglevMaxServices", s.bpf_maglev_max_services, 1, 3000),
        (
            "bpfMaglevMaxEndpointsPerService",
            s.bpf_maglev_max_endpoints_per_service,
            1,
            3000,
        ),
        (
            "logActionRateLimitBurst",
            s.log_action_rate_limit_burst,
            0,
            9999,
        ),
    ] {
        if let Some(v) = v {
            range(&f(name), v, lo, hi)?;
        }
    }
    for (name, value, pattern, what) in [
        (
            "logActionRateLimit",
            &s.log_action_rate_limit,
            r"^[1-9]\d{0,3}/(?:second|minute|hour|day)$",
            "a rate such as 10/second (1-9999 per second, minute, hour or day)",
        ),
        (
            "iptablesNATOutgoingInterfaceFilter",
            &s.iptables_nat_outgoing_interface_filter,
            r"^[a-zA-Z0-9:._+-]{1,15}$",
            "an interface name or pattern of at most 15 characters",
        ),
        (
            "logPrefix",
            &s.log_prefix,
            r"^([a-zA-Z0-9%: /_-])*$",
            "letters, digits, '%', ':', ' ', '/', '_' and '-' only",
        ),
    ] {
        if let Some(v) = value
            && !regex::Regex::new(pattern).is_ok_and(|re| re.is_match(v))
        {
            return Err(fail(&f(name), v, format!("must be {what}")));
        }
    }
    // Comma-separated key=value lists (upstream's `keyValueList`); empty items are allowed.
    for (name, value) in [
        ("featureGates", &s.feature_gates),
        ("featureDetectOverride", &s.feature_detect_override),
    ] {
        if let Some(list) = value {
            for item in list.split(',').filter(|i| !i.is_empty()) {
                let ok = item.trim_start().split_once('=').is_some_and(|(k, _)| {
                    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
                if !ok {
                    return Err(fail(
                        &f(name),
                        list,
                        format!("{item:?} is not key=value (a comma-separated list of them)"),
                    ));
                }
            }
        }
    }
    if let Some(p) = s.debug_port {
        // 0 turns the debug server off.
        range(&f("debugPort"), p, 0, 65535)?;
    }
    for (name, p) in [
        ("wireguardListeningPort", s.wireguard_listening_port),
        ("wireguardListeningPortV6", s.wireguard_listening_port_v6),
        ("healthPort", s.health_port),
        ("prometheusMetricsPort", s.prometheus_metrics_port),
        ("vxlanPort", s.vxlan_port),
        ("metadataPort", s.metadata_port),
        ("bpfKubeProxyHealthzPort", s.bpf_kube_proxy_healthz_port),
    ] {
        if let Some(p) = p {
            range(&f(name), p, 1, 65535)?;
        }
    }
    if let Some(p) = s.wireguard_routing_rule_priority {
        range(&f("wireguardRoutingRulePriority"), p, 1, 32765)?;
    }
    for (name, iface) in [
        ("wireguardInterfaceName", &s.wireguard_interface_name),
        ("wireguardInterfaceNameV6", &s.wireguard_interface_name_v6),
    ] {
        if let Some(i) = iface
            && !i.is_empty()
            && !is_interface_name(i)
        {
            return Err(fail(&f(name), i, "invalid interface name"));
        }
    }
    if let Some(list) = &s.bpf_force_track_packets_from_ifaces {
        for (i, iface) in list.iter().enumerate() {
            // A trailing `+` matches every interface with that prefix.
            if !is_interface_name(iface.strip_suffix('+').unwrap_or(iface)) {
                return Err(fail(
                    &index(&f("bpfForceTrackPacketsFromIfaces"), i),
                    iface,
                    "invalid interface name",
                ));
            }
        }
    }
    if let Some(ports) = &s.failsafe_inbound_host_ports {
        for (i, p) in ports.iter().enumerate() {
            proto_port(&index(&f("failsafeInboundHostPorts"), i), p)?;
        }
    }
    if let Some(ports) = &s.failsafe_outbound_host_ports {
        for (i, p) in ports.iter().enumerate() {
            proto_port(&index(&f("failsafeOutboundHostPorts"), i), p)?;
        }
    }
    let durations = [
        ("dataplaneWatchdogTimeout", &s.dataplane_watchdog_timeout),
        ("routeRefreshInterval", &s.route_refresh_interval),
        ("interfaceRefreshInterval", &s.interface_refresh_interval),
        ("iptablesRefreshInterval", &s.iptables_refresh_interval),
        (
            "iptablesPostWriteCheckInterval",
            &s.iptables_post_write_check_interval,
        ),
        ("iptablesLockTimeout", &s.iptables_lock_timeout),
        ("iptablesLockProbeInterval", &s.iptables_lock_probe_interval),
        ("ipsetsRefreshInterval", &s.ipsets_refresh_interval),
        ("xdpRefreshInterval", &s.xdp_refresh_interval),
        ("netlinkTimeout", &s.netlink_timeout),
        ("reportingInterval", &s.reporting_interval),
        ("reportingTTL", &s.reporting_ttl),
        ("endpointReportingDelay", &s.endpoint_reporting_delay),
        (
            "usageReportingInitialDelay",
            &s.usage_reporting_initial_delay,
        ),
        ("usageReportingInterval", &s.usage_reporting_interval),
        ("nftablesRefreshInterval", &s.nftables_refresh_interval),
        (
            "bpfKubeProxyMinSyncPeriod",
            &s.bpf_kube_proxy_min_sync_period,
        ),
        ("wireguardKeepAlive", &s.wireguard_keep_alive),
        ("flowLogsFlushInterval", &s.flow_logs_flush_interval),
    ];
    for (name, d) in durations {
        if let Some(d) = d {
            // The CRD's duration pattern has no sign.
            duration(&f(name), d, true)?;
        }
    }
    for (name, d) in [
        (
            "debugSimulateCalcGraphHangAfter",
            &s.debug_simulate_calc_graph_hang_after,
        ),
        (
            "debugSimulateDataplaneHangAfter",
            &s.debug_simulate_dataplane_hang_after,
        ),
        (
            "debugSimulateDataplaneApplyDelay",
            &s.debug_simulate_dataplane_apply_delay,
        ),
    ] {
        if let Some(d) = d {
            duration(&f(name), d, true)?;
        }
    }
    Ok(())
}

/// Checks a failsafe protocol/port entry.
pub(crate) fn proto_port(field: &str, p: &crate::v3::ProtoPort) -> Check {
    one_of(
        &join(field, "protocol"),
        &p.protocol,
        &["TCP", "UDP", "SCTP"],
    )?;
    if !p.net.is_empty() {
        ip_or_cidr(&join(field, "net"), &p.net, None)?;
    }
    Ok(())
}
