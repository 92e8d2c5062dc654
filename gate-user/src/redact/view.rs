//! Seeing through encodings: a body is scanned as it is, with JSON string escapes undone, with
//! URL encoding undone, and inside base64 blocks (depth-limited), so a secret cannot hide behind
//! an encoding. Every finding is mapped back to the raw bytes, and the redaction is applied
//! there: the rest of the body stays byte-for-byte what the agent sent.
use std::ops::Range;

use base64::Engine as _;

use super::{Edit, RedactionKey, Span, bits};

/// Anything that finds secrets in a byte string (the scanner, in production).
pub trait Finder {
    fn find(&self, data: &[u8]) -> Vec<Span>;
}

impl<F: Fn(&[u8]) -> Vec<Span>> Finder for F {
    fn find(&self, data: &[u8]) -> Vec<Span> {
        self(data)
    }
}

/// A decoded copy of (part of) the raw body, with where each decoded byte came from.
#[derive(Debug)]
pub struct View {
    pub text: Vec<u8>,
    /// `map[i]` is the raw offset where decoded byte `i` starts; `map[text.len()]` is the end.
    map: Vec<usize>,
}

impl View {
    /// The raw range covering decoded `range`.
    pub fn raw_range(&self, range: Range<usize>) -> Range<usize> {
        let end = range.end.min(self.text.len());
        let start = range.start.min(end);
        self.map[start]..self.map[end]
    }

    /// The decoded text and the raw offset of each of its bytes (without the end entry).
    pub fn into_parts(mut self) -> (Vec<u8>, Vec<usize>) {
        self.map.pop();
        (self.text, self.map)
    }
}

/// Undoes JSON string escapes (`\n`, `\"`, `\u0041`, surrogate pairs) wherever they appear.
/// None when no escape could hide a secret: only `\uXXXX` and `\/` can stand for characters a
/// credential is made of (the scanner's rules already read `\"` and `\n` as they are).
pub fn json_unescaped(raw: &[u8]) -> Option<View> {
    has_json_escape(raw).then(|| json_decode(raw, raw.len()).0)
}

/// Whether `raw` holds a JSON escape that makes [`json_unescaped`] decode it.
pub fn has_json_escape(raw: &[u8]) -> bool {
    raw.windows(2)
        .any(|w| w[0] == b'\\' && (w[1] == b'u' || w[1] == b'/'))
}

/// Undoes the JSON escapes of `raw` that begin before `stop` (those reach no further than 12
/// bytes past it), as [`json_unescaped`] does to all of `raw`; also returns where it stopped
/// (`stop` or the end of the escape across it), so a run can be decoded in pieces.
pub fn json_decode(raw: &[u8], stop: usize) -> (View, usize) {
    let mut text = Vec::with_capacity(raw.len());
    let mut map = Vec::with_capacity(raw.len() + 1);
    let mut i = 0;
    while i < stop.min(raw.len()) {
        if raw[i] != b'\\' || i + 1 >= raw.len() {
            text.push(raw[i]);
            map.push(i);
            i += 1;
            continue;
        }
        let simple = match raw[i + 1] {
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            _ => None,
        };
        if let Some(c) = simple {
            text.push(c);
            map.push(i);
            i += 2;
            continue;
        }
        if raw[i + 1] == b'u'
            && let Some(cp) = hex4(raw.get(i + 2..i + 6))
        {
            let (ch, used) = if (0xD800..0xDC00).contains(&cp)
                && raw.get(i + 6..i + 8) == Some(b"\\u")
                && let Some(lo) = hex4(raw.get(i + 8..i + 12))
                && (0xDC00..0xE000).contains(&lo)
            {
                (
                    char::from_u32(0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)),
                    12,
                )
            } else {
                (char::from_u32(cp), 6)
            };
            let ch = ch.unwrap_or('\u{FFFD}');
            let mut buf = [0u8; 4];
            for &b in ch.encode_utf8(&mut buf).as_bytes() {
                text.push(b);
                map.push(i);
            }
            i += used;
            continue;
        }
        text.push(raw[i]);
        map.push(i);
        i += 1;
    }
    map.push(i);
    (View { text, map }, i)
}

