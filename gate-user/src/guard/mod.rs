//! Where the scanner meets the traffic: the proxy's [`Inspector`] that looks at every request's
//! URL, headers and body (whatever its Content-Type says, through its Content-Encoding, JSON
//! escapes, URL encoding and base64), and redacts, blocks or records what it finds; restores
//! placeholders in responses for the local agent; and refuses `git push`es that carry secrets
//! in git's own protocol. Every failure refuses the request: nothing is forwarded unscanned.
pub mod cached;
mod pipeline;
pub mod provider;
mod stream;
#[cfg(test)]
mod testing;
mod websocket;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use gate_scan::{KnownValues, RuleSet, ScanConfig, Scanner};
use http::{HeaderValue, StatusCode, header};

use crate::audit::{AuditLog, Decision, Event, EventKind, FindingRecord};
use crate::config::{Mode, Settings};
use crate::proxy::inspect::{BodyInspector, Inspector, Refusal, RequestInfo, RequestPlan};
use crate::redact::encoding;
use crate::redact::restore::{Escape, Restorer};
use crate::redact::view::{self, Plan};
use crate::redact::{RedactionKey, Vault};

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("scanner: {0}")]
    Scan(#[from] gate_scan::ScanError),
    #[error(transparent)]
    Key(#[from] crate::redact::RedactError),
}

/// Logs a warning for every custom rule whose keywords miss some of its matches (the scanner
/// confirms a rule only near its keywords, so those secrets would pass unseen).
pub fn warn_keyword_gaps(rules: &RuleSet) {
    for gap in rules.check_keywords() {
        if gap.example.is_some() {
            tracing::warn!(
                "{gap}; `gate rules check {}` lists every such rule",
                gap.file
            );
        }
    }
}

/// The guard for these settings: built-in rules plus `scan.signatures`, known values from the
/// environment and the configured secret files, the per-install redaction key from `data_dir`.
pub fn from_settings(
    settings: &Settings,
    audit: Arc<AuditLog>,
    data_dir: &Path,
) -> Result<Guard, GuardError> {
    let mut rules = RuleSet::builtin()?;
    let mut custom = RuleSet::empty();
    for f in &settings.signatures {
        custom.extend(RuleSet::from_file(f)?)?;
    }
    if !custom.is_empty() {
        // Advisory, and milliseconds a rule (more for a large regex): off the start-up path,
        // logged where the caller's logs go.
        let check = custom.clone();
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || warn_keyword_gaps(&check));
        });
    }
    rules.extend(custom)?;
    let mut known = if settings.scan_env {
        KnownValues::from_env()
    } else {
        KnownValues::new()
    };
    for f in &settings.secret_files {
        match known.load_file(f) {
            Ok(_) => {}
            Err(gate_scan::ScanError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                tracing::debug!("secret file {} does not exist", f.display());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let scanner = Arc::new(Scanner::new(ScanConfig {
        rules,
        known_values: known,
        entropy: settings.entropy,
    })?);
    // The anchored rules' DFAs, which the scanner would otherwise build on their first
    // attempts (in some request's time): built now, off the start-up path.
    let warm = Arc::clone(&scanner);
    std::thread::spawn(move || warm.prepare());
    let key = RedactionKey::load_or_init(data_dir)?;
    Ok(Guard::new(
        scanner,
        key,
        settings.mode,
        audit,
        settings.max_body_bytes,
    ))
}

/// (rule, placeholder, layer) of each finding a plan will redact, for the audit log.
fn records(plan: &Plan) -> Vec<(String, String, String)> {
    plan.findings()
        .into_iter()
        .map(|(r, p, l)| (r, p, l.to_string()))
        .collect()
}

/// Blocks the scan cache remembers (about 16 KiB and up each).
const SCAN_CACHE_BLOCKS: usize = 8192;

/// How deep base64 blocks inside base64 blocks are looked into.
const BASE64_DEPTH: usize = 2;

/// The scanner-backed inspector. Cheap to clone; one per proxy.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    scanner: Arc<Scanner>,
    /// Plans of body blocks already seen (conversation history re-sent every turn).
    cache: cached::PlanCache,
    key: RedactionKey,
    vault: Arc<Vault>,
    mode: Mode,
    audit: Arc<AuditLog>,
    max_body: u64,
    providers: provider::ProviderKeys,
    pack_limits: gate_pack::Limits,
    /// Request body bytes that went upstream without being scanned. Stays 0: every path
    /// that cannot scan refuses instead.
    unscanned: AtomicU64,
    /// Request body bytes scanned.
    scanned: AtomicU64,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("mode", &self.inner.mode)
            .field("vault", &self.inner.vault)
            .field("rules", &self.inner.scanner.rule_count())
            .field("cache", &self.inner.cache.stats())
            .finish()
    }
}

