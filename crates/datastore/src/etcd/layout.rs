//! Where each kind lives in etcd and how its values are encoded, following upstream Calico's
//! etcdv3 backend so that data written by upstream `calicoctl` reads back here and the other
//! way round.
//!
//! * `projectcalico.org/v3` kinds: `/calico/resources/v3/projectcalico.org/<plural>/[<ns>/]<name>`,
//!   the value being the resource JSON without `metadata.resourceVersion` (the revision is
//!   etcd's mod revision of the key; `uid` and `creationTimestamp` stay in the value).
//! * IPAM kinds, in upstream's v1 model form (the form upstream's IPAM code reads and writes):
//!   - `IPAMBlock` `10-0-0-0-26` → `/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26`
//!   - `BlockAffinity` `<node>-10-0-0-0-26` → `/calico/ipam/v2/host/<node>/ipv4/block/10.0.0.0-26`
//!   - `IPAMHandle` `<id>` → `/calico/ipam/v2/handle/<id>`
//!   - `IPAMConfiguration` `default` → `/calico/ipam/v2/config`
//!
//!   Our objects carry their content under `spec` (the v3 CRD-like form the IPAM crate uses);
//!   the codec translates between that and upstream's model JSON. The store-owned metadata
//!   (`uid`, `creationTimestamp`) travels in an extra `metadata` member that upstream's decoder
//!   ignores.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use calico_api::kind::{ALL_KINDS, Kind};

use serde_json::{Map, Value, json};

use crate::{DatastoreError, Key, Revision};

/// Root of every key this backend reads or writes.
pub const ROOT: &str = "/calico/";
/// Root of the `projectcalico.org/v3` resources.
pub const RESOURCES_PREFIX: &str = "/calico/resources/v3/projectcalico.org/";
/// Root of IPAM blocks (both families).
pub const BLOCK_PREFIX: &str = "/calico/ipam/v2/assignment/";
/// Root of block affinities.
pub const AFFINITY_PREFIX: &str = "/calico/ipam/v2/host/";
/// Root of IPAM handles.
pub const HANDLE_PREFIX: &str = "/calico/ipam/v2/handle/";
/// The IPAM configuration key.
pub const IPAM_CONFIG_KEY: &str = "/calico/ipam/v2/config";

/// The `apiVersion` of values decoded from IPAM keys.
const API_VERSION: &str = "projectcalico.org/v3";
const IPAM_CONFIG_NAME: &str = "default";

/// How a kind is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Resource(Kind),
    Block,
    Affinity,
    Handle,
    Config,
}

fn layout(kind: Kind) -> Layout {
    match kind {
        Kind::IpamBlock => Layout::Block,
        Kind::BlockAffinity => Layout::Affinity,
        Kind::IpamHandle => Layout::Handle,
        Kind::IpamConfiguration => Layout::Config,
        api => Layout::Resource(api),
    }
}

fn invalid(key: &Key, reason: impl Into<String>) -> DatastoreError {
    DatastoreError::InvalidValue {
        key: key.clone(),
        reason: reason.into(),
    }
}

/// Check a key can be laid out: non-empty parts without `/`.
fn check_key(key: &Key) -> Result<(), DatastoreError> {
    let reason = if key.name.is_empty() {
        "the name is empty"
    } else if key.namespace.as_deref() == Some("") {
        "the namespace is empty (use no namespace for cluster-scoped kinds)"
    } else if key.name.contains('/') || key.namespace.as_deref().is_some_and(|n| n.contains('/')) {
        "namespace and name must not contain '/'"
    } else {
        return Ok(());
    };
    Err(invalid(key, reason))
}

fn path_under(prefix: &str, segment: &str, key: &Key) -> String {
    match &key.namespace {
        Some(ns) => format!("{prefix}{segment}/{ns}/{}", key.name),
        None => format!("{prefix}{segment}/{}", key.name),
    }
}

