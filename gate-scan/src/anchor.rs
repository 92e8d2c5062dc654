//! Regex analysis for cheaper confirmation: whether every match of a rule's regex begins with
//! one of its keywords (then a match can only start where the keyword prefilter saw a keyword,
//! and the rule is confirmed by anchored searches at the hits instead of an unanchored search
//! over the merged window), and factoring keyword alternations into tries (so that the
//! capture search that resolves the secret group can run as a one-pass DFA), and the bytes
//! every match's first positions must hold (so that most anchored attempts are turned down by
//! a few table lookups instead of a regex search), and whether every match begins at a line
//! start with only a few kinds of bytes between it and the keyword (then the one place a match
//! holding a given hit can begin is found by looking back from the hit).
use regex_syntax::hir::{
    Capture, Class, ClassBytes, ClassBytesRange, Hir, HirKind, Look, Repetition,
};

/// Most prefix strings tracked while proving a rule keyword-led (alternations multiply them).
const MAX_PREFIXES: usize = 512;

/// A possible start of a match: its bytes (ASCII lower-cased), and whether the analysed
/// expression matches exactly these bytes (so that what follows can be appended).
#[derive(Clone)]
struct Prefix {
    bytes: Vec<u8>,
    exact: bool,
}

fn lower(bytes: &[u8]) -> Vec<u8> {
    bytes.to_ascii_lowercase()
}

/// The ways a match of `hir` can begin (ASCII case folded), each at most `limit` bytes long;
/// `None` when they are too many to track.
fn prefixes(hir: &Hir, limit: usize) -> Option<Vec<Prefix>> {
    let any = || {
        Some(vec![Prefix {
            bytes: Vec::new(),
            exact: false,
        }])
    };
    let empty = || {
        Some(vec![Prefix {
            bytes: Vec::new(),
            exact: true,
        }])
    };
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => empty(),
        HirKind::Literal(lit) => {
            let mut bytes = lower(&lit.0);
            let exact = bytes.len() <= limit;
            bytes.truncate(limit);
            Some(vec![Prefix { bytes, exact }])
        }
        HirKind::Class(Class::Bytes(class)) => {
            let mut set: Vec<u8> = Vec::new();
            for r in class.ranges() {
                if usize::from(r.end() - r.start()) >= 8 {
                    return any();
                }
                for b in r.start()..=r.end() {
                    set.push(b.to_ascii_lowercase());
                }
            }
            set.sort_unstable();
            set.dedup();
            if set.len() > 4 {
                return any();
            }
            Some(
                set.into_iter()
                    .map(|b| Prefix {
                        bytes: vec![b],
                        exact: true,
                    })
                    .collect(),
            )
        }
        HirKind::Class(Class::Unicode(_)) => any(),
        HirKind::Capture(cap) => prefixes(&cap.sub, limit),
        HirKind::Repetition(rep) => match (rep.min, rep.max) {
            (1, Some(1)) => prefixes(&rep.sub, limit),
            (0, Some(1)) => {
                let mut out = prefixes(&rep.sub, limit)?;
                out.push(Prefix {
                    bytes: Vec::new(),
                    exact: true,
                });
                Some(out)
            }
            (0, _) => any(),
            _ => {
                let mut out = prefixes(&rep.sub, limit)?;
                for p in &mut out {
                    p.exact = false;
                }
                Some(out)
            }
        },
        HirKind::Alternation(subs) => {
            let mut out = Vec::new();
            for sub in subs {
                out.extend(prefixes(sub, limit)?);
                if out.len() > MAX_PREFIXES {
                    return None;
                }
            }
            Some(out)
        }
        HirKind::Concat(subs) => {
            let mut out = empty()?;
            for sub in subs {
                if out.iter().all(|p| !p.exact) {
                    break;
                }
                let next = prefixes(sub, limit)?;
                let mut joined = Vec::new();
                for p in out {
                    if !p.exact {
                        joined.push(p);
                        continue;
                    }
                    for n in &next {
                        let mut bytes = p.bytes.clone();
                        bytes.extend_from_slice(&n.bytes);
                        let exact = n.exact && bytes.len() <= limit;
                        bytes.truncate(limit);
                        joined.push(Prefix { bytes, exact });
                    }
                    if joined.len() > MAX_PREFIXES {
                        return None;
                    }
                }
                out = joined;
            }
            Some(out)
        }
    }
}

