//! The workload's interfaces, through the [`Netlink`]/[`Sysctl`] traits so the logic is
//! unit-tested with the recording fakes.
//!
//! Host side: `cali…` veth end (MAC `ee:ee:ee:ee:ee:ee`, up, proxy ARP, a /32 or /128 route
//! per address). Container side: the peer named `CNI_IFNAME`, the addresses as host prefixes,
//! a default route via 169.254.1.1 onlink and a permanent neighbour entry for it.

use std::net::IpAddr;
use std::os::fd::BorrowedFd;

use calico_netlink::{
    CALICO_GATEWAY_V4, CALICO_GATEWAY_V6, CALICO_HOST_MAC, Netlink, Result, Route, Sysctl, VethSpec,
};

/// What to set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Host-side veth name.
    pub host_veth: String,
    /// Container-side interface name.
    pub ifname: String,
    /// MTU of both ends.
    pub mtu: u32,
    /// The workload's addresses.
    pub ips: Vec<IpAddr>,
}

/// (has IPv4, has IPv6).
fn families(ips: &[IpAddr]) -> (bool, bool) {
    (
        ips.iter().any(IpAddr::is_ipv4),
        ips.iter().any(IpAddr::is_ipv6),
    )
}

use calico_netlink::workload::host_prefix;

/// Create everything; returns the container interface's MAC. On error the caller deletes the
/// host veth (which removes the peer and the routes with it).
pub fn setup(
    host: &mut dyn Netlink,
    sysctl: &mut dyn Sysctl,
    container: &mut dyn Netlink,
    container_netns: BorrowedFd<'_>,
    plan: &Plan,
) -> Result<Vec<u8>> {
    host.create_veth(
        &VethSpec {
            name: plan.host_veth.clone(),
            peer_name: plan.ifname.clone(),
            mtu: plan.mtu,
            mac: Some(CALICO_HOST_MAC),
        },
        Some(container_netns),
    )?;
    container.set_link_up(&plan.ifname)?;
    for ip in &plan.ips {
        container.add_address(&plan.ifname, *ip, host_prefix(ip))?;
    }
    if plan.ips.iter().any(IpAddr::is_ipv4) {
        container.add_route(&Route::default_via_onlink(CALICO_GATEWAY_V4, &plan.ifname))?;
        container.add_neighbour(&plan.ifname, CALICO_GATEWAY_V4, &CALICO_HOST_MAC)?;
    }
    if plan.ips.iter().any(IpAddr::is_ipv6) {
        container.add_route(&Route::default_via_onlink(CALICO_GATEWAY_V6, &plan.ifname))?;
        container.add_neighbour(&plan.ifname, CALICO_GATEWAY_V6, &CALICO_HOST_MAC)?;
    }
    let mac = container
        .link(&plan.ifname)?
        .map(|l| l.mac)
        .unwrap_or_default();
    calico_netlink::workload::configure_host_end(host, sysctl, &plan.host_veth, &plan.ips)?;
    Ok(mac)
}

