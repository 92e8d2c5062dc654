//! Which events `gate log` shows: since a time, to a host, with a decision or of a kind; and the
//! `30s` / `10m` / `2h` / `7d` durations its `--since` takes.
use std::time::Duration;

use super::event::{Decision, Event, EventKind, parse_rfc3339};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("`{0}` is not a duration: use a number and a unit, like 30s, 10m, 2h, 7d or 1h30m")]
    Duration(String),
    #[error("`{0}` is not a duration (30s, 10m, 2h, 7d) or an RFC 3339 time")]
    Since(String),
    #[error("`{0}` is not a host name or `*.suffix` pattern")]
    Host(String),
    #[error(
        "`{0}` is not a decision: use allow, redirect, intercept, passthrough, tunnel, redact, \
         block, audit, deny or error"
    )]
    Decision(String),
    #[error("`{0}` is not an event kind: use run, connection, request, finding, dns or kernel")]
    Kind(String),
}

/// Parses `30s`, `10m`, `2h`, `7d`, `1w` and sums like `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, FilterError> {
    let err = || FilterError::Duration(s.to_owned());
    let s = s.trim();
    if s.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hr" | "hrs" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "wk" | "wks" => 7 * 86_400,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    Ok(Duration::from_secs(total))
}

/// `--since`: a duration back from now, or an RFC 3339 time. Returns Unix microseconds.
pub fn parse_since(s: &str, now_micros: i64) -> Result<i64, FilterError> {
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    let d = parse_duration(s).map_err(|_| FilterError::Since(s.to_owned()))?;
    let back = i64::try_from(d.as_micros()).map_err(|_| FilterError::Since(s.to_owned()))?;
    Ok(now_micros.saturating_sub(back))
}

/// Parses a decision name as the log writes it (`block`, `redact`, ...).
pub fn parse_decision(s: &str) -> Result<Decision, FilterError> {
    serde_json::from_value(serde_json::Value::String(s.trim().to_ascii_lowercase()))
        .map_err(|_| FilterError::Decision(s.to_owned()))
}

/// Parses an event kind name as the log writes it (`request`, `finding`, ...).
pub fn parse_kind(s: &str) -> Result<EventKind, FilterError> {
    serde_json::from_value(serde_json::Value::String(s.trim().to_ascii_lowercase()))
        .map_err(|_| FilterError::Kind(s.to_owned()))
}

/// A host to match: an exact name (case-insensitive) or `*.suffix` (any name under suffix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMatch {
    name: String,
    wildcard: bool,
}

impl HostMatch {
    pub fn parse(s: &str) -> Result<Self, FilterError> {
        let t = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let (name, wildcard) = match t.strip_prefix("*.") {
            Some(rest) => (rest.to_owned(), true),
            None => (t, false),
        };
        if name.is_empty() || name.contains(['*', '/', ' ']) {
            return Err(FilterError::Host(s.to_owned()));
        }
        Ok(Self { name, wildcard })
    }

    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        if self.wildcard {
            host.len() > self.name.len() + 1
                && host[host.len() - self.name.len()..].eq_ignore_ascii_case(&self.name)
                && host.as_bytes()[host.len() - self.name.len() - 1] == b'.'
        } else {
            host.eq_ignore_ascii_case(&self.name)
        }
    }
}

/// What `gate log` shows; an empty list means "any".
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events at or after this time (Unix µs).
    pub since: Option<i64>,
    pub hosts: Vec<HostMatch>,
    pub decisions: Vec<Decision>,
    pub kinds: Vec<EventKind>,
}

impl Filter {
    pub fn matches(&self, ev: &Event) -> bool {
        if let Some(since) = self.since {
            // An event whose time does not parse is shown rather than silently hidden.
            if ev.time_micros().is_some_and(|t| t < since) {
                return false;
            }
        }
        if !self.hosts.is_empty() {
            let Some(host) = ev.host.as_deref() else {
                return false;
            };
            if !self.hosts.iter().any(|h| h.matches(host)) {
                return false;
            }
        }
        if !self.decisions.is_empty() && !self.decisions.contains(&ev.decision) {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&ev.kind) {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::format_rfc3339;

    #[test]
    fn durations() {
        let s = |n| Ok(Duration::from_secs(n));
        assert_eq!(parse_duration("30s"), s(30));
        assert_eq!(parse_duration("10m"), s(600));
        assert_eq!(parse_duration("2h"), s(7200));
        assert_eq!(parse_duration("7d"), s(7 * 86_400));
        assert_eq!(parse_duration("1w"), s(7 * 86_400));
        assert_eq!(parse_duration("1h30m"), s(5400));
        assert_eq!(parse_duration(" 0s "), s(0));
        for bad in [
            "",
            "30",
            "s",
            "10x",
            "1.5h",
            "-1h",
            "h1",
            "99999999999999999999s",
            "2h 3m",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("9999999999999999d").is_err(), "overflow");
    }

    #[test]
    fn since_takes_durations_and_times() {
        let now = 1_000_000_000 * 1_000_000;
        assert_eq!(parse_since("10m", now), Ok(now - 600 * 1_000_000));
        assert_eq!(
            parse_since("2001-09-09T01:46:40Z", 0),
            Ok(1_000_000_000 * 1_000_000)
        );
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn decisions_and_kinds_parse_as_logged() {
        assert_eq!(parse_decision("block"), Ok(Decision::Block));
        assert_eq!(parse_decision("Redact"), Ok(Decision::Redact));
        assert!(parse_decision("blocked").is_err());
        assert_eq!(parse_kind("finding"), Ok(EventKind::Finding));
        assert!(parse_kind("http").is_err());
    }

    #[test]
    fn host_patterns() {
        let exact = HostMatch::parse("API.example.com").unwrap();
        assert!(exact.matches("api.example.com"));
        assert!(exact.matches("api.example.com."));
        assert!(!exact.matches("x.api.example.com"));
        let wild = HostMatch::parse("*.example.com").unwrap();
        assert!(wild.matches("api.example.com"));
        assert!(wild.matches("a.b.EXAMPLE.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("badexample.com"));
        assert!(HostMatch::parse("").is_err());
        assert!(HostMatch::parse("a*b").is_err());
    }

    #[test]
    fn filter_combines_with_and() {
        let mut ev = Event::new(EventKind::Request, Decision::Block);
        ev.host = Some("api.example.com".into());
        ev.time = format_rfc3339(1000, 0);
        let f = Filter {
            since: Some(999 * 1_000_000),
            hosts: vec![HostMatch::parse("*.example.com").unwrap()],
            decisions: vec![Decision::Block, Decision::Redact],
            kinds: vec![EventKind::Request],
        };
        assert!(f.matches(&ev));
        assert!(
            !Filter {
                since: Some(1001 * 1_000_000),
                ..f.clone()
            }
            .matches(&ev)
        );
        assert!(
            !Filter {
                decisions: vec![Decision::Allow],
                ..f.clone()
            }
            .matches(&ev)
        );
        assert!(
            !Filter {
                kinds: vec![EventKind::Dns],
                ..f.clone()
            }
            .matches(&ev)
        );
        assert!(
            !Filter {
                hosts: vec![HostMatch::parse("other.org").unwrap()],
                ..f.clone()
            }
            .matches(&ev)
        );
        ev.host = None;
        assert!(!f.matches(&ev), "a host filter hides events without a host");
        assert!(Filter::default().matches(&ev));
    }
}
