//! Routes, the VXLAN and IP-in-IP devices and their peers: the kernel state
//! the agent wants ([`Desired`], computed from its model) and the
//! reconciliation that makes the kernel hold it.
//!
//! The agent owns exactly: routes with protocol [`PROTO_FELIX`], the device
//! [`VXLAN_DEVICE`], and the neighbour and forwarding entries on it. Anything
//! of those not wanted is removed (after a restart too); nothing else is
//! touched.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use calico_netlink::{FdbEntry, Netlink, PROTO_FELIX, Route, VxlanSpec};

/// Name of the VXLAN device, as Calico's.
pub const VXLAN_DEVICE: &str = "vxlan.calico";
/// Name of the IP-in-IP device, as Calico's (the kernel's fallback device).
pub const IPIP_DEVICE: &str = "tunl0";

/// The VXLAN settings of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// The device to create.
    pub spec: VxlanSpec,
    /// Its address (this host's tunnel address from IPAM).
    pub address: Ipv4Addr,
}

/// A remote host's tunnel end.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    /// Its VXLAN device's address.
    pub vtep: Ipv4Addr,
    /// Its VXLAN device's MAC.
    pub mac: [u8; 6],
    /// Its underlay address.
    pub underlay: IpAddr,
}

/// What the kernel should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// The tunnel, when VXLAN is on and this host has its tunnel address.
    pub tunnel: Option<Tunnel>,
    /// Remote tunnel ends.
    pub peers: Vec<Peer>,
    /// The IP-in-IP device, when IP-in-IP is on: its MTU and address.
    pub ipip: Option<(u32, Option<Ipv4Addr>)>,
    /// Routes felix owns (protocol [`PROTO_FELIX`]).
    pub routes: Vec<Route>,
}

/// What a reconciliation changed and the errors it met (it carries on past
/// each one, so one bad route does not stop the rest).
#[derive(Debug, Default)]
pub struct Report {
    /// Changes made, described.
    pub changes: Vec<String>,
    /// Errors met.
    pub errors: Vec<calico_netlink::Error>,
}

impl Report {
    fn note<T>(&mut self, r: calico_netlink::Result<T>, change: impl FnOnce() -> String) {
        match r {
            Ok(_) => self.changes.push(change()),
            Err(e) => self.errors.push(e),
        }
    }
}

/// Route identity for comparison: what the kernel keys it by plus where it goes.
fn route_key(r: &Route, oif: u32) -> (IpAddr, u8, Option<IpAddr>, u32, u32) {
    (r.dst, r.prefix_len, r.gateway, oif, r.priority)
}

