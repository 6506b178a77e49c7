//! The message selector (RocketMQ's `MessageSelector`): a tag expression or a SQL92
//! expression, as a consumer subscribes with it.

use std::borrow::Cow;
use std::sync::Arc;

use super::sql::SqlFilter;
use super::tag::TagFilter;
use crate::error::Result;
use crate::format::properties::{self, keys};

/// The language of a selector's expression (RocketMQ's `ExpressionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExpressionType {
    /// `*`, `TagA`, `TagA || TagB`.
    Tag,
    /// A SQL92 expression over message properties (see [`SqlFilter`]).
    Sql92,
}

/// Which messages a consumer wants: by tag, or by a SQL92 expression over properties.
///
/// Tag selectors are checked against the consume queue's tag hash first and then against
/// the message's tag; SQL selectors let every consume queue unit through and evaluate the
/// expression on the record's properties (its tag is the property `TAGS`). Cheap to clone.
///
/// ```
/// use mqlite::{Message, MessageSelector, PullStatus};
/// # let dir = tempfile::tempdir()?;
/// let store = mqlite::Store::open(dir.path())?;
/// store.create_topic("orders", 1)?;
/// let producer = store.producer("p")?;
/// for (region, amount) in [("eu", 50), ("eu", 500), ("us", 700)] {
///     producer.send(
///         Message::new("orders", "order")
///             .with_property("region", region)
///             .with_property("amount", amount.to_string()),
///     )?;
/// }
///
/// let big_eu = MessageSelector::by_sql("region = 'eu' AND amount > 100")?;
/// let consumer = store.pull_consumer("audit")?;
/// let queue = &consumer.queues("orders")?[0];
/// let r = consumer.pull_filtered(queue, &big_eu, 0, 32)?;
/// assert_eq!(r.status, PullStatus::Found);
/// assert_eq!(r.messages.len(), 1);
/// assert_eq!(r.messages[0].property("amount"), Some("500"));
/// assert_eq!(r.next_begin_offset, 3); // past the messages that did not match too
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct MessageSelector {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Tag {
        filter: TagFilter,
        expr: Cow<'static, str>,
    },
    Sql(Arc<SqlFilter>),
}

impl MessageSelector {
    /// The selector of every message (the tag expression `*`).
    pub const ALL: MessageSelector = MessageSelector {
        kind: Kind::Tag {
            filter: TagFilter::ALL,
            expr: Cow::Borrowed("*"),
        },
    };

    /// A selector by tag expression: `*` or empty (everything), `TagA`, `TagA || TagB`. A
    /// malformed one is an [`Error::InvalidFilter`](crate::Error::InvalidFilter).
    ///
    /// ```
    /// use mqlite::{ExpressionType, MessageSelector};
    /// let s = MessageSelector::by_tag("created || paid")?;
    /// assert_eq!(s.expression_type(), ExpressionType::Tag);
    /// assert_eq!(s.expression(), "created || paid");
    /// assert!(MessageSelector::by_tag("a = 1").is_err());
    /// # Ok::<(), mqlite::Error>(())
    /// ```
    pub fn by_tag(expr: &str) -> Result<MessageSelector> {
        let filter = TagFilter::parse(expr)?;
        let expr = if filter.is_all() {
            Cow::Borrowed("*")
        } else {
            Cow::Owned(expr.to_owned())
        };
        Ok(MessageSelector {
            kind: Kind::Tag { filter, expr },
        })
    }

    /// A selector by SQL92 expression over message properties; see [`SqlFilter`] for the
    /// grammar and RocketMQ's semantics. A malformed expression is an
    /// [`Error::InvalidSqlFilter`](crate::Error::InvalidSqlFilter) naming the column.
    ///
    /// ```
    /// use mqlite::{Error, MessageSelector};
    /// let s = MessageSelector::by_sql("TAGS IN ('paid', 'shipped') AND amount > 100")?;
    /// assert_eq!(s.expression_type(), mqlite::ExpressionType::Sql92);
    /// let err = MessageSelector::by_sql("amount >> 100").unwrap_err();
    /// assert!(matches!(err, Error::InvalidSqlFilter { column: 9, .. }), "{err}");
    /// # Ok::<(), mqlite::Error>(())
    /// ```
    pub fn by_sql(expr: &str) -> Result<MessageSelector> {
        Ok(SqlFilter::parse(expr)?.into())
    }

    /// Tag or SQL92.
    pub fn expression_type(&self) -> ExpressionType {
        match self.kind {
            Kind::Tag { .. } => ExpressionType::Tag,
            Kind::Sql(_) => ExpressionType::Sql92,
        }
    }

    /// The expression, as given (`*` for a tag selector of everything).
    pub fn expression(&self) -> &str {
        match &self.kind {
            Kind::Tag { expr, .. } => expr,
            Kind::Sql(f) => f.expression(),
        }
    }

    /// Whether a message with this properties string (as stored, and as
    /// `MessageExt::raw_properties` returns it) is selected: its `TAGS` property for a tag
    /// selector, the whole expression for a SQL one.
    ///
    /// ```
    /// use mqlite::MessageSelector;
    /// use mqlite::format::properties::encode;
    /// let props = encode([("TAGS", "paid"), ("amount", "120")]);
    /// assert!(MessageSelector::by_tag("paid || shipped")?.matches(&props));
    /// assert!(MessageSelector::by_sql("amount > 100")?.matches(&props));
    /// assert!(!MessageSelector::by_sql("amount > 200")?.matches(&props));
    /// # Ok::<(), mqlite::Error>(())
    /// ```
    pub fn matches(&self, properties: &[u8]) -> bool {
        match &self.kind {
            Kind::Tag { filter, .. } => {
                filter.is_all() || filter.matches(properties::get(properties, keys::TAGS))
            }
            Kind::Sql(f) => f.matches(properties),
        }
    }

    /// Whether every message is selected without looking at it.
    pub(crate) fn is_all(&self) -> bool {
        matches!(&self.kind, Kind::Tag { filter, .. } if filter.is_all())
    }

    /// The first check, on the consume queue's tag code: a tag selector's hashes; every
    /// unit passes a SQL selector.
    pub(crate) fn matches_code(&self, code: i64) -> bool {
        match &self.kind {
            Kind::Tag { filter, .. } => filter.matches_code(code),
            Kind::Sql(_) => true,
        }
    }
}

impl Default for MessageSelector {
    /// [`MessageSelector::ALL`].
    fn default() -> Self {
        MessageSelector::ALL
    }
}

impl From<TagFilter> for MessageSelector {
    /// A tag selector; its expression is the tags joined by ` || ` (or `*`).
    fn from(filter: TagFilter) -> Self {
        let expr = if filter.is_all() {
            Cow::Borrowed("*")
        } else {
            Cow::Owned(filter.to_expression())
        };
        MessageSelector {
            kind: Kind::Tag { filter, expr },
        }
    }
}

impl From<SqlFilter> for MessageSelector {
    fn from(filter: SqlFilter) -> Self {
        MessageSelector {
            kind: Kind::Sql(Arc::new(filter)),
        }
    }
}
