//! The keyword prefilter: every keyword and known-value form, found by an Aho-Corasick DFA
//! built here in the form its walk wants (byte classes, premultiplied ids) and walked by hand:
//! eight parts of the input in lock step (a DFA walk is bound by the latency of one table load
//! per byte; independent walks overlap those latencies), one table load per byte and lane
//! through a power-of-two mask (no bounds check), match states marked by a flag bit so that
//! one test per step tells whether any lane needs a look. Larger inputs look up, per byte, a
//! reference to the table offset by the byte's class, so that a lane's chain from one state to
//! the next is a mask and a load.
use crate::error::ScanError;

/// A match state reached: every (overlapping) keyword or known-value form ending at `end`
/// that the state matches ([`Prefilter::matches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) end: usize,
    /// The state's index (breadth-first number; [`Prefilter::match_lists`] is in this order).
    pub(crate) state: u32,
}

/// Lanes walked in lock step. One step of a lane ([`ByRow`]: the byte's row, a mask, the table
/// load; [`ByClass`]: the byte's class, an add, a mask, the table load) waits on the previous
/// step's table load; more lanes overlap more of those waits. With every lane's
/// bytes in one stack buffer the lanes need no pointer registers: eight lanes keep all states
/// in registers and beat five and six on the chat bodies (fastest of N scans, ~4 %), at the
/// same speed on the adversarial one; ten are slower, twelve spill.
pub(crate) const LANES: usize = 8;
/// From this size on, each lane's bytes are copied to the stack [`BLOCK`] bytes at a time;
/// below, [`SMALL_BLOCK`] at a time (zeroing the larger buffer would cost more than walking a
/// few KiB).
pub(crate) const LANE_MIN: usize = 16 * 1024;
/// Bytes of each lane copied to the stack at a time (all lanes' blocks stay in L1).
const BLOCK: usize = 2048;
const SMALL_BLOCK: usize = 256;
/// The shortest lane segment: below, one walk is as fast. A segment is also at least as long as
/// a lane's warm-up (the longest pattern): a lane step costs about a third of a step of one walk
/// (whose every step waits on the one before), so even then the lanes cost less.
const MIN_SEGMENT: usize = 32;
/// Lane segments from this size on reserve room for their hits up front.
const RESERVE_MIN: usize = 4096;
/// From this input size on the lanes step through [`ByRow`], below through [`ByClass`]:
/// making the 256 row references costs about a thousand instructions and a step saves one
/// (callgrind, the chat body in pieces: 2 KiB +2 %, 4 KiB -5 %, 8 KiB -7 %, whole -10 %;
/// fastest of 500, 8 KiB pieces: 842-853 against 783-799 MiB/s).
const ROWS_MIN: usize = 8192;
/// Entries after the table proper, so that the table offset by any class is as long as the
/// table ([`ByRow`]).
const ROW_PAD: usize = 256;

/// Set in the id of every match state.
const MATCH: u32 = 1 << 31;
/// Largest transition table (entries); ids stay below [`MATCH`].
const MAX_TABLE: usize = 1 << 30;

/// One DFA step: the state after reading a byte of class `class` in state `sid`.
trait Table {
    fn next(&self, sid: u32, class: u8) -> u32;
}

/// A table of exactly `N` entries (a power of two): the mask keeps every index in range (so
/// there is no bounds check) and drops the [`MATCH`] flag.
impl<const N: usize> Table for [u32; N] {
    #[inline(always)]
    fn next(&self, sid: u32, class: u8) -> u32 {
        self[(sid.wrapping_add(u32::from(class)) as usize) & (N - 1)]
    }
}

/// One lane step: the state after reading `byte` in state `sid`.
trait Step {
    fn step(&self, sid: u32, byte: u8) -> u32;
}

/// A step through the byte's class: `table[(sid + class) & mask]`. The dependency from one
/// state to the next is an add, a mask and a load.
struct ByClass<'a, T: ?Sized> {
    t: &'a T,
    /// A copy, on the stack of the walk that owns this.
    classes: [u8; 256],
}

