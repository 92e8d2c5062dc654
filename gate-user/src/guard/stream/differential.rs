//! The streaming check against the whole-body check: many generated bodies (secrets in every
//! layer, inside and around long runs, near their ends, across chunk boundaries), each streamed
//! at several chunkings, must find what [`view::plan`] finds in the whole body, and must not
//! have let out any byte of a secret before finding it.
use std::collections::BTreeSet;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gate_scan::{RuleSet, ScanConfig, Scanner};

use super::level::{Cx, Level, Window};
use crate::guard::BASE64_DEPTH;
use crate::guard::cached::ScanFinder;
use crate::redact::RedactionKey;
use crate::redact::view::{self, Plan};

/// A scanner with two rules: one bare token and one secret after a keyword, so its horizon is
/// short and small bodies reach the sleeping and waking of the escape layers.
fn small_scanner() -> Scanner {
    let all = RuleSet::builtin().unwrap();
    let mut rules = RuleSet::empty();
    for id in ["aws-access-key-id", "cohere-api-key"] {
        rules.push(all.get(id).unwrap().clone()).unwrap();
    }
    Scanner::new(ScanConfig {
        rules,
        ..ScanConfig::without_rules()
    })
    .unwrap()
}

fn key() -> RedactionKey {
    RedactionKey::from_bytes([5; 32])
}

/// A fake AWS key, built at run time.
fn aws() -> String {
    format!("AKIA{}{}", "QWERTYUI", "OPASDFGH")
}

/// A fake Cohere assignment; the secret is the quoted part.
fn cohere() -> (String, Range<usize>) {
    let secret = format!("{}{}", "EXAMPLE0a1B2c3D4e5F6g", "7H8i9JkLmNoPqRsTuVw");
    let s = format!("COHERE_API_KEY = \"{secret}\"");
    let at = s.find('"').unwrap() + 1;
    (s, at..at + 40)
}

/// The test's random numbers, from a fixed seed.
struct Rng(fastrand::Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(fastrand::Rng::with_seed(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.u64(..)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0.usize(..n)
    }
}

/// A body being built, with where the encoded bytes of its secret are (if it has one).
#[derive(Default)]
struct Body {
    bytes: Vec<u8>,
    secret: Option<Range<usize>>,
}

impl Body {
    fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
    }

    fn push_secret(&mut self, b: &[u8], within: Range<usize>) {
        let at = self.bytes.len();
        self.secret = Some(at + within.start..at + within.end);
        self.bytes.extend_from_slice(b);
    }
}

