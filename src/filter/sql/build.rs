//! Building the tree as RocketMQ's expression factories build it, with the checks they make:
//! `asBooleanExpression`, `checkEqualOperand` and `checkEqualOperandCompatability` (for `=`
//! and `<>`), `checkLessThanOperand` (for `>`, `>=`, `<`, `<=` and `BETWEEN`),
//! `createBetween`'s bounds, `createInFilter`'s property, and the literal ranges of
//! `createFromDecimal` and `createFloat`. Also the depth limit.

use super::SyntaxError;
use super::ast::{Const, Expr, Order, TextOp};
use super::eval::{self, Value};

/// Deepest nesting of parentheses and unary operators, and deepest expression tree, accepted
/// (so that neither parsing nor evaluation can exhaust a thread's stack).
pub(super) const MAX_DEPTH: usize = 128;

/// A parsed sub-expression, the column it starts at, and how deep its tree is.
pub(super) struct Parsed {
    pub(super) expr: Expr,
    pub(super) col: usize,
    pub(super) depth: usize,
}

impl Parsed {
    /// A leaf.
    pub(super) fn leaf(expr: Expr, col: usize) -> Parsed {
        Parsed {
            expr,
            col,
            depth: 1,
        }
    }
}

pub(super) fn too_deep(col: usize) -> SyntaxError {
    SyntaxError::new(
        col,
        format!("expression nested deeper than {MAX_DEPTH} levels"),
    )
}

/// A node over children as deep as `depth`, refused if the tree gets too deep.
fn node(expr: Expr, col: usize, depth: usize) -> Result<Parsed, SyntaxError> {
    let depth = depth + 1;
    if depth > MAX_DEPTH {
        return Err(too_deep(col));
    }
    Ok(Parsed { expr, col, depth })
}

/// `AND` (`or == false`) or `OR` of two or more conditions.
pub(super) fn logic(xs: Vec<Parsed>, or: bool) -> Result<Parsed, SyntaxError> {
    let col = xs.first().map_or(1, |x| x.col);
    let depth = xs.iter().map(|x| x.depth).max().unwrap_or(0);
    let xs = xs.into_iter().map(|x| x.expr).collect();
    node(if or { Expr::Or(xs) } else { Expr::And(xs) }, col, depth)
}

/// `NOT x`, `x` a condition; `col` is where the `NOT` is.
pub(super) fn not(x: Parsed, col: usize) -> Result<Parsed, SyntaxError> {
    let depth = x.depth;
    node(Expr::Not(Box::new(x.expr)), col, depth)
}

/// Unary minus; `col` is where the `-` is.
pub(super) fn negate(x: Parsed, col: usize) -> Result<Parsed, SyntaxError> {
    let depth = x.depth;
    node(Expr::Negate(Box::new(x.expr)), col, depth)
}

