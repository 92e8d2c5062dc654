//! Scanning a conversation once: an agent re-sends its whole history every turn, so a large
//! body is cut into content-defined blocks at boundaries between objects in a JSON array
//! (`},{"`: messages, content blocks, whatever the key order). Each block's redaction plan (all
//! layers: raw, JSON escapes, URL encoding, base64) is cached by the hash of its bytes, and only
//! new blocks, plus the seams around each cut, are scanned. The cuts depend only on the bytes
//! before them, so the history a new turn repeats is cut exactly as before.
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use gate_scan::Scanner;
use rayon::prelude::*;

use crate::redact::view::{self, Finder, Plan};
use crate::redact::{Edit, RedactionKey, Span};

/// Bodies smaller than this are planned whole.
pub const MIN_CACHED_BODY: usize = 32 * 1024;
/// Cuts closer together than this are skipped, so blocks stay worth a cache entry.
pub const MIN_BLOCK: usize = 16 * 1024;
/// Bytes scanned on each side of a cut, for a finding that would cross it.
pub const SEAM: usize = 1024;

/// Where one object of a JSON array ends and the next begins; the cut goes before the `{`.
const MARKER: &[u8] = b"},{\"";

/// Block starts: 0, then the first boundary at least MIN_BLOCK after the previous start.
pub fn cuts(data: &[u8]) -> Vec<usize> {
    let mut c = Cutter::default();
    let _ = c.push(data);
    let mut out = vec![0];
    out.extend(c.cuts);
    out
}

/// Finds the cuts of a body while it arrives: the same cuts [`cuts`] finds in the whole body,
/// since each depends only on the bytes before it (and the marker that makes it).
#[derive(Debug, Default)]
pub struct Cutter {
    /// Where the search for the next cut starts (0 = not begun: MIN_BLOCK).
    next: usize,
    /// The cuts found so far, in order.
    cuts: Vec<usize>,
}

impl Cutter {
    /// `data` is the body so far (each call a longer prefix of the same body). Returns the
    /// blocks this call completed: ranges whose end cut is now known.
    pub fn push(&mut self, data: &[u8]) -> Vec<Range<usize>> {
        self.push_at(data, 0)
    }

    /// As [`Cutter::push`], given only the body from `offset` on (`tail`), which must
    /// include every byte from the last block reported onward.
    pub fn push_at(&mut self, tail: &[u8], offset: usize) -> Vec<Range<usize>> {
        let finder = memchr::memmem::Finder::new(MARKER);
        let before = self.cuts.len();
        let len = offset + tail.len();
        let mut i = self.next.max(MIN_BLOCK).max(offset);
        while i < len {
            match finder.find(&tail[i - offset..]) {
                Some(p) => {
                    let cut = i + p + 2;
                    self.cuts.push(cut);
                    i = cut + MIN_BLOCK;
                }
                None => {
                    // A marker may still begin in the last bytes, once more of it arrives.
                    i = i.max(len.saturating_sub(MARKER.len() - 1));
                    break;
                }
            }
        }
        self.next = i;
        (before..self.cuts.len())
            .map(|k| {
                let start = if k == 0 { 0 } else { self.cuts[k - 1] };
                start..self.cuts[k]
            })
            .collect()
    }
}

/// The scanner as the redaction layer's finder.
pub struct ScanFinder<'a>(pub &'a Scanner);

impl Finder for ScanFinder<'_> {
    fn find(&self, data: &[u8]) -> Vec<Span> {
        self.0
            .scan(data)
            .into_iter()
            .map(|f| Span {
                start: f.start,
                end: f.end,
                rule: crate::redact::sanitize_rule(&f.rule_id),
            })
            .collect()
    }
}

/// Hit and miss counts of a [`PlanCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
}

/// Block plans by BLAKE3 of the block; oldest dropped first. Holds placeholders and the values
/// behind them, in memory only, like the vault.
pub struct PlanCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<[u8; 32], Arc<Plan>>,
    order: VecDeque<[u8; 32]>,
    hits: u64,
    misses: u64,
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlanCache({:?})", self.stats())
    }
}

impl PlanCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> CacheStats {
        let i = self.lock();
        CacheStats {
            hits: i.hits,
            misses: i.misses,
            entries: i.map.len(),
        }
    }

    fn get_or_plan(&self, block: &[u8], make: impl FnOnce() -> Plan) -> Arc<Plan> {
        let key = *blake3::hash(block).as_bytes();
        {
            let mut i = self.lock();
            if let Some(p) = i.map.get(&key).cloned() {
                i.hits += 1;
                return p;
            }
            i.misses += 1;
        }
        let plan = Arc::new(make());
        let mut i = self.lock();
        if i.map.insert(key, plan.clone()).is_none() {
            i.order.push_back(key);
        }
        while i.map.len() > self.capacity {
            match i.order.pop_front() {
                Some(old) => {
                    i.map.remove(&old);
                }
                None => break,
            }
        }
        plan
    }
}

