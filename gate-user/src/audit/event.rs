//! The audit event schema (version 1). Fields that do not apply are left out of the JSON.
//! Never holds a secret: findings carry the rule id and placeholder only.
use serde::{Deserialize, Serialize};

/// Schema version written in every event.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// gate run started or stopped; the enforcement level it got.
    Run,
    /// A TCP connection reached the proxy (transparent or explicit).
    Connection,
    /// One HTTP request.
    Request,
    /// One secret found.
    Finding,
    /// A DNS query seen by the forwarder.
    Dns,
    /// A kernel program redirected or refused something.
    Kernel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Redirect,
    Intercept,
    Passthrough,
    Tunnel,
    Redact,
    Block,
    Audit,
    Deny,
    Error,
}

impl Decision {
    /// Whether the event must reach the disk before the traffic it describes goes on.
    pub fn needs_sync(self) -> bool {
        matches!(
            self,
            Decision::Redact | Decision::Block | Decision::Deny | Decision::Error
        )
    }
}

/// One finding, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// Where it was: "body", "header:authorization", "query", "pack:<path>@<commit>", ...
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub v: u32,
    /// RFC 3339 UTC time.
    pub time: String,
    pub kind: EventKind,
    pub decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The destination address the client dialled, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request path with any secret in it redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_up: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_down: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// One line a person can act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingRecord>,
    /// Hash of the previous line, filled in by the writer (tamper evidence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
}

impl Event {
    /// A new event stamped with the current time.
    pub fn new(kind: EventKind, decision: Decision) -> Self {
        Self {
            v: SCHEMA_VERSION,
            time: now_rfc3339(),
            kind,
            decision,
            pid: None,
            command: None,
            host: None,
            port: None,
            addr: None,
            method: None,
            path: None,
            bytes_up: None,
            bytes_down: None,
            status: None,
            reason: None,
            findings: Vec::new(),
            prev: None,
        }
    }
}

/// Current UTC time as RFC 3339 with microseconds, without a date library.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(d.as_secs() as i64, d.subsec_micros())
}

/// Formats Unix seconds (UTC) as `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
pub fn format_rfc3339(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_points() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_rfc3339(951_782_400, 5),
            "2000-02-29T00:00:00.000005Z"
        );
        assert_eq!(
            format_rfc3339(1_795_305_600, 0),
            "2026-11-22T00:00:00.000000Z"
        );
    }
}
