//! Typed `projectcalico.org/v3` resources.
//!
//! Field names, JSON names and field order follow upstream's Go structs, so serializing a
//! value gives the same key order calicoctl prints. Every struct rejects unknown fields.
//! Values with a closed set of spellings (actions, modes, ...) are kept as strings here and
//! checked by the validator, which can then name the field and the allowed values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod bgp;
mod bgpfilter;
mod clusterinfo;
mod endpoint;
mod felix;
mod ippool;
mod networkset;
mod node;
mod policy;
mod profile;
mod status;
mod tier;

pub use bgp::*;
pub use bgpfilter::*;
pub use clusterinfo::*;
pub use endpoint::*;
pub use felix::*;
pub use ippool::*;
pub use networkset::*;
pub use node::*;
pub use policy::*;
pub use profile::*;
pub use status::*;
pub use tier::*;

/// Serializers shared by the resource structs.
pub(crate) mod ser {
    use serde::Serializer;

    /// Go prints a float64 that holds an integer without a fraction (`order: 100`); serde_json
    /// would print `100.0`, so integral values are written as integers.
    pub(crate) fn opt_f64<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "the value is integral and well inside i64's range"
                )]
                let i = *f as i64;
                s.serialize_i64(i)
            }
            Some(f) => s.serialize_f64(*f),
            None => s.serialize_none(),
        }
    }

    /// `skip_serializing_if` helper for Go's `omitempty` on booleans.
    #[expect(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde passes fields by reference"
    )]
    pub(crate) fn is_false(b: &bool) -> bool {
        !*b
    }

    /// `skip_serializing_if` helper for Go's `omitempty` on integers.
    #[expect(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde passes fields by reference"
    )]
    pub(crate) fn is_zero_i64(v: &i64) -> bool {
        *v == 0
    }

    /// `skip_serializing_if` helper for Go's `omitempty` on port numbers.
    #[expect(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde passes fields by reference"
    )]
    pub(crate) fn is_zero_u16(v: &u16) -> bool {
        *v == 0
    }
}

/// Kubernetes-style object metadata, as upstream embeds `metav1.ObjectMeta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectMeta {
    /// The resource's name, unique per kind (and namespace).
    #[serde(rename = "name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Prefix for a server-generated name.
    #[serde(
        rename = "generateName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub generate_name: String,
    /// The namespace, for namespaced kinds.
    #[serde(
        rename = "namespace",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
    /// Deprecated self link, kept for compatibility.
    #[serde(rename = "selfLink", default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    /// Unique id assigned by the datastore.
    #[serde(rename = "uid", default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Opaque revision used for optimistic concurrency.
    #[serde(
        rename = "resourceVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub resource_version: String,
    /// Sequence number of the desired state's generation.
    #[serde(
        rename = "generation",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub generation: Option<i64>,
    /// When the resource was created (RFC 3339), as the datastore recorded it.
    #[serde(
        rename = "creationTimestamp",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub creation_timestamp: Option<String>,
    /// When the resource is scheduled for deletion (RFC 3339).
    #[serde(
        rename = "deletionTimestamp",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub deletion_timestamp: Option<String>,
    /// Grace period before deletion, in seconds.
    #[serde(
        rename = "deletionGracePeriodSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub deletion_grace_period_seconds: Option<i64>,
    /// Labels, used by selectors.
    #[serde(rename = "labels", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(
        rename = "annotations",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Objects this one depends on.
    #[serde(
        rename = "ownerReferences",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub owner_references: Vec<OwnerReference>,
    /// Finalizers that must run before deletion.
    #[serde(rename = "finalizers", default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Server-side-apply field ownership; kept opaque because nothing here interprets it.
    #[serde(
        rename = "managedFields",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub managed_fields: Vec<serde_json::Value>,
}

/// A reference to an owning object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerReference {
    /// The owner's API version.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// The owner's kind.
    #[serde(rename = "kind")]
    pub kind: String,
    /// The owner's name.
    #[serde(rename = "name")]
    pub name: String,
    /// The owner's uid.
    #[serde(rename = "uid")]
    pub uid: String,
    /// Whether the owner is the managing controller.
    #[serde(
        rename = "controller",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub controller: Option<bool>,
    /// Whether deletion of the owner waits for this object.
    #[serde(
        rename = "blockOwnerDeletion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub block_owner_deletion: Option<bool>,
}

/// A reference to a key of a Kubernetes Secret (used for BGP passwords).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeySelector {
    /// The Secret's name.
    #[serde(rename = "name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The key within the Secret.
    #[serde(rename = "key")]
    pub key: String,
    /// Whether the Secret or key may be missing.
    #[serde(rename = "optional", default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// Declares a resource struct: type meta, metadata and spec, in upstream's key order.
macro_rules! resource {
    ($(#[doc = $doc:literal])* $name:ident, $spec:ty) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Always `projectcalico.org/v3`.
            #[serde(rename = "apiVersion", default)]
            pub api_version: String,
            /// The kind's name.
            #[serde(rename = "kind", default)]
            pub kind: String,
            /// Standard object metadata.
            #[serde(rename = "metadata", default)]
            pub metadata: $crate::v3::ObjectMeta,
            /// The desired state.
            #[serde(rename = "spec", default)]
            pub spec: $spec,
        }
    };
}
pub(crate) use resource;
