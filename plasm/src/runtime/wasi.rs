//! Deterministic `wasi_snapshot_preview1`, implemented by plasm as host functions.
//!
//! A job sees its args and env, reads its input on stdin, writes stdout and
//! stderr into capped buffers, and may exit. Clocks return one fixed instant
//! ([`FIXED_TIME_NS`]), `random_get` returns a stream derived only from the
//! execution inputs (module, input, args, env), never the nonce, the time or the
//! executor, so every node computes the same bytes. No host file, socket or clock
//! is reachable: every other preview1 function answers `ENOSYS`, and descriptors
//! other than 0, 1 and 2 do not exist (`EBADF`), which also tells wasi-libc that
//! there are no preopened directories.
//!
//! `poll_oneoff` has deterministic semantics, so programs that sleep work:
//! descriptor subscriptions are always ready and are returned at once, in order
//! (stdin readable with its unread bytes, stdout and stderr writable with the
//! room left under the output cap, any other descriptor an event with `EBADF`),
//! clocks staying pending as before a real timeout; a poll with only clocks
//! makes virtual time jump, and every clock fires at once. The `sock_*` calls answer
//! `ENOTSOCK` on 0-2 and `EBADF` elsewhere: there are no sockets.

use sha2::{Digest, Sha256};
use wasm3x::{Caller, Error, Linker, Memory, Val};

/// The instant every WASI clock reports: 2024-01-01T00:00:00Z, in nanoseconds.
pub const FIXED_TIME_NS: u64 = 1_704_067_200_000_000_000;
/// argv[0] of every job.
pub const ARGV0: &str = "job";
/// Cap on iovec counts per call, to bound host work per guest call.
const MAX_IOVS: u32 = 1024;

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
/// Bad address.
pub const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;
const ENOTSOCK: i32 = 57;
/// Cap on subscriptions per `poll_oneoff`, to bound host work per guest call.
const MAX_SUBSCRIPTIONS: u32 = 1024;
const ESPIPE: i32 = 70;

/// Why guest execution stopped inside a host function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostStop {
    /// `proc_exit(code)`.
    #[error("proc_exit({0})")]
    Exit(i32),
    /// A write would exceed `limits.output_bytes`.
    #[error("output limit reached")]
    OutputLimit,
    /// Host calls did more work than the job's fuel budget allows.
    #[error("host calls exceeded the fuel budget")]
    HostBudget,
}

/// The state a job's WASI calls act on.
#[derive(Debug, Default)]
pub struct WasiCtx {
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    stdin: Vec<u8>,
    stdin_pos: usize,
    /// What the job wrote to fd 1.
    pub stdout: Vec<u8>,
    /// What the job wrote to fd 2.
    pub stderr: Vec<u8>,
    output_cap: usize,
    rng_seed: [u8; 32],
    rng_counter: u64,
    rng_buf: Vec<u8>,
    /// Work done by host calls, in fuel units (see [`call`]).
    host_units: u64,
    /// The most host work allowed (the job's fuel limit; unlimited by default).
    host_budget: u64,
}

impl WasiCtx {
    /// A context for one job. `env` must already be sorted by name.
    pub fn new(
        args: &[String],
        env: &[(String, String)],
        stdin: Vec<u8>,
        output_cap: usize,
        rng_seed: [u8; 32],
    ) -> Self {
        let mut argv = vec![nul_terminated(ARGV0)];
        argv.extend(args.iter().map(|a| nul_terminated(a)));
        Self {
            args: argv,
            env: env
                .iter()
                .map(|(k, v)| nul_terminated(&format!("{k}={v}")))
                .collect(),
            stdin,
            output_cap,
            rng_seed,
            host_budget: u64::MAX,
            ..Self::default()
        }
    }

    /// Bounds the work host calls may do to `units` (the job's fuel limit), so
    /// fuel bounds a job's time even when it spends it in host calls.
    pub fn with_budget(mut self, units: u64) -> Self {
        self.host_budget = units;
        self
    }