impl Guard {
    pub fn new(
        scanner: Arc<Scanner>,
        key: RedactionKey,
        mode: Mode,
        audit: Arc<AuditLog>,
        max_body: u64,
    ) -> Self {
        let pack_limits = gate_pack::Limits {
            max_pack_bytes: max_body,
            ..gate_pack::Limits::default()
        };
        Self {
            inner: Arc::new(Inner {
                scanner,
                cache: cached::PlanCache::new(SCAN_CACHE_BLOCKS),
                key,
                vault: Arc::new(Vault::default()),
                mode,
                audit,
                max_body,
                providers: provider::ProviderKeys::default(),
                pack_limits,
                unscanned: AtomicU64::new(0),
                scanned: AtomicU64::new(0),
            }),
        }
    }

    /// Request body bytes forwarded without a scan (always 0; exported for the audit log).
    pub fn unscanned_bytes(&self) -> u64 {
        self.inner.unscanned.load(Ordering::Relaxed)
    }

    pub fn scanned_bytes(&self) -> u64 {
        self.inner.scanned.load(Ordering::Relaxed)
    }

    pub fn vault(&self) -> &Arc<Vault> {
        &self.inner.vault
    }

    /// Hits and misses of the scan cache.
    pub fn cache_stats(&self) -> cached::CacheStats {
        self.inner.cache.stats()
    }

    /// What a request body's check sees: every secret through every layer, through the scan
    /// cache (for benchmarks and tests; requests go through the [`Inspector`] impl).
    pub fn plan_body(&self, data: &[u8]) -> Plan {
        self.inner.plan(data)
    }
}

