//! Recording fakes: they keep an in-memory model of links, addresses, routes and neighbours,
//! record every call in order, and can be told to fail a named operation.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;

use crate::{
    Error, FdbEntry, Link, Neighbour, Netlink, Netns, Result, Route, Sysctl, VethSpec, VxlanSpec,
};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `create_veth`; `peer_in_netns` says whether the peer went to another namespace.
    CreateVeth {
        /// The request.
        spec: VethSpec,
        /// The peer was created in another namespace.
        peer_in_netns: bool,
    },
    /// `set_link_netns`.
    SetLinkNetns(String),
    /// `set_link_up`.
    SetLinkUp(String),
    /// `add_address`.
    AddAddress(String, IpAddr, u8),
    /// `add_route`.
    AddRoute(Route),
    /// `add_neighbour`.
    AddNeighbour(String, IpAddr, Vec<u8>),
    /// `delete_link`.
    DeleteLink(String),
    /// `create_vxlan`.
    CreateVxlan(VxlanSpec),
    /// `create_ipip`.
    CreateIpip(String, u32),
    /// `delete_route`.
    DeleteRoute(IpAddr, u8),
    /// `delete_neighbour`.
    DeleteNeighbour(String, IpAddr),
    /// `add_fdb`.
    AddFdb(String, FdbEntry),
    /// `delete_fdb`.
    DeleteFdb(String, FdbEntry),
}

/// An in-memory namespace that records requests.
#[derive(Debug, Default)]
pub struct FakeNetlink {
    /// Every mutating call, in order.
    pub calls: Vec<Call>,
    /// Links by name.
    pub links: BTreeMap<String, Link>,
    /// Addresses by link name.
    pub addrs: BTreeMap<String, Vec<(IpAddr, u8)>>,
    /// Routes.
    pub route_table: Vec<Route>,
    /// Neighbours.
    pub neighs: Vec<Neighbour>,
    /// Forwarding entries by link name.
    pub fdbs: BTreeMap<String, Vec<FdbEntry>>,
    /// Operation names (`create_veth`, `add_route`, ...) that fail with EPERM.
    pub fail: Vec<&'static str>,
    next_index: u32,
}

impl FakeNetlink {
    /// An empty namespace with `lo`.
    pub fn new() -> Self {
        let mut f = Self {
            next_index: 1,
            ..Self::default()
        };
        f.insert_link("lo", 65536, Vec::new());
        f
    }

    /// Add a link directly (as if created elsewhere); returns its index.
    pub fn insert_link(&mut self, name: &str, mtu: u32, mac: Vec<u8>) -> u32 {
        self.next_index += 1;
        let index = self.next_index;
        self.links.insert(
            name.to_owned(),
            Link {
                index,
                name: name.to_owned(),
                mtu,
                mac,
                up: false,
            },
        );
        index
    }

    fn check(&self, op: &'static str) -> Result<()> {
        if self.fail.contains(&op) {
            return Err(Error::Kernel {
                doing: format!("fake {op}"),
                source: std::io::Error::from_raw_os_error(1),
            });
        }
        Ok(())
    }

    fn index(&self, name: &str, op: &str) -> Result<u32> {
        self.links
            .get(name)
            .map(|l| l.index)
            .ok_or_else(|| Error::LinkNotFound {
                doing: format!("fake {op}"),
                name: name.to_owned(),
            })
    }
}

impl Netlink for FakeNetlink {
    fn create_veth(&mut self, spec: &VethSpec, peer_netns: Option<BorrowedFd<'_>>) -> Result<()> {
        self.calls.push(Call::CreateVeth {
            spec: spec.clone(),
            peer_in_netns: peer_netns.is_some(),
        });
        self.check("create_veth")?;
        if self.links.contains_key(&spec.name) {
            return Err(Error::Kernel {
                doing: format!("fake create_veth {}", spec.name),
                source: std::io::Error::from_raw_os_error(17),
            });
        }
        let mac = spec
            .mac
            .map(|m| m.to_vec())
            .unwrap_or_else(|| vec![2, 0, 0, 0, 0, 1]);
        self.insert_link(&spec.name, spec.mtu, mac);
        if peer_netns.is_none() {
            self.insert_link(&spec.peer_name, spec.mtu, vec![2, 0, 0, 0, 0, 2]);
        }
        Ok(())
    }

    fn set_link_netns(&mut self, name: &str, _netns: BorrowedFd<'_>) -> Result<()> {
        self.calls.push(Call::SetLinkNetns(name.to_owned()));
        self.check("set_link_netns")?;
        self.index(name, "set_link_netns")?;
        self.links.remove(name);
        Ok(())
    }

    fn set_link_up(&mut self, name: &str) -> Result<()> {
        self.calls.push(Call::SetLinkUp(name.to_owned()));
        self.check("set_link_up")?;
        self.index(name, "set_link_up")?;
        if let Some(l) = self.links.get_mut(name) {
            l.up = true;
        }
        Ok(())
    }

