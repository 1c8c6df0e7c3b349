//! Stored messages that could not be handed to a recipient who may be online — its room
//! is not in the center's directory right now (membership lost it during a Redis outage),
//! or did not answer the delivery call — are tried again while the user stays connected,
//! not left for its next connect (which, with a long heartbeat and no network change, may
//! come after the message's TTL).
//!
//! One task per center holds the jobs (bounded) and runs each due one through the same
//! [`Fanout`] a push uses, backing off from 250 ms to 10 s, for at most [`MAX_AGE`] or the
//! message's TTL. A user reached on a later try may also get the message again on its next
//! connect (the client drops it by id): at least once, never not at all.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::frame::Frame;
use crate::metrics::{Computed, Metrics, Sample, add, inc};
use crate::model::now_ms;
use crate::records::Records;
use crate::rooms::Fanout;

/// Longest a message is tried again for.
pub const MAX_AGE: Duration = Duration::from_secs(300);
/// Jobs held at most; beyond, a new one is dropped (counted): its users get the message on
/// their next connect.
pub const MAX_JOBS: usize = 10_000;
/// Jobs run at once.
const PARALLEL: usize = 64;
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(10);

/// A stored message to try again for some of its recipients.
#[derive(Debug, Clone)]
pub struct Retry {
    /// The message id.
    pub id: u64,
    /// Its app.
    pub app: String,
    /// Its frame, as built for the push.
    pub frame: Frame,
    /// The recipients not reached yet.
    pub uids: Vec<String>,
    /// Only this device, if set.
    pub device: Option<String>,
    /// When its TTL ends (Unix ms).
    pub expires_ms: u64,
}

struct Job {
    retry: Retry,
    tries: u32,
    since: Instant,
}

/// The center's retries of stored messages. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Retries {
    tx: mpsc::Sender<Retry>,
}

impl Retries {
    /// Starts the task that retries through `fanout` and records deliveries with
    /// `records`; it stops once every handle is dropped and its jobs are done.
    pub fn start(fanout: Fanout, records: Records, metrics: Arc<Metrics>) -> Retries {
        let (tx, rx) = mpsc::channel(1024);
        let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        {
            let held = Arc::clone(&held);
            metrics.add_family(Computed::gauge(
                "retry_jobs",
                "Stored messages waiting to be tried again for recipients who may be online",
                move || {
                    vec![Sample::of(
                        held.load(std::sync::atomic::Ordering::Relaxed) as f64
                    )]
                },
            ));
        }
        tokio::spawn(run(rx, fanout, records, metrics, held));
        Retries { tx }
    }

    /// Tries `retry` again later. `false` when too many are waiting (its users get the
    /// message on their next connect).
    pub fn submit(&self, retry: Retry) -> bool {
        self.tx.try_send(retry).is_ok()
    }
}

fn delay(tries: u32) -> Duration {
    FIRST_DELAY.saturating_mul(1 << tries.min(8)).min(MAX_DELAY)
}

async fn run(
    mut rx: mpsc::Receiver<Retry>,
    fanout: Fanout,
    records: Records,
    metrics: Arc<Metrics>,
    held: Arc<std::sync::atomic::AtomicUsize>,
) {
    // (due, sequence) → job; the sequence keeps equal instants apart.
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut jobs: std::collections::HashMap<u64, Job> = std::collections::HashMap::new();
    let mut next_seq = 0u64;
    let mut open = true;
    loop {
        held.store(jobs.len(), std::sync::atomic::Ordering::Relaxed);
        if !open && jobs.is_empty() {
            return;
        }
        let wake = due.peek().map(|Reverse((at, _))| *at);
        tokio::select! {
            received = rx.recv(), if open => match received {
                Some(retry) => {
                    if jobs.len() >= MAX_JOBS {
                        inc(&metrics.retries_dropped);
                        continue;
                    }
                    let seq = next_seq;
                    next_seq += 1;
                    due.push(Reverse((Instant::now() + FIRST_DELAY, seq)));
                    jobs.insert(seq, Job { retry, tries: 0, since: Instant::now() });
                }
                None => open = false,
            },
            () = async { tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)).await }, if wake.is_some() => {
                let now = Instant::now();
                let mut batch = Vec::new();
                while batch.len() < PARALLEL {
                    match due.peek() {
                        Some(Reverse((at, _))) if *at <= now => {
                            let Reverse((_, seq)) = due.pop().expect("peeked");
                            if let Some(job) = jobs.remove(&seq) {
                                batch.push((seq, job));
                            }
                        }
                        _ => break,
                    }
                }
                let tries = batch.into_iter().map(|(seq, mut job)| {
                    let fanout = &fanout;
                    async move {
                        let r = &job.retry;
                        let reached = fanout
                            .deliver(&r.app, &r.frame, &r.uids, r.device.as_deref())
                            .await;
                        job.tries += 1;
                        (seq, job, reached)
                    }
                });
                for (seq, mut job, reached) in futures_util::future::join_all(tries).await {
                    inc(&metrics.retries);
                    if !reached.users.is_empty() {
                        add(&metrics.retry_delivered, reached.users.len() as u64);
                        records.delivered(job.retry.id, reached.users);
                    }
                    if reached.unreached.is_empty() {
                        continue; // done: everyone reachable was reached
                    }
                    let expired = now_ms() >= job.retry.expires_ms;
                    if expired || job.since.elapsed() >= MAX_AGE {
                        add(&metrics.retries_given_up, reached.unreached.len() as u64);
                        tracing::info!(
                            id = job.retry.id,
                            users = reached.unreached.len(),
                            "retries given up: the message waits for these users' next connect"
                        );
                        continue;
                    }
                    job.retry.uids = reached.unreached;
                    due.push(Reverse((Instant::now() + delay(job.tries), seq)));
                    jobs.insert(seq, job);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_and_is_capped() {
        assert_eq!(delay(0), FIRST_DELAY);
        assert_eq!(delay(1), FIRST_DELAY * 2);
        assert_eq!(delay(30), MAX_DELAY);
    }
}
