//! The services of other processes behind the traits the hub uses: the register, the saver
//! and the coordinator, called over longlink-rpc.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use longlink_codec::push::{Upstream, UpstreamReply};

use super::services::{GroupOp, Lookup, coordinator_svc, from_rpc_error, register_svc, saver_svc};
use crate::PushError;
use crate::config::{ClusterSection, ConfigError};
use crate::coordinator::Callbacks;
use crate::model::{Message, Session};
use crate::register::Register;
use crate::saver::{MessageStatus, Pending, Recipient, Saver};

/// An RPC client to `addr` with the cluster's strategy, deadline and flow control.
pub fn rpc_client(addr: &str, cfg: &ClusterSection) -> Result<longlink_rpc::Client, ConfigError> {
    let timeout = Duration::from_millis(cfg.rpc_timeout_ms.max(1));
    Ok(longlink_rpc::Client::builder(addr)
        .strategy(cfg.strategy()?)
        .max_in_flight(cfg.rpc_max_in_flight.max(1))
        .max_queued(cfg.rpc_max_in_flight.max(1))
        .max_queue_wait(timeout / 2)
        .default_timeout(timeout)
        .connect_timeout(Duration::from_millis(500).min(timeout))
        .heartbeat(Duration::from_secs(2), Duration::from_secs(2))
        .build())
}

/// The register service, over one or more instances (any of them answers: their state
/// is in Redis). A call that fails goes to the next instance; every call is idempotent.
#[derive(Debug, Clone)]
pub struct RemoteRegister {
    targets: Arc<[register_svc::Client]>,
    next: Arc<AtomicUsize>,
}

