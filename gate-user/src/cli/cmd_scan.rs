//! `gate scan`: offline scan of files, folders (honouring .gitignore) or stdin with the same
//! scanner the proxy uses; prints where each secret is (never the secret) and exits 0 clean,
//! 1 found, 2 error.
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use gate_scan::{Finding, KnownValues, RuleSet, ScanConfig, Scanner, mask};

use super::Global;
use crate::config::{Overrides, Settings};

/// Exit code when secrets were found.
pub const EXIT_FOUND: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per finding: `file:line:column: rule (service) masked`.
    Text,
    /// JSON Lines: one object per finding.
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or folders to scan (folders honour .gitignore); `-` or nothing reads stdin.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Turn off the entropy detector (high-entropy values assigned to secret-sounding names).
    #[arg(long)]
    pub no_entropy: bool,
    /// Do not look for the values of this machine's secrets (environment, secret files).
    #[arg(long)]
    pub no_known_values: bool,
    /// Extra rule file (signatures.yaml shape, gate's rule shape, or .gitleaks.toml); repeatable.
    #[arg(long, value_name = "FILE")]
    pub signatures: Vec<PathBuf>,
}

/// The built-in rules plus every extra rule file, in order.
pub fn load_rules(files: &[PathBuf]) -> anyhow::Result<RuleSet> {
    let mut rules = RuleSet::builtin().context("built-in rules")?;
    for f in files {
        let extra = RuleSet::from_file(f)?;
        crate::guard::warn_keyword_gaps(&extra);
        rules.extend(extra)?;
    }
    Ok(rules)
}

/// One finding located in a named input.
struct Located {
    file: String,
    line: usize,
    column: usize,
    finding: Finding,
    masked: String,
}

/// Byte offset to 1-based (line, column).
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(data: &[u8]) -> Lines {
        let mut starts = vec![0];
        starts.extend(
            data.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Lines { starts }
    }
    fn locate(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        (line, offset - self.starts[line - 1] + 1)
    }
}

fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(8192)].contains(&0)
}

#[derive(Default)]
struct Outcome {
    findings: Vec<Located>,
    errors: usize,
    scanned: usize,
    skipped_binary: usize,
}

impl Outcome {
    fn scan(&mut self, scanner: &Scanner, name: &str, data: &[u8]) {
        self.scanned += 1;
        let found = scanner.scan(data);
        if found.is_empty() {
            return;
        }
        let lines = Lines::new(data);
        for f in found {
            let (line, column) = lines.locate(f.start);
            let masked = data.get(f.range()).map(mask).unwrap_or_default();
            self.findings.push(Located {
                file: name.to_string(),
                line,
                column,
                finding: f,
                masked,
            });
        }
    }

    fn error(&mut self, what: impl std::fmt::Display) {
        self.errors += 1;
        eprintln!("gate: {what}");
    }

    fn scan_file(&mut self, scanner: &Scanner, path: &Path) {
        match std::fs::read(path) {
            Ok(data) if is_binary(&data) => {
                self.skipped_binary += 1;
                tracing::debug!("skipped binary file {}", path.display());
            }
            Ok(data) => self.scan(scanner, &path.display().to_string(), &data),
            Err(e) => self.error(format!("{}: {e}", path.display())),
        }
    }

    fn scan_dir(&mut self, scanner: &Scanner, dir: &Path) {
        let walker = ignore::WalkBuilder::new(dir)
            .hidden(false)
            .require_git(false)
            .filter_entry(|e| e.file_name() != ".git")
            .sort_by_file_name(|a, b| a.cmp(b))
            .build();
        for entry in walker {
            match entry {
                Ok(e) if e.file_type().is_some_and(|t| t.is_file()) => {
                    self.scan_file(scanner, e.path())
                }
                Ok(_) => {}
                Err(e) => self.error(e),
            }
        }
    }
}