impl<T: Table + ?Sized> Step for ByClass<'_, T> {
    #[inline(always)]
    fn step(&self, sid: u32, byte: u8) -> u32 {
        self.t.next(sid, self.classes[usize::from(byte)])
    }
}

/// A step through a row reference per byte: the table of `S` entries starting at the byte's
/// class, indexed by the masked state (the same entry as [`ByClass`]'s). The row reference
/// does not depend on the state, so the dependency from one state to the next is a mask and a
/// load (one add shorter than [`ByClass`]'s).
struct ByRow<'a, const S: usize> {
    rows: [&'a [u32; S]; 256],
}

impl<'a, const S: usize> ByRow<'a, S> {
    /// `trans` holds the table (`S` entries, `t`) and [`ROW_PAD`] entries after it.
    fn new(trans: &'a [u32], t: &'a [u32; S], classes: &[u8; 256]) -> Self {
        let mut rows = [t; 256];
        for (row, &c) in rows.iter_mut().zip(classes) {
            let c = usize::from(c);
            // The fallback is never taken: a class is below 256, and `hits_sized` checks that
            // the padding is there, so every class's row is whole.
            debug_assert!(c + S <= trans.len());
            *row = trans
                .get(c..c + S)
                .and_then(|r| <&[u32; S]>::try_from(r).ok())
                .unwrap_or(t);
        }
        ByRow { rows }
    }
}

impl<const S: usize> Step for ByRow<'_, S> {
    #[inline(always)]
    fn step(&self, sid: u32, byte: u8) -> u32 {
        self.rows[usize::from(byte)][(sid as usize) & (S - 1)]
    }
}

/// Any other table size (not built today): checked indexing.
impl Table for [u32] {
    #[inline(always)]
    fn next(&self, sid: u32, class: u8) -> u32 {
        let i = ((sid & !MATCH) as usize).wrapping_add(usize::from(class));
        self.get(i).copied().unwrap_or(0)
    }
}

/// The keyword automaton in the form the walk wants.
pub(crate) struct Prefilter {
    /// `trans[id + class]` is the next state's id. Ids are state index times the row length
    /// (0 is the start state), with [`MATCH`] set for match states; the length is a power of
    /// two. A row holds one entry per class and then the state's index (so that recording a
    /// match needs no division).
    trans: Vec<u32>,
    /// Byte classes: bytes no pattern holds (in either ASCII case) behave alike.
    classes: [u8; 256],
    /// Entries per row: the class count plus one.
    row: u32,
    /// Per state index: the range of `matches` its matches occupy.
    match_ranges: Vec<(u32, u32)>,
    /// (pattern, pattern length) of every match of every match state.
    matches: Vec<(u32, u32)>,
    pub(crate) max_len: usize,
}

fn build_error(e: impl std::fmt::Display) -> ScanError {
    ScanError::Build(format!("keyword prefilter: {e}"))
}

