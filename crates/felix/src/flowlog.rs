//! Flow logs: every rule that decides a packet logs it to an nflog group under its
//! attribution's prefix (see `calico_policy::attribution`); this module reads that group,
//! aggregates the packets per flow and deciding rule over an interval, adds the packet and
//! byte counts of allowed connections from conntrack, and keeps the recent intervals for
//! `/flows`. Bounded everywhere: a rate limit on what is read (the kernel drops the rest,
//! counted), a cap on the flows of an interval and on the records kept.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use calico_flows::{FlowRecord, HostFlows, Lost};
use calico_policy::Verdict;
use calico_policy::attribution::Attribution;
use calico_policy::model::Direction;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Flow-log settings.
#[derive(Debug, Clone)]
pub struct FlowLogConfig {
    /// The nflog group the rules log to.
    pub group: u16,
    /// How long packets are aggregated before a flow record is written.
    pub interval: Duration,
    /// Most flows recorded per interval; packets of further new flows are counted as lost.
    pub max_flows: usize,
    /// How long records are kept.
    pub retention: Duration,
    /// Most records kept (the oldest go first).
    pub max_records: usize,
    /// Most logged packets read per second; the kernel drops the rest (counted).
    pub max_rate: u32,
    /// Most allowed connections followed for their packet and byte counts.
    pub max_connections: usize,
}

impl Default for FlowLogConfig {
    fn default() -> Self {
        FlowLogConfig {
            group: 20,
            interval: Duration::from_secs(5),
            max_flows: 10_000,
            retention: Duration::from_secs(15 * 60),
            max_records: 100_000,
            max_rate: 20_000,
            max_connections: 65_536,
        }
    }
}

/// One packet a rule logged, as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPacket<'a> {
    /// The log prefix (the rule's attribution).
    pub prefix: &'a str,
    /// The connection's addresses, protocol and ports.
    pub tuple: Tuple,
    /// IP length in bytes.
    pub len: u64,
}

/// A connection's identity as conntrack's original direction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol.
    pub proto: u8,
    /// Source port (0 without ports).
    pub sport: u16,
    /// Destination port (0 without ports).
    pub dport: u16,
}

/// A conntrack entry's counters, both directions summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtCounters {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlowKey {
    reporter: Direction,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    dport: u16,
    prefix: Arc<str>,
}

/// A rule of the table in force, with its Prometheus counters (looked up once).
#[derive(Debug)]
struct Rule {
    who: Attribution,
    packets: Counter,
    bytes: Counter,
}

impl Rule {
    fn count(&self, packets: u64, bytes: u64) {
        self.packets.inc_by(packets);
        self.bytes.inc_by(bytes);
    }
}

#[derive(Debug, Clone)]
struct Counts {
    who: Arc<Rule>,
    connections: u64,
    packets: u64,
    bytes: u64,
    first_ms: u64,
    last_ms: u64,
}

/// An allowed connection followed in conntrack.
#[derive(Debug, Clone)]
struct Followed {
    key: FlowKey,
    who: Arc<Rule>,
    /// Counters already accounted.
    seen: CtCounters,
}

/// Labels of the per-rule counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RuleLabels {
    /// `ingress` or `egress`.
    pub direction: String,
    /// The tier (empty for profiles and the no-profile drop).
    pub tier: String,
    /// The policy or `profile <name>` (empty for end of tier and the no-profile drop).
    pub policy: String,
    /// The rule index, `end-of-tier` or `no-profile`.
    pub rule: String,
    /// `allow` or `deny`.
    pub action: String,
}

impl RuleLabels {
    fn of(who: &Attribution) -> RuleLabels {
        let d = calico_flows::view::DecidedBy::of(&who.decision);
        RuleLabels {
            direction: who.direction.to_string(),
            tier: d.tier.unwrap_or_default(),
            policy: d
                .policy
                .or_else(|| d.profile.map(|p| format!("profile {p}")))
                .unwrap_or_default(),
            rule: d.rule.map_or(d.kind, |r| r.to_string()),
            action: match who.verdict() {
                Verdict::Allow => "allow".into(),
                Verdict::Deny => "deny".into(),
            },
        }
    }
}

