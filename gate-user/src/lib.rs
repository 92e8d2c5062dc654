//! gate: a kernel-enforced egress gate and secret-scanning proxy for AI coding agents. The binary
//! is a thin shell over this library; each module is one concern (see DESIGN.md).
pub mod audit;
pub mod ca;
pub mod cli;
pub mod config;
pub mod dirs;
pub mod dns;
pub mod doctor;
pub mod enforce;
pub mod guard;
pub mod harden;
pub mod policy;
pub mod proxy;
pub mod redact;
