//! Refusing a push in git's own protocol: a report-status answer (wrapped in side-band when the
//! client asked for it) so plain `git push` prints `remote: [gate] ...`, marks every ref
//! `! [remote rejected]` and exits non-zero.

use crate::pktline::{write_flush, write_pkt};
use crate::request::PushRequest;

/// Content-Type of a receive-pack response.
pub const RESULT_CONTENT_TYPE: &str = "application/x-git-receive-pack-result";

/// Why gate refuses pushes in redact mode; pass it as [`Refusal::reason`].
pub const REDACT_REASON: &str =
    "redact mode refuses pushes: a pack cannot be rewritten without breaking its hashes";

/// One secret found in a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Rule id, e.g. `aws-access-key`.
    pub rule: String,
    /// Where: a file path, "commit message", "tag v1" (see `ScanItem::location`).
    pub path: String,
    /// Abbreviated commit id, empty when unknown.
    pub commit: String,
}

/// What to tell the pusher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusal<'a> {
    /// Secrets found (may be empty when the push is refused for another reason).
    pub findings: &'a [Finding],
    /// A further reason: a malformed pack, an over-limit object, redact mode.
    pub reason: Option<&'a str>,
}

/// An HTTP response refusing a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalResponse {
    /// 200 when git's protocol can carry the refusal (report-status); 403 otherwise.
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Replaces control characters so pushed names cannot forge terminal output, and bounds length.
fn clean(text: &str, max: usize) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// The human lines, each printed by git as `remote: <line>`.
pub fn refusal_lines(refusal: &Refusal<'_>) -> Vec<String> {
    // Group by (path, commit), keeping first-seen order.
    let mut groups: Vec<(&str, &str, Vec<&str>, usize)> = Vec::new();
    for f in refusal.findings {
        match groups.iter_mut().find(|g| g.0 == f.path && g.1 == f.commit) {
            Some(g) => {
                g.3 += 1;
                if !g.2.contains(&f.rule.as_str()) {
                    g.2.push(&f.rule);
                }
            }
            None => groups.push((&f.path, &f.commit, vec![&f.rule], 1)),
        }
    }
    let mut lines = Vec::new();
    for (path, commit, rules, n) in groups {
        let mut line = format!(
            "[gate] push blocked: {n} secret{} ({}) in {}",
            if n == 1 { "" } else { "s" },
            rules.join(", "),
            if path.is_empty() { "the push" } else { path }
        );
        if !commit.is_empty() {
            line.push_str(&format!(" of {commit}"));
        }
        lines.push(clean(&line, 900));
    }
    if let Some(reason) = refusal.reason {
        let line = if lines.is_empty() {
            format!("[gate] push blocked: {reason}")
        } else {
            format!("[gate] {reason}")
        };
        lines.push(clean(&line, 900));
    }
    if lines.is_empty() {
        lines.push("[gate] push blocked".into());
    }
    lines
}

/// Appends `data` on side-band channel `band`, in packets of at most `max` data bytes.
fn write_band(out: &mut Vec<u8>, band: u8, data: &[u8], max: usize) {
    for chunk in data.chunks(max.max(1)) {
        let mut p = Vec::with_capacity(chunk.len() + 1);
        p.push(band);
        p.extend_from_slice(chunk);
        write_pkt(out, &p);
    }
}

