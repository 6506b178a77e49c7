//! Unit tests of the parser and evaluator: the three-valued results (which `matches` folds
//! into one boolean), the tree RocketMQ's rewrites build, and the depth limit.

use super::ast::{Const, Expr, Order};
use super::eval::{Thrown, Value};
use super::*;

/// The value of `expr` on `props` (`None`: a Java exception).
fn value(expr: &str, props: &[(&str, &str)]) -> Option<Value<'static>> {
    let f = SqlFilter::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let raw = properties::encode(props.iter().copied());
    let names = f.names.clone();
    let got = eval::eval(
        &f.root,
        &Lookup {
            names: &names,
            lookup: |n: &str| properties::get(&raw, n),
            marker: std::marker::PhantomData,
        },
    );
    // A filter's value is a boolean or NULL: it borrows nothing.
    match got {
        Ok(Value::Null) => Some(Value::Null),
        Ok(Value::Bool(b)) => Some(Value::Bool(b)),
        Ok(other) => panic!("{expr}: {other:?} at the top"),
        Err(Thrown) => None,
    }
}

const T: Option<Value<'static>> = Some(Value::Bool(true));
const F: Option<Value<'static>> = Some(Value::Bool(false));
const N: Option<Value<'static>> = Some(Value::Null);
const ERR: Option<Value<'static>> = None;

#[test]
fn three_valued_results() {
    let a = [("a", "5")];
    type Case<'c> = (&'c str, &'c [(&'c str, &'c str)], Option<Value<'static>>);
    let cases: &[Case<'_>] = &[
        // Absent properties.
        ("x = 1", &[], N),
        ("x <> 1", &[], N),
        ("x > 1", &[], N),
        ("x IN ('1')", &[], N),
        ("x NOT IN ('1')", &[], N),
        ("x CONTAINS '1'", &[], F),
        ("x NOT CONTAINS '1'", &[], F),
        ("x IS NULL", &[], T),
        ("x", &[], N),
        ("NOT x", &[], N),
        ("x = y", &[], T),
        ("x = a", &a, N),
        ("a = x", &a, F),
        ("a <> x", &a, T),
        // Logic with unknowns.
        ("x = 1 AND a = 5", &a, N),
        ("x = 1 AND a = 4", &a, F),
        ("x = 1 OR a = 5", &a, T),
        ("x = 1 OR a = 4", &a, N),
        ("NOT (x = 1)", &a, N),
        ("NULL", &[], N),
        ("NOT NULL", &[], N),
        // A present property as a condition is FALSE, even "true".
        ("a", &a, F),
        ("t", &[("t", "true")], F),
        ("t = TRUE", &[("t", "TRUE")], T),
        // Exceptions, and short-circuits that avoid them.
        ("a = 'x' OR b > 1", &[("a", "x"), ("b", "zz")], T),
        ("b > 1 OR a = 'x'", &[("a", "x"), ("b", "zz")], ERR),
        ("b > 1 AND a = 'x'", &[("b", "0")], F),
        ("b > 1", &[("b", "1.5")], ERR),
        ("b > 1.0", &[("b", "1.5")], T),
        ("b > c", &[("b", "2"), ("c", "x")], ERR),
        ("b > c", &[("b", " 2 "), ("c", "1e0")], T),
        ("TRUE = a", &a, ERR),
        ("(a = '5') = 'x'", &a, ERR),
        ("(a = '5') = 5", &a, F),
        // Negation.
        ("-a IS NULL", &a, T),
        ("-(-5) = 5", &[], T),
        ("-'x' IS NULL", &[], T),
        ("-2147483648 = -2147483648L", &[], T),
        ("-a < 0", &a, N),
    ];
    for (expr, props, want) in cases {
        assert_eq!(value(expr, props), *want, "{expr} on {props:?}");
    }
}

#[test]
fn integer_literals_are_int_or_long() {
    let root = |s| SqlFilter::parse(s).unwrap().root;
    let Expr::Eq(_, r) = root("a = 2147483647") else {
        panic!()
    };
    assert_eq!(*r, Expr::Const(Const::Int(i32::MAX)));
    let Expr::Eq(_, r) = root("a = 2147483648") else {
        panic!()
    };
    assert_eq!(*r, Expr::Const(Const::Long(2_147_483_648)));
    let Expr::Eq(_, r) = root("a = 7L") else {
        panic!()
    };
    assert_eq!(*r, Expr::Const(Const::Int(7)));
    // An Integer literal makes the property an Integer: out of range is an exception.
    assert_eq!(value("a > 1", &[("a", "3000000000")]), ERR);
    assert_eq!(value("a > 3000000000", &[("a", "3000000001")]), T);
    assert_eq!(value("a > 1L", &[("a", "3000000000")]), ERR);
}

#[test]
fn derived_operators_are_rewritten_as_rocketmq_does() {
    let root = |s| SqlFilter::parse(s).unwrap().root;
    let prop = || Box::new(Expr::Prop(0));
    let int = |i| Box::new(Expr::Const(Const::Int(i)));
    assert_eq!(
        root("a BETWEEN 1 AND 2"),
        Expr::And(vec![
            Expr::Order(Order::Ge, prop(), int(1)),
            Expr::Order(Order::Le, prop(), int(2)),
        ])
    );
    assert_eq!(
        root("a NOT BETWEEN 1 AND 2"),
        Expr::Or(vec![
            Expr::Order(Order::Lt, prop(), int(1)),
            Expr::Order(Order::Gt, prop(), int(2)),
        ])
    );
    assert_eq!(
        root("a <> 1"),
        Expr::Not(Box::new(Expr::Eq(prop(), int(1))))
    );
    assert_eq!(
        root("a IS NOT NULL"),
        Expr::Not(Box::new(Expr::Eq(
            prop(),
            Box::new(Expr::Const(Const::Null))
        )))
    );
    // NOT binds tighter than '=': (NOT a) = 1.
    assert_eq!(
        root("NOT a = 1"),
        Expr::Eq(Box::new(Expr::Not(Box::new(Expr::Truthy(0)))), int(1))
    );
    // Chains are flat, parentheses and '+' vanish.
    assert_eq!(
        root("a OR (b) OR +c"),
        Expr::Or(vec![Expr::Truthy(0), Expr::Truthy(1), Expr::Truthy(2)])
    );
}

#[test]
fn depth_is_limited_and_long_chains_are_not_deep() {
    let nested = |n| format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
    assert!(SqlFilter::parse(&nested(build::MAX_DEPTH - 10)).is_ok());
    let err = SqlFilter::parse(&nested(build::MAX_DEPTH + 1)).unwrap_err();
    assert!(err.to_string().contains("nested deeper"), "{err}");
    assert!(SqlFilter::parse(&"NOT ".repeat(100_000)).is_err());
    assert!(SqlFilter::parse(&format!("a{}", " = a".repeat(1000))).is_err());
    let ors = vec!["a = '1'"; 20_000].join(" OR ");
    let f = SqlFilter::parse(&ors).unwrap();
    assert!(f.matches(&properties::encode([("a", "1")])));
    assert!(!f.matches(&properties::encode([("a", "2")])));
}

#[test]
fn many_names_are_looked_up_one_by_one() {
    let names: Vec<String> = (0..RESOLVED + 3).map(|i| format!("p{i}")).collect();
    let expr = names
        .iter()
        .map(|n| format!("{n} = '{n}'"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let f = SqlFilter::parse(&expr).unwrap();
    let mut props: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), n.as_str())).collect();
    assert!(f.matches(&properties::encode(props.iter().copied())));
    props.pop();
    assert!(!f.matches(&properties::encode(props.iter().copied())));
}
