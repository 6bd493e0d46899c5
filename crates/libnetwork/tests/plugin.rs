//! The plugin's calls as Docker makes them (the sequences recorded from a real dockerd),
//! on a real embedded datastore, with the kernel and the Engine API faked: what each call
//! writes, wires and answers, and the bad requests it refuses with a message naming the
//! problem and nothing written.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use calico_api::v3::LABELS_PENDING_ANNOTATION;
use calico_datastore::sqlite::SqliteDatastore;
use calico_datastore::{Datastore, Key, Kind, WriteOp};
use calico_libnetwork::server::{Driver, respond};
use calico_libnetwork::{Config, DockerApi, Error, Host, NetworkInfo, Plugin};
use calico_netlink::fake::{FakeNetlink, FakeSysctl, Shared};
use serde_json::{Value, json};

mod common;

/// The Engine API as the test sets it.
#[derive(Default)]
struct FakeDocker {
    networks: Mutex<BTreeMap<String, NetworkInfo>>,
    /// Labels by endpoint ID, once Docker "lists" the container.
    labels: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl DockerApi for FakeDocker {
    fn network(&self, id: &str) -> Result<NetworkInfo, Error> {
        self.networks
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::Docker {
                doing: format!("reading network {id}"),
                reason: "no such network".into(),
            })
    }
    fn network_endpoints(&self, _network_id: &str) -> Result<Option<Vec<String>>, Error> {
        Ok(Some(self.labels.lock().unwrap().keys().cloned().collect()))
    }
    fn endpoint_labels(
        &self,
        _network_id: &str,
        endpoint_id: &str,
    ) -> Result<Option<BTreeMap<String, String>>, Error> {
        Ok(self.labels.lock().unwrap().get(endpoint_id).cloned())
    }
}

struct Rig {
    ds: Arc<dyn Datastore>,
    docker: Arc<FakeDocker>,
    netlink: Shared<FakeNetlink>,
    sysctl: Shared<FakeSysctl>,
    plugin: Arc<Plugin>,
    _dir: tempfile::TempDir,
}

const NET: &str = "3096a0bdf28a31556c8f01e6a030fc4e6d5ea4e20fc0c0fe017aa4327cdf0382";
const EP: &str = "f4624db571706668e473eb197c90ff2eb9ab6949ac799450852caf1694881235";

fn put(ds: &dyn Datastore, key: Key, value: Value) {
    ds.write_batch(vec![WriteOp::Upsert { key, value }])
        .unwrap();
}

fn rig(label_wait: Duration) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let ds: Arc<dyn Datastore> = Arc::new(SqliteDatastore::open(&dir.path().join("c.db")).unwrap());
    put(
        ds.as_ref(),
        Key::global(Kind::IpPool, "pool1"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": "pool1"},
            "spec": {"cidr": "10.65.0.0/16", "blockSize": 26}}),
    );
    put(
        ds.as_ref(),
        Key::global(Kind::Profile, "calico"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
            "metadata": {"name": "calico"}, "spec": {}}),
    );
    let docker = Arc::new(FakeDocker::default());
    docker.networks.lock().unwrap().insert(
        NET.to_owned(),
        NetworkInfo {
            name: "calico".into(),
            options: BTreeMap::new(),
        },
    );
    let (netlink, sysctl) = (Shared::<FakeNetlink>::default(), Shared::default());
    *netlink.lock() = FakeNetlink::new();
    let plugin = Plugin::new(
        Config {
            node: "h1".into(),
            mtu: 1440,
            label_wait,
        },
        ds.clone(),
        docker.clone(),
        Host {
            netlink: Box::new(netlink.clone()),
            sysctl: Box::new(sysctl.clone()),
        },
    );
    Rig {
        ds,
        docker,
        netlink,
        sysctl,
        plugin,
        _dir: dir,
    }
}

impl Rig {
    fn call(&self, call: &str, body: Value) -> Value {
        let driver = if call.starts_with("IpamDriver") {
            Driver::Ipam
        } else {
            Driver::Network
        };
        respond(&self.plugin, driver, call, body.to_string().as_bytes())
    }