    fn add_address(&mut self, link: &str, addr: IpAddr, prefix_len: u8) -> Result<()> {
        self.calls
            .push(Call::AddAddress(link.to_owned(), addr, prefix_len));
        self.check("add_address")?;
        self.index(link, "add_address")?;
        self.addrs
            .entry(link.to_owned())
            .or_default()
            .push((addr, prefix_len));
        Ok(())
    }

    fn add_route(&mut self, route: &Route) -> Result<()> {
        self.calls.push(Call::AddRoute(route.clone()));
        self.check("add_route")?;
        let oif = self.index(&route.link, "add_route")?;
        let mut r = route.clone();
        r.oif = oif;
        self.route_table
            .retain(|x| !(x.dst == r.dst && x.prefix_len == r.prefix_len));
        self.route_table.push(r);
        Ok(())
    }

    fn add_neighbour(&mut self, link: &str, ip: IpAddr, mac: &[u8]) -> Result<()> {
        self.calls
            .push(Call::AddNeighbour(link.to_owned(), ip, mac.to_vec()));
        self.check("add_neighbour")?;
        let ifindex = self.index(link, "add_neighbour")?;
        self.neighs
            .retain(|n| !(n.ifindex == ifindex && n.ip == ip));
        self.neighs.push(Neighbour {
            ifindex,
            ip,
            mac: mac.to_vec(),
            permanent: true,
        });
        Ok(())
    }

    fn delete_link(&mut self, name: &str) -> Result<bool> {
        self.calls.push(Call::DeleteLink(name.to_owned()));
        self.check("delete_link")?;
        match self.links.remove(name) {
            Some(l) => {
                self.route_table.retain(|r| r.oif != l.index);
                self.neighs.retain(|n| n.ifindex != l.index);
                self.addrs.remove(name);
                self.fdbs.remove(name);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn link(&mut self, name: &str) -> Result<Option<Link>> {
        Ok(self.links.get(name).cloned())
    }

    fn addresses(&mut self, link: &str) -> Result<Vec<(IpAddr, u8)>> {
        self.index(link, "addresses")?;
        Ok(self.addrs.get(link).cloned().unwrap_or_default())
    }

    fn routes(&mut self) -> Result<Vec<Route>> {
        Ok(self.route_table.clone())
    }

    fn neighbours(&mut self, link: &str) -> Result<Vec<Neighbour>> {
        let index = self.index(link, "neighbours")?;
        Ok(self
            .neighs
            .iter()
            .filter(|n| n.ifindex == index)
            .cloned()
            .collect())
    }

    fn links(&mut self) -> Result<Vec<Link>> {
        Ok(self.links.values().cloned().collect())
    }

    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        self.calls.push(Call::CreateVxlan(spec.clone()));
        self.check("create_vxlan")?;
        if self.links.contains_key(&spec.name) {
            return Err(Error::Kernel {
                doing: format!("fake create_vxlan {}", spec.name),
                source: std::io::Error::from_raw_os_error(17),
            });
        }
        self.insert_link(&spec.name, spec.mtu, spec.mac.to_vec());
        Ok(())
    }

    fn create_ipip(&mut self, name: &str, mtu: u32) -> Result<()> {
        self.calls.push(Call::CreateIpip(name.to_owned(), mtu));
        self.check("create_ipip")?;
        if self.links.contains_key(name) {
            return Err(Error::Kernel {
                doing: format!("fake create_ipip {name}"),
                source: std::io::Error::from_raw_os_error(17),
            });
        }
        self.insert_link(name, mtu, Vec::new());
        Ok(())
    }

    fn delete_route(&mut self, route: &Route) -> Result<bool> {
        self.calls
            .push(Call::DeleteRoute(route.dst, route.prefix_len));
        self.check("delete_route")?;
        let before = self.route_table.len();
        self.route_table
            .retain(|x| !(x.dst == route.dst && x.prefix_len == route.prefix_len));
        Ok(self.route_table.len() < before)
    }

    fn delete_neighbour(&mut self, link: &str, ip: IpAddr) -> Result<bool> {
        self.calls.push(Call::DeleteNeighbour(link.to_owned(), ip));
        self.check("delete_neighbour")?;
        let ifindex = self.index(link, "delete_neighbour")?;
        let before = self.neighs.len();
        self.neighs
            .retain(|n| !(n.ifindex == ifindex && n.ip == ip));
        Ok(self.neighs.len() < before)
    }

    fn add_fdb(&mut self, link: &str, entry: &FdbEntry) -> Result<()> {
        self.calls
            .push(Call::AddFdb(link.to_owned(), entry.clone()));
        self.check("add_fdb")?;
        self.index(link, "add_fdb")?;
        let entries = self.fdbs.entry(link.to_owned()).or_default();
        entries.retain(|e| e.mac != entry.mac);
        entries.push(entry.clone());
        Ok(())
    }

    fn fdb(&mut self, link: &str) -> Result<Vec<FdbEntry>> {
        self.index(link, "fdb")?;
        Ok(self.fdbs.get(link).cloned().unwrap_or_default())
    }

    fn delete_fdb(&mut self, link: &str, entry: &FdbEntry) -> Result<bool> {
        self.calls
            .push(Call::DeleteFdb(link.to_owned(), entry.clone()));
        self.check("delete_fdb")?;
        let entries = self.fdbs.entry(link.to_owned()).or_default();
        let before = entries.len();
        entries.retain(|e| e != entry);
        Ok(entries.len() < before)
    }
}

/// A namespace that runs closures on the calling thread.
#[derive(Debug)]
pub struct FakeNetns {
    file: std::fs::File,
}

impl FakeNetns {
    /// A fake namespace (its descriptor is `/dev/null`).
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            file: std::fs::File::open("/dev/null")?,
        })
    }
}