    /// Work host calls did so far, in fuel units.
    pub fn host_units(&self) -> u64 {
        self.host_units
    }

    fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.rng_buf.len() < n {
            let mut h = Sha256::new();
            h.update(self.rng_seed);
            h.update(self.rng_counter.to_le_bytes());
            self.rng_counter += 1;
            self.rng_buf.extend_from_slice(&h.finalize());
        }
        self.rng_buf.drain(..n).collect()
    }
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

#[derive(Clone, Copy)]
enum T {
    I32,
    I64,
}

/// Every preview1 function: name, parameters, whether it returns an errno.
const PREVIEW1: &[(&str, &[T], bool)] = {
    use T::{I32, I64};
    &[
        ("args_get", &[I32, I32], true),
        ("args_sizes_get", &[I32, I32], true),
        ("environ_get", &[I32, I32], true),
        ("environ_sizes_get", &[I32, I32], true),
        ("clock_res_get", &[I32, I32], true),
        ("clock_time_get", &[I32, I64, I32], true),
        ("fd_advise", &[I32, I64, I64, I32], true),
        ("fd_allocate", &[I32, I64, I64], true),
        ("fd_close", &[I32], true),
        ("fd_datasync", &[I32], true),
        ("fd_fdstat_get", &[I32, I32], true),
        ("fd_fdstat_set_flags", &[I32, I32], true),
        ("fd_fdstat_set_rights", &[I32, I64, I64], true),
        ("fd_filestat_get", &[I32, I32], true),
        ("fd_filestat_set_size", &[I32, I64], true),
        ("fd_filestat_set_times", &[I32, I64, I64, I32], true),
        ("fd_pread", &[I32, I32, I32, I64, I32], true),
        ("fd_prestat_get", &[I32, I32], true),
        ("fd_prestat_dir_name", &[I32, I32, I32], true),
        ("fd_pwrite", &[I32, I32, I32, I64, I32], true),
        ("fd_read", &[I32, I32, I32, I32], true),
        ("fd_readdir", &[I32, I32, I32, I64, I32], true),
        ("fd_renumber", &[I32, I32], true),
        ("fd_seek", &[I32, I64, I32, I32], true),
        ("fd_sync", &[I32], true),
        ("fd_tell", &[I32, I32], true),
        ("fd_write", &[I32, I32, I32, I32], true),
        ("path_create_directory", &[I32, I32, I32], true),
        ("path_filestat_get", &[I32, I32, I32, I32, I32], true),
        (
            "path_filestat_set_times",
            &[I32, I32, I32, I32, I64, I64, I32],
            true,
        ),
        ("path_link", &[I32, I32, I32, I32, I32, I32, I32], true),
        (
            "path_open",
            &[I32, I32, I32, I32, I32, I64, I64, I32, I32],
            true,
        ),
        ("path_readlink", &[I32, I32, I32, I32, I32, I32], true),
        ("path_remove_directory", &[I32, I32, I32], true),
        ("path_rename", &[I32, I32, I32, I32, I32, I32], true),
        ("path_symlink", &[I32, I32, I32, I32, I32], true),
        ("path_unlink_file", &[I32, I32, I32], true),
        ("poll_oneoff", &[I32, I32, I32, I32], true),
        ("proc_exit", &[I32], false),
        ("proc_raise", &[I32], true),
        ("sched_yield", &[], true),
        ("random_get", &[I32, I32], true),
        ("sock_accept", &[I32, I32, I32], true),
        ("sock_recv", &[I32, I32, I32, I32, I32, I32], true),
        ("sock_send", &[I32, I32, I32, I32, I32], true),
        ("sock_shutdown", &[I32, I32], true),
    ]
};

/// The name of every preview1 function a module may import (fuzzing and docs).
pub fn preview1_names() -> impl Iterator<Item = &'static str> {
    PREVIEW1.iter().map(|(n, _, _)| *n)
}

