//! Evaluation of a parsed filter against one message's properties, as RocketMQ's
//! expression classes evaluate it: values are Java objects (`null`, `Boolean`, `Integer`,
//! `Long`, `Double`, `String`), comparisons convert between them with `__compare`'s rules,
//! and a Java exception (a string that is not a number where one is needed) abandons the
//! whole evaluation: the message does not match.
//!
//! Nothing here allocates: values borrow from the filter's literals and from the record's
//! properties string.

use std::cmp::Ordering;

use super::ast::{Const, Expr, TextOp};
use super::java;

/// A value during evaluation (a Java object).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Value<'a> {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(&'a str),
}

/// A Java exception was thrown: the evaluation is abandoned and the message does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Thrown;

/// Where property values come from: slot `n` is the filter's `n`th property name.
pub(super) trait Props<'a> {
    /// The value of the property in `slot`, if the message has it.
    fn get(&self, slot: usize) -> Option<&'a str>;
}

/// Evaluates `e`.
pub(super) fn eval<'a>(e: &'a Expr, props: &impl Props<'a>) -> Result<Value<'a>, Thrown> {
    Ok(match e {
        Expr::Const(c) => match c {
            Const::Null => Value::Null,
            Const::Bool(b) => Value::Bool(*b),
            Const::Int(i) => Value::Int(*i),
            Const::Long(l) => Value::Long(*l),
            Const::Double(d) => Value::Double(*d),
            Const::Str(s) => Value::Str(s),
        },
        Expr::Prop(slot) => props.get(*slot).map_or(Value::Null, Value::Str),
        Expr::Truthy(slot) => match props.get(*slot) {
            None => Value::Null,
            Some(_) => Value::Bool(false),
        },
        Expr::Negate(x) => match eval(x, props)? {
            Value::Int(i) => Value::Int(i.wrapping_neg()),
            Value::Long(l) => Value::Long(l.wrapping_neg()),
            Value::Double(d) => Value::Double(-d),
            _ => Value::Null,
        },
        Expr::Not(x) => match eval(x, props)? {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(!b),
            _ => return Err(Thrown),
        },
        Expr::And(xs) => logic(xs, props, false)?,
        Expr::Or(xs) => logic(xs, props, true)?,
        Expr::Eq(l, r) => {
            let lv = eval(l, props)?;
            let rv = eval(r, props)?;
            match (lv, rv) {
                (Value::Null, Value::Null) => Value::Bool(true),
                (Value::Null, _) => Value::Null,
                (_, Value::Null) => Value::Bool(false),
                _ if equals(lv, rv) => Value::Bool(true),
                _ => Value::Bool(compare(lv, rv)?.is_eq()),
            }
        }
        Expr::Order(op, l, r) => {
            let lv = eval(l, props)?;
            if lv == Value::Null {
                return Ok(Value::Null);
            }
            let rv = eval(r, props)?;
            if rv == Value::Null {
                return Ok(Value::Null);
            }
            let ordering = match (lv, rv) {
                // Two strings are compared as numbers, or not at all.
                (Value::Str(a), Value::Str(b)) => {
                    let a = java::parse_double(a).ok_or(Thrown)?;
                    let b = java::parse_double(b).ok_or(Thrown)?;
                    java::cmp_double(a, b)
                }
                _ => compare(lv, rv)?,
            };
            Value::Bool(op.holds(ordering))
        }
        Expr::In {
            prop,
            list,
            negated,
        } => match props.get(*prop) {
            None => Value::Null,
            Some(v) => Value::Bool(list.iter().any(|s| **s == *v) ^ negated),
        },
        Expr::Text {
            op,
            negated,
            operand,
            pattern,
        } => {
            if pattern.is_empty() {
                return Ok(Value::Bool(false));
            }
            match eval(operand, props)? {
                Value::Str(s) => {
                    let found = match op {
                        TextOp::Contains => s.contains(&**pattern),
                        TextOp::StartsWith => s.starts_with(&**pattern),
                        TextOp::EndsWith => s.ends_with(&**pattern),
                    };
                    Value::Bool(found ^ negated)
                }
                // Absent, or not a string: false, for the NOT forms too.
                _ => Value::Bool(false),
            }
        }
    })
}

