//! TLS (feature `tls`): every strategy over TLS, mutual TLS, and every way a handshake can
//! fail — each a typed error that says the call did not run, counted by the server, never
//! a hang.
#![cfg(feature = "tls")]

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::tls::{Ca, Pki};
use common::{ECHO, TestServer};
use longlink_rpc::{Client, RpcError, Server, ServerHandle, Strategy, TlsClient, TlsServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const STRATEGIES: [Strategy; 3] = [
    Strategy::Multiplexed { conns: 2 },
    Strategy::Pooled { max_conns: 4 },
    Strategy::Short,
];

/// Waits until `done` holds for the server's stats (or fails after 5 s).
async fn until(
    handle: &ServerHandle,
    what: &str,
    done: impl Fn(&longlink_rpc::ServerStats) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(&handle.stats()) {
        assert!(Instant::now() < deadline, "{what}: {:?}", handle.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A failed call: quickly, typed as not run, and the handler never started.
async fn refused(client: &Client, server: &TestServer) -> RpcError {
    let started = Instant::now();
    let err = client.call(ECHO, "secret").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}: {err}",
        started.elapsed()
    );
    assert!(!err.may_have_run(), "{err:?}");
    assert_eq!(server.seen.started.load(SeqCst), 0, "the handler ran");
    assert_eq!(server.handle.stats().requests, 0);
    err
}

#[tokio::test]
async fn each_strategy_round_trips_over_tls() {
    let pki = Pki::new();
    for strategy in STRATEGIES {
        let server = TestServer::with(Server::builder().tls(pki.server_tls())).await;
        let client = Client::builder(server.addr.to_string())
            .strategy(strategy)
            .tls(pki.client_tls())
            .build();
        for i in 0..5 {
            let body = format!("call {i}");
            assert_eq!(client.call(ECHO, body.clone()).await.unwrap(), body);
        }
        // Concurrent calls, and a body large enough to go out in chunks (several TLS
        // records, flushed batch by batch).
        let big = Bytes::from(vec![7u8; 300 * 1024]);
        let calls: Vec<_> = (0..16)
            .map(|i| {
                let client = client.clone();
                let body = if i == 0 {
                    big.clone()
                } else {
                    Bytes::from(vec![i as u8; 1024])
                };
                tokio::spawn(async move { (client.call(ECHO, body.clone()).await, body) })
            })
            .collect();
        for call in calls {
            let (answer, body) = call.await.unwrap();
            assert_eq!(answer.unwrap(), body, "{strategy:?}");
        }
        let stats = server.handle.stats();
        assert_eq!(stats.tls_handshake_failures, 0, "{strategy:?}");
        match strategy {
            // A handshake per call.
            Strategy::Short => assert_eq!(stats.tls_handshakes, 21, "{stats:?}"),
            Strategy::Multiplexed { conns } => {
                assert!(stats.tls_handshakes <= conns as u64, "{stats:?}")
            }
            Strategy::Pooled { max_conns } => {
                assert!(stats.tls_handshakes <= max_conns as u64, "{stats:?}")
            }
        }
    }
}

#[tokio::test]
async fn mutual_tls_with_a_certificate_from_the_private_ca_is_accepted() {
    let pki = Pki::new();
    for strategy in STRATEGIES {
        let server = TestServer::with(Server::builder().tls(pki.mutual_server_tls())).await;
        let client = Client::builder(server.addr.to_string())
            .strategy(strategy)
            .tls(pki.mutual_client_tls())
            .build();
        assert_eq!(client.call(ECHO, "hi").await.unwrap(), "hi", "{strategy:?}");
        assert_eq!(server.handle.stats().tls_handshake_failures, 0);
    }
}

#[tokio::test]
async fn mutual_tls_without_a_client_certificate_is_refused_and_counted() {
    let pki = Pki::new();
    for strategy in STRATEGIES {
        let server = TestServer::with(Server::builder().tls(pki.mutual_server_tls())).await;
        let client = Client::builder(server.addr.to_string())
            .strategy(strategy)
            .tls(pki.client_tls())
            .build();
        let err = refused(&client, &server).await;
        match &err {
            RpcError::Tls { reason } => assert!(
                reason.contains("requires a client certificate"),
                "{strategy:?}: {reason}"
            ),
            other => panic!("{strategy:?}: {other:?}"),
        }
        assert!(!err.is_retryable());
        until(&server.handle, "the refusal is counted", |s| {
            s.tls_handshake_failures == 1 && s.connections_open == 0
        })
        .await;
    }
}

#[tokio::test]
async fn mutual_tls_with_a_certificate_from_another_ca_is_refused_and_counted() {
    let pki = Pki::new();
    let stranger = Ca::new("another CA").leaf(&["client.test"]);
    for strategy in STRATEGIES {
        let server = TestServer::with(Server::builder().tls(pki.mutual_server_tls())).await;
        let client = Client::builder(server.addr.to_string())
            .strategy(strategy)
            .tls(
                pki.client_tls()
                    .identity(&stranger.cert, &stranger.key)
                    .unwrap(),
            )
            .build();
        match refused(&client, &server).await {
            RpcError::Tls { reason } => {
                assert!(reason.contains("refused our certificate"), "{reason}")
            }
            other => panic!("{strategy:?}: {other:?}"),
        }
        until(&server.handle, "the refusal is counted", |s| {
            s.tls_handshake_failures == 1 && s.tls_handshakes == 0
        })
        .await;
    }
}

#[tokio::test]
async fn a_server_certificate_from_an_unknown_ca_is_refused() {
    let pki = Pki::new();
    let server = TestServer::with(Server::builder().tls(pki.server_tls())).await;
    let client = Client::builder(server.addr.to_string())
        .tls(TlsClient::from_pem(Ca::new("another CA").pem).unwrap())
        .build();
    match refused(&client, &server).await {
        RpcError::Tls { reason } => assert!(reason.contains("UnknownIssuer"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused_and_counted() {
    let pki = Pki::new();
    let expired = pki.ca.expired_leaf(&["127.0.0.1", "localhost"]);
    let tls = TlsServer::from_pem(&expired.cert, &expired.key).unwrap();
    let server = TestServer::with(Server::builder().tls(tls)).await;
    let client = Client::builder(server.addr.to_string())
        .tls(pki.client_tls())
        .build();
    match refused(&client, &server).await {
        RpcError::Tls { reason } => assert!(reason.contains("xpired"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The client's alert reaches the server, which counts the failed handshake.
    until(&server.handle, "the failure counted", |s| {
        s.tls_handshake_failures >= 1 && s.connections_open == 0
    })
    .await;
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_refused_unless_that_name_is_asked_for() {
    let ca = Ca::new("longlink-rpc test CA");
    let leaf = ca.leaf(&["rpc.internal"]);
    let tls = longlink_rpc::TlsServer::from_pem(&leaf.cert, &leaf.key).unwrap();
    let server = TestServer::with(Server::builder().tls(tls)).await;
    // Dialled as 127.0.0.1: the certificate does not carry that name.
    let client = Client::builder(server.addr.to_string())
        .tls(TlsClient::from_pem(&ca.pem).unwrap())
        .build();
    match refused(&client, &server).await {
        RpcError::Tls { reason } => {
            assert!(
                reason.contains("certificate is for another name"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    let named = Client::builder(server.addr.to_string())
        .tls(
            TlsClient::from_pem(&ca.pem)
                .unwrap()
                .server_name("rpc.internal")
                .unwrap(),
        )
        .build();
    assert_eq!(named.call(ECHO, "ok").await.unwrap(), "ok");
}

#[tokio::test]
async fn a_plaintext_client_on_a_tls_server_fails_fast_with_protocol_mismatch() {
    let pki = Pki::new();
    for strategy in STRATEGIES {
        let server = TestServer::with(Server::builder().tls(pki.server_tls())).await;
        let client = Client::builder(server.addr.to_string())
            .strategy(strategy)
            .build();
        match refused(&client, &server).await {
            RpcError::ProtocolMismatch { detail } => {
                assert_eq!(detail, "this server requires TLS", "{strategy:?}")
            }
            other => panic!("{strategy:?}: {other:?}"),
        }
        until(&server.handle, "the plaintext client is counted", |s| {
            s.tls_handshake_failures == 1 && s.connections_open == 0
        })
        .await;
    }
}

#[tokio::test]
async fn a_tls_client_on_a_plaintext_server_fails_fast_with_a_tls_error() {
    let pki = Pki::new();
    for strategy in STRATEGIES {
        let server = TestServer::start().await;
        let client = Client::builder(server.addr.to_string())
            .strategy(strategy)
            .tls(pki.client_tls())
            .build();
        match refused(&client, &server).await {
            RpcError::Tls { reason } => {
                assert!(
                    reason.contains("does not speak TLS"),
                    "{strategy:?}: {reason}"
                )
            }
            other => panic!("{strategy:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_refused_handshake_stays_a_tls_error_while_the_client_backs_off() {
    let pki = Pki::new();
    let server = TestServer::with(Server::builder().tls(pki.mutual_server_tls())).await;
    let client = Client::builder(server.addr.to_string())
        .tls(pki.client_tls())
        .build();
    let first = refused(&client, &server).await;
    let again = client.call(ECHO, "again").await.unwrap_err();
    match (&first, &again) {
        (RpcError::Tls { .. }, RpcError::Tls { reason }) => {
            assert!(reason.contains("; reconnecting in "), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!again.is_retryable() && !again.may_have_run());
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout_and_counted() {
    let pki = Pki::new();
    let server = TestServer::with(
        Server::builder()
            .tls(pki.server_tls())
            .tls_handshake_timeout(Duration::from_millis(200)),
    )
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    until(&server.handle, "the connection is open", |s| {
        s.connections_open == 1
    })
    .await;
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the server closes the connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing is sent to a client that never said hello");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    until(&server.handle, "the timeout is counted", |s| {
        s.tls_handshake_failures == 1 && s.connections_open == 0
    })
    .await;
    // The listener still serves others.
    let client = Client::builder(server.addr.to_string())
        .tls(pki.client_tls())
        .build();
    assert_eq!(client.call(ECHO, "next").await.unwrap(), "next");
}

#[tokio::test]
async fn a_connection_in_its_handshake_closes_at_once_when_shutdown_begins() {
    let pki = Pki::new();
    let server = TestServer::with(
        Server::builder()
            .tls(pki.server_tls())
            .tls_handshake_timeout(Duration::from_secs(30)),
    )
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    until(&server.handle, "the connection is open", |s| {
        s.connections_open == 1
    })
    .await;
    let started = Instant::now();
    server.handle.begin_shutdown(Duration::from_secs(10));
    let served = tokio::time::timeout(Duration::from_secs(2), server.task)
        .await
        .expect("the server stops without waiting for the handshake");
    assert!(served.unwrap().is_ok());
    let mut buf = [0u8; 8];
    assert_eq!(silent.read(&mut buf).await.unwrap_or(0), 0);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.handle.stats().connections_open, 0);
}

/// Forwards a client's bytes to `target` but holds the target's answers back, so the
/// client waits mid-handshake for as long as the test likes. Returns the proxy's address,
/// and a receiver that says when the client closed its side.
async fn stalling_proxy(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let upstream = TcpStream::connect(target).await.unwrap();
        let (mut up_read, mut up_write) = upstream.into_split();
        // Swallow the server's side (its ServerHello never reaches the client).
        tokio::spawn(async move {
            let mut sink = vec![0u8; 16 * 1024];
            while matches!(up_read.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if up_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        // The client is gone: so is the proxy's connection to the server.
        drop(up_write);
        let _ = closed_tx.send(());
    });
    (addr, closed_rx)
}

#[tokio::test]
async fn a_connect_dropped_mid_handshake_leaks_nothing() {
    let pki = Pki::new();
    for strategy in STRATEGIES {
        let server = TestServer::with(Server::builder().tls(pki.server_tls())).await;
        let (proxy, client_closed) = stalling_proxy(server.addr).await;
        // Through the proxy the certificate must still carry the name: dialled as
        // 127.0.0.1, it does.
        let client = Client::builder(proxy.to_string())
            .strategy(strategy)
            .connect_timeout(Duration::from_secs(30))
            .tls(pki.client_tls())
            .build();
        let call = {
            let client = client.clone();
            tokio::spawn(async move { client.call(ECHO, "never").await })
        };
        // The server has the ClientHello (its connection is open, its handshake under way)
        // and the client waits for an answer that the proxy holds.
        until(&server.handle, "the handshake is under way", |s| {
            s.connections_open == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
        tokio::time::timeout(Duration::from_secs(5), client_closed)
            .await
            .expect("the dropped connect closes its socket")
            .unwrap();
        until(&server.handle, "the server's connection closes", |s| {
            s.connections_open == 0
        })
        .await;
        let stats = client.stats();
        assert_eq!(
            (stats.open_connections, stats.in_flight),
            (0, 0),
            "{strategy:?}"
        );
        assert_eq!(server.handle.stats().tls_handshakes, 0);
    }
}

/// Megabytes each way at once fill the sockets: the writers must flush what rustls kept
/// when a socket did not take a whole batch, or the tail of an answer never leaves (these
/// calls then hang until their deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_both_ways_at_once_arrive_whole() {
    let pki = Pki::new();
    let server = TestServer::with(
        Server::builder()
            .tls(pki.server_tls())
            .max_frame_bytes(4 << 20),
    )
    .await;
    let client = Client::builder(server.addr.to_string())
        .tls(pki.client_tls())
        .max_frame_bytes(4 << 20)
        .build();
    let big = Bytes::from(vec![7u8; 1 << 20]);
    for round in 0..3 {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                let body = big.clone();
                tokio::spawn(async move {
                    let answer = client
                        .call_timeout(ECHO, body.clone(), Duration::from_secs(5))
                        .await;
                    answer.map(|a| a == body)
                })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().unwrap(), "round {round}");
        }
    }
}

#[tokio::test]
async fn a_handshake_that_never_finishes_fails_within_the_connect_timeout() {
    let pki = Pki::new();
    let server = TestServer::with(Server::builder().tls(pki.server_tls())).await;
    let (proxy, _client_closed) = stalling_proxy(server.addr).await;
    let client = Client::builder(proxy.to_string())
        .connect_timeout(Duration::from_millis(300))
        .tls(pki.client_tls())
        .build();
    let started = Instant::now();
    let err = client.call(ECHO, "never").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    match &err {
        RpcError::Unavailable { reason } => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(!err.may_have_run() && err.is_retryable());
    assert_eq!(server.seen.started.load(SeqCst), 0);
}