/// Whether every match of `hir` begins with one of `keywords` (ASCII case-insensitively).
pub(crate) fn keyword_led(hir: &Hir, keywords: &[String]) -> bool {
    let keys: Vec<Vec<u8>> = keywords.iter().map(|k| lower(k.as_bytes())).collect();
    let Some(limit) = keys.iter().map(Vec::len).max() else {
        return false;
    };
    if keys.iter().any(Vec::is_empty) {
        return false;
    }
    let Some(starts) = prefixes(hir, limit) else {
        return false;
    };
    !starts.is_empty()
        && starts
            .iter()
            .all(|p| keys.iter().any(|k| p.bytes.starts_with(k)))
}

/// Most branches an alternation is expanded to while factoring it.
const MAX_BRANCHES: usize = 512;

/// `hir` with every alternation of keyword-like branches factored into a trie
/// (`password|passwd|pwd` becomes `p(?:assw(?:ord|d)|wd)`), so that a regex that is one-pass
/// but for its leading keyword alternation builds as a one-pass DFA. Leftmost-first matches
/// (and capture spans) stay the same: only branches whose first bytes are disjoint trade
/// places, and those never match at the same position.
pub(crate) fn factor(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Alternation(subs) => {
            let subs: Vec<Hir> = subs.iter().map(factor).collect();
            let seqs: Vec<Vec<Hir>> = subs.iter().map(|h| vec![h.clone()]).collect();
            factor_seqs(seqs).unwrap_or_else(|| Hir::alternation(subs))
        }
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(factor).collect()),
        HirKind::Capture(cap) => Hir::capture(Capture {
            index: cap.index,
            name: cap.name.clone(),
            sub: Box::new(factor(&cap.sub)),
        }),
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            min: rep.min,
            max: rep.max,
            greedy: rep.greedy,
            sub: Box::new(factor(&rep.sub)),
        }),
        _ => hir.clone(),
    }
}

/// A branch whose first element matches exactly one byte of `set`.
struct Headed {
    set: [u64; 4],
    head: Hir,
    rest: Vec<Hir>,
}

fn byte_set(class: &ClassBytes) -> ByteSet {
    let mut set = [0u64; 4];
    for r in class.ranges() {
        for b in r.start()..=r.end() {
            set[usize::from(b >> 6)] |= 1 << (b & 63);
        }
    }
    set
}

/// A set of bytes.
pub(crate) type ByteSet = [u64; 4];

/// Whether `set` holds `b`.
#[inline(always)]
pub(crate) fn holds(set: &ByteSet, b: u8) -> bool {
    (set[usize::from(b >> 6)] >> (b & 63)) & 1 != 0
}

/// Most leading positions [`lead`] describes.
const MAX_LEAD: usize = 16;

/// The bytes every match of `hir` holds at its first positions: a match is at least
/// `lead.len()` bytes long and its byte `i` is in `lead[i]` (an over-approximation: look-arounds
/// are ignored, alternatives united; it stops at the first part whose length varies).
pub(crate) fn lead(hir: &Hir) -> Vec<ByteSet> {
    let (mut sets, _) = lead_sets(hir);
    sets.truncate(MAX_LEAD);
    sets
}

