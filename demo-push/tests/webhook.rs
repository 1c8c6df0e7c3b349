//! The coordinator: upstream data and online/offline callbacks reach the app's webhook —
//! in one process, and through the coordinator service of a cluster.

mod common;

use std::time::Duration;

use axum::Json;
use axum::routing::post;
use common::*;
use serde_json::Value;
use tokio::sync::mpsc;

/// A webhook on an ephemeral port; its events arrive on the receiver.
async fn webhook() -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        post(move |Json(event): Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event);
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
