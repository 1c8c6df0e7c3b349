//! The push cluster on a Redis Cluster (three masters, three replicas, the test's own — see
//! `common/redis_cluster.rs`): the register, membership and the saver's hot index with keys
//! spread over every master; real processes delivering pushes; and a master SIGKILLed
//! under a stream of pushes, which loses none.

mod common;

mod cluster {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use longlink_codec::push::{DeliveryMode, Net};
    use longlink_pool::db::Db;
    use longlink_push::metrics::Metrics;
    use longlink_push::model::{Message, Session, now_ms};
    use longlink_push::redis_conn::RedisConn;
    use longlink_push::register::{RedisRegister, Register};
    use longlink_push::rooms::{Membership, RoomInfo};
    use longlink_push::saver::{HotSaver, Recipient, Saver, SqlSaver};
    use serde_json::json;

    use super::common::cluster::{Options, TestCluster, start_opts};
    use super::common::fleet::{Fleet, unacked_after, users};
    use super::common::redis_cluster::RedisCluster;
    use super::common::*;

    const MYSQL: &str = "mysql://root@127.0.0.1:3306";

    fn session(uid: &str, room: &str, conn: u64) -> Session {
        Session {
            uid: uid.into(),
            device: "phone".into(),
            room: room.into(),
            conn,
            net: Net::Wifi,
            apps: vec!["demo".into()],
            since_ms: 1,
        }
    }

    /// Keys on the master at `url` (`DBSIZE`).
    fn keys_on(url: &str) -> u64 {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_connection().unwrap();
        redis::cmd("DBSIZE").query(&mut conn).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn register_sessions_groups_reap_and_epoch_work_across_slots() {
        let rc = RedisCluster::start();
        let conn = RedisConn::cluster(&rc.seeds()).unwrap();
        let register = RedisRegister::new(conn, "t:", Duration::from_secs(30), Duration::ZERO);
        let uids: Vec<String> = (0..60).map(|i| format!("u{i}")).collect();
        let sessions: Vec<Session> = uids
            .iter()
            .enumerate()
            .map(|(i, uid)| session(uid, ["room-1", "room-2"][i % 2], i as u64))
            .collect();
        register.connect(sessions.clone()).await.unwrap();
        // The sessions are spread over every master.
        let masters = rc.masters();
        assert_eq!(masters.len(), 3);
        for m in &masters {
            assert!(keys_on(m) > 0, "no key on {m}");
        }

        let found = register.lookup(uids.clone()).await.unwrap();
        assert!(!found.settling);
        let expected: Vec<Vec<Session>> = sessions.iter().map(|s| vec![s.clone()]).collect();
        assert_eq!(found.sessions, expected);

        for (group, members) in [("a", &uids[..10]), ("b", &uids[10..15]), ("c", &uids[..1])] {
            for uid in members {
                register
                    .bind("demo".into(), group.into(), uid.clone())
                    .await
                    .unwrap();
            }
        }
        let mut a: Vec<String> = uids[..10].to_vec();
        a.sort();
        assert_eq!(
            register.members("demo".into(), "a".into()).await.unwrap(),
            a
        );
        let counts = register.counts().await.unwrap();
        assert_eq!((counts.users, counts.groups), (60, 3));
        register
            .unbind("demo".into(), "c".into(), uids[0].clone())
            .await
            .unwrap();
        assert_eq!(register.counts().await.unwrap().groups, 2);

        let epoch = register.epoch().await.unwrap();
        assert!(epoch > 0);
        assert_eq!(register.epoch().await.unwrap(), epoch, "one epoch");

        // Reaping a room (RENAME of its set, a hash tag) hands out its sessions once.
        let mut reaped = register.reap("room-1".into()).await.unwrap();
        reaped.sort_by_key(|s| s.conn);
        let on_room_1: Vec<Session> = sessions.iter().step_by(2).cloned().collect();
        assert_eq!(reaped, on_room_1);
        assert!(register.reap("room-1".into()).await.unwrap().is_empty());
        let found = register.lookup(uids.clone()).await.unwrap();
        for (i, sessions_of) in found.sessions.iter().enumerate() {
            assert_eq!(sessions_of.len(), i % 2, "{}: {sessions_of:?}", uids[i]);
        }
        register
            .disconnect(vec![sessions[1].clone()])
            .await
            .unwrap();
        let found = register.lookup(vec![uids[1].clone()]).await.unwrap();
        assert_eq!(found.sessions, vec![Vec::<Session>::new()]);
        assert_eq!(register.counts().await.unwrap().users, 29);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn membership_announce_and_read_work_across_slots() {
        let rc = RedisCluster::start();
        let conn = RedisConn::cluster(&rc.seeds()).unwrap();
        let membership = Membership::new(conn, "t:", Duration::from_secs(30));
        let rooms: Vec<RoomInfo> = (1..=6)
            .map(|i| RoomInfo {
                connections: i,
                seen_ms: now_ms(),
                ..RoomInfo::local(
                    &format!("room-{i}"),
                    &format!("ws://h{i}/"),
                    &format!("h{i}:1"),
                )
            })
            .collect();
        for room in &rooms {
            membership.announce(room).await.unwrap();
        }
        assert_eq!(membership.rooms().await.unwrap(), rooms);
        membership.leave("room-3").await.unwrap();
        let names: Vec<String> = membership
            .rooms()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["room-1", "room-2", "room-4", "room-5", "room-6"]);
    }

    /// A cluster that is not there yet: commands fail within about a second each (not a
    /// hang), and the same connection uses the cluster once it is formed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redis_cluster_down_at_start_fails_fast_and_is_used_once_up() {
        let ports = super::common::redis_cluster::free_ports(6);
        let seeds: Vec<String> = ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        let mut conn = RedisConn::cluster(&seeds).unwrap();
        for _ in 0..3 {
            let asked = tokio::time::Instant::now();
            let answer: redis::RedisResult<()> = redis::cmd("SET")
                .arg("k")
                .arg(1)
                .query_async(&mut conn)
                .await;
            assert!(answer.is_err());
            assert!(
                asked.elapsed() < Duration::from_secs(3),
                "a down cluster answered after {:?}",
                asked.elapsed()
            );
        }
        let _rc = RedisCluster::start_on(&ports);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let answer: redis::RedisResult<()> = redis::cmd("SET")
                .arg("k")
                .arg(1)
                .query_async(&mut conn)
                .await;
            if answer.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never used the cluster once up: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let value: u64 = redis::cmd("GET")
            .arg("k")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(value, 1);
    }