impl Inner {
    fn finder(&self) -> cached::ScanFinder<'_> {
        cached::ScanFinder(&self.scanner)
    }

    fn plan(&self, data: &[u8]) -> Plan {
        self.scanned.fetch_add(data.len() as u64, Ordering::Relaxed);
        cached::plan(&self.scanner, &self.cache, &self.key, data, BASE64_DEPTH)
    }

    /// Records one finding event per secret; the write is synced before the verdict goes on.
    /// An audit failure refuses the request.
    fn record_findings(
        &self,
        info: &RequestInfo,
        location: &str,
        findings: &[(String, String, String)],
    ) -> Result<(), Refusal> {
        let decision = match self.mode {
            Mode::Redact => Decision::Redact,
            Mode::Block => Decision::Block,
            Mode::Audit => Decision::Audit,
        };
        self.record_with(info, decision, location, findings)
    }

    fn record_with(
        &self,
        info: &RequestInfo,
        decision: Decision,
        location: &str,
        findings: &[(String, String, String)],
    ) -> Result<(), Refusal> {
        let mut ev = Event::new(EventKind::Finding, decision);
        ev.pid = info.client.pid;
        ev.command = info.client.command.clone();
        ev.host = Some(info.host.clone());
        ev.port = Some(info.port);
        ev.method = Some(info.method.to_string());
        ev.path = Some(self.scrub_path(info.path_and_query.split('?').next().unwrap_or("")));
        ev.findings = findings
            .iter()
            .map(|(rule, placeholder, where_)| FindingRecord {
                rule: rule.clone(),
                placeholder: (!placeholder.is_empty()).then(|| placeholder.clone()),
                location: if where_.is_empty() {
                    location.to_string()
                } else {
                    format!("{location}:{where_}")
                },
            })
            .collect();
        ev.reason = Some(format!("{} secret(s) found in {location}", findings.len()));
        self.audit.record(&ev).map_err(|e| {
            Refusal::with_status(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("audit log unwritable, request refused (fail closed): {e}"),
            )
        })
    }

    /// Keeps each placeholder's value, so responses can be restored for the agent.
    fn remember(&self, plan: &Plan) {
        for (ph, value) in &plan.values {
            self.vault.remember(ph, value);
        }
    }

    /// A path with any secret in it replaced by its placeholder, for the audit log.
    fn scrub_path(&self, path: &str) -> String {
        let plan = view::plan(path.as_bytes(), &self.finder(), &self.key, 0);
        if plan.is_clean() {
            path.to_string()
        } else {
            String::from_utf8_lossy(&plan.apply(path.as_bytes())).into_owned()
        }
    }

    fn block_reason(&self, location: &str, plan: &Plan) -> String {
        let mut rules: Vec<String> = plan.findings().into_iter().map(|(r, _, _)| r).collect();
        rules.dedup();
        format!(
            "gate blocked this request: {} secret(s) ({}) in the {location}. Remove the secret, \
             or run gate with --mode redact to forward it with placeholders",
            plan.findings().len(),
            rules.join(", ")
        )
    }

    /// URL path and query: scanned with URL encoding undone; placeholders are percent-encoded.
    fn check_url(
        &self,
        info: &RequestInfo,
        head: &mut http::request::Parts,
    ) -> Result<(), Refusal> {
        let pq = info.path_and_query.as_bytes();
        let plan = self.plan(pq);
        if plan.is_clean() {
            return Ok(());
        }
        let found = records(&plan);
        self.record_findings(info, "url", &found)?;
        match self.mode {
            Mode::Block => Err(Refusal::forbidden(self.block_reason("URL", &plan))),
            Mode::Audit => Ok(()),
            Mode::Redact => {
                self.remember(&plan);
                let redacted = String::from_utf8_lossy(&plan.apply(pq))
                    .replace('<', "%3C")
                    .replace('>', "%3E");
                let uri = head.uri.clone();
                let mut parts = uri.into_parts();
                parts.path_and_query = Some(redacted.parse().map_err(|_| {
                    Refusal::with_status(
                        StatusCode::BAD_REQUEST,
                        "gate could not rewrite the URL after redaction",
                    )
                })?);
                head.uri = http::Uri::from_parts(parts).map_err(|_| {
                    Refusal::with_status(
                        StatusCode::BAD_REQUEST,
                        "gate could not rewrite the URL after redaction",
                    )
                })?;
                Ok(())
            }
        }
    }

    /// Every header value, except the agent's own provider key sent to its own provider.
    fn check_headers(
        &self,
        info: &RequestInfo,
        head: &mut http::request::Parts,
    ) -> Result<(), Refusal> {
        let mut all: Vec<(String, String, String)> = Vec::new();
        let mut rewrites: Vec<(http::HeaderName, usize, HeaderValue)> = Vec::new();
        let mut refuse: Option<String> = None;
        for name in head.headers.keys() {
            for (i, value) in head.headers.get_all(name).iter().enumerate() {
                let bytes = value.as_bytes();
                let plan = self.plan(bytes);
                if plan.is_clean() {
                    continue;
                }
                let findings = plan.findings();
                let exempt = findings.iter().all(|(rule, _, _)| {
                    self.providers.is_expected(
                        &info.host,
                        name.as_str(),
                        rule,
                        &self.scanner_label(bytes, rule),
                    )
                });
                if exempt {
                    continue;
                }
                all.extend(
                    findings
                        .iter()
                        .map(|(r, p, _)| (r.clone(), p.clone(), name.as_str().to_string())),
                );
                if self.mode == Mode::Block {
                    refuse.get_or_insert_with(|| {
                        self.block_reason(&format!("header {}", name.as_str()), &plan)
                    });
                }
                if self.mode == Mode::Redact {
                    self.remember(&plan);
                    let new = HeaderValue::from_bytes(&plan.apply(bytes)).map_err(|_| {
                        Refusal::with_status(
                            StatusCode::BAD_REQUEST,
                            "gate could not rewrite a header after redaction",
                        )
                    })?;
                    rewrites.push((name.clone(), i, new));
                }
            }
        }
        if all.is_empty() {
            return Ok(());
        }
        self.record_findings(info, "header", &all)?;
        if let Some(reason) = refuse {
            return Err(Refusal::forbidden(reason));
        }
        for (name, index, value) in rewrites {
            let mut values: Vec<HeaderValue> =
                head.headers.get_all(&name).iter().cloned().collect();
            if let Some(slot) = values.get_mut(index) {
                *slot = value;
            }
            head.headers.remove(&name);
            for v in values {
                head.headers.append(name.clone(), v);
            }
        }
        Ok(())
    }

    /// The known-value label behind a known-value finding (e.g. the env var's name), if any.
    fn scanner_label(&self, value: &[u8], rule: &str) -> String {
        if rule != "known-value" {
            return String::new();
        }
        self.scanner
            .scan(value)
            .into_iter()
            .find(|f| &*f.rule_id == "known-value")
            .map(|f| f.name.to_string())
            .unwrap_or_default()
    }

    /// A whole request body: decoded, scanned through every layer, then redacted (and
    /// re-encoded), refused, or passed unchanged as the mode says.
    fn check_body(
        &self,
        info: &RequestInfo,
        content_encoding: Option<&str>,
        raw: Vec<u8>,
    ) -> Result<Bytes, Refusal> {
        let codings = encoding::parse(content_encoding).map_err(|e| {
            Refusal::with_status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("gate cannot scan this body: {e}"),
            )
        })?;
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        // Without a content coding the body is scanned where it lies (no copy).
        let decoded: std::borrow::Cow<'_, [u8]> = if codings.is_empty() {
            std::borrow::Cow::Borrowed(&raw)
        } else {
            std::borrow::Cow::Owned(encoding::decode(&raw, &codings, limit).map_err(|e| {
                Refusal::with_status(
                    StatusCode::BAD_REQUEST,
                    format!("gate cannot scan this body: {e}"),
                )
            })?)
        };
        let plan = self.plan(&decoded);
        if plan.is_clean() {
            return Ok(Bytes::from(raw));
        }
        let found = records(&plan);
        self.record_findings(info, "body", &found)?;
        match self.mode {
            Mode::Block => Err(Refusal::forbidden(self.block_reason("request body", &plan))),
            Mode::Audit => Ok(Bytes::from(raw)),
            Mode::Redact => {
                self.remember(&plan);
                let redacted = plan.apply(&decoded);
                let out = encoding::encode(&redacted, &codings).map_err(|e| {
                    Refusal::with_status(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("gate could not re-encode the body: {e}"),
                    )
                })?;
                Ok(Bytes::from(out))
            }
        }
    }

    /// A git push: every object in the pack is scanned; a push with a secret is refused in
    /// git's own protocol whatever the mode but audit (a pack cannot be rewritten).
    fn check_push(
        &self,
        info: &RequestInfo,
        content_encoding: Option<&str>,
        raw: Vec<u8>,
    ) -> Result<Bytes, Refusal> {
        let refuse_in_git = |request: Option<&gate_pack::PushRequest>,
                             findings: &[gate_pack::Finding],
                             reason: Option<&str>| {
            let text = match reason {
                Some(r) => format!("gate refused this push: {r}"),
                None => format!("gate blocked this push: {} secret(s)", findings.len()),
            };
            match request {
                Some(req) => {
                    let resp =
                        gate_pack::refusal_response(req, &gate_pack::Refusal { findings, reason });
                    Refusal {
                        status: StatusCode::from_u16(resp.status).unwrap_or(StatusCode::FORBIDDEN),
                        reason: text,
                        body: Some((resp.content_type.to_string(), Bytes::from(resp.body))),
                    }
                }
                None => Refusal::forbidden(text),
            }
        };
        let body = gate_pack::decode_body(content_encoding, &raw, self.max_body)
            .map_err(|e| refuse_in_git(None, &[], Some(&e.to_string())))?;
        let pack = match gate_pack::parse_receive_pack(&body, &self.pack_limits) {
            Ok(p) => p,
            Err(e) => {
                let req = gate_pack::parse_push_request(&body).ok();
                let reason = format!("the pack could not be checked ({e}), so it is refused");
                self.record_with(
                    info,
                    Decision::Block,
                    "git push",
                    &[("malformed-pack".into(), String::new(), String::new())],
                )?;
                return Err(refuse_in_git(req.as_ref(), &[], Some(&reason)));
            }
        };
        let mut findings = Vec::new();
        for item in &pack.items {
            self.scanned
                .fetch_add(item.data.len() as u64, Ordering::Relaxed);
            let mut rules: Vec<String> = self
                .scanner
                .scan(&item.data)
                .into_iter()
                .map(|f| crate::redact::sanitize_rule(&f.rule_id))
                .collect();
            rules.dedup();
            for rule in rules {
                findings.push(gate_pack::Finding {
                    rule,
                    path: item.location(),
                    commit: item
                        .commit
                        .map(|c| c.to_string().chars().take(7).collect())
                        .unwrap_or_default(),
                });
            }
        }
        if findings.is_empty() {
            return Ok(Bytes::from(raw));
        }
        let records: Vec<_> = findings
            .iter()
            .map(|f| {
                (
                    f.rule.clone(),
                    String::new(),
                    format!("{}@{}", f.path, f.commit),
                )
            })
            .collect();
        let refs: Vec<String> = pack
            .request
            .commands
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let location = format!("git push of {}", refs.join(", "));
        match self.mode {
            Mode::Audit => {
                self.record_with(info, Decision::Audit, &location, &records)?;
                Ok(Bytes::from(raw))
            }
            Mode::Block => {
                self.record_with(info, Decision::Block, &location, &records)?;
                Err(refuse_in_git(Some(&pack.request), &findings, None))
            }
            Mode::Redact => {
                self.record_with(info, Decision::Block, &location, &records)?;
                Err(refuse_in_git(
                    Some(&pack.request),
                    &findings,
                    Some(gate_pack::REDACT_REASON),
                ))
            }
        }
    }
}