/// Flow-log metrics (on felix's metrics port).
#[derive(Debug, Clone, Default)]
pub struct FlowMetrics {
    /// Packets per deciding rule (allowed connections: both ways, from conntrack).
    pub rule_packets: Family<RuleLabels, Counter>,
    /// Bytes per deciding rule.
    pub rule_bytes: Family<RuleLabels, Counter>,
    /// Logged packets the kernel could not hand over.
    pub overruns: Counter,
    /// Logged packets left unread at the rate limit.
    pub rate_limited: Counter,
    /// Packets of flows not recorded because an interval's table was full.
    pub table_full: Counter,
    /// Logged packets with a prefix no rule of the table carries.
    pub unattributed: Counter,
}

impl FlowMetrics {
    /// Registers the series under `felix_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("felix");
        r.register(
            "policy_rule_packets",
            "Packets decided per policy rule, with the action (allowed connections count both ways)",
            self.rule_packets.clone(),
        );
        r.register(
            "policy_rule_bytes",
            "Bytes decided per policy rule, with the action",
            self.rule_bytes.clone(),
        );
        r.register(
            "flow_log_overruns",
            "Logged packets the kernel could not hand to felix (it was behind)",
            self.overruns.clone(),
        );
        r.register(
            "flow_log_rate_limited",
            "Logged packets felix left unread at its rate limit",
            self.rate_limited.clone(),
        );
        r.register(
            "flow_log_table_full",
            "Packets of new flows not recorded because the interval's flow table was full",
            self.table_full.clone(),
        );
        r.register(
            "flow_log_unattributed",
            "Logged packets whose prefix names no rule of the current table",
            self.unattributed.clone(),
        );
    }

    fn rule(&self, who: Attribution) -> Rule {
        let labels = RuleLabels::of(&who);
        Rule {
            packets: self.rule_packets.get_or_create(&labels).clone(),
            bytes: self.rule_bytes.get_or_create(&labels).clone(),
            who,
        }
    }

    /// What the flow log dropped, as its counters say.
    fn lost(&self) -> Lost {
        Lost {
            overruns: self.overruns.get(),
            rate_limited: self.rate_limited.get(),
            table_full: self.table_full.get(),
            unattributed: self.unattributed.get(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The prefixes of the table in force, and of the one before (packets logged
    /// just before a change are still being read).
    current: HashMap<Arc<str>, Arc<Rule>>,
    previous: HashMap<Arc<str>, Arc<Rule>>,
    flows: HashMap<FlowKey, Counts>,
    /// Denied tuples seen (across intervals, forgotten all at once when full): an
    /// attempt is counted once however often its first packet is retransmitted.
    denied_tuples: HashSet<Tuple>,
    followed: HashMap<Tuple, Followed>,
    records: VecDeque<FlowRecord>,
}

/// The flow log of one host; shared by the reader, the agent (which tells it the rules
/// in force) and the HTTP server.
#[derive(Debug)]
pub struct FlowLog {
    host: String,
    cfg: FlowLogConfig,
    inner: Mutex<Inner>,
    metrics: FlowMetrics,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl FlowLog {
    /// An empty flow log for `host`.
    pub fn new(host: impl Into<String>, cfg: FlowLogConfig) -> Arc<FlowLog> {
        Arc::new(FlowLog {
            host: host.into(),
            cfg,
            inner: Mutex::new(Inner::default()),
            metrics: FlowMetrics::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &FlowLogConfig {
        &self.cfg
    }

    /// The metrics.
    pub fn metrics(&self) -> &FlowMetrics {
        &self.metrics
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves counters, not invariants.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rules of the table just programmed (prefix → attribution).
    pub fn set_attributions(&self, attributions: &std::collections::BTreeMap<String, Attribution>) {
        let mut inner = self.lock();
        if inner.current.len() == attributions.len()
            && attributions
                .iter()
                .all(|(p, a)| inner.current.get(p.as_str()).is_some_and(|c| c.who == *a))
        {
            return;
        }
        let next = attributions
            .iter()
            .map(|(p, a)| {
                (
                    Arc::from(p.as_str()),
                    Arc::new(self.metrics.rule(a.clone())),
                )
            })
            .collect();
        inner.previous = std::mem::replace(&mut inner.current, next);
    }

    /// Records one logged packet seen at `ms`.
    pub fn observe(&self, pkt: &LoggedPacket<'_>, ms: u64) {
        let mut inner = self.lock();
        let found = inner
            .current
            .get_key_value(pkt.prefix)
            .or_else(|| inner.previous.get_key_value(pkt.prefix))
            .map(|(p, w)| (p.clone(), w.clone()));
        let Some((prefix, who)) = found else {
            self.metrics.unattributed.inc();
            return;
        };
        let key = FlowKey {
            reporter: who.who.direction,
            src: pkt.tuple.src,
            dst: pkt.tuple.dst,
            proto: pkt.tuple.proto,
            dport: pkt.tuple.dport,
            prefix,
        };
        let allowed = who.who.verdict() == Verdict::Allow;
        let new_connection = if allowed {
            // An allowed connection passes policy once (again after a policy change):
            // conntrack counts the rest of its packets.
            let known = inner.followed.contains_key(&pkt.tuple);
            if !known && inner.followed.len() < self.cfg.max_connections {
                inner.followed.insert(
                    pkt.tuple,
                    Followed {
                        key: key.clone(),
                        who: who.clone(),
                        seen: CtCounters {
                            packets: 1,
                            bytes: pkt.len,
                        },
                    },
                );
            }
            !known
        } else {
            if inner.denied_tuples.len() >= self.cfg.max_flows * 4 {
                inner.denied_tuples.clear();
            }
            inner.denied_tuples.insert(pkt.tuple)
        };
        if !inner.flows.contains_key(&key) && inner.flows.len() >= self.cfg.max_flows {
            self.metrics.table_full.inc();
            return;
        }
        who.count(1, pkt.len);
        let c = inner.flows.entry(key).or_insert_with(|| Counts {
            who,
            connections: 0,
            packets: 0,
            bytes: 0,
            first_ms: ms,
            last_ms: ms,
        });
        c.connections += u64::from(new_connection);
        c.packets += 1;
        c.bytes += pkt.len;
        c.last_ms = c.last_ms.max(ms);
    }

    /// Counts packets the kernel or the rate limit kept from us.
    pub fn count_lost(&self, overruns: u64, rate_limited: u64) {
        self.metrics.overruns.inc_by(overruns);
        self.metrics.rate_limited.inc_by(rate_limited);
    }

    /// Ends an interval at `ms`: adds what conntrack counted for the allowed connections
    /// since the last time (`conntrack`: every entry's counters by original tuple; None
    /// when it could not be read), forgets connections conntrack no longer has, and
    /// writes the interval's flows as records.
    pub fn flush(&self, conntrack: Option<&HashMap<Tuple, CtCounters>>, ms: u64) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(ct) = conntrack {
            let mut gone = Vec::new();
            for (tuple, f) in &mut inner.followed {
                let Some(now) = ct.get(tuple) else {
                    gone.push(*tuple);
                    continue;
                };
                let (packets, bytes) = (
                    now.packets.saturating_sub(f.seen.packets),
                    now.bytes.saturating_sub(f.seen.bytes),
                );
                if packets == 0 {
                    continue;
                }
                f.seen = *now;
                f.who.count(packets, bytes);
                if !inner.flows.contains_key(&f.key) && inner.flows.len() >= self.cfg.max_flows {
                    self.metrics.table_full.inc_by(packets);
                    continue;
                }
                let c = inner.flows.entry(f.key.clone()).or_insert_with(|| Counts {
                    who: f.who.clone(),
                    connections: 0,
                    packets: 0,
                    bytes: 0,
                    first_ms: ms,
                    last_ms: ms,
                });
                c.packets += packets;
                c.bytes += bytes;
                c.last_ms = ms;
            }
            for t in gone {
                inner.followed.remove(&t);
            }
        }
        let mut fresh: Vec<FlowRecord> = inner
            .flows
            .drain()
            .map(|(k, c)| FlowRecord {
                host: self.host.clone(),
                reporter: k.reporter,
                source_ip: k.src,
                destination_ip: k.dst,
                protocol: k.proto,
                port: matches!(k.proto, 6 | 17 | 132 | 136).then_some(k.dport),
                action: c.who.who.verdict(),
                decision: c.who.who.decision.clone(),
                connections: c.connections,
                packets: c.packets,
                bytes: c.bytes,
                first_seen_ms: c.first_ms,
                last_seen_ms: c.last_ms,
            })
            .collect();
        fresh.sort_by_key(|r| r.last_seen_ms);
        inner.records.extend(fresh);
        let oldest = ms.saturating_sub(u64::try_from(self.cfg.retention.as_millis()).unwrap_or(0));
        while inner
            .records
            .front()
            .is_some_and(|r| r.last_seen_ms < oldest || inner.records.len() > self.cfg.max_records)
        {
            inner.records.pop_front();
        }
    }

    /// The records last seen within `since` of `ms`.
    pub fn recent(&self, since: Duration, ms: u64) -> HostFlows {
        let inner = self.lock();
        let from = ms.saturating_sub(u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        HostFlows {
            host: self.host.clone(),
            flows: inner
                .records
                .iter()
                .filter(|r| r.last_seen_ms >= from)
                .cloned()
                .collect(),
            lost: self.metrics.lost(),
        }
    }

    /// Flows recorded in the current interval so far (not yet flushed).
    pub fn pending(&self) -> usize {
        self.lock().flows.len()
    }
}

/// The IP header of a logged packet: its tuple and IP length. None: not IP, or cut short.
pub fn parse_packet(payload: &[u8]) -> Option<(Tuple, u64)> {
    let version = payload.first()? >> 4;
    let (src, dst, proto, len, l4) = match version {
        4 => {
            let ihl = usize::from(payload[0] & 0x0f) * 4;
            let len = u16::from_be_bytes([*payload.get(2)?, *payload.get(3)?]);
            let src: [u8; 4] = payload.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = payload.get(16..20)?.try_into().ok()?;
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                *payload.get(9)?,
                u64::from(len),
                ihl,
            )
        }
        6 => {
            let len = u16::from_be_bytes([*payload.get(4)?, *payload.get(5)?]);
            let src: [u8; 16] = payload.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = payload.get(24..40)?.try_into().ok()?;
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                *payload.get(6)?,
                u64::from(len) + 40,
                40,
            )
        }
        _ => return None,
    };
    let (sport, dport) = if matches!(proto, 6 | 17 | 132 | 136) {
        let p = payload.get(l4..l4 + 4)?;
        (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )
    } else {
        (0, 0)
    };
    Some((
        Tuple {
            src,
            dst,
            proto,
            sport,
            dport,
        },
        len,
    ))
}

/// A token bucket over one-second windows: how many logged packets may still be read.
#[derive(Debug)]
pub struct RateLimit {
    per_second: u32,
    window: Instant,
    used: u32,
}

impl RateLimit {
    /// At most `per_second` per second, the first second starting `now`.
    pub fn new(per_second: u32, now: Instant) -> RateLimit {
        RateLimit {
            per_second,
            window: now,
            used: 0,
        }
    }

    /// Takes one; false when this second's budget is spent.
    pub fn take(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.used = 0;
        }
        if self.used < self.per_second {
            self.used += 1;
            true
        } else {
            false
        }
    }

    /// How long until the budget is refilled.
    pub fn wait(&self, now: Instant) -> Duration {
        Duration::from_secs(1).saturating_sub(now.duration_since(self.window))
    }
}

/// Size of the nflog socket's receive buffer: a burst this large waits for the reader.
const NFLOG_RCVBUF: usize = 4 << 20;

/// Starts reading the flow-log group and closing intervals, in two threads. The group
/// is bound before this returns, so a failure to bind is the caller's to report.
pub fn spawn(log: Arc<FlowLog>) -> Result<(), calico_netlink::netfilter::Error> {
    let mut socket = calico_netlink::netfilter::NflogSocket::bind(
        log.cfg.group,
        calico_dataplane::render::FLOW_LOG_SNAPLEN,
        NFLOG_RCVBUF,
    )?;
    let reader = log.clone();
    std::thread::Builder::new()
        .name("flow-log-reader".into())
        .spawn(move || read_loop(&reader, &mut socket))
        .map_err(|source| calico_netlink::netfilter::Error::Io {
            what: "starting the flow-log reader",
            source,
        })?;
    std::thread::Builder::new()
        .name("flow-log-flusher".into())
        .spawn(move || {
            loop {
                std::thread::sleep(log.cfg.interval);
                let ct = match calico_netlink::netfilter::conntrack_entries() {
                    Ok(entries) => Some(
                        entries
                            .into_iter()
                            .map(|e| {
                                (
                                    Tuple {
                                        src: e.src,
                                        dst: e.dst,
                                        proto: e.proto,
                                        sport: e.sport,
                                        dport: e.dport,
                                    },
                                    CtCounters {
                                        packets: e.packets,
                                        bytes: e.bytes,
                                    },
                                )
                            })
                            .collect::<HashMap<_, _>>(),
                    ),
                    Err(e) => {
                        tracing::warn!(target: "felix", "flow log: allowed connections keep their last counts: {e}");
                        None
                    }
                };
                log.flush(ct.as_ref(), now_ms());
            }
        })
        .map_err(|source| calico_netlink::netfilter::Error::Io {
            what: "starting the flow-log flusher",
            source,
        })?;
    Ok(())
}

fn read_loop(log: &FlowLog, socket: &mut calico_netlink::netfilter::NflogSocket) {
    let mut limit = RateLimit::new(log.cfg.max_rate, Instant::now());
    let mut failures = 0u32;
    loop {
        let mut over = 0u64;
        let got = socket.recv(|prefix, payload| {
            if !limit.take(Instant::now()) {
                over += 1;
                return;
            }
            if let Some((tuple, len)) = parse_packet(payload) {
                log.observe(&LoggedPacket { prefix, tuple, len }, now_ms());
            }
        });
        match got {
            Ok(_) => failures = 0,
            Err(calico_netlink::netfilter::Error::Overrun) => log.count_lost(1, 0),
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::error!(target: "felix", "flow log: {e}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if over > 0 {
            // Leave the rest to the kernel's queue (it drops and we count) until the
            // budget refills: a flood costs the agent a bounded share of a core.
            log.count_lost(0, over);
            std::thread::sleep(limit.wait(Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_policy::Decision;
    use calico_policy::eval::RuleSource;
    use calico_policy::model::Action;
    use std::collections::BTreeMap;

    fn who(rule: usize, action: Action) -> Attribution {
        Attribution {
            direction: Direction::Ingress,
            decision: Decision::PolicyRule {
                source: RuleSource::Policy {
                    tier: "default".into(),
                    namespace: Some("default".into()),
                    name: "allow-bookstore-cliient-to-server".into(),
                },
                rule,
                action,
            },
        }
    }

    fn log(cfg: FlowLogConfig) -> (Arc<FlowLog>, String, String) {
        let fl = FlowLog::new("h1", cfg);
        let (allow, deny) = (who(0, Action::Allow), who(1, Action::Deny));
        let map: BTreeMap<String, Attribution> = [allow, deny]
            .into_iter()
            .map(|a| (a.log_prefix(), a))
            .collect();
        fl.set_attributions(&map);
        (
            fl,
            who(0, Action::Allow).log_prefix(),
            who(1, Action::Deny).log_prefix(),
        )
    }

    fn packet<'a>(prefix: &'a str, src: &str, sport: u16) -> LoggedPacket<'a> {
        LoggedPacket {
            prefix,
            tuple: Tuple {
                src: src.parse().unwrap(),
                dst: "192.168.1.2".parse().unwrap(),
                proto: 6,
                sport,
                dport: 80,
            },
            len: 60,
        }
    }

    #[test]
    fn denied_packets_and_allowed_connections_are_aggregated_per_rule() {
        let (fl, allow, deny) = log(FlowLogConfig::default());
        // Three SYNs of one denied attempt, one of another; two allowed connections.
        for _ in 0..3 {
            fl.observe(&packet(&deny, "192.168.0.9", 40000), 1_000);
        }
        fl.observe(&packet(&deny, "192.168.0.9", 40001), 2_000);
        fl.observe(&packet(&allow, "192.168.0.5", 50000), 1_500);
        fl.observe(&packet(&allow, "192.168.0.5", 50001), 1_600);
        let t = |sport| Tuple {
            src: "192.168.0.5".parse().unwrap(),
            dst: "192.168.1.2".parse().unwrap(),
            proto: 6,
            sport,
            dport: 80,
        };
        let ct: HashMap<Tuple, CtCounters> = [
            (
                t(50000),
                CtCounters {
                    packets: 10,
                    bytes: 1000,
                },
            ),
            (
                t(50001),
                CtCounters {
                    packets: 5,
                    bytes: 400,
                },
            ),
        ]
        .into();
        fl.flush(Some(&ct), 5_000);
        let got = fl.recent(Duration::from_secs(60), 5_000);
        assert_eq!(got.flows.len(), 2, "{got:?}");
        let denied = got
            .flows
            .iter()
            .find(|r| r.action == Verdict::Deny)
            .unwrap();
        assert_eq!(
            (denied.connections, denied.packets, denied.bytes),
            (2, 4, 240)
        );
        assert_eq!((denied.first_seen_ms, denied.last_seen_ms), (1_000, 2_000));
        let allowed = got
            .flows
            .iter()
            .find(|r| r.action == Verdict::Allow)
            .unwrap();
        assert_eq!(
            (allowed.connections, allowed.packets, allowed.bytes),
            (2, 15, 1400)
        );
        assert_eq!(allowed.port, Some(80));
        // A denied attempt retransmitted in a later interval is not a new attempt.
        fl.observe(&packet(&deny, "192.168.0.9", 40000), 6_500);
        // A policy change sends the same connection through policy again: not a new one.
        fl.observe(&packet(&allow, "192.168.0.5", 50000), 6_000);
        fl.flush(Some(&ct), 10_000);
        let again = fl.recent(Duration::from_secs(5), 10_000);
        let rechecked = again
            .flows
            .iter()
            .find(|r| r.last_seen_ms == 6_000)
            .unwrap();
        assert_eq!((rechecked.connections, rechecked.packets), (0, 1));
        let retried = again
            .flows
            .iter()
            .find(|r| r.last_seen_ms == 6_500)
            .unwrap();
        assert_eq!(
            (retried.action, retried.connections, retried.packets),
            (Verdict::Deny, 0, 1)
        );
        // Conntrack forgot the connections: they are no longer followed.
        fl.flush(Some(&HashMap::new()), 15_000);
        assert!(fl.lock().followed.is_empty());
    }

    #[test]
    fn floods_are_bounded_and_counted() {
        let cfg = FlowLogConfig {
            max_flows: 10,
            max_connections: 5,
            ..FlowLogConfig::default()
        };
        let (fl, allow, deny) = log(cfg);
        for i in 0..1000u16 {
            fl.observe(
                &packet(&deny, &format!("10.0.{}.{}", i / 250, i % 250), i),
                1,
            );
            fl.observe(&packet(&allow, "10.9.9.9", i), 1);
        }
        fl.observe(&packet("cf1:not-a-rule", "10.0.0.1", 1), 1);
        assert_eq!(fl.pending(), 10);
        assert!(fl.lock().followed.len() <= 5);
        let lost = fl.recent(Duration::from_secs(1), 1).lost;
        assert_eq!(lost.table_full, 1000 - 9, "{lost:?}");
        assert_eq!(lost.unattributed, 1);
        fl.flush(None, 2);
        assert_eq!(fl.recent(Duration::from_secs(1), 2).flows.len(), 10);
    }

    #[test]
    fn records_expire_and_are_capped() {
        let cfg = FlowLogConfig {
            retention: Duration::from_secs(10),
            max_records: 3,
            ..FlowLogConfig::default()
        };
        let (fl, _, deny) = log(cfg);
        for i in 0..5u16 {
            fl.observe(&packet(&deny, &format!("10.0.0.{i}"), 1), 1_000);
        }
        fl.flush(None, 1_000);
        assert_eq!(fl.recent(Duration::from_secs(60), 1_000).flows.len(), 3);
        fl.flush(None, 20_000);
        assert!(fl.recent(Duration::from_secs(60), 20_000).flows.is_empty());
    }

    #[test]
    fn packets_parse_and_garbage_does_not() {
        let mut v4 = vec![0x45, 0, 0, 60, 0, 0, 0, 0, 64, 6, 0, 0];
        v4.extend([10, 0, 0, 1, 10, 0, 0, 2]);
        v4.extend([0x9c, 0x40, 0, 80]);
        let (t, len) = parse_packet(&v4).unwrap();
        assert_eq!(
            (
                t.src.to_string(),
                t.dst.to_string(),
                t.proto,
                t.sport,
                t.dport,
                len
            ),
            ("10.0.0.1".into(), "10.0.0.2".into(), 6, 40000, 80, 60)
        );
        let mut v6 = vec![0x60, 0, 0, 0, 0, 20, 17, 64];
        v6.extend([0; 15]);
        v6.push(1);
        v6.extend([0; 15]);
        v6.push(2);
        v6.extend([0, 53, 0, 53]);
        let (t, len) = parse_packet(&v6).unwrap();
        assert_eq!((t.dst.to_string(), t.dport, len), ("::2".into(), 53, 60));
        assert!(parse_packet(&[]).is_none());
        assert!(parse_packet(&[0x45, 0, 0]).is_none());
        assert!(parse_packet(&v4[..22]).is_none(), "ports cut short");
        assert!(parse_packet(&[0x10; 40]).is_none());
    }

    #[test]
    fn the_rate_limit_refills_every_second() {
        let start = Instant::now();
        let mut r = RateLimit::new(2, start);
        assert!(r.take(start) && r.take(start));
        assert!(!r.take(start));
        assert!(r.wait(start) > Duration::ZERO);
        assert!(r.take(start + Duration::from_secs(1)));
    }
}
