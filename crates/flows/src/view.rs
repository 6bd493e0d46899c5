//! The cluster's flows as operators read them: every host's records, merged over the
//! window asked for, with addresses named from the datastore (workload endpoints with
//! their app, task and labels, network sets, hosts).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use calico_api::Kind;
use calico_api::v3;
use calico_datastore::Datastore;
use calico_policy::attribution::Attribution;
use calico_policy::eval::RuleSource;
use calico_policy::model::{Action, Direction};
use calico_policy::{Decision, Verdict};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::record::{FlowRecord, HostFlows, Lost, protocol_name};

/// The Node annotation where calico-node says where its flows are served (`host:port`).
pub const FLOWS_ANNOTATION: &str = "calico-rs/flows";
/// Labels an endpoint's app is read from, first found wins.
pub const APP_LABELS: [&str; 3] = ["app", "MARATHON_APP_ID", "DCOS_SERVICE_NAME"];
/// Labels an endpoint's task is read from (else its workload, the container).
pub const TASK_LABELS: [&str; 1] = ["MESOS_TASK_ID"];

/// Why the cluster's flows could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The datastore could not be read.
    #[error("reading {what} from the datastore: {source}")]
    Datastore {
        /// What was being read.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: calico_datastore::DatastoreError,
    },
    /// One host's flows could not be fetched.
    #[error("reading flows from {url}: {reason}")]
    Fetch {
        /// Where from.
        url: String,
        /// Why it failed.
        reason: String,
    },
}

/// What an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerKind {
    /// A workload endpoint (a container).
    #[serde(rename = "endpoint")]
    Endpoint,
    /// A NetworkSet or GlobalNetworkSet holding the address.
    #[serde(rename = "networkset")]
    NetworkSet,
    /// A Calico host (its Node address).
    #[serde(rename = "host")]
    Host,
    /// Anything else.
    #[serde(rename = "network")]
    Network,
}

/// One end of a flow, named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// What the address belongs to.
    #[serde(rename = "kind")]
    pub kind: PeerKind,
    /// The address.
    #[serde(rename = "ip")]
    pub ip: IpAddr,
    /// `namespace/name` of an endpoint or network set, a host's name, else the address.
    #[serde(rename = "name")]
    pub name: String,
    /// The Marathon app of an endpoint, when its labels say.
    #[serde(rename = "app")]
    pub app: Option<String>,
    /// The task (or container) of an endpoint.
    #[serde(rename = "task")]
    pub task: Option<String>,
    /// The host an endpoint runs on.
    #[serde(rename = "host")]
    pub host: Option<String>,
    /// The endpoint's or network set's labels.
    #[serde(rename = "labels")]
    pub labels: BTreeMap<String, String>,
}

impl Peer {
    /// What to call it in one word: the app, else the name.
    pub fn display(&self) -> &str {
        self.app.as_deref().unwrap_or(&self.name)
    }
}

/// The deciding rule, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedBy {
    /// `rule`, `end-of-tier` or `no-profile`.
    #[serde(rename = "kind")]
    pub kind: String,
    /// The tier of a policy rule or end of tier.
    #[serde(rename = "tier")]
    pub tier: Option<String>,
    /// The policy (`namespace/name` for a NetworkPolicy).
    #[serde(rename = "policy")]
    pub policy: Option<String>,
    /// The profile of a profile rule.
    #[serde(rename = "profile")]
    pub profile: Option<String>,
    /// The rule's index in its policy or profile.
    #[serde(rename = "rule")]
    pub rule: Option<usize>,
    /// One line saying it all.
    #[serde(rename = "text")]
    pub text: String,
}

