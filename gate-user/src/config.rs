//! The configuration file's schema, and the one step that turns file + environment + flags into
//! validated [`Settings`]. Unknown keys are errors; a bad file names itself, the line and what
//! was expected, and gate does not start.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dirs;
use crate::policy::{HostPattern, HostPolicy, PatternError};

/// What the proxy does with a secret it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Replace each secret with `REDACTED<rule:hash12>` and forward.
    #[default]
    Redact,
    /// Refuse the request with 403.
    Block,
    /// Forward unchanged and record.
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Redact => "redact",
            Mode::Block => "block",
            Mode::Audit => "audit",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "redact" => Ok(Mode::Redact),
            "block" => Ok(Mode::Block),
            "audit" => Ok(Mode::Audit),
            other => Err(ConfigError::Invalid {
                what: "mode".into(),
                why: format!("`{other}` is not one of redact, block, audit"),
            }),
        }
    }
}

/// The TOML file as written. Every table and key is optional; unknown ones are refused.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub mode: Option<Mode>,
    pub allow_loopback: Option<bool>,
    #[serde(default)]
    pub hosts: HostsFile,
    #[serde(default)]
    pub upstream: UpstreamFile,
    #[serde(default)]
    pub known_values: KnownValuesFile,
    #[serde(default)]
    pub audit: AuditFile,
    #[serde(default)]
    pub scan: ScanFile,
    #[serde(default)]
    pub dns: DnsFile,
    #[serde(default)]
    pub proxy: ProxyFile,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsFile {
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub passthrough: Vec<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub enforce_allowlist: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    #[serde(default)]
    pub extra_ca: Vec<PathBuf>,
    /// Name overrides for upstream connections, like curl --resolve: "host=IP" or "host=IP:PORT".
    #[serde(default)]
    pub resolve: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownValuesFile {
    #[serde(default = "yes")]
    pub scan_env: bool,
    #[serde(default)]
    pub secret_files: Vec<PathBuf>,
}

impl Default for KnownValuesFile {
    fn default() -> Self {
        Self {
            scan_env: true,
            secret_files: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanFile {
    /// Turn on the entropy detector in the proxy (off by default).
    pub entropy: Option<bool>,
    /// Extra rule files (signatures.yaml shape or .gitleaks.toml).
    #[serde(default)]
    pub signatures: Vec<PathBuf>,
    /// Largest request body that is scanned and forwarded; larger ones are refused.
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    /// Upstream resolvers for gate's DNS forwarder [default: from /etc/resolv.conf].
    #[serde(default)]
    pub upstream: Vec<SocketAddr>,
    /// Refuse names that look like exfiltration (long, high-entropy labels). Default true.
    pub block_exfiltration: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    /// Non-HTTP TCP destinations allowed as audited raw tunnels ("host:port" or "*.suffix:port").
    #[serde(default)]
    pub allow_tunnels: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Default cap on request bodies: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// Validated settings every subcommand works from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub allow_loopback: bool,
    pub hosts: HostPolicy,
    pub extra_ca: Vec<PathBuf>,
    pub scan_env: bool,
    pub secret_files: Vec<PathBuf>,
    pub audit_dir: PathBuf,
    pub entropy: bool,
    pub signatures: Vec<PathBuf>,
    pub max_body_bytes: u64,
    pub dns_upstream: Vec<SocketAddr>,
    pub dns_block_exfiltration: bool,
    pub allow_tunnels: Vec<(HostPattern, u16)>,
    /// Upstream name overrides from `upstream.resolve` (host -> address; port 0 keeps the port).
    pub resolve_overrides: std::collections::HashMap<String, SocketAddr>,
    /// The file the settings came from, if any.
    pub source: Option<PathBuf>,
}

/// Flag values that override the file; `None` means "not given on the command line".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub mode: Option<Mode>,
    pub allow_loopback: Option<bool>,
    pub extra_ca: Vec<PathBuf>,
    pub audit_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {what}: {why}")]
    Invalid { what: String, why: String },
    #[error("config: {0}")]
    Pattern(#[from] PatternError),
}

/// Parses a config file's text. `path` only names the file in errors.
pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// Loads the file named by `--config`/`GATE_CONFIG`, or the default file if it exists.
/// A file named explicitly must exist.
pub fn load_file(explicit: Option<&Path>) -> Result<(FileConfig, Option<PathBuf>), ConfigError> {
    let (path, must_exist) = match explicit {
        Some(p) => (dirs::expand_tilde(p), true),
        None => (dirs::default_config_file(), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((parse(&text, &path)?, Some(path))),
        Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => {
            Ok((FileConfig::default(), None))
        }
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

fn env_bool(name: &str) -> Result<Option<bool>, ConfigError> {
    match std::env::var(name) {
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            other => Err(ConfigError::Invalid {
                what: name.into(),
                why: format!("`{other}` is not a boolean (true/false)"),
            }),
        },
        Err(_) => Ok(None),
    }
}

impl Settings {
    /// File, then environment (`GATE_MODE`, `GATE_ALLOW_LOOPBACK`, `GATE_AUDIT_DIR`), then flags.
    pub fn resolve(
        file: FileConfig,
        source: Option<PathBuf>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        let env_mode = match std::env::var("GATE_MODE") {
            Ok(m) => Some(m.parse::<Mode>()?),
            Err(_) => None,
        };
        let mode = flags.mode.or(env_mode).or(file.mode).unwrap_or_default();
        let allow_loopback = flags
            .allow_loopback
            .or(env_bool("GATE_ALLOW_LOOPBACK")?)
            .or(file.allow_loopback)
            .unwrap_or(true);
        let hosts = HostPolicy::new(
            &file.hosts.deny,
            &file.hosts.passthrough,
            &file.hosts.allow,
            file.hosts.enforce_allowlist,
        )?;
        let mut extra_ca: Vec<PathBuf> = file
            .upstream
            .extra_ca
            .iter()
            .map(|p| dirs::expand_tilde(p))
            .collect();
        extra_ca.extend(flags.extra_ca.iter().cloned());
        let audit_dir = flags
            .audit_dir
            .clone()
            .or_else(|| {
                std::env::var_os("GATE_AUDIT_DIR")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| file.audit.dir.as_deref().map(dirs::expand_tilde))
            .unwrap_or_else(dirs::state_dir);
        let max_body_bytes = file.scan.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                what: "scan.max_body_bytes".into(),
                why: "must be greater than 0".into(),
            });
        }
        let mut allow_tunnels = Vec::new();
        for t in &file.proxy.allow_tunnels {
            let (host, port) = t.rsplit_once(':').ok_or_else(|| ConfigError::Invalid {
                what: "proxy.allow_tunnels".into(),
                why: format!("`{t}` is not host:port"),
            })?;
            let port: u16 = port.parse().map_err(|_| ConfigError::Invalid {
                what: "proxy.allow_tunnels".into(),
                why: format!("`{t}`: `{port}` is not a port number"),
            })?;
            allow_tunnels.push((HostPattern::parse(host)?, port));
        }
        let resolve_overrides = crate::proxy::upstream::parse_overrides(&file.upstream.resolve)
            .map_err(|why| ConfigError::Invalid {
                what: "upstream.resolve".into(),
                why,
            })?;
        Ok(Settings {
            mode,
            allow_loopback,
            hosts,
            extra_ca,
            scan_env: file.known_values.scan_env,
            secret_files: file
                .known_values
                .secret_files
                .iter()
                .map(|p| dirs::expand_tilde(p))
                .collect(),
            audit_dir,
            entropy: file.scan.entropy.unwrap_or(false),
            signatures: file
                .scan
                .signatures
                .iter()
                .map(|p| dirs::expand_tilde(p))
                .collect(),
            max_body_bytes,
            dns_upstream: file.dns.upstream,
            dns_block_exfiltration: file.dns.block_exfiltration.unwrap_or(true),
            allow_tunnels,
            resolve_overrides,
            source,
        })
    }

    /// Loads and resolves in one step: what most subcommands want.
    pub fn load(explicit: Option<&Path>, flags: &Overrides) -> Result<Self, ConfigError> {
        let (file, source) = load_file(explicit)?;
        Self::resolve(file, source, flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example_parses() {
        let text = r#"
mode = "block"
allow_loopback = false
[hosts]
deny = ["paste.example.com", "*.evil.test"]
passthrough = ["pinned.example.com"]
allow = []
enforce_allowlist = false
[upstream]
extra_ca = ["/etc/ssl/corp-root.pem"]
[known_values]
scan_env = true
secret_files = ["~/.aws/credentials", ".env"]
[audit]
dir = "/var/log/gate"
"#;
        let f = parse(text, Path::new("c.toml")).unwrap();
        let s = Settings::resolve(f, None, &Overrides::default()).unwrap();
        assert_eq!(s.mode, Mode::Block);
        assert!(!s.allow_loopback);
        assert_eq!(s.audit_dir, PathBuf::from("/var/log/gate"));
        assert_eq!(s.extra_ca, vec![PathBuf::from("/etc/ssl/corp-root.pem")]);
        assert!(s.hosts.is_denied("x.evil.test"));
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let err = parse(
            "mode = \"redact\"\n\n[hosts]\ndenny = []\n",
            Path::new("/tmp/g.toml"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/tmp/g.toml"), "{msg}");
        assert!(msg.contains("line 4"), "{msg}");
        assert!(msg.contains("denny"), "{msg}");
    }

    #[test]
    fn bad_mode_is_explained() {
        let err = parse("mode = \"loud\"\n", Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("redact"), "{err}");
    }

    #[test]
    fn flags_beat_file() {
        let f = parse("mode = \"audit\"\n", Path::new("g.toml")).unwrap();
        let o = Overrides {
            mode: Some(Mode::Block),
            ..Default::default()
        };
        assert_eq!(Settings::resolve(f, None, &o).unwrap().mode, Mode::Block);
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        assert!(matches!(
            load_file(Some(Path::new("/nonexistent/gate.toml"))),
            Err(ConfigError::Read { .. })
        ));
    }
}
