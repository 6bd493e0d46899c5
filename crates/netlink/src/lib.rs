//! The small set of kernel operations a Calico dataplane needs for a workload interface:
//! veth pairs, link state and MTU, addresses, routes, permanent neighbours, network
//! namespaces and `/proc/sys` knobs.
//!
//! Each boundary is a trait ([`Netlink`], [`Netns`], [`Sysctl`]) with a real implementation
//! ([`real::NetlinkSocket`], [`real::NetnsFile`], [`real::ProcSysctl`]) and a recording fake
//! ([`fake`]) for unit tests that must not need privileges.
//!
//! The real netlink implementation is a small synchronous socket on `netlink-sys` and
//! `netlink-packet-route`: short-lived processes such as a CNI plugin pay no async runtime.
//! A socket works in the network namespace it was created in, so a socket for a container
//! namespace is created on a dedicated thread that entered it ([`Netns::run`]).

use std::net::IpAddr;
use std::os::fd::BorrowedFd;

pub mod events;
pub mod fake;
pub mod netfilter;
pub mod real;
pub mod testing;
pub mod workload;

/// The gateway address Calico gives every workload (answered by proxy ARP on the host veth).
pub const CALICO_GATEWAY_V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 1, 1));
/// The MAC address Calico sets on host-side veths.
pub const CALICO_HOST_MAC: [u8; 6] = [0xee; 6];
/// The IPv6 gateway: the link-local address of a host veth with MAC `ee:ee:ee:ee:ee:ee`.
pub const CALICO_GATEWAY_V6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(
    0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee,
));

/// Errors from kernel operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused a request.
    #[error("{doing}: {source}")]
    Kernel {
        /// What was being done, e.g. `adding route 10.0.0.1/32 dev cali1`.
        doing: String,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
    /// A named link does not exist.
    #[error("{doing}: link {name} not found")]
    LinkNotFound {
        /// What was being done.
        doing: String,
        /// The link's name.
        name: String,
    },
    /// A reply could not be decoded.
    #[error("{doing}: decoding netlink reply: {reason}")]
    Decode {
        /// What was being done.
        doing: String,
        /// Why decoding failed.
        reason: String,
    },
}

impl Error {
    /// The OS error number, when the kernel refused a request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Whether the error says the object does not exist (ENOENT, ENODEV, ESRCH, or a missing link).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::LinkNotFound { .. }) || matches!(self.errno(), Some(2 | 3 | 19))
    }

    /// Whether the error says the object exists already (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(17)
    }
}

/// Result of kernel operations.
pub type Result<T> = std::result::Result<T, Error>;

/// A veth pair to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// The end created in the socket's namespace.
    pub name: String,
    /// The other end's name.
    pub peer_name: String,
    /// MTU of both ends.
    pub mtu: u32,
    /// MAC address of the `name` end; the kernel picks one when None.
    pub mac: Option<[u8; 6]>,
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: u32,
    /// MAC address (empty for links without one).
    pub mac: Vec<u8>,
    /// Administratively up.
    pub up: bool,
}

/// Route scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Global (through a gateway).
    Universe,
    /// Directly on the link.
    Link,
}

/// A route to add, or one read back from the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network address.
    pub dst: IpAddr,
    /// Destination prefix length (0 for a default route).
    pub prefix_len: u8,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Outgoing link's index (0 = unknown; when adding, the link is named by `link`).
    pub oif: u32,
    /// Outgoing link's name (used when adding).
    pub link: String,
    /// Route scope.
    pub scope: Scope,
    /// The gateway is on the link even without a covering route (`onlink`).
    pub onlink: bool,
    /// Routing protocol number: who installed the route ([`PROTO_BOOT`] for
    /// the CNI plugin's, [`PROTO_FELIX`] for felix's).
    pub protocol: u8,
    /// Priority (metric), as the kernel reports it: IPv4's default is 0,
    /// IPv6's 1024 (the kernel turns 0 into 1024).
    pub priority: u32,
}

/// The priority (metric) of workload routes: upstream's normal route
/// priority, which BIRD's export filters (`calico_aggr`) take as an
/// ordinary route covered by its block; only lower (elevated) ones are
/// exported beside the block.
pub const WORKLOAD_ROUTE_PRIORITY: u32 = 1024;

