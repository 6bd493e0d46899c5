//! The real implementation against the kernel, each test in fresh network namespaces entered
//! on the test's own thread. Without the privilege to create namespaces the tests print why
//! and skip; under `CI=true` they fail instead.

use calico_netlink::testing::enter_fresh_netns;
use std::net::IpAddr;

use calico_netlink::real::{NetlinkSocket, NetnsFile, ProcSysctl};
use calico_netlink::{
    CALICO_GATEWAY_V4, CALICO_HOST_MAC, FdbEntry, Netlink, Netns, PROTO_FELIX, Route, Sysctl,
    VethSpec, VxlanSpec,
};

/// A second namespace, created on a helper thread and kept alive by its descriptor.
fn new_netns() -> NetnsFile {
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        NetnsFile::current().unwrap()
    })
    .join()
    .unwrap()
}

#[test]
fn veth_into_netns_with_addresses_routes_neighbour_and_proxy_arp() {
    if !enter_fresh_netns("veth_into_netns") {
        return;
    }
    let container = new_netns();
    let mut host = NetlinkSocket::new().unwrap();
    host.set_link_up("lo").unwrap();
    let spec = VethSpec {
        name: "calitest1".into(),
        peer_name: "eth0".into(),
        mtu: 1450,
        mac: Some(CALICO_HOST_MAC),
    };
    host.create_veth(&spec, Some(container.fd())).unwrap();
    assert!(
        host.create_veth(&spec, Some(container.fd()))
            .unwrap_err()
            .is_exists()
    );
    host.set_link_up("calitest1").unwrap();
    let hl = host.link("calitest1").unwrap().unwrap();
    assert_eq!(
        (hl.mtu, hl.up, hl.mac.as_slice()),
        (1450, true, &CALICO_HOST_MAC[..])
    );
    assert!(
        host.link("eth0").unwrap().is_none(),
        "the peer must be in the container"
    );

    let ip: IpAddr = "10.65.0.2".parse().unwrap();
    let mut inside = NetlinkSocket::new_in(&container).unwrap();
    inside.set_link_up("eth0").unwrap();
    inside.add_address("eth0", ip, 32).unwrap();
    inside
        .add_route(&Route::default_via_onlink(CALICO_GATEWAY_V4, "eth0"))
        .unwrap();
    inside
        .add_neighbour("eth0", CALICO_GATEWAY_V4, &CALICO_HOST_MAC)
        .unwrap();
    let cl = inside.link("eth0").unwrap().unwrap();
    assert_eq!((cl.mtu, cl.up), (1450, true));
    assert!(inside.addresses("eth0").unwrap().contains(&(ip, 32)));
    let default = inside
        .routes()
        .unwrap()
        .into_iter()
        .find(|r| r.prefix_len == 0 && r.dst.is_ipv4())
        .expect("default route");
    assert_eq!(
        (default.gateway, default.oif, default.onlink),
        (Some(CALICO_GATEWAY_V4), cl.index, true)
    );
    let n = inside.neighbours("eth0").unwrap();
    assert!(
        n.iter()
            .any(|n| n.ip == CALICO_GATEWAY_V4 && n.permanent && n.mac == CALICO_HOST_MAC),
        "{n:?}"
    );

    host.add_route(&Route::direct(ip, 32, "calitest1")).unwrap();
    assert!(
        host.routes()
            .unwrap()
            .iter()
            .any(|r| r.dst == ip && r.prefix_len == 32 && r.oif == hl.index)
    );
    let mut sysctl = ProcSysctl;
    sysctl
        .set("net/ipv4/conf/calitest1/proxy_arp", "1")
        .unwrap();
    assert_eq!(
        sysctl.get("net/ipv4/conf/calitest1/proxy_arp").unwrap(),
        "1"
    );

    assert!(host.delete_link("calitest1").unwrap());
    assert!(!host.delete_link("calitest1").unwrap());
    assert!(!host.routes().unwrap().iter().any(|r| r.dst == ip));
    assert!(
        inside.link("eth0").unwrap().is_none(),
        "deleting one end removes the peer"
    );
}

