//! The cluster shows its internal calls on its `/metrics` pages: a push through the center
//! appears as round trips from the center to the saver, the register and the room, and as
//! handler time on the saver and the room — histograms labelled by peer (or service) and
//! method, with cumulative buckets ending in `+Inf` equal to `_count`.

mod common;

mod cluster {
    use serde_json::json;

    use super::common::cluster::start;
    use super::common::*;

    /// `name{labels}` of a histogram series with `suffix` (`_count`, `_sum`, `_bucket`).
    fn series(family: &str, suffix: &str, labels: &str) -> String {
        format!("longlink_push_{family}_seconds{suffix}{{{labels}}}")
    }

    /// The series' `_count`, after checking its buckets: cumulative, ending in `+Inf` with
    /// the count, and a `_sum`.
    fn checked_count(page: &str, family: &str, labels: &str) -> u64 {
        let count = metric_in(page, &series(family, "_count", labels))
            .unwrap_or_else(|| panic!("no {family} {{{labels}}} in\n{page}"));
        // prometheus-client writes `le` first: `…_bucket{le="0.001",peer="saver",…} 3`.
        let bucket_prefix = format!("longlink_push_{family}_seconds_bucket{{le=\"");
        let bucket_end = format!("\",{labels}}} ");
        let buckets: Vec<(String, u64)> = page
            .lines()
            .filter_map(|l| l.strip_prefix(&bucket_prefix))
            .filter_map(|rest| rest.split_once(&bucket_end))
            .map(|(le, value)| (le.to_owned(), value.trim().parse().expect("a count")))
            .collect();
        assert_eq!(buckets.len(), 23, "every bucket of {family} {{{labels}}}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "cumulative: {buckets:?}"
        );
        assert_eq!(buckets.last().unwrap(), &("+Inf".to_owned(), count));
        let sum_line = format!("{} ", series(family, "_sum", labels));
        assert!(page.lines().any(|l| l.starts_with(&sum_line)), "no _sum");
        count
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_push_shows_as_rpc_histograms_on_the_center_saver_and_room_pages() {
        let s = start().await;
        let mut u1 = s.online("u1").await;
        let id = s
            .push("unicast", json!({"uid": "u1", "body": "timed"}))
            .await;
        assert_eq!(message(&mut u1).await, (id, "timed".to_owned()));
        s.wait_status(id, "u1", "acked").await;

        // The center stored the message (saver), asked where u1 is (register) and
        // delivered it (the room).
        let center = s.metrics_page("center").await;
        for (peer, method) in [
            ("saver", "saver_svc.store"),
            ("register", "register_svc.lookup"),
            ("room", "room_svc.deliver"),
        ] {
            let labels = format!("peer=\"{peer}\",method=\"{method}\"");
            assert!(checked_count(&center, "rpc_client_round_trip", &labels) > 0);
            assert!(checked_count(&center, "rpc_client_queue_wait", &labels) > 0);
        }

        // The saver served the store; the room served the delivery, and called the
        // register when u1 connected.
        let saver = s.metrics_page("saver").await;
        let stored = "service=\"saver\",method=\"saver_svc.store\"";
        assert!(checked_count(&saver, "rpc_server_handler", stored) > 0);
        assert!(checked_count(&saver, "rpc_server_queue", stored) > 0);
        let room = s.rooms_of("u1").await.pop().expect("u1 is on a room");
        let page = s.metrics_page(&room).await;
        let delivered = "service=\"room\",method=\"room_svc.deliver\"";
        assert!(checked_count(&page, "rpc_server_handler", delivered) > 0);
        let connected = "peer=\"register\",method=\"register_svc.connect\"";
        assert!(checked_count(&page, "rpc_client_round_trip", connected) > 0);
    }
}
