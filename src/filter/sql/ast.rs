//! The parsed form of a SQL92 filter: the expression classes RocketMQ's parser builds
//! (`ConstantExpression`, `PropertyExpression`, `ComparisonExpression`, `LogicExpression`,
//! `UnaryExpression`, `UnaryInExpression`), with the derived operators already rewritten
//! the way RocketMQ rewrites them:
//!
//! | written | built as |
//! |---|---|
//! | `a <> b` | `NOT (a = b)` |
//! | `a IS NULL` / `a IS NOT NULL` | `a = NULL` / `NOT (a = NULL)` (an equality that allows `NULL`) |
//! | `v BETWEEN lo AND hi` | `v >= lo AND v <= hi` |
//! | `v NOT BETWEEN lo AND hi` | `v < lo OR v > hi` |
//! | a property where a boolean is needed (`a AND b`, `NOT a`, a lone `a`) | [`Expr::Truthy`] |
//! | `+x`, `(x)` | `x` itself |
//!
//! A chain of `AND`s (or of `OR`s) is one node with its operands in order; RocketMQ nests
//! them to the left, which evaluates the same operands in the same order with the same
//! result.

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Const {
    /// `NULL`.
    Null,
    /// `TRUE` or `FALSE`.
    Bool(bool),
    /// An integer literal that fits in 32 bits (Java `Integer`).
    Int(i32),
    /// A larger integer literal (Java `Long`).
    Long(i64),
    /// A floating-point literal (Java `Double`).
    Double(f64),
    /// A string literal, `''` undone.
    Str(Box<str>),
}

/// `>`, `>=`, `<` or `<=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Order {
    /// Whether `ordering` (left against right) satisfies the operator.
    pub(super) fn holds(self, ordering: std::cmp::Ordering) -> bool {
        match self {
            Order::Gt => ordering.is_gt(),
            Order::Ge => ordering.is_ge(),
            Order::Lt => ordering.is_lt(),
            Order::Le => ordering.is_le(),
        }
    }
}

/// `CONTAINS`, `STARTSWITH` or `ENDSWITH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// A node of the expression tree.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    /// A literal.
    Const(Const),
    /// A property's value: slot `n` of the filter's property names.
    Prop(usize),
    /// A property where a boolean is needed (RocketMQ's `BOOLEANCAST`): `NULL` when absent,
    /// and `FALSE` when present, since a property value is a string, never a boolean.
    Truthy(usize),
    /// Unary minus.
    Negate(Box<Expr>),
    /// `NOT`.
    Not(Box<Expr>),
    /// `AND` of two or more operands, left to right.
    And(Vec<Expr>),
    /// `OR` of two or more operands, left to right.
    Or(Vec<Expr>),
    /// `=` (also `IS NULL`, with a [`Const::Null`] on the right).
    Eq(Box<Expr>, Box<Expr>),
    /// `>`, `>=`, `<`, `<=`.
    Order(Order, Box<Expr>, Box<Expr>),
    /// `prop [NOT] IN ('a', ...)`.
    In {
        prop: usize,
        list: Box<[Box<str>]>,
        negated: bool,
    },
    /// `x [NOT] CONTAINS|STARTSWITH|ENDSWITH 'pattern'`.
    Text {
        op: TextOp,
        negated: bool,
        operand: Box<Expr>,
        pattern: Box<str>,
    },
}

impl Expr {
    /// RocketMQ's `BooleanExpression`: the node yields a boolean (or `NULL`).
    pub(super) fn is_boolean(&self) -> bool {
        match self {
            Expr::Const(c) => matches!(c, Const::Null | Const::Bool(_)),
            Expr::Prop(_) | Expr::Negate(_) => false,
            Expr::Truthy(_)
            | Expr::Not(_)
            | Expr::And(_)
            | Expr::Or(_)
            | Expr::Eq(..)
            | Expr::Order(..)
            | Expr::In { .. }
            | Expr::Text { .. } => true,
        }
    }
}