impl Inspector for Guard {
    fn request(
        &self,
        info: &RequestInfo,
        head: &mut http::request::Parts,
    ) -> Result<RequestPlan, Refusal> {
        self.inner.check_url(info, head)?;
        self.inner.check_headers(info, head)?;
        if self.inner.mode == Mode::Redact {
            // Placeholders are restored in responses as they stream; that needs them unencoded.
            head.headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        let header = |name: header::HeaderName| {
            head.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_encoding = header(header::CONTENT_ENCODING);
        let content_type = header(header::CONTENT_TYPE);
        let push = gate_pack::is_receive_pack(
            info.method.as_str(),
            info.path_and_query.split('?').next().unwrap_or(""),
            content_type.as_deref(),
        );
        let length = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(n) = length.filter(|&n| n > self.inner.max_body) {
            return Err(Refusal::with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body of {n} bytes is larger than scan.max_body_bytes ({}); raise \
                     it in the config to allow it",
                    self.inner.max_body
                ),
            ));
        }
        let identity = encoding::parse(content_encoding.as_deref()).is_ok_and(|c| c.is_empty());
        if let Some(n) = length.filter(|&n| n >= stream::STREAM_MIN && identity && !push) {
            return Ok(RequestPlan {
                body: Some(Box::new(stream::StreamingBody::new(
                    self.inner.clone(),
                    info.clone(),
                    n,
                ))),
                settle_before_forwarding: false,
            });
        }
        // A large JSON body (an LLM conversation) goes on block by block as it is checked;
        // block mode holds it, so a secret is refused before the upstream sees any of it.
        if identity
            && !push
            && self.inner.mode != Mode::Block
            && pipeline::is_json(content_type.as_deref())
            && length.is_none_or(|n| n >= pipeline::PIPELINE_MIN)
        {
            if self.inner.mode == Mode::Redact {
                // Redacting changes the length (chunked on HTTP/1.1).
                head.headers.remove(header::CONTENT_LENGTH);
            }
            return Ok(RequestPlan {
                body: Some(Box::new(pipeline::PipelinedBody::new(
                    self.inner.clone(),
                    info.clone(),
                    length,
                ))),
                settle_before_forwarding: false,
            });
        }
        // A plain body's blocks are planned on the scan pool while the rest arrives.
        let early = (identity && !push).then(Early::default);
        let body = BodyGuard {
            guard: self.inner.clone(),
            info: info.clone(),
            content_encoding,
            push,
            early,
            // Room for the whole body at once when its length is known, so collecting it
            // never copies it again (at most STREAM_MIN up front: a length is only a claim).
            buf: Vec::with_capacity(length.map_or(0, |n| {
                usize::try_from(n.min(stream::STREAM_MIN)).unwrap_or(0)
            })),
        };
        Ok(RequestPlan {
            body: Some(Box::new(body)),
            settle_before_forwarding: true,
        })
    }

