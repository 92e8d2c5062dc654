//! The compiled database behind [`Scanner`]: an Aho-Corasick keyword prefilter picks the rules
//! worth confirming and the byte windows around each keyword hit; the rule's regex (a lazy DFA
//! over bytes, ASCII-only classes and word boundaries) then runs only inside those windows,
//! anchored at the hits when every match of the regex begins with a keyword (a fully built
//! DFA, walked by hand from the state after the keyword).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use regex_automata::dfa::{StartKind, dense};
use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::primitives::{NonMaxUsize, StateID};
use regex_automata::{Anchored, Input};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind};

use crate::anchor::{ByteSet, factor, holds, keyword_led, lead, line_led};
use crate::lanes::Prefilter;

use crate::entropy::shannon_entropy;
use crate::error::ScanError;
use crate::finding::{Confidence, Finding, Source, merge};
use crate::known_values::KnownValues;
use crate::rules::{Rule, RuleSet};
use crate::stream::StreamScanner;

/// Window reach used for a rule whose regex has no upper bound on its match length.
pub(crate) const UNBOUNDED_REACH: usize = 4096;
/// Largest window reach any rule may ask for (a long PEM private key fits).
const MAX_REACH: usize = 16 * 1024;

/// What a [`Scanner`] is built from.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    pub rules: RuleSet,
    pub known_values: KnownValues,
    /// Turn on the entropy detector (high-entropy values assigned to secret-sounding names).
    pub entropy: bool,
}

impl ScanConfig {
    /// The built-in rules, no known values, entropy off (the proxy's default).
    pub fn builtin() -> Result<ScanConfig, ScanError> {
        Ok(ScanConfig {
            rules: RuleSet::builtin()?,
            ..ScanConfig::without_rules()
        })
    }

    /// No rules, no known values, entropy off.
    pub fn without_rules() -> ScanConfig {
        ScanConfig {
            rules: RuleSet::empty(),
            known_values: KnownValues::new(),
            entropy: false,
        }
    }
}

pub(crate) struct CompiledRegex {
    pub(crate) confirm: Confirm,
    /// Capture group index that holds the secret.
    pub(crate) group: Option<usize>,
    /// Window reach: the longest match this regex can produce (capped).
    pub(crate) reach: usize,
    /// Anchored confirmation: the bytes every match holds at its first positions (checked
    /// before the search; empty when not anchored).
    lead: Vec<ByteSet>,
    /// Anchored confirmation: the regex as a fully built DFA (no captures), made on the
    /// rule's first attempt (most rules never get one) from `dense_from`; `None` when too large.
    dense: OnceLock<Option<Dense>>,
    /// What `dense` is made from: the (factored) regex and the rule's keywords, in the order
    /// of [`Route::keyword`] (anchored rules only).
    dense_from: Option<(Hir, Vec<String>)>,
}

/// How a rule's regex is confirmed in the windows its keyword hits open.
pub(crate) enum Confirm {
    /// Unanchored search over each merged window (lazy DFA; then a capture search on each
    /// match for the secret group).
    Window(Regex),
    /// Every match begins with a keyword: an anchored search at each keyword hit in the
    /// window (most fail within a few bytes).
    Anchored(Regex),
    /// Every match begins at a line start and holds only bytes of `body` up to its keyword
    /// ([`line_led`]): an anchored search where the line holding a hit begins, if only
    /// `body` bytes lie between the two (most hits, in code or prose, have none such).
    LineLed { regex: Regex, body: ByteSet },
}

pub(crate) fn parse(pattern: &str) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| regex_error(&e.to_string()))
}

/// Checks a parsed rule pattern: not matching the empty string, the secret group existing.
/// Returns the window reach.
fn check_hir(
    hir: &Hir,
    secret_group: Option<usize>,
    max_len: Option<usize>,
) -> Result<usize, String> {
    let props = hir.properties();
    if props.minimum_len() == Some(0) {
        return Err("pattern can match the empty string".to_string());
    }
    if let Some(g) = secret_group
        && g > props.explicit_captures_len()
    {
        return Err(format!("secret group {g} does not exist in the pattern"));
    }
    let reach = match (max_len, props.maximum_len()) {
        (Some(n), _) => n,
        (None, Some(n)) => n,
        (None, None) => UNBOUNDED_REACH,
    };
    Ok(reach.clamp(1, MAX_REACH))
}

/// Checks a rule pattern without building its automata (cheap, for loading rule files):
/// syntax, not matching the empty string, the secret group existing. Returns the window reach.
pub(crate) fn check_pattern(
    pattern: &str,
    secret_group: Option<usize>,
    max_len: Option<usize>,
) -> Result<usize, String> {
    check_hir(&parse(pattern)?, secret_group, max_len)
}

/// The index of the capture group named `name`, if any.
fn named_group(hir: &Hir, name: &str) -> Option<usize> {
    if let HirKind::Capture(cap) = hir.kind()
        && cap.name.as_deref() == Some(name)
    {
        return usize::try_from(cap.index).ok();
    }
    hir.kind()
        .subs()
        .iter()
        .find_map(|sub| named_group(sub, name))
}

/// Compiles a rule pattern for the hot path: bytes, no Unicode classes or word boundaries.
/// `keywords`: the rule's keywords when every occurrence of one (in any ASCII case) is a
/// prefilter hit; a regex whose every match begins with one of them is then confirmed by
/// anchored searches at the hits. `routed`: the rule's keywords and whether hits are routed to
/// it in their exact case; a regex whose every match begins at a line start with a keyword not
/// far after ([`line_led`]) is then confirmed by anchored searches where the hits' lines begin.
/// `optimized`: keyword alternations are factored into tries
/// (same matches; lets the capture search run as a one-pass DFA) and a regex without a secret
/// group keeps no capture states; `false` builds the regex as the first engine did (the
/// reference of the differential tests).
pub(crate) fn compile_regex(
    pattern: &str,
    secret_group: Option<usize>,
    max_len: Option<usize>,
    keywords: Option<&[String]>,
    routed: Option<(&[String], bool)>,
    optimized: bool,
) -> Result<CompiledRegex, String> {
    let hir = parse(pattern)?;
    let reach = check_hir(&hir, secret_group, max_len)?;
    let group = named_group(&hir, "secret").or(secret_group);
    let anchored = keywords.is_some_and(|k| keyword_led(&hir, k));
    let line_body = match routed {
        Some((k, exact)) if !anchored => line_led(&hir, k, exact),
        _ => None,
    };
    let lead = match keywords {
        Some(k) if anchored => useful_lead(lead(&hir), k),
        _ => Vec::new(),
    };
    let hir = if optimized { factor(&hir) } else { hir };
    let regex = Regex::builder()
        .configure(
            meta::Config::new()
                .utf8_empty(false)
                .which_captures(if group.is_none() && optimized {
                    WhichCaptures::Implicit
                } else {
                    WhichCaptures::All
                })
                .hybrid_cache_capacity(4 * 1024 * 1024),
        )
        .build_from_hir(&hir)
        .map_err(|e| regex_error(&e.to_string()))?;
    Ok(CompiledRegex {
        confirm: match line_body {
            _ if anchored => Confirm::Anchored(regex),
            Some(body) => Confirm::LineLed { regex, body },
            None => Confirm::Window(regex),
        },
        group,
        reach,
        lead,
        dense: OnceLock::new(),
        dense_from: keywords.filter(|_| anchored).map(|k| (hir, k.to_vec())),
    })
}

