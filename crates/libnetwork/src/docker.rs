//! What the plugin reads from the Docker Engine API: a network's name and options (Docker
//! does not send them to the driver), and the labels of the container behind an endpoint.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::Error;

/// The Engine API version asked for (Docker 20.10 speaks 1.41; newer ones still serve it).
const API_VERSION: &str = "v1.41";

/// A Docker network as the plugin needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Its name.
    pub name: String,
    /// Its driver options (`-o k=v`).
    pub options: BTreeMap<String, String>,
}

/// The Engine API calls the plugin makes.
pub trait DockerApi: Send + Sync {
    /// The network `id`.
    fn network(&self, id: &str) -> Result<NetworkInfo, Error>;
    /// The endpoint IDs Docker lists on network `network_id` (None: no such network).
    fn network_endpoints(&self, network_id: &str) -> Result<Option<Vec<String>>, Error>;
    /// The labels of the container whose endpoint `endpoint_id` is on network `network_id`;
    /// None while Docker does not list it yet.
    fn endpoint_labels(
        &self,
        network_id: &str,
        endpoint_id: &str,
    ) -> Result<Option<BTreeMap<String, String>>, Error>;
}

/// The Engine API on a unix socket.
#[derive(Debug, Clone)]
pub struct DockerSocket {
    path: PathBuf,
}

impl DockerSocket {
    /// The API at `path` (usually `/var/run/docker.sock`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DockerSocket { path: path.into() }
    }

    /// GET `path` as JSON; None for 404.
    fn get(&self, path: &str) -> Result<Option<Value>, Error> {
        match self.request("GET", path, None)? {
            (404, _) => Ok(None),
            (200, v) => Ok(Some(v)),
            (status, v) => Err(Error::Docker {
                doing: format!("GET {path} on {}", self.path.display()),
                reason: format!("status {status}: {v}"),
            }),
        }
    }

    /// One call: (status, JSON body or null). HTTP/1.0, so the body ends with the
    /// connection and is never chunked: the few calls needed do not justify an HTTP client
    /// dependency.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Error> {
        let err = |reason: String| Error::Docker {
            doing: format!("{method} {path} on {}", self.path.display()),
            reason,
        };
        let mut s = UnixStream::connect(&self.path).map_err(|e| err(e.to_string()))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| err(e.to_string()))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            s,
            "{method} /{API_VERSION}{path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| err(e.to_string()))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| err("no HTTP header in the answer".into()))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| err(format!("bad status line {:?}", head.lines().next())))?;
        let value = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).map_err(|e| err(format!("reading the JSON answer: {e}")))?
        };
        Ok((status, value))
    }

    /// Creates the Docker network `name` on the Calico drivers (`driver`, `driver-ipam`)
    /// with `subnet` and `profile`, unless a network of that name exists. Returns whether
    /// it created it.
    pub fn ensure_network(
        &self,
        name: &str,
        driver: &str,
        subnet: &ipnet::IpNet,
        profile: &str,
    ) -> Result<bool, Error> {
        if self.get(&format!("/networks/{name}"))?.is_some() {
            return Ok(false);
        }
        let spec = serde_json::json!({
            "Name": name,
            "Driver": driver,
            "CheckDuplicate": true,
            "IPAM": {"Driver": format!("{driver}-ipam"), "Config": [{"Subnet": subnet.to_string()}]},
            "Options": {crate::PROFILE_OPTION: profile},
        });
        match self.request("POST", "/networks/create", Some(&spec))? {
            (201 | 200, _) => Ok(true),
            // Created meanwhile by someone else.
            (409, _) => Ok(false),
            (status, v) => Err(Error::Docker {
                doing: format!("creating Docker network {name}"),
                reason: format!(
                    "status {status}: {}",
                    v["message"].as_str().unwrap_or_default()
                ),
            }),
        }
    }
}

impl DockerSocket {
    /// (container ID, endpoint ID) of every container Docker lists on network `id` (None:
    /// no such network).
    fn attachments(&self, id: &str) -> Result<Option<Vec<(String, String)>>, Error> {
        Ok(self.get(&format!("/networks/{id}"))?.map(|net| {
            net["Containers"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(c, v)| Some((c.clone(), v["EndpointID"].as_str()?.to_owned())))
                .collect()
        }))
    }
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect()
}

impl DockerApi for DockerSocket {
    fn network(&self, id: &str) -> Result<NetworkInfo, Error> {
        let v = self
            .get(&format!("/networks/{id}"))?
            .ok_or_else(|| Error::Docker {
                doing: format!("reading network {id}"),
                reason: "Docker does not know it".into(),
            })?;
        Ok(NetworkInfo {
            name: v["Name"].as_str().unwrap_or_default().to_owned(),
            options: string_map(&v["Options"]),
        })
    }

    fn network_endpoints(&self, network_id: &str) -> Result<Option<Vec<String>>, Error> {
        Ok(self
            .attachments(network_id)?
            .map(|a| a.into_iter().map(|(_, endpoint)| endpoint).collect()))
    }

    fn endpoint_labels(
        &self,
        network_id: &str,
        endpoint_id: &str,
    ) -> Result<Option<BTreeMap<String, String>>, Error> {
        let container = self
            .attachments(network_id)?
            .into_iter()
            .flatten()
            .find_map(|(c, e)| (e == endpoint_id).then_some(c));
        let Some(container) = container else {
            return Ok(None);
        };
        Ok(self
            .get(&format!("/containers/{container}/json"))?
            .map(|c| string_map(&c["Config"]["Labels"])))
    }
}