/// The expected signature of a preview1 import, or `None` for an unknown name.
pub fn signature(name: &str) -> Option<wasmparser::FuncType> {
    let (_, params, errno) = PREVIEW1.iter().find(|(n, _, _)| *n == name)?;
    let map = |t: &T| match t {
        T::I32 => wasmparser::ValType::I32,
        T::I64 => wasmparser::ValType::I64,
    };
    let results: &[wasmparser::ValType] = if *errno {
        &[wasmparser::ValType::I32]
    } else {
        &[]
    };
    Some(wasmparser::FuncType::new(
        params.iter().map(map),
        results.iter().copied(),
    ))
}

/// A job's memory and WASI context as one host call sees them; each engine
/// implements it over its own caller type, so every WASI function below is
/// written once and behaves identically on every engine.
pub trait Guest {
    /// The job's WASI state.
    fn ctx(&mut self) -> &mut WasiCtx;
    /// Copies guest memory at `ptr` into `buf` (`EFAULT` when out of bounds or no memory).
    fn read(&mut self, ptr: u32, buf: &mut [u8]) -> Result<(), i32>;
    /// Copies `bytes` into guest memory at `ptr` (`EFAULT` when out of bounds or no memory).
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), i32>;
}

/// The value types of preview1 signatures, for engines that link by table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// i32
    I32,
    /// i64
    I64,
}

/// Every preview1 function as (name, parameter types, returns an errno).
pub fn preview1() -> impl Iterator<Item = (&'static str, Vec<ParamType>, bool)> {
    PREVIEW1.iter().map(|(n, p, e)| {
        let params = p
            .iter()
            .map(|t| match t {
                T::I32 => ParamType::I32,
                T::I64 => ParamType::I64,
            })
            .collect();
        (*n, params, *e)
    })
}

fn read(g: &mut dyn Guest, ptr: i32, len: u32) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; len as usize];
    g.read(ptr as u32, &mut buf)?;
    Ok(buf)
}

fn write(g: &mut dyn Guest, ptr: i32, bytes: &[u8]) -> Result<(), i32> {
    g.write(ptr as u32, bytes)
}

/// Bytes an iovec list asks to move (0 when it cannot be read: the call fails anyway).
fn iov_bytes(g: &mut dyn Guest, iovs: i32, count: i32) -> u64 {
    read_iovs(g, iovs, count)
        .map(|v| v.iter().map(|(_, len)| u64::from(*len)).sum())
        .unwrap_or(0)
}

fn read_iovs(g: &mut dyn Guest, iovs: i32, count: i32) -> Result<Vec<(i32, u32)>, i32> {
    let count = u32::try_from(count).map_err(|_| EINVAL)?;
    if count > MAX_IOVS {
        return Err(EINVAL);
    }
    let raw = read(g, iovs, count * 8)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| {
            let ptr = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let len = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            (ptr, len)
        })
        .collect())
}

