//! What one host reports: flows aggregated over an interval, by the rule that decided them.

use std::net::IpAddr;

use calico_policy::model::Direction;
use calico_policy::{Decision, Verdict};
use serde::{Deserialize, Serialize};

/// One flow as the host whose policy decided it saw it during one interval: every packet
/// from `source_ip` to `destination_ip` with this protocol and destination port that the
/// same rule decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// The host whose policy decided (the source's host for egress, the destination's for
    /// ingress).
    #[serde(rename = "host")]
    pub host: String,
    /// Which policy direction decided: egress of the source or ingress of the destination.
    #[serde(rename = "reporter")]
    pub reporter: Direction,
    /// The packets' source address.
    #[serde(rename = "sourceIP")]
    pub source_ip: IpAddr,
    /// The packets' destination address.
    #[serde(rename = "destinationIP")]
    pub destination_ip: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP...).
    #[serde(rename = "protocol")]
    pub protocol: u8,
    /// Destination port, for protocols with ports.
    #[serde(rename = "port", default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// What the rule did.
    #[serde(rename = "action")]
    pub action: Verdict,
    /// The rule that decided, as the kernel reported it.
    #[serde(rename = "decision")]
    pub decision: Decision,
    /// Connections started (allowed) or attempted (denied) in the interval.
    #[serde(rename = "connections")]
    pub connections: u64,
    /// Packets, both ways for an allowed connection; the dropped ones for a denied flow.
    #[serde(rename = "packets")]
    pub packets: u64,
    /// Bytes (IP length), counted as `packets`.
    #[serde(rename = "bytes")]
    pub bytes: u64,
    /// When the first packet of the interval was seen (ms since the Unix epoch).
    #[serde(rename = "firstSeenMs")]
    pub first_seen_ms: u64,
    /// When the last packet of the interval was seen (ms since the Unix epoch).
    #[serde(rename = "lastSeenMs")]
    pub last_seen_ms: u64,
}

/// What a host's `/flows` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFlows {
    /// The host.
    #[serde(rename = "host")]
    pub host: String,
    /// Its flows last seen in the window asked for, oldest first.
    #[serde(rename = "flows")]
    pub flows: Vec<FlowRecord>,
    /// What the host could not record (floods are bounded, and counted here).
    #[serde(rename = "lost")]
    pub lost: Lost,
}

/// Flow-log input a host dropped to stay within its bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    /// Logged packets the kernel could not hand over (the agent was behind).
    #[serde(rename = "overruns")]
    pub overruns: u64,
    /// Logged packets not read because the agent was at its rate limit.
    #[serde(rename = "rateLimited")]
    pub rate_limited: u64,
    /// Packets of new flows not recorded because the interval's table was full.
    #[serde(rename = "tableFull")]
    pub table_full: u64,
    /// Logged packets whose prefix names no rule of the current table.
    #[serde(rename = "unattributed")]
    pub unattributed: u64,
}

/// The protocol's usual name (`TCP`, `UDP`...), else its number.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        136 => "UDPLite".into(),
        n => n.to_string(),
    }
}
