//! The coordinator: forwards clients' UPSTREAM data to each app's webhook and posts
//! online/offline callbacks, through a bounded worker pool (a slow webhook fills the queue
//! and upstream is refused, instead of piling up tasks).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use longlink_codec::push::{Payload as Body, Upstream, UpstreamReply};
use serde::Serialize;

use crate::metrics::{Metrics, inc};
use crate::model::{Session, now_ms};
use crate::workers::{Overflow, Workers};

/// What a webhook receives (as a JSON POST).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WebhookEvent {
    /// A client sent data for the app.
    Upstream {
        /// The app.
        app: String,
        /// The app-defined type.
        #[serde(rename = "type")]
        kind: String,
        /// The user.
        uid: String,
        /// The device.
        device: String,
        /// The data.
        body: Body,
        /// When the room received it (Unix ms).
        ts_ms: u64,
    },
    /// A user's device connected.
    Online {
        /// The app.
        app: String,
        /// The user.
        uid: String,
        /// The device.
        device: String,
        /// The room.
        room: String,
        /// When (Unix ms).
        ts_ms: u64,
    },
    /// A user's device disconnected.
    Offline {
        /// The app.
        app: String,
        /// The user.
        uid: String,
        /// The device.
        device: String,
        /// The room.
        room: String,
        /// When (Unix ms).
        ts_ms: u64,
    },
}

impl WebhookEvent {
    fn app(&self) -> &str {
        match self {
            WebhookEvent::Upstream { app, .. }
            | WebhookEvent::Online { app, .. }
            | WebhookEvent::Offline { app, .. } => app,
        }
    }
}

/// Where one app's events go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppHooks {
    /// Online/offline callbacks, and upstream data of types without their own route.
    pub webhook: Option<String>,
    /// Upstream type → URL: upstream is routed by (app, type).
    pub upstream: HashMap<String, String>,
}

impl AppHooks {
    fn upstream_url(&self, kind: &str) -> Option<&String> {
        self.upstream.get(kind).or(self.webhook.as_ref())
    }
}

/// Posts webhook events.
#[derive(Clone)]
pub struct Coordinator {
    webhooks: Arc<HashMap<String, AppHooks>>,
    upstream: Workers<(String, WebhookEvent)>,
    presence: Workers<(String, WebhookEvent)>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("webhooks", &self.webhooks)
            .finish()
    }
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    event: &WebhookEvent,
) -> Result<(), String> {
    let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    // The event's id (as Standard Webhooks name it): a receiver that sees one twice — a
    // proxy's retry, say — keeps the first.
    let id = format!("evt_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", id)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .map_err(|_| "webhook timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("webhook answered {status}"))
    }
}

crate::contract! {
    /// What the rooms ask of the coordinator: the [`Coordinator`] in this process, or the
    /// coordinator service over RPC in the cluster.
    pub trait Callbacks: service coordinator_svc as "coordinator" {
        // Neither is idempotent: each run posts a webhook, so a retry after it may have
        // run would tell the business twice (online twice, the upstream data twice).
        // They are retried only when the error proves they did not run.
        /// Posts an online (or offline) callback for each app the session names.
        fn presence(session: Session, online: bool) -> ();
        /// Forwards upstream data; the reply tells the client whether it was taken.
        fn upstream(session: Session, upstream: Upstream) -> UpstreamReply;
    }
}

#[async_trait::async_trait]
impl Callbacks for Coordinator {
    async fn presence(&self, session: Session, online: bool) -> Result<(), crate::PushError> {
        Coordinator::presence(self, &session, online).await;
        Ok(())
    }

    async fn upstream(
        &self,
        session: Session,
        upstream: Upstream,
    ) -> Result<UpstreamReply, crate::PushError> {
        Ok(Coordinator::upstream(self, &session, upstream))
    }
}

impl Coordinator {
    /// A coordinator posting to `webhooks` (app → URL; apps without one get nothing).
    pub fn new(webhooks: HashMap<String, AppHooks>, metrics: Arc<Metrics>) -> Coordinator {
        let metrics_page = Arc::clone(&metrics);
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let handler = move |batch: Vec<(String, WebhookEvent)>| {
            let client = client.clone();
            let metrics = Arc::clone(&metrics);
            async move {
                for (url, event) in batch {
                    if let Err(e) = post(&client, &url, &event).await {
                        inc(&metrics.webhook_errors);
                        tracing::warn!(app = event.app(), error = %e, "webhook failed");
                    }
                }
            }
        };
        let coordinator = Coordinator {
            // Upstream is refused when the queue is full (the client is told); presence
            // callbacks wait a little, then are refused too.
            upstream: Workers::spawn("upstream", 8, 4096, Overflow::Reject, 1, handler.clone()),
            presence: Workers::spawn(
                "presence",
                4,
                16384,
                Overflow::Wait(Duration::from_millis(100)),
                1,
                handler,
            ),
            webhooks: Arc::new(webhooks),
        };
        let (upstream, presence) = (coordinator.upstream.depth(), coordinator.presence.depth());
        metrics_page.add_queues(move || vec![("webhooks", upstream() + presence())]);
        coordinator
    }

    /// Queues upstream data for the URL its (app, type) routes to; the reply tells the
    /// client whether it was taken.
    pub fn upstream(&self, session: &Session, upstream: Upstream) -> UpstreamReply {
        let Some(url) = self
            .webhooks
            .get(&upstream.app)
            .and_then(|hooks| hooks.upstream_url(&upstream.kind))
            .cloned()
        else {
            return UpstreamReply {
                ok: false,
                reason: Some(format!(
                    "app {:?} takes no upstream of type {:?}",
                    upstream.app, upstream.kind
                )),
            };
        };
        let event = WebhookEvent::Upstream {
            app: upstream.app,
            kind: upstream.kind,
            uid: session.uid.clone(),
            device: session.device.clone(),
            body: upstream.body,
            ts_ms: now_ms(),
        };
        match self.upstream.try_submit((url, event)) {
            Ok(()) => UpstreamReply {
                ok: true,
                reason: None,
            },
            Err(e) => UpstreamReply {
                ok: false,
                reason: Some(e.to_string()),
            },
        }
    }

    /// Posts an online (or offline) callback to the webhook of each app the session
    /// subscribed.
    pub async fn presence(&self, session: &Session, online: bool) {
        for app in &session.apps {
            let Some(url) = self.webhooks.get(app).and_then(|h| h.webhook.clone()) else {
                continue;
            };
            let (app, uid, device, room, ts_ms) = (
                app.clone(),
                session.uid.clone(),
                session.device.clone(),
                session.room.clone(),
                now_ms(),
            );
            let event = if online {
                WebhookEvent::Online {
                    app,
                    uid,
                    device,
                    room,
                    ts_ms,
                }
            } else {
                WebhookEvent::Offline {
                    app,
                    uid,
                    device,
                    room,
                    ts_ms,
                }
            };
            let _ = self.presence.submit((url, event)).await;
        }
    }

    /// Events waiting to be posted.
    pub fn queued(&self) -> usize {
        self.upstream.queued() + self.presence.queued()
    }
}