    fn endpoint(&self) -> Option<Value> {
        self.ds
            .list(Kind::WorkloadEndpoint, None)
            .unwrap()
            .items
            .into_iter()
            .map(|kv| kv.value)
            .next()
    }

    fn allocated(&self) -> usize {
        common::allocated(self.ds.as_ref())
    }
}

fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn network_create_run_exit_rm_as_docker_calls_them() {
    let r = rig(Duration::from_secs(5));
    // Activation: one interface per socket.
    assert_eq!(
        respond(&r.plugin, Driver::Network, "/Plugin.Activate", b""),
        json!({"Implements": ["NetworkDriver"]})
    );
    assert_eq!(
        respond(&r.plugin, Driver::Ipam, "/Plugin.Activate", b""),
        json!({"Implements": ["IpamDriver"]})
    );
    assert_eq!(
        r.call("NetworkDriver.GetCapabilities", json!(null))["Scope"],
        "local"
    );
    // docker network create --driver calico --ipam-driver calico-ipam --subnet 10.65.0.0/16
    let spaces = r.call("IpamDriver.GetDefaultAddressSpaces", json!(null));
    let pool = r.call(
        "IpamDriver.RequestPool",
        json!({"AddressSpace": spaces["LocalDefaultAddressSpace"], "Pool": "10.65.0.0/16",
               "SubPool": "", "Options": {}, "V6": false}),
    );
    assert_eq!(pool["PoolID"], "10.65.0.0/16", "{pool}");
    assert_eq!(pool["Data"]["com.docker.network.gateway"], "0.0.0.0/0");
    let created = r.call(
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": NET,
               "Options": {"com.docker.network.enable_ipv6": false,
                           "com.docker.network.generic": {"org.projectcalico.profile": "calico"}},
               "IPv4Data": [{"AddressSpace": spaces["LocalDefaultAddressSpace"],
                             "Gateway": "0.0.0.0/0", "Pool": "10.65.0.0/16"}],
               "IPv6Data": []}),
    );
    assert_eq!(created, json!({}));

    // docker run: an address, the endpoint (labels pending), Join.
    let addr = r.call(
        "IpamDriver.RequestAddress",
        json!({"PoolID": "10.65.0.0/16", "Address": "", "Options": null}),
    );
    let address = addr["Address"].as_str().unwrap().to_owned();
    assert!(
        address.starts_with("10.65.") && address.ends_with("/32"),
        "{addr}"
    );
    let ep = r.call(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": NET, "EndpointID": EP,
               "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""},
               "Options": {"com.docker.network.endpoint.exposedports": []}}),
    );
    assert_eq!(
        ep,
        json!({"Interface": {}}),
        "Docker's address is not echoed back"
    );
    let wep = r.endpoint().expect("the endpoint is written");
    assert_eq!(wep["spec"]["orchestrator"], "libnetwork");
    assert_eq!(wep["spec"]["interfaceName"], "calif4624db5717");
    assert_eq!(wep["spec"]["profiles"], json!(["calico"]));
    assert_eq!(
        wep["spec"]["ipNetworks"],
        json!([address.clone()]),
        "the endpoint lists its address"
    );
    assert!(
        wep["metadata"]["annotations"][LABELS_PENDING_ANNOTATION].is_string(),
        "no traffic until the labels are known"
    );

    let joined = r.call(
        "NetworkDriver.Join",
        json!({"NetworkID": NET, "EndpointID": EP,
               "SandboxKey": "/var/run/docker/netns/3b95e015e9c4", "Options": {}}),
    );
    assert_eq!(
        joined,
        json!({"InterfaceName": {"SrcName": "tmpf4624db5717", "DstPrefix": "eth"},
               "Gateway": "169.254.1.1",
               "StaticRoutes": [{"Destination": "169.254.1.1/32", "RouteType": 1, "NextHop": ""}],
               "DisableGatewayService": true})
    );
    {
        let nl = r.netlink.lock();
        let host = &nl.links["calif4624db5717"];
        assert!(host.up);
        assert_eq!(host.mtu, 1440);
        assert_eq!(host.mac, vec![0xee; 6]);
        assert!(nl.links.contains_key("tmpf4624db5717"));
        let ip: std::net::IpAddr = address.trim_end_matches("/32").parse().unwrap();
        assert!(
            nl.route_table
                .iter()
                .any(|rt| rt.dst == ip && rt.prefix_len == 32),
            "a host route to the container"
        );
    }
    assert_eq!(
        r.sysctl.lock().values["net/ipv4/conf/calif4624db5717/proxy_arp"],
        "1"
    );

    // Docker lists the container: its org.projectcalico.label.* labels land on the
    // endpoint, other labels do not, and the pending annotation goes.
    r.docker.labels.lock().unwrap().insert(
        EP.to_owned(),
        BTreeMap::from([
            ("org.projectcalico.label.app".to_owned(), "web".to_owned()),
            ("com.example.other".to_owned(), "x".to_owned()),
        ]),
    );
    assert!(
        eventually(|| r
            .endpoint()
            .is_some_and(|w| w["metadata"]["labels"]["app"] == "web")),
        "{:?}",
        r.endpoint()
    );
    let wep = r.endpoint().unwrap();
    assert!(wep["metadata"]["annotations"][LABELS_PENDING_ANNOTATION].is_null());
    assert!(wep["metadata"]["labels"]["com.example.other"].is_null());
    assert_eq!(
        wep["metadata"]["labels"]["projectcalico.org/orchestrator"],
        "libnetwork"
    );
    assert_eq!(
        r.call(
            "NetworkDriver.EndpointOperInfo",
            json!({"NetworkID": NET, "EndpointID": EP})
        )["Value"]["hostVeth"],
        "calif4624db5717"
    );

    // Container exit: the veth, the endpoint and the address go.
    let endpoint = json!({"NetworkID": NET, "EndpointID": EP});
    assert_eq!(
        r.call(
            "NetworkDriver.ProgramExternalConnectivity",
            endpoint.clone()
        ),
        json!({})
    );
    // Discovery notifications (swarm) change nothing for a local driver.
    for call in ["NetworkDriver.DiscoverNew", "NetworkDriver.DiscoverDelete"] {
        assert_eq!(
            r.call(call, json!({"DiscoveryType": 1, "DiscoveryData": {}})),
            json!({})
        );
    }
    assert_eq!(
        r.call("NetworkDriver.RevokeExternalConnectivity", endpoint.clone()),
        json!({})
    );
    assert_eq!(r.call("NetworkDriver.Leave", endpoint.clone()), json!({}));
    assert!(!r.netlink.lock().links.contains_key("calif4624db5717"));
    assert_eq!(r.call("NetworkDriver.DeleteEndpoint", endpoint), json!({}));
    assert!(r.endpoint().is_none());
    assert_eq!(r.allocated(), 1);
    r.call(
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": "10.65.0.0/16", "Address": address.trim_end_matches("/32")}),
    );
    assert_eq!(r.allocated(), 0, "nothing leaks");
    // docker network rm
    assert_eq!(
        r.call("IpamDriver.ReleasePool", json!({"PoolID": "10.65.0.0/16"})),
        json!({})
    );
    assert_eq!(
        r.call("NetworkDriver.DeleteNetwork", json!({"NetworkID": NET})),
        json!({})
    );
}