impl CompiledRegex {
    /// The fully built DFA of an anchored rule, made on first use; `None` when the rule is
    /// not anchored or its DFA would be too large.
    fn dense(&self) -> Option<&Dense> {
        self.dense
            .get_or_init(|| {
                let (hir, keywords) = self.dense_from.as_ref()?;
                Dense::new(hir, keywords)
            })
            .as_ref()
    }
}

/// `hir` as an anchored, leftmost-first dense DFA over bytes, without captures or accelerated
/// states; `None` above `limit` bytes (or while determinizing). Anchored confirmation walks
/// it; the keyword coverage check walks it in step with the keywords' automaton.
pub(crate) fn anchored_dfa(hir: &Hir, limit: usize) -> Option<dense::DFA<Vec<u32>>> {
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .utf8(false)
                .which_captures(WhichCaptures::None),
        )
        .build_from_hir(hir)
        .ok()?;
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .match_kind(regex_automata::MatchKind::LeftmostFirst)
                .accelerate(false)
                .dfa_size_limit(Some(limit))
                .determinize_size_limit(Some(limit)),
        )
        .build_from_nfa(&nfa)
        .ok()
}

/// Largest fully built DFA an anchored rule gets (bytes); above, its attempts use the lazy DFA.
const DENSE_LIMIT: usize = 512 * 1024;

/// An anchored rule's regex as a fully built DFA (no captures), laid out as a table to walk by
/// hand: an attempt is a walk of it, without the lazy DFA's cache, the meta regex's set-up or
/// a start-state look-up, and it begins after the keyword that the hit already matched.
pub(crate) struct Dense {
    /// `table[id + class]` is the next state's id (its number times the stride). The dead
    /// state is 0 and stays 0; match states (a match ended before the byte just read) are the
    /// ids from `first_match` on.
    table: Vec<u32>,
    first_match: u32,
    /// The DFA's byte classes, and the class of the end of the input.
    classes: [u8; 256],
    eoi: u8,
    /// 0 for a word byte, 1 for any other: which start state an attempt after it takes.
    kind: [u8; 256],
    /// The anchored start states after a word byte, after any other byte, and at the input's
    /// start (a regex whose start depends on a line terminator before it gets no [`Dense`]).
    start: [u32; 3],
    /// Per keyword of the rule ([`Route::keyword`]): how many bytes an attempt at its hit
    /// skips, and the states after them from each start. The keyword's length and the states
    /// after it (the dead state when no match starts with it there), when the walk over it is
    /// the same in any ASCII case and passes no match; else 0 and the start states.
    resume: Vec<(usize, [u32; 3])>,
}

/// A byte `\b` counts as a word byte (ASCII: the patterns are compiled without Unicode).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Dense {
    /// `hir` as an anchored, leftmost-first DFA over bytes, or `None` when it would be larger
    /// than [`DENSE_LIMIT`], cannot be built, or its start state depends on a line terminator
    /// before the match. `keywords`: the rule's, for [`Dense::resume`].
    fn new(hir: &Hir, keywords: &[String]) -> Option<Dense> {
        use regex_automata::dfa::Automaton;
        use regex_automata::util::start;
        // No accelerated states (memchr's set-up would cost more than the steps an attempt
        // this short saves) and no quit bytes: the table keeps match and dead states apart
        // from the others, and no more.
        let dfa = anchored_dfa(hir, DENSE_LIMIT)?;
        let start_after = |byte: Option<u8>| {
            dfa.start_state(
                &start::Config::new()
                    .anchored(Anchored::Yes)
                    .look_behind(byte),
            )
            .ok()
        };
        // One byte of each kind the start state can depend on: a word byte, a non-word byte,
        // none (the input's start), a line feed and a carriage return.
        let start = [
            start_after(Some(b'a'))?,
            start_after(Some(b' '))?,
            start_after(None)?,
        ];
        if [Some(b'\n'), Some(b'\r')]
            .into_iter()
            .any(|b| start_after(b) != Some(start[1]))
        {
            return None;
        }
        // A hit matched the keyword in some ASCII case. When, at each state on the way, a
        // letter's two cases lead to the same state, every case leads to the same states. The
        // walk may end in the dead state (no match can start there: the attempt ends at once),
        // but not pass a match (one ending inside the keyword).
        let resume: Vec<Option<(usize, [StateID; 3])>> = keywords
            .iter()
            .map(|k| {
                let after = start.map(|s| {
                    k.bytes().try_fold(s, |sid, b| {
                        let next = dfa.next_state(sid, b.to_ascii_lowercase());
                        let same = dfa.next_state(sid, b.to_ascii_uppercase()) == next;
                        let plain = !dfa.is_special_state(next) || dfa.is_dead_state(next);
                        (same && plain).then_some(next)
                    })
                });
                Some((k.len(), [after[0]?, after[1]?, after[2]?]))
            })
            .collect();
        // The table: every state reachable from the starts, breadth first; then numbered with
        // the dead state 0, the other states next and the match states last, so that one
        // compare tells the walk whether a state is either.
        let byte_classes = dfa.byte_classes();
        let units: Vec<_> = byte_classes.representatives(..).collect();
        let next_on = |sid: StateID, unit: regex_automata::util::alphabet::Unit| match unit.as_u8()
        {
            Some(b) => dfa.next_state(sid, b),
            None => dfa.next_eoi_state(sid),
        };
        let stride = byte_classes.alphabet_len();
        let mut seen: std::collections::HashSet<StateID> = Default::default();
        let mut order: Vec<StateID> = start.to_vec();
        order.retain(|&s| !dfa.is_dead_state(s) && seen.insert(s));
        let mut i = 0;
        while let Some(&sid) = order.get(i) {
            // Match and dead states are the only special states this walk knows.
            if dfa.is_special_state(sid) && !dfa.is_match_state(sid) {
                return None;
            }
            for &unit in &units {
                let next = next_on(sid, unit);
                if !dfa.is_dead_state(next) && seen.insert(next) {
                    order.push(next);
                }
            }
            i += 1;
        }
        order.sort_by_key(|&s| dfa.is_match_state(s));
        let ids: std::collections::HashMap<StateID, u32> = order
            .iter()
            .enumerate()
            .map(|(i, &s)| Some((s, u32::try_from((i + 1) * stride).ok()?)))
            .collect::<Option<_>>()?;
        let id = |s: StateID| ids.get(&s).copied().unwrap_or(0);
        let plain = order.iter().filter(|&&s| !dfa.is_match_state(s)).count();
        let first_match = u32::try_from((plain + 1) * stride).ok()?;
        let mut rows: Vec<u32> = vec![0; (order.len() + 1) * stride];
        for (row, &sid) in rows.chunks_exact_mut(stride).skip(1).zip(&order) {
            for &unit in &units {
                *row.get_mut(byte_classes.get_by_unit(unit))? = id(next_on(sid, unit));
            }
        }
        let start_ids = start.map(id);
        let mut classes = [0u8; 256];
        for (b, class) in (0..=255u8).zip(classes.iter_mut()) {
            *class = byte_classes.get(b);
        }
        let kind = std::array::from_fn(|b| u8::from(!is_word_byte(b as u8)));
        let resume = resume
            .into_iter()
            .map(|r| match r {
                Some((len, after)) => (len, after.map(id)),
                None => (0, start_ids),
            })
            .collect();
        Some(Dense {
            table: rows,
            first_match,
            classes,
            eoi: u8::try_from(byte_classes.eoi().as_usize()).ok()?,
            kind,
            start: start_ids,
            resume,
        })
    }

    /// Heap bytes held.
    fn memory_usage(&self) -> usize {
        self.table.len() * 4 + self.resume.len() * std::mem::size_of::<(usize, [u32; 3])>()
    }

    /// The end of the leftmost-first match that starts exactly at `at` and ends by `end`, as
    /// the DFA's own forward search finds it (the byte after `end`, if any, decides a
    /// look-ahead at the end). `keyword`: the rule's keyword the hit at `at` matched. Not
    /// inlined: out of line the walk keeps its state in registers (callgrind, adversarial
    /// body: 26.1 M instructions a scan against 26.3 M inlined).
    #[inline(never)]
    fn match_end(&self, data: &[u8], at: usize, keyword: u32, end: usize) -> Option<usize> {
        let step = |sid: u32, class: u8| -> u32 {
            let i = (sid as usize).wrapping_add(usize::from(class));
            self.table.get(i).copied().unwrap_or(0)
        };
        // `sid - 1` is at least this for the dead state (0) and the match states only.
        let special_from = self.first_match.wrapping_sub(1);
        let kind = match at.checked_sub(1).and_then(|i| data.get(i)) {
            Some(&b) => usize::from(self.kind[usize::from(b)]),
            None => 2,
        };
        let (from, mut sid) = match self.resume.get(keyword as usize) {
            Some(&(skip, after)) if at + skip <= end => (at + skip, after[kind]),
            _ => (at, self.start[kind]),
        };
        // The end of the last match seen (`NONE`: none yet), as a plain number so that the
        // walk keeps one register for it.
        const NONE: usize = usize::MAX;
        let mut found = NONE;
        let bytes = data.get(from..end)?;
        let mut i = 0;
        loop {
            // Plain states only, here: the test is one compare for both the dead state (0)
            // and match states (the highest ids).
            let stopped = loop {
                let Some(&b) = bytes.get(i) else {
                    break false;
                };
                sid = step(sid, self.classes[usize::from(b)]);
                i += 1;
                if sid.wrapping_sub(1) >= special_from {
                    break true;
                }
            };
            if !stopped {
                break;
            }
            if sid == 0 {
                return (found != NONE).then_some(found);
            }
            // Matches are reported one byte late: this one ended before the byte just read.
            found = from + i - 1;
        }
        let class = data
            .get(end)
            .map_or(self.eoi, |&b| self.classes[usize::from(b)]);
        if step(sid, class) >= self.first_match {
            found = end;
        }
        (found != NONE).then_some(found)
    }
}

