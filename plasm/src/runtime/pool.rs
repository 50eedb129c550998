//! A bounded pool of OS threads that runs jobs, so async code never blocks on WebAssembly.
//!
//! A fixed number of workers take jobs from a bounded queue; when every worker
//! is busy and the queue is full, submission fails at once with
//! [`PoolError::Busy`] rather than letting work pile up. Each worker has a large
//! native stack because the interpreter recurses natively on guest calls.
//!
//! [`WorkerPool::close`] is the shutdown: queued jobs are dropped without
//! running (their receivers see [`PoolError::Closed`]), running jobs go on, and
//! nothing ever waits for them: workers are detached, so a node stops within its
//! grace period however long a job would still take.

use super::{ExecRequest, ExecResult, Outcome, Runtime};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Native stack of each worker thread.
pub(crate) const WORKER_STACK_BYTES: usize = 64 * 1024 * 1024;

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

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicUsize,
    running: AtomicUsize,
    /// Stolen tasks still in the channel (a worker drops each when it reaches
    /// it): bounded, since each holds its request's bytes until then.
    stale: AtomicUsize,
    /// Set by [`WorkerPool::close`]: no new job starts.
    closed: AtomicBool,
}

/// Hard bound of the channel under the queue; the effective queue limit is dynamic and lower.
const MAX_QUEUE: usize = 65_536;
/// Hard bound on worker threads.
const MAX_WORKERS: usize = 256;

/// The place in the queue of a job stolen from it: counted until dropped.
#[derive(Debug)]
pub struct Reserved {
    counters: Arc<Counters>,
    live: bool,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.live {
            self.counters.queued.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The worker pool.
pub struct WorkerPool {
    tx: Option<SyncSender<Task>>,
    rx: Arc<Mutex<Receiver<Task>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    runtime: Arc<dyn Runtime>,
    counters: Arc<Counters>,
    /// Workers allowed to take jobs; those above the limit park.
    worker_limit: Arc<AtomicUsize>,
    queue_limit: AtomicUsize,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (w, q) = self.capacity();
        f.debug_struct("WorkerPool")
            .field("workers", &w)
            .field("queue", &q)
            .finish()
    }
}

impl WorkerPool {
    /// Starts `workers` threads (at least one) with a queue of `queue` waiting jobs.
    pub fn new(runtime: Arc<dyn Runtime>, workers: usize, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Task>(MAX_QUEUE);
        let pool = Self {
            tx: Some(tx),
            rx: Arc::new(Mutex::new(rx)),
            workers: Mutex::new(Vec::new()),
            runtime,
            counters: Arc::default(),
            worker_limit: Arc::new(AtomicUsize::new(0)),
            queue_limit: AtomicUsize::new(0),
        };
        pool.set_capacity(workers, queue)?;
        Ok(pool)
    }

    /// Changes the number of workers and the queue length at runtime. Running jobs
    /// are never interrupted: workers above a lowered limit park once their job ends.
    pub fn set_capacity(&self, workers: usize, queue: usize) -> std::io::Result<()> {
        let workers = workers.clamp(1, MAX_WORKERS);
        self.queue_limit
            .store(queue.min(MAX_QUEUE), Ordering::SeqCst);
        let mut handles = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        while handles.len() < workers {
            let index = handles.len();
            let (rx, limit, counters) = (
                self.rx.clone(),
                self.worker_limit.clone(),
                self.counters.clone(),
            );
            handles.push(
                std::thread::Builder::new()
                    .name(format!("plasm-worker-{index}"))
                    .stack_size(WORKER_STACK_BYTES)
                    .spawn(move || worker(index, &rx, &limit, &counters))?,
            );
        }
        self.worker_limit.store(workers, Ordering::SeqCst);
        Ok(())
    }

    /// The runtime jobs run on.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// Worker count and queue capacity.
    pub fn capacity(&self) -> (usize, usize) {
        (
            self.worker_limit.load(Ordering::SeqCst),
            self.queue_limit.load(Ordering::SeqCst),
        )
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
        self.submit_observed(request, None)
    }

    /// Like [`Self::submit`], and `started` hears when a worker begins the job
    /// (its RFC 3339 start time), so callers can say "running" only then.
    pub fn submit_observed(
        &self,
        request: ExecRequest,
        started: Option<oneshot::Sender<String>>,
    ) -> Result<oneshot::Receiver<ExecResult>, PoolError> {
        self.enqueue(request, started, None)
    }

