//! The connections of a multiplexed client: a fixed number of slots (the hard cap on
//! connections per target), each connected lazily and replaced when it breaks or drains;
//! connects follow the target's [`Redial`] policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::Config;
use super::mux::MuxConn;
use super::redial::Redial;
use crate::{OverloadScope, RpcError};

#[derive(Debug, Default)]
struct Slot {
    conn: Mutex<Option<Arc<MuxConn>>>,
    /// One connect at a time per slot.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
pub(crate) struct Slots {
    slots: Box<[Slot]>,
    next: AtomicUsize,
}

impl Slots {
    pub(crate) fn new(conns: usize) -> Slots {
        Slots {
            slots: (0..conns.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A connection to send on: the least loaded open one when every slot is filled;
    /// otherwise the next empty slot is connected (unless it is backing off, in which case
    /// an open one is used, or the call fails at once with `Unavailable`).
    pub(crate) async fn pick(
        &self,
        addr: &str,
        config: &Config,
        redial: &Redial,
    ) -> Result<Arc<MuxConn>, RpcError> {
        let mut best: Option<Arc<MuxConn>> = None;
        let mut empty = None;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.slots.len() {
            let index = (start + i) % self.slots.len();
            let conn = self.slots[index].conn.lock().clone();
            match conn {
                Some(c) if c.is_open() => {
                    if best.as_ref().is_none_or(|b| c.in_flight() < b.in_flight()) {
                        best = Some(c);
                    }
                }
                _ => {
                    if empty.is_none() {
                        empty = Some(index);
                    }
                }
            }
        }
        if let Some(index) = empty {
            match self.connect(index, addr, config, redial).await {
                Ok(conn) => return Ok(conn),
                Err(e) if best.is_none() => return Err(e),
                Err(_) => {} // use an open one meanwhile
            }
        }
        let conn = best.expect("either connected or found open");
        if conn.server_limit > 0 && conn.in_flight() >= conn.server_limit {
            return Err(RpcError::Overloaded {
                scope: OverloadScope::Server,
            });
        }
        Ok(conn)
    }

    async fn connect(
        &self,
        index: usize,
        addr: &str,
        config: &Config,
        redial: &Redial,
    ) -> Result<Arc<MuxConn>, RpcError> {
        let slot = &self.slots[index];
        let _connecting = slot.connecting.lock().await;
        if let Some(conn) = slot.conn.lock().clone().filter(|c| c.is_open()) {
            return Ok(conn); // another caller connected it meanwhile
        }
        let greeted = redial.connect(addr, config).await?;
        let conn = MuxConn::start(greeted, config);
        *slot.conn.lock() = Some(Arc::clone(&conn));
        Ok(conn)
    }

    /// Open connections now.
    pub(crate) fn open(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.conn.lock().as_ref().is_some_and(|c| c.is_open()))
            .count()
    }

    /// Entries in the pending maps of all connections (a leak check for tests).
    pub(crate) fn pending(&self) -> usize {
        self.slots
            .iter()
            .filter_map(|s| s.conn.lock().clone())
            .map(|c| c.pending_len())
            .sum()
    }

    pub(crate) fn close(&self) {
        for slot in self.slots.iter() {
            if let Some(conn) = slot.conn.lock().take() {
                conn.close();
            }
        }
    }
}
