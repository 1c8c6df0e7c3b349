//! No single point of failure: every role of the cluster as two instances at once, real
//! processes on the real Redis and MariaDB. Ids from two centers never collide; killing one
//! instance of each role in turn (SIGKILL, not restarted) under a steady stream of
//! at-least-once unicasts and a broadcast every few seconds loses nothing; restarting every
//! instance of every role one by one with SIGTERM refuses nothing.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use longlink_push::ids::instance_of;
use parking_lot::Mutex;
use serde_json::json;

use common::KEY;
use common::cluster::{Options, TestCluster, start_opts};
use common::fleet::{Fleet, users, wait_acked};
use longlink_push_client::{ApiError, CenterApi, Pushed};

fn everything_twice() -> Options {
    Options {
        rooms: 2,
        registers: 2,
        savers: 2,
        coordinators: 2,
        dispatchers: 2,
        centers: 2,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_centers_pushing_at_once_never_issue_the_same_id() {
    let s = start_opts(everything_twice(), |_| {}).await;
    let centers = s.center_urls();
    let mut tasks = Vec::new();
    for center in &centers {
        let api = CenterApi::new([center], KEY).unwrap();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..150 {
                let body = json!({"uid": format!("u{}", i % 7), "body": "x"});
                ids.push(api.push("/push/unicast", body).await.unwrap().id);
            }
            ids
        }));
    }
    let mut all = HashSet::new();
    let mut lanes = Vec::new();
    for task in tasks {
        let ids = task.await.unwrap();
        // One center's ids increase and come from one lane.
        assert!(ids.windows(2).all(|w| w[1] > w[0]));
        let lane: HashSet<u64> = ids.iter().map(|&id| instance_of(id)).collect();
        assert_eq!(lane.len(), 1);
        lanes.extend(lane);
        all.extend(ids);
    }
    assert_eq!(all.len(), 300, "every id unique across the two centers");
    assert_ne!(lanes[0], lanes[1], "each center has its own lane");

    // A center killed and started again takes a lane and numbers above everything stored.
    let max = *all.iter().max().unwrap();
    s.kill("center-2");
    s.restart("center-2");
    let id = CenterApi::new(&s.center_urls()[1..], KEY)
        .unwrap()
        .push("/push/unicast", json!({"uid": "u0", "body": "after"}))
        .await
        .unwrap()
        .id;
    assert!(id > max && !all.contains(&id));

    // The client's errors: a refusal that trying elsewhere would not change comes back at
    // once; no center at all is "unavailable" with the key to send it again with.
    let refused = CenterApi::new(&centers, "not-the-key")
        .unwrap()
        .push("/push/unicast", json!({"uid": "u0", "body": "x"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ApiError::Refused { status: 401, .. }),
        "{refused}"
    );
    let nowhere = CenterApi::new(["http://127.0.0.1:1"], KEY)
        .unwrap()
        .timeouts(Duration::from_millis(200), Duration::from_millis(500))
        .push("/push/unicast", json!({"uid": "u0", "body": "x"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&nowhere, ApiError::Unavailable { tries, .. } if *tries >= 2),
        "{nowhere}"
    );
}

/// When a push was started and taken, its failed tries, the refusals (503, 429) among
/// them.
type Retried = (tokio::time::Instant, tokio::time::Instant, usize, usize);

/// Traffic through both centers: one at-least-once unicast every `every` to a user of
/// `uids`, a stored broadcast every 3 s, each through the center API client (the centers
/// in turn, one idempotency key per push, the next center after a failure).
struct Traffic {
    sent: Arc<Mutex<HashMap<String, Vec<u64>>>>,
    /// Every push taken.
    retried: Arc<Mutex<Vec<Retried>>>,
    pushes: Arc<std::sync::atomic::AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(s: &TestCluster, uids: Vec<String>, every: Duration) -> Traffic {
        let api = CenterApi::new(s.center_urls(), KEY).unwrap();
        let sent: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
        let retried: Arc<Mutex<Vec<Retried>>> = Arc::default();
        let pushes: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let task = {
            let (sent, retried, pushes, stop) = (
                Arc::clone(&sent),
                Arc::clone(&retried),
                Arc::clone(&pushes),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                let mut in_flight = tokio::task::JoinSet::new();
                let mut last_broadcast = tokio::time::Instant::now();
                for i in 0usize.. {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        _ = stop.cancelled() => break,
                    }
                    let broadcast = last_broadcast.elapsed() >= Duration::from_secs(3);
                    if broadcast {
                        last_broadcast = tokio::time::Instant::now();
                    }
                    let uid = uids[i % uids.len()].clone();
                    let (api, sent, retried, pushes) = (
                        api.clone(),
                        Arc::clone(&sent),
                        Arc::clone(&retried),
                        Arc::clone(&pushes),
                    );
                    // Open loop: each push on its own task, the next one on time.
                    in_flight.spawn(async move {
                        let (path, body) = if broadcast {
                            ("/push/broadcast", json!({"body": format!("b{i}")}))
                        } else {
                            (
                                "/push/unicast",
                                json!({"uid": uid, "body": format!("m{i}")}),
                            )
                        };
                        let started = tokio::time::Instant::now();
                        let Pushed {
                            id,
                            failed_tries,
                            refusals,
                            ..
                        } = api
                            .push(path, body)
                            .await
                            .expect("a center takes every push");
                        pushes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        retried.lock().push((
                            started,
                            tokio::time::Instant::now(),
                            failed_tries,
                            refusals,
                        ));
                        if !broadcast {
                            sent.lock().entry(uid).or_default().push(id);
                        }
                    });
                }
                while in_flight.join_next().await.is_some() {}
            })
        };
        Traffic {
            sent,
            retried,
            pushes,
            stop,
            task,
        }
    }

    async fn finish(self) -> (HashMap<String, Vec<u64>>, Vec<Retried>, usize) {
        self.stop.cancel();
        self.task.await.unwrap();
        let sent = self.sent.lock().clone();
        let retried = self.retried.lock().clone();
        (
            sent,
            retried,
            self.pushes.load(std::sync::atomic::Ordering::SeqCst),
        )
    }
}

