//! The IPAM driver (`calico-ipam`): Docker pools are Calico IPPools or ranges inside them;
//! addresses come from Calico IPAM.
//!
//! Pool IDs carry everything a restarted plugin needs: [`POOL_ID_V4`] / [`POOL_ID_V6`] for a
//! network without `--subnet` (any pool of the family), else `<subnet>` or
//! `<subnet> <ip-range>`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use calico_ipam::{AssignArgs, Ipam, IpamError};
use ipnet::IpNet;

use crate::protocol::{
    AddressGranted, AddressSpaces, IpamCapabilities, PoolGranted, ReleaseAddress, ReleasePool,
    RequestAddress, RequestPool,
};
use crate::{Error, Plugin, answer, decode};

/// The pool of a network without `--subnet`: every IPv4 Calico pool this node may use.
pub const POOL_ID_V4: &str = "CalicoPoolIPv4";
/// The same for IPv6.
pub const POOL_ID_V6: &str = "CalicoPoolIPv6";
/// Docker's option marking a gateway address request.
const GATEWAY_REQUEST: &str = "com.docker.network.gateway";
/// The handle prefix of addresses the plugin hands out.
const HANDLE_PREFIX: &str = "libnetwork.";
/// Most addresses tried one by one in a range that is not a whole Calico pool.
const MAX_RANGE_TRIES: usize = 65_536;

/// A decoded pool ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DockerPool {
    v6: bool,
    /// `--subnet` (None: any pool of the family).
    subnet: Option<IpNet>,
    /// `--ip-range` inside it.
    range: Option<IpNet>,
}

impl DockerPool {
    fn parse(id: &str) -> Result<DockerPool, Error> {
        let bad = || Error::Refused(format!("pool ID {id:?} was not made by calico-ipam"));
        match id {
            POOL_ID_V4 => {
                return Ok(DockerPool {
                    v6: false,
                    subnet: None,
                    range: None,
                });
            }
            POOL_ID_V6 => {
                return Ok(DockerPool {
                    v6: true,
                    subnet: None,
                    range: None,
                });
            }
            _ => {}
        }
        let mut parts = id.split(' ');
        let subnet: IpNet = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let range = match parts.next() {
            Some(r) => Some(r.parse::<IpNet>().map_err(|_| bad())?),
            None => None,
        };
        Ok(DockerPool {
            v6: matches!(subnet, IpNet::V6(_)),
            subnet: Some(subnet),
            range,
        })
    }

    fn id(&self) -> String {
        match (self.subnet, self.range) {
            (None, _) if self.v6 => POOL_ID_V6.to_owned(),
            (None, _) => POOL_ID_V4.to_owned(),
            (Some(s), None) => s.to_string(),
            (Some(s), Some(r)) => format!("{s} {r}"),
        }
    }

    /// Where addresses must come from, if narrower than the family.
    fn narrowest(&self) -> Option<IpNet> {
        self.range.or(self.subnet)
    }
}

fn parse_net(what: &str, s: &str) -> Result<IpNet, Error> {
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|e| Error::Refused(format!("{what} {s:?}: {e}")))
}