/// The etcd key of `key`. For a `BlockAffinity`, `value` (when given) supplies the node and
/// CIDR from its spec, which resolves names that are ambiguous on their own (IPv6 blocks of
/// nodes whose names end in hex digits).
pub fn encode_key(key: &Key, value: Option<&Value>) -> Result<String, DatastoreError> {
    check_key(key)?;
    let global_only = |what: &str| -> Result<(), DatastoreError> {
        match key.namespace {
            Some(_) => Err(invalid(key, format!("{what} is not namespaced"))),
            None => Ok(()),
        }
    };
    match layout(key.kind) {
        Layout::Resource(kind) => Ok(path_under(RESOURCES_PREFIX, kind.plural(), key)),
        Layout::Block => {
            global_only(Kind::IpamBlock.as_str())?;
            let cidr = Cidr::from_name(&key.name).ok_or_else(|| {
                invalid(
                    key,
                    "an IPAMBlock name must be a CIDR written with '-' (10-0-0-0-26)",
                )
            })?;
            Ok(format!(
                "{BLOCK_PREFIX}ipv{}/block/{}",
                cidr.version(),
                cidr.segment()
            ))
        }
        Layout::Affinity => {
            global_only(Kind::BlockAffinity.as_str())?;
            let (node, cidr) = affinity_parts(&key.name, value).ok_or_else(|| {
                invalid(
                    key,
                    "a BlockAffinity name must be <node>-<block CIDR written with '-'>",
                )
            })?;
            Ok(format!(
                "{AFFINITY_PREFIX}{node}/ipv{}/block/{}",
                cidr.version(),
                cidr.segment()
            ))
        }
        Layout::Handle => {
            global_only(Kind::IpamHandle.as_str())?;
            Ok(format!("{HANDLE_PREFIX}{}", key.name))
        }
        Layout::Config => {
            global_only(Kind::IpamConfiguration.as_str())?;
            if key.name != IPAM_CONFIG_NAME {
                return Err(invalid(
                    key,
                    "the only IPAMConfiguration is named \"default\"",
                ));
            }
            Ok(IPAM_CONFIG_KEY.to_string())
        }
    }
}

/// The prefix under which every key of `kind` (in `namespace`, when given) lives. Keys under it
/// may still belong to other kinds or namespaces: decode and filter.
pub fn kind_prefix(kind: Kind, namespace: Option<&str>) -> String {
    let with_ns = |base: String| match namespace {
        Some(ns) => format!("{base}{ns}/"),
        None => base,
    };
    match layout(kind) {
        Layout::Resource(k) if k.is_namespaced() => {
            with_ns(format!("{RESOURCES_PREFIX}{}/", k.plural()))
        }
        Layout::Resource(k) => format!("{RESOURCES_PREFIX}{}/", k.plural()),
        Layout::Block => BLOCK_PREFIX.to_string(),
        Layout::Affinity => AFFINITY_PREFIX.to_string(),
        Layout::Handle => HANDLE_PREFIX.to_string(),
        Layout::Config => IPAM_CONFIG_KEY.to_string(),
    }
}

/// The key an etcd key stands for, or None for keys outside this model (upstream's Felix and
/// BGP configuration, unknown plurals, malformed paths).
pub fn decode_key(etcd_key: &str) -> Option<Key> {
    if let Some(rest) = etcd_key.strip_prefix(RESOURCES_PREFIX) {
        let (plural, rest) = rest.split_once('/')?;
        let kind = ALL_KINDS.into_iter().find(|k| k.plural() == plural)?;
        return split_name(kind, rest);
    }
    if let Some(rest) = etcd_key.strip_prefix(BLOCK_PREFIX) {
        let (_family, segment) = rest.split_once("/block/")?;
        let cidr = Cidr::from_segment(segment)?;
        return Some(Key::global(Kind::IpamBlock, cidr.name()));
    }
    if let Some(rest) = etcd_key.strip_prefix(AFFINITY_PREFIX) {
        let (node, rest) = rest.split_once('/')?;
        let (_family, segment) = rest.split_once("/block/")?;
        let cidr = Cidr::from_segment(segment)?;
        if node.is_empty() {
            return None;
        }
        return Some(Key::global(
            Kind::BlockAffinity,
            format!("{node}-{}", cidr.name()),
        ));
    }
    if let Some(id) = etcd_key.strip_prefix(HANDLE_PREFIX) {
        return (!id.is_empty() && !id.contains('/')).then(|| Key::global(Kind::IpamHandle, id));
    }
    if etcd_key == IPAM_CONFIG_KEY {
        return Some(Key::global(Kind::IpamConfiguration, IPAM_CONFIG_NAME));
    }
    None
}

