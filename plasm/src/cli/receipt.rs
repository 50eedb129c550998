//! `plasm receipt verify` (offline, anyone's receipt) and `plasm receipt get`
//! (a job's receipt from a node's API: the node's own, else fetched by the node
//! from the peers holding the job's replicas).

use super::api::{self, ReceiptGetArgs};
use crate::receipt::{Receipt, VerifyError};
use clap::Subcommand;
use std::io::Read;
use std::process::ExitCode;

/// `plasm receipt …`.
#[derive(Subcommand, Debug)]
pub enum ReceiptCommand {
    /// Verify a receipt: exit 0 valid, 1 invalid (the failed check on stderr), 121 unreadable or malformed.
    Verify {
        /// Receipt file, or - for stdin.
        file: String,
    },
    /// Print a job's receipt from a node's API: the node's own, else the one the job's
    /// submitter accepted, fetched by the node from the peers holding its replicas
    /// (exit 1 when neither has one).
    Get(ReceiptGetArgs),
    /// Run a receipt's job again on a node and print the node's signed verdict:
    /// exit 0 confirmed, 1 mismatch, 2 not auditable, 121/122 the request failed.
    /// What is not given is fetched from the network when its submitter published it.
    Audit(api::AuditArgs),
}

/// Runs a receipt command.
pub fn receipt(command: ReceiptCommand) -> ExitCode {
    match command {
        ReceiptCommand::Verify { file } => verify(&file),
        ReceiptCommand::Get(args) => api::receipt_get(args),
        ReceiptCommand::Audit(args) => api::audit(args),
    }
}

fn verify(file: &str) -> ExitCode {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    } else {
        std::fs::read_to_string(file)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("plasm: cannot read receipt {file}: {e}");
            return ExitCode::from(crate::job::EXIT_INVALID_INPUT);
        }
    };
    let receipt = match Receipt::from_json(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("plasm: {e}");
            return ExitCode::from(crate::job::EXIT_INVALID_INPUT);
        }
    };
    match receipt.verify() {
        Ok(v) => {
            outln!("valid: job {} executed by {}", v.job_id, v.peer_id);
            ExitCode::SUCCESS
        }
        Err(e @ VerifyError::Malformed(_)) => {
            eprintln!("plasm: {e}");
            ExitCode::from(crate::job::EXIT_INVALID_INPUT)
        }
        Err(e) => {
            eprintln!("invalid: check {} failed: {e}", e.check());
            ExitCode::from(1)
        }
    }
}
