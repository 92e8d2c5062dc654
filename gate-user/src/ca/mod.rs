//! The local certificate authority: CA lifecycle and per-host leaf certificates.
pub mod trust;
