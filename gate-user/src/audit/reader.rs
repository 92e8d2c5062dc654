//! The reading end of the audit log, behind `gate log`: finds the audit files in time order,
//! reads them line by line (also while they grow), and checks every line's place in the hash
//! chain, naming the first line that does not fit as `file:line`.
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::chain;
use super::event::Event;
use super::sink::EXTENSION;

/// One whole line of an audit file and what it holds.
#[derive(Debug, Clone)]
pub struct Entry {
    pub file: Arc<Path>,
    /// 1-based line number in `file`.
    pub line: u64,
    /// The line as written, without its newline.
    pub raw: String,
    /// The event, when the line is one this version of gate understands.
    pub event: Option<Event>,
}

/// Something wrong with a line of an audit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: Arc<Path>,
    /// 1-based line number.
    pub line: u64,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The line is not UTF-8 text.
    NotText,
    /// The line is not a JSON object.
    NotJson(String),
    /// The line is JSON but not an event this version reads (newer schema?). The chain still
    /// covers it; only the event cannot be shown.
    NotEvent(String),
    /// The line carries no `prev`.
    MissingPrev,
    /// The line's `prev` is not the hash of the line before it (or, on line 1, the genesis hash
    /// of this file's name).
    PrevMismatch,
    /// The file ends in the middle of a line: a write was interrupted (crash, full disk), or the
    /// file is being written right now.
    TornTail { bytes: u64 },
    /// The file got shorter than what was already read from it.
    Shrunk,
    /// The file could not be read.
    Unreadable(String),
}

impl ProblemKind {
    /// Whether this problem means the chain is broken (tampering or damage), as opposed to a
    /// warning about a line that is still intact.
    pub fn breaks_chain(&self) -> bool {
        !matches!(
            self,
            ProblemKind::NotEvent(_) | ProblemKind::TornTail { .. }
        )
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        match &self.kind {
            ProblemKind::NotText => write!(f, "line is not text: the file was damaged or edited"),
            ProblemKind::NotJson(e) => {
                write!(f, "line is not JSON ({e}): the file was damaged or edited")
            }
            ProblemKind::NotEvent(e) => write!(
                f,
                "line is not an event this gate can read ({e}); newer version? (chain intact)"
            ),
            ProblemKind::MissingPrev => write!(
                f,
                "line has no `prev` hash: it was not written by gate's audit log, or was edited"
            ),
            ProblemKind::PrevMismatch if self.line == 1 => write!(
                f,
                "first line does not start this file's chain: lines were removed from the \
                 start, the file was renamed, or the line was edited"
            ),
            ProblemKind::PrevMismatch => write!(
                f,
                "hash chain broken: this line does not follow line {}: a line at or before this \
                 point was edited, removed, inserted or reordered",
                self.line - 1
            ),
            ProblemKind::TornTail { bytes } => write!(
                f,
                "incomplete last line ({bytes} bytes without a newline): an interrupted write, \
                 or one in progress; ignored"
            ),
            ProblemKind::Shrunk => {
                write!(
                    f,
                    "file got shorter while being read: it was truncated or replaced"
                )
            }
            ProblemKind::Unreadable(e) => write!(f, "cannot read: {e}"),
        }
    }
}

/// Either a line or a problem, in file order.
#[derive(Debug, Clone)]
pub enum Item {
    Entry(Box<Entry>),
    Problem(Problem),
}

/// Reads one audit file from where it last stopped, checking the chain as it goes. Only whole
/// lines are consumed, so a line being written while it is read is picked up on the next poll.
#[derive(Debug)]
pub struct Cursor {
    path: Arc<Path>,
    /// Offset just past the last whole line consumed.
    offset: u64,
    /// Lines consumed.
    line: u64,
    /// Expected `prev` of the next line.
    prev: String,
    /// Bytes after `offset` at the last poll (a line without its newline yet).
    pending: u64,
}

impl Cursor {
    pub fn new(path: &Path) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            path: Arc::from(path),
            offset: 0,
            line: 0,
            prev: chain::genesis(&name),
            pending: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every whole line added since the last call.
    pub fn poll(&mut self, out: &mut dyn FnMut(Item)) {
        if let Err(e) = self.poll_inner(out) {
            out(Item::Problem(self.problem(
                self.line + 1,
                ProblemKind::Unreadable(e.to_string()),
            )));
        }
    }

    /// Reports a torn last line, if the file ended in one at the last poll. For a file that is
    /// not being written any more.
    pub fn finish(&self, out: &mut dyn FnMut(Item)) {
        if self.pending > 0 {
            out(Item::Problem(self.problem(
                self.line + 1,
                ProblemKind::TornTail {
                    bytes: self.pending,
                },
            )));
        }
    }

