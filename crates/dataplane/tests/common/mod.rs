//! The seed bookstore example, fed through the policy calculator.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::collections::BTreeMap;

use calico_api::v3;
use calico_dataplane::Interface;
use calico_policy::{EndpointId, PolicyCalculator, Snapshot, Update};
use serde_json::json;

/// The node the calculator runs on.
pub const NODE: &str = "node1";

/// (endpoint name, labels, address, host interface).
pub const ENDPOINTS: [(&str, &str, &str, &str); 3] = [
    (
        "bookstore-frontend",
        r#"{"biz_type":"bookstore"}"#,
        "10.1.0.1",
        "calibsfront",
    ),
    (
        "bookstore-server",
        r#"{"biz_type":"bookstore","role":"server"}"#,
        "10.1.0.2",
        "calibsserver",
    ),
    (
        "fruitstore-frontend",
        r#"{"biz_type":"fruitstore"}"#,
        "10.1.0.3",
        "califsfront",
    ),
];

fn seed(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(format!(
        "{}/../../examples/seed/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("seed file");
    serde_saphyr::from_str(&text).expect("seed YAML")
}

/// The workload endpoint id of `name` in namespace `default`.
pub fn workload(name: &str) -> EndpointId {
    EndpointId::Workload {
        namespace: "default".to_owned(),
        name: name.to_owned(),
    }
}

/// The calculator's snapshot for profile `calico`, the bookstore policy and
/// the three endpoints, and the endpoint → interface map.
pub fn bookstore() -> (Snapshot, BTreeMap<EndpointId, Interface>) {
    bookstore_with(|_| {})
}

/// [`bookstore`] with the seed's policy document changed by `edit` first.
pub fn bookstore_with(
    edit: impl FnOnce(&mut serde_json::Value),
) -> (Snapshot, BTreeMap<EndpointId, Interface>) {
    let prof = calico_api::parse_resource(seed("profile-calico.yaml")).expect("valid profile");
    let mut pol = seed("policy-bookstore.yaml");
    pol["metadata"]["namespace"] = json!("default");
    edit(&mut pol);
    let pol = calico_api::parse_resource(pol).expect("valid policy");
    let mut updates = vec![
        Update::from_resource(&prof)
            .expect("profile")
            .expect("policy kind"),
        Update::from_resource(&pol)
            .expect("policy")
            .expect("policy kind"),
    ];
    let mut ifaces = BTreeMap::new();
    for (name, labels, ip, iface) in ENDPOINTS {
        let labels: serde_json::Value = serde_json::from_str(labels).expect("labels");
        let wep: v3::WorkloadEndpoint = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"node": NODE, "orchestrator": "mesos", "ipNetworks": [ip], "profiles": ["calico"]}
        }))
        .expect("endpoint");
        updates.push(Update::WorkloadEndpoint(wep));
        let source = format!("{ip}/32").parse().expect("address");
        ifaces.insert(workload(name), Interface::new(iface, vec![source]));
    }
    let mut calc = PolicyCalculator::new(NODE);
    let (_, errors) = calc.apply_batch(updates);
    assert!(errors.is_empty(), "{errors:?}");
    (calc.snapshot(), ifaces)
}

/// A snapshot exercising every rule shape the renderer emits: two tiers
/// (one ending in Pass), Pass/Log/Deny/Allow, IPv4 and IPv6 nets and
/// negations, ICMP, port ranges, not-ports, named ports and a profile.
pub fn every_shape() -> (Snapshot, BTreeMap<EndpointId, Interface>) {
    fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("test resource")
    }
    let mut updates = vec![
        Update::Tier(typed(
            json!({"metadata": {"name": "security"}, "spec": {"order": 10, "defaultAction": "Pass"}}),
        )),
        Update::Profile(typed(json!({"metadata": {"name": "calico"}, "spec": {
            "ingress": [{"action": "Pass"}, {"action": "Allow", "source": {"selector": "has(app)"}}],
            "egress": [{"action": "Allow"}]}}))),
        Update::GlobalNetworkPolicy(typed(
            json!({"metadata": {"name": "security.gate"}, "spec": {
            "tier": "security", "order": 1, "selector": "all()",
            "ingress": [
                {"action": "Log", "protocol": "TCP"},
                {"action": "Deny", "source": {"nets": ["192.0.2.0/24", "2001:db8::/32"], "notNets": ["192.0.2.7/32"]}},
                {"action": "Pass", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}},
                {"action": "Deny", "protocol": "ICMP", "notICMP": {"type": 8, "code": 0}},
                {"action": "Allow", "protocol": "ICMPv6", "notICMP": {"type": 128}},
                {"action": "Allow", "protocol": "UDP", "destination": {"ports": ["1000:2000", 53], "notPorts": [1500]}}
            ]}}),
        )),
        Update::GlobalNetworkPolicy(typed(json!({"metadata": {"name": "web"}, "spec": {
            "order": 5, "selector": "app == 'web'",
            "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'client'"},
                         "destination": {"ports": ["http", 443]}}],
            "egress": [{"action": "Deny", "ipVersion": 6}, {"action": "Allow", "destination": {"notSelector": "app == 'web'"}}]}}))),
    ];
    let mut ifaces = BTreeMap::new();
    for (name, app, ips, iface) in [
        ("web", "web", ["10.2.0.1/32", "fd00::1/128"], "caliweb"),
        (
            "client",
            "client",
            ["10.2.0.2/32", "fd00::2/128"],
            "caliclient",
        ),
    ] {
        let wep: v3::WorkloadEndpoint = typed(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"node": NODE, "orchestrator": "mesos", "ipNetworks": ips, "profiles": ["calico"],
                     "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}
        }));
        updates.push(Update::WorkloadEndpoint(wep));
        let sources = ips.iter().map(|n| n.parse().expect("net")).collect();
        ifaces.insert(workload(name), Interface::new(iface, sources));
    }
    let mut calc = PolicyCalculator::new(NODE);
    let (_, errors) = calc.apply_batch(updates);
    assert!(errors.is_empty(), "{errors:?}");
    (calc.snapshot(), ifaces)
}

/// Loads `batch` written in nft's syntax with `nft` (`cmd`, with any namespace wrapper already
/// in its arguments), reading it from stdin with `-f -`; panics with nft's complaint and the
/// text when it is refused.
pub fn apply_text(mut cmd: std::process::Command, batch: &nftables::schema::Nftables<'_>) {
    use std::io::Write as _;
    let text = calico_dataplane::text::to_text(batch).expect("the batch has a text form");
    let mut child = cmd
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writing the batch");
    let out = child.wait_with_output().expect("nft ends");
    assert!(
        out.status.success(),
        "nft -f refused the text form: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}
