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
    /// A tokio channel: its memory grows with what is queued, in blocks of 32, and is
    /// freed as the queue drains (a preallocated ring would stay resident at its full
    /// size once the ring has gone round once).
    tx: tokio::sync::mpsc::Sender<J>,
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
            .field("queued", &(self.tx.max_capacity() - self.tx.capacity()))
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
        let (tx, rx) = tokio::sync::mpsc::channel::<J>(queue.max(1));
        // The workers take turns at the receiver; a worker holds it only while it collects
        // a batch, never while it runs one.
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let stats = Arc::new(WorkerStats::default());
        for _ in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            let handler = handler.clone();
            let stats = Arc::clone(&stats);
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    if rx
                        .lock()
                        .await
                        .recv_many(&mut batch, max_batch.max(1))
                        .await
                        == 0
                    {
                        return; // every sender is gone
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
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Reads [`queued`](Workers::queued) without keeping the pool alive (for a metrics
    /// page, which outlives the component): 0 once the pool is gone.
    pub fn depth(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let weak = self.tx.downgrade();
        move || {
            weak.upgrade()
                .map_or(0, |tx| tx.max_capacity() - tx.capacity())
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::{Semaphore, mpsc};

    /// A pool of one worker whose handler waits for a permit per batch and reports it.
    fn gated(
        policy: Overflow,
        queue: usize,
    ) -> (
        Workers<u32>,
        Arc<Semaphore>,
        mpsc::UnboundedReceiver<Vec<u32>>,
    ) {
        let gate = Arc::new(Semaphore::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let pool = {
            let gate = Arc::clone(&gate);
            Workers::spawn("test", 1, queue, policy, 4, move |batch: Vec<u32>| {
                let (gate, tx) = (Arc::clone(&gate), tx.clone());
                async move {
                    gate.acquire().await.unwrap().forget();
                    tx.send(batch).unwrap();
                }
            })
        };
        (pool, gate, rx)
    }

    /// Submits until the worker holds one job and the queue is full.
    async fn fill(pool: &Workers<u32>, queue: usize) {
        pool.submit(0).await.unwrap();
        while pool.queued() > 0 {
            tokio::task::yield_now().await; // the worker took job 0 and waits at the gate
        }
        for n in 1..=queue as u32 {
            pool.submit(n).await.unwrap();
        }
        assert_eq!(pool.queued(), queue);
    }

    #[tokio::test]
    async fn a_full_queue_rejects_sheds_or_waits_as_its_policy_says() {
        let (pool, gate, mut done) = gated(Overflow::Reject, 3);
        fill(&pool, 3).await;
        assert_eq!(pool.submit(9).await, Err(Overloaded { pool: "test" }));
        assert_eq!(pool.try_submit(9), Err(Overloaded { pool: "test" }));
        assert_eq!(pool.stats().rejected.load(Relaxed), 2);
        gate.add_permits(2);
        // The first job alone, then the queue in one batch (up to 4).
        assert_eq!(done.recv().await.unwrap(), vec![0]);
        assert_eq!(done.recv().await.unwrap(), vec![1, 2, 3]);

        let (pool, _gate, _done) = gated(Overflow::Shed, 2);
        fill(&pool, 2).await;
        assert_eq!(pool.submit(9).await, Ok(()));
        assert_eq!(pool.stats().shed.load(Relaxed), 1);
        assert_eq!(pool.queued(), 2);

        let (pool, gate, mut done) = gated(Overflow::Wait(Duration::from_millis(100)), 1);
        fill(&pool, 1).await;
        assert_eq!(pool.submit(9).await, Err(Overloaded { pool: "test" }));
        gate.add_permits(1);
        assert_eq!(done.recv().await.unwrap(), vec![0]);
        // The worker took job 1 at once: there is room, and a waiting submit gets in.
        assert_eq!(pool.submit(5).await, Ok(()));
        gate.add_permits(2);
        assert_eq!(done.recv().await.unwrap(), vec![1]);
        assert_eq!(done.recv().await.unwrap(), vec![5]);
        assert_eq!(pool.stats().submitted.load(Relaxed), 3);
    }
}