impl DecidedBy {
    /// The display form of `decision`.
    pub fn of(decision: &Decision) -> DecidedBy {
        let word = |a: &Action| match a {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Pass => "pass",
            Action::Log => "log",
        };
        let none = DecidedBy {
            kind: "rule".into(),
            tier: None,
            policy: None,
            profile: None,
            rule: None,
            text: String::new(),
        };
        match decision {
            Decision::PolicyRule {
                source,
                rule,
                action,
            }
            | Decision::ProfileRule {
                source,
                rule,
                action,
            } => match source {
                RuleSource::Policy {
                    tier,
                    namespace,
                    name,
                } => {
                    let policy = match namespace {
                        Some(ns) => format!("{ns}/{name}"),
                        None => name.clone(),
                    };
                    DecidedBy {
                        text: format!("tier {tier} policy {policy} rule {rule} ({})", word(action)),
                        tier: Some(tier.clone()),
                        policy: Some(policy),
                        rule: Some(*rule),
                        ..none
                    }
                }
                RuleSource::Profile { name } => DecidedBy {
                    text: format!("profile {name} rule {rule} ({})", word(action)),
                    profile: Some(name.clone()),
                    rule: Some(*rule),
                    ..none
                },
            },
            Decision::EndOfTier { tier } => DecidedBy {
                kind: "end-of-tier".into(),
                text: format!("end of tier {tier}: no policy decided (deny)"),
                tier: Some(tier.clone()),
                ..none
            },
            Decision::NoProfileMatched => DecidedBy {
                kind: "no-profile".into(),
                text: "no profile allowed (deny)".into(),
                ..none
            },
            Decision::NoProfile => DecidedBy {
                kind: "no-profile".into(),
                text: "no policy applies and no profile (deny)".into(),
                ..none
            },
        }
    }
}

/// One flow of the cluster, merged over the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Stable id of the flow: host, direction, addresses, protocol, port and rule.
    #[serde(rename = "id")]
    pub id: String,
    /// The host whose policy decided.
    #[serde(rename = "host")]
    pub host: String,
    /// `ingress` (at the destination) or `egress` (at the source).
    #[serde(rename = "reporter")]
    pub reporter: Direction,
    /// Where the packets came from.
    #[serde(rename = "source")]
    pub source: Peer,
    /// Where they went.
    #[serde(rename = "destination")]
    pub destination: Peer,
    /// `TCP`, `UDP`... or the number.
    #[serde(rename = "protocol")]
    pub protocol: String,
    /// The IP protocol number.
    #[serde(rename = "protocolNumber")]
    pub protocol_number: u8,
    /// Destination port.
    #[serde(rename = "port")]
    pub port: Option<u16>,
    /// `allow` or `deny`.
    #[serde(rename = "action")]
    pub action: String,
    /// The rule that decided, for display.
    #[serde(rename = "decidedBy")]
    pub decided_by: DecidedBy,
    /// The rule that decided, as `calicoctl policy trace -o json` says it.
    #[serde(rename = "decision")]
    pub decision: Decision,
    /// Connections started or attempted.
    #[serde(rename = "connections")]
    pub connections: u64,
    /// Packets.
    #[serde(rename = "packets")]
    pub packets: u64,
    /// Bytes.
    #[serde(rename = "bytes")]
    pub bytes: u64,
    /// First seen (RFC 3339).
    #[serde(rename = "firstSeen")]
    pub first_seen: String,
    /// Last seen (RFC 3339).
    #[serde(rename = "lastSeen")]
    pub last_seen: String,
    /// Last seen (ms since the Unix epoch), for sorting.
    #[serde(rename = "lastSeenMs")]
    pub last_seen_ms: u64,
}

/// The cluster's flows, and the hosts that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowsView {
    /// Flows, most recently seen first.
    #[serde(rename = "flows")]
    pub flows: Vec<Flow>,
    /// One line per host whose flows could not be read.
    #[serde(rename = "errors")]
    pub errors: Vec<String>,
    /// What each host dropped to stay within its bounds.
    #[serde(rename = "lost")]
    pub lost: BTreeMap<String, Lost>,
}

/// Addresses and what they belong to, from the datastore.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// The workload endpoints, as listed.
    pub workloads: Vec<v3::WorkloadEndpoint>,
    endpoints: BTreeMap<IpAddr, Peer>,
    sets: Vec<(IpNet, Peer)>,
    hosts: BTreeMap<IpAddr, Peer>,
    /// Hosts and where their flows are served.
    pub nodes: Vec<NodeFlows>,
}

