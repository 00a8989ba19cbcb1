//! Dynamic batching: requests queue, one worker thread forms batches and scores each batch with
//! one `Scorer::top_k` call, and every caller gets its own answer.
//!
//! A batch closes when it holds `max_batch` jobs or `max_wait` has passed since its first job
//! arrived, whichever comes first. With `max_wait` = 0 (the server's default) batching is
//! greedy: the worker takes whatever queued while it scored the previous batch, so a lone
//! request at low load is scored at once and batches grow with the load by themselves (a wait
//! only helps when a batch of one costs nearly as much as a full one and load is steady). The queue is bounded: when it is full, [`Batcher::submit`] refuses
//! the job at once (the server answers 503 with Retry-After) instead of letting memory and
//! latency grow without bound. A batch asks for the largest K any of its jobs wants; the first
//! k of an exact top-K under a total order are the exact top-k, so each job's answer is a prefix.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use encore::error::{Error, Result};
use encore::infer::{Ranked, Scorer};

/// What to leave out of a job's answer.
#[derive(Debug, Clone)]
pub enum Exclude {
    Nothing,
    /// The training tracks of this dense user row.
    UserRow(usize),
    /// These tracks (sorted, deduplicated).
    Items(Vec<u32>),
}

/// What a job scores: a known user's factors, read from the model when the batch is formed
/// (no copy per request), or a vector of its own (a fold-in).
#[derive(Debug, Clone)]
pub enum Query {
    User(usize),
    Vector(Vec<f32>),
}

/// The model's users as the batcher reads them: factor rows and training tracks, borrowed.
pub trait Users: Send + Sync {
    /// Factors of user row `u`.
    fn factors(&self, u: usize) -> &[f32];
    /// Training tracks of user row `u` (sorted), left out when a job asks for it.
    fn tracks(&self, u: usize) -> &[u32];
}

/// One query.
pub struct Job {
    pub query: Query,
    pub exclude: Exclude,
    pub k: usize,
    pub reply: oneshot::Sender<Result<Ranked>>,
}

/// Observations of the batcher, for `/metrics`.
pub trait BatchObserver: Send + Sync {
    /// A batch of `size` jobs was scored in `seconds`.
    fn batch(&self, size: usize, seconds: f64);
}

/// Batching settings.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Jobs that may wait in the queue.
    pub queue: usize,
}

/// Handle to the batching worker. Dropping it stops the worker after the queued jobs.
pub struct Batcher {
    tx: Option<SyncSender<Job>>,
    /// For scoring a lone job on the caller's thread ([`Batcher::submit_or_run`]).
    inline: Option<Inline>,
    /// Jobs accepted and not yet answered (queued or in the batch being formed or scored).
    depth: Arc<AtomicUsize>,
    capacity: usize,
    worker: Option<JoinHandle<()>>,
}

/// What a caller needs to score a job itself.
struct Inline {
    scorer: Arc<dyn Scorer>,
    users: Arc<dyn Users>,
    observer: Arc<dyn BatchObserver>,
}

/// Why a job was not queued.
#[derive(Debug)]
pub enum Refused {
    /// The queue is full: shed load.
    Full,
    /// The worker is gone (shutting down).
    Closed,
}

