//! Data exactly as upstream Calico's calicoctl / libcalico-go etcdv3 backend stores it: keys
//! under `/calico/resources/v3/projectcalico.org/` holding the compact JSON of the whole v3
//! object (with `uid` and `creationTimestamp`, without `resourceVersion`, which is the etcd
//! mod revision), and IPAM data under `/calico/ipam/v2/` in upstream's own (non-v3) encoding.
//! Shared by the interoperability tests of several crates so they test the same bytes.
//!
//! The IPAM fixtures describe one consistent allocation: block 10.0.0.0/26 of the pool
//! [`POOL`], affine to `node-1`, holding node-1's IPIP tunnel address (10.0.0.0) and the
//! address of the workload [`WORKLOAD_ENDPOINT`] (10.0.0.1), each with its handle.

/// Key of [`POLICY`].
pub const POLICY_KEY: &str =
    "/calico/resources/v3/projectcalico.org/networkpolicies/production/allow-tcp-6379";

/// A namespaced NetworkPolicy.
pub const POLICY: &str = r#"{"kind":"NetworkPolicy","apiVersion":"projectcalico.org/v3","metadata":{"name":"allow-tcp-6379","namespace":"production","uid":"2b3a4c5d-1111-4222-8333-444455556666","creationTimestamp":"2024-03-01T10:00:00Z"},"spec":{"tier":"default","order":100,"ingress":[{"action":"Allow","protocol":"TCP","source":{"selector":"role == 'frontend'"},"destination":{"ports":[6379]}}],"selector":"role == 'database'","types":["Ingress"]}}"#;

/// Key of [`GLOBAL_POLICY`].
pub const GLOBAL_POLICY_KEY: &str =
    "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/allow-icmp";

/// A GlobalNetworkPolicy. Go's encoding/json writes empty `source`/`destination` objects,
/// because `omitempty` does not apply to structs.
pub const GLOBAL_POLICY: &str = r#"{"kind":"GlobalNetworkPolicy","apiVersion":"projectcalico.org/v3","metadata":{"name":"allow-icmp","uid":"3c4d5e6f-2222-4333-8444-555566667777","creationTimestamp":"2024-03-01T10:05:00Z"},"spec":{"tier":"default","order":10,"ingress":[{"action":"Allow","protocol":"ICMP","source":{},"destination":{}}],"selector":"all()","types":["Ingress"]}}"#;

/// Key of [`POOL`].
pub const POOL_KEY: &str = "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool";

/// An IPPool.
pub const POOL: &str = r#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"default-ipv4-ippool","uid":"9f8e7d6c-2222-4333-8444-555566667777","creationTimestamp":"2024-03-01T09:00:00Z"},"spec":{"cidr":"10.0.0.0/16","vxlanMode":"Never","ipipMode":"Always","natOutgoing":true,"blockSize":26,"nodeSelector":"all()","allowedUses":["Workload","Tunnel"]}}"#;

/// Key of [`PROFILE`].
pub const PROFILE_KEY: &str = "/calico/resources/v3/projectcalico.org/profiles/calico";

/// A Profile.
pub const PROFILE: &str = r#"{"kind":"Profile","apiVersion":"projectcalico.org/v3","metadata":{"name":"calico","uid":"4d5e6f70-3333-4444-8555-666677778888","creationTimestamp":"2024-03-01T09:30:00Z"},"spec":{"ingress":[{"action":"Allow","source":{},"destination":{}}],"egress":[{"action":"Allow","source":{},"destination":{}}],"labelsToApply":{"calico":""}}}"#;

/// Key of [`WORKLOAD_ENDPOINT`].
pub const WORKLOAD_ENDPOINT_KEY: &str =
    "/calico/resources/v3/projectcalico.org/workloadendpoints/default/node--1-mesos-web--0-eth0";

/// A WorkloadEndpoint on `node-1` (a `-` inside a name segment is written `--`).
pub const WORKLOAD_ENDPOINT: &str = r#"{"kind":"WorkloadEndpoint","apiVersion":"projectcalico.org/v3","metadata":{"name":"node--1-mesos-web--0-eth0","namespace":"default","uid":"5e6f7081-4444-4555-8666-777788889999","creationTimestamp":"2024-03-01T10:00:01Z","labels":{"app":"web","projectcalico.org/namespace":"default","projectcalico.org/orchestrator":"mesos"}},"spec":{"orchestrator":"mesos","workload":"web-0","node":"node-1","containerID":"abc123","endpoint":"eth0","ipNetworks":["10.0.0.1/32"],"profiles":["calico"],"interfaceName":"cali0a1b2c3d4e5","mac":"ee:ee:ee:ee:ee:ee"}}"#;

/// Key of [`BLOCK`].
pub const BLOCK_KEY: &str = "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26";

/// An allocation block in upstream's `model.AllocationBlock` encoding: one entry per address
/// in `allocations` (an index into `attributes`, or null when free).
pub const BLOCK: &str = r#"{"cidr":"10.0.0.0/26","affinity":"host:node-1","strictAffinity":false,"allocations":[0,1,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null],"unallocated":[2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63],"attributes":[{"handle_id":"ipip-tunnel-addr-node-1","secondary":{"node":"node-1","type":"ipipTunnelAddress"}},{"handle_id":"k8s-pod-network.abc123","secondary":{"namespace":"default","node":"node-1","pod":"web-0","timestamp":"2024-03-01 10:00:00 +0000 UTC"}}],"deleted":false,"sequenceNumber":2,"sequenceNumberForAllocation":{"0":0,"1":1}}"#;

/// Key of [`AFFINITY`].
pub const AFFINITY_KEY: &str = "/calico/ipam/v2/host/node-1/ipv4/block/10.0.0.0-26";

/// node-1's affinity to [`BLOCK`].
pub const AFFINITY: &str = r#"{"state":"confirmed","deleted":false}"#;

/// Key of [`TUNNEL_HANDLE`].
pub const TUNNEL_HANDLE_KEY: &str = "/calico/ipam/v2/handle/ipip-tunnel-addr-node-1";

/// The handle of node-1's tunnel address.
pub const TUNNEL_HANDLE: &str = r#"{"block":{"10.0.0.0/26":1},"deleted":false}"#;

/// Key of [`HANDLE`].
pub const HANDLE_KEY: &str = "/calico/ipam/v2/handle/k8s-pod-network.abc123";

/// The handle of the workload's address.
pub const HANDLE: &str = r#"{"block":{"10.0.0.0/26":1},"deleted":false}"#;

/// Every fixture as `(key, value)`, resources first, in the order above.
pub const ALL: [(&str, &str); 9] = [
    (POLICY_KEY, POLICY),
    (GLOBAL_POLICY_KEY, GLOBAL_POLICY),
    (POOL_KEY, POOL),
    (PROFILE_KEY, PROFILE),
    (WORKLOAD_ENDPOINT_KEY, WORKLOAD_ENDPOINT),
    (BLOCK_KEY, BLOCK),
    (AFFINITY_KEY, AFFINITY),
    (TUNNEL_HANDLE_KEY, TUNNEL_HANDLE),
    (HANDLE_KEY, HANDLE),
];
