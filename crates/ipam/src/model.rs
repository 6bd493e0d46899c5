//! The IPAM objects as stored: upstream libcalico-go's data model (`IPAMBlock`,
//! `BlockAffinity`, `IPAMHandle`, `IPAMConfig`) in its v3 resource form, so the etcd backend
//! can map each to Calico's layout one to one.

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_datastore::{Key, Kind};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::cidr::{self, Reservations};

/// `apiVersion` of the IPAM objects.
pub const API_VERSION: &str = "projectcalico.org/v3";
/// Name of the single IPAM configuration object.
pub const CONFIG_NAME: &str = "default";

/// Affinity states.
pub const STATE_PENDING: &str = "pending";
/// A claim that completed: the block exists and is the host's.
pub const STATE_CONFIRMED: &str = "confirmed";
/// A release in progress.
pub const STATE_PENDING_DELETION: &str = "pendingDeletion";

/// Secondary attribute keys, as upstream's `ipam.Attribute*` constants.
pub const ATTR_NODE: &str = "node";
/// The workload's namespace.
pub const ATTR_NAMESPACE: &str = "namespace";
/// The workload (pod, task) name.
pub const ATTR_WORKLOAD: &str = "pod";
/// The container id.
pub const ATTR_CONTAINER_ID: &str = "containerID";
/// The interface within the container.
pub const ATTR_INTERFACE: &str = "interface";
/// What the address is for (tunnel addresses set this).
pub const ATTR_TYPE: &str = "type";

/// The metadata IPAM objects carry; the store fills in uid, creation time and revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The object's name.
    #[serde(rename = "name")]
    pub name: String,
    /// Unique id assigned by the datastore.
    #[serde(rename = "uid", default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The revision of the last write, as the store recorded it.
    #[serde(
        rename = "resourceVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_version: Option<String>,
    /// When the object was created (RFC 3339).
    #[serde(
        rename = "creationTimestamp",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub creation_timestamp: Option<String>,
}

/// A stored IPAM object: type meta, metadata and spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object<S> {
    /// Always [`API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// The kind.
    #[serde(rename = "kind")]
    pub kind: String,
    /// Metadata.
    #[serde(rename = "metadata")]
    pub metadata: Meta,
    /// The content.
    #[serde(rename = "spec")]
    pub spec: S,
}

impl<S: Serialize> Object<S> {
    /// A new object of `kind` named `name`.
    pub fn new(kind: Kind, name: String, spec: S) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: kind.as_str().to_owned(),
            metadata: Meta {
                name,
                ..Meta::default()
            },
            spec,
        }
    }

    /// The JSON value to store.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Who and what an allocation is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationAttribute {
    /// The handle owning the allocation.
    #[serde(rename = "handle_id", default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// Free-form attributes: node, namespace, workload, container id, ...
    #[serde(
        rename = "secondary",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub secondary: BTreeMap<String, String>,
}

/// Spec of an `IPAMBlock`: one block's allocations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSpec {
    /// The block's CIDR.
    #[serde(rename = "cidr")]
    pub cidr: String,
    /// `host:<node>` when the block is affine to a node.
    #[serde(rename = "affinity", default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// When the affinity was claimed (RFC 3339).
    #[serde(
        rename = "affinityClaimTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub affinity_claim_time: Option<String>,
    /// Only the affine host may allocate from the block.
    #[serde(rename = "strictAffinity", default)]
    pub strict_affinity: bool,
    /// Per ordinal: the index into `attributes` of its allocation, or null when free.
    #[serde(rename = "allocations", default)]
    pub allocations: Vec<Option<usize>>,
    /// Free ordinals, in the order they will be handed out.
    #[serde(rename = "unallocated", default)]
    pub unallocated: Vec<usize>,
    /// Attributes referenced by `allocations`.
    #[serde(rename = "attributes", default)]
    pub attributes: Vec<AllocationAttribute>,
    /// Bumped by every change of the block.
    #[serde(rename = "sequenceNumber", default)]
    pub sequence_number: u64,
    /// The sequence number at which each allocated ordinal was handed out.
    #[serde(rename = "sequenceNumberForAllocation", default)]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    /// Set while the block is being deleted.
    #[serde(rename = "deleted", default)]
    pub deleted: bool,
}

