//! How a typed client reaches its service, and the options of its next call.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::balance::stable_hash;
use crate::{Balancer, Client, Request, RpcError};

/// Where a typed client's calls go: one target (a [`Client`]) or several instances (a
/// [`Balancer`]), with the options the next call carries — a deadline, and a key that picks
/// the instance. Every `service!` client wraps one; build it from either with `into()`.
///
/// The options are values, not state: [`with_timeout`](Caller::with_timeout) and
/// [`with_key`](Caller::with_key) return a new caller (a clone of a few pointers), so
/// one client shared by many tasks is never changed by any of them.
///
/// ```
/// use std::time::Duration;
/// use longlink_rpc::typed::Caller;
/// let caller: Caller = longlink_rpc::Client::new("127.0.0.1:7000").into();
/// let hurried = caller.with_timeout(Duration::from_millis(50));
/// assert_eq!(hurried.timeout(), Some(Duration::from_millis(50)));
/// assert_eq!(caller.timeout(), None);
/// ```
#[derive(Debug, Clone)]
pub struct Caller {
    route: Route,
    deadline: Deadline,
    /// The key's hash: a balanced call goes to the instance that owns it.
    key: Option<u64>,
}

#[derive(Debug, Clone)]
enum Route {
    One(Client),
    Many(Balancer),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    /// The target client's default timeout, if it has one.
    Default,
    /// This long from when the call starts.
    After(Duration),
    /// At this instant.
    At(Instant),
}

impl From<Client> for Caller {
    fn from(client: Client) -> Caller {
        Caller {
            route: Route::One(client),
            deadline: Deadline::Default,
            key: None,
        }
    }
}

impl From<Balancer> for Caller {
    fn from(balancer: Balancer) -> Caller {
        Caller {
            route: Route::Many(balancer),
            deadline: Deadline::Default,
            key: None,
        }
    }
}

impl Caller {
    /// Calls made through the result give up after `timeout` (and tell the server so).
    pub fn with_timeout(&self, timeout: Duration) -> Caller {
        Caller {
            deadline: Deadline::After(timeout),
            ..self.clone()
        }
    }

    /// Calls made through the result give up at `deadline`.
    pub fn with_deadline(&self, deadline: Instant) -> Caller {
        Caller {
            deadline: Deadline::At(deadline),
            ..self.clone()
        }
    }

    /// Calls made through the result go to the instance that owns `key` on the
    /// balancer's consistent-hash ring (then the next ones, if it fails without running the
    /// call). Without a key a balanced call goes to the less loaded of two instances.
    /// Meaningless for a single target.
    pub fn with_key(&self, key: impl AsRef<[u8]>) -> Caller {
        Caller {
            key: Some(stable_hash(key.as_ref())),
            ..self.clone()
        }
    }

    /// The per-call timeout set with [`with_timeout`](Caller::with_timeout).
    pub fn timeout(&self) -> Option<Duration> {
        match self.deadline {
            Deadline::After(t) => Some(t),
            _ => None,
        }
    }

    /// The single target, if this caller has one.
    pub fn client(&self) -> Option<&Client> {
        match &self.route {
            Route::One(c) => Some(c),
            Route::Many(_) => None,
        }
    }

    /// The instances, if this caller balances over several.
    pub fn balancer(&self) -> Option<&Balancer> {
        match &self.route {
            Route::Many(b) => Some(b),
            Route::One(_) => None,
        }
    }

    /// Calls `method` with an encoded `body` under this caller's options; retried when the
    /// error proves it did not run (the target's [`RetryPolicy`](crate::RetryPolicy)).
    pub async fn call(&self, method: u32, body: Bytes) -> Result<Bytes, RpcError> {
        self.call_as(method, body, false).await
    }

    /// Calls an idempotent `method` (as `#[idempotent]` methods of
    /// [`service!`](crate::service) do): also retried after errors that say it may have
    /// run, and hedged if the policy hedges. See
    /// [`Client::call_idempotent`](crate::Client::call_idempotent).
    pub async fn call_idempotent(&self, method: u32, body: Bytes) -> Result<Bytes, RpcError> {
        self.call_as(method, body, true).await
    }

    pub(crate) async fn call_as(
        &self,
        method: u32,
        body: Bytes,
        idempotent: bool,
    ) -> Result<Bytes, RpcError> {
        let deadline = match self.deadline {
            Deadline::Default => None,
            Deadline::After(t) => Some(Instant::now() + t),
            Deadline::At(at) => Some(at),
        };
        match &self.route {
            Route::One(client) => {
                let request = Request {
                    method,
                    metadata: Default::default(),
                    body,
                    deadline: client.deadline_or_default(deadline),
                };
                if idempotent {
                    client.call_request_idempotent(request).await
                } else {
                    client.call_request(request).await
                }
            }
            Route::Many(balancer) => {
                balancer
                    .call_with(method, body, deadline, self.key, idempotent)
                    .await
            }
        }
    }
}