/// What CHECK finds wrong, one line per problem (empty = all as ADD left it). `container` is
/// None when the namespace is gone.
pub fn check(
    host: &mut dyn Netlink,
    sysctl: &mut dyn Sysctl,
    container: Option<&mut dyn Netlink>,
    plan: &Plan,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    match host.link(&plan.host_veth)? {
        None => problems.push(format!("host interface {} is missing", plan.host_veth)),
        Some(l) => {
            if l.mtu != plan.mtu {
                problems.push(format!(
                    "{} has MTU {}, expected {}",
                    l.name, l.mtu, plan.mtu
                ));
            }
            if !l.up {
                problems.push(format!("{} is down", l.name));
            }
            let routes = host.routes()?;
            for ip in &plan.ips {
                if !routes
                    .iter()
                    .any(|r| r.dst == *ip && r.prefix_len == host_prefix(ip) && r.oif == l.index)
                {
                    problems.push(format!("no host route to {ip} via {}", l.name));
                }
            }
            let (v4, v6) = families(&plan.ips);
            for (key, value) in
                calico_netlink::workload_iface_sysctls(&plan.host_veth, v4, v6, false)
            {
                let now = sysctl.get(&key).ok();
                // IPv6 disabled on the host: nothing to check (see set_workload_iface_sysctls).
                if now.is_none() && !v6 && key.starts_with("net/ipv6/") {
                    continue;
                }
                if now.as_deref() != Some(value) {
                    problems.push(format!("{key} is not {value}"));
                }
            }
        }
    }
    let Some(container) = container else {
        problems.push("the container's network namespace is gone".to_owned());
        return Ok(problems);
    };
    match container.link(&plan.ifname)? {
        None => problems.push(format!("container interface {} is missing", plan.ifname)),
        Some(l) => {
            if l.mtu != plan.mtu {
                problems.push(format!(
                    "{} has MTU {}, expected {}",
                    l.name, l.mtu, plan.mtu
                ));
            }
            let addrs = container.addresses(&plan.ifname)?;
            for ip in &plan.ips {
                if !addrs.contains(&(*ip, host_prefix(ip))) {
                    problems.push(format!("{} lacks address {ip}", l.name));
                }
            }
            let routes = container.routes()?;
            if plan.ips.iter().any(IpAddr::is_ipv4)
                && !routes.iter().any(|r| {
                    r.prefix_len == 0 && r.gateway == Some(CALICO_GATEWAY_V4) && r.oif == l.index
                })
            {
                problems.push(format!(
                    "no default route via {CALICO_GATEWAY_V4} in the container"
                ));
            }
            let neighs = container.neighbours(&plan.ifname)?;
            if plan.ips.iter().any(IpAddr::is_ipv4)
                && !neighs
                    .iter()
                    .any(|n| n.ip == CALICO_GATEWAY_V4 && n.permanent && n.mac == CALICO_HOST_MAC)
            {
                problems.push(format!("no permanent neighbour for {CALICO_GATEWAY_V4}"));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_netlink::Netns as _;
    use calico_netlink::fake::{Call, FakeNetlink, FakeNetns, FakeSysctl};

    fn plan() -> Plan {
        Plan {
            host_veth: "cali426f97701eb".into(),
            ifname: "eth0".into(),
            mtu: 1450,
            ips: vec!["10.65.0.2".parse().unwrap()],
        }
    }

    #[test]
    fn setup_sequence_and_check() {
        let ns = FakeNetns::new().unwrap();
        let mut host = FakeNetlink::new();
        let mut cont = FakeNetlink::new();
        let mut sysctl = FakeSysctl::default();
        // The fake cannot create the peer in "another namespace": put it there by hand.
        cont.insert_link("eth0", 1450, vec![2, 0, 0, 0, 0, 9]);
        let mac = setup(&mut host, &mut sysctl, &mut cont, ns.fd(), &plan()).unwrap();
        assert_eq!(mac, vec![2, 0, 0, 0, 0, 9]);
        assert!(
            matches!(&host.calls[0], Call::CreateVeth { spec, peer_in_netns: true }
            if spec.mtu == 1450 && spec.peer_name == "eth0" && spec.mac == Some(CALICO_HOST_MAC))
        );
        assert_eq!(
            cont.calls[..2],
            [
                Call::SetLinkUp("eth0".into()),
                Call::AddAddress("eth0".into(), "10.65.0.2".parse().unwrap(), 32)
            ]
        );
        assert_eq!(
            sysctl.values["net/ipv4/conf/cali426f97701eb/proxy_arp"],
            "1"
        );
        assert!(
            check(&mut host, &mut sysctl, Some(&mut cont), &plan())
                .unwrap()
                .is_empty()
        );
        host.delete_link("cali426f97701eb").unwrap();
        let problems = check(&mut host, &mut sysctl, None, &plan()).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn failure_is_reported() {
        let ns = FakeNetns::new().unwrap();
        let mut host = FakeNetlink::new();
        let mut cont = FakeNetlink::new();
        cont.insert_link("eth0", 1450, vec![2, 0, 0, 0, 0, 9]);
        cont.fail.push("add_route");
        let mut sysctl = FakeSysctl::default();
        assert!(setup(&mut host, &mut sysctl, &mut cont, ns.fd(), &plan()).is_err());
        assert!(
            host.links.contains_key("cali426f97701eb"),
            "the caller rolls back"
        );
    }
}
