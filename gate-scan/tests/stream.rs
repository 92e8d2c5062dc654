//! Streaming: a secret split across chunks at any offset is still found, with the same span as
//! a whole-buffer scan; the settled offset only grows and no finding ever starts before it;
//! memory stays bounded by the horizon, not the body.
use gate_scan::{Finding, RuleSet, ScanConfig, Scanner};

fn scanner() -> Scanner {
    Scanner::new(ScanConfig::builtin().unwrap()).unwrap()
}

fn spans(f: &[Finding]) -> Vec<(usize, usize, String)> {
    f.iter()
        .map(|f| (f.start, f.end, f.rule_id.to_string()))
        .collect()
}

/// Streams `data` in the given chunk sizes (cycled), checking the settled contract on the way.
fn stream_in(scanner: &Scanner, data: &[u8], sizes: &[usize]) -> Vec<Finding> {
    let mut s = scanner.stream();
    let mut out: Vec<Finding> = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    let mut last_settled = 0;
    while pos < data.len() {
        let n = sizes[i % sizes.len()].max(1).min(data.len() - pos);
        i += 1;
        let found = s.push(&data[pos..pos + n]);
        pos += n;
        for f in &found {
            assert!(f.start >= last_settled, "finding before settled offset");
        }
        out.extend(found);
        assert!(s.settled() >= last_settled, "settled went back");
        assert!(s.settled() <= pos);
        last_settled = s.settled();
        assert!(
            s.buffered() <= n + 2 * scanner.horizon() + 32 * 1024,
            "buffer grew to {}",
            s.buffered()
        );
    }
    for f in s.finish() {
        assert!(f.start >= last_settled);
        out.push(f);
    }
    assert_eq!(s.settled(), data.len());
    out
}

