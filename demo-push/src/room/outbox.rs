//! A connection's queue of messages waiting to be written.
//!
//! Nothing is allocated while it is empty (an idle connection keeps no queue), and the
//! common case, one message at a time, allocates nothing either: the first message sits in
//! an inline slot and only a backlog goes to a `VecDeque`, which is dropped again once
//! drained.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::frame::Frame;

#[derive(Default)]
pub(crate) struct Outbox {
    /// The oldest message when there is no backlog.
    first: Option<Arc<Frame>>,
    /// Messages behind `first` (or all of them, once a backlog began).
    rest: VecDeque<Arc<Frame>>,
    /// The connection is done: offers are refused.
    pub(super) closed: bool,
}

impl Outbox {
    pub(super) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    /// Queues at the back.
    pub(super) fn push(&mut self, payload: Arc<Frame>) {
        if self.is_empty() {
            self.first = Some(payload);
        } else {
            self.rest.push_back(payload);
        }
    }

    /// The oldest message.
    pub(super) fn pop(&mut self) -> Option<Arc<Frame>> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    /// Empties the queue and frees its backlog's memory.
    pub(super) fn clear(&mut self) {
        self.first = None;
        self.rest = VecDeque::new();
    }

    /// Frees the backlog's memory if it is drained.
    pub(super) fn shrink_if_drained(&mut self) {
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
        }
    }

    #[cfg(test)]
    fn allocated(&self) -> bool {
        self.rest.capacity() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use longlink_codec::push::PushMessage;

    fn payload(seq: u32) -> Arc<Frame> {
        Arc::new(Frame::new(seq, &PushMessage::HeartbeatReply).unwrap())
    }

    #[test]
    fn one_at_a_time_allocates_nothing_and_order_holds_through_a_backlog() {
        let mut outbox = Outbox::default();
        for n in 0..3 {
            outbox.push(payload(n));
            assert_eq!(outbox.len(), 1);
            assert!(outbox.pop().is_some());
            assert!(!outbox.allocated(), "one message at a time stays inline");
        }
        let sent: Vec<Arc<Frame>> = (0..5).map(payload).collect();
        outbox.push(Arc::clone(&sent[0]));
        outbox.push(Arc::clone(&sent[1]));
        assert!(Arc::ptr_eq(&outbox.pop().unwrap(), &sent[0]));
        // The inline slot is free but a backlog exists: new ones go behind it.
        outbox.push(Arc::clone(&sent[2]));
        outbox.push(Arc::clone(&sent[3]));
        assert_eq!(outbox.len(), 3);
        for expected in &sent[1..4] {
            assert!(Arc::ptr_eq(&outbox.pop().unwrap(), expected));
        }
        assert!(outbox.is_empty() && outbox.allocated());
        outbox.shrink_if_drained();
        assert!(
            !outbox.allocated(),
            "drained: the backlog's memory went back"
        );
        outbox.push(Arc::clone(&sent[4]));
        outbox.clear();
        assert!(outbox.is_empty() && outbox.pop().is_none());
    }
}
