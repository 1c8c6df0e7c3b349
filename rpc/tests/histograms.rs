//! Latency histograms per method: what each side counts, where slow calls land, queue time
//! under limits, cancellation, the `other` row, and Prometheus text that parses.
//!
//! Timing asserts are lower bounds only (a sleep or a held gate guarantees them); nothing
//! here asserts that something was fast.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::Bytes;
use common::{COUNT, ECHO, SLEEP, TestServer, millis};
use longlink_rpc::metrics::{CallHistograms, Exposition, Histogram, MAX_METHODS, name_method};
use longlink_rpc::{Client, Request, Response, RpcError, Server, ServerHandle, ServiceError};
use tokio::sync::Semaphore;

/// Waits (polling) until `done` holds, or fails after 5 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

const GATE: u32 = 50;

/// A server whose GATE method waits until the test opens the gate; ECHO answers at once.
async fn gated_server(
    builder: longlink_rpc::ServerBuilder,
) -> (String, ServerHandle, Arc<Semaphore>) {
    let gate = Arc::new(Semaphore::new(0));
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let (addr, handle) = (server.local_addr().to_string(), server.handle());
    let svc_gate = Arc::clone(&gate);
    let svc = tower::service_fn(move |req: Request| {
        let gate = Arc::clone(&svc_gate);
        async move {
            if req.method == GATE {
                gate.acquire().await.unwrap().forget();
            }
            Ok::<_, Infallible>(Response::ok(req.body))
        }
    });
    tokio::spawn(server.serve(svc));
    (addr, handle, gate)
}

#[tokio::test]
async fn counts_match_the_calls_of_each_method_on_both_sides() {
    let server = TestServer::start().await;
    let client = Client::new(server.addr.to_string());
    for _ in 0..3 {
        client.call(ECHO, "a").await.unwrap();
    }
    for _ in 0..5 {
        client.call(COUNT, "").await.unwrap();
    }
    let calls: BTreeMap<_, _> = client
        .stats()
        .latency
        .iter()
        .map(|r| (r.method, (r.queue_wait.count(), r.round_trip.count())))
        .collect();
    assert_eq!(
        calls,
        BTreeMap::from([(Some(ECHO), (3, 3)), (Some(COUNT), (5, 5))])
    );
    let served: BTreeMap<_, _> = server
        .handle
        .stats()
        .latency
        .iter()
        .map(|r| (r.method, (r.queue.count(), r.handler.count())))
        .collect();
    assert_eq!(
        served,
        BTreeMap::from([(Some(ECHO), (3, 3)), (Some(COUNT), (5, 5))])
    );
}

#[tokio::test]
async fn a_slow_handler_lands_past_its_sleep_on_both_sides() {
    let server = TestServer::start().await;
    let client = Client::new(server.addr.to_string());
    for _ in 0..3 {
        client.call(SLEEP, millis(20)).await.unwrap();
    }
    let stats = client.stats();
    let call = stats
        .latency
        .iter()
        .find(|r| r.method == Some(SLEEP))
        .unwrap();
    let served = server.handle.stats();
    let handled = served
        .latency
        .iter()
        .find(|r| r.method == Some(SLEEP))
        .unwrap();
    for (side, h) in [
        ("round trip", &call.round_trip),
        ("handler", &handled.handler),
    ] {
        assert_eq!(h.count(), 3, "{side}");
        // Each took at least 20 ms: nothing in the buckets up to 10 ms, and its
        // percentiles and sum say so too.
        assert_eq!(
            h.count_within(Duration::from_millis(10)),
            0,
            "{side}: {h:?}"
        );
        assert!(
            h.p50().unwrap() >= Duration::from_millis(10),
            "{side}: {h:?}"
        );
        assert!(h.sum() >= Duration::from_millis(60), "{side}: {h:?}");
    }
    let cumulative: Vec<(f64, u64)> = handled.handler.buckets().collect();
    assert!(
        cumulative
            .iter()
            .filter(|(le, _)| *le < 0.02)
            .all(|(_, n)| *n == 0),
        "no handler of 20 ms under le=0.02: {cumulative:?}"
    );
}

