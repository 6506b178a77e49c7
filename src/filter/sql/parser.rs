//! The grammar of RocketMQ's `SelectorParser.jj`, by recursive descent; the nodes are made
//! (and checked) as RocketMQ's factories make them, in [`super::build`].
//!
//! ```text
//! selector   = or EOF                        (a condition)
//! or         = and { OR and }
//! and        = equality { AND equality }
//! equality   = comparison { ("=" | "<>") comparison | IS [NOT] NULL }
//! comparison = unary { (">" | ">=" | "<" | "<=") unary
//!                    | [NOT] (CONTAINS | STARTSWITH | ENDSWITH) string
//!                    | [NOT] BETWEEN unary AND unary
//!                    | [NOT] IN "(" string { "," string } ")" }
//! unary      = "+" unary | "-" unary | NOT unary | primary
//! primary    = literal | property | "(" or ")"
//! ```
//!
//! So `NOT` binds tighter than the comparisons, as in RocketMQ (and ActiveMQ, whose grammar
//! it is): `NOT a = 'x'` is `(NOT a) = 'x'`. Unlike RocketMQ, whose parser stops at the first
//! token it cannot use and ignores the rest (`a = 1 b = 2` selects by `a = 1`), tokens left
//! over are an error here.

use super::SyntaxError;
use super::ast::{Const, Expr, Order, TextOp};
use super::build::{self, MAX_DEPTH, Parsed};
use super::lexer::{self, Tok, Token};

/// Parses `src`: the expression tree and the property names its slots refer to.
pub(super) fn parse(src: &str) -> Result<(Expr, Vec<Box<str>>), SyntaxError> {
    let mut p = Parser {
        tokens: lexer::tokenize(src)?,
        pos: 0,
        names: Vec::new(),
        nesting: 0,
    };
    let root = p.or()?;
    let next = p.peek();
    match next.tok {
        Tok::Eof => Ok((build::condition(root)?.expr, p.names)),
        Tok::RParen => Err(SyntaxError::new(next.col, "')' without a matching '('")),
        tok => Err(SyntaxError::new(
            next.col,
            format!("expected an operator, AND, OR or the end of the expression, found {tok}"),
        )),
    }
}

struct Parser<'s> {
    /// Ends with `Tok::Eof`.
    tokens: Vec<Token<'s>>,
    pos: usize,
    /// Property names, by slot.
    names: Vec<Box<str>>,
    /// Nesting of `unary` calls (parentheses and unary operators).
    nesting: usize,
}

