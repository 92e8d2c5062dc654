//! Differential tests: the optimised engine (anchored confirmation, factored regexes) must
//! report exactly what the reference engine (unanchored searches of the unfactored regexes
//! over merged windows) reports, on the benchmark inputs, on every rule example, and on
//! generated keyword-dense text and on near misses of the rule examples.
use crate::engine::Scanner;
use crate::finding::Finding;
use crate::{KnownValues, RuleSet, ScanConfig};

#[path = "../benches/corpus.rs"]
mod corpus;

fn pair(entropy: bool, known: usize) -> (Scanner, Scanner) {
    let mut config = ScanConfig::builtin().expect("built-in rules");
    config.entropy = entropy;
    let mut kv = KnownValues::new();
    kv.harvest_env(corpus::known_values(known));
    config.known_values = kv;
    let fast = Scanner::build(config.clone(), false).expect("scanner");
    let reference = Scanner::build(config, true).expect("reference scanner");
    (fast, reference)
}

fn unmerged(s: &Scanner, data: &[u8]) -> Vec<(usize, usize, String)> {
    let mut out: Vec<(usize, usize, String)> = s
        .scan_unmerged(data)
        .into_iter()
        .map(|f| (f.start, f.end, f.rule_id.to_string()))
        .collect();
    out.sort();
    out
}

/// Compares without printing any matched bytes (only offsets and rule ids).
fn assert_same(fast: &Scanner, reference: &Scanner, data: &[u8], what: &str) {
    assert_eq!(
        unmerged(fast, data),
        unmerged(reference, data),
        "unmerged findings differ on {what}"
    );
    let a: Vec<Finding> = fast.scan(data);
    let b: Vec<Finding> = reference.scan(data);
    assert_eq!(a, b, "findings differ on {what}");
}

#[test]
fn benchmark_inputs_give_identical_findings() {
    let (fast, reference) = pair(false, 100);
    for (name, data) in [
        (
            "anthropic 64 KiB",
            corpus::llm_body(64 << 10, corpus::Flavor::Anthropic),
        ),
        (
            "anthropic 1 MiB",
            corpus::llm_body(1 << 20, corpus::Flavor::Anthropic),
        ),
        (
            "openai 1 MiB",
            corpus::llm_body(1 << 20, corpus::Flavor::OpenAi),
        ),
        ("adversarial 1 MiB", corpus::adversarial(1 << 20)),
    ] {
        assert_same(&fast, &reference, &data, name);
    }
    let adversarial = corpus::adversarial(1 << 20);
    assert_eq!(fast.scan(&adversarial).len(), 2619);
}

#[test]
fn rule_examples_give_identical_findings() {
    let (fast, reference) = pair(true, 0);
    let rules = RuleSet::builtin().expect("built-in rules");
    let mut all = Vec::new();
    for rule in rules.rules() {
        for text in rule.examples.iter().chain(&rule.negative) {
            assert_same(&fast, &reference, text.as_bytes(), &rule.id);
            all.extend_from_slice(text.as_bytes());
            all.push(b'\n');
        }
    }
    assert_same(&fast, &reference, &all, "all examples in one body");
}

#[test]
fn near_misses_of_rule_examples_give_identical_findings() {
    // Each example with one of its first bytes changed (case swapped, or a separator put in):
    // anchored attempts that the lead bytes turn down right beside ones that match.
    let (fast, reference) = pair(true, 0);
    let rules = RuleSet::builtin().expect("built-in rules");
    let mut body = Vec::new();
    for rule in rules.rules() {
        for text in &rule.examples {
            let bytes = text.as_bytes();
            for i in 0..bytes.len().min(24) {
                for swap in [bytes[i] ^ 0x20, b'.', b'_', b'0'] {
                    let mut v = bytes.to_vec();
                    v[i] = swap;
                    body.extend_from_slice(&v);
                    body.push(b'\n');
                }
            }
        }
        assert_same(&fast, &reference, &body, &rule.id);
        body.clear();
    }
}

