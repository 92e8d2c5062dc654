//! The `gate` binary: parse the command line, set up logging, hand off to the library.
use std::process::ExitCode;

fn main() -> ExitCode {
    gate::cli::main()
}