impl RemoteRegister {
    /// A register over these instances.
    pub fn new(cfg: &ClusterSection) -> Result<RemoteRegister, ConfigError> {
        if cfg.register.is_empty() {
            return Err(ConfigError::Invalid(
                "cluster.register lists no address".into(),
            ));
        }
        let targets = cfg
            .register
            .iter()
            .map(|a| rpc_client(a, cfg).map(register_svc::Client::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RemoteRegister {
            targets: targets.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    async fn call<T, F, Fut>(&self, f: F) -> Result<T, PushError>
    where
        F: Fn(register_svc::Client) -> Fut,
        Fut: Future<Output = Result<T, longlink_rpc::RpcError>>,
    {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.targets.len() {
            let client = self.targets[(start + i) % self.targets.len()].clone();
            match f(client).await {
                Ok(v) => return Ok(v),
                Err(e @ longlink_rpc::RpcError::Remote { .. }) => {
                    return Err(from_rpc_error("register", e));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(from_rpc_error(
            "register",
            last.expect("at least one register instance"),
        ))
    }

    /// The sessions of each uid, and whether the register is still re-filling.
    pub async fn lookup(&self, uids: Vec<String>) -> Result<Lookup, PushError> {
        self.call(|c| {
            let uids = uids.clone();
            async move { c.lookup(uids).await }
        })
        .await
    }

    /// Records (or refreshes) sessions.
    pub async fn connect_many(&self, sessions: Vec<Session>) -> Result<(), PushError> {
        self.call(|c| {
            let sessions = sessions.clone();
            async move { c.connect(sessions).await }
        })
        .await
    }

    /// Forgets sessions.
    pub async fn disconnect_many(&self, sessions: Vec<Session>) -> Result<(), PushError> {
        self.call(|c| {
            let sessions = sessions.clone();
            async move { c.disconnect(sessions).await }
        })
        .await
    }

    /// The register's epoch (it changes when the register lost its state).
    pub async fn epoch(&self) -> Result<String, PushError> {
        self.call(|c| async move { c.epoch().await }).await
    }
}

#[async_trait]
impl Register for RemoteRegister {
    async fn connect(&self, session: Session) -> Result<(), PushError> {
        self.connect_many(vec![session]).await
    }

    async fn disconnect(&self, session: &Session) -> Result<(), PushError> {
        self.disconnect_many(vec![session.clone()]).await
    }

    async fn sessions(&self, uid: &str) -> Result<Vec<Session>, PushError> {
        let mut lookup = self.lookup(vec![uid.to_owned()]).await?;
        Ok(lookup.sessions.pop().unwrap_or_default())
    }

    async fn bind(&self, app: &str, group: &str, uid: &str) -> Result<(), PushError> {
        let op = GroupOp {
            app: app.into(),
            group: group.into(),
            uid: uid.into(),
        };
        self.call(|c| {
            let op = op.clone();
            async move { c.bind(op).await }
        })
        .await
    }

    async fn unbind(&self, app: &str, group: &str, uid: &str) -> Result<(), PushError> {
        let op = GroupOp {
            app: app.into(),
            group: group.into(),
            uid: uid.into(),
        };
        self.call(|c| {
            let op = op.clone();
            async move { c.unbind(op).await }
        })
        .await
    }

    async fn members(&self, app: &str, group: &str) -> Result<Vec<String>, PushError> {
        self.call(|c| {
            let (app, group) = (app.to_owned(), group.to_owned());
            async move { c.members(app, group).await }
        })
        .await
    }

    async fn session_count(&self) -> Result<usize, PushError> {
        let (users, _) = self.call(|c| async move { c.counts().await }).await?;
        Ok(users as usize)
    }

    async fn group_count(&self) -> Result<usize, PushError> {
        let (_, groups) = self.call(|c| async move { c.counts().await }).await?;
        Ok(groups as usize)
    }
}

/// The saver service.
#[derive(Debug, Clone)]
pub struct RemoteSaver {
    client: saver_svc::Client,
}

impl RemoteSaver {
    /// The saver at `cfg.saver`.
    pub fn new(cfg: &ClusterSection) -> Result<RemoteSaver, ConfigError> {
        Ok(RemoteSaver {
            client: saver_svc::Client::new(rpc_client(&cfg.saver, cfg)?),
        })
    }
}

fn saver_err(e: longlink_rpc::RpcError) -> PushError {
    from_rpc_error("saver", e)
}

#[async_trait]
impl Saver for RemoteSaver {
    async fn store(&self, message: &Message, recipients: &[Recipient]) -> Result<(), PushError> {
        self.client
            .store(message.clone(), recipients.to_vec())
            .await
            .map_err(saver_err)
    }

    async fn delivered(&self, message_id: u64, uids: &[String]) -> Result<(), PushError> {
        self.client
            .delivered(message_id, uids.to_vec())
            .await
            .map_err(saver_err)
    }

    async fn ack(&self, uid: &str, ids: &[u64]) -> Result<u64, PushError> {
        self.client
            .ack(uid.to_owned(), ids.to_vec())
            .await
            .map_err(saver_err)
    }

    async fn expire(&self, message_id: u64, uid: &str) -> Result<(), PushError> {
        self.client
            .expire(message_id, uid.to_owned())
            .await
            .map_err(saver_err)
    }

    async fn pending(
        &self,
        uid: &str,
        device: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Pending>, PushError> {
        self.client
            .pending(
                uid.to_owned(),
                device.to_owned(),
                now_ms,
                limit.min(u32::MAX as usize) as u32,
            )
            .await
            .map_err(saver_err)
    }

    async fn status(&self, message_id: u64) -> Result<Option<MessageStatus>, PushError> {
        self.client.status(message_id).await.map_err(saver_err)
    }

    async fn message_for(&self, message_id: u64, uid: &str) -> Result<Option<Message>, PushError> {
        self.client
            .message_for(message_id, uid.to_owned())
            .await
            .map_err(saver_err)
    }

    async fn sweep(&self, now_ms: u64) -> Result<u64, PushError> {
        self.client.sweep(now_ms).await.map_err(saver_err)
    }

    async fn max_id(&self) -> Result<u64, PushError> {
        self.client.max_id().await.map_err(saver_err)
    }
}

/// The coordinator service. Presence callbacks that fail are dropped, counted and logged
/// once per thousand (they are notifications); upstream that fails is refused to the
/// client with the reason.
#[derive(Debug, Clone)]
pub struct RemoteCoordinator {
    client: coordinator_svc::Client,
    dropped: Arc<AtomicUsize>,
}

impl RemoteCoordinator {
    /// The coordinator at `cfg.coordinator`.
    pub fn new(cfg: &ClusterSection) -> Result<RemoteCoordinator, ConfigError> {
        Ok(RemoteCoordinator {
            client: coordinator_svc::Client::new(rpc_client(&cfg.coordinator, cfg)?),
            dropped: Arc::new(AtomicUsize::new(0)),
        })
    }
}

#[async_trait]
impl Callbacks for RemoteCoordinator {
    async fn presence(&self, session: &Session, online: bool) {
        if let Err(e) = self.client.presence(session.clone(), online).await {
            // A connect storm overloads the coordinator by design (it refuses at once):
            // counted, and logged once per thousand.
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(1000) {
                tracing::warn!(uid = session.uid, error = %e, dropped = n + 1, "presence callbacks not passed on");
            }
        }
    }

    async fn upstream(&self, session: &Session, upstream: Upstream) -> UpstreamReply {
        match self.client.upstream(session.clone(), upstream).await {
            Ok(reply) => reply,
            Err(e) => UpstreamReply {
                ok: false,
                reason: Some(format!("the coordinator is unavailable: {e}")),
            },
        }
    }

    fn queued(&self) -> usize {
        0
    }
}
