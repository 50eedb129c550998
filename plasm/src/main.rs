//! The `plasm` command: parses arguments and hands the command to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    plasm::cli::dispatch(plasm::cli::Cli::parse())
}
