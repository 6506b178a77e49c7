//! The grammar of RocketMQ's `SelectorParser.jj`, by recursive descent, with the checks its
//! expression factories make while building (`checkEqualOperand`, `checkLessThanOperand`,
//! `createBetween`'s bounds, `createInFilter`'s property, `asBooleanExpression`, the literal
//! ranges of `createFromDecimal` and `createFloat`).
//!
//! ```text
//! selector   = or EOF                        (must be boolean)
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
use super::eval::{self, Value};
use super::lexer::{self, Tok, Token};

/// Deepest nesting of parentheses and unary operators, and deepest expression tree, accepted
/// (so that neither parsing nor evaluation can exhaust a thread's stack).
pub(super) const MAX_DEPTH: usize = 128;

/// A parsed sub-expression, where it starts, and how deep its tree is.
struct Parsed {
    expr: Expr,
    col: usize,
    depth: usize,
}

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
        Tok::Eof => {}
        Tok::RParen => {
            return Err(SyntaxError::new(next.col, "')' without a matching '('"));
        }
        tok => {
            return Err(SyntaxError::new(
                next.col,
                format!("expected an operator, AND, OR or the end of the expression, found {tok}"),
            ));
        }
    }
    Ok((boolean(root)?.expr, p.names))
}

struct Parser<'s> {
    /// Ends with `Tok::Eof`.
    tokens: Vec<Token<'s>>,
    pos: usize,
    names: Vec<Box<str>>,
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
        Err(SyntaxError::new(
            t.col,
            format!("expected {what}, found {}", t.tok),
        ))
    }

    fn or(&mut self) -> Result<Parsed, SyntaxError> {
        self.chain(Tok::Or, Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Parsed, SyntaxError> {
        self.chain(Tok::And, Self::equality, Expr::And)
    }

    /// `operand { op operand }`, every operand boolean, as one node.
    fn chain(
        &mut self,
        op: Tok<'static>,
        operand: fn(&mut Self) -> Result<Parsed, SyntaxError>,
        build: fn(Vec<Expr>) -> Expr,
    ) -> Result<Parsed, SyntaxError> {
        let first = operand(self)?;
        if self.peek().tok != op {
            return Ok(first);
        }
        let col = first.col;
        let mut depth = first.depth;
        let mut xs = vec![boolean(first)?.expr];
        while self.peek().tok == op {
            self.bump();
            let next = boolean(operand(self)?)?;
            depth = depth.max(next.depth);
            xs.push(next.expr);
        }
        node(build(xs), col, depth + 1)
    }

    fn equality(&mut self) -> Result<Parsed, SyntaxError> {
        let mut left = self.comparison()?;
        loop {
            let t = self.peek();
            left = match t.tok {
                Tok::Eq | Tok::Ne => {
                    self.bump();
                    let right = self.comparison()?;
                    for side in [&left, &right] {
                        if side.expr == Expr::Const(Const::Null) {
                            return Err(SyntaxError::new(
                                side.col,
                                format!(
                                    "NULL cannot be compared with {} (use IS NULL or IS NOT NULL)",
                                    t.tok
                                ),
                            ));
                        }
                    }
                    if let (Expr::Const(Const::Bool(b)), Expr::Const(c)) = (&left.expr, &right.expr)
                        && !right.expr.is_boolean()
                    {
                        return Err(SyntaxError::new(
                            left.col,
                            format!(
                                "{} cannot be compared with {}",
                                if *b { "TRUE" } else { "FALSE" },
                                describe_const(c)
                            ),
                        ));
                    }
                    let eq = binary(left, right, Expr::Eq)?;
                    if t.tok == Tok::Ne { not(eq)? } else { eq }
                }
                Tok::Is => {
                    self.bump();
                    let negated = self.peek().tok == Tok::Not;
                    if negated {
                        self.bump();
                    }
                    let what = if negated {
                        "NULL after IS NOT"
                    } else {
                        "NULL or NOT NULL after IS"
                    };
                    let null = self.expect(Tok::Null, what)?;
                    let null = Parsed {
                        expr: Expr::Const(Const::Null),
                        col: null.col,
                        depth: 1,
                    };
                    let eq = binary(left, null, Expr::Eq)?;
                    if negated { not(eq)? } else { eq }
                }
                _ => return Ok(left),
            };
        }
    }

    fn comparison(&mut self) -> Result<Parsed, SyntaxError> {
        let mut left = self.unary()?;
        loop {
            let negated = self.peek().tok == Tok::Not;
            let op = self.peek_at(usize::from(negated));
            let order = match op.tok {
                Tok::Gt => Some(Order::Gt),
                Tok::Ge => Some(Order::Ge),
                Tok::Lt => Some(Order::Lt),
                Tok::Le => Some(Order::Le),
                _ => None,
            };
            let text = match op.tok {
                Tok::Contains => Some(TextOp::Contains),
                Tok::StartsWith => Some(TextOp::StartsWith),
                Tok::EndsWith => Some(TextOp::EndsWith),
                _ => None,
            };
            left = match (order, text, op.tok) {
                (Some(order), _, _) if !negated => {
                    self.bump();
                    let right = self.unary()?;
                    ordered(order, left, right)?
                }
                (_, Some(text), tok) => {
                    self.pos += 1 + usize::from(negated);
                    let pattern = self.string(&format!("a string ('…') after {tok}"))?;
                    let depth = left.depth + 1;
                    node(
                        Expr::Text {
                            op: text,
                            negated,
                            operand: Box::new(left.expr),
                            pattern,
                        },
                        left.col,
                        depth,
                    )?
                }
                (_, _, Tok::Between) => {
                    self.pos += 1 + usize::from(negated);
                    let low = self.unary()?;
                    self.expect(Tok::And, "AND between the bounds of BETWEEN")?;
                    let high = self.unary()?;
                    between(left, low, high, negated)?
                }
                (_, _, Tok::In) => {
                    self.pos += 1 + usize::from(negated);
                    self.expect(Tok::LParen, "'(' after IN")?;
                    let mut list = vec![self.string("a string ('…') in the IN list")?];
                    while self.peek().tok == Tok::Comma {
                        self.bump();
                        list.push(self.string("a string ('…') in the IN list")?);
                    }
                    self.expect(Tok::RParen, "',' or ')' in the IN list")?;
                    let Expr::Prop(prop) = left.expr else {
                        return Err(SyntaxError::new(
                            left.col,
                            "the left side of IN must be a property name",
                        ));
                    };
                    Parsed {
                        expr: Expr::In {
                            prop,
                            list: list.into(),
                            negated,
                        },
                        col: left.col,
                        depth: 1,
                    }
                }
                _ if negated => {
                    return Err(SyntaxError::new(
                        op.col,
                        format!(
                            "expected CONTAINS, STARTSWITH, ENDSWITH, BETWEEN or IN after NOT, found {}",
                            op.tok
                        ),
                    ));
                }
                _ => return Ok(left),
            };
        }
    }

    fn unary(&mut self) -> Result<Parsed, SyntaxError> {
        self.nesting += 1;
        let result = if self.nesting > MAX_DEPTH {
            Err(too_deep(self.peek().col))
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
                let x = self.unary()?;
                let depth = x.depth + 1;
                node(Expr::Negate(Box::new(x.expr)), t.col, depth)
            }
            Tok::Not => {
                self.bump();
                let x = boolean(self.unary()?)?;
                Ok(Parsed {
                    col: t.col,
                    ..not(x)?
                })
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Parsed, SyntaxError> {
        let t = self.bump();
        let constant = |c| {
            Ok(Parsed {
                expr: Expr::Const(c),
                col: t.col,
                depth: 1,
            })
        };
        match t.tok {
            Tok::Str(raw) => constant(Const::Str(unquote(raw))),
            Tok::Decimal(s) => constant(decimal(s, t.col)?),
            Tok::Float(s) => constant(float(s, t.col)?),
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
                Ok(Parsed {
                    expr: Expr::Prop(slot),
                    col: t.col,
                    depth: 1,
                })
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
            tok => Err(SyntaxError::new(
                t.col,
                format!(
                    "expected a value (a number, a string, TRUE, FALSE, NULL, a property name, \
                     '(', '+', '-' or NOT), found {tok}"
                ),
            )),
        }
    }

    /// A string literal, `''` undone.
    fn string(&mut self, what: &str) -> Result<Box<str>, SyntaxError> {
        let t = self.peek();
        if let Tok::Str(raw) = t.tok {
            self.bump();
            return Ok(unquote(raw));
        }
        Err(SyntaxError::new(
            t.col,
            format!("expected {what}, found {}", t.tok),
        ))
    }
}

fn too_deep(col: usize) -> SyntaxError {
    SyntaxError::new(
        col,
        format!("expression nested deeper than {MAX_DEPTH} levels"),
    )
}

/// A node, refused if its tree is too deep.
fn node(expr: Expr, col: usize, depth: usize) -> Result<Parsed, SyntaxError> {
    if depth > MAX_DEPTH {
        return Err(too_deep(col));
    }
    Ok(Parsed { expr, col, depth })
}

fn binary(
    left: Parsed,
    right: Parsed,
    build: fn(Box<Expr>, Box<Expr>) -> Expr,
) -> Result<Parsed, SyntaxError> {
    let depth = left.depth.max(right.depth) + 1;
    node(
        build(Box::new(left.expr), Box::new(right.expr)),
        left.col,
        depth,
    )
}

fn not(x: Parsed) -> Result<Parsed, SyntaxError> {
    let depth = x.depth + 1;
    node(Expr::Not(Box::new(x.expr)), x.col, depth)
}

/// RocketMQ's `asBooleanExpression`: a boolean node as it is, a property as
/// [`Expr::Truthy`], anything else refused.
fn boolean(p: Parsed) -> Result<Parsed, SyntaxError> {
    match p.expr {
        Expr::Prop(slot) => Ok(Parsed {
            expr: Expr::Truthy(slot),
            ..p
        }),
        ref e if e.is_boolean() => Ok(p),
        ref e => {
            let found = match e {
                Expr::Const(c) => describe_const(c),
                _ => "a negated ('-') value",
            };
            Err(SyntaxError::new(
                p.col,
                format!(
                    "expected a condition (a comparison, TRUE, FALSE, NULL, a property name, or \
                     conditions joined by AND, OR, NOT), found {found}"
                ),
            ))
        }
    }
}

/// RocketMQ's `checkLessThanOperand` on both sides, then the node.
fn ordered(order: Order, left: Parsed, right: Parsed) -> Result<Parsed, SyntaxError> {
    for side in [&left, &right] {
        let found = match &side.expr {
            Expr::Const(Const::Int(_) | Const::Long(_) | Const::Double(_)) => continue,
            Expr::Const(c) => describe_const(c),
            e if e.is_boolean() => "a condition",
            _ => continue,
        };
        return Err(SyntaxError::new(
            side.col,
            format!(
                "{found} cannot be compared with '>', '>=', '<' or '<=' (only numbers and \
                 properties can)"
            ),
        ));
    }
    let depth = left.depth.max(right.depth) + 1;
    node(
        Expr::Order(order, Box::new(left.expr), Box::new(right.expr)),
        left.col,
        depth,
    )
}

/// `value [NOT] BETWEEN low AND high`, with `createBetween`'s checks of constant bounds
/// (not for `NOT BETWEEN`, as in RocketMQ).
fn between(value: Parsed, low: Parsed, high: Parsed, negated: bool) -> Result<Parsed, SyntaxError> {
    if !negated && let (Expr::Const(lo), Expr::Const(hi)) = (&low.expr, &high.expr) {
        for (c, col) in [(lo, low.col), (hi, high.col)] {
            if *c == Const::Null {
                return Err(SyntaxError::new(
                    col,
                    "the bounds of BETWEEN cannot be NULL",
                ));
            }
        }
        match eval::compare(value_of(hi), value_of(lo)) {
            Ok(o) if o.is_lt() => {
                return Err(SyntaxError::new(
                    low.col,
                    "the lower bound of BETWEEN is above the upper bound",
                ));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(SyntaxError::new(
                    low.col,
                    "the bounds of BETWEEN cannot be compared with each other",
                ));
            }
        }
    }
    let (low_op, high_op) = if negated {
        (Order::Lt, Order::Gt)
    } else {
        (Order::Ge, Order::Le)
    };
    let copy = Parsed {
        expr: value.expr.clone(),
        ..value
    };
    let col = value.col;
    let first = ordered(low_op, value, low)?;
    let second = ordered(high_op, copy, high)?;
    let depth = first.depth.max(second.depth) + 1;
    let both = vec![first.expr, second.expr];
    node(
        if negated {
            Expr::Or(both)
        } else {
            Expr::And(both)
        },
        col,
        depth,
    )
}

fn value_of(c: &Const) -> Value<'_> {
    match c {
        Const::Null => Value::Null,
        Const::Bool(b) => Value::Bool(*b),
        Const::Int(i) => Value::Int(*i),
        Const::Long(l) => Value::Long(*l),
        Const::Double(d) => Value::Double(*d),
        Const::Str(s) => Value::Str(s),
    }
}

fn describe_const(c: &Const) -> &'static str {
    match c {
        Const::Null => "NULL",
        Const::Bool(true) => "TRUE",
        Const::Bool(false) => "FALSE",
        Const::Int(_) | Const::Long(_) | Const::Double(_) => "a number",
        Const::Str(_) => "a string",
    }
}

/// The text of a string literal: quotes removed, `''` made `'`.
fn unquote(raw: &str) -> Box<str> {
    let inner = raw
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or(raw);
    inner.replace("''", "'").into_boxed_str()
}

/// `createFromDecimal`: an `Integer` when it fits in 32 bits, else a `Long`; larger is an
/// error.
fn decimal(text: &str, col: usize) -> Result<Const, SyntaxError> {
    let digits = text.trim_end_matches(['l', 'L']);
    let value: i64 = digits.parse().map_err(|_| {
        SyntaxError::new(
            col,
            format!("the integer {text} is out of range (at most {})", i64::MAX),
        )
    })?;
    Ok(i32::try_from(value).map_or(Const::Long(value), Const::Int))
}

/// `createFloat`: refused when infinite, or below `Double.MIN_VALUE` (so `0.0` is refused,
/// as RocketMQ refuses it).
fn float(text: &str, col: usize) -> Result<Const, SyntaxError> {
    let value: f64 = text
        .parse()
        .map_err(|_| SyntaxError::new(col, format!("{text} is not a number")))?;
    if !value.is_finite() || value == 0.0 {
        return Err(SyntaxError::new(
            col,
            format!(
                "the float {text} is out of range: RocketMQ takes floats from 4.9E-324 to \
                 1.7976931348623157E308 only (0.0 is refused)"
            ),
        ));
    }
    Ok(Const::Double(value))
}
