//! Every match of a built-in rule holds one of its keywords: the prefilter only opens a rule's
//! windows at its keyword hits, so a match without one is a secret never found (a keyword
//! `basic ` before a regex that allows a tab after `basic` was one). Checked exhaustively on
//! automata: the rule's regex as an anchored DFA walked in step with a keyword automaton,
//! breadth first over every byte, looking for a match state reached before any keyword.
use std::collections::{HashSet, VecDeque};

use aho_corasick::automaton::Automaton as _;
use regex_automata::dfa::{Automaton as _, StartKind, dense};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;

use gate_scan::{Rule, RuleSet};

/// Largest DFA a rule's regex is determinized into here; larger ones are skipped (and counted).
const DFA_LIMIT: usize = 16 << 20;
/// Most state pairs one rule's search visits before it is given up (and counted).
const PAIR_LIMIT: usize = 2_000_000;

/// A regex DFA state and a keyword automaton state, walked together.
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

enum Outcome {
    Covered,
    /// A matching string with no keyword in it.
    Uncovered(Vec<u8>),
    TooLarge,
}

fn check(rule: &Rule) -> Outcome {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(&rule.pattern)
        .expect("built-in patterns parse");
    let Ok(nfa) = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .utf8(false)
                .which_captures(WhichCaptures::None),
        )
        .build_from_hir(&hir)
    else {
        return Outcome::TooLarge;
    };
    let Ok(dfa) = dense::Builder::new()
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .dfa_size_limit(Some(DFA_LIMIT))
                .determinize_size_limit(Some(DFA_LIMIT)),
        )
        .build_from_nfa(&nfa)
    else {
        return Outcome::TooLarge;
    };
    let keywords = aho_corasick::dfa::DFA::builder()
        .ascii_case_insensitive(!rule.case_sensitive_keywords)
        .match_kind(aho_corasick::MatchKind::Standard)
        .build(&rule.keywords)
        .expect("keywords build");
    let k0 = keywords
        .start_state(aho_corasick::Anchored::No)
        .expect("unanchored start");
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
            return Outcome::TooLarge;
        }
        let (a, k) = nodes[at].pair;
        // The end of the input right here: a match without a keyword?
        if dfa.is_match_state(dfa.next_eoi_state(a)) {
            return Outcome::Uncovered(path(&nodes, at));
        }
        for b in 0..=255u8 {
            let a2 = dfa.next_state(a, b);
            if dfa.is_dead_state(a2) {
                continue;
            }
            // Match states come one byte late: the match ended before `b`, with no keyword
            // seen (pairs with one are never queued).
            if dfa.is_match_state(a2) {
                return Outcome::Uncovered(path(&nodes, at));
            }
            let k2 = keywords.next_state(aho_corasick::Anchored::No, k, b);
            if keywords.is_match(k2) || !seen.insert((a2, k2)) {
                continue;
            }
            nodes.push(Node {
                pair: (a2, k2),
                from: Some((at, b)),
            });
            queue.push_back(nodes.len() - 1);
        }
    }
    Outcome::Covered
}

#[test]
fn every_match_of_every_builtin_rule_holds_one_of_its_keywords() {
    let rules = RuleSet::builtin().unwrap();
    let mut uncovered = Vec::new();
    let mut too_large = Vec::new();
    let mut checked = 0;
    for rule in rules.iter().filter(|r| !r.keywords.is_empty()) {
        match check(rule) {
            Outcome::Covered => checked += 1,
            Outcome::Uncovered(s) => uncovered.push(format!(
                "{} (keywords {:?}): {:?}",
                rule.id,
                rule.keywords,
                String::from_utf8_lossy(&s)
            )),
            Outcome::TooLarge => too_large.push(rule.id.clone()),
        }
    }
    assert!(
        uncovered.is_empty(),
        "{} rules match strings without any of their keywords:\n{}",
        uncovered.len(),
        uncovered.join("\n")
    );
    // The check must cover the catalog, not skip it.
    assert!(
        checked >= rules.len() * 9 / 10,
        "only {checked} of {} rules checked; too large: {too_large:?}",
        rules.len()
    );
}
