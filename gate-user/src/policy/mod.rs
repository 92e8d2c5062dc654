//! The compiled, immutable host policy: which names are denied, tunnelled without interception,
//! or (with an allowlist in force) allowed. Knows nothing of sockets.

/// One host pattern: an exact name, or `*.suffix` (which matches any name below the suffix, not
/// the suffix itself). Names compare case-insensitively, a trailing dot ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Suffix(String),
}

#[derive(Debug, thiserror::Error)]
#[error("bad host pattern `{pattern}`: {why}")]
pub struct PatternError {
    pub pattern: String,
    pub why: &'static str,
}

/// Lower-cases a host name and drops one trailing dot.
pub fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let t = normalize_host(text.trim());
        let err = |why| PatternError {
            pattern: text.to_string(),
            why,
        };
        if t.is_empty() {
            return Err(err("empty"));
        }
        if let Some(rest) = t.strip_prefix("*.") {
            if rest.is_empty() || rest.contains('*') {
                return Err(err("`*.` must be followed by a name without further `*`"));
            }
            return Ok(HostPattern::Suffix(rest.to_string()));
        }
        if t.contains('*') {
            return Err(err("only a leading `*.` wildcard is supported"));
        }
        if t.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(err("a host name has no spaces or slashes"));
        }
        Ok(HostPattern::Exact(t))
    }

    /// `host` must already be normalized.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => {
                host.len() > s.len() + 1
                    && host.ends_with(s.as_str())
                    && host.as_bytes()[host.len() - s.len() - 1] == b'.'
            }
        }
    }
}

/// What to do with a connection to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostVerdict {
    /// On the deny list: refused.
    Deny,
    /// Allowlist in force and the host is not on it: refused.
    NotAllowed,
    /// On the passthrough list: tunnelled raw, audited, not intercepted.
    Passthrough,
    /// Intercept and scan.
    Intercept,
}

impl HostVerdict {
    pub fn is_refused(self) -> bool {
        matches!(self, HostVerdict::Deny | HostVerdict::NotAllowed)
    }
}

#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    deny: Vec<HostPattern>,
    passthrough: Vec<HostPattern>,
    allow: Vec<HostPattern>,
    enforce_allowlist: bool,
}

fn parse_all(list: &[String]) -> Result<Vec<HostPattern>, PatternError> {
    list.iter().map(|s| HostPattern::parse(s)).collect()
}

impl HostPolicy {
    pub fn new(
        deny: &[String],
        passthrough: &[String],
        allow: &[String],
        enforce_allowlist: bool,
    ) -> Result<Self, PatternError> {
        Ok(Self {
            deny: parse_all(deny)?,
            passthrough: parse_all(passthrough)?,
            allow: parse_all(allow)?,
            enforce_allowlist,
        })
    }

    /// Adds deny patterns (from flags).
    pub fn extend_deny(&mut self, more: &[String]) -> Result<(), PatternError> {
        self.deny.extend(parse_all(more)?);
        Ok(())
    }

    pub fn is_denied(&self, host: &str) -> bool {
        let h = normalize_host(host);
        self.deny.iter().any(|p| p.matches(&h))
    }

    /// Deny always wins; then the allowlist (if enforced); then passthrough; else intercept.
    pub fn verdict(&self, host: &str) -> HostVerdict {
        let h = normalize_host(host);
        if self.deny.iter().any(|p| p.matches(&h)) {
            return HostVerdict::Deny;
        }
        if self.enforce_allowlist
            && !self.allow.iter().any(|p| p.matches(&h))
            && !self.passthrough.iter().any(|p| p.matches(&h))
        {
            return HostVerdict::NotAllowed;
        }
        if self.passthrough.iter().any(|p| p.matches(&h)) {
            return HostVerdict::Passthrough;
        }
        HostVerdict::Intercept
    }

    pub fn deny_patterns(&self) -> &[HostPattern] {
        &self.deny
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(deny: &[&str], pass: &[&str], allow: &[&str], enforce: bool) -> HostPolicy {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        HostPolicy::new(&v(deny), &v(pass), &v(allow), enforce).unwrap()
    }

    #[test]
    fn suffix_matches_below_not_itself_nor_lookalikes() {
        let p = HostPattern::parse("*.example.com").unwrap();
        assert!(p.matches("a.example.com"));
        assert!(p.matches("a.b.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("badexample.com"));
    }

    #[test]
    fn deny_wins_over_everything() {
        let p = policy(&["x.test"], &["x.test"], &["x.test"], true);
        assert_eq!(p.verdict("X.Test."), HostVerdict::Deny);
    }

    #[test]
    fn allowlist_refuses_others() {
        let p = policy(&[], &["pin.test"], &["ok.test"], true);
        assert_eq!(p.verdict("ok.test"), HostVerdict::Intercept);
        assert_eq!(p.verdict("pin.test"), HostVerdict::Passthrough);
        assert_eq!(p.verdict("other.test"), HostVerdict::NotAllowed);
        let open = policy(&[], &[], &["ok.test"], false);
        assert_eq!(open.verdict("other.test"), HostVerdict::Intercept);
    }

    #[test]
    fn bad_patterns_refused() {
        assert!(HostPattern::parse("a*.test").is_err());
        assert!(HostPattern::parse("*.").is_err());
        assert!(HostPattern::parse("").is_err());
    }
}
