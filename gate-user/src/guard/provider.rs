//! The agent's own credentials going to the service they belong to are expected, not leaks: an
//! Anthropic key in `x-api-key` to api.anthropic.com, a GitHub token in `Authorization` to
//! github.com. This is a narrow policy rule (host AND header AND credential family must all
//! match), not a hole: the same key in a body, in another header, or to another host is found.

/// One service's expected credential: where it may go, in which headers, of which family.
#[derive(Debug, Clone)]
pub struct ProviderKey {
    pub name: &'static str,
    /// Exact host names, or `.suffix` entries matching any name below that suffix.
    pub hosts: &'static [&'static str],
    /// Header names (lower case) the credential travels in.
    pub headers: &'static [&'static str],
    /// Rule id prefixes of the credential family.
    pub rule_prefixes: &'static [&'static str],
    /// Substrings of known-value labels (environment variable names) of this service.
    pub labels: &'static [&'static str],
}

const AUTH: &[&str] = &["authorization", "proxy-authorization"];

/// The built-in list.
pub const DEFAULTS: &[ProviderKey] = &[
    ProviderKey {
        name: "Anthropic",
        hosts: &["api.anthropic.com"],
        headers: &["x-api-key", "authorization"],
        rule_prefixes: &["anthropic-"],
        labels: &["ANTHROPIC", "CLAUDE"],
    },
    ProviderKey {
        name: "OpenAI",
        hosts: &["api.openai.com"],
        headers: &["authorization", "openai-organization", "openai-project"],
        rule_prefixes: &["openai-"],
        labels: &["OPENAI"],
    },
    ProviderKey {
        name: "Azure OpenAI",
        hosts: &[".openai.azure.com"],
        headers: &["api-key", "authorization"],
        rule_prefixes: &["azure-openai-"],
        labels: &["AZURE_OPENAI"],
    },
    ProviderKey {
        name: "Google AI",
        hosts: &["generativelanguage.googleapis.com"],
        headers: &["x-goog-api-key", "authorization"],
        rule_prefixes: &["google-", "gcp-"],
        labels: &["GEMINI", "GOOGLE_API"],
    },
    ProviderKey {
        name: "Mistral",
        hosts: &["api.mistral.ai"],
        headers: AUTH,
        rule_prefixes: &["mistral-"],
        labels: &["MISTRAL"],
    },
    ProviderKey {
        name: "Groq",
        hosts: &["api.groq.com"],
        headers: AUTH,
        rule_prefixes: &["groq-"],
        labels: &["GROQ"],
    },
    ProviderKey {
        name: "OpenRouter",
        hosts: &["openrouter.ai"],
        headers: AUTH,
        rule_prefixes: &["openrouter-"],
        labels: &["OPENROUTER"],
    },
    ProviderKey {
        name: "Hugging Face",
        hosts: &["huggingface.co", ".huggingface.co"],
        headers: AUTH,
        rule_prefixes: &["huggingface-"],
        labels: &["HF_", "HUGGING"],
    },
    ProviderKey {
        name: "GitHub",
        hosts: &["github.com", "api.github.com", ".githubusercontent.com"],
        headers: AUTH,
        rule_prefixes: &["github-"],
        labels: &["GITHUB", "GH_TOKEN"],
    },
    ProviderKey {
        name: "GitLab",
        hosts: &["gitlab.com"],
        headers: &["authorization", "private-token", "job-token"],
        rule_prefixes: &["gitlab-"],
        labels: &["GITLAB", "CI_JOB_TOKEN"],
    },
];

/// The provider-key policy in force.
#[derive(Debug, Clone)]
pub struct ProviderKeys {
    list: Vec<ProviderKey>,
}

impl Default for ProviderKeys {
    fn default() -> Self {
        Self {
            list: DEFAULTS.to_vec(),
        }
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('.') {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern == host,
    }
}

impl ProviderKeys {
    /// None: every credential is a finding wherever it goes.
    pub fn none() -> Self {
        Self { list: Vec::new() }
    }

    /// True when a finding of `rule` (with known-value `label`, if it is one) in header
    /// `header` of a request to `host` is the service's own credential going home.
    pub fn is_expected(&self, host: &str, header: &str, rule: &str, label: &str) -> bool {
        let host = crate::policy::normalize_host(host);
        let header = header.to_ascii_lowercase();
        let label = label.to_ascii_uppercase();
        self.list.iter().any(|p| {
            p.hosts.iter().any(|h| host_matches(h, &host))
                && p.headers.contains(&header.as_str())
                && (p.rule_prefixes.iter().any(|pre| rule.starts_with(pre))
                    || (rule == "known-value" && p.labels.iter().any(|l| label.contains(l))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_key_to_own_provider_in_its_header_is_expected() {
        let p = ProviderKeys::default();
        assert!(p.is_expected("api.anthropic.com", "x-api-key", "anthropic-api-key", ""));
        assert!(p.is_expected(
            "API.Anthropic.com.",
            "X-Api-Key",
            "known-value",
            "env:ANTHROPIC_API_KEY"
        ));
        assert!(p.is_expected("github.com", "authorization", "github-pat-classic", ""));
        assert!(p.is_expected(
            "raw.githubusercontent.com",
            "authorization",
            "github-oauth-token",
            ""
        ));
    }

    #[test]
    fn anything_else_is_a_finding() {
        let p = ProviderKeys::default();
        // Another host.
        assert!(!p.is_expected("evil.example", "x-api-key", "anthropic-api-key", ""));
        assert!(!p.is_expected(
            "api.anthropic.com.evil.example",
            "x-api-key",
            "anthropic-api-key",
            ""
        ));
        // Another header.
        assert!(!p.is_expected("api.anthropic.com", "x-debug", "anthropic-api-key", ""));
        // Another family of credential to the provider.
        assert!(!p.is_expected("api.anthropic.com", "x-api-key", "aws-access-key-id", ""));
        assert!(!p.is_expected(
            "api.anthropic.com",
            "x-api-key",
            "known-value",
            "env:AWS_SECRET_ACCESS_KEY"
        ));
        assert!(!ProviderKeys::none().is_expected(
            "api.anthropic.com",
            "x-api-key",
            "anthropic-api-key",
            ""
        ));
    }
}