impl Prefilter {
    /// An ASCII case-insensitive automaton reporting every (overlapping) occurrence of every
    /// pattern: a trie over byte classes, completed into a DFA breadth first (a missing
    /// transition is the failure state's), matches of a state being its own patterns followed
    /// by its failure state's (the order aho-corasick reports them in).
    pub(crate) fn new(patterns: &[Vec<u8>]) -> Result<Prefilter, ScanError> {
        const NONE: u32 = u32::MAX;
        let mut classes = [0u8; 256];
        let mut stride: u32 = 1;
        for &b in patterns.iter().flatten() {
            let lower = b.to_ascii_lowercase();
            if classes[usize::from(lower)] == 0 {
                let class = u8::try_from(stride).map_err(build_error)?;
                classes[usize::from(lower)] = class;
                classes[usize::from(b.to_ascii_uppercase())] = class;
                stride += 1;
            }
        }
        let width = stride as usize;
        let row = width + 1;
        let row_len = u32::try_from(row).map_err(build_error)?;
        // The trie: `goto[s * width + c]` is the child of node `s` on class `c`.
        let mut goto: Vec<u32> = vec![NONE; width];
        let mut own: Vec<Vec<u32>> = vec![Vec::new()];
        let mut max_len = 0;
        for (pid, p) in patterns.iter().enumerate() {
            if p.is_empty() {
                return Err(build_error("empty keyword"));
            }
            max_len = max_len.max(p.len());
            let mut node = 0usize;
            for &b in p {
                let at = node * width + usize::from(classes[usize::from(b)]);
                if goto[at] == NONE {
                    let child = u32::try_from(own.len()).map_err(build_error)?;
                    goto[at] = child;
                    goto.resize(goto.len() + width, NONE);
                    own.push(Vec::new());
                }
                node = goto[at] as usize;
            }
            own[node].push(u32::try_from(pid).map_err(build_error)?);
        }
        let nodes = own.len();
        if nodes.saturating_mul(row) > MAX_TABLE {
            return Err(build_error("too many keywords and known values"));
        }
        // Breadth-first order: shallow (hot) states get nearby ids, and every failure state
        // comes before the states failing to it.
        let mut order: Vec<u32> = vec![0];
        let mut index_of: Vec<u32> = vec![NONE; nodes];
        index_of[0] = 0;
        let mut fail: Vec<u32> = vec![0; nodes];
        // The DFA in breadth-first numbering, ids premultiplied by the stride.
        let mut rows: Vec<u32> = Vec::with_capacity(nodes * row);
        let mut match_ranges: Vec<(u32, u32)> = Vec::with_capacity(nodes);
        let mut matches: Vec<(u32, u32)> = Vec::new();
        let mut is_match: Vec<bool> = vec![false; nodes];
        let pattern_len = |pid: u32| -> Result<u32, ScanError> {
            let len = patterns.get(pid as usize).map_or(0, Vec::len);
            u32::try_from(len).map_err(build_error)
        };
        let mut i = 0;
        while let Some(&node) = order.get(i) {
            let node = node as usize;
            let f = fail[node] as usize;
            // Matches: its own patterns, then its failure state's.
            let from = u32::try_from(matches.len()).map_err(build_error)?;
            for &pid in &own[node] {
                matches.push((pid, pattern_len(pid)?));
            }
            if node != 0 {
                let (ff, ft) = match_ranges[index_of[f] as usize];
                matches.extend_from_within(ff as usize..ft as usize);
            }
            let to = u32::try_from(matches.len()).map_err(build_error)?;
            is_match[node] = to > from;
            match_ranges.push((from, to));
            for c in 0..width {
                let child = goto[node * width + c];
                let next = if child != NONE {
                    // The child fails to where the failure state goes on this class.
                    fail[child as usize] = if node == 0 {
                        0
                    } else {
                        let fi = index_of[f] as usize * row + c;
                        order[(rows[fi] & !MATCH) as usize / row]
                    };
                    index_of[child as usize] = u32::try_from(order.len()).map_err(build_error)?;
                    order.push(child);
                    child as usize
                } else if node == 0 {
                    0
                } else {
                    let fi = index_of[f] as usize * row + c;
                    order[(rows[fi] & !MATCH) as usize / row] as usize
                };
                // `next` is final: its index and match flag are known once it is queued (its
                // matches are decided when it is processed; the flag is fixed up below).
                rows.push(index_of[next] * row_len);
            }
            rows.push(u32::try_from(i).map_err(build_error)?);
            i += 1;
        }
        for r in rows.chunks_exact_mut(row) {
            for id in r.iter_mut().take(width) {
                if is_match[order[*id as usize / row] as usize] {
                    *id |= MATCH;
                }
            }
        }
        let len = rows.len().next_power_of_two();
        let mut trans = rows;
        trans.resize(len + ROW_PAD, 0);
        Ok(Prefilter {
            trans,
            classes,
            row: row_len,
            match_ranges,
            matches,
            max_len,
        })
    }