/// Of the pushes started in `[from − 200 ms, from + window)` (so with those in flight at
/// `from`): how many needed another try, their failed tries, the refusals among those, and
/// the longest a push took to be taken.
fn retried_in(
    pushes: &[Retried],
    from: tokio::time::Instant,
    window: Duration,
) -> (usize, usize, usize, Duration) {
    let since = from - Duration::from_millis(200);
    let started: Vec<&Retried> = pushes
        .iter()
        .filter(|r| r.0 >= since && r.0 < from + window)
        .collect();
    let retried = started.iter().filter(|r| r.2 > 0);
    (
        retried.clone().count(),
        retried.clone().map(|r| r.2).sum(),
        retried.map(|r| r.3).sum(),
        started
            .iter()
            .map(|r| r.1.duration_since(r.0))
            .max()
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_of_each_role_killed_in_turn_loses_nothing() {
    let mut s = start_opts(everything_twice(), |_| {}).await;
    let uids = users(8);
    // The clients dispatch through either center: the first one is killed.
    let centers = s.center_urls();
    let fleet = Fleet::connect_with(&s, &uids, |c| c.also.push(centers[1].clone())).await;
    let traffic = Traffic::start(&s, uids.clone(), Duration::from_millis(25));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut kills = Vec::new();
    for name in [
        "center",
        "saver-2",
        "register-2",
        "coordinator-2",
        "dispatcher-2",
        "room-2",
    ] {
        s.kill(name);
        kills.push((name, tokio::time::Instant::now()));
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    let (sent, retried, pushes) = traffic.finish().await;
    fleet.wait_all(&sent, Duration::from_secs(30)).await;
    // room-2's users came back on room-1, dispatched by center-2: the first center was
    // dead by then.
    assert!(
        fleet.reconnects.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "room-2's users reconnected"
    );
    // The harness asks the center that is left.
    s.set_center(centers[1].clone());
    wait_acked(&s, &sent).await;
    let unicasts: usize = sent.values().map(Vec::len).sum();
    eprintln!("{pushes} pushes accepted ({unicasts} unicasts), 0 lost");
    for (name, at) in &kills {
        let (pushes, tries, refused, slowest) =
            retried_in(&retried, *at, Duration::from_millis(2500));
        eprintln!(
            "kill -9 {name}: {pushes} pushes needed another try ({tries} failed tries, {refused} of them a 503); the slowest push around it was taken in {} ms",
            slowest.as_millis()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_of_every_role_restarted_in_turn_refuses_nothing() {
    let s = start_opts(everything_twice(), |_| {}).await;
    let uids = users(8);
    let fleet = Fleet::connect(&s, &uids).await;
    let traffic = Traffic::start(&s, uids.clone(), Duration::from_millis(25));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let order = [
        "saver",
        "saver-2",
        "register",
        "register-2",
        "coordinator",
        "coordinator-2",
        "dispatcher",
        "dispatcher-2",
        "center",
        "center-2",
        "room-1",
        "room-2",
    ];
    let started = tokio::time::Instant::now();
    for name in order {
        s.terminate(name);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !s.exited(name) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s.restart(name);
        if name.starts_with("room") {
            s.wait_rooms(2).await;
        }
        // Callers' views pick the new instance up within half an announce interval.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let (sent, retried, pushes) = traffic.finish().await;
    fleet.wait_all(&sent, Duration::from_secs(30)).await;
    wait_acked(&s, &sent).await;
    let refused: usize = retried.iter().map(|r| r.3).sum();
    let retried: Vec<&Retried> = retried.iter().filter(|r| r.2 > 0).collect();
    eprintln!(
        "rolling restart of {} processes in {:?}: {pushes} pushes, 0 lost, {refused} refused, \
         {} sent on to the other center after a stopping one refused the connection",
        order.len(),
        started.elapsed(),
        retried.len()
    );
    // A stopped center's closed port sends the business server's try to the other center
    // (the recipe); no center ever answered a push with a refusal.
    assert_eq!(
        refused, 0,
        "pushes refused during the rolling restart: {retried:?}"
    );
}

/// Two centers broadcasting at once take turns on one schedule in Redis: eight stored
/// broadcasts sent at the same moment, four through each center, reserve eight turns of the
/// span the busiest room needs at `broadcast_rate` — one after another, as one center
/// would — and every user gets all eight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_centers_broadcasting_at_once_take_turns_on_one_schedule() {
    let s = start_opts(everything_twice(), |c| c.push.broadcast_rate = 10).await;
    let uids = users(10);
    let fleet = Fleet::connect(&s, &uids).await;
    // The rooms announce their connections (the busiest has at least 5: a 500 ms turn).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let redis = redis::Client::open("redis://127.0.0.1:6379/0").unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let began_ms = secs * 1000 + micros / 1000;
    let mut calls = Vec::new();
    for (i, center) in s.center_urls().iter().cycle().take(8).enumerate() {
        let api = CenterApi::new([center], KEY).unwrap();
        calls.push(tokio::spawn(async move {
            api.push("/push/broadcast", json!({"body": format!("b{i}")}))
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for call in calls {
        let pushed = call.await.unwrap();
        assert_eq!(pushed.failed_tries, 0);
        ids.push(pushed.id);
    }
    let next: u64 = redis::cmd("GET")
        .arg(format!("{}{{broadcast-pacing}}", s.prefix))
        .query_async(&mut conn)
        .await
        .expect("the centers share one schedule");
    assert!(
        next >= began_ms + 8 * 500,
        "eight turns of at least 500 ms from {began_ms}, the schedule ends at {next}"
    );
    let sent: std::collections::HashMap<String, Vec<u64>> =
        uids.iter().map(|u| (u.clone(), ids.clone())).collect();
    fleet.wait_all(&sent, Duration::from_secs(30)).await;
}

/// One stored broadcast sent to both centers at once with the same idempotency key is
/// stored once, with one user list: one message, a row per user, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broadcast_sent_to_both_centers_makes_one_user_list() {
    let s = start_opts(everything_twice(), |_| {}).await;
    let uids = users(6);
    let fleet = Fleet::connect(&s, &uids).await;
    let mut calls = Vec::new();
    for center in s.center_urls() {
        let api = CenterApi::new([center], KEY).unwrap();
        calls.push(tokio::spawn(async move {
            api.push_with_key("/push/broadcast", json!({"body": "once"}), "same-key")
                .await
                .unwrap()
        }));
    }
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    assert_eq!(answers[0].id, answers[1].id, "one message");
    assert_eq!(
        answers.iter().filter(|a| a.duplicate).count(),
        1,
        "the second is answered as a repeat"
    );
    let id = answers[0].id;
    let db = longlink_pool::db::Db::open(&format!("mysql://root@127.0.0.1:3306/{}", s.database))
        .unwrap();
    let rows = db
        .query(
            "SELECT COUNT(*) AS n FROM push_deliveries WHERE message_id = ?",
            vec![longlink_pool::db::Value::I64(id as i64)],
        )
        .await
        .unwrap();
    let n: i64 = rows[0].get("n").unwrap();
    assert_eq!(n as usize, uids.len(), "a row per user online, once");
    db.close();
    let sent: std::collections::HashMap<String, Vec<u64>> =
        uids.iter().map(|u| (u.clone(), vec![id])).collect();
    fleet.wait_all(&sent, Duration::from_secs(20)).await;
    wait_acked(&s, &sent).await;
}

/// SIGTERM to a center: `/healthz` answers 503 `draining` (a load balancer's health check
/// moves away) while requests are still answered, then the port closes and it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_center_says_draining_before_its_port_closes() {
    let s = start_opts(
        Options {
            centers: 2,
            ..Options::default()
        },
        |_| {},
    )
    .await;
    let center = s.center_urls()[1].clone();
    let health = || {
        let url = format!("{center}/healthz");
        async move {
            let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            let response = client.get(url.parse().unwrap()).await.ok()?;
            let status = response.status().as_u16();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .ok()?
                .to_bytes();
            let answer: serde_json::Value = serde_json::from_slice(&body).ok()?;
            Some((
                status,
                answer["status"].as_str().unwrap_or_default().to_owned(),
            ))
        }
    };
    assert_eq!(health().await, Some((200, "ok".to_owned())));
    s.terminate("center-2");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match health().await {
            Some((503, status)) if status == "draining" => break,
            Some((200, _)) => {}
            other => panic!("the center stopped without saying it drains: {other:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "never draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While draining it still takes pushes.
    let pushed = CenterApi::new([&center], KEY)
        .unwrap()
        .push("/push/unicast", json!({"uid": "u", "body": "x"}))
        .await
        .unwrap();
    assert_eq!(pushed.failed_tries, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !s.exited("center-2") {
        assert!(tokio::time::Instant::now() < deadline, "it never exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