fn split_name(kind: Kind, rest: &str) -> Option<Key> {
    let parts: Vec<&str> = rest.split('/').collect();
    match parts[..] {
        [name] if !name.is_empty() => Some(Key::global(kind, name)),
        [ns, name] if !ns.is_empty() && !name.is_empty() => Some(Key::namespaced(kind, ns, name)),
        _ => None,
    }
}

/// An IPAM block CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then_some(Self { addr, len })
    }

    fn parse(text: &str) -> Option<Self> {
        let (addr, len) = text.split_once('/')?;
        Self::new(addr.parse().ok()?, len.parse().ok()?)
    }

    /// From the IPAM crate's object name: every `.`, `:` and `/` written as `-`.
    fn from_name(name: &str) -> Option<Self> {
        let (addr, len) = name.rsplit_once('-')?;
        let len: u8 = len.parse().ok()?;
        if addr.split('-').count() == 4
            && let Ok(v4) = addr.replace('-', ".").parse::<Ipv4Addr>()
        {
            return Self::new(IpAddr::V4(v4), len);
        }
        let v6: Ipv6Addr = addr.replace('-', ":").parse().ok()?;
        Self::new(IpAddr::V6(v6), len)
    }

    /// From upstream's key segment: the CIDR with its `/` written as `-`.
    fn from_segment(segment: &str) -> Option<Self> {
        let (addr, len) = segment.rsplit_once('-')?;
        Self::new(addr.parse().ok()?, len.parse().ok()?)
    }

    fn version(&self) -> u8 {
        if self.addr.is_ipv4() { 4 } else { 6 }
    }

    fn text(&self) -> String {
        format!("{}/{}", self.addr, self.len)
    }

    fn segment(&self) -> String {
        format!("{}-{}", self.addr, self.len)
    }

    fn name(&self) -> String {
        self.text().replace(['.', ':', '/'], "-")
    }
}

/// The node and block of an affinity name `<node>-<cidr name>`, preferring the value's spec.
fn affinity_parts(name: &str, value: Option<&Value>) -> Option<(String, Cidr)> {
    if let Some(spec) = value.and_then(|v| v.get("spec")) {
        let node = spec.get("node").and_then(Value::as_str);
        let cidr = spec
            .get("cidr")
            .and_then(Value::as_str)
            .and_then(Cidr::parse);
        if let (Some(node), Some(cidr)) = (node, cidr)
            && !node.is_empty()
            && !node.contains('/')
            && format!("{node}-{}", cidr.name()) == name
        {
            return Some((node.to_string(), cidr));
        }
    }
    // Split at each '-' from the right: the shortest suffix that is a canonical CIDR name wins.
    let dashes: Vec<usize> = name.match_indices('-').map(|(i, _)| i).collect();
    for &i in dashes.iter().rev() {
        let (node, suffix) = (&name[..i], &name[i + 1..]);
        if node.is_empty() {
            break;
        }
        if let Some(cidr) = Cidr::from_name(suffix)
            && cidr.name() == suffix
        {
            return Some((node.to_string(), cidr));
        }
    }
    None
}

/// Remove `metadata.resourceVersion` (the revision lives in etcd) from a value to store.
fn strip_revision(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("resourceVersion");
    }
    v
}

/// The bytes to store for `value` (a JSON object with stamped metadata) at `key`.
pub fn encode_value(key: &Key, value: &Value) -> Result<Vec<u8>, DatastoreError> {
    let stored = match layout(key.kind) {
        Layout::Resource(_) => strip_revision(value),
        ipam => {
            let spec = match value.get("spec") {
                Some(Value::Object(spec)) => spec.clone(),
                None | Some(Value::Null) => Map::new(),
                Some(_) => return Err(invalid(key, "spec must be a JSON object")),
            };
            let mut model = match ipam {
                Layout::Block => block_to_model(spec),
                Layout::Affinity => json!({
                    "state": spec.get("state").cloned().unwrap_or(json!("confirmed")),
                    "deleted": spec.get("deleted").is_some_and(is_true),
                }),
                Layout::Handle => json!({
                    "block": spec.get("block").cloned().unwrap_or(json!({})),
                    "deleted": spec.get("deleted").is_some_and(is_true),
                }),
                _ => config_to_model(&spec),
            };
            if let Some(Value::Object(meta)) = strip_revision(value).get("metadata") {
                let mut meta = meta.clone();
                meta.shift_remove("name");
                if !meta.is_empty() {
                    model["metadata"] = Value::Object(meta);
                }
            }
            model
        }
    };
    Ok(serde_json::to_vec(&stored).expect("serializing a JSON value cannot fail"))
}

