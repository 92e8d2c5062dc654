//! Fuzzes the receive-pack parser: any body must parse or fail with a typed error, never panic,
//! and whatever parses must turn into a refusal response without panicking. Each input is also
//! tried with its pack trailer recomputed, so mutations get past the SHA-1 check into the
//! object, zlib, delta and tree code.
#![no_main]

use gate_pack::{
    Finding, Limits, Refusal, parse_push_request, parse_receive_pack, refusal_response,
};
use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};

fn limits() -> Limits {
    Limits {
        max_pack_bytes: 1 << 20,
        max_object_bytes: 1 << 20,
        max_objects: 10_000,
        max_total_bytes: 16 << 20,
        max_delta_depth: 64,
    }
}

fn exercise(body: &[u8]) {
    if let Ok(rp) = parse_receive_pack(body, &limits()) {
        let findings: Vec<Finding> = rp
            .items
            .iter()
            .take(4)
            .map(|i| Finding {
                rule: "fuzz".into(),
                path: i.location(),
                commit: i.commit.map(|c| c.short()).unwrap_or_default(),
            })
            .collect();
        let _ = refusal_response(
            &rp.request,
            &Refusal {
                findings: &findings,
                reason: Some("fuzz"),
            },
        );
    }
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    if let Ok(req) = parse_push_request(data) {
        let _ = refusal_response(
            &req,
            &Refusal {
                findings: &[],
                reason: Some("x"),
            },
        );
        let start = req.pack_offset;
        if data.len() >= start.saturating_add(32) {
            let mut fixed = data.to_vec();
            let end = fixed.len() - 20;
            let sum: [u8; 20] = Sha1::digest(&fixed[start..end]).into();
            fixed[end..].copy_from_slice(&sum);
            exercise(&fixed);
        }
    }
});
