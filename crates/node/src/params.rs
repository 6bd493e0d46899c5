//! The DC/OS installer's Calico parameters.

use std::collections::BTreeMap;
use std::path::Path;

use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;

/// A parameter that cannot be used, named as in the DC/OS config.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or parsed.
    #[error("reading {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A parameter has a bad value.
    #[error("{source_name}: {param} = {value:?}: {reason}")]
    Invalid {
        /// Where it came from: the file's path, or `environment variable NAME`.
        source_name: String,
        /// The parameter (`calico_vxlan_port`).
        param: &'static str,
        /// Its value as given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

/// Networks DC/OS itself uses: the Calico CIDR must not overlap them.
pub const RESERVED: [(&str, &str); 2] = [
    ("44.128.0.0/20", "the DC/OS overlay's VXLAN (VTEP) subnet"),
    ("9.0.0.0/8", "the default dcos virtual network"),
];

/// The parameters, with DC/OS's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `calico_network_cidr`: the default IP pool.
    pub network_cidr: Ipv4Net,
    /// `calico_vxlan_enabled`: VXLAN between hosts (else IP-in-IP).
    pub vxlan_enabled: bool,
    /// `calico_vxlan_port`: UDP port.
    pub vxlan_port: u16,
    /// `calico_vxlan_vni`: VXLAN network identifier.
    pub vxlan_vni: u32,
    /// `calico_vxlan_mtu`: MTU of `vxlan.calico`.
    pub vxlan_mtu: u32,
    /// `calico_ipinip_mtu`: MTU of `tunl0`.
    pub ipinip_mtu: u32,
    /// `calico_ipinip_enabled` (calico-rs): with VXLAN off, IP-in-IP between
    /// hosts; false: no encapsulation, the pool's routes exchanged by BGP
    /// (BIRD programs them), for a flat underlay or a kernel without `ipip`.
    pub ipinip_enabled: bool,
    /// `calico_veth_mtu`: MTU of workload veths.
    pub veth_mtu: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            network_cidr: "172.29.0.0/16".parse().expect("valid default"),
            vxlan_enabled: true,
            vxlan_port: 4789,
            vxlan_vni: 4096,
            vxlan_mtu: 1450,
            ipinip_mtu: 1480,
            ipinip_enabled: true,
            veth_mtu: 1500,
        }
    }
}

/// The names, as in DC/OS's config.yaml; the environment uses them upper-cased.
const NAMES: [&str; 8] = [
    "calico_network_cidr",
    "calico_vxlan_enabled",
    "calico_vxlan_port",
    "calico_vxlan_vni",
    "calico_vxlan_mtu",
    "calico_ipinip_mtu",
    "calico_ipinip_enabled",
    "calico_veth_mtu",
];

/// A value in the file: DC/OS writes them as strings, YAML may give numbers or booleans.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(i64),
    Bool(bool),
}

