//! The netfilter netlink interfaces flow logs read: packets logged to an nflog group
//! (with their log prefix), and conntrack's per-connection counters.

use std::net::IpAddr;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Tuple,
};
use netlink_packet_netfilter::nflog::{
    ConfigCmd, ConfigMode, PacketNla, ULogMessage, config_request,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// Why reading netfilter netlink failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a request.
    #[error("{what}: the kernel answered error {code}")]
    Refused {
        /// What was asked.
        what: &'static str,
        /// The errno.
        code: i32,
    },
    /// The kernel dropped messages for us: its queue to the socket was full.
    #[error("the kernel dropped logged packets: the socket's queue was full")]
    Overrun,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

fn send(
    socket: &Socket,
    msg: &mut NetlinkMessage<NetfilterMessage>,
    what: &'static str,
) -> Result<(), Error> {
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0).map_err(io(what))?;
    Ok(())
}

/// Reads the acknowledgement of a request.
fn ack(socket: &Socket, what: &'static str) -> Result<(), Error> {
    let mut buf = vec![0u8; 8192];
    let n = socket.recv(&mut &mut buf[..], 0).map_err(io(what))?;
    let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[..n])
        .map_err(|e| io(what)(std::io::Error::other(e.to_string())))?;
    if let NetlinkPayload::Error(e) = msg.payload
        && let Some(code) = e.code
    {
        return Err(Error::Refused {
            what,
            code: code.get(),
        });
    }
    Ok(())
}

/// A netfilter netlink socket with a port of its own.
fn socket() -> Result<Socket, Error> {
    let mut socket =
        Socket::new(NETLINK_NETFILTER).map_err(io("opening a netfilter netlink socket"))?;
    socket
        .bind_auto()
        .map_err(io("binding the netfilter netlink socket"))?;
    Ok(socket)
}

/// A socket bound to one nflog group.
pub struct NflogSocket {
    socket: Socket,
    buf: Vec<u8>,
}

impl NflogSocket {
    /// Binds to `group` in this network namespace, copying `snaplen` bytes of each
    /// packet, with a receive buffer of `rcvbuf` bytes.
    pub fn bind(group: u16, snaplen: u32, rcvbuf: usize) -> Result<NflogSocket, Error> {
        let socket = socket()?;
        socket
            .set_rx_buf_sz(rcvbuf)
            .map_err(io("sizing the nflog socket's buffer"))?;
        let mut bind = config_request(
            NetfilterProtoFamily::Unspec,
            group,
            vec![
                ConfigCmd::Bind.into(),
                ConfigMode::new(snaplen, netlink_packet_netfilter::nflog::CopyMode::Packet).into(),
            ],
        );
        send(&socket, &mut bind, "binding to the nflog group")?;
        ack(&socket, "binding to the nflog group")?;
        Ok(NflogSocket {
            socket,
            buf: vec![0; 256 * 1024],
        })
    }

    /// Waits for logged packets and hands each to `each` (prefix, packet from the IP
    /// header on); returns how many. [`Error::Overrun`]: the kernel dropped some (the
    /// socket goes on working).
    pub fn recv(&mut self, mut each: impl FnMut(&str, &[u8])) -> Result<usize, Error> {
        let n = match self.socket.recv(&mut &mut self.buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc_enobufs()) => return Err(Error::Overrun),
            Err(e) => return Err(io("reading the nflog socket")(e)),
        };
        let mut offset = 0;
        let mut count = 0;
        while offset < n {
            let Ok(msg) = NetlinkMessage::<NetfilterMessage>::deserialize(&self.buf[offset..n])
            else {
                break;
            };
            let len = msg.header.length as usize;
            if let NetlinkPayload::InnerMessage(NetfilterMessage {
                inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
                ..
            }) = &msg.payload
            {
                let prefix = nlas.iter().find_map(|n| match n {
                    PacketNla::Prefix(p) => p.to_str().ok(),
                    _ => None,
                });
                let payload = nlas.iter().find_map(|n| match n {
                    PacketNla::Payload(p) => Some(p.as_slice()),
                    _ => None,
                });
                if let (Some(prefix), Some(payload)) = (prefix, payload) {
                    each(prefix, payload);
                    count += 1;
                }
            }
            if len == 0 {
                break;
            }
            offset += len.next_multiple_of(4);
        }
        Ok(count)
    }
}

/// ENOBUFS: what a netlink socket's reader gets after the kernel dropped messages.
fn libc_enobufs() -> i32 {
    105
}