/// `poll_oneoff`: each subscription is 48 bytes, each event 32. Descriptor
/// subscriptions are always ready (or fail with `EBADF`), so when there are any,
/// they are the events, in order, and clocks stay pending, as a real poll would
/// return before a timeout. Only when none are present does virtual time jump to
/// the clocks, and every clock subscription fires. See the module documentation.
fn poll_oneoff(g: &mut dyn Guest, subs: i32, events: i32, n: i32, out: i32) -> Result<(), i32> {
    let n = u32::try_from(n).map_err(|_| EINVAL)?;
    if n == 0 || n > MAX_SUBSCRIPTIONS {
        return Err(EINVAL);
    }
    let raw = read(g, subs, n * 48)?;
    if raw.chunks_exact(48).any(|sub| sub[8] > 2) {
        return Err(EINVAL);
    }
    let any_fd = raw.chunks_exact(48).any(|sub| sub[8] != 0);
    let mut evs = Vec::with_capacity(n as usize * 32);
    for sub in raw.chunks_exact(48) {
        let tag = sub[8];
        if any_fd == (tag == 0) {
            continue;
        }
        let mut ev = [0u8; 32];
        ev[0..8].copy_from_slice(&sub[0..8]); // userdata
        ev[10] = tag;
        let fd = i32::from_le_bytes([sub[16], sub[17], sub[18], sub[19]]);
        let (error, nbytes): (u16, u64) = match (tag, fd) {
            // A clock: due, since nothing else was ready (virtual time jumps).
            (0, _) => (0, 0),
            (1, 0) => {
                let ctx = g.ctx();
                (0, ctx.stdin.len().saturating_sub(ctx.stdin_pos) as u64)
            }
            (2, 1 | 2) => {
                let ctx = g.ctx();
                let used = if fd == 1 {
                    ctx.stdout.len()
                } else {
                    ctx.stderr.len()
                };
                (0, ctx.output_cap.saturating_sub(used) as u64)
            }
            _ => (EBADF as u16, 0),
        };
        ev[8..10].copy_from_slice(&error.to_le_bytes());
        ev[16..24].copy_from_slice(&nbytes.to_le_bytes());
        evs.extend_from_slice(&ev);
    }
    write(g, events, &evs)?;
    write(g, out, &((evs.len() / 32) as u32).to_le_bytes())
}

fn errno(r: Result<(), i32>) -> i32 {
    r.err().unwrap_or(ESUCCESS)
}

/// Writes a list of NUL-terminated strings as (pointer array, string buffer).
fn write_list(g: &mut dyn Guest, list: &[Vec<u8>], ptrs: i32, buf: i32) -> Result<(), i32> {
    let mut offset = buf as u32;
    let mut table = Vec::with_capacity(list.len() * 4);
    let mut data = Vec::new();
    for item in list {
        table.extend_from_slice(&offset.to_le_bytes());
        offset = offset.checked_add(item.len() as u32).ok_or(EFAULT)?;
        data.extend_from_slice(item);
    }
    write(g, ptrs, &table)?;
    write(g, buf, &data)
}

fn sizes(list: &[Vec<u8>]) -> (u32, u32) {
    (
        list.len() as u32,
        list.iter().map(|s| s.len() as u32).sum::<u32>(),
    )
}

fn write_sizes(g: &mut dyn Guest, (n, total): (u32, u32), count_ptr: i32, size_ptr: i32) -> i32 {
    errno(
        write(g, count_ptr, &n.to_le_bytes())
            .and_then(|()| write(g, size_ptr, &total.to_le_bytes())),
    )
}

fn fd_write(g: &mut dyn Guest, fd: i32, iovs: i32, n: i32, out: i32) -> Result<i32, HostStop> {
    if fd != 1 && fd != 2 {
        return Ok(EBADF);
    }
    let iovs = match read_iovs(g, iovs, n) {
        Ok(v) => v,
        Err(e) => return Ok(e),
    };
    let mut written = 0u32;
    for (ptr, len) in iovs {
        let ctx = g.ctx();
        let used = if fd == 1 {
            ctx.stdout.len()
        } else {
            ctx.stderr.len()
        };
        let room = ctx.output_cap.saturating_sub(used);
        let take = (len as usize).min(room);
        let bytes = match read(g, ptr, take as u32) {
            Ok(b) => b,
            Err(e) => return Ok(e),
        };
        let ctx = g.ctx();
        if fd == 1 {
            ctx.stdout.extend_from_slice(&bytes)
        } else {
            ctx.stderr.extend_from_slice(&bytes)
        }
        written += take as u32;
        if take < len as usize {
            return Err(HostStop::OutputLimit);
        }
    }
    Ok(errno(write(g, out, &written.to_le_bytes())))
}

