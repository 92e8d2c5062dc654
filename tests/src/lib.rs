//! Helpers shared by the end-to-end tests: finding the built binary, privilege checks,
//! network namespaces as test hosts, and a local HTTPS upstream.
pub mod netns;
pub mod serve;
pub mod upstream;
pub mod util;
