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

impl EventKind {
    /// The name the log writes.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Run => "run",
            EventKind::Connection => "connection",
            EventKind::Request => "request",
            EventKind::Finding => "finding",
            EventKind::Dns => "dns",
            EventKind::Kernel => "kernel",
        }
    }
}

impl Decision {
    /// The name the log writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Redirect => "redirect",
            Decision::Intercept => "intercept",
            Decision::Passthrough => "passthrough",
            Decision::Tunnel => "tunnel",
            Decision::Redact => "redact",
            Decision::Block => "block",
            Decision::Audit => "audit",
            Decision::Deny => "deny",
            Decision::Error => "error",
        }
    }

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

impl FindingRecord {
    /// Prefix of every redaction placeholder: `REDACTED<rule-id:hash12>`.
    pub const PLACEHOLDER_PREFIX: &'static str = "REDACTED<";

    /// Whether the record is fit for the log: no placeholder, or exactly
    /// `REDACTED<{rule}:{12 hex digits}>` for its own rule. Anything else might be the secret.
    pub fn is_safe(&self) -> bool {
        let Some(p) = &self.placeholder else {
            return true;
        };
        let Some(inner) = p
            .strip_prefix(Self::PLACEHOLDER_PREFIX)
            .and_then(|r| r.strip_suffix('>'))
        else {
            return false;
        };
        let Some(hash) = inner
            .strip_prefix(self.rule.as_str())
            .and_then(|r| r.strip_prefix(':'))
        else {
            return false;
        };
        hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit())
    }
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

/// Parses an RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) into Unix microseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut micros = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for (i, c) in frac[..digits].bytes().enumerate() {
            if i < 6 {
                micros = micros * 10 + i64::from(c - b'0');
            }
        }
        for _ in digits..6 {
            micros *= 10;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let ob = rest.as_bytes();
            if ob.len() != 6 || ob[3] != b':' {
                return None;
            }
            let sign = match ob[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days-from-civil (Howard Hinnant's algorithm), the inverse of format_rfc3339.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs * 1_000_000 + micros)
}

impl Event {
    /// The event's time in Unix microseconds, if it parses.
    pub fn time_micros(&self) -> Option<i64> {
        parse_rfc3339(&self.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for (secs, micros) in [(0, 0), (951_782_400, 5), (1_795_305_600, 123_456), (-1, 0)] {
            let s = format_rfc3339(secs, micros);
            assert_eq!(
                parse_rfc3339(&s),
                Some(secs * 1_000_000 + i64::from(micros)),
                "{s}"
            );
        }
        assert_eq!(
            parse_rfc3339("2026-11-22T01:00:00+01:00"),
            parse_rfc3339("2026-11-22T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T00:00:00.5Z"),
            Some(1_795_305_600_500_000)
        );
        for bad in [
            "",
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-11-22T00:00:00",
            "x026-11-22T00:00:00Z",
            "2026-11-22T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_match_the_serialized_form() {
        use EventKind as K;
        for k in [
            K::Run,
            K::Connection,
            K::Request,
            K::Finding,
            K::Dns,
            K::Kernel,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        use Decision as D;
        for d in [
            D::Allow,
            D::Redirect,
            D::Intercept,
            D::Passthrough,
            D::Tunnel,
            D::Redact,
            D::Block,
            D::Audit,
            D::Deny,
            D::Error,
        ] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
    }

    #[test]
    fn finding_placeholders_must_be_placeholders() {
        let f = |rule: &str, p: Option<&str>| FindingRecord {
            rule: rule.into(),
            placeholder: p.map(Into::into),
            location: "body".into(),
        };
        assert!(f("aws-access-key", None).is_safe());
        assert!(
            f(
                "aws-access-key",
                Some("REDACTED<aws-access-key:0123456789ab>")
            )
            .is_safe()
        );
        // The secret itself, a placeholder for another rule, a wrong hash length.
        assert!(!f("aws-access-key", Some("AKIAIOSFODNN7EXAMPLE")).is_safe());
        assert!(!f("aws-access-key", Some("REDACTED<github-pat:0123456789ab>")).is_safe());
        assert!(
            !f(
                "aws-access-key",
                Some("REDACTED<aws-access-key:0123456789abcdef>")
            )
            .is_safe()
        );
        assert!(
            !f(
                "aws-access-key",
                Some("REDACTED<aws-access-key:AKIAIOSFODNN>x")
            )
            .is_safe()
        );
    }

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
