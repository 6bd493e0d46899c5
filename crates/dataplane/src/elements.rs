//! IP set elements straight to the kernel over nfnetlink.
//!
//! libnftables 1.0.6 reads the elements of every set in the table before it
//! adds or deletes one element (about 1.5 ms with 100 sets, 4 ms in felix's
//! table at 250 policies); the same change as one netlink batch costs about
//! 0.1 ms. No kept Rust library writes nftables set elements under a
//! licence we can use (`rustables` is GPL-3.0, `nftnl` binds libnftnl's C),
//! so the few messages involved are encoded here.
//!
//! Only batches made of nothing but element additions and deletions of
//! address sets with the interval flag (how [`crate::render`] writes IP
//! sets) are taken; anything else is left to libnftables. A prefix is sent
//! as nft sends it to such a set: its first address, and the address after
//! its last one flagged as the interval's end (omitted at the top of the
//! address space).

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_sys::{Socket, SocketAddr};
use nftables::expr::{Expression, NamedExpression};
use nftables::schema::{NfCmd, NfListObject, NfObject, Nftables};

use crate::render::TABLE_NAME;

/// `NETLINK_NETFILTER`.
const NETLINK_NETFILTER: isize = 12;
/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN`, `NFNL_MSG_BATCH_END`.
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;
/// `NFT_MSG_NEWSETELEM`, `NFT_MSG_DELSETELEM`.
const NEW_SET_ELEM: u16 = 12;
const DEL_SET_ELEM: u16 = 14;
/// `NLM_F_REQUEST`, `NLM_F_ACK`, `NLM_F_CREATE`.
const F_REQUEST: u16 = 0x1;
const F_ACK: u16 = 0x4;
const F_CREATE: u16 = 0x400;
/// `NLMSG_ERROR`: an acknowledgement (error 0) or an error.
const MSG_ERROR: u16 = 2;
/// `NFPROTO_INET`: the table's family.
const FAMILY_INET: u8 = 1;
/// `NLA_F_NESTED`.
const NESTED: u16 = 0x8000;
/// `NFTA_SET_ELEM_LIST_TABLE`, `_SET`, `_ELEMENTS`.
const LIST_TABLE: u16 = 1;
const LIST_SET: u16 = 2;
const LIST_ELEMENTS: u16 = 3;
/// `NFTA_LIST_ELEM`.
const LIST_ELEM: u16 = 1;
/// `NFTA_SET_ELEM_KEY`, `NFTA_SET_ELEM_FLAGS`.
const ELEM_KEY: u16 = 1;
const ELEM_FLAGS: u16 = 3;
/// `NFTA_DATA_VALUE`.
const DATA_VALUE: u16 = 1;
/// `NFT_SET_ELEM_INTERVAL_END`.
const INTERVAL_END: u32 = 1;
/// `MSG_DONTWAIT`: replies are queued by the time `send` returns (the
/// kernel handles a netlink batch in the sender's context).
const DONT_WAIT: i32 = 0x40;

/// What went wrong sending elements.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be opened, or a send or receive failed.
    #[error("{doing}: {source}")]
    Socket {
        /// What was being done.
        doing: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel refused the batch (nothing of it was applied).
    #[error("the kernel refused the element change to set {set}: {source}")]
    Refused {
        /// The set of the refused message.
        set: String,
        /// The errno it gave.
        source: std::io::Error,
    },
}

/// One element change, ready to encode.
struct Change {
    delete: bool,
    set: String,
    nets: Vec<IpNet>,
}

/// The batch as element changes, if it is nothing else (see the module docs).
fn changes(batch: &Nftables<'_>) -> Option<Vec<Change>> {
    let mut out = Vec::new();
    for cmd in batch.objects.iter() {
        let (delete, e) = match cmd {
            NfObject::CmdObject(NfCmd::Add(NfListObject::Element(e))) => (false, e),
            NfObject::CmdObject(NfCmd::Delete(NfListObject::Element(e))) => (true, e),
            _ => return None,
        };
        if e.table != TABLE_NAME {
            return None;
        }
        let nets = e.elem.iter().map(net).collect::<Option<Vec<IpNet>>>()?;
        out.push(Change {
            delete,
            set: e.name.to_string(),
            nets,
        });
    }
    (!out.is_empty()).then_some(out)
}

/// An element that is an address or a prefix.
fn net(e: &Expression<'_>) -> Option<IpNet> {
    match e {
        Expression::String(a) => a.parse::<IpAddr>().ok().map(IpNet::from),
        Expression::Named(NamedExpression::Prefix(p)) => {
            let Expression::String(a) = p.addr.as_ref() else {
                return None;
            };
            let addr: IpAddr = a.parse().ok()?;
            IpNet::new(addr, u8::try_from(p.len).ok()?).ok()
        }
        _ => None,
    }
}

/// The address after `net`'s last one; None past the top of the space.
fn end_of(net: &IpNet) -> Option<Vec<u8>> {
    match net.trunc() {
        IpNet::V4(n) => u32::from(n.broadcast())
            .checked_add(1)
            .map(|x| x.to_be_bytes().to_vec()),
        IpNet::V6(n) => u128::from(n.broadcast())
            .checked_add(1)
            .map(|x| x.to_be_bytes().to_vec()),
    }
}

fn start_of(net: &IpNet) -> Vec<u8> {
    match net.trunc() {
        IpNet::V4(n) => n.network().octets().to_vec(),
        IpNet::V6(n) => n.network().octets().to_vec(),
    }
}

/// A netlink message under construction.
struct Message {
    buf: Vec<u8>,
    /// Offsets of nested attributes not yet closed.
    open: Vec<usize>,
}

impl Message {
    fn new(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Message {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        // struct nfgenmsg: family, version 0, resource id (big endian).
        buf.push(family);
        buf.push(0);
        buf.extend_from_slice(&res_id.to_be_bytes());
        Message {
            buf,
            open: Vec::new(),
        }
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    fn string(&mut self, kind: u16, s: &str) {
        let mut payload = s.as_bytes().to_vec();
        payload.push(0);
        self.attr(kind, &payload);
    }

    fn begin(&mut self, kind: u16) {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | NESTED).to_ne_bytes());
    }

    fn end(&mut self) {
        if let Some(at) = self.open.pop() {
            let len = u16::try_from(self.buf.len() - at).unwrap_or(u16::MAX);
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self, out: &mut Vec<u8>) {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&self.buf);
    }
}

/// The batch's bytes: begin, one message per change (acknowledged), end.
/// Returns the sequence numbers of the acknowledged messages with their set.
fn encode(changes: &[Change], first_seq: u32, out: &mut Vec<u8>) -> Vec<(u32, String)> {
    let mut acked = Vec::new();
    let mut seq = first_seq;
    Message::new(BATCH_BEGIN, F_REQUEST, seq, 0, SUBSYS_NFTABLES).finish(out);
    for c in changes {
        seq += 1;
        let (kind, flags) = if c.delete {
            (DEL_SET_ELEM, F_REQUEST | F_ACK)
        } else {
            (NEW_SET_ELEM, F_REQUEST | F_ACK | F_CREATE)
        };
        let mut m = Message::new((SUBSYS_NFTABLES << 8) | kind, flags, seq, FAMILY_INET, 0);
        m.string(LIST_TABLE, TABLE_NAME);
        m.string(LIST_SET, &c.set);
        m.begin(LIST_ELEMENTS);
        for n in &c.nets {
            m.begin(LIST_ELEM);
            m.begin(ELEM_KEY);
            m.attr(DATA_VALUE, &start_of(n));
            m.end();
            m.end();
            if let Some(end) = end_of(n) {
                m.begin(LIST_ELEM);
                m.begin(ELEM_KEY);
                m.attr(DATA_VALUE, &end);
                m.end();
                m.attr(ELEM_FLAGS, &INTERVAL_END.to_be_bytes());
                m.end();
            }
        }
        m.end();
        m.finish(out);
        acked.push((seq, c.set.clone()));
    }
    seq += 1;
    Message::new(BATCH_END, F_REQUEST, seq, 0, SUBSYS_NFTABLES).finish(out);
    acked
}

/// A netlink socket to nftables in the network namespace it was opened in.
#[derive(Debug)]
pub struct ElementSocket {
    socket: Socket,
    seq: u32,
}

impl ElementSocket {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open() -> Result<ElementSocket, Error> {
        let socket = Socket::new(NETLINK_NETFILTER).map_err(|source| Error::Socket {
            doing: "opening an nfnetlink socket",
            source,
        })?;
        let mut socket = socket;
        socket
            .bind(&SocketAddr::new(0, 0))
            .map_err(|source| Error::Socket {
                doing: "binding the nfnetlink socket",
                source,
            })?;
        Ok(ElementSocket { socket, seq: 1 })
    }

    /// Applies `batch` in one transaction if it is only IP set element
    /// changes; `Ok(false)` when it is something else (nothing was sent).
    pub fn apply(&mut self, batch: &Nftables<'_>) -> Result<bool, Error> {
        let Some(changes) = changes(batch) else {
            return Ok(false);
        };
        let mut out = Vec::new();
        let acked = encode(&changes, self.seq, &mut out);
        self.seq = self
            .seq
            .wrapping_add(u32::try_from(changes.len()).unwrap_or(0) + 2);
        self.socket.send(&out, 0).map_err(|source| Error::Socket {
            doing: "sending set elements",
            source,
        })?;
        let mut waiting: std::collections::BTreeMap<u32, String> = acked.into_iter().collect();
        let mut refused = None;
        let mut buf = vec![0u8; 64 * 1024];
        while !waiting.is_empty() {
            let n = match self.socket.recv(&mut &mut buf[..], DONT_WAIT) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(source) => {
                    return Err(Error::Socket {
                        doing: "reading the kernel's answer to set elements",
                        source,
                    });
                }
            };
            let mut at = 0;
            while at + 16 <= n {
                let word =
                    |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
                let len = usize::try_from(word(at)).unwrap_or(0);
                let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                let seq = word(at + 8);
                if len < 16 || at + len > n {
                    break;
                }
                if kind == MSG_ERROR && len >= 20 {
                    let errno = i32::from_ne_bytes([
                        buf[at + 16],
                        buf[at + 17],
                        buf[at + 18],
                        buf[at + 19],
                    ]);
                    if let Some(set) = waiting.remove(&seq)
                        && errno != 0
                        && refused.is_none()
                    {
                        refused = Some(Error::Refused {
                            set,
                            source: std::io::Error::from_raw_os_error(-errno),
                        });
                    }
                }
                at += len.next_multiple_of(4);
            }
        }
        match refused {
            Some(e) => Err(e),
            None if waiting.is_empty() => Ok(true),
            // The kernel answers a batch before `send` returns: a missing
            // answer means the batch was not taken as a whole.
            None => Err(Error::Refused {
                set: waiting.into_values().next().unwrap_or_default(),
                source: std::io::Error::other("no acknowledgement from the kernel"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftables::batch::Batch;
    use nftables::schema::Element;

    fn element(set: &str, elems: Vec<Expression<'static>>) -> NfListObject<'static> {
        NfListObject::Element(Element {
            family: crate::render::TABLE_FAMILY,
            table: TABLE_NAME.into(),
            name: set.to_owned().into(),
            elem: elems.into(),
        })
    }

    #[test]
    fn only_element_batches_are_taken() {
        let mut b = Batch::new();
        b.add(element(
            "ip4-s.x",
            vec![crate::render::expr::prefix(&"10.0.0.0/24".parse().unwrap())],
        ));
        b.delete(element(
            "ip6-s.x",
            vec![Expression::String("fd00::1".into())],
        ));
        let c = changes(&b.to_nftables()).expect("element changes");
        assert_eq!(c.len(), 2);
        assert!(!c[0].delete && c[1].delete);
        assert_eq!(c[0].nets, ["10.0.0.0/24".parse::<IpNet>().unwrap()]);
        assert_eq!(c[1].nets, ["fd00::1/128".parse::<IpNet>().unwrap()]);

        let mut b = Batch::new();
        b.add(element("ip4-s.x", vec![Expression::Number(5)]));
        assert!(changes(&b.to_nftables()).is_none(), "not an address");
        let mut b = Batch::new();
        b.add_cmd(NfCmd::Flush(nftables::schema::FlushObject::Chain(
            nftables::schema::Chain::default(),
        )));
        assert!(changes(&b.to_nftables()).is_none(), "not an element");
    }

    #[test]
    fn an_interval_ends_after_its_last_address_except_at_the_top() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(start_of(&n("10.0.0.7/24")), [10, 0, 0, 0]);
        assert_eq!(end_of(&n("10.0.0.0/24")), Some(vec![10, 0, 1, 0]));
        assert_eq!(end_of(&n("10.0.0.5/32")), Some(vec![10, 0, 0, 6]));
        assert_eq!(end_of(&n("255.255.255.255/32")), None);
        assert_eq!(end_of(&n("0.0.0.0/0")), None);
        let mut v6 = vec![0xfd; 1];
        v6.extend([0; 14]);
        v6.push(2);
        assert_eq!(end_of(&n("fd00::1/128")), Some(v6));
    }
}
