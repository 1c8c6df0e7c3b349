//! Bounded task pools for work that leaves a connection's task: resident workers behind a
//! bounded queue, with a policy for when the queue is full. Never a task per I/O: the seed
//! system's memory blew up exactly that way when a dependency slowed down.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What to do with a job when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse it; the caller gets [`Overloaded`].
    Reject,
    /// Drop it and count it (for data that may be lost, like presence).
    Shed,
    /// Wait up to this long for room, then refuse.
    Wait(Duration),
}

/// The queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{pool} is overloaded")]
pub struct Overloaded {
    /// Which pool.
    pub pool: &'static str,
}

/// Counters of a pool.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Jobs accepted.
    pub submitted: AtomicU64,
    /// Jobs refused.
    pub rejected: AtomicU64,
    /// Jobs dropped by the `Shed` policy.
    pub shed: AtomicU64,
    /// Jobs finished.
    pub completed: AtomicU64,
}

/// A pool of resident workers; cheap to clone.
///
/// ```
/// use longlink_push::workers::{Overflow, Workers};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let pool = Workers::spawn("echo", 2, 16, Overflow::Reject, 8, move |batch: Vec<u32>| {
///     let tx = tx.clone();
///     async move { for n in batch { tx.send(n).unwrap(); } }
/// });
/// pool.submit(7).await.unwrap();
/// assert_eq!(rx.recv().await, Some(7));
/// # }
/// ```
pub struct Workers<J> {
    name: &'static str,
    tx: async_channel::Sender<J>,
    policy: Overflow,
    stats: Arc<WorkerStats>,
}

impl<J> Clone for Workers<J> {
    fn clone(&self) -> Self {
        Workers {
            name: self.name,
            tx: self.tx.clone(),
            policy: self.policy,
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<J> std::fmt::Debug for Workers<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("name", &self.name)
            .field("queued", &self.tx.len())
            .finish()
    }
}

impl<J: Send + 'static> Workers<J> {
    /// Starts `workers` workers behind a queue of `queue` jobs. Each worker takes a job,
    /// adds up to `max_batch - 1` more that are already queued, and hands the batch to
    /// `handler` (batching where it helps: many ACKs become one database write).
    pub fn spawn<F, Fut>(
        name: &'static str,
        workers: usize,
        queue: usize,
        policy: Overflow,
        max_batch: usize,
        handler: F,
    ) -> Workers<J>
    where
        F: Fn(Vec<J>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = async_channel::bounded::<J>(queue.max(1));
        let stats = Arc::new(WorkerStats::default());
        for _ in 0..workers.max(1) {
            let rx = rx.clone();
            let handler = handler.clone();
            let stats = Arc::clone(&stats);
            tokio::spawn(async move {
                while let Ok(first) = rx.recv().await {
                    let mut batch = vec![first];
                    while batch.len() < max_batch.max(1) {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let n = batch.len() as u64;
                    handler(batch).await;
                    stats.completed.fetch_add(n, Relaxed);
                }
            });
        }
        Workers {
            name,
            tx,
            policy,
            stats,
        }
    }

    /// Queues a job according to the pool's policy.
    pub async fn submit(&self, job: J) -> Result<(), Overloaded> {
        let overloaded = Overloaded { pool: self.name };
        let result = match self.policy {
            Overflow::Reject => self.tx.try_send(job).map_err(|_| overloaded),
            Overflow::Shed => {
                if self.tx.try_send(job).is_err() {
                    self.stats.shed.fetch_add(1, Relaxed);
                }
                return Ok(());
            }
            Overflow::Wait(limit) => match tokio::time::timeout(limit, self.tx.send(job)).await {
                Ok(Ok(())) => Ok(()),
                _ => Err(overloaded),
            },
        };
        match result {
            Ok(()) => self.stats.submitted.fetch_add(1, Relaxed),
            Err(_) => self.stats.rejected.fetch_add(1, Relaxed),
        };
        result
    }

    /// Queues a job without waiting (any policy): for callers that cannot await.
    pub fn try_submit(&self, job: J) -> Result<(), Overloaded> {
        match self.tx.try_send(job) {
            Ok(()) => {
                self.stats.submitted.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(_) => {
                self.stats.rejected.fetch_add(1, Relaxed);
                Err(Overloaded { pool: self.name })
            }
        }
    }

    /// Jobs waiting now.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// The pool's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The counters.
    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }
}