fn is_true(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s == "true",
        _ => false,
    }
}

fn block_to_model(spec: Map<String, Value>) -> Value {
    let mut model = spec;
    // Upstream's Go model always has these members; null is what it writes for "none".
    model.entry("affinity").or_insert(Value::Null);
    for (field, empty) in [
        ("strictAffinity", json!(false)),
        ("allocations", json!([])),
        ("unallocated", json!([])),
        ("attributes", json!([])),
        ("deleted", json!(false)),
        ("sequenceNumber", json!(0)),
    ] {
        model.entry(field).or_insert(empty);
    }
    Value::Object(model)
}

fn config_to_model(spec: &Map<String, Value>) -> Value {
    // Upstream: `strict_affinity` and `auto_allocate_blocks` (omitempty), `maxBlocksPerHost`.
    let mut model = Map::new();
    if spec.get("strictAffinity").is_some_and(is_true) {
        model.insert("strict_affinity".into(), json!(true));
    }
    if spec.get("autoAllocateBlocks").is_none_or(is_true) {
        model.insert("auto_allocate_blocks".into(), json!(true));
    }
    if let Some(n) = spec.get("maxBlocksPerHost").and_then(Value::as_u64)
        && n > 0
    {
        model.insert("maxBlocksPerHost".into(), json!(n));
    }
    Value::Object(model)
}

fn corrupt(key: &Key, reason: impl Into<String>) -> DatastoreError {
    DatastoreError::Corrupt {
        key: key.clone(),
        reason: reason.into(),
    }
}

/// The value stored at `key` (decoded from `etcd_key`'s bytes), with
/// `metadata.resourceVersion` set to `mod_revision`.
pub fn decode_value(
    key: &Key,
    etcd_key: &str,
    bytes: &[u8],
    mod_revision: Revision,
) -> Result<Value, DatastoreError> {
    let parsed: Value = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(key, format!("stored value is not valid JSON: {e}")))?;
    let Value::Object(mut obj) = parsed else {
        return Err(corrupt(key, "stored value is not a JSON object"));
    };
    let rv = Value::String(mod_revision.to_string());
    let lay = layout(key.kind);
    if matches!(lay, Layout::Resource(_)) {
        match obj.get_mut("metadata") {
            Some(Value::Object(meta)) => {
                meta.insert("resourceVersion".into(), rv);
            }
            None => {
                let at = obj.keys().position(|k| k == "spec").unwrap_or(obj.len());
                obj.shift_insert(at, "metadata".into(), json!({ "resourceVersion": rv }));
            }
            Some(_) => return Err(corrupt(key, "metadata is not a JSON object")),
        }
        return Ok(Value::Object(obj));
    }

    let mut meta = match obj.shift_remove("metadata") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    meta.shift_insert(0, "name".into(), Value::String(key.name.clone()));
    meta.insert("resourceVersion".into(), rv);
    let spec = match lay {
        Layout::Block => {
            obj.shift_remove("hostAffinity");
            // Go writes null for absent pointers, maps and slices; the spec form omits them.
            obj.retain(|_, v| !v.is_null());
            if let Some(Value::Array(attrs)) = obj.get_mut("attributes") {
                for a in attrs.iter_mut().filter_map(Value::as_object_mut) {
                    a.retain(|_, v| !v.is_null());
                }
            }
            Value::Object(obj)
        }
        Layout::Affinity => {
            let (node, cidr) = affinity_from_etcd_key(etcd_key)
                .ok_or_else(|| corrupt(key, "malformed block affinity key"))?;
            json!({
                "type": "host",
                "state": obj.get("state").cloned().unwrap_or(json!("")),
                "node": node,
                "cidr": cidr.text(),
                "deleted": if obj.get("deleted").is_some_and(is_true) { "true" } else { "false" },
            })
        }
        Layout::Handle => {
            let block = match obj.get("block") {
                Some(b @ Value::Object(_)) => b.clone(),
                _ => json!({}),
            };
            json!({
                "handleID": key.name,
                "block": block,
                "deleted": obj.get("deleted").is_some_and(is_true),
            })
        }
        _ => json!({
            "strictAffinity": obj.get("strict_affinity").is_some_and(is_true),
            "autoAllocateBlocks": obj.get("auto_allocate_blocks").is_some_and(is_true),
            "maxBlocksPerHost": obj.get("maxBlocksPerHost").and_then(Value::as_u64).unwrap_or(0),
        }),
    };
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": key.kind.as_str(),
        "metadata": meta,
        "spec": spec,
    }))
}

