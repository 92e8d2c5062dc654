//! Prints how long the built-in catalog takes to load and compile (and how many rules it has).
use std::time::Instant;

use gate_scan::{RuleSet, ScanConfig, Scanner};

fn main() {
    let t = Instant::now();
    let rules = RuleSet::builtin().expect("built-in rules");
    let parsed = t.elapsed();
    let n = rules.len();
    let t = Instant::now();
    let scanner = Scanner::new(ScanConfig {
        rules,
        ..ScanConfig::without_rules()
    })
    .expect("scanner");
    let compiled = t.elapsed();
    println!(
        "{n} rules: parse+validate {parsed:?}, compile {compiled:?}, horizon {} bytes",
        scanner.horizon()
    );
}
