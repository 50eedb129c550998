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
//! `poll_oneoff` has deterministic semantics, so programs that sleep work: every
//! subscription fires at once, in order (virtual time does not pass: a clock
//! subscription is already due); stdin is readable with its unread bytes,
//! stdout and stderr are writable with the room left under the output cap, and
//! any other descriptor gets an event with `EBADF`. The `sock_*` calls answer
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
const EFAULT: i32 = 21;
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
            ..Self::default()
        }
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

fn memory(caller: &Caller<'_, WasiCtx>) -> Result<Memory, i32> {
    caller.get_memory().ok_or(EFAULT)
}

fn read(caller: &Caller<'_, WasiCtx>, ptr: i32, len: u32) -> Result<Vec<u8>, i32> {
    let mem = memory(caller)?;
    let mut buf = vec![0u8; len as usize];
    mem.read(caller, ptr as u32 as usize, &mut buf)
        .map_err(|_| EFAULT)?;
    Ok(buf)
}

fn write(caller: &mut Caller<'_, WasiCtx>, ptr: i32, bytes: &[u8]) -> Result<(), i32> {
    let mem = memory(caller)?;
    mem.write(caller, ptr as u32 as usize, bytes)
        .map_err(|_| EFAULT)
}

fn read_iovs(caller: &Caller<'_, WasiCtx>, iovs: i32, count: i32) -> Result<Vec<(i32, u32)>, i32> {
    let count = u32::try_from(count).map_err(|_| EINVAL)?;
    if count > MAX_IOVS {
        return Err(EINVAL);
    }
    let raw = read(caller, iovs, count * 8)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| {
            let ptr = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let len = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            (ptr, len)
        })
        .collect())
}

/// `poll_oneoff`: every subscription (48 bytes each) yields one event (32 bytes),
/// in order, at once; see the module documentation for what each reports.
fn poll_oneoff(
    c: &mut Caller<'_, WasiCtx>,
    subs: i32,
    events: i32,
    n: i32,
    out: i32,
) -> Result<(), i32> {
    let n = u32::try_from(n).map_err(|_| EINVAL)?;
    if n == 0 || n > MAX_SUBSCRIPTIONS {
        return Err(EINVAL);
    }
    let raw = read(c, subs, n * 48)?;
    let mut evs = vec![0u8; n as usize * 32];
    for (sub, ev) in raw.chunks_exact(48).zip(evs.chunks_exact_mut(32)) {
        ev[0..8].copy_from_slice(&sub[0..8]); // userdata
        let tag = sub[8];
        ev[10] = tag;
        let fd = i32::from_le_bytes([sub[16], sub[17], sub[18], sub[19]]);
        let (error, nbytes): (u16, u64) = match (tag, fd) {
            // A clock: already due (virtual time stands still).
            (0, _) => (0, 0),
            (1, 0) => {
                let ctx = c.data();
                (0, ctx.stdin.len().saturating_sub(ctx.stdin_pos) as u64)
            }
            (2, 1 | 2) => {
                let ctx = c.data();
                let used = if fd == 1 {
                    ctx.stdout.len()
                } else {
                    ctx.stderr.len()
                };
                (0, ctx.output_cap.saturating_sub(used) as u64)
            }
            (1 | 2, _) => (EBADF as u16, 0),
            _ => return Err(EINVAL),
        };
        ev[8..10].copy_from_slice(&error.to_le_bytes());
        ev[16..24].copy_from_slice(&nbytes.to_le_bytes());
    }
    write(c, events, &evs)?;
    write(c, out, &n.to_le_bytes())
}

fn errno(r: Result<(), i32>) -> i32 {
    r.err().unwrap_or(ESUCCESS)
}

/// Writes a list of NUL-terminated strings as (pointer array, string buffer).
fn write_list(
    caller: &mut Caller<'_, WasiCtx>,
    list: &[Vec<u8>],
    ptrs: i32,
    buf: i32,
) -> Result<(), i32> {
    let mut offset = buf as u32;
    let mut table = Vec::with_capacity(list.len() * 4);
    let mut data = Vec::new();
    for item in list {
        table.extend_from_slice(&offset.to_le_bytes());
        offset = offset.checked_add(item.len() as u32).ok_or(EFAULT)?;
        data.extend_from_slice(item);
    }
    write(caller, ptrs, &table)?;
    write(caller, buf, &data)
}