    /// Heap bytes held.
    pub(crate) fn memory_usage(&self) -> usize {
        self.trans.len() * 4 + self.match_ranges.len() * 8 + self.matches.len() * 8
    }

    /// Every occurrence of every pattern (overlapping), ordered by end offset: the hits of
    /// each lane in turn (not copied into one vector).
    pub(crate) fn hits(&self, data: &[u8]) -> [Vec<Hit>; LANES] {
        macro_rules! sized {
            ($($bits:literal)*) => {
                match self.trans.len().saturating_sub(ROW_PAD).trailing_zeros() {
                    $($bits => {
                        if let Some(hits) = self.hits_sized::<{ 1 << $bits }>(data) {
                            return hits;
                        }
                    })*
                    _ => {}
                }
            };
        }
        sized!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26);
        self.hits_in(
            self.trans.as_slice(),
            data,
            None::<fn() -> ByClass<'static, [u32]>>,
        )
    }

    /// [`Prefilter::hits`] with the table's size known: no bounds checks, and rows for
    /// [`ByRow`]. `None` unless the table is `S` entries and the padding.
    fn hits_sized<const S: usize>(&self, data: &[u8]) -> Option<[Vec<Hit>; LANES]> {
        if self.trans.len() != S + ROW_PAD {
            return None;
        }
        let t = <&[u32; S]>::try_from(self.trans.get(..S)?).ok()?;
        let rows = || ByRow::new(&self.trans, t, &self.classes);
        Some(self.hits_in(t, data, Some(rows)))
    }

    /// Records state `sid` if it is a match state, reached after the byte at `pos`.
    #[inline(always)]
    fn record(&self, sid: u32, pos: usize, out: &mut Vec<Hit>) {
        if sid & MATCH == 0 {
            return;
        }
        let at = ((sid & !MATCH) as usize).wrapping_add(self.row as usize - 1);
        if let Some(&state) = self.trans.get(at) {
            out.push(Hit {
                end: pos + 1,
                state,
            });
        }
    }

    /// Whether any pattern occurs in `data` (one walk, stopping at the first match state; for
    /// short values, where building `hits` would cost more than the walk).
    pub(crate) fn is_match(&self, data: &[u8]) -> bool {
        let t = self.trans.as_slice();
        let mut sid = 0;
        data.iter().any(|&b| {
            sid = t.next(sid, self.classes[usize::from(b)]);
            sid & MATCH != 0
        })
    }

    /// Per match state, by [`Hit::state`]: (pattern, pattern length) of every pattern its
    /// hits end, in the order aho-corasick reports them (for the scanner to lay out what each
    /// state's hits lead to).
    pub(crate) fn match_lists(&self) -> impl Iterator<Item = &[(u32, u32)]> {
        self.match_ranges
            .iter()
            .map(|&(from, to)| self.matches.get(from as usize..to as usize).unwrap_or(&[]))
    }

    /// (pattern, pattern length) of every pattern ending at `hit.end`, in the order
    /// aho-corasick reports them.
    #[cfg(test)]
    pub(crate) fn matches(&self, hit: Hit) -> &[(u32, u32)] {
        self.match_ranges
            .get(hit.state as usize)
            .and_then(|&(from, to)| self.matches.get(from as usize..to as usize))
            .unwrap_or(&[])
    }

    /// Records the match states among `states`, reached after byte `i` of each lane's walk:
    /// lane `k` walked from `bases[k]` and keeps only the matches ending in its own segment
    /// (its warm-up steps before the segment, and lane 0's steps past it, belong to the
    /// neighbour).
    #[cold]
    #[inline(never)]
    fn record_lanes(
        &self,
        states: [u32; LANES],
        i: usize,
        bases: &[usize; LANES],
        seg: usize,
        lanes: &mut [Vec<Hit>],
    ) {
        for (k, (sid, out)) in states.into_iter().zip(lanes).enumerate() {
            if sid & MATCH == 0 {
                continue;
            }
            let pos = bases[k] + i;
            if (k * seg..(k + 1) * seg).contains(&pos) {
                self.record(sid, pos, out);
            }
        }
    }

    /// Walks `data[from..]` from state `sid`, recording matches; returns the final state.
    fn walk<T: Table + ?Sized>(
        &self,
        t: &T,
        data: &[u8],
        from: usize,
        mut sid: u32,
        out: &mut Vec<Hit>,
    ) -> u32 {
        for (pos, &b) in data.iter().enumerate().skip(from) {
            sid = t.next(sid, self.classes[usize::from(b)]);
            if sid & MATCH != 0 {
                self.record(sid, pos, out);
            }
        }
        sid
    }

    /// The hits, walked one chain at a time below the lanes' size and in lanes above it:
    /// through the rows `rows` makes (in the lanes' own frame, so that the walk addresses them
    /// from the stack pointer) from [`ROWS_MIN`] on when given, else through classes.
    fn hits_in<T: Table + ?Sized, R: Step>(
        &self,
        t: &T,
        data: &[u8],
        rows: Option<impl FnOnce() -> R>,
    ) -> [Vec<Hit>; LANES] {
        let seg = data.len() / LANES;
        // A lane begins `warm` bytes before its segment, so that it is in the state a walk
        // over everything before would be in (a state depends on that many bytes at most).
        let warm = self.max_len.saturating_sub(1);
        if seg < MIN_SEGMENT.max(warm) {
            let mut lanes: [Vec<Hit>; LANES] = Default::default();
            self.walk(t, data, 0, 0, &mut lanes[0]);
            return lanes;
        }
        let by_class = || ByClass {
            t,
            classes: self.classes,
        };
        match rows {
            Some(rows) if data.len() >= LANE_MIN => {
                self.lanes_in::<T, _, BLOCK>(t, rows, data, seg, warm)
            }
            Some(rows) if data.len() >= ROWS_MIN => {
                self.lanes_in::<T, _, SMALL_BLOCK>(t, rows, data, seg, warm)
            }
            _ if data.len() >= LANE_MIN => {
                self.lanes_in::<T, _, BLOCK>(t, by_class, data, seg, warm)
            }
            _ => self.lanes_in::<T, _, SMALL_BLOCK>(t, by_class, data, seg, warm),
        }
    }

    /// The lock-step walk of `LANES` segments of `seg` bytes (the last lane goes on to the
    /// end), each lane's next `B` bytes copied to the stack at a time.
    #[inline(never)]
    fn lanes_in<T: Table + ?Sized, St: Step, const B: usize>(
        &self,
        t: &T,
        step: impl FnOnce() -> St,
        data: &[u8],
        seg: usize,
        warm: usize,
    ) -> [Vec<Hit>; LANES] {
        let mut lanes: [Vec<Hit>; LANES] = Default::default();
        // Lane k walks `steps` bytes from `bases[k]`: its warm-up and then its segment (lane
        // 0 has nothing to warm up on and walks on past its segment instead, unrecorded), so
        // that all lanes take the same number of steps, from the start state.
        let steps = seg + warm;
        let bases: [usize; LANES] = std::array::from_fn(|k| (k * seg).saturating_sub(warm));
        let mut states = [0u32; LANES];
        // Room for a match state every 16 bytes (the adversarial benchmark body has one every
        // 25): growing a lane's vector copies it. Small scans (the proxy's seams and decoded
        // runs, most with no hit at all) allocate only for a hit.
        if seg >= RESERVE_MIN {
            for lane in &mut lanes {
                lane.reserve(seg / 16);
            }
        }
        // On the stack: the step's tables (a copy of the class table, or the row references),
        // and each block of every lane side by side at fixed distances, so that one index
        // register addresses all lanes' bytes from the stack pointer (with a pointer per lane
        // the loop runs out of registers and spills lane states, which puts a store-to-load
        // forward into their chains).
        let step = step();
        let mut buf = [[0u8; B]; LANES];
        let mut at = 0;
        while at < steps {
            let len = B.min(steps - at);
            for (dst, &base) in buf.iter_mut().zip(&bases) {
                let from = base + at;
                if let (Some(dst), Some(src)) = (dst.get_mut(..len), data.get(from..from + len)) {
                    dst.copy_from_slice(src);
                }
            }
            for i in 0..len {
                let mut any = 0;
                for (s, lane) in states.iter_mut().zip(&buf) {
                    *s = step.step(*s, lane[i]);
                    any |= *s;
                }
                if any & MATCH != 0 {
                    // A copy made only here keeps `states` in registers.
                    let snapshot: [u32; LANES] = std::array::from_fn(|k| states[k]);
                    self.record_lanes(snapshot, at + i, &bases, seg, &mut lanes);
                }
            }
            at += len;
        }
        if let Some(last) = lanes.last_mut() {
            self.walk(t, data, LANES * seg, states[LANES - 1], last);
        }
        lanes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (start, end, pattern) of every pattern occurrence the hits stand for.
    /// The prefilter of `patterns` and the ASCII-case-insensitive Aho-Corasick automaton it
    /// is checked against.
    fn with_reference(patterns: &[Vec<u8>]) -> (Prefilter, aho_corasick::AhoCorasick) {
        let pf = Prefilter::new(patterns).unwrap();
        let reference = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(patterns)
            .unwrap();
        (pf, reference)
    }

    fn expand(pf: &Prefilter, hits: &[Hit]) -> Vec<(usize, usize, u32)> {
        hits.iter()
            .flat_map(|&h| {
                pf.matches(h)
                    .iter()
                    .map(move |&(p, len)| (h.end - len as usize, h.end, p))
            })
            .collect()
    }

    #[test]
    fn lane_walk_finds_exactly_what_aho_corasick_finds() {
        let patterns: Vec<Vec<u8>> = ["ghp_", "sk-ant-", "sk-", "password", "key-", "akia", "a"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let (pf, reference) = with_reference(&patterns);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        // One walk; the smallest lanes (segments of MIN_SEGMENT bytes) and odd sizes around
        // them; steps through classes and through rows (from ROWS_MIN on); small and large
        // stack blocks.
        let smallest = LANES * MIN_SEGMENT;
        for size in [
            0,
            1,
            100,
            smallest - 1,
            smallest,
            smallest + 1,
            smallest + 7,
            1000,
            4099,
            ROWS_MIN - 1,
            ROWS_MIN,
            LANE_MIN - 1,
            LANE_MIN,
            LANE_MIN + 3,
            100_003,
        ] {
            let mut data: Vec<u8> = (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b"abcdefghijklmnopqrstuvwxyzKPS_-\xff"[(x % 32) as usize]
                })
                .collect();
            // Plant keywords across every lane boundary.
            for k in 1..LANES {
                let at = (size / LANES * k).saturating_sub(3);
                for (i, b) in b"Sk-AnT-".iter().enumerate() {
                    if at + i < size {
                        data[at + i] = *b;
                    }
                }
            }
            let mut want: Vec<(usize, usize, u32)> = reference
                .find_overlapping_iter(&data)
                .map(|m| (m.start(), m.end(), m.pattern().as_u32()))
                .collect();
            want.sort();
            let mut checked = 0;
            for table in [true, false] {
                let hits = if table {
                    pf.hits(&data)
                } else {
                    // The checked-indexing walk, for table sizes without a fixed-size walk.
                    pf.hits_in(
                        pf.trans.as_slice(),
                        &data,
                        None::<fn() -> ByClass<'static, [u32]>>,
                    )
                }
                .concat();
                let got = expand(&pf, &hits);
                let mut sorted = got.clone();
                sorted.sort();
                assert_eq!(sorted, want, "size {size}");
                assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "ordered by end");
                checked += 1;
            }
            assert_eq!(checked, 2);
        }
    }

    #[test]
    fn is_match_agrees_with_aho_corasick_on_short_values() {
        let patterns: Vec<Vec<u8>> = ["your", "xxxx", "${", "<", "self.", "null"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let (pf, reference) = with_reference(&patterns);
        let mut rng = fastrand::Rng::with_seed(3);
        let mut matched = 0;
        for _ in 0..5000 {
            let len = rng.usize(..24);
            let value: Vec<u8> = (0..len)
                .map(|_| b"yourxXnulSEf.${<l0"[rng.usize(..18)])
                .collect();
            assert_eq!(pf.is_match(&value), reference.is_match(&value), "{value:?}");
            matched += usize::from(pf.is_match(&value));
        }
        // Both answers occur.
        assert!((500..4500).contains(&matched), "{matched} of 5000 matched");
    }

    #[test]
    fn lanes_warm_up_over_the_longest_pattern_before_their_segment() {
        // A 150-byte pattern: each lane begins 149 bytes before its segment, and segments are
        // at least that long; the pattern across every other lane boundary, a short one
        // across the rest, at the smallest sizes that get lanes and larger ones.
        let long: Vec<u8> = (0..150u32).map(|i| b'a' + (i % 23) as u8).collect();
        let warm = long.len() - 1;
        let patterns = vec![long.clone(), b"ghp_".to_vec()];
        let (pf, reference) = with_reference(&patterns);
        for size in [
            warm * LANES - 1,
            warm * LANES,
            warm * LANES + 5,
            5000,
            LANE_MIN + 11,
        ] {
            let mut data = vec![b'.'; size];
            let seg = size / LANES;
            for k in 1..LANES {
                let (at, planted): (usize, &[u8]) = if k % 2 == 1 {
                    ((seg * k).saturating_sub(75), &long)
                } else {
                    (seg * k - 2, b"GHP_")
                };
                if let Some(dst) = data.get_mut(at..at + planted.len()) {
                    dst.copy_from_slice(planted);
                }
            }
            let mut want: Vec<(usize, usize, u32)> = reference
                .find_overlapping_iter(&data)
                .map(|m| (m.start(), m.end(), m.pattern().as_u32()))
                .collect();
            want.sort();
            let got = expand(&pf, &pf.hits(&data).concat());
            assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "ordered by end");
            let mut got = got;
            got.sort();
            assert_eq!(got, want, "size {size}");
            assert_eq!(
                want.len(),
                LANES - 1,
                "size {size}: every planted pattern found"
            );
        }
    }

    #[test]
    fn table_agrees_with_the_aho_corasick_dfa_on_every_byte() {
        let patterns: Vec<Vec<u8>> = [&b"Key"[..], b"to~ken", b"a\x00b", b"\xffz", b"PASSWORD"]
            .iter()
            .map(|p| p.to_vec())
            .collect();
        let (pf, reference) = with_reference(&patterns);
        // Every two-byte string followed by each pattern: all transitions out of shallow
        // states, and every pattern reached from them.
        let mut data = Vec::new();
        for a in 0..=255u8 {
            for b in (0..=255u8).step_by(3) {
                data.extend_from_slice(&[a, b]);
                data.extend_from_slice(&patterns[usize::from(a) % patterns.len()]);
            }
        }
        let mut want: Vec<(usize, usize, u32)> = reference
            .find_overlapping_iter(&data)
            .map(|m| (m.start(), m.end(), m.pattern().as_u32()))
            .collect();
        want.sort();
        let mut got = expand(&pf, &pf.hits(&data).concat());
        got.sort();
        assert_eq!(got, want);
    }
}
