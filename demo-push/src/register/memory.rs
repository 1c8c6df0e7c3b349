//! The register in one process: sessions and groups in memory.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Counts, Lookup, Register};
use crate::PushError;
use crate::model::Session;

const SHARDS: usize = 32;

/// One shard: the sessions of the users that hash to it.
type Shard = Mutex<HashMap<String, Vec<Session>>>;

/// The in-memory register: sessions in 32 shards by user (each its own lock, as goim's
/// buckets), groups in one map.
///
/// ```
/// use longlink_push::register::{MemoryRegister, Register};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let register = MemoryRegister::default();
/// register.bind("im".into(), "friends".into(), "u1".into()).await.unwrap();
/// assert_eq!(register.members("im".into(), "friends".into()).await.unwrap(), vec!["u1".to_owned()]);
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryRegister {
    shards: Box<[Shard]>,
    hasher: RandomState,
    groups: Mutex<HashMap<(String, String), HashSet<String>>>,
    max_groups: usize,
    max_members: usize,
    started_ms: u64,
}

impl Default for MemoryRegister {
    fn default() -> Self {
        MemoryRegister {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            groups: Mutex::new(HashMap::new()),
            max_groups: 100_000,
            max_members: 1_000_000,
            started_ms: crate::model::now_ms(),
        }
    }
}

impl MemoryRegister {
    /// A register holding at most `max_groups` groups of at most `max_members` each
    /// (defaults: 100,000 and 1,000,000); a bind beyond them is refused.
    pub fn with_limits(max_groups: usize, max_members: usize) -> MemoryRegister {
        MemoryRegister {
            max_groups,
            max_members,
            ..MemoryRegister::default()
        }
    }

    fn shard(&self, uid: &str) -> &Shard {
        &self.shards[self.hasher.hash_one(uid) as usize % SHARDS]
    }
}

#[async_trait]
impl Register for MemoryRegister {
    async fn connect(&self, sessions: Vec<Session>) -> Result<(), PushError> {
        for session in sessions {
            let mut shard = self.shard(&session.uid).lock();
            let known = shard.entry(session.uid.clone()).or_default();
            // A refresh of a connection already known replaces it.
            known.retain(|s| !(s.room == session.room && s.conn == session.conn));
            known.push(session);
        }
        Ok(())
    }

    async fn disconnect(&self, sessions: Vec<Session>) -> Result<(), PushError> {
        for session in &sessions {
            let mut shard = self.shard(&session.uid).lock();
            if let Some(known) = shard.get_mut(&session.uid) {
                known.retain(|s| !(s.room == session.room && s.conn == session.conn));
                if known.is_empty() {
                    shard.remove(&session.uid);
                }
            }
        }
        Ok(())
    }

    async fn lookup(&self, uids: Vec<String>) -> Result<Lookup, PushError> {
        Ok(Lookup {
            sessions: uids
                .iter()
                .map(|uid| self.shard(uid).lock().get(uid).cloned().unwrap_or_default())
                .collect(),
            settling: false,
        })
    }

    async fn bind(&self, app: String, group: String, uid: String) -> Result<(), PushError> {
        let mut groups = self.groups.lock();
        let key = (app, group);
        if !groups.contains_key(&key) && groups.len() >= self.max_groups {
            return Err(PushError::Invalid(format!(
                "the register holds its limit of {} groups",
                self.max_groups
            )));
        }
        let members = groups.entry(key.clone()).or_default();
        if members.len() >= self.max_members && !members.contains(&uid) {
            return Err(PushError::Invalid(format!(
                "group {:?} holds its limit of {} members",
                key.1, self.max_members
            )));
        }
        members.insert(uid);
        Ok(())
    }

    async fn unbind(&self, app: String, group: String, uid: String) -> Result<(), PushError> {
        let mut groups = self.groups.lock();
        let key = (app, group);
        if let Some(members) = groups.get_mut(&key) {
            members.remove(&uid);
            if members.is_empty() {
                groups.remove(&key);
            }
        }
        Ok(())
    }

    async fn members(&self, app: String, group: String) -> Result<Vec<String>, PushError> {
        let groups = self.groups.lock();
        let mut members: Vec<String> = groups
            .get(&(app, group))
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default();
        members.sort();
        Ok(members)
    }

    async fn counts(&self) -> Result<Counts, PushError> {
        Ok(Counts {
            users: self.shards.iter().map(|s| s.lock().len() as u64).sum(),
            groups: self.groups.lock().len() as u64,
        })
    }

    async fn reap(&self, room: String) -> Result<Vec<Session>, PushError> {
        let mut reaped = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.retain(|_, sessions| {
                sessions.retain(|s| {
                    let gone = s.room == room;
                    if gone {
                        reaped.push(s.clone());
                    }
                    !gone
                });
                !sessions.is_empty()
            });
        }
        Ok(reaped)
    }

    async fn epoch(&self) -> Result<u64, PushError> {
        // Memory lives as long as the process: one epoch.
        Ok(self.started_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConnId;
    use longlink_codec::push::Net;

    fn session(uid: &str, device: &str, conn: ConnId) -> Session {
        Session {
            uid: uid.into(),
            device: device.into(),
            room: "r1".into(),
            conn,
            net: Net::Wifi,
            apps: vec!["im".into()],
            since_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_user_may_have_several_devices_and_each_disconnects_alone() {
        let r = MemoryRegister::default();
        let r: &dyn Register = &r;
        r.connect(vec![session("u1", "phone", 1)]).await.unwrap();
        r.connect(vec![session("u1", "laptop", 2)]).await.unwrap();
        assert_eq!(r.sessions("u1").await.unwrap().len(), 2);
        r.disconnect(vec![session("u1", "phone", 1)]).await.unwrap();
        let left = r.sessions("u1").await.unwrap();
        assert_eq!((left.len(), left[0].device.as_str()), (1, "laptop"));
        r.disconnect(vec![session("u1", "laptop", 2)])
            .await
            .unwrap();
        assert!(r.sessions("u1").await.unwrap().is_empty());
        assert_eq!(r.counts().await.unwrap().users, 0);
    }

    #[tokio::test]
    async fn binds_beyond_the_limits_are_refused() {
        let r = MemoryRegister::with_limits(1, 2);
        let s = |v: &str| v.to_owned();
        r.bind(s("im"), s("g"), s("a")).await.unwrap();
        r.bind(s("im"), s("g"), s("b")).await.unwrap();
        r.bind(s("im"), s("g"), s("b")).await.unwrap(); // already a member: fine
        assert!(r.bind(s("im"), s("g"), s("c")).await.is_err());
        assert!(r.bind(s("im"), s("h"), s("a")).await.is_err());
        r.unbind(s("im"), s("g"), s("a")).await.unwrap();
        r.bind(s("im"), s("g"), s("c")).await.unwrap();
        assert_eq!(r.counts().await.unwrap().groups, 1);
    }

    #[tokio::test]
    async fn groups_are_per_app() {
        let r = MemoryRegister::default();
        let s = |v: &str| v.to_owned();
        r.bind(s("im"), s("g"), s("u1")).await.unwrap();
        r.bind(s("news"), s("g"), s("u2")).await.unwrap();
        assert_eq!(r.members(s("im"), s("g")).await.unwrap(), vec!["u1"]);
        r.unbind(s("im"), s("g"), s("u1")).await.unwrap();
        assert!(r.members(s("im"), s("g")).await.unwrap().is_empty());
        assert_eq!(r.members(s("news"), s("g")).await.unwrap(), vec!["u2"]);
    }
}
