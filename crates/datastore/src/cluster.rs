//! Rules that span resources, as upstream's clients enforce them: a policy's tier must exist,
//! the `default` tier and a tier holding policies cannot be deleted, IPPools may not overlap,
//! and an IPPool's `cidr` and `blockSize` never change. Writers of these kinds check a batch
//! with [`check_batch`] before writing it.

use std::collections::HashMap;

use ipnet::IpNet;
use serde_json::Value;

use crate::{Datastore, DatastoreError, Key, Kind, WriteOp};

/// The tier every cluster has; policies without `spec.tier` are in it.
pub const DEFAULT_TIER: &str = "default";

/// Creates what every client makes sure of before its first write (upstream's
/// `EnsureInitialized`), when missing: ClusterInformation `default` (a new cluster GUID,
/// `calico_version`, type `dcos`) and Tier `default`. Nothing existing is touched. Returns
/// what was created (`Kind name`).
pub fn ensure_initialized(
    ds: &dyn Datastore,
    calico_version: &str,
) -> Result<Vec<String>, DatastoreError> {
    let api = calico_api::API_VERSION;
    create_missing(
        ds,
        [
            serde_json::json!({
                "apiVersion": api,
                "kind": "ClusterInformation",
                "metadata": {"name": "default"},
                "spec": {
                    "clusterGUID": uuid::Uuid::new_v4().simple().to_string(),
                    "clusterType": "dcos",
                    "calicoVersion": calico_version,
                    "datastoreReady": true,
                }
            }),
            serde_json::json!({
                "apiVersion": api,
                "kind": "Tier",
                "metadata": {"name": DEFAULT_TIER},
                "spec": {"order": 1_000_000}
            }),
        ],
    )
}

/// Creates the empty global FelixConfiguration `default` when missing, as upstream's
/// calico-node does at start: the resource documented `calicoctl patch felixconfiguration
/// default` commands change.
pub fn ensure_felix_default(ds: &dyn Datastore) -> Result<Vec<String>, DatastoreError> {
    create_missing(
        ds,
        [serde_json::json!({
            "apiVersion": calico_api::API_VERSION,
            "kind": "FelixConfiguration",
            "metadata": {"name": "default"},
            "spec": {}
        })],
    )
}