/// `OR` (`or`) or `AND` (`!or`) of `xs`, left to right (RocketMQ's `LogicExpression`):
/// the first `TRUE` (for `OR`) or `FALSE` (for `AND`) decides and the operands after it
/// are not evaluated; otherwise the result is `NULL` if an operand was `NULL`.
fn logic<'a>(xs: &'a [Expr], props: &impl Props<'a>, or: bool) -> Result<Value<'a>, Thrown> {
    let mut unknown = false;
    for x in xs {
        match eval(x, props)? {
            Value::Bool(b) if b == or => return Ok(Value::Bool(or)),
            Value::Bool(_) => {}
            Value::Null => unknown = true,
            _ => return Err(Thrown),
        }
    }
    Ok(if unknown {
        Value::Null
    } else {
        Value::Bool(!or)
    })
}

/// Java `equals`: the same class and the same value.
fn equals(l: Value<'_>, r: Value<'_>) -> bool {
    match (l, r) {
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Long(a), Value::Long(b)) => a == b,
        (Value::Double(a), Value::Double(b)) => java::eq_double(a, b),
        (Value::Str(a), Value::Str(b)) => a == b,
        _ => false,
    }
}

/// RocketMQ's `ComparisonExpression.__compare`: values of different classes are converted
/// to the class of the other (a string to the number or boolean it is compared with; an
/// `Integer` to `Long` or `Double`; a `Long` to `Double`); a string that does not convert
/// throws; pairs it has no rule for (a boolean with a number) compare as "less".
pub(super) fn compare(l: Value<'_>, r: Value<'_>) -> Result<Ordering, Thrown> {
    use Value::{Bool, Double, Int, Long, Null, Str};
    let int = |s: &str| java::parse_int(s).ok_or(Thrown);
    let long = |s: &str| java::parse_long(s).ok_or(Thrown);
    let double = |s: &str| java::parse_double(s).ok_or(Thrown);
    Ok(match (l, r) {
        (Null, _) | (_, Null) => return Err(Thrown),
        (Bool(a), Bool(b)) => a.cmp(&b),
        // RocketMQ casts the Boolean to a String here: a ClassCastException.
        (Bool(_), Str(_)) => return Err(Thrown),
        (Bool(_), _) => Ordering::Less,
        (Int(a), Int(b)) => a.cmp(&b),
        (Int(a), Long(b)) => i64::from(a).cmp(&b),
        (Int(a), Double(b)) => java::cmp_double(f64::from(a), b),
        (Int(a), Str(b)) => a.cmp(&int(b)?),
        (Long(a), Long(b)) => a.cmp(&b),
        (Long(a), Int(b)) => a.cmp(&i64::from(b)),
        (Long(a), Double(b)) => java::cmp_double(a as f64, b),
        (Long(a), Str(b)) => a.cmp(&long(b)?),
        (Double(a), Double(b)) => java::cmp_double(a, b),
        (Double(a), Int(b)) => java::cmp_double(a, f64::from(b)),
        (Double(a), Long(b)) => java::cmp_double(a, b as f64),
        (Double(a), Str(b)) => java::cmp_double(a, double(b)?),
        (Int(_) | Long(_) | Double(_), Bool(_)) => Ordering::Less,
        (Str(a), Str(b)) => java::cmp_str(a, b),
        (Str(a), Bool(b)) => java::parse_bool(a).cmp(&b),
        (Str(a), Int(b)) => int(a)?.cmp(&b),
        (Str(a), Long(b)) => long(a)?.cmp(&b),
        (Str(a), Double(b)) => java::cmp_double(double(a)?, b),
    })
}

/// Property values looked up one at a time, each time a property is referred to.
pub(super) struct Lookup<'a, 'n, F> {
    pub(super) names: &'n [Box<str>],
    pub(super) lookup: F,
    pub(super) marker: std::marker::PhantomData<&'a str>,
}

impl<'a, F: Fn(&str) -> Option<&'a str>> Props<'a> for Lookup<'a, '_, F> {
    fn get(&self, slot: usize) -> Option<&'a str> {
        self.names.get(slot).and_then(|n| (self.lookup)(n))
    }
}

/// Property values found in one pass over the properties string beforehand.
pub(super) struct Resolved<'a, const N: usize> {
    pub(super) values: [Option<&'a str>; N],
}

impl<'a, const N: usize> Props<'a> for Resolved<'a, N> {
    fn get(&self, slot: usize) -> Option<&'a str> {
        self.values.get(slot).copied().flatten()
    }
}
