//! SQL92 property filters (RocketMQ's `MessageSelector.bySql`): parsed once, evaluated per
//! message against the record's properties without allocating.

mod ast;
mod build;
mod eval;
mod java;
mod lexer;
mod parser;

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::format::properties;
use eval::{Lookup, Props, Resolved, Value};

/// A SQL92 filter over message properties, with RocketMQ's grammar and semantics.
///
/// Parse it once ([`SqlFilter::parse`], or through `MessageSelector::by_sql`); a malformed
/// expression is an [`Error::InvalidSqlFilter`] naming the column and what was expected.
/// Then [`SqlFilter::matches`] evaluates it against a record's properties string.
///
/// ```
/// use mqlite::SqlFilter;
/// use mqlite::format::properties::encode;
///
/// let f = SqlFilter::parse("region IN ('eu', 'uk') AND amount >= 100 AND TAGS <> 'test'")?;
/// assert!(f.matches(&encode([("region", "eu"), ("amount", "250"), ("TAGS", "paid")])));
/// assert!(!f.matches(&encode([("region", "us"), ("amount", "250")])));
/// assert!(!f.matches(&encode([("region", "eu")]))); // no amount: unknown, not a match
///
/// let err = SqlFilter::parse("amount >= 'x'").unwrap_err();
/// assert!(matches!(err, mqlite::Error::InvalidSqlFilter { column: 11, .. }), "{err}");
/// # Ok::<(), mqlite::Error>(())
/// ```
///
/// # Grammar
///
/// | | |
/// |---|---|
/// | comparisons | `=`, `<>`, `>`, `>=`, `<`, `<=`, `x [NOT] BETWEEN a AND b` |
/// | sets and text | `p [NOT] IN ('a', 'b')`, `x [NOT] CONTAINS 's'`, `[NOT] STARTSWITH`, `[NOT] ENDSWITH` |
/// | nulls | `x IS NULL`, `x IS NOT NULL` |
/// | logic | `AND`, `OR`, `NOT`, parentheses; unary `+` and `-` |
/// | literals | `42`, `42L`, `3000000000`, `1.5`, `.5`, `1e3`, `'it''s'`, `TRUE`, `FALSE`, `NULL` |
/// | names | `[a-zA-Z_$][a-zA-Z0-9_$]*`: a property, case-sensitive (`TAGS` is the tag, `KEYS` the keys; every stored property is visible; one named otherwise, like `order.id`, cannot be referred to) |
/// | comments | `-- to the end of the line`, `/* … */` |
///
/// Keywords are case-insensitive. Precedence, loosest first: `OR`; `AND`; `=`, `<>`,
/// `IS [NOT] NULL`; `>`, `>=`, `<`, `<=`, `BETWEEN`, `IN`, `CONTAINS`, `STARTSWITH`,
/// `ENDSWITH`; unary `+`, `-` **and `NOT`**. So, as in RocketMQ, `NOT a = 'x'` reads
/// `(NOT a) = 'x'` (which never matches): write `NOT (a = 'x')`.
///
/// # Semantics (RocketMQ's, read from its `filter` module)
///
/// A property's value is a string; an absent property is `NULL`. An integer literal is a Java
/// `Integer` when it fits in 32 bits, else a `Long`; a float literal is a `Double`.
///
/// - **Result.** A message matches only when the expression is `TRUE`. `FALSE`, `NULL`
///   (unknown) and an *error* all mean no match.
/// - **Errors.** Comparing a string that is not a number with a number throws in RocketMQ;
///   the whole evaluation is abandoned, whatever the rest of the expression says.
///   `a > 5 OR b = 'x'` does not match `{a: "abc", b: "x"}`; `b = 'x' OR a > 5` does, since
///   `OR` stops at its first `TRUE` operand (and `AND` at its first `FALSE`).
/// - **Strings against numbers.** The string is read as the literal's type: with an integer
///   literal by Java's `Integer.valueOf`/`Long.valueOf` (`a = 10` matches `"10"`, `"+10"`,
///   `"010"`; `"10.0"`, `" 10"` and `"ten"` are errors), with a float literal by
///   `Double.valueOf` (blanks around it, `1e3`, `NaN`, `Infinity` accepted). So write
///   `price > 9.5` or `price > 9.0` for properties that may hold decimals: `price > 9` is an
///   error on `"9.99"`. A string against `TRUE`/`FALSE` is `true` when it is `true` in any
///   case. An integer against a long or a double is widened; a boolean against a number is
///   not equal.
/// - **`=` and `<>`**: both sides `NULL` (`a = b`, both absent) is `TRUE`; a `NULL` left side
///   gives `NULL`; a `NULL` right side alone gives `FALSE` (so `<>` is `TRUE`). Two
///   properties compare as strings, exactly. `x = NULL` is refused: use `IS NULL`.
///   `TRUE = 1` and `TRUE = 'x'` are refused; `1 = TRUE` is accepted (and false).
/// - **`>`, `>=`, `<`, `<=`**: `NULL` when either side is. Two properties are both read as
///   doubles (an error unless both are numbers). Only numbers, properties and negations may
///   be ordered: `a > 'x'`, `a > TRUE` and `(a = 1) > 0` are refused.
/// - **`BETWEEN`**: `x BETWEEN a AND b` is `x >= a AND x <= b`; `x NOT BETWEEN a AND b` is
///   `x < a OR x > b`. When both bounds are plain literals (not `-5`: that is a negation)
///   they must not be `NULL` and must be in order: `BETWEEN 10 AND 1` is refused.
/// - **`IN`**: the left side must be a property, the list strings; an absent property gives
///   `NULL`, so `NOT IN` does not match it either.
/// - **`CONTAINS`, `STARTSWITH`, `ENDSWITH`**: `FALSE` for an absent property, for a value
///   that is not a string and for an empty pattern, with or without `NOT`: `a NOT CONTAINS
///   'x'` does not match a message without `a`, while `NOT (a CONTAINS 'x')` does.
/// - **`IS NULL`**: `TRUE` exactly when absent; `IS NOT NULL` the opposite.
/// - **`AND`, `OR`, `NOT`**: SQL's three-valued logic. `FALSE AND x` is `FALSE`, `TRUE OR x`
///   is `TRUE`, otherwise `NULL` if either side is; `NOT NULL` is `NULL`.
/// - **A property as a condition** (`a AND b`, `NOT a`, a lone `a`) is `NULL` when absent
///   and `FALSE` when present, even if its value is `"true"`: write `a = TRUE`.
/// - **Unary minus** negates a number (a literal); on a property it gives `NULL`.
/// - **Literals.** An integer above `i64::MAX` is refused, and so is a float literal that is
///   infinite or below Java's `Double.MIN_VALUE`: RocketMQ refuses `0.0` (write
///   `a >= 4.9E-324` for `a > 0.0`).
///
/// # Where mqlite differs
///
/// - Tokens left over after a complete expression are an error; RocketMQ ignores them
///   (`a = 1 b = 2` selects by `a = 1` there).
/// - A `--` comment may end at the end of the expression (RocketMQ's needs a line break, and
///   then ignores the rest anyway).
/// - Reading strings as numbers, only ASCII digits count, and Java's hexadecimal floats
///   (`0x1p3`) are not numbers.
/// - Parentheses, unary operators and the expression tree may nest at most 128 deep.
///
/// Evaluation allocates nothing: property values are borrowed from the properties string,
/// which is scanned once per message for all the names the expression uses (up to eight;
/// with more, each reference scans it).
#[derive(Clone)]
pub struct SqlFilter {
    expr: String,
    root: ast::Expr,
    /// The property names the expression refers to; `Expr::Prop(n)` is `names[n]`.
    names: Box<[Box<str>]>,
}