fn regex_error(text: &str) -> String {
    // regex-syntax errors are multi-line drawings; keep the one line that says what is wrong.
    let reason = text
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or_else(|| text.lines().last().unwrap_or(text).trim().to_string());
    format!("invalid regex: {reason}")
}

/// Literals every match of `pattern` contains (its possible prefixes or suffixes), for rules
/// that declare no keywords; empty when none are long enough to be a useful prefilter.
pub(crate) fn derive_keywords(pattern: &str) -> Vec<String> {
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
    else {
        return Vec::new();
    };
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let mut extractor = Extractor::new();
        extractor.kind(kind);
        let seq = extractor.extract(&hir);
        let Some(lits) = seq.literals() else { continue };
        if lits.is_empty() || lits.iter().any(|l| l.as_bytes().len() < 3) {
            continue;
        }
        let mut out: Vec<String> = lits
            .iter()
            .map(|l| String::from_utf8_lossy(l.as_bytes()).to_ascii_lowercase())
            .collect();
        out.sort();
        out.dedup();
        if out.len() <= 64 {
            return out;
        }
    }
    Vec::new()
}

struct CompiledRule {
    id: Arc<str>,
    service: Arc<str>,
    name: Arc<str>,
    confidence: Confidence,
    source: Source,
    regex: CompiledRegex,
    min_entropy: Option<f64>,
    generic: bool,
}

/// What a prefilter hit leads to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Confirm the rule by searching the merged windows around its hits.
    Window,
    /// Confirm the rule by anchored searches at its hits (inside the merged windows).
    Anchored,
    /// Confirm the rule by anchored searches where its hits' lines begin (inside the merged
    /// windows).
    LineLed,
    /// A known value: the hit is the finding.
    Known,
}

/// One thing a prefilter pattern leads to, with all the hit loop needs at hand (a hit of a
/// keyword shared by many rules visits one route per rule).
#[derive(Clone, Copy)]
struct Route {
    kind: Kind,
    /// Rule index, or known-value label index.
    target: u32,
    /// Where the exact bytes the hit must equal (case-sensitive keywords, known values; as
    /// long as the hit) start in [`Inner::exact`]; [`ANY_CASE`]: any ASCII case.
    exact: u32,
    /// How far before a keyword hit the rule's window starts, and after it ends.
    reach_before: u32,
    reach: u32,
    /// Which of the rule's keywords this is (its index among them).
    keyword: u32,
    /// Length of the prefilter pattern (the hit starts this far before its end).
    len: u32,
}

/// [`Route::exact`] of a case-insensitive keyword.
const ANY_CASE: u32 = u32::MAX;

struct Inner {
    rules: Vec<CompiledRule>,
    /// One automaton for every keyword and every known-value form (ASCII case-insensitive,
    /// overlapping matches).
    prefilter: Option<Prefilter>,
    /// What a hit of each prefilter match state leads to: `routes[from..to]` for
    /// `state_routes[state]` (the routes of every pattern the state matches, in turn).
    state_routes: Vec<(u32, u32)>,
    routes: Vec<Route>,
    /// The exact bytes of case-sensitive keywords and known-value forms, one after another.
    exact: Vec<u8>,
    /// Rules with no keyword: confirmed over the whole input.
    always: Vec<u32>,
    known_labels: Vec<Arc<str>>,
    /// Rule id and service of every known-value finding.
    known_id: Arc<str>,
    known_service: Arc<str>,
    known_values: usize,
    horizon: usize,
    fingerprint: u64,
}

/// The compiled scanner. Cheap to clone (shared), `Send + Sync`.
#[derive(Clone)]
pub struct Scanner {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("rules", &self.inner.rules.len())
            .field("known_values", &self.inner.known_values)
            .field("horizon", &self.inner.horizon)
            .finish()
    }
}

/// The entropy detector as a rule: a value of at least 20 characters, assigned to a name that
/// sounds like a secret, whose entropy is high.
fn entropy_rule() -> Rule {
    Rule {
        id: "high-entropy-assignment".into(),
        service: "entropy".into(),
        name: "high-entropy value assigned to a secret-sounding name".into(),
        description: String::new(),
        keywords: ["key", "secret", "token", "passw", "pwd", "auth", "credential"]
            .map(String::from)
            .to_vec(),
        pattern: r#"(?i)(?:key|secret|token|passw(?:or)?d|pwd|auth|credential)[a-z0-9_.-]{0,24}["']?[ \t]{0,4}(?::=|=>|:|=)[ \t]{0,4}["'`]?(?P<secret>[A-Za-z0-9+/_.~=-]{20,128})"#.into(),
        secret_group: None,
        max_len: None,
        reach_before: Some(40),
        case_sensitive_keywords: false,
        confidence: Confidence::Low,
        min_entropy: Some(4.0),
        generic: true,
        examples: Vec::new(),
        negative: Vec::new(),
        file: "builtin:entropy".into(),
        line: 0,
    }
}

