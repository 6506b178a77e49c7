//! SQL92 filters against a reference model, from a seeded RNG (`MQLITE_SEED` to reproduce):
//!
//! - random expressions (comparisons with integers and strings, `IS [NOT] NULL`, `[NOT] IN`,
//!   `[NOT] CONTAINS`, `BETWEEN`, bare properties, `TRUE`/`FALSE`/`NULL`, joined by `AND`,
//!   `OR`, `NOT`, printed with only the parentheses precedence needs and keywords in random
//!   case) on random property sets: the filter matches exactly when a small, direct model of
//!   RocketMQ's semantics (SQL three-valued logic, strings read as Java integers or an
//!   error that ends the evaluation, left-to-right short circuits) says TRUE; `NOT (e)`
//!   matches exactly when it says FALSE, and `(e) IS NULL` exactly when it says NULL;
//! - random token soup and random bytes: parsing and evaluating never panic.

mod common;

use common::Rng;
use mqlite::SqlFilter;
use mqlite::format::properties::encode;

const NAMES: [&str; 3] = ["a", "b", "c"];
const VALUES: [Option<&str>; 7] = [
    None,
    Some("1"),
    Some("2"),
    Some("10"),
    Some("-3"),
    Some("x"),
    Some("1.5"),
];
const INTS: [i32; 5] = [1, 2, 10, -3, 0];
const STRS: [&str; 3] = ["1", "x", "10"];

/// A result of the model: `Ok(Some(b))`, `Ok(None)` for NULL, `Err` for a Java exception.
type Res = Result<Option<bool>, ()>;