#[tokio::test]
async fn server_queue_time_appears_when_its_limit_makes_requests_wait() {
    let (addr, handle, gate) =
        gated_server(Server::builder().max_concurrent(1).max_waiters(4)).await;
    let client = Client::new(addr);
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.call(GATE, "hold").await }
    });
    until("the gate holds the only slot", || {
        handle.stats().in_flight == 1
    })
    .await;
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.call(ECHO, "wait").await }
    });
    until("the second request arrived", || {
        handle.stats().requests == 2
    })
    .await;
    // It has waited at least this long by the time the slot frees.
    tokio::time::sleep(Duration::from_millis(30)).await;
    gate.add_permits(1);
    held.await.unwrap().unwrap();
    waiting.await.unwrap().unwrap();

    let stats = handle.stats();
    let echo = stats
        .latency
        .iter()
        .find(|r| r.method == Some(ECHO))
        .unwrap();
    assert_eq!(echo.queue.count(), 1);
    assert_eq!(
        echo.queue.count_within(Duration::from_millis(20)),
        0,
        "queued for 30 ms or more: {:?}",
        echo.queue
    );
    assert!(echo.queue.sum() >= Duration::from_millis(30));
}

#[tokio::test]
async fn client_queue_wait_appears_when_its_limit_makes_calls_wait() {
    let (addr, _handle, gate) = gated_server(Server::builder()).await;
    let client = Client::builder(addr)
        .max_in_flight(1)
        .max_queued(4)
        .max_queue_wait(Duration::from_secs(10))
        .build();
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.call(GATE, "hold").await }
    });
    until("the gate holds the only permit", || {
        client.stats().in_flight == 1
    })
    .await;
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.call(ECHO, "wait").await }
    });
    until("the second call queued", || client.stats().queued == 1).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    gate.add_permits(1);
    held.await.unwrap().unwrap();
    waiting.await.unwrap().unwrap();

    let stats = client.stats();
    let echo = stats
        .latency
        .iter()
        .find(|r| r.method == Some(ECHO))
        .unwrap();
    assert_eq!(echo.queue_wait.count(), 1);
    assert_eq!(
        echo.queue_wait.count_within(Duration::from_millis(20)),
        0,
        "waited 30 ms or more: {:?}",
        echo.queue_wait
    );
    let gated = stats
        .latency
        .iter()
        .find(|r| r.method == Some(GATE))
        .unwrap();
    assert_eq!(
        gated.queue_wait.count_within(Histogram::BOUNDS[0]),
        1,
        "the first call had its permit at once: zero wait"
    );
}

#[tokio::test]
async fn a_dropped_call_records_its_wait_and_no_round_trip() {
    let server = TestServer::start().await;
    let client = Client::new(server.addr.to_string());
    let gave_up =
        tokio::time::timeout(Duration::from_millis(50), client.call(SLEEP, millis(5_000))).await;
    assert!(gave_up.is_err());
    until("the server cancelled the handler", || {
        server.seen.abandoned.load(SeqCst) == 1
    })
    .await;
    let stats = client.stats();
    let sleep = stats
        .latency
        .iter()
        .find(|r| r.method == Some(SLEEP))
        .unwrap();
    assert_eq!((sleep.queue_wait.count(), sleep.round_trip.count()), (1, 0));
    assert_eq!((stats.in_flight, stats.pending), (0, 0), "nothing held");
    assert!(
        server.handle.stats().latency.is_empty(),
        "a cancelled handler is not counted: {:?}",
        server.handle.stats().latency
    );
}

#[tokio::test]
async fn a_deadline_passed_in_flight_counts_in_round_trip() {
    let server = TestServer::start().await;
    let client = Client::new(server.addr.to_string());
    let err = client
        .call_timeout(SLEEP, millis(500), Duration::from_millis(30))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::DeadlineExceeded { .. }), "{err:?}");
    let stats = client.stats();
    assert_eq!(stats.latency[0].round_trip.count(), 1);
    until("the server abandoned the handler at its deadline", || {
        server.handle.stats().deadline_abandoned == 1
    })
    .await;
    assert_eq!(server.handle.stats().latency[0].handler.count(), 1);
}