fn fd_read(g: &mut dyn Guest, fd: i32, iovs: i32, n: i32, out: i32) -> i32 {
    if fd != 0 {
        return EBADF;
    }
    let iovs = match read_iovs(g, iovs, n) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let mut total = 0u32;
    for (ptr, len) in iovs {
        let ctx = g.ctx();
        let (pos, avail) = (ctx.stdin_pos, ctx.stdin.len());
        let take = (len as usize).min(avail - pos);
        if take == 0 {
            break;
        }
        let chunk = ctx.stdin[pos..pos + take].to_vec();
        if let Err(e) = write(g, ptr, &chunk) {
            return e;
        }
        g.ctx().stdin_pos += take;
        total += take as u32;
    }
    errno(write(g, out, &total.to_le_bytes()))
}

/// Runs the preview1 function `name` with `args` (each widened to i64, in
/// signature order; missing ones read as 0). Returns the errno to hand back
/// (ignored for `proc_exit`), or why the job stops.
///
/// Every call costs host work, counted apart from the instruction fuel and
/// bounded by the same limit: 1 unit, plus 1 per 64 bytes it may move (iovec
/// lengths, argument and environment lists), 8 per iovec, 4 per subscription,
/// and 1 per byte of `random_get` (hashing). The prices are measured (plasm-fuel/3 and /4,
/// decision 0035): each keeps a unit under about 5 ns of wall time on x86_64.
/// Past the budget the job stops as out of fuel.
pub fn call(g: &mut dyn Guest, name: &str, args: &[i64]) -> Result<i32, HostStop> {
    let a = |i: usize| args.get(i).copied().unwrap_or(0) as i32;
    let units = 1 + match name {
        "random_get" => u64::from(a(1) as u32),
        "args_get" => g.ctx().args.iter().map(|s| s.len() as u64).sum::<u64>() / 64,
        "environ_get" => g.ctx().env.iter().map(|s| s.len() as u64).sum::<u64>() / 64,
        "poll_oneoff" => 4 * u64::from(a(2) as u32),
        "fd_write" | "fd_read" => 8 * u64::from(a(2) as u32) + iov_bytes(g, a(1), a(2)) / 64,
        _ => 0,
    };
    let ctx = g.ctx();
    ctx.host_units = ctx.host_units.saturating_add(units);
    if ctx.host_units > ctx.host_budget {
        return Err(HostStop::HostBudget);
    }
    let std_fd = |fd: i32| (0..=2).contains(&fd);
    Ok(match name {
        "args_sizes_get" => {
            let s = sizes(&g.ctx().args);
            write_sizes(g, s, a(0), a(1))
        }
        "environ_sizes_get" => {
            let s = sizes(&g.ctx().env);
            write_sizes(g, s, a(0), a(1))
        }
        "args_get" => {
            let list = g.ctx().args.clone();
            errno(write_list(g, &list, a(0), a(1)))
        }
        "environ_get" => {
            let list = g.ctx().env.clone();
            errno(write_list(g, &list, a(0), a(1)))
        }
        "clock_time_get" => errno(write(g, a(2), &FIXED_TIME_NS.to_le_bytes())),
        "clock_res_get" => errno(write(g, a(1), &1u64.to_le_bytes())),
        "random_get" => match usize::try_from(a(1)) {
            Ok(len) if len <= 1024 * 1024 => {
                let bytes = g.ctx().random_bytes(len);
                errno(write(g, a(0), &bytes))
            }
            _ => EINVAL,
        },
        "fd_write" => return fd_write(g, a(0), a(1), a(2), a(3)),
        "fd_read" => fd_read(g, a(0), a(1), a(2), a(3)),
        "fd_fdstat_get" if std_fd(a(0)) => {
            // fdstat: filetype u8 (2 = character device), flags u16, rights u64 x2.
            let mut st = [0u8; 24];
            st[0] = 2;
            st[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            errno(write(g, a(1), &st))
        }
        "fd_filestat_get" if std_fd(a(0)) => {
            let mut st = [0u8; 64];
            st[16] = 2;
            errno(write(g, a(1), &st))
        }
        "fd_close" if std_fd(a(0)) => ESUCCESS,
        "fd_seek" if std_fd(a(0)) => ESPIPE,
        "fd_fdstat_get"
        | "fd_filestat_get"
        | "fd_close"
        | "fd_seek"
        | "fd_prestat_get"
        | "fd_prestat_dir_name" => EBADF,
        "sched_yield" => ESUCCESS,
        "poll_oneoff" => errno(poll_oneoff(g, a(0), a(1), a(2), a(3))),
        "sock_accept" | "sock_recv" | "sock_send" | "sock_shutdown" if std_fd(a(0)) => ENOTSOCK,
        "sock_accept" | "sock_recv" | "sock_send" | "sock_shutdown" => EBADF,
        "proc_exit" => return Err(HostStop::Exit(a(0))),
        _ => ENOSYS,
    })
}

/// The wasm3 view of a host call.
struct Wasm3Guest<'a, 'b> {
    caller: &'a mut Caller<'b, WasiCtx>,
    memory: Option<Memory>,
}

impl Guest for Wasm3Guest<'_, '_> {
    fn ctx(&mut self) -> &mut WasiCtx {
        self.caller.data_mut()
    }
    fn read(&mut self, ptr: u32, buf: &mut [u8]) -> Result<(), i32> {
        let mem = self.memory.as_ref().ok_or(EFAULT)?;
        mem.read(&*self.caller, ptr as usize, buf)
            .map_err(|_| EFAULT)
    }
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), i32> {
        let mem = self.memory.as_ref().ok_or(EFAULT)?;
        mem.write(&mut *self.caller, ptr as usize, bytes)
            .map_err(|_| EFAULT)
    }
}

