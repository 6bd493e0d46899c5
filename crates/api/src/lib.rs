//! The `projectcalico.org/v3` resource model: kinds, typed resources, defaults and validation.
//!
//! Documents travel as `serde_json::Value` (YAML is converted to JSON first, as calicoctl does)
//! and are checked by [`parse_resource`], which rejects unknown fields, applies upstream's
//! defaults and runs upstream's validation rules, naming the offending field on error.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub mod defaults;
pub mod kind;
pub mod names;
pub mod numorstring;
pub mod v3;
mod validate;

pub use kind::{ALL_KIND_NAMES, ALL_KINDS, INTERNAL_KINDS, Kind};
pub use validate::{is_dns1123_label, is_dns1123_subdomain, parse_go_duration};

/// The API group/version of every resource this crate knows.
pub const API_VERSION: &str = "projectcalico.org/v3";

/// A validated, defaulted resource document.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The resource kind.
    pub kind: Kind,
    /// The whole document (`apiVersion`, `kind`, `metadata`, `spec`) after defaulting, in
    /// canonical key order.
    pub value: Value,
}

impl Resource {
    /// The typed form of the document, e.g. `resource.to_typed::<v3::IPPool>()`.
    pub fn to_typed<T: ApiResource>(&self) -> Result<T, ValidationError> {
        strict(self.value.clone())
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// `metadata.namespace`, for namespaced kinds.
    pub fn namespace(&self) -> Option<&str> {
        self.value["metadata"]["namespace"].as_str()
    }
}

/// Why a document or value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// JSON path of the offending field, e.g. `spec.ingress[0].protocol`; empty for the whole
    /// document.
    pub field: String,
    /// The offending value as written (JSON text), when there is one.
    pub value: Option<String>,
    /// What is wrong, e.g. `port range invalid, port number must be between 1 and 65535`.
    pub reason: String,
}

impl ValidationError {
    /// An error about `field` holding `value`.
    pub fn new(field: impl Into<String>, value: Option<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            value,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.field, &self.value) {
            (field, _) if field.is_empty() => write!(f, "{}", self.reason),
            (field, Some(value)) => write!(f, "field {field} = {value}: {}", self.reason),
            (field, None) => write!(f, "field {field}: {}", self.reason),
        }
    }
}

impl std::error::Error for ValidationError {}

/// Why a fragment passed to [`validate_fragment`] was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// The value is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// This crate does not model the named type.
    #[error("unsupported type {0}")]
    Unsupported(String),
}

/// A typed resource document that [`parse_resource`] knows how to check and default.
pub trait ApiResource: DeserializeOwned + Serialize {
    /// The resource's kind.
    const KIND: Kind;
    /// The resource's metadata.
    fn metadata(&self) -> &v3::ObjectMeta;
    /// Fills in upstream's defaults.
    fn apply_defaults(&mut self) {}
    /// Runs the kind's spec (and status) validation.
    fn validate_spec(&self) -> Result<(), ValidationError>;
}

macro_rules! api_resource {
    ($ty:ty, $kind:expr, |$r:ident| $validate:expr $(, |$d:ident| $defaults:expr)?) => {
        impl ApiResource for $ty {
            const KIND: Kind = $kind;
            fn metadata(&self) -> &v3::ObjectMeta {
                &self.metadata
            }
            $(fn apply_defaults(&mut self) {
                let $d = self;
                $defaults
            })?
            fn validate_spec(&self) -> Result<(), ValidationError> {
                let $r = self;
                $validate
            }
        }
    };
}

