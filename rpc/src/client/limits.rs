//! Per-target flow control, shared by every clone of a client.
//!
//! A call takes one in-flight slot and as many byte permits as its body has, at once if
//! they are free. If not, it may queue — when fewer than `max_queued` calls are queued —
//! for at most `max_queue_wait` (or its own deadline, if sooner). Past any bound the call
//! fails at once with [`RpcError::Overloaded`]; nothing waits without a bound. Permits are
//! RAII: a call dropped at any point gives them back.
//!
//! The wait is recorded in the call's queue histogram here, where its instants are: zero
//! (no clock read) when the permits were free at once, else from queueing to the grant —
//! or to the end of the allowed wait, when it ran out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Histogram;
use crate::{DeadlinePhase, OverloadScope, RpcError};

/// The bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LimitsConfig {
    pub(crate) max_in_flight: usize,
    pub(crate) max_in_flight_bytes: usize,
    pub(crate) max_queued: usize,
    pub(crate) max_queue_wait: Duration,
}

#[derive(Debug)]
pub(crate) struct FlowControl {
    config: LimitsConfig,
    calls: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    queued: AtomicUsize,
    pub(crate) overloaded: AtomicU64,
}

/// What a call holds while in flight.
#[derive(Debug)]
pub(crate) struct Permit {
    _call: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
    /// When a queued call got its permits (read for the wait; the round trip starts
    /// there). `None`: granted at once, no clock read.
    pub(crate) granted_at: Option<Instant>,
}

/// Leaves the queue on every exit path.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl FlowControl {
    pub(crate) fn new(config: LimitsConfig) -> FlowControl {
        FlowControl {
            calls: Arc::new(Semaphore::new(config.max_in_flight)),
            bytes: Arc::new(Semaphore::new(
                config.max_in_flight_bytes.min(Semaphore::MAX_PERMITS),
            )),
            queued: AtomicUsize::new(0),
            overloaded: AtomicU64::new(0),
            config,
        }
    }

    fn byte_permits(len: usize) -> u32 {
        len.min(u32::MAX as usize) as u32
    }

    /// Takes the permits for a call of `body_len` bytes, waiting if allowed; records the
    /// wait in `queue` (a call refused at once is not recorded).
    pub(crate) async fn acquire(
        &self,
        body_len: usize,
        deadline: Option<Instant>,
        queue: &Histogram,
    ) -> Result<Permit, RpcError> {
        if body_len > self.config.max_in_flight_bytes {
            return Err(RpcError::FrameTooLarge {
                len: body_len,
                max: self.config.max_in_flight_bytes,
            });
        }
        let n = Self::byte_permits(body_len);
        // Fast path: both at once, no waiting.
        if let Ok(call) = Arc::clone(&self.calls).try_acquire_owned() {
            let bytes = match n {
                0 => Some(None),
                n => Arc::clone(&self.bytes)
                    .try_acquire_many_owned(n)
                    .ok()
                    .map(Some),
            };
            if let Some(bytes) = bytes {
                queue.record(Duration::ZERO);
                return Ok(Permit {
                    _call: call,
                    _bytes: bytes,
                    granted_at: None,
                });
            }
        }
        if self.queued.fetch_add(1, Relaxed) >= self.config.max_queued {
            self.queued.fetch_sub(1, Relaxed);
            self.overloaded.fetch_add(1, Relaxed);
            return Err(RpcError::Overloaded {
                scope: OverloadScope::Queue,
            });
        }
        let _queued = Queued(&self.queued);
        let queued_at = Instant::now();
        let queue_until = queued_at + self.config.max_queue_wait;
        let (until, by_deadline) = match deadline {
            Some(d) if d < queue_until => (d, true),
            _ => (queue_until, false),
        };
        let wait = async {
            let call = Arc::clone(&self.calls)
                .acquire_owned()
                .await
                .expect("never closed");
            let bytes = if n == 0 {
                None
            } else {
                Some(
                    Arc::clone(&self.bytes)
                        .acquire_many_owned(n)
                        .await
                        .expect("never closed"),
                )
            };
            let granted_at = Instant::now();
            Permit {
                _call: call,
                _bytes: bytes,
                granted_at: Some(granted_at),
            }
        };
        let waited = tokio::time::timeout_at(until.into(), wait).await;
        // The timer fires at `until`: the wait that ran out is known without a clock read.
        let wait_end = waited
            .as_ref()
            .ok()
            .and_then(|p| p.granted_at)
            .unwrap_or(until);
        queue.record(wait_end.saturating_duration_since(queued_at));
        match waited {
            Ok(permit) => Ok(permit),
            Err(_) if by_deadline => Err(RpcError::DeadlineExceeded {
                phase: DeadlinePhase::Queued,
            }),
            Err(_) => {
                self.overloaded.fetch_add(1, Relaxed);
                Err(RpcError::Overloaded {
                    scope: OverloadScope::QueueWait,
                })
            }
        }
    }

    /// Calls holding a slot now.
    pub(crate) fn in_flight(&self) -> usize {
        self.config.max_in_flight - self.calls.available_permits()
    }

    /// Body bytes of calls in flight now.
    pub(crate) fn in_flight_bytes(&self) -> usize {
        self.config.max_in_flight_bytes.min(Semaphore::MAX_PERMITS) - self.bytes.available_permits()
    }

    /// Calls queued now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Relaxed)
    }
}
