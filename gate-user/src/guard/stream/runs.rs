//! The decoding layers over one long run of token bytes, as it arrives, so that a run of many
//! megabytes settles from its head on instead of being held until its end. Each layer decides
//! exactly what the whole-body check ([`view::layers`]) decides about the whole run:
//!
//! - JSON escapes and URL encoding: the run is decoded (only if it turns out to hold a `\uXXXX`
//!   / `\/` or a `%XX` somewhere; until then what is found is tentative) and the decoded text
//!   goes through a stream scan. Where the run has no byte its decoding would change, the
//!   decoded text is the raw text, already scanned by the raw layer, so the stream scan sleeps
//!   and wakes a little (two horizons) before the next such byte or the run's end: what it
//!   could still find starts at most a horizon before that.
//! - base64: a base64 run whose first characters do not decode to text is passed over by the
//!   whole-body check, so it settles at once; one whose head is text is decoded as it arrives
//!   into a level of its own, one depth down, its findings tentative until the run has ended
//!   and decoded in full.
use std::ops::Range;

use base64::Engine as _;
use gate_scan::StreamScanner;

use super::level::{Cx, Level, Lost, Window, extend_shifted};
use crate::guard::cached::ScanFinder;
use crate::redact::Edit;
use crate::redact::view::{self, Plan, View};

/// The run's bytes up to `upto` are in `win`; `ended` when the run ends there.
#[derive(Clone, Copy)]
pub struct Part<'a> {
    pub cx: Cx<'a>,
    pub win: Window<'a>,
    pub upto: usize,
    pub ended: bool,
}

/// The decoding layers over the run that starts at `start`.
pub struct RunLayers {
    json: Escaped,
    url: Escaped,
    base64: Option<Base64Runs>,
}

impl RunLayers {
    /// `run_min` is what the levels inside its base64 runs use (see [`Level`]).
    pub fn new(cx: Cx<'_>, start: usize, depth: usize, run_min: usize) -> Self {
        Self {
            json: Escaped::new(cx, Escapes::Json, start),
            url: Escaped::new(cx, Escapes::Url, start),
            base64: (depth > 0).then(|| Base64Runs::new(start, depth, run_min)),
        }
    }

    pub fn feed(&mut self, part: Part<'_>, plan: &mut Plan) -> Result<(), Lost> {
        self.json.feed(part, plan)?;
        self.url.feed(part, plan)?;
        if let Some(b) = &mut self.base64 {
            b.feed(part, plan)?;
        }
        Ok(())
    }

    pub fn settled(&self) -> usize {
        let b = self.base64.as_ref().map_or(usize::MAX, |b| b.settled());
        self.json.settled().min(self.url.settled()).min(b)
    }

    pub fn keep_from(&self) -> usize {
        let b = self.base64.as_ref().map_or(usize::MAX, |b| b.keep_from());
        self.json.keep_from().min(self.url.keep_from()).min(b)
    }
}

/// Which escapes a layer undoes.
#[derive(Clone, Copy, Debug)]
enum Escapes {
    Json,
    Url,
}

impl Escapes {
    fn layer(self) -> &'static str {
        match self {
            Escapes::Json => "json",
            Escapes::Url => "url",
        }
    }

    /// Bytes after an escape's first byte that decoding it may read (a surrogate pair is 12
    /// bytes).
    fn lookahead(self) -> usize {
        match self {
            Escapes::Json => 11,
            Escapes::Url => 2,
        }
    }

    fn decode(self, raw: &[u8], stop: usize) -> (View, usize) {
        match self {
            Escapes::Json => view::json_decode(raw, stop),
            Escapes::Url => view::url_decode(raw, stop),
        }
    }

    /// The first byte of `raw` whose decoding may differ from the byte itself.
    fn next_change(self, raw: &[u8]) -> Option<usize> {
        match self {
            Escapes::Json => memchr::memchr(b'\\', raw),
            Escapes::Url => memchr::memchr2(b'%', b'+', raw),
        }
    }

    /// The last such byte.
    fn last_change(self, raw: &[u8]) -> Option<usize> {
        match self {
            Escapes::Json => memchr::memrchr(b'\\', raw),
            Escapes::Url => memchr::memrchr2(b'%', b'+', raw),
        }
    }

    /// Whether `raw` holds an escape that makes the whole-body check decode its run.
    fn triggers(self, raw: &[u8]) -> bool {
        match self {
            Escapes::Json => view::has_json_escape(raw),
            Escapes::Url => view::has_url_escape(raw),
        }
    }
}