fn host_len(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

impl Plugin {
    pub(crate) fn ipam_call(
        self: &Arc<Self>,
        call: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, Error> {
        match call {
            "IpamDriver.GetCapabilities" => answer(&IpamCapabilities {
                requires_mac_address: false,
                requires_request_replay: false,
            }),
            "IpamDriver.GetDefaultAddressSpaces" => answer(&AddressSpaces {
                local: "CalicoLocalAddressSpace",
                global: "CalicoGlobalAddressSpace",
            }),
            "IpamDriver.RequestPool" => answer(&self.request_pool(&decode(call, body)?)?),
            "IpamDriver.ReleasePool" => {
                // Nothing is held for a pool: its ID is all there is.
                let _: ReleasePool = decode(call, body)?;
                Ok(serde_json::json!({}))
            }
            "IpamDriver.RequestAddress" => answer(&self.request_address(&decode(call, body)?)?),
            "IpamDriver.ReleaseAddress" => {
                self.release_address(&decode(call, body)?)?;
                Ok(serde_json::json!({}))
            }
            _ => Err(Error::Refused(format!("calico-ipam has no call {call}"))),
        }
    }

    fn request_pool(&self, req: &RequestPool) -> Result<PoolGranted, Error> {
        if let Some((k, v)) = req.options.iter().flatten().next() {
            return Err(Error::Refused(format!(
                "calico-ipam takes no --ipam-opt options; got {k}={v}"
            )));
        }
        let any = if req.v6 { "::/0" } else { "0.0.0.0/0" };
        let mut pool = DockerPool {
            v6: req.v6,
            subnet: None,
            range: None,
        };
        if req.pool.is_empty() {
            if !req.sub_pool.is_empty() {
                return Err(Error::Refused(
                    "--ip-range needs --subnet (a Calico IPPool or a range inside one)".into(),
                ));
            }
        } else {
            let subnet = parse_net("--subnet", &req.pool)?;
            if matches!(subnet, IpNet::V6(_)) != req.v6 {
                return Err(Error::Refused(format!(
                    "--subnet {subnet} is not an IPv{} network",
                    if req.v6 { 6 } else { 4 }
                )));
            }
            let pools =
                calico_ipam::pools::list_pools(self.ds.as_ref()).map_err(|source| Error::Ipam {
                    doing: "listing Calico IPPools".into(),
                    source,
                })?;
            if !pools.iter().any(|p| p.net.contains(&subnet)) {
                let names: Vec<String> = pools
                    .iter()
                    .map(|p| format!("{} ({})", p.name, p.net))
                    .collect();
                return Err(Error::Refused(format!(
                    "--subnet {subnet} is not inside any Calico IPPool; create one first (calicoctl apply) or use one of: {}",
                    if names.is_empty() {
                        "none configured".to_owned()
                    } else {
                        names.join(", ")
                    }
                )));
            }
            pool.subnet = Some(subnet);
            if !req.sub_pool.is_empty() {
                let range = parse_net("--ip-range", &req.sub_pool)?;
                if !subnet.contains(&range) {
                    return Err(Error::Refused(format!(
                        "--ip-range {range} is not inside --subnet {subnet}"
                    )));
                }
                pool.range = Some(range);
            }
        }
        Ok(PoolGranted {
            pool_id: pool.id(),
            pool: pool
                .subnet
                .map_or_else(|| any.to_owned(), |s| s.to_string()),
            // Docker then asks for no gateway address: containers route via 169.254.1.1.
            data: BTreeMap::from([(GATEWAY_REQUEST.to_owned(), any.to_owned())]),
        })
    }

    fn request_address(&self, req: &RequestAddress) -> Result<AddressGranted, Error> {
        let pool = DockerPool::parse(&req.pool_id)?;
        let gateway = req
            .options
            .as_ref()
            .and_then(|o| o.get("RequestAddressType"))
            .is_some_and(|t| t == GATEWAY_REQUEST);
        let asked = if req.address.is_empty() {
            None
        } else {
            let ip: IpAddr = req
                .address
                .parse()
                .map_err(|e| Error::Refused(format!("address {:?}: {e}", req.address)))?;
            // An address asked for may lie outside --ip-range (which only bounds what is
            // handed out unasked), not outside the subnet.
            if let Some(n) = pool.subnet.filter(|n| !n.contains(&ip)) {
                return Err(Error::Refused(format!(
                    "address {ip} is not in the network's subnet {n}"
                )));
            }
            Some(ip)
        };
        if gateway {
            // `--gateway` is Docker's record only: Calico containers route via 169.254.1.1,
            // so nothing is taken from the pool for it.
            let Some(ip) = asked else {
                return Err(Error::Refused(
                    "calico-ipam hands out no gateway addresses (containers route via 169.254.1.1)"
                        .into(),
                ));
            };
            let len = pool.subnet.map_or(host_len(&ip), |s| s.prefix_len());
            return Ok(AddressGranted {
                address: format!("{ip}/{len}"),
                data: BTreeMap::new(),
            });
        }
        let ipam = Ipam::new(self.ds.as_ref());
        let handle = format!("{HANDLE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let attrs = BTreeMap::from([
            ("node".to_owned(), self.cfg.node.clone()),
            ("dockerPool".to_owned(), pool.id()),
        ]);
        let doing = |what: String| {
            move |source: IpamError| Error::Ipam {
                doing: what,
                source,
            }
        };
        let ip = match asked {
            Some(ip) => {
                ipam.assign_ip(ip, &handle, attrs, &self.cfg.node)
                    .map_err(doing(format!("assigning {ip}")))?;
                ip
            }
            None => self.assign_any(&ipam, &pool, &handle, attrs)?,
        };
        Ok(AddressGranted {
            address: format!("{ip}/{}", host_len(&ip)),
            data: BTreeMap::new(),
        })
    }

    /// An address from the pool: Calico IPAM's choice within a whole Calico pool (or any
    /// pool), else the first free one of the range.
    fn assign_any(
        &self,
        ipam: &Ipam<'_>,
        pool: &DockerPool,
        handle: &str,
        attrs: BTreeMap<String, String>,
    ) -> Result<IpAddr, Error> {
        let pools =
            calico_ipam::pools::list_pools(self.ds.as_ref()).map_err(|source| Error::Ipam {
                doing: "listing Calico IPPools".into(),
                source,
            })?;
        let whole = match pool.narrowest() {
            None => Some(Vec::new()),
            Some(n) => pools
                .iter()
                .find(|p| p.net == n)
                .map(|p| vec![p.name.clone()]),
        };
        if let Some(names) = whole {
            let mut args = AssignArgs::new(handle, &self.cfg.node);
            args.attrs = attrs;
            if pool.v6 {
                (args.num_v4, args.num_v6, args.v6_pools) = (0, 1, names);
            } else {
                args.v4_pools = names;
            }
            let got = ipam.auto_assign(&args).map_err(|source| Error::Ipam {
                doing: format!("assigning an address from {}", pool.id()),
                source,
            })?;
            return got
                .ips()
                .into_iter()
                .next()
                .ok_or_else(|| Error::Refused(format!("no address left in {}", pool.id())));
        }
        let range = pool.narrowest().expect("a range when not a whole pool");
        for ip in range.hosts().take(MAX_RANGE_TRIES) {
            match ipam.assign_ip(ip, handle, attrs.clone(), &self.cfg.node) {
                Ok(_) => return Ok(ip),
                Err(IpamError::NotAssignable { .. }) => {}
                Err(source) => {
                    return Err(Error::Ipam {
                        doing: format!("assigning {ip}"),
                        source,
                    });
                }
            }
        }
        Err(Error::Refused(format!("no free address in {range}")))
    }

    /// Releases an address this plugin handed out for this pool; anything else (the
    /// `--gateway` address, which was never taken, or an address someone else holds now) is
    /// left alone.
    fn release_address(&self, req: &ReleaseAddress) -> Result<(), Error> {
        let ip: IpAddr = req
            .address
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|e| Error::Refused(format!("address {:?}: {e}", req.address)))?;
        self.release_ours(ip, Some(&req.pool_id))
    }

    /// Releases `ip` if this plugin handed it out (for pool `pool_id`, when given).
    pub(crate) fn release_ours(&self, ip: IpAddr, pool_id: Option<&str>) -> Result<(), Error> {
        let ipam = Ipam::new(self.ds.as_ref());
        let doing = |source| Error::Ipam {
            doing: format!("releasing {ip}"),
            source,
        };
        let Some((_, attr)) = ipam.get_allocation(ip).map_err(doing)? else {
            return Ok(());
        };
        let pool_matches =
            pool_id.is_none_or(|p| attr.secondary.get("dockerPool").map(String::as_str) == Some(p));
        match attr.handle_id.as_deref() {
            Some(h) if pool_matches && h.starts_with(HANDLE_PREFIX) => {
                ipam.release_ip_if_held_by(ip, Some(h)).map_err(doing)?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_ids_round_trip() {
        for id in [
            POOL_ID_V4,
            POOL_ID_V6,
            "10.1.0.0/16",
            "10.2.0.0/24 10.2.0.128/25",
            "fd00::/64 fd00::/120",
        ] {
            assert_eq!(DockerPool::parse(id).unwrap().id(), id);
        }
        assert!(DockerPool::parse("rcpool-10.1.0.0_16").is_err());
        assert!(DockerPool::parse("10.1.0.0/16 junk").is_err());
    }
}
