//! Selector tokenizer.
//!
//! Context-sensitive: an operator word (`contains`, `in`, `starts with`, ...)
//! is only recognised directly after a label, so the same words are still
//! usable as label names (`contains contains "contains"`).

use std::fmt;

use crate::{ErrorKind, MAX_LABEL_LENGTH, ParseError};

/// One token of a selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// A label name.
    Label(&'a str),
    /// A string literal's contents, without the quotes.
    String(&'a str),
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `in`
    In,
    /// `!`
    Not,
    /// `not in` / `notin`
    NotIn,
    /// `contains`
    Contains,
    /// `starts with` / `startswith`
    StartsWith,
    /// `ends with` / `endswith`
    EndsWith,
    /// `all()`
    All,
    /// `has(label)`, carrying the label.
    Has(&'a str),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `global()`
    Global,
    /// End of input.
    Eof,
}

impl Token<'_> {
    /// The token kind's name as used by the conformance corpus (`not_in`, `starts_with`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Token::Label(_) => "label",
            Token::String(_) => "string",
            Token::LBrace => "lbrace",
            Token::RBrace => "rbrace",
            Token::Comma => "comma",
            Token::Eq => "eq",
            Token::Ne => "ne",
            Token::In => "in",
            Token::Not => "not",
            Token::NotIn => "not_in",
            Token::Contains => "contains",
            Token::StartsWith => "starts_with",
            Token::EndsWith => "ends_with",
            Token::All => "all",
            Token::Has(_) => "has",
            Token::LParen => "lparen",
            Token::RParen => "rparen",
            Token::And => "and",
            Token::Or => "or",
            Token::Global => "global",
            Token::Eof => "eof",
        }
    }

    /// The token's payload: the label of `Label`/`Has`, the contents of `String`.
    pub fn value(&self) -> Option<&str> {
        match self {
            Token::Label(v) | Token::String(v) | Token::Has(v) => Some(v),
            _ => None,
        }
    }
}

/// Describes the token for error messages.
impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fixed = match self {
            Token::Label(l) => return write!(f, "label {l:?}"),
            Token::String(s) => return write!(f, "string {s:?}"),
            Token::Has(l) => return write!(f, "'has({l})'"),
            Token::LBrace => "'{'",
            Token::RBrace => "'}'",
            Token::Comma => "','",
            Token::Eq => "'=='",
            Token::Ne => "'!='",
            Token::In => "'in'",
            Token::Not => "'!'",
            Token::NotIn => "'not in'",
            Token::Contains => "'contains'",
            Token::StartsWith => "'starts with'",
            Token::EndsWith => "'ends with'",
            Token::All => "'all()'",
            Token::LParen => "'('",
            Token::RParen => "')'",
            Token::And => "'&&'",
            Token::Or => "'||'",
            Token::Global => "'global()'",
            Token::Eof => "end of selector",
        };
        f.write_str(fixed)
    }
}

/// A token and the byte offset in the input where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spanned<'a> {
    /// The token.
    pub token: Token<'a>,
    /// Byte offset of the token's first character.
    pub offset: usize,
}

/// Whether `b` may appear in a label name: `[A-Za-z0-9_./-]`.
pub(crate) fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// Whether `s` is a valid label name (1..=512 label characters).
pub fn is_valid_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_LABEL_LENGTH && s.bytes().all(is_label_byte)
}

/// Splits a selector into tokens; the last one is always [`Token::Eof`].
pub fn tokenize(input: &str) -> Result<Vec<Spanned<'_>>, ParseError> {
    let mut lexer = Lexer { input, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_whitespace();
        let offset = lexer.pos;
        let after_label = match tokens.last() {
            Some(Spanned {
                token: Token::Label(label),
                ..
            }) => Some(*label),
            _ => None,
        };
        let token = lexer
            .next_token(after_label)
            .map_err(|(kind, at)| ParseError::new(input, kind, at))?;
        tokens.push(Spanned { token, offset });
        if token == Token::Eof {
            return Ok(tokens);
        }
    }
}

