//! Parses what `git push` sends over smart HTTP so the scanner can see every object it carries.
//!
//! The proxy buffers a push body (up to its cap), calls [`parse_receive_pack`], scans every
//! [`ScanItem`] it gets back, and on a finding answers with [`refusal_response`]. When parsing
//! fails the push is refused with the error's text as the reason ([`parse_push_request`] still
//! reads the ref names from a body whose pack is broken). This crate never scans: it hands out
//! text.
#![forbid(unsafe_code)]

mod delta;
mod error;
mod http;
mod items;
mod limits;
mod oid;
mod pack;
mod pktline;
mod report;
mod request;
mod resolve;

pub use error::PackError;
pub use http::{REQUEST_CONTENT_TYPE, decode_body, is_receive_pack};
pub use items::{ItemKind, ScanItem};
pub use limits::Limits;
pub use oid::Oid;
pub use report::{
    Finding, REDACT_REASON, RESULT_CONTENT_TYPE, Refusal, RefusalResponse, refusal_lines,
    refusal_response,
};
pub use request::{Capabilities, PushRequest, RefUpdate, parse_push_request};

/// Counts describing the pack of a push (for audit and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackStats {
    /// Pack version (2 or 3), `None` when the push carried no pack (deletes only).
    pub version: Option<u32>,
    pub objects: usize,
    pub ofs_deltas: usize,
    pub ref_deltas: usize,
    /// Deltas whose base was not in the pack (thin pack), scanned by inserted bytes only.
    pub thin_deltas: usize,
    pub max_delta_depth: u32,
    pub pack_bytes: usize,
}

/// A parsed push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivePack {
    pub request: PushRequest,
    /// Everything to scan: blobs, commits, tags, tree file names, thin-delta inserts, push
    /// options and certificates.
    pub items: Vec<ScanItem>,
    pub stats: PackStats,
}

impl ReceivePack {
    pub fn commands(&self) -> &[RefUpdate] {
        &self.request.commands
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.request.capabilities
    }
}

/// Parses a smart-HTTP receive-pack request body (already Content-Encoding decoded, see
/// [`decode_body`]). Any malformation or limit breach is an error; nothing panics.
pub fn parse_receive_pack(body: &[u8], limits: &Limits) -> Result<ReceivePack, PackError> {
    let size = u64::try_from(body.len()).unwrap_or(u64::MAX);
    if size > limits.max_pack_bytes {
        return Err(PackError::BodyTooLarge {
            size,
            limit: limits.max_pack_bytes,
        });
    }
    let request = parse_push_request(body)?;
    let pack_bytes = body.get(request.pack_offset..).unwrap_or_default();
    let mut items = Vec::new();
    let mut stats = PackStats {
        pack_bytes: pack_bytes.len(),
        ..PackStats::default()
    };
    if !pack_bytes.is_empty() {
        let mut budget = pack::Budget::new(limits.max_total_bytes);
        let raw = pack::read_pack(pack_bytes, limits, &mut budget)?;
        stats.version = Some(raw.version);
        stats.objects = raw.entries.len();
        let resolved = resolve::resolve(raw.entries, limits, &mut budget)?;
        stats.ofs_deltas = resolved.ofs_deltas;
        stats.ref_deltas = resolved.ref_deltas;
        stats.thin_deltas = resolved.thin.len();
        stats.max_delta_depth = resolved.max_depth;
        items = items::build_items(resolved)?;
    }
    for opt in &request.push_options {
        items.push(text_item(ItemKind::PushOption, opt));
    }
    if let Some(cert) = &request.push_cert {
        items.push(text_item(ItemKind::PushCert, cert));
    }
    Ok(ReceivePack {
        request,
        items,
        stats,
    })
}

fn text_item(kind: ItemKind, text: &str) -> ScanItem {
    ScanItem {
        kind,
        oid: None,
        delta_base: None,
        path: None,
        tag: None,
        commit: None,
        data: text.as_bytes().to_vec(),
    }
}
