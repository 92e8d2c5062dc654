//! The writing end of the audit log: one append-only JSON Lines file per run (optionally rotated
//! by size into numbered parts), each line chained to the one before it, synced before a refusing
//! or rewriting verdict is released, and failing closed (an error the caller turns into a refused
//! request) when the disk is full or the file cannot be written.
//!
//! One lock, one `write` per event: the event is encoded outside the lock, the chain hash and the
//! append happen under it, and `fdatasync` happens after it with group commit (one sync covers
//! every event written before it started), so many tasks recording at once do not queue behind
//! each other's syncs. A failed append is cut back to the last whole line before anything else is
//! written, so a full disk never leaves a torn line that would break the chain.
use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::chain;
use super::event::{Event, format_rfc3339};

/// File name extension of audit files.
pub const EXTENSION: &str = "jsonl";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit event could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

impl AuditError {
    /// True when the error is a full disk or quota (the log works again once space returns).
    pub fn is_disk_full(&self) -> bool {
        match self {
            AuditError::Io { source, .. } => {
                matches!(
                    source.kind(),
                    io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                )
            }
            AuditError::Encode(_) => false,
        }
    }
}

/// How an audit log is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Start a new part once the current file would grow past this many bytes (`None`: never).
    /// Parts are `<name>.jsonl`, `<name>.1.jsonl`, `<name>.2.jsonl`, ...; each file has its own
    /// chain, starting from the genesis hash of its own name.
    pub rotate_bytes: Option<u64>,
}

/// An open, append-only audit log. Cheap to share behind an `Arc`; `record` may be called from
/// any number of threads or tasks at once. It blocks for one write (and a sync for refusing
/// verdicts); async code can use `record_async`.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    name: String,
    /// The first file (`<name>.jsonl`).
    path: PathBuf,
    opts: Options,
    state: Mutex<ChainState>,
    /// Sequence number up to which the log is known synced.
    synced: Mutex<u64>,
}

#[derive(Debug)]
struct ChainState {
    /// The file written now, and its number (0 for `<name>.jsonl`).
    file: Arc<File>,
    part: u32,
    part_path: PathBuf,
    /// `prev` for the next line.
    prev: String,
    /// Length of the file up to the end of the last whole line.
    len: u64,
    /// Events written so far (by this handle).
    seq: u64,
    /// A write failed and its partial bytes may still be in the file past `len`.
    dirty: bool,
}

/// Bytes the writer adds to an encoded event: `,"prev":"<64 hex>"}` and the newline.
const PREV_SUFFIX_LEN: u64 = 11 + 64 + 1;

impl AuditLog {
    /// Opens (creating) `dir/<name>.jsonl` for appending. The directory is created mode 0700 and
    /// the file mode 0600. An existing file is continued: its chain goes on from its last line,
    /// and a torn last line (an append interrupted by a crash) is cut off first.
    pub fn open(dir: &Path, name: &str) -> Result<Self, AuditError> {
        Self::open_with(dir, name, Options::default())
    }

