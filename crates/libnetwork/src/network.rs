//! The network driver (`calico`): networks name a Calico profile, endpoints are
//! WorkloadEndpoints, Join wires the host end of a `cali` veth.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use calico_api::Kind;
use calico_api::names::{ORCHESTRATOR_DOCKER, WorkloadEndpointIdentifiers};
use calico_api::v3::{self, LABELS_PENDING_ANNOTATION, NAMESPACE_LABEL, ORCHESTRATOR_LABEL};
use calico_datastore::{DatastoreError, Key};
use calico_netlink::workload::{configure_host_end, host_iface_name};
use calico_netlink::{CALICO_GATEWAY_V4, CALICO_GATEWAY_V6, CALICO_HOST_MAC, VethSpec};

use crate::protocol::{
    CreateEndpoint, CreateNetwork, EndpointRef, InterfaceName, Join, Joined, NetworkCapabilities,
    NetworkRef, OperInfo, StaticRoute,
};
use crate::{Error, Plugin, answer, decode};

/// The `-o` option naming a network's Calico profile (default: the network's name).
pub const PROFILE_OPTION: &str = "org.projectcalico.profile";
/// Container labels with this prefix become the endpoint's labels, without it.
pub const LABEL_PREFIX: &str = "org.projectcalico.label.";
/// Where Docker puts a network's `-o` options.
const GENERIC_OPTIONS: &str = "com.docker.network.generic";
/// Docker's IPv6 switch.
const ENABLE_IPV6: &str = "com.docker.network.enable_ipv6";
/// The namespace of Docker containers' endpoints.
const NAMESPACE: &str = "default";
/// The name prefix of the container end before Docker moves and renames it.
const TEMP_PREFIX: &str = "tmp";
/// Annotation recording an endpoint's Docker network (to find its container again after a
/// restart of the plugin).
pub const NETWORK_ANNOTATION: &str = "calico-rs/docker-network";
/// Annotation recording the container namespace (Docker's sandbox) an endpoint joined: a
/// second Calico network in the same container must not add the gateway route again
/// (Docker fails on "file exists"), and the sandbox itself may be in dockerd's private
/// mount namespace, out of the plugin's sight.
pub const SANDBOX_ANNOTATION: &str = "calico-rs/docker-sandbox";

