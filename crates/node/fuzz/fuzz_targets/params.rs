//! Feeds arbitrary text as the DC/OS parameters file (and as a failsafe
//! list): it must be accepted or refused with an error, never panic, and an
//! accepted CIDR never overlaps DC/OS's reserved networks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = calico_node::params::Params::parse(Some(("fuzz.yaml", text)), &|_| None, &[], 1500) {
        let cidr = ipnet::IpNet::V4(p.network_cidr);
        for (net, _) in calico_node::params::RESERVED {
            let net: ipnet::IpNet = net.parse().unwrap();
            assert!(!cidr.contains(&net) && !net.contains(&cidr));
        }
        assert!(p.vxlan_mtu + 50 <= 1500 && p.vxlan_port > 0);
    }
    let _ = calico_dataplane::parse_failsafes(text);
});
