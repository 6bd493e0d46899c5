//! Recursive-descent parser over the token stream.
//!
//! Grammar (`||` binds loosest; a run of `!` applies to one operation):
//!
//! ```text
//! selector  := <empty> | or
//! or        := and ( "||" and )*
//! and       := operation ( "&&" operation )*
//! operation := "!"* ( has | all | global | "(" or ")" | comparison )
//! comparison:= label ( ("==" | "!=" | contains | starts with | ends with) string
//!                    | ("in" | "not in") "{" [ string ( "," string )* [","] ] "}" )
//! ```

use crate::ast::{Node, ValueSet};
use crate::tokenizer::{Spanned, Token, tokenize};
use crate::{ErrorKind, MAX_NESTING, ParseError};

/// Parses `input` into a tree.
pub(crate) fn parse_node(input: &str) -> Result<Node, ParseError> {
    let tokens = tokenize(input)?;
    let mut parser = Parser {
        input,
        tokens: &tokens,
        pos: 0,
        depth: 0,
    };
    if parser.peek() == Token::Eof {
        return Ok(Node::All);
    }
    let node = parser.or()?;
    match parser.peek() {
        Token::Eof => Ok(node),
        found => Err(parser.error(ErrorKind::TrailingInput {
            found: found.to_string(),
        })),
    }
}

struct Parser<'t, 'a> {
    input: &'a str,
    /// Always ends with `Eof`, so `peek` never runs off the end.
    tokens: &'t [Spanned<'a>],
    pos: usize,
    /// Current parenthesis nesting, bounded so hostile input cannot overflow the stack.
    depth: usize,
}

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Token<'a> {
        self.tokens[self.pos].token
    }

    /// Steps past the current token (never past `Eof`).
    fn bump(&mut self) {
        if self.peek() != Token::Eof {
            self.pos += 1;
        }
    }

    /// An error located at the current token.
    fn error(&self, kind: ErrorKind) -> ParseError {
        ParseError::new(self.input, kind, self.tokens[self.pos].offset)
    }

    fn or(&mut self) -> Result<Node, ParseError> {
        let first = self.and()?;
        if self.peek() != Token::Or {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.peek() == Token::Or {
            self.bump();
            operands.push(self.and()?);
        }
        Ok(Node::Or(operands.into_boxed_slice()))
    }

    fn and(&mut self) -> Result<Node, ParseError> {
        let first = self.operation()?;
        if self.peek() != Token::And {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.peek() == Token::And {
            self.bump();
            operands.push(self.operation()?);
        }
        Ok(Node::And(operands.into_boxed_slice()))
    }

    fn operation(&mut self) -> Result<Node, ParseError> {
        let mut negated = false;
        while self.peek() == Token::Not {
            self.bump();
            negated = !negated;
        }
        let node = match self.peek() {
            Token::Has(label) => {
                self.bump();
                Node::Has(label.into())
            }
            Token::All => {
                self.bump();
                Node::All
            }
            Token::Global => {
                self.bump();
                Node::Global
            }
            Token::LParen => {
                if self.depth >= MAX_NESTING {
                    return Err(self.error(ErrorKind::TooDeep));
                }
                self.bump();
                self.depth += 1;
                let inner = self.or()?;
                self.depth -= 1;
                match self.peek() {
                    Token::RParen => {
                        self.bump();
                        inner
                    }
                    found => {
                        return Err(self.error(ErrorKind::ExpectedCloseParen {
                            found: found.to_string(),
                        }));
                    }
                }
            }
            Token::Label(label) => {
                self.bump();
                self.comparison(label)?
            }
            found => {
                return Err(self.error(ErrorKind::ExpectedOperand {
                    found: found.to_string(),
                }));
            }
        };
        Ok(if negated { node.negate() } else { node })
    }

    /// The rest of a comparison, after its label.
    fn comparison(&mut self, label: &str) -> Result<Node, ParseError> {
        let label: Box<str> = label.into();
        type Make = fn(Box<str>, Box<str>) -> Node;
        let (operator, make): (&'static str, Make) = match self.peek() {
            Token::Eq => ("==", Node::Eq),
            Token::Ne => ("!=", Node::Ne),
            Token::Contains => ("contains", Node::Contains),
            Token::StartsWith => ("starts with", Node::StartsWith),
            Token::EndsWith => ("ends with", Node::EndsWith),
            Token::In => {
                self.bump();
                return Ok(Node::In(label, self.set("in")?));
            }
            Token::NotIn => {
                self.bump();
                return Ok(Node::NotIn(label, self.set("not in")?));
            }
            _ => {
                return Err(self.error(ErrorKind::ExpectedOperator {
                    label: label.into(),
                }));
            }
        };
        self.bump();
        match self.peek() {
            Token::String(value) => {
                self.bump();
                Ok(make(label, value.into()))
            }
            _ => Err(self.error(ErrorKind::ExpectedString { operator })),
        }
    }

    /// `{ "a", "b" }`, after `in` / `not in`. A trailing comma is accepted, as upstream does.
    fn set(&mut self, operator: &'static str) -> Result<ValueSet, ParseError> {
        if self.peek() != Token::LBrace {
            return Err(self.error(ErrorKind::ExpectedSet { operator }));
        }
        self.bump();
        let mut values = Vec::new();
        loop {
            match self.peek() {
                Token::RBrace => break,
                Token::String(v) => values.push(Box::<str>::from(v)),
                found => {
                    return Err(self.error(ErrorKind::ExpectedSetValue {
                        found: found.to_string(),
                    }));
                }
            }
            self.bump();
            match self.peek() {
                Token::RBrace => break,
                Token::Comma => self.bump(),
                found => {
                    return Err(self.error(ErrorKind::ExpectedSetSeparator {
                        found: found.to_string(),
                    }));
                }
            }
        }
        self.bump(); // the '}'
        Ok(ValueSet::new(values))
    }
}