#[test]
fn bad_requests_are_refused_naming_the_problem_and_write_nothing() {
    let r = rig(Duration::from_secs(1));
    let ipam_error = |v: &Value| v["Error"].as_str().unwrap_or_default().to_owned();
    let net_error = |v: &Value| v["Err"].as_str().unwrap_or_default().to_owned();

    let v = r.call(
        "IpamDriver.RequestPool",
        json!({"Pool": "192.168.0.0/24", "V6": false}),
    );
    assert!(
        ipam_error(&v).contains("192.168.0.0/24")
            && ipam_error(&v).contains("pool1 (10.65.0.0/16)"),
        "{v}"
    );
    assert!(
        v["Err"].is_null(),
        "IPAM errors go in the field Docker reads for IPAM"
    );
    let v = r.call(
        "IpamDriver.RequestPool",
        json!({"Pool": "10.65.0.0/16", "Options": {"foo": "bar"}}),
    );
    assert!(ipam_error(&v).contains("foo=bar"), "{v}");
    let v = r.call(
        "IpamDriver.RequestPool",
        json!({"Pool": "10.65.1.0/24", "SubPool": "10.66.0.0/25"}),
    );
    assert!(ipam_error(&v).contains("10.66.0.0/25"), "{v}");
    let v = r.call(
        "IpamDriver.RequestPool",
        json!({"Pool": "10.65.0.0/16", "V6": true}),
    );
    assert!(ipam_error(&v).contains("IPv6"), "{v}");
    let v = r.call("IpamDriver.RequestPool", json!({"Pool": "not-a-cidr"}));
    assert!(ipam_error(&v).contains("not-a-cidr"), "{v}");
    let v = respond(
        &r.plugin,
        Driver::Ipam,
        "/IpamDriver.RequestPool",
        b"{\"Pool\": ",
    );
    assert!(
        ipam_error(&v).contains("RequestPool"),
        "malformed JSON: {v}"
    );
    let v = r.call(
        "IpamDriver.RequestAddress",
        json!({"PoolID": "10.65.1.0/24", "Address": "10.65.2.9"}),
    );
    assert!(
        ipam_error(&v).contains("10.65.2.9"),
        "--ip outside the network: {v}"
    );
    let v = r.call(
        "IpamDriver.RequestAddress",
        json!({"PoolID": "rcpool-10.1.0.0_16", "Address": ""}),
    );
    assert!(ipam_error(&v).contains("rcpool-10.1.0.0_16"), "{v}");

    let v = r.call(
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": NET, "Options": {"com.docker.network.generic": {"mtu": "9000"}}}),
    );
    assert!(net_error(&v).contains("mtu=9000"), "{v}");
    let v = r.call(
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": NET,
               "Options": {"com.docker.network.generic": {"org.projectcalico.profile": "nope"}}}),
    );
    assert!(net_error(&v).contains("\"nope\" does not exist"), "{v}");
    let v = r.call(
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": NET, "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "172.17.0.0/16"}]}),
    );
    assert!(net_error(&v).contains("calico-ipam"), "{v}");
    // An endpoint on a network whose profile is gone: refused, nothing written.
    r.docker.networks.lock().unwrap().insert(
        NET.to_owned(),
        NetworkInfo {
            name: "frontend".into(),
            options: BTreeMap::new(),
        },
    );
    let v = r.call(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": NET, "EndpointID": EP, "Interface": {"Address": "10.65.0.9/32"}}),
    );
    assert!(net_error(&v).contains("\"frontend\" does not exist"), "{v}");
    let v = r.call(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": NET, "EndpointID": EP, "Interface": {"Address": ""}}),
    );
    assert!(net_error(&v).contains("no address"), "{v}");
    let v = r.call(
        "NetworkDriver.Join",
        json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/x"}),
    );
    assert!(net_error(&v).contains("never created"), "{v}");
    assert!(r.endpoint().is_none());
    assert_eq!(r.allocated(), 0);
    assert_eq!(r.netlink.lock().links.len(), 1, "only lo");
}