/// The kernel's priority of a route to `dst` added without one.
pub fn default_priority(dst: &IpAddr) -> u32 {
    if dst.is_ipv6() { 1024 } else { 0 }
}

/// `proto boot`: the kernel's default for administratively added routes.
pub const PROTO_BOOT: u8 = 3;
/// Felix's routes carry this protocol (Calico's own choice, `proto 80`), so
/// after a restart it finds exactly the routes it owns and sweeps stale ones.
pub const PROTO_FELIX: u8 = 80;

/// A VXLAN device to create (learning off: felix programs every peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    /// Device name (`vxlan.calico`).
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// UDP destination port.
    pub port: u16,
    /// Underlay source address.
    pub local: Option<std::net::Ipv4Addr>,
    /// Underlay device the tunnel sends through.
    pub parent: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// MAC address of the device.
    pub mac: [u8; 6],
}

/// A bridge forwarding entry of a VXLAN device: frames for `mac` go to `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    /// The remote VTEP's MAC.
    pub mac: Vec<u8>,
    /// The remote host's underlay address.
    pub dst: IpAddr,
}

impl Route {
    /// `dst/prefix_len dev link scope link`.
    pub fn direct(dst: IpAddr, prefix_len: u8, link: &str) -> Self {
        Self {
            dst,
            prefix_len,
            gateway: None,
            oif: 0,
            link: link.to_owned(),
            scope: Scope::Link,
            onlink: false,
            protocol: PROTO_BOOT,
            priority: default_priority(&dst),
        }
    }

    /// `dst/prefix_len dev link scope link metric 1024`: the host's route to
    /// a workload address through its veth.
    pub fn to_workload(dst: IpAddr, prefix_len: u8, link: &str) -> Self {
        Self {
            priority: WORKLOAD_ROUTE_PRIORITY,
            ..Self::direct(dst, prefix_len, link)
        }
    }

    /// `default via gateway dev link onlink`.
    pub fn default_via_onlink(gateway: IpAddr, link: &str) -> Self {
        let dst = match gateway {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        Self {
            dst,
            prefix_len: 0,
            gateway: Some(gateway),
            oif: 0,
            link: link.to_owned(),
            scope: Scope::Universe,
            onlink: true,
            protocol: PROTO_BOOT,
            priority: default_priority(&dst),
        }
    }

    /// `dst/prefix_len via gateway dev link onlink proto 80`: felix's route
    /// to a remote host's block through a tunnel device.
    pub fn via_tunnel(dst: IpAddr, prefix_len: u8, gateway: IpAddr, link: &str) -> Self {
        Self {
            dst,
            prefix_len,
            gateway: Some(gateway),
            oif: 0,
            link: link.to_owned(),
            scope: Scope::Universe,
            onlink: true,
            protocol: PROTO_FELIX,
            priority: default_priority(&dst),
        }
    }
}

/// A neighbour (ARP/NDP) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Link index.
    pub ifindex: u32,
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its link-layer address.
    pub mac: Vec<u8>,
    /// A permanent (static) entry.
    pub permanent: bool,
}

