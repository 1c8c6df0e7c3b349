//! The cluster under network partitions: every role on a test host of its own (a network
//! namespace on a bridge, see `common/netns.rs`), Redis and MariaDB reached through proxies
//! on the bridge, and one path cut silently (frames dropped, nothing reset) for longer than
//! three room TTLs while a steady open-loop stream of at-least-once unicasts goes to
//! connected users who ACK what they get. Then the cut heals and everything is counted:
//! what the API accepted, refused or left unanswered, what arrived and when, who
//! reconnected.
//!
//! Needs root and iproute2; elsewhere each test prints `skipped: …` and passes.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use longlink_push_client::{Client, Event};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::time::Instant;

use common::cluster::{Options, TestCluster, start_opts};
use common::netns::{Host, Net};
use common::*;

/// One push every this long, whatever the answers (open loop).
const EVERY: Duration = Duration::from_millis(22);
/// Traffic before the cut, and after it heals.
const BEFORE: Duration = Duration::from_millis(1500);
const AFTER: Duration = Duration::from_millis(2000);
/// The cut: four room TTLs (the cluster harness configures `room_ttl` = 1 s).
const CUT: Duration = Duration::from_secs(4);
/// A push call's bound at the client: one not answered by then counts as a hang.
const PUSH_TIMEOUT: Duration = Duration::from_secs(8);
const USERS: usize = 10;

/// The cluster with every process on a host of its own; the hosts by process name.
async fn start_on_hosts(net: &Net, savers: usize) -> (TestCluster, HashMap<String, Host>) {
    let mut names = vec!["register", "saver", "coordinator", "room-1", "room-2"];
    names.extend(["dispatcher", "center"]);
    let extra: Vec<String> = (2..=savers).map(|i| format!("saver-{i}")).collect();
    let mut hosts = HashMap::new();
    for name in names
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
    {
        hosts.insert(name.to_owned(), net.host());
    }
    let options = Options {
        redis: format!("redis://{}/0", net.redis.addr),
        mysql_host: net.mysql.addr.to_string(),
        savers,
        hosts: hosts
            .iter()
            .map(|(n, h)| (n.clone(), h.placement()))
            .collect(),
        ..Options::default()
    };
    (start_opts(options, |_| {}).await, hosts)
}

/// Connected users that ACK (the client's auto-ACK) and record when each message arrived
/// and how often they connected again.
struct Fleet {
    /// Message body (`m<i>`) → when it first arrived, per user.
    arrived: Arc<Mutex<HashMap<String, HashMap<usize, Instant>>>>,
    /// The room each user connected to first.
    rooms: HashMap<String, String>,
    reconnects: Arc<AtomicUsize>,
    disconnects: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    async fn connect(s: &TestCluster, uids: &[String]) -> Fleet {
        let arrived: Arc<Mutex<HashMap<String, HashMap<usize, Instant>>>> = Arc::default();
        let (reconnects, disconnects): (Arc<AtomicUsize>, Arc<AtomicUsize>) = Default::default();
        let mut rooms = HashMap::new();
        let mut tasks = Vec::new();
        for uid in uids {
            let mut client: Client = s.client(uid);
            match event(&mut client).await {
                Event::Connected { room, .. } => rooms.insert(uid.clone(), room),
                other => panic!("expected Connected, got {other:?}"),
            };
            let (arrived, reconnects, disconnects, uid) = (
                Arc::clone(&arrived),
                Arc::clone(&reconnects),
                Arc::clone(&disconnects),
                uid.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while let Some(event) = client.next_event().await {
                    match event {
                        Event::Message(m) => {
                            let at = Instant::now();
                            let i = m.body.as_str().and_then(|b| b.strip_prefix('m'));
                            if let Some(i) = i.and_then(|i| i.parse().ok()) {
                                arrived
                                    .lock()
                                    .entry(uid.clone())
                                    .or_default()
                                    .entry(i)
                                    .or_insert(at);
                            }
                        }
                        Event::Connected { .. } => {
                            reconnects.fetch_add(1, Ordering::SeqCst);
                        }
                        Event::Disconnected { .. } => {
                            disconnects.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {}
                    }
                }
            }));
        }
        Fleet {
            arrived,
            rooms,
            reconnects,
            disconnects,
            tasks,
        }
    }

    /// Reconnects and disconnects since the first connect, over all users.
    fn churn(&self) -> (usize, usize) {
        (
            self.reconnects.load(Ordering::SeqCst),
            self.disconnects.load(Ordering::SeqCst),
        )
    }

    fn arrival(&self, uid: &str, i: usize) -> Option<Instant> {
        self.arrived
            .lock()
            .get(uid)
            .and_then(|m| m.get(&i))
            .copied()
    }

    /// Waits until every accepted push has arrived; the ones still missing after `within`.
    async fn wait_all(&self, pushes: &[Push], within: Duration) -> Vec<usize> {
        let deadline = Instant::now() + within;
        loop {
            let missing: Vec<usize> = pushes
                .iter()
                .filter(|p| p.id().is_some() && self.arrival(&p.uid, p.i).is_none())
                .map(|p| p.i)
                .collect();
            if missing.is_empty() || Instant::now() >= deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Debug)]
