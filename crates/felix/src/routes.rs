//! What the kernel should hold for the cluster as felix knows it: routes to
//! local workloads and to other hosts' blocks, the tunnel and its peers. The
//! dataplane crate makes the kernel hold it ([`calico_dataplane::routes`]).

use std::net::IpAddr;

use calico_dataplane::routes::{Desired, IPIP_DEVICE, Peer, Tunnel, VXLAN_DEVICE};
use calico_netlink::{PROTO_FELIX, Route, VxlanSpec};

use crate::cluster::Cluster;

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
            let mut r = Route::to_workload(net.addr(), net.prefix_len(), &l.iface);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Host, LocalEndpoint};
    use calico_dataplane::routes::reconcile;
    use calico_netlink::Netlink as _;
    use calico_netlink::fake::FakeNetlink;
    use calico_policy::EndpointId;
    use std::net::Ipv4Addr;

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