/// One conntrack entry's original tuple and counters (both directions summed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtEntry {
    /// Source address (original direction).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol.
    pub proto: u8,
    /// Source port (0 without ports).
    pub sport: u16,
    /// Destination port (0 without ports).
    pub dport: u16,
    /// Packets both ways (0 unless `nf_conntrack_acct` is on).
    pub packets: u64,
    /// Bytes both ways.
    pub bytes: u64,
}

const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;

/// The packets and bytes in a nested `CTA_COUNTERS_*` attribute's value.
fn counters(value: &[u8]) -> (u64, u64) {
    let (mut packets, mut bytes) = (0, 0);
    let mut rest = value;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            break;
        }
        if let Ok(v) = <[u8; 8]>::try_from(&rest[4..len]) {
            match kind {
                CTA_COUNTERS_PACKETS => packets = u64::from_be_bytes(v),
                CTA_COUNTERS_BYTES => bytes = u64::from_be_bytes(v),
                _ => {}
            }
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    (packets, bytes)
}

fn entry(attrs: &[ConntrackAttribute]) -> Option<CtEntry> {
    let mut e = CtEntry {
        src: IpAddr::from([0, 0, 0, 0]),
        dst: IpAddr::from([0, 0, 0, 0]),
        proto: 0,
        sport: 0,
        dport: 0,
        packets: 0,
        bytes: 0,
    };
    let mut has_tuple = false;
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(tuples) => {
                for t in tuples {
                    match t {
                        Tuple::Ip(ips) => {
                            for ip in ips {
                                match ip {
                                    IPTuple::SourceAddress(a) => e.src = *a,
                                    IPTuple::DestinationAddress(a) => e.dst = *a,
                                    _ => {}
                                }
                            }
                            has_tuple = true;
                        }
                        Tuple::Proto(ps) => {
                            for p in ps {
                                match p {
                                    ProtoTuple::Protocol(p) => e.proto = u8::from(*p),
                                    ProtoTuple::SourcePort(s) => e.sport = *s,
                                    ProtoTuple::DestinationPort(d) => e.dport = *d,
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            ConntrackAttribute::Other(nla)
                if matches!(nla.kind() & 0x3fff, CTA_COUNTERS_ORIG | CTA_COUNTERS_REPLY) =>
            {
                let mut value = vec![0; nla.value_len()];
                nla.emit_value(&mut value);
                let (p, b) = counters(&value);
                e.packets += p;
                e.bytes += b;
            }
            _ => {}
        }
    }
    has_tuple.then_some(e)
}

/// Every conntrack entry of this network namespace (IPv4 and IPv6) with its counters.
pub fn conntrack_entries() -> Result<Vec<CtEntry>, Error> {
    let mut out = Vec::new();
    for family in [NetfilterProtoFamily::IPv4, NetfilterProtoFamily::IPv6] {
        let socket = socket()?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(io("connecting the netfilter netlink socket"))?;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut req = NetlinkMessage::new(
            header,
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(family, 0, 0),
                ConntrackMessage::Get(vec![]),
            )),
        );
        send(&socket, &mut req, "asking for the conntrack table")?;
        let mut buf = vec![0u8; 256 * 1024];
        'dump: loop {
            let n = socket
                .recv(&mut &mut buf[..], 0)
                .map_err(io("reading the conntrack table"))?;
            let mut offset = 0;
            while offset < n {
                let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[offset..n])
                    .map_err(|e| {
                        io("decoding the conntrack table")(std::io::Error::other(e.to_string()))
                    })?;
                let len = msg.header.length as usize;
                match msg.payload {
                    NetlinkPayload::Done(_) => break 'dump,
                    NetlinkPayload::Error(e) => {
                        if let Some(code) = e.code {
                            return Err(Error::Refused {
                                what: "reading the conntrack table",
                                code: code.get(),
                            });
                        }
                    }
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)),
                        ..
                    }) => out.extend(entry(&attrs)),
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                offset += len.next_multiple_of(4);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_counters_parse() {
        let mut v = Vec::new();
        for (kind, value) in [(CTA_COUNTERS_PACKETS, 7u64), (CTA_COUNTERS_BYTES, 900)] {
            v.extend(12u16.to_ne_bytes());
            v.extend((kind | 0x8000).to_ne_bytes());
            v.extend(value.to_be_bytes());
        }
        assert_eq!(counters(&v), (7, 900));
        assert_eq!(counters(&v[..5]), (0, 0));
        assert_eq!(counters(&[]), (0, 0));
    }
}