enum Outcome {
    Accepted(u64),
    Refused(u16, Value),
    /// No answer within [`PUSH_TIMEOUT`], or the connection failed.
    Unanswered(String),
}

#[derive(Debug)]
struct Push {
    i: usize,
    uid: String,
    started: Instant,
    answered_in: Duration,
    outcome: Outcome,
}

impl Push {
    fn id(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Accepted(id) => Some(id),
            _ => None,
        }
    }
}

/// One unicast, bounded by [`PUSH_TIMEOUT`].
async fn push(http: Http, center: String, i: usize, uid: String) -> Push {
    let body = json!({"uid": uid, "body": format!("m{i}")}).to_string();
    let req = http::Request::post(format!("{center}/push/unicast"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let started = Instant::now();
    let answer = tokio::time::timeout(PUSH_TIMEOUT, async {
        let response = http.request(req).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    })
    .await;
    let outcome = match answer {
        Ok(Ok((200, v))) => Outcome::Accepted(v["id"].as_u64().expect("an accepted push's id")),
        Ok(Ok((status, v))) => Outcome::Refused(status, v),
        Ok(Err(e)) => Outcome::Unanswered(e),
        Err(_) => Outcome::Unanswered(format!("no answer in {PUSH_TIMEOUT:?}")),
    };
    Push {
        i,
        uid,
        started,
        answered_in: started.elapsed(),
        outcome,
    }
}

/// Pushes one unicast every [`EVERY`] round-robin to `uids` for `total`, without waiting
/// for answers; the pushes once all are answered.
fn traffic(
    s: &TestCluster,
    uids: &[String],
    total: Duration,
) -> tokio::task::JoinHandle<Vec<Push>> {
    let (http, center, uids) = (s.http().clone(), s.center_url(), uids.to_vec());
    tokio::spawn(async move {
        let mut calls = Vec::new();
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = Instant::now() + total;
        let mut i = 0;
        while Instant::now() < end {
            ticks.tick().await;
            let uid = uids[i % uids.len()].clone();
            calls.push(tokio::spawn(push(http.clone(), center.clone(), i, uid)));
            i += 1;
        }
        let mut pushes = Vec::new();
        for call in calls {
            pushes.push(call.await.unwrap());
        }
        pushes
    })
}

/// Runs the traffic for [`BEFORE`] + [`CUT`] + [`AFTER`], calling `cut` and `heal` on
/// time; the pushes and when the cut healed.
async fn around_a_cut(
    s: &TestCluster,
    uids: &[String],
    cut: impl FnOnce(),
    heal: impl FnOnce(),
) -> (Vec<Push>, Instant, Instant) {
    let traffic = traffic(s, uids, BEFORE + CUT + AFTER);
    tokio::time::sleep(BEFORE).await;
    cut();
    let cut_at = Instant::now();
    tokio::time::sleep(CUT).await;
    heal();
    let healed_at = Instant::now();
    (traffic.await.unwrap(), cut_at, healed_at)
}

/// Push → arrival delays of the accepted pushes that arrived, sorted.
fn delays(fleet: &Fleet, pushes: &[&Push]) -> Vec<Duration> {
    let mut d: Vec<Duration> = pushes
        .iter()
        .filter(|p| p.id().is_some())
        .filter_map(|p| fleet.arrival(&p.uid, p.i).map(|at| at - p.started))
        .collect();
    d.sort();
    d
}

fn p50_max(d: &[Duration]) -> (Duration, Duration) {
    if d.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    (d[d.len() / 2], d[d.len() - 1])
}

/// Counts of the outcomes: accepted, refused (by status and message), unanswered (why).
fn tally(pushes: &[Push]) -> (usize, BTreeMap<String, usize>, Vec<String>) {
    let mut refused = BTreeMap::new();
    let mut unanswered = Vec::new();
    let mut accepted = 0;
    for p in pushes {
        match &p.outcome {
            Outcome::Accepted(_) => accepted += 1,
            Outcome::Refused(status, v) => {
                let what = format!("{status} {}", v["error"]["message"].as_str().unwrap_or(""));
                *refused.entry(what).or_default() += 1;
            }
            Outcome::Unanswered(why) => unanswered.push(format!("push {}: {why}", p.i)),
        }
    }
    (accepted, refused, unanswered)
}

async fn wait_acked(s: &TestCluster, pushes: &[Push]) {
    for p in pushes {
        if let Some(id) = p.id() {
            s.wait_status(id, &p.uid, "acked").await;
        }
    }
}

fn users() -> Vec<String> {
    (0..USERS).map(|i| format!("user{i}")).collect()
}

/// The room's host cannot reach Redis (its membership announces fail for four TTLs); its
/// clients and every other role still reach it. Nothing notices but the room: the center
/// keeps routing to it, so every push is accepted and delivered live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_cut_off_from_redis_but_not_its_clients_loses_nothing() {
    let test = "a_room_cut_off_from_redis_but_not_its_clients_loses_nothing";
    let Some(net) = Net::create(test).await else {
        return;
    };
    let (s, hosts) = start_on_hosts(&net, 1).await;
    let uids = users();
    let fleet = Fleet::connect(&s, &uids).await;
    let room = &hosts["room-1"];
    let on_room: usize = fleet.rooms.values().filter(|r| *r == "room-1").count();
    assert!(on_room > 0, "nobody on room-1: {:?}", fleet.rooms);
    let (pushes, _, _) = around_a_cut(
        &s,
        &uids,
        || net.cut(room, net.redis_ip()),
        || net.heal(room, net.redis_ip()),
    )
    .await;
    let missing = fleet.wait_all(&pushes, Duration::from_secs(15)).await;
    let (accepted, refused, unanswered) = tally(&pushes);
    let all: Vec<&Push> = pushes.iter().collect();
    let (p50, max) = p50_max(&delays(&fleet, &all));
    eprintln!(
        "{test}: {} pushes ({on_room} of {USERS} users on the cut room), {accepted} accepted, \
         refused {refused:?}, {} unanswered, {} missing; delay p50 {p50:?} max {max:?}; \
         (reconnects, disconnects) {:?}",
        pushes.len(),
        unanswered.len(),
        missing.len(),
        fleet.churn(),
    );
    assert!(
        refused.is_empty() && unanswered.is_empty(),
        "{refused:?} {unanswered:?}"
    );
    assert!(missing.is_empty(), "never arrived: {missing:?}");
    assert_eq!(fleet.churn(), (0, 0), "a client lost its connection");
    assert!(max < Duration::from_secs(3), "a message waited {max:?}");
    // The cut bit: the room's membership entry expired, and the center asked it directly.
    assert!(s.metric("longlink_push_room_probes_total").await >= 1);
    wait_acked(&s, &pushes).await;
}

/// The center's host cannot reach one room's host (both ways); the room still reaches
/// Redis, the register and the saver, and its clients still reach it. Pushes to its users
/// are stored and answered (`delivered: 0` once the delivery call times out); the center
/// tries them again, and they arrive once the cut heals — to the same connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_center_cut_off_from_one_room_delivers_after_the_cut_heals() {
    let test = "the_center_cut_off_from_one_room_delivers_after_the_cut_heals";
    let Some(net) = Net::create(test).await else {
        return;
    };
    let (s, hosts) = start_on_hosts(&net, 1).await;
    let uids = users();
    let fleet = Fleet::connect(&s, &uids).await;
    let (center, room) = (&hosts["center"], &hosts["room-1"]);
    let cut_users: Vec<&String> = uids
        .iter()
        .filter(|u| fleet.rooms[*u] == "room-1")
        .collect();
    assert!(!cut_users.is_empty(), "nobody on room-1: {:?}", fleet.rooms);
    let (pushes, cut_at, healed_at) = around_a_cut(
        &s,
        &uids,
        || net.cut_between(center, room),
        || net.heal_between(center, room),
    )
    .await;
    let missing = fleet.wait_all(&pushes, Duration::from_secs(20)).await;
    let (accepted, refused, unanswered) = tally(&pushes);
    let (cut, other): (Vec<&Push>, Vec<&Push>) =
        pushes.iter().partition(|p| fleet.rooms[&p.uid] == "room-1");
    let (cut_p50, cut_max) = p50_max(&delays(&fleet, &cut));
    let (p50, max) = p50_max(&delays(&fleet, &other));
    // The pushes to the cut room's users made during the cut: when they arrived, relative
    // to the heal (every one was accepted and has arrived, asserted below).
    let during: Vec<Instant> = cut
        .iter()
        .filter(|p| p.id().is_some() && p.started >= cut_at && p.started < healed_at)
        .filter_map(|p| fleet.arrival(&p.uid, p.i))
        .collect();
    let latest_after_heal = during
        .iter()
        .map(|at| at.saturating_duration_since(healed_at))
        .max()
        .unwrap_or_default();
    // Arrived before the heal (allowing for the clock read after `ip` returned).
    let early = during
        .iter()
        .filter(|at| **at + Duration::from_millis(50) < healed_at)
        .count();
    let slowest_answer = pushes
        .iter()
        .map(|p| p.answered_in)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{test}: {} pushes ({} to the {} users of the cut room), {accepted} accepted, \
         refused {refused:?}, {} unanswered, {} missing; cut room's users: delay p50 \
         {cut_p50:?} max {cut_max:?}; of the {} pushes to them during the cut {early} arrived \
         before the heal, the last {latest_after_heal:?} after it; other users: p50 {p50:?} max {max:?}; slowest answer \
         {slowest_answer:?}; (reconnects, disconnects) {:?}",
        pushes.len(),
        cut.len(),
        cut_users.len(),
        unanswered.len(),
        missing.len(),
        during.len(),
        fleet.churn(),
    );
    assert!(unanswered.is_empty(), "hung: {unanswered:?}");
    for what in refused.keys() {
        assert!(what.starts_with("503 "), "{what}");
    }
    assert!(missing.is_empty(), "never arrived: {missing:?}");
    // The cut bit, and held: nothing reached the cut room's users until it healed.
    assert!(
        !during.is_empty() && early == 0,
        "{early} arrived during the cut"
    );
    assert_eq!(fleet.churn(), (0, 0), "a client lost its connection");
    wait_acked(&s, &pushes).await;
}