fn hex4(b: Option<&[u8]>) -> Option<u32> {
    let s = std::str::from_utf8(b?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

fn hexval(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Undoes `%XX` URL encoding (and `+` for space) wherever it appears. None without any `%XX`.
pub fn url_decoded(raw: &[u8]) -> Option<View> {
    has_url_escape(raw).then(|| url_decode(raw, raw.len()).0)
}

/// Whether `raw` holds a `%XX` that makes [`url_decoded`] decode it.
pub fn has_url_escape(raw: &[u8]) -> bool {
    raw.windows(3)
        .any(|w| w[0] == b'%' && hexval(w[1]).is_some() && hexval(w[2]).is_some())
}

/// Undoes the URL encoding of `raw` that begins before `stop` (an escape reaches 2 bytes past
/// it), as [`url_decoded`] does to all of `raw`; also returns where it stopped.
pub fn url_decode(raw: &[u8], stop: usize) -> (View, usize) {
    let mut text = Vec::with_capacity(raw.len());
    let mut map = Vec::with_capacity(raw.len() + 1);
    let mut i = 0;
    while i < stop.min(raw.len()) {
        if raw[i] == b'%'
            && i + 2 < raw.len()
            && let (Some(h), Some(l)) = (hexval(raw[i + 1]), hexval(raw[i + 2]))
        {
            text.push(h * 16 + l);
            map.push(i);
            i += 3;
            continue;
        }
        text.push(if raw[i] == b'+' { b' ' } else { raw[i] });
        map.push(i);
        i += 1;
    }
    map.push(i);
    (View { text, map }, i)
}

/// Bytes a credential, its escapes and the assignment around it are made of (no space and no
/// bare quote: an escaped or URL-encoded token sits inside one string or one parameter). A
/// table, since long runs are walked byte by byte.
const TOKEN_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'%' | b'\\' | b'+' | b'/' | b'=' | b'_' | b'.' | b'-' | b'~' | b':' | b'&'
            );
        i += 1;
    }
    t
};

#[inline]
fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTE[b as usize]
}

/// A byte no decoding layer's run can contain: a body cut just after one is cut between runs.
#[inline]
pub fn between_runs(b: u8) -> bool {
    !is_token_byte(b)
}

/// The maximal run of token bytes around each hit (hits in order), each run once. The JSON and
/// URL layers decode only these runs, found from their escapes with memchr, so a large body
/// costs one vectorised pass plus the few runs that matter.
fn runs_around(raw: &[u8], hits: impl Iterator<Item = usize>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut covered = 0;
    for h in hits {
        if h < covered {
            continue;
        }
        let mut start = h;
        while start > covered && is_token_byte(raw[start - 1]) {
            start -= 1;
        }
        let mut end = h;
        while end < raw.len() && is_token_byte(raw[end]) {
            end += 1;
        }
        out.push(start..end);
        covered = end.max(h + 1);
    }
    out
}

/// Runs holding a JSON escape that can stand for a credential's characters (`\uXXXX`, `\/`).
fn json_runs(raw: &[u8]) -> Vec<Range<usize>> {
    bits::json_runs(bits::Level::best(), raw)
}

/// [`json_runs`] with `masks` giving a word's backslashes and its `u` and `/` bytes. Looked
/// for as pairs, one word at a time: conversations are full of `\n` and `\"`, which a search
/// for the backslash alone would stop at.
#[inline(always)]
pub(super) fn json_runs_by(raw: &[u8], masks: impl bits::Masks) -> Vec<Range<usize>> {
    // Pair starts at `at + j` for each bit j of `pending`, not yet handed out; the word
    // after them starts at `base`.
    let (mut pending, mut at, mut base) = (0u64, 0usize, 0usize);
    // Whether the last byte of the word before `base` is a backslash.
    let mut carry = false;
    let hits = std::iter::from_fn(move || {
        while pending == 0 {
            if base >= raw.len() {
                return None;
            }
            let (slash, after) = match raw[base..].first_chunk::<64>() {
                Some(word) => masks.json(word),
                None => {
                    // The last, partial word, padded with bytes that are neither.
                    let mut word = [0u8; 64];
                    word[..raw.len() - base].copy_from_slice(&raw[base..]);
                    masks.json(&word)
                }
            };
            // Bit 63 of `slash & (after >> 1)` is clear: a pair from the previous word's
            // last byte fits below this word's pairs, one byte before the word.
            let across = carry && after & 1 != 0;
            carry = slash >> 63 != 0;
            (pending, at) = if across {
                (((slash & (after >> 1)) << 1) | 1, base - 1)
            } else {
                (slash & (after >> 1), base)
            };
            base += 64;
        }
        let j = pending.trailing_zeros() as usize;
        pending &= pending - 1;
        Some(at + j)
    });
    runs_around(raw, hits)
}

/// Runs holding a `%XX` URL escape.
fn url_runs(raw: &[u8]) -> Vec<Range<usize>> {
    let hits = memchr::memchr_iter(b'%', raw).filter(|&i| {
        raw.get(i + 1).copied().and_then(hexval).is_some()
            && raw.get(i + 2).copied().and_then(hexval).is_some()
    });
    runs_around(raw, hits)
}

