//! The Docker Engine side of Calico: a libnetwork remote network driver (`calico`) and IPAM
//! driver (`calico-ipam`) that keep all their state in the Calico datastore, so they need
//! neither Docker's cluster store nor a lock service, and survive restarts of the plugin and
//! of dockerd (which replays nothing).
//!
//! - IPAM: a Docker pool is a Calico IPPool or a range inside one (`--subnet`, `--ip-range`);
//!   addresses come from Calico IPAM, `--ip` included; the pool ID carries the CIDRs, so a
//!   restarted plugin needs nothing else.
//! - Network: each Docker network names a Calico profile (`-o org.projectcalico.profile=P`,
//!   default: the network's name). Each endpoint is a WorkloadEndpoint (orchestrator
//!   `libnetwork`), its host side a `cali` veth wired as the CNI plugin wires it
//!   ([`calico_netlink::workload`]).
//! - Labels: Docker does not give the driver the container's labels, so the endpoint is
//!   written with [`calico_api::v3::LABELS_PENDING_ANNOTATION`] (felix drops its traffic)
//!   until the container's `org.projectcalico.label.<key>=<value>` labels are read from the
//!   Engine API and written in its place.

pub mod docker;
mod ipam;
mod network;
pub mod protocol;
pub mod server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use calico_datastore::Datastore;
use calico_netlink::{Netlink, Sysctl};

pub use docker::{DockerApi, DockerSocket, NetworkInfo};
pub use ipam::{POOL_ID_V4, POOL_ID_V6};
pub use network::{LABEL_PREFIX, PROFILE_OPTION};

/// What goes wrong, as the user sees it in Docker's error message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is not what the protocol says (bad JSON, a missing field).
    #[error("reading the {call} request: {reason}")]
    BadRequest {
        /// The call.
        call: String,
        /// What is wrong.
        reason: String,
    },
    /// A setting or value the plugin refuses (named, with why).
    #[error("{0}")]
    Refused(String),
    /// The datastore failed.
    #[error("{doing}: {source}")]
    Datastore {
        /// What was being done.
        doing: String,
        /// The datastore's error.
        source: calico_datastore::DatastoreError,
    },
    /// Calico IPAM refused or failed.
    #[error("{doing}: {source}")]
    Ipam {
        /// What was being done.
        doing: String,
        /// IPAM's error.
        source: calico_ipam::IpamError,
    },
    /// The kernel refused.
    #[error("{doing}: {source}")]
    Kernel {
        /// What was being done.
        doing: String,
        /// The kernel's error.
        source: calico_netlink::Error,
    },
    /// A plugin socket could not be set up.
    #[error("listening on {path}: {reason}")]
    Listen {
        /// The socket.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The Docker Engine API failed.
    #[error("{doing}: {reason}")]
    Docker {
        /// What was being done.
        doing: String,
        /// Why.
        reason: String,
    },
}

/// The host's kernel as the plugin uses it.
pub struct Host {
    /// Links and routes of the host namespace.
    pub netlink: Box<dyn Netlink + Send>,
    /// `/proc/sys`.
    pub sysctl: Box<dyn Sysctl + Send>,
}

/// Settings of a plugin.
#[derive(Debug, Clone)]
pub struct Config {
    /// This host's Calico node name.
    pub node: String,
    /// MTU of the veths.
    pub mtu: u32,
    /// How long to wait for Docker to list a container's labels before giving up (its
    /// endpoint then stays without traffic).
    pub label_wait: Duration,
}

/// The plugin: both drivers' handlers.
pub struct Plugin {
    ds: Arc<dyn Datastore>,
    docker: Arc<dyn DockerApi>,
    host: Mutex<Host>,
    cfg: Config,
}

impl Plugin {
    /// A plugin on `ds`, reading Docker through `docker`, wiring through `host`.
    pub fn new(
        cfg: Config,
        ds: Arc<dyn Datastore>,
        docker: Arc<dyn DockerApi>,
        host: Host,
    ) -> Arc<Plugin> {
        Arc::new(Plugin {
            ds,
            docker,
            host: Mutex::new(host),
            cfg,
        })
    }

    /// Answers one call (`/<Interface>.<Method>` and its body) with its JSON answer; an error
    /// is for the caller to put in the field its interface reads.
    pub fn handle(self: &Arc<Self>, call: &str, body: &[u8]) -> Result<serde_json::Value, Error> {
        let call = call.trim_start_matches('/');
        match call.split_once('.').map_or(call, |(iface, _)| iface) {
            "IpamDriver" => self.ipam_call(call, body),
            _ => self.network_call(call, body),
        }
    }
}

/// Decodes a request body (an empty body is an empty object).
fn decode<T: serde::de::DeserializeOwned + Default>(call: &str, body: &[u8]) -> Result<T, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| Error::BadRequest {
        call: call.to_owned(),
        reason: e.to_string(),
    })
}

fn answer<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(v).map_err(|e| Error::Refused(format!("encoding the answer: {e}")))
}
