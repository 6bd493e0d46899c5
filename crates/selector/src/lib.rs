//! Calico's label-selector language. STUB: replaced by the real parser.

use std::fmt;

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(String);

/// Why a selector did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {selector:?}: {reason}")]
pub struct ParseError {
    /// The selector text.
    pub selector: String,
    /// What is wrong.
    pub reason: String,
}

/// Parse a selector.
pub fn parse(selector: &str) -> Result<Selector, ParseError> {
    Ok(Selector(selector.to_owned()))
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