/// Shortest base64 run worth decoding (18 decoded bytes).
pub const MIN_BASE64: usize = 24;

/// Base64 byte classes, one bit each (0: not a base64 byte).
const UPPER: u8 = 1;
const LOWER: u8 = 2;
const DIGIT: u8 = 4;
pub const STD_SYM: u8 = 8;
pub const URL_SYM: u8 = 16;

/// The class of every byte, so a run is walked with one table load per byte.
pub const B64_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'A'..=b'Z' => UPPER,
            b'a'..=b'z' => LOWER,
            b'0'..=b'9' => DIGIT,
            b'+' | b'/' => STD_SYM,
            b'-' | b'_' => URL_SYM,
            _ => 0,
        };
        i += 1;
    }
    t
};

/// Encoded data mixes upper case, lower case and digits, and uses one alphabet; identifiers,
/// paths and hex are skipped without decoding. `classes` is the union of the run's classes.
pub fn plausible_base64(classes: u8) -> bool {
    let needed = UPPER | LOWER | DIGIT;
    classes & needed == needed && classes & (STD_SYM | URL_SYM) != (STD_SYM | URL_SYM)
}

/// Maximal base64 runs (standard or URL-safe alphabet, optional `=` padding) of useful length.
/// The body is looked at 64 bytes at a time as a bit mask of its base64 bytes (with the
/// CPU's widest vector unit, [`bits`]); a run of [`MIN_BASE64`] set bits (found with shifts,
/// carried across words) is where a run is walked byte by byte. Text, whose words are short,
/// passes in whole words.
pub fn base64_runs(raw: &[u8]) -> Vec<Range<usize>> {
    bits::base64_runs(bits::Level::best(), raw)
}

/// [`base64_runs`] with `mask` as the bit mask of a word's base64 bytes.
#[inline(always)]
pub(super) fn base64_runs_by(raw: &[u8], mask: impl bits::Masks) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    // No run crosses `i`: it is 0, or just after a byte outside both alphabets.
    let mut i = 0;
    'scan: while i + MIN_BASE64 <= raw.len() {
        // Set bits ending the previous word, counted from `i` on.
        let mut carried = 0usize;
        let mut base = i;
        while base < raw.len() {
            let m = match raw[base..].first_chunk::<64>() {
                Some(word) => mask.base64(word),
                None => {
                    // The last, partial word, padded with bytes outside both alphabets.
                    let mut word = [0u8; 64];
                    word[..raw.len() - base].copy_from_slice(&raw[base..]);
                    mask.base64(&word)
                }
            };
            let start = if carried + m.trailing_ones() as usize >= MIN_BASE64 {
                Some(base - carried)
            } else {
                let y = runs_of_min_base64(m);
                (y != 0).then(|| base + y.trailing_zeros() as usize)
            };
            if let Some(start) = start {
                let (run, next) = walk_base64_run(raw, start);
                out.extend(run);
                i = next;
                continue 'scan;
            }
            carried = if m == u64::MAX {
                carried + 64
            } else {
                m.leading_ones() as usize
            };
            base += 64;
        }
        break;
    }
    out
}

/// Bit j set where bits j..j + MIN_BASE64 of `m` are all set (bits past 63 count as clear).
#[inline]
fn runs_of_min_base64(m: u64) -> u64 {
    const _: () = assert!(MIN_BASE64 == 24, "the shifts below make runs of 24");
    let r2 = m & (m >> 1);
    let r4 = r2 & (r2 >> 2);
    let r8 = r4 & (r4 >> 4);
    let r16 = r8 & (r8 >> 8);
    r16 & (r8 >> 16)
}

/// The maximal run of base64 bytes starting at `start` (with up to two `=` after it): the run,
/// if it is long and plausible enough, and where the search goes on.
fn walk_base64_run(raw: &[u8], start: usize) -> (Option<Range<usize>>, usize) {
    let mut classes = 0;
    let mut stop = start;
    while stop < raw.len() {
        let c = B64_CLASS[raw[stop] as usize];
        if c == 0 {
            break;
        }
        classes |= c;
        stop += 1;
    }
    let mut end = stop;
    while end < raw.len() && raw[end] == b'=' && end - stop < 2 {
        end += 1;
    }
    let run = (stop - start >= MIN_BASE64 && plausible_base64(classes)).then_some(start..end);
    (run, end)
}

