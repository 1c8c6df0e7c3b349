//! The dispatcher: tells a client which rooms to connect to, best first.
//!
//! A client asks `GET /dispatch?uid=&net=&failed=` before it connects, caches the answer
//! per network type, asks again when its network type changes, and names the addresses
//! that failed so the next answer puts them last. In one process there is one room; the
//! cluster mode fills the list from the register's live rooms.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use longlink_codec::push::Net;
use serde::{Deserialize, Serialize};

use crate::center::{ApiError, ApiQuery};
use crate::model::check_name;
use crate::room::Heartbeats;

/// Answers `GET /dispatch`: the static [`Dispatcher`] in one process, the membership-fed
/// one in the cluster.
#[async_trait]
pub trait Routes: Send + Sync + 'static {
    /// The rooms `uid` should try, best first, with `failed` addresses last.
    async fn dispatch(&self, uid: &str, net: Net, failed: &[String]) -> Dispatch;
}

#[async_trait]
impl Routes for Dispatcher {
    async fn dispatch(&self, uid: &str, net: Net, failed: &[String]) -> Dispatch {
        Dispatcher::dispatch(self, uid, net, failed)
    }
}

/// `GET /dispatch?uid=&net=&failed=a,b`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchQuery {
    uid: String,
    net: Net,
    /// Addresses that failed, comma-separated.
    #[serde(default)]
    failed: Option<String>,
}

/// Answers a dispatch query (the center's route and the dispatcher service's).
pub async fn answer(routes: &dyn Routes, q: DispatchQuery) -> Result<Json<Dispatch>, ApiError> {
    check_name("uid", &q.uid)?;
    let failed: Vec<String> = q
        .failed
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .take(64)
        .map(str::to_owned)
        .collect();
    Ok(Json(routes.dispatch(&q.uid, q.net, &failed).await))
}

/// The dispatcher service's routes: `GET /dispatch` and `GET /healthz`.
pub fn router(routes: Arc<dyn Routes>) -> Router {
    Router::new()
        .route(
            "/dispatch",
            get(
                |State(routes): State<Arc<dyn Routes>>, ApiQuery(q): ApiQuery<DispatchQuery>| async move {
                    answer(routes.as_ref(), q).await
                },
            ),
        )
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(routes)
}

/// Where a room listens, as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomAddress {
    /// The room's name.
    pub name: String,
    /// WebSocket URL (`ws://host:port/`).
    pub ws: String,
    /// Raw TCP `host:port`.
    pub tcp: String,
}

/// The dispatcher's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    /// The user asked about.
    pub uid: String,
    /// The network type asked about.
    pub net: Net,
    /// The heartbeat interval the room will ask for on this network, in seconds.
    pub heartbeat_secs: u64,
    /// Rooms to try, in order.
    pub rooms: Vec<RoomAddress>,
}

/// Picks rooms for users.
///
/// ```
/// use longlink_codec::push::Net;
/// use longlink_push::dispatcher::{Dispatcher, RoomAddress};
/// use longlink_push::room::Heartbeats;
///
/// let room = |n: &str| RoomAddress { name: n.into(), ws: format!("ws://{n}/"), tcp: n.into() };
/// let d = Dispatcher::new(vec![room("a"), room("b"), room("c")], Heartbeats::default());
/// let first = d.dispatch("u1", Net::Wifi, &[]);
/// assert_eq!(first.heartbeat_secs, 480);
/// // The same user gets the same order, and a failed address goes last.
/// assert_eq!(d.dispatch("u1", Net::Wifi, &[]), first);
/// let failed = first.rooms[0].tcp.clone();
/// let again = d.dispatch("u1", Net::Wifi, &[failed.clone()]);
/// assert_eq!(again.rooms.last().unwrap().tcp, failed);
/// ```
#[derive(Debug, Clone)]
pub struct Dispatcher {
    rooms: Vec<RoomAddress>,
    heartbeats: Heartbeats,
}

/// FNV-1a: a stable hash, so a user's preferred room is the same in every process.
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Dispatcher {
    /// A dispatcher over these rooms.
    pub fn new(rooms: Vec<RoomAddress>, heartbeats: Heartbeats) -> Dispatcher {
        Dispatcher { rooms, heartbeats }
    }

    /// The rooms for `uid`: its preferred room first (a stable hash, so a reconnect lands
    /// where it was), the others after, and those whose address is in `failed` last.
    pub fn dispatch(&self, uid: &str, net: Net, failed: &[String]) -> Dispatch {
        let mut rooms = self.rooms.clone();
        if !rooms.is_empty() {
            let start = (stable_hash(uid) % rooms.len() as u64) as usize;
            rooms.rotate_left(start);
        }
        self.answer(uid, net, failed, rooms)
    }

    /// The answer for `rooms` in this order, with those in `failed` moved last.
    pub fn answer(
        &self,
        uid: &str,
        net: Net,
        failed: &[String],
        mut rooms: Vec<RoomAddress>,
    ) -> Dispatch {
        let is_failed = |r: &RoomAddress| failed.iter().any(|f| *f == r.tcp || *f == r.ws);
        // A stable sort keeps the preference order within each half.
        rooms.sort_by_key(is_failed);
        Dispatch {
            uid: uid.to_owned(),
            net,
            heartbeat_secs: self.heartbeats.for_net(net),
            rooms,
        }
    }
}
