//! WorkloadEndpoint resource names and length-limited identifiers.
//!
//! A WorkloadEndpoint's name is built from its identifiers: node, orchestrator, then a
//! workload-identifying segment that depends on the orchestrator (`k8s`: pod, `cni`: container
//! ID, `libnetwork`: the literal `libnetwork`, anything else: workload), then the endpoint.
//! Inside a segment `-` is escaped as `--`; segments are joined with a single `-`.

use std::sync::LazyLock;

use base64::Engine as _;
use regex::Regex;
use sha2::Digest as _;

/// The Kubernetes orchestrator name.
pub const ORCHESTRATOR_KUBERNETES: &str = "k8s";
/// The CNI orchestrator name.
pub const ORCHESTRATOR_CNI: &str = "cni";
/// The Docker libnetwork orchestrator name.
pub const ORCHESTRATOR_DOCKER: &str = "libnetwork";

/// A name segment may not start or end with `-`: the escaping would make the name ambiguous.
static SEGMENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[^-](.*[^-])?$").expect("valid regex"));

/// Why a WorkloadEndpoint name could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// An identifier is missing or holds a value that cannot be put in a name.
    #[error("invalid or missing {field}: {reason}")]
    Field {
        /// The identifier's JSON name (`node`, `orchestrator`, `pod`, `containerID`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The name does not have the shape of a WorkloadEndpoint name.
    #[error("cannot parse workload endpoint name {0:?}")]
    Unparseable(String),
}

impl NameError {
    /// The offending identifier's JSON name, for [`NameError::Field`].
    pub fn field(&self) -> Option<&'static str> {
        match self {
            NameError::Field { field, .. } => Some(field),
            NameError::Unparseable(_) => None,
        }
    }
}

/// The identifiers a WorkloadEndpoint name is made of; empty strings mean "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadEndpointIdentifiers {
    /// The node hosting the endpoint.
    pub node: String,
    /// The orchestrator (`k8s`, `cni`, `libnetwork`, or any other name).
    pub orchestrator: String,
    /// The endpoint (interface) name.
    pub endpoint: String,
    /// The workload, for orchestrators other than the three well-known ones.
    pub workload: String,
    /// The pod, for `k8s`.
    pub pod: String,
    /// The container ID, for `cni`.
    pub container_id: String,
}

/// One segment of a name: its value ("" = unset / wildcard) and the identifier it came from.
struct Segment<'a> {
    value: &'a str,
    field: &'static str,
}

impl WorkloadEndpointIdentifiers {
    fn segments(&self) -> [Segment<'_>; 4] {
        let node = Segment {
            value: &self.node,
            field: "node",
        };
        let orch = Segment {
            value: &self.orchestrator,
            field: "orchestrator",
        };
        let endp = Segment {
            value: &self.endpoint,
            field: "endpoint",
        };
        let third = match self.orchestrator.as_str() {
            ORCHESTRATOR_KUBERNETES => Segment {
                value: &self.pod,
                field: "pod",
            },
            ORCHESTRATOR_CNI => Segment {
                value: &self.container_id,
                field: "containerID",
            },
            ORCHESTRATOR_DOCKER => Segment {
                value: ORCHESTRATOR_DOCKER,
                field: "workload",
            },
            _ => Segment {
                value: &self.workload,
                field: "workload",
            },
        };
        [node, orch, third, endp]
    }

    /// The full resource name; every segment must be set.
    pub fn calculate_name(&self) -> Result<String, NameError> {
        self.build(false)
    }

    /// The name, or the prefix of it up to the first unset identifier (which is how a list
    /// of all endpoints of a node or a pod is selected). The node must be set.
    pub fn calculate_name_prefix(&self) -> Result<String, NameError> {
        self.build(true)
    }

    fn build(&self, allow_prefix: bool) -> Result<String, NameError> {
        let mut name = String::new();
        let segments = self.segments();
        let last = segments.len() - 1;
        for (i, seg) in segments.iter().enumerate() {
            if seg.value.is_empty() {
                // The node is the minimum a prefix needs: an empty prefix would match
                // everything, which is never what a caller asking by identifiers wants.
                if allow_prefix && i > 0 {
                    return Ok(name);
                }
                return Err(NameError::Field {
                    field: seg.field,
                    reason: "value must be specified".to_owned(),
                });
            }
            name.push_str(&escape_segment(seg)?);
            if i < last {
                name.push('-');
            }
        }
        Ok(name)
    }

