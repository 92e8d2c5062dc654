//! The built-in catalog as data: it loads, it is big enough, it covers every family SPEC.md
//! names, and every rule's own examples behave as declared.
use std::collections::HashSet;

use gate_scan::{RuleSet, ScanConfig, Scanner};

#[test]
fn builtin_rules_load_and_number_at_least_170() {
    let rules = RuleSet::builtin().expect("built-in rules load");
    assert!(rules.len() >= 170, "only {} rules", rules.len());
}

#[test]
fn every_builtin_rule_has_metadata_and_examples() {
    let rules = RuleSet::builtin().unwrap();
    for r in rules.iter() {
        assert!(!r.service.is_empty(), "{}", r.id);
        assert!(!r.description.is_empty(), "{}", r.id);
        assert!(
            !r.keywords.is_empty() || r.id == "twilio-api-key",
            "{} has no keywords",
            r.id
        );
        assert!(!r.examples.is_empty(), "{} has no positive example", r.id);
        assert!(!r.negative.is_empty(), "{} has no negative example", r.id);
        assert!(r.line > 0, "{} has no line", r.id);
    }
}

#[test]
fn every_builtin_rule_example_behaves_as_declared() {
    let rules = RuleSet::builtin().unwrap();
    let failures = rules.check_examples().unwrap();
    let text: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        text.join("\n")
    );
}

#[test]
fn negative_examples_trigger_no_rule_at_all() {
    let scanner = Scanner::new(ScanConfig::builtin().unwrap()).unwrap();
    let rules = RuleSet::builtin().unwrap();
    let mut bad = Vec::new();
    for r in rules.iter() {
        for (i, ex) in r.negative.iter().enumerate() {
            let found = scanner.scan(ex.as_bytes());
            if !found.is_empty() {
                let ids: Vec<_> = found.iter().map(|f| f.rule_id.to_string()).collect();
                bad.push(format!("{} negative #{}: {:?}", r.id, i + 1, ids));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} negatives fire:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn catalog_covers_every_family_in_the_spec() {
    let rules = RuleSet::builtin().unwrap();
    let services: HashSet<&str> = rules.iter().map(|r| r.service.as_str()).collect();
    for s in [
        "AWS",
        "GCP",
        "Google",
        "Azure",
        "GitHub",
        "GitLab",
        "Bitbucket",
        "Slack",
        "Discord",
        "Telegram",
        "OpenAI",
        "Anthropic",
        "Hugging Face",
        "Stripe",
        "Square",
        "SendGrid",
        "Mailgun",
        "Mailchimp",
        "npm",
        "PyPI",
        "RubyGems",
        "crates.io",
        "HashiCorp Vault",
        "Terraform",
        "Databricks",
        "Grafana",
        "Sentry",
        "DigitalOcean",
        "Heroku",
        "Cloudflare",
        "Vercel",
        "Shopify",
        "Twilio",
        "Private key",
        "JWT",
        "PostgreSQL",
        "MySQL",
        "Generic",
    ] {
        assert!(services.contains(s), "no rule for {s}");
    }
    for id in [
        "aws-temporary-access-key-id",
        "aws-session-token",
        "gcp-service-account-key-id",
        "private-key-openssh",
        "private-key-pkcs8",
        "private-key-rsa",
        "jwt",
        "generic-password-assignment",
        "generic-api-key-assignment",
    ] {
        assert!(rules.get(id).is_some(), "missing {id}");
    }
}