/// Text dense with keywords of every rule (in mixed case), assignment operators, quotes and
/// values of many lengths, so that matches overlap, nest and run into window ends.
fn keyword_soup(rng: &mut fastrand::Rng, keywords: &[String], len: usize) -> Vec<u8> {
    const GLUE: &[&str] = &[
        "=", " = ", ":", ": ", ":=", " => ", "\"", "'", "`", "\\\"", "\\", " ", "\t", "\n", "\r\n",
        "_", "-", ".", "{\"", "\": \"", "\", ", "[", "]", "(", ")", "${", "}", "@", "/", "://",
        ";", "&", "?", "#", "-----",
    ];
    const VALUE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-.~";
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        match rng.usize(..4) {
            0 => {
                let k = &keywords[rng.usize(..keywords.len())];
                for b in k.bytes() {
                    out.push(if rng.usize(..3) == 0 {
                        b.to_ascii_uppercase()
                    } else {
                        b
                    });
                }
            }
            1 => out.extend_from_slice(GLUE[rng.usize(..GLUE.len())].as_bytes()),
            _ => {
                let n = [3, 6, 8, 12, 16, 20, 24, 32, 36, 40, 44, 64, 90][rng.usize(..13)];
                let alphabet = if rng.usize(..3) == 0 {
                    &VALUE[52..62]
                } else {
                    VALUE
                };
                for _ in 0..n {
                    out.push(alphabet[rng.usize(..alphabet.len())]);
                }
            }
        }
    }
    out
}

#[test]
fn keyword_dense_text_gives_identical_findings() {
    let (fast, reference) = pair(true, 8);
    let rules = RuleSet::builtin().expect("built-in rules");
    let mut keywords: Vec<String> = rules
        .rules()
        .iter()
        .flat_map(|r| r.keywords.iter().cloned())
        .collect();
    keywords.extend(["password", "pwd", "api_key", "secret", "token", "key"].map(String::from));
    let examples: Vec<&String> = rules.rules().iter().flat_map(|r| &r.examples).collect();
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    for round in 0..60 {
        let mut data = keyword_soup(&mut rng, &keywords, 4096);
        // Splice a few real examples in, sometimes right after a keyword.
        for _ in 0..3 {
            let at = rng.usize(..data.len());
            let ex = examples[rng.usize(..examples.len())];
            data.splice(at..at, ex.bytes());
        }
        assert_same(&fast, &reference, &data, &format!("round {round}"));
    }
}

