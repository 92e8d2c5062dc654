//! The audit trail: one JSON Lines event per connection, request, finding, DNS query and kernel
//! refusal, appended and synced before a verdict is released. Knows nothing of HTTP.
pub mod event;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use event::{Decision, Event, EventKind, FindingRecord};

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

/// An open, append-only audit file. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating) `dir/<name>.jsonl` for appending.
    pub fn open(dir: &Path, name: &str) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(format!("{name}.jsonl"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| AuditError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event; synced to disk when its decision refuses or rewrites traffic.
    pub fn record(&self, event: &Event) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        f.write_all(&line).map_err(io)?;
        if event.decision.needs_sync() {
            f.sync_data().map_err(io)?;
        }
        Ok(())
    }
}
