//! The cluster under faults, with real processes, the real Redis and the real MariaDB: a
//! room killed with SIGKILL, the saver, register and center restarted, Redis flushed, a room
//! drained, Redis and MariaDB cut off. In each, every message the API accepted reaches its
//! user and is acknowledged; what the API refuses, it refuses at once with a clear error.

mod common;

mod cluster {
    use std::collections::{BTreeSet, HashMap};
    use std::time::Duration;

    use longlink_push_client::Event;
    use serde_json::{Value, json};

    use super::common::cluster::{Options, TestCluster, start, start_opts};
    use super::common::fleet::{Fleet, raw_post, users, wait_acked};
    use super::common::proxy::Proxy;
    use super::common::*;

    /// Pushes `count` unicasts round-robin to `uids`, one every `every`, retrying a refused
    /// push (a 503 during a fault) until it is accepted; returns what was accepted and how
    /// many refusals there were. Between pushes it runs `during(i)`.
    async fn traffic(
        s: &TestCluster,
        uids: &[String],
        count: usize,
        every: Duration,
        mut during: impl AsyncFnMut(usize),
    ) -> (HashMap<String, Vec<u64>>, usize) {
        let mut sent: HashMap<String, Vec<u64>> = HashMap::new();
        let mut refused = 0;
        for i in 0..count {
            during(i).await;
            let uid = &uids[i % uids.len()];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let (status, answer) = s
                    .post(
                        "/push/unicast",
                        KEY,
                        json!({"uid": uid, "body": format!("m{i}")}),
                    )
                    .await;
                if status == 200 {
                    sent.entry(uid.clone())
                        .or_default()
                        .push(answer["id"].as_u64().unwrap());
                    break;
                }
                // Refused: a clear 503 (nothing stored), never a hang.
                assert_eq!(status, 503, "{answer}");
                refused += 1;
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "refused for 30 s: {answer}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(every).await;
        }
        (sent, refused)
    }

