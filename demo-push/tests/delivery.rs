//! Messages reach their recipients: every addressing mode, offline storage, redelivery,
//! ACKs, expiry, the three delivery modes, kicks and drains. Each scenario runs four
//! times: against the single process (real sockets, real SQLite) and against a cluster of
//! processes (two rooms, register on Redis, saver on MariaDB, every internal call over
//! longlink-rpc), each with clients on raw TCP and on the SSE fallback (HTTP).

mod common;

use std::time::Duration;

use common::*;
use longlink_push_client::Event;
use serde_json::json;

every_transport! {
    unicast_to_an_online_user_arrives_and_is_acked,
    multicast_reaches_each_user_once,
    group_push_reaches_bound_members_only,
    broadcast_reaches_every_online_user_of_the_app,
    a_message_sent_while_offline_arrives_on_connect,
    an_unacked_message_is_redelivered_after_reconnect_and_not_after_ack,
    a_never_acking_client_sees_the_message_expire_after_the_attempt_limit,
    a_message_sent_the_attempt_limit_times_is_expired_while_the_user_stays_online,
    a_message_past_its_ttl_is_not_delivered,
    at_most_once_is_sent_to_online_users_and_never_stored,
    notify_sends_only_the_id_and_the_client_pulls_the_body,
    several_devices_each_receive_and_a_device_push_reaches_one,
    the_client_drops_a_duplicate_it_has_seen,
    a_push_repeated_with_its_idempotency_key_is_stored_and_sent_once,
    a_kicked_client_is_told_why_and_stops,
    a_drained_client_reconnects_and_receives_again,
}

