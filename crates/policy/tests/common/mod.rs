//! Builders shared by the policy calculation tests.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::net::IpAddr;

use calico_api::v3;
use calico_policy::eval::Trace;
use calico_policy::{Direction, EndpointId, Packet, PolicyCalculator, Update, evaluate};
use serde_json::{Value, json};

/// The node the tests' calculators run on.
pub const NODE: &str = "node1";

pub fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("test resource deserializes")
}

/// A workload endpoint; `local` puts it on [`NODE`].
pub fn wep(ns: &str, name: &str, labels: Value, ips: &[&str], local: bool) -> v3::WorkloadEndpoint {
    typed(json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "node": if local { NODE } else { "node2" },
            "orchestrator": "mesos",
            "ipNetworks": ips,
        }
    }))
}

pub fn wep_update(ns: &str, name: &str, labels: Value, ip: &str, local: bool) -> Update {
    Update::WorkloadEndpoint(wep(ns, name, labels, &[ip], local))
}

pub fn gnp(name: &str, spec: Value) -> Update {
    Update::GlobalNetworkPolicy(typed(json!({"metadata": {"name": name}, "spec": spec})))
}

pub fn np(ns: &str, name: &str, spec: Value) -> Update {
    Update::NetworkPolicy(typed(
        json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}),
    ))
}

pub fn tier(name: &str, spec: Value) -> Update {
    Update::Tier(typed(json!({"metadata": {"name": name}, "spec": spec})))
}

pub fn profile(name: &str, spec: Value) -> Update {
    Update::Profile(typed(json!({"metadata": {"name": name}, "spec": spec})))
}

pub fn gns(name: &str, labels: Value, nets: &[&str]) -> Update {
    Update::GlobalNetworkSet(typed(
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"nets": nets}}),
    ))
}

pub fn ns_set(ns: &str, name: &str, labels: Value, nets: &[&str]) -> Update {
    Update::NetworkSet(typed(json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nets": nets}
    })))
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

pub fn tcp(src: &str, dst: &str, dport: u16) -> Packet {
    Packet {
        src_ip: ip(src),
        dst_ip: ip(dst),
        protocol: 6,
        src_port: Some(40000),
        dst_port: Some(dport),
        icmp_type: None,
        icmp_code: None,
    }
}

pub fn udp(src: &str, dst: &str, dport: u16) -> Packet {
    Packet {
        protocol: 17,
        ..tcp(src, dst, dport)
    }
}

pub fn icmp(src: &str, dst: &str, t: u8, code: u8) -> Packet {
    Packet {
        src_ip: ip(src),
        dst_ip: ip(dst),
        protocol: if ip(src).is_ipv4() { 1 } else { 58 },
        src_port: None,
        dst_port: None,
        icmp_type: Some(t),
        icmp_code: Some(code),
    }
}

pub fn workload(ns: &str, name: &str) -> EndpointId {
    EndpointId::Workload {
        namespace: ns.to_owned(),
        name: name.to_owned(),
    }
}

/// Applies updates one at a time, panicking on a rejected one.
pub fn calc_with(updates: Vec<Update>) -> PolicyCalculator {
    let mut calc = PolicyCalculator::new(NODE);
    for u in updates {
        calc.apply(u).expect("update accepted");
    }
    calc
}

/// Traces `packet` through `ep`'s program in `dir`.
pub fn trace(calc: &PolicyCalculator, ep: &EndpointId, dir: Direction, packet: &Packet) -> Trace {
    let program = calc.program(ep).expect("endpoint has a program");
    evaluate(program, dir, packet, calc)
}
