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
/// route per address through it.
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
        host.add_route(&Route::direct(*ip, host_prefix(ip), veth))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefix_and_eleven_characters() {
        assert_eq!(host_iface_name("f4624db571706668e473"), "calif4624db5717");
        assert_eq!(host_iface_name("abc"), "caliabc");
    }
}