async fn a_kicked_client_is_told_why_and_stops<S: Starter>() {
    let s = S::start().await;
    let mut k = s.online("k").await;
    let mut bystander = s.online("bystander").await;
    s.wait_sessions("k", 1).await;
    let (status, answer) = s
        .post("/users/k/kick", KEY, json!({"reason": "account suspended"}))
        .await;
    assert_eq!(
        (status, answer["kicked"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    assert_eq!(
        event(&mut k).await,
        Event::Kicked("account suspended".into())
    );
    let after = tokio::time::timeout(WAIT, k.next_event()).await;
    assert_eq!(after.expect("the client stops"), None);
    s.wait_sessions("k", 0).await;
    quiet(&mut bystander, Duration::from_millis(200)).await;
}

async fn a_drained_client_reconnects_and_receives_again<S: Starter>() {
    let s = S::start().await;
    let mut c = s.online("dr").await;
    s.drain_user("dr").await;
    match event(&mut c).await {
        Event::Disconnected { reason, .. } => {
            assert!(reason.contains("reconnect"), "{reason}")
        }
        other => panic!("expected the reconnect, got {other:?}"),
    }
    // Back on a room that takes it (a draining one may refuse it first: it tries again).
    loop {
        match event(&mut c).await {
            Event::Connected { .. } => break,
            Event::Disconnected { .. } => {}
            other => panic!("expected to reconnect, got {other:?}"),
        }
    }
    s.wait_sessions("dr", 1).await;
    let id = s
        .push("unicast", json!({"uid": "dr", "body": "after the drain"}))
        .await;
    assert_eq!(message(&mut c).await, (id, "after the drain".to_owned()));
    s.wait_status(id, "dr", "acked").await;
}

async fn unicast_to_an_online_user_arrives_and_is_acked<S: Starter>() {
    let s = S::start().await;
    let mut u1 = s.online("u1").await;
    // Let the connect's own look-up of what u1 is owed finish: a push racing it may be sent
    // twice, live and by that look-up (at least once, deduplicated by the client), which
    // would count two attempts. Here the push comes after it and is sent once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = s
        .push("unicast", json!({"uid": "u1", "body": "hello"}))
        .await;
    assert_eq!(message(&mut u1).await, (id, "hello".to_owned()));
    let r = s.wait_status(id, "u1", "acked").await;
    assert_eq!(r["attempts"], 1);
}

async fn multicast_reaches_each_user_once<S: Starter>() {
    let s = S::start().await;
    let mut a = s.online("a").await;
    let mut b = s.online("b").await;
    let mut c = s.online("c").await;
    let (status, report) = s
        .post(
            "/push/multicast",
            KEY,
            json!({"uids": ["a", "b", "a"], "body": "to a and b"}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["recipients"], 2); // "a" twice is one recipient
    assert_eq!(report["delivered"], 2);
    let id = report["id"].as_u64().unwrap();
    assert_eq!(message(&mut a).await.0, id);
    assert_eq!(message(&mut b).await.0, id);
    quiet(&mut c, Duration::from_millis(300)).await;
    quiet(&mut a, Duration::from_millis(100)).await;
}

async fn group_push_reaches_bound_members_only<S: Starter>() {
    let s = S::start().await;
    let mut a = s.online("a").await;
    let mut b = s.online("b").await;
    let (status, answer) = s
        .post("/groups/team/bind", KEY, json!({"uids": ["a", "b"]}))
        .await;
    assert_eq!((status, answer["members"].as_u64()), (200, Some(2)));
    let (status, _) = s
        .post("/groups/team/unbind", KEY, json!({"uid": "b"}))
        .await;
    assert_eq!(status, 200);
    let id = s
        .push("group", json!({"group": "team", "body": "team news"}))
        .await;
    assert_eq!(message(&mut a).await, (id, "team news".to_owned()));
    quiet(&mut b, Duration::from_millis(300)).await;
}

async fn broadcast_reaches_every_online_user_of_the_app<S: Starter>() {
    let s = S::start().await;
    let mut users = Vec::new();
    for i in 0..5 {
        users.push(s.online(&format!("b{i}")).await);
    }
    // A user connected for another app only is not reached.
    let mut outsider = s.client_with("x", |c| c.apps = vec!["other".into()]);
    connected(&mut outsider).await;
    let (status, report) = s
        .post("/push/broadcast", KEY, json!({"body": "everyone"}))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["delivered"], 5);
    let id = report["id"].as_u64().unwrap();
    for u in &mut users {
        assert_eq!(message(u).await, (id, "everyone".to_owned()));
    }
    quiet(&mut outsider, Duration::from_millis(300)).await;
    // The body is stored once; each reached user has a delivery row that its ACK closes.
    s.wait_status(id, "b4", "acked").await;
    assert_eq!(report["recipients"], 5);
    // At most once: nothing stored, no list; the connections reached are reported.
    let (status, report) = s
        .post(
            "/push/broadcast",
            KEY,
            json!({"body": "once", "mode": "at_most_once"}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (
            &report["recipients"],
            &report["delivered"],
            &report["stored"]
        ),
        (&json!(5), &json!(5), &json!(false))
    );
    let id = report["id"].as_u64().unwrap();
    for u in &mut users {
        assert_eq!(message(u).await, (id, "once".to_owned()));
    }
    quiet(&mut outsider, Duration::from_millis(300)).await;
}

async fn a_message_sent_while_offline_arrives_on_connect<S: Starter>() {
    let s = S::start().await;
    let id = s
        .push("unicast", json!({"uid": "late", "body": "waiting for you"}))
        .await;
    let (_, status) = s.get(&format!("/messages/{id}"), KEY).await;
    assert_eq!(status["recipients"][0]["status"], "stored");
    let mut late = s.online("late").await;
    assert_eq!(message(&mut late).await, (id, "waiting for you".to_owned()));
    s.wait_status(id, "late", "acked").await;
}

async fn an_unacked_message_is_redelivered_after_reconnect_and_not_after_ack<S: Starter>() {
    let s = S::start().await;
    let mut first = s.client_with("r", |c| c.auto_ack = false);
    connected(&mut first).await;
    let id = s
        .push("unicast", json!({"uid": "r", "body": "ack me"}))
        .await;
    assert_eq!(message(&mut first).await.0, id);
    s.wait_status(id, "r", "delivered").await;
    drop(first);
    s.wait_sessions("r", 0).await;

    // Reconnect without ACKing: it comes again (counted as a redelivery).
    let mut second = s.client_with("r", |c| c.auto_ack = false);
    connected(&mut second).await;
    assert_eq!(message(&mut second).await.0, id);
    let r = s.wait_status(id, "r", "delivered").await;
    assert!(r["attempts"].as_u64().unwrap() >= 1);
    second.ack(vec![id]).await.unwrap();
    s.wait_status(id, "r", "acked").await;
    drop(second);
    s.wait_sessions("r", 0).await;

    // After the ACK, a reconnect brings nothing.
    let mut third = s.online("r").await;
    quiet(&mut third, Duration::from_millis(500)).await;
    assert!(s.metric("longlink_push_redeliveries_total").await >= 1);
}

async fn a_never_acking_client_sees_the_message_expire_after_the_attempt_limit<S: Starter>() {
    let s = S::start_with(|c| c.push.max_attempts = 2).await;
    let id = s
        .push("unicast", json!({"uid": "n", "body": "never acked"}))
        .await;
    for attempt in 1..=2 {
        let mut c = s.client_with("n", |c| c.auto_ack = false);
        connected(&mut c).await;
        assert_eq!(message(&mut c).await.0, id, "attempt {attempt}");
        // Wait for the attempt to be recorded before reconnecting (the last one may be
        // given up by the sweep as soon as it is).
        s.wait_attempts(id, "n", attempt).await;
        drop(c);
        s.wait_sessions("n", 0).await;
    }
    // The third connect finds it given up: not sent, marked expired.
    let mut c = s.client_with("n", |c| c.auto_ack = false);
    connected(&mut c).await;
    let r = s.wait_status(id, "n", "expired").await;
    assert_eq!(r["attempts"], 2);
    quiet(&mut c, Duration::from_millis(300)).await;
}

async fn a_message_sent_the_attempt_limit_times_is_expired_while_the_user_stays_online<
    S: Starter,
>() {
    let s = S::start_with(|c| {
        c.push.max_attempts = 2;
        c.sweep_interval = Duration::from_secs(1);
    })
    .await;
    let id = s
        .push("unicast", json!({"uid": "x", "body": "never acked"}))
        .await;
    let mut first = s.client_with("x", |c| c.auto_ack = false);
    connected(&mut first).await;
    assert_eq!(message(&mut first).await.0, id);
    s.wait_attempts(id, "x", 1).await;
    drop(first);
    s.wait_sessions("x", 0).await;
    // The second send is the last one the client is trusted with; it stays connected.
    let mut second = s.client_with("x", |c| c.auto_ack = false);
    connected(&mut second).await;
    assert_eq!(message(&mut second).await.0, id);
    // Given up at the next sweep: the status says so without another connect.
    let r = s.wait_status(id, "x", "expired").await;
    assert_eq!(r["attempts"], 2);
}

async fn a_message_past_its_ttl_is_not_delivered<S: Starter>() {
    let s = S::start().await;
    let id = s
        .push(
            "unicast",
            json!({"uid": "t", "body": "short-lived", "ttl_secs": 1}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut t = s.online("t").await;
    quiet(&mut t, Duration::from_millis(300)).await;
    s.wait_status(id, "t", "expired").await;
}

async fn at_most_once_is_sent_to_online_users_and_never_stored<S: Starter>() {
    let s = S::start().await;
    let mut u = s.online("m").await;
    let (status, report) = s
        .post(
            "/push/unicast",
            KEY,
            json!({"uid": "m", "body": "typing…", "mode": "at_most_once"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["stored"], false);
    let id = report["id"].as_u64().unwrap();
    assert_eq!(message(&mut u).await, (id, "typing…".to_owned()));
    let (status, _) = s.get(&format!("/messages/{id}"), KEY).await;
    assert_eq!(status, 404);
    // Offline users miss it: nothing waits for them.
    s.push(
        "unicast",
        json!({"uid": "off", "body": "gone", "mode": "at_most_once"}),
    )
    .await;
    let mut off = s.online("off").await;
    quiet(&mut off, Duration::from_millis(300)).await;
}

async fn notify_sends_only_the_id_and_the_client_pulls_the_body<S: Starter>() {
    let s = S::start().await;
    let mut u = s.online("p").await;
    let big = "x".repeat(10_000);
    let id = s
        .push(
            "unicast",
            json!({"uid": "p", "body": big, "mode": "notify"}),
        )
        .await;
    let (got, key) = message(&mut u).await;
    assert_eq!((got, key), (id, id.to_string()));
    assert_eq!(u.pull(id).await.unwrap(), big.as_bytes());
    // Someone else's token cannot pull it.
    let other = s.client("q");
    assert!(other.pull(id).await.is_err());
}

async fn several_devices_each_receive_and_a_device_push_reaches_one<S: Starter>() {
    let s = S::start().await;
    let mut phone = s.client_with("d", |c| c.device = "phone".into());
    connected(&mut phone).await;
    let mut laptop = s.client_with("d", |c| c.device = "laptop".into());
    connected(&mut laptop).await;
    s.wait_sessions("d", 2).await;
    let id = s.push("unicast", json!({"uid": "d", "body": "both"})).await;
    assert_eq!(message(&mut phone).await.0, id);
    assert_eq!(message(&mut laptop).await.0, id);
    let id = s
        .push(
            "unicast",
            json!({"uid": "d", "device": "laptop", "body": "laptop only"}),
        )
        .await;
    assert_eq!(message(&mut laptop).await, (id, "laptop only".to_owned()));
    quiet(&mut phone, Duration::from_millis(300)).await;
}

async fn the_client_drops_a_duplicate_it_has_seen<S: Starter>() {
    let s = S::start().await;
    let mut c = s.client_with("dup", |c| c.auto_ack = false);
    connected(&mut c).await;
    let id = s
        .push("unicast", json!({"uid": "dup", "body": "once"}))
        .await;
    assert_eq!(message(&mut c).await.0, id);
    s.wait_status(id, "dup", "delivered").await;
    // The room asks everyone to reconnect (a drain); the same client comes back and is
    // sent the unacked message again, which its dedup window reports as a duplicate.
    s.drain_user("dup").await;
    loop {
        match event(&mut c).await {
            Event::Duplicate(d) => {
                assert_eq!(d, id);
                break;
            }
            Event::Disconnected { .. } | Event::Connected { .. } => {}
            other => panic!("expected the duplicate, got {other:?}"),
        }
    }
}

async fn a_push_repeated_with_its_idempotency_key_is_stored_and_sent_once<S: Starter>() {
    let s = S::start().await;
    let mut u = s.online("idem").await;
    let push = json!({"uid": "idem", "body": "charge once", "idempotency_key": "order-7"});
    let (status, first) = s.post("/push/unicast", KEY, push.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert!(first.get("duplicate").is_none(), "{first}");
    // A business server retrying after a 503 that "may have run", or a lost answer.
    let (status, again) = s.post("/push/unicast", KEY, push).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"], "{again}");
    assert_eq!(
        (again["duplicate"].as_bool(), again["delivered"].as_u64()),
        (Some(true), Some(0))
    );
    let id = first["id"].as_u64().unwrap();
    assert_eq!(message(&mut u).await, (id, "charge once".to_owned()));
    quiet(&mut u, Duration::from_millis(300)).await;
    let (_, status) = s.get(&format!("/messages/{id}"), KEY).await;
    assert_eq!(status["recipients"].as_array().unwrap().len(), 1);
    // The key is the app's: another app may use the same one.
    let (status, other) = s
        .post(
            "/push/unicast",
            OTHER_KEY,
            json!({"uid": "idem", "body": "x", "idempotency_key": "order-7"}),
        )
        .await;
    assert_eq!(status, 200, "{other}");
    assert_ne!(other["id"], first["id"]);
}
