//! The attempts of one call: the first, retries after errors that allow them, and a hedge
//! after a delay — over one target, or over the instances a [`Balancer`](crate::Balancer)
//! lined up for the call.
//!
//! Both attempts of a hedged call live in this future's own state (two pinned slots, no
//! task, no box), so dropping the call drops them: each one's guards send CANCEL and give
//! back its permits and its map entry, wherever it was.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::time::{Instant as TokioInstant, Sleep, sleep};

use super::Client;
use super::budget::Budget;
use super::latency::Latency;
use super::retry::{Hedge, Next, RetryPolicy, next, reached_server};
use crate::Metadata;
use crate::RpcError;
use crate::trace::{self, TraceContext};
use tracing::Instrument;

/// A target's retry state, shared by every clone of its client.
#[derive(Debug)]
pub(crate) struct RetryState {
    pub(crate) policy: RetryPolicy,
    pub(crate) budget: Budget,
    /// Recent latencies, kept only when the policy hedges by percentile.
    latency: Option<Latency>,
    pub(crate) retries: AtomicU64,
    pub(crate) retries_refused: AtomicU64,
    pub(crate) hedges: AtomicU64,
    pub(crate) hedges_won: AtomicU64,
    pub(crate) hedges_refused: AtomicU64,
}

impl RetryState {
    pub(crate) fn new(policy: RetryPolicy) -> RetryState {
        let latency = match policy.hedge {
            Some(Hedge::Percentile { percentile, .. }) => Some(Latency::new(percentile)),
            _ => None,
        };
        RetryState {
            budget: Budget::new(policy.budget),
            policy,
            latency,
            retries: AtomicU64::new(0),
            retries_refused: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            hedges_won: AtomicU64::new(0),
            hedges_refused: AtomicU64::new(0),
        }
    }

    /// How long a call waits for its answer before it is hedged (`None`: not hedged).
    fn hedge_delay(&self) -> Option<Duration> {
        match self.policy.hedge? {
            Hedge::After(delay) => Some(delay),
            Hedge::Percentile { min, .. } => Some(self.latency.as_ref()?.percentile()?.max(min)),
        }
    }
}

/// One call as the attempts see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) method: u32,
    pub(crate) metadata: &'a Metadata,
    pub(crate) body: &'a Bytes,
    pub(crate) deadline: Option<Instant>,
    pub(crate) idempotent: bool,
}

/// Which of the two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    First,
    Second,
}

enum Event {
    Done(Slot, Result<Bytes, RpcError>),
    Hedge,
    Backoff,
}

/// An attempt under way: where (index into the targets) and since when.
#[derive(Debug, Clone, Copy)]
struct Running {
    target: usize,
    since: TokioInstant,
    hedge: bool,
}