#[test]
fn ip_range_ip_and_gateway_are_honoured() {
    let r = rig(Duration::from_secs(1));
    let pool = r.call(
        "IpamDriver.RequestPool",
        json!({"Pool": "10.65.4.0/24", "SubPool": "10.65.4.128/25"}),
    );
    let id = pool["PoolID"].as_str().unwrap().to_owned();
    assert_eq!(id, "10.65.4.0/24 10.65.4.128/25");
    for _ in 0..3 {
        let a = r.call("IpamDriver.RequestAddress", json!({"PoolID": id}));
        let ip: std::net::IpAddr = a["Address"]
            .as_str()
            .unwrap()
            .trim_end_matches("/32")
            .parse()
            .unwrap();
        assert!(
            "10.65.4.128/25"
                .parse::<ipnet::IpNet>()
                .unwrap()
                .contains(&ip),
            "{a}"
        );
    }
    let a = r.call(
        "IpamDriver.RequestAddress",
        json!({"PoolID": id, "Address": "10.65.4.200"}),
    );
    assert_eq!(a["Address"], "10.65.4.200/32", "--ip");
    let again = r.call(
        "IpamDriver.RequestAddress",
        json!({"PoolID": id, "Address": "10.65.4.200"}),
    );
    assert!(
        again["Error"]
            .as_str()
            .unwrap_or_default()
            .contains("10.65.4.200"),
        "{again}"
    );
    // --gateway: answered, not taken from the pool, and not released from anyone later.
    let gw = r.call(
        "IpamDriver.RequestAddress",
        json!({"PoolID": id, "Address": "10.65.4.1",
               "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
    );
    assert_eq!(gw["Address"], "10.65.4.1/24");
    assert_eq!(r.allocated(), 4);
    r.call(
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": id, "Address": "10.65.4.1"}),
    );
    assert_eq!(r.allocated(), 4);
    // A release names the pool: an address of another Docker pool is left alone.
    r.call(
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": "CalicoPoolIPv4", "Address": "10.65.4.200"}),
    );
    assert_eq!(r.allocated(), 4);
    // Without --subnet: any Calico pool.
    let any = r.call("IpamDriver.RequestPool", json!({"V6": false}));
    assert_eq!(any["PoolID"], "CalicoPoolIPv4");
    let a = r.call(
        "IpamDriver.RequestAddress",
        json!({"PoolID": "CalicoPoolIPv4"}),
    );
    assert!(a["Address"].as_str().unwrap().starts_with("10.65."), "{a}");
}

#[test]
fn a_second_calico_network_in_a_container_adds_no_second_gateway_route() {
    let r = rig(Duration::from_secs(1));
    let ep2 = "b".repeat(64);
    for (ep, ip) in [(EP, "10.65.0.9/32"), (ep2.as_str(), "10.65.0.10/32")] {
        r.call(
            "NetworkDriver.CreateEndpoint",
            json!({"NetworkID": NET, "EndpointID": ep, "Interface": {"Address": ip}}),
        );
    }
    let join = |ep: &str, sandbox: &str| {
        r.call(
            "NetworkDriver.Join",
            json!({"NetworkID": NET, "EndpointID": ep, "SandboxKey": sandbox}),
        )
    };
    let first = join(EP, "/var/run/docker/netns/x");
    assert_eq!(
        first["StaticRoutes"].as_array().map(Vec::len),
        Some(1),
        "{first}"
    );
    let second = join(&ep2, "/var/run/docker/netns/x");
    assert_eq!(second["StaticRoutes"], json!([]), "{second}");
    assert_eq!(second["Gateway"], "169.254.1.1");
    // Once the first endpoint is gone, a new join of that sandbox needs the route again.
    r.call(
        "NetworkDriver.DeleteEndpoint",
        json!({"NetworkID": NET, "EndpointID": EP}),
    );
    r.call(
        "NetworkDriver.Leave",
        json!({"NetworkID": NET, "EndpointID": ep2}),
    );
    let again = join(&ep2, "/var/run/docker/netns/y");
    assert_eq!(
        again["StaticRoutes"].as_array().map(Vec::len),
        Some(1),
        "{again}"
    );
}

#[test]
fn without_labels_the_endpoint_stays_pending_and_a_restart_resumes_it() {
    let r = rig(Duration::from_millis(300));
    r.call(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": NET, "EndpointID": EP, "Interface": {"Address": "10.65.0.9/32"}}),
    );
    r.call(
        "NetworkDriver.Join",
        json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/x"}),
    );
    std::thread::sleep(Duration::from_millis(600));
    let wep = r.endpoint().unwrap();
    assert!(
        wep["metadata"]["annotations"][LABELS_PENDING_ANNOTATION].is_string(),
        "Docker never listed the container: still no traffic"
    );
    // The plugin restarts; Docker lists the container by now.
    r.docker.labels.lock().unwrap().insert(
        EP.to_owned(),
        BTreeMap::from([("org.projectcalico.label.role".to_owned(), "db".to_owned())]),
    );
    assert_eq!(r.plugin.resume_pending().unwrap(), 1);
    assert!(eventually(|| r
        .endpoint()
        .is_some_and(|w| w["metadata"]["labels"]["role"] == "db"
            && w["metadata"]["annotations"][LABELS_PENDING_ANNOTATION]
                .is_null())));
    // A label value calicoctl would refuse is refused here too: the endpoint stays pending.
    let ep2 = "a".repeat(64);
    r.call(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": NET, "EndpointID": ep2, "Interface": {"Address": "10.65.0.10/32"}}),
    );
    r.docker.labels.lock().unwrap().insert(
        ep2.clone(),
        BTreeMap::from([(
            "org.projectcalico.label.bad key!".to_owned(),
            "x".to_owned(),
        )]),
    );
    let key =
        r.ds.list(Kind::WorkloadEndpoint, None)
            .unwrap()
            .items
            .into_iter()
            .find(|kv| kv.value["spec"]["endpoint"] == ep2.as_str())
            .unwrap()
            .key;
    let err = r.plugin.resolve_labels(NET, &ep2, &key).unwrap_err();
    assert!(err.to_string().contains("bad key!"), "{err}");
    let wep = r.ds.get(&key).unwrap().unwrap().value;
    assert!(wep["metadata"]["annotations"][LABELS_PENDING_ANNOTATION].is_string());
}

#[test]
fn endpoints_of_containers_docker_forgot_are_collected_and_only_those() {
    let r = rig(Duration::from_secs(5));
    let pool = json!({"PoolID": "CalicoPoolIPv4"});
    let addr = r.call("IpamDriver.RequestAddress", pool.clone())["Address"]
        .as_str()
        .unwrap()
        .to_owned();
    let ep2 = "c".repeat(64);
    let addr2 = r.call("IpamDriver.RequestAddress", pool)["Address"]
        .as_str()
        .unwrap()
        .to_owned();
    for (ep, a) in [(EP, &addr), (ep2.as_str(), &addr2)] {
        r.call(
            "NetworkDriver.CreateEndpoint",
            json!({"NetworkID": NET, "EndpointID": ep, "Interface": {"Address": a}}),
        );
    }
    // Only the first joins; Docker lists its container.
    r.call(
        "NetworkDriver.Join",
        json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/x"}),
    );
    r.docker
        .labels
        .lock()
        .unwrap()
        .insert(EP.to_owned(), BTreeMap::new());
    assert!(r.plugin.collect_gone().unwrap().is_empty(), "all alive");
    // Its veth goes but Docker still lists it (a restart in progress): kept.
    calico_netlink::Netlink::delete_link(&mut *r.netlink.lock(), "calif4624db5717").unwrap();
    assert!(r.plugin.collect_gone().unwrap().is_empty());
    // Docker forgets it too: collected, its address released; the endpoint that never
    // joined stays.
    r.docker.labels.lock().unwrap().clear();
    assert_eq!(r.plugin.collect_gone().unwrap().len(), 1);
    let left: Vec<Value> =
        r.ds.list(Kind::WorkloadEndpoint, None)
            .unwrap()
            .items
            .into_iter()
            .map(|kv| kv.value)
            .collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["spec"]["endpoint"], ep2.as_str());
    assert_eq!(r.allocated(), 1, "the collected endpoint's address is free");
}

#[test]
fn an_address_whose_container_never_came_is_a_leak_ipam_check_and_the_collector_agree_on() {
    let r = rig(Duration::from_secs(1));
    // The plugin (or dockerd) dies between RequestAddress and CreateEndpoint.
    let a = r.call(
        "IpamDriver.RequestAddress",
        json!({"PoolID": "CalicoPoolIPv4"}),
    );
    let ip: std::net::IpAddr = a["Address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .parse()
        .unwrap();
    let report = calico_ipam::check::check(r.ds.as_ref()).unwrap();
    assert_eq!(
        report.leaked.iter().map(|l| l.ip).collect::<Vec<_>>(),
        [ip],
        "ipam check reports it"
    );
    let mut collector = calico_ipam::check::Collector::new(Duration::from_secs(60));
    let t0 = Instant::now();
    assert!(
        collector
            .run_once(r.ds.as_ref(), t0)
            .unwrap()
            .released
            .is_empty()
    );
    let pass = collector
        .run_once(r.ds.as_ref(), t0 + Duration::from_secs(61))
        .unwrap();
    assert_eq!(
        pass.released,
        [ip],
        "the collector frees it after its grace"
    );
    assert_eq!(r.allocated(), 0);
}

use proptest::prelude::Strategy as _;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever Docker (or anyone on the socket) sends: an answer, errors in the field of
    /// the call's interface, and nothing written for a body that is not a request.
    #[test]
    fn any_request_body_gets_an_answer_and_garbage_writes_nothing(
        call in proptest::sample::select(vec![
            "IpamDriver.RequestPool", "IpamDriver.RequestAddress", "IpamDriver.ReleaseAddress",
            "IpamDriver.ReleasePool", "NetworkDriver.CreateNetwork", "NetworkDriver.CreateEndpoint",
            "NetworkDriver.Join", "NetworkDriver.Leave", "NetworkDriver.DeleteEndpoint",
            "NetworkDriver.EndpointOperInfo", "NetworkDriver.Nope", "IpamDriver.Nope",
        ]),
        body in proptest::prelude::prop_oneof![
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            "[{}\\[\\]\",:a-zA-Z0-9 ./]{0,64}".prop_map(String::into_bytes),
        ],
    ) {
        let r = rig(Duration::from_millis(10));
        let answer = respond(&r.plugin, if call.starts_with("Ipam") { Driver::Ipam } else { Driver::Network }, call, &body);
        proptest::prop_assert!(answer.is_object(), "{answer}");
        if call.starts_with("IpamDriver") {
            proptest::prop_assert!(answer.get("Err").is_none(), "{answer}");
        } else {
            proptest::prop_assert!(answer.get("Error").is_none(), "{answer}");
        }
        if serde_json::from_slice::<Value>(&body).map_or(true, |v| !v.is_object()) {
            proptest::prop_assert!(r.endpoint().is_none());
            proptest::prop_assert_eq!(r.allocated(), 0);
        }
    }
}

#[test]
fn a_dual_stack_endpoint_gets_both_gateways() {
    let r = rig(Duration::from_secs(1));
    r.call(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": NET, "EndpointID": EP,
               "Interface": {"Address": "10.65.0.9/32", "AddressIPv6": "fd00:65::9/128"}}),
    );
    let joined = r.call(
        "NetworkDriver.Join",
        json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/var/run/docker/netns/d"}),
    );
    assert_eq!(joined["Gateway"], "169.254.1.1", "{joined}");
    assert_eq!(
        joined["GatewayIPv6"], "fe80::ecee:eeff:feee:eeee",
        "{joined}"
    );
    assert_eq!(
        joined["StaticRoutes"],
        json!([{"Destination": "169.254.1.1/32", "RouteType": 1, "NextHop": ""},
               {"Destination": "fe80::ecee:eeff:feee:eeee/128", "RouteType": 1, "NextHop": ""}])
    );
    let wep = r.endpoint().unwrap();
    assert_eq!(
        wep["spec"]["ipNetworks"],
        json!(["10.65.0.9/32", "fd00:65::9/128"])
    );
    let nl = r.netlink.lock();
    assert!(
        nl.route_table.iter().any(
            |rt| rt.dst == "fd00:65::9".parse::<std::net::IpAddr>().unwrap()
                && rt.prefix_len == 128
        ),
        "a host route to the IPv6 address"
    );
}
