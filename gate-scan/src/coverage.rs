//! Whether a rule's keywords cover its regex: the prefilter confirms a rule only near its
//! keyword hits, so a match holding none of its keywords is a secret gate never looks for (a
//! keyword `basic ` before a regex that allows a tab after `basic` was one). Decided exactly on
//! automata: the regex as an anchored dense DFA walked in step with a DFA of the keywords,
//! breadth first, until a match state is reached with no keyword seen (a gap, with the shortest
//! such string) or every reachable pair is seen (covered). A regex too large for that is
//! decided, soundly, on a simpler language that holds its own.
use std::collections::{HashSet, VecDeque};

use aho_corasick::automaton::Automaton as _;
use regex_automata::dfa::Automaton as _;
use regex_automata::meta;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;

use regex_syntax::hir::{Hir, HirKind, Look, Repetition};

use crate::engine::{anchored_dfa, derive_keywords, parse};
use crate::rules::Rule;

/// Largest DFA a rule's regex is determinized into for the check; a larger one is decided on
/// a larger language (see [`keyword_coverage`]).
const DFA_LIMIT: usize = 16 << 20;
/// Most state pairs one rule's search visits before it gives up (bounds the time: each pair
/// steps once per byte class).
const PAIR_LIMIT: usize = 1_000_000;

/// What [`keyword_coverage`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// Every match holds one of the rule's keywords (or of the keywords derived from its
    /// pattern when it declares none).
    Covered,
    /// The rule has no keywords and none can be derived: it is confirmed over every input.
    Everywhere,
    /// A string the regex matches that holds no keyword: the shortest one, as bytes.
    Gap(Vec<u8>),
    /// The regex is too large to decide this for (its DFA or the search exceeded a limit).
    Unchecked,
}

/// A regex DFA state and a keyword DFA state, walked together.
type Pair = (StateID, aho_corasick::automaton::StateID);

/// A pair the search reached, and the node and byte it was first reached from.
struct Node {
    pair: Pair,
    from: Option<(usize, u8)>,
}

/// The bytes that lead from a start to node `at`.
fn path(nodes: &[Node], mut at: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some((from, b)) = nodes[at].from {
        bytes.push(b);
        at = from;
    }
    bytes.reverse();
    bytes
}

/// Decides whether every match of `rule`'s regex holds one of the keywords the prefilter
/// would use for it. A pattern that does not compile is [`Coverage::Unchecked`] (loading the
/// rule reports that error).
///
/// A regex whose DFA is too large (counted repetitions such as `[\w.-]{0,50}` multiply its
/// states) is decided on a larger language: every bounded repetition made unbounded. Covered
/// there means covered here; a gap found there counts only if the original regex matches it.
pub fn keyword_coverage(rule: &Rule) -> Coverage {
    let (keywords, case_sensitive) = if rule.keywords.is_empty() {
        (derive_keywords(&rule.pattern), false)
    } else {
        (rule.keywords.clone(), rule.case_sensitive_keywords)
    };
    if keywords.is_empty() {
        return Coverage::Everywhere;
    }
    coverage_by(&rule.pattern, &keywords, case_sensitive)
}

/// [`keyword_coverage`] of `pattern` under `keywords` (not empty).
pub(crate) fn coverage_by(pattern: &str, keywords: &[String], case_sensitive: bool) -> Coverage {
    let Ok(hir) = parse(pattern) else {
        return Coverage::Unchecked;
    };
    match decide(&hir, keywords, case_sensitive) {
        Coverage::Unchecked => {}
        decided => return decided,
    }
    match decide(&unbounded(&hir), keywords, case_sensitive) {
        Coverage::Gap(example) if whole_match(&hir, &example) => Coverage::Gap(example),
        Coverage::Covered => Coverage::Covered,
        _ => Coverage::Unchecked,
    }
}

/// `hir` with every repetition of more than one optional copy made unbounded (`{0,50}` becomes
/// `*`, `{10,150}` becomes `{10,}`): a language that holds `hir`'s, with far smaller DFAs.
fn unbounded(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            min: rep.min,
            max: rep.max.filter(|&max| max <= rep.min + 1),
            greedy: rep.greedy,
            sub: Box::new(unbounded(&rep.sub)),
        }),
        HirKind::Capture(cap) => unbounded(&cap.sub),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(unbounded).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(unbounded).collect()),
        _ => hir.clone(),
    }
}