#[test]
fn sample_rules_found_across_every_split_offset() {
    let scanner = scanner();
    let rules = RuleSet::builtin().unwrap();
    let filler = "let x = compute(a, b); // ordinary code around the secret\n";
    let mut checked = 0;
    for rule in rules.iter().step_by(9) {
        let example = &rule.examples[0];
        let data = format!("{filler}{example}\n{filler}");
        let whole = scanner.scan(data.as_bytes());
        assert!(
            whole.iter().any(|f| *f.rule_id == *rule.id),
            "{} not found whole",
            rule.id
        );
        let start = filler.len();
        let end = start + example.len();
        for split in start..=end {
            let (a, b) = data.as_bytes().split_at(split);
            let mut s = scanner.stream();
            let mut got = s.push(a);
            got.extend(s.push(b));
            got.extend(s.finish());
            assert_eq!(
                spans(&got),
                spans(&whole),
                "rule {} split at {}",
                rule.id,
                split - start
            );
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} rules sampled");
}

#[test]
fn large_body_in_small_chunks_matches_whole_scan() {
    let scanner = scanner();
    let rules = RuleSet::builtin().unwrap();
    let mut body = String::new();
    for (i, rule) in rules.iter().enumerate().step_by(5) {
        body.push_str(&"fn filler() { let v = vec![1, 2, 3]; }\n".repeat(i % 7 * 50));
        body.push_str(&rule.examples[0]);
        body.push('\n');
    }
    let whole = scanner.scan(body.as_bytes());
    assert!(whole.len() > 40, "{}", whole.len());
    for sizes in [&[1usize, 7, 1000][..], &[4096], &[65536], &[13, 8191, 3]] {
        let got = stream_in(&scanner, body.as_bytes(), sizes);
        // Coverage must be identical byte for byte.
        let cover = |f: &[Finding]| {
            let mut v = vec![false; body.len()];
            for f in f {
                v[f.range()].iter_mut().for_each(|b| *b = true);
            }
            v
        };
        assert!(
            cover(&got) == cover(&whole),
            "coverage differs for {sizes:?}"
        );
        assert!(got.len() >= whole.len(), "{} < {}", got.len(), whole.len());
    }
}

#[test]
fn memory_is_bounded_for_a_long_clean_body() {
    let scanner = scanner();
    let mut s = scanner.stream();
    let chunk =
        "{\"role\":\"user\",\"content\":\"fn main() { println!(\\\"hi\\\"); }\"}\n".repeat(200);
    for _ in 0..500 {
        assert!(s.push(chunk.as_bytes()).is_empty());
        assert!(s.buffered() <= chunk.len() + 2 * scanner.horizon() + 32 * 1024);
    }
    assert!(s.finish().is_empty());
    assert_eq!(s.settled(), 500 * chunk.len());
}

#[test]
fn settled_offset_advances_while_streaming() {
    let scanner = scanner();
    let mut s = scanner.stream();
    let chunk = vec![b'a'; 64 * 1024];
    s.push(&chunk);
    s.push(&chunk);
    assert!(s.settled() >= 2 * chunk.len() - scanner.horizon() - 1);
    // Small chunks: the settled offset lags by at most the horizon plus one rescan step.
    let mut s = scanner.stream();
    for _ in 0..100 {
        s.push(&[b'b'; 1000]);
        assert!(s.position() - s.settled() <= 2 * scanner.horizon() + 32 * 1024);
    }
}

/// Random bytes sprinkled with keywords and rule examples, streamed in random chunk sizes:
/// nothing panics, and the streamed coverage equals the whole-buffer coverage.
#[test]
fn random_inputs_in_random_chunks_never_panic_and_agree() {
    let scanner = scanner();
    let rules = RuleSet::builtin().unwrap();
    let examples: Vec<&str> = rules.iter().map(|r| r.examples[0].as_str()).collect();
    let mut x: u64 = 0x0123_4567_89ab_cdef;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..20 {
        let mut data = Vec::new();
        while data.len() < 20_000 {
            match next() % 4 {
                0 => data.extend_from_slice(
                    examples[(next() % examples.len() as u64) as usize].as_bytes(),
                ),
                1 => data.extend_from_slice(
                    b" password=\"\\\\n\" token: secret_ key- sk-ant- -----BEGIN ",
                ),
                _ => data.extend((0..(next() % 64)).map(|_| next() as u8)),
            }
        }
        let whole = scanner.scan(&data);
        let sizes: Vec<usize> = (0..8).map(|_| (next() % 5000) as usize + 1).collect();
        let got = stream_in(&scanner, &data, &sizes);
        let cover = |f: &[Finding]| {
            let mut v = vec![false; data.len()];
            for f in f {
                v[f.range()].iter_mut().for_each(|b| *b = true);
            }
            v
        };
        assert!(
            cover(&got) == cover(&whole),
            "round {round}: coverage differs"
        );
    }
}

/// Regression: a rule whose secret group follows a keyword (`COHERE_API_KEY = "…"`) was lost
/// when a rescan cut fell between the keyword and the secret: the next rescan kept one byte
/// before the cut, so the keyword was gone and the secret was never reported.
#[test]
fn a_secret_after_its_keyword_is_found_when_a_cut_falls_between_them() {
    let scanner = scanner();
    let secret = format!("{}{}", "EXAMPLE0a1B2c3D4e5F6g", "7H8i9JkLmNoPqRsTuVw");
    let carrier = format!("COHERE_API_KEY = \"{secret}\"\n");
    // With 1000-byte chunks the first cut is at 42000 - horizon: walk the secret across it.
    let first_cut = 42_000 - scanner.horizon();
    let mut missed = Vec::new();
    for pad in (first_cut - carrier.len() - 5)..(first_cut + 5) {
        let mut data = vec![b' '; pad];
        data.extend_from_slice(carrier.as_bytes());
        data.extend(std::iter::repeat_n(b' ', 60_000));
        let whole = spans(&scanner.scan(&data));
        assert_eq!(whole.len(), 1);
        if spans(&stream_in(&scanner, &data, &[1000])) != whole {
            missed.push(pad);
        }
    }
    assert!(missed.is_empty(), "lost at paddings {missed:?}");
}