    /// Queues a job again in the place a steal kept for it (swarm mode: its thief
    /// did not run it). Never refused for room: the place was never given up.
    pub fn submit_reserved(
        &self,
        request: ExecRequest,
        started: Option<oneshot::Sender<String>>,
        place: Reserved,
    ) -> Result<oneshot::Receiver<ExecResult>, PoolError> {
        self.enqueue(request, started, Some(place))
    }

    fn enqueue(
        &self,
        request: ExecRequest,
        started: Option<oneshot::Sender<String>>,
        place: Option<Reserved>,
    ) -> Result<oneshot::Receiver<ExecResult>, PoolError> {
        let tx = self.tx.as_ref().ok_or(PoolError::Closed)?;
        if self.counters.closed.load(Ordering::SeqCst) {
            return Err(PoolError::Closed);
        }
        let (workers, queue) = self.capacity();
        let busy = PoolError::Busy { workers, queue };
        match place {
            // Counted since it was first queued: the task takes the count over.
            Some(mut place) => place.live = false,
            None => {
                // Room = idle workers + free queue slots.
                let queued = self.counters.queued.fetch_add(1, Ordering::SeqCst);
                let running = self.counters.running.load(Ordering::SeqCst);
                if queued + running >= workers + queue {
                    self.counters.queued.fetch_sub(1, Ordering::SeqCst);
                    return Err(busy);
                }
            }
        }
        let (done, rx) = oneshot::channel();
        let runtime = self.runtime.clone();
        let counters = self.counters.clone();
        let task: Task = Box::new(move || {
            if !request.cancel.claim_for_run() {
                // Stolen while queued (swarm mode): the stealer owns it and its
                // place in the count; `done` drops unheard.
                counters.stale.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            if counters.closed.load(Ordering::SeqCst) {
                // Queued when the pool closed: never run; `done` drops, so the
                // waiter learns the pool closed.
                counters.queued.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            counters.running.fetch_add(1, Ordering::SeqCst);
            let started_at = crate::time::now_rfc3339();
            counters.queued.fetch_sub(1, Ordering::SeqCst);
            if let Some(tx) = started {
                let _ = tx.send(started_at.clone());
            }
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| runtime.run_job(&request)))
                .unwrap_or_else(|_| {
                    ExecResult::refused(Outcome::Trapped, "internal runtime error".into())
                });
            counters.running.fetch_sub(1, Ordering::SeqCst);
            let mut result = result;
            result.started_at = started_at;
            // A module refused before any engine ran is still signed in the name of
            // the engine the job asked for.
            if result.runtime.is_none() {
                result.runtime = Some(runtime.info_for(&request));
            }
            let _ = done.send(result);
        });
        tx.try_send(task).map_err(|e| {
            self.counters.queued.fetch_sub(1, Ordering::SeqCst);
            match e {
                TrySendError::Full(_) => busy,
                TrySendError::Disconnected(_) => PoolError::Closed,
            }
        })?;
        if self.counters.closed.load(Ordering::SeqCst) {
            // `close` ran between the check above and the send: the task would
            // sit in the queue with no worker left. Drop it like the others.
            self.drain();
        }
        Ok(rx)
    }
}

impl WorkerPool {
    /// Takes a queued job away from the pool (swarm mode): its place when it had
    /// not started (then no worker ever runs it). One compare-and-swap against
    /// the worker's, so never a started job. The job keeps its place in the
    /// queue's count until the place is dropped (its thief ran it) or used again
    /// ([`Self::submit_reserved`]: the thief did not), so a job given back is
    /// never refused for room that was handed to another meanwhile.
    pub fn steal(&self, cancel: &super::CancelToken) -> Option<Reserved> {
        // Stolen tasks wait in the channel until a worker drops them: at most as
        // many as the queue holds (and the channel's room), so their bytes stay
        // bounded and a job given back always finds room in the channel.
        let (workers, queue) = self.capacity();
        let cap = queue.min(MAX_QUEUE.saturating_sub(queue + workers));
        let stale = self.counters.stale.fetch_add(1, Ordering::SeqCst);
        if stale >= cap || !cancel.claim_for_steal() {
            self.counters.stale.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Reserved {
            counters: self.counters.clone(),
            live: true,
        })
    }

