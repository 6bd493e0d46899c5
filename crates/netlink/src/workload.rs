//! The host end of a workload's veth, the one rule every plugin that wires a
//! workload (the CNI plugin, the Docker plugin) follows.

use std::net::IpAddr;

use crate::{Netlink, Result, Route, Sysctl};

/// The name prefix of every workload's host-side interface; felix drops
/// traffic on one it does not know.
pub const HOST_IFACE_PREFIX: &str = "cali";

/// A host-side interface name: the prefix and the first 11 characters of
/// `id` (a hex digest or a Docker endpoint ID), 15 characters in all.
pub fn host_iface_name(id: &str) -> String {
    let cut = id.char_indices().nth(11).map_or(id.len(), |(i, _)| i);
    format!("{HOST_IFACE_PREFIX}{}", &id[..cut])
}

/// Host prefix length of an address (/32 or /128).
pub fn host_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// Configures the host end `veth` of a workload with `ips` (the veth exists):
/// its sysctls (proxy ARP, forwarding, no redirects or router
/// advertisements, reverse-path filtering), the link up, and a /32 or /128
/// route per address through it (at the workload route priority).
pub fn configure_host_end(
    host: &mut dyn Netlink,
    sysctl: &mut dyn Sysctl,
    veth: &str,
    ips: &[IpAddr],
) -> Result<()> {
    let v4 = ips.iter().any(IpAddr::is_ipv4);
    let v6 = ips.iter().any(IpAddr::is_ipv6);
    crate::set_workload_iface_sysctls(sysctl, veth, v4, v6, false)?;
    host.set_link_up(veth)?;
    for ip in ips {
        host.add_route(&Route::to_workload(*ip, host_prefix(ip), veth))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_routes_carry_the_normal_priority() {
        let mut nl = crate::fake::FakeNetlink::new();
        nl.insert_link("cali1", 1500, Vec::new());
        let mut sysctl = crate::fake::FakeSysctl::default();
        let ips: Vec<IpAddr> = vec!["10.1.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        configure_host_end(&mut nl, &mut sysctl, "cali1", &ips).unwrap();
        assert_eq!(nl.route_table.len(), 2);
        for r in &nl.route_table {
            assert_eq!(r.priority, crate::WORKLOAD_ROUTE_PRIORITY, "{r:?}");
            assert_eq!(r.prefix_len, if r.dst.is_ipv4() { 32 } else { 128 });
        }
    }

    #[test]
    fn names_are_prefix_and_eleven_characters() {
        assert_eq!(host_iface_name("f4624db571706668e473"), "calif4624db5717");
        assert_eq!(host_iface_name("abc"), "caliabc");
    }
}
