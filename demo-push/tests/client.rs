//! The client library against a dispatcher that lists a dead room first: it fails over,
//! tells the dispatcher which address failed, and asks again when the network changes.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::RawQuery;
use axum::routing::get;
use common::*;
use longlink_codec::push::Net;
use longlink_push_client::Event;
use serde_json::json;

#[tokio::test]
async fn the_client_fails_over_names_the_failed_address_and_redispatches_on_a_new_network() {
    let s = start_with(|c| c.room.heartbeats.g3 = 5).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let real = s.tcp().to_string();
    let queries = Arc::new(Mutex::new(Vec::<String>::new()));
    let app = {
        let (queries, dead, real) = (Arc::clone(&queries), dead.clone(), real.clone());
        axum::Router::new().route(
            "/dispatch",
            get(move |RawQuery(q): RawQuery| {
                let queries = Arc::clone(&queries);
                let (dead, real) = (dead.clone(), real.clone());
                async move {
                    queries.lock().unwrap().push(q.unwrap_or_default());
                    axum::Json(json!({
                        "uid": "f", "net": "wifi", "heartbeat_secs": 3,
                        "rooms": [
                            {"name": "dead", "ws": "ws://127.0.0.1:1/", "tcp": dead},
                            {"name": "room-1", "ws": "ws://127.0.0.1:1/", "tcp": real},
                        ]
                    }))
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let center = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut client = s.client_with("f", |c| c.center = center.clone());
    let mut disconnects = 0;
    let address = loop {
        match event(&mut client).await {
            Event::Disconnected { reason, .. } => {
                assert!(reason.contains(&dead), "{reason}");
                disconnects += 1;
            }
            Event::Connected {
                address,
                heartbeat_secs,
                ..
            } => {
                assert_eq!(heartbeat_secs, 3);
                break address;
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!((address, disconnects), (real.clone(), 1));
    {
        let q = queries.lock().unwrap();
        assert_eq!(q.len(), 2, "{q:?}");
        assert!(
            q[0].contains("net=wifi") && q[0].ends_with("failed="),
            "{q:?}"
        );
        let failed = dead.replace(':', "%3A");
        assert!(
            q[1].contains(&format!("failed={failed}")),
            "the dead address is named: {q:?}"
        );
    }
    // It works: a push arrives.
    let id = s
        .push("unicast", json!({"uid": "f", "body": "via failover"}))
        .await;
    assert_eq!(message(&mut client).await.0, id);

    // A new network type: a new dispatch for it, and the room's heartbeat for it.
    client.set_net(Net::G3).await.unwrap();
    loop {
        match event(&mut client).await {
            Event::Disconnected { .. } => {}
            Event::Connected { heartbeat_secs, .. } => {
                assert_eq!(heartbeat_secs, 5);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(queries.lock().unwrap().iter().any(|q| q.contains("net=3g")));
}

#[tokio::test]
async fn the_client_reconnects_after_the_room_restarts_its_connections() {
    let s = start().await;
    let mut client = s.online("again").await;
    s.system
        .room
        .drain("maintenance", std::time::Duration::from_millis(50));
    loop {
        match event(&mut client).await {
            Event::Disconnected { reason, .. } => {
                assert!(reason.contains("maintenance"), "{reason}")
            }
            Event::Connected { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    let id = s
        .push("unicast", json!({"uid": "again", "body": "after the move"}))
        .await;
    assert_eq!(message(&mut client).await.0, id);
}

#[tokio::test]
async fn a_broadcast_waits_its_turn_under_the_rate_limit() {
    let s = start_with(|c| c.push.broadcast_rate = 10).await;
    let mut users = Vec::new();
    for i in 0..5 {
        users.push(s.online(&format!("r{i}")).await);
    }
    // 5 deliveries at 10/s: the next broadcast may start 0.5 s after the first.
    let started = std::time::Instant::now();
    s.push("broadcast", json!({"body": "one"})).await;
    s.push("broadcast", json!({"body": "two"})).await;
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(450),
        "took {took:?}"
    );
    for u in &mut users {
        assert_eq!(message(u).await.1, "one");
        assert_eq!(message(u).await.1, "two");
    }
}

/// The only room goes away and comes back 8 s later: the client keeps backing off and
/// re-dispatching, and connects again by itself (it used to give up once every address it
/// knew had failed).
#[tokio::test]
async fn a_client_whose_only_room_failed_connects_again_when_it_comes_back() {
    let s = start().await;
    let proxy = common::proxy::Proxy::start(&s.tcp().to_string()).await;
    let room = proxy.addr.to_string();
    let app = {
        let room = room.clone();
        axum::Router::new().route(
            "/dispatch",
            get(move || {
                let room = room.clone();
                async move {
                    axum::Json(json!({
                        "uid": "back", "net": "wifi", "heartbeat_secs": 3,
                        "rooms": [{"name": "room-1", "ws": "ws://127.0.0.1:1/", "tcp": room}]
                    }))
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let center = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut client = s.client_with("back", |c| {
        c.center = center.clone();
        c.backoff_max = std::time::Duration::from_millis(500);
    });
    connected(&mut client).await;
    proxy.down().await;
    let down_at = tokio::time::Instant::now();
    // Down for 8 s: every attempt fails, and the client goes on trying.
    let mut failures = 0;
    while down_at.elapsed() < std::time::Duration::from_secs(8) {
        if let Ok(Some(Event::Disconnected { .. })) =
            tokio::time::timeout(std::time::Duration::from_millis(200), client.next_event()).await
        {
            failures += 1;
        }
    }
    assert!(failures >= 3, "it kept trying: {failures} failed attempts");
    proxy.up();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, client.next_event()).await {
            Ok(Some(Event::Connected { address, .. })) => {
                assert_eq!(address, room);
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("never connected again: {other:?}"),
        }
    }
    // And it is a working connection again.
    let id = s
        .push("unicast", json!({"uid": "back", "body": "welcome back"}))
        .await;
    assert_eq!(message(&mut client).await, (id, "welcome back".to_owned()));
}