/// Links every preview1 function into a wasm3 linker.
pub fn link(linker: &mut Linker<WasiCtx>) -> Result<(), Error> {
    let m = super::instrument::WASI_MODULE;
    for (name, params, returns) in preview1() {
        let params = params.iter().map(|t| match t {
            ParamType::I32 => wasm3x::ValType::I32,
            ParamType::I64 => wasm3x::ValType::I64,
        });
        let results: &[wasm3x::ValType] = if returns {
            &[wasm3x::ValType::I32]
        } else {
            &[]
        };
        let ty = wasm3x::FuncType::new(params.collect::<Vec<_>>(), results.iter().copied());
        linker.func_new(m, name, ty, move |mut caller, args, out| {
            let mut raw = [0i64; 9];
            for (slot, v) in raw.iter_mut().zip(args) {
                *slot = match v {
                    Val::I32(x) => i64::from(*x),
                    Val::I64(x) => *x,
                    _ => 0,
                };
            }
            let memory = caller.get_memory();
            let mut guest = Wasm3Guest {
                caller: &mut caller,
                memory,
            };
            let errno = call(&mut guest, name, &raw[..args.len().min(9)]).map_err(Error::host)?;
            if let Some(slot) = out.first_mut() {
                *slot = Val::I32(errno);
            }
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preview1_name_has_a_signature() {
        assert_eq!(PREVIEW1.len(), 46);
        assert!(signature("fd_write").is_some());
        assert!(signature("proc_exit").is_some_and(|t| t.results().is_empty()));
        assert!(signature("socket").is_none());
    }

    #[test]
    fn random_stream_depends_only_on_seed() {
        let mut a = WasiCtx::new(&[], &[], vec![], 0, [1; 32]);
        let mut b = WasiCtx::new(&["x".into()], &[], vec![1], 9, [1; 32]);
        let (x, y) = (a.random_bytes(40), b.random_bytes(40));
        assert_eq!(x, y);
        assert_ne!(a.random_bytes(8), x[..8].to_vec());
    }
}