fn json_escaped(s: &str, every: bool) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if every || i == 0 {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn url_encoded(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// The base64 characters that carry decoded bytes `within` of `len` bytes.
fn b64_chars(within: &Range<usize>) -> Range<usize> {
    within.start / 3 * 4..within.end.div_ceil(3) * 4
}

/// Filler text that is text, with escapes of every kind and no secret.
fn prose(rng: &mut Rng, len: impl FnOnce(&mut Rng) -> usize) -> String {
    let n = len(rng);
    let words = [
        "notes",
        "fine",
        "caf\\u00e9",
        "a\\nb",
        "x%20y",
        "q+r",
        "path/to",
        "k=v&w=z",
        "ok.",
    ];
    let mut s = String::new();
    while s.len() < n {
        s.push_str(words[rng.below(words.len())]);
        s.push(if rng.below(4) == 0 { '\n' } else { ' ' });
    }
    s
}

/// One token run of about `n` bytes: `y`s, or base64-looking characters whose head is not text.
fn run_filler(rng: &mut Rng, len: impl FnOnce(&mut Rng) -> usize) -> Vec<u8> {
    let n = len(rng);
    if rng.below(2) == 0 {
        vec![b'y'; n]
    } else {
        let blob: Vec<u8> = (0..n * 3 / 4).map(|_| rng.next() as u8).collect();
        STANDARD.encode(blob).into_bytes()
    }
}

/// A generated body: filler around at most one secret, in one carrier of some layer.
fn body(rng: &mut Rng, long: usize) -> Body {
    let mut b = Body::default();
    let aws = aws();
    let (cohere, cohere_secret) = cohere();
    let sep: &[u8] = [&b" "[..], b"\n", b"\"", b":", b""][rng.below(5)];
    // Enough before the carrier, often, for the raw layer to have settled some of it.
    b.push(
        prose(rng, |r| {
            [0, r.below(300), 40_000 + r.below(30_000)][r.below(3)]
        })
        .as_bytes(),
    );
    // Before the carrier: nothing, a separator, or a long run right against it.
    let against = rng.below(3);
    if against > 0 {
        b.push(&run_filler(rng, |r| long + r.below(long)));
        b.push(if against == 1 { b":" } else { sep });
    }
    let kind = rng.below(16);
    match kind {
        0 => b.push_secret(aws.as_bytes(), 0..aws.len()),
        1 => {
            let r = cohere_secret.clone();
            b.push_secret(cohere.as_bytes(), r);
        }
        2 | 3 => {
            let e = json_escaped(&aws, kind == 3);
            b.push_secret(e.as_bytes(), 0..e.len());
        }
        4 => {
            // A `\n` before the key makes it a key only once the run is decoded, and only a
            // `\u`/`\/` somewhere in the run gets it decoded: sometimes far later, sometimes
            // never.
            let s = format!("\\n{aws}");
            b.push_secret(s.as_bytes(), 2..s.len());
        }
        5 => {
            let e = url_encoded(&aws);
            b.push_secret(e.as_bytes(), 0..e.len());
        }
        6 => {
            let s = format!("k={}{}", "%41", &aws[1..]);
            b.push_secret(s.as_bytes(), 2..s.len());
        }
        7..=9 => {
            // Text around the secret, short or long, the secret near its start, middle or end.
            let before = prose(rng, |r| [0, 200, long][r.below(3)]).replace('\\', "/");
            let after = prose(rng, |r| [0, 100, 200, long][r.below(4)]).replace('\\', "/");
            let (secret, within) = if kind == 9 {
                (cohere.clone(), cohere_secret.clone())
            } else {
                (aws.clone(), 0..aws.len())
            };
            let text = format!("{before}{secret}{after}");
            let at = before.len() + within.start..before.len() + within.end;
            let url = rng.below(3) == 0;
            let enc = if url {
                URL_SAFE_NO_PAD.encode(&text)
            } else {
                STANDARD.encode(&text)
            };
            b.push_secret(enc.as_bytes(), b64_chars(&at));
        }
        10 => {
            // Nested twice.
            let inner_text = format!("config: {aws}\n");
            let inner = STANDARD.encode(&inner_text);
            let inner_at = b64_chars(&(8..8 + aws.len()));
            let pad = prose(rng, |r| [10, long][r.below(2)]).replace('\\', "/");
            let outer_text = format!("{pad}payload={inner}\n");
            let start = pad.len() + 8;
            let at = start + inner_at.start..start + inner_at.end;
            let outer = STANDARD.encode(&outer_text);
            b.push_secret(outer.as_bytes(), b64_chars(&at));
        }
        11 => {
            // Base64 that the whole-body check does not decode: text after a binary head, a
            // run spoiled at its end (a stray character, or both alphabets).
            let head: Vec<u8> = (0..300).map(|_| rng.next() as u8).collect();
            let mut blob = head;
            blob.extend_from_slice(format!("  {aws}  ").as_bytes());
            b.push(STANDARD.encode(&blob).as_bytes());
            b.push(b" ");
            let text = format!("{} {aws}\n", prose(rng, |_| 400).replace('\\', "/"));
            let mut enc = STANDARD.encode(&text);
            enc.push_str(["A", "-_", "+"][rng.below(3)]);
            b.push(enc.as_bytes());
        }
        12 | 13 => {
            // Escaped only at its end: the secret starts before the run's first escape.
            let (plain, within) = if kind == 12 {
                (aws.clone(), 0..aws.len())
            } else {
                let w = &cohere_secret;
                (cohere.replace([' ', '"'], ""), w.start - 3..w.end - 3)
            };
            let (head, tail) = plain.split_at(plain.len() - 1);
            let tail = tail.as_bytes()[0];
            let s = if rng.below(2) == 0 {
                format!("{head}\\u{tail:04x}")
            } else {
                format!("{head}%{tail:02X}")
            };
            let end = s.len();
            b.push_secret(s.as_bytes(), within.start..end);
        }
        14 => {
            // The keyword escaped, the secret after it plain: only the escape layer sees it.
            let plain = cohere.replace([' ', '"'], "");
            let at = cohere_secret.start - 3;
            let (k, rest) = plain.split_at(1);
            let k = k.as_bytes()[0];
            let s = if rng.below(2) == 0 {
                format!("\\u{k:04x}{rest}")
            } else {
                format!("%{k:02X}{rest}")
            };
            let shift = s.len() - plain.len();
            b.push_secret(s.as_bytes(), at + shift..at + shift + 40);
        }
        _ => {}
    }
    // After it: nothing, a separator, a long run, and sometimes a `\u` that gets the run
    // decoded.
    match rng.below(4) {
        0 => {}
        1 => b.push(sep),
        2 => {
            b.push(b":");
            b.push(&run_filler(rng, |r| long + r.below(long)));
        }
        _ => {
            b.push(b":");
            b.push(&run_filler(rng, |_| long));
            b.push(b"\\u0079");
            b.push(&run_filler(rng, |r| r.below(long)));
        }
    }
    if rng.below(2) == 0 {
        b.push(b" ");
        b.push(prose(rng, |r| r.below(300)).as_bytes());
    }
    b
}

/// What streaming found: the rules, and how many bytes had been let out when it first found
/// something.
struct Streamed {
    rules: BTreeSet<String>,
    out_at_first: Option<usize>,
    out: usize,
}

/// Streams `body` in chunks of the given sizes (cycled) through a level, letting out what it
/// settles; the window it gets starts at what was let out, so it cannot read before it.
fn stream(scanner: &Scanner, body: &[u8], sizes: &[usize], run_min: usize) -> Streamed {
    let key = key();
    let cx = Cx { scanner, key: &key };
    let mut level = Level::with_run_min(scanner, BASE64_DEPTH, run_min);
    let mut plan = Plan::default();
    let (mut sent, mut received, mut i) = (0, 0, 0);
    let mut out_at_first = None;
    loop {
        let n = sizes[i % sizes.len()].min(body.len() - received);
        i += 1;
        received += n;
        let last = received == body.len();
        let win = Window {
            bytes: &body[sent..received],
            base: sent,
        };
        level.push(cx, win, n, last, &mut plan).unwrap();
        if !plan.is_clean() && out_at_first.is_none() {
            out_at_first = Some(sent);
        }
        if last {
            break;
        }
        let safe = level.settled().min(level.keep_from());
        assert!(safe <= received);
        sent = sent.max(safe);
    }
    let rules = plan.findings().into_iter().map(|f| f.0).collect();
    Streamed {
        rules,
        out_at_first,
        out: sent,
    }
}

fn whole(scanner: &Scanner, body: &[u8]) -> BTreeSet<String> {
    view::plan(body, &ScanFinder(scanner), &key(), BASE64_DEPTH)
        .findings()
        .into_iter()
        .map(|f| f.0)
        .collect()
}

/// Streams `b` and compares with `want`, what the whole-body check found in it.
fn check(
    scanner: &Scanner,
    b: &Body,
    want: &BTreeSet<String>,
    sizes: &[usize],
    run_min: usize,
    what: &str,
) {
    let got = stream(scanner, &b.bytes, sizes, run_min);
    assert_eq!(
        &got.rules,
        want,
        "{what}: {} bytes in chunks of {sizes:?}",
        b.bytes.len()
    );
    if let (Some(out), Some(secret)) = (got.out_at_first, &b.secret)
        && !want.is_empty()
    {
        assert!(
            out <= secret.start,
            "{what}: {out} bytes out before a secret at {secret:?} was found (chunks {sizes:?})"
        );
    }
}

#[test]
fn streaming_finds_what_the_whole_body_check_finds_and_lets_out_no_secret_byte_first() {
    let scanner = small_scanner();
    let h = scanner.horizon();
    assert!(h < 300, "horizon {h}");
    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
    let mut found = 0;
    for case in 0..100 {
        // Runs from a few horizons to past the raw layer's rescan step.
        let long = [10 * h, 40_000, 100_000][case % 3];
        let b = body(&mut rng, long);
        let want = whole(&scanner, &b.bytes);
        let sizes = [
            vec![b.bytes.len().max(1)],
            vec![1 + rng.below(9), 1 + rng.below(200), 1 + rng.below(3000)],
            vec![4096],
        ];
        for s in &sizes {
            check(&scanner, &b, &want, s, 2 * h, &format!("case {case}"));
        }
        // Everything up to a point near the secret at once, then the rest: the raw layer
        // settles all but its last horizon, so only the decoding layers hold back.
        if let Some(secret) = b.secret.clone() {
            let from = secret.start.saturating_sub(h);
            let to = (secret.end + 2 * h).min(b.bytes.len());
            for split in (from..to).step_by(((to - from) / 5).max(1)) {
                let sizes = [split.max(1), b.bytes.len()];
                let what = format!("case {case} split {split}");
                check(&scanner, &b, &want, &sizes, 2 * h, &what);
            }
        }
        found += usize::from(!want.is_empty());
    }
    // Most bodies hold a secret some layer finds; some hold one no layer may see.
    assert!(
        (40..95).contains(&found),
        "{found} of 100 bodies with findings"
    );
}

/// Carriers whose secret only a decoding layer sees, each inside a long run and cut at every
/// offset around the secret: what the raw layer settles there, the decoding layers must hold.
#[test]
fn every_cut_near_a_secret_inside_a_long_run_holds_it() {
    let scanner = small_scanner();
    let h = scanner.horizon();
    let aws = aws();
    let (cohere, within) = cohere();
    let plain = cohere.replace([' ', '"'], "");
    let at = within.start - 3;
    let text = format!("{aws} {}", "fine notes. ".repeat(18));
    // URL-safe: no `+` or `/`, which would wake the URL layer and hold the run by itself.
    let short_b64 = URL_SAFE_NO_PAD.encode(&text);
    assert!(short_b64.len() < view::TEXTY_HEAD_CHARS && short_b64.len() > 2 * h);
    let (head, last) = aws.split_at(aws.len() - 1);
    let carriers: Vec<(String, Range<usize>)> = vec![
        (format!("\\u0063{}", &plain[1..]), at + 5..at + 45),
        (format!("%63{}", &plain[1..]), at + 2..at + 42),
        (
            format!("{head}\\u00{:02x}", last.as_bytes()[0]),
            0..aws.len() + 5,
        ),
        (short_b64.clone(), 0..b64_chars(&(0..aws.len())).end),
    ];
    let mut rng = Rng::new(7);
    for (carrier, secret) in carriers {
        let mut b = Body::default();
        // Enough before it for the raw layer's first rescan.
        b.push(prose(&mut rng, |_| 34_000).as_bytes());
        b.push(b" ");
        // Long enough for the escape layers' scans to settle some of it and fall asleep.
        b.push(&vec![b'y'; 40_000]);
        b.push(b":");
        b.push_secret(carrier.as_bytes(), secret);
        b.push(b":");
        b.push(&vec![b'y'; 5_000]);
        b.push(b" end");
        let secret = b.secret.clone().unwrap();
        let want = whole(&scanner, &b.bytes);
        assert!(!want.is_empty());
        for split in secret.start..secret.end + 2 * h {
            let sizes = [split, b.bytes.len()];
            let what = format!("{carrier:.12} split {split}");
            check(&scanner, &b, &want, &sizes, 2 * h, &what);
        }
    }
}

#[test]
fn a_long_run_is_let_out_before_it_ends() {
    let scanner = small_scanner();
    let body = vec![b'y'; 200_000];
    let got = stream(&scanner, &body, &[4096], super::level::RUN_MIN);
    assert!(got.rules.is_empty());
    assert!(got.out > 100_000, "only {} bytes out", got.out);
    // And a texty base64 run the same way, with its decoded text checked as it comes.
    let text = "notes: all fine here. ".repeat(10_000);
    let enc = STANDARD.encode(&text);
    let got = stream(&scanner, enc.as_bytes(), &[4096], super::level::RUN_MIN);
    assert!(got.rules.is_empty());
    assert!(got.out > enc.len() / 2, "only {} of {}", got.out, enc.len());
}

#[test]
fn the_built_in_rules_agree_on_bodies_with_long_runs() {
    let scanner = Scanner::new(ScanConfig::builtin().unwrap()).unwrap();
    let h = scanner.horizon();
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    for case in 0..12 {
        let b = body(&mut rng, 3 * h);
        let want = whole(&scanner, &b.bytes);
        check(
            &scanner,
            &b,
            &want,
            &[1 + rng.below(5000), 65536],
            super::level::RUN_MIN,
            &format!("built-in case {case}"),
        );
    }
}
