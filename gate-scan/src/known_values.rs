//! Known values: the literal secrets of this machine (environment variables with secret-sounding
//! names, configured secret files), matched with Aho-Corasick in their raw form and in the
//! encodings they commonly travel in. Values live in memory only and are never printed.
use std::path::Path;
use std::sync::Arc;

use crate::encode;
use crate::entropy::shannon_entropy;
use crate::error::ScanError;
#[cfg(test)]
use crate::finding::Source;

/// Minimum length of a harvested value.
pub const MIN_LEN: usize = 8;
/// Minimum Shannon entropy (bits per byte) of a harvested value.
pub const MIN_ENTROPY: f64 = 2.5;
/// Longest value kept (longer ones are not credentials we can usefully match literally).
const MAX_LEN: usize = 8192;

/// Words that make an environment variable (or a key in a secret file) secret-sounding.
const NAME_WORDS: &[&str] = &[
    "KEY",
    "SECRET",
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTH",
];

/// Variables whose names sound secret but hold paths or settings.
const NAME_EXCEPTIONS: &[&str] = &[
    "SSH_AUTH_SOCK",
    "XAUTHORITY",
    "GNOME_KEYRING_CONTROL",
    "KEYTIMEOUT",
    "GPG_KEY_ID",
];

/// One form of a known value and the label of where the value came from.
pub(crate) type LabelledPattern = (Vec<u8>, Arc<str>);

#[derive(Clone)]
struct Entry {
    label: Arc<str>,
    value: Vec<u8>,
}

/// The set of literal secret values to look for. Its `Debug` output shows how many values and
/// where they came from, never a value.
#[derive(Clone, Default)]
pub struct KnownValues {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for KnownValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownValues")
            .field("count", &self.entries.len())
            .field("sources", &self.labels())
            .finish()
    }
}

/// Whether an environment variable or key name sounds like it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    !NAME_EXCEPTIONS.contains(&upper.as_str()) && NAME_WORDS.iter().any(|w| upper.contains(w))
}

/// The basic filter every harvested value passes: long enough, random enough, not a path or a
/// number.
fn plausible(value: &str) -> bool {
    let v = value.as_bytes();
    v.len() >= MIN_LEN
        && v.len() <= MAX_LEN
        && !value.starts_with('/')
        && !value.starts_with("~/")
        && !v.iter().all(|b| b.is_ascii_digit())
        && !matches!(value, "true" | "false" | "enabled" | "disabled")
        && shannon_entropy(v) >= MIN_ENTROPY
}

/// The stricter filter for values in a secret file whose key does not sound secret
/// (`HOST=localhost` must not become a known value).
fn plausible_unnamed(value: &str) -> bool {
    plausible(value)
        && value.len() >= 12
        && shannon_entropy(value.as_bytes()) >= 3.5
        && value.bytes().any(|b| b.is_ascii_digit())
        && value.bytes().any(|b| b.is_ascii_alphabetic())
        && !value.contains(' ')
}