#[derive(Debug, Clone)]
enum E {
    Const(Option<bool>),
    Prop(usize),
    EqInt(usize, i32),
    EqStr(usize, &'static str),
    NeInt(usize, i32),
    Gt(usize, i32),
    Le(usize, i32),
    IsNull(usize, bool),
    In(usize, bool),
    Contains(usize, bool),
    Between(usize, i32, i32),
    Not(Box<E>),
    And(Box<E>, Box<E>),
    Or(Box<E>, Box<E>),
}

fn gen_expr(rng: &mut Rng, depth: u32) -> E {
    let p = rng.range(0, 3) as usize;
    let int = |rng: &mut Rng| INTS[rng.range(0, INTS.len() as u64) as usize];
    if depth == 0 || rng.range(0, 3) == 0 {
        return match rng.range(0, 12) {
            0 => E::Const([Some(true), Some(false), None][rng.range(0, 3) as usize]),
            1 => E::Prop(p),
            2 => E::EqInt(p, int(rng)),
            3 => E::EqStr(p, STRS[rng.range(0, 3) as usize]),
            4 => E::NeInt(p, int(rng)),
            5 => E::Gt(p, int(rng)),
            6 => E::Le(p, int(rng)),
            7 => E::IsNull(p, rng.range(0, 2) == 0),
            8 => E::In(p, rng.range(0, 2) == 0),
            9 => E::Contains(p, rng.range(0, 2) == 0),
            _ => {
                let (x, y) = (int(rng), int(rng));
                E::Between(p, x.min(y), x.max(y))
            }
        };
    }
    match rng.range(0, 3) {
        0 => E::Not(Box::new(gen_expr(rng, depth - 1))),
        1 => E::And(
            Box::new(gen_expr(rng, depth - 1)),
            Box::new(gen_expr(rng, depth - 1)),
        ),
        _ => E::Or(
            Box::new(gen_expr(rng, depth - 1)),
            Box::new(gen_expr(rng, depth - 1)),
        ),
    }
}

/// A keyword in random case.
fn kw(rng: &mut Rng, k: &str) -> String {
    match rng.range(0, 3) {
        0 => k.to_owned(),
        1 => k.to_lowercase(),
        _ => k
            .chars()
            .map(|c| {
                if rng.range(0, 2) == 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect(),
    }
}

/// Precedence for printing: OR 1, AND 2, everything else 3.
fn prec(e: &E) -> u8 {
    match e {
        E::Or(..) => 1,
        E::And(..) => 2,
        _ => 3,
    }
}

fn print(e: &E, rng: &mut Rng) -> String {
    let child = |c: &E, min: u8, rng: &mut Rng| {
        let s = print(c, rng);
        if prec(c) < min || rng.range(0, 8) == 0 {
            format!("({s})")
        } else {
            s
        }
    };
    match e {
        E::Const(Some(true)) => kw(rng, "TRUE"),
        E::Const(Some(false)) => kw(rng, "FALSE"),
        E::Const(None) => kw(rng, "NULL"),
        E::Prop(p) => NAMES[*p].to_owned(),
        E::EqInt(p, n) => format!("{} = {n}", NAMES[*p]),
        E::EqStr(p, s) => format!("{} = '{s}'", NAMES[*p]),
        E::NeInt(p, n) => format!("{} <> {n}", NAMES[*p]),
        E::Gt(p, n) => format!("{} > {n}", NAMES[*p]),
        E::Le(p, n) => format!("{} <= {n}", NAMES[*p]),
        E::IsNull(p, not) => {
            let not = if *not {
                format!(" {}", kw(rng, "NOT"))
            } else {
                String::new()
            };
            format!("{} {}{not} {}", NAMES[*p], kw(rng, "IS"), kw(rng, "NULL"))
        }
        E::In(p, not) => {
            let not = if *not {
                format!("{} ", kw(rng, "NOT"))
            } else {
                String::new()
            };
            format!("{} {not}{} ('1', 'x')", NAMES[*p], kw(rng, "IN"))
        }
        E::Contains(p, not) => {
            let not = if *not {
                format!("{} ", kw(rng, "NOT"))
            } else {
                String::new()
            };
            format!("{} {not}{} '1'", NAMES[*p], kw(rng, "CONTAINS"))
        }
        E::Between(p, lo, hi) => format!(
            "{} {} {lo} {} {hi}",
            NAMES[*p],
            kw(rng, "BETWEEN"),
            kw(rng, "AND")
        ),
        // NOT binds tighter than comparisons: its operand is parenthesized unless atomic.
        E::Not(x) => {
            let inner = print(x, rng);
            match **x {
                E::Const(_) | E::Prop(_) => format!("{} {inner}", kw(rng, "NOT")),
                _ => format!("{} ({inner})", kw(rng, "NOT")),
            }
        }
        E::And(l, r) => {
            let (l, op, r) = (child(l, 2, rng), kw(rng, "AND"), child(r, 2, rng));
            format!("{l} {op} {r}")
        }
        E::Or(l, r) => {
            let (l, op, r) = (child(l, 1, rng), kw(rng, "OR"), child(r, 1, rng));
            format!("{l} {op} {r}")
        }
    }
}

/// The model: RocketMQ's semantics for this small language, written directly.
fn model(e: &E, props: &[Option<&str>; 3]) -> Res {
    let int = |p: usize| -> Result<Option<i32>, ()> {
        match props[p] {
            None => Ok(None),
            Some(v) => v.parse::<i32>().map(Some).map_err(|_| ()),
        }
    };
    let not = |r: Option<bool>| r.map(|b| !b);
    Ok(match e {
        E::Const(c) => *c,
        E::Prop(p) => props[*p].map(|_| false),
        E::EqInt(p, n) => int(*p)?.map(|v| v == *n),
        E::NeInt(p, n) => int(*p)?.map(|v| v != *n),
        E::EqStr(p, s) => props[*p].map(|v| v == *s),
        E::Gt(p, n) => int(*p)?.map(|v| v > *n),
        E::Le(p, n) => int(*p)?.map(|v| v <= *n),
        E::IsNull(p, negated) => Some(props[*p].is_none() != *negated),
        E::In(p, negated) => props[*p].map(|v| (v == "1" || v == "x") != *negated),
        E::Contains(p, negated) => Some(props[*p].is_some_and(|v| v.contains('1') != *negated)),
        E::Between(p, lo, hi) => int(*p)?.map(|v| *lo <= v && v <= *hi),
        E::Not(x) => not(model(x, props)?),
        E::And(l, r) => {
            let l = model(l, props)?;
            if l == Some(false) {
                return Ok(Some(false));
            }
            match (l, model(r, props)?) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }
        }
        E::Or(l, r) => {
            let l = model(l, props)?;
            if l == Some(true) {
                return Ok(Some(true));
            }
            match (l, model(r, props)?) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }
        }
    })
}

#[test]
fn random_expressions_agree_with_the_model() {
    let mut rng = Rng::new(common::seed(0x05EE_D5C1));
    for round in 0..3000 {
        let e = gen_expr(&mut rng, 4);
        let text = print(&e, &mut rng);
        let filter = SqlFilter::parse(&text).unwrap_or_else(|err| panic!("{text}: {err}"));
        let negated = SqlFilter::parse(&format!("NOT ({text})")).unwrap();
        let is_null = SqlFilter::parse(&format!("({text}) IS NULL")).unwrap();
        for _ in 0..8 {
            let props: [Option<&str>; 3] =
                std::array::from_fn(|_| VALUES[rng.range(0, VALUES.len() as u64) as usize]);
            let raw = encode(
                NAMES
                    .iter()
                    .zip(props)
                    .filter_map(|(n, v)| v.map(|v| (*n, v))),
            );
            let want = model(&e, &props);
            let ctx = format!("round {round}: {text} on {props:?}: model {want:?}");
            assert_eq!(filter.matches(&raw), want == Ok(Some(true)), "{ctx}");
            assert_eq!(negated.matches(&raw), want == Ok(Some(false)), "NOT: {ctx}");
            assert_eq!(is_null.matches(&raw), want == Ok(None), "IS NULL: {ctx}");
        }
    }
}

#[test]
fn token_soup_and_random_bytes_never_panic() {
    const TOKENS: [&str; 40] = [
        "a",
        "b",
        "TAGS",
        "NOT",
        "AND",
        "OR",
        "BETWEEN",
        "IN",
        "IS",
        "NULL",
        "TRUE",
        "FALSE",
        "CONTAINS",
        "STARTSWITH",
        "ENDSWITH",
        "=",
        "<>",
        ">",
        ">=",
        "<",
        "<=",
        "(",
        ")",
        ",",
        "+",
        "-",
        "1",
        "0",
        "2147483648",
        "1.5",
        ".5",
        "1e3",
        "'x'",
        "''",
        "'",
        "--",
        "/*",
        "*/",
        "é",
        "0.0",
    ];
    let mut rng = Rng::new(common::seed(0x70C5));
    let props = encode([("a", "1"), ("b", "x"), ("TAGS", "t")]);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let n = rng.range(1, 12) as usize;
        let text = (0..n)
            .map(|_| TOKENS[rng.range(0, TOKENS.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(" ");
        if let Ok(f) = SqlFilter::parse(&text) {
            accepted += 1;
            let _ = f.matches(&props);
            let _ = f.matches(b"");
        }
    }
    // The soup is rich enough that some of it parses.
    assert!(accepted > 100, "{accepted}");
    for _ in 0..20_000 {
        let n = rng.range(0, 24) as usize;
        let bytes = rng.bytes(n);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(f) = SqlFilter::parse(&text) {
            let _ = f.matches(&bytes);
        }
    }
}
