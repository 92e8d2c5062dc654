//! What the scanner reports: a byte span, the rule that fired and how sure it is.
use std::sync::Arc;

use serde::Serialize;

/// How likely a finding is a real secret.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    #[default]
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// Which detector produced a finding. When findings overlap, `Rule` wins over `KnownValue`,
/// which wins over `Entropy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Entropy,
    KnownValue,
    Rule,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Entropy => "entropy",
            Source::KnownValue => "known-value",
            Source::Rule => "rule",
        }
    }
}

/// One secret found in scanned bytes. `start..end` is the byte span of the secret itself (for
/// assignment rules, the value, not the `password =` before it); offsets are absolute in the
/// stream for [`crate::StreamScanner`]. A finding never holds the secret's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Slug of the rule (used in placeholders): `aws-access-key-id`, `known-value`, ...
    pub rule_id: Arc<str>,
    /// The service the credential belongs to: `AWS`, `GitHub`, ...
    pub service: Arc<str>,
    /// Human-readable name of what was found (for known values: where the value came from,
    /// e.g. `$GITHUB_TOKEN`; never the value).
    pub name: Arc<str>,
    pub start: usize,
    pub end: usize,
    pub confidence: Confidence,
    pub source: Source,
}

impl Finding {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    /// The span as a range, for slicing the scanned buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }
    pub(crate) fn shifted(mut self, by: usize) -> Finding {
        self.start += by;
        self.end += by;
        self
    }
    /// Rank used when overlapping findings are merged: the higher one names the merged finding.
    fn rank(&self) -> (Source, Confidence, usize) {
        (self.source, self.confidence, self.len())
    }
}

/// A display form of a secret that is safe to print: at most the first 4 characters (fewer for
/// short values), then `*` for the rest, capped in length.
pub fn mask(secret: &[u8]) -> String {
    let shown = match secret.len() {
        0..=7 => 0,
        8..=15 => 2,
        _ => 4,
    };
    let mut out: String = secret[..shown]
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    let stars = (secret.len() - shown).clamp(3, 12);
    out.extend(std::iter::repeat_n('*', stars));
    out
}

/// Sorts findings and merges every group of overlapping spans into one finding that covers the
/// union, named after the best-ranked member (rule over known value over entropy).
pub(crate) fn merge(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut out: Vec<Finding> = Vec::with_capacity(findings.len());
    for f in findings {
        match out.last_mut() {
            Some(last) if f.start < last.end => {
                let end = last.end.max(f.end);
                if f.rank() > last.rank() {
                    let start = last.start;
                    *last = f;
                    last.start = start;
                }
                last.end = end;
            }
            _ => out.push(f),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(start: usize, end: usize, source: Source, id: &str) -> Finding {
        Finding {
            rule_id: id.into(),
            service: "s".into(),
            name: "n".into(),
            start,
            end,
            confidence: Confidence::Medium,
            source,
        }
    }

    #[test]
    fn merge_unions_overlaps_and_prefers_rules_over_known_values() {
        let merged = merge(vec![
            f(10, 30, Source::KnownValue, "known-value"),
            f(12, 28, Source::Rule, "aws"),
            f(40, 50, Source::Entropy, "entropy"),
            f(50, 55, Source::Rule, "adjacent"),
        ]);
        assert_eq!(merged.len(), 3);
        assert_eq!((merged[0].start, merged[0].end), (10, 30));
        assert_eq!(&*merged[0].rule_id, "aws");
        assert_eq!(&*merged[1].rule_id, "entropy");
        assert_eq!(&*merged[2].rule_id, "adjacent");
    }

    #[test]
    fn mask_never_shows_more_than_four_characters() {
        assert_eq!(mask(b"abcdefghijklmnopqrstuvwxyz"), "abcd************");
        assert_eq!(mask(b"abcdefgh12"), "ab********");
        assert_eq!(mask(b"abc"), "***");
    }
}
