//! Scanning a conversation once: an agent re-sends its whole history every turn, so a large
//! body is cut into content-defined blocks at boundaries between objects in a JSON array
//! (`},{"`: messages, content blocks, whatever the key order), each
//! block's findings are cached by the hash of its bytes, and only new blocks (and the seams
//! around each cut) are scanned. The cuts depend only on the bytes before them, so the history
//! a new turn repeats is cut exactly as before and every one of its blocks is a cache hit.
use gate_scan::{Finding, ScanCache, Scanner};

/// Bodies smaller than this are scanned whole.
pub const MIN_CACHED_BODY: usize = 32 * 1024;
/// Cuts closer together than this are skipped, so blocks stay worth a cache entry.
pub const MIN_BLOCK: usize = 16 * 1024;
/// Bytes scanned on each side of a cut, for a finding that would cross it.
pub const SEAM: usize = 1024;

/// Where one object of a JSON array ends and the next begins; the cut goes before the `{`.
const MARKER: &[u8] = b"},{\"";

/// Block starts: 0, then the first boundary at least MIN_BLOCK after the previous start.
pub fn cuts(data: &[u8]) -> Vec<usize> {
    let mut out = vec![0];
    let mut i = MIN_BLOCK;
    while i < data.len() {
        match find(&data[i..], MARKER) {
            Some(p) => {
                let cut = i + p + 2;
                out.push(cut);
                i = cut + MIN_BLOCK;
            }
            None => break,
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// All findings of `data`, through the cache where the body is large enough to be worth it.
pub fn scan(scanner: &Scanner, cache: &ScanCache, data: &[u8]) -> Vec<Finding> {
    if data.len() < MIN_CACHED_BODY {
        return scanner.scan(data);
    }
    let starts = cuts(data);
    if starts.len() < 2 {
        return scanner.scan(data);
    }
    let mut out: Vec<Finding> = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(data.len());
        for f in cache.scan(scanner, &data[start..end]).iter() {
            let mut f = f.clone();
            f.start += start;
            f.end += start;
            out.push(f);
        }
    }
    let seam = SEAM.min(scanner.horizon().max(1));
    for &cut in &starts[1..] {
        let lo = cut.saturating_sub(seam);
        let hi = (cut + seam).min(data.len());
        for mut f in scanner.scan(&data[lo..hi]) {
            f.start += lo;
            f.end += lo;
            if f.start < cut && f.end > cut {
                out.push(f);
            }
        }
    }
    out.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    out.dedup_by(|b, a| a.start == b.start && a.end == b.end && a.rule_id == b.rule_id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gate_scan::ScanConfig;

    fn scanner() -> Scanner {
        Scanner::new(ScanConfig::builtin().unwrap()).unwrap()
    }

    fn conversation(turns: usize, secret_at: Option<usize>) -> Vec<u8> {
        let mut s = String::from("{\"model\":\"m\",\"messages\":[");
        for t in 0..turns {
            if t > 0 {
                s.push(',');
            }
            let mut content =
                format!("turn {t}: ") + &"fn main() { println!(\\\"hi\\\"); }\\n".repeat(300);
            if secret_at == Some(t) {
                content.push_str(&format!(" key AKIA{}{} ", "QWERTYUIOP", "ASDFGH"));
            }
            s.push_str(&format!("{{\"role\":\"user\",\"content\":\"{content}\"}}"));
        }
        s.push_str("]}");
        s.into_bytes()
    }

    #[test]
    fn same_findings_as_a_whole_scan() {
        let sc = scanner();
        let cache = ScanCache::new(1024);
        for at in [Some(0), Some(7), Some(19), None] {
            let body = conversation(20, at);
            let whole: Vec<_> = sc
                .scan(&body)
                .into_iter()
                .map(|f| (f.start, f.end))
                .collect();
            let cached: Vec<_> = scan(&sc, &cache, &body)
                .into_iter()
                .map(|f| (f.start, f.end))
                .collect();
            assert_eq!(whole, cached, "secret at {at:?}");
        }
    }

    #[test]
    fn a_repeated_history_is_all_cache_hits() {
        let sc = scanner();
        let cache = ScanCache::new(1024);
        let turn1 = conversation(20, Some(3));
        let _ = scan(&sc, &cache, &turn1);
        let before = cache.stats();
        // The next turn repeats the history and adds one message.
        let turn2 = conversation(21, Some(3));
        let found = scan(&sc, &cache, &turn2);
        let after = cache.stats();
        assert_eq!(found.len(), 1);
        let new_misses = after.misses - before.misses;
        // The block that ended the old body now ends differently (the new message follows
        // it), and the new message is new: at most those two are scanned again.
        assert!(
            new_misses <= 2,
            "only the tail is scanned again, not {new_misses} blocks"
        );
        assert!(after.hits > before.hits);
    }

    #[test]
    fn a_finding_straddling_a_cut_is_still_found() {
        // No built-in rule can match across `},{"`; a custom one can, and the seam scan must
        // catch it.
        let rules = gate_scan::RuleSet::from_yaml(
            r#"rules:
  - id: straddle
    service: 'test'
    name: 'straddling token'
    description: 'matches across a message boundary'
    confidence: 'high'
    keywords: ['zqx9']
    pattern: 'zqx9[a-z]{4}\},\{"role"[a-z]{4}'
    examples:
      - 'zqx9abcd},{"role"efgh'
    negative:
      - 'zqx9abcd'
"#,
            "test.yaml",
        )
        .unwrap();
        let sc = Scanner::new(ScanConfig {
            rules,
            ..ScanConfig::without_rules()
        })
        .unwrap();
        let cache = ScanCache::new(16);
        let mut body = vec![b'x'; MIN_BLOCK];
        body.extend_from_slice(b" zqx9abcd},");
        let cut = body.len();
        body.extend_from_slice(b"{\"role\"efgh ");
        body.extend_from_slice(&vec![b'y'; MIN_CACHED_BODY]);
        assert_eq!(cuts(&body), vec![0, cut]);
        let found = scan(&sc, &cache, &body);
        assert_eq!(found.len(), 1);
        assert!(found[0].start < cut && found[0].end > cut);
    }
}