api_resource!(
    v3::NetworkPolicy,
    Kind::NetworkPolicy,
    |r| validate::network_policy_spec(&r.spec),
    |r| {
        let (i, e) = (!r.spec.ingress.is_empty(), !r.spec.egress.is_empty());
        defaults::policy(&mut r.spec.tier, &mut r.spec.types, i, e);
    }
);
api_resource!(
    v3::GlobalNetworkPolicy,
    Kind::GlobalNetworkPolicy,
    |r| validate::global_network_policy_spec(&r.spec),
    |r| {
        let (i, e) = (!r.spec.ingress.is_empty(), !r.spec.egress.is_empty());
        defaults::policy(&mut r.spec.tier, &mut r.spec.types, i, e);
    }
);
api_resource!(
    v3::Tier,
    Kind::Tier,
    |r| validate::tier(&r.metadata.name, &r.spec),
    |r| defaults::tier(&r.metadata.name, &mut r.spec)
);
api_resource!(v3::Profile, Kind::Profile, |r| validate::profile_spec(
    "spec", &r.spec
));
api_resource!(
    v3::IPPool,
    Kind::IpPool,
    |r| validate::ippool_spec("spec", &r.spec),
    |r| defaults::ippool(&mut r.spec)
);
api_resource!(v3::IPReservation, Kind::IpReservation, |r| {
    validate::ip_reservation_spec("spec", &r.spec)
});
api_resource!(v3::Node, Kind::Node, |r| {
    validate::node_spec("spec", &r.spec)?;
    validate::node_status("status", &r.status)
});
api_resource!(v3::WorkloadEndpoint, Kind::WorkloadEndpoint, |r| {
    validate::workload_endpoint_spec("spec", &r.spec)
});
api_resource!(v3::HostEndpoint, Kind::HostEndpoint, |r| {
    validate::host_endpoint_spec("spec", &r.spec)
});
api_resource!(v3::NetworkSet, Kind::NetworkSet, |r| validate::net_list(
    "spec.nets",
    &r.spec.nets
));
api_resource!(v3::GlobalNetworkSet, Kind::GlobalNetworkSet, |r| {
    validate::net_list("spec.nets", &r.spec.nets)
});
api_resource!(v3::BGPPeer, Kind::BgpPeer, |r| validate::bgp_peer_spec(
    "spec", &r.spec
));
api_resource!(v3::BGPFilter, Kind::BgpFilter, |r| {
    validate::bgp_filter_spec("spec", &r.spec)
});
api_resource!(v3::BGPConfiguration, Kind::BgpConfiguration, |r| {
    validate::bgp_configuration_spec("spec", &r.spec)
});
api_resource!(v3::FelixConfiguration, Kind::FelixConfiguration, |r| {
    validate::felix_configuration(&r.metadata.name, &r.spec)
});
api_resource!(v3::CalicoNodeStatus, Kind::CalicoNodeStatus, |r| {
    validate::calico_node_status_spec("spec", &r.spec)
});
api_resource!(v3::IPAMConfiguration, Kind::IpamConfiguration, |r| {
    validate::ipam_configuration(&r.metadata.name, &r.spec)
});
api_resource!(
    v3::ClusterInformation,
    Kind::ClusterInformation,
    |_r| Ok(())
);

/// Labels Calico sets itself on network sets; users may not set them.
const RESERVED_NETWORK_SET_LABELS: [&str; 3] = [
    "projectcalico.org/namespace",
    "projectcalico.org/orchestrator",
    "projectcalico.org/serviceaccount",
];

/// Checks the metadata rules shared by every kind.
fn check_metadata(kind: Kind, meta: &v3::ObjectMeta) -> Result<(), ValidationError> {
    validate::resource_name(kind, &meta.name)?;
    if kind.is_namespaced() {
        if meta.namespace.is_empty() {
            return Err(ValidationError::new(
                "metadata.namespace",
                None,
                format!("namespace is required for {kind}"),
            ));
        }
        if !is_dns1123_label(&meta.namespace) {
            return Err(ValidationError::new(
                "metadata.namespace",
                serde_json::to_string(&meta.namespace).ok(),
                "invalid namespace: must be a lower-case DNS label",
            ));
        }
    } else if !meta.namespace.is_empty() {
        return Err(ValidationError::new(
            "metadata.namespace",
            serde_json::to_string(&meta.namespace).ok(),
            format!("{kind} is not namespaced"),
        ));
    }
    validate::labels("metadata.labels", &meta.labels)?;
    validate::annotations("metadata.annotations", &meta.annotations)?;
    if matches!(kind, Kind::NetworkSet | Kind::GlobalNetworkSet) {
        for key in meta.labels.keys() {
            // A GlobalNetworkSet has no namespace: only that label is Calico's there.
            let reserved = match kind {
                Kind::GlobalNetworkSet => key == "projectcalico.org/namespace",
                _ => RESERVED_NETWORK_SET_LABELS.contains(&key.as_str()),
            };
            if reserved {
                return Err(ValidationError::new(
                    format!("metadata.labels[{key}]"),
                    serde_json::to_string(key).ok(),
                    "label is reserved for Calico's own use",
                ));
            }
        }
    }
    Ok(())
}

/// Deserializes strictly, turning serde's error into one that names the JSON path.
fn strict<T: DeserializeOwned>(value: Value) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(value).map_err(path_error)
}

