//! A cheap anchored pre-check for keyword-led rules: most keyword hits in code and prose are
//! not assignments (`password 3`, `api_key)`), and turning each down through the meta regex
//! costs a few hundred instructions of set-up. The head of the rule's regex (its leading
//! elements up to the first capture group or unbounded part: the keyword, the name's tail,
//! the assignment operator) is compiled into a small dense DFA and walked first; a hit whose
//! head does not match is turned down there.
use regex_automata::Anchored;
use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::start;
use regex_syntax::hir::{Hir, HirKind};

/// Largest dense DFA a head may build into (bytes); a head beyond it gets no pre-check.
const SIZE_LIMIT: usize = 256 * 1024;

/// The head of a keyword-led regex as a dense DFA, anchored.
pub(crate) struct Head {
    dfa: dense::DFA<Vec<u32>>,
}

impl Head {
    /// The pre-check of `hir` (a regex every match of which begins with one of `keywords`),
    /// or `None` when its head says no more than the keyword hit already does (it does not
    /// need a byte beyond the shortest keyword), or builds too large.
    pub(crate) fn new(hir: &Hir, keywords: &[String]) -> Option<Head> {
        let head = head(hir)?;
        let shortest = keywords.iter().map(String::len).min()?;
        if head.properties().minimum_len()? <= shortest {
            return None;
        }
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .utf8(false)
                    .which_captures(WhichCaptures::None),
            )
            .build_from_hir(&head)
            .ok()?;
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(SIZE_LIMIT))
                    .determinize_size_limit(Some(SIZE_LIMIT)),
            )
            .build_from_nfa(&nfa)
            .ok()?;
        Some(Head { dfa })
    }

    /// Heap bytes held.
    pub(crate) fn memory_usage(&self) -> usize {
        self.dfa.memory_usage()
    }

    /// Whether the head matches at `at` within `data[at..end]` (the byte at `end`, if any, is
    /// look-ahead only). `false` means no match of the whole regex starts at `at` and ends by
    /// `end`; whatever the DFA cannot tell counts as `true`.
    pub(crate) fn passes(&self, data: &[u8], at: usize, end: usize) -> bool {
        let dfa = &self.dfa;
        let behind = at.checked_sub(1).and_then(|i| data.get(i)).copied();
        let config = start::Config::new()
            .anchored(Anchored::Yes)
            .look_behind(behind);
        let Ok(mut sid) = dfa.start_state(&config) else {
            return true;
        };
        for &b in data.get(at..end).unwrap_or(&[]) {
            sid = dfa.next_state(sid, b);
            if dfa.is_special_state(sid) {
                if dfa.is_match_state(sid) || dfa.is_quit_state(sid) {
                    return true;
                }
                if dfa.is_dead_state(sid) {
                    return false;
                }
            }
        }
        sid = match data.get(end) {
            Some(&b) => dfa.next_state(sid, b),
            None => dfa.next_eoi_state(sid),
        };
        dfa.is_match_state(sid) || dfa.is_quit_state(sid)
    }
}

/// The leading elements of `hir`'s top-level concatenation up to the first that holds a
/// capture group or can match unboundedly many bytes.
fn head(hir: &Hir) -> Option<Hir> {
    let HirKind::Concat(subs) = hir.kind() else {
        return None;
    };
    let taken: Vec<Hir> = subs
        .iter()
        .take_while(|sub| !has_capture(sub) && sub.properties().maximum_len().is_some())
        .cloned()
        .collect();
    (!taken.is_empty()).then(|| Hir::concat(taken))
}

fn has_capture(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Capture(_) => true,
        HirKind::Concat(subs) | HirKind::Alternation(subs) => subs.iter().any(has_capture),
        HirKind::Repetition(rep) => has_capture(&rep.sub),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hir(pattern: &str) -> Hir {
        regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(pattern)
            .unwrap()
    }

    fn keywords(k: &[&str]) -> Vec<String> {
        k.iter().map(|k| k.to_string()).collect()
    }

    const PASSWORD: &str = r#"(?i)(?:password|pwd)[a-z0-9_.-]{0,12}["']?[ \t]{0,4}(?::=|=>|:|=)[ \t]{0,4}["'](?P<secret>[^"'\s]{6,})["']"#;

    #[test]
    fn the_head_turns_down_hits_that_are_not_assignments() {
        let head = Head::new(&hir(PASSWORD), &keywords(&["password", "pwd"])).expect("a head");
        let pass = |s: &str| head.passes(s.as_bytes(), 0, s.len());
        assert!(pass(r#"password = "hunter22hunter""#));
        assert!(pass(r#"PWD_file: 'x"#), "the head ends before the secret");
        assert!(pass("password => 'x"));
        assert!(!pass("password =>"), "the head ends with the opening quote");
        assert!(!pass("password 3\"}"));
        assert!(!pass("passwords are hashed"));
        assert!(!pass("pwd)"));
        // The span ends before the opening quote, or right after it: the head matches only
        // in the longer span.
        let s = b"password = \"abcdefgh\"";
        assert!(!head.passes(s, 0, 8));
        assert!(!head.passes(s, 0, 11));
        assert!(head.passes(s, 0, 12));
    }

    #[test]
    fn a_head_that_the_keyword_decides_is_none() {
        // Nothing after the keyword before the capture: the hit already says all.
        let ghp = keywords(&["ghp_"]);
        assert!(Head::new(&hir(r"(?i)\bghp_(?P<secret>[A-Za-z0-9]{36})"), &ghp).is_none());
        // Optional bytes only after the keyword: every hit passes.
        let token = keywords(&["token"]);
        assert!(Head::new(&hir(r"(?i)token[a-z]{0,3}(?P<secret>[0-9]{8})"), &token).is_none());
        // Unbounded right after the keyword.
        assert!(Head::new(&hir(r"(?i)token.*="), &token).is_none());
        // Not a concatenation.
        assert!(Head::new(&hir(r"(?i)token|secret"), &token).is_none());
    }

    #[test]
    fn look_behind_is_the_byte_before_the_hit() {
        let head = Head::new(&hir(r"\bkey[ \t]{0,4}="), &keywords(&["key"])).expect("a head");
        let s = b"xkey = 1; key = 2";
        assert!(!head.passes(s, 1, s.len()), "no word boundary before `key`");
        assert!(head.passes(s, 10, s.len()));
    }
}
