//! One attempt of a call: a slot of the flow control, a connection, the exchange, the
//! answer turned into a result. Retries and hedges (`attempts.rs`) are made of these.

use std::time::Instant;

use bytes::Bytes;
use longlink_codec::rpc::{self as wire, Flags, Status};

use super::{Backend, Client, strategy};
use crate::{DeadlinePhase, Request, RpcError};

impl Client {
    /// One attempt: a slot of the flow control, a connection, the exchange.
    pub(crate) async fn attempt(
        &self,
        method: u32,
        body: Bytes,
        deadline: Option<Instant>,
    ) -> Result<Bytes, RpcError> {
        // A call refused locally returns without awaiting anything; a caller retrying in a
        // loop would then never yield and starve the connection's reader (measured: zero
        // goodput under overload). Spending tokio's coop budget makes it yield regularly.
        tokio::task::coop::consume_budget().await;
        let inner = &*self.inner;
        let _permit = inner.limits.acquire(body.len(), deadline).await?;
        let answer = match &inner.backend {
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
                let relative = deadline.map(|at| at.saturating_duration_since(Instant::now()));
                let call = conn.send(method, body, relative)?;
                match deadline {
                    Some(at) => tokio::time::timeout_at(at.into(), call.answer())
                        .await
                        .map_err(|_| RpcError::DeadlineExceeded {
                            phase: DeadlinePhase::InFlight,
                        })??,
                    None => call.answer().await?,
                }
            }
            Backend::Pooled(pool) => {
                let req = Request {
                    method,
                    body,
                    deadline,
                };
                strategy::pooled_call(pool, &inner.config, req).await?
            }
            Backend::Short => {
                let req = Request {
                    method,
                    body,
                    deadline,
                };
                strategy::short_call(&inner.addr, &inner.config, &inner.redial, req).await?
            }
        };
        into_result(answer)
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
