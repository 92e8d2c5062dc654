//! One byte stream checked through every layer as it arrives, with the offset before which
//! nothing more can be found: the raw scan (gate-scan's stream), and the decoding layers, which
//! see whole stretches between runs of token bytes at once, or, when a run grows long, follow
//! it layer by layer ([`super::runs`]) so that its head settles before it ends. A body is one
//! level; the text inside a long base64 run is another, one depth down.
use gate_scan::{Scanner, StreamScanner};

use super::runs::{Part, RunLayers};
use crate::guard::cached::ScanFinder;
use crate::redact::view::{self, Plan};
use crate::redact::{Edit, RedactionKey};

/// A token run held this long (bytes) is followed layer by layer instead of waiting for its end.
pub const RUN_MIN: usize = 64 * 1024;

/// What every layer needs: the scanner and the key that names placeholders.
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    pub scanner: &'a Scanner,
    pub key: &'a RedactionKey,
}

/// The check lost track of the stream (bytes it needed were no longer held, or a decoder
/// refused what it should take): a bug, and the body is refused.
#[derive(Debug, thiserror::Error)]
#[error("the streaming check lost track of the body")]
pub struct Lost;

/// A window of a level's stream: `bytes[0]` is offset `base`, and the window ends where the
/// stream has got to.
#[derive(Clone, Copy)]
pub struct Window<'a> {
    pub bytes: &'a [u8],
    pub base: usize,
}

impl Window<'_> {
    pub fn end(&self) -> usize {
        self.base + self.bytes.len()
    }

    /// Stream offsets `range`, if the window holds them.
    pub fn get(&self, range: std::ops::Range<usize>) -> Result<&[u8], Lost> {
        let (Some(a), Some(b)) = (
            range.start.checked_sub(self.base),
            range.end.checked_sub(self.base),
        ) else {
            return Err(Lost);
        };
        self.bytes.get(a..b).ok_or(Lost)
    }

    /// From stream offset `from` to the end of the window.
    pub fn tail_from(&self, from: usize) -> Result<&[u8], Lost> {
        self.get(from..self.end())
    }
}

/// Adds `more` (found in a part of the stream that starts at offset `by`) to `plan`.
pub fn extend_shifted(plan: &mut Plan, more: Plan, by: usize) {
    plan.edits.extend(more.edits.into_iter().map(|e| Edit {
        range: e.range.start + by..e.range.end + by,
        ..e
    }));
    plan.values.extend(more.values);
}

/// A stream through the raw scan and the decoding layers (base64 down to `depth`).
pub struct Level {
    depth: usize,
    run_min: usize,
    raw: StreamScanner,
    /// The decoding layers have decided every byte before this offset (between runs).
    layered: usize,
    /// The long run in progress, from `layered`.
    run: Option<Box<RunLayers>>,
}

impl Level {
    pub fn new(scanner: &Scanner, depth: usize) -> Self {
        Self::with_run_min(scanner, depth, RUN_MIN)
    }

    /// As [`Level::new`], following runs once they are `run_min` bytes long (tests use
    /// short ones).
    pub fn with_run_min(scanner: &Scanner, depth: usize, run_min: usize) -> Self {
        Self {
            depth,
            run_min: run_min.max(1),
            raw: scanner.stream(),
            layered: 0,
            run: None,
        }
    }

    /// Takes the stream's next `new` bytes, the tail of `win` (which holds everything from
    /// [`Level::keep_from`] on); `last` when the stream ends with them. What is found goes
    /// into `plan`, offsets in this stream.
    pub fn push(
        &mut self,
        cx: Cx<'_>,
        win: Window<'_>,
        new: usize,
        last: bool,
        plan: &mut Plan,
    ) -> Result<(), Lost> {
        let end = win.end();
        let fresh = end - new;
        let mut found = self.raw.push(win.tail_from(fresh)?);
        if last {
            found.extend(self.raw.finish());
        }
        for f in found {
            let rule = crate::redact::sanitize_rule(&f.rule_id);
            plan.add(
                cx.key,
                f.start..f.end,
                win.get(f.start..f.end)?,
                &rule,
                "raw",
            );
        }

        let mut pos = fresh;
        loop {
            if let Some(run) = &mut self.run {
                let stop = win
                    .tail_from(pos)?
                    .iter()
                    .position(|&b| view::between_runs(b))
                    .map(|p| pos + p);
                let ended = stop.is_some() || last;
                let upto = stop.unwrap_or(end);
                let part = Part {
                    cx,
                    win,
                    upto,
                    ended,
                };
                run.feed(part, plan)?;
                if !ended {
                    break;
                }
                self.run = None;
                self.layered = upto;
                pos = upto;
                continue;
            }
            // Bytes after `layered` and before `pos` hold no byte between runs (or `layered`
            // would be past them), so only the rest is searched.
            let cut = if last {
                Some(end)
            } else {
                win.tail_from(pos)?
                    .iter()
                    .rposition(|&b| view::between_runs(b))
                    .map(|p| pos + p + 1)
            };
            if let Some(cut) = cut.filter(|&c| c > self.layered) {
                let stretch = win.get(self.layered..cut)?;
                let more = view::layers(stretch, &ScanFinder(cx.scanner), cx.key, self.depth);
                extend_shifted(plan, more, self.layered);
                self.layered = cut;
            }
            if !last && end - self.layered >= self.run_min {
                let run = RunLayers::new(cx, self.layered, self.depth, self.run_min);
                self.run = Some(Box::new(run));
                pos = self.layered;
                continue;
            }
            break;
        }
        Ok(())
    }

    /// No finding reported from now on touches a byte before this offset.
    pub fn settled(&self) -> usize {
        let layers = self.run.as_ref().map_or(self.layered, |r| r.settled());
        self.raw.settled().min(layers)
    }

    /// The bytes from this offset on must stay in the window passed to [`Level::push`].
    pub fn keep_from(&self) -> usize {
        let layers = self.run.as_ref().map_or(self.layered, |r| r.keep_from());
        self.raw.settled().min(layers)
    }
}