/// A finding of a layer that has not yet decided it counts: (raw range, value, rule).
type Tentative = (Range<usize>, Vec<u8>, String);

/// The stream scan of a run's decoded text, from raw offset `from` (decoded offset 0).
struct Awake {
    scan: StreamScanner,
    /// Decoded bytes from decoded offset `base`, and the raw offset of each.
    text: Vec<u8>,
    map: Vec<usize>,
    base: usize,
    /// Findings that start before this decoded offset are not this scan's to report (the raw
    /// layer or an earlier scan has decided them).
    ignore_below: usize,
}

impl Awake {
    fn len(&self) -> usize {
        self.base + self.text.len()
    }
}

/// One escape layer (JSON or URL) over a long run.
struct Escaped {
    kind: Escapes,
    horizon: usize,
    /// Raw bytes before this are decoded (awake) or passed over (asleep).
    pos: usize,
    /// From this raw offset on (up to `pos`), decoding changes no byte.
    quiet: usize,
    awake: Option<Box<Awake>>,
    /// The run holds an escape of this layer's kind: what is found counts.
    triggered: bool,
    tentative: Vec<Tentative>,
}

impl Escaped {
    fn new(cx: Cx<'_>, kind: Escapes, start: usize) -> Self {
        Self {
            kind,
            horizon: cx.scanner.horizon(),
            pos: start,
            quiet: start,
            // The run's head is scanned for real: its decoded text starts where the raw
            // layer had a byte before it.
            awake: Some(Box::new(Awake {
                scan: cx.scanner.stream(),
                text: Vec::new(),
                map: Vec::new(),
                base: 0,
                ignore_below: 0,
            })),
            triggered: false,
            tentative: Vec::new(),
        }
    }

    /// Raw offset where decoded byte `d` starts (`pos` at or past the decoded end).
    fn raw_of(a: &Awake, pos: usize, d: usize) -> usize {
        a.map.get(d.saturating_sub(a.base)).copied().unwrap_or(pos)
    }

    fn feed(&mut self, part: Part<'_>, plan: &mut Plan) -> Result<(), Lost> {
        let (cx, win, upto, ended) = (part.cx, part.win, part.upto, part.ended);
        if self.awake.is_none() {
            let change = self
                .kind
                .next_change(win.get(self.pos..upto)?)
                .map(|p| self.pos + p);
            let Some(at) = change.or(ended.then_some(upto)) else {
                self.pos = upto;
                return Ok(());
            };
            // Wake two horizons before it: a finding there that reaches the change starts
            // at most a horizon before it, and gets a horizon of context.
            let from = self.quiet.max(at.saturating_sub(2 * self.horizon));
            self.pos = from;
            self.awake = Some(Box::new(Awake {
                scan: cx.scanner.stream(),
                text: Vec::new(),
                map: Vec::new(),
                base: 0,
                ignore_below: self.horizon,
            }));
        }
        let Some(a) = self.awake.as_mut() else {
            return Ok(());
        };

        let stop = if ended {
            upto
        } else {
            upto.saturating_sub(self.kind.lookahead())
        };
        let mut new = Vec::new();
        if stop > self.pos {
            let raw = win.get(self.pos..upto)?;
            let (v, used) = self.kind.decode(raw, stop - self.pos);
            let look = (used + self.kind.lookahead()).min(raw.len());
            if !self.triggered && self.kind.triggers(&raw[..look]) {
                self.triggered = true;
                for (r, value, rule) in self.tentative.drain(..) {
                    plan.add(cx.key, r, &value, &rule, self.kind.layer());
                }
            }
            if let Some(c) = self.kind.last_change(&raw[..used]) {
                self.quiet = self.quiet.max(self.pos + c + self.kind.lookahead() + 1);
            }
            let (text, map) = v.into_parts();
            a.text.extend_from_slice(&text);
            a.map.extend(map.into_iter().map(|m| m + self.pos));
            new = text;
            self.pos += used;
        }
        let mut found = a.scan.push(&new);
        if ended {
            found.extend(a.scan.finish());
        }
        for f in found {
            if f.start < a.ignore_below {
                continue;
            }
            let (Some(s), Some(e)) = (f.start.checked_sub(a.base), f.end.checked_sub(a.base))
            else {
                return Err(Lost);
            };
            let value = a.text.get(s..e).ok_or(Lost)?.to_vec();
            let r = Self::raw_of(a, self.pos, f.start)..Self::raw_of(a, self.pos, f.end);
            let rule = crate::redact::sanitize_rule(&f.rule_id);
            if self.triggered {
                plan.add(cx.key, r, &value, &rule, self.kind.layer());
            } else {
                self.tentative.push((r, value, rule));
            }
        }
        let done = a.scan.settled().min(a.len()).max(a.base);
        a.text.drain(..done - a.base);
        a.map.drain(..done - a.base);
        a.base = done;

        if ended {
            // The run is over: what it did not earn by an escape is dropped.
            self.tentative.clear();
            self.awake = None;
            self.pos = upto;
            self.quiet = upto;
        } else if self.quiet <= self.pos
            && Self::raw_of(a, self.pos, a.scan.settled()) >= self.quiet + self.horizon
        {
            // Everything this scan has not reported starts a horizon into unchanged text:
            // the raw layer sees the same bytes there.
            self.awake = None;
        }
        Ok(())
    }

