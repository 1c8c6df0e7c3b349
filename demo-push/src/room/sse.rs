//! The SSE / HTTP-streaming fallback's sessions: the room's map from session key to the
//! session's inbound queue, and the state an SSE [`Link`](super::link::Link) keeps.
//!
//! An SSE session is a room connection like any other, served by the same task
//! (`session.rs`): downstream is the `POST /sse` answer, a chunked `text/event-stream`;
//! upstream, the client POSTs each message to `/sse/{session}`, and the connection that
//! carried the POST hands it to the session's bounded inbox, which the session's link
//! reads as a WebSocket link reads its socket.
//!
//! Bounds: at most `max_sse_sessions` streams ([`SseSlot`], taken before the AUTH is
//! checked); at most `sse_inbox` messages waiting per session (`429` past it). The map holds
//! an entry only while an [`SseEntry`] lives: it is the link's, so however the session
//! ends — closed, kicked, its task dropped — the entry goes with it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use longlink_codec::push::PushMessage;
use parking_lot::Mutex;
use tokio::sync::mpsc;

const SHARDS: usize = 32;

/// A message POSTed to a session, with its seq.
pub(crate) type Posted = (u32, PushMessage);

/// A shard of the key → inbox map.
type KeyShard = Mutex<HashMap<String, mpsc::Sender<Posted>>>;

/// Why a POSTed message was not handed to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandOver {
    /// No session has that key (it ended, or never existed).
    Unknown,
    /// The session's inbox is full.
    Full,
}

/// The room's SSE sessions.
pub(crate) struct SseSessions {
    shards: Box<[KeyShard]>,
    hasher: RandomState,
    /// Streams open (slots taken).
    open: AtomicUsize,
    max_sessions: usize,
    inbox: usize,
}

impl std::fmt::Debug for SseSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseSessions")
            .field("open", &self.open())
            .field("keys", &self.keys())
            .finish()
    }
}

impl SseSessions {
    /// At most `max_sessions` streams, `inbox` messages waiting for each.
    pub(crate) fn new(max_sessions: usize, inbox: usize) -> Arc<SseSessions> {
        Arc::new(SseSessions {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            open: AtomicUsize::new(0),
            max_sessions,
            inbox: inbox.max(1),
        })
    }

    fn shard(&self, key: &str) -> &KeyShard {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// A place for one more stream; `None` at the limit.
    pub(crate) fn reserve(self: &Arc<Self>) -> Option<SseSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_sessions).then_some(n + 1)
            })
            .ok()?;
        Some(SseSlot(Arc::clone(self)))
    }

    /// Streams open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Session keys in the map now (sessions POSTs can reach).
    pub(crate) fn keys(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// The most streams.
    pub(crate) fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// A new unguessable key for connection `id` of room `room` (`{room}:{id}:{128 random
    /// bits, base64url}`), in the map until the entry drops; the receiver is the session's
    /// inbox.
    fn bind(self: &Arc<Self>, room: &str, id: u64) -> (SseEntry, mpsc::Receiver<Posted>) {
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).expect("the system's random source works");
        let key = format!(
            "{room}:{id}:{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let (tx, rx) = mpsc::channel(self.inbox);
        self.shard(&key).lock().insert(key.clone(), tx);
        (
            SseEntry {
                sessions: Arc::clone(self),
                key,
            },
            rx,
        )
    }

    /// Hands `message` to the session `key` (cancel safe: it never waits).
    pub(crate) fn hand_over(&self, key: &str, message: Posted) -> Result<(), HandOver> {
        let Some(tx) = self.shard(key).lock().get(key).cloned() else {
            return Err(HandOver::Unknown);
        };
        tx.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => HandOver::Full,
            mpsc::error::TrySendError::Closed(_) => HandOver::Unknown,
        })
    }
}

/// One stream's place among [`SseSessions::max_sessions`], given back when dropped.
pub(crate) struct SseSlot(Arc<SseSessions>);

impl Drop for SseSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A session key in the map; removed when dropped.
pub(crate) struct SseEntry {
    sessions: Arc<SseSessions>,
    key: String,
}

impl Drop for SseEntry {
    fn drop(&mut self) {
        self.sessions.shard(&self.key).lock().remove(&self.key);
    }
}