/// Cursor over the input. All offsets are byte offsets on char boundaries
/// because we only ever step over ASCII bytes or whole string literals.
struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

type LexResult<T> = Result<T, (ErrorKind, usize)>;

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn skip_whitespace(&mut self) {
        // Only space and tab count, as upstream: a newline is an error.
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    /// Consumes `word` if the input continues with it.
    fn eat(&mut self, word: &str) -> bool {
        if self.rest().starts_with(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// Whether the next character cannot continue a label, so that an
    /// operator word just read is not merely a prefix of a longer word.
    fn at_word_boundary(&self) -> bool {
        self.rest()
            .as_bytes()
            .first()
            .is_none_or(|&b| !is_label_byte(b))
    }

    /// Consumes the words (any spaces/tabs, or none, between them) if they
    /// are all there and followed by a word boundary; otherwise consumes nothing.
    fn eat_words(&mut self, words: &[&str]) -> bool {
        let start = self.pos;
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                self.skip_whitespace();
            }
            if !self.eat(word) {
                self.pos = start;
                return false;
            }
        }
        if self.at_word_boundary() {
            true
        } else {
            self.pos = start;
            false
        }
    }

    /// Reads a label name at the cursor (maximal run of label characters).
    fn label(&mut self) -> LexResult<&'a str> {
        let rest = self.rest();
        let len = rest.bytes().take_while(|&b| is_label_byte(b)).count();
        if len > MAX_LABEL_LENGTH {
            return Err((ErrorKind::LabelTooLong { length: len }, self.pos));
        }
        self.pos += len;
        Ok(&rest[..len])
    }

    /// Reads `)` (after optional whitespace) closing `function(`.
    fn close_paren(&mut self, function: &'static str) -> LexResult<()> {
        self.skip_whitespace();
        if self.eat(")") {
            Ok(())
        } else {
            Err((ErrorKind::UnclosedFunction { function }, self.pos))
        }
    }

    /// Reads one token; whitespace before it has been skipped.
    fn next_token(&mut self, after_label: Option<&str>) -> LexResult<Token<'a>> {
        let start = self.pos;
        let Some(&first) = self.rest().as_bytes().first() else {
            return Ok(Token::Eof);
        };
        let simple = match first {
            b'(' => Some(Token::LParen),
            b')' => Some(Token::RParen),
            b'{' => Some(Token::LBrace),
            b'}' => Some(Token::RBrace),
            b',' => Some(Token::Comma),
            _ => None,
        };
        if let Some(token) = simple {
            self.pos += 1;
            return Ok(token);
        }
        match first {
            b'"' | b'\'' => {
                // No escapes: the literal ends at the next matching quote.
                let body = &self.rest()[1..];
                let Some(end) = body.find(first as char) else {
                    return Err((
                        ErrorKind::UnterminatedString {
                            quote: first as char,
                        },
                        start,
                    ));
                };
                self.pos += end + 2;
                Ok(Token::String(&body[..end]))
            }
            b'=' => self.two_char("==", Token::Eq),
            b'&' => self.two_char("&&", Token::And),
            b'|' => self.two_char("||", Token::Or),
            b'!' => {
                if self.eat("!=") {
                    Ok(Token::Ne)
                } else {
                    self.pos += 1;
                    Ok(Token::Not)
                }
            }
            _ => match after_label {
                Some(label) => self.operator_word(label),
                None => self.operand_word(),
            },
        }
    }

    /// Not after a label: `has(..)`, `all()`, `global()` or a label.
    fn operand_word(&mut self) -> LexResult<Token<'a>> {
        let start = self.pos;
        if self.eat("has(") {
            self.skip_whitespace();
            let at = self.pos;
            let label = self.label()?;
            if label.is_empty() {
                return Err((ErrorKind::ExpectedHasLabel, at));
            }
            self.close_paren("has")?;
            return Ok(Token::Has(label));
        }
        if self.eat("all(") {
            return self.close_paren("all").map(|()| Token::All);
        }
        if self.eat("global(") {
            return self.close_paren("global").map(|()| Token::Global);
        }
        let label = self.label()?;
        if label.is_empty() {
            let c = self.rest().chars().next().unwrap_or_default();
            return Err((ErrorKind::UnexpectedChar(c), start));
        }
        Ok(Token::Label(label))
    }

    fn two_char(&mut self, op: &'static str, token: Token<'a>) -> LexResult<Token<'a>> {
        if self.eat(op) {
            Ok(token)
        } else {
            Err((ErrorKind::IncompleteOperator { expected: op }, self.pos))
        }
    }

    /// After a label: one of the word operators must follow.
    fn operator_word(&mut self, label: &str) -> LexResult<Token<'a>> {
        const WORD_OPS: [(&[&str], Token<'static>); 5] = [
            (&["contains"], Token::Contains),
            (&["starts", "with"], Token::StartsWith),
            (&["ends", "with"], Token::EndsWith),
            (&["not", "in"], Token::NotIn),
            (&["in"], Token::In),
        ];
        for (words, token) in WORD_OPS {
            if self.eat_words(words) {
                return Ok(token);
            }
        }
        Err((
            ErrorKind::ExpectedOperator {
                label: label.to_owned(),
            },
            self.pos,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<String> {
        tokenize(s)
            .unwrap()
            .iter()
            .map(|t| match t.token.value() {
                Some(v) => format!("{}:{v}", t.token.kind_name()),
                None => t.token.kind_name().to_owned(),
            })
            .collect()
    }

    #[test]
    fn operator_words_only_after_labels() {
        assert_eq!(
            kinds("in in {'in'}"),
            ["label:in", "in", "lbrace", "string:in", "rbrace", "eof"]
        );
        assert_eq!(
            kinds("a notin{}"),
            ["label:a", "not_in", "lbrace", "rbrace", "eof"]
        );
        assert_eq!(kinds("a not \t in {}")[1], "not_in");
        assert!(tokenize("a inx {}").is_err());
        assert!(tokenize("a in-x {}").is_err(), "'-' continues a word");
        // As upstream: the boundary is checked right after the word, so this
        // tokenizes (and the parser then rejects the missing set).
        assert_eq!(kinds("b in c"), ["label:b", "in", "label:c", "eof"]);
        assert_eq!(kinds("b not in c"), ["label:b", "not_in", "label:c", "eof"]);
    }

    #[test]
    fn functions() {
        assert_eq!(kinds("has( a.b/c )"), ["has:a.b/c", "eof"]);
        assert_eq!(kinds("has == 'x'"), ["label:has", "eq", "string:x", "eof"]);
        assert_eq!(kinds("all\t( )"), ["label:all", "lparen", "rparen", "eof"]);
        assert!(tokenize("has()").is_err());
        assert!(tokenize("all(x)").is_err());
    }

    #[test]
    fn strings_have_no_escapes() {
        assert_eq!(kinds(r#"'\'"#), [r"string:\", "eof"]);
        assert_eq!(kinds(r#""'" '"'"#), ["string:'", "string:\"", "eof"]);
        assert_eq!(kinds("'héllo'"), ["string:héllo", "eof"]);
    }

    #[test]
    fn label_length_limit() {
        let ok = "a".repeat(MAX_LABEL_LENGTH);
        assert!(tokenize(&ok).is_ok());
        assert!(tokenize(&format!("{ok}a")).is_err());
        assert!(is_valid_label(&ok));
        assert!(!is_valid_label(""));
        assert!(!is_valid_label("a b"));
    }

    #[test]
    fn newline_is_not_whitespace() {
        assert!(tokenize("a == 'b'\n").is_err());
    }

    #[test]
    fn offsets() {
        let toks = tokenize("  a  == 'b'").unwrap();
        let offsets: Vec<_> = toks.iter().map(|t| t.offset).collect();
        assert_eq!(offsets, [2, 5, 8, 11]);
    }
}
