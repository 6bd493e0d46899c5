//! Routes, the VXLAN device and its peers: what the kernel should hold for
//! the cluster as it is, and the reconciliation that makes it so.
//!
//! Felix owns exactly: routes with protocol [`PROTO_FELIX`], the device
//! [`VXLAN_DEVICE`], and the neighbour and forwarding entries on it. Anything
//! of those not wanted is removed (after a restart too); nothing else is
//! touched.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use calico_netlink::{FdbEntry, Netlink, PROTO_FELIX, Route, VxlanSpec};

use crate::cluster::Cluster;

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

/// How traffic to other hosts' blocks is carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encap {
    /// VXLAN through `vxlan.calico`.
    Vxlan(VxlanParams),
    /// IP-in-IP through `tunl0`, with this MTU.
    Ipip(u32),
    /// No encapsulation: only local routes.
    None,
}

/// VXLAN parameters of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanParams {
    /// VNI.
    pub vni: u32,
    /// UDP port.
    pub port: u16,
    /// Device MTU.
    pub mtu: u32,
}

/// Computes the desired kernel state of host `node` from `cluster`.
pub fn desired(node: &str, encap: &Encap, cluster: &Cluster) -> Desired {
    let mut out = Desired::default();
    // Routes to local workloads, replacing the CNI plugin's so that felix
    // restores them if they are removed.
    for l in cluster.local.values() {
        if l.iface.is_empty() {
            continue;
        }
        for net in &l.nets {
            let mut r = Route::direct(net.addr(), net.prefix_len(), &l.iface);
            r.protocol = PROTO_FELIX;
            out.routes.push(r);
        }
    }
    let params = match encap {
        Encap::Vxlan(p) => p,
        Encap::Ipip(mtu) => {
            out.ipip = Some((*mtu, cluster.hosts.get(node).and_then(|h| h.ipip)));
            for (cidr, owner) in cluster.blocks.values() {
                let Some(owner) = owner.as_deref().filter(|o| *o != node) else {
                    continue;
                };
                if let Some(underlay) = cluster.hosts.get(owner).and_then(|h| h.underlay)
                    && cidr.addr().is_ipv4()
                    && underlay.is_ipv4()
                {
                    out.routes.push(Route::via_tunnel(
                        cidr.addr(),
                        cidr.prefix_len(),
                        underlay,
                        IPIP_DEVICE,
                    ));
                }
            }
            return out;
        }
        Encap::None => return out,
    };
    let me = cluster.hosts.get(node);
    if let Some(me) = me
        && let (Some(address), Some(mac)) = (me.vtep, me.vtep_mac)
    {
        out.tunnel = Some(Tunnel {
            spec: VxlanSpec {
                name: VXLAN_DEVICE.to_owned(),
                vni: params.vni,
                port: params.port,
                local: match me.underlay {
                    Some(IpAddr::V4(a)) => Some(a),
                    _ => None,
                },
                parent: None,
                mtu: params.mtu,
                mac,
            },
            address,
        });
    }
    for (name, host) in &cluster.hosts {
        if name == node {
            continue;
        }
        if let (Some(vtep), Some(mac), Some(underlay)) = (host.vtep, host.vtep_mac, host.underlay) {
            out.peers.push(Peer {
                vtep,
                mac,
                underlay,
            });
        }
    }
    out.peers.sort();
    // Every block affine to a remote host with a tunnel goes through it.
    for (cidr, owner) in cluster.blocks.values() {
        let Some(owner) = owner.as_deref().filter(|o| *o != node) else {
            continue;
        };
        let Some(vtep) = cluster.hosts.get(owner).and_then(|h| h.vtep) else {
            continue;
        };
        if out.tunnel.is_some() && cidr.addr().is_ipv4() {
            out.routes.push(Route::via_tunnel(
                cidr.addr(),
                cidr.prefix_len(),
                IpAddr::V4(vtep),
                VXLAN_DEVICE,
            ));
        }
    }
    out
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
fn route_key(r: &Route, oif: u32) -> (IpAddr, u8, Option<IpAddr>, u32) {
    (r.dst, r.prefix_len, r.gateway, oif)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Host, LocalEndpoint};
    use calico_netlink::fake::FakeNetlink;
    use calico_policy::EndpointId;

    fn cluster() -> Cluster {
        let mut c = Cluster::default();
        for i in 1..=3u8 {
            c.hosts.insert(
                format!("h{i}"),
                Host {
                    underlay: Some(IpAddr::from([172, 30, 0, i])),
                    vtep: Some(Ipv4Addr::new(10, 65, i, 0)),
                    vtep_mac: Some([0x66, 0xc0, 0, 0, 0, i]),
                    ipip: Some(Ipv4Addr::new(10, 65, i, 1)),
                },
            );
            c.blocks.insert(
                format!("b{i}"),
                (
                    format!("10.65.{i}.0/26").parse().unwrap(),
                    Some(format!("h{i}")),
                ),
            );
        }
        c.local.insert(
            "default/w1".into(),
            LocalEndpoint {
                id: EndpointId::Workload {
                    namespace: "default".into(),
                    name: "w1".into(),
                },
                iface: "cali1".into(),
                nets: vec!["10.65.1.2/32".parse().unwrap()],
                allow_spoofed: Vec::new(),
            },
        );
        c
    }

    const VX: Encap = Encap::Vxlan(VxlanParams {
        vni: 4096,
        port: 4789,
        mtu: 1450,
    });

    #[test]
    fn desired_state_of_a_three_host_cluster() {
        let d = desired("h1", &VX, &cluster());
        let t = d.tunnel.as_ref().unwrap();
        assert_eq!(t.address, Ipv4Addr::new(10, 65, 1, 0));
        assert_eq!(t.spec.local, Some(Ipv4Addr::new(172, 30, 0, 1)));
        assert_eq!(d.peers.len(), 2);
        let dsts: Vec<String> = d
            .routes
            .iter()
            .map(|r| format!("{}/{} {}", r.dst, r.prefix_len, r.link))
            .collect();
        assert_eq!(
            dsts,
            [
                "10.65.1.2/32 cali1",
                "10.65.2.0/26 vxlan.calico",
                "10.65.3.0/26 vxlan.calico"
            ]
        );
        // Without VXLAN: only local routes, no tunnel.
        let d = desired("h1", &Encap::None, &cluster());
        assert!(d.tunnel.is_none() && d.peers.is_empty());
        assert_eq!(d.routes.len(), 1);
    }

    #[test]
    fn reconcile_converges_and_sweeps_what_is_no_longer_wanted() {
        let mut nl = FakeNetlink::new();
        nl.insert_link("cali1", 1500, vec![0xee; 6]);
        let mut c = cluster();
        let d = desired("h1", &VX, &c);
        let r = reconcile(&mut nl, &d);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(nl.routes().unwrap().len(), 3);
        assert_eq!(nl.fdb(VXLAN_DEVICE).unwrap().len(), 2);
        // A second pass changes nothing.
        let again = reconcile(&mut nl, &d);
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        // Host h3 leaves: its route, neighbour and fdb entry go.
        c.hosts.remove("h3");
        c.blocks.remove("b3");
        let r = reconcile(&mut nl, &desired("h1", &VX, &c));
        assert_eq!(r.changes.len(), 3, "{:?}", r.changes);
        assert_eq!(nl.routes().unwrap().len(), 2);
        assert_eq!(nl.neighbours(VXLAN_DEVICE).unwrap().len(), 1);
        // A route someone else owns is never touched.
        nl.add_route(&Route::direct("192.0.2.1".parse().unwrap(), 32, "cali1"))
            .unwrap();
        reconcile(&mut nl, &desired("h1", &VX, &c));
        assert_eq!(nl.routes().unwrap().len(), 3);
        // VXLAN turned off: the device goes.
        reconcile(&mut nl, &desired("h1", &Encap::None, &c));
        assert!(nl.link(VXLAN_DEVICE).unwrap().is_none());
    }

    #[test]
    fn ipip_routes_go_to_the_remote_underlay_through_tunl0() {
        let d = desired("h1", &Encap::Ipip(1480), &cluster());
        assert!(d.tunnel.is_none() && d.peers.is_empty());
        assert_eq!(d.ipip, Some((1480, Some(Ipv4Addr::new(10, 65, 1, 1)))));
        let routes: Vec<String> = d
            .routes
            .iter()
            .map(|r| format!("{}/{} via {:?} {}", r.dst, r.prefix_len, r.gateway, r.link))
            .collect();
        assert_eq!(
            routes,
            [
                "10.65.1.2/32 via None cali1",
                "10.65.2.0/26 via Some(172.30.0.2) tunl0",
                "10.65.3.0/26 via Some(172.30.0.3) tunl0"
            ]
        );
        let mut nl = FakeNetlink::new();
        nl.insert_link("cali1", 1500, vec![0xee; 6]);
        let r = reconcile(&mut nl, &d);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(nl.routes().unwrap().len(), 3);
        // A kernel without ipip: reported, and the tunnel routes skipped.
        let mut nl = FakeNetlink::new();
        nl.insert_link("cali1", 1500, vec![0xee; 6]);
        nl.fail.push("create_ipip");
        let r = reconcile(&mut nl, &d);
        assert_eq!(r.errors.len(), 1);
        assert_eq!(nl.routes().unwrap().len(), 1, "only the local route");
    }

    #[test]
    fn errors_are_collected_and_the_rest_still_done() {
        let mut nl = FakeNetlink::new();
        nl.insert_link("cali1", 1500, vec![0xee; 6]);
        nl.fail.push("add_fdb");
        let r = reconcile(&mut nl, &desired("h1", &VX, &cluster()));
        assert_eq!(r.errors.len(), 2, "one per peer");
        assert_eq!(nl.routes().unwrap().len(), 3, "routes still programmed");
    }
}