/// Spec of a `BlockAffinity`: a node's claim on a block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffinitySpec {
    /// `host` (the only affinity type here).
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub affinity_type: String,
    /// `pending`, `confirmed` or `pendingDeletion`.
    #[serde(rename = "state")]
    pub state: String,
    /// The node.
    #[serde(rename = "node")]
    pub node: String,
    /// The block's CIDR.
    #[serde(rename = "cidr")]
    pub cidr: String,
    /// `"true"` while being deleted (a string, as upstream keeps it).
    #[serde(rename = "deleted", default)]
    pub deleted: String,
}

/// Spec of an `IPAMHandle`: which blocks hold a handle's addresses, and how many in each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleSpec {
    /// The handle id.
    #[serde(rename = "handleID")]
    pub handle_id: String,
    /// Block CIDR to the number of the handle's addresses in it.
    #[serde(rename = "block", default)]
    pub block: BTreeMap<String, u64>,
    /// Set while the handle is being deleted.
    #[serde(rename = "deleted", default)]
    pub deleted: bool,
}

/// Spec of the `IPAMConfig` object `default`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSpec {
    /// Never borrow addresses from other nodes' blocks.
    #[serde(rename = "strictAffinity", default)]
    pub strict_affinity: bool,
    /// Claim new blocks when the affine ones are full.
    #[serde(rename = "autoAllocateBlocks", default = "default_true")]
    pub auto_allocate_blocks: bool,
    /// Most blocks a node may be affine to (per family); 0 means no limit.
    #[serde(rename = "maxBlocksPerHost", default)]
    pub max_blocks_per_host: u32,
}

fn default_true() -> bool {
    true
}

impl Default for ConfigSpec {
    fn default() -> Self {
        Self {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 0,
        }
    }
}

/// A stored block.
pub type Block = Object<BlockSpec>;
/// A stored affinity.
pub type Affinity = Object<AffinitySpec>;
/// A stored handle.
pub type Handle = Object<HandleSpec>;
/// The stored configuration.
pub type Config = Object<ConfigSpec>;

/// The `affinity` value of a block affine to `node`.
pub fn host_affinity(node: &str) -> String {
    format!("host:{node}")
}

/// Key of the block with CIDR `cidr`.
pub fn block_key(cidr: &IpNet) -> Key {
    Key::global(Kind::IpamBlock, cidr::cidr_to_name(cidr))
}

/// Name of `node`'s affinity to block `cidr`.
pub fn affinity_name(node: &str, cidr: &IpNet) -> String {
    format!("{node}-{}", cidr::cidr_to_name(cidr))
}

/// Key of `node`'s affinity to block `cidr`.
pub fn affinity_key(node: &str, cidr: &IpNet) -> Key {
    Key::global(Kind::BlockAffinity, affinity_name(node, cidr))
}

/// Key of handle `handle_id`.
pub fn handle_key(handle_id: &str) -> Key {
    Key::global(Kind::IpamHandle, handle_id)
}

/// Key of the IPAM configuration.
pub fn config_key() -> Key {
    Key::global(Kind::IpamConfiguration, CONFIG_NAME)
}

