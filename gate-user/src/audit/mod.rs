//! The audit trail: one JSON Lines event per connection, request, finding, DNS query and kernel
//! refusal, appended to a hash-chained file and synced before a verdict is released; and the
//! reader that verifies it for `gate log`. Knows nothing of HTTP.
pub mod chain;
pub mod event;
pub mod filter;
pub mod reader;
mod sink;

pub use event::{Decision, Event, EventKind, FindingRecord};
pub use sink::{AuditError, AuditLog, EXTENSION, Options};

#[cfg(test)]
mod tests;