fn shifted(e: &Edit, by: usize) -> Edit {
    Edit {
        range: e.range.start + by..e.range.end + by,
        ..e.clone()
    }
}

/// Plans one block into the cache (a block [`Cutter`] completed while its body is still
/// arriving), so that planning the whole body later finds it there.
pub fn warm(scanner: &Scanner, cache: &PlanCache, key: &RedactionKey, block: &[u8], depth: usize) {
    let _ = block_plan(&ScanFinder(scanner), cache, key, block, depth);
}

/// One block's plan (offsets relative to the block), from the cache or made and kept there.
fn block_plan(
    finder: &ScanFinder<'_>,
    cache: &PlanCache,
    key: &RedactionKey,
    block: &[u8],
    depth: usize,
) -> Arc<Plan> {
    cache.get_or_plan(block, || view::plan(block, finder, key, depth))
}

/// The redaction plan of `data` through every layer, from cached block plans where the body is
/// large enough to be cut.
pub fn plan(
    scanner: &Scanner,
    cache: &PlanCache,
    key: &RedactionKey,
    data: &[u8],
    depth: usize,
) -> Plan {
    let finder = ScanFinder(scanner);
    if data.len() < MIN_CACHED_BODY {
        return view::plan(data, &finder, key, depth);
    }
    let starts = cuts(data);
    if starts.len() < 2 {
        return view::plan(data, &finder, key, depth);
    }
    // Blocks (and the seam at each block's start) are planned on the scan pool's threads at
    // once: a cold body is scanned by every core instead of one. The result is put together in
    // block order, so it is the same whatever order the threads finish in.
    let seam = seam_width(scanner);
    let parts: Vec<(Arc<Plan>, Plan)> = (0..starts.len())
        .into_par_iter()
        .map(|i| {
            let start = starts[i];
            let end = starts.get(i + 1).copied().unwrap_or(data.len());
            let block = &data[start..end];
            let p = block_plan(&finder, cache, key, block, depth);
            let mut crossing = Plan::default();
            if i > 0 {
                seam_plan(&mut crossing, &finder, key, data, start, seam);
            }
            (p, crossing)
        })
        .collect();
    let mut out = Plan::default();
    for (&start, (p, _)) in starts.iter().zip(&parts) {
        out.edits.extend(p.edits.iter().map(|e| shifted(e, start)));
        out.values.extend(p.values.iter().cloned());
    }
    for (_, crossing) in parts {
        out.edits.extend(crossing.edits);
        out.values.extend(crossing.values);
    }
    out
}

/// The seam width [`plan`] uses for this scanner.
pub fn seam_width(scanner: &Scanner) -> usize {
    SEAM.min(scanner.horizon().max(1))
}

/// One block of a body forwarded block by block while it arrives (see [`part`]).
#[derive(Debug, Clone, Copy)]
pub struct Block<'a> {
    /// The block's bytes.
    pub bytes: &'a [u8],
    /// Where the block starts in the body: 0 or a cut.
    pub start: usize,
    /// When a cut follows the block (it is not the body's last): the body from
    /// [`seam_width`] before that cut to as far after it (or to the body's end).
    pub seam_after: Option<&'a [u8]>,
}

/// One block of a body as [`plan`] sees it: the edits (in body offsets) that start in the
/// block, its own and those of the seam at its end. Put together in block order, the parts
/// of a body are [`plan`]'s plan of it.
pub fn part(
    scanner: &Scanner,
    cache: &PlanCache,
    key: &RedactionKey,
    b: Block<'_>,
    depth: usize,
) -> Plan {
    let finder = ScanFinder(scanner);
    let p = block_plan(&finder, cache, key, b.bytes, depth);
    let mut out = Plan {
        edits: p.edits.iter().map(|e| shifted(e, b.start)).collect(),
        values: p.values.clone(),
    };
    if let Some(window) = b.seam_after {
        let seam = seam_width(scanner);
        let mut crossing = Plan::default();
        seam_plan(&mut crossing, &finder, key, window, seam, seam);
        let at = b.start + b.bytes.len() - seam;
        out.edits
            .extend(crossing.edits.iter().map(|e| shifted(e, at)));
        out.values.extend(crossing.values);
    }
    out
}

