//! Tag filter expressions: `*` (everything), `TagA`, `TagA || TagB`.
//!
//! As in RocketMQ, a queue is filtered first by the tag hash stored in the consume queue, then by
//! the exact tag string of the message.

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::format::hash::java_string_hash;

/// A parsed tag expression.
///
/// ```
/// use mqlite::TagFilter;
/// let f: TagFilter = "created || paid".parse()?;
/// assert!(f.matches(Some("paid")));
/// assert!(!f.matches(Some("shipped")));
/// assert!(!f.matches(None));
/// assert!("*".parse::<TagFilter>()?.matches(None));
/// assert!("a || || b".parse::<TagFilter>().is_err());
/// assert!("(".parse::<TagFilter>().is_err());
/// assert!("a = 1".parse::<TagFilter>().is_err());
/// # Ok::<(), mqlite::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    /// `None` for "every message".
    tags: Option<Vec<(String, i64)>>,
}

impl TagFilter {
    /// The filter that accepts every message.
    pub const ALL: TagFilter = TagFilter { tags: None };

    /// Parses an expression; `*` or an empty string accepts everything. Tags are separated by
    /// `||` with optional spaces; an empty tag, a lone `|`, a `*` among tags, a tag with
    /// whitespace or control characters inside, or one with SQL-like syntax (`(`, `)`, `'`,
    /// `=`, `<`, `>`, `!`, `,`: a SQL92 expression passed as a tag filter) is an
    /// [`Error::InvalidFilter`].
    pub fn parse(expr: &str) -> Result<TagFilter> {
        let bad = |reason| {
            Err(Error::InvalidFilter {
                expr: expr.to_owned(),
                reason,
            })
        };
        let trimmed = expr.trim();
        if trimmed.is_empty() || trimmed == "*" {
            return Ok(TagFilter::ALL);
        }
        let mut tags: Vec<(String, i64)> = Vec::new();
        for part in trimmed.split("||") {
            let tag = part.trim();
            if tag.is_empty() {
                return bad("empty tag between '||'");
            }
            if tag.contains('|') {
                return bad("single '|' (use '||' between tags)");
            }
            if tag == "*" || tag.contains('*') {
                return bad("'*' must stand alone");
            }
            if tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return bad("whitespace or control character inside a tag");
            }
            if tag.contains(['(', ')', '\'', '=', '<', '>', '!', ',']) {
                return bad(
                    "SQL-like syntax in a tag expression (tags are `*` or names separated by `||`)",
                );
            }
            if !tags.iter().any(|(t, _)| t == tag) {
                tags.push((tag.to_owned(), i64::from(java_string_hash(tag))));
            }
        }
        Ok(TagFilter { tags: Some(tags) })
    }

    /// The expression this filter stands for, normalised: `*`, or the tags joined by ` || `.
    pub(crate) fn to_expression(&self) -> String {
        match &self.tags {
            None => "*".to_owned(),
            Some(tags) => tags
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(" || "),
        }
    }

    /// Whether every message passes.
    pub fn is_all(&self) -> bool {
        self.tags.is_none()
    }

    /// The first check, on the consume queue's tag code.
    pub fn matches_code(&self, code: i64) -> bool {
        match &self.tags {
            None => true,
            Some(tags) => tags.iter().any(|(_, c)| *c == code),
        }
    }

    /// The exact check on a message's tag.
    pub fn matches(&self, tag: Option<&str>) -> bool {
        match (&self.tags, tag) {
            (None, _) => true,
            (Some(tags), Some(t)) => tags.iter().any(|(s, _)| s == t),
            (Some(_), None) => false,
        }
    }
}

impl FromStr for TagFilter {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        TagFilter::parse(s)
    }
}
