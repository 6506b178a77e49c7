//! Message filters, as a RocketMQ broker applies them when a consumer pulls: tag expressions
//! (`TagA || TagB`, checked first against the consume queue's tag hash, then against the
//! message's tag) and SQL92 expressions over message properties, and the
//! [`MessageSelector`] that carries either.

mod selector;
mod sql;
mod tag;

pub use selector::{ExpressionType, MessageSelector};
pub use sql::SqlFilter;
pub use tag::TagFilter;