#[tokio::test]
async fn methods_past_the_cap_and_unknown_ones_are_counted_as_other() {
    let server = TestServer::start().await;
    let client = Client::new(server.addr.to_string());
    let extra = 6;
    for method in 1_000..(1_000 + MAX_METHODS as u32 + extra) {
        // Unknown to the test service: answered UNKNOWN_METHOD, still a round trip.
        assert!(client.call(method, "").await.is_err());
    }
    let calls = client.stats().latency;
    assert_eq!(calls.len(), MAX_METHODS + 1);
    let other = calls.last().unwrap();
    assert_eq!((other.method, other.label().as_ref()), (None, "other"));
    assert_eq!(other.round_trip.count(), u64::from(extra));

    let served = server.handle.stats().latency;
    assert_eq!(served.len(), 1, "unknown methods take no row of their own");
    assert_eq!(
        served[0].handler.count(),
        MAX_METHODS as u64 + u64::from(extra)
    );
}

#[tokio::test]
async fn clients_given_one_histograms_record_together() {
    let (a, b) = (TestServer::start().await, TestServer::start().await);
    let shared = CallHistograms::new();
    let to_a = Client::builder(a.addr.to_string())
        .histograms(shared.clone())
        .build();
    let to_b = Client::builder(b.addr.to_string())
        .histograms(shared.clone())
        .build();
    to_a.call(ECHO, "x").await.unwrap();
    to_b.call(ECHO, "y").await.unwrap();
    to_b.call(ECHO, "z").await.unwrap();
    assert_eq!(shared.snapshot()[0].round_trip.count(), 3);
    assert_eq!(to_a.stats().latency, to_b.stats().latency);
}

longlink_rpc::service! {
    /// A typed service, to see its names on the page.
    pub mod ledger {
        /// Posts `cents`; answers them.
        fn post(account: u64, cents: i64) -> i64;
    }
}

struct Ledger;

impl ledger::Handler for Ledger {
    async fn post(&self, _account: u64, cents: i64) -> Result<i64, ServiceError> {
        Ok(cents)
    }
}

#[tokio::test]
async fn typed_methods_are_labelled_by_name_and_raw_ids_by_number() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let (addr, handle) = (server.local_addr().to_string(), server.handle());
    tokio::spawn(server.serve(ledger::Server::new(Ledger)));
    let client = Client::new(addr);
    let typed = ledger::Client::new(client.clone());
    assert_eq!(typed.post(1, 250).await.unwrap(), 250);
    let _ = client.call(77, "raw").await; // UNKNOWN_METHOD, still counted client-side

    let text = client.stats().render_prometheus("t", &[("peer", "ledger")]);
    assert!(
        text.contains(
            "t_client_round_trip_seconds_count{peer=\"ledger\",method=\"ledger.post\"} 1\n"
        ),
        "{text}"
    );
    assert!(text.contains("method=\"77\""), "{text}");
    let served = handle.stats().render_prometheus("t", &[]);
    assert!(
        served.contains("t_server_handler_seconds_count{method=\"ledger.post\"} 1\n"),
        "{served}"
    );
    assert!(served.contains("t_server_handler_seconds_count{method=\"other\"} 1\n"));
}