/// Whether `hir` matches all of `bytes`.
fn whole_match(hir: &Hir, bytes: &[u8]) -> bool {
    let whole = Hir::concat(vec![
        Hir::look(Look::Start),
        hir.clone(),
        Hir::look(Look::End),
    ]);
    meta::Regex::builder()
        .configure(meta::Config::new().utf8_empty(false))
        .build_from_hir(&whole)
        .is_ok_and(|re| re.is_match(regex_automata::Input::new(bytes)))
}

/// The walk itself, on one regex: [`Coverage::Unchecked`] when its DFA or the search exceeds a
/// limit.
fn decide(hir: &Hir, keywords: &[String], case_sensitive: bool) -> Coverage {
    let Some(dfa) = anchored_dfa(hir, DFA_LIMIT) else {
        return Coverage::Unchecked;
    };
    let Ok(kw) = aho_corasick::dfa::DFA::builder()
        .ascii_case_insensitive(!case_sensitive)
        .match_kind(aho_corasick::MatchKind::Standard)
        .build(keywords)
    else {
        return Coverage::Unchecked;
    };
    let Ok(k0) = kw.start_state(aho_corasick::Anchored::No) else {
        return Coverage::Unchecked;
    };
    // Bytes in the same regex byte class that are both absent from every keyword (in any case
    // the keyword automaton matches) step both automata alike: one representative each.
    let mut in_keyword = [false; 256];
    for b in keywords.iter().flat_map(|k| k.bytes()) {
        in_keyword[usize::from(b)] = true;
        if !case_sensitive {
            in_keyword[usize::from(b.to_ascii_lowercase())] = true;
            in_keyword[usize::from(b.to_ascii_uppercase())] = true;
        }
    }
    let classes = dfa.byte_classes();
    let mut seen_class = HashSet::new();
    let bytes: Vec<u8> = (0..=255u8)
        .filter(|&b| in_keyword[usize::from(b)] || seen_class.insert(classes.get(b)))
        .collect();
    // A match may start after any byte: one start state per kind of byte before it. Every
    // pair reached is a node, with the node and byte it was reached from; the queue holds
    // node indices.
    let mut nodes: Vec<Node> = Vec::new();
    let mut seen: HashSet<Pair> = HashSet::new();
    for behind in [None, Some(b'\n'), Some(b' '), Some(b'a')] {
        let config = start::Config::new()
            .anchored(regex_automata::Anchored::Yes)
            .look_behind(behind);
        let Ok(a0) = dfa.start_state(&config) else {
            continue;
        };
        if seen.insert((a0, k0)) {
            nodes.push(Node {
                pair: (a0, k0),
                from: None,
            });
        }
    }
    let mut queue: VecDeque<usize> = (0..nodes.len()).collect();
    while let Some(at) = queue.pop_front() {
        if nodes.len() > PAIR_LIMIT {
            return Coverage::Unchecked;
        }
        let (a, k) = nodes[at].pair;
        // The end of the input right here: a match without a keyword?
        if dfa.is_match_state(dfa.next_eoi_state(a)) {
            return Coverage::Gap(path(&nodes, at));
        }
        for &b in &bytes {
            let a2 = dfa.next_state(a, b);
            if dfa.is_dead_state(a2) {
                continue;
            }
            // Match states come one byte late: the match ended before `b`, with no keyword
            // seen (pairs with one are never queued).
            if dfa.is_match_state(a2) {
                return Coverage::Gap(path(&nodes, at));
            }
            let k2 = kw.next_state(aho_corasick::Anchored::No, k, b);
            if kw.is_match(k2) || !seen.insert((a2, k2)) {
                continue;
            }
            nodes.push(Node {
                pair: (a2, k2),
                from: Some((at, b)),
            });
            queue.push_back(nodes.len() - 1);
        }
    }
    Coverage::Covered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;

    fn rule(keywords: &[&str], pattern: &str) -> Rule {
        let yaml = format!(
            "rules:\n  - id: acme\n    service: Acme\n    keywords: {keywords:?}\n    pattern: '{pattern}'\n"
        );
        RuleSet::from_yaml(&yaml, "acme.yaml").unwrap().rules()[0].clone()
    }

    #[test]
    fn a_keyword_every_match_holds_covers() {
        assert_eq!(
            keyword_coverage(&rule(&["acme_"], r"\bacme_[a-z0-9]{24}\b")),
            Coverage::Covered
        );
        // Keywords match in any ASCII case, so `(?i)` costs nothing.
        assert_eq!(
            keyword_coverage(&rule(&["acme_"], r"(?i)acme_[a-z0-9]{24}")),
            Coverage::Covered
        );
        // One keyword per branch.
        assert_eq!(
            keyword_coverage(&rule(&["acme_", "acmt_"], r"acm[et]_[a-z0-9]{24}")),
            Coverage::Covered
        );
    }

    #[test]
    fn a_separator_the_keyword_leaves_out_is_a_gap_with_the_shortest_example() {
        assert_eq!(
            keyword_coverage(&rule(&["basic "], r"(?i)basic[ \t]+[a-z0-9]{8}")),
            Coverage::Gap(b"BASIC\t00000000".to_vec())
        );
        assert_eq!(
            keyword_coverage(&rule(&["acme_"], r"acm[et]_[a-z0-9]{4}")),
            Coverage::Gap(b"acmt_0000".to_vec())
        );
        // A keyword the match only sits near is not enough.
        assert_eq!(
            keyword_coverage(&rule(&["acme"], r"[a-f0-9]{8}")),
            Coverage::Gap(b"00000000".to_vec())
        );
    }

    /// A generic assignment rule of the shape gitleaks configs use (a counted run before a
    /// keyword alternation, another after): its exact DFA exceeds the limit.
    const GENERIC: &str = r#"(?i)[a-z0-9_.-]{0,40}?(?:access|auth|api|credential|creds|key|passw(?:or)?d|secret|token)[ \t\w.-]{0,16}[\s'"]{0,3}(?:=|:=|:|=>)[\s'"=]{0,4}(?P<secret>[\w.=-]{12,120})(?:[\s'";]|$)"#;

    #[test]
    fn a_regex_too_large_for_its_dfa_is_decided_with_its_repetitions_unbounded() {
        let keywords = [
            "access",
            "api",
            "auth",
            "key",
            "credential",
            "creds",
            "passwd",
            "password",
            "secret",
            "token",
        ];
        let mut r = rule(&keywords, "x");
        r.pattern = GENERIC.into();
        let hir = parse(GENERIC).unwrap();
        let kws: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
        assert_eq!(decide(&hir, &kws, false), Coverage::Unchecked);
        assert_eq!(keyword_coverage(&r), Coverage::Covered);
        // Without `creds`, the gap found on the larger language is one the rule matches.
        r.keywords.retain(|k| k != "creds");
        let Coverage::Gap(example) = keyword_coverage(&r) else {
            panic!("no gap found")
        };
        assert!(whole_match(&hir, &example));
        assert!(
            String::from_utf8_lossy(&example)
                .to_ascii_lowercase()
                .contains("creds")
        );
    }

    #[test]
    fn a_gap_counts_only_if_the_original_regex_matches_all_of_it() {
        // `ab{2,3}` made unbounded also matches `abbbb`; the original does not.
        let hir = parse("ab{2,3}").unwrap();
        assert!(whole_match(&hir, b"abbb"));
        assert!(!whole_match(&hir, b"abbbb"));
        assert!(!whole_match(&hir, b"xabbb"));
    }

    #[test]
    fn case_sensitive_keywords_miss_other_cases() {
        let mut r = rule(&["PASSWORD"], r"(?i)password=[a-z]{4}");
        r.case_sensitive_keywords = true;
        assert_eq!(
            keyword_coverage(&r),
            Coverage::Gap(b"PASSWORd=AAAA".to_vec())
        );
        r.pattern = "PASSWORD=[a-z]{4}".into();
        assert_eq!(keyword_coverage(&r), Coverage::Covered);
    }

    #[test]
    fn derived_keywords_are_checked_and_keywordless_rules_run_everywhere() {
        assert_eq!(
            keyword_coverage(&rule(&[], r"myco_(live|test)_[a-z]{8}")),
            Coverage::Covered
        );
        assert_eq!(
            keyword_coverage(&rule(&[], r"[a-z]{8}x")),
            Coverage::Everywhere
        );
    }
}
