//! The guard's side of a WebSocket connection: each data message the agent sends gets the check
//! a request body gets (every decoding layer, known values, the audit record synced before the
//! verdict), then is redacted, blocked or passed as the mode says; placeholders in text
//! messages coming back are restored for the agent.
use std::sync::Arc;

use bytes::Bytes;

use super::{Inner, records};
use crate::config::Mode;
use crate::proxy::inspect::{MessageInspector, Refusal, RequestInfo, WsMessage, WsVerdict};
use crate::redact::restore::{Escape, Restorer};

/// Where a finding in a message is, for the audit log.
pub const LOCATION: &str = "websocket message";

/// Sees one WebSocket connection's messages (the upgrade request's `info`).
pub(super) struct MessageGuard {
    pub(super) guard: Arc<Inner>,
    pub(super) info: RequestInfo,
}

/// Whether a text message is JSON (as most agent protocols' are), so a restored value is
/// written JSON-escaped and a newline or quote in it cannot break the structure.
fn looks_like_json(data: &[u8]) -> bool {
    let start = data.iter().position(|b| !b.is_ascii_whitespace());
    let end = data.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(s), Some(e)) => matches!((data[s], data[e]), (b'{', b'}') | (b'[', b']')),
        _ => false,
    }
}

impl MessageInspector for MessageGuard {
    fn outbound(&self, msg: &WsMessage) -> Result<WsVerdict, Refusal> {
        let g = &self.guard;
        let plan = g.plan(&msg.data);
        if plan.is_clean() {
            return Ok(WsVerdict::Forward(msg.data.clone()));
        }
        let found = records(&plan);
        g.record_findings(&self.info, LOCATION, &found)?;
        match g.mode {
            Mode::Audit => Ok(WsVerdict::Forward(msg.data.clone())),
            Mode::Block => {
                let mut rules: Vec<String> = found.iter().map(|(r, _, _)| r.clone()).collect();
                rules.sort();
                rules.dedup();
                Ok(WsVerdict::Block(format!(
                    "gate blocked a message: {} secret(s) ({})",
                    found.len(),
                    rules.join(", ")
                )))
            }
            Mode::Redact => {
                g.remember(&plan);
                Ok(WsVerdict::Forward(Bytes::from(plan.apply(&msg.data))))
            }
        }
    }