    /// Stops the pool: refuses new jobs, drops every queued one without running
    /// it (its waiter gets [`PoolError::Closed`] at once) and lets running jobs
    /// go on. Returns how many queued jobs were dropped.
    /// It never waits for a worker (every `plasm run` process ends through here).
    pub fn close(&self) -> usize {
        self.counters.closed.store(true, Ordering::SeqCst);
        // Released parked workers see the flag and exit.
        self.worker_limit.store(MAX_WORKERS, Ordering::SeqCst);
        self.drain()
    }

    /// Drops every queued task (each sees the closed flag and only lets go of its sender).
    fn drain(&self) -> usize {
        let mut dropped = 0;
        // A worker holding the lock is idle, waiting in its receive: any task it
        // takes now runs as closed (drops its sender at once), and what is left is
        // dropped with the receiver when the workers exit. So never wait for it.
        let rx = match self.rx.try_lock() {
            Ok(rx) => rx,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return 0,
        };
        while let Ok(task) = rx.try_recv() {
            // Running it returns at once (closed) and drops its result sender.
            task();
            dropped += 1;
        }
        dropped
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.counters.closed.load(Ordering::SeqCst)
    }
}

fn worker(index: usize, rx: &Mutex<Receiver<Task>>, limit: &AtomicUsize, counters: &Counters) {
    loop {
        if counters.closed.load(Ordering::SeqCst) {
            return;
        }
        if index >= limit.load(Ordering::SeqCst) {
            // Parked by a lowered capacity; still exits when the pool closes.
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        let task = match rx.lock() {
            Ok(guard) => guard.recv_timeout(std::time::Duration::from_millis(100)),
            Err(_) => return,
        };
        match task {
            Ok(task) => task(),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Queued jobs are dropped; each worker exits after the job it runs, on its
        // own: nobody waits for a job that may run for minutes.
        if !self.is_closed() {
            self.close();
        }
        self.tx = None;
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{CancelToken, instrument::Instrumented};

    /// Holds its worker until the test opens the gate (`args[0] == "hold"`).
    struct Gated(Arc<AtomicBool>);

    impl Runtime for Gated {
        fn info(&self) -> crate::execution::RuntimeInfo {
            crate::execution::RuntimeInfo {
                name: "gated".into(),
                version: "0".into(),
                metering: super::super::instrument::METERING.into(),
                config_sha256: crate::execution::RuntimeInfo::config_hash("gated"),
            }
        }
        fn execute(&self, _m: &Instrumented, r: &ExecRequest) -> ExecResult {
            self.run_job(r)
        }
        fn run_job(&self, r: &ExecRequest) -> ExecResult {
            while r.args.first().is_some_and(|a| a == "hold") && !self.0.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            ExecResult::refused(Outcome::Exited, String::new())
        }
    }

    fn request(hold: bool) -> ExecRequest {
        ExecRequest {
            module: Arc::from(&b""[..]),
            entry: "_start".into(),
            args: if hold { vec!["hold".into()] } else { vec![] },
            env: vec![],
            stdin: vec![],
            limits: crate::manifest::Limits::default(),
            random_seed: [0; 32],
            engine: None,
            cancel: CancelToken::default(),
        }
    }

    /// Swarm mode's claim: a queued job is stolen at most once and never runs;
    /// a running job is never stolen; the queue count follows.
    #[tokio::test]
    async fn a_queued_job_is_stolen_once_and_a_started_one_never() {
        let gate = Arc::new(AtomicBool::new(false));
        let pool = WorkerPool::new(Arc::new(Gated(gate.clone())), 1, 8).expect("pool");
        let a = request(true);
        let (ta, (started_tx, started_rx)) = (a.cancel.clone(), oneshot::channel());
        let ra = pool.submit_observed(a, Some(started_tx)).expect("a");
        started_rx.await.expect("a starts");
        let (b, c) = (request(false), request(false));
        let (tb, tc) = (b.cancel.clone(), c.cancel.clone());
        let rb = pool.submit(b).expect("b");
        let rc = pool.submit(c).expect("c");
        assert_eq!(pool.stats().queued, 2);
        assert!(pool.steal(&ta).is_none(), "a started job is never stolen");
        let place = pool.steal(&tb).expect("a queued job is");
        assert!(pool.steal(&tb).is_none(), "once");
        assert!(tb.is_stolen() && !tc.is_stolen() && !ta.is_stolen());
        assert_eq!(
            pool.stats().queued,
            2,
            "a stolen job keeps its place while out"
        );
        drop(place);
        assert_eq!(
            pool.stats().queued,
            1,
            "and gives it up once its thief ran it"
        );
        gate.store(true, Ordering::SeqCst);
        assert!(ra.await.is_ok() && rc.await.is_ok());
        assert!(rb.await.is_err(), "the stolen job never ran here");
        assert!(pool.steal(&tc).is_none(), "nor is a finished one");
        assert_eq!(pool.stats().queued, 0);
    }

    /// A job its thief gave back takes its kept place, even when the queue has
    /// filled meanwhile: it is never refused.
    #[tokio::test]
    async fn a_job_given_back_is_never_refused_for_room() {
        let gate = Arc::new(AtomicBool::new(false));
        let pool = WorkerPool::new(Arc::new(Gated(gate.clone())), 1, 1).expect("pool");
        let (a, (tx, rx)) = (request(true), oneshot::channel());
        let ra = pool.submit_observed(a, Some(tx)).expect("a");
        rx.await.expect("a starts");
        let b = request(false);
        let tb = b.cancel.clone();
        let rb = pool.submit(b).expect("b queued");
        let place = pool.steal(&tb).expect("b stolen");
        assert!(
            matches!(pool.submit(request(false)), Err(PoolError::Busy { .. })),
            "the stolen job's place is still taken"
        );
        let again = pool
            .submit_reserved(request(false), None, place)
            .expect("given back into its own place");
        assert_eq!(pool.stats().queued, 1, "one place, one job");
        gate.store(true, Ordering::SeqCst);
        assert!(ra.await.is_ok() && again.await.is_ok());
        assert!(rb.await.is_err(), "the stolen task itself never ran");
        assert_eq!(pool.stats().queued, 0);
    }

    /// Stolen tasks left in the channel are bounded by the queue: past that,
    /// nothing more is stolen until workers drop them.
    #[tokio::test]
    async fn stolen_tasks_waiting_for_a_worker_are_bounded() {
        let gate = Arc::new(AtomicBool::new(false));
        let pool = WorkerPool::new(Arc::new(Gated(gate.clone())), 1, 2).expect("pool");
        let (a, (tx, rx)) = (request(true), oneshot::channel());
        let ra = pool.submit_observed(a, Some(tx)).expect("a");
        rx.await.expect("a starts");
        let mut stolen = 0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            let r = request(false);
            let t = r.cancel.clone();
            waits.push(
                pool.submit(r)
                    .expect("room: each stolen job's place is freed"),
            );
            let Some(place) = pool.steal(&t) else { break };
            stolen += 1;
            drop(place);
        }
        assert_eq!(
            stolen, 2,
            "no more stolen tasks waiting than the queue holds"
        );
        gate.store(true, Ordering::SeqCst);
        assert!(ra.await.is_ok());
        for w in waits {
            let _ = w.await;
        }
        assert_eq!(pool.stats().queued, 0);
        let r = request(false);
        let t = r.cancel.clone();
        let _held = pool.submit(r).expect("room again");
        let _ = pool.steal(&t);
    }

    /// Many stealers against two workers: every job either ran or was stolen,
    /// never both, never neither.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_stealers_and_workers_split_the_jobs_exactly() {
        let pool =
            Arc::new(WorkerPool::new(Arc::new(Gated(Arc::default())), 2, 4096).expect("pool"));
        let mut waits = Vec::new();
        let mut tokens = Vec::new();
        for _ in 0..2000 {
            let r = request(false);
            tokens.push(r.cancel.clone());
            waits.push(pool.submit(r).expect("room"));
        }
        let stealers: Vec<_> = (0..4)
            .map(|k| {
                let (pool, tokens) = (pool.clone(), tokens.clone());
                std::thread::spawn(move || {
                    tokens
                        .iter()
                        .skip(k % 2)
                        .filter_map(|t| pool.steal(t))
                        .count()
                })
            })
            .collect();
        let stolen: usize = stealers
            .into_iter()
            .map(|s| s.join().expect("stealer"))
            .sum();
        let mut ran = 0;
        for w in waits {
            if w.await.is_ok() {
                ran += 1;
            }
        }
        assert_eq!(ran + stolen, 2000, "ran {ran}, stolen {stolen}");
        assert_eq!(tokens.iter().filter(|t| t.is_stolen()).count(), stolen);
        assert_eq!(pool.stats().queued, 0);
    }
}