/// Builds the response that refuses every ref of `request`.
pub fn refusal_response(request: &PushRequest, refusal: &Refusal<'_>) -> RefusalResponse {
    let lines = refusal_lines(refusal);
    let caps = &request.capabilities;
    if !caps.report_status() {
        // Without report-status git cannot be told a ref failed; an HTTP error still makes
        // `git push` fail, and its body is shown to the user.
        let mut body = lines.join("\n").into_bytes();
        body.push(b'\n');
        return RefusalResponse {
            status: 403,
            content_type: "text/plain; charset=utf-8",
            body,
        };
    }
    let side_band = caps.side_band_payload();
    let n_secrets = refusal.findings.len();
    let ref_reason = match (side_band, n_secrets) {
        // The remote: lines carry the detail; keep the ref table short.
        (Some(_), 0) => "blocked by gate".to_string(),
        (Some(_), n) => format!(
            "blocked by gate: {n} secret{}",
            if n == 1 { "" } else { "s" }
        ),
        // No side band: the reason in the ref table is all the user sees.
        (None, _) => clean(
            lines
                .first()
                .map(String::as_str)
                .unwrap_or("[gate] push blocked"),
            900,
        ),
    };
    let mut report = Vec::new();
    if refusal.findings.is_empty() {
        let why = clean(refusal.reason.unwrap_or("refused by gate"), 900);
        write_pkt(&mut report, format!("unpack {why}\n").as_bytes());
    } else {
        write_pkt(&mut report, b"unpack ok\n");
    }
    for cmd in &request.commands {
        write_pkt(
            &mut report,
            format!("ng {} {ref_reason}\n", cmd.name).as_bytes(),
        );
    }
    write_flush(&mut report);

    let body = match side_band {
        None => report,
        Some(max) => {
            let mut out = Vec::new();
            for line in &lines {
                let text = format!("{line}\n");
                write_band(&mut out, 2, text.as_bytes(), max);
            }
            write_band(&mut out, 1, &report, max);
            write_flush(&mut out);
            out
        }
    };
    RefusalResponse {
        status: 200,
        content_type: RESULT_CONTENT_TYPE,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oid::Oid;
    use crate::request::{Capabilities, RefUpdate};

    fn request(caps: &[&str]) -> PushRequest {
        PushRequest {
            commands: vec![RefUpdate {
                old: Oid::ZERO,
                new: Oid([1; 20]),
                name: "refs/heads/main".into(),
            }],
            capabilities: Capabilities(caps.iter().map(|s| s.to_string()).collect()),
            ..PushRequest::default()
        }
    }

    fn finding() -> Vec<Finding> {
        vec![Finding {
            rule: "aws-access-key".into(),
            path: "config/prod.env".into(),
            commit: "1a2b3c4".into(),
        }]
    }

    #[test]
    fn plain_report_status_carries_the_reason_in_the_ref_line() {
        let f = finding();
        let r = refusal_response(
            &request(&["report-status"]),
            &Refusal {
                findings: &f,
                reason: None,
            },
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, RESULT_CONTENT_TYPE);
        let text = String::from_utf8_lossy(&r.body);
        assert!(text.starts_with("000eunpack ok\n"), "{text}");
        assert!(text.contains(
            "ng refs/heads/main [gate] push blocked: 1 secret (aws-access-key) in config/prod.env of 1a2b3c4\n"
        ));
        assert!(text.ends_with("0000"));
    }

    #[test]
    fn side_band_carries_remote_lines_then_the_report() {
        let f = finding();
        let r = refusal_response(
            &request(&["report-status", "side-band-64k"]),
            &Refusal {
                findings: &f,
                reason: Some(REDACT_REASON),
            },
        );
        let body = r.body;
        // first packet: band 2 with the message
        assert_eq!(body.get(4), Some(&2u8));
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(
            "\u{2}[gate] push blocked: 1 secret (aws-access-key) in config/prod.env of 1a2b3c4\n"
        ));
        assert!(text.contains("[gate] redact mode refuses pushes: a pack cannot be rewritten without breaking its hashes"));
        assert!(text.contains("\u{1}000eunpack ok\n"));
        assert!(text.contains("ng refs/heads/main blocked by gate: 1 secret\n"));
        assert!(text.ends_with("0000"));
    }

    #[test]
    fn malformed_reason_without_findings_and_no_report_status() {
        let r = refusal_response(
            &request(&["report-status"]),
            &Refusal {
                findings: &[],
                reason: Some("bad\npack"),
            },
        );
        let text = String::from_utf8_lossy(&r.body);
        assert!(text.contains("unpack bad?pack\n"), "{text}");
        let r = refusal_response(
            &request(&[]),
            &Refusal {
                findings: &[],
                reason: Some("bad pack"),
            },
        );
        assert_eq!(r.status, 403);
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            "[gate] push blocked: bad pack\n"
        );
    }

    #[test]
    fn old_side_band_packets_stay_under_1000_bytes() {
        let f = vec![
            Finding {
                rule: "r".into(),
                path: "p".repeat(850),
                commit: "c".into()
            };
            3
        ];
        let f: Vec<Finding> = f
            .into_iter()
            .enumerate()
            .map(|(i, x)| Finding {
                commit: format!("{i}"),
                ..x
            })
            .collect();
        let r = refusal_response(
            &request(&["report-status", "side-band"]),
            &Refusal {
                findings: &f,
                reason: None,
            },
        );
        let mut reader = crate::pktline::PktReader::new(&r.body);
        let mut bands = Vec::new();
        while let Ok(Some(crate::pktline::Pkt::Data(d))) = reader.next_pkt() {
            assert!(d.len() + 4 <= 1000, "{}", d.len());
            bands.push(d[0]);
        }
        assert!(bands.iter().filter(|&&b| b == 2).count() >= 3);
        assert_eq!(bands.last(), Some(&1));
    }

    #[test]
    fn groups_findings_per_path_and_commit() {
        let mut f = finding();
        f.push(Finding {
            rule: "github-pat".into(),
            ..f[0].clone()
        });
        f.push(Finding {
            rule: "aws-access-key".into(),
            path: "commit message".into(),
            commit: "9999999".into(),
        });
        let lines = refusal_lines(&Refusal {
            findings: &f,
            reason: None,
        });
        assert_eq!(
            lines,
            vec![
                "[gate] push blocked: 2 secrets (aws-access-key, github-pat) in config/prod.env of 1a2b3c4".to_string(),
                "[gate] push blocked: 1 secret (aws-access-key) in commit message of 9999999".to_string(),
            ]
        );
    }
}