    fn settled(&self) -> usize {
        let mine = match &self.awake {
            Some(a) => Self::raw_of(a, self.pos, a.scan.settled().max(a.ignore_below)),
            // A scan woken later starts at or after max(quiet, pos - 2 horizons) and reports
            // from a horizon past that.
            None => (self.quiet + self.horizon).max(self.pos.saturating_sub(self.horizon)),
        };
        self.tentative
            .iter()
            .map(|t| t.0.start)
            .fold(mine.min(self.pos), usize::min)
    }

    fn keep_from(&self) -> usize {
        match &self.awake {
            Some(_) => self.pos,
            None => self
                .quiet
                .max(self.pos.saturating_sub(2 * self.horizon))
                .min(self.pos),
        }
    }
}

/// What is known of the base64 run in progress.
enum B64State {
    /// Fewer characters than decide whether it is text: held.
    Head,
    /// Nothing can come of it (its head is not text, or it mixes both alphabets).
    Skip,
    /// Its head is text: decoded as it arrives.
    Text(Box<B64Text>),
}

struct B64Text {
    level: Level,
    /// Decoded bytes from decoded offset `base` (what `level` still needs).
    text: Vec<u8>,
    base: usize,
    /// Characters decoded so far (whole groups of four).
    decoded: usize,
    /// The level's findings, counted once the run is known to decode.
    plan: Plan,
}

struct B64Run {
    start: usize,
    /// Base64 characters so far, and the union of their classes.
    chars: usize,
    classes: u8,
    /// Set when the characters have ended: `=` padding seen after them.
    pad: Option<usize>,
    state: B64State,
}

/// The base64 layer over a long run: the base64 runs inside it, one at a time.
struct Base64Runs {
    depth: usize,
    run_min: usize,
    /// Raw bytes before this have been looked at.
    pos: usize,
    cur: Option<B64Run>,
}

fn b64_class(b: u8) -> u8 {
    view::B64_CLASS[b as usize]
}

fn both_alphabets(classes: u8) -> bool {
    classes & view::STD_SYM != 0 && classes & view::URL_SYM != 0
}

impl Base64Runs {
    fn new(start: usize, depth: usize, run_min: usize) -> Self {
        Self {
            depth,
            run_min,
            pos: start,
            cur: None,
        }
    }

    fn feed(&mut self, part: Part<'_>, plan: &mut Plan) -> Result<(), Lost> {
        let (cx, win, upto, ended) = (part.cx, part.win, part.upto, part.ended);
        while self.pos < upto {
            let Some(run) = &mut self.cur else {
                match win
                    .get(self.pos..upto)?
                    .iter()
                    .position(|&b| b64_class(b) != 0)
                {
                    Some(p) => {
                        self.pos += p;
                        self.cur = Some(B64Run {
                            start: self.pos,
                            chars: 0,
                            classes: 0,
                            pad: None,
                            state: B64State::Head,
                        });
                    }
                    None => self.pos = upto,
                }
                continue;
            };
            if let Some(pad) = &mut run.pad {
                let b = win.get(self.pos..self.pos + 1)?[0];
                if *pad < 2 && b == b'=' {
                    *pad += 1;
                    self.pos += 1;
                    continue;
                }
                let run = self.cur.take();
                if let Some(run) = run {
                    self.finish_run(cx, win, run, plan)?;
                }
                continue;
            }
            let rest = win.get(self.pos..upto)?;
            let n = rest
                .iter()
                .position(|&b| b64_class(b) == 0)
                .unwrap_or(rest.len());
            if !matches!(run.state, B64State::Skip) {
                run.classes |= rest[..n].iter().fold(0, |c, &b| c | b64_class(b));
            }
            run.chars += n;
            self.pos += n;
            Self::advance(cx, win, run, self.depth, self.run_min)?;
            if n < rest.len() {
                run.pad = Some(0);
            }
        }
        if ended && let Some(mut run) = self.cur.take() {
            run.pad.get_or_insert(0);
            self.finish_run(cx, win, run, plan)?;
        }
        Ok(())
    }