impl Plugin {
    pub(crate) fn network_call(
        self: &Arc<Self>,
        call: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, Error> {
        let empty = || Ok(serde_json::json!({}));
        match call {
            "NetworkDriver.GetCapabilities" => answer(&NetworkCapabilities {
                scope: "local",
                connectivity_scope: "global",
            }),
            "NetworkDriver.CreateNetwork" => {
                self.create_network(&decode(call, body)?)?;
                empty()
            }
            "NetworkDriver.DeleteNetwork" => {
                let _: NetworkRef = decode(call, body)?;
                empty()
            }
            "NetworkDriver.CreateEndpoint" => {
                self.create_endpoint(&decode(call, body)?)?;
                Ok(serde_json::json!({"Interface": {}}))
            }
            "NetworkDriver.DeleteEndpoint" => {
                self.delete_endpoint(&decode(call, body)?)?;
                empty()
            }
            "NetworkDriver.Join" => answer(&self.join(&decode(call, body)?)?),
            "NetworkDriver.Leave" => {
                self.leave(&decode(call, body)?)?;
                empty()
            }
            "NetworkDriver.EndpointOperInfo" => {
                let r: EndpointRef = decode(call, body)?;
                answer(&OperInfo {
                    value: BTreeMap::from([(
                        "hostVeth".to_owned(),
                        host_iface_name(&r.endpoint_id),
                    )]),
                })
            }
            "NetworkDriver.ProgramExternalConnectivity"
            | "NetworkDriver.RevokeExternalConnectivity"
            | "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete" => empty(),
            _ => Err(Error::Refused(format!(
                "the calico driver has no call {call}"
            ))),
        }
    }

    /// Checks what the network asks for: our IPAM's pools only, known options only, an
    /// existing profile when one is named.
    fn create_network(&self, req: &CreateNetwork) -> Result<(), Error> {
        for (k, v) in &req.options {
            match (k.as_str(), v) {
                (ENABLE_IPV6, serde_json::Value::Bool(_)) => {}
                (GENERIC_OPTIONS, serde_json::Value::Object(opts)) => {
                    for (name, value) in opts {
                        if name != PROFILE_OPTION {
                            return Err(Error::Refused(format!(
                                "the calico driver does not support -o {name}={}; its one option is {PROFILE_OPTION}",
                                value
                                    .as_str()
                                    .map_or_else(|| value.to_string(), str::to_owned)
                            )));
                        }
                        let Some(profile) = value.as_str() else {
                            return Err(Error::Refused(format!(
                                "-o {PROFILE_OPTION}: expected a profile name, got {value}"
                            )));
                        };
                        self.require_profile(profile)?;
                    }
                }
                // Docker's own bookkeeping options (internal, attachable...) that change
                // nothing a Calico network does are refused rather than ignored.
                _ => {
                    return Err(Error::Refused(format!(
                        "the calico driver does not support the network option {k}={v}"
                    )));
                }
            }
        }
        for data in req.ipv4_data.iter().chain(&req.ipv6_data) {
            if !data.address_space.starts_with("Calico") {
                return Err(Error::Refused(format!(
                    "the calico driver needs the calico-ipam IPAM driver (--ipam-driver calico-ipam); got address space {:?}",
                    data.address_space
                )));
            }
        }
        Ok(())
    }

    fn require_profile(&self, name: &str) -> Result<(), Error> {
        let found = self
            .ds
            .get(&Key::global(Kind::Profile, name))
            .map_err(|source| Error::Datastore {
                doing: format!("reading profile {name}"),
                source,
            })?;
        if found.is_none() {
            return Err(Error::Refused(format!(
                "Calico profile {name:?} does not exist; create it first (calicoctl apply)"
            )));
        }
        Ok(())
    }

    /// The WorkloadEndpoint key of a Docker endpoint on this node.
    fn endpoint_key(&self, endpoint_id: &str) -> Result<Key, Error> {
        let name = WorkloadEndpointIdentifiers {
            node: self.cfg.node.clone(),
            orchestrator: ORCHESTRATOR_DOCKER.to_owned(),
            endpoint: endpoint_id.to_owned(),
            workload: ORCHESTRATOR_DOCKER.to_owned(),
            ..Default::default()
        }
        .calculate_name()
        .map_err(|e| Error::Refused(format!("naming endpoint {endpoint_id}: {e}")))?;
        Ok(Key::namespaced(Kind::WorkloadEndpoint, NAMESPACE, name))
    }

    /// Writes the endpoint, its labels pending (no traffic until they are known).
    fn create_endpoint(&self, req: &CreateEndpoint) -> Result<(), Error> {
        let iface = req.interface.clone().unwrap_or_default();
        let mut nets = Vec::new();
        for a in [&iface.address, &iface.address_ipv6] {
            if a.is_empty() {
                continue;
            }
            let ip: IpAddr = a
                .split('/')
                .next()
                .unwrap_or_default()
                .parse()
                .map_err(|e| Error::Refused(format!("endpoint address {a:?}: {e}")))?;
            nets.push(format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 }));
        }
        if nets.is_empty() {
            return Err(Error::Refused(
                "the endpoint has no address: the network must use --ipam-driver calico-ipam"
                    .into(),
            ));
        }
        let network = self.docker.network(&req.network_id)?;
        let profile = network
            .options
            .get(PROFILE_OPTION)
            .cloned()
            .unwrap_or_else(|| network.name.clone());
        self.require_profile(&profile)?;
        let key = self.endpoint_key(&req.endpoint_id)?;
        let mut wep = v3::WorkloadEndpoint {
            api_version: "projectcalico.org/v3".to_owned(),
            kind: Kind::WorkloadEndpoint.as_str().to_owned(),
            ..Default::default()
        };
        wep.metadata.name.clone_from(&key.name);
        wep.metadata.namespace = NAMESPACE.to_owned();
        wep.metadata.labels = base_labels();
        wep.metadata
            .annotations
            .insert(LABELS_PENDING_ANNOTATION.to_owned(), "true".to_owned());
        wep.metadata
            .annotations
            .insert(NETWORK_ANNOTATION.to_owned(), req.network_id.clone());
        let s = &mut wep.spec;
        s.orchestrator = ORCHESTRATOR_DOCKER.to_owned();
        s.workload = ORCHESTRATOR_DOCKER.to_owned();
        s.node.clone_from(&self.cfg.node);
        s.endpoint.clone_from(&req.endpoint_id);
        s.interface_name = host_iface_name(&req.endpoint_id);
        s.profiles = vec![profile];
        s.ip_networks = nets;
        let value = serde_json::to_value(&wep)
            .map_err(|e| Error::Refused(format!("encoding the endpoint: {e}")))?;
        self.ds
            .write_batch(vec![calico_datastore::WriteOp::Upsert { key, value }])
            .map_err(|source| Error::Datastore {
                doing: format!("writing the endpoint of {}", req.endpoint_id),
                source,
            })?;
        Ok(())
    }

    fn delete_endpoint(&self, req: &EndpointRef) -> Result<(), Error> {
        let key = self.endpoint_key(&req.endpoint_id)?;
        match self.ds.delete(&key, None) {
            Ok(_) | Err(DatastoreError::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::Datastore {
                doing: format!("deleting endpoint {}", key.name),
                source,
            }),
        }
    }

    /// Creates the veth (Docker moves the `tmp` end into the container), wires the host
    /// end, and starts reading the container's labels.
    fn join(self: &Arc<Self>, req: &Join) -> Result<Joined, Error> {
        let key = self.endpoint_key(&req.endpoint_id)?;
        let wep = self
            .ds
            .get(&key)
            .map_err(|source| Error::Datastore {
                doing: format!("reading endpoint {}", key.name),
                source,
            })?
            .ok_or_else(|| {
                Error::Refused(format!(
                    "endpoint {} was never created on this host",
                    req.endpoint_id
                ))
            })?;
        let ips: Vec<IpAddr> = wep.value["spec"]["ipNetworks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str()?.split('/').next()?.parse().ok())
            .collect();
        let host_veth = host_iface_name(&req.endpoint_id);
        let temp = format!("{TEMP_PREFIX}{}", &host_veth[4..]);
        let has_gateway_route = self.sandbox_joined(&req.sandbox_key, &key)?;
        {
            let mut host = self
                .host
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let host = &mut *host;
            let kernel = |doing: &str| {
                let doing = doing.to_owned();
                move |source| Error::Kernel { doing, source }
            };
            host.netlink
                .create_veth(
                    &VethSpec {
                        name: host_veth.clone(),
                        peer_name: temp.clone(),
                        mtu: self.cfg.mtu,
                        mac: Some(CALICO_HOST_MAC),
                    },
                    None,
                )
                .map_err(kernel(&format!("creating veth {host_veth}")))?;
            if let Err(e) = configure_host_end(
                host.netlink.as_mut(),
                host.sysctl.as_mut(),
                &host_veth,
                &ips,
            ) {
                let _ = host.netlink.delete_link(&host_veth);
                return Err(Error::Kernel {
                    doing: format!("wiring {host_veth}"),
                    source: e,
                });
            }
        }
        if let Err(e) = self.annotate(&key, SANDBOX_ANNOTATION, &req.sandbox_key) {
            // Nothing half-made: the veth goes (its routes with it).
            let mut host = self
                .host
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = host.netlink.delete_link(&host_veth);
            return Err(e);
        }
        self.resolve_labels_later(req.network_id.clone(), req.endpoint_id.clone(), key);
        let v4 = ips.iter().any(IpAddr::is_ipv4);
        let v6 = ips.iter().any(IpAddr::is_ipv6);
        // The gateways answer from the host veth: 169.254.1.1 by proxy ARP, and the veth's
        // link-local address (its MAC is fixed). A second Calico network in the same
        // container finds the routes to them there already.
        let mut static_routes = Vec::new();
        if !has_gateway_route {
            for (on, dst) in [
                (v4, format!("{CALICO_GATEWAY_V4}/32")),
                (v6, format!("{CALICO_GATEWAY_V6}/128")),
            ] {
                if on {
                    static_routes.push(StaticRoute {
                        destination: dst,
                        route_type: 1,
                        next_hop: String::new(),
                    });
                }
            }
        }
        Ok(Joined {
            interface_name: InterfaceName {
                src_name: temp,
                dst_prefix: "eth",
            },
            gateway: if v4 {
                CALICO_GATEWAY_V4.to_string()
            } else {
                String::new()
            },
            gateway_ipv6: if v6 {
                CALICO_GATEWAY_V6.to_string()
            } else {
                String::new()
            },
            static_routes,
            disable_gateway_service: true,
        })
    }

    /// This node's Docker endpoints.
    fn docker_endpoints(&self) -> Result<Vec<calico_datastore::KeyValue>, Error> {
        let list = self
            .ds
            .list(Kind::WorkloadEndpoint, Some(NAMESPACE))
            .map_err(|source| Error::Datastore {
                doing: "listing endpoints".into(),
                source,
            })?;
        Ok(list
            .items
            .into_iter()
            .filter(|kv| {
                kv.value["spec"]["node"].as_str() == Some(&self.cfg.node)
                    && kv.value["spec"]["orchestrator"].as_str() == Some(ORCHESTRATOR_DOCKER)
            })
            .collect())
    }

    /// Whether another Calico endpoint of this node joined `sandbox` already.
    fn sandbox_joined(&self, sandbox: &str, except: &Key) -> Result<bool, Error> {
        Ok(self.docker_endpoints()?.iter().any(|kv| {
            kv.key != *except
                && kv.value["metadata"]["annotations"][SANDBOX_ANNOTATION].as_str() == Some(sandbox)
        }))
    }

    /// Sets one annotation of endpoint `key` (compare-and-swap, retried on a conflict).
    fn annotate(&self, key: &Key, name: &str, value: &str) -> Result<(), Error> {
        let doing = |what: &str| format!("{what} endpoint {}", key.name);
        for _ in 0..10 {
            let Some(current) = self.ds.get(key).map_err(|source| Error::Datastore {
                doing: doing("reading"),
                source,
            })?
            else {
                return Err(Error::Refused(format!("endpoint {} is gone", key.name)));
            };
            let mut v = current.value;
            if !v["metadata"]["annotations"].is_object() {
                v["metadata"]["annotations"] = serde_json::json!({});
            }
            v["metadata"]["annotations"][name] = serde_json::json!(value);
            match self.ds.update(key, v, Some(current.mod_revision)) {
                Ok(_) => return Ok(()),
                Err(DatastoreError::Conflict { .. }) => {}
                Err(source) => {
                    return Err(Error::Datastore {
                        doing: doing("annotating"),
                        source,
                    });
                }
            }
        }
        Err(Error::Refused(format!(
            "endpoint {} keeps changing under the plugin",
            key.name
        )))
    }

    fn leave(&self, req: &EndpointRef) -> Result<(), Error> {
        let host_veth = host_iface_name(&req.endpoint_id);
        let mut host = self
            .host
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        host.netlink
            .delete_link(&host_veth)
            .map_err(|source| Error::Kernel {
                doing: format!("deleting {host_veth}"),
                source,
            })?;
        Ok(())
    }

    /// Reads the container's labels from Docker (it lists the container only after Join
    /// has answered) in the background, then writes them on the endpoint.
    fn resolve_labels_later(self: &Arc<Self>, network_id: String, endpoint_id: String, key: Key) {
        let plugin = self.clone();
        std::thread::spawn(move || {
            if let Err(e) = plugin.resolve_labels(&network_id, &endpoint_id, &key) {
                tracing::warn!(target: "calico-libnetwork-plugin", "endpoint {endpoint_id}: {e}; it carries no traffic until its labels are known"
                );
            }
        });
    }

    /// Waits for Docker to list the endpoint's container, then writes its labels and lifts
    /// the pending annotation (compare-and-swap: a concurrent delete wins).
    pub fn resolve_labels(
        &self,
        network_id: &str,
        endpoint_id: &str,
        key: &Key,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + self.cfg.label_wait;
        let labels = loop {
            match self.docker.endpoint_labels(network_id, endpoint_id) {
                Ok(Some(l)) => break l,
                Ok(None) if Instant::now() < deadline => {}
                Ok(None) => {
                    return Err(Error::Docker {
                        doing: format!("finding the container of endpoint {endpoint_id}"),
                        reason: format!("Docker did not list it within {:?}", self.cfg.label_wait),
                    });
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut wanted = base_labels();
        for (k, v) in labels {
            if let Some(name) = k.strip_prefix(LABEL_PREFIX) {
                wanted.insert(name.to_owned(), v);
            }
        }
        // Compare-and-swap, again on a conflict (the plugin itself may be annotating it);
        // an endpoint deleted meanwhile is done with.
        for _ in 0..10 {
            let Some(current) = self.ds.get(key).map_err(|source| Error::Datastore {
                doing: format!("reading endpoint {}", key.name),
                source,
            })?
            else {
                return Ok(());
            };
            let mut value = current.value;
            value["metadata"]["labels"] = serde_json::to_value(&wanted)
                .map_err(|e| Error::Refused(format!("encoding labels: {e}")))?;
            if let Some(a) = value["metadata"]["annotations"].as_object_mut() {
                a.remove(LABELS_PENDING_ANNOTATION);
            }
            // Labels are checked as calicoctl checks them before anything is written.
            calico_api::decode::<v3::WorkloadEndpoint>(value.clone())
                .map_err(|e| Error::Refused(format!("the container's labels: {e}")))?;
            match self.ds.update(key, value, Some(current.mod_revision)) {
                Ok(_) | Err(DatastoreError::NotFound { .. }) => return Ok(()),
                Err(DatastoreError::Conflict { .. }) => {}
                Err(source) => {
                    return Err(Error::Datastore {
                        doing: format!("writing the labels of endpoint {}", key.name),
                        source,
                    });
                }
            }
        }
        Err(Error::Refused(format!(
            "endpoint {} keeps changing under the plugin",
            key.name
        )))
    }

    /// Removes the endpoints of containers Docker forgot without telling the driver (a
    /// container removed after dockerd restarted with live-restore gets no DeleteEndpoint):
    /// a joined endpoint whose host veth is gone (its container's namespace went with it)
    /// and that Docker no longer lists. Its addresses are released. Returns the endpoints
    /// removed.
    pub fn collect_gone(&self) -> Result<Vec<String>, Error> {
        let mut gone = Vec::new();
        for kv in self.docker_endpoints()? {
            let (meta, spec) = (&kv.value["metadata"], &kv.value["spec"]);
            if !meta["annotations"][SANDBOX_ANNOTATION].is_string() {
                continue;
            }
            let iface = spec["interfaceName"].as_str().unwrap_or_default();
            let veth = {
                let mut host = self
                    .host
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                host.netlink.link(iface).map_err(|source| Error::Kernel {
                    doing: format!("looking for {iface}"),
                    source,
                })?
            };
            if veth.is_some() {
                continue;
            }
            let network = meta["annotations"][NETWORK_ANNOTATION]
                .as_str()
                .unwrap_or_default();
            let endpoint = spec["endpoint"].as_str().unwrap_or_default();
            if self
                .docker
                .network_endpoints(network)?
                .is_some_and(|eps| eps.iter().any(|e| e == endpoint))
            {
                continue;
            }
            match self.ds.delete(&kv.key, Some(kv.mod_revision)) {
                Ok(_) => {}
                // Changed or deleted meanwhile: the next round looks again.
                Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => continue,
                Err(source) => {
                    return Err(Error::Datastore {
                        doing: format!("deleting endpoint {}", kv.key.name),
                        source,
                    });
                }
            }
            for net in spec["ipNetworks"].as_array().into_iter().flatten() {
                if let Some(ip) = net
                    .as_str()
                    .and_then(|n| n.split('/').next())
                    .and_then(|a| a.parse().ok())
                {
                    self.release_ours(ip, None)?;
                }
            }
            gone.push(kv.key.name);
        }
        Ok(gone)
    }

    /// Endpoints of this node still waiting for labels (after a restart of the plugin):
    /// their resolution starts again.
    pub fn resume_pending(self: &Arc<Self>) -> Result<usize, Error> {
        let mut n = 0;
        for kv in self.docker_endpoints()? {
            let meta = &kv.value["metadata"];
            let spec = &kv.value["spec"];
            if meta["annotations"][LABELS_PENDING_ANNOTATION].is_string() {
                let endpoint = spec["endpoint"].as_str().unwrap_or_default().to_owned();
                let network = meta["annotations"][NETWORK_ANNOTATION]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                self.resolve_labels_later(network, endpoint, kv.key);
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The labels every Docker endpoint carries.
fn base_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAMESPACE_LABEL.to_owned(), NAMESPACE.to_owned()),
        (
            ORCHESTRATOR_LABEL.to_owned(),
            ORCHESTRATOR_DOCKER.to_owned(),
        ),
    ])
}