fn create_missing(
    ds: &dyn Datastore,
    docs: impl IntoIterator<Item = Value>,
) -> Result<Vec<String>, DatastoreError> {
    let mut created = Vec::new();
    for doc in docs {
        let resource = calico_api::parse_resource(doc).map_err(|e| DatastoreError::Backend {
            doing: "building the cluster's default resources".to_string(),
            source: Box::new(e),
        })?;
        let key = Key {
            kind: resource.kind,
            namespace: None,
            name: resource.name().to_owned(),
        };
        if ds.get(&key)?.is_some() {
            continue;
        }
        match ds.create(&key, resource.value) {
            Ok(_) => created.push(format!("{} {}", key.kind, key.name)),
            // A concurrent writer (another node starting) won the race: fine.
            Err(DatastoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// Kinds whose resources sit in a tier.
const TIERED_KINDS: [Kind; 4] = [
    Kind::NetworkPolicy,
    Kind::GlobalNetworkPolicy,
    Kind::StagedNetworkPolicy,
    Kind::StagedGlobalNetworkPolicy,
];

/// What the batch leaves at a key: the new value, or nothing for a deletion.
type Outcome<'a> = HashMap<&'a Key, Option<&'a Value>>;

/// Check `ops` against the stored state and each other. On a refusal the error is
/// [`DatastoreError::Batch`] naming the op, with [`DatastoreError::Refused`] inside.
pub fn check_batch(ds: &dyn Datastore, ops: &[WriteOp]) -> Result<(), DatastoreError> {
    let mut outcome: Outcome<'_> = HashMap::new();
    for op in ops {
        match op {
            WriteOp::Create { key, value }
            | WriteOp::Upsert { key, value }
            | WriteOp::Update { key, value, .. } => outcome.insert(key, Some(value)),
            WriteOp::Delete { key, .. } => outcome.insert(key, None),
        };
    }
    let mut stored = Stored::new(ds);
    for (index, op) in ops.iter().enumerate() {
        let refused = match op {
            WriteOp::Create { key, value }
            | WriteOp::Upsert { key, value }
            | WriteOp::Update { key, value, .. } => check_write(&mut stored, &outcome, key, value)?,
            WriteOp::Delete { key, .. } => check_delete(&mut stored, &outcome, key)?,
        };
        if let Some(reason) = refused {
            return Err(DatastoreError::Batch {
                index,
                source: Box::new(DatastoreError::Refused {
                    key: op_key(op).clone(),
                    reason,
                }),
            });
        }
    }
    Ok(())
}

fn op_key(op: &WriteOp) -> &Key {
    match op {
        WriteOp::Create { key, .. }
        | WriteOp::Upsert { key, .. }
        | WriteOp::Update { key, .. }
        | WriteOp::Delete { key, .. } => key,
    }
}

/// Lists read once per kind per batch.
struct Stored<'a> {
    ds: &'a dyn Datastore,
    lists: HashMap<Kind, Vec<(Key, Value)>>,
}

impl<'a> Stored<'a> {
    fn new(ds: &'a dyn Datastore) -> Self {
        Self {
            ds,
            lists: HashMap::new(),
        }
    }

    fn list(&mut self, kind: Kind) -> Result<&[(Key, Value)], DatastoreError> {
        if !self.lists.contains_key(&kind) {
            let list = self.ds.list(kind, None)?;
            let items = list
                .items
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect();
            self.lists.insert(kind, items);
        }
        Ok(&self.lists[&kind])
    }

    /// Every resource of `kind` as it will be after the batch.
    fn after(
        &mut self,
        kind: Kind,
        outcome: &Outcome<'_>,
    ) -> Result<Vec<(Key, Value)>, DatastoreError> {
        let mut result: Vec<(Key, Value)> = self
            .list(kind)?
            .iter()
            .filter(|(key, _)| !outcome.contains_key(key))
            .cloned()
            .collect();
        for (key, value) in outcome {
            if key.kind == kind
                && let Some(value) = value
            {
                result.push(((*key).clone(), (*value).clone()));
            }
        }
        Ok(result)
    }

    fn current(&self, key: &Key) -> Result<Option<Value>, DatastoreError> {
        Ok(self.ds.get(key)?.map(|kv| kv.value))
    }
}

fn spec_str<'v>(value: &'v Value, field: &str) -> Option<&'v str> {
    value.get("spec")?.get(field)?.as_str()
}

fn tier_of(value: &Value) -> &str {
    spec_str(value, "tier")
        .filter(|t| !t.is_empty())
        .unwrap_or(DEFAULT_TIER)
}

fn check_write(
    stored: &mut Stored<'_>,
    outcome: &Outcome<'_>,
    key: &Key,
    value: &Value,
) -> Result<Option<String>, DatastoreError> {
    if TIERED_KINDS.contains(&key.kind) {
        let tier = tier_of(value);
        if tier != DEFAULT_TIER {
            let tier_key = Key::global(Kind::Tier, tier);
            let exists = match outcome.get(&tier_key) {
                Some(after) => after.is_some(),
                None => stored.current(&tier_key)?.is_some(),
            };
            if !exists {
                return Ok(Some(format!(
                    "spec.tier {tier:?}: that tier does not exist; create the Tier first"
                )));
            }
        }
    }
    if key.kind == Kind::IpPool {
        return check_pool(stored, outcome, key, value);
    }
    Ok(None)
}

fn check_pool(
    stored: &mut Stored<'_>,
    outcome: &Outcome<'_>,
    key: &Key,
    value: &Value,
) -> Result<Option<String>, DatastoreError> {
    let cidr = spec_str(value, "cidr").unwrap_or_default();
    if let Some(old) = stored.current(key)? {
        let old_cidr = spec_str(&old, "cidr").unwrap_or_default();
        if old_cidr != cidr {
            return Ok(Some(format!(
                "spec.cidr cannot change (from {old_cidr} to {cidr}): create a new IPPool and \
                 disable this one"
            )));
        }
        let block_size = |v: &Value| v.pointer("/spec/blockSize").cloned();
        if block_size(&old) != block_size(value) {
            return Ok(Some(format!(
                "spec.blockSize cannot change (from {} to {}): create a new IPPool and disable \
                 this one",
                block_size(&old).unwrap_or(Value::Null),
                block_size(value).unwrap_or(Value::Null)
            )));
        }
    }
    let Ok(net) = cidr.parse::<IpNet>() else {
        // Validation reports a malformed CIDR; nothing to compare here.
        return Ok(None);
    };
    for (other_key, other) in stored.after(Kind::IpPool, outcome)? {
        if other_key == *key {
            continue;
        }
        let other_cidr = spec_str(&other, "cidr").unwrap_or_default();
        if let Ok(other_net) = other_cidr.parse::<IpNet>()
            && (net.contains(&other_net) || other_net.contains(&net))
        {
            return Ok(Some(format!(
                "spec.cidr {cidr} overlaps IPPool {:?} ({other_cidr})",
                other_key.name
            )));
        }
    }
    Ok(None)
}

fn check_delete(
    stored: &mut Stored<'_>,
    outcome: &Outcome<'_>,
    key: &Key,
) -> Result<Option<String>, DatastoreError> {
    if key.kind != Kind::Tier {
        return Ok(None);
    }
    if key.name == DEFAULT_TIER {
        return Ok(Some("the default tier cannot be deleted".to_string()));
    }
    let mut members = Vec::new();
    for kind in TIERED_KINDS {
        for (policy, value) in stored.after(kind, outcome)? {
            if tier_of(&value) == key.name {
                members.push(match &policy.namespace {
                    Some(ns) => format!("{kind} {ns}/{}", policy.name),
                    None => format!("{kind} {}", policy.name),
                });
            }
        }
    }
    if members.is_empty() {
        return Ok(None);
    }
    members.sort();
    Ok(Some(format!(
        "tier {:?} still holds {} polic{}: {}; delete or move them first",
        key.name,
        members.len(),
        if members.len() == 1 { "y" } else { "ies" },
        members.join(", ")
    )))
}