fn affinity_from_etcd_key(etcd_key: &str) -> Option<(String, Cidr)> {
    let rest = etcd_key.strip_prefix(AFFINITY_PREFIX)?;
    let (node, rest) = rest.split_once('/')?;
    let (_family, segment) = rest.split_once("/block/")?;
    Some((node.to_string(), Cidr::from_segment(segment)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_keys_follow_upstream() {
        let k = Key::namespaced(Kind::NetworkPolicy, "default", "allow-dns");
        let e = encode_key(&k, None).unwrap();
        assert_eq!(
            e,
            "/calico/resources/v3/projectcalico.org/networkpolicies/default/allow-dns"
        );
        assert_eq!(decode_key(&e), Some(k));
        let k = Key::global(Kind::IpPool, "default-ipv4-ippool");
        let e = encode_key(&k, None).unwrap();
        assert_eq!(
            e,
            "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool"
        );
        assert_eq!(decode_key(&e), Some(k));
        let k = Key::namespaced(Kind::WorkloadEndpoint, "w1", "i1");
        let e = encode_key(&k, None).unwrap();
        assert_eq!(
            e,
            "/calico/resources/v3/projectcalico.org/workloadendpoints/w1/i1"
        );
        assert_eq!(decode_key(&e), Some(k));
        assert_eq!(decode_key("/calico/felix/v1/host/h1/config/x"), None);
        assert_eq!(
            decode_key("/calico/resources/v3/projectcalico.org/unknowns/x"),
            None
        );
        assert!(encode_key(&Key::global(Kind::Node, "a/b"), None).is_err());
    }

    #[test]
    fn ipam_keys_follow_upstream() {
        let b = Key::global(Kind::IpamBlock, "10-1-2-0-26");
        let e = encode_key(&b, None).unwrap();
        assert_eq!(e, "/calico/ipam/v2/assignment/ipv4/block/10.1.2.0-26");
        assert_eq!(decode_key(&e), Some(b));
        let b6 = Key::global(Kind::IpamBlock, "fd00--1-0-122");
        let e = encode_key(&b6, None).unwrap();
        assert_eq!(e, "/calico/ipam/v2/assignment/ipv6/block/fd00::1:0-122");
        assert_eq!(decode_key(&e), Some(b6));

        let a = Key::global(Kind::BlockAffinity, "node-1-10-1-2-0-26");
        let e = encode_key(&a, None).unwrap();
        assert_eq!(e, "/calico/ipam/v2/host/node-1/ipv4/block/10.1.2.0-26");
        assert_eq!(decode_key(&e), Some(a));
        // IPv6 with a node name ending in hex digits: ambiguous alone, exact with the spec.
        let a6 = Key::global(Kind::BlockAffinity, "worker-a-fd00---122");
        let spec = json!({"spec": {"node": "worker-a", "cidr": "fd00::/122"}});
        let e = encode_key(&a6, Some(&spec)).unwrap();
        assert_eq!(e, "/calico/ipam/v2/host/worker-a/ipv6/block/fd00::-122");
        assert_eq!(decode_key(&e), Some(a6));

        let h = Key::global(Kind::IpamHandle, "k8s-pod-network.abc");
        assert_eq!(
            encode_key(&h, None).unwrap(),
            "/calico/ipam/v2/handle/k8s-pod-network.abc"
        );
        let c = Key::global(Kind::IpamConfiguration, "default");
        assert_eq!(encode_key(&c, None).unwrap(), "/calico/ipam/v2/config");
        assert_eq!(decode_key("/calico/ipam/v2/config"), Some(c));
        assert!(encode_key(&Key::global(Kind::IpamBlock, "nope"), None).is_err());
    }

    #[test]
    fn resource_values_drop_and_restore_the_revision() {
        let k = Key::global(Kind::GlobalNetworkPolicy, "g");
        let v = json!({"kind": "GlobalNetworkPolicy",
                       "metadata": {"name": "g", "uid": "u", "resourceVersion": "7"},
                       "spec": {"order": 1}});
        let bytes = encode_value(&k, &v).unwrap();
        let stored: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(stored["metadata"].get("resourceVersion"), None);
        assert_eq!(stored["metadata"]["uid"], "u");
        let e = encode_key(&k, None).unwrap();
        let back = decode_value(&k, &e, &bytes, 9).unwrap();
        assert_eq!(back["metadata"]["resourceVersion"], "9");
        assert_eq!(back["spec"], v["spec"]);
    }

    #[test]
    fn upstream_block_model_translates() {
        let k = Key::global(Kind::IpamBlock, "10-0-0-0-30");
        let e = encode_key(&k, None).unwrap();
        let upstream = br#"{"cidr":"10.0.0.0/30","affinity":"host:n1","strictAffinity":false,
            "allocations":[0,null,null,null],"unallocated":[1,2,3],
            "attributes":[{"handle_id":"h1","secondary":null}],"deleted":false,
            "sequenceNumber":3,"sequenceNumberForAllocation":{"0":2}}"#;
        let v = decode_value(&k, &e, upstream, 5).unwrap();
        assert_eq!(v["kind"], "IPAMBlock");
        assert_eq!(v["metadata"]["name"], "10-0-0-0-30");
        assert_eq!(v["spec"]["allocations"], json!([0, null, null, null]));
        assert_eq!(v["spec"]["attributes"], json!([{"handle_id": "h1"}]));
        assert_eq!(v["spec"]["affinity"], "host:n1");
        let again: Value = serde_json::from_slice(&encode_value(&k, &v).unwrap()).unwrap();
        assert_eq!(again["cidr"], "10.0.0.0/30");
        assert_eq!(again["unallocated"], json!([1, 2, 3]));
        assert_eq!(again.get("kind"), None);
    }

    #[test]
    fn affinity_handle_and_config_translate() {
        let a = Key::global(Kind::BlockAffinity, "n1-10-0-0-0-26");
        let e = encode_key(&a, None).unwrap();
        let v = decode_value(&a, &e, br#"{"state":"confirmed","deleted":false}"#, 3).unwrap();
        assert_eq!(v["spec"]["node"], "n1");
        assert_eq!(v["spec"]["cidr"], "10.0.0.0/26");
        assert_eq!(v["spec"]["state"], "confirmed");
        let model: Value = serde_json::from_slice(&encode_value(&a, &v).unwrap()).unwrap();
        assert_eq!(model["state"], "confirmed");
        assert_eq!(model["deleted"], false);

        let h = Key::global(Kind::IpamHandle, "h1");
        let e = encode_key(&h, None).unwrap();
        let v = decode_value(&h, &e, br#"{"block":{"10.0.0.0/26":2},"deleted":false}"#, 3).unwrap();
        assert_eq!(v["spec"]["handleID"], "h1");
        assert_eq!(v["spec"]["block"]["10.0.0.0/26"], 2);

        let c = Key::global(Kind::IpamConfiguration, "default");
        let v = decode_value(&c, IPAM_CONFIG_KEY, br#"{"strict_affinity":true}"#, 3).unwrap();
        assert_eq!(v["spec"]["strictAffinity"], true);
        assert_eq!(v["spec"]["autoAllocateBlocks"], false);
        let model: Value = serde_json::from_slice(
            &encode_value(&c, &json!({"spec": {"autoAllocateBlocks": true}})).unwrap(),
        )
        .unwrap();
        assert_eq!(model, json!({"auto_allocate_blocks": true}));
    }
}