impl Netns for FakeNetns {
    fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.file.as_fd()
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        Ok(f())
    }
}

/// In-memory sysctls.
#[derive(Debug, Default)]
pub struct FakeSysctl {
    /// Values by key.
    pub values: BTreeMap<String, String>,
}

impl Sysctl for FakeSysctl {
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        self.values.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    fn get(&mut self, key: &str) -> Result<String> {
        self.values.get(key).cloned().ok_or_else(|| Error::Kernel {
            doing: format!("reading {key}"),
            source: std::io::Error::from_raw_os_error(2),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_models_veth_routes_and_delete() {
        let mut nl = FakeNetlink::new();
        let spec = VethSpec {
            name: "cali1".into(),
            peer_name: "eth0".into(),
            mtu: 1450,
            mac: Some(crate::CALICO_HOST_MAC),
        };
        nl.create_veth(&spec, None).unwrap();
        assert!(nl.create_veth(&spec, None).unwrap_err().is_exists());
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        nl.add_route(&Route::direct(ip, 32, "cali1")).unwrap();
        assert_eq!(nl.routes().unwrap().len(), 1);
        assert_eq!(nl.link("cali1").unwrap().unwrap().mtu, 1450);
        assert!(nl.delete_link("cali1").unwrap());
        assert!(nl.routes().unwrap().is_empty());
        assert!(!nl.delete_link("cali1").unwrap());
        nl.fail.push("add_route");
        assert!(nl.add_route(&Route::direct(ip, 32, "eth0")).is_err());
        assert_eq!(nl.calls.len(), 6);
    }
}

/// A fake the test keeps a handle on after the code under test owns it.
#[derive(Debug, Default)]
pub struct Shared<T>(pub std::sync::Arc<std::sync::Mutex<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Shared<T> {
    /// The fake, locked.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<T: Netlink> Netlink for Shared<T> {
    fn create_veth(&mut self, spec: &VethSpec, peer_netns: Option<BorrowedFd<'_>>) -> Result<()> {
        self.lock().create_veth(spec, peer_netns)
    }
    fn set_link_netns(&mut self, name: &str, netns: BorrowedFd<'_>) -> Result<()> {
        self.lock().set_link_netns(name, netns)
    }
    fn set_link_up(&mut self, name: &str) -> Result<()> {
        self.lock().set_link_up(name)
    }
    fn add_address(&mut self, link: &str, addr: IpAddr, prefix_len: u8) -> Result<()> {
        self.lock().add_address(link, addr, prefix_len)
    }
    fn add_route(&mut self, route: &Route) -> Result<()> {
        self.lock().add_route(route)
    }
    fn add_neighbour(&mut self, link: &str, ip: IpAddr, mac: &[u8]) -> Result<()> {
        self.lock().add_neighbour(link, ip, mac)
    }
    fn delete_link(&mut self, name: &str) -> Result<bool> {
        self.lock().delete_link(name)
    }
    fn link(&mut self, name: &str) -> Result<Option<Link>> {
        self.lock().link(name)
    }
    fn addresses(&mut self, link: &str) -> Result<Vec<(IpAddr, u8)>> {
        self.lock().addresses(link)
    }
    fn routes(&mut self) -> Result<Vec<Route>> {
        self.lock().routes()
    }
    fn neighbours(&mut self, link: &str) -> Result<Vec<Neighbour>> {
        self.lock().neighbours(link)
    }
    fn links(&mut self) -> Result<Vec<Link>> {
        self.lock().links()
    }
    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        self.lock().create_vxlan(spec)
    }
    fn create_ipip(&mut self, name: &str, mtu: u32) -> Result<()> {
        self.lock().create_ipip(name, mtu)
    }
    fn delete_route(&mut self, route: &Route) -> Result<bool> {
        self.lock().delete_route(route)
    }
    fn delete_neighbour(&mut self, link: &str, ip: IpAddr) -> Result<bool> {
        self.lock().delete_neighbour(link, ip)
    }
    fn add_fdb(&mut self, link: &str, entry: &FdbEntry) -> Result<()> {
        self.lock().add_fdb(link, entry)
    }
    fn fdb(&mut self, link: &str) -> Result<Vec<FdbEntry>> {
        self.lock().fdb(link)
    }
    fn delete_fdb(&mut self, link: &str, entry: &FdbEntry) -> Result<bool> {
        self.lock().delete_fdb(link, entry)
    }
}

impl<T: Sysctl> Sysctl for Shared<T> {
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        self.lock().set(key, value)
    }
    fn get(&mut self, key: &str) -> Result<String> {
        self.lock().get(key)
    }
}