    fn response(
        &self,
        _info: &RequestInfo,
        head: &mut http::response::Parts,
    ) -> Result<Option<Box<dyn BodyInspector>>, Refusal> {
        if self.inner.mode != Mode::Redact || self.inner.vault.is_empty() {
            return Ok(None);
        }
        // An upstream that compresses despite Accept-Encoding: identity: decoded as it
        // streams (bounded), restored, and passed on uncompressed.
        let codings = encoding::parse(
            head.headers
                .get(header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok()),
        );
        let decoder = match codings {
            Ok(c) if c.is_empty() => None,
            Ok(c) => Some(encoding::StreamDecoder::new(
                &c,
                usize::try_from(self.inner.max_body).unwrap_or(usize::MAX),
            )),
            // A coding gate cannot undo: passed as it is (placeholders stay in it).
            Err(_) => return Ok(None),
        };
        if decoder.is_some() {
            head.headers.remove(header::CONTENT_ENCODING);
        }
        let ct = head
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let escape = Escape::for_content_type(ct);
        // Restoring changes the length.
        head.headers.remove(header::CONTENT_LENGTH);
        Ok(Some(Box::new(RestoreBody {
            decoder,
            restorer: Restorer::new(self.inner.vault.clone(), escape),
        })))
    }

    fn scrub_path(&self, path: &str) -> String {
        self.inner.scrub_path(path)
    }

