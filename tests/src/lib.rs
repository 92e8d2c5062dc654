//! Helpers shared by the end-to-end tests: finding the built binary, privilege checks,
//! network namespaces as test hosts, a local HTTPS upstream, and a WebSocket client.
pub mod netns;
pub mod serve;
pub mod upstream;
pub mod util;
pub mod ws;
