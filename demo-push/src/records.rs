//! What a delivery leaves to write after it: attempt counts and ACKs, batched by bounded
//! worker pools so a connection's task never waits on the store (many ACKs become one
//! UPDATE per user).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::PushError;
use crate::saver::Saver;
use crate::workers::{Overflow, Workers};

/// Runs a store update again while it fails (a store restarting, a saver restarting):
/// five tries over about three seconds, then the last error. An invalid request is not
/// retried, and an update that is not `idempotent` is not retried after an error that says
/// it may have run (a delivery counted twice would use up a message's attempts early; one
/// not counted costs at most one more delivery).
pub async fn retrying<T, F, Fut>(idempotent: bool, mut f: F) -> Result<T, PushError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PushError>>,
{
    let mut wait = Duration::from_millis(100);
    for _ in 0..4 {
        match f().await {
            Ok(v) => return Ok(v),
            Err(PushError::Invalid(m)) => return Err(PushError::Invalid(m)),
            Err(e) if !idempotent && e.may_have_run() => return Err(e),
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
    f().await
}

/// The write-behind pools of one component.
#[derive(Debug, Clone)]
pub struct Records {
    acks: Workers<(String, Vec<u64>)>,
    delivered: Workers<(u64, Vec<String>)>,
}

impl Records {
    /// Pools writing to `saver`; a row sent `max_attempts` times is given up as it is
    /// recorded.
    pub fn start(saver: Arc<dyn Saver>, max_attempts: u32) -> Records {
        let acks = {
            let saver = Arc::clone(&saver);
            Workers::spawn(
                "acks",
                2,
                65_536,
                Overflow::Wait(Duration::from_millis(50)),
                256,
                move |batch: Vec<(String, Vec<u64>)>| {
                    let saver = Arc::clone(&saver);
                    async move {
                        let mut by_user: HashMap<String, Vec<u64>> = HashMap::new();
                        for (uid, ids) in batch {
                            by_user.entry(uid).or_default().extend(ids);
                        }
                        for (uid, ids) in by_user {
                            let result =
                                retrying(true, || saver.ack(uid.clone(), ids.clone())).await;
                            if let Err(e) = result {
                                // The messages stay pending: sent again on the next
                                // connect (at least once).
                                tracing::warn!(uid, error = %e, "recording acks failed");
                            }
                        }
                    }
                },
            )
        };
        let delivered = Workers::spawn(
            "delivered",
            2,
            65_536,
            Overflow::Shed,
            256,
            move |batch: Vec<(u64, Vec<String>)>| {
                let saver = Arc::clone(&saver);
                async move {
                    let mut by_message: HashMap<u64, Vec<String>> = HashMap::new();
                    for (id, uids) in batch {
                        by_message.entry(id).or_default().extend(uids);
                    }
                    for (id, uids) in by_message {
                        let recorded =
                            retrying(false, || saver.delivered(id, uids.clone(), max_attempts))
                                .await;
                        if let Err(e) = recorded {
                            tracing::warn!(id, error = %e, "recording deliveries failed");
                        }
                    }
                }
            },
        );
        Records { acks, delivered }
    }

    /// Records that `uid` acknowledged `ids`, later. `false` when the queue is full: the
    /// messages stay pending and are sent again (at least once).
    pub fn ack(&self, uid: String, ids: Vec<u64>) -> bool {
        self.acks.try_submit((uid, ids)).is_ok()
    }

    /// Records that message `id` was sent to `uids` (one attempt each), later; shed when
    /// the queue is full (an attempt count may then be low).
    pub fn delivered(&self, id: u64, uids: Vec<String>) {
        if !uids.is_empty() {
            let _ = self.delivered.try_submit((id, uids));
        }
    }

    /// Reads the pools' queue depths without keeping them alive.
    pub fn depths(&self) -> impl Fn() -> Vec<(&'static str, usize)> + Send + Sync + 'static {
        let (acks, delivered) = (self.acks.depth(), self.delivered.depth());
        move || vec![("acks", acks()), ("delivered", delivered())]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

    use super::*;

    fn failure(may_have_run: bool) -> PushError {
        PushError::Unavailable {
            service: "saver",
            detail: "connection lost".into(),
            may_have_run,
        }
    }

    #[tokio::test]
    async fn an_update_that_may_have_run_is_retried_only_when_idempotent() {
        for (idempotent, calls_expected) in [(false, 1), (true, 2)] {
            let calls = AtomicU32::new(0);
            let result = retrying(idempotent, || async {
                if calls.fetch_add(1, SeqCst) == 0 {
                    Err(failure(true))
                } else {
                    Ok(())
                }
            })
            .await;
            assert_eq!(
                calls.load(SeqCst),
                calls_expected,
                "idempotent: {idempotent}"
            );
            assert_eq!(result.is_ok(), idempotent);
        }
    }

    #[tokio::test]
    async fn an_update_that_did_not_run_is_retried_either_way() {
        let calls = AtomicU32::new(0);
        let result = retrying(false, || async {
            if calls.fetch_add(1, SeqCst) == 0 {
                Err(failure(false))
            } else {
                Ok(())
            }
        })
        .await;
        assert!(result.is_ok());
        assert_eq!(calls.load(SeqCst), 2);
    }
}
