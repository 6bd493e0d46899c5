//! The real implementations: a synchronous rtnetlink socket, namespace files, `/proc/sys`.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage as Rt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::{
    Error, FdbEntry, Link, Neighbour, Netlink, Netns, Result, Route, Scope, Sysctl, VethSpec,
    VxlanSpec,
};

fn io_err(doing: impl Into<String>, source: std::io::Error) -> Error {
    Error::Kernel {
        doing: doing.into(),
        source,
    }
}

/// A synchronous rtnetlink socket bound to the namespace it was created in.
pub struct NetlinkSocket {
    socket: Socket,
    seq: u32,
}

impl NetlinkSocket {
    /// A socket in the calling thread's network namespace.
    pub fn new() -> Result<Self> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| io_err("opening a netlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| io_err("binding the netlink socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| io_err("connecting the netlink socket", e))?;
        Ok(Self { socket, seq: 0 })
    }

    /// A socket in `netns` (created on a thread inside it, then usable from any thread).
    pub fn new_in(netns: &impl Netns) -> Result<Self> {
        netns.run(Self::new)?
    }

    /// Send one request and collect the replies (several for a dump) until the ACK or DONE.
    fn request(&mut self, msg: Rt, flags: u16, doing: &dyn Fn() -> String) -> Result<Vec<Rt>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(|e| io_err(doing(), e))?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self
                .socket
                .recv_from_full()
                .map_err(|e| io_err(doing(), e))?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<Rt>::deserialize(&data[offset..]).map_err(|e| {
                    Error::Decode {
                        doing: doing(),
                        reason: e.to_string(),
                    }
                })?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(_) => Err(io_err(doing(), e.to_io())),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn index(&mut self, name: &str, doing: &dyn Fn() -> String) -> Result<u32> {
        match self.link(name)? {
            Some(l) => Ok(l.index),
            None => Err(Error::LinkNotFound {
                doing: doing(),
                name: name.to_owned(),
            }),
        }
    }
}

fn to_link(m: Rt) -> Option<Link> {
    let Rt::NewLink(msg) = m else { return None };
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mtu: 0,
        mac: Vec::new(),
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for a in msg.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Mtu(m) => link.mtu = m,
            LinkAttribute::Address(a) => link.mac = a,
            _ => {}
        }
    }
    Some(link)
}

fn family(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn link_named(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_owned()));
    m
}

impl Netlink for NetlinkSocket {
    fn create_veth(&mut self, spec: &VethSpec, peer_netns: Option<BorrowedFd<'_>>) -> Result<()> {
        let mut peer = link_named(&spec.peer_name);
        peer.attributes.push(LinkAttribute::Mtu(spec.mtu));
        if let Some(fd) = peer_netns {
            peer.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
        }
        let mut m = link_named(&spec.name);
        m.attributes.push(LinkAttribute::Mtu(spec.mtu));
        if let Some(mac) = spec.mac {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            Rt::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &|| {
                format!(
                    "creating veth {} (peer {}, mtu {})",
                    spec.name, spec.peer_name, spec.mtu
                )
            },
        )
        .map(drop)
    }

    fn set_link_netns(&mut self, name: &str, netns: BorrowedFd<'_>) -> Result<()> {
        let doing = || format!("moving link {name} to another namespace");
        let index = self.index(name, &doing)?;
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        self.request(Rt::SetLink(m), NLM_F_ACK, &doing).map(drop)
    }

    fn set_link_up(&mut self, name: &str) -> Result<()> {
        let doing = || format!("setting link {name} up");
        let mut m = link_named(name);
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(Rt::SetLink(m), NLM_F_ACK, &doing).map(drop)
    }