impl Batcher {
    /// Starts the worker over `scorer`; `users` gives the factors and training tracks of the
    /// users jobs name.
    pub fn start(
        cfg: BatchConfig,
        scorer: Arc<dyn Scorer>,
        users: Arc<dyn Users>,
        observer: Arc<dyn BatchObserver>,
    ) -> Result<Self> {
        if cfg.max_batch == 0 || cfg.queue == 0 {
            return Err(Error::Config("--max-batch and --queue must be >= 1".into()));
        }
        let (tx, rx) = sync_channel::<Job>(cfg.queue);
        let depth = Arc::new(AtomicUsize::new(0));
        let d = depth.clone();
        let inline = cfg.max_wait.is_zero().then(|| Inline {
            scorer: scorer.clone(),
            users: users.clone(),
            observer: observer.clone(),
        });
        let worker = std::thread::Builder::new()
            .name("encore-batcher".into())
            .spawn(move || {
                run(
                    cfg,
                    rx,
                    scorer.as_ref(),
                    users.as_ref(),
                    observer.as_ref(),
                    &d,
                )
            })
            .map_err(|e| Error::Runtime(format!("cannot start the batching thread: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            inline,
            depth,
            capacity: cfg.queue,
            worker: Some(worker),
        })
    }

    /// Queues a job, or refuses it at once when `queue` jobs are already waiting for answers.
    pub fn submit(&self, job: Job) -> std::result::Result<(), Refused> {
        let tx = self.tx.as_ref().ok_or(Refused::Closed)?;
        if self.depth.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.depth.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::AcqRel);
                Err(match e {
                    TrySendError::Full(_) => Refused::Full,
                    TrySendError::Disconnected(_) => Refused::Closed,
                })
            }
        }
    }

    /// Like [`Batcher::submit`], but when nothing else is in flight (greedy batching, on a
    /// multi-threaded tokio runtime) the job is scored right here on the calling runtime
    /// thread: at low load a request then skips two thread wake-ups (the worker's and the
    /// reply's). Only one job at a time can be in this state (the in-flight count goes 0 → 1),
    /// so at most one runtime thread is ever busy scoring, for one query's time (tens of µs to
    /// about a millisecond); jobs arriving meanwhile queue for the worker as usual, so batching
    /// under load is unchanged. `block_in_place` was measured and is slower here: it hands the
    /// runtime thread's duties to another thread on every call. The answer arrives on the job's
    /// channel either way.
    pub fn submit_or_run(&self, job: Job) -> std::result::Result<(), Refused> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let Some(inline) = self
            .inline
            .as_ref()
            .filter(|_| multi_thread && self.tx.is_some())
        else {
            return self.submit(job);
        };
        if self
            .depth
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return self.submit(job);
        }
        let t = Instant::now();
        score(
            inline.scorer.as_ref(),
            inline.users.as_ref(),
            &mut vec![job],
        );
        self.depth.fetch_sub(1, Ordering::AcqRel);
        inline.observer.batch(1, t.elapsed().as_secs_f64());
        Ok(())
    }

    /// Queues all of `jobs` or none: when they do not all fit under the bound, every one is
    /// refused, so a many-user request never leaves part of itself queued.
    pub fn submit_all(&self, jobs: Vec<Job>) -> std::result::Result<(), Refused> {
        let tx = self.tx.as_ref().ok_or(Refused::Closed)?;
        let n = jobs.len();
        if self.depth.fetch_add(n, Ordering::AcqRel) + n > self.capacity {
            self.depth.fetch_sub(n, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        // The channel holds at most the accepted-but-unanswered jobs, which the bound keeps
        // within its capacity, so these sends do not find it full.
        for (i, job) in jobs.into_iter().enumerate() {
            if tx.try_send(job).is_err() {
                self.depth.fetch_sub(n - i, Ordering::AcqRel);
                return Err(Refused::Closed);
            }
        }
        Ok(())
    }

    /// Jobs accepted and not yet answered.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Acquire)
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.tx.take(); // the worker drains the queue, then sees the channel closed
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn run(
    cfg: BatchConfig,
    rx: Receiver<Job>,
    scorer: &dyn Scorer,
    users: &dyn Users,
    observer: &dyn BatchObserver,
    depth: &AtomicUsize,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(cfg.max_batch);
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + cfg.max_wait;
        batch.push(first);
        while batch.len() < cfg.max_batch {
            let now = Instant::now();
            if now >= deadline {
                // Take what is already queued without waiting.
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
                continue;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(j) => batch.push(j),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let size = batch.len();
        let t = Instant::now();
        score(scorer, users, &mut batch); // answers and drains the batch
        depth.fetch_sub(size, Ordering::AcqRel);
        observer.batch(size, t.elapsed().as_secs_f64());
        batch.clear();
    }
}

/// Scores `batch` in one call and answers every job. User factors and training tracks are
/// read in place from the model and dataset: a request copies neither (an LFM-1b user's
/// tracks average 1,600, 6.4 KB, and this thread is the one every request passes).
fn score(scorer: &dyn Scorer, users: &dyn Users, batch: &mut Vec<Job>) {
    let kf = scorer.n_factors();
    let k = batch.iter().map(|j| j.k).max().unwrap_or(1);
    let mut queries = Vec::with_capacity(batch.len() * kf);
    for j in batch.iter() {
        match &j.query {
            Query::User(u) => queries.extend_from_slice(users.factors(*u)),
            Query::Vector(v) => queries.extend_from_slice(v),
        }
    }
    let refs: Vec<&[u32]> = batch
        .iter()
        .map(|j| match &j.exclude {
            Exclude::Nothing => &[][..],
            Exclude::UserRow(u) => users.tracks(*u),
            Exclude::Items(v) => v.as_slice(),
        })
        .collect();
    match scorer.top_k(&queries, Some(&refs), k) {
        Ok(results) if results.len() == batch.len() => {
            for (job, mut r) in batch.drain(..).zip(results) {
                r.items.truncate(job.k);
                r.scores.truncate(job.k);
                let _ = job.reply.send(Ok(r)); // the caller may have gone away
            }
        }
        Ok(results) => {
            let msg = format!(
                "scorer answered {} of {} queries",
                results.len(),
                batch.len()
            );
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(Error::Runtime(msg.clone())));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(Error::Runtime(msg.clone())));
            }
        }
    }
}
