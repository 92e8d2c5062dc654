//! One typed error for everything that can be wrong with a push body, so the proxy can refuse
//! it with a human reason (fail closed) instead of forwarding what it could not read.

use crate::oid::Oid;

/// Why a receive-pack request was not accepted for scanning. Every variant is a refusal: the
/// proxy must not forward a push it could not fully parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// The request body is larger than [`crate::Limits::max_pack_bytes`].
    #[error("push body is {size} bytes, over the limit of {limit} bytes")]
    BodyTooLarge { size: u64, limit: u64 },
    /// A pkt-line framing error in the command section.
    #[error("malformed pkt-line at byte {offset}: {reason}")]
    PktLine { offset: usize, reason: &'static str },
    /// A command, shallow line, push option or push certificate could not be read.
    #[error("malformed command list: {0}")]
    Command(String),
    /// Something valid for git that gate does not parse, refused rather than passed unscanned.
    #[error("unsupported push: {0}")]
    Unsupported(String),
    /// The pack header (signature, version, count) is wrong.
    #[error("malformed pack header: {0}")]
    PackHeader(String),
    /// The pack holds more objects than [`crate::Limits::max_objects`].
    #[error("pack declares {count} objects, over the limit of {limit}")]
    TooManyObjects { count: u64, limit: u64 },
    /// The pack ended inside an object or before its trailer.
    #[error("pack is truncated: {0}")]
    Truncated(String),
    /// An object entry is malformed (bad type, bad size, bad base offset).
    #[error("malformed object at pack offset {offset}: {reason}")]
    Object { offset: usize, reason: String },
    /// An object (or a delta, or a delta's result) is larger than
    /// [`crate::Limits::max_object_bytes`].
    #[error("object at pack offset {offset} is {size} bytes, over the limit of {limit} bytes")]
    ObjectTooLarge {
        offset: usize,
        size: u64,
        limit: u64,
    },
    /// All objects together inflate past [`crate::Limits::max_total_bytes`].
    #[error("pack inflates to more than {limit} bytes")]
    TotalTooLarge { limit: u64 },
    /// zlib data is corrupt, or does not inflate to the size its header declares.
    #[error("zlib data of object at pack offset {offset} is bad: {reason}")]
    Inflate { offset: usize, reason: String },
    /// A delta's instructions do not fit its base or its declared sizes.
    #[error("bad delta at pack offset {offset}: {reason}")]
    Delta { offset: usize, reason: String },
    /// A delta chain is deeper than [`crate::Limits::max_delta_depth`].
    #[error("delta chain at pack offset {offset} is deeper than the limit of {limit}")]
    DeltaTooDeep { offset: usize, limit: u32 },
    /// The pack's trailing SHA-1 does not match its content.
    #[error("pack checksum mismatch: trailer says {expected}, content hashes to {actual}")]
    Checksum { expected: Oid, actual: Oid },
    /// The number of objects found differs from the header, or bytes follow the last object.
    #[error("pack object count mismatch: {0}")]
    Count(String),
    /// A tree, commit or tag in the pack is malformed, so paths could not be mapped.
    #[error("malformed {kind} {oid}: {reason}")]
    BadObject {
        kind: &'static str,
        oid: Oid,
        reason: &'static str,
    },
    /// A Content-Encoding on the request that could not be decoded.
    #[error("request body encoding: {0}")]
    Encoding(String),
}