/// [`lead`]'s sets for `hir`, and whether every match of `hir` is exactly that long (so that
/// what follows it in a concatenation starts right after).
fn lead_sets(hir: &Hir) -> (Vec<ByteSet>, bool) {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => (Vec::new(), true),
        HirKind::Literal(lit) => {
            let sets = lit
                .0
                .iter()
                .map(|&b| {
                    let mut set = [0u64; 4];
                    set[usize::from(b >> 6)] |= 1 << (b & 63);
                    set
                })
                .collect();
            (sets, true)
        }
        HirKind::Class(Class::Bytes(class)) => (vec![byte_set(class)], true),
        HirKind::Class(Class::Unicode(_)) => (Vec::new(), false),
        HirKind::Capture(cap) => lead_sets(&cap.sub),
        HirKind::Repetition(rep) => {
            let (sub, fixed) = lead_sets(&rep.sub);
            if !fixed {
                return if rep.min >= 1 {
                    (sub, false)
                } else {
                    (Vec::new(), false)
                };
            }
            if sub.is_empty() {
                return (Vec::new(), true);
            }
            let mut sets = Vec::new();
            let mut copies = 0;
            while copies < rep.min && sets.len() <= MAX_LEAD {
                sets.extend_from_slice(&sub);
                copies += 1;
            }
            let exact = copies == rep.min && rep.max == Some(rep.min) && sets.len() <= MAX_LEAD;
            (sets, exact)
        }
        HirKind::Alternation(subs) => {
            let branches: Vec<(Vec<ByteSet>, bool)> = subs.iter().map(lead_sets).collect();
            let len = branches.iter().map(|(s, _)| s.len()).min().unwrap_or(0);
            let fixed = branches.iter().all(|(s, f)| *f && s.len() == len);
            let mut sets = vec![[0u64; 4]; len];
            for (b, _) in &branches {
                for (set, bs) in sets.iter_mut().zip(b) {
                    for (w, bw) in set.iter_mut().zip(bs) {
                        *w |= bw;
                    }
                }
            }
            (sets, fixed)
        }
        HirKind::Concat(subs) => {
            let mut sets = Vec::new();
            for sub in subs {
                let (next, fixed) = lead_sets(sub);
                sets.extend(next);
                if !fixed || sets.len() > MAX_LEAD {
                    return (sets, false);
                }
            }
            (sets, true)
        }
    }
}

/// Most strings [`literal_strings`] expands an expression into.
const MAX_STRINGS: usize = 64;

/// Every string `hir` matches, when it matches a few fixed strings only.
fn literal_strings(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Literal(lit) => Some(vec![lit.0.to_vec()]),
        HirKind::Capture(cap) => literal_strings(&cap.sub),
        HirKind::Class(Class::Bytes(class)) => {
            let mut out = Vec::new();
            for r in class.ranges() {
                for b in r.start()..=r.end() {
                    out.push(vec![b]);
                    if out.len() > MAX_STRINGS {
                        return None;
                    }
                }
            }
            Some(out)
        }
        HirKind::Alternation(subs) => {
            let mut out = Vec::new();
            for sub in subs {
                out.extend(literal_strings(sub)?);
                if out.len() > MAX_STRINGS {
                    return None;
                }
            }
            Some(out)
        }
        HirKind::Concat(subs) => {
            let mut out = vec![Vec::new()];
            for sub in subs {
                let next = literal_strings(sub)?;
                let mut joined = Vec::new();
                for head in &out {
                    for tail in &next {
                        joined.push([head.as_slice(), tail].concat());
                        if joined.len() > MAX_STRINGS {
                            return None;
                        }
                    }
                }
                out = joined;
            }
            Some(out)
        }
        _ => None,
    }
}

/// Every byte a match of `hir` can hold (look-arounds hold none).
fn bytes_of(hir: &Hir) -> Option<ByteSet> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some([0; 4]),
        HirKind::Literal(lit) => {
            let mut set = [0u64; 4];
            for &b in lit.0.iter() {
                set[usize::from(b >> 6)] |= 1 << (b & 63);
            }
            Some(set)
        }
        HirKind::Class(Class::Bytes(class)) => Some(byte_set(class)),
        HirKind::Class(Class::Unicode(_)) => None,
        HirKind::Capture(cap) => bytes_of(&cap.sub),
        HirKind::Repetition(rep) => bytes_of(&rep.sub),
        HirKind::Alternation(subs) | HirKind::Concat(subs) => {
            let mut set = [0u64; 4];
            for sub in subs {
                for (w, b) in set.iter_mut().zip(bytes_of(sub)?) {
                    *w |= b;
                }
            }
            Some(set)
        }
    }
}

