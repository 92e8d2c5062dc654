//! Parses what `git push` sends over smart HTTP so the scanner can see every object it carries.
//!
//! The proxy buffers a push body (up to its cap), calls [`parse_receive_pack`], scans every
//! [`ScanItem`] it gets back, and on a finding answers with [`refusal_response`]. When parsing
//! fails the push is refused with the error's text as the reason ([`parse_push_request`] still
//! reads the ref names from a body whose pack is broken). This crate never scans: it hands out
//! text.
//!
//! ```
//! use gate_pack::{Finding, Limits, Refusal, parse_push_request, parse_receive_pack, refusal_response};
//!
//! # let body: &[u8] = b"0000";
//! // body: the buffered POST .../git-receive-pack body, Content-Encoding already undone
//! let response = match parse_receive_pack(body, &Limits::default()) {
//!     Ok(push) => {
//!         let findings: Vec<Finding> = Vec::new(); // scan each push.items[i].data here
//!         if findings.is_empty() {
//!             None // forward the push unchanged
//!         } else {
//!             Some(refusal_response(&push.request, &Refusal { findings: &findings, reason: None }))
//!         }
//!     }
//!     Err(err) => {
//!         let reason = err.to_string();
//!         let request = parse_push_request(body).unwrap_or_default();
//!         Some(refusal_response(&request, &Refusal { findings: &[], reason: Some(&reason) }))
//!     }
//! };
//! // Some(r): answer with r.status, Content-Type r.content_type and r.body; do not forward.
//! assert!(response.is_none());
//! ```
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
#[cfg(test)]
mod testpack;

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
        items = items::build_items(resolved, &mut budget)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpack::{Obj, body, insert_delta, pack, tree_entry};

    fn parse(objs: &[Obj], limits: &Limits) -> Result<ReceivePack, PackError> {
        parse_receive_pack(&body(&pack(objs).0), limits)
    }

    #[test]
    fn ofs_delta_chain_is_applied_and_depth_limited() {
        let base = b"abc".to_vec();
        let (p, offs) = pack(&[Obj::Whole(3, base.clone())]);
        let first = (p.len() - 20 - offs[0]) as u64; // distance from a second object to the first
        let objs = [
            Obj::Whole(3, base),
            Obj::Ofs(first, insert_delta(3, b"wxyz")),
        ];
        let rp = parse(&objs, &Limits::default()).expect("parses");
        assert!(
            rp.items
                .iter()
                .any(|i| i.data == b"wxyz" && i.kind == ItemKind::Blob)
        );
        assert_eq!(rp.stats.max_delta_depth, 1);
        let shallow = Limits {
            max_delta_depth: 0,
            ..Limits::default()
        };
        assert!(matches!(
            parse(&objs, &shallow),
            Err(PackError::DeltaTooDeep { .. })
        ));
    }

    #[test]
    fn ofs_delta_to_itself_or_outside_the_pack_is_refused() {
        let objs = [
            Obj::Whole(3, b"abc".to_vec()),
            Obj::Ofs(0, insert_delta(3, b"x")),
        ];
        let err = parse(&objs, &Limits::default()).expect_err("cycle");
        assert!(err.to_string().contains("refers to itself"), "{err}");
        let objs = [
            Obj::Whole(3, b"abc".to_vec()),
            Obj::Ofs(5000, insert_delta(3, b"x")),
        ];
        assert!(matches!(
            parse(&objs, &Limits::default()),
            Err(PackError::Object { .. })
        ));
        // pointing into the middle of an object, not at its start
        let objs = [
            Obj::Whole(3, b"abc".to_vec()),
            Obj::Ofs(1, insert_delta(3, b"x")),
        ];
        assert!(matches!(
            parse(&objs, &Limits::default()),
            Err(PackError::Object { .. })
        ));
    }

    #[test]
    fn ref_delta_cycle_is_only_scanned_by_its_inserts() {
        // two deltas naming each other's (unknowable) results: neither can be rebuilt, both
        // hand out what they insert
        let a = Oid([0xaa; 20]);
        let b = Oid([0xbb; 20]);
        let objs = [
            Obj::Ref(b, insert_delta(3, b"one")),
            Obj::Ref(a, insert_delta(3, b"two")),
        ];
        let rp = parse(&objs, &Limits::default()).expect("parses");
        assert_eq!(rp.stats.thin_deltas, 2);
        let inserts: Vec<_> = rp
            .items
            .iter()
            .filter(|i| i.kind == ItemKind::DeltaInsert)
            .map(|i| i.data.clone())
            .collect();
        assert_eq!(inserts, vec![b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn ref_delta_whose_base_comes_later_in_the_pack() {
        let base = b"abc".to_vec();
        let oid = Oid::hash_object("blob", &base);
        let objs = [
            Obj::Ref(oid, insert_delta(3, b"later")),
            Obj::Whole(3, base),
        ];
        let rp = parse(&objs, &Limits::default()).expect("parses");
        assert_eq!(rp.stats.thin_deltas, 0);
        assert!(rp.items.iter().any(|i| i.data == b"later"));
    }

    #[test]
    fn duplicate_objects_are_handed_out_once() {
        let objs = [
            Obj::Whole(3, b"same".to_vec()),
            Obj::Whole(3, b"same".to_vec()),
        ];
        let rp = parse(&objs, &Limits::default()).expect("parses");
        assert_eq!(rp.stats.objects, 2);
        assert_eq!(rp.items.len(), 1);
    }

    #[test]
    fn reserved_and_invalid_types_are_refused() {
        for t in [0u8, 5] {
            let err = parse(&[Obj::Whole(t, b"x".to_vec())], &Limits::default()).expect_err("type");
            assert!(matches!(err, PackError::Object { .. }), "{err}");
        }
    }

    #[test]
    fn size_header_must_match_inflated_data() {
        let (mut p, offs) = pack(&[Obj::Whole(3, b"abcd".to_vec())]);
        p[offs[0]] = (3 << 4) | 3; // claims 3 bytes, inflates to 4
        let n = p.len() - 20;
        let sum: [u8; 20] = <sha1::Sha1 as sha1::Digest>::digest(&p[..n]).into();
        p[n..].copy_from_slice(&sum);
        let err = parse_receive_pack(&body(&p), &Limits::default()).expect_err("size");
        assert!(matches!(err, PackError::Inflate { .. }), "{err}");
    }

    #[test]
    fn deep_trees_cannot_make_paths_quadratic() {
        // 300 nested directories with long names: small objects, ~2.3 MB of paths
        let blob = b"leaf".to_vec();
        let mut objs = vec![Obj::Whole(3, blob.clone())];
        let mut child = tree_entry("100644", "leaf.txt", Oid::hash_object("blob", &blob));
        let name = "d".repeat(50);
        for _ in 0..300 {
            let oid = Oid::hash_object("tree", &child);
            objs.push(Obj::Whole(2, child));
            child = tree_entry("40000", &name, oid);
        }
        let root = Oid::hash_object("tree", &child);
        objs.push(Obj::Whole(2, child));
        let commit = format!("tree {root}\nauthor a <a> 0 +0000\ncommitter a <a> 0 +0000\n\nm\n");
        objs.push(Obj::Whole(1, commit.into_bytes()));
        let roomy = parse(&objs, &Limits::default()).expect("parses");
        let leaf = roomy
            .items
            .iter()
            .find(|i| i.data == b"leaf")
            .expect("leaf");
        assert!(
            leaf.path
                .as_deref()
                .is_some_and(|p| p.ends_with("/leaf.txt"))
        );
        let tight = Limits {
            max_total_bytes: 500_000,
            ..Limits::default()
        };
        assert!(matches!(
            parse(&objs, &tight),
            Err(PackError::TotalTooLarge { .. })
        ));
    }
}