static NEXT_FINGERPRINT: AtomicU64 = AtomicU64::new(1);

impl Scanner {
    /// Compiles the rules, the known values and (if asked) the entropy detector.
    pub fn new(config: ScanConfig) -> Result<Scanner, ScanError> {
        Scanner::build(config, false)
    }

    /// `reference`: every rule confirmed by unanchored searches over merged windows of its
    /// unfactored regex (the engine before anchored confirmation), for differential tests.
    pub(crate) fn build(config: ScanConfig, reference: bool) -> Result<Scanner, ScanError> {
        let mut sources: Vec<(Rule, Source)> = config
            .rules
            .rules()
            .iter()
            .cloned()
            .map(|r| (r, Source::Rule))
            .collect();
        if config.entropy {
            sources.push((entropy_rule(), Source::Entropy));
        }
        let mut rules = Vec::with_capacity(sources.len());
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut entries: Vec<Vec<Route>> = Vec::new();
        let mut exact_bytes: Vec<u8> = Vec::new();
        let mut index: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        let too_big = |_| ScanError::Build("too many keywords and known values".into());
        let mut add = |pattern: &[u8], mut route: Route, exact: bool| -> Result<(), ScanError> {
            if exact {
                route.exact = u32::try_from(exact_bytes.len()).map_err(too_big)?;
                exact_bytes.extend_from_slice(pattern);
            }
            let key = pattern.to_ascii_lowercase();
            let p = *index.entry(key.clone()).or_insert_with(|| {
                patterns.push(key);
                entries.push(Vec::new());
                patterns.len() - 1
            });
            entries[p].push(route);
            Ok(())
        };
        let mut always = Vec::new();
        for (idx, (rule, source)) in sources.into_iter().enumerate() {
            let idx = u32::try_from(idx).map_err(|_| ScanError::Build("too many rules".into()))?;
            let (kws, exact) = if rule.keywords.is_empty() {
                (derive_keywords(&rule.pattern), false)
            } else {
                (rule.keywords.clone(), rule.case_sensitive_keywords)
            };
            let anchor_keywords = (!reference && !exact && !kws.is_empty()).then_some(&kws[..]);
            let routed = (!reference && !kws.is_empty()).then_some((&kws[..], exact));
            let regex = compile_regex(
                &rule.pattern,
                rule.secret_group,
                rule.max_len,
                anchor_keywords,
                routed,
                !reference,
            )
            .map_err(|reason| ScanError::RuleFile {
                file: rule.file.to_string(),
                line: rule.line,
                reason: format!("rule `{}`: {reason}", rule.id),
            })?;
            if kws.is_empty() {
                always.push(idx);
            }
            let reach_before = rule
                .reach_before
                .map_or(regex.reach, |b| b.min(regex.reach));
            let route = Route {
                kind: match regex.confirm {
                    Confirm::Window(_) => Kind::Window,
                    Confirm::Anchored(_) => Kind::Anchored,
                    Confirm::LineLed { .. } => Kind::LineLed,
                },
                target: idx,
                exact: ANY_CASE,
                reach_before: u32::try_from(reach_before).map_err(too_big)?,
                reach: u32::try_from(regex.reach).map_err(too_big)?,
                keyword: 0,
                len: 0,
            };
            for (i, kw) in kws.iter().enumerate() {
                let keyword = u32::try_from(i).map_err(too_big)?;
                add(kw.as_bytes(), Route { keyword, ..route }, exact)?;
            }
            rules.push(CompiledRule {
                id: rule.id.as_str().into(),
                service: rule.service.as_str().into(),
                name: rule.name.as_str().into(),
                confidence: rule.confidence,
                source,
                min_entropy: rule.min_entropy,
                generic: rule.generic,
                regex,
            });
        }
        let (known_patterns, known_values) = config.known_values.patterns();
        let mut known_labels = Vec::new();
        let mut known_max = 0;
        for (pattern, label) in known_patterns {
            let i = u32::try_from(known_labels.len())
                .map_err(|_| ScanError::Build("too many known values".into()))?;
            known_labels.push(label);
            known_max = known_max.max(pattern.len());
            let route = Route {
                kind: Kind::Known,
                target: i,
                exact: ANY_CASE,
                reach_before: 0,
                reach: 0,
                keyword: 0,
                len: 0,
            };
            add(&pattern, route, true)?;
        }
        let prefilter = if patterns.is_empty() {
            None
        } else {
            Some(Prefilter::new(&patterns)?)
        };
        let mut state_routes = Vec::new();
        let mut routes = Vec::new();
        for matches in prefilter.iter().flat_map(Prefilter::match_lists) {
            let from = u32::try_from(routes.len()).map_err(too_big)?;
            for &(pattern, len) in matches {
                let to = entries.get(pattern as usize).map_or(&[][..], Vec::as_slice);
                routes.extend(to.iter().map(|&r| Route { len, ..r }));
            }
            state_routes.push((from, u32::try_from(routes.len()).map_err(too_big)?));
        }
        let horizon = rules
            .iter()
            .map(|r| r.regex.reach)
            .chain(Some(known_max))
            .max()
            .unwrap_or(0)
            + 1;
        Ok(Scanner {
            inner: Arc::new(Inner {
                rules,
                prefilter,
                state_routes,
                routes,
                exact: exact_bytes,
                always,
                known_labels,
                known_id: "known-value".into(),
                known_service: "known value".into(),
                known_values,
                horizon,
                fingerprint: NEXT_FINGERPRINT.fetch_add(1, Ordering::Relaxed),
            }),
        })
    }

    /// Every secret in `data`, overlapping findings merged, sorted by offset.
    pub fn scan(&self, data: &[u8]) -> Vec<Finding> {
        merge(self.scan_unmerged(data))
    }

    /// A scanner for a body that arrives in chunks; see [`StreamScanner`].
    pub fn stream(&self) -> StreamScanner {
        StreamScanner::new(self.clone())
    }

    /// The longest span (plus one byte of context) any finding can cover: how far back a
    /// streaming scan must keep bytes.
    pub fn horizon(&self) -> usize {
        self.inner.horizon
    }