    fn inbound(&self, msg: &WsMessage) -> Result<Bytes, Refusal> {
        let g = &self.guard;
        if g.mode != Mode::Redact || !msg.text || g.vault.is_empty() {
            return Ok(msg.data.clone());
        }
        let escape = if looks_like_json(&msg.data) {
            Escape::Json
        } else {
            Escape::Raw
        };
        let mut r = Restorer::new(g.vault.clone(), escape);
        let mut out = r.push(&msg.data);
        out.extend(r.finish());
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::guard::Guard;
    use crate::proxy::Inspector;
    use crate::redact::RedactionKey;
    use gate_scan::{ScanConfig, Scanner};

    fn aws_key() -> String {
        format!("AKIA{}{}", "QWERTYUIOP", "ASDFGH")
    }

    fn info() -> RequestInfo {
        RequestInfo {
            host: "ws.test".into(),
            port: 443,
            scheme: "https",
            method: http::Method::GET,
            path_and_query: "/socket".into(),
            client: Default::default(),
        }
    }

    fn guard(mode: Mode, audit: AuditLog) -> Guard {
        let scanner = Arc::new(Scanner::new(ScanConfig::builtin().unwrap()).unwrap());
        Guard::new(
            scanner,
            RedactionKey::from_bytes([7; 32]),
            mode,
            Arc::new(audit),
            1 << 20,
        )
    }

    fn text(s: &str) -> WsMessage {
        WsMessage {
            text: true,
            data: Bytes::from(s.to_string()),
        }
    }

    fn forwarded(v: WsVerdict) -> String {
        match v {
            WsVerdict::Forward(b) => String::from_utf8(b.to_vec()).unwrap(),
            WsVerdict::Block(r) => panic!("blocked: {r}"),
        }
    }

    #[test]
    fn redacts_escaped_secrets_records_them_and_restores_replies() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(Mode::Redact, AuditLog::open(dir.path(), "r").unwrap());
        let ws = g.websocket(&info()).unwrap();
        let key = aws_key();
        let escaped = format!("\\u0041{}", &key[1..]);
        let before = g.scanned_bytes();
        let msg = format!("{{\"content\":\"key {escaped}\\nend\"}}");
        let out = forwarded(ws.outbound(&text(&msg)).unwrap());
        assert_eq!(g.scanned_bytes() - before, msg.len() as u64);
        assert!(!out.contains(&key[4..]), "{out}");
        let ph = out
            .split("key ")
            .nth(1)
            .and_then(|r| r.split("\\n").next())
            .unwrap()
            .to_string();
        assert!(ph.starts_with("REDACTED<aws-access-key-id:"), "{out}");
        let log = std::fs::read_to_string(
            std::fs::read_dir(dir.path())
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap();
        assert!(log.contains(LOCATION) && log.contains(&ph), "{log}");
        assert!(!log.contains(&key));
        // The reply: restored for the agent, JSON-escaped inside JSON, raw in plain text.
        let back = ws
            .inbound(&text(&format!("{{\"echo\":\"{ph}\"}}")))
            .unwrap();
        assert_eq!(&back[..], format!("{{\"echo\":\"{key}\"}}").as_bytes());
        let plain = ws.inbound(&text(&format!("got {ph}"))).unwrap();
        assert_eq!(&plain[..], format!("got {key}").as_bytes());
        // Binary replies are left alone (their framing may count bytes).
        let bin = WsMessage {
            text: false,
            data: Bytes::from(ph.clone()),
        };
        assert_eq!(ws.inbound(&bin).unwrap(), Bytes::from(ph));
        assert_eq!(g.unscanned_bytes(), 0);
    }

    #[test]
    fn block_names_the_rule_and_audit_passes_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let key = aws_key();
        let msg = format!("aws_access_key_id={key}");
        let g = guard(Mode::Block, AuditLog::open(dir.path(), "b").unwrap());
        match g.websocket(&info()).unwrap().outbound(&text(&msg)).unwrap() {
            WsVerdict::Block(r) => {
                assert!(r.contains("aws-access-key-id") && !r.contains(&key), "{r}");
                assert!(r.len() <= 123, "{r}");
            }
            v => panic!("not blocked: {v:?}"),
        }
        let g = guard(Mode::Audit, AuditLog::open(dir.path(), "a").unwrap());
        let out = forwarded(g.websocket(&info()).unwrap().outbound(&text(&msg)).unwrap());
        assert_eq!(out, msg);
        let clean = "{\"hello\":\"world\"}";
        let out = forwarded(
            g.websocket(&info())
                .unwrap()
                .outbound(&text(clean))
                .unwrap(),
        );
        assert_eq!(out, clean);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_unwritable_audit_log_refuses_the_message() {
        // /dev/full fails every write: the finding cannot be recorded, so nothing is decided.
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("r.jsonl")).unwrap();
        let g = guard(Mode::Redact, AuditLog::open(dir.path(), "r").unwrap());
        let r = g
            .websocket(&info())
            .unwrap()
            .outbound(&text(&format!("k={}", aws_key())))
            .unwrap_err();
        assert!(r.reason.contains("fail closed"), "{}", r.reason);
    }

    #[test]
    fn json_is_told_by_its_brackets() {
        assert!(looks_like_json(b" {\"a\":1}\n"));
        assert!(looks_like_json(b"[1,2]"));
        assert!(!looks_like_json(b"hello {x}"));
        assert!(!looks_like_json(b""));
    }
}