/// Decodes a run with whichever alphabet fits; None if it is not valid base64. The engine
/// returned re-encodes in the same style: padded when the run's length is a multiple of four
/// (as standard base64 always is), unpadded otherwise.
fn decode_b64(run: &[u8]) -> Option<(Vec<u8>, base64::engine::GeneralPurpose)> {
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
    let url = memchr::memchr2(b'-', b'_', run).is_some();
    let alphabet = if url { &URL_SAFE } else { &STANDARD };
    let engine = b64_decoder(url);
    // Only text is scanned, and whether it is text shows in its first bytes: a long run whose
    // head is not (an image, say) is passed over without decoding the rest of it.
    if run.len() > TEXTY_HEAD_CHARS {
        let head = engine.decode(&run[..TEXTY_HEAD_CHARS]).ok()?;
        if !texty(&head) {
            return None;
        }
    }
    let decoded = engine.decode(run).ok()?;
    let padded = run.len().is_multiple_of(4);
    let style = GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new().with_encode_padding(padded),
    );
    Some((decoded, style))
}

/// The decoder [`decode_b64`] uses: the URL-safe alphabet when the run holds `-` or `_`, the
/// standard one otherwise, padding optional.
pub fn b64_decoder(url: bool) -> base64::engine::GeneralPurpose {
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let alphabet = if url { &URL_SAFE } else { &STANDARD };
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(alphabet, lenient)
}

/// How many decoded bytes [`texty`] looks at.
const TEXTY_HEAD: usize = 256;
/// Base64 characters that decode to at least [`TEXTY_HEAD`] bytes (whole groups of four).
pub const TEXTY_HEAD_CHARS: usize = TEXTY_HEAD.div_ceil(3) * 4;

