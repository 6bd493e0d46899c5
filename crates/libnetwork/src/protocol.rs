//! The libnetwork remote driver protocol: what Docker sends and what it reads back
//! (recorded from a real dockerd: `docker-plugin-protocol-log.txt` in the project notes).
//! Every call is an HTTP POST of one JSON object to `/<Interface>.<Method>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `Plugin.Activate` answer.
#[derive(Debug, Clone, Serialize)]
pub struct Activate {
    /// The interfaces this socket implements.
    #[serde(rename = "Implements")]
    pub implements: Vec<&'static str>,
}

/// `NetworkDriver.GetCapabilities` answer.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkCapabilities {
    /// `local`: networks are per host (`global` needs swarm).
    #[serde(rename = "Scope")]
    pub scope: &'static str,
    /// `global`: containers reach each other across hosts.
    #[serde(rename = "ConnectivityScope")]
    pub connectivity_scope: &'static str,
}

/// `IpamDriver.GetCapabilities` answer.
#[derive(Debug, Clone, Serialize)]
pub struct IpamCapabilities {
    /// Whether Docker must send the MAC address with address requests.
    #[serde(rename = "RequiresMACAddress")]
    pub requires_mac_address: bool,
    /// Whether Docker must replay pools and addresses at start (it never does for remote
    /// drivers in practice: state lives in the datastore).
    #[serde(rename = "RequiresRequestReplay")]
    pub requires_request_replay: bool,
}

/// `IpamDriver.GetDefaultAddressSpaces` answer.
#[derive(Debug, Clone, Serialize)]
pub struct AddressSpaces {
    /// The local address space's name.
    #[serde(rename = "LocalDefaultAddressSpace")]
    pub local: &'static str,
    /// The global address space's name.
    #[serde(rename = "GlobalDefaultAddressSpace")]
    pub global: &'static str,
}

/// `IpamDriver.RequestPool`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RequestPool {
    /// The address space (one of ours).
    #[serde(rename = "AddressSpace")]
    pub address_space: String,
    /// `--subnet`, or empty.
    #[serde(rename = "Pool")]
    pub pool: String,
    /// `--ip-range`, or empty.
    #[serde(rename = "SubPool")]
    pub sub_pool: String,
    /// `--ipam-opt` key/values.
    #[serde(rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
    /// An IPv6 pool is asked for.
    #[serde(rename = "V6")]
    pub v6: bool,
}

/// `IpamDriver.RequestPool` answer.
#[derive(Debug, Clone, Serialize)]
pub struct PoolGranted {
    /// The pool's ID, sent back with every address request.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The pool's CIDR.
    #[serde(rename = "Pool")]
    pub pool: String,
    /// Extra data; `com.docker.network.gateway` here keeps Docker from asking for a
    /// gateway address (containers route through 169.254.1.1).
    #[serde(rename = "Data")]
    pub data: BTreeMap<String, String>,
}

/// `IpamDriver.ReleasePool`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReleasePool {
    /// The pool.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `IpamDriver.RequestAddress`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RequestAddress {
    /// The pool.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The address asked for (`--ip`, `--gateway`), or empty.
    #[serde(rename = "Address")]
    pub address: String,
    /// `RequestAddressType: com.docker.network.gateway` for a gateway.
    #[serde(rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
}

/// `IpamDriver.RequestAddress` answer.
#[derive(Debug, Clone, Serialize)]
pub struct AddressGranted {
    /// The address with its prefix length.
    #[serde(rename = "Address")]
    pub address: String,
    /// Extra data (none).
    #[serde(rename = "Data")]
    pub data: BTreeMap<String, String>,
}

/// `IpamDriver.ReleaseAddress`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReleaseAddress {
    /// The pool.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The address (without prefix length).
    #[serde(rename = "Address")]
    pub address: String,
}