/// Link, address, route and neighbour operations in one network namespace.
pub trait Netlink {
    /// Create a veth pair; with `peer_netns`, the peer is created directly in that namespace.
    fn create_veth(&mut self, spec: &VethSpec, peer_netns: Option<BorrowedFd<'_>>) -> Result<()>;
    /// Move a link into the namespace `netns` refers to.
    fn set_link_netns(&mut self, name: &str, netns: BorrowedFd<'_>) -> Result<()>;
    /// Set a link administratively up.
    fn set_link_up(&mut self, name: &str) -> Result<()>;
    /// Add an address to a link.
    fn add_address(&mut self, link: &str, addr: IpAddr, prefix_len: u8) -> Result<()>;
    /// Add (or replace) a route in the main table.
    fn add_route(&mut self, route: &Route) -> Result<()>;
    /// Add (or replace) a permanent neighbour entry.
    fn add_neighbour(&mut self, link: &str, ip: IpAddr, mac: &[u8]) -> Result<()>;
    /// Delete a link (a veth takes its peer and its routes with it). Ok(false) if it was gone.
    fn delete_link(&mut self, name: &str) -> Result<bool>;
    /// A link by name, or None.
    fn link(&mut self, name: &str) -> Result<Option<Link>>;
    /// The addresses of a link, with prefix lengths.
    fn addresses(&mut self, link: &str) -> Result<Vec<(IpAddr, u8)>>;
    /// The main table's routes of both families.
    fn routes(&mut self) -> Result<Vec<Route>>;
    /// The neighbour entries of a link.
    fn neighbours(&mut self, link: &str) -> Result<Vec<Neighbour>>;
    /// Every link of the namespace.
    fn links(&mut self) -> Result<Vec<Link>>;
    /// Create a VXLAN device (down; set it up separately).
    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()>;
    /// Create an IP-in-IP device without a fixed remote (down). Fails on a
    /// kernel without the `ipip` module.
    fn create_ipip(&mut self, name: &str, mtu: u32) -> Result<()>;
    /// Delete a route from the main table. Ok(false) if it was gone.
    fn delete_route(&mut self, route: &Route) -> Result<bool>;
    /// Delete a neighbour entry. Ok(false) if it was gone.
    fn delete_neighbour(&mut self, link: &str, ip: IpAddr) -> Result<bool>;
    /// Add (or replace) a permanent forwarding entry on a VXLAN device.
    fn add_fdb(&mut self, link: &str, entry: &FdbEntry) -> Result<()>;
    /// The forwarding entries of a VXLAN device that name a remote address.
    fn fdb(&mut self, link: &str) -> Result<Vec<FdbEntry>>;
    /// Delete a forwarding entry. Ok(false) if it was gone.
    fn delete_fdb(&mut self, link: &str, entry: &FdbEntry) -> Result<bool>;
}

/// A network namespace handle.
pub trait Netns {
    /// The namespace file descriptor.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Run `f` on a dedicated thread inside the namespace and return its result.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T>;
}

/// Kernel parameters under `/proc/sys`, named by their path below it
/// (`net/ipv4/conf/cali1/proxy_arp`).
pub trait Sysctl {
    /// Write a value.
    fn set(&mut self, key: &str, value: &str) -> Result<()>;
    /// Read a value (trimmed).
    fn get(&mut self, key: &str) -> Result<String>;
}

/// The sysctls of the host side of a workload veth: the one list both the
/// CNI plugin (before the link is up) and felix (for every local endpoint)
/// write. `v4`/`v6`: the workload has addresses of that family;
/// `allow_spoofing`: it may send from other prefixes (strict reverse-path
/// filtering off; felix's nftables check then allows just those).
pub fn workload_iface_sysctls(
    iface: &str,
    v4: bool,
    v6: bool,
    allow_spoofing: bool,
) -> Vec<(String, &'static str)> {
    let mut v = Vec::new();
    if v4 {
        v.push((format!("net/ipv4/conf/{iface}/proxy_arp"), "1"));
        v.push((format!("net/ipv4/neigh/{iface}/proxy_delay"), "0"));
        v.push((format!("net/ipv4/conf/{iface}/forwarding"), "1"));
    }
    // Whatever the workload's families: a workload must not steer its host.
    v.push((
        format!("net/ipv4/conf/{iface}/rp_filter"),
        if allow_spoofing { "0" } else { "1" },
    ));
    v.push((format!("net/ipv4/conf/{iface}/accept_redirects"), "0"));
    v.push((format!("net/ipv6/conf/{iface}/accept_ra"), "0"));
    v.push((format!("net/ipv6/conf/{iface}/accept_redirects"), "0"));
    if v6 {
        v.push((format!("net/ipv6/conf/{iface}/proxy_ndp"), "1"));
        v.push((format!("net/ipv6/conf/{iface}/forwarding"), "1"));
    }
    v
}

/// Writes [`workload_iface_sysctls`]. IPv6 keys are skipped when the host
/// has IPv6 disabled (no `net/ipv6/conf/IFACE`: no RA can arrive either).
pub fn set_workload_iface_sysctls(
    sysctl: &mut dyn Sysctl,
    iface: &str,
    v4: bool,
    v6: bool,
    allow_spoofing: bool,
) -> Result<()> {
    for (key, value) in workload_iface_sysctls(iface, v4, v6, allow_spoofing) {
        if !v6 && key.starts_with("net/ipv6/") && sysctl.get(&key).is_err() {
            continue;
        }
        sysctl.set(&key, value)?;
    }
    Ok(())
}

/// Format a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