/// A raw finding that crosses the cut at `cut`, which neither block beside it could see whole.
fn seam_plan(
    out: &mut Plan,
    finder: &ScanFinder<'_>,
    key: &RedactionKey,
    data: &[u8],
    cut: usize,
    seam: usize,
) {
    let window: Range<usize> = cut.saturating_sub(seam)..(cut + seam).min(data.len());
    for s in finder.find(&data[window.clone()]) {
        let (a, b) = (s.start + window.start, s.end + window.start);
        if a < cut && b > cut {
            out.add(key, a..b, &data[a..b], &s.rule, "raw");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gate_scan::ScanConfig;

    fn scanner() -> Scanner {
        Scanner::new(ScanConfig::builtin().unwrap()).unwrap()
    }

    fn key() -> RedactionKey {
        RedactionKey::from_bytes([5; 32])
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
                content.push_str(&format!(" key \\u0041KIA{}{} ", "QWERTYUIOP", "ASDFGH"));
            }
            s.push_str(&format!("{{\"role\":\"user\",\"content\":\"{content}\"}}"));
        }
        s.push_str("]}");
        s.into_bytes()
    }

    #[test]
    fn cuts_found_while_a_body_arrives_are_the_whole_bodys_cuts() {
        let body = conversation(40, None);
        let whole = cuts(&body);
        assert!(whole.len() > 5, "the body has cuts: {whole:?}");
        for step in [1, 3, 4, 5, 977, 4096, 16 * 1024, 100_000] {
            let mut c = Cutter::default();
            let mut blocks = Vec::new();
            let mut end = 0;
            while end < body.len() {
                end = (end + step).min(body.len());
                blocks.extend(c.push(&body[..end]));
            }
            let starts: Vec<usize> = std::iter::once(0).chain(c.cuts.iter().copied()).collect();
            assert_eq!(starts, whole, "pushed {step} bytes at a time");
            // Every block but the last (still open at the end) was reported, in order.
            let expect: Vec<Range<usize>> = whole.windows(2).map(|w| w[0]..w[1]).collect();
            assert_eq!(blocks, expect, "pushed {step} bytes at a time");
            // The same given only the body from the last block reported on.
            let mut c = Cutter::default();
            let (mut blocks, mut end, mut from) = (Vec::new(), 0, 0);
            while end < body.len() {
                end = (end + step).min(body.len());
                let done = c.push_at(&body[from..end], from);
                from = done.last().map_or(from, |r| r.end);
                blocks.extend(done);
            }
            assert_eq!(blocks, expect, "pushed {step} bytes at a time, tail only");
        }
    }

    #[test]
    fn blocks_warmed_early_are_cache_hits_and_plan_the_same() {
        let sc = scanner();
        let cache = PlanCache::new(1024);
        let body = conversation(20, Some(11));
        let mut c = Cutter::default();
        let mut warmed = 0;
        for end in (0..=body.len()).step_by(5000).chain([body.len()]) {
            for r in c.push(&body[..end]) {
                warm(&sc, &cache, &key(), &body[r], 2);
                warmed += 1;
            }
        }
        assert!(warmed > 3);
        let before = cache.stats();
        let p = plan(&sc, &cache, &key(), &body, 2);
        let after = cache.stats();
        assert_eq!(
            after.hits - before.hits,
            warmed,
            "every warmed block is a hit"
        );
        assert_eq!(
            after.misses - before.misses,
            1,
            "only the last block is planned now"
        );
        let whole = view::plan(&body, &ScanFinder(&sc), &key(), 2);
        assert_eq!(p.apply(&body), whole.apply(&body));
        assert_eq!(p.findings().len(), 1);
    }

    #[test]
    fn same_redaction_as_planning_the_whole_body() {
        let sc = scanner();
        let cache = PlanCache::new(1024);
        for at in [Some(0), Some(7), Some(19), None] {
            let body = conversation(20, at);
            let whole = view::plan(&body, &ScanFinder(&sc), &key(), 2);
            let cached = plan(&sc, &cache, &key(), &body, 2);
            assert_eq!(cached.apply(&body), whole.apply(&body), "secret at {at:?}");
            assert_eq!(cached.findings().len(), usize::from(at.is_some()));
        }
    }

    #[test]
    fn a_repeated_history_is_all_cache_hits() {
        let sc = scanner();
        let cache = PlanCache::new(1024);
        let turn1 = conversation(20, Some(3));
        let _ = plan(&sc, &cache, &key(), &turn1, 2);
        let before = cache.stats();
        // The next turn repeats the history and adds one message.
        let turn2 = conversation(21, Some(3));
        let found = plan(&sc, &cache, &key(), &turn2, 2);
        let after = cache.stats();
        assert_eq!(
            found.findings().len(),
            1,
            "the escaped secret in the history is still found"
        );
        // The block that ended the old body now ends differently (the new message follows
        // it), and the new message is new: at most those two are planned again.
        let new_misses = after.misses - before.misses;
        assert!(
            new_misses <= 2,
            "only the tail is planned again, not {new_misses} blocks"
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
        let cache = PlanCache::new(16);
        let mut body = vec![b'x'; MIN_BLOCK];
        body.extend_from_slice(b" zqx9abcd},");
        let cut = body.len();
        body.extend_from_slice(b"{\"role\"efgh ");
        body.extend_from_slice(&vec![b'y'; MIN_CACHED_BODY]);
        assert_eq!(cuts(&body), vec![0, cut]);
        let p = plan(&sc, &cache, &key(), &body, 0);
        assert_eq!(p.findings().len(), 1);
        let e = &p.edits[0];
        assert!(e.range.start < cut && e.range.end > cut);
    }
}
