//! The center's API refuses bad requests with a clear 4xx (or 503) and a JSON error, and
//! does nothing half-way; an app reaches only its own traffic. The scenarios that need no
//! access to the process's insides run against the single process and against a cluster.

mod common;

use common::*;
use serde_json::{Value, json};

both_modes! {
    a_missing_or_wrong_api_key_is_401,
    invalid_json_unknown_fields_and_wrong_types_are_4xx_and_store_nothing,
    an_oversized_body_is_413,
    an_app_sees_only_its_own_messages_users_and_groups,
    unknown_routes_ids_and_queries_are_clear_errors,
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("<no code>")
}

async fn a_missing_or_wrong_api_key_is_401<S: Starter>() {
    let s = S::start().await;
    let body = Some(json!({"uid": "u1", "body": "x"}).to_string().into_bytes());
    let (status, answer) = s.request("POST", "/push/unicast", None, body.clone()).await;
    assert_eq!((status, code(&answer)), (401, "missing_api_key"));
    let (status, answer) = s
        .request("POST", "/push/unicast", Some("not-a-key"), body)
        .await;
    assert_eq!((status, code(&answer)), (401, "bad_api_key"));
    assert_eq!(s.metric("longlink_push_messages_in_total").await, 0);
}

async fn invalid_json_unknown_fields_and_wrong_types_are_4xx_and_store_nothing<S: Starter>() {
    let s = S::start().await;
    let mut u1 = s.online("u1").await;
    let cases: [(&[u8], u16, &str); 5] = [
        (b"{", 400, "invalid_json"),
        (
            br#"{"uid": "u1", "body": "x", "priority": 9}"#,
            422,
            "invalid_fields",
        ),
        (br#"{"uid": 5, "body": "x"}"#, 422, "invalid_fields"),
        (
            br#"{"uid": "u1", "body": "x", "mode": "sometimes"}"#,
            422,
            "invalid_fields",
        ),
        (br#"{"body": "x"}"#, 422, "invalid_fields"),
    ];
    for (body, want, want_code) in cases {
        let (status, answer) = s
            .request("POST", "/push/unicast", Some(KEY), Some(body.to_vec()))
            .await;
        assert_eq!((status, code(&answer)), (want, want_code), "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().len() > 5);
    }
    // Not declared as JSON.
    let (status, answer) = s
        .request_with_type(
            "POST",
            "/push/unicast",
            KEY,
            "text/plain",
            br#"{"uid":"u1","body":"x"}"#,
        )
        .await;
    assert_eq!((status, code(&answer)), (415, "not_json"), "{answer}");
    // Semantic checks: empty uid, control characters, zero TTL, empty multicast.
    for (path, body) in [
        ("/push/unicast", json!({"uid": "", "body": "x"})),
        ("/push/unicast", json!({"uid": "a\nb", "body": "x"})),
        (
            "/push/unicast",
            json!({"uid": "u1", "body": "x", "ttl_secs": 0}),
        ),
        ("/push/multicast", json!({"uids": [], "body": "x"})),
        ("/push/group", json!({"group": "", "body": "x"})),
    ] {
        let (status, answer) = s.post(path, KEY, body).await;
        assert_eq!((status, code(&answer)), (400, "invalid"), "{answer}");
    }
    quiet(&mut u1, std::time::Duration::from_millis(200)).await;
    assert_eq!(s.metric("longlink_push_messages_in_total").await, 0);
}

async fn an_oversized_body_is_413<S: Starter>() {
    let s = S::start_with(|c| {
        c.max_request_bytes = 4096;
        c.push.max_body_bytes = 1024;
    })
    .await;
    // Over the request limit: refused before it is read.
    let huge = json!({"uid": "u1", "body": "x".repeat(10_000)});
    let (status, answer) = s.post("/push/unicast", KEY, huge).await;
    assert_eq!((status, code(&answer)), (413, "too_large"), "{answer}");
    // Within the request limit but over the message limit: a 400 that says so.
    let big = json!({"uid": "u1", "body": "x".repeat(2_000)});
    let (status, answer) = s.post("/push/unicast", KEY, big).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds")
    );
    assert_eq!(s.metric("longlink_push_messages_in_total").await, 0);
}

async fn an_app_sees_only_its_own_messages_users_and_groups<S: Starter>() {
    let s = S::start().await;
    let id = s
        .push("unicast", json!({"uid": "u1", "body": "demo's"}))
        .await;
    let (status, answer) = s.get(&format!("/messages/{id}"), OTHER_KEY).await;
    assert_eq!((status, code(&answer)), (404, "not_found"));
    let (status, _) = s.get(&format!("/messages/{id}"), KEY).await;
    assert_eq!(status, 200);

    // u1 online in demo only: "other" sees no session and cannot kick it.
    let _u1 = s.online("u1").await;
    s.wait_sessions("u1", 1).await;
    let (_, answer) = s.get("/users/u1", OTHER_KEY).await;
    assert_eq!(answer["online"], false);
    let (status, _) = s.post("/users/u1/kick", OTHER_KEY, json!({})).await;
    assert_eq!(status, 404);

    // Groups are per app: "other" binding u1 to "team" does not put u1 in demo's "team".
    s.post("/groups/team/bind", OTHER_KEY, json!({"uid": "u1"}))
        .await;
    let (status, report) = s
        .post("/push/group", KEY, json!({"group": "team", "body": "x"}))
        .await;
    assert_eq!((status, report["recipients"].as_u64()), (200, Some(0)));
}

async fn unknown_routes_ids_and_queries_are_clear_errors<S: Starter>() {
    let s = S::start().await;
    let (status, answer) = s.get("/no/such/route", KEY).await;
    assert_eq!((status, code(&answer)), (404, "not_found"));
    let (status, answer) = s.get("/messages/abc", KEY).await;
    assert_eq!((status, code(&answer)), (400, "invalid"));
    let (status, answer) = s.get("/messages/12345", KEY).await;
    assert_eq!((status, code(&answer)), (404, "not_found"));
    let (status, answer) = s
        .request("GET", "/dispatch?uid=u1&net=6g", None, None)
        .await;
    assert_eq!((status, code(&answer)), (400, "invalid_query"));
    let (status, answer) = s
        .request("GET", "/messages/1/body?uid=u1&token=forged", None, None)
        .await;
    assert_eq!((status, code(&answer)), (401, "bad_token"));
}

#[tokio::test]
async fn a_store_that_is_down_refuses_the_push_with_503_and_sends_nothing() {
    let s = start().await;
    let mut u1 = s.online("u1").await;
    s.system.db().close();
    let (status, answer) = s
        .post(
            "/push/unicast",
            KEY,
            json!({"uid": "u1", "body": "must not arrive"}),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (503, "storage_unavailable"),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was stored or sent")
    );
    quiet(&mut u1, std::time::Duration::from_millis(300)).await;
    let (status, health) = s.request("GET", "/healthz", None, None).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (503, Some("unavailable"))
    );
    // at-most-once needs no store: it still goes out.
    let (status, _) = s
        .post(
            "/push/unicast",
            KEY,
            json!({"uid": "u1", "body": "live", "mode": "at_most_once"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(message(&mut u1).await.1, "live");
}

#[tokio::test]
async fn the_dispatcher_names_the_room_and_the_heartbeat_for_the_network() {
    let s = start_with(|c| {
        c.room.heartbeats.g2 = 7;
        c.room.heartbeats.wifi = 9;
    })
    .await;
    let (status, d) = s
        .request("GET", "/dispatch?uid=u1&net=2g", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(d["heartbeat_secs"], 7);
    assert_eq!(d["rooms"][0]["tcp"], s.tcp().to_string());
    assert_eq!(d["rooms"][0]["ws"], format!("ws://{}/", s.ws()));
    let (_, d) = s
        .request("GET", "/dispatch?uid=u1&net=wifi", None, None)
        .await;
    assert_eq!(d["heartbeat_secs"], 9);
}

#[tokio::test]
async fn metrics_and_health_report_the_system() {
    let s = start().await;
    let _u = s.online("m").await;
    s.push("unicast", json!({"uid": "m", "body": "x"})).await;
    let (status, text) = s.request("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let text = text.as_str().unwrap();
    for name in [
        "longlink_push_connections 1",
        "longlink_push_messages_in_total 1",
        "longlink_push_queue_depth{queue=\"acks\"}",
        "longlink_push_db_open_connections",
        "longlink_push_bufpool_gets_total",
    ] {
        assert!(text.contains(name), "no {name} in\n{text}");
    }
    // Typed families in OpenMetrics text (prometheus-client): a TYPE per family, counters
    // with `_total` samples, one `# EOF` at the end.
    for line in [
        "# TYPE longlink_push_messages_in counter",
        "# TYPE longlink_push_connections gauge",
        "# TYPE longlink_push_queue_depth gauge",
        "# TYPE longlink_push_db_connects counter",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    let (status, health) = s.request("GET", "/healthz", None, None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
}
