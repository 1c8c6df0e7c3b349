//! Sends a message to the rooms that hold its recipients: one call per room, however many
//! of its users a multicast names, the rooms in parallel. With one room there is nothing to
//! look up; with several, the register says where each user is, and while it cannot (down,
//! or re-filling after it lost its state) every room is asked instead, so that a unicast
//! still finds its user.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;

use super::{Directory, Reached, RoomEntry};
use crate::PushError;
use crate::frame::Frame;
use crate::metrics::{Metrics, inc};
use crate::register::Register;

/// Every room, reached through its gateway.
#[derive(Clone)]
pub struct Fanout {
    directory: Arc<dyn Directory>,
    register: Arc<dyn Register>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("rooms", &self.directory.rooms().len())
            .finish()
    }
}

impl Fanout {
    /// Rooms from `directory`, users' rooms from `register`.
    pub fn new(
        directory: Arc<dyn Directory>,
        register: Arc<dyn Register>,
        metrics: Arc<Metrics>,
    ) -> Fanout {
        Fanout {
            directory,
            register,
            metrics,
        }
    }

    /// The rooms known now.
    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// Queues `frame` for the connections of `uids` in `app` (only `device`'s, if set);
    /// answers who it reached, and who may be online but could not be reached — their room
    /// is not in the directory, or did not answer (counted and logged). The caller tries a
    /// stored message again for those; an offline user gets it when it connects.
    pub async fn deliver(
        &self,
        app: &str,
        frame: &Frame,
        uids: &[String],
        device: Option<&str>,
    ) -> Reached {
        let rooms = self.directory.rooms();
        if rooms.is_empty() {
            return Reached {
                unreached: uids.to_vec(),
                ..Reached::default()
            };
        }
        // Users whose session is on a room the directory does not list (yet, or any more).
        let mut roomless: Vec<String> = Vec::new();
        let calls: Vec<(&RoomEntry, Vec<String>)> = if rooms.len() == 1 {
            // One room holds everyone who is online: no lookup needed.
            rooms.iter().map(|r| (r, uids.to_vec())).collect()
        } else {
            match self.register.lookup(uids.to_vec()).await {
                Ok(lookup) if !lookup.settling => {
                    let mut by_room: HashMap<&str, Vec<String>> = HashMap::new();
                    for (uid, sessions) in uids.iter().zip(&lookup.sessions) {
                        for s in sessions {
                            if !rooms.iter().any(|r| r.info.name == s.room) {
                                roomless.push(uid.clone());
                                continue;
                            }
                            let users = by_room.entry(s.room.as_str()).or_default();
                            if users.last() != Some(uid) {
                                users.push(uid.clone());
                            }
                        }
                    }
                    rooms
                        .iter()
                        .filter_map(|r| by_room.remove(r.info.name.as_str()).map(|u| (r, u)))
                        .collect()
                }
                answer => {
                    // The register cannot say: every room is asked.
                    if let Err(e) = &answer {
                        tracing::warn!(error = %e, "register lookup failed: asking every room");
                    }
                    inc(&self.metrics.lookup_fallbacks);
                    rooms.iter().map(|r| (r, uids.to_vec())).collect()
                }
            }
        };
        let calls = calls.into_iter().map(|(room, users)| async move {
            let answer = room
                .gateway
                .deliver(
                    app.to_owned(),
                    frame.clone(),
                    users.clone(),
                    device.map(str::to_owned),
                )
                .await;
            (room, users, answer)
        });
        let mut answers = Vec::new();
        let mut missed = roomless;
        for (room, users, answer) in join_all(calls).await {
            match answer {
                Ok(reached) => answers.push(reached),
                Err(e) => {
                    inc(&self.metrics.room_rpc_errors);
                    tracing::warn!(room = room.info.name, error = %e, "delivery to a room failed");
                    missed.extend(users);
                }
            }
        }
        let mut reached = Reached::merge(answers);
        missed.sort_unstable();
        missed.dedup();
        reached.unreached_of(&missed);
        reached
    }

    /// Queues `frame` for every connection in `app`, on every room; with `users`, lists who
    /// was reached.
    pub async fn broadcast(&self, app: &str, frame: &Frame, users: bool) -> Reached {
        let rooms = self.directory.rooms();
        let calls = rooms.iter().map(|room| async move {
            let answer = room
                .gateway
                .broadcast(app.to_owned(), frame.clone(), users)
                .await;
            answer.unwrap_or_else(|e| {
                inc(&self.metrics.room_rpc_errors);
                tracing::warn!(room = room.info.name, error = %e, "broadcast to a room failed");
                Reached::default()
            })
        });
        Reached::merge(join_all(calls).await)
    }

    /// The users online in `app` on every room. A room that does not answer cannot say who
    /// it holds: a stored broadcast would then store nothing for them, so this fails rather
    /// than answer half.
    pub async fn users_in(&self, app: &str) -> Result<Vec<String>, PushError> {
        let rooms = self.directory.rooms();
        let calls = rooms
            .iter()
            .map(|room| room.gateway.users_in(app.to_owned()));
        let mut users = Vec::new();
        for answer in join_all(calls).await {
            users.extend(answer?);
        }
        users.sort_unstable();
        users.dedup();
        Ok(users)
    }

    /// Closes `uid`'s connections in `app` on every room; answers how many.
    pub async fn kick(&self, uid: &str, app: &str, reason: &str) -> usize {
        let rooms = self.directory.rooms();
        let calls = rooms.iter().map(|room| async move {
            room.gateway
                .kick(uid.to_owned(), app.to_owned(), reason.to_owned())
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(room = room.info.name, error = %e, "kick on a room failed");
                    0
                })
        });
        join_all(calls).await.into_iter().sum::<u64>() as usize
    }
}
