//! Version negotiation: which CNI versions a plugin speaks, and what each version has.

use serde_json::{Value, json};

use crate::error::{CODE_INCOMPATIBLE_VERSION, CniError};

/// The versions a plugin speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// Every version the plugin speaks, oldest first.
    pub supported: &'static [&'static str],
    /// The version used when the request names none, or one the plugin does not speak.
    pub default: &'static str,
}

impl Versions {
    /// Whether the plugin speaks `version`.
    pub fn supports(&self, version: &str) -> bool {
        self.supported.contains(&version)
    }

    /// `requested` when the plugin speaks it, else the default.
    pub fn negotiate<'a>(&'a self, requested: Option<&'a str>) -> &'a str {
        requested
            .filter(|v| self.supports(v))
            .unwrap_or(self.default)
    }

    /// Code 1 unless the plugin speaks `version`.
    pub fn require(&self, version: &str) -> Result<(), CniError> {
        if self.supports(version) {
            return Ok(());
        }
        Err(CniError::new(
            CODE_INCOMPATIBLE_VERSION,
            format!("incompatible CNI version {version}"),
        )
        .with_details(format!("supported versions: {}", self.supported.join(", "))))
    }

    /// The VERSION result, written in `version`.
    pub fn result(&self, version: &str) -> Value {
        json!({"cniVersion": version, "supportedVersions": self.supported})
    }
}

/// Whether `version` has CHECK (0.4.0 and later).
pub fn has_check(version: &str) -> bool {
    !matches!(version, "0.3.0" | "0.3.1")
}

/// Whether `version` has STATUS and GC (1.1.0 and later).
pub fn has_status_gc(version: &str) -> bool {
    version == "1.1.0"
}

/// Whether results in `version` use the pre-1.0 format (`ips[].version`).
pub fn is_legacy(version: &str) -> bool {
    version.starts_with("0.")
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Versions = Versions {
        supported: &["0.3.1", "1.0.0"],
        default: "1.0.0",
    };

    #[test]
    fn negotiation() {
        assert_eq!(V.negotiate(Some("0.3.1")), "0.3.1");
        assert_eq!(V.negotiate(Some("9.9.9")), "1.0.0");
        assert_eq!(V.negotiate(None), "1.0.0");
        assert!(V.require("1.0.0").is_ok());
        let e = V.require("0.4.0").unwrap_err();
        assert_eq!(e.code, CODE_INCOMPATIBLE_VERSION);
        assert_eq!(e.details, "supported versions: 0.3.1, 1.0.0");
        assert_eq!(
            V.result("0.3.1"),
            json!({"cniVersion": "0.3.1", "supportedVersions": ["0.3.1", "1.0.0"]})
        );
        assert!(!has_check("0.3.1") && has_check("0.4.0"));
        assert!(has_status_gc("1.1.0") && !has_status_gc("1.0.0"));
        assert!(is_legacy("0.4.0") && !is_legacy("1.0.0"));
    }
}