    /// How the rule `id` is confirmed (`window`, `anchored` or `line-led`), for tests that
    /// check an optimisation still applies.
    #[cfg(test)]
    pub(crate) fn confirm_kind(&self, id: &str) -> Option<&'static str> {
        let rule = self.inner.rules.iter().find(|r| &*r.id == id)?;
        Some(match rule.regex.confirm {
            Confirm::Window(_) => "window",
            Confirm::Anchored(_) => "anchored",
            Confirm::LineLed { .. } => "line-led",
        })
    }

    /// Heap bytes held by the compiled automata (prefilter and regexes, and the fully built
    /// DFAs of the anchored rules that have had an attempt; lazy DFA caches grow on use and
    /// are not counted).
    pub fn memory_usage(&self) -> usize {
        self.inner
            .prefilter
            .as_ref()
            .map_or(0, Prefilter::memory_usage)
            + self
                .inner
                .rules
                .iter()
                .map(|r| {
                    let dense = r.regex.dense.get().and_then(Option::as_ref);
                    dense.map_or(0, Dense::memory_usage)
                        + match &r.regex.confirm {
                            Confirm::Window(regex)
                            | Confirm::Anchored(regex)
                            | Confirm::LineLed { regex, .. } => regex.memory_usage(),
                        }
                })
                .sum::<usize>()
    }

    /// Builds now what the scanner otherwise builds on first use: the fully built DFA of
    /// every anchored rule (for the built-in rules about 4 MiB and 150 ms). For a long-lived
    /// scanner such as the proxy's, on a thread of its own, so that no request waits for one.
    pub fn prepare(&self) {
        for rule in &self.inner.rules {
            rule.regex.dense();
        }
    }

    /// Number of compiled rules (including the entropy detector when on).
    pub fn rule_count(&self) -> usize {
        self.inner.rules.len()
    }

    /// Number of distinct known values being matched.
    pub fn known_value_count(&self) -> usize {
        self.inner.known_values
    }

    /// Identifies this compiled scanner (distinct for every [`Scanner::new`]), so caches never
    /// mix results of different rule sets.
    pub fn fingerprint(&self) -> u64 {
        self.inner.fingerprint
    }

    /// Takes a hit of prefilter match state `state`, ending at `end`, to every rule and known
    /// value a pattern it matches stands for: known values become findings, rules record the
    /// hit (merged windows, and starts for anchored confirmation).
    #[inline(always)]
    fn route_hit(
        &self,
        data: &[u8],
        end: usize,
        state: u32,
        slot: &mut [u32],
        active: &mut Vec<Active>,
        out: &mut Vec<Finding>,
    ) {
        let inner = &*self.inner;
        let Some(&(from, to)) = inner.state_routes.get(state as usize) else {
            return;
        };
        for route in inner.routes.get(from as usize..to as usize).unwrap_or(&[]) {
            let start = end.saturating_sub(route.len as usize);
            if route.exact != ANY_CASE {
                let e = route.exact as usize;
                if inner.exact.get(e) != data.get(start)
                    || inner.exact.get(e..e + (end - start)) != data.get(start..end)
                {
                    continue;
                }
            }
            let r = route.target as usize;
            if route.kind == Kind::Known {
                out.push(Finding {
                    rule_id: Arc::clone(&inner.known_id),
                    service: Arc::clone(&inner.known_service),
                    name: inner.known_labels[r].clone(),
                    start,
                    end,
                    confidence: Confidence::High,
                    source: Source::KnownValue,
                });
                continue;
            }
            let ws = start.saturating_sub(route.reach_before as usize);
            let we = end.saturating_add(route.reach as usize).min(data.len());
            let Some(s) = slot.get_mut(r) else {
                continue;
            };
            if *s == u32::MAX {
                *s = active.len() as u32;
                active.push(Active {
                    rule: route.target,
                    windows: Vec::new(),
                    starts: Vec::new(),
                });
            }
            let Some(a) = active.get_mut(*s as usize) else {
                continue;
            };
            if matches!(route.kind, Kind::Anchored | Kind::LineLed) {
                a.starts.push((start, route.keyword));
            }
            match a.windows.last_mut() {
                Some(last) if ws <= last.1 => {
                    last.0 = last.0.min(ws);
                    last.1 = last.1.max(we);
                }
                _ => a.windows.push((ws, we)),
            }
        }
    }

    /// All findings, unmerged (one per rule match), in no particular order.
    pub(crate) fn scan_unmerged(&self, data: &[u8]) -> Vec<Finding> {
        let inner = &*self.inner;
        let mut out = Vec::new();
        // Per rule: merged windows (start, end) to confirm in.
        let mut slot = vec![u32::MAX; inner.rules.len()];
        let mut active: Vec<Active> = Vec::new();
        if let Some(prefilter) = &inner.prefilter {
            for lane in prefilter.hits(data) {
                for &hit in &lane {
                    self.route_hit(data, hit.end, hit.state, &mut slot, &mut active, &mut out);
                }
            }
        }
        for &r in &inner.always {
            active.push(Active {
                rule: r,
                windows: vec![(0, data.len())],
                starts: Vec::new(),
            });
        }
        for a in &mut active {
            let rule = &inner.rules[a.rule as usize];
            match &rule.regex.confirm {
                Confirm::Window(regex) => {
                    for &(ws, we) in &a.windows {
                        confirm_window(rule, regex, data, ws, we, &mut out);
                    }
                }
                Confirm::LineLed { regex, body } => {
                    a.starts.sort_unstable();
                    a.starts.dedup_by_key(|s| s.0);
                    for &(ws, we) in &a.windows {
                        let from = a.starts.partition_point(|&(p, _)| p < ws);
                        let mut lines = LineStarts::new(body, data, ws);
                        // The line starts come in order (hits are in order); neighbouring
                        // hits on one line give the same one, tried once.
                        let mut last = None;
                        let at = a.starts[from..]
                            .iter()
                            .take_while(|&&(p, _)| p < we)
                            .filter_map(|&(p, _)| lines.before(p))
                            .filter(|&p| last.replace(p) != Some(p))
                            .map(|p| (p, 0));
                        // Line-led rules have no lead (`lead` is empty): every start is tried.
                        confirm_at(rule, regex, None, data, (ws, we), at, &mut out);
                    }
                }
                Confirm::Anchored(regex) => {
                    a.starts.sort_unstable();
                    // Any keyword that matched at a start will do.
                    a.starts.dedup_by_key(|s| s.0);
                    let dense = rule.regex.dense();
                    for &(ws, we) in &a.windows {
                        let from = a.starts.partition_point(|&(p, _)| p < ws);
                        let at = a.starts[from..].iter().copied();
                        confirm_at(rule, regex, dense, data, (ws, we), at, &mut out);
                    }
                }
            }
        }
        out
    }
}

/// A rule some keyword hit asked to confirm.
struct Active {
    rule: u32,
    /// Merged windows (start, end) around its hits.
    windows: Vec<(usize, usize)>,
    /// Where its hits start, and the rule's keyword each matched (anchored rules only).
    starts: Vec<(usize, u32)>,
}

/// `lead` without the positions a hit of one of `keywords` (the rule's, any ASCII case) always
/// passes: then an anchored attempt checks only bytes the hit did not already decide (none at
/// all for most generic rules, whose lead is their keyword alternation). Empty when nothing is
/// left to check.
fn useful_lead(mut lead: Vec<ByteSet>, keywords: &[String]) -> Vec<ByteSet> {
    let decided = lead
        .iter()
        .enumerate()
        .take_while(|&(i, set)| {
            keywords.iter().all(|k| {
                k.as_bytes().get(i).is_some_and(|&b| {
                    holds(set, b.to_ascii_lowercase()) && holds(set, b.to_ascii_uppercase())
                })
            })
        })
        .count();
    if decided == lead.len() {
        lead.clear();
    } else {
        // Positions the hit decided pass anyway: mark them "any byte" (cheap to keep the
        // length check and the offsets simple).
        for set in lead.iter_mut().take(decided) {
            *set = [u64::MAX; 4];
        }
    }
    lead
}

/// Where the matches of a [`Confirm::LineLed`] rule that have their keyword at the hits of a
/// window can begin, no earlier than the window's start `ws`. Looking back from a hit over
/// `body` bytes (none of them a line break or a backslash), it is the line start that ends
/// where they begin: a line feed or carriage return, the two bytes `\\n`, or the text's start.
/// Hits are taken in order, and each byte is looked at once: a long run of `body` bytes full
/// of hits costs its length, not its length times its hits.
struct LineStarts<'a> {
    body: &'a ByteSet,
    data: &'a [u8],
    ws: usize,
    /// Bytes below this were looked at.
    seen: usize,
    /// The last byte below `seen` that is not a `body` byte.
    last: Option<usize>,
}