/// Calls a process's RPC handlers took longer than 0.5 s for (from its page's handler
/// histograms: the `+Inf` buckets less the `le="0.5"` ones).
fn slow_handlers(page: &str) -> u64 {
    let bucket = |le: &str| -> u64 {
        let prefix = format!("longlink_push_rpc_server_handler_seconds_bucket{{le=\"{le}\",");
        page.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum()
    };
    bucket("+Inf") - bucket("0.5")
}

/// Two savers; one saver's host cannot reach MariaDB. The center balances stores over both
/// (to the less loaded), and the cut saver answers a store stuck before its COMMIT with
/// "did not run" after half the RPC deadline, so the center moves it to the other saver:
/// no push made during the cut is refused. A store whose COMMIT was already sent when the
/// cut came may have been applied (the COMMIT can still arrive once the cut heals): its
/// push may be refused, at the deadline, with a 503 that says it may have been stored;
/// any other refusal fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_saver_cut_off_from_mysql_refuses_no_push_made_during_the_cut() {
    let test = "one_saver_cut_off_from_mysql_refuses_no_push_made_during_the_cut";
    let Some(net) = Net::create(test).await else {
        return;
    };
    let (s, hosts) = start_on_hosts(&net, 2).await;
    let uids = users();
    let fleet = Fleet::connect(&s, &uids).await;
    let saver = &hosts["saver-2"];
    let (pushes, cut_at, _) = around_a_cut(
        &s,
        &uids,
        || net.cut(saver, net.mysql_ip()),
        || net.heal(saver, net.mysql_ip()),
    )
    .await;
    let missing = fleet.wait_all(&pushes, Duration::from_secs(15)).await;
    let (accepted, refused, unanswered) = tally(&pushes);
    let all: Vec<&Push> = pushes.iter().collect();
    let (p50, max) = p50_max(&delays(&fleet, &all));
    let slowest_answer = pushes
        .iter()
        .map(|p| p.answered_in)
        .max()
        .unwrap_or_default();
    // Each refused push: when it started, relative to the cut (negative: before), and how
    // long its answer took.
    let refused_at: Vec<(f64, Duration)> = pushes
        .iter()
        .filter(|p| matches!(p.outcome, Outcome::Refused(..)))
        .map(|p| {
            let offset = if p.started >= cut_at {
                (p.started - cut_at).as_secs_f64()
            } else {
                -(cut_at - p.started).as_secs_f64()
            };
            (offset, p.answered_in)
        })
        .collect();
    let moved = pushes
        .iter()
        .filter(|p| p.answered_in >= Duration::from_millis(700))
        .count();
    let slow = slow_handlers(&s.metrics_page("saver-2").await);
    eprintln!(
        "{test}: {} pushes, {accepted} accepted, refused {refused:?}, {} unanswered, {} \
         missing; {moved} answered after ≥ 700 ms (moved to the other saver); delay p50 \
         {p50:?} max {max:?}; slowest answer {slowest_answer:?}; (reconnects, disconnects) \
         {:?}; refused pushes (start relative to the cut in s, answered in) {refused_at:?}; \
         calls saver-2 took > 0.5 s for: {slow}",
        pushes.len(),
        unanswered.len(),
        missing.len(),
        fleet.churn(),
    );
    assert!(unanswered.is_empty(), "hung: {unanswered:?}");
    for what in refused.keys() {
        assert!(
            what.starts_with("503 ")
                && (what.contains("may have been") || what.contains("nothing was")),
            "a refusal that does not say whether the push may have been stored: {what}"
        );
    }
    // Only a push already in flight when the cut came (its COMMIT sent) may be refused.
    assert!(
        refused_at.iter().all(|(offset, _)| *offset < 0.0),
        "a push made during the cut was refused: {refused_at:?} {refused:?}"
    );
    assert!(missing.is_empty(), "never arrived: {missing:?}");
    // The cut bit: calls to saver-2 waited (for its store budget, or for their deadline).
    assert!(slow > 0, "no call on saver-2 waited for MariaDB");
    wait_acked(&s, &pushes).await;
}
