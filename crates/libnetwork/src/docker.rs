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

    /// GET `path` as JSON; None for 404. HTTP/1.0, so the body ends with the connection and
    /// is never chunked: the few calls needed do not justify an HTTP client dependency.
    fn get(&self, path: &str) -> Result<Option<Value>, Error> {
        let err = |reason: String| Error::Docker {
            doing: format!("GET {path} on {}", self.path.display()),
            reason,
        };
        let mut s = UnixStream::connect(&self.path).map_err(|e| err(e.to_string()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| err(e.to_string()))?;
        write!(
            s,
            "GET /{API_VERSION}{path} HTTP/1.0\r\nHost: docker\r\n\r\n"
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
        match status {
            200 => serde_json::from_str(body)
                .map(Some)
                .map_err(|e| err(format!("reading the JSON answer: {e}"))),
            404 => Ok(None),
            _ => Err(err(format!("status {status}: {}", body.trim()))),
        }
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

    fn endpoint_labels(
        &self,
        network_id: &str,
        endpoint_id: &str,
    ) -> Result<Option<BTreeMap<String, String>>, Error> {
        let Some(net) = self.get(&format!("/networks/{network_id}"))? else {
            return Ok(None);
        };
        let container = net["Containers"].as_object().and_then(|m| {
            m.iter()
                .find(|(_, c)| c["EndpointID"].as_str() == Some(endpoint_id))
                .map(|(id, _)| id.clone())
        });
        let Some(container) = container else {
            return Ok(None);
        };
        Ok(self
            .get(&format!("/containers/{container}/json"))?
            .map(|c| string_map(&c["Config"]["Labels"])))
    }
}