fn sizes(
    caller: &mut Caller<'_, WasiCtx>,
    list: fn(&WasiCtx) -> &Vec<Vec<u8>>,
    count_ptr: i32,
    size_ptr: i32,
) -> i32 {
    let (n, total) = {
        let l = list(caller.data());
        (
            l.len() as u32,
            l.iter().map(|s| s.len() as u32).sum::<u32>(),
        )
    };
    errno(
        write(caller, count_ptr, &n.to_le_bytes())
            .and_then(|()| write(caller, size_ptr, &total.to_le_bytes())),
    )
}

/// Links every preview1 function into `linker`.
pub fn link(linker: &mut Linker<WasiCtx>) -> Result<(), Error> {
    let m = super::instrument::WASI_MODULE;
    linker.func_wrap(
        m,
        "args_sizes_get",
        |mut c: Caller<'_, WasiCtx>, n: i32, s: i32| sizes(&mut c, |x| &x.args, n, s),
    )?;
    linker.func_wrap(
        m,
        "environ_sizes_get",
        |mut c: Caller<'_, WasiCtx>, n: i32, s: i32| sizes(&mut c, |x| &x.env, n, s),
    )?;
    linker.func_wrap(
        m,
        "args_get",
        |mut c: Caller<'_, WasiCtx>, p: i32, b: i32| {
            let list = c.data().args.clone();
            errno(write_list(&mut c, &list, p, b))
        },
    )?;
    linker.func_wrap(
        m,
        "environ_get",
        |mut c: Caller<'_, WasiCtx>, p: i32, b: i32| {
            let list = c.data().env.clone();
            errno(write_list(&mut c, &list, p, b))
        },
    )?;
    linker.func_wrap(
        m,
        "clock_time_get",
        |mut c: Caller<'_, WasiCtx>, _id: i32, _prec: i64, p: i32| {
            errno(write(&mut c, p, &FIXED_TIME_NS.to_le_bytes()))
        },
    )?;
    linker.func_wrap(
        m,
        "clock_res_get",
        |mut c: Caller<'_, WasiCtx>, _id: i32, p: i32| errno(write(&mut c, p, &1u64.to_le_bytes())),
    )?;
    linker.func_wrap(
        m,
        "random_get",
        |mut c: Caller<'_, WasiCtx>, p: i32, len: i32| {
            let Ok(len) = usize::try_from(len) else {
                return EINVAL;
            };
            if len > 1024 * 1024 {
                return EINVAL;
            }
            let bytes = c.data_mut().random_bytes(len);
            errno(write(&mut c, p, &bytes))
        },
    )?;
    linker.func_wrap(
        m,
        "fd_write",
        |mut c: Caller<'_, WasiCtx>, fd: i32, iovs: i32, n: i32, out: i32| {
            if fd != 1 && fd != 2 {
                return Ok(EBADF);
            }
            let iovs = match read_iovs(&c, iovs, n) {
                Ok(v) => v,
                Err(e) => return Ok(e),
            };
            let mut written = 0u32;
            for (ptr, len) in iovs {
                let cap = c.data().output_cap;
                let used = if fd == 1 {
                    c.data().stdout.len()
                } else {
                    c.data().stderr.len()
                };
                let room = cap.saturating_sub(used);
                let take = (len as usize).min(room);
                let bytes = match read(&c, ptr, take as u32) {
                    Ok(b) => b,
                    Err(e) => return Ok(e),
                };
                let ctx = c.data_mut();
                if fd == 1 {
                    ctx.stdout.extend_from_slice(&bytes)
                } else {
                    ctx.stderr.extend_from_slice(&bytes)
                }
                written += take as u32;
                if take < len as usize {
                    return Err(Error::host(HostStop::OutputLimit));
                }
            }
            Ok(errno(write(&mut c, out, &written.to_le_bytes())))
        },
    )?;
    linker.func_wrap(
        m,
        "fd_read",
        |mut c: Caller<'_, WasiCtx>, fd: i32, iovs: i32, n: i32, out: i32| {
            if fd != 0 {
                return EBADF;
            }
            let iovs = match read_iovs(&c, iovs, n) {
                Ok(v) => v,
                Err(e) => return e,
            };
            let mut total = 0u32;
            for (ptr, len) in iovs {
                let (pos, avail) = (c.data().stdin_pos, c.data().stdin.len());
                let take = (len as usize).min(avail - pos);
                if take == 0 {
                    break;
                }
                let chunk = c.data().stdin[pos..pos + take].to_vec();
                if let Err(e) = write(&mut c, ptr, &chunk) {
                    return e;
                }
                c.data_mut().stdin_pos += take;
                total += take as u32;
            }
            errno(write(&mut c, out, &total.to_le_bytes()))
        },
    )?;
    linker.func_wrap(
        m,
        "fd_fdstat_get",
        |mut c: Caller<'_, WasiCtx>, fd: i32, p: i32| {
            if !(0..=2).contains(&fd) {
                return EBADF;
            }
            // fdstat: filetype u8 (2 = character device), flags u16, rights u64 x2.
            let mut st = [0u8; 24];
            st[0] = 2;
            st[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            errno(write(&mut c, p, &st))
        },
    )?;
    linker.func_wrap(
        m,
        "fd_filestat_get",
        |mut c: Caller<'_, WasiCtx>, fd: i32, p: i32| {
            if !(0..=2).contains(&fd) {
                return EBADF;
            }
            let mut st = [0u8; 64];
            st[16] = 2;
            errno(write(&mut c, p, &st))
        },
    )?;
    linker.func_wrap(m, "fd_close", |fd: i32| {
        if (0..=2).contains(&fd) {
            ESUCCESS
        } else {
            EBADF
        }
    })?;
    linker.func_wrap(m, "fd_seek", |fd: i32, _o: i64, _w: i32, _p: i32| {
        if (0..=2).contains(&fd) { ESPIPE } else { EBADF }
    })?;
    linker.func_wrap(m, "fd_prestat_get", |_fd: i32, _p: i32| EBADF)?;
    linker.func_wrap(m, "fd_prestat_dir_name", |_fd: i32, _p: i32, _l: i32| EBADF)?;
    linker.func_wrap(m, "sched_yield", || ESUCCESS)?;
    linker.func_wrap(
        m,
        "poll_oneoff",
        |mut c: Caller<'_, WasiCtx>, subs: i32, events: i32, n: i32, out: i32| {
            errno(poll_oneoff(&mut c, subs, events, n, out))
        },
    )?;
    let sock = |fd: i32| {
        if (0..=2).contains(&fd) {
            ENOTSOCK
        } else {
            EBADF
        }
    };
    linker.func_wrap(m, "sock_accept", move |fd: i32, _f: i32, _p: i32| sock(fd))?;
    linker.func_wrap(
        m,
        "sock_recv",
        move |fd: i32, _i: i32, _n: i32, _f: i32, _p: i32, _o: i32| sock(fd),
    )?;
    linker.func_wrap(
        m,
        "sock_send",
        move |fd: i32, _i: i32, _n: i32, _f: i32, _p: i32| sock(fd),
    )?;
    linker.func_wrap(m, "sock_shutdown", move |fd: i32, _h: i32| sock(fd))?;
    linker.func_wrap(m, "proc_exit", |code: i32| -> Result<(), Error> {
        Err(Error::host(HostStop::Exit(code)))
    })?;

    const IMPLEMENTED: &[&str] = &[
        "args_sizes_get",
        "environ_sizes_get",
        "args_get",
        "environ_get",
        "clock_time_get",
        "clock_res_get",
        "random_get",
        "fd_write",
        "fd_read",
        "fd_fdstat_get",
        "fd_filestat_get",
        "fd_close",
        "fd_seek",
        "fd_prestat_get",
        "fd_prestat_dir_name",
        "sched_yield",
        "poll_oneoff",
        "sock_accept",
        "sock_recv",
        "sock_send",
        "sock_shutdown",
        "proc_exit",
    ];
    for (name, params, _) in PREVIEW1.iter().filter(|(n, _, _)| !IMPLEMENTED.contains(n)) {
        let params = params.iter().map(|t| match t {
            T::I32 => wasm3x::ValType::I32,
            T::I64 => wasm3x::ValType::I64,
        });
        let ty = wasm3x::FuncType::new(params.collect::<Vec<_>>(), [wasm3x::ValType::I32]);
        linker.func_new(m, name, ty, |_c, _args, out| {
            out[0] = Val::I32(ENOSYS);
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
