//! `cargo xtask`: what cargo alone cannot do for gate.
fn main() {}