fn strip_quotes(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

enum Format {
    Json,
    Toml,
    KeyValue,
    Plain,
}

impl KnownValues {
    pub fn new() -> KnownValues {
        KnownValues::default()
    }

    /// Values of this process's environment variables with secret-sounding names.
    pub fn from_env() -> KnownValues {
        let mut kv = KnownValues::new();
        kv.harvest_env(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        );
        kv
    }

    /// Adds the values of the variables among `vars` whose names contain KEY, SECRET, TOKEN,
    /// PASSWORD, CREDENTIAL or AUTH and whose values pass the length and entropy filter.
    /// Returns how many were added.
    pub fn harvest_env<I, K, V>(&mut self, vars: I) -> usize
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut n = 0;
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref());
            if is_secret_name(name) && self.add(&format!("${name}"), value) {
                n += 1;
            }
        }
        n
    }

    /// Adds one value if it passes the filter (length >= 8, entropy >= 2.5 bits, not a path or
    /// a number). `label` says where it came from and may be printed; the value never is.
    pub fn add(&mut self, label: &str, value: &str) -> bool {
        let value = value.trim();
        if !plausible(value) {
            return false;
        }
        self.push(label, value);
        true
    }

    fn push(&mut self, label: &str, value: &str) {
        self.entries.push(Entry {
            label: label.into(),
            value: value.as_bytes().to_vec(),
        });
    }

    fn add_keyed(&mut self, file: &str, key: &str, value: &str) -> bool {
        let value = strip_quotes(value);
        let ok = if is_secret_name(key) {
            plausible(value)
        } else {
            plausible_unnamed(value)
        };
        if ok {
            self.push(&format!("{file}:{key}"), value);
        }
        ok
    }

    /// Reads a secret file (.env, JSON, TOML, INI, AWS credentials or plain: one value per
    /// line) and adds its values. Returns how many were added.
    pub fn load_file(&mut self, path: &Path) -> Result<usize, ScanError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScanError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.add_file_text(path, &text)
    }

    /// Adds the values of a secret file's text; `path` picks the format and labels the values.
    pub fn add_file_text(&mut self, path: &Path, text: &str) -> Result<usize, ScanError> {
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let name = label.to_ascii_lowercase();
        let format = if name.ends_with(".json") {
            Format::Json
        } else if name.ends_with(".toml") {
            Format::Toml
        } else if name.starts_with(".env")
            || name.ends_with(".env")
            || name.ends_with(".ini")
            || name.ends_with(".cfg")
            || name.ends_with(".conf")
            || name.ends_with(".properties")
            || name == "credentials"
            || name == "config"
        {
            Format::KeyValue
        } else if text.trim_start().starts_with('{') {
            Format::Json
        } else {
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
                .collect();
            let kv = lines
                .iter()
                .filter(|l| {
                    l.starts_with('[')
                        || l.split_once('=').is_some_and(|(k, _)| {
                            !k.trim().is_empty() && !k.trim().contains(char::is_whitespace)
                                || k.trim().starts_with("export ")
                        })
                })
                .count();
            if !lines.is_empty() && kv * 2 >= lines.len() {
                Format::KeyValue
            } else {
                Format::Plain
            }
        };
        let bad = |reason: String| ScanError::SecretFile {
            path: path.to_path_buf(),
            reason,
        };
        let mut n = 0;
        match format {
            Format::Json => {
                let v: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| bad(format!("not valid JSON (line {})", e.line())))?;
                self.walk_json(&label, "", &v, &mut n);
            }
            Format::Toml => {
                let v: toml::Table = toml::from_str(text).map_err(|e| {
                    let line = e
                        .span()
                        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                        .unwrap_or(0);
                    bad(format!("not valid TOML (line {line})"))
                })?;
                self.walk_toml(&label, "", &toml::Value::Table(v), &mut n);
            }
            Format::KeyValue => {
                for line in text.lines() {
                    let line = line.trim();
                    if line.is_empty()
                        || line.starts_with('#')
                        || line.starts_with(';')
                        || line.starts_with('[')
                    {
                        continue;
                    }
                    let line = line.strip_prefix("export ").unwrap_or(line);
                    let split = line.split_once('=').or_else(|| line.split_once(':'));
                    if let Some((k, v)) = split
                        && self.add_keyed(&label, k.trim(), v)
                    {
                        n += 1;
                    }
                }
            }
            Format::Plain => {
                for line in text.lines() {
                    if self.add(&label, line) {
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
    }

    fn walk_json(&mut self, file: &str, key: &str, v: &serde_json::Value, n: &mut usize) {
        match v {
            serde_json::Value::String(s) if self.add_keyed(file, key, s) => *n += 1,
            serde_json::Value::Array(a) => a.iter().for_each(|x| self.walk_json(file, key, x, n)),
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    let path = if key.is_empty() {
                        k.clone()
                    } else {
                        format!("{key}.{k}")
                    };
                    self.walk_json(file, &path, x, n);
                }
            }
            _ => {}
        }
    }

    fn walk_toml(&mut self, file: &str, key: &str, v: &toml::Value, n: &mut usize) {
        match v {
            toml::Value::String(s) if self.add_keyed(file, key, s) => *n += 1,
            toml::Value::Array(a) => a.iter().for_each(|x| self.walk_toml(file, key, x, n)),
            toml::Value::Table(t) => {
                for (k, x) in t {
                    let path = if key.is_empty() {
                        k.clone()
                    } else {
                        format!("{key}.{k}")
                    };
                    self.walk_toml(file, &path, x, n);
                }
            }
            _ => {}
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Where each value came from (`$NAME`, `file:key`); never the values.
    pub fn labels(&self) -> Vec<&str> {
        self.entries.iter().map(|e| &*e.label).collect()
    }

    /// Every form (raw and encoded) of every distinct value, with the label of its source.
    pub(crate) fn patterns(&self) -> (Vec<LabelledPattern>, usize) {
        let mut patterns: Vec<(Vec<u8>, Arc<str>)> = Vec::new();
        let mut values: Vec<&[u8]> = Vec::new();
        for e in &self.entries {
            if values.contains(&e.value.as_slice()) {
                continue;
            }
            values.push(&e.value);
            let mut forms = vec![e.value.clone()];
            forms.extend(encode::base64_forms(&e.value));
            forms.extend(encode::url_forms(&e.value));
            forms.extend(encode::json_forms(&e.value));
            for f in forms {
                if f.len() >= MIN_LEN && !patterns.iter().any(|(p, _)| *p == f) {
                    patterns.push((f, e.label.clone()));
                }
            }
        }
        (patterns, values.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ScanConfig, Scanner};

    fn fake(tag: &str) -> String {
        format!("{tag}-{}-{}", "Q7w9", "zX3vB8nM2kL5")
    }

    fn scanner(kv: KnownValues) -> Scanner {
        Scanner::new(ScanConfig {
            known_values: kv,
            ..ScanConfig::without_rules()
        })
        .unwrap()
    }

    #[test]
    fn env_harvest_picks_secret_names_and_filters_values() {
        let mut kv = KnownValues::new();
        let n = kv.harvest_env([
            ("MY_API_KEY", fake("a").as_str()),
            ("GITHUB_TOKEN", fake("b").as_str()),
            ("DB_PASSWORD", "short"),
            ("AUTH_HEADER", "aaaaaaaaaaaa"),
            ("HOME", fake("c").as_str()),
            ("SSH_AUTH_SOCK", "/tmp/ssh-abc/agent.1"),
            ("CREDENTIALS_PATH", "/home/u/creds.json"),
            ("CLIENT_SECRET", fake("d").as_str()),
        ]);
        assert_eq!(n, 3);
        assert_eq!(
            kv.labels(),
            vec!["$MY_API_KEY", "$GITHUB_TOKEN", "$CLIENT_SECRET"]
        );
    }

    #[test]
    fn debug_never_prints_a_value() {
        let mut kv = KnownValues::new();
        let v = fake("debug");
        assert!(kv.add("$X_TOKEN", &v));
        let dbg = format!("{kv:?}");
        assert!(!dbg.contains(&v), "{dbg}");
        assert!(!dbg.contains("zX3vB8nM2kL5"), "{dbg}");
        assert!(dbg.contains("$X_TOKEN"));
    }

    #[test]
    fn values_are_found_raw_and_encoded() {
        let v = format!("p@ss/{}\"x", "Q7w9zX3vB8nM2kL5");
        let mut kv = KnownValues::new();
        assert!(kv.add("$DB_PASSWORD", &v));
        let s = scanner(kv);
        let b64 = |d: &[u8]| {
            let mut out = Vec::new();
            for f in encode::base64_forms(d) {
                out.push(f);
            }
            out
        };
        let raw = format!("conn {v} end");
        assert_eq!(s.scan(raw.as_bytes()).len(), 1);
        let url: String = encode::url_forms(v.as_bytes())
            .into_iter()
            .map(|f| String::from_utf8(f).unwrap())
            .next()
            .unwrap();
        assert!(url.contains("%2F"));
        assert_eq!(s.scan(format!("?pw={url}&x=1").as_bytes()).len(), 1);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(s.scan(format!("{{\"p\":{json}}}").as_bytes()).len(), 1);
        // A base64 blob of "user:<value>", as in a Basic authorization header.
        let mut basic = b"user:".to_vec();
        basic.extend_from_slice(v.as_bytes());
        let encoded = {
            let forms = b64(&basic);
            String::from_utf8(forms[0].clone()).unwrap()
        };
        let found = s.scan(format!("Authorization: Basic {encoded}").as_bytes());
        assert_eq!(found.len(), 1, "basic auth");
        assert_eq!(found[0].source, Source::KnownValue);
        assert_eq!(&*found[0].name, "$DB_PASSWORD");
    }

    #[test]
    fn rule_findings_win_over_known_value_duplicates() {
        let key = format!("AKIA{}{}", "EXAMPLE", "23456XYZA");
        let mut kv = KnownValues::new();
        assert!(kv.add("$AWS_ACCESS_KEY_ID", &key));
        let mut config = ScanConfig::builtin().unwrap();
        config.known_values = kv;
        let s = Scanner::new(config).unwrap();
        let found = s.scan(format!("id = {key}\n").as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(&*found[0].rule_id, "aws-access-key-id");
        assert_eq!(found[0].source, Source::Rule);
    }

    #[test]
    fn files_in_every_format() {
        let secret = fake("f");
        let cases = [
            (
                ".env",
                format!("# c\nexport API_TOKEN=\"{secret}\"\nHOST=localhost\nPORT=5432\n"),
            ),
            (
                "creds.json",
                format!("{{\"db\": {{\"password\": \"{secret}\", \"host\": \"db.internal\"}}}}"),
            ),
            (
                "s.toml",
                format!("[db]\npassword = \"{secret}\"\nhost = \"localhost\"\n"),
            ),
            (
                "credentials",
                format!("[default]\naws_secret_access_key = {secret}\nregion = eu-west-1\n"),
            ),
            (
                "app.ini",
                format!("[auth]\nkey: {secret}\nname = production\n"),
            ),
            ("token.txt", format!("{secret}\n")),
        ];
        for (name, text) in cases {
            let mut kv = KnownValues::new();
            let n = kv.add_file_text(Path::new(name), &text).unwrap();
            assert_eq!(n, 1, "{name}: {:?}", kv.labels());
            let s = scanner(kv);
            assert_eq!(
                s.scan(format!("x {secret} y").as_bytes()).len(),
                1,
                "{name}"
            );
            assert!(
                s.scan(b"localhost production eu-west-1").is_empty(),
                "{name}"
            );
        }
    }

    #[test]
    fn unnamed_keys_need_a_random_looking_value() {
        let mut kv = KnownValues::new();
        let text = format!(
            "HOST=localhost\nNAME=production-db\nBLOB={}\n",
            fake("blob")
        );
        assert_eq!(kv.add_file_text(Path::new("x.env"), &text).unwrap(), 1);
    }

    #[test]
    fn bad_secret_files_are_errors_without_content() {
        let mut kv = KnownValues::new();
        let err = kv
            .add_file_text(Path::new("s.json"), "{\"password\": \"hunter2hunter2\",")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.json: not valid JSON"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
