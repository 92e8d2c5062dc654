//! Detection rules as data: gate's own YAML shape (the built-in catalog, embedded in the binary),
//! secretgate's `signatures.yaml` shape and `.gitleaks.toml`; every rule is validated on load and
//! carries examples that [`RuleSet::check_examples`] runs.
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::coverage::{Coverage, coverage_by, keyword_coverage};
use crate::engine::{ScanConfig, Scanner, check_pattern, derive_keywords};
use crate::error::ScanError;
use crate::finding::Confidence;

/// The built-in rule files, embedded at compile time: (file name, text).
const BUILTIN: &[(&str, &str)] = &[
    ("cloud.yaml", include_str!("../rules/cloud.yaml")),
    ("code-hosts.yaml", include_str!("../rules/code-hosts.yaml")),
    ("chat.yaml", include_str!("../rules/chat.yaml")),
    ("ai.yaml", include_str!("../rules/ai.yaml")),
    ("payments.yaml", include_str!("../rules/payments.yaml")),
    ("mail.yaml", include_str!("../rules/mail.yaml")),
    ("registries.yaml", include_str!("../rules/registries.yaml")),
    ("infra.yaml", include_str!("../rules/infra.yaml")),
    ("keys.yaml", include_str!("../rules/keys.yaml")),
    ("generic.yaml", include_str!("../rules/generic.yaml")),
];

/// One detection rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Slug, unique in a rule set; used in findings and redaction placeholders.
    pub id: String,
    /// Who issues the credential: `AWS`, `GitHub`, ...
    pub service: String,
    /// Short human-readable name.
    pub name: String,
    pub description: String,
    /// Literals (matched ASCII case-insensitively) of which every match contains at least one;
    /// the prefilter runs the rule only near them. Empty: the rule runs on every input.
    pub keywords: Vec<String>,
    /// The confirming regex (bytes, ASCII classes; a group named `secret` narrows the span).
    pub pattern: String,
    /// Capture group holding the secret when the pattern has no `secret` group (gitleaks'
    /// `secretGroup`).
    pub secret_group: Option<usize>,
    /// Longest match, in bytes, when the pattern itself is unbounded (`+`, `*`, `{n,}`): how far
    /// around a keyword the regex looks. Default: the pattern's own bound, else 4 KiB.
    pub max_len: Option<usize>,
    /// How far before the start of its keyword a match may begin (default: the whole reach).
    /// A small value keeps the confirming window short for assignment-shaped rules.
    pub reach_before: Option<usize>,
    /// Match the keywords case-sensitively (e.g. `PASSWORD` in env files, not `password` in
    /// code).
    pub case_sensitive_keywords: bool,
    pub confidence: Confidence,
    /// Minimum Shannon entropy (bits per byte) of the secret span.
    pub min_entropy: Option<f64>,
    /// A generic rule (assignment-shaped): values that look like placeholders, variables or
    /// code are discarded.
    pub generic: bool,
    /// Texts that must produce a finding from this rule.
    pub examples: Vec<String>,
    /// Texts that must not.
    pub negative: Vec<String>,
    /// Where the rule was defined.
    pub file: Arc<str>,
    pub line: usize,
}

/// An ordered collection of rules with unique ids.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

/// A rule example that did not behave as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleFailure {
    pub rule_id: String,
    pub file: String,
    pub line: usize,
    /// `true`: a positive example that was not detected; `false`: a negative one that was.
    pub positive: bool,
    /// Index of the example in its list.
    pub index: usize,
}

impl std::fmt::Display for ExampleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.positive {
            write!(
                f,
                "{}:{}: rule {}: example #{} is not detected",
                self.file,
                self.line,
                self.rule_id,
                self.index + 1
            )
        } else {
            write!(
                f,
                "{}:{}: rule {}: negative example #{} is detected",
                self.file,
                self.line,
                self.rule_id,
                self.index + 1
            )
        }
    }
}