impl<'s> Parser<'s> {
    fn peek_at(&self, ahead: usize) -> Token<'s> {
        let last = self.tokens.len().saturating_sub(1);
        self.tokens
            .get((self.pos + ahead).min(last))
            .copied()
            .unwrap_or(Token {
                tok: Tok::Eof,
                col: 1,
            })
    }

    fn peek(&self) -> Token<'s> {
        self.peek_at(0)
    }

    /// The next token, consumed (the end stays the end).
    fn bump(&mut self) -> Token<'s> {
        let t = self.peek();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn expect(&mut self, tok: Tok<'_>, what: &str) -> Result<Token<'s>, SyntaxError> {
        let t = self.peek();
        if t.tok == tok {
            return Ok(self.bump());
        }
        Err(expected(what, t))
    }

    /// A string literal, `''` undone.
    fn string(&mut self, what: &str) -> Result<Box<str>, SyntaxError> {
        let t = self.peek();
        match t.tok {
            Tok::Str(raw) => {
                self.bump();
                Ok(build::unquote(raw))
            }
            _ => Err(expected(what, t)),
        }
    }

    fn or(&mut self) -> Result<Parsed, SyntaxError> {
        self.chain(Tok::Or, Self::and)
    }

    fn and(&mut self) -> Result<Parsed, SyntaxError> {
        self.chain(Tok::And, Self::equality)
    }

    /// `operand { op operand }`, the operands conditions, as one node.
    fn chain(
        &mut self,
        op: Tok<'static>,
        operand: fn(&mut Self) -> Result<Parsed, SyntaxError>,
    ) -> Result<Parsed, SyntaxError> {
        let first = operand(self)?;
        if self.peek().tok != op {
            return Ok(first);
        }
        let mut xs = vec![build::condition(first)?];
        while self.peek().tok == op {
            self.bump();
            xs.push(build::condition(operand(self)?)?);
        }
        build::logic(xs, op == Tok::Or)
    }

    fn equality(&mut self) -> Result<Parsed, SyntaxError> {
        let mut left = self.comparison()?;
        loop {
            let t = self.peek();
            left = match t.tok {
                Tok::Eq | Tok::Ne => {
                    self.bump();
                    let right = self.comparison()?;
                    build::equal(left, right, t.tok == Tok::Ne)?
                }
                Tok::Is => {
                    self.bump();
                    let negated = self.peek().tok == Tok::Not;
                    let what = if negated {
                        self.bump();
                        "NULL after IS NOT"
                    } else {
                        "NULL or NOT NULL after IS"
                    };
                    let null = self.expect(Tok::Null, what)?;
                    build::is_null(left, null.col, negated)?
                }
                _ => return Ok(left),
            };
        }
    }

    fn comparison(&mut self) -> Result<Parsed, SyntaxError> {
        let mut left = self.unary()?;
        loop {
            // `NOT` here can only start NOT CONTAINS, NOT BETWEEN and the like.
            let negated = self.peek().tok == Tok::Not;
            let op = self.peek_at(usize::from(negated));
            left = match op.tok {
                Tok::Gt | Tok::Ge | Tok::Lt | Tok::Le if !negated => {
                    let order = match op.tok {
                        Tok::Gt => Order::Gt,
                        Tok::Ge => Order::Ge,
                        Tok::Lt => Order::Lt,
                        _ => Order::Le,
                    };
                    self.bump();
                    let right = self.unary()?;
                    build::ordered(order, left, right)?
                }
                Tok::Contains | Tok::StartsWith | Tok::EndsWith => {
                    let text = match op.tok {
                        Tok::Contains => TextOp::Contains,
                        Tok::StartsWith => TextOp::StartsWith,
                        _ => TextOp::EndsWith,
                    };
                    self.pos += 1 + usize::from(negated);
                    let pattern = self.string(&format!("a string ('…') after {}", op.tok))?;
                    build::text(left, text, negated, pattern)?
                }
                Tok::Between => {
                    self.pos += 1 + usize::from(negated);
                    let low = self.unary()?;
                    self.expect(Tok::And, "AND between the bounds of BETWEEN")?;
                    let high = self.unary()?;
                    build::between(left, low, high, negated)?
                }
                Tok::In => {
                    self.pos += 1 + usize::from(negated);
                    self.expect(Tok::LParen, "'(' after IN")?;
                    let what = "a string ('…') in the IN list";
                    let mut list = vec![self.string(what)?];
                    while self.peek().tok == Tok::Comma {
                        self.bump();
                        list.push(self.string(what)?);
                    }
                    self.expect(Tok::RParen, "',' or ')' in the IN list")?;
                    build::in_list(left, list, negated)?
                }
                _ if negated => {
                    return Err(expected(
                        "CONTAINS, STARTSWITH, ENDSWITH, BETWEEN or IN after NOT",
                        op,
                    ));
                }
                _ => return Ok(left),
            };
        }
    }

    fn unary(&mut self) -> Result<Parsed, SyntaxError> {
        self.nesting += 1;
        let result = if self.nesting > MAX_DEPTH {
            Err(build::too_deep(self.peek().col))
        } else {
            self.unary_inner()
        };
        self.nesting -= 1;
        result
    }

    fn unary_inner(&mut self) -> Result<Parsed, SyntaxError> {
        let t = self.peek();
        match t.tok {
            Tok::Plus => {
                self.bump();
                let x = self.unary()?;
                Ok(Parsed { col: t.col, ..x })
            }
            Tok::Minus => {
                self.bump();
                build::negate(self.unary()?, t.col)
            }
            Tok::Not => {
                self.bump();
                build::not(build::condition(self.unary()?)?, t.col)
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Parsed, SyntaxError> {
        let t = self.bump();
        let constant = |c| Ok(Parsed::leaf(Expr::Const(c), t.col));
        match t.tok {
            Tok::Str(raw) => constant(Const::Str(build::unquote(raw))),
            Tok::Decimal(s) => constant(build::decimal(s, t.col)?),
            Tok::Float(s) => constant(build::float(s, t.col)?),
            Tok::True => constant(Const::Bool(true)),
            Tok::False => constant(Const::Bool(false)),
            Tok::Null => constant(Const::Null),
            Tok::Id(name) => {
                let slot = match self.names.iter().position(|n| **n == *name) {
                    Some(slot) => slot,
                    None => {
                        self.names.push(name.into());
                        self.names.len() - 1
                    }
                };
                Ok(Parsed::leaf(Expr::Prop(slot), t.col))
            }
            Tok::LParen => {
                let inner = self.or()?;
                self.expect(
                    Tok::RParen,
                    &format!("')' to close the '(' at column {}", t.col),
                )?;
                Ok(Parsed {
                    col: t.col,
                    ..inner
                })
            }
            _ => Err(expected(
                "a value (a number, a string, TRUE, FALSE, NULL, a property name, '(', '+', '-' \
                 or NOT)",
                t,
            )),
        }
    }
}

fn expected(what: &str, found: Token<'_>) -> SyntaxError {
    SyntaxError::new(found.col, format!("expected {what}, found {}", found.tok))
}
