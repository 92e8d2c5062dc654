//! `gate rules`: list the detection rules in force, or validate a rule file: run the examples
//! its rules carry and check that their keywords cover every match.
use std::path::PathBuf;
use std::process::ExitCode;

use gate_scan::RuleSet;

use super::Global;
use super::cmd_scan::load_rules;
use crate::config::{Overrides, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// List the rules in force: built-in plus configured and given rule files.
    List(ListArgs),
    /// Validate rule files (or the built-in catalog when none is given), run their examples and
    /// check that every match of each rule holds one of its keywords.
    Check(CheckArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    /// Extra rule file to include; repeatable.
    #[arg(long, value_name = "FILE")]
    pub signatures: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Rule files (gate's shape, signatures.yaml shape or .gitleaks.toml).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn run(global: &Global, args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        RulesCommand::List(a) => list(global, a),
        RulesCommand::Check(a) => check(a),
    }
}

fn list(global: &Global, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(global.config.as_deref(), &Overrides::default())?;
    let mut files = settings.signatures.clone();
    files.extend(args.signatures.iter().cloned());
    let rules = load_rules(&files)?;
    let mut out = String::new();
    match args.format {
        ListFormat::Text => {
            let width = rules.iter().map(|r| r.id.len()).max().unwrap_or(0);
            for r in rules.iter() {
                out.push_str(&format!(
                    "{:width$}  {:6}  {}: {}\n",
                    r.id,
                    r.confidence.as_str(),
                    r.service,
                    r.name
                ));
            }
        }
        ListFormat::Json => {
            for r in rules.iter() {
                let v = serde_json::json!({
                    "id": r.id,
                    "service": r.service,
                    "name": r.name,
                    "confidence": r.confidence.as_str(),
                    "keywords": r.keywords,
                    "file": &*r.file,
                    "line": r.line,
                });
                out.push_str(&v.to_string());
                out.push('\n');
            }
        }
    }
    print!("{out}");
    if !global.quiet {
        eprintln!(
            "gate: {} rules from {} services",
            rules.len(),
            rules.services().len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let builtin = RuleSet::builtin()?;
    let mut sets = Vec::new();
    if args.files.is_empty() {
        sets.push(("built-in rules".to_string(), builtin.clone()));
    }
    for f in &args.files {
        let set = RuleSet::from_file(f)?;
        // A rule file is used on top of the built-in catalog: its ids must not collide.
        let mut combined = builtin.clone();
        combined.extend(set.clone())?;
        sets.push((f.display().to_string(), set));
    }
    let mut failed = false;
    for (name, set) in sets {
        let failures = set.check_examples()?;
        for f in &failures {
            println!("{f}");
        }
        let without: Vec<&str> = set
            .iter()
            .filter(|r| r.examples.is_empty() || r.negative.is_empty())
            .map(|r| r.id.as_str())
            .collect();
        if !without.is_empty() {
            println!(
                "{name}: note: {} rule(s) carry no positive and negative examples: {}",
                without.len(),
                without.join(", ")
            );
        }
        // A rule whose keywords miss some of its matches loads and runs its examples fine,
        // and still never finds the secrets its keywords leave out.
        let keyword_checks = set.check_keywords();
        for g in &keyword_checks {
            println!("{g}");
        }
        let gaps = keyword_checks
            .iter()
            .filter(|g| g.example.is_some())
            .count();
        let examples: usize = set
            .iter()
            .map(|r| r.examples.len() + r.negative.len())
            .sum();
        println!(
            "{name}: {} rules, {} examples, {} failure(s)",
            set.len(),
            examples,
            failures.len() + gaps
        );
        failed |= !failures.is_empty() || gaps > 0;
    }
    Ok(if failed {
        ExitCode::from(super::cmd_scan::EXIT_FOUND)
    } else {
        ExitCode::SUCCESS
    })
}
