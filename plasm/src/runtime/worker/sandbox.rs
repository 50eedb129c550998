//! What a worker process does to itself before it reads a job's bytes.
//!
//! Entered at the top of the worker's `main`, while it is the only thread:
//! resource limits (`RLIMIT_DATA` for memory, since wasmtime's reservations
//! break `RLIMIT_AS`; no core dumps; few file descriptors), Landlock with every
//! filesystem right handled and none granted (a worker opens no file), and a
//! seccomp filter that kills the process on any socket, `io_uring`, `exec`,
//! `ptrace`, namespace or mount call. The environment was cleared by the
//! supervisor and is checked. Each measure is tried, not assumed, and the
//! worker tells its node which are on ([`SandboxReport`]); `plasm node status`
//! shows it. Decision 0034.

use serde::{Deserialize, Serialize};

/// Which measures a worker has on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    /// A separate worker process runs each job (false: in this process).
    pub process: bool,
    /// The seccomp filter is installed (kill on violation).
    pub seccomp: bool,
    /// Landlock: "full", "partial", or "off".
    pub landlock: String,
    /// `no_new_privs` is set.
    pub no_new_privs: bool,
    /// `RLIMIT_DATA` of each worker, bytes (0: none).
    pub memory_limit_bytes: u64,
    /// The worker's environment is empty.
    pub env_cleared: bool,
    /// Why a measure is off, one line each.
    pub notes: Vec<String>,
}

impl SandboxReport {
    /// One line for logs and `plasm node status`.
    pub fn summary(&self) -> String {
        if !self.process {
            return "jobs run in this process (no worker isolation)".into();
        }
        format!(
            "worker processes; seccomp {}; landlock {}; no_new_privs {}; memory limit {} MiB; environment {}",
            if self.seccomp { "on" } else { "off" },
            self.landlock,
            if self.no_new_privs { "on" } else { "off" },
            self.memory_limit_bytes >> 20,
            if self.env_cleared {
                "cleared"
            } else {
                "NOT cleared"
            },
        )
    }
}

/// Syscalls a worker never needs; any of them kills it.
fn forbidden() -> Vec<i64> {
    vec![
        libc::SYS_socket,
        libc::SYS_socketpair,
        libc::SYS_connect,
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
    ]
}

fn seccomp() -> Result<(), String> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let rules = forbidden().into_iter().map(|nr| (nr, vec![])).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::KillProcess,
        arch,
    )
    .map_err(|e| e.to_string())?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    // Also sets no_new_privs, which installing a filter without privileges needs.
    seccompiler::apply_filter(&program).map_err(|e| e.to_string())
}

fn landlock() -> Result<&'static str, String> {
    use landlock::{ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetStatus};
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI::V5))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => "full",
        RulesetStatus::PartiallyEnforced => "partial",
        RulesetStatus::NotEnforced => "off",
    })
}

fn limit(resource: rustix::process::Resource, value: u64) -> Result<(), String> {
    rustix::process::setrlimit(
        resource,
        rustix::process::Rlimit {
            current: Some(value),
            maximum: Some(value),
        },
    )
    .map_err(|e| format!("{resource:?}: {e}"))
}

/// Enters the sandbox; `memory_bytes` bounds the worker's writable memory.
/// Must run before any other thread exists and before any job byte is read.
pub fn enter(memory_bytes: u64) -> SandboxReport {
    use rustix::process::Resource;
    let mut report = SandboxReport {
        process: true,
        env_cleared: std::env::vars_os().next().is_none(),
        ..SandboxReport::default()
    };
    if !report.env_cleared {
        report
            .notes
            .push("the environment is not empty (the supervisor clears it)".into());
    }
    for (resource, value) in [(Resource::Core, 0), (Resource::Data, memory_bytes)] {
        match limit(resource, value) {
            Ok(()) if resource == Resource::Data => report.memory_limit_bytes = value,
            Ok(()) => {}
            Err(e) => report.notes.push(format!("rlimit {e}")),
        }
    }
    match landlock() {
        Ok(level) => report.landlock = level.into(),
        Err(e) => {
            report.landlock = "off".into();
            report.notes.push(format!("landlock: {e}"));
        }
    }
    if report.landlock != "full" && report.notes.iter().all(|n| !n.starts_with("landlock")) {
        report.notes.push(format!(
            "landlock: {} (the kernel, or a syscall filter above this process, refused it)",
            report.landlock
        ));
    }
    // Three inherited pipes are all a worker uses; no more files can be opened.
    if let Err(e) = limit(Resource::Nofile, 16) {
        report.notes.push(format!("rlimit {e}"));
    }
    match seccomp() {
        Ok(()) => {
            report.seccomp = true;
            report.no_new_privs = true;
        }
        Err(e) => report.notes.push(format!("seccomp: {e}")),
    }
    report
}