fn build_scanner(global: &Global, args: &Args) -> anyhow::Result<Scanner> {
    let settings = Settings::load(global.config.as_deref(), &Overrides::default())?;
    let mut files = settings.signatures.clone();
    files.extend(args.signatures.iter().cloned());
    let rules = load_rules(&files)?;
    let mut known_values = KnownValues::new();
    if !args.no_known_values {
        if settings.scan_env {
            known_values = KnownValues::from_env();
        }
        for f in &settings.secret_files {
            match known_values.load_file(f) {
                Ok(_) => {}
                Err(gate_scan::ScanError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    tracing::debug!("secret file {} does not exist", f.display());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Scanner::new(ScanConfig {
        rules,
        known_values,
        entropy: !args.no_entropy,
    })?)
}

pub fn run(global: &Global, args: &Args) -> anyhow::Result<ExitCode> {
    let scanner = build_scanner(global, args)?;
    let mut outcome = Outcome::default();
    let stdin_only = args.paths.is_empty();
    let inputs: Vec<PathBuf> = if stdin_only {
        vec![PathBuf::from("-")]
    } else {
        args.paths.clone()
    };
    for p in &inputs {
        if p.as_os_str() == "-" {
            let mut data = Vec::new();
            match std::io::stdin().lock().read_to_end(&mut data) {
                Ok(_) => outcome.scan(&scanner, "-", &data),
                Err(e) => outcome.error(format!("stdin: {e}")),
            }
        } else if p.is_dir() {
            outcome.scan_dir(&scanner, p);
        } else {
            outcome.scan_file(&scanner, p);
        }
    }
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Text => write_text(&mut out, &outcome.findings),
        Format::Json => write_json(&mut out, &outcome.findings),
        Format::Sarif => write_sarif(&mut out, &outcome.findings),
    };
    written
        .and_then(|()| out.flush())
        .context("writing results")?;
    if !global.quiet {
        let files: std::collections::BTreeSet<&str> =
            outcome.findings.iter().map(|l| l.file.as_str()).collect();
        eprintln!(
            "gate: {} finding{} in {} of {} input{} scanned{}{}",
            outcome.findings.len(),
            if outcome.findings.len() == 1 { "" } else { "s" },
            files.len(),
            outcome.scanned,
            if outcome.scanned == 1 { "" } else { "s" },
            if outcome.skipped_binary > 0 {
                format!(", {} binary skipped", outcome.skipped_binary)
            } else {
                String::new()
            },
            if outcome.errors > 0 {
                format!(", {} error(s)", outcome.errors)
            } else {
                String::new()
            },
        );
    }
    Ok(if outcome.errors > 0 {
        ExitCode::from(super::EXIT_ERROR)
    } else if outcome.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FOUND)
    })
}

fn write_text(out: &mut impl Write, findings: &[Located]) -> std::io::Result<()> {
    for l in findings {
        let f = &l.finding;
        writeln!(
            out,
            "{}:{}:{}: {} ({}: {}) [{}] {}",
            l.file,
            l.line,
            l.column,
            f.rule_id,
            f.service,
            f.name,
            f.confidence.as_str(),
            l.masked
        )?;
    }
    Ok(())
}

fn json_object(l: &Located) -> serde_json::Value {
    let f = &l.finding;
    serde_json::json!({
        "rule": &*f.rule_id,
        "service": &*f.service,
        "name": &*f.name,
        "file": l.file,
        "line": l.line,
        "column": l.column,
        "start": f.start,
        "end": f.end,
        "confidence": f.confidence.as_str(),
        "source": f.source.as_str(),
        "masked": l.masked,
    })
}

fn write_json(out: &mut impl Write, findings: &[Located]) -> std::io::Result<()> {
    for l in findings {
        serde_json::to_writer(&mut *out, &json_object(l))?;
        writeln!(out)?;
    }
    Ok(())
}

fn sarif_uri(file: &str) -> String {
    if file == "-" {
        return "stdin".to_string();
    }
    file.replace('\\', "/")
        .split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn write_sarif(out: &mut impl Write, findings: &[Located]) -> std::io::Result<()> {
    let mut rules: BTreeMap<&str, &Finding> = BTreeMap::new();
    for l in findings {
        rules.entry(&*l.finding.rule_id).or_insert(&l.finding);
    }
    let rule_objs: Vec<serde_json::Value> = rules
        .values()
        .map(|f| {
            serde_json::json!({
                "id": &*f.rule_id,
                "name": &*f.rule_id,
                "shortDescription": {"text": format!("{}: {}", f.service, f.name)},
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = findings
        .iter()
        .map(|l| {
            let f = &l.finding;
            serde_json::json!({
                "ruleId": &*f.rule_id,
                "level": if f.confidence == gate_scan::Confidence::High { "error" } else { "warning" },
                "message": {"text": format!("{} ({}: {}) {}", f.rule_id, f.service, f.name, l.masked)},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": sarif_uri(&l.file)},
                        "region": {
                            "startLine": l.line,
                            "startColumn": l.column,
                            "byteOffset": f.start,
                            "byteLength": f.len(),
                        }
                    }
                }],
            })
        })
        .collect();
    let doc = serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "gate",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/gate",
                "rules": rule_objs,
            }},
            "results": results,
        }],
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_locate_offsets() {
        let l = Lines::new(b"ab\ncd\n\nef");
        assert_eq!(l.locate(0), (1, 1));
        assert_eq!(l.locate(1), (1, 2));
        assert_eq!(l.locate(3), (2, 1));
        assert_eq!(l.locate(7), (4, 1));
    }

    #[test]
    fn binary_detection_looks_for_nul() {
        assert!(is_binary(b"\x89PNG\0\0"));
        assert!(!is_binary("héllo".as_bytes()));
    }

    #[test]
    fn sarif_uris_are_percent_encoded() {
        assert_eq!(sarif_uri("a dir/f#1.txt"), "a%20dir/f%231.txt");
        assert_eq!(sarif_uri("-"), "stdin");
    }
}