    /// `open`, with options. With `rotate_bytes`, an existing log is continued in its last part.
    pub fn open_with(dir: &Path, name: &str, opts: Options) -> Result<Self, AuditError> {
        create_private_dir(dir).map_err(|e| io_error(dir, e))?;
        let mut part = 0;
        if opts.rotate_bytes.is_some() {
            while dir.join(part_file_name(name, part + 1)).exists() {
                part += 1;
            }
        }
        let (file, part_path, len, prev) = open_part(dir, name, part)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            path: dir.join(part_file_name(name, 0)),
            opts,
            state: Mutex::new(ChainState {
                file: Arc::new(file),
                part,
                part_path,
                prev,
                len,
                seq: 0,
                dirty: false,
            }),
            synced: Mutex::new(0),
        })
    }

    /// A file name for a new run that sorts by start time: `run-<UTC time>-<pid>`.
    pub fn run_name() -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let t = format_rfc3339(now.as_secs() as i64, 0);
        // 2026-11-22T00:00:00.000000Z -> 20261122T000000Z
        let compact: String = t[..19].chars().filter(|c| *c != '-' && *c != ':').collect();
        format!("run-{compact}Z-{}", std::process::id())
    }

    /// The log's first file, `<dir>/<name>.jsonl`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file being written now (differs from `path` once a rotating log has rotated).
    pub fn current_path(&self) -> PathBuf {
        lock(&self.state).part_path.clone()
    }

    /// Appends one event, chained to the line before it; synced to disk before returning when
    /// its decision refuses or rewrites traffic. Any error means the event is not (durably) in
    /// the log, and the caller must refuse what the event describes. After an error the log
    /// stays usable: the next call tries again, and the chain stays whole.
    pub fn record(&self, event: &Event) -> Result<(), AuditError> {
        let mut line = encode(event)?;
        let seq = {
            let mut st = lock(&self.state);
            if st.dirty {
                cut_back(&mut st)?;
            }
            if let Some(limit) = self.opts.rotate_bytes
                && st.len > 0
                && st.len + line.len() as u64 + PREV_SUFFIX_LEN > limit
            {
                self.rotate(&mut st)?;
            }
            // `line` is `{...` with its closing brace removed; `prev` goes last.
            line.extend_from_slice(b",\"prev\":\"");
            line.extend_from_slice(st.prev.as_bytes());
            line.extend_from_slice(b"\"}");
            let hash = chain::line_hash(&line);
            line.push(b'\n');
            if let Err(source) = (&*st.file).write_all(&line) {
                st.dirty = true;
                // Best effort now; retried before the next write if it fails too.
                let _ = cut_back(&mut st);
                return Err(io_error(&st.part_path, source));
            }
            st.prev = hash;
            st.len += line.len() as u64;
            st.seq += 1;
            st.seq
        };
        if event.decision.needs_sync() {
            self.sync_through(seq)?;
        }
        Ok(())
    }

    /// `record` for async code: the write (and the sync a refusing verdict waits for, a few
    /// milliseconds on a real disk) runs on tokio's blocking pool instead of holding up the
    /// other tasks of this worker thread.
    pub async fn record_async(self: &Arc<Self>, event: Event) -> Result<(), AuditError> {
        let log = Arc::clone(self);
        match tokio::task::spawn_blocking(move || log.record(&event)).await {
            Ok(r) => r,
            Err(join) => Err(io_error(
                &self.path,
                io::Error::other(format!("audit writer task failed: {join}")),
            )),
        }
    }

    /// Syncs everything recorded so far to disk.
    pub fn sync(&self) -> Result<(), AuditError> {
        let seq = lock(&self.state).seq;
        self.sync_through(seq)
    }

    /// Makes sure event number `seq` is on disk. Whoever holds the sync lock syncs every event
    /// written so far, so the threads waiting behind it usually find their event already synced.
    /// Events in parts before the current one were synced when the log rotated.
    fn sync_through(&self, seq: u64) -> Result<(), AuditError> {
        let mut synced = lock(&self.synced);
        if *synced >= seq {
            return Ok(());
        }
        let (file, target) = {
            let st = lock(&self.state);
            (Arc::clone(&st.file), st.seq)
        };
        if let Err(e) = file.sync_data() {
            return Err(io_error(&lock(&self.state).part_path, e));
        }
        *synced = target;
        Ok(())
    }

    /// Moves on to the next part: the current one is synced first, so every event written to it
    /// is on disk. On error nothing changes and the next event tries again.
    fn rotate(&self, st: &mut ChainState) -> Result<(), AuditError> {
        st.file
            .sync_data()
            .map_err(|e| io_error(&st.part_path, e))?;
        let (file, part_path, len, prev) = open_part(&self.dir, &self.name, st.part + 1)?;
        st.file = Arc::new(file);
        st.part += 1;
        st.part_path = part_path;
        st.len = len;
        st.prev = prev;
        Ok(())
    }
}

/// Removes the partial bytes of a failed append, so the file ends with a whole line again.
fn cut_back(st: &mut ChainState) -> Result<(), AuditError> {
    st.file
        .set_len(st.len)
        .map_err(|e| io_error(&st.part_path, e))?;
    st.dirty = false;
    Ok(())
}

