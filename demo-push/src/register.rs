//! The session store: which connections each user has, on which rooms, and group
//! membership. In memory here; the cluster mode keeps it in Redis behind the same trait.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::PushError;
use crate::model::Session;

/// What the rest of the system asks of a session store.
#[async_trait]
pub trait Register: Send + Sync + 'static {
    /// Records a new connection.
    async fn connect(&self, session: Session) -> Result<(), PushError>;
    /// Forgets a connection.
    async fn disconnect(&self, session: &Session) -> Result<(), PushError>;
    /// The live connections of `uid`.
    async fn sessions(&self, uid: &str) -> Result<Vec<Session>, PushError>;
    /// Adds `uid` to `group` of `app`.
    async fn bind(&self, app: &str, group: &str, uid: &str) -> Result<(), PushError>;
    /// Removes `uid` from `group` of `app`.
    async fn unbind(&self, app: &str, group: &str, uid: &str) -> Result<(), PushError>;
    /// The members of `group` of `app`.
    async fn members(&self, app: &str, group: &str) -> Result<Vec<String>, PushError>;
    /// Connections recorded now.
    async fn session_count(&self) -> Result<usize, PushError>;
    /// Groups with at least one member now.
    async fn group_count(&self) -> Result<usize, PushError>;
}

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
/// register.bind("im", "friends", "u1").await.unwrap();
/// assert_eq!(register.members("im", "friends").await.unwrap(), vec!["u1".to_owned()]);
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryRegister {
    shards: Box<[Shard]>,
    hasher: RandomState,
    groups: Mutex<HashMap<(String, String), HashSet<String>>>,
    max_groups: usize,
    max_members: usize,
}

impl Default for MemoryRegister {
    fn default() -> Self {
        MemoryRegister {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            groups: Mutex::new(HashMap::new()),
            max_groups: 100_000,
            max_members: 1_000_000,
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
    async fn connect(&self, session: Session) -> Result<(), PushError> {
        let mut shard = self.shard(&session.uid).lock();
        shard.entry(session.uid.clone()).or_default().push(session);
        Ok(())
    }

    async fn disconnect(&self, session: &Session) -> Result<(), PushError> {
        let mut shard = self.shard(&session.uid).lock();
        if let Some(sessions) = shard.get_mut(&session.uid) {
            sessions.retain(|s| !(s.room == session.room && s.conn == session.conn));
            if sessions.is_empty() {
                shard.remove(&session.uid);
            }
        }
        Ok(())
    }

    async fn sessions(&self, uid: &str) -> Result<Vec<Session>, PushError> {
        Ok(self.shard(uid).lock().get(uid).cloned().unwrap_or_default())
    }

    async fn bind(&self, app: &str, group: &str, uid: &str) -> Result<(), PushError> {
        let mut groups = self.groups.lock();
        let key = (app.to_owned(), group.to_owned());
        if !groups.contains_key(&key) && groups.len() >= self.max_groups {
            return Err(PushError::Invalid(format!(
                "the register holds its limit of {} groups",
                self.max_groups
            )));
        }
        let members = groups.entry(key).or_default();
        if members.len() >= self.max_members && !members.contains(uid) {
            return Err(PushError::Invalid(format!(
                "group {group:?} holds its limit of {} members",
                self.max_members
            )));
        }
        members.insert(uid.to_owned());
        Ok(())
    }

    async fn unbind(&self, app: &str, group: &str, uid: &str) -> Result<(), PushError> {
        let mut groups = self.groups.lock();
        let key = (app.to_owned(), group.to_owned());
        if let Some(members) = groups.get_mut(&key) {
            members.remove(uid);
            if members.is_empty() {
                groups.remove(&key);
            }
        }
        Ok(())
    }

    async fn members(&self, app: &str, group: &str) -> Result<Vec<String>, PushError> {
        let groups = self.groups.lock();
        let mut members: Vec<String> = groups
            .get(&(app.to_owned(), group.to_owned()))
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default();
        members.sort();
        Ok(members)
    }

    async fn session_count(&self) -> Result<usize, PushError> {
        Ok(self
            .shards
            .iter()
            .map(|s| s.lock().values().map(Vec::len).sum::<usize>())
            .sum())
    }

    async fn group_count(&self) -> Result<usize, PushError> {
        Ok(self.groups.lock().len())
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
        r.connect(session("u1", "phone", 1)).await.unwrap();
        r.connect(session("u1", "laptop", 2)).await.unwrap();
        assert_eq!(r.sessions("u1").await.unwrap().len(), 2);
        r.disconnect(&session("u1", "phone", 1)).await.unwrap();
        let left = r.sessions("u1").await.unwrap();
        assert_eq!((left.len(), left[0].device.as_str()), (1, "laptop"));
        r.disconnect(&session("u1", "laptop", 2)).await.unwrap();
        assert!(r.sessions("u1").await.unwrap().is_empty());
        assert_eq!(r.session_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn binds_beyond_the_limits_are_refused() {
        let r = MemoryRegister::with_limits(1, 2);
        r.bind("im", "g", "a").await.unwrap();
        r.bind("im", "g", "b").await.unwrap();
        r.bind("im", "g", "b").await.unwrap(); // already a member: fine
        assert!(r.bind("im", "g", "c").await.is_err());
        assert!(r.bind("im", "h", "a").await.is_err());
        r.unbind("im", "g", "a").await.unwrap();
        r.bind("im", "g", "c").await.unwrap();
        assert_eq!(r.group_count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn groups_are_per_app() {
        let r = MemoryRegister::default();
        r.bind("im", "g", "u1").await.unwrap();
        r.bind("news", "g", "u2").await.unwrap();
        assert_eq!(r.members("im", "g").await.unwrap(), vec!["u1"]);
        r.unbind("im", "g", "u1").await.unwrap();
        assert!(r.members("im", "g").await.unwrap().is_empty());
        assert_eq!(r.members("news", "g").await.unwrap(), vec!["u2"]);
    }
}
