//! The `plasm` command: parses arguments and hands the command to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    match plasm::cli::Cli::try_parse() {
        Ok(cli) => plasm::cli::dispatch(cli),
        // --help and --version print and exit 0; a usage error exits 121 (invalid
        // input), never 2, which a job may exit with.
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                std::process::ExitCode::from(plasm::job::EXIT_INVALID_INPUT)
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
    }
}