impl<'a> LineStarts<'a> {
    fn new(body: &'a ByteSet, data: &'a [u8], ws: usize) -> Self {
        LineStarts {
            body,
            data,
            ws,
            seen: ws,
            last: None,
        }
    }

    /// Where a match with its keyword at `hit` (no earlier than the previous hit asked
    /// about) can begin; `None` when there is no such place (the hit cannot be the keyword of
    /// a match).
    fn before(&mut self, hit: usize) -> Option<usize> {
        if let Some(run) = self.data.get(self.seen..hit) {
            if let Some(q) = run.iter().rposition(|&b| !holds(self.body, b)) {
                self.last = Some(self.seen + q);
            }
            self.seen = hit;
        }
        let Some(q) = self.last else {
            // Only body bytes back to `ws`: the text's start, if that is where they begin.
            return (self.ws == 0).then_some(0);
        };
        let byte = |i: usize| self.data.get(i).copied();
        let prev = q.checked_sub(1).filter(|&i| i >= self.ws).and_then(byte);
        let next = (q + 1 < hit).then(|| byte(q + 1)).flatten();
        match (prev, byte(q), next) {
            (_, Some(b'\n' | b'\r'), _) | (_, Some(b'\\'), Some(b'n')) => Some(q),
            (Some(b'\\'), Some(b'n'), _) => Some(q - 1),
            _ => None,
        }
    }
}

/// Whether `data[at..end]` can hold a match: at least as long as `lead` and holding its bytes
/// (most anchored attempts at a keyword hit fail within its first bytes).
fn leads_at(lead: &[ByteSet], data: &[u8], at: usize, end: usize) -> bool {
    let Some(bytes) = data.get(at..end) else {
        return true;
    };
    bytes.len() >= lead.len() && lead.iter().zip(bytes).all(|(set, &b)| holds(set, b))
}

/// Anchored attempts at `starts` (ascending: where, and the keyword that matched there; those
/// from `we` on are not looked at) inside the window `ws..we`, as an unanchored search of the window finds its matches: a start
/// inside the previous match is skipped, and so is one whose bytes the rule's lead turns down.
/// Each match's secret goes to [`accept`].
#[inline(always)]
fn confirm_at(
    rule: &CompiledRule,
    regex: &Regex,
    dense: Option<&Dense>,
    data: &[u8],
    (ws, we): (usize, usize),
    starts: impl Iterator<Item = (usize, u32)>,
    out: &mut Vec<Finding>,
) {
    let mut cursor = ws;
    for (p, keyword) in starts {
        if p >= we {
            break;
        }
        if p < cursor || !leads_at(&rule.regex.lead, data, p, we) {
            continue;
        }
        if let Some((end, secret)) = match_at(regex, dense, keyword, rule.regex.group, data, p, we)
        {
            cursor = end;
            if let Some((s, e)) = secret {
                accept(rule, data, s, e, out);
            }
        }
    }
}

/// Capture slots kept on the stack for an anchored search (the match and groups 1 to 15).
const SLOTS: usize = 32;

/// The leftmost-first match of `regex` that starts exactly at `at` and ends by `end`: its end
/// and the secret span (the whole match without a group; `None` when the group did not take
/// part in the match). Inlined into [`confirm_at`], and that into both confirm loops: out of
/// line, the adversarial body's 21,000 attempts a scan cost 0.7 M instructions more
/// (callgrind).
#[inline(always)]
fn match_at(
    regex: &Regex,
    dense: Option<&Dense>,
    keyword: u32,
    group: Option<usize>,
    data: &[u8],
    at: usize,
    end: usize,
) -> Option<(usize, Option<(usize, usize)>)> {
    let input = || Input::new(data).span(at..end).anchored(Anchored::Yes);
    // The DFA says cheaply whether there is a match (most hits have none) and where it
    // ends; only then is the capture search (one-pass DFA) run, on the match alone.
    let m_end = match dense {
        Some(d) => d.match_end(data, at, keyword, end)?,
        None => regex.search_half(&input())?.offset(),
    };
    let Some(g) = group else {
        return Some((m_end, Some((at, m_end))));
    };
    let mut input = input();
    input.set_end(m_end);
    let n = 2 * (g + 1);
    let mut stack = [None::<NonMaxUsize>; SLOTS];
    let mut heap = Vec::new();
    let slots = match stack.get_mut(..n) {
        Some(s) => s,
        None => {
            heap.resize(n, None);
            &mut heap[..]
        }
    };
    regex.search_slots(&input, slots)?;
    let get = |i: usize| slots.get(i).copied().flatten().map(NonMaxUsize::get);
    let match_end = get(1)?;
    Some((match_end, get(2 * g).zip(get(2 * g + 1))))
}

/// Confirms `rule` by an unanchored search over `data[ws..we]`: the leftmost-first matches
/// that do not overlap, as `find_iter` gives them.
fn confirm_window(
    rule: &CompiledRule,
    regex: &Regex,
    data: &[u8],
    ws: usize,
    we: usize,
    out: &mut Vec<Finding>,
) {
    let input = Input::new(data).span(ws..we);
    match rule.regex.group {
        None => {
            for m in regex.find_iter(input) {
                accept(rule, data, m.start(), m.end(), out);
            }
        }
        Some(g) => {
            for caps in regex.captures_iter(input) {
                if let Some(span) = caps.get_group(g) {
                    accept(rule, data, span.start, span.end, out);
                }
            }
        }
    }
}

/// Reports `data[start..end]`, the secret of a match of `rule`, unless the rule's filters
/// (entropy, placeholders, randomness) reject it.
fn accept(rule: &CompiledRule, data: &[u8], start: usize, end: usize, out: &mut Vec<Finding>) {
    let Some(secret) = data.get(start..end) else {
        return;
    };
    if secret.is_empty() {
        return;
    }
    if let Some(min) = rule.min_entropy
        && shannon_entropy(secret) < min
    {
        return;
    }
    if rule.generic && looks_like_placeholder(secret) {
        return;
    }
    if rule.source == Source::Entropy && (!looks_random(secret) || websocket_nonce(data, start)) {
        return;
    }
    out.push(Finding {
        rule_id: rule.id.clone(),
        service: rule.service.clone(),
        name: rule.name.clone(),
        start,
        end,
        confidence: rule.confidence,
        source: rule.source,
    });
}