#[test]
fn move_link_by_fd_and_missing_link_errors() {
    if !enter_fresh_netns("move_link_by_fd") {
        return;
    }
    let other = new_netns();
    let mut host = NetlinkSocket::new().unwrap();
    let spec = VethSpec {
        name: "vA".into(),
        peer_name: "vB".into(),
        mtu: 1500,
        mac: None,
    };
    host.create_veth(&spec, None).unwrap();
    host.set_link_netns("vB", other.fd()).unwrap();
    assert!(host.link("vB").unwrap().is_none());
    let mut inside = other.run(NetlinkSocket::new).unwrap().unwrap();
    assert_eq!(inside.link("vB").unwrap().unwrap().mtu, 1500);
    let err = host.set_link_up("nope0").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = host
        .add_address("nope0", "10.0.0.1".parse().unwrap(), 32)
        .unwrap_err();
    assert!(err.to_string().contains("nope0"), "{err}");
}

#[test]
fn vxlan_device_fdb_neighbour_and_owned_routes() {
    if !enter_fresh_netns("vxlan_device") {
        return;
    }
    let mut nl = NetlinkSocket::new().unwrap();
    nl.set_link_up("lo").unwrap();
    // An underlay interface for the tunnel to send through.
    let underlay = VethSpec {
        name: "ul0".into(),
        peer_name: "ul1".into(),
        mtu: 1500,
        mac: None,
    };
    nl.create_veth(&underlay, None).unwrap();
    nl.set_link_up("ul0").unwrap();
    nl.add_address("ul0", "172.30.0.1".parse().unwrap(), 24)
        .unwrap();
    let spec = VxlanSpec {
        name: "vxlan.calico".into(),
        vni: 4096,
        port: 4789,
        local: Some("172.30.0.1".parse().unwrap()),
        parent: Some("ul0".into()),
        mtu: 1450,
        mac: [0x66, 0xc0, 0, 0, 0, 1],
    };
    nl.create_vxlan(&spec).unwrap();
    assert!(nl.create_vxlan(&spec).unwrap_err().is_exists());
    nl.set_link_up("vxlan.calico").unwrap();
    let link = nl.link("vxlan.calico").unwrap().unwrap();
    assert_eq!((link.mtu, link.mac.as_slice()), (1450, &spec.mac[..]));
    assert!(nl.links().unwrap().iter().any(|l| l.name == "vxlan.calico"));

    let peer_mac = vec![0x66, 0xc0, 0, 0, 0, 2];
    let vtep: IpAddr = "10.65.2.0".parse().unwrap();
    nl.add_neighbour("vxlan.calico", vtep, &peer_mac).unwrap();
    let entry = FdbEntry {
        mac: peer_mac.clone(),
        dst: "172.30.0.2".parse().unwrap(),
    };
    nl.add_fdb("vxlan.calico", &entry).unwrap();
    nl.add_fdb("vxlan.calico", &entry).unwrap(); // replace is idempotent
    assert_eq!(nl.fdb("vxlan.calico").unwrap(), vec![entry.clone()]);
    let route = Route::via_tunnel("10.65.2.0".parse().unwrap(), 26, vtep, "vxlan.calico");
    nl.add_route(&route).unwrap();
    let ours: Vec<Route> = nl
        .routes()
        .unwrap()
        .into_iter()
        .filter(|r| r.protocol == PROTO_FELIX)
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(
        (
            ours[0].dst,
            ours[0].prefix_len,
            ours[0].gateway,
            ours[0].onlink
        ),
        (route.dst, 26, Some(vtep), true)
    );
    assert_eq!(ours[0].oif, link.index);

    assert!(nl.delete_route(&ours[0]).unwrap());
    assert!(!nl.delete_route(&ours[0]).unwrap());
    assert!(nl.delete_fdb("vxlan.calico", &entry).unwrap());
    assert!(!nl.delete_fdb("vxlan.calico", &entry).unwrap());
    assert!(nl.fdb("vxlan.calico").unwrap().is_empty());
    assert!(nl.delete_neighbour("vxlan.calico", vtep).unwrap());
    assert!(!nl.delete_neighbour("vxlan.calico", vtep).unwrap());
    assert!(nl.delete_link("vxlan.calico").unwrap());
}

#[test]
fn ipip_device_where_the_kernel_has_it() {
    if !enter_fresh_netns("ipip_device") {
        return;
    }
    let mut nl = NetlinkSocket::new().unwrap();
    match nl.create_ipip("tunl9", 1480) {
        Ok(()) => {
            let link = nl.link("tunl9").unwrap().expect("created");
            assert_eq!(link.mtu, 1480);
            assert!(nl.delete_link("tunl9").unwrap());
        }
        // No ipip module: the capability is missing, not our code broken.
        Err(e) if matches!(e.errno(), Some(95 | 19)) => {
            eprintln!("SKIPPED ipip_device: this kernel has no IP-in-IP support ({e})");
        }
        Err(e) => panic!("creating an ipip device: {e}"),
    }
}