/// serde's error as a [`ValidationError`] naming the field.
fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> ValidationError {
    let mut path = e.path().to_string();
    if path == "." {
        path.clear();
    }
    let msg = e.into_inner().to_string();
    // serde reports an unknown key at its parent's path; name the key itself.
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some((key, _)) = rest.split_once('`')
    {
        let named = path == key || path.ends_with(&format!(".{key}"));
        let field = if named {
            path
        } else {
            validate::join(&path, key)
        };
        return ValidationError::new(field, None, format!("unknown field: {msg}"));
    }
    ValidationError::new(path, None, msg)
}

/// Most spellings [`as_upstream_decodes`] repairs in one document.
const MAX_REPAIRS: usize = 256;

/// Deserializes as upstream's decoder (sigs.k8s.io/yaml over encoding/json) reads user
/// documents: a field name in any case (`Metadata:`, `XDPRefreshInterval:`) is the field, and
/// a YAML boolean or number where a string is expected is that scalar's text. Anything else
/// is refused as [`strict`] refuses it.
fn as_upstream_decodes<T: DeserializeOwned>(mut value: Value) -> Result<T, ValidationError> {
    for _ in 0..MAX_REPAIRS {
        let e = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        let segments: Vec<serde_path_to_error::Segment> = e.path().iter().cloned().collect();
        let msg = e.inner().to_string();
        if !repair(&mut value, &segments, &msg) {
            return Err(path_error(e));
        }
    }
    strict(value)
}

