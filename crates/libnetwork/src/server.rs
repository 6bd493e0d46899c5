//! The plugin's sockets: HTTP/1.1 over a unix socket in Docker's plugin directory, one
//! thread per call (Docker issues calls concurrently; a call may wait on the Engine API).
//!
//! Docker sends no Content-Type and, for calls without a body, no Content-Length; errors go
//! back in the field each interface reads (`Err` for the network driver, `Error` for IPAM:
//! Docker ignores an IPAM `Err`).

use std::path::Path;
use std::sync::Arc;

use crate::protocol::Activate;
use crate::{Error, Plugin};

/// What Docker is told a socket implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// The network driver (`<dir>/calico.sock`).
    Network,
    /// The IPAM driver (`<dir>/calico-ipam.sock`).
    Ipam,
}

/// The answer Docker reads: the call's JSON, or its error in the interface's error field.
pub fn respond(plugin: &Arc<Plugin>, driver: Driver, call: &str, body: &[u8]) -> serde_json::Value {
    let call = call.trim_start_matches('/');
    if call == "Plugin.Activate" {
        let implements = match driver {
            Driver::Network => vec!["NetworkDriver"],
            Driver::Ipam => vec!["IpamDriver"],
        };
        return serde_json::to_value(Activate { implements }).unwrap_or_default();
    }
    match plugin.handle(call, body) {
        Ok(v) => v,
        Err(e) => {
            let field = if call.starts_with("IpamDriver.") {
                "Error"
            } else {
                "Err"
            };
            tracing::warn!(target: "calico-libnetwork-plugin", "{call}: {e}");
            serde_json::json!({ field: e.to_string() })
        }
    }
}

/// Serves `driver` on the unix socket `path` (replacing a stale one) until the process ends.
pub fn serve(
    plugin: Arc<Plugin>,
    driver: Driver,
    path: &Path,
) -> Result<std::thread::JoinHandle<()>, Error> {
    let fail = |reason: String| Error::Listen {
        path: path.to_path_buf(),
        reason,
    };
    if path.exists() {
        std::fs::remove_file(path).map_err(|e| fail(format!("removing the old socket: {e}")))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    let server = tiny_http::Server::http_unix(path).map_err(|e| fail(e.to_string()))?;
    Ok(std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let plugin = plugin.clone();
            std::thread::spawn(move || {
                let mut body = Vec::new();
                let answer = match request.as_reader().read_to_end(&mut body) {
                    Ok(_) => respond(&plugin, driver, request.url(), &body),
                    Err(e) => {
                        serde_json::json!({"Err": format!("reading the request: {e}"), "Error": format!("reading the request: {e}")})
                    }
                };
                let header = tiny_http::Header::from_bytes(
                    &b"Content-Type"[..],
                    &b"application/vnd.docker.plugins.v1+json"[..],
                )
                .expect("a valid header");
                let response =
                    tiny_http::Response::from_string(answer.to_string()).with_header(header);
                if let Err(e) = request.respond(response) {
                    tracing::warn!(target: "calico-libnetwork-plugin", "answering Docker: {e}");
                }
            });
        }
    }))
}