/// Now, RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl BlockSpec {
    /// A new, empty block for `cidr`, affine to `node` when given.
    pub fn new(cidr: &IpNet, node: Option<&str>, strict_affinity: bool) -> Self {
        let n = usize::try_from(cidr::num_addresses(cidr)).unwrap_or(usize::MAX);
        Self {
            cidr: cidr.to_string(),
            affinity: node.map(host_affinity),
            affinity_claim_time: node.map(|_| now_rfc3339()),
            strict_affinity,
            allocations: vec![None; n],
            unallocated: (0..n).collect(),
            attributes: Vec::new(),
            sequence_number: 0,
            sequence_number_for_allocation: BTreeMap::new(),
            deleted: false,
        }
    }

    /// The block's CIDR, parsed.
    pub fn net(&self) -> Option<IpNet> {
        self.cidr.parse::<IpNet>().ok()
    }

    /// The node the block is affine to, if any.
    pub fn affine_node(&self) -> Option<&str> {
        self.affinity
            .as_deref()
            .and_then(|a| a.strip_prefix("host:"))
    }

    /// Number of allocated ordinals.
    pub fn in_use(&self) -> usize {
        self.allocations.iter().filter(|a| a.is_some()).count()
    }

    /// Whether nothing is allocated.
    pub fn is_empty(&self) -> bool {
        self.allocations.iter().all(Option::is_none)
    }

    /// The attribute of the allocation at `ordinal`, when allocated.
    pub fn attribute_of(&self, ordinal: usize) -> Option<&AllocationAttribute> {
        let idx = (*self.allocations.get(ordinal)?)?;
        self.attributes.get(idx)
    }

    /// Ordinals whose allocation belongs to `handle_id`.
    pub fn ordinals_of_handle(&self, handle_id: &str) -> Vec<usize> {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(|(ord, a)| {
                let attr = self.attributes.get((*a)?)?;
                (attr.handle_id.as_deref() == Some(handle_id)).then_some(ord)
            })
            .collect()
    }

    /// Number of free ordinals not reserved.
    pub fn free_count(&self, net: &IpNet, reserved: &Reservations) -> usize {
        self.unallocated
            .iter()
            .filter(|&&o| !reserved.contains(cidr::ip_at(net, o)))
            .count()
    }

    /// Allocate up to `n` free, unreserved ordinals (in `unallocated` order) to `attr`; returns
    /// the addresses.
    pub fn allocate(
        &mut self,
        net: &IpNet,
        n: usize,
        attr: AllocationAttribute,
        reserved: &Reservations,
    ) -> Vec<IpAddr> {
        self.allocate_ordinals(n, attr, reserved, net)
            .iter()
            .map(|&o| cidr::ip_at(net, o))
            .collect()
    }

    /// [`BlockSpec::allocate`], returning the ordinals.
    pub(crate) fn allocate_ordinals(
        &mut self,
        n: usize,
        attr: AllocationAttribute,
        reserved: &Reservations,
        net: &IpNet,
    ) -> Vec<usize> {
        let mut picked = Vec::with_capacity(n);
        let mut keep = Vec::with_capacity(self.unallocated.len());
        for &ord in &self.unallocated {
            if picked.len() < n
                && ord < self.allocations.len()
                && self.allocations[ord].is_none()
                && !reserved.contains(cidr::ip_at(net, ord))
            {
                picked.push(ord);
            } else {
                keep.push(ord);
            }
        }
        if picked.is_empty() {
            return picked;
        }
        self.unallocated = keep;
        let idx = self.find_or_add_attribute(attr);
        self.sequence_number += 1;
        for &ord in &picked {
            self.allocations[ord] = Some(idx);
            self.sequence_number_for_allocation
                .insert(ord.to_string(), self.sequence_number);
        }
        picked
    }

    /// Allocate one specific ordinal; false when it is taken.
    pub fn allocate_ordinal(&mut self, ord: usize, attr: AllocationAttribute) -> bool {
        if ord >= self.allocations.len() || self.allocations[ord].is_some() {
            return false;
        }
        self.unallocated.retain(|&o| o != ord);
        let idx = self.find_or_add_attribute(attr);
        self.sequence_number += 1;
        self.allocations[ord] = Some(idx);
        self.sequence_number_for_allocation
            .insert(ord.to_string(), self.sequence_number);
        true
    }

    /// Free `ordinals`; returns, per handle id (`""` for none), how many were freed.
    pub fn release(&mut self, ordinals: &[usize]) -> BTreeMap<String, u64> {
        let mut freed: BTreeMap<String, u64> = BTreeMap::new();
        for &ord in ordinals {
            let Some(Some(idx)) = self.allocations.get(ord).copied() else {
                continue;
            };
            let handle = self
                .attributes
                .get(idx)
                .and_then(|a| a.handle_id.clone())
                .unwrap_or_default();
            *freed.entry(handle).or_default() += 1;
            self.allocations[ord] = None;
            self.unallocated.push(ord);
            self.sequence_number_for_allocation.remove(&ord.to_string());
        }
        if !freed.is_empty() {
            self.sequence_number += 1;
            self.compact_attributes();
        }
        freed
    }

    fn find_or_add_attribute(&mut self, attr: AllocationAttribute) -> usize {
        if let Some(i) = self.attributes.iter().position(|a| *a == attr) {
            return i;
        }
        self.attributes.push(attr);
        self.attributes.len() - 1
    }

    /// Drop attributes no allocation refers to, renumbering the references.
    fn compact_attributes(&mut self) {
        let mut used = vec![false; self.attributes.len()];
        for i in self.allocations.iter().flatten() {
            if let Some(u) = used.get_mut(*i) {
                *u = true;
            }
        }
        let mut remap = vec![0usize; self.attributes.len()];
        let mut next = 0;
        for (i, u) in used.iter().enumerate() {
            if *u {
                remap[i] = next;
                next += 1;
            }
        }
        let mut i = 0;
        self.attributes.retain(|_| {
            let keep = used[i];
            i += 1;
            keep
        });
        for a in self.allocations.iter_mut().flatten() {
            *a = remap.get(*a).copied().unwrap_or(0);
        }
    }
}

