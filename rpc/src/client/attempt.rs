//! One attempt of a call: a slot of the flow control, a connection, the exchange, the
//! answer turned into a result. Retries and hedges (`attempts.rs`) are made of these.

use std::time::Instant;

use bytes::Bytes;
use longlink_codec::rpc::{self as wire, Flags, Status};

use super::{Backend, Client, strategy};
use crate::{DeadlinePhase, Metadata, Request, RpcError};

impl Client {
    /// One attempt: a slot of the flow control, a connection, the exchange.
    pub(crate) async fn attempt(
        &self,
        method: u32,
        metadata: Metadata,
        body: Bytes,
        deadline: Option<Instant>,
    ) -> Result<Bytes, RpcError> {
        // A call refused locally returns without awaiting anything; a caller retrying in a
        // loop would then never yield and starve the connection's reader (measured: zero
        // goodput under overload). Spending tokio's coop budget makes it yield regularly.
        tokio::task::coop::consume_budget().await;
        let inner = &*self.inner;
        let timings = inner.histograms.table.get(method);
        let permit = inner
            .limits
            .acquire(body.len(), deadline, &timings.queue)
            .await?;
        // The round trip starts with the permit: the instant of a queued grant, else now.
        let started = permit.granted_at.unwrap_or_else(Instant::now);
        let answer = self.exchange(method, metadata, body, deadline).await;
        // Answered (any status) or out of time waiting for it: the target's latency as
        // this caller saw it. Failures before (unavailable, connection lost) say nothing
        // about it; a dropped call never gets here.
        if matches!(
            answer,
            Ok(_)
                | Err(RpcError::DeadlineExceeded {
                    phase: DeadlinePhase::InFlight
                })
        ) {
            timings.run.record(started.elapsed());
        }
        drop(permit);
        into_result(answer?)
    }

    /// Carries an attempt that holds its permit to the target, by the strategy, and waits
    /// for its answer.
    async fn exchange(
        &self,
        method: u32,
        metadata: Metadata,
        body: Bytes,
        deadline: Option<Instant>,
    ) -> Result<wire::Response, RpcError> {
        let inner = &*self.inner;
        Ok(match &inner.backend {
            Backend::Multiplexed(slots) => {
                let conn = match deadline {
                    Some(at) => tokio::time::timeout_at(
                        at.into(),
                        slots.pick(&inner.addr, &inner.config, &inner.redial),
                    )
                    .await
                    .map_err(|_| RpcError::DeadlineExceeded {
                        phase: DeadlinePhase::Queued,
                    })??,
                    None => {
                        slots
                            .pick(&inner.addr, &inner.config, &inner.redial)
                            .await?
                    }
                };
                // Compressed here, in the caller's task, once the connection (and so what
                // its server accepts) is known.
                let (body, compressed) = inner.config.compression.compress(conn.peer, body);
                let relative = deadline.map(|at| at.saturating_duration_since(Instant::now()));
                let call = conn.send(method, metadata, body, compressed, relative)?;
                let answer = match deadline {
                    Some(at) => tokio::time::timeout_at(at.into(), call.answer())
                        .await
                        .map_err(|_| RpcError::DeadlineExceeded {
                            phase: DeadlinePhase::InFlight,
                        })??,
                    None => call.answer().await?,
                };
                super::open(&inner.config, conn.peer, answer)?
            }
            Backend::Pooled(pool) => {
                let req = Request {
                    method,
                    body,
                    deadline,
                    metadata,
                };
                strategy::pooled_call(pool, &inner.config, req).await?
            }
            Backend::Short => {
                let req = Request {
                    method,
                    body,
                    deadline,
                    metadata,
                };
                strategy::short_call(&inner.addr, &inner.config, &inner.redial, req).await?
            }
        })
    }
}

/// Turns a RESP into the caller's result.
fn into_result(resp: wire::Response) -> Result<Bytes, RpcError> {
    let message = || String::from_utf8_lossy(&resp.body).into_owned();
    let not_processed = resp.flags.contains(Flags::NOT_PROCESSED);
    match resp.status {
        Status::OK => Ok(resp.body),
        Status::REJECTED => Err(RpcError::Rejected {
            retryable: resp.flags.contains(Flags::RETRYABLE),
            message: message(),
        }),
        Status::DRAINING => Err(RpcError::Draining),
        Status::DEADLINE_EXCEEDED => Err(RpcError::DeadlineExceeded {
            phase: if not_processed {
                DeadlinePhase::BeforeDispatch
            } else {
                DeadlinePhase::InHandler
            },
        }),
        Status::CANCELLED => Err(RpcError::Cancelled),
        status => Err(RpcError::Remote {
            status: status.0,
            message: message(),
            not_processed,
            retryable: resp.flags.contains(Flags::RETRYABLE),
        }),
    }
}