/// RocketMQ's `asBooleanExpression`: a condition as it is, a property as
/// [`Expr::Truthy`], anything else refused.
pub(super) fn condition(p: Parsed) -> Result<Parsed, SyntaxError> {
    match p.expr {
        Expr::Prop(slot) => Ok(Parsed {
            expr: Expr::Truthy(slot),
            ..p
        }),
        ref e if e.is_boolean() => Ok(p),
        ref e => {
            let found = match e {
                Expr::Const(c) => describe(c),
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

/// `left = right`, or `left <> right` (`NOT (left = right)`): neither side the literal
/// `NULL`, and not `TRUE`/`FALSE` against another kind of literal.
pub(super) fn equal(left: Parsed, right: Parsed, not_equal: bool) -> Result<Parsed, SyntaxError> {
    let op = if not_equal { "'<>'" } else { "'='" };
    for side in [&left, &right] {
        if side.expr == Expr::Const(Const::Null) {
            return Err(SyntaxError::new(
                side.col,
                format!("NULL cannot be compared with {op} (use IS NULL or IS NOT NULL)"),
            ));
        }
    }
    if let (Expr::Const(l @ Const::Bool(_)), Expr::Const(r)) = (&left.expr, &right.expr)
        && !right.expr.is_boolean()
    {
        return Err(SyntaxError::new(
            left.col,
            format!("{} cannot be compared with {}", describe(l), describe(r)),
        ));
    }
    let col = left.col;
    let eq = binary(left, right, Expr::Eq)?;
    if not_equal { not(eq, col) } else { Ok(eq) }
}

/// `x IS NULL` (`x = NULL`, unchecked) or `x IS NOT NULL`; `null_col` is where `NULL` is.
pub(super) fn is_null(x: Parsed, null_col: usize, negated: bool) -> Result<Parsed, SyntaxError> {
    let col = x.col;
    let null = Parsed::leaf(Expr::Const(Const::Null), null_col);
    let eq = binary(x, null, Expr::Eq)?;
    if negated { not(eq, col) } else { Ok(eq) }
}

fn binary(
    left: Parsed,
    right: Parsed,
    build: impl FnOnce(Box<Expr>, Box<Expr>) -> Expr,
) -> Result<Parsed, SyntaxError> {
    let depth = left.depth.max(right.depth);
    node(
        build(Box::new(left.expr), Box::new(right.expr)),
        left.col,
        depth,
    )
}

/// `left > right` and the like: only numbers, properties and negations on either side.
pub(super) fn ordered(order: Order, left: Parsed, right: Parsed) -> Result<Parsed, SyntaxError> {
    for side in [&left, &right] {
        let found = match &side.expr {
            Expr::Const(Const::Int(_) | Const::Long(_) | Const::Double(_)) => continue,
            Expr::Const(c) => describe(c),
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
    binary(left, right, |l, r| Expr::Order(order, l, r))
}

/// `value [NOT] BETWEEN low AND high`, with `createBetween`'s checks of constant bounds
/// (not for `NOT BETWEEN`, as in RocketMQ).
pub(super) fn between(
    value: Parsed,
    low: Parsed,
    high: Parsed,
    negated: bool,
) -> Result<Parsed, SyntaxError> {
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
    let first = ordered(low_op, value, low)?;
    let second = ordered(high_op, copy, high)?;
    logic(vec![first, second], negated)
}

/// `x [NOT] CONTAINS|STARTSWITH|ENDSWITH 'pattern'`: any `x`.
pub(super) fn text(
    x: Parsed,
    op: TextOp,
    negated: bool,
    pattern: Box<str>,
) -> Result<Parsed, SyntaxError> {
    let (col, depth) = (x.col, x.depth);
    let expr = Expr::Text {
        op,
        negated,
        operand: Box::new(x.expr),
        pattern,
    };
    node(expr, col, depth)
}

/// `x [NOT] IN ('a', ...)`: `x` must be a property.
pub(super) fn in_list(
    x: Parsed,
    list: Vec<Box<str>>,
    negated: bool,
) -> Result<Parsed, SyntaxError> {
    let Expr::Prop(prop) = x.expr else {
        return Err(SyntaxError::new(
            x.col,
            "the left side of IN must be a property name",
        ));
    };
    let expr = Expr::In {
        prop,
        list: list.into(),
        negated,
    };
    Ok(Parsed::leaf(expr, x.col))
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

fn describe(c: &Const) -> &'static str {
    match c {
        Const::Null => "NULL",
        Const::Bool(true) => "TRUE",
        Const::Bool(false) => "FALSE",
        Const::Int(_) | Const::Long(_) | Const::Double(_) => "a number",
        Const::Str(_) => "a string",
    }
}

/// The text of a string literal: quotes removed, `''` made `'`.
pub(super) fn unquote(raw: &str) -> Box<str> {
    let inner = raw
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or(raw);
    inner.replace("''", "'").into_boxed_str()
}

/// `createFromDecimal`: an `Integer` when it fits in 32 bits, else a `Long`; larger is an
/// error.
pub(super) fn decimal(text: &str, col: usize) -> Result<Const, SyntaxError> {
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
pub(super) fn float(text: &str, col: usize) -> Result<Const, SyntaxError> {
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