    fn websocket(
        &self,
        info: &RequestInfo,
    ) -> Result<Box<dyn crate::proxy::MessageInspector>, Refusal> {
        Ok(Box::new(websocket::MessageGuard {
            guard: self.inner.clone(),
            info: info.clone(),
        }))
    }
}

/// Collects a request body (the proxy bounds it by `scan.max_body_bytes`) and checks it whole.
struct BodyGuard {
    guard: Arc<Inner>,
    info: RequestInfo,
    content_encoding: Option<String>,
    push: bool,
    /// For a plain body: blocks planned while it arrives.
    early: Option<Early>,
    buf: Vec<u8>,
}

/// Blocks of a body still arriving, handed to the scan pool as soon as each is complete, so
/// that when the body ends most of it is in the scan cache and only its tail is left to plan.
#[derive(Default)]
struct Early {
    cutter: cached::Cutter,
    /// Blocks handed out and not yet waited for.
    pending: usize,
    done: Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>,
}

impl Early {
    fn push(&mut self, guard: &Arc<Inner>, body: &[u8]) {
        if body.len() < cached::MIN_CACHED_BODY {
            return;
        }
        for block in self.cutter.push(body) {
            let (tx, _) = self.done.get_or_insert_with(std::sync::mpsc::channel);
            let tx = tx.clone();
            let guard = guard.clone();
            let block = body[block].to_vec();
            self.pending += 1;
            rayon::spawn(move || {
                // A panic here must not take the process down; the block is then simply
                // planned again when the body ends.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    cached::warm(
                        &guard.scanner,
                        &guard.cache,
                        &guard.key,
                        &block,
                        BASE64_DEPTH,
                    );
                }));
                let _ = tx.send(());
            });
        }
    }

    /// Waits until every block handed out is in the cache (or has failed), so the whole-body
    /// plan never does one twice.
    fn wait(&mut self) {
        if let Some((_, rx)) = &self.done {
            while self.pending > 0 && rx.recv().is_ok() {
                self.pending -= 1;
            }
        }
    }
}