/// Text-like enough to be worth scanning: most of the first bytes printable (images and other
/// binary blobs are skipped quickly).
pub fn texty(data: &[u8]) -> bool {
    let head = &data[..data.len().min(TEXTY_HEAD)];
    let printable = head
        .iter()
        .filter(|&&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        .count();
    !head.is_empty() && printable * 10 >= head.len() * 9
}

/// What scanning a body found: the edits that redact it, and each placeholder with its value
/// (for the vault). Values never leave memory.
#[derive(Debug, Default)]
pub struct Plan {
    pub edits: Vec<Edit>,
    pub values: Vec<(String, Vec<u8>)>,
}

impl Plan {
    /// Rules and placeholders of the edits that will be applied (overlaps removed).
    pub fn findings(&self) -> Vec<(String, String, &'static str)> {
        super::non_overlapping(&self.edits)
            .into_iter()
            .flat_map(|e| {
                e.findings
                    .iter()
                    .map(move |(r, p)| (r.clone(), p.clone(), e.layer))
            })
            .collect()
    }

    pub fn is_clean(&self) -> bool {
        self.edits.is_empty()
    }

    /// The body with every secret replaced by its placeholder.
    pub fn apply(&self, raw: &[u8]) -> Vec<u8> {
        super::apply_edits(raw, &self.edits)
    }

    /// Replaces `range` (holding `value`, as the layer decoded it) with its placeholder.
    pub fn add(
        &mut self,
        key: &RedactionKey,
        range: Range<usize>,
        value: &[u8],
        rule: &str,
        layer: &'static str,
    ) {
        let ph = key.placeholder(rule, value);
        self.values.push((ph.clone(), value.to_vec()));
        self.edits.push(Edit {
            range,
            replacement: ph.clone().into_bytes(),
            findings: vec![(rule.to_string(), ph)],
            layer,
        });
    }
}

/// A layer's decoder: a view of the bytes with its escapes undone, or None if it has none.
type Decoder = fn(&[u8]) -> Option<View>;
/// A layer's run finder: the parts of a body that hold its escapes.
type Runs = fn(&[u8]) -> Vec<Range<usize>>;

/// Between two decoded runs when they are scanned as one text.
const SEPARATOR: u8 = b'\n';

/// The findings in each view's text, as (view index, span in that text): the texts are joined
/// (newline between) and scanned in one call, since many small scans cost more than one large
/// one; a finding that crosses from one text into the next is not one, and the texts it
/// touches are scanned alone instead.
fn find_in_views(views: &[(Range<usize>, View)], finder: &dyn Finder) -> Vec<(usize, Span)> {
    let mut out = Vec::new();
    match views {
        [] => return out,
        [(_, only)] => {
            for s in finder.find(&only.text) {
                if s.start < s.end && s.end <= only.text.len() {
                    out.push((0, s));
                }
            }
            return out;
        }
        _ => {}
    }
    let mut joined = Vec::with_capacity(views.iter().map(|(_, v)| v.text.len() + 1).sum());
    let mut starts = Vec::with_capacity(views.len());
    for (_, v) in views {
        starts.push(joined.len());
        joined.extend_from_slice(&v.text);
        joined.push(SEPARATOR);
    }
    let part_of = |offset: usize| starts.partition_point(|&s| s <= offset) - 1;
    let mut alone: Vec<usize> = Vec::new();
    for s in finder.find(&joined) {
        if s.start >= s.end {
            continue;
        }
        let (first, last) = (part_of(s.start), part_of(s.end - 1));
        let base = starts[first];
        if first == last && s.end - base <= views[first].1.text.len() {
            out.push((
                first,
                Span {
                    start: s.start - base,
                    end: s.end - base,
                    rule: s.rule,
                },
            ));
        } else {
            alone.extend(first..=last);
        }
    }
    alone.sort_unstable();
    alone.dedup();
    for part in alone {
        let text = &views[part].1.text;
        for s in finder.find(text) {
            if s.start < s.end && s.end <= text.len() {
                out.push((part, s));
            }
        }
    }
    out
}

/// Finds every secret in `raw` through all layers (base64 nested up to `depth`).
pub fn plan(raw: &[u8], finder: &dyn Finder, key: &RedactionKey, depth: usize) -> Plan {
    let mut plan = Plan::default();
    for s in finder.find(raw) {
        if s.start < s.end && s.end <= raw.len() {
            plan.add(key, s.start..s.end, &raw[s.start..s.end], &s.rule, "raw");
        }
    }
    let more = layers(raw, finder, key, depth);
    plan.edits.extend(more.edits);
    plan.values.extend(more.values);
    plan
}

/// The secrets only the decoding layers see (JSON escapes, URL encoding, base64 up to
/// `depth`), not the raw bytes' own: every layer works inside runs of token or base64 bytes,
/// so `raw` may be any part of a body that begins and ends between such runs.
pub fn layers(raw: &[u8], finder: &dyn Finder, key: &RedactionKey, depth: usize) -> Plan {
    let mut plan = Plan::default();
    let layers: [(Decoder, Runs, &'static str); 2] = [
        (json_unescaped, json_runs, "json"),
        (url_decoded, url_runs, "url"),
    ];
    for (decode, runs, layer) in layers {
        let views: Vec<(Range<usize>, View)> = runs(raw)
            .into_iter()
            .filter_map(|region| decode(&raw[region.clone()]).map(|v| (region, v)))
            .collect();
        for (part, s) in find_in_views(&views, finder) {
            let (region, view) = &views[part];
            let r = view.raw_range(s.start..s.end);
            plan.add(
                key,
                r.start + region.start..r.end + region.start,
                &view.text[s.start..s.end],
                &s.rule,
                layer,
            );
        }
    }
    if depth > 0 {
        for run in base64_runs(raw) {
            let Some((decoded, engine)) = decode_b64(&raw[run.clone()]) else {
                continue;
            };
            if !texty(&decoded) {
                continue;
            }
            let inner = self::plan(&decoded, finder, key, depth - 1);
            if inner.is_clean() {
                continue;
            }
            let redacted = inner.apply(&decoded);
            let findings = inner
                .findings()
                .into_iter()
                .map(|(r, p, _)| (r, p))
                .collect();
            plan.values.extend(inner.values);
            plan.edits.push(Edit {
                range: run,
                replacement: engine.encode(&redacted).into_bytes(),
                findings,
                layer: "base64",
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_runs_by_word_are_the_bytewise_runs() {
        // Runs of every length around the threshold and the word size, in either alphabet
        // and mixed, padded or not, between separators, at every offset of a word.
        let pieces: [&[u8]; 12] = [
            b"Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4",
            b"aGVsbG8gd29ybGQ=",
            b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=",
            b"snake_case_identifier_name",
            b"a-b_c-d_E1",
            b"==",
            b" ",
            b"\\n",
            b"\"",
            b"x",
            b"AbCdEfGhIjKlMnOpQrStUvWx",
            b"0123456789abcdefABCDEF+/",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        for _ in 0..3_000 {
            let mut body = Vec::new();
            let n = next() % 40;
            for _ in 0..n {
                let p = pieces[next() % pieces.len()];
                let cut = next() % (p.len() + 1);
                body.extend_from_slice(&p[..cut.max(1)]);
            }
            assert_eq!(
                base64_runs(&body),
                reference_base64_runs(&body),
                "{:?}",
                String::from_utf8_lossy(&body)
            );
        }
        // Long runs: whole words of base64, and ones that end exactly at word boundaries.
        for len in [23, 24, 25, 63, 64, 65, 127, 128, 129, 200] {
            for lead in [0, 1, 40, 63, 64] {
                let mut body = vec![b' '; lead];
                body.extend((0..len).map(|k| b"Ab3"[k % 3]));
                body.extend_from_slice(b"= tail");
                assert_eq!(
                    base64_runs(&body),
                    reference_base64_runs(&body),
                    "len {len} lead {lead}"
                );
            }
        }
    }

    /// Base64-heavy bytes with every kind of break: long runs in either alphabet, `=`, and
    /// bytes next to the alphabets' ranges (`@ [ ` { / :` and non-ASCII).
    fn base64ish(len: usize, seed: u64) -> Vec<u8> {
        let odd: &[u8] = b"=@[`{:/.\x00\xff\x80 \n\"%+-_";
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                let r = (crate::redact::xorshift(&mut state) >> 20) as usize;
                if r.is_multiple_of(16) {
                    odd[(r / 16) % odd.len()]
                } else {
                    b"AZaz09QmFzZTY0aGVyZQ+/-_"[(r / 16) % 24]
                }
            })
            .collect()
    }

    /// `check` on every slice of `buf` of length 0..=300 starting at each of its first 64
    /// bytes (every alignment within a word); `buf` holds 364 bytes at least.
    fn at_every_length_and_lead(buf: &[u8], check: &dyn Fn(&[u8], &dyn std::fmt::Display)) {
        for len in 0..=300 {
            for lead in 0..64 {
                check(
                    &buf[lead..lead + len],
                    &format_args!("len {len} lead {lead}"),
                );
            }
        }
    }

    #[test]
    fn every_levels_base64_runs_are_the_bytewise_runs() {
        let levels = bits::Level::all_available();
        let check = |raw: &[u8], what: &dyn std::fmt::Display| {
            let want = reference_base64_runs(raw);
            for &level in &levels {
                assert_eq!(bits::base64_runs(level, raw), want, "{level:?} {what}");
            }
        };
        // Every length up to a few words, at every alignment within a word.
        at_every_length_and_lead(&base64ish(64 + 300, 7), &check);
        // Whole words of base64 broken by one byte of every value at every position.
        for b in 0..=255u8 {
            for at in 0..200 {
                let mut raw: Vec<u8> = (0..200).map(|k| b"Ab3+"[k % 4]).collect();
                raw[at] = b;
                check(&raw, &format_args!("byte {b} at {at}"));
            }
        }
        for (k, raw) in mixed_inputs().iter().enumerate() {
            check(raw, &format_args!("mixed input {k}"));
        }
        for seed in 0..200 {
            check(&base64ish(5000, seed), &format_args!("seed {seed}"));
        }
    }

    /// What [`json_runs`] found before it looked at masks: the pairs found with memmem.
    fn reference_json_runs(raw: &[u8]) -> Vec<Range<usize>> {
        let mut hits: Vec<usize> = memchr::memmem::find_iter(raw, b"\\u")
            .chain(memchr::memmem::find_iter(raw, b"\\/"))
            .collect();
        hits.sort_unstable();
        runs_around(raw, hits.into_iter())
    }

    /// Bytes rich in backslashes, `u` and `/`, token bytes and bytes between runs.
    fn escapeish(len: usize, seed: u64) -> Vec<u8> {
        let alphabet: &[u8] = b"\\\\\\uu//nA0\" x%_";
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                alphabet[(crate::redact::xorshift(&mut state) >> 20) as usize % alphabet.len()]
            })
            .collect()
    }

    #[test]
    fn every_levels_json_runs_are_the_memmem_runs() {
        let levels = bits::Level::all_available();
        let check = |raw: &[u8], what: &dyn std::fmt::Display| {
            let want = reference_json_runs(raw);
            for &level in &levels {
                assert_eq!(bits::json_runs(level, raw), want, "{level:?} {what}");
            }
        };
        // Every length up to a few words, at every alignment within a word.
        at_every_length_and_lead(&escapeish(64 + 300, 11), &check);
        // One pair (or a lone half of one) at every position, in text and between runs.
        for pair in [&b"\\u"[..], b"\\/", b"\\n", b"\\", b"u"] {
            for filler in [b'a', b' '] {
                for at in 0..200 {
                    let mut raw = vec![filler; 200];
                    let end = (at + pair.len()).min(raw.len());
                    raw[at..end].copy_from_slice(&pair[..end - at]);
                    check(&raw, &format_args!("{pair:?} at {at} in {filler}"));
                }
            }
        }
        for (k, raw) in mixed_inputs().iter().enumerate() {
            check(raw, &format_args!("mixed input {k}"));
        }
        for seed in 0..200 {
            check(&escapeish(5000, seed), &format_args!("seed {seed}"));
        }
    }

    /// A stand-in scanner: finds the literal token `SECRETTOKEN` followed by 8 digits.
    fn finder(data: &[u8]) -> Vec<Span> {
        let needle = b"SECRETTOKEN";
        let mut out = Vec::new();
        let mut i = 0;
        while i + needle.len() + 8 <= data.len() {
            if &data[i..i + needle.len()] == needle
                && data[i + needle.len()..i + needle.len() + 8]
                    .iter()
                    .all(u8::is_ascii_digit)
            {
                out.push(Span {
                    start: i,
                    end: i + needle.len() + 8,
                    rule: "test-token".into(),
                });
                i += needle.len() + 8;
            } else {
                i += 1;
            }
        }
        out
    }

    fn key() -> RedactionKey {
        RedactionKey::from_bytes([1u8; 32])
    }

    fn secret() -> String {
        format!("SECRET{}{}", "TOKEN", "12345678")
    }

    fn redact(raw: &[u8]) -> (Vec<u8>, Plan) {
        let p = plan(raw, &finder, &key(), 2);
        (p.apply(raw), p)
    }

    #[test]
    fn plain_secret_is_replaced_and_rest_is_byte_exact() {
        let raw = format!("{{\"a\":\"x {} y\",\"b\":1}}", secret());
        let (out, p) = redact(raw.as_bytes());
        let ph = key().placeholder("test-token", secret().as_bytes());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{{\"a\":\"x {ph} y\",\"b\":1}}")
        );
        assert_eq!(p.findings().len(), 1);
    }

    #[test]
    fn json_unicode_escapes_do_not_hide_a_secret() {
        let escaped: String = secret()
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let raw = format!("{{\"content\":\"key={escaped}\\n\"}}");
        let (out, p) = redact(raw.as_bytes());
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("\\u0053\\u0045"), "{out}");
        assert_eq!(
            out,
            format!(
                "{{\"content\":\"key={}\\n\"}}",
                key().placeholder("test-token", secret().as_bytes())
            )
        );
        assert_eq!(p.findings()[0].2, "json");
    }

    #[test]
    fn url_encoding_does_not_hide_a_secret() {
        let enc: String = secret().bytes().map(|b| format!("%{b:02X}")).collect();
        let raw = format!("q=1&token={enc}&z=2");
        let (out, _) = redact(raw.as_bytes());
        let ph = key().placeholder("test-token", secret().as_bytes());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("q=1&token={ph}&z=2")
        );
    }

    #[test]
    fn base64_blocks_nested_twice_are_seen_through_and_re_encoded() {
        use base64::engine::general_purpose::STANDARD;
        let inner = STANDARD.encode(format!("config: {}\n", secret()));
        let outer = STANDARD.encode(format!("payload={inner}"));
        let raw = format!("{{\"file\":\"{outer}\"}}");
        let (out, p) = redact(raw.as_bytes());
        let out = String::from_utf8(out).unwrap();
        let new_outer = &out["{\"file\":\"".len()..out.len() - 2];
        let decoded = String::from_utf8(STANDARD.decode(new_outer).unwrap()).unwrap();
        let new_inner = decoded.strip_prefix("payload=").unwrap();
        let innermost = String::from_utf8(STANDARD.decode(new_inner).unwrap()).unwrap();
        assert_eq!(
            innermost,
            format!(
                "config: {}\n",
                key().placeholder("test-token", secret().as_bytes())
            )
        );
        assert_eq!(p.findings().len(), 1);
    }

    #[test]
    fn binary_base64_is_skipped_and_left_alone() {
        use base64::engine::general_purpose::STANDARD;
        let blob: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
        let raw = format!("data:image/png;base64,{}", STANDARD.encode(&blob));
        let (out, p) = redact(raw.as_bytes());
        assert!(p.is_clean());
        assert_eq!(out, raw.as_bytes());
    }

    #[test]
    fn a_long_text_run_is_scanned_past_its_head_in_either_alphabet() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        // Text well past the head that decides whether a run is text, the secret at its end;
        // `?>` encodes to `/` or `_`, so the alphabet shows only after the head.
        let text = format!("{}?>{}\n", "notes: all fine here. ".repeat(200), secret());
        for encoded in [STANDARD.encode(&text), URL_SAFE_NO_PAD.encode(&text)] {
            assert!(encoded.len() > 4 * TEXTY_HEAD_CHARS);
            let raw = format!("{{\"file\":\"{encoded}\"}}");
            let (_, p) = redact(raw.as_bytes());
            assert_eq!(p.findings().len(), 1, "{}", &encoded[..40]);
        }
    }

    /// Byte strings mixing every class the run finders care about, deterministic.
    fn mixed_inputs() -> Vec<Vec<u8>> {
        let alphabet: &[u8] = b"aZ09+/-_=%\\u/\"{} \n.:&~AF";
        let mut state = 0x9E37_79B9_u32;
        // A padded run followed at once by another run, and runs at the very ends.
        let mut out = vec![
            b"QmFzZTY0aGVyZQ0123456789ab==QmFzZTY0aGVyZQ0123456789ab=".to_vec(),
            b"QmFzZTY0aGVyZQ0123456789abc".to_vec(),
        ];
        for len in [0usize, 1, 23, 24, 25, 64, 300, 2000] {
            for _ in 0..40 {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 17;
                        state ^= state << 5;
                        // Long base64-ish stretches as well as noise.
                        if state % 7 < 5 {
                            b"QmFzZTY0aGVyZQ"[(state as usize / 7) % 14]
                        } else {
                            alphabet[(state as usize / 7) % alphabet.len()]
                        }
                    })
                    .collect();
                out.push(v);
            }
        }
        out
    }

    /// What the layers looked at before they were sped up: every token run, decoded when it
    /// holds an escape of the layer's kind; every maximal base64 run, byte by byte.
    fn reference_runs(raw: &[u8], decode: Decoder) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            if !is_token_byte(raw[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < raw.len() && is_token_byte(raw[i]) {
                i += 1;
            }
            if decode(&raw[start..i]).is_some() {
                out.push(start..i);
            }
        }
        out
    }

    fn is_b64(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
    }

    fn reference_plausible(run: &[u8]) -> bool {
        let (mut upper, mut lower, mut digit, mut std_sym, mut url_sym) =
            (false, false, false, false, false);
        for &b in run {
            match b {
                b'A'..=b'Z' => upper = true,
                b'a'..=b'z' => lower = true,
                b'0'..=b'9' => digit = true,
                b'+' | b'/' => std_sym = true,
                _ => url_sym = true,
            }
        }
        upper && lower && digit && !(std_sym && url_sym)
    }

    fn reference_base64_runs(raw: &[u8]) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            if !is_b64(raw[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < raw.len() && is_b64(raw[i]) {
                i += 1;
            }
            let mut end = i;
            while end < raw.len() && raw[end] == b'=' && end - i < 2 {
                end += 1;
            }
            if i - start >= MIN_BASE64 && reference_plausible(&raw[start..i]) {
                out.push(start..end);
            }
            i = end.max(i);
        }
        out
    }

    #[test]
    fn fast_run_finders_agree_with_byte_by_byte_ones() {
        for raw in mixed_inputs() {
            let json: Vec<_> = json_runs(&raw)
                .into_iter()
                .filter(|r| json_unescaped(&raw[r.clone()]).is_some())
                .collect();
            assert_eq!(json, reference_runs(&raw, json_unescaped), "{raw:?}");
            let url: Vec<_> = url_runs(&raw)
                .into_iter()
                .filter(|r| url_decoded(&raw[r.clone()]).is_some())
                .collect();
            assert_eq!(url, reference_runs(&raw, url_decoded), "{raw:?}");
            assert_eq!(base64_runs(&raw), reference_base64_runs(&raw), "{raw:?}");
        }
    }

    #[test]
    fn escaped_runs_are_scanned_together_but_findings_stay_inside_one() {
        // Many escaped runs (one scan of all of them) with the secret in the last one, and a
        // finder that would match across the newline joining two runs if allowed to.
        let esc =
            |s: &str| -> String { s.chars().map(|c| format!("\\u{:04x}", c as u32)).collect() };
        let mut raw = String::new();
        for i in 0..50 {
            raw.push_str(&format!("\"k{i}\":\"{}\", ", esc("plain")));
        }
        raw.push_str(&format!("\"s\":\"{}\"", esc(&secret())));
        let crossing = |data: &[u8]| -> Vec<Span> {
            let mut out = finder(data);
            // A bogus span from the end of one decoded run into the next.
            if let Some(p) = data.iter().position(|&b| b == SEPARATOR) {
                out.push(Span {
                    start: p.saturating_sub(2),
                    end: (p + 3).min(data.len()),
                    rule: "bogus".into(),
                });
            }
            out
        };
        let p = plan(raw.as_bytes(), &crossing, &key(), 0);
        let found = p.findings();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "test-token");
        assert_eq!(found[0].2, "json");
        let out = String::from_utf8(p.apply(raw.as_bytes())).unwrap();
        assert!(out.ends_with(&format!(
            "\"s\":\"{}\"",
            key().placeholder("test-token", secret().as_bytes())
        )));
    }

    #[test]
    fn many_decoys_and_one_secret() {
        let mut raw = String::new();
        for i in 0..500 {
            raw.push_str(&format!("SECRETTOKEN{i:07}x "));
        }
        raw.push_str(&secret());
        let (out, p) = redact(raw.as_bytes());
        assert_eq!(p.findings().len(), 1);
        assert!(!String::from_utf8(out).unwrap().contains(&secret()));
    }
}
