//! gate's secret scanner, a library with no knowledge of sockets: rules as data, a literal
//! prefilter that picks the rules worth confirming, confirming regexes, known values.
//!
//! The pieces:
//! - [`RuleSet`]: detection rules (built-in YAML files embedded in the binary, custom files in
//!   gate's own shape, secretgate's `signatures.yaml` shape or `.gitleaks.toml`).
//! - [`KnownValues`]: literal secret values harvested from the environment and secret files.
//! - [`Scanner`]: the compiled database; [`Scanner::scan`] for a whole buffer,
//!   [`Scanner::stream`] for a body that arrives in chunks.
//! - [`ScanCache`]: remembers the findings of content blocks already scanned (an agent re-sends
//!   its whole conversation every turn).
#![forbid(unsafe_code)]

mod anchor;
mod cache;
mod coverage;
mod encode;
mod engine;
mod entropy;
mod error;
mod finding;
mod known_values;
mod lanes;
mod rules;
mod stream;

#[cfg(test)]
mod differential;

pub use cache::{CacheStats, ScanCache};
pub use coverage::{Coverage, keyword_coverage};
pub use engine::{ScanConfig, Scanner};
pub use entropy::shannon_entropy;
pub use error::ScanError;
pub use finding::{Confidence, Finding, Source, mask};
pub use known_values::KnownValues;
pub use rules::{ExampleFailure, KeywordGap, Rule, RuleSet};
pub use stream::StreamScanner;