/// The entropy detector's second opinion: random tokens mix in digits and have no long runs of
/// lower-case letters, unlike identifiers such as `kSecAttrKeyTypeECSECPrimeRandom`.
pub(crate) fn looks_random(value: &[u8]) -> bool {
    let digits = value.iter().filter(|b| b.is_ascii_digit()).count();
    let mut run = 0;
    let mut longest = 0;
    for b in value {
        if b.is_ascii_lowercase() {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    digits >= 2 && longest < 7
}

/// `b` without trailing blanks and quotes.
fn trim_end_quoted(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., last] = b {
        if matches!(last, b' ' | b'\t' | b'"' | b'\'' | b'`') {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// Whether the value at `start` is a WebSocket handshake's `Sec-WebSocket-Key` (a fresh random
/// nonce per connection, by design) or `Sec-WebSocket-Accept` (a hash of it): random-looking,
/// assigned to a "key", and never a secret.
fn websocket_nonce(data: &[u8], start: usize) -> bool {
    let before = &data[start.saturating_sub(48)..start];
    let name = match trim_end_quoted(before) {
        [rest @ .., b':' | b'='] => trim_end_quoted(rest),
        _ => return false,
    };
    [b"sec-websocket-key".as_slice(), b"sec-websocket-accept"]
        .iter()
        .any(|n| name.len() >= n.len() && name[name.len() - n.len()..].eq_ignore_ascii_case(n))
}

/// Values a generic (assignment-shaped) rule must not report: template variables, code,
/// well-known placeholders, redaction markers.
pub(crate) fn looks_like_placeholder(value: &[u8]) -> bool {
    if value
        .first()
        .is_some_and(|&b| b == b'$' || b == b'&' || b == b'*' || b == b'@')
    {
        return true;
    }
    match placeholder_matcher() {
        Some(m) => m.is_match(value),
        None => PLACEHOLDER_MARKERS
            .iter()
            .chain(PLACEHOLDER_WORDS)
            .any(|w| value.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w))),
    }
}

/// One case-insensitive automaton over every placeholder marker and word, built on first use:
/// the prefilter's own, whose plain walk over a short value skips a general Aho-Corasick
/// search's set-up (callgrind, the adversarial body's 2,621 values a scan: `accept` 2.17 M
/// instructions before, 2.00 M after).
fn placeholder_matcher() -> Option<&'static Prefilter> {
    static MATCHER: OnceLock<Option<Prefilter>> = OnceLock::new();
    MATCHER
        .get_or_init(|| {
            let words: Vec<Vec<u8>> = PLACEHOLDER_MARKERS
                .iter()
                .chain(PLACEHOLDER_WORDS)
                .map(|w| w.to_vec())
                .collect();
            Prefilter::new(&words).ok()
        })
        .as_ref()
}

const PLACEHOLDER_MARKERS: &[&[u8]] = &[
    b"${", b"{{", b"<", b">", b"%s", b"%(", b"(", b")", b"[", b"]", b"\\n", b"\\t",
];
const PLACEHOLDER_WORDS: &[&[u8]] = &[
    b"placeholder",
    b"changeme",
    b"change_me",
    b"change-me",
    b"your",
    b"redacted",
    b"dummy",
    b"sample",
    b"xxxx",
    b"****",
    b"....",
    b"todo",
    b"fixme",
    b"password",
    b"passwd",
    b"secret",
    b"token",
    b"environ",
    b"getenv",
    b"process.env",
    b"config.",
    b"settings.",
    b"self.",
    b"this.",
    b"args.",
    b"params.",
    b"options.",
    b"opts.",
    b"request.",
    b"ctx.",
    b"null",
    b"none",
    b"undefined",
    b"string",
    b"bytes",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner_for(yaml: &str) -> Scanner {
        let rules = RuleSet::from_yaml(yaml, "t.yaml").unwrap();
        Scanner::new(ScanConfig {
            rules,
            ..ScanConfig::without_rules()
        })
        .unwrap()
    }

    const ACME: &str = "rules:\n  - id: acme-key\n    service: Acme\n    keywords: [acme_]\n    pattern: '\\bacme_[a-z0-9]{24}\\b'\n";

    #[test]
    fn scanner_is_send_and_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Scanner>();
    }

    #[test]
    fn finds_a_rule_match_with_byte_offsets() {
        let s = scanner_for(ACME);
        let secret = format!("acme_{}", "k3y9".repeat(6));
        let text = format!("héllo {secret} bye");
        let found = s.scan(text.as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(&text.as_bytes()[found[0].range()], secret.as_bytes());
        assert_eq!(&*found[0].rule_id, "acme-key");
        assert_eq!(found[0].source, Source::Rule);
    }

    #[test]
    fn keyword_prefilter_is_case_insensitive_but_regex_decides() {
        let s = scanner_for(ACME);
        let upper = format!("ACME_{}", "k3y9".repeat(6));
        assert!(s.scan(upper.as_bytes()).is_empty());
    }

    #[test]
    fn named_secret_group_narrows_the_span() {
        let s = scanner_for(
            "rules:\n  - id: acme-pass\n    service: Acme\n    keywords: [acme_pass]\n    pattern: 'acme_pass=(?P<secret>[a-z0-9]{12})'\n",
        );
        let text = format!("x acme_pass={} y", "q1w2e3r4t5y6");
        let f = s.scan(text.as_bytes());
        assert_eq!(f.len(), 1);
        assert_eq!(&text[f[0].range()], "q1w2e3r4t5y6");
    }

    #[test]
    fn rules_without_keywords_get_derived_ones_or_run_everywhere() {
        assert_eq!(derive_keywords("myco_[a-z]{8}"), vec!["myco_"]);
        assert_eq!(derive_keywords("(?i)Foo_(a|b)"), vec!["foo_a", "foo_b"]);
        assert!(derive_keywords("[a-z]{8}x").is_empty());
        let s = scanner_for(
            "rules:\n  - id: bare\n    service: X\n    pattern: '\\b[0-9]{4}-[0-9]{4}-zz\\b'\n",
        );
        assert_eq!(s.scan(b"id 1234-5678-zz end").len(), 1);
    }

    #[test]
    fn empty_matching_patterns_are_rejected() {
        let err = RuleSet::from_yaml(
            "rules:\n  - id: e\n    service: X\n    pattern: 'a*'\n",
            "e.yaml",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "e.yaml:2: rule `e`: pattern can match the empty string"
        );
    }

    #[test]
    fn no_findings_cap_many_decoys_do_not_hide_a_secret() {
        let s = scanner_for(ACME);
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("acme_{:024} ", i));
        }
        text.push_str(&format!("acme_{}", "zz99".repeat(6)));
        let found = s.scan(text.as_bytes());
        assert_eq!(found.len(), 20_001);
    }

    #[test]
    fn entropy_detector_skips_identifiers() {
        assert!(!looks_random(b"kCMSEncoderDigestAlgorithmSHA256"));
        assert!(!looks_random(b"kSecAttrKeyTypeECSECPrimeRandom"));
        assert!(looks_random(b"Zq8vR3mK9pLw2xT7bN4c"));
        let mut config = ScanConfig::without_rules();
        config.entropy = true;
        let s = Scanner::new(config).unwrap();
        let value = format!("{}{}", "Zq8vR3mK9pLw2xT7", "bN4cQ1s");
        assert_eq!(
            s.scan(format!("my_token = \"{value}\"").as_bytes()).len(),
            1
        );
        assert!(s.scan(b"key = kCMSEncoderDigestAlgorithmSHA256").is_empty());
        // The WebSocket handshake nonce (RFC 6455's sample) is public by design.
        let nonce = format!("{}{}", "dGhlIHNhbXBsZSBub2", "5jZQ==");
        assert!(
            s.scan(format!("Sec-WebSocket-Key: {nonce}\r\n").as_bytes())
                .is_empty()
        );
        assert_eq!(s.scan(format!("x-key: {nonce}").as_bytes()).len(), 1);
    }

    #[test]
    fn websocket_handshake_nonces_are_not_entropy_findings() {
        let mut config = ScanConfig::builtin().unwrap();
        config.entropy = true;
        let scanner = Scanner::new(config).unwrap();
        let nonce = format!("{}{}", "q7Xv2LmN9pRt", "4WzK8sJd3Hf=");
        for text in [
            format!("GET / HTTP/1.1\r\nSec-WebSocket-Key: {nonce}\r\n"),
            format!("sec-websocket-accept:\t\"{nonce}\""),
        ] {
            let found: Vec<_> = scanner
                .scan(text.as_bytes())
                .into_iter()
                .filter(|f| f.source == Source::Entropy)
                .collect();
            assert!(found.is_empty(), "{text}: {found:?}");
        }
        // The same value under any other key name is still one.
        let other = format!("session_key = \"{nonce}\"");
        assert!(
            scanner
                .scan(other.as_bytes())
                .iter()
                .any(|f| f.source == Source::Entropy),
            "{other}"
        );
        assert!(!websocket_nonce(b"Sec-WebSocket-Key", 17));
    }

    #[test]
    fn placeholders_are_recognised() {
        assert!(looks_like_placeholder(b"${DB_PASSWORD}"));
        assert!(looks_like_placeholder(b"your-api-key-here"));
        assert!(looks_like_placeholder(b"os.environ"));
        assert!(!looks_like_placeholder(b"Zq8vR3mK9pLw2xT7"));
    }

    /// A pattern's fully built DFA, and its meta regex as anchored confirmation used it before.
    fn dense_and_meta(pattern: &str, keywords: &[&str]) -> (Option<Dense>, Regex) {
        let hir = factor(&parse(pattern).unwrap());
        let keywords: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
        let meta = Regex::builder()
            .configure(meta::Config::new().utf8_empty(false))
            .build_from_hir(&hir)
            .unwrap();
        (Dense::new(&hir, &keywords), meta)
    }

    /// Text of keyword occurrences in random ASCII case, preceded by a word byte or not, and
    /// followed by separators, quotes and values of many lengths.
    fn keyword_text(rng: &mut fastrand::Rng, keywords: &[&str], len: usize) -> Vec<u8> {
        const GLUE: &[&str] = &[
            "", " ", "=", ":", "\"", "'", "_", "\t", "\n", "x", "-", ": \"",
        ];
        let mut out = Vec::new();
        while out.len() < len {
            out.extend_from_slice(GLUE[rng.usize(..GLUE.len())].as_bytes());
            let k = keywords[rng.usize(..keywords.len())];
            out.extend(k.bytes().map(|b| {
                if rng.bool() {
                    b.to_ascii_uppercase()
                } else {
                    b
                }
            }));
            out.extend_from_slice(GLUE[rng.usize(..GLUE.len())].as_bytes());
            for _ in 0..rng.usize(..14) {
                out.push(b"aZ09x_-."[rng.usize(..8)]);
            }
        }
        out
    }

    #[test]
    fn dense_attempts_end_where_the_lazy_dfa_ends() {
        // What the hand walk has to get right: keywords in any case for a regex that ignores
        // case and one that does not (`ghp_`: no resuming), word boundaries before (a start
        // state per byte before) and after (the byte after the span decides), the text's start
        // (`^`), and matches that may run to the span's end.
        let cases: &[(&str, &[&str])] = &[
            (
                r#"(?i)(?:password|pwd)[a-z0-9_]{0,6}[ \t]{0,2}[:=][ \t]{0,2}["']?(?P<secret>[^"'\s]{4,})"#,
                &["password", "pwd"],
            ),
            (r"ghp_[A-Za-z0-9]{4,12}", &["ghp_"]),
            (r"\bsk-[a-z0-9]{2,6}\b", &["sk-"]),
            (r"(?i)\btoken\b[=:][0-9]{2,4}", &["token"]),
            (r"^key[=:][a-z0-9]{1,5}", &["key"]),
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut compared = 0;
        for &(pattern, keywords) in cases {
            let (dense, meta) = dense_and_meta(pattern, keywords);
            let dense = dense.expect("small DFA");
            for round in 0..40 {
                let mut data = keyword_text(&mut rng, keywords, 64 + round * 8);
                if round % 2 == 0 {
                    // A match at the text's start, where no byte precedes it.
                    data.splice(0..0, format!("{}=a1 ", keywords[0]).into_bytes());
                }
                for (k, kw) in keywords.iter().enumerate() {
                    for at in 0..data.len() {
                        if !data[at..]
                            .get(..kw.len())
                            .is_some_and(|w| w.eq_ignore_ascii_case(kw.as_bytes()))
                        {
                            continue;
                        }
                        for end in at + kw.len()..=data.len().min(at + 40) {
                            let input = Input::new(&data).span(at..end).anchored(Anchored::Yes);
                            let want = meta.search_half(&input).map(|m| m.offset());
                            let got = dense.match_end(&data, at, k as u32, end);
                            assert_eq!(got, want, "{pattern} at {at}..{end}");
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert!(compared > 10_000, "only {compared} attempts compared");
    }

    #[test]
    fn dense_attempts_resume_after_keywords_that_every_case_walks_alike() {
        // Bytes skipped, and whether the attempt then is over (in the dead state), per start.
        let state = |d: &Dense, k: usize| {
            let (skip, after) = d.resume[k];
            (skip, after.map(|s| s == 0))
        };
        // The regex ignores case: every keyword resumes, from every start.
        let (d, _) = dense_and_meta(r"(?i)(?:password|pwd)[ \t]*=[a-z]+", &["password", "pwd"]);
        let d = d.unwrap();
        assert_eq!(state(&d, 0), (8, [false; 3]));
        assert_eq!(state(&d, 1), (3, [false; 3]));
        // `G` and `g` lead to different states: an attempt at `GHP_` walks from the start.
        let (d, _) = dense_and_meta(r"ghp_[A-Za-z0-9]{36}", &["ghp_"]);
        assert_eq!(state(&d.unwrap(), 0), (0, [false; 3]));
        // After a word byte no match starts: that start resumes in the dead state.
        let (d, _) = dense_and_meta(r"(?i)\bsk-[a-z0-9]{6}", &["sk-"]);
        assert_eq!(state(&d.unwrap(), 0), (3, [true, false, false]));
        // A start that depends on a line feed before it: no fully built DFA (the lazy one
        // decides those attempts).
        assert!(dense_and_meta(r"(?m)^key=[a-z]+", &["key"]).0.is_none());
        // The built-in rules the adversarial benchmark body keeps busy get one on first use,
        // resuming after every keyword, and it counts in the memory used.
        let scanner = Scanner::new(ScanConfig::builtin().unwrap()).unwrap();
        let before = scanner.memory_usage();
        // Put together here, so that this file holds no secret-shaped text of its own (the
        // benchmark bodies quote it).
        let body = [
            "{\"pass",
            "word\": \"value-0001\", \"api",
            "_key\": \"value-0000000000002\"}",
        ];
        scanner.scan(body.concat().as_bytes());
        assert!(scanner.memory_usage() > before);
        for id in ["generic-password-assignment", "generic-api-key-assignment"] {
            let rule = scanner.inner.rules.iter().find(|r| &*r.id == id).unwrap();
            let dense = rule.regex.dense.get().and_then(Option::as_ref).expect(id);
            assert!(dense.resume.iter().all(|&(skip, _)| skip > 0), "{id}");
        }
    }

    #[test]
    fn prepare_builds_every_anchored_rules_dfa_up_front() {
        let scanner = Scanner::new(ScanConfig::builtin().unwrap()).unwrap();
        let anchored = || {
            scanner
                .inner
                .rules
                .iter()
                .filter(|r| r.regex.dense_from.is_some())
        };
        assert!(anchored().count() > 250);
        assert!(anchored().all(|r| r.regex.dense.get().is_none()));
        let before = scanner.memory_usage();
        scanner.prepare();
        assert!(anchored().all(|r| r.regex.dense.get().is_some()));
        assert!(scanner.memory_usage() > before + (2 << 20));
    }
}