    fn add_address(&mut self, link: &str, addr: IpAddr, prefix_len: u8) -> Result<()> {
        let doing = || format!("adding address {addr}/{prefix_len} to {link}");
        let index = self.index(link, &doing)?;
        let mut m = AddressMessage::default();
        m.header.family = family(&addr);
        m.header.prefix_len = prefix_len;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr));
        m.attributes.push(AddressAttribute::Address(addr));
        self.request(
            Rt::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &doing,
        )
        .map(drop)
    }

    fn add_route(&mut self, route: &Route) -> Result<()> {
        let doing = || {
            let via = route
                .gateway
                .map(|g| format!(" via {g}"))
                .unwrap_or_default();
            format!(
                "adding route {}/{}{via} dev {}",
                route.dst, route.prefix_len, route.link
            )
        };
        let index = if route.oif != 0 {
            route.oif
        } else {
            self.index(&route.link, &doing)?
        };
        let mut m = RouteMessage::default();
        m.header.address_family = family(&route.dst);
        m.header.destination_prefix_length = route.prefix_len;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::from(route.protocol);
        m.header.kind = RouteType::Unicast;
        m.header.scope = match route.scope {
            Scope::Universe => RouteScope::Universe,
            Scope::Link => RouteScope::Link,
        };
        if route.onlink {
            m.header.flags = RouteFlags::Onlink;
        }
        if route.prefix_len > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(route.dst)));
        }
        if let Some(gw) = route.gateway {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        m.attributes.push(RouteAttribute::Oif(index));
        if route.priority != 0 {
            m.attributes.push(RouteAttribute::Priority(route.priority));
        }
        self.request(
            Rt::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &doing,
        )
        .map(drop)
    }

    fn add_neighbour(&mut self, link: &str, ip: IpAddr, mac: &[u8]) -> Result<()> {
        let doing = || {
            format!(
                "adding neighbour {ip} lladdr {} dev {link}",
                crate::format_mac(mac)
            )
        };
        let index = self.index(link, &doing)?;
        let mut m = NeighbourMessage::default();
        m.header.family = family(&ip);
        m.header.ifindex = index;
        m.header.state = NeighbourState::Permanent;
        m.header.kind = RouteType::Unicast;
        let dst = match ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        };
        m.attributes.push(NeighbourAttribute::Destination(dst));
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        self.request(
            Rt::NewNeighbour(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &doing,
        )
        .map(drop)
    }

    fn delete_link(&mut self, name: &str) -> Result<bool> {
        let doing = || format!("deleting link {name}");
        match self.request(Rt::DelLink(link_named(name)), NLM_F_ACK, &doing) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let doing = || format!("getting link {name}");
        match self.request(Rt::GetLink(link_named(name)), 0, &doing) {
            Ok(replies) => Ok(replies.into_iter().find_map(to_link)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn addresses(&mut self, link: &str) -> Result<Vec<(IpAddr, u8)>> {
        let doing = || format!("listing addresses of {link}");
        let index = self.index(link, &doing)?;
        let replies = self.request(
            Rt::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            &doing,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                Rt::NewAddress(m) if m.header.index == index => {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some((*ip, m.header.prefix_len)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    fn routes(&mut self) -> Result<Vec<Route>> {
        let doing = || "listing routes".to_owned();
        let mut out = Vec::new();
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = RouteMessage::default();
            req.header.address_family = fam;
            for r in self.request(Rt::GetRoute(req), NLM_F_DUMP, &doing)? {
                let Rt::NewRoute(m) = r else { continue };
                if m.header.table != RouteHeader::RT_TABLE_MAIN {
                    continue;
                }
                let mut route = Route {
                    dst: match fam {
                        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                        _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                    },
                    prefix_len: m.header.destination_prefix_length,
                    gateway: None,
                    oif: 0,
                    link: String::new(),
                    scope: if m.header.scope == RouteScope::Link {
                        Scope::Link
                    } else {
                        Scope::Universe
                    },
                    onlink: m.header.flags.contains(RouteFlags::Onlink),
                    protocol: u8::from(m.header.protocol),
                    priority: 0,
                };
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(d) => {
                            if let Some(ip) = route_ip(d) {
                                route.dst = ip;
                            }
                        }
                        RouteAttribute::Gateway(g) => route.gateway = route_ip(g),
                        RouteAttribute::Oif(i) => route.oif = *i,
                        RouteAttribute::Priority(p) => route.priority = *p,
                        _ => {}
                    }
                }
                out.push(route);
            }
        }
        Ok(out)
    }

    fn neighbours(&mut self, link: &str) -> Result<Vec<Neighbour>> {
        let doing = || format!("listing neighbours of {link}");
        let index = self.index(link, &doing)?;
        let replies = self.request(
            Rt::GetNeighbour(NeighbourMessage::default()),
            NLM_F_DUMP,
            &doing,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| {
                let Rt::NewNeighbour(m) = r else { return None };
                if m.header.ifindex != index {
                    return None;
                }
                let (ip, mac) = neighbour_addresses(&m);
                Some(Neighbour {
                    ifindex: index,
                    ip: ip?,
                    mac,
                    permanent: m.header.state == NeighbourState::Permanent,
                })
            })
            .collect())
    }

    fn links(&mut self) -> Result<Vec<Link>> {
        let doing = || "listing links".to_owned();
        let replies = self.request(Rt::GetLink(LinkMessage::default()), NLM_F_DUMP, &doing)?;
        Ok(replies.into_iter().filter_map(to_link).collect())
    }

    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        let doing = || {
            format!(
                "creating vxlan {} (vni {}, port {}, mtu {})",
                spec.name, spec.vni, spec.port, spec.mtu
            )
        };
        let mut data = vec![
            InfoVxlan::Id(spec.vni),
            InfoVxlan::Port(spec.port),
            InfoVxlan::Learning(false),
        ];
        if let Some(local) = spec.local {
            data.push(InfoVxlan::Local(local));
        }
        if let Some(parent) = &spec.parent {
            data.push(InfoVxlan::Link(self.index(parent, &doing)?));
        }
        let mut m = link_named(&spec.name);
        m.attributes.push(LinkAttribute::Mtu(spec.mtu));
        m.attributes.push(LinkAttribute::Address(spec.mac.to_vec()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(data)),
        ]));
        self.request(
            Rt::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &doing,
        )
        .map(drop)
    }

    fn create_ipip(&mut self, name: &str, mtu: u32) -> Result<()> {
        let doing = || format!("creating ipip device {name} (mtu {mtu})");
        let mut m = link_named(name);
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::IpIp,
            )]));
        self.request(
            Rt::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &doing,
        )
        .map(drop)
    }

    fn delete_route(&mut self, route: &Route) -> Result<bool> {
        let doing = || format!("deleting route {}/{}", route.dst, route.prefix_len);
        let mut m = RouteMessage::default();
        m.header.address_family = family(&route.dst);
        m.header.destination_prefix_length = route.prefix_len;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::from(route.protocol);
        m.header.scope = RouteScope::NoWhere;
        if route.prefix_len > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(route.dst)));
        }
        if route.oif != 0 {
            m.attributes.push(RouteAttribute::Oif(route.oif));
        }
        // Only this priority's route: another one to the same place stays.
        if route.priority != 0 {
            m.attributes.push(RouteAttribute::Priority(route.priority));
        }
        match self.request(Rt::DelRoute(m), NLM_F_ACK, &doing) {
            Ok(_) => Ok(true),
            // ESRCH: no such route.
            Err(e) if e.errno() == Some(3) || e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn delete_neighbour(&mut self, link: &str, ip: IpAddr) -> Result<bool> {
        let doing = || format!("deleting neighbour {ip} dev {link}");
        let index = self.index(link, &doing)?;
        let mut m = NeighbourMessage::default();
        m.header.family = family(&ip);
        m.header.ifindex = index;
        let dst = match ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        };
        m.attributes.push(NeighbourAttribute::Destination(dst));
        match self.request(Rt::DelNeighbour(m), NLM_F_ACK, &doing) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn add_fdb(&mut self, link: &str, entry: &FdbEntry) -> Result<()> {
        let doing = || {
            format!(
                "adding fdb {} dst {} dev {link}",
                crate::format_mac(&entry.mac),
                entry.dst
            )
        };
        let m = fdb_message(self.index(link, &doing)?, entry);
        self.request(
            Rt::NewNeighbour(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &doing,
        )
        .map(drop)
    }

    fn fdb(&mut self, link: &str) -> Result<Vec<FdbEntry>> {
        let doing = || format!("listing fdb of {link}");
        let index = self.index(link, &doing)?;
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        let replies = self.request(Rt::GetNeighbour(req), NLM_F_DUMP, &doing)?;
        Ok(replies
            .into_iter()
            .filter_map(|r| {
                let Rt::NewNeighbour(m) = r else { return None };
                if m.header.ifindex != index {
                    return None;
                }
                let (dst, mac) = neighbour_addresses(&m);
                Some(FdbEntry { mac, dst: dst? })
            })
            .collect())
    }

    fn delete_fdb(&mut self, link: &str, entry: &FdbEntry) -> Result<bool> {
        let doing = || {
            format!(
                "deleting fdb {} dst {} dev {link}",
                crate::format_mac(&entry.mac),
                entry.dst
            )
        };
        let m = fdb_message(self.index(link, &doing)?, entry);
        match self.request(Rt::DelNeighbour(m), NLM_F_ACK, &doing) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A neighbour message's destination address and link-layer address.
fn neighbour_addresses(m: &NeighbourMessage) -> (Option<IpAddr>, Vec<u8>) {
    let mut ip = None;
    let mut mac = Vec::new();
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                ip = Some(IpAddr::V4(*a));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a));
            }
            // The bridge family's addresses are not parsed by family.
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                ip = match b.len() {
                    4 => <[u8; 4]>::try_from(&b[..]).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(&b[..]).ok().map(IpAddr::from),
                    _ => None,
                };
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac.clone_from(l),
            _ => {}
        }
    }
    (ip, mac)
}

