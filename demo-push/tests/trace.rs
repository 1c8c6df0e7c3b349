//! A push that arrives with a W3C `traceparent` is one trace from the center through the
//! saver and the room: every hop's RPC handler runs in a span of that trace.

mod common;

mod cluster {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use serde_json::json;

    use super::common::cluster::{Options, start_opts};
    use super::common::{Harness, KEY, WAIT, message};

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_traced_push_is_one_trace_through_center_saver_and_room() {
        let s = start_opts(
            Options {
                rooms: 1,
                log: Some("debug"),
                ..Options::default()
            },
            |_| {},
        )
        .await;
        let mut alice = s.online("alice").await;

        let req = http::Request::builder()
            .method("POST")
            .uri(format!("{}/push/unicast", s.center_url()))
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
            .body(Full::new(Bytes::from(
                json!({"uid": "alice", "body": "traced"}).to_string(),
            )))
            .unwrap();
        let response = s.http().request(req).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let (_, text) = tokio::time::timeout(WAIT, message(&mut alice))
            .await
            .unwrap();
        assert_eq!(text, "traced");

        // An untraced push leaves no trace id behind.
        s.push("unicast", json!({"uid": "alice", "body": "plain"}))
            .await;
        let _ = tokio::time::timeout(WAIT, message(&mut alice))
            .await
            .unwrap();

        let traced = |name: &str| {
            s.log_of(name)
                .lines()
                .filter(|l| l.contains(TRACE_ID))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let center = traced("center");
        assert!(
            center.iter().any(|l| l.contains("traced push")),
            "center: {center:?}"
        );
        for hop in ["saver", "room-1"] {
            let lines = traced(hop);
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("rpc.server") && l.contains("traced call")),
                "{hop} ran no handler in the trace; its log:\n{}",
                s.log_of(hop)
            );
        }
        // Every traced call line names this trace: none of the untraced push's calls is.
        for hop in ["saver", "room-1"] {
            let log = s.log_of(hop);
            let calls = log.lines().filter(|l| l.contains("traced call"));
            assert!(calls.clone().all(|l| l.contains(TRACE_ID)), "{log}");
        }
    }
}