/// One pool of a network, as `CreateNetwork` lists them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IpamData {
    /// The address space.
    #[serde(rename = "AddressSpace")]
    pub address_space: String,
    /// The pool's CIDR.
    #[serde(rename = "Pool")]
    pub pool: String,
    /// The gateway with prefix length.
    #[serde(rename = "Gateway")]
    pub gateway: String,
}

/// `NetworkDriver.CreateNetwork`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateNetwork {
    /// Docker's ID of the network.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// `com.docker.network.enable_ipv6` (bool), `com.docker.network.generic` (the `-o`
    /// key/values), and whatever else Docker adds.
    #[serde(rename = "Options")]
    pub options: BTreeMap<String, serde_json::Value>,
    /// IPv4 pools.
    #[serde(rename = "IPv4Data")]
    pub ipv4_data: Vec<IpamData>,
    /// IPv6 pools.
    #[serde(rename = "IPv6Data")]
    pub ipv6_data: Vec<IpamData>,
}

/// Requests that name a network only (`DeleteNetwork`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetworkRef {
    /// The network.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// The container interface of an endpoint, as Docker sends it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EndpointInterface {
    /// IPv4 address with prefix length, or empty.
    #[serde(rename = "Address")]
    pub address: String,
    /// IPv6 address with prefix length, or empty.
    #[serde(rename = "AddressIPv6")]
    pub address_ipv6: String,
    /// MAC address, or empty.
    #[serde(rename = "MacAddress")]
    pub mac_address: String,
}

/// `NetworkDriver.CreateEndpoint`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateEndpoint {
    /// The network.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Docker's ID of the endpoint.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The addresses Docker's IPAM call gave it.
    #[serde(rename = "Interface")]
    pub interface: Option<EndpointInterface>,
}

/// Requests that name an endpoint (`DeleteEndpoint`, `Leave`, `EndpointOperInfo`,
/// `ProgramExternalConnectivity`, `RevokeExternalConnectivity`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EndpointRef {
    /// The network.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The endpoint.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `NetworkDriver.Join`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Join {
    /// The network.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The endpoint.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The container's network namespace (a path).
    #[serde(rename = "SandboxKey")]
    pub sandbox_key: String,
}

/// The interface Docker moves into the container.
#[derive(Debug, Clone, Serialize)]
pub struct InterfaceName {
    /// Its name in the host namespace.
    #[serde(rename = "SrcName")]
    pub src_name: String,
    /// The name prefix in the container (`eth`: eth0, eth1...).
    #[serde(rename = "DstPrefix")]
    pub dst_prefix: &'static str,
}

/// A route Docker adds in the container.
#[derive(Debug, Clone, Serialize)]
pub struct StaticRoute {
    /// The destination CIDR.
    #[serde(rename = "Destination")]
    pub destination: String,
    /// 1: directly connected through the interface.
    #[serde(rename = "RouteType")]
    pub route_type: u8,
    /// The next hop (none for a connected route).
    #[serde(rename = "NextHop")]
    pub next_hop: String,
}

/// `NetworkDriver.Join` answer.
#[derive(Debug, Clone, Serialize)]
pub struct Joined {
    /// The interface to move in.
    #[serde(rename = "InterfaceName")]
    pub interface_name: InterfaceName,
    /// The IPv4 default gateway.
    #[serde(rename = "Gateway", skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// The IPv6 default gateway.
    #[serde(rename = "GatewayIPv6", skip_serializing_if = "String::is_empty")]
    pub gateway_ipv6: String,
    /// Routes to add first (the gateway's /32, unless the container has it already).
    #[serde(rename = "StaticRoutes")]
    pub static_routes: Vec<StaticRoute>,
    /// No Docker gateway network for this container.
    #[serde(rename = "DisableGatewayService")]
    pub disable_gateway_service: bool,
}

/// `NetworkDriver.EndpointOperInfo` answer.
#[derive(Debug, Clone, Serialize)]
pub struct OperInfo {
    /// What `docker network inspect` shows of the endpoint.
    #[serde(rename = "Value")]
    pub value: BTreeMap<String, String>,
}