/// Outcome of [`allocate_in_value`].
pub(crate) enum InPlace {
    /// Nothing to take from this block (not allowed, deleted or no free address).
    Skip,
    /// These ordinals were allocated in the value.
    Done(Vec<usize>),
    /// The value is not in the usual shape: use the typed model.
    Unusual,
}

/// [`BlockSpec::allocate_ordinals`] applied directly to a stored `IPAMBlock` value, with the
/// affinity checks of allocation (`affine_to`: only from that node's block; otherwise never
/// from a strict-affinity block). The value is left untouched unless `Done` is returned; the
/// result is what the typed model would store, field for field.
pub(crate) fn allocate_in_value(
    value: &mut serde_json::Value,
    net: &IpNet,
    n: usize,
    attr: &AllocationAttribute,
    reserved: &Reservations,
    affine_to: Option<&str>,
) -> InPlace {
    use serde_json::Value;
    let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) else {
        return InPlace::Unusual;
    };
    let affinity = match spec.get("affinity") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return InPlace::Unusual,
    };
    let flag = |v: Option<&Value>| match v {
        None | Some(Value::Null) => Some(false),
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => None,
    };
    let (Some(strict), Some(deleted)) =
        (flag(spec.get("strictAffinity")), flag(spec.get("deleted")))
    else {
        return InPlace::Unusual;
    };
    let allowed = match affine_to {
        Some(node) => affinity.and_then(|a| a.strip_prefix("host:")) == Some(node),
        None => !strict,
    };
    if !allowed || deleted {
        return InPlace::Skip;
    }
    // Pick, without changing anything yet.
    let (Some(Value::Array(allocs)), Some(Value::Array(unalloc))) =
        (spec.get("allocations"), spec.get("unallocated"))
    else {
        return InPlace::Unusual;
    };
    let mut picked = Vec::with_capacity(n);
    for (i, o) in unalloc.iter().enumerate() {
        let Some(ord) = o.as_u64().and_then(|o| usize::try_from(o).ok()) else {
            return InPlace::Unusual;
        };
        if picked.len() < n
            && allocs.get(ord).is_some_and(Value::is_null)
            && !reserved.contains(cidr::ip_at(net, ord))
        {
            picked.push((i, ord));
        }
    }
    if picked.is_empty() {
        return InPlace::Skip;
    }
    let Some(seq) = spec
        .get("sequenceNumber")
        .and_then(Value::as_u64)
        .and_then(|s| s.checked_add(1))
    else {
        return InPlace::Unusual;
    };
    let attr_value = serde_json::to_value(attr).unwrap_or_default();
    let idx = match spec.get("attributes") {
        Some(Value::Array(attrs)) => {
            // Only attributes that decode as such count (as in the typed model).
            let mut found = None;
            for (i, a) in attrs.iter().enumerate() {
                if !a.is_object() {
                    return InPlace::Unusual;
                }
                if *a == attr_value {
                    found = Some(i);
                    break;
                }
            }
            found.unwrap_or(attrs.len())
        }
        _ => return InPlace::Unusual,
    };
    if !matches!(
        spec.get("sequenceNumberForAllocation"),
        Some(Value::Object(_))
    ) {
        return InPlace::Unusual;
    }
    // Commit the change.
    if let Some(Value::Array(unalloc)) = spec.get_mut("unallocated") {
        let mut k = 0;
        let mut i = 0;
        unalloc.retain(|_| {
            let drop = picked.get(k).is_some_and(|&(pi, _)| pi == i);
            if drop {
                k += 1;
            }
            i += 1;
            !drop
        });
    }
    if let Some(Value::Array(allocs)) = spec.get_mut("allocations") {
        for &(_, ord) in &picked {
            allocs[ord] = Value::from(idx);
        }
    }
    if let Some(Value::Array(attrs)) = spec.get_mut("attributes")
        && idx == attrs.len()
    {
        attrs.push(attr_value);
    }
    spec.insert("sequenceNumber".into(), Value::from(seq));
    if let Some(Value::Object(m)) = spec.get_mut("sequenceNumberForAllocation") {
        for &(_, ord) in &picked {
            m.insert(ord.to_string(), Value::from(seq));
        }
        m.sort_keys();
    }
    InPlace::Done(picked.into_iter().map(|(_, o)| o).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(h: &str) -> AllocationAttribute {
        AllocationAttribute {
            handle_id: Some(h.to_owned()),
            secondary: BTreeMap::new(),
        }
    }

    #[test]
    fn allocate_release_compacts_attributes() {
        let net: IpNet = "10.0.0.0/29".parse().unwrap();
        let mut b = BlockSpec::new(&net, Some("n1"), false);
        let none = Reservations::default();
        let a = b.allocate(&net, 2, attr("a"), &none);
        let c = b.allocate(&net, 1, attr("c"), &none);
        assert_eq!(a.len(), 2);
        assert_eq!(c[0].to_string(), "10.0.0.2");
        let freed = b.release(&b.ordinals_of_handle("a"));
        assert_eq!(freed.get("a"), Some(&2));
        assert_eq!(b.attributes.len(), 1);
        assert_eq!(b.attribute_of(2).unwrap().handle_id.as_deref(), Some("c"));
        assert_eq!(b.in_use(), 1);
        assert_eq!(b.unallocated.len(), 7);
    }

    #[test]
    fn reserved_ordinals_are_skipped() {
        let net: IpNet = "10.0.0.0/30".parse().unwrap();
        let mut b = BlockSpec::new(&net, None, false);
        let res = Reservations::new(vec!["10.0.0.0/31".parse().unwrap()]);
        assert_eq!(b.free_count(&net, &res), 2);
        let got = b.allocate(&net, 4, attr("x"), &res);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].to_string(), "10.0.0.2");
        assert!(b.allocate(&net, 1, attr("y"), &res).is_empty());
    }

    #[test]
    fn block_json_uses_upstream_field_names() {
        let net: IpNet = "10.0.0.0/31".parse().unwrap();
        let mut spec = BlockSpec::new(&net, Some("n1"), false);
        spec.allocate(&net, 1, attr("h"), &Reservations::default());
        let v = Object::new(Kind::IpamBlock, cidr::cidr_to_name(&net), spec).to_value();
        assert_eq!(v["metadata"]["name"], "10-0-0-0-31");
        assert_eq!(v["spec"]["affinity"], "host:n1");
        assert_eq!(v["spec"]["allocations"], serde_json::json!([0, null]));
        assert_eq!(v["spec"]["unallocated"], serde_json::json!([1]));
        assert_eq!(v["spec"]["attributes"][0]["handle_id"], "h");
    }

    #[test]
    fn in_place_allocation_matches_the_typed_model() {
        let net: IpNet = "10.0.0.0/29".parse().unwrap();
        let res = Reservations::new(vec!["10.0.0.1/32".parse().unwrap()]);
        let mut typed = BlockSpec::new(&net, Some("n1"), false);
        let mut value =
            Object::new(Kind::IpamBlock, cidr::cidr_to_name(&net), typed.clone()).to_value();
        let mut a = attr("a");
        a.secondary.insert("node".into(), "n1".into());
        for (h, n) in [
            (&a, 2),
            (&attr("b"), 1),
            (&a, 1),
            (&attr("c"), 9),
            (&attr("d"), 1),
        ] {
            let want = typed.allocate_ordinals(n, h.clone(), &res, &net);
            let got = match allocate_in_value(&mut value, &net, n, h, &res, Some("n1")) {
                InPlace::Done(o) => o,
                InPlace::Skip => Vec::new(),
                InPlace::Unusual => panic!("usual block seen as unusual"),
            };
            assert_eq!(got, want);
            let expect =
                Object::new(Kind::IpamBlock, cidr::cidr_to_name(&net), typed.clone()).to_value();
            assert_eq!(value, expect);
            assert_eq!(value.to_string(), expect.to_string());
        }
        assert!(matches!(
            allocate_in_value(&mut value, &net, 1, &a, &res, Some("n2")),
            InPlace::Skip
        ));
    }
}
