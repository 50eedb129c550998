//! A bounded pool of OS threads that runs jobs, so async code never blocks on WebAssembly.
//!
//! A fixed number of workers take jobs from a bounded queue; when every worker
//! is busy and the queue is full, submission fails at once with
//! [`PoolError::Busy`] rather than letting work pile up. Each worker has a large
//! native stack because the interpreter recurses natively on guest calls.

use super::{ExecRequest, ExecResult, Outcome, Runtime};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Native stack of each worker thread.
const WORKER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Why a job could not be handed to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every worker is busy and the queue is full; try again later.
    #[error("all {workers} workers are busy and {queue} jobs are queued")]
    Busy {
        /// Worker count.
        workers: usize,
        /// Queue capacity.
        queue: usize,
    },
    /// The pool is shutting down or a worker died before answering.
    #[error("the worker pool is shut down")]
    Closed,
}

type Task = Box<dyn FnOnce() + Send + 'static>;

/// Counters of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Jobs waiting for a worker.
    pub queued: usize,
    /// Jobs being executed.
    pub running: usize,
}

#[derive(Default)]
struct Counters {
    queued: AtomicUsize,
    running: AtomicUsize,
}

/// The worker pool.
pub struct WorkerPool {
    tx: Option<SyncSender<Task>>,
    workers: Vec<JoinHandle<()>>,
    runtime: Arc<dyn Runtime>,
    counters: Arc<Counters>,
    queue: usize,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("workers", &self.workers.len())
            .field("queue", &self.queue)
            .finish()
    }
}

impl WorkerPool {
    /// Starts `workers` threads (at least one) with a queue of `queue` waiting jobs.
    pub fn new(runtime: Arc<dyn Runtime>, workers: usize, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Task>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let handles = (0..workers.max(1))
            .map(|i| {
                let rx: Arc<Mutex<Receiver<Task>>> = rx.clone();
                std::thread::Builder::new()
                    .name(format!("plasm-worker-{i}"))
                    .stack_size(WORKER_STACK_BYTES)
                    .spawn(move || {
                        loop {
                            let task = match rx.lock() {
                                Ok(guard) => guard.recv(),
                                Err(_) => return,
                            };
                            match task {
                                Ok(task) => task(),
                                Err(_) => return,
                            }
                        }
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            tx: Some(tx),
            workers: handles,
            runtime,
            counters: Arc::default(),
            queue,
        })
    }

    /// The runtime jobs run on.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// Worker count and queue capacity.
    pub fn capacity(&self) -> (usize, usize) {
        (self.workers.len(), self.queue)
    }

    /// Queued and running job counts.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            queued: self.counters.queued.load(Ordering::Relaxed),
            running: self.counters.running.load(Ordering::Relaxed),
        }
    }

    /// Queues a job; the receiver yields its result. Fails at once when full.
    pub fn submit(&self, request: ExecRequest) -> Result<oneshot::Receiver<ExecResult>, PoolError> {
        let tx = self.tx.as_ref().ok_or(PoolError::Closed)?;
        let (done, rx) = oneshot::channel();
        let runtime = self.runtime.clone();
        let counters = self.counters.clone();
        let task: Task = Box::new(move || {
            counters.queued.fetch_sub(1, Ordering::Relaxed);
            counters.running.fetch_add(1, Ordering::Relaxed);
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                super::run(runtime.as_ref(), &request)
            }))
            .unwrap_or_else(|_| {
                ExecResult::refused(Outcome::Trapped, "internal runtime error".into())
            });
            counters.running.fetch_sub(1, Ordering::Relaxed);
            let _ = done.send(result);
        });
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        tx.try_send(task).map_err(|e| {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => PoolError::Busy {
                    workers: self.workers.len(),
                    queue: self.queue,
                },
                TrySendError::Disconnected(_) => PoolError::Closed,
            }
        })?;
        Ok(rx)
    }

    /// Runs a job and waits for it asynchronously.
    pub async fn run(&self, request: ExecRequest) -> Result<ExecResult, PoolError> {
        self.submit(request)?.await.map_err(|_| PoolError::Closed)
    }

    /// Runs a job and blocks the calling (non-async) thread until it ends.
    pub fn run_blocking(&self, request: ExecRequest) -> Result<ExecResult, PoolError> {
        self.submit(request)?
            .blocking_recv()
            .map_err(|_| PoolError::Closed)
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Closing the channel lets each worker finish its job and exit.
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