/// A parse error: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// 1-based character column.
    pub(crate) column: usize,
    pub(crate) reason: String,
}

impl SyntaxError {
    fn new(column: usize, reason: impl Into<String>) -> SyntaxError {
        SyntaxError {
            column,
            reason: reason.into(),
        }
    }
}

/// Property names resolved in one pass when there are at most this many.
const RESOLVED: usize = 8;

impl SqlFilter {
    /// Parses a SQL92 expression; see the type's documentation for the grammar. An empty
    /// expression is refused (`TRUE` selects everything).
    ///
    /// ```
    /// use mqlite::{Error, SqlFilter};
    /// assert!(SqlFilter::parse("a > 1 and b is not null").is_ok());
    /// match SqlFilter::parse("a > 1 and") {
    ///     Err(Error::InvalidSqlFilter { column, reason, .. }) => {
    ///         assert_eq!(column, 10);
    ///         assert!(reason.starts_with("expected a value"), "{reason}");
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn parse(expr: &str) -> Result<SqlFilter> {
        let (root, names) = parser::parse(expr).map_err(|e| Error::InvalidSqlFilter {
            expr: expr.to_owned(),
            column: e.column,
            reason: e.reason,
        })?;
        Ok(SqlFilter {
            expr: expr.to_owned(),
            root,
            names: names.into(),
        })
    }

    /// The expression, as given.
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// The property names the expression refers to, each once, in order of first use.
    ///
    /// ```
    /// let f = mqlite::SqlFilter::parse("b > 1 OR (a = 'x' AND b < 0)")?;
    /// assert_eq!(f.property_names().collect::<Vec<_>>(), ["b", "a"]);
    /// # Ok::<(), mqlite::Error>(())
    /// ```
    pub fn property_names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    /// Whether a message with this properties string (`name 0x01 value 0x02` repeated, as
    /// stored and as `MessageExt::raw_properties` returns it) matches. Allocates nothing.
    ///
    /// ```
    /// use mqlite::format::properties::encode;
    /// let f = mqlite::SqlFilter::parse("TAGS = 'paid' OR retries > 2")?;
    /// assert!(f.matches(&encode([("TAGS", "paid")])));
    /// assert!(f.matches(&encode([("retries", "3")])));
    /// assert!(!f.matches(&encode([("retries", "three")]))); // not a number: no match
    /// assert!(!f.matches(b""));
    /// # Ok::<(), mqlite::Error>(())
    /// ```
    pub fn matches(&self, properties: &[u8]) -> bool {
        if self.names.len() <= RESOLVED {
            let mut values = [None; RESOLVED];
            if !self.names.is_empty() {
                properties::get_into(properties, &self.names, &mut values);
            }
            self.decide(&Resolved { values })
        } else {
            self.matches_with(|name| properties::get(properties, name))
        }
    }

    /// Whether a message whose properties `lookup` gives matches; `lookup` is called each
    /// time the expression refers to a property.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// let f = mqlite::SqlFilter::parse("a BETWEEN 1 AND 10")?;
    /// let props = HashMap::from([("a", "7")]);
    /// assert!(f.matches_with(|name| props.get(name).copied()));
    /// # Ok::<(), mqlite::Error>(())
    /// ```
    pub fn matches_with<'a>(&'a self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.decide(&Lookup {
            names: &self.names,
            lookup,
            marker: std::marker::PhantomData,
        })
    }

    fn decide<'a>(&'a self, props: &impl Props<'a>) -> bool {
        eval::eval(&self.root, props) == Ok(Value::Bool(true))
    }
}

impl fmt::Debug for SqlFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SqlFilter").field(&self.expr).finish()
    }
}

impl FromStr for SqlFilter {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        SqlFilter::parse(s)
    }
}

#[cfg(test)]
mod tests;