/// A rule whose keywords may miss some of its matches, from [`RuleSet::check_keywords`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordGap {
    pub rule_id: String,
    pub file: String,
    pub line: usize,
    /// The shortest string the rule matches that holds none of its keywords; `None` when the
    /// regex was too large to decide.
    pub example: Option<Vec<u8>>,
    /// Keywords taken from the pattern's literal prefixes or suffixes that do cover every
    /// match, when there are such (the fix to suggest).
    pub suggested: Vec<String>,
}

impl std::fmt::Display for KeywordGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: rule {}: ", self.file, self.line, self.rule_id)?;
        match &self.example {
            // The example is the automaton's shortest string (zeros and the like), not a
            // secret anyone holds.
            Some(example) => write!(
                f,
                "matches \"{}\", which holds none of its keywords: gate confirms a rule only \
                 near its keywords, so a secret like it is never found",
                example.escape_ascii()
            )?,
            None => {
                return write!(
                    f,
                    "note: its regex is too large to check that every match holds a keyword"
                );
            }
        }
        if !self.suggested.is_empty() {
            let list: Vec<String> = self.suggested.iter().map(|k| format!("{k:?}")).collect();
            write!(
                f,
                "; keywords [{}], taken from the pattern, cover every match",
                list.join(", ")
            )?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateFile {
    rules: Vec<GateRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateRule {
    id: String,
    service: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    keywords: Vec<String>,
    pattern: String,
    #[serde(default)]
    max_len: Option<usize>,
    #[serde(default)]
    reach_before: Option<usize>,
    #[serde(default)]
    case_sensitive_keywords: bool,
    #[serde(default)]
    confidence: Confidence,
    #[serde(default)]
    min_entropy: Option<f64>,
    #[serde(default)]
    generic: bool,
    #[serde(default)]
    examples: Vec<String>,
    #[serde(default)]
    negative: Vec<String>,
}

#[derive(Deserialize)]
struct GitleaksFile {
    #[serde(default)]
    rules: Vec<toml::Spanned<GitleaksRule>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GitleaksRule {
    id: Option<String>,
    #[serde(default)]
    description: String,
    regex: Option<String>,
    secret_group: Option<usize>,
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    path: Option<String>,
}

fn rule_error(file: &str, line: usize, reason: impl Into<String>) -> ScanError {
    ScanError::RuleFile {
        file: file.to_string(),
        line,
        reason: reason.into(),
    }
}

fn yaml_error(file: &str, err: &serde_yaml_ng::Error) -> ScanError {
    let line = err.location().map(|l| l.line()).unwrap_or(0);
    // serde_yaml_ng appends " at line N column M"; the line is reported separately.
    let text = err.to_string();
    let reason = text
        .split(" at line ")
        .next()
        .unwrap_or(text.as_str())
        .to_string();
    rule_error(file, line, reason)
}

/// Turns free text into a rule-id slug: lower case ASCII letters, digits and single dashes.
pub(crate) fn slugify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

fn is_slug(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// 1-based line of the first line at or after `from` (1-based) that contains `needle`.
fn find_line(text: &str, needle: &str, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
}

impl RuleSet {
    /// The built-in catalog.
    ///
    /// The embedded files are checked by the test suite; should one ever fail to load, the
    /// error is returned rather than a smaller catalog.
    pub fn builtin() -> Result<RuleSet, ScanError> {
        let mut set = RuleSet::default();
        for (name, text) in BUILTIN {
            set.extend(RuleSet::from_yaml(text, &format!("builtin:{name}"))?)?;
        }
        Ok(set)
    }

    /// An empty set.
    pub fn empty() -> RuleSet {
        RuleSet::default()
    }

    /// Parses a YAML rule file: gate's own shape (a mapping with `rules:`) or secretgate's
    /// `signatures.yaml` shape (a list of `- Service: [ - Name: regex ]`). `origin` names the
    /// file in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<RuleSet, ScanError> {
        let value: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| yaml_error(origin, &e))?;
        match value {
            serde_yaml_ng::Value::Mapping(_) => Self::from_gate_yaml(text, origin),
            serde_yaml_ng::Value::Sequence(seq) => Self::from_signatures(text, origin, &seq),
            serde_yaml_ng::Value::Null => Ok(RuleSet::default()),
            _ => Err(rule_error(
                origin,
                1,
                "expected a mapping with `rules:` or a list of services (signatures.yaml shape)",
            )),
        }
    }

    fn from_gate_yaml(text: &str, origin: &str) -> Result<RuleSet, ScanError> {
        let file: GateFile = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(origin, &e))?;
        let file_arc: Arc<str> = origin.into();
        let mut set = RuleSet::default();
        let mut cursor = 1;
        for r in file.rules {
            let line = find_line(text, &format!("id: {}", r.id), cursor)
                .or_else(|| find_line(text, &r.id, 1))
                .unwrap_or(0);
            cursor = cursor.max(line + 1);
            let rule = Rule {
                name: r.name.unwrap_or_else(|| r.id.clone()),
                id: r.id,
                service: r.service,
                description: r.description,
                keywords: r.keywords,
                pattern: r.pattern,
                secret_group: None,
                max_len: r.max_len,
                reach_before: r.reach_before,
                case_sensitive_keywords: r.case_sensitive_keywords,
                confidence: r.confidence,
                min_entropy: r.min_entropy,
                generic: r.generic,
                examples: r.examples,
                negative: r.negative,
                file: file_arc.clone(),
                line,
            };
            set.push(rule)?;
        }
        Ok(set)
    }

    fn from_signatures(
        text: &str,
        origin: &str,
        seq: &[serde_yaml_ng::Value],
    ) -> Result<RuleSet, ScanError> {
        use serde_yaml_ng::Value;
        let file_arc: Arc<str> = origin.into();
        let mut set = RuleSet::default();
        let mut cursor = 1;
        let shape =
            "expected `- Service:` followed by a list of `- Name: regex` (signatures.yaml shape)";
        for group in seq {
            let Value::Mapping(map) = group else {
                return Err(rule_error(origin, cursor, shape));
            };
            for (service, patterns) in map {
                let Value::String(service) = service else {
                    return Err(rule_error(origin, cursor, shape));
                };
                cursor = find_line(text, &format!("{service}:"), cursor).unwrap_or(cursor);
                let Value::Sequence(patterns) = patterns else {
                    return Err(rule_error(
                        origin,
                        cursor,
                        format!("service `{service}`: {shape}"),
                    ));
                };
                for entry in patterns {
                    let Value::Mapping(entry) = entry else {
                        return Err(rule_error(
                            origin,
                            cursor,
                            format!("service `{service}`: {shape}"),
                        ));
                    };
                    for (name, pattern) in entry {
                        let (Value::String(name), Value::String(pattern)) = (name, pattern) else {
                            return Err(rule_error(
                                origin,
                                cursor,
                                format!("service `{service}`: each entry is `Name: \"regex\"`"),
                            ));
                        };
                        let line = find_line(text, &format!("{name}:"), cursor).unwrap_or(cursor);
                        cursor = line;
                        let id = slugify(&format!("{service} {name}"));
                        let rule = Rule {
                            id,
                            service: service.clone(),
                            name: name.clone(),
                            description: format!("{service}: {name} (custom signature)"),
                            keywords: Vec::new(),
                            pattern: pattern.clone(),
                            secret_group: None,
                            max_len: None,
                            reach_before: None,
                            case_sensitive_keywords: false,
                            confidence: Confidence::Medium,
                            min_entropy: None,
                            generic: false,
                            examples: Vec::new(),
                            negative: Vec::new(),
                            file: file_arc.clone(),
                            line,
                        };
                        set.push(rule)?;
                    }
                }
            }
        }
        Ok(set)
    }

    /// Parses the `[[rules]]` of a `.gitleaks.toml` file (id, description, regex, secretGroup,
    /// entropy, keywords). Path-only rules are skipped; allowlists are not supported and ignored.
    pub fn from_gitleaks_toml(text: &str, origin: &str) -> Result<RuleSet, ScanError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let file: GitleaksFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(s.start)).unwrap_or(0);
            rule_error(origin, line, e.message().to_string())
        })?;
        let file_arc: Arc<str> = origin.into();
        let mut set = RuleSet::default();
        for spanned in file.rules {
            let line = line_of(spanned.span().start);
            let r = spanned.into_inner();
            let Some(regex) = r.regex else {
                if r.path.is_some() {
                    continue;
                }
                return Err(rule_error(origin, line, "rule has no `regex`"));
            };
            let id = match r.id {
                Some(id) if is_slug(&id) => id,
                Some(id) => slugify(&id),
                None => return Err(rule_error(origin, line, "rule has no `id`")),
            };
            let description = r.description;
            let rule = Rule {
                name: if description.is_empty() {
                    id.clone()
                } else {
                    description.clone()
                },
                service: "custom".to_string(),
                id,
                description,
                keywords: r.keywords,
                pattern: regex,
                secret_group: r.secret_group.filter(|&g| g > 0),
                max_len: None,
                reach_before: None,
                case_sensitive_keywords: false,
                confidence: Confidence::Medium,
                min_entropy: r.entropy,
                generic: false,
                examples: Vec::new(),
                negative: Vec::new(),
                file: file_arc.clone(),
                line,
            };
            set.push(rule)?;
        }
        Ok(set)
    }

    /// Reads a rule file, choosing the parser by extension (`.toml`: gitleaks, else YAML).
    pub fn from_file(path: &Path) -> Result<RuleSet, ScanError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScanError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
        {
            Self::from_gitleaks_toml(&text, &origin)
        } else {
            Self::from_yaml(&text, &origin)
        }
    }

    /// Validates and appends one rule.
    pub fn push(&mut self, rule: Rule) -> Result<(), ScanError> {
        let err = |reason: String| rule_error(&rule.file, rule.line, reason);
        if !is_slug(&rule.id) {
            return Err(err(format!(
                "rule id `{}` is not a slug (lower-case letters, digits, dashes)",
                rule.id
            )));
        }
        if self.rules.iter().any(|r| r.id == rule.id) {
            return Err(err(format!("rule id `{}` is defined twice", rule.id)));
        }
        if rule.service.trim().is_empty() {
            return Err(err(format!("rule `{}`: `service` is empty", rule.id)));
        }
        if let Some(k) = rule.keywords.iter().find(|k| k.len() < 2) {
            return Err(err(format!(
                "rule `{}`: keyword {k:?} is shorter than 2 bytes",
                rule.id
            )));
        }
        if let Some(e) = rule.min_entropy
            && !(0.0..=8.0).contains(&e)
        {
            return Err(err(format!(
                "rule `{}`: min_entropy must be between 0 and 8",
                rule.id
            )));
        }
        check_pattern(&rule.pattern, rule.secret_group, rule.max_len)
            .map_err(|reason| err(format!("rule `{}`: {reason}", rule.id)))?;
        self.rules.push(rule);
        Ok(())
    }

    /// Appends every rule of `other` (ids must stay unique).
    pub fn extend(&mut self, other: RuleSet) -> Result<(), ScanError> {
        for r in other.rules {
            self.push(r)?;
        }
        Ok(())
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Rule> {
        self.rules.iter()
    }
    pub fn len(&self) -> usize {
        self.rules.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Number of rules per service, for listings.
    pub fn services(&self) -> BTreeMap<&str, usize> {
        let mut m = BTreeMap::new();
        for r in &self.rules {
            *m.entry(r.service.as_str()).or_insert(0) += 1;
        }
        m
    }

    /// Runs every rule's examples through a scanner built from this set (prefilter included):
    /// each positive example must yield a finding of its rule, each negative one must not.
    pub fn check_examples(&self) -> Result<Vec<ExampleFailure>, ScanError> {
        let scanner = Scanner::new(ScanConfig {
            rules: self.clone(),
            ..ScanConfig::without_rules()
        })?;
        let mut failures = Vec::new();
        for rule in &self.rules {
            let fail = |positive, index| ExampleFailure {
                rule_id: rule.id.clone(),
                file: rule.file.to_string(),
                line: rule.line,
                positive,
                index,
            };
            for (i, ex) in rule.examples.iter().enumerate() {
                let hits: HashSet<_> = scanner
                    .scan_unmerged(ex.as_bytes())
                    .into_iter()
                    .map(|f| f.rule_id)
                    .collect();
                if !hits.iter().any(|h| **h == *rule.id) {
                    failures.push(fail(true, i));
                }
            }
            for (i, ex) in rule.negative.iter().enumerate() {
                if scanner
                    .scan_unmerged(ex.as_bytes())
                    .iter()
                    .any(|f| *f.rule_id == *rule.id)
                {
                    failures.push(fail(false, i));
                }
            }
        }
        Ok(failures)
    }

    /// Checks that every match of every rule holds one of its keywords (or of those derived
    /// from its pattern), exactly, on automata ([`crate::coverage`]); returns the rules for
    /// which that fails or cannot be decided.
    pub fn check_keywords(&self) -> Vec<KeywordGap> {
        self.rules
            .iter()
            .filter_map(|rule| {
                let example = match keyword_coverage(rule) {
                    Coverage::Covered | Coverage::Everywhere => return None,
                    Coverage::Gap(example) => Some(example),
                    Coverage::Unchecked => None,
                };
                // The keywords the scanner would derive if the rule declared none: the fix,
                // when they cover every match.
                let mut suggested = Vec::new();
                if example.is_some() && !rule.keywords.is_empty() {
                    let derived = derive_keywords(&rule.pattern);
                    if !derived.is_empty()
                        && coverage_by(&rule.pattern, &derived, false) == Coverage::Covered
                    {
                        suggested = derived;
                    }
                }
                Some(KeywordGap {
                    rule_id: rule.id.clone(),
                    file: rule.file.to_string(),
                    line: rule.line,
                    example,
                    suggested,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_gaps_name_the_rule_a_string_and_the_fix() {
        let text = "rules:\n  - id: acme-key\n    service: Acme\n    keywords: [acme_]\n    pattern: 'acm[et]_[a-z0-9]{24}'\n  - id: acme-hex\n    service: Acme\n    keywords: [acme]\n    pattern: '[a-f0-9]{40}'\n  - id: acme-ok\n    service: Acme\n    keywords: [acme_]\n    pattern: 'acme_[a-z0-9]{24}'\n";
        let gaps = RuleSet::from_yaml(text, "acme.yaml")
            .unwrap()
            .check_keywords();
        assert_eq!(gaps.len(), 2, "{gaps:?}");
        assert_eq!((gaps[0].rule_id.as_str(), gaps[0].line), ("acme-key", 2));
        assert_eq!(
            gaps[0].example.as_deref(),
            Some(&b"acmt_000000000000000000000000"[..])
        );
        assert_eq!(gaps[0].suggested, vec!["acme_", "acmt_"]);
        assert!(gaps[0].to_string().ends_with(
            "; keywords [\"acme_\", \"acmt_\"], taken from the pattern, cover every match"
        ));
        // No literal to take from `[a-f0-9]{40}`: no fix to suggest.
        assert_eq!(gaps[1].rule_id, "acme-hex");
        assert!(gaps[1].suggested.is_empty());
        assert!(
            gaps[1]
                .to_string()
                .ends_with("so a secret like it is never found")
        );
    }

    #[test]
    fn slugify_makes_ids() {
        assert_eq!(
            slugify("MyCompany Internal API Key"),
            "mycompany-internal-api-key"
        );
        assert_eq!(slugify("  a__b  "), "a-b");
    }

    #[test]
    fn signatures_yaml_shape_is_accepted() {
        let text = "- MyCompany:\n    - Internal API Key: \"myco_[a-zA-Z0-9]{32}\"\n    - Database URL: \"myco_db://.*@prod\\\\.mycompany\\\\.com\"\n- Other:\n    - Thing: \"thing_[0-9]{10}\"\n";
        let set = RuleSet::from_yaml(text, "sig.yaml").unwrap();
        assert_eq!(set.len(), 3);
        let r = set.get("mycompany-internal-api-key").unwrap();
        assert_eq!(r.service, "MyCompany");
        assert_eq!(r.line, 2);
        assert_eq!(set.get("other-thing").unwrap().line, 5);
    }

    #[test]
    fn bad_regex_in_signatures_names_file_line_and_reason() {
        let text = "- MyCompany:\n    - Good: \"good_[a-z]{10}\"\n    - Bad: \"bad_[a-z\"\n";
        let err = RuleSet::from_yaml(text, "sig.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("sig.yaml:3: rule `mycompany-bad`:"),
            "{err}"
        );
        assert!(err.contains("unclosed character class"), "{err}");
    }

    #[test]
    fn gate_yaml_rejects_unknown_fields_with_line() {
        let text =
            "rules:\n  - id: x-token\n    service: X\n    pattern: 'x_[a-z]{8}'\n    colour: red\n";
        let err = RuleSet::from_yaml(text, "r.yaml").unwrap_err().to_string();
        assert!(err.starts_with("r.yaml:"), "{err}");
        assert!(err.contains("unknown field `colour`"), "{err}");
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!((2..=5).contains(&line), "{err}");
    }

    #[test]
    fn gate_yaml_rejects_bad_ids_and_duplicates() {
        let dup = "rules:\n  - id: x-token\n    service: X\n    pattern: 'x_[a-z]{8}'\n  - id: x-token\n    service: X\n    pattern: 'y_[a-z]{8}'\n";
        let err = RuleSet::from_yaml(dup, "d.yaml").unwrap_err().to_string();
        assert_eq!(err, "d.yaml:5: rule id `x-token` is defined twice");
        let bad = "rules:\n  - id: X Token\n    service: X\n    pattern: 'x_[a-z]{8}'\n";
        let err = RuleSet::from_yaml(bad, "b.yaml").unwrap_err().to_string();
        assert!(
            err.starts_with("b.yaml:2: rule id `X Token` is not a slug"),
            "{err}"
        );
    }

    #[test]
    fn yaml_syntax_errors_carry_the_line() {
        let text = "rules:\n  - id: a\n    pattern: [unclosed\n";
        let err = RuleSet::from_yaml(text, "s.yaml").unwrap_err();
        let ScanError::RuleFile { line, .. } = err else {
            panic!("wrong error kind")
        };
        assert!(line >= 3, "line {line}");
    }

    #[test]
    fn gitleaks_toml_rules_are_loaded_with_lines() {
        let text = r#"title = "custom"

[[rules]]
id = "acme-key"
description = "Acme API key"
regex = '''acme_[a-z0-9]{24}'''
keywords = ["acme_"]

[[rules]]
id = "path-only"
path = '''\.pem$'''

[[rules]]
id = "acme-bad"
regex = '''acme_(unclosed'''
"#;
        let err = RuleSet::from_gitleaks_toml(text, "g.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("g.toml:13: rule `acme-bad`:"), "{err}");
        let ok = text.split("[[rules]]\nid = \"acme-bad\"").next().unwrap();
        let set = RuleSet::from_gitleaks_toml(ok, "g.toml").unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.rules()[0].line, 3);
        assert_eq!(set.rules()[0].keywords, vec!["acme_"]);
    }

    #[test]
    fn gitleaks_secret_group_narrows_the_span() {
        let text = "[[rules]]\nid = \"acme-pass\"\nregex = '''acme_pass=([a-z0-9]{12})'''\nsecretGroup = 1\nkeywords = [\"acme_pass\"]\n";
        let rules = RuleSet::from_gitleaks_toml(text, "g.toml").unwrap();
        let scanner = Scanner::new(ScanConfig {
            rules,
            ..ScanConfig::without_rules()
        })
        .unwrap();
        let data = format!("x acme_pass={} y", "q1w2e3r4t5y6");
        let found = scanner.scan(data.as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(&data[found[0].range()], "q1w2e3r4t5y6");
    }

    #[test]
    fn gitleaks_toml_syntax_error_has_line() {
        let err = RuleSet::from_gitleaks_toml("[[rules]]\nid = \n", "g.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("g.toml:2:"), "{err}");
    }
}
