//! `plasm bootstrap keygen | sign | verify`: a publisher's signed bootstrap
//! lists (decision 0055).
//!
//! The publisher key is a file of the node identity's format (libp2p's protobuf
//! keypair encoding, mode 0600): `keygen` makes one apart from any node (the
//! advised way), and a data dir's `identity.key` works too.

use crate::identity::Identity;
use crate::net::bootstrap::{self, MAX_VALID_DAYS};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// `plasm bootstrap …`.
#[derive(Subcommand, Debug)]
pub enum BootstrapCommand {
    /// Make a publisher key file (mode 0600; never overwrites) and print its public key (base64).
    Keygen {
        /// The key file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Sign a list of peers (a JSON object with `peers: [{peer_id, addrs}]`) and print the signed list.
    Sign {
        /// The publisher key file (`plasm bootstrap keygen`, or a data dir's identity.key).
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// Days the list stays valid from now (1 to 3650).
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        expires_in: u32,
        /// The unsigned list, or - for stdin.
        list: String,
    },
    /// Verify a signed list: print its peers and exit 0, or print the failed check and exit 1.
    Verify {
        /// A trusted publisher key (base64); repeatable.
        #[arg(long, value_name = "KEY_B64", required = true)]
        publisher: Vec<String>,
        /// The signed list, or - for stdin.
        file: String,
    },
}

/// Runs a bootstrap command.
pub fn bootstrap(command: BootstrapCommand) -> ExitCode {
    match command {
        BootstrapCommand::Keygen { out } => super::report(
            Identity::create_key_file(&out)
                .map(|id| {
                    eprintln!(
                        "plasm: publisher key written to {} (mode 0600); its public key, for bootstrap_publishers:",
                        out.display()
                    );
                    outln!("{}", id.public_key_b64());
                })
                .map_err(|e| e.to_string()),
        ),
        BootstrapCommand::Sign {
            key,
            expires_in,
            list,
        } => super::report(sign(&key, expires_in, &list)),
        BootstrapCommand::Verify { publisher, file } => verify(&publisher, &file),
    }
}

fn read(file: &str) -> Result<String, String> {
    if file == "-" {
        use std::io::Read;
        let mut s = String::new();
        std::io::stdin()
            .take(bootstrap::MAX_LIST_BYTES as u64 + 1)
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(s);
    }
    bootstrap::read_file(std::path::Path::new(file))
        .map_err(|e| format!("cannot read {file}: {e}"))?
        .ok_or_else(|| format!("{file}: no such file"))
}

fn sign(key: &std::path::Path, days: u32, list: &str) -> Result<(), String> {
    if !(1..=MAX_VALID_DAYS).contains(&days) {
        return Err(format!(
            "--expires-in {days}: from 1 to {MAX_VALID_DAYS} days"
        ));
    }
    let id = Identity::load_key_file(key).map_err(|e| e.to_string())?;
    let peers = bootstrap::unsigned_peers(&read(list)?).map_err(|e| format!("{list}: {e}"))?;
    let now = time::OffsetDateTime::now_utc();
    let signed = bootstrap::sign(&peers, &id, now, days).map_err(|e| e.to_string())?;
    // What is printed verifies: a list the node would refuse is never written.
    bootstrap::verify(&signed, &[id.public_key_b64()], now)
        .map_err(|e| format!("the signed list does not verify ({}): {e}", e.check()))?;
    super::write_stdout(signed.as_bytes())
}

fn verify(publishers: &[String], file: &str) -> ExitCode {
    let text = match read(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("plasm: {e}");
            return ExitCode::FAILURE;
        }
    };
    match bootstrap::verify(&text, publishers, time::OffsetDateTime::now_utc()) {
        Ok(list) => {
            eprintln!(
                "plasm: valid bootstrap list from {}, {} peers, expires {}",
                list.publisher,
                list.peers.len(),
                crate::time::format_rfc3339(list.expires_at)
            );
            for a in list.addrs() {
                outln!("{a}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("plasm: bootstrap list refused (check: {}): {e}", e.check());
            ExitCode::FAILURE
        }
    }
}