    /// A push that tolerates the center being down for a moment (connection refused).
    async fn post_retrying(s: &TestCluster, path: &str, body: Value) -> (u16, Value) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let result = tokio::spawn({
                let url = format!("{}{path}", s.center_url());
                let body = body.to_string();
                async move { raw_post(&url, &body).await }
            })
            .await
            .unwrap();
            match result {
                Some(answer) => return answer,
                None => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "the center never came back"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unicast_group_and_broadcast_reach_clients_on_both_rooms() {
        let s = start().await;
        let uids = users(8);
        let fleet = Fleet::connect(&s, &uids).await;
        let rooms: BTreeSet<String> = fleet.rooms().into_values().collect();
        assert_eq!(
            rooms.len(),
            2,
            "the dispatcher spreads users over both rooms: {rooms:?}"
        );
        let mut sent: HashMap<String, Vec<u64>> = HashMap::new();
        for uid in &uids {
            let id = s.push("unicast", json!({"uid": uid, "body": "one"})).await;
            sent.entry(uid.clone()).or_default().push(id);
        }
        let (status, _) = s.post("/groups/all/bind", KEY, json!({"uids": uids})).await;
        assert_eq!(status, 200);
        let id = s
            .push("group", json!({"group": "all", "body": "group"}))
            .await;
        for uid in &uids {
            sent.get_mut(uid).unwrap().push(id);
        }
        let (status, report) = s.post("/push/broadcast", KEY, json!({"body": "all"})).await;
        assert_eq!(
            (status, report["delivered"].as_u64()),
            (200, Some(8)),
            "{report}"
        );
        for uid in &uids {
            sent.get_mut(uid)
                .unwrap()
                .push(report["id"].as_u64().unwrap());
        }
        let (status, report) = s
            .post(
                "/push/multicast",
                KEY,
                json!({"uids": uids, "body": "multi"}),
            )
            .await;
        assert_eq!(
            (status, report["delivered"].as_u64()),
            (200, Some(8)),
            "{report}"
        );
        for uid in &uids {
            sent.get_mut(uid)
                .unwrap()
                .push(report["id"].as_u64().unwrap());
        }
        fleet.wait_all(&sent, WAIT).await;
        wait_acked(&s, &sent).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_room_killed_under_traffic_loses_no_message() {
        let s = start().await;
        let uids = users(12);
        let fleet = Fleet::connect(&s, &uids).await;
        let (sent, _) = traffic(&s, &uids, 120, Duration::from_millis(15), async |i| {
            if i == 40 {
                s.kill("room-1");
            }
            if i == 90 {
                s.restart("room-1");
            }
        })
        .await;
        // Every user ends up connected (to room-2, or to room-1 again once restarted) and
        // gets every message: live, or stored and redelivered on its reconnect.
        fleet.wait_all(&sent, Duration::from_secs(30)).await;
        wait_acked(&s, &sent).await;
        let total: usize = sent.values().map(Vec::len).sum();
        assert_eq!(total, 120);
        assert!(s.metric("longlink_push_room_rpc_errors_total").await <= 120);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saver_register_and_center_restarted_one_at_a_time_lose_nothing() {
        let s = start().await;
        let uids = users(6);
        let fleet = Fleet::connect(&s, &uids).await;
        let (sent, refused) = traffic(&s, &uids, 90, Duration::from_millis(20), async |i| {
            match i {
                15 => {
                    s.kill("saver");
                    s.restart("saver");
                }
                40 => {
                    s.kill("register");
                    s.restart("register");
                }
                65 => {
                    s.kill("center");
                    s.restart("center");
                    // The pusher waits for the new center like any API user would.
                    let _ = post_retrying(
                        &s,
                        "/push/unicast",
                        json!({"uid": "nobody", "body": "ping"}),
                    )
                    .await;
                }
                _ => {}
            }
        })
        .await;
        fleet.wait_all(&sent, Duration::from_secs(30)).await;
        wait_acked(&s, &sent).await;
        // Clients barely noticed: nobody was disconnected by a service restart.
        assert_eq!(fleet.rooms().len(), uids.len());
        eprintln!("refused while restarting: {refused}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flushed_redis_is_refilled_by_the_rooms_and_messages_survive_in_mariadb() {
        // Its own Redis database, so that the flush touches no other test.
        let options = Options {
            redis: "redis://127.0.0.1:6379/9".into(),
            real_redis: "redis://127.0.0.1:6379/9".into(),
            ..Options::default()
        };
        let s = start_opts(options, |_| {}).await;
        let uids = users(6);
        let stored = s
            .push("unicast", json!({"uid": "offline", "body": "kept"}))
            .await;
        let fleet = Fleet::connect(&s, &uids).await;
        for uid in &uids {
            s.wait_sessions(uid, 1).await;
        }
        let redis = redis::Client::open("redis://127.0.0.1:6379/9").unwrap();
        let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
        let (sent, _) = traffic(&s, &uids, 60, Duration::from_millis(20), async |i| {
            if i == 20 {
                let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
            }
        })
        .await;
        fleet.wait_all(&sent, Duration::from_secs(20)).await;
        wait_acked(&s, &sent).await;
        // The rooms re-flushed their sessions; the stored message is still in MariaDB.
        for uid in &uids {
            s.wait_sessions(uid, 1).await;
        }
        assert!(s.metric("longlink_push_reflushes_total").await >= 1);
        let (status, answer) = s.get(&format!("/messages/{stored}"), KEY).await;
        assert_eq!(
            (status, &answer["recipients"][0]["status"]),
            (200, &json!("stored"))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_drained_room_moves_its_clients_within_the_window_and_loses_nothing() {
        let s = start().await;
        let uids = users(10);
        let fleet = Fleet::connect(&s, &uids).await;
        let on_room_1 = fleet.rooms().values().filter(|r| *r == "room-1").count();
        assert!(on_room_1 > 0, "{:?}", fleet.rooms());
        let started = tokio::time::Instant::now();
        let (sent, _) = traffic(&s, &uids, 80, Duration::from_millis(25), async |i| {
            if i == 10 {
                // A planned restart: SIGTERM drains over the 1 s window, then exits.
                s.terminate("room-1");
            }
        })
        .await;
        fleet.wait_all(&sent, Duration::from_secs(20)).await;
        wait_acked(&s, &sent).await;
        assert!(
            fleet.rooms().values().all(|r| r == "room-2"),
            "{:?}",
            fleet.rooms()
        );
        // The window is 1 s; the traffic took about 2 s; the drained room has exited.
        assert!(started.elapsed() < Duration::from_secs(15));
        let deadline = tokio::time::Instant::now() + WAIT;
        while !s.exited("room-1") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the drained room never exited"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mariadb_and_redis_cut_off_are_refused_clearly_and_service_resumes() {
        let mysql = Proxy::start("127.0.0.1:3306").await;
        let redis = Proxy::start("127.0.0.1:6379").await;
        let options = Options {
            redis: format!("redis://{}/0", redis.addr),
            mysql_host: mysql.addr.to_string(),
            ..Options::default()
        };
        let s = start_opts(options, |_| {}).await;
        let uids = users(4);
        let fleet = Fleet::connect(&s, &uids).await;
        let mut sent: HashMap<String, Vec<u64>> = HashMap::new();
        let mut push = async |uid: &str| -> (u16, Value) {
            let (status, answer) = s
                .post("/push/unicast", KEY, json!({"uid": uid, "body": "x"}))
                .await;
            if status == 200 {
                sent.entry(uid.to_owned())
                    .or_default()
                    .push(answer["id"].as_u64().unwrap());
            }
            (status, answer)
        };
        assert_eq!(push("user0").await.0, 200);

        // MariaDB gone: the push is refused at once with a storage error.
        mysql.down().await;
        let started = tokio::time::Instant::now();
        let (status, answer) = push("user1").await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (503, Some("storage_unavailable")),
            "{answer}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        mysql.up();
        let deadline = tokio::time::Instant::now() + WAIT;
        while push("user1").await.0 != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the saver never resumed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Redis gone: a unicast still finds its user (every room is asked); a group push,
        // whose members live in Redis, is refused clearly.
        redis.down().await;
        let (status, answer) = push("user2").await;
        assert_eq!(status, 200, "{answer}");
        let (status, answer) = s
            .post("/push/group", KEY, json!({"group": "g", "body": "x"}))
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (503, Some("service_unavailable")),
            "{answer}"
        );
        redis.up();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, _) = s
                .post("/push/group", KEY, json!({"group": "g", "body": "x"}))
                .await;
            if status == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the register never resumed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(push("user3").await.0, 200);
        fleet.wait_all(&sent, Duration::from_secs(20)).await;
        wait_acked(&s, &sent).await;
        assert!(s.metric("longlink_push_lookup_fallbacks_total").await >= 1);
    }

    /// Redis away three times longer than a room's membership TTL, with unicasts going on:
    /// the rooms' announces expire, but the center keeps the rooms it cannot prove gone
    /// (they answer when asked), and what could not be handed over is tried again — every
    /// message reaches its user, who stayed connected the whole time, within seconds of
    /// Redis returning.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redis_outage_longer_than_the_room_ttl_strands_no_message() {
        let redis = Proxy::start("127.0.0.1:6379").await;
        let options = Options {
            redis: format!("redis://{}/0", redis.addr),
            ..Options::default()
        };
        let s = start_opts(options, |_| {}).await;
        let uids = users(8);
        let fleet = Fleet::connect(&s, &uids).await;
        let mut sent: HashMap<String, Vec<u64>> = HashMap::new();
        let outage = Duration::from_secs(3); // room_ttl_ms is 1000 here
        let mut down_at = None;
        let mut back_at = None;
        for i in 0..200 {
            if i == 20 {
                redis.down().await;
                down_at = Some(tokio::time::Instant::now());
            }
            if back_at.is_none() && down_at.is_some_and(|at| at.elapsed() >= outage) {
                redis.up();
                back_at = Some(tokio::time::Instant::now());
            }
            if i >= 120 && back_at.is_some() {
                break;
            }
            let uid = &uids[i % uids.len()];
            let (status, answer) = s
                .post(
                    "/push/unicast",
                    KEY,
                    json!({"uid": uid, "body": format!("m{i}")}),
                )
                .await;
            // A unicast is stored and accepted while Redis is away (the saver's index
            // falls back to MariaDB; the rooms are asked directly).
            assert_eq!(status, 200, "push {i}: {answer}");
            sent.entry(uid.clone())
                .or_default()
                .push(answer["id"].as_u64().unwrap());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let back_at = back_at.expect("redis came back");
        fleet.wait_all(&sent, Duration::from_secs(15)).await;
        assert!(
            back_at.elapsed() < Duration::from_secs(15),
            "delivered within seconds of Redis returning"
        );
        assert_eq!(
            fleet.reconnects.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "nobody had to reconnect for a message"
        );
        wait_acked(&s, &sent).await;
        assert!(s.metric("longlink_push_room_probes_total").await >= 1);
    }

    /// A room killed with SIGKILL says nothing of its users: the center finds it gone (not
    /// announced, not answering), removes its sessions from the register and posts each
    /// user's offline callback, once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn users_of_a_killed_room_go_offline_with_one_callback_each() {
        let (hook, mut events) = webhook().await;
        let s = super::common::cluster::start_with(|c| c.apps[0].webhook = Some(hook)).await;
        let uids = users(6);
        let fleet = Fleet::connect(&s, &uids).await;
        let on_room_1: Vec<String> = fleet
            .rooms()
            .into_iter()
            .filter(|(_, room)| room == "room-1")
            .map(|(uid, _)| uid)
            .collect();
        assert!(
            !on_room_1.is_empty(),
            "some users are on room-1: {:?}",
            fleet.rooms()
        );
        s.kill("room-1");
        let mut offline: HashMap<String, usize> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while on_room_1.iter().any(|u| !offline.contains_key(u)) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = tokio::time::timeout(left, events.recv())
                .await
                .expect("every user of room-1 goes offline")
                .unwrap();
            if event["event"] == "offline" && event["room"] == "room-1" {
                *offline
                    .entry(event["uid"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
        // Once each, and the register no longer shows them on the dead room.
        tokio::time::sleep(Duration::from_secs(2)).await;
        while let Ok(event) = events.try_recv() {
            if event["event"] == "offline" && event["room"] == "room-1" {
                *offline
                    .entry(event["uid"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
        assert!(offline.values().all(|n| *n == 1), "{offline:?}");
        for uid in &on_room_1 {
            let (_, user) = s.get(&format!("/users/{uid}"), KEY).await;
            let sessions = user["sessions"].as_array().unwrap();
            assert!(
                sessions.iter().all(|s| s["room"] != "room-1"),
                "{uid} still on the dead room: {user}"
            );
        }
    }

    /// A webhook on an ephemeral port; its events arrive on the receiver.
    async fn webhook() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(event): axum::Json<Value>| {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_overloaded_saver_is_a_clear_503_not_a_hang() {
        // One call in flight and one queued per target: a burst overflows at once.
        let s = super::common::cluster::start_with(|c| c.cluster.rpc_max_in_flight = 1).await;
        let started = tokio::time::Instant::now();
        let answers = futures_util::future::join_all((0..40).map(|i| {
            let s = &s;
            async move {
                s.post(
                    "/push/unicast",
                    KEY,
                    json!({"uid": format!("u{i}"), "body": "x"}),
                )
                .await
            }
        }))
        .await;
        assert!(started.elapsed() < WAIT);
        let mut overloaded = 0;
        for (status, answer) in &answers {
            match status {
                200 => {}
                503 => {
                    assert_eq!(answer["error"]["code"], "service_unavailable", "{answer}");
                    assert!(
                        answer["error"]["message"]
                            .as_str()
                            .unwrap()
                            .contains("overloaded"),
                        "{answer}"
                    );
                    overloaded += 1;
                }
                other => panic!("{other}: {answer}"),
            }
        }
        assert!(
            overloaded > 0,
            "a burst of 40 on a limit of 1 overflowed nothing"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pending_index_answers_from_redis_and_is_rebuilt_from_mariadb_when_lost() {
        let s = start().await;
        let redis = redis::Client::open("redis://127.0.0.1:6379/0").unwrap();
        let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
        // The saver builds the index at start.
        let deadline = tokio::time::Instant::now() + WAIT;
        while s.metric("longlink_push_hot_index_rebuilds_total").await < 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the index was never built"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A user owed nothing: answered by Redis alone.
        let hits = s.metric("longlink_push_hot_index_hits_total").await;
        let mut a = s.online("a").await;
        quiet(&mut a, Duration::from_millis(200)).await;
        assert!(s.metric("longlink_push_hot_index_hits_total").await > hits);

        // A stored message is in the index; losing the index (as a Redis flush would)
        // rebuilds it from MariaDB.
        let id = s.push("unicast", json!({"uid": "b", "body": "owed"})).await;
        let owed = format!("{}owed:b", s.prefix);
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&owed)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(members, vec![format!("{id}|*")]);
        let _: () = redis::cmd("DEL")
            .arg(&owed)
            .arg(format!("{}{{owed-index}}", s.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while s.metric("longlink_push_hot_index_rebuilds_total").await < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the index was never rebuilt"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&owed)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(members, vec![format!("{id}|*")]);
        let mut b = s.online("b").await;
        assert_eq!(message(&mut b).await, (id, "owed".to_owned()));
        s.wait_status(id, "b", "acked").await;
        drop(b);
        s.wait_sessions("b", 0).await;
        // Acked: the next lookup reads MariaDB once, prunes the entry (old enough not to
        // be a store still committing), and the one after is answered by Redis.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut b = s.online("b").await;
        quiet(&mut b, Duration::from_millis(200)).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let members: Vec<String> = redis::cmd("SMEMBERS")
                .arg(&owed)
                .query_async(&mut conn)
                .await
                .unwrap();
            if members.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never pruned: {members:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(s.metric("longlink_push_hot_index_pruned_total").await >= 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quick_reconnect_lands_on_the_same_room_and_resumes_its_session() {
        let s =
            super::common::cluster::start_with(|c| c.cluster.grace = Duration::from_millis(5000))
                .await;
        let uids = users(8);
        let mut first = HashMap::new();
        for uid in &uids {
            let mut c = s.client(uid);
            match event(&mut c).await {
                Event::Connected { room, .. } => first.insert(uid.clone(), room),
                other => panic!("{other:?}"),
            };
        }
        let rooms: BTreeSet<&String> = first.values().collect();
        assert_eq!(rooms.len(), 2, "users on both rooms: {first:?}");
        // Every client is gone (dropped above); the rooms keep their sessions in grace.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for uid in &uids {
            let mut c = s.client(uid);
            match event(&mut c).await {
                Event::Connected { room, .. } => {
                    assert_eq!(room, first[uid], "{uid} went back to its room")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(s.metric("longlink_push_resumed_total").await >= uids.len() as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_two_registers_one_dying_refuses_nothing() {
        let options = Options {
            registers: 2,
            ..Options::default()
        };
        let s = start_opts(options, |_| {}).await;
        let uids = users(6);
        let fleet = Fleet::connect(&s, &uids).await;
        s.kill("register");
        let mut sent: HashMap<String, Vec<u64>> = HashMap::new();
        for (i, uid) in uids.iter().cycle().take(30).enumerate() {
            let id = s
                .push("unicast", json!({"uid": uid, "body": format!("m{i}")}))
                .await;
            sent.entry(uid.clone()).or_default().push(id);
        }
        let (status, _) = s.post("/groups/g/bind", KEY, json!({"uids": uids})).await;
        assert_eq!(status, 200);
        let id = s.push("group", json!({"group": "g", "body": "all"})).await;
        for uid in &uids {
            sent.get_mut(uid).unwrap().push(id);
        }
        fleet.wait_all(&sent, WAIT).await;
        wait_acked(&s, &sent).await;
    }
}
