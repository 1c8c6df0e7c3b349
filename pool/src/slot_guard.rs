//! A slot reserved for a connection that is not open yet.

use std::sync::Arc;

use crate::Manager;
use crate::conn::PooledConn;
use crate::shared::{Conn, Shared};

/// A reserved slot with no connection yet; dropped unused, it frees the slot.
pub(crate) struct SlotGuard<M: Manager> {
    shared: Option<Arc<Shared<M>>>,
}

impl<M: Manager> SlotGuard<M> {
    pub(crate) fn new(shared: &Arc<Shared<M>>) -> SlotGuard<M> {
        SlotGuard {
            shared: Some(Arc::clone(shared)),
        }
    }

    pub(crate) fn fill(mut self, raw: M::Connection) -> PooledConn<M> {
        let shared = self.shared.take().expect("armed");
        let conn: Conn<M::Connection> = shared.connected(raw);
        PooledConn::new(conn, shared)
    }

    pub(crate) fn failed(mut self, error: Arc<M::Error>) {
        let shared = self.shared.take().expect("armed");
        shared.connect_failed(error);
    }
}

impl<M: Manager> Drop for SlotGuard<M> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.free_slot();
        }
    }
}
