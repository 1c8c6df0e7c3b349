//! What the center sends to the store at once, and how long a push may wait for a turn:
//! a push the store cannot take soon is refused at once with `429 overloaded`, instead of
//! queueing behind the saver's deadline and failing seconds later.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::PushError;
use crate::metrics::{Computed, Metrics, Sample, inc};
use crate::workers::Overloaded;

/// Stores in flight and waiting, bounded.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    max_wait: Duration,
    metrics: Arc<Metrics>,
}

/// A turn at the store, given back when dropped.
#[derive(Debug)]
pub struct Turn(#[allow(dead_code)] OwnedSemaphorePermit);

/// Gives a waiting place back however the wait ends (a dropped push included).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// `in_flight` stores at once; up to `waiting` more wait at most `max_wait` for a turn.
    /// Its gauges go on the page of `metrics`.
    pub fn new(
        in_flight: usize,
        waiting: usize,
        max_wait: Duration,
        metrics: Arc<Metrics>,
    ) -> Admission {
        let admission = Admission {
            permits: Arc::new(Semaphore::new(in_flight.max(1))),
            max_in_flight: in_flight.max(1),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: waiting,
            max_wait,
            metrics,
        };
        let (permits, max, queued) = (
            Arc::downgrade(&admission.permits),
            admission.max_in_flight,
            Arc::downgrade(&admission.waiting),
        );
        admission.metrics.add_family(Computed::gauge(
            "storing",
            "Pushes being stored now",
            move || {
                permits
                    .upgrade()
                    .map(|p| vec![Sample::of((max - p.available_permits()) as f64)])
                    .unwrap_or_default()
            },
        ));
        admission.metrics.add_family(Computed::gauge(
            "store_waiting",
            "Pushes waiting for a turn at the store",
            move || {
                queued
                    .upgrade()
                    .map(|w| vec![Sample::of(w.load(Ordering::Relaxed) as f64)])
                    .unwrap_or_default()
            },
        ));
        admission
    }

    /// A turn at the store: at once if one is free; else a place in line, waiting at most
    /// `max_wait`; refused at once (`Overloaded`, nothing done) when the line is full, or
    /// when the wait ends without a turn.
    pub async fn enter(&self) -> Result<Turn, PushError> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(Turn(permit));
        }
        let refused = || {
            inc(&self.metrics.store_overloaded);
            PushError::Overloaded(Overloaded { pool: "store" })
        };
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(refused());
        }
        let _place = Waiting(Arc::clone(&self.waiting));
        match tokio::time::timeout(self.max_wait, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Turn(permit)),
            _ => Err(refused()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_line_a_push_is_refused_at_once_and_a_dropped_wait_gives_its_place_back() {
        let a = Admission::new(1, 1, Duration::from_secs(5), Arc::new(Metrics::default()));
        let first = a.enter().await.unwrap();
        // The second waits in line; the third finds the line full and is refused at once.
        let waiting = tokio::spawn({
            let a = Arc::new(a);
            let b = Arc::clone(&a);
            async move {
                let second = tokio::spawn({
                    let b = Arc::clone(&b);
                    async move { b.enter().await.map(drop) }
                });
                while b.waiting.load(Ordering::Relaxed) == 0 {
                    tokio::task::yield_now().await;
                }
                let started = std::time::Instant::now();
                let third = b.enter().await;
                assert!(matches!(third, Err(PushError::Overloaded(_))));
                assert!(started.elapsed() < Duration::from_millis(50));
                second.abort(); // a push dropped while waiting
                let _ = second.await;
                assert_eq!(
                    b.waiting.load(Ordering::Relaxed),
                    0,
                    "its place is given back"
                );
                b
            }
        });
        let a = waiting.await.unwrap();
        drop(first);
        a.enter().await.unwrap();
    }
}
