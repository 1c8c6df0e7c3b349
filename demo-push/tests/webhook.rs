//! The coordinator: upstream data and online/offline callbacks reach the app's webhook —
//! in one process, and through the coordinator service of a cluster.

mod common;

use std::time::Duration;

use axum::Json;
use axum::routing::post;
use common::*;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A webhook on an ephemeral port; its events arrive on the receiver.
async fn webhook() -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: http::HeaderMap, Json(event): Json<Value>| {
            let tx = tx.clone();
            async move {
                // Every event carries its id (a receiver deduplicates by it); without one
                // the event is not passed on and the test waiting for it fails.
                let id = headers.get("webhook-id").and_then(|v| v.to_str().ok());
                if id.is_some_and(|id| id.starts_with("evt_") && id.len() == 36) {
                    let _ = tx.send(event);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

both_modes! {
    the_webhook_receives_online_upstream_and_offline,
    upstream_for_an_app_without_a_webhook_is_refused_with_a_reason,
    a_webhook_that_is_down_is_counted_and_the_room_carries_on,
    upstream_is_routed_by_app_and_type,
    subscriptions_reach_the_register_and_the_presence_callbacks,
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a webhook event in time")
        .unwrap()
}

async fn the_webhook_receives_online_upstream_and_offline<S: Starter>() {
    let (url, mut events) = webhook().await;
    let s = S::start_with(|c| c.apps[0].webhook = Some(url)).await;
    let client = s.client_with("h", |c| c.device = "phone".into());
    let mut client = client;
    connected(&mut client).await;
    let online = next(&mut events).await;
    assert_eq!(
        (
            online["event"].as_str(),
            online["app"].as_str(),
            online["uid"].as_str(),
            online["device"].as_str()
        ),
        (Some("online"), Some("demo"), Some("h"), Some("phone"))
    );
    let reply = client
        .upstream("demo", "chat", "hello server")
        .await
        .unwrap();
    assert!(reply.ok, "{reply:?}");
    let up = next(&mut events).await;
    assert_eq!(
        (
            up["event"].as_str(),
            up["type"].as_str(),
            up["body"].as_str(),
            up["uid"].as_str()
        ),
        (
            Some("upstream"),
            Some("chat"),
            Some("hello server"),
            Some("h")
        )
    );
    drop(client);
    let offline = next(&mut events).await;
    assert_eq!(
        (offline["event"].as_str(), offline["uid"].as_str()),
        (Some("offline"), Some("h"))
    );
}

async fn upstream_for_an_app_without_a_webhook_is_refused_with_a_reason<S: Starter>() {
    let (url, _events) = webhook().await;
    let s = S::start_with(|c| c.apps[0].webhook = Some(url)).await;
    let mut client = s.client_with("h", |c| c.apps = vec!["demo".into(), "other".into()]);
    connected(&mut client).await;
    let reply = client.upstream("other", "chat", "x").await.unwrap();
    assert!(!reply.ok);
    assert!(reply.reason.unwrap().contains("takes no upstream"));
}

async fn a_webhook_that_is_down_is_counted_and_the_room_carries_on<S: Starter>() {
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let s = S::start_with(|c| c.apps[0].webhook = Some(dead)).await;
    let mut client = s.online("h").await;
    let reply = client.upstream("demo", "chat", "x").await.unwrap();
    assert!(reply.ok, "queued for the webhook");
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.metric("longlink_push_webhook_errors_total").await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "webhook errors never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = s
        .push(
            "unicast",
            serde_json::json!({"uid": "h", "body": "still delivering"}),
        )
        .await;
    assert_eq!(message(&mut client).await.0, id);
}

async fn upstream_is_routed_by_app_and_type<S: Starter>() {
    let (default_url, mut default_events) = webhook().await;
    let (orders_url, mut order_events) = webhook().await;
    let s = S::start_with(|c| {
        c.apps[0].webhook = Some(default_url);
        c.apps[0]
            .upstream_routes
            .insert("orders".into(), orders_url);
    })
    .await;
    let client = s.online("h").await;
    assert_eq!(next(&mut default_events).await["event"], "online");
    assert!(
        client
            .upstream("demo", "orders", "order 1")
            .await
            .unwrap()
            .ok
    );
    assert!(client.upstream("demo", "chat", "hi").await.unwrap().ok);
    let order = next(&mut order_events).await;
    assert_eq!(
        (order["type"].as_str(), order["body"].as_str()),
        (Some("orders"), Some("order 1"))
    );
    let chat = next(&mut default_events).await;
    assert_eq!(
        (chat["type"].as_str(), chat["body"].as_str()),
        (Some("chat"), Some("hi"))
    );
    drop(client);
    assert_eq!(next(&mut default_events).await["event"], "offline");
    assert!(
        order_events.try_recv().is_err(),
        "presence goes to the default webhook only"
    );
}

/// Waits until `GET /users/{uid}` with `key` says `online`.
async fn wait_online<S: Harness>(s: &S, uid: &str, key: &str, online: bool) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, answer) = s.get(&format!("/users/{uid}"), key).await;
        assert_eq!(status, 200, "{answer}");
        if answer["online"].as_bool() == Some(online) {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{uid} never became online={online} for that app: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next event of `kind` for `app`, skipping others.
async fn next_of(rx: &mut mpsc::UnboundedReceiver<Value>, kind: &str, app: &str) -> Value {
    loop {
        let event = next(rx).await;
        if event["event"] == kind && event["app"] == app {
            return event;
        }
    }
}

async fn subscriptions_reach_the_register_and_the_presence_callbacks<S: Starter>() {
    let (url, mut events) = webhook().await;
    let s = S::start_with(|c| {
        c.apps[0].webhook = Some(url.clone());
        c.apps[1].webhook = Some(url);
    })
    .await;
    // A message of `other` waiting before the user receives `other` at all.
    let (status, waiting) = s
        .post(
            "/push/unicast",
            OTHER_KEY,
            json!({"uid": "sub", "body": "waited"}),
        )
        .await;
    assert_eq!(status, 200, "{waiting}");
    let mut client = s.online("sub").await; // subscribes `demo` only
    next_of(&mut events, "online", "demo").await;
    wait_online(&s, "sub", OTHER_KEY, false).await;

    // SUBSCRIBE other: the register, the webhook and the waiting message follow at once.
    client.subscribe(vec!["other".into()]).await.unwrap();
    let user = wait_online(&s, "sub", OTHER_KEY, true).await;
    assert_eq!(
        user["sessions"][0]["apps"],
        json!(["demo", "other"]),
        "{user}"
    );
    next_of(&mut events, "online", "other").await;
    let (id, body) = message(&mut client).await;
    assert_eq!(
        (id, body.as_str()),
        (waiting["id"].as_u64().unwrap(), "waited")
    );

    // UNSUBSCRIBE demo: offline for demo (its key no longer sees the user), still online
    // for other; a kick by demo finds nobody, one by other closes the connection.
    client.unsubscribe(vec!["demo".into()]).await.unwrap();
    wait_online(&s, "sub", KEY, false).await;
    wait_online(&s, "sub", OTHER_KEY, true).await;
    next_of(&mut events, "offline", "demo").await;
    let (status, _) = s.post("/users/sub/kick", KEY, json!({})).await;
    assert_eq!(status, 404);
    let (status, answer) = s.post("/users/sub/kick", OTHER_KEY, json!({})).await;
    assert_eq!(
        (status, answer["kicked"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    // Its offline callback names the app it had at the end.
    next_of(&mut events, "offline", "other").await;
}