impl Params {
    /// Reads `file` (a YAML map of the parameters; absent keys keep their
    /// defaults) and then the environment (`CALICO_VXLAN_PORT`, ...), which
    /// wins. `host_nets` are the host's own networks, which the CIDR must
    /// not overlap; `underlay_mtu` the MTU the tunnels run over.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        host_nets: &[IpNet],
        underlay_mtu: u32,
    ) -> Result<Params, Error> {
        let text = match file {
            Some(path) => Some((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|e| Error::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?,
            )),
            None => None,
        };
        Self::parse(
            text.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
            env,
            host_nets,
            underlay_mtu,
        )
    }

    /// [`Params::load`] from the file's (name, text) rather than its path.
    pub fn parse(
        file: Option<(&str, &str)>,
        env: &dyn Fn(&str) -> Option<String>,
        host_nets: &[IpNet],
        underlay_mtu: u32,
    ) -> Result<Params, Error> {
        let mut given: BTreeMap<&'static str, (String, String)> = BTreeMap::new();
        if let Some((shown, text)) = file {
            let shown = shown.to_owned();
            let map: BTreeMap<String, Scalar> =
                serde_saphyr::from_str(text).map_err(|e| Error::File {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            for (k, v) in map {
                let Some(name) = NAMES.iter().find(|n| **n == k) else {
                    // Other DC/OS parameters share the file.
                    continue;
                };
                let v = match v {
                    Scalar::Text(t) => t,
                    Scalar::Number(n) => n.to_string(),
                    Scalar::Bool(b) => b.to_string(),
                };
                given.insert(name, (v, shown.clone()));
            }
        }
        for name in NAMES {
            let var = name.to_uppercase();
            if let Some(v) = env(&var) {
                given.insert(name, (v, format!("environment variable {var}")));
            }
        }
        let mut p = Params::default();
        for (name, (value, source_name)) in given {
            let bad = |reason: String| Error::Invalid {
                source_name: source_name.clone(),
                param: name,
                value: value.clone(),
                reason,
            };
            let v = value.trim();
            let mtu = || -> Result<u32, Error> {
                let m: u32 = v.parse().map_err(|e| bad(format!("not an MTU: {e}")))?;
                if !(576..=9000).contains(&m) {
                    return Err(bad("an MTU must be between 576 and 9000".into()));
                }
                Ok(m)
            };
            match name {
                "calico_network_cidr" => {
                    p.network_cidr = v
                        .parse()
                        .map_err(|e| bad(format!("not an IPv4 CIDR: {e}")))?;
                }
                "calico_vxlan_enabled" => {
                    p.vxlan_enabled = match v {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("must be true or false".into())),
                    };
                }
                "calico_ipinip_enabled" => {
                    p.ipinip_enabled = match v {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("must be true or false".into())),
                    };
                }
                "calico_vxlan_port" => {
                    let port: u32 = v.parse().map_err(|e| bad(format!("not a port: {e}")))?;
                    p.vxlan_port = u16::try_from(port)
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad("a port must be between 1 and 65535".into()))?;
                }
                "calico_vxlan_vni" => {
                    let vni: u32 = v.parse().map_err(|e| bad(format!("not a VNI: {e}")))?;
                    if !(1..=0xff_ffff).contains(&vni) {
                        return Err(bad("a VNI must be between 1 and 16777215".into()));
                    }
                    p.vxlan_vni = vni;
                }
                "calico_vxlan_mtu" => {
                    p.vxlan_mtu = mtu()?;
                    if p.vxlan_mtu + 50 > underlay_mtu {
                        return Err(bad(format!(
                            "VXLAN adds 50 bytes: at most {} over an underlay MTU of {underlay_mtu}",
                            underlay_mtu.saturating_sub(50)
                        )));
                    }
                }
                "calico_ipinip_mtu" => {
                    p.ipinip_mtu = mtu()?;
                    if p.ipinip_mtu + 20 > underlay_mtu {
                        return Err(bad(format!(
                            "IP-in-IP adds 20 bytes: at most {} over an underlay MTU of {underlay_mtu}",
                            underlay_mtu.saturating_sub(20)
                        )));
                    }
                }
                "calico_veth_mtu" => p.veth_mtu = mtu()?,
                _ => {}
            }
        }
        let cidr = IpNet::V4(p.network_cidr);
        let overlap = |other: &IpNet| cidr.contains(other) || other.contains(&cidr);
        for (net, what) in RESERVED {
            let net: IpNet = net.parse().expect("valid constant");
            if overlap(&net) {
                return Err(Error::Invalid {
                    source_name: "configuration".into(),
                    param: "calico_network_cidr",
                    value: p.network_cidr.to_string(),
                    reason: format!("overlaps {net}, {what}"),
                });
            }
        }
        for net in host_nets {
            if overlap(&net.trunc()) {
                return Err(Error::Invalid {
                    source_name: "configuration".into(),
                    param: "calico_network_cidr",
                    value: p.network_cidr.to_string(),
                    reason: format!("overlaps this host's network {}", net.trunc()),
                });
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str, env: &[(&str, &str)]) -> Result<Params, Error> {
        let dir = tempfile_dir();
        let path = dir.join("dcos.yaml");
        std::fs::write(&path, file).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let host: Vec<IpNet> = vec!["172.30.0.1/24".parse().unwrap()];
        let r = Params::load(
            Some(&path),
            &|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            &host,
            1500,
        );
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "calico-node-params-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn defaults_file_and_environment() {
        assert_eq!(load("", &[]).unwrap(), Params::default());
        let p = load(
            "calico_network_cidr: 10.99.0.0/16\ncalico_vxlan_port: \"8472\"\ndcos_other: x\n",
            &[
                ("CALICO_VXLAN_ENABLED", "false"),
                ("CALICO_VXLAN_PORT", "4790"),
            ],
        )
        .unwrap();
        assert_eq!(p.network_cidr.to_string(), "10.99.0.0/16");
        assert_eq!(p.vxlan_port, 4790, "environment wins");
        assert!(!p.vxlan_enabled);
    }

    #[test]
    fn refusals_name_the_parameter() {
        let cases = [
            (
                "calico_network_cidr: 44.128.0.0/16\n",
                "calico_network_cidr",
                "overlaps 44.128.0.0/20, the DC/OS overlay's VXLAN (VTEP) subnet",
            ),
            (
                "calico_network_cidr: 9.1.0.0/16\n",
                "calico_network_cidr",
                "overlaps 9.0.0.0/8, the default dcos virtual network",
            ),
            (
                "calico_network_cidr: 172.30.0.0/16\n",
                "calico_network_cidr",
                "host's network 172.30.0.0/24",
            ),
            (
                "calico_network_cidr: nope\n",
                "calico_network_cidr",
                "not an IPv4 CIDR",
            ),
            (
                "calico_vxlan_port: 70000\n",
                "calico_vxlan_port",
                "between 1 and 65535",
            ),
            (
                "calico_vxlan_port: 0\n",
                "calico_vxlan_port",
                "between 1 and 65535",
            ),
            (
                "calico_vxlan_vni: 16777216\n",
                "calico_vxlan_vni",
                "16777215",
            ),
            (
                "calico_vxlan_mtu: 1480\n",
                "calico_vxlan_mtu",
                "at most 1450",
            ),
            (
                "calico_ipinip_mtu: 1490\n",
                "calico_ipinip_mtu",
                "at most 1480",
            ),
            (
                "calico_veth_mtu: 100\n",
                "calico_veth_mtu",
                "between 576 and 9000",
            ),
            (
                "calico_vxlan_enabled: maybe\n",
                "calico_vxlan_enabled",
                "true or false",
            ),
        ];
        for (file, param, reason) in cases {
            let e = load(file, &[]).unwrap_err().to_string();
            assert!(e.contains(param) && e.contains(reason), "{file:?}: {e}");
        }
        let e = load("calico_vxlan_mtu: [1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("dcos.yaml"), "{e}");
        // A refusal from the environment names the variable, as one from the file names it.
        let e = load("", &[("CALICO_VXLAN_PORT", "0")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("environment variable CALICO_VXLAN_PORT: calico_vxlan_port = \"0\""),
            "{e}"
        );
        let e = load("calico_vxlan_port: 0\n", &[]).unwrap_err().to_string();
        assert!(e.contains("dcos.yaml: calico_vxlan_port = \"0\""), "{e}");
    }
}