/// `None` of the same (unnameable) type as `_like`.
fn none_like<T>(_like: &Option<T>) -> Option<T> {
    None
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// Calls `method` over `targets` (see [`run`]); a policy of one attempt takes the call
/// straight through, without keeping the body.
///
/// Inside a trace (a [`TraceContext`] is current) the call is a new span of it, every
/// attempt carrying its `traceparent`, unless the caller put one in the metadata.
pub(crate) async fn call(
    targets: &[&Client],
    method: u32,
    metadata: Metadata,
    body: Bytes,
    deadline: Option<Instant>,
    idempotent: bool,
    failovers: Option<&AtomicU64>,
) -> Result<Bytes, RpcError> {
    if let Some(parent) = TraceContext::current_or_span()
        && metadata.get(trace::TRACEPARENT).is_none()
    {
        let (span, cx) = TraceContext::open(trace::Side::Client, method, &parent);
        let metadata = cx.inject(&metadata);
        return untraced(
            targets, method, metadata, body, deadline, idempotent, failovers,
        )
        .instrument(span)
        .await;
    }
    untraced(
        targets, method, metadata, body, deadline, idempotent, failovers,
    )
    .await
}

async fn untraced(
    targets: &[&Client],
    method: u32,
    metadata: Metadata,
    body: Bytes,
    deadline: Option<Instant>,
    idempotent: bool,
    failovers: Option<&AtomicU64>,
) -> Result<Bytes, RpcError> {
    let home = targets[0];
    if home.inner.retry.policy.max_attempts <= 1 {
        return home.attempt(method, metadata, body, deadline).await;
    }
    let call = Call {
        method,
        metadata: &metadata,
        body: &body,
        deadline,
        idempotent,
    };
    run(targets, call, failovers).await
}

/// Runs `call` over `targets` (one client, or the instances of a balancer in the order to
/// try them; attempt n goes to `targets[n % len]`), under the policy of the first.
/// `failovers` counts retries that moved to another instance.
async fn run(
    targets: &[&Client],
    call: Call<'_>,
    failovers: Option<&AtomicU64>,
) -> Result<Bytes, RpcError> {
    let home = &targets[0].inner.retry;
    let policy = &home.policy;
    let hedging = call.idempotent && policy.hedge.is_some();
    // Deposit for every call: the budget is a share of the calls made.
    home.budget.deposit();
    let attempt = |n: usize| {
        targets[n % targets.len()].attempt(
            call.method,
            call.metadata.clone(),
            call.body.clone(),
            call.deadline,
        )
    };

    let mut first = pin!(Some(attempt(0)));
    let mut second = pin!(none_like(&*first));
    let mut running: [Option<Running>; 2] = [None, None];
    let mut hedge_timer = pin!(None::<Sleep>);
    let mut backoff = pin!(None::<Sleep>);
    // The attempt waiting out `backoff`, and the one to start now.
    let mut after_backoff: Option<usize> = None;
    let mut launch: Option<usize> = None;
    let mut started: usize = 0;
    // Targets tried so far, as bits (a balancer lines up at most three).
    debug_assert!(targets.len() <= 8);
    let mut tried: u8 = 0;
    let mut hedged = false;

    running[0] = Some(Running {
        target: 0,
        since: TokioInstant::now(),
        hedge: false,
    });
    started += 1;
    tried |= 1;
    if hedging && let Some(delay) = home.hedge_delay() {
        hedge_timer.set(Some(sleep(delay)));
    }

    loop {
        let event = poll_fn(|cx| {
            if let Some(f) = first.as_mut().as_pin_mut()
                && let Poll::Ready(r) = f.poll(cx)
            {
                return Poll::Ready(Event::Done(Slot::First, r));
            }
            if let Some(f) = second.as_mut().as_pin_mut()
                && let Poll::Ready(r) = f.poll(cx)
            {
                return Poll::Ready(Event::Done(Slot::Second, r));
            }
            if let Some(t) = hedge_timer.as_mut().as_pin_mut()
                && t.poll(cx).is_ready()
            {
                return Poll::Ready(Event::Hedge);
            }
            if let Some(t) = backoff.as_mut().as_pin_mut()
                && t.poll(cx).is_ready()
            {
                return Poll::Ready(Event::Backoff);
            }
            Poll::Pending
        })
        .await;

        match event {
            Event::Done(slot, result) => {
                let index = slot as usize;
                match slot {
                    Slot::First => first.set(None),
                    Slot::Second => second.set(None),
                }
                let Some(done) = running[index].take() else {
                    continue; // unreachable: a slot polled is a slot running
                };
                let target = targets[done.target % targets.len()];
                let error = match result {
                    Ok(answer) => {
                        let state = &target.inner.retry;
                        if let Some(latency) = &state.latency {
                            latency.record(done.since.elapsed());
                        }
                        if done.hedge {
                            bump(&state.hedges_won);
                        }
                        // Returning drops the other attempt, if any: it sends CANCEL.
                        return Ok(answer);
                    }
                    Err(e) => e,
                };
                if running.iter().any(Option::is_some) {
                    // The other attempt may still answer: wait for it (no new hedge).
                    hedge_timer.set(None);
                    continue;
                }
                hedge_timer.set(None);
                // Try again?
                if started >= policy.max_attempts as usize {
                    return Err(error);
                }
                let n = started;
                let to = n % targets.len();
                let same = tried & (1 << to) != 0;
                let allowed = match next(&error, call.idempotent) {
                    Next::Stop => false,
                    Next::Elsewhere => !same,
                    Next::Anywhere => true,
                };
                if !allowed {
                    return Err(error);
                }
                let pause = if same {
                    policy.pause(n as u32)
                } else {
                    Duration::ZERO
                };
                if call.deadline.is_some_and(|at| Instant::now() + pause >= at) {
                    return Err(error); // never past the deadline
                }
                let state = &targets[to].inner.retry;
                if reached_server(&error) && !state.budget.try_withdraw() {
                    bump(&state.retries_refused);
                    return Err(error);
                }
                bump(&state.retries);
                if to != done.target % targets.len()
                    && let Some(failovers) = failovers
                {
                    bump(failovers);
                }
                started += 1;
                tried |= 1 << to;
                if pause.is_zero() {
                    launch = Some(n);
                } else {
                    backoff.set(Some(sleep(pause)));
                    after_backoff = Some(n);
                }
            }
            Event::Backoff => {
                backoff.set(None);
                launch = after_backoff.take();
            }
            Event::Hedge => {
                hedge_timer.set(None);
                hedged = true;
                if started >= policy.max_attempts as usize || running[1].is_some() {
                    continue;
                }
                let n = started;
                let state = &targets[n % targets.len()].inner.retry;
                if !state.budget.try_withdraw() {
                    bump(&state.hedges_refused);
                    continue;
                }
                bump(&state.hedges);
                started += 1;
                tried |= 1 << (n % targets.len());
                second.set(Some(attempt(n)));
                running[1] = Some(Running {
                    target: n,
                    since: TokioInstant::now(),
                    hedge: true,
                });
            }
        }
        // A retry starts in the first slot (free: the call had no attempt left running),
        // with a hedge timer of its own if the call has not been hedged yet.
        if let Some(n) = launch.take() {
            first.set(Some(attempt(n)));
            running[0] = Some(Running {
                target: n,
                since: TokioInstant::now(),
                hedge: false,
            });
            if hedging
                && !hedged
                && let Some(delay) = home.hedge_delay()
            {
                hedge_timer.set(Some(sleep(delay)));
            }
        }
    }
}