fn io_error(path: &Path, source: io::Error) -> AuditError {
    AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn part_file_name(name: &str, part: u32) -> String {
    if part == 0 {
        format!("{name}.{EXTENSION}")
    } else {
        format!("{name}.{part}.{EXTENSION}")
    }
}

/// Opens (creating, mode 0600) one part for appending; returns where its chain goes on.
fn open_part(
    dir: &Path,
    name: &str,
    part: u32,
) -> Result<(File, PathBuf, u64, String), AuditError> {
    let file_name = part_file_name(name, part);
    let path = dir.join(&file_name);
    let mut opts = OpenOptions::new();
    opts.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let file = opts.open(&path).map_err(|e| io_error(&path, e))?;
    tighten_file_mode(&file).map_err(|e| io_error(&path, e))?;
    let (len, prev) = resume(&file, &file_name).map_err(|e| io_error(&path, e))?;
    Ok((file, path, len, prev))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent state (fields are updated only
    // after a successful write), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The event as JSON without `prev` and without its closing brace, ready for `prev` to be added.
fn encode(event: &Event) -> Result<Vec<u8>, AuditError> {
    let mut ev = Cow::Borrowed(event);
    if ev.prev.is_some() {
        ev.to_mut().prev = None;
    }
    let safe = ev.findings.iter().all(|f| f.is_safe());
    // A finding must carry its rule id and a `REDACTED<rule:hash12>` placeholder, never the
    // value: in a debug build (every test) anything else is a bug that stops the test.
    debug_assert!(
        safe,
        "audit: a finding's placeholder is not a redaction placeholder (rules {:?})",
        ev.findings.iter().map(|f| &f.rule).collect::<Vec<_>>()
    );
    if !safe {
        tracing::error!(
            "audit: withheld a finding placeholder that is not a redaction placeholder"
        );
        for f in &mut ev.to_mut().findings {
            if !f.is_safe() {
                f.placeholder = None;
            }
        }
    }
    let mut line = serde_json::to_vec(&*ev)?;
    // An Event is a non-empty JSON object, so it ends with `}` and has a field before `prev`.
    if line.pop() != Some(b'}') {
        return Err(AuditError::Encode(serde::ser::Error::custom(
            "event did not encode as a JSON object",
        )));
    }
    Ok(line)
}

/// Creates `dir` (and its parents); the directory itself, if new, gets mode 0700.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    #[cfg_attr(not(unix), allow(unused_mut, reason = "only Unix sets a mode"))]
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    match b.create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// An existing file readable by others (made by hand, or by an old version) is made 0600.
fn tighten_file_mode(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// Where an existing file's chain goes on: the length up to its last whole line (cutting off a
/// torn tail) and the hash of that line, or the genesis hash for an empty file.
fn resume(file: &File, file_name: &str) -> io::Result<(u64, String)> {
    let mut len = file.metadata()?.len();
    if len == 0 {
        return Ok((0, chain::genesis(file_name)));
    }
    if last_byte(file, len)? != b'\n' {
        let whole = rfind_newline(file, len)?.map_or(0, |nl| nl + 1);
        tracing::warn!(
            "audit: cutting off {} bytes of an interrupted write at the end of {file_name}",
            len - whole
        );
        file.set_len(whole)?;
        len = whole;
        if len == 0 {
            return Ok((0, chain::genesis(file_name)));
        }
    }
    // The last line is [start, len - 1); its newline is at len - 1.
    let start = rfind_newline(file, len - 1)?.map_or(0, |nl| nl + 1);
    let mut line = vec![0u8; (len - 1 - start) as usize];
    let mut f = file;
    f.seek(SeekFrom::Start(start))?;
    f.read_exact(&mut line)?;
    Ok((len, chain::line_hash(&line)))
}

fn last_byte(file: &File, len: u64) -> io::Result<u8> {
    let mut f = file;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut b)?;
    Ok(b[0])
}

/// Offset of the last `\n` before offset `end`, reading backwards in blocks.
fn rfind_newline(file: &File, end: u64) -> io::Result<Option<u64>> {
    const BLOCK: u64 = 8192;
    let mut f = file;
    let mut buf = vec![0u8; BLOCK as usize];
    let mut hi = end;
    while hi > 0 {
        let lo = hi.saturating_sub(BLOCK);
        let n = (hi - lo) as usize;
        f.seek(SeekFrom::Start(lo))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}