/// Makes the kernel match `want`, changing only what differs.
pub fn reconcile(nl: &mut impl Netlink, want: &Desired) -> Report {
    let mut report = Report::default();
    reconcile_tunnel(nl, want, &mut report);
    reconcile_ipip(nl, want, &mut report);

    let links = match nl.links() {
        Ok(l) => l,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    let index_of = |name: &str| links.iter().find(|l| l.name == name).map(|l| l.index);
    let have = match nl.routes() {
        Ok(r) => r,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    let have_ours: Vec<&Route> = have.iter().filter(|r| r.protocol == PROTO_FELIX).collect();
    let mut wanted = BTreeSet::new();
    for r in &want.routes {
        // A route through a link that does not exist (yet) cannot be added.
        let Some(oif) = index_of(&r.link) else {
            continue;
        };
        let key = route_key(r, oif);
        wanted.insert(key);
        if !have_ours.iter().any(|h| route_key(h, h.oif) == key) {
            let mut r = r.clone();
            r.oif = oif;
            report.note(nl.add_route(&r), || {
                format!("added route {}/{} dev {}", r.dst, r.prefix_len, r.link)
            });
        }
    }
    for h in have_ours {
        if !wanted.contains(&route_key(h, h.oif)) {
            report.note(nl.delete_route(h), || {
                format!("removed stale route {}/{}", h.dst, h.prefix_len)
            });
        }
    }
    report
}

/// `tunl0` up with its address when IP-in-IP is on (left alone otherwise:
/// the kernel owns the fallback device). Without kernel support the error
/// is reported and routes through it are skipped.
fn reconcile_ipip(nl: &mut impl Netlink, want: &Desired, report: &mut Report) {
    let Some((mtu, address)) = want.ipip else {
        return;
    };
    match nl.link(IPIP_DEVICE) {
        Ok(Some(_)) => {}
        Ok(None) => {
            // Creating any ipip device loads the module, which brings the
            // fallback `tunl0` with it; ours is then the one already there.
            if let Err(e) = nl.create_ipip(IPIP_DEVICE, mtu)
                && !e.is_exists()
            {
                report.errors.push(e);
                return;
            }
            report
                .changes
                .push(format!("created {IPIP_DEVICE} (mtu {mtu})"));
        }
        Err(e) => {
            report.errors.push(e);
            return;
        }
    }
    match nl.link(IPIP_DEVICE) {
        Ok(Some(l)) if !l.up => {
            report.note(nl.set_link_up(IPIP_DEVICE), || {
                format!("set {IPIP_DEVICE} up")
            });
        }
        Ok(_) => {}
        Err(e) => report.errors.push(e),
    }
    if let Some(addr) = address.map(IpAddr::V4) {
        match nl.addresses(IPIP_DEVICE) {
            Ok(addrs) if addrs.contains(&(addr, 32)) => {}
            Ok(_) => report.note(nl.add_address(IPIP_DEVICE, addr, 32), || {
                format!("addressed {IPIP_DEVICE} {addr}/32")
            }),
            Err(e) => report.errors.push(e),
        }
    }
}

fn reconcile_tunnel(nl: &mut impl Netlink, want: &Desired, report: &mut Report) {
    let existing = match nl.link(VXLAN_DEVICE) {
        Ok(l) => l,
        Err(e) => {
            report.errors.push(e);
            return;
        }
    };
    let Some(tunnel) = &want.tunnel else {
        if existing.is_some() {
            report.note(nl.delete_link(VXLAN_DEVICE), || {
                format!("removed {VXLAN_DEVICE} (VXLAN is off)")
            });
        }
        return;
    };
    let stale = existing
        .as_ref()
        .is_some_and(|l| l.mtu != tunnel.spec.mtu || l.mac != tunnel.spec.mac);
    if stale {
        report.note(nl.delete_link(VXLAN_DEVICE), || {
            format!("removed {VXLAN_DEVICE} to recreate it with new settings")
        });
    }
    if existing.is_none() || stale {
        let r = nl.create_vxlan(&tunnel.spec);
        let failed = r.is_err();
        report.note(r, || {
            format!(
                "created {VXLAN_DEVICE} (vni {}, port {}, mtu {})",
                tunnel.spec.vni, tunnel.spec.port, tunnel.spec.mtu
            )
        });
        if failed {
            return;
        }
    }
    match nl.link(VXLAN_DEVICE) {
        Ok(Some(l)) if !l.up => {
            report.note(nl.set_link_up(VXLAN_DEVICE), || {
                format!("set {VXLAN_DEVICE} up")
            });
        }
        Ok(_) => {}
        Err(e) => report.errors.push(e),
    }
    let addr = IpAddr::V4(tunnel.address);
    match nl.addresses(VXLAN_DEVICE) {
        Ok(addrs) if addrs.contains(&(addr, 32)) => {}
        Ok(_) => report.note(nl.add_address(VXLAN_DEVICE, addr, 32), || {
            format!("addressed {VXLAN_DEVICE} {addr}/32")
        }),
        Err(e) => report.errors.push(e),
    }
    // Neighbours: remote VTEP address -> MAC.
    match nl.neighbours(VXLAN_DEVICE) {
        Ok(have) => {
            for p in &want.peers {
                let present = have
                    .iter()
                    .any(|n| n.ip == IpAddr::V4(p.vtep) && n.mac == p.mac && n.permanent);
                if !present {
                    report.note(
                        nl.add_neighbour(VXLAN_DEVICE, IpAddr::V4(p.vtep), &p.mac),
                        || format!("added neighbour {}", p.vtep),
                    );
                }
            }
            // Only permanent IPv4 entries are ours: the kernel keeps its own
            // (e.g. IPv6 multicast) on the device.
            for n in have.into_iter().filter(|n| n.permanent && n.ip.is_ipv4()) {
                if !want.peers.iter().any(|p| IpAddr::V4(p.vtep) == n.ip) {
                    report.note(nl.delete_neighbour(VXLAN_DEVICE, n.ip), || {
                        format!("removed stale neighbour {}", n.ip)
                    });
                }
            }
        }
        Err(e) => report.errors.push(e),
    }
    // Forwarding: remote VTEP MAC -> remote underlay address.
    match nl.fdb(VXLAN_DEVICE) {
        Ok(have) => {
            for p in &want.peers {
                let entry = FdbEntry {
                    mac: p.mac.to_vec(),
                    dst: p.underlay,
                };
                if !have.contains(&entry) {
                    report.note(nl.add_fdb(VXLAN_DEVICE, &entry), || {
                        format!("added fdb entry to {}", p.underlay)
                    });
                }
            }
            for e in have {
                let wanted = want
                    .peers
                    .iter()
                    .any(|p| p.mac.as_slice() == e.mac && p.underlay == e.dst);
                if !wanted {
                    report.note(nl.delete_fdb(VXLAN_DEVICE, &e), || {
                        format!("removed stale fdb entry to {}", e.dst)
                    });
                }
            }
        }
        Err(e) => report.errors.push(e),
    }
}
