//! What the guard's unit tests share: a guard over the built-in rules with a fixed redaction
//! key, and the request it is told about.
use std::sync::Arc;

use gate_scan::{ScanConfig, Scanner};

use super::Guard;
use crate::audit::AuditLog;
use crate::config::Mode;
use crate::proxy::inspect::RequestInfo;
use crate::redact::RedactionKey;

/// A guard in `mode` over the built-in rules, recording to `audit`, with a 64 MiB body cap.
pub(super) fn guard(mode: Mode, audit: AuditLog) -> Guard {
    let scanner = Scanner::new(ScanConfig::builtin().unwrap()).unwrap();
    Guard::new(
        Arc::new(scanner),
        RedactionKey::from_bytes([9; 32]),
        mode,
        Arc::new(audit),
        64 << 20,
    )
}

/// A POST of `path` to https://api.test.
pub(super) fn post(path: &str) -> RequestInfo {
    RequestInfo {
        host: "api.test".into(),
        port: 443,
        scheme: "https",
        method: http::Method::POST,
        path_and_query: path.into(),
        client: Default::default(),
    }
}