/// Lines as env files, shell scripts and JSON strings hold them (line breaks real and
/// escaped, `export`, indentation past what the rules allow, names around the keywords, names
/// made of keywords hundreds of bytes long, values quoted or not), with code and prose between
/// them that names the same keywords.
fn env_lines(rng: &mut fastrand::Rng, keywords: &[&str], len: usize) -> Vec<u8> {
    const BREAK: &[&str] = &[
        "\n", "\r\n", "\r", "\\n", "\\\\n", "\\r\\n", "n", "\\", "\\\"", "",
    ];
    const NAME: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.";
    const VALUE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-.~";
    const NOISE: &[&str] = &[
        "let t = std::env::var(\"GITHUB_TOKEN\");",
        "\", \"",
        " the SECRET word ",
        "{\"text\": \"",
        "db_password=lowercase",
        "=",
        " ",
        "\t",
        "export",
        "#",
        // A value running on over an escaped line break: the second line's start lies inside
        // the first line's match.
        "\npen SECRET = Zq8vR3mK9pL\\npen SECRET = Wx2T7kQ4mN8",
    ];
    let mut out = Vec::with_capacity(len + 256);
    while out.len() < len {
        if rng.usize(..3) == 0 {
            out.extend_from_slice(NOISE[rng.usize(..NOISE.len())].as_bytes());
            continue;
        }
        if rng.usize(..40) == 0 {
            // A long name made of keywords: one window, a hit every few bytes.
            out.extend_from_slice(BREAK[rng.usize(..BREAK.len())].as_bytes());
            for _ in 0..rng.usize(..60) {
                out.extend_from_slice(keywords[rng.usize(..keywords.len())].as_bytes());
                out.push(b'_');
            }
            out.extend_from_slice(b"=Zq8vR3mK9pLw2xT7synthQ");
            continue;
        }
        out.extend_from_slice(BREAK[rng.usize(..BREAK.len())].as_bytes());
        for _ in 0..rng.usize(..11) {
            out.push(if rng.bool() { b' ' } else { b'\t' });
        }
        if rng.usize(..3) == 0 {
            out.extend_from_slice(b"export");
            for _ in 0..rng.usize(..7) {
                out.push(if rng.bool() { b' ' } else { b'\t' });
            }
        }
        for _ in 0..[0, 0, 3, 8, 20, 31, 32, 33, 40][rng.usize(..9)] {
            out.push(NAME[rng.usize(..NAME.len())]);
        }
        for _ in 0..1 + rng.usize(..2) {
            let k = keywords[rng.usize(..keywords.len())];
            if rng.usize(..6) == 0 {
                out.extend(k.bytes().map(|b| b.to_ascii_lowercase()));
            } else {
                out.extend_from_slice(k.as_bytes());
            }
            for _ in 0..[0, 2, 12, 13][rng.usize(..4)] {
                out.push(NAME[rng.usize(..NAME.len())]);
            }
        }
        out.extend_from_slice([" = ", "=", "\t=  ", ": ", "=\""][rng.usize(..5)].as_bytes());
        for _ in 0..[4, 8, 16, 24, 40][rng.usize(..5)] {
            out.push(VALUE[rng.usize(..VALUE.len())]);
        }
    }
    out
}

/// The rules confirmed where their hits' lines begin ([`crate::anchor::line_led`]) report
/// what the window searches of the reference engine report, on env lines of every shape: the
/// two built-in env rules, and a custom rule whose names may hold `n` (so that a `\n` escape
/// is seen from its backslash) and whose values may run on over an escaped line break into the
/// next line (whose start then lies inside a match, where the window search does not look).
#[test]
fn line_led_rules_find_what_window_searches_find() {
    let custom = r#"
rules:
  - id: lower-secret-line
    service: Test
    name: Lower-case names before SECRET
    confidence: low
    keywords: ['SECRET']
    case_sensitive_keywords: true
    pattern: '(?:^|\\n|[\r\n])[a-z \t]{0,12}SECRET[ \t]*=[ \t]*(?P<secret>[A-Za-z0-9+/=_.~\\-]{8,})'
    examples: ['pen SECRET = Zq8vR3mK9pLw2x']
    negative: ['"pen SECRET = Zq8vR3mK9pLw2x']
"#;
    let mut config = ScanConfig::builtin().expect("built-in rules");
    config
        .rules
        .extend(RuleSet::from_yaml(custom, "custom.yaml").expect("custom rule"))
        .expect("rule ids differ");
    let fast = Scanner::build(config.clone(), false).expect("scanner");
    let reference = Scanner::build(config, true).expect("reference scanner");
    for id in [
        "generic-secret-env",
        "generic-password-env",
        "lower-secret-line",
    ] {
        assert_eq!(fast.confirm_kind(id), Some("line-led"), "{id}");
        assert_eq!(reference.confirm_kind(id), Some("window"), "{id}");
    }
    let keywords = [
        "SECRET",
        "TOKEN",
        "API_KEY",
        "APIKEY",
        "PRIVATE_KEY",
        "ACCESS_KEY",
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "_PASS",
        "_PWD",
        "pen SECRET",
        "n SECRET",
    ];
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let mut found = 0;
    for round in 0..80 {
        let data = env_lines(&mut rng, &keywords, 4096);
        assert_same(&fast, &reference, &data, &format!("round {round}"));
        found += fast.scan(&data).len();
    }
    // Enough matches to mean something (450 with this seed; most lines are built to fail).
    assert!(found > 250, "{found}");
}
