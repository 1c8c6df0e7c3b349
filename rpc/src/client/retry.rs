//! When a failed call is sent again, and when a slow one is sent twice: the policy, and
//! the rules that decide from the error.

use std::time::Duration;

use super::budget::RetryBudget;
use crate::RpcError;

/// How a client sends a call again: how many attempts at most, the pause between two
/// attempts on the same target, the [`RetryBudget`] that caps retries and hedges, and
/// whether idempotent calls are hedged.
///
/// What is retried is not configured: it follows from the error and from whether the call
/// is idempotent ([`Client::call_idempotent`](crate::Client::call_idempotent), or
/// `#[idempotent]` in [`service!`](crate::service)).
///
/// - **Any call** is sent again when the error proves it did not run and that trying again
///   may work: a NACK (`Rejected` retryable: the server was over its limits), `Draining`
///   (GOAWAY: the server will run nothing above what it took), `ConnectionLost { written:
///   false }` (the frame never reached the socket), a handler's `not_processed` +
///   `retryable`. Behind a [`Balancer`](crate::Balancer) it also moves to the next instance
///   after any error that proves the call did not run there (`Unavailable`, `Overloaded`,
///   `Tls`, a NACK): that instance is down or full, another may not be.
/// - **An idempotent call** is also sent again after errors that say it *may* have run:
///   `ConnectionLost { written: true }`, `Cancelled`, a handler's `retryable` error.
/// - **Never** after the deadline (`DeadlineExceeded`), a request too large, a protocol
///   mismatch, an application error, or the local `Overloaded` of a single target (the
///   bound is there to fail fast), nor after `Unavailable` from a single target (it is in
///   its reconnect backoff: the retry would be refused the same way).
///
/// The default — 3 attempts, 5 ms doubling to at most 100 ms with jitter between attempts
/// on the same target (none when moving to another instance), the default budget, no
/// hedging — is on for every client: these retries are safe by construction (the call did
/// not run, or the caller said running it twice is fine), and the budget keeps them from
/// multiplying the load on a target that is failing. Hedging sends work twice on purpose,
/// so it is off until asked for.
///
/// ```
/// use std::time::Duration;
/// use longlink_rpc::{Client, Hedge, RetryBudget, RetryPolicy};
///
/// let policy = RetryPolicy::default()
///     .max_attempts(2)
///     .backoff(Duration::from_millis(2), Duration::from_millis(20))
///     .budget(RetryBudget::new(20, 5, Duration::from_secs(10)))
///     .hedge(Hedge::percentile(95.0, Duration::from_millis(2)));
/// assert_eq!(policy.max_attempts, 2);
/// let client = Client::builder("127.0.0.1:7000").retry(policy).build();
/// // Or none of it: every call is tried once, as it comes.
/// let plain = Client::builder("127.0.0.1:7000").retry(RetryPolicy::never()).build();
/// # let _ = (client, plain);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts per call at most, the first and any hedge included (1: never retried).
    pub max_attempts: u32,
    /// The pause before the first retry on a target already tried; it doubles with each
    /// further one, and is drawn between half of it and all of it (jitter).
    pub backoff: Duration,
    /// The longest pause.
    pub max_backoff: Duration,
    /// What caps retries and hedges, per target.
    pub budget: RetryBudget,
    /// Whether and when an idempotent call still waiting is sent a second time.
    pub hedge: Option<Hedge>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(100),
            budget: RetryBudget::default(),
            hedge: None,
        }
    }
}

impl RetryPolicy {
    /// No retries and no hedging: each call is one attempt (a [`Balancer`](crate::Balancer)
    /// then does not move a call to another instance either).
    pub fn never() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Attempts per call at most, hedges included (at least 1).
    pub fn max_attempts(mut self, n: u32) -> RetryPolicy {
        self.max_attempts = n.max(1);
        self
    }

    /// The pause before the first retry on the same target, and the longest.
    pub fn backoff(mut self, first: Duration, max: Duration) -> RetryPolicy {
        self.backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// The budget that caps retries and hedges.
    pub fn budget(mut self, budget: RetryBudget) -> RetryPolicy {
        self.budget = budget;
        self
    }

    /// Hedges idempotent calls (`max_attempts` must leave room for it: at least 2).
    pub fn hedge(mut self, hedge: Hedge) -> RetryPolicy {
        self.hedge = Some(hedge);
        self
    }

    /// The pause before the `n`th retry on a target already tried (n ≥ 1).
    pub(crate) fn pause(&self, n: u32) -> Duration {
        let full = self
            .backoff
            .saturating_mul(1 << (n.saturating_sub(1)).min(16))
            .min(self.max_backoff);
        full.mul_f64(0.5 + 0.5 * fastrand::f64())
    }
}

/// When an idempotent call that has not been answered yet is sent a second time (a
/// hedge): the first answer wins, and the other attempt is cancelled (its caller side
/// dropped, so the server is sent CANCEL and aborts the handler). At most one hedge per
/// call; it counts as an attempt and spends the [`RetryBudget`] like a retry. Over a
/// [`Balancer`](crate::Balancer) the hedge goes to the next instance.
///
/// ```
/// use std::time::Duration;
/// use longlink_rpc::Hedge;
/// // After a fixed 20 ms ...
/// let fixed = Hedge::after(Duration::from_millis(20));
/// // ... or after the p95 of the target's recent answers, but never sooner than 1 ms.
/// let tail = Hedge::percentile(95.0, Duration::from_millis(1));
/// assert_ne!(fixed, tail);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Hedge {
    /// After a fixed delay.
    After(Duration),
    /// After the `percentile` (0–100) of the target's recent latencies (the last thousand
    /// or two answers, within 12.5%), and not before `min`. No hedge until the target has
    /// answered a hundred calls: a new client does not double its first calls.
    Percentile {
        /// Which percentile, e.g. 95.0.
        percentile: f64,
        /// The shortest delay.
        min: Duration,
    },
}

