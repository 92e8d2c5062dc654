//! Chunked scanning for bodies that arrive in pieces: a secret split across chunks is still
//! found, memory stays bounded by the longest rule (not the body), and the caller learns which
//! prefix of the stream is settled and may be forwarded.
use crate::engine::Scanner;
use crate::finding::{Finding, merge};

/// Minimum number of bytes a rescan settles, so small chunks do not rescan the horizon over and
/// over (the overlap costs at most 2 * horizon / MIN_STEP extra work).
const MIN_STEP: usize = 32 * 1024;

/// Scans a byte stream chunk by chunk. Findings carry absolute offsets in the stream.
///
/// Contract: after every [`push`](Self::push) and [`finish`](Self::finish), no finding
/// reported later covers any byte before [`settled`](Self::settled), and every finding that
/// does cover such a byte has already been returned. A proxy that redacts may therefore
/// release bytes up to `settled()` and must hold the rest.
#[derive(Debug)]
pub struct StreamScanner {
    scanner: Scanner,
    buf: Vec<u8>,
    /// Absolute offset of `buf[0]`.
    base: usize,
    /// Findings starting before this offset have been decided (reported or absent).
    cut: usize,
    settled: usize,
    finished: bool,
}

impl StreamScanner {
    pub(crate) fn new(scanner: Scanner) -> StreamScanner {
        StreamScanner {
            scanner,
            buf: Vec::new(),
            base: 0,
            cut: 0,
            settled: 0,
            finished: false,
        }
    }

    /// Adds the next chunk; returns the findings that became final.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Finding> {
        if self.finished {
            return Vec::new();
        }
        self.buf.extend_from_slice(chunk);
        let end = self.position();
        let h = self.scanner.horizon();
        if end < self.cut + h + h.max(MIN_STEP) {
            return Vec::new();
        }
        self.emit(end - h)
    }

    /// Ends the stream: everything left is scanned and settled.
    pub fn finish(&mut self) -> Vec<Finding> {
        if self.finished {
            return Vec::new();
        }
        let out = self.emit(self.position());
        self.finished = true;
        self.buf = Vec::new();
        self.base = self.settled;
        out
    }

    /// Total bytes pushed so far.
    pub fn position(&self) -> usize {
        self.base + self.buf.len()
    }

    /// No finding reported from now on touches a byte before this offset.
    pub fn settled(&self) -> usize {
        self.settled
    }

    /// Bytes currently held (bounded by two horizons, one rescan step and the last chunk).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn emit(&mut self, new_cut: usize) -> Vec<Finding> {
        let base = self.base;
        let raw: Vec<Finding> = self
            .scanner
            .scan_unmerged(&self.buf)
            .into_iter()
            .map(|f| f.shifted(base))
            .filter(|f| f.start >= self.cut && f.start < new_cut)
            .collect();
        let mut out = Vec::new();
        for mut f in merge(raw) {
            if f.end <= self.settled {
                continue;
            }
            f.start = f.start.max(self.settled);
            out.push(f);
        }
        self.settled = out
            .iter()
            .map(|f| f.end)
            .fold(new_cut.max(self.settled), usize::max);
        self.cut = new_cut;
        // Keep a horizon before the cut: a finding is a rule's secret group, and the match
        // around it (a keyword, an assignment) may begin up to a horizon before the secret;
        // one more byte for a word boundary that looks back.
        let keep_from = new_cut
            .saturating_sub(self.scanner.horizon())
            .max(self.base);
        let drop = keep_from - self.base;
        self.buf.drain(..drop);
        self.base = keep_from;
        out
    }
}