    fn problem(&self, line: u64, kind: ProblemKind) -> Problem {
        Problem {
            file: self.path.clone(),
            line,
            kind,
        }
    }

    fn poll_inner(&mut self, out: &mut dyn FnMut(Item)) -> io::Result<()> {
        let mut file = File::open(&self.path)?;
        let len = file.metadata()?.len();
        if len < self.offset {
            out(Item::Problem(self.problem(self.line, ProblemKind::Shrunk)));
            // Start over so what is there now is still read and checked.
            *self = Cursor::new(&self.path.clone());
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut r = BufReader::with_capacity(64 * 1024, file);
        let mut buf = Vec::with_capacity(1024);
        self.pending = 0;
        loop {
            buf.clear();
            let n = r.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            if buf.last() != Some(&b'\n') {
                self.pending = n as u64;
                break;
            }
            buf.pop();
            self.offset += n as u64;
            self.line += 1;
            self.check_line(&buf, out);
        }
        Ok(())
    }

    fn check_line(&mut self, bytes: &[u8], out: &mut dyn FnMut(Item)) {
        let expected = std::mem::replace(&mut self.prev, chain::line_hash(bytes));
        let line = self.line;
        let Ok(text) = std::str::from_utf8(bytes) else {
            out(Item::Problem(self.problem(line, ProblemKind::NotText)));
            return;
        };
        let (event, prev) = match serde_json::from_str::<Event>(text) {
            Ok(ev) => {
                let prev = ev.prev.clone();
                (Some(ev), prev)
            }
            Err(e) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(map)) => {
                    out(Item::Problem(
                        self.problem(line, ProblemKind::NotEvent(e.to_string())),
                    ));
                    let prev = map.get("prev").and_then(|p| p.as_str()).map(String::from);
                    (None, prev)
                }
                Ok(_) => {
                    let kind = ProblemKind::NotJson("not an object".into());
                    out(Item::Problem(self.problem(line, kind)));
                    return;
                }
                Err(e) => {
                    out(Item::Problem(
                        self.problem(line, ProblemKind::NotJson(e.to_string())),
                    ));
                    return;
                }
            },
        };
        match prev {
            None => out(Item::Problem(self.problem(line, ProblemKind::MissingPrev))),
            Some(p) if p != expected => {
                out(Item::Problem(self.problem(line, ProblemKind::PrevMismatch)))
            }
            Some(_) => {}
        }
        out(Item::Entry(Box::new(Entry {
            file: self.path.clone(),
            line,
            raw: text.to_owned(),
            event,
        })));
    }
}

/// The audit files (`*.jsonl`) directly in `dir`, oldest first: by the time of each file's first
/// event, then by name. A missing directory has no files.
pub fn list_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|x| x == EXTENSION) && entry.file_type()?.is_file() {
            files.push((first_time(&path), path));
        }
    }
    // Files whose first line has no readable time go last, by name.
    files.sort_by(|a, b| (a.0.is_none(), a.0, &a.1).cmp(&(b.0.is_none(), b.0, &b.1)));
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// Time (Unix µs) of the first event in the file, if there is one.
fn first_time(path: &Path) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Time {
        time: String,
    }
    let mut line = Vec::new();
    BufReader::new(File::open(path).ok()?)
        .read_until(b'\n', &mut line)
        .ok()?;
    let t: Time = serde_json::from_slice(line.trim_ascii_end()).ok()?;
    super::event::parse_rfc3339(&t.time)
}

/// What reading a set of files found.
#[derive(Debug, Default)]
pub struct Verification {
    pub files: usize,
    pub lines: u64,
    pub problems: Vec<Problem>,
}

impl Verification {
    /// The first problem that breaks the chain, if any.
    pub fn first_break(&self) -> Option<&Problem> {
        self.problems.iter().find(|p| p.kind.breaks_chain())
    }
}

/// Reads every line of `files`, giving each entry to `each`, and collects the problems.
pub fn read_all(files: &[PathBuf], each: &mut dyn FnMut(Box<Entry>)) -> Verification {
    let mut v = Verification {
        files: files.len(),
        ..Default::default()
    };
    for path in files {
        let mut cursor = Cursor::new(path);
        let mut sink = |item| match item {
            Item::Entry(e) => {
                v.lines += 1;
                each(e)
            }
            Item::Problem(p) => v.problems.push(p),
        };
        cursor.poll(&mut sink);
        cursor.finish(&mut sink);
    }
    v
}

/// Verifies the chain of every file in `files`.
pub fn verify(files: &[PathBuf]) -> Verification {
    read_all(files, &mut |_| {})
}
