//! CNI errors: the codes the specification reserves (0-99) and the error document.
//! Plugin-specific codes (100 and up) belong to each plugin.

use serde_json::{Value, json};

/// Incompatible CNI version.
pub const CODE_INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration.
pub const CODE_UNSUPPORTED_FIELD: u32 = 2;
/// The container is unknown or does not exist.
pub const CODE_UNKNOWN_CONTAINER: u32 = 3;
/// Invalid or missing environment variables.
pub const CODE_INVALID_ENV: u32 = 4;
/// I/O failure.
pub const CODE_IO: u32 = 5;
/// The network configuration could not be decoded.
pub const CODE_DECODE: u32 = 6;
/// The network configuration is invalid.
pub const CODE_INVALID_CONFIG: u32 = 7;
/// Transient failure: try again later.
pub const CODE_TRY_AGAIN: u32 = 11;
/// STATUS: the plugin is not available (cannot serve ADD).
pub const CODE_PLUGIN_NOT_AVAILABLE: u32 = 50;
/// STATUS: the plugin is available but limited (ADD may fail).
pub const CODE_PLUGIN_LIMITED: u32 = 51;
/// Anything else.
pub const CODE_INTERNAL: u32 = 999;

/// A CNI error: code, message, details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg} (code {code})")]
pub struct CniError {
    /// The CNI error code.
    pub code: u32,
    /// One-line message.
    pub msg: String,
    /// Longer explanation (may be empty).
    pub details: String,
}

impl CniError {
    /// An error with `code` and `msg`.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Add details.
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error document for `version`.
    pub fn to_json(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

/// Code 7: the network configuration is invalid.
pub fn invalid_config(msg: impl Into<String>) -> CniError {
    CniError::new(CODE_INVALID_CONFIG, msg)
}

/// Code 4: a required environment variable is missing.
pub fn env_missing(name: &str) -> CniError {
    CniError::new(
        CODE_INVALID_ENV,
        format!("required environment variable {name} is missing"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_document() {
        let e = CniError::new(CODE_DECODE, "bad").with_details("more");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion": "1.0.0", "code": 6, "msg": "bad", "details": "more"})
        );
        assert_eq!(e.to_string(), "bad (code 6)");
        assert_eq!(env_missing("CNI_NETNS").code, CODE_INVALID_ENV);
    }
}