    fn message(id: u64) -> Message {
        Message {
            id,
            app: "demo".into(),
            mode: DeliveryMode::AtLeastOnce,
            body: Bytes::from("owed"),
            created_ms: now_ms(),
            expires_ms: now_ms() + 60_000,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hot_index_answers_owed_nothing_from_redis_and_owed_from_mariadb() {
        let rc = RedisCluster::start();
        let name = format!("push_rcluster_{}_{}", std::process::id(), now_ms());
        let admin = Db::open(&format!("{MYSQL}/test")).unwrap();
        admin
            .exec(&format!("CREATE DATABASE {name}"), ())
            .await
            .unwrap();
        let sql = SqlSaver::open(Db::open(&format!("{MYSQL}/{name}")).unwrap())
            .await
            .unwrap();
        let metrics = Arc::new(Metrics::default());
        let hot = HotSaver::start(
            sql,
            RedisConn::cluster(&rc.seeds()).unwrap(),
            "t:",
            Duration::from_millis(50),
            Arc::clone(&metrics),
        );
        let deadline = tokio::time::Instant::now() + WAIT;
        while metrics.hot_index_rebuilds.get() < 1 {
            assert!(tokio::time::Instant::now() < deadline, "no index built");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let to = |uid: &str| Recipient {
            uid: uid.into(),
            device: "*".into(),
        };
        for (id, uid) in [(1, "owed"), (2, "owed"), (3, "other")] {
            assert!(
                hot.store(message(id), vec![to(uid)], None)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        // Owed nothing: the index (marker and the user's set, two slots) answers alone.
        let (hits, misses) = (metrics.hot_index_hits.get(), metrics.hot_index_misses.get());
        for uid in (0..20).map(|i| format!("free{i}")) {
            let pending = hot
                .pending(uid, "phone".into(), now_ms(), 10)
                .await
                .unwrap();
            assert!(pending.is_empty());
        }
        assert_eq!(metrics.hot_index_hits.get(), hits + 20);
        assert_eq!(metrics.hot_index_misses.get(), misses);
        // Owed something: read from MariaDB.
        let pending = hot
            .pending("owed".into(), "phone".into(), now_ms(), 10)
            .await
            .unwrap();
        let ids: Vec<u64> = pending.iter().map(|p| p.message.id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(metrics.hot_index_misses.get(), misses + 1);
        // Acked: the next lookup reads MariaDB once, prunes, and then Redis answers.
        assert_eq!(hot.ack("owed".into(), vec![1, 2]).await.unwrap(), 2);
        assert!(
            hot.pending("owed".into(), "phone".into(), now_ms(), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let hits = metrics.hot_index_hits.get();
        assert!(
            hot.pending("owed".into(), "phone".into(), now_ms(), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(metrics.hot_index_hits.get(), hits + 1);
        admin
            .exec(&format!("DROP DATABASE {name}"), ())
            .await
            .unwrap();
    }

    async fn on_redis_cluster(rc: &RedisCluster) -> TestCluster {
        let options = Options {
            redis_cluster: rc.seeds(),
            ..Options::default()
        };
        start_opts(options, |_| {}).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_on_a_redis_cluster_deliver_unicast_group_and_broadcast() {
        let rc = RedisCluster::start();
        let s = on_redis_cluster(&rc).await;
        let uids = users(8);
        let fleet = Fleet::connect(&s, &uids).await;
        let mut sent: HashMap<String, Vec<u64>> = HashMap::new();
        for uid in &uids {
            let id = s.push("unicast", json!({"uid": uid, "body": "one"})).await;
            sent.entry(uid.clone()).or_default().push(id);
        }
        let (status, answer) = s.post("/groups/all/bind", KEY, json!({"uids": uids})).await;
        assert_eq!(status, 200, "{answer}");
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
        assert_eq!(fleet.missing_after(&sent, WAIT).await, []);
        assert_eq!(unacked_after(&s, &sent, WAIT).await, []);
        // The state is on the test's cluster, none of it on the machine's Redis.
        let on_masters: u64 = rc.masters().iter().map(|m| keys_on(m)).sum();
        assert!(on_masters >= 8, "{on_masters} keys on the masters");
        let mut local = redis::Client::open("redis://127.0.0.1:6379/0")
            .unwrap()
            .get_connection()
            .unwrap();
        let stray: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", s.prefix))
            .query(&mut local)
            .unwrap();
        assert_eq!(stray, Vec::<String>::new());
        // The register counts the users with a SCAN of every master.
        let page = s.metrics_page("center").await;
        assert_eq!(
            metric_in(&page, "longlink_push_register_sessions"),
            Some(8),
            "{page}"
        );
    }

    /// What one kind of push met while a master was killed.
    #[derive(Debug, Default)]
    struct Tally {
        accepted: usize,
        /// Refusals by (status, error code).
        refused: BTreeMap<(u16, String), usize>,
        first_refused: Option<tokio::time::Instant>,
        last_refused: Option<tokio::time::Instant>,
        /// The first accepted after the last refusal.
        recovered: Option<tokio::time::Instant>,
        slowest: Duration,
    }

    impl Tally {
        fn count(&mut self, status: u16, answer: &serde_json::Value, took: Duration) {
            let now = tokio::time::Instant::now();
            self.slowest = self.slowest.max(took);
            if status == 200 {
                self.accepted += 1;
                if self.last_refused.is_some() && self.recovered.is_none() {
                    self.recovered = Some(now);
                }
            } else {
                let code = answer["error"]["code"].as_str().unwrap_or("?").to_owned();
                *self.refused.entry((status, code)).or_default() += 1;
                self.first_refused.get_or_insert(now);
                self.last_refused = Some(now);
                self.recovered = None;
            }
        }

        fn report(&self, kind: &str, killed_at: tokio::time::Instant) -> String {
            let since = |t: Option<tokio::time::Instant>| {
                t.map(|t| format!("{:?}", t.saturating_duration_since(killed_at)))
                    .unwrap_or_else(|| "-".into())
            };
            format!(
                "{kind}: accepted {}, refused {:?}, slowest answer {:?}; refusals from {} to {} \
                 after the kill, first accepted after them {}",
                self.accepted,
                self.refused,
                self.slowest,
                since(self.first_refused),
                since(self.last_refused),
                since(self.recovered),
            )
        }
    }

    /// At-least-once pushes every 20 ms for 8 s — unicasts, and every fourth a group push
    /// to a one-member group (eight groups, so some live in the killed master's slots) —
    /// with a master SIGKILLed after 3 s. Every push the API accepted is delivered and
    /// ACKed; a refused one is a 503 answered at once, never a hang. Prints what was
    /// refused and when pushes were accepted again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redis_cluster_master_killed_loses_no_push() {
        let rc = RedisCluster::start();
        let s = on_redis_cluster(&rc).await;
        let uids = users(8);
        let fleet = Fleet::connect(&s, &uids).await;
        for (k, uid) in uids.iter().enumerate() {
            let (status, answer) = s
                .post(&format!("/groups/g{k}/bind"), KEY, json!({"uids": [uid]}))
                .await;
            assert_eq!(status, 200, "{answer}");
        }

        let mut sent: HashMap<String, Vec<u64>> = HashMap::new();
        let (mut unicasts, mut groups) = (Tally::default(), Tally::default());
        let mut kill: Option<tokio::task::JoinHandle<_>> = None;
        let mut rc = Some(rc);
        let mut killed_at = None;
        let started = tokio::time::Instant::now();
        let mut i = 0;
        while started.elapsed() < Duration::from_secs(8) {
            if kill.is_none() && started.elapsed() >= Duration::from_secs(3) {
                let mut cluster = rc.take().unwrap();
                killed_at = Some(tokio::time::Instant::now());
                kill = Some(tokio::task::spawn_blocking(move || {
                    let killed = cluster.kill_master(0);
                    (cluster, killed)
                }));
            }
            let (uid, path, body, tally) = if i % 4 == 3 {
                let k = (i / 4) % uids.len();
                let body = json!({"group": format!("g{k}"), "body": format!("m{i}")});
                (&uids[k], "/push/group", body, &mut groups)
            } else {
                let uid = &uids[i % uids.len()];
                let body = json!({"uid": uid, "body": format!("m{i}")});
                (uid, "/push/unicast", body, &mut unicasts)
            };
            let asked = tokio::time::Instant::now();
            let (status, answer) = s.post(path, KEY, body).await;
            tally.count(status, &answer, asked.elapsed());
            if status == 200 {
                sent.entry(uid.clone())
                    .or_default()
                    .push(answer["id"].as_u64().unwrap());
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (rc, (master, healed)) = kill.expect("the master was killed").await.unwrap();
        let killed_at = killed_at.unwrap();

        let accepted: usize = sent.values().map(Vec::len).sum();
        let missing = fleet.missing_after(&sent, Duration::from_secs(30)).await;
        let unacked = unacked_after(&s, &sent, Duration::from_secs(20)).await;
        let lost = missing.len().max(unacked.len());
        eprintln!(
            "master {master} SIGKILLed {:?} into the stream; a replica promoted and the \
             cluster ok again {healed:?} later\n{}\n{}\npushes {i}, accepted {accepted}, lost \
             {lost} (not received {}, not acked {})",
            killed_at.duration_since(started),
            unicasts.report("unicast", killed_at),
            groups.report("group", killed_at),
            missing.len(),
            unacked.len(),
        );
        for tally in [&unicasts, &groups] {
            assert!(
                tally.refused.keys().all(|(status, _)| *status == 503),
                "refusals must be clear 503s: {:?}",
                tally.refused
            );
        }
        assert!(unicasts.accepted > 0 && groups.accepted > 0);
        assert_eq!(lost, 0, "not received {missing:?}, not acked {unacked:?}");
        assert_eq!(rc.masters().len(), 3, "a replica took over");
    }
}
