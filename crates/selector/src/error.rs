//! Parse errors.

/// Why a selector did not parse.
///
/// `Display` reads like
/// `invalid selector "a ==": expected a string literal after '==' at position 4`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {selector:?}: {reason}")]
pub struct ParseError {
    /// The selector text, exactly as given.
    pub selector: String,
    /// What is wrong and where (`"<kind> at position <n>"`).
    pub reason: String,
    /// What is wrong, as a value a caller can match on.
    pub kind: ErrorKind,
    /// Where it went wrong: a character (not byte) offset into `selector`.
    pub position: usize,
}

impl ParseError {
    /// Builds an error for `kind` found at byte offset `byte_offset` of `selector`.
    pub(crate) fn new(selector: &str, kind: ErrorKind, byte_offset: usize) -> Self {
        // Report characters, not bytes: that is what a person counts. Offsets
        // always fall on char boundaries; `get` guards against a bug turning
        // into a panic on the error path.
        let position = selector
            .get(..byte_offset)
            .map_or(byte_offset, |s| s.chars().count());
        ParseError {
            selector: selector.to_owned(),
            reason: format!("{kind} at position {position}"),
            kind,
            position,
        }
    }
}

/// The kinds of selector syntax error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A `"` or `'` literal has no closing quote.
    #[error("unterminated string literal: no closing {}", quote_name(*.quote))]
    UnterminatedString {
        /// The opening quote character.
        quote: char,
    },
    /// A lone `=`, `&` or `|` where `==`, `&&` or `||` was meant.
    #[error("expected '{expected}'")]
    IncompleteOperator {
        /// The operator that was expected.
        expected: &'static str,
    },
    /// A label not followed by a comparison operator.
    #[error("expected an operator after label {label:?}")]
    ExpectedOperator {
        /// The label.
        label: String,
    },
    /// `has(` without a valid label name.
    #[error("expected a label name inside 'has('")]
    ExpectedHasLabel,
    /// `has(`, `all(` or `global(` without the closing parenthesis.
    #[error("expected ')' to close '{function}('")]
    UnclosedFunction {
        /// `has`, `all` or `global`.
        function: &'static str,
    },
    /// A label name longer than [`MAX_LABEL_LENGTH`](crate::MAX_LABEL_LENGTH).
    #[error("label is {length} characters long, at most {max} are allowed", max = crate::MAX_LABEL_LENGTH)]
    LabelTooLong {
        /// The length of the offending label.
        length: usize,
    },
    /// A character that cannot start any token.
    #[error("unexpected character {0:?}")]
    UnexpectedChar(char),
    /// A comparison operator not followed by a string literal.
    #[error("expected a string literal after '{operator}'")]
    ExpectedString {
        /// The operator, in canonical spelling.
        operator: &'static str,
    },
    /// `in` / `not in` not followed by `{`.
    #[error("expected '{{' after '{operator}'")]
    ExpectedSet {
        /// `in` or `not in`.
        operator: &'static str,
    },
    /// Inside a set, after `{` or `,`.
    #[error("expected a string literal or '}}' in set, found {found}")]
    ExpectedSetValue {
        /// Description of the token found instead.
        found: String,
    },
    /// Inside a set, after a value.
    #[error("expected ',' or '}}' in set, found {found}")]
    ExpectedSetSeparator {
        /// Description of the token found instead.
        found: String,
    },
    /// Where an operand (label, `has(..)`, `all()`, `global()`, `!` or `(`) should start.
    #[error("expected a label, 'has(', 'all()', 'global()', '!' or '(', found {found}")]
    ExpectedOperand {
        /// Description of the token found instead.
        found: String,
    },
    /// A `(` without its `)`.
    #[error("expected ')', found {found}")]
    ExpectedCloseParen {
        /// Description of the token found instead.
        found: String,
    },
    /// A complete expression followed by more tokens.
    #[error("unexpected {found} after the end of the expression")]
    TrailingInput {
        /// Description of the extra token.
        found: String,
    },
    /// Parentheses nested deeper than [`MAX_NESTING`](crate::MAX_NESTING).
    #[error("parentheses nested more than {max} deep", max = crate::MAX_NESTING)]
    TooDeep,
}

/// Names a quote character unambiguously; a bare `'` in a message is hard to read.
fn quote_name(quote: char) -> &'static str {
    if quote == '"' {
        "double quote (\")"
    } else {
        "single quote (')"
    }
}