/// What an SSE link holds besides its socket.
pub(crate) struct SseLink {
    /// The AUTH that came as the `POST /sse` body: the first message the session reads.
    auth: Option<Posted>,
    /// Messages POSTed to the session; `None` until it is bound (at AUTH OK).
    inbox: Option<mpsc::Receiver<Posted>>,
    /// The session's key in the map; `None` before AUTH OK and once the link closes.
    entry: Option<SseEntry>,
    /// The key once bound (kept after the entry goes, for the answer to a REFRESH).
    key: Option<String>,
    /// Its place among the room's streams, for as long as the link lives.
    _slot: SseSlot,
    /// The `200` head went out: what follows are chunks.
    pub(super) streaming: bool,
    /// The last chunk went out.
    pub(super) ended: bool,
}

impl SseLink {
    /// A stream whose session starts with `auth`, in `slot`.
    pub(crate) fn new(auth: Posted, slot: SseSlot) -> SseLink {
        SseLink {
            auth: Some(auth),
            inbox: None,
            entry: None,
            key: None,
            _slot: slot,
            streaming: false,
            ended: false,
        }
    }

    /// The AUTH, the first time.
    pub(super) fn take_auth(&mut self) -> Option<Posted> {
        self.auth.take()
    }

    /// Binds the session: its key goes into `sessions`; POSTs reach it from now on.
    pub(super) fn bind(&mut self, sessions: &Arc<SseSessions>, room: &str, id: u64) -> String {
        let (entry, inbox) = sessions.bind(room, id);
        let key = entry.key.clone();
        self.entry = Some(entry);
        self.inbox = Some(inbox);
        self.key = Some(key.clone());
        key
    }

    /// The session key, once bound.
    pub(super) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The session ends: POSTs get `404` from now on.
    pub(super) fn unbind(&mut self) {
        self.entry = None;
    }

    /// The next message POSTed; `None` once nothing can be (unbound). Waits forever
    /// before the session is bound. Cancel safe.
    pub(super) async fn next(&mut self) -> Option<Posted> {
        match self.inbox.as_mut() {
            Some(inbox) if self.entry.is_some() => inbox.recv().await,
            Some(_) => None,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_are_bounded_and_their_keys_leave_with_their_entry() {
        let sessions = SseSessions::new(2, 2);
        let a = sessions.reserve().unwrap();
        let b = sessions.reserve().unwrap();
        assert!(sessions.reserve().is_none(), "two at most");
        drop(b);
        let b = sessions.reserve().expect("a place came back");
        let mut link = SseLink::new((1, PushMessage::Heartbeat), a);
        assert_eq!(link.take_auth().unwrap().0, 1);
        let key = link.bind(&sessions, "room-1", 7);
        let (prefix, secret) = key.rsplit_once(':').unwrap();
        assert_eq!((prefix, secret.len()), ("room-1:7", 22));
        assert_eq!(sessions.keys(), 1);
        assert_eq!(
            sessions.hand_over(&key, (2, PushMessage::Heartbeat)),
            Ok(())
        );
        assert_eq!(
            sessions.hand_over(&key, (3, PushMessage::Heartbeat)),
            Ok(())
        );
        assert_eq!(
            sessions.hand_over(&key, (4, PushMessage::Heartbeat)),
            Err(HandOver::Full)
        );
        assert_eq!(link.next().await.unwrap().0, 2);
        assert_eq!(
            sessions.hand_over("room-1:7:guess", (5, PushMessage::Heartbeat)),
            Err(HandOver::Unknown)
        );
        link.unbind();
        assert_eq!(sessions.keys(), 0);
        assert!(
            link.next().await.is_none(),
            "unbound: the session reads no more"
        );
        assert_eq!(
            sessions.hand_over(&key, (6, PushMessage::Heartbeat)),
            Err(HandOver::Unknown)
        );
        assert_eq!(link.key(), Some(key.as_str()));
        drop(link);
        drop(b);
        assert_eq!((sessions.open(), sessions.keys()), (0, 0));
    }

    #[tokio::test]
    async fn a_dropped_link_takes_its_key_and_place_with_it() {
        let sessions = SseSessions::new(4, 4);
        let mut link = SseLink::new((1, PushMessage::Heartbeat), sessions.reserve().unwrap());
        link.bind(&sessions, "r", 1);
        // Dropped while waiting for a POST (the session's task cancelled).
        let waiting = tokio::spawn(async move {
            let _ = link.next().await;
        });
        tokio::task::yield_now().await;
        waiting.abort();
        let _ = waiting.await;
        assert_eq!((sessions.open(), sessions.keys()), (0, 0));
    }
}