/// A host and where its flows are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFlows {
    /// The host (its Node).
    pub name: String,
    /// Its address.
    pub address: Option<IpAddr>,
    /// `host:port` of its flows (the Node's [`FLOWS_ANNOTATION`]); None: not served.
    pub flows: Option<String>,
}

/// Every resource of `kind` that decodes (a record that does not names nothing; the rest
/// still do).
pub fn list<T: calico_api::ApiResource>(
    ds: &dyn Datastore,
    kind: Kind,
    what: &'static str,
) -> Result<Vec<T>, Error> {
    let listed = ds
        .list(kind, None)
        .map_err(|source| Error::Datastore { what, source })?;
    Ok(listed
        .items
        .into_iter()
        .filter_map(|kv| calico_api::decode::<T>(kv.value).ok())
        .collect())
}

impl Directory {
    /// Reads endpoints, network sets and Nodes.
    pub fn load(ds: &dyn Datastore) -> Result<Directory, Error> {
        let mut dir = Directory {
            workloads: list(ds, Kind::WorkloadEndpoint, "workload endpoints")?,
            ..Directory::default()
        };
        for w in &dir.workloads {
            let labels = w.metadata.labels.clone();
            let (app, task) = app_and_task(w);
            for net in &w.spec.ip_networks {
                let Ok(net) = net.parse::<IpNet>() else {
                    continue;
                };
                dir.endpoints.insert(
                    net.addr(),
                    Peer {
                        kind: PeerKind::Endpoint,
                        ip: net.addr(),
                        name: format!("{}/{}", w.metadata.namespace, w.metadata.name),
                        app: app.clone(),
                        task: task.clone(),
                        host: Some(w.spec.node.clone()),
                        labels: labels.clone(),
                    },
                );
            }
        }
        for s in list::<v3::NetworkSet>(ds, Kind::NetworkSet, "network sets")? {
            let name = format!("{}/{}", s.metadata.namespace, s.metadata.name);
            let labels = s.metadata.labels.clone();
            dir.add_set(&name, &s.spec.nets, &labels);
        }
        for s in list::<v3::GlobalNetworkSet>(ds, Kind::GlobalNetworkSet, "global network sets")? {
            let labels = s.metadata.labels.clone();
            dir.add_set(&s.metadata.name, &s.spec.nets, &labels);
        }
        // Longest prefix first: the most specific set names an address.
        dir.sets
            .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        for n in list::<v3::Node>(ds, Kind::Node, "nodes")? {
            let address = n
                .spec
                .bgp
                .as_ref()
                .and_then(|b| b.ipv4_address.parse::<IpNet>().ok())
                .map(|net| net.addr());
            if let Some(ip) = address {
                dir.hosts.insert(
                    ip,
                    Peer {
                        kind: PeerKind::Host,
                        ip,
                        name: n.metadata.name.clone(),
                        app: None,
                        task: None,
                        host: Some(n.metadata.name.clone()),
                        labels: n.metadata.labels.clone(),
                    },
                );
            }
            let flows = n.metadata.annotations.get(FLOWS_ANNOTATION).cloned();
            dir.nodes.push(NodeFlows {
                name: n.metadata.name.clone(),
                address,
                flows,
            });
        }
        Ok(dir)
    }

    fn add_set(&mut self, name: &str, nets: &[String], labels: &BTreeMap<String, String>) {
        for net in nets {
            let Ok(net) = net.parse::<IpNet>() else {
                continue;
            };
            self.sets.push((
                net,
                Peer {
                    kind: PeerKind::NetworkSet,
                    ip: net.addr(),
                    name: name.to_owned(),
                    app: None,
                    task: None,
                    host: None,
                    labels: labels.clone(),
                },
            ));
        }
    }