impl BodyInspector for BodyGuard {
    fn chunk(&mut self, chunk: Bytes) -> Result<Bytes, Refusal> {
        self.buf.extend_from_slice(&chunk);
        if let Some(early) = &mut self.early {
            early.push(&self.guard, &self.buf);
        }
        Ok(Bytes::new())
    }

    fn finish(&mut self) -> Result<Bytes, Refusal> {
        if let Some(early) = &mut self.early {
            early.wait();
        }
        let raw = std::mem::take(&mut self.buf);
        let guard = &self.guard;
        if self.push {
            guard.check_push(&self.info, self.content_encoding.as_deref(), raw)
        } else {
            guard.check_body(&self.info, self.content_encoding.as_deref(), raw)
        }
    }
}

/// Restores placeholders in a response, chunk by chunk (decoding it first if the upstream
/// compressed it).
struct RestoreBody {
    decoder: Option<encoding::StreamDecoder>,
    restorer: Restorer,
}

fn undecodable(e: encoding::DecodeError) -> Refusal {
    Refusal::with_status(
        StatusCode::BAD_GATEWAY,
        format!("gate could not decode the response to restore placeholders: {e}"),
    )
}

impl BodyInspector for RestoreBody {
    fn chunk(&mut self, chunk: Bytes) -> Result<Bytes, Refusal> {
        let plain = match &mut self.decoder {
            Some(d) => std::borrow::Cow::Owned(d.push(&chunk).map_err(undecodable)?),
            None => std::borrow::Cow::Borrowed(&chunk[..]),
        };
        Ok(Bytes::from(self.restorer.push(&plain)))
    }