/// The value at `path` in `value`.
fn at_path<'v>(
    mut value: &'v mut Value,
    path: &[serde_path_to_error::Segment],
) -> Option<&'v mut Value> {
    use serde_path_to_error::Segment;
    for segment in path {
        value = match (segment, value) {
            (Segment::Map { key }, Value::Object(map)) => map.get_mut(key)?,
            (Segment::Seq { index }, Value::Array(items)) => items.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Fixes the spelling serde's error `msg` at `path` complains about, as upstream's decoder
/// would have read it; false when it is not one of those.
fn repair(value: &mut Value, path: &[serde_path_to_error::Segment], msg: &str) -> bool {
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some((key, expected)) = rest.split_once('`')
    {
        let Some(canonical) = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .find(|f| f.eq_ignore_ascii_case(key) && *f != key)
        else {
            return false;
        };
        // The path is the object's, or the key's own.
        let parent = match path.last() {
            Some(serde_path_to_error::Segment::Map { key: last }) if last == key => {
                &path[..path.len() - 1]
            }
            _ => path,
        };
        let Some(Value::Object(map)) = at_path(value, parent) else {
            return false;
        };
        let Some(v) = map.remove(key) else {
            return false;
        };
        // The spelling given last wins, as in a JSON merge patch of `{"Min": 65}` over `min`.
        map.insert(canonical.to_owned(), v);
        return true;
    }
    if msg.starts_with("invalid type: ") && msg.ends_with("expected a string") {
        let Some(target) = at_path(value, path) else {
            return false;
        };
        let text = match target {
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            _ => return false,
        };
        *target = Value::String(text);
        return true;
    }
    false
}

/// Turns a document of a known kind into its typed form, checked and defaulted as
/// [`parse_resource`] does (strict fields, metadata rules, upstream's defaults and validation)
/// but without going back to JSON: how the sync layer decodes stored values, once.
pub fn decode<T: ApiResource>(doc: Value) -> Result<T, ValidationError> {
    finish(strict(doc)?)
}

/// The metadata rules, defaults and validation of a typed resource.
fn finish<T: ApiResource>(mut r: T) -> Result<T, ValidationError> {
    check_metadata(T::KIND, r.metadata())?;
    r.apply_defaults();
    r.validate_spec()?;
    Ok(r)
}

fn process<T: ApiResource>(doc: Value) -> Result<Value, ValidationError> {
    let r: T = finish(as_upstream_decodes(doc)?)?;
    serde_json::to_value(&r).map_err(|e| ValidationError::new("", None, e.to_string()))
}

/// Check a whole document and return it defaulted.
///
/// Fails on: wrong or missing `apiVersion`, unknown `kind`, unknown fields anywhere, a missing
/// or invalid `metadata.name`, a namespace on a cluster-scoped kind or none on a namespaced kind,
/// and every upstream validation rule of the kind's spec.
pub fn parse_resource(mut doc: Value) -> Result<Resource, ValidationError> {
    as_upstream_reads_yaml(&mut doc);
    let Value::Object(map) = &doc else {
        return Err(ValidationError::new(
            "",
            None,
            "a resource document must be a JSON object",
        ));
    };
    match map.get("apiVersion") {
        Some(Value::String(v)) if v == API_VERSION => {}
        other => {
            return Err(ValidationError::new(
                "apiVersion",
                other.map(Value::to_string),
                format!("apiVersion must be {API_VERSION}"),
            ));
        }
    }
    let kind = map
        .get("kind")
        .and_then(Value::as_str)
        .and_then(Kind::from_document_kind)
        .ok_or_else(|| {
            ValidationError::new(
                "kind",
                map.get("kind").map(Value::to_string),
                "unknown resource kind",
            )
        })?;
    let value = match kind {
        Kind::BgpConfiguration => process::<v3::BGPConfiguration>(doc)?,
        Kind::BgpPeer => process::<v3::BGPPeer>(doc)?,
        Kind::BgpFilter => process::<v3::BGPFilter>(doc)?,
        Kind::ClusterInformation => process::<v3::ClusterInformation>(doc)?,
        Kind::FelixConfiguration => process::<v3::FelixConfiguration>(doc)?,
        Kind::GlobalNetworkPolicy => process::<v3::GlobalNetworkPolicy>(doc)?,
        Kind::GlobalNetworkSet => process::<v3::GlobalNetworkSet>(doc)?,
        Kind::HostEndpoint => process::<v3::HostEndpoint>(doc)?,
        Kind::IpPool => process::<v3::IPPool>(doc)?,
        Kind::IpReservation => process::<v3::IPReservation>(doc)?,
        Kind::NetworkPolicy => process::<v3::NetworkPolicy>(doc)?,
        Kind::NetworkSet => process::<v3::NetworkSet>(doc)?,
        Kind::Node => process::<v3::Node>(doc)?,
        Kind::Profile => process::<v3::Profile>(doc)?,
        Kind::Tier => process::<v3::Tier>(doc)?,
        Kind::WorkloadEndpoint => process::<v3::WorkloadEndpoint>(doc)?,
        Kind::StagedNetworkPolicy => staged(doc, Kind::NetworkPolicy)?,
        Kind::StagedGlobalNetworkPolicy => staged(doc, Kind::GlobalNetworkPolicy)?,
        Kind::CalicoNodeStatus => process::<v3::CalicoNodeStatus>(doc)?,
        Kind::IpamConfiguration => process::<v3::IPAMConfiguration>(doc)?,
        Kind::IpamBlock | Kind::BlockAffinity | Kind::IpamHandle => {
            return Err(ValidationError::new(
                "kind",
                Some(kind.as_str().to_owned()),
                "an internal IPAM kind is not a resource document",
            ));
        }
    };
    Ok(Resource { kind, value })
}

/// Whether the typed form of resource `doc` has, in the object at the JSON `path` inside it,
/// a field named `field` in any case (as Go templates name fields: `.Spec.NATOutgoing`).
/// Some(false) when the type has no such field; None when it cannot tell (not a known kind,
/// or the path does not lead to an object). A map (labels) has every key.
pub fn has_field(doc: &Value, path: &[String], field: &str) -> Option<bool> {
    const PROBE: &str = "__calico_rs_field_probe__";
    let mut kind = Kind::from_document_kind(doc.get("kind")?.as_str()?)?;
    let mut probe = doc.clone();
    // A staged policy is its policy plus `stagedAction`.
    if let Some((enforced, policy)) = staged_policy(kind, doc) {
        if path.len() == 1 && path[0] == "spec" && field.eq_ignore_ascii_case("stagedAction") {
            return Some(true);
        }
        kind = enforced;
        probe = policy;
    } else if matches!(
        kind,
        Kind::StagedNetworkPolicy | Kind::StagedGlobalNetworkPolicy
    ) {
        return None;
    }
    let mut at = &mut probe;
    for key in path {
        let map = at.as_object_mut()?;
        at = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if at.is_null() {
            *at = Value::Object(serde_json::Map::new());
        }
    }
    at.as_object_mut()?.insert(PROBE.to_owned(), Value::Null);
    let msg = match deserialize_as(kind, probe) {
        Ok(()) => return Some(true),
        Err(msg) => msg,
    };
    let expected = msg.strip_prefix(&format!("unknown field `{PROBE}`, "))?;
    if expected == "there are no fields" {
        return Some(false);
    }
    Some(
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .any(|f| f.eq_ignore_ascii_case(field)),
    )
}

/// Strict deserialization of `doc` as `kind`'s type; serde's message on failure.
fn deserialize_as(kind: Kind, doc: Value) -> Result<(), String> {
    fn de<T: DeserializeOwned>(doc: Value) -> Result<(), String> {
        serde_path_to_error::deserialize::<_, T>(doc)
            .map(drop)
            .map_err(|e| e.into_inner().to_string())
    }
    match kind {
        Kind::BgpConfiguration => de::<v3::BGPConfiguration>(doc),
        Kind::BgpPeer => de::<v3::BGPPeer>(doc),
        Kind::BgpFilter => de::<v3::BGPFilter>(doc),
        Kind::ClusterInformation => de::<v3::ClusterInformation>(doc),
        Kind::FelixConfiguration => de::<v3::FelixConfiguration>(doc),
        Kind::GlobalNetworkPolicy => de::<v3::GlobalNetworkPolicy>(doc),
        Kind::GlobalNetworkSet => de::<v3::GlobalNetworkSet>(doc),
        Kind::HostEndpoint => de::<v3::HostEndpoint>(doc),
        Kind::IpPool => de::<v3::IPPool>(doc),
        Kind::IpReservation => de::<v3::IPReservation>(doc),
        Kind::NetworkPolicy => de::<v3::NetworkPolicy>(doc),
        Kind::NetworkSet => de::<v3::NetworkSet>(doc),
        Kind::Node => de::<v3::Node>(doc),
        Kind::Profile => de::<v3::Profile>(doc),
        Kind::Tier => de::<v3::Tier>(doc),
        Kind::WorkloadEndpoint => de::<v3::WorkloadEndpoint>(doc),
        Kind::CalicoNodeStatus => de::<v3::CalicoNodeStatus>(doc),
        Kind::IpamConfiguration => de::<v3::IPAMConfiguration>(doc),
        Kind::StagedNetworkPolicy
        | Kind::StagedGlobalNetworkPolicy
        | Kind::IpamBlock
        | Kind::BlockAffinity
        | Kind::IpamHandle => Err(format!("{kind} has no single type")),
    }
}

/// The name prefix of a staged Kubernetes network policy.
const STAGED_K8S_PREFIX: &str = "knp.default.";

/// The `spec.stagedAction` values upstream accepts (empty means `Set`).
const STAGED_ACTIONS: [&str; 4] = ["Set", "Delete", "Learn", "Ignore"];

/// A staged policy is the policy it would become (`enforced`), checked and defaulted as
/// that kind, plus `spec.stagedAction`; with `Delete` it names the policy to remove and sets
/// nothing but its tier.
fn staged(mut doc: Value, enforced: Kind) -> Result<Value, ValidationError> {
    let staged_kind = doc.get("kind").cloned().unwrap_or(Value::Null);
    let spec = match doc.get_mut("spec") {
        Some(Value::Object(spec)) => spec,
        _ => {
            doc["spec"] = Value::Object(serde_json::Map::new());
            doc["spec"]
                .as_object_mut()
                .unwrap_or_else(|| unreachable!())
        }
    };
    let action = match spec.remove("stagedAction") {
        None => String::new(),
        Some(Value::String(a)) => a,
        Some(other) => {
            return Err(ValidationError::new(
                "spec.stagedAction",
                Some(other.to_string()),
                "must be a string",
            ));
        }
    };
    if !action.is_empty() && !STAGED_ACTIONS.contains(&action.as_str()) {
        return Err(ValidationError::new(
            "spec.stagedAction",
            Some(action.clone()),
            format!("must be one of {}", STAGED_ACTIONS.join(", ")),
        ));
    }
    if action == "Delete"
        && let Some(field) = spec.keys().find(|k| k.as_str() != "tier")
    {
        return Err(ValidationError::new(
            format!("spec.{field}"),
            None,
            "a staged Delete names the policy to remove and may set nothing but its tier",
        ));
    }
    doc["kind"] = Value::String(enforced.as_str().to_owned());
    // A staged Kubernetes policy is named `knp.default.<name>`, as upstream allows for
    // StagedNetworkPolicy only; the rest follows the policy name rules.
    let k8s_name = (enforced == Kind::NetworkPolicy)
        .then(|| doc.pointer("/metadata/name").and_then(Value::as_str))
        .flatten()
        .and_then(|n| n.strip_prefix(STAGED_K8S_PREFIX))
        .map(str::to_owned);
    if let Some(rest) = &k8s_name {
        doc["metadata"]["name"] = Value::String(rest.clone());
    }
    let mut value = process_as(enforced, doc)?;
    if let Some(rest) = k8s_name {
        value["metadata"]["name"] = Value::String(format!("{STAGED_K8S_PREFIX}{rest}"));
    }
    value["kind"] = staged_kind;
    if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
        if action == "Delete" {
            spec.retain(|k, _| k == "tier");
        }
        if !action.is_empty() {
            spec.insert("stagedAction".to_owned(), Value::String(action));
        }
    }
    Ok(value)
}

fn process_as(kind: Kind, doc: Value) -> Result<Value, ValidationError> {
    match kind {
        Kind::NetworkPolicy => process::<v3::NetworkPolicy>(doc),
        Kind::GlobalNetworkPolicy => process::<v3::GlobalNetworkPolicy>(doc),
        other => Err(ValidationError::new(
            "kind",
            Some(other.as_str().to_owned()),
            "not a policy kind",
        )),
    }
}

/// The policy a staged one would put in force: its kind and document, without
/// `stagedAction`, or None for a staged `Delete`. `value` is a stored (checked) document.
pub fn staged_policy(kind: Kind, value: &Value) -> Option<(Kind, Value)> {
    let enforced = match kind {
        Kind::StagedNetworkPolicy => Kind::NetworkPolicy,
        Kind::StagedGlobalNetworkPolicy => Kind::GlobalNetworkPolicy,
        _ => return None,
    };
    let mut doc = value.clone();
    let action = doc
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .and_then(|s| s.remove("stagedAction"));
    if action.as_ref().and_then(Value::as_str) == Some("Delete") {
        return None;
    }
    doc["kind"] = Value::String(enforced.as_str().to_owned());
    Some((enforced, doc))
}

/// What upstream's YAML decoding does before its strict checks, so the same
/// files are accepted: the top-level fields in any case (`Kind:`, `Metadata:`),
/// and an empty `spec:` is an empty spec. (Fields below are matched by
/// [`as_upstream_decodes`].)
fn as_upstream_reads_yaml(doc: &mut Value) {
    let Value::Object(map) = doc else {
        return;
    };
    for canonical in ["apiVersion", "kind", "metadata", "spec", "status"] {
        let other = map
            .keys()
            .find(|k| k.eq_ignore_ascii_case(canonical) && k.as_str() != canonical)
            .cloned();
        if let Some(other) = other
            && let Some(v) = map.remove(&other)
        {
            map.insert(canonical.to_owned(), v);
        }
    }
    if map.get("spec").is_some_and(Value::is_null) {
        map.insert("spec".to_owned(), Value::Object(serde_json::Map::new()));
    }
}

/// Refuses what the API accepts but calico-rs cannot enforce, so a security
/// setting is never accepted and then ignored: GlobalNetworkPolicy
/// `preDNAT`, `doNotTrack` and `applyOnForward` (host endpoints are policed
/// on input and output only). Writers (calicoctl) call this after
/// [`parse_resource`].
pub fn check_supported(resource: &Resource) -> Result<(), ValidationError> {
    if resource.kind != Kind::GlobalNetworkPolicy {
        return Ok(());
    }
    for (field, what) in [
        ("preDNAT", "pre-DNAT host endpoint policy"),
        ("doNotTrack", "untracked (doNotTrack) host endpoint policy"),
        (
            "applyOnForward",
            "host endpoint policy on forwarded traffic",
        ),
    ] {
        if resource.value["spec"][field] == Value::Bool(true) {
            return Err(ValidationError::new(
                format!("spec.{field}"),
                Some("true".to_owned()),
                format!(
                    "{what} is not supported by calico-rs (host endpoints are policed on \
                     input and output only); refused rather than accepted and ignored"
                ),
            ));
        }
    }
    Ok(())
}

/// Fragment types [`validate_fragment`] understands, by upstream's Go type name.
pub const FRAGMENT_TYPES: [&str; 23] = [
    "v3.Rule",
    "v3.EntityRule",
    "v3.ICMPFields",
    "v3.HTTPMatch",
    "v3.ProtoPort",
    "v3.IPPoolSpec",
    "v3.HostEndpointSpec",
    "v3.NetworkSetSpec",
    "v3.GlobalNetworkSetSpec",
    "v3.ProfileSpec",
    "v3.BGPPeerSpec",
    "v3.BGPConfigurationSpec",
    "v3.BGPFilterRuleV4",
    "v3.BGPFilterRuleV6",
    "v3.BGPFilterOperation",
    "v3.FelixConfigurationSpec",
    "v3.BlockAffinitySpec",
    "internalapi.WorkloadEndpointSpec",
    "internalapi.WorkloadEndpointPort",
    "internalapi.NodeSpec",
    "internalapi.NodeStatus",
    "internalapi.IPNAT",
    "numorstring.Protocol",
];

/// Validates a JSON fragment of one API struct on its own (upstream's validator applied to a
/// bare struct). `type_name` is upstream's Go type name, e.g. `v3.Rule`; see
/// [`FRAGMENT_TYPES`]. Rules are checked as ingress rules; pool specs are defaulted first.
pub fn validate_fragment(type_name: &str, value: &Value) -> Result<(), FragmentError> {
    let v = value.clone();
    match type_name {
        "v3.Rule" => {
            validate::rule("", &strict(v)?, validate::Direction::Ingress)?;
        }
        "v3.EntityRule" => validate::entity_rule("", &strict(v)?)?,
        "v3.ICMPFields" => validate::icmp_fields("", &strict(v)?)?,
        "v3.HTTPMatch" => validate::http_match("", &strict(v)?)?,
        "v3.ProtoPort" => validate::proto_port("", &strict(v)?)?,
        "v3.IPPoolSpec" => {
            let mut spec: v3::IPPoolSpec = strict(v)?;
            defaults::ippool(&mut spec);
            validate::ippool_spec("", &spec)?;
        }
        "v3.HostEndpointSpec" => validate::host_endpoint_spec("", &strict(v)?)?,
        "v3.NetworkSetSpec" => {
            let spec: v3::NetworkSetSpec = strict(v)?;
            validate::net_list("nets", &spec.nets)?;
        }
        "v3.GlobalNetworkSetSpec" => {
            let spec: v3::GlobalNetworkSetSpec = strict(v)?;
            validate::net_list("nets", &spec.nets)?;
        }
        "v3.ProfileSpec" => validate::profile_spec("", &strict(v)?)?,
        "v3.BGPPeerSpec" => validate::bgp_peer_spec("", &strict(v)?)?,
        "v3.BGPConfigurationSpec" => validate::bgp_configuration_spec("", &strict(v)?)?,
        "v3.BGPFilterRuleV4" => validate::bgp_filter_rule("", &strict(v)?, false)?,
        "v3.BGPFilterRuleV6" => validate::bgp_filter_rule("", &strict(v)?, true)?,
        "v3.BGPFilterOperation" => validate::bgp_filter_operation("", &strict(v)?)?,
        "v3.FelixConfigurationSpec" => validate::felix_spec("", &strict(v)?)?,
        "v3.BlockAffinitySpec" => validate::block_affinity_spec("", &strict(v)?)?,
        "internalapi.WorkloadEndpointSpec" => {
            validate::workload_endpoint_spec("", &strict(v)?)?;
        }
        "internalapi.WorkloadEndpointPort" => {
            validate::workload_endpoint_port("", &strict(v)?)?;
        }
        "internalapi.NodeSpec" => validate::node_spec("", &strict(v)?)?,
        "internalapi.NodeStatus" => validate::node_status("", &strict(v)?)?,
        "internalapi.IPNAT" => {
            validate::ip_nat("", &strict(v)?)?;
        }
        "numorstring.Protocol" => {
            let p: numorstring::Protocol = strict(v)?;
            if !p.is_valid() {
                return Err(ValidationError::new(
                    "",
                    serde_json::to_string(&p).ok(),
                    "protocol must be TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255",
                )
                .into());
            }
        }
        other => return Err(FragmentError::Unsupported(other.to_owned())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn err(doc: Value) -> ValidationError {
        parse_resource(doc).expect_err("should be rejected")
    }

    fn policy(spec: Value) -> Value {
        json!({
            "apiVersion": API_VERSION,
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "p"},
            "spec": spec
        })
    }

    #[test]
    fn wrong_api_version_names_the_field() {
        let e = err(json!({"apiVersion": "v1", "kind": "Tier", "metadata": {"name": "t"}}));
        assert_eq!(e.field, "apiVersion");
        assert_eq!(e.value.as_deref(), Some("\"v1\""));
        assert_eq!(
            e.to_string(),
            "field apiVersion = \"v1\": apiVersion must be projectcalico.org/v3"
        );
    }

    #[test]
    fn unknown_kind_names_the_field() {
        let e = err(json!({"apiVersion": API_VERSION, "kind": "KubeControllersConfiguration"}));
        assert_eq!(e.field, "kind");
        assert_eq!(e.reason, "unknown resource kind");
    }

    #[test]
    fn unknown_field_is_reported_with_its_path() {
        let e = err(policy(
            json!({"ingress": [{"action": "Allow", "bogus": 1}]}),
        ));
        assert_eq!(e.field, "spec.ingress[0].bogus");
        assert!(e.reason.starts_with("unknown field"), "{e}");
        let e = err(policy(json!({"sellector": "all()"})));
        assert_eq!(e.field, "spec.sellector");
    }

    #[test]
    fn bad_port_is_reported_with_its_path() {
        let e = err(policy(
            json!({"ingress": [{"action": "Allow", "protocol": "TCP",
            "destination": {"ports": [80, "100:0"]}}]}),
        ));
        assert_eq!(e.field, "spec.ingress[0].destination.ports[1]");
    }

    #[test]
    fn port_zero_message_matches_upstream() {
        let e = err(policy(
            json!({"ingress": [{"action": "Allow", "protocol": "TCP",
            "destination": {"notPorts": ["0:456"]}}]}),
        ));
        assert_eq!(e.field, "spec.ingress[0].destination.notPorts[0]");
        assert_eq!(
            e.reason,
            "port range invalid, port number must be between 1 and 65535"
        );
    }

    #[test]
    fn name_is_required() {
        let e = err(json!({"apiVersion": API_VERSION, "kind": "Tier", "spec": {}}));
        assert_eq!(e.field, "metadata.name");
        assert_eq!(e.reason, "name is required");
    }

    #[test]
    fn namespace_rules() {
        let np = |meta: Value| json!({"apiVersion": API_VERSION, "kind": "NetworkPolicy", "metadata": meta});
        let e = err(np(json!({"name": "p"})));
        assert_eq!(e.field, "metadata.namespace");
        assert!(parse_resource(np(json!({"name": "p", "namespace": "ns"}))).is_ok());
        let mut gnp = policy(json!({}));
        gnp["metadata"]["namespace"] = json!("default");
        let e = err(gnp);
        assert_eq!(e.field, "metadata.namespace");
        assert_eq!(e.reason, "GlobalNetworkPolicy is not namespaced");
    }

    #[test]
    fn rule_errors_name_the_rule_field() {
        let e = err(policy(
            json!({"egress": [{"action": "Allow"}, {"action": "Maybe"}]}),
        ));
        assert_eq!(e.field, "spec.egress[1].action");
        let e = err(policy(
            json!({"ingress": [{"action": "Allow", "protocol": "ICMP",
            "ipVersion": 6}]}),
        ));
        assert_eq!(e.field, "spec.ingress[0].ipVersion");
        assert_eq!(e.reason, "protocol ICMP requires ipVersion 4");
    }

    #[test]
    fn fragments() {
        assert!(validate_fragment("v3.Rule", &json!({"action": "Allow"})).is_ok());
        assert!(matches!(
            validate_fragment("v3.Rule", &json!({"action": "Nope"})),
            Err(FragmentError::Invalid(_))
        ));
        assert_eq!(
            validate_fragment("v3.KubeControllersConfigurationSpec", &json!({})),
            Err(FragmentError::Unsupported(
                "v3.KubeControllersConfigurationSpec".to_owned()
            ))
        );
        // BGPFilter rules: the CRD's cross-field rules apply too.
        assert!(
            validate_fragment(
                "v3.BGPFilterRuleV4",
                &json!({"cidr": "10.0.0.0/8", "matchOperator": "In", "action": "Accept"})
            )
            .is_ok()
        );
        for bad in [
            json!({"cidr": "10.0.0.0/8", "action": "Accept"}),
            json!({"prefixLength": {"min": 8}, "action": "Accept"}),
            json!({"action": "Reject", "operations": [{"setPriority": {"value": 5}}]}),
            json!({"action": "Accept", "communities": {"values": ["65536:1"]}}),
            json!({"action": "Accept", "priority": 0}),
            json!({"action": "Accept", "peerType": "IBGP"}),
        ] {
            assert!(
                matches!(
                    validate_fragment("v3.BGPFilterRuleV4", &bad),
                    Err(FragmentError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn typed_access() {
        let r = parse_resource(json!({"apiVersion": API_VERSION, "kind": "IPPool",
            "metadata": {"name": "p"}, "spec": {"cidr": "fd00::/64"}}))
        .unwrap();
        let pool: v3::IPPool = r.to_typed().unwrap();
        assert_eq!(pool.spec.block_size, 122);
    }
}
