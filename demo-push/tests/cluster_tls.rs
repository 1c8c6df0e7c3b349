//! The cluster's RPC over TLS (`[cluster.tls]`, mutual by default): a push crosses every
//! process over TLS; a process that is not the cluster's is refused by its RPC servers
//! with a typed error, and counted.

mod common;

mod cluster {
    use std::time::Duration;

    use longlink_push::config::ClusterConfig;
    use longlink_push::register::register_svc;
    use longlink_push::tls::ClusterTlsConfig;
    use longlink_rpc::RpcError;
    use serde_json::json;

    use super::common::cluster::{self, TestCluster};
    use super::common::{Harness, WAIT, message};

    const HANDSHAKES: &str = "longlink_push_rpc_server_tls_handshakes_total";
    const FAILURES: &str = "longlink_push_rpc_server_tls_handshake_failures_total";

    /// A development CA and a certificate it signed (for servers and clients), made under
    /// `dir`, as `[cluster.tls]` takes them.
    fn pki(dir: &std::path::Path) -> ClusterTlsConfig {
        let made = longlink_push::tls::self_signed(dir, &[]).unwrap();
        ClusterTlsConfig {
            ca: made.ca,
            cert: made.tls.cert,
            key: made.tls.key,
            mutual: true,
            server_name: None,
        }
    }

    async fn start(tls: &ClusterTlsConfig) -> TestCluster {
        let tls = tls.clone();
        cluster::start_with(move |c| c.cluster.tls = Some(tls)).await
    }

    /// Waits until the processes' metric pages add up to at least `n` of `name`.
    async fn until_metric(s: &TestCluster, name: &str, n: u64) -> u64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let value = s.metric(name).await;
            if value >= n {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} stayed at {value}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A push through the center, the register, the saver and a room, acked, with every
    /// hop over mutual TLS.
    async fn push_arrives(s: &TestCluster, uid: &str) {
        let mut client = s.online(uid).await;
        let id = s
            .push("unicast", json!({"uid": uid, "body": "over TLS"}))
            .await;
        assert_eq!(message(&mut client).await, (id, "over TLS".to_owned()));
        s.wait_status(id, uid, "acked").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cluster_with_tls_delivers_a_push_end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let tls = pki(dir.path());
        let s = start(&tls).await;
        push_arrives(&s, "u1").await;
        // Every cluster RPC server handshook (rooms, register, saver, coordinator), and none
        // refused a member of the cluster.
        assert!(until_metric(&s, HANDSHAKES, 4).await >= 4);
        assert_eq!(s.metric(FAILURES).await, 0);
        // It really is TLS: a plaintext caller is refused at once, saying why.
        let plain = register_svc::Client::new(longlink_rpc::Client::new(s.addr("register", "rpc")));
        match plain.epoch().await {
            Err(RpcError::ProtocolMismatch { detail }) => {
                assert_eq!(detail, "this server requires TLS")
            }
            other => panic!("{other:?}"),
        }
        until_metric(&s, FAILURES, 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_process_with_a_certificate_from_another_ca_is_refused_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let tls = pki(&dir.path().join("cluster"));
        let s = start(&tls).await;
        // A process that trusts the cluster's CA but holds a certificate another CA signed.
        let stranger = pki(&dir.path().join("stranger"));
        let config = ClusterConfig {
            tls: Some(ClusterTlsConfig {
                ca: tls.ca.clone(),
                ..stranger
            }),
            ..ClusterConfig::default()
        };
        let rpc = config
            .rpc(&Default::default())
            .expect("the stranger's files load");
        let register =
            register_svc::Client::new(rpc.client("register", &s.addr("register", "rpc")));
        let err = register.epoch().await.unwrap_err();
        match &err {
            RpcError::Tls { reason } => {
                assert!(reason.contains("refused our certificate"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.may_have_run() && !err.is_retryable());
        // What a cluster service makes of it: unavailable, and nothing done.
        let push_error = longlink_push::remote::from_rpc_error("register", err);
        assert!(!push_error.may_have_run(), "{push_error}");
        until_metric(&s, FAILURES, 1).await;
        // The servers still serve the cluster's own processes.
        push_arrives(&s, "u2").await;
    }
}