    fn finish(&mut self) -> Result<Bytes, Refusal> {
        let mut out = match &mut self.decoder {
            Some(d) => self.restorer.push(&d.finish().map_err(undecodable)?),
            None => Vec::new(),
        };
        out.extend(self.restorer.finish());
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log lines written by the guard under test.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_custom_rule_whose_keywords_miss_matches_is_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.yaml");
        std::fs::write(
            &rules,
            "rules:\n  - id: acme-key\n    service: Acme\n    keywords: [acme_]\n    pattern: 'acm[et]_[a-z0-9]{24}'\n",
        )
        .unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!("[scan]\nsignatures = [{:?}]\n", rules.display().to_string()),
        )
        .unwrap();
        let settings = Settings::load(Some(&config), &crate::config::Overrides::default()).unwrap();
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let audit = Arc::new(AuditLog::open(&dir.path().join("audit"), "test").unwrap());
            from_settings(&settings, audit, &dir.path().join("data")).unwrap();
        });
        // The check runs on its own thread; wait for its line (bounded).
        let mut log = String::new();
        for _ in 0..200 {
            log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
            if log.contains("acme-key") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        assert!(
            log.contains("rule acme-key: matches \"acmt_000000000000000000000000\"")
                && log.contains("gate rules check"),
            "{log}"
        );
    }

    #[test]
    fn the_guard_builds_the_scanners_dfas_off_the_start_up_path() {
        let dir = tempfile::tempdir().unwrap();
        // No known values: the guard's scanner is then the built-in rules alone.
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "[known_values]\nscan_env = false\n").unwrap();
        let settings = Settings::load(Some(&config), &crate::config::Overrides::default()).unwrap();
        let audit = Arc::new(AuditLog::open(&dir.path().join("audit"), "test").unwrap());
        let guard = from_settings(&settings, audit, &dir.path().join("data")).unwrap();
        let compiled = Scanner::new(ScanConfig::builtin().unwrap())
            .unwrap()
            .memory_usage();
        // Its thread builds about 4 MiB of DFAs; wait for them (bounded).
        let mut grown = 0;
        for _ in 0..400 {
            grown = guard.inner.scanner.memory_usage().saturating_sub(compiled);
            if grown > 2 << 20 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        assert!(grown > 2 << 20, "{grown} bytes built");
    }

    fn guard(dir: &Path) -> Guard {
        testing::guard(Mode::Redact, AuditLog::open(dir, "test").unwrap())
    }

    /// A conversation of `turns` messages (about 9 KiB each), one secret in message `at`.
    fn conversation(turns: usize, at: usize) -> Vec<u8> {
        let mut s = String::from("{\"messages\":[");
        for t in 0..turns {
            if t > 0 {
                s.push(',');
            }
            let mut content = format!("turn {t}: ") + &"let x = vec![1, 2, 3];\\n".repeat(400);
            if t == at {
                content.push_str(&format!(" key AKIA{}{} ", "QWERTYUIOP", "ASDFGH"));
            }
            s.push_str(&format!("{{\"role\":\"user\",\"content\":\"{content}\"}}"));
        }
        s.push_str("]}");
        s.into_bytes()
    }

    /// Pushes `body` through the guard's request side in `chunk`-byte pieces.
    fn send(g: &Guard, body: &[u8], chunk: usize) -> Result<Bytes, Refusal> {
        let info = testing::post("/v1/messages");
        let (mut head, ()) = http::Request::post("https://api.test/v1/messages")
            .header(header::CONTENT_LENGTH, body.len())
            .body(())
            .unwrap()
            .into_parts();
        let plan = g.request(&info, &mut head)?;
        assert!(plan.settle_before_forwarding);
        let mut insp = plan.body.expect("a body inspector");
        let mut out = Vec::new();
        for piece in body.chunks(chunk) {
            out.extend_from_slice(&insp.chunk(Bytes::copy_from_slice(piece))?);
        }
        out.extend_from_slice(&insp.finish()?);
        Ok(Bytes::from(out))
    }

    #[test]
    fn a_body_is_planned_while_it_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(dir.path());
        let body = conversation(60, 41);
        let blocks = cached::cuts(&body).len();
        assert!(blocks > 10, "{blocks} blocks");
        let out = send(&g, &body, 16 * 1024).unwrap();
        let stats = g.cache_stats();
        // Every block but the last was planned before the body ended, so planning the whole
        // body found it in the cache.
        assert_eq!(stats.hits as usize, blocks - 1, "{stats:?}");
        assert_eq!(stats.misses as usize, blocks, "{stats:?}");
        // And the result is the whole body's redaction.
        let whole = g.plan_body(&body);
        assert_eq!(out, whole.apply(&body));
        assert_eq!(whole.findings().len(), 1);
        assert!(!out.windows(4).any(|w| w == b"AKIA"));
    }

    #[test]
    fn a_small_body_is_planned_whole_once() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(dir.path());
        let body = conversation(3, 1);
        assert!(body.len() < cached::MIN_CACHED_BODY);
        let out = send(&g, &body, 1000).unwrap();
        assert_eq!(g.cache_stats(), cached::CacheStats::default());
        assert!(!out.windows(4).any(|w| w == b"AKIA"));
    }
}
