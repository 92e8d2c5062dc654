//! The scanner's typed errors: a bad rule file names the file, the line and the reason.
use std::path::PathBuf;

/// Everything that can go wrong while loading rules, known values or building a scanner.
/// Messages never contain a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A rule file that could not be parsed or holds an invalid rule.
    #[error("{file}:{line}: {reason}")]
    RuleFile {
        file: String,
        line: usize,
        reason: String,
    },
    /// A file that could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A known-values file that could not be parsed (the message never quotes its content).
    #[error("{}: {reason}", path.display())]
    SecretFile { path: PathBuf, reason: String },
    /// The prefilter or a regex could not be compiled with the whole rule set.
    #[error("cannot build the scanner: {0}")]
    Build(String),
}