    /// Whether `name` is the name of an endpoint with these identifiers; unset identifiers
    /// match anything.
    pub fn name_matches(&self, name: &str) -> Result<bool, NameError> {
        let segments = self.segments();
        for seg in &segments {
            if !seg.value.is_empty() {
                escape_segment(seg)?;
            }
        }
        let parts = extract_parts(name);
        if parts.len() != segments.len() {
            return Ok(false);
        }
        Ok(segments
            .iter()
            .zip(&parts)
            .all(|(seg, part)| seg.value.is_empty() || seg.value == part))
    }
}

fn escape_segment(seg: &Segment<'_>) -> Result<String, NameError> {
    if !SEGMENT.is_match(seg.value) {
        return Err(NameError::Field {
            field: seg.field,
            reason: format!("{:?} must not start or end with '-'", seg.value),
        });
    }
    Ok(seg.value.replace('-', "--"))
}

/// Splits a name at single dashes, turning `--` back into `-`.
fn extract_parts(name: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '-' {
            if chars.peek() == Some(&'-') {
                chars.next();
                parts.last_mut().expect("never empty").push('-');
            } else {
                parts.push(String::new());
            }
        } else {
            parts.last_mut().expect("never empty").push(c);
        }
    }
    parts
}

/// Splits a WorkloadEndpoint name back into its identifiers. Names of 2-4 segments are
/// accepted; a 3-segment name has no endpoint.
pub fn parse_workload_endpoint_name(name: &str) -> Result<WorkloadEndpointIdentifiers, NameError> {
    if name.is_empty() {
        return Err(NameError::Unparseable(name.to_owned()));
    }
    let parts = extract_parts(name);
    if !(2..=4).contains(&parts.len()) {
        return Err(NameError::Unparseable(name.to_owned()));
    }
    let mut ids = WorkloadEndpointIdentifiers {
        node: parts[0].clone(),
        orchestrator: parts[1].clone(),
        ..Default::default()
    };
    if let Some(third) = parts.get(2) {
        match ids.orchestrator.as_str() {
            ORCHESTRATOR_KUBERNETES => ids.pod = third.clone(),
            ORCHESTRATOR_CNI => ids.container_id = third.clone(),
            // The libnetwork segment is a constant, not an identifier.
            ORCHESTRATOR_DOCKER => {}
            _ => ids.workload = third.clone(),
        }
    }
    if let Some(endpoint) = parts.get(3) {
        ids.endpoint = endpoint.clone();
    }
    Ok(ids)
}

/// `prefix + suffix` when that fits in `max_length` (and is not a suffix starting with `_`
/// at exactly `max_length`, which would look like a shortened id); otherwise `prefix + "_" +`
/// the base64url SHA-256 of `suffix`, truncated to fit.
pub fn length_limited_id(prefix: &str, suffix: &str, max_length: usize) -> String {
    let total = prefix.len() + suffix.len();
    if total < max_length || (total == max_length && !suffix.starts_with('_')) {
        return format!("{prefix}{suffix}");
    }
    let hash =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(suffix));
    let room = max_length.saturating_sub(prefix.len() + 1).min(hash.len());
    format!("{prefix}_{}", &hash[..room])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k8s_name_round_trip() {
        let ids = WorkloadEndpointIdentifiers {
            node: "node-1".into(),
            orchestrator: "k8s".into(),
            pod: "pod-name".into(),
            endpoint: "eth0".into(),
            ..Default::default()
        };
        let name = ids.calculate_name().unwrap();
        assert_eq!(name, "node--1-k8s-pod--name-eth0");
        assert_eq!(parse_workload_endpoint_name(&name).unwrap(), ids);
        assert!(ids.name_matches(&name).unwrap());
    }

    #[test]
    fn prefix_needs_node() {
        let ids = WorkloadEndpointIdentifiers::default();
        assert_eq!(
            ids.calculate_name_prefix().unwrap_err().field(),
            Some("node")
        );
    }

    #[test]
    fn length_limit() {
        assert_eq!(length_limited_id("felix", "1234", 10), "felix1234");
        assert_eq!(length_limited_id("felix", "_2345", 10), "felix_kMQI");
    }
}