/// A bridge-family neighbour message for a VXLAN forwarding entry
/// (`bridge fdb ... self permanent`).
fn fdb_message(ifindex: u32, entry: &FdbEntry) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::Permanent;
    m.header.flags = NeighbourFlags::Own;
    let dst = match entry.dst {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    };
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(entry.mac.clone()));
    m.attributes.push(NeighbourAttribute::Destination(dst));
    m
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

/// A network namespace opened from a path (`/var/run/netns/x`, `/proc/<pid>/ns/net`).
#[derive(Debug)]
pub struct NetnsFile {
    file: File,
    path: PathBuf,
}

impl NetnsFile {
    /// Open the namespace at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    /// The calling thread's current namespace.
    pub fn current() -> std::io::Result<Self> {
        Self::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Netns for NetnsFile {
    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let fd = self.file.as_fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    io_err(
                        format!("entering network namespace {}", self.path.display()),
                        std::io::Error::from(e),
                    )
                })?;
                // The thread ends here, so it never runs anything else in the namespace.
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

/// `/proc/sys` of the calling thread's network namespace.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcSysctl;

impl Sysctl for ProcSysctl {
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        std::fs::write(Path::new("/proc/sys").join(key), value)
            .map_err(|e| io_err(format!("setting {key} to {value}"), e))
    }

    fn get(&mut self, key: &str) -> Result<String> {
        std::fs::read_to_string(Path::new("/proc/sys").join(key))
            .map(|s| s.trim().to_owned())
            .map_err(|e| io_err(format!("reading {key}"), e))
    }
}