    /// Decides the head once it is all here, and decodes what has come of a text run (its
    /// last group waits: it decodes with the padding after it).
    fn advance(
        cx: Cx<'_>,
        win: Window<'_>,
        run: &mut B64Run,
        depth: usize,
        run_min: usize,
    ) -> Result<(), Lost> {
        if both_alphabets(run.classes) {
            run.state = B64State::Skip;
            return Ok(());
        }
        let url = run.classes & view::URL_SYM != 0;
        if matches!(run.state, B64State::Head) && run.chars >= view::TEXTY_HEAD_CHARS {
            let head = win.get(run.start..run.start + view::TEXTY_HEAD_CHARS)?;
            let text = view::b64_decoder(url)
                .decode(head)
                .is_ok_and(|d| view::texty(&d));
            run.state = if text {
                B64State::Text(Box::new(B64Text {
                    level: Level::with_run_min(cx.scanner, depth - 1, run_min),
                    text: Vec::new(),
                    base: 0,
                    decoded: 0,
                    plan: Plan::default(),
                }))
            } else {
                B64State::Skip
            };
        }
        let B64State::Text(t) = &mut run.state else {
            return Ok(());
        };
        let upto = (run.chars.saturating_sub(1) / 4) * 4;
        if upto > t.decoded {
            let groups = win.get(run.start + t.decoded..run.start + upto)?;
            // Whole groups of one alphabet always decode.
            let bytes = view::b64_decoder(url).decode(groups).map_err(|_| Lost)?;
            t.decoded = upto;
            t.push(cx, &bytes, false)?;
        }
        Ok(())
    }

    /// The run has ended (padding included): decide it as the whole-body check would.
    fn finish_run(
        &mut self,
        cx: Cx<'_>,
        win: Window<'_>,
        run: B64Run,
        plan: &mut Plan,
    ) -> Result<(), Lost> {
        let end = run.start + run.chars + run.pad.unwrap_or(0);
        if run.chars < view::MIN_BASE64 || !view::plausible_base64(run.classes) {
            return Ok(());
        }
        match run.state {
            B64State::Skip => {}
            B64State::Head => {
                let more = view::layers(
                    win.get(run.start..end)?,
                    &ScanFinder(cx.scanner),
                    cx.key,
                    self.depth,
                );
                extend_shifted(plan, more, run.start);
            }
            B64State::Text(mut t) => {
                let url = run.classes & view::URL_SYM != 0;
                let last = win.get(run.start + t.decoded..end)?;
                let Ok(bytes) = view::b64_decoder(url).decode(last) else {
                    // Not valid base64 after all: the whole-body check skips it.
                    return Ok(());
                };
                t.push(cx, &bytes, true)?;
                if t.plan.is_clean() {
                    return Ok(());
                }
                let findings = t
                    .plan
                    .findings()
                    .into_iter()
                    .map(|(r, p, _)| (r, p))
                    .collect();
                plan.values.extend(t.plan.values);
                // Never applied: a streamed body keeps its length and is refused instead.
                plan.edits.push(Edit {
                    range: run.start..end,
                    replacement: Vec::new(),
                    findings,
                    layer: "base64",
                });
            }
        }
        Ok(())
    }

    fn settled(&self) -> usize {
        let Some(run) = &self.cur else {
            return self.pos;
        };
        match &run.state {
            B64State::Head => run.start,
            B64State::Skip => self.pos,
            B64State::Text(t) => {
                let found = t.plan.edits.iter().map(|e| e.range.start);
                let d = found.fold(t.level.settled(), usize::min);
                (run.start + d / 3 * 4).min(self.pos)
            }
        }
    }

    fn keep_from(&self) -> usize {
        let Some(run) = &self.cur else {
            return self.pos;
        };
        match &run.state {
            B64State::Head => run.start,
            B64State::Skip => self.pos,
            B64State::Text(t) => run.start + t.decoded,
        }
    }
}

impl B64Text {
    fn push(&mut self, cx: Cx<'_>, bytes: &[u8], last: bool) -> Result<(), Lost> {
        self.text.extend_from_slice(bytes);
        let win = Window {
            bytes: &self.text,
            base: self.base,
        };
        self.level
            .push(cx, win, bytes.len(), last, &mut self.plan)?;
        let keep = self.level.keep_from().max(self.base);
        let drop = (keep - self.base).min(self.text.len());
        self.text.drain(..drop);
        self.base += drop;
        Ok(())
    }
}