impl Hedge {
    /// Hedges after `delay`.
    pub fn after(delay: Duration) -> Hedge {
        Hedge::After(delay)
    }

    /// Hedges after the target's recent `percentile` latency, at the earliest after `min`.
    pub fn percentile(percentile: f64, min: Duration) -> Hedge {
        Hedge::Percentile {
            percentile: percentile.clamp(0.1, 100.0),
            min,
        }
    }
}

/// Where a call that failed with an error may go next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nowhere: the error is final.
    Stop,
    /// Only to another instance (this one is down, full, or refused it).
    Elsewhere,
    /// Anywhere, the same target included.
    Anywhere,
}

/// What the error allows for a call (idempotent or not).
pub(crate) fn next(e: &RpcError, idempotent: bool) -> Next {
    match e {
        // The time is up, or no instance can take it (an answer that could not be read
        // would be sent the same way again).
        RpcError::DeadlineExceeded { .. }
        | RpcError::FrameTooLarge { .. }
        | RpcError::ProtocolMismatch { .. }
        | RpcError::BadResponse { .. } => Next::Stop,
        // Did not run; this target cannot take it now (its bound, its backoff, its
        // certificate).
        RpcError::Overloaded { .. } | RpcError::Unavailable { .. } | RpcError::Tls { .. } => {
            Next::Elsewhere
        }
        RpcError::ConnectionLost { written: false } | RpcError::Draining => Next::Anywhere,
        RpcError::Rejected { retryable, .. } => {
            if *retryable {
                Next::Anywhere
            } else {
                Next::Elsewhere
            }
        }
        RpcError::Remote {
            not_processed,
            retryable,
            ..
        } => match (*not_processed, *retryable, idempotent) {
            (_, true, true) | (true, true, false) => Next::Anywhere,
            (true, false, _) => Next::Elsewhere,
            _ => Next::Stop,
        },
        // May have run: only a call that may run twice.
        RpcError::ConnectionLost { written: true } | RpcError::Cancelled => {
            if idempotent {
                Next::Anywhere
            } else {
                Next::Stop
            }
        }
    }
}

/// Whether the failed attempt reached a server (so sending it again adds load there). One
/// that did not — never connected, refused locally, never written — is retried without
/// spending the budget: the budget bounds the attempts servers see, and that one saw none.
pub(crate) fn reached_server(e: &RpcError) -> bool {
    !matches!(
        e,
        RpcError::Unavailable { .. }
            | RpcError::Tls { .. }
            | RpcError::Overloaded { .. }
            | RpcError::ConnectionLost { written: false }
            | RpcError::FrameTooLarge { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeadlinePhase, OverloadScope};

    #[test]
    fn only_errors_that_prove_nothing_ran_are_retried_unless_idempotent() {
        let remote = |not_processed, retryable| RpcError::Remote {
            status: 1001,
            message: String::new(),
            not_processed,
            retryable,
        };
        let cases = [
            (
                RpcError::ConnectionLost { written: false },
                Next::Anywhere,
                Next::Anywhere,
            ),
            (
                RpcError::ConnectionLost { written: true },
                Next::Stop,
                Next::Anywhere,
            ),
            (RpcError::Draining, Next::Anywhere, Next::Anywhere),
            (
                RpcError::Rejected {
                    retryable: true,
                    message: String::new(),
                },
                Next::Anywhere,
                Next::Anywhere,
            ),
            (
                RpcError::Rejected {
                    retryable: false,
                    message: String::new(),
                },
                Next::Elsewhere,
                Next::Elsewhere,
            ),
            (
                RpcError::Overloaded {
                    scope: OverloadScope::Queue,
                },
                Next::Elsewhere,
                Next::Elsewhere,
            ),
            (
                RpcError::Unavailable {
                    reason: String::new(),
                },
                Next::Elsewhere,
                Next::Elsewhere,
            ),
            (remote(true, true), Next::Anywhere, Next::Anywhere),
            (remote(true, false), Next::Elsewhere, Next::Elsewhere),
            (remote(false, true), Next::Stop, Next::Anywhere),
            (remote(false, false), Next::Stop, Next::Stop),
            (RpcError::Cancelled, Next::Stop, Next::Anywhere),
            (
                RpcError::DeadlineExceeded {
                    phase: DeadlinePhase::BeforeDispatch,
                },
                Next::Stop,
                Next::Stop,
            ),
            (
                RpcError::FrameTooLarge { len: 2, max: 1 },
                Next::Stop,
                Next::Stop,
            ),
        ];
        for (e, plain, idempotent) in cases {
            assert_eq!(next(&e, false), plain, "{e:?}");
            assert_eq!(next(&e, true), idempotent, "{e:?} (idempotent)");
            // Whatever a call that is not idempotent may retry provably did not run.
            if plain != Next::Stop {
                assert!(!e.may_have_run(), "{e:?}");
            }
        }
    }

    #[test]
    fn pauses_double_with_jitter_up_to_the_cap() {
        let policy =
            RetryPolicy::default().backoff(Duration::from_millis(4), Duration::from_millis(20));
        for (n, full) in [(1, 4), (2, 8), (3, 16), (4, 20), (30, 20)] {
            let full = Duration::from_millis(full);
            for _ in 0..100 {
                let p = policy.pause(n);
                assert!(p >= full / 2 && p <= full, "{n}: {p:?}");
            }
        }
    }
}