/// Whether `hir` is a line start that [`line_led`] knows: an alternation of the text's start
/// (`^`), a line feed or carriage return, and the two bytes `\n` (a line break escaped in a
/// JSON or shell string), each of them optional but at least one there.
fn is_line_start(hir: &Hir) -> bool {
    let token = |h: &Hir| match h.kind() {
        HirKind::Look(Look::Start) => true,
        HirKind::Literal(lit) => matches!(&lit.0[..], b"\\n" | b"\n" | b"\r"),
        HirKind::Class(Class::Bytes(class)) => class
            .ranges()
            .iter()
            .all(|r| (r.start()..=r.end()).all(|b| b == b'\n' || b == b'\r')),
        _ => false,
    };
    match hir.kind() {
        HirKind::Alternation(subs) => subs.iter().all(token),
        _ => token(hir),
    }
}

/// For a regex whose every match begins at a line start ([`is_line_start`]), then holds only
/// bytes of a set `body` up to one of `keywords` (the rule's keyword alternation, matched as
/// the prefilter routes its hits: exactly when `exact`, else in any ASCII case), `body`; `None`
/// for any other regex. `body` never holds a line feed, a carriage return or a backslash, so
/// that the bytes before a hit tell where the one match that has its keyword there can begin.
pub(crate) fn line_led(hir: &Hir, keywords: &[String], exact: bool) -> Option<ByteSet> {
    let HirKind::Concat(subs) = hir.kind() else {
        return None;
    };
    let (first, rest) = subs.split_first()?;
    if !is_line_start(first) {
        return None;
    }
    let keyed = |s: &[u8]| {
        keywords.iter().any(|k| {
            let k = k.as_bytes();
            !k.is_empty()
                && s.len() >= k.len()
                && if exact {
                    s.starts_with(k)
                } else {
                    s[..k.len()].eq_ignore_ascii_case(k)
                }
        })
    };
    // Whether every match of the elements from `i` on begins with a keyword: the parser
    // flattens concatenations, so a keyword in any case is a run of one-byte classes.
    let keyword_at = |i: usize| {
        (i + 1..=rest.len())
            .map_while(|j| literal_strings(&Hir::concat(rest[i..j].to_vec())))
            .any(|strings| !strings.is_empty() && strings.iter().all(|s| keyed(s)))
    };
    let mut body = [0u64; 4];
    for (i, sub) in rest.iter().enumerate() {
        if keyword_at(i) {
            let stops = [b'\n', b'\r', b'\\'];
            return (!stops.iter().any(|&b| holds(&body, b))).then_some(body);
        }
        for (w, b) in body.iter_mut().zip(bytes_of(sub)?) {
            *w |= b;
        }
    }
    None
}

/// Splits the branches (sequences, in priority order) into first byte and rest, expanding
/// a leading optional element or alternation into the branches it stands for (in priority
/// order). `None` when a branch cannot be split (it may match empty, or starts with a
/// look-around, a capture, a longer repetition).
fn heads(seqs: Vec<Vec<Hir>>, out: &mut Vec<Headed>) -> Option<()> {
    for seq in seqs {
        if out.len() > MAX_BRANCHES {
            return None;
        }
        let (first, rest) = seq.split_first()?;
        match first.kind() {
            HirKind::Literal(lit) => {
                let (&b, tail) = lit.0.split_first()?;
                let mut rest_seq = Vec::with_capacity(rest.len() + 1);
                if !tail.is_empty() {
                    rest_seq.push(Hir::literal(tail));
                }
                rest_seq.extend_from_slice(rest);
                let class = ClassBytes::new([ClassBytesRange::new(b, b)]);
                out.push(Headed {
                    set: byte_set(&class),
                    head: Hir::literal([b]),
                    rest: rest_seq,
                });
            }
            HirKind::Class(Class::Bytes(class)) => out.push(Headed {
                set: byte_set(class),
                head: first.clone(),
                rest: rest.to_vec(),
            }),
            HirKind::Concat(subs) => {
                let mut flat = subs.clone();
                flat.extend_from_slice(rest);
                heads(vec![flat], out)?;
            }
            HirKind::Alternation(subs) => {
                let expanded = subs
                    .iter()
                    .map(|sub| {
                        let mut s = vec![sub.clone()];
                        s.extend_from_slice(rest);
                        s
                    })
                    .collect();
                heads(expanded, out)?;
            }
            HirKind::Repetition(rep) if rep.min == 0 && rep.max == Some(1) => {
                let mut once = vec![(*rep.sub).clone()];
                once.extend_from_slice(rest);
                let never = rest.to_vec();
                let expanded = if rep.greedy {
                    vec![once, never]
                } else {
                    vec![never, once]
                };
                heads(expanded, out)?;
            }
            _ => return None,
        }
    }
    Some(())
}