#[tokio::test]
async fn rendered_text_parses_as_prometheus_histograms() {
    let server = TestServer::start().await;
    let client = Client::new(server.addr.to_string());
    name_method(ECHO, "test.echo");
    for _ in 0..4 {
        client.call(ECHO, "e").await.unwrap();
    }
    client.call(SLEEP, millis(3)).await.unwrap();
    let second = Client::new(server.addr.to_string());
    second.call(COUNT, Bytes::new()).await.unwrap();

    let mut page = Exposition::new("longlink_rpc");
    page.client(&[("peer", "one")], &client.stats())
        .client(&[("peer", "two \"quoted\"")], &second.stats())
        .server(&[("service", "test")], &server.handle.stats());
    let text = page.finish();
    let families = check_exposition(&text);
    assert_eq!(
        families,
        [
            "longlink_rpc_client_queue_wait_seconds",
            "longlink_rpc_client_round_trip_seconds",
            "longlink_rpc_server_queue_seconds",
            "longlink_rpc_server_handler_seconds",
        ]
    );
    assert!(text.contains(
        "longlink_rpc_client_round_trip_seconds_count{peer=\"one\",method=\"test.echo\"} 4\n"
    ));
    assert!(text.contains(r#"{peer="two \"quoted\"",method="4",le="+Inf"} 1"#));
}

/// A small checker of the text format for histograms: returns the families in order, and
/// panics on any line that is not a valid `# HELP`, `# TYPE … histogram` or sample; on a
/// family announced twice or sampled before its TYPE; on a series whose `le` do not rise
/// to `+Inf`, whose cumulative counts fall, whose `+Inf` is not its `_count`, or that lacks
/// `_sum`.
fn check_exposition(text: &str) -> Vec<String> {
    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    /// `name{k="v",...} value` → (name, labels, value).
    fn sample(line: &str) -> (String, Vec<(String, String)>, f64) {
        let open = line
            .find('{')
            .unwrap_or_else(|| panic!("no labels: {line}"));
        let name = &line[..open];
        let mut labels = Vec::new();
        let mut rest = &line[open + 1..];
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest
                .find("=\"")
                .unwrap_or_else(|| panic!("bad label: {line}"));
            let key = rest[..eq].to_owned();
            assert!(
                valid_name(&key) && !key.contains(':'),
                "label name {key:?}: {line}"
            );
            let mut value = String::new();
            let mut chars = rest[eq + 2..].char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => panic!("bad escape {other:?}: {line}"),
                    },
                    Some((i, '"')) => break eq + 2 + i + 1,
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated value: {line}"),
                }
            };
            labels.push((key, value));
            rest = &rest[end..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
        (name.to_owned(), labels, value)
    }

    let mut families: Vec<String> = Vec::new();
    let mut typed: Option<String> = None;
    // Per series (family, labels without le): le and cumulative counts, sum, count.
    type Series = (Vec<(f64, f64)>, Option<f64>, Option<f64>);
    let mut series: BTreeMap<(String, Vec<(String, String)>), Series> = BTreeMap::new();
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, doc) = help.split_once(' ').expect("HELP has text");
            assert!(valid_name(name) && !doc.is_empty(), "{line}");
            assert!(
                !families.iter().any(|f| f == name),
                "{name} announced twice"
            );
            families.push(name.to_owned());
            continue;
        }
        if let Some(ty) = line.strip_prefix("# TYPE ") {
            let (name, kind) = ty.split_once(' ').expect("TYPE has a kind");
            assert_eq!(Some(name), families.last().map(String::as_str), "{line}");
            assert_eq!(kind, "histogram");
            typed = Some(name.to_owned());
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (name, mut labels, value) = sample(line);
        let family = typed.clone().expect("a sample before any TYPE");
        let suffix = name
            .strip_prefix(family.as_str())
            .unwrap_or_else(|| panic!("{name} outside its family {family}"));
        assert!(valid_name(&name), "{name}");
        let le = labels
            .iter()
            .position(|(k, _)| k == "le")
            .map(|i| labels.remove(i).1);
        let entry = series.entry((family.clone(), labels)).or_default();
        match (suffix, le) {
            ("_bucket", Some(le)) => {
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                entry.0.push((le, value));
            }
            ("_sum", None) => entry.1 = Some(value),
            ("_count", None) => entry.2 = Some(value),
            other => panic!("unexpected sample {other:?}: {line}"),
        }
    }
    assert!(!series.is_empty(), "no series at all");
    for ((family, labels), (buckets, sum, count)) in &series {
        let at = format!("{family}{labels:?}");
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0), "le rise: {at}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "cumulative: {at}"
        );
        assert_eq!(
            buckets.last().map(|b| b.0),
            Some(f64::INFINITY),
            "+Inf: {at}"
        );
        assert_eq!(buckets.last().map(|b| b.1), *count, "+Inf == _count: {at}");
        assert!(sum.is_some_and(|s| s >= 0.0), "_sum: {at}");
    }
    families
}

#[test]
fn the_checker_refuses_a_falling_bucket_and_a_wrong_count() {
    let good = "# HELP x_seconds h\n# TYPE x_seconds histogram\n\
                x_seconds_bucket{method=\"m\",le=\"0.1\"} 1\n\
                x_seconds_bucket{method=\"m\",le=\"+Inf\"} 2\n\
                x_seconds_sum{method=\"m\"} 0.3\nx_seconds_count{method=\"m\"} 2\n";
    assert_eq!(check_exposition(good), ["x_seconds"]);
    for bad in [
        good.replace("le=\"0.1\"} 1", "le=\"0.1\"} 3"),
        good.replace("_count{method=\"m\"} 2", "_count{method=\"m\"} 5"),
        good.replace("# TYPE x_seconds histogram\n", ""),
    ] {
        assert!(
            std::panic::catch_unwind(|| check_exposition(&bad)).is_err(),
            "accepted: {bad}"
        );
    }
}
