//! Every match of a built-in rule holds one of its keywords: the prefilter only opens a rule's
//! windows at its keyword hits, so a match without one is a secret never found (a keyword
//! `basic ` before a regex that allows a tab after `basic` was one). Decided exactly, on
//! automata, by [`RuleSet::check_keywords`].
use gate_scan::{Coverage, RuleSet, keyword_coverage};

#[test]
fn every_match_of_every_builtin_rule_holds_one_of_its_keywords() {
    let rules = RuleSet::builtin().unwrap();
    let (gaps, unchecked): (Vec<_>, Vec<_>) = rules
        .check_keywords()
        .into_iter()
        .partition(|g| g.example.is_some());
    let gaps: Vec<String> = gaps.iter().map(|g| g.to_string()).collect();
    assert!(
        gaps.is_empty(),
        "{} rules match strings without any of their keywords:\n{}",
        gaps.len(),
        gaps.join("\n")
    );
    // The check must cover the catalog, not give up on it.
    assert!(
        unchecked.len() <= rules.len() / 10,
        "{} of {} rules too large to check: {:?}",
        unchecked.len(),
        rules.len(),
        unchecked.iter().map(|g| &g.rule_id).collect::<Vec<_>>()
    );
}

/// Rules that declare no keywords (secretgate's `signatures.yaml` has none) get keywords
/// derived from their patterns; those must cover every match too. Checked on the catalog's
/// patterns with their keywords taken away.
#[test]
fn keywords_derived_from_any_builtin_pattern_cover_its_matches() {
    let mut derived = 0;
    for rule in RuleSet::builtin().unwrap().iter() {
        let mut bare = rule.clone();
        bare.keywords.clear();
        match keyword_coverage(&bare) {
            Coverage::Gap(s) => panic!(
                "{}: derived keywords miss {:?}",
                rule.id,
                String::from_utf8_lossy(&s)
            ),
            Coverage::Covered => derived += 1,
            Coverage::Everywhere | Coverage::Unchecked => {}
        }
    }
    // Most built-in patterns (294 of 313) begin or end with literals the derivation finds.
    assert!(derived >= 250, "only {derived} rules got derived keywords");
}