/// The alternation of `seqs` (in priority order) as a trie, or `None` if it cannot be
/// factored (see [`heads`]) or two branches' first bytes overlap without being equal.
fn factor_seqs(seqs: Vec<Vec<Hir>>) -> Option<Hir> {
    let mut split = Vec::new();
    heads(seqs, &mut split)?;
    // Group branches by first-byte set, in order of first appearance.
    let mut groups: Vec<([u64; 4], Hir, Vec<Vec<Hir>>)> = Vec::new();
    for h in split {
        match groups.iter_mut().find(|g| g.0 == h.set) {
            Some(g) => g.2.push(h.rest),
            None => {
                let overlaps = groups
                    .iter()
                    .any(|g| g.0.iter().zip(&h.set).any(|(a, b)| a & b != 0));
                if overlaps {
                    return None;
                }
                groups.push((h.set, h.head, vec![h.rest]));
            }
        }
    }
    let branches = groups
        .into_iter()
        .map(|(_, head, rests)| {
            let tail = if rests.len() == 1 {
                rests.into_iter().next().map(Hir::concat)
            } else {
                let alts: Vec<Hir> = rests.iter().cloned().map(Hir::concat).collect();
                Some(factor_seqs(rests).unwrap_or_else(|| Hir::alternation(alts)))
            };
            Hir::concat([head].into_iter().chain(tail).collect())
        })
        .collect();
    Some(Hir::alternation(branches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_automata::dfa::onepass;
    use regex_automata::nfa::thompson;

    fn hir(pattern: &str) -> Hir {
        regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(pattern)
            .unwrap()
    }

    fn kws(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn keyword_led_needs_a_keyword_at_every_match_start() {
        let h = hir(r"(?i)(?:password|pwd)[ \t]*=(?P<secret>[a-z]+)");
        assert!(keyword_led(&h, &kws(&["password", "pwd"])));
        assert!(keyword_led(&h, &kws(&["pass", "pwd"])));
        assert!(!keyword_led(&h, &kws(&["password"])));
        assert!(keyword_led(
            &hir(r"\bghp_[A-Za-z0-9]{36}\b"),
            &kws(&["ghp_"])
        ));
        assert!(!keyword_led(&hir(r"(?:^|\n)KEY=[a-z]+"), &kws(&["key"])));
        assert!(!keyword_led(&hir(r"[a-z]{3}_key"), &kws(&["_key"])));
        let sep = hir(r"(?i)api[_-]?key=");
        assert!(!keyword_led(&sep, &kws(&["api_key", "api-key"])));
        assert!(keyword_led(&sep, &kws(&["api_key", "api-key", "apikey"])));
        assert!(!keyword_led(&h, &[]));
    }

    fn is_onepass(h: &Hir) -> bool {
        let nfa = thompson::Compiler::new()
            .configure(thompson::Config::new().utf8(false))
            .build_from_hir(h)
            .unwrap();
        onepass::Builder::new().build_from_nfa(nfa).is_ok()
    }

    #[test]
    fn factoring_keyword_alternations_makes_them_one_pass() {
        let h = hir(
            r#"(?i)(?:password|passwd|passphrase|pwd|api[_-]?key|api[_-]?secret)[a-z0-9_.-]{0,12}["']?[ \t]{0,4}(?::=|=>|:|=)[ \t]{0,4}["'](?P<secret>[^"'\s]{6,})["']"#,
        );
        assert!(!is_onepass(&h));
        assert!(is_onepass(&factor(&h)));
        // Overlapping first bytes that are not equal sets are left alone.
        let odd = hir(r"(?:[a-c]x|[b-d]y)z");
        assert_eq!(factor(&odd), odd);
    }

    #[test]
    fn lead_sets_stop_at_the_first_part_of_varying_length() {
        for (pattern, n) in [
            (r"\bpat[A-Za-z0-9]{14}\.[a-f0-9]{64}\b", MAX_LEAD),
            (r"(?i)(?:password|pwd)=x", 3),
            (r"a{2,5}b", 2),
            (r"(?:ab|cd)e", 3),
            (r"(?:ab|c)d", 1),
            (r"x(?:y)*z", 1),
            (r"(?:^|\n)KEY", 0),
            (r"\b(?:AKIA|ABIA)[A-Z2-7]{16}\b", MAX_LEAD),
        ] {
            assert_eq!(lead(&hir(pattern)).len(), n, "{pattern}");
        }
        let l = lead(&hir(r"(?:ab|cd)e"));
        assert!(holds(&l[0], b'a') && holds(&l[0], b'c') && !holds(&l[0], b'b'));
        assert!(holds(&l[2], b'e') && !holds(&l[2], b'E'));
    }

    #[test]
    fn every_rule_example_match_holds_its_rule_lead() {
        let rules = crate::RuleSet::builtin().unwrap();
        let mut checked = 0;
        for rule in rules.rules() {
            let l = lead(&hir(&rule.pattern));
            let re = regex_automata::meta::Regex::builder()
                .syntax(
                    regex_automata::util::syntax::Config::new()
                        .unicode(false)
                        .utf8(false),
                )
                .build(&rule.pattern)
                .unwrap();
            for text in rule.examples.iter().chain(&rule.negative) {
                for m in re.find_iter(text.as_bytes()) {
                    let bytes = &text.as_bytes()[m.range()];
                    assert!(bytes.len() >= l.len(), "{}", rule.id);
                    for (set, &b) in l.iter().zip(bytes) {
                        assert!(holds(set, b), "{}", rule.id);
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 400, "{checked}");
    }

    #[test]
    fn line_led_takes_env_lines_and_nothing_looser() {
        let keys = |k: &[&str]| -> Vec<String> { k.iter().map(|s| s.to_string()).collect() };
        let rules = crate::RuleSet::builtin().unwrap();
        for id in ["generic-secret-env", "generic-password-env"] {
            let rule = rules.get(id).unwrap();
            let body = line_led(&hir(&rule.pattern), &rule.keywords, true).unwrap();
            for b in [b' ', b'\t', b'e', b'x', b'A', b'Z', b'0', b'_', b'.'] {
                assert!(holds(&body, b), "{id}: {}", b as char);
            }
            for b in [b'\n', b'\r', b'\\', b'"', b'=', b'a', b'n'] {
                assert!(!holds(&body, b), "{id}: {}", b as char);
            }
        }
        let k = keys(&["SECRET"]);
        let body = line_led(&hir(r"(?:^|\\n|[\r\n])[a-z ]{0,9}SECRET=(\w+)"), &k, true).unwrap();
        assert!(holds(&body, b'n') && holds(&body, b' ') && !holds(&body, b'S'));
        // The keyword matched in the case the hits are routed in: in any case only when the
        // routes take any case.
        let ci = hir(r"(?:^|\n)[ ]*(?i:secret)=(\w+)");
        assert!(line_led(&ci, &k, true).is_none());
        assert!(line_led(&ci, &keys(&["secret"]), false).is_some());
        for pattern in [
            // A backslash, a line feed or a carriage return before the keyword.
            r"(?:^|\\n|[\r\n])[A-Z\\]{0,9}SECRET=(\w+)",
            r"(?:^|\n)(?:\s)*SECRET=(\w+)",
            r"(?:^|\n)[^=]{0,9}SECRET=(\w+)",
            // No line start first, or not only line starts.
            r"[ \t]*SECRET=(\w+)",
            r"(?:^|\n|;)[ ]*SECRET=(\w+)",
            r"(?:^|\n)?[ ]*SECRET=(\w+)",
            // A keyword that is not the rule's.
            r"(?:^|\n)[ ]*TOKEN=(\w+)",
            r"(?:^|\n)[ ]*SECRE=(\w+)",
        ] {
            assert!(line_led(&hir(pattern), &k, true).is_none(), "{pattern}");
        }
    }
}
