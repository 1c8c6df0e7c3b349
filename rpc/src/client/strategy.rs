//! The one-call-per-connection strategies: pooled and short.

use std::sync::Arc;
use std::time::Instant;

use longlink_codec::rpc::{self as wire, Message};
use longlink_pool::{Manager, Pool, PoolError, TestOnAcquire};

use super::Config;
use super::handshake::{Greeted, codec, write_message};
use super::redial::Redial;
use crate::{DeadlinePhase, OverloadScope, Request, RpcError};

/// A connection carrying one call at a time (over TCP or TLS).
pub(crate) struct SerialConn {
    greeted: Greeted,
    next_id: u64,
}

/// Opens serial connections for the pooled strategy (a `longlink-pool` manager), following
/// the target's redial policy.
pub(crate) struct SerialManager {
    addr: String,
    config: Config,
    redial: Arc<Redial>,
}

/// What a serial connection fails with inside the pool.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct SerialError(RpcError);

impl Manager for SerialManager {
    type Connection = SerialConn;
    type Error = SerialError;

    async fn connect(&self) -> Result<SerialConn, SerialError> {
        let greeted = self
            .redial
            .connect(&self.addr, &self.config)
            .await
            .map_err(SerialError)?;
        Ok(SerialConn {
            greeted,
            next_id: 1,
        })
    }

    async fn check(&self, conn: &mut SerialConn) -> Result<(), SerialError> {
        let id = conn.next_id;
        conn.next_id += 1;
        let probe = async {
            write_message(
                &mut conn.greeted.writer,
                &codec(&self.config),
                Message::Ping { id },
            )
            .await
            .ok()?;
            match conn.greeted.reader.next().await {
                Ok(Some(Message::Pong { id: got })) if got == id => Some(()),
                _ => None,
            }
        };
        match tokio::time::timeout(self.config.ping_timeout, probe).await {
            Ok(Some(())) => Ok(()),
            _ => Err(SerialError(RpcError::ConnectionLost { written: true })),
        }
    }
}

pub(crate) fn pool(
    addr: &str,
    config: &Config,
    max_conns: usize,
    redial: Arc<Redial>,
) -> Pool<SerialManager> {
    Pool::builder()
        .max_open(max_conns)
        .acquire_timeout(config.limits.max_queue_wait)
        .test_on_acquire(TestOnAcquire::IdleFor(config.ping_interval))
        .build(SerialManager {
            addr: addr.to_owned(),
            config: config.clone(),
            redial,
        })
}

/// Sends one request on a serial connection and reads until its answer.
async fn exchange(
    conn: &mut SerialConn,
    config: &Config,
    req: Request,
) -> Result<wire::Response, RpcError> {
    let id = conn.next_id;
    conn.next_id += 1;
    // Compressed in the caller's task, for what this server accepts.
    let (body, compressed) = config
        .compression
        .compress(conn.greeted.server.features, req.body);
    let relative = req
        .deadline
        .map(|at| at.saturating_duration_since(Instant::now()));
    let message = Message::Request(wire::Request {
        id,
        deadline: relative,
        method: req.method,
        metadata: req.metadata,
        compressed,
        body,
    });
    write_message(&mut conn.greeted.writer, &codec(config), message)
        .await
        .map_err(|_| RpcError::ConnectionLost { written: false })?;
    loop {
        match conn.greeted.reader.next().await {
            Ok(Some(Message::Response(resp))) if resp.id == id => {
                return super::open(config, conn.greeted.server.features, resp);
            }
            Ok(Some(Message::Ping { id })) => {
                let _ = write_message(
                    &mut conn.greeted.writer,
                    &codec(config),
                    Message::Pong { id },
                )
                .await;
            }
            Ok(Some(Message::GoAway { last_id })) if last_id < id => {
                return Err(RpcError::Draining);
            }
            Ok(Some(Message::Error(e))) => {
                return Err(RpcError::ProtocolMismatch { detail: e.message });
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err(RpcError::ConnectionLost { written: true }),
        }
    }
}

async fn with_deadline<T>(
    deadline: Option<Instant>,
    fut: impl Future<Output = Result<T, RpcError>>,
) -> Result<T, RpcError> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at.into(), fut).await.map_err(|_| {
            RpcError::DeadlineExceeded {
                phase: DeadlinePhase::InFlight,
            }
        })?,
        None => fut.await,
    }
}

pub(crate) async fn pooled_call(
    pool: &Pool<SerialManager>,
    config: &Config,
    req: Request,
) -> Result<wire::Response, RpcError> {
    let deadline = req.deadline;
    let mut conn = pool.acquire().await.map_err(|e| match e {
        PoolError::Timeout { .. } => RpcError::Overloaded {
            scope: OverloadScope::QueueWait,
        },
        PoolError::Connect(e) => e.0.clone(),
        _ => RpcError::Unavailable {
            reason: e.to_string(),
        },
    })?;
    // Until the answer is read the connection is in an unknown state: a call dropped or
    // failed half-way closes it instead of returning it.
    conn.mark_broken();
    let answer = with_deadline(deadline, exchange(&mut conn, config, req)).await?;
    conn.unmark_broken();
    Ok(answer)
}

pub(crate) async fn short_call(
    addr: &str,
    config: &Config,
    redial: &Redial,
    req: Request,
) -> Result<wire::Response, RpcError> {
    let deadline = req.deadline;
    with_deadline(deadline, async {
        let greeted = redial.connect(addr, config).await?;
        let mut conn = SerialConn {
            greeted,
            next_id: 1,
        };
        exchange(&mut conn, config, req).await
    })
    .await
}
