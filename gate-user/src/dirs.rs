//! Where gate keeps things: config, data (CA, redaction key) and state (audit), per XDG.
use std::path::{Path, PathBuf};

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
    {
        Some(p) if p.is_absolute() => p,
        _ => home().join(fallback),
    }
}

/// `$XDG_CONFIG_HOME/gate` (default `~/.config/gate`).
pub fn config_dir() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config").join("gate")
}

/// The default config file, `$XDG_CONFIG_HOME/gate/config.toml`.
pub fn default_config_file() -> PathBuf {
    config_dir().join("config.toml")
}

/// `$XDG_DATA_HOME/gate` (default `~/.local/share/gate`): the CA and the redaction key.
/// `GATE_DATA_DIR` overrides it (tests, CI).
pub fn data_dir() -> PathBuf {
    match std::env::var_os("GATE_DATA_DIR").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => xdg("XDG_DATA_HOME", ".local/share").join("gate"),
    }
}

/// `$XDG_STATE_HOME/gate` (default `~/.local/state/gate`): the audit log.
pub fn state_dir() -> PathBuf {
    xdg("XDG_STATE_HOME", ".local/state").join("gate")
}

/// Expands a leading `~/` against `$HOME`; other paths are returned unchanged.
pub fn expand_tilde(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => home().join(rest),
        Err(_) => path.to_path_buf(),
    }
}