    /// What `ip` belongs to.
    pub fn peer(&self, ip: IpAddr) -> Peer {
        if let Some(p) = self.endpoints.get(&ip).or_else(|| self.hosts.get(&ip)) {
            return p.clone();
        }
        if let Some((_, p)) = self.sets.iter().find(|(net, _)| net.contains(&ip)) {
            return Peer { ip, ..p.clone() };
        }
        Peer {
            kind: PeerKind::Network,
            ip,
            name: ip.to_string(),
            app: None,
            task: None,
            host: None,
            labels: BTreeMap::new(),
        }
    }
}

/// An endpoint's Marathon app (from [`APP_LABELS`]) and task (from [`TASK_LABELS`], else
/// its workload).
pub fn app_and_task(w: &v3::WorkloadEndpoint) -> (Option<String>, Option<String>) {
    let labels = &w.metadata.labels;
    let app = APP_LABELS
        .iter()
        .find_map(|k| labels.get(*k))
        .map(|a| a.trim_start_matches(['/', '.']).to_owned());
    let task = TASK_LABELS
        .iter()
        .find_map(|k| labels.get(*k).cloned())
        .or_else(|| (!w.spec.workload.is_empty()).then(|| w.spec.workload.clone()));
    (app, task)
}

/// The merge key (and id) of a record: the same flow in different intervals.
pub fn flow_id(r: &FlowRecord) -> String {
    let rule = Attribution {
        direction: r.reporter,
        decision: r.decision.clone(),
    }
    .log_prefix();
    format!(
        "{}|{}|{}|{}|{}|{}|{rule}",
        r.host,
        r.reporter,
        r.source_ip,
        r.destination_ip,
        r.protocol,
        r.port.map_or_else(|| "-".to_owned(), |p| p.to_string()),
    )
}

fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.replace_nanosecond(0)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Merges records of the same flow (see [`flow_id`]) and names their ends; most
/// recently seen first.
pub fn merge(records: impl IntoIterator<Item = FlowRecord>, dir: &Directory) -> Vec<Flow> {
    let mut merged: BTreeMap<String, FlowRecord> = BTreeMap::new();
    for r in records {
        let id = flow_id(&r);
        match merged.get_mut(&id) {
            Some(m) => {
                m.connections += r.connections;
                m.packets += r.packets;
                m.bytes += r.bytes;
                m.first_seen_ms = m.first_seen_ms.min(r.first_seen_ms);
                m.last_seen_ms = m.last_seen_ms.max(r.last_seen_ms);
            }
            None => {
                merged.insert(id, r);
            }
        }
    }
    let mut flows: Vec<Flow> = merged
        .into_iter()
        .map(|(id, r)| Flow {
            id,
            host: r.host.clone(),
            reporter: r.reporter,
            source: dir.peer(r.source_ip),
            destination: dir.peer(r.destination_ip),
            protocol: protocol_name(r.protocol),
            protocol_number: r.protocol,
            port: r.port,
            action: match r.action {
                Verdict::Allow => "allow".into(),
                Verdict::Deny => "deny".into(),
            },
            decided_by: DecidedBy::of(&r.decision),
            decision: r.decision,
            connections: r.connections,
            packets: r.packets,
            bytes: r.bytes,
            first_seen: rfc3339(r.first_seen_ms),
            last_seen: rfc3339(r.last_seen_ms),
            last_seen_ms: r.last_seen_ms,
        })
        .collect();
    flows.sort_by(|a, b| {
        b.last_seen_ms
            .cmp(&a.last_seen_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    flows
}

/// One host's flows last seen within `since`, from its flows address (`host:port`).
pub fn fetch(address: &str, since: Duration, timeout: Duration) -> Result<HostFlows, Error> {
    let url = format!("http://{address}/flows?since={}", since.as_secs());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    let fail = |reason: String| Error::Fetch {
        url: url.clone(),
        reason,
    };
    let mut resp = agent.get(&url).call().map_err(|e| fail(e.to_string()))?;
    resp.body_mut()
        .with_config()
        .limit(64 << 20)
        .read_json::<HostFlows>()
        .map_err(|e| fail(format!("decoding the answer: {e}")))
}

/// Every host's flows last seen within `since`, named from the datastore. A host that
/// cannot be read is an error line in the view, not a failure of the whole.
pub fn collect(ds: &dyn Datastore, since: Duration) -> Result<(FlowsView, Directory), Error> {
    let dir = Directory::load(ds)?;
    let mut view = FlowsView::default();
    let mut records = Vec::new();
    // Hosts are read in parallel: one slow host must not hold up the rest.
    let fetched: Vec<(String, Result<HostFlows, Error>)> = std::thread::scope(|s| {
        let handles: Vec<_> = dir
            .nodes
            .iter()
            .map(|n| {
                s.spawn(move || {
                    let got = match &n.flows {
                        Some(addr) => fetch(addr, since, Duration::from_secs(3)),
                        None => Err(Error::Fetch {
                            url: "(none)".into(),
                            reason: format!(
                                "Node {} has no {FLOWS_ANNOTATION} annotation: its calico-node does not serve flows",
                                n.name
                            ),
                        }),
                    };
                    (n.name.clone(), got)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (host, got) in fetched {
        match got {
            Ok(h) => {
                view.lost.insert(host, h.lost);
                records.extend(h.flows);
            }
            Err(e) => view.errors.push(format!("{host}: {e}")),
        }
    }
    view.flows = merge(records, &dir);
    Ok((view, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(src: &str, sport_rule: usize, packets: u64, last: u64) -> FlowRecord {
        FlowRecord {
            host: "h1".into(),
            reporter: Direction::Ingress,
            source_ip: src.parse().unwrap(),
            destination_ip: "10.0.0.2".parse().unwrap(),
            protocol: 6,
            port: Some(80),
            action: Verdict::Deny,
            decision: Decision::PolicyRule {
                source: RuleSource::Policy {
                    tier: "default".into(),
                    namespace: Some("default".into()),
                    name: "p".into(),
                },
                rule: sport_rule,
                action: Action::Deny,
            },
            connections: 1,
            packets,
            bytes: packets * 60,
            first_seen_ms: last - 1000,
            last_seen_ms: last,
        }
    }

    #[test]
    fn records_of_one_flow_merge_and_others_stay_apart() {
        let dir = Directory::default();
        let flows = merge(
            [
                record("10.0.0.1", 1, 2, 10_000),
                record("10.0.0.1", 1, 3, 20_000),
                record("10.0.0.1", 0, 1, 5_000),
                record("10.0.0.9", 1, 1, 30_000),
            ],
            &dir,
        );
        assert_eq!(flows.len(), 3);
        assert_eq!(flows[0].source.ip.to_string(), "10.0.0.9", "newest first");
        let merged = &flows[1];
        assert_eq!(
            (merged.packets, merged.connections, merged.bytes),
            (5, 2, 300)
        );
        assert_eq!(merged.first_seen, "1970-01-01T00:00:09Z");
        assert_eq!(merged.last_seen, "1970-01-01T00:00:20Z");
        assert_eq!(
            merged.decided_by.text,
            "tier default policy default/p rule 1 (deny)"
        );
        assert_eq!(merged.source.kind, PeerKind::Network);
    }

    #[test]
    fn the_most_specific_network_set_names_an_address() {
        let mut dir = Directory::default();
        dir.add_set("wide", &["10.0.0.0/8".into()], &BTreeMap::new());
        dir.add_set("narrow", &["10.1.0.0/16".into()], &BTreeMap::new());
        dir.sets
            .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        assert_eq!(dir.peer("10.1.2.3".parse().unwrap()).name, "narrow");
        assert_eq!(dir.peer("10.2.2.3".parse().unwrap()).name, "wide");
        assert_eq!(
            dir.peer("10.2.2.3".parse().unwrap()).ip.to_string(),
            "10.2.2.3"
        );
        assert_eq!(
            dir.peer("11.0.0.1".parse().unwrap()).kind,
            PeerKind::Network
        );
    }
}
