//! TLS on the room's `wss://` and TCP+TLS ports and the center's HTTPS, against real
//! rustls clients: pushes arrive, a new certificate is served to new handshakes while open
//! connections keep theirs, and bad clients are refused, counted, and disturb nobody.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use longlink_codec::push::{Auth, Net, PushMessage};
use longlink_push::tls::{TlsConfig, self_signed};
use longlink_push_client::{Event, Transport};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A system serving a development certificate from `<dir>/tls` (TLS listeners on
/// ephemeral ports; plaintext too, on loopback), with `tweak` applied.
async fn tls_system(tweak: impl FnOnce(&mut longlink_push::config::Config)) -> TestSystem {
    start_with(|c| {
        let made = self_signed(&c.data_dir, &[]).unwrap();
        c.tls = Some(made.tls);
        c.room.wss_listen = "127.0.0.1:0".parse().unwrap();
        c.room.tls_listen = "127.0.0.1:0".parse().unwrap();
        tweak(c);
    })
    .await
}

async fn tls_raw(s: &TestSystem, uid: &str) -> TlsRaw {
    let mut raw = TlsRaw::tls(
        s.system.tls.unwrap(),
        trusting(s.ca.as_deref()),
        "localhost",
    )
    .await
    .expect("a trusted handshake");
    let reply = raw.auth(uid, &s.token(uid)).await;
    assert!(
        matches!(reply, PushMessage::AuthReply(ref r) if r.ok),
        "{reply:?}"
    );
    raw
}

/// The next push delivered on a raw connection, skipping nothing else.
async fn delivered(
    raw: &mut Raw<impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>,
) -> String {
    match raw.recv().await {
        Some(PushMessage::Message(m)) => m.body.as_str().unwrap_or_default().to_owned(),
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn clients_get_pushes_over_tcp_tls_and_wss_from_an_https_center() {
    let s = tls_system(|_| {}).await;
    assert!(s.center_url().starts_with("https://"), "{}", s.center_url());
    // The dispatcher hands out the TLS listeners.
    let (status, d) = s
        .request("GET", "/dispatch?uid=t1&net=wifi", None, None)
        .await;
    assert_eq!(status, 200, "{d}");
    let room = &d["rooms"][0];
    assert_eq!(
        room["ws"],
        format!("wss://127.0.0.1:{}/", s.system.wss.unwrap().port())
    );
    assert_eq!(
        room["tcp"],
        format!("127.0.0.1:{}", s.system.tls.unwrap().port())
    );
    assert_eq!(room["tcp_tls"], true);

    let mut tcp = s.client("t1");
    let mut ws = s.client_with("t2", |c| c.transport = Transport::WebSocket);
    // The SSE fallback: HTTPS on the wss:// port.
    let mut sse = s.client_with("t3", |c| c.transport = Transport::Sse);
    for client in [&mut tcp, &mut ws, &mut sse] {
        match event(client).await {
            Event::Connected { address, .. } => {
                assert!(address.contains(':'), "{address}");
            }
            other => panic!("expected Connected, got {other:?}"),
        }
    }
    s.push("unicast", json!({"uid": "t1", "body": "over tls"}))
        .await;
    s.push("unicast", json!({"uid": "t2", "body": "over wss"}))
        .await;
    assert_eq!(message(&mut tcp).await.1, "over tls");
    assert_eq!(message(&mut ws).await.1, "over wss");
    s.push("unicast", json!({"uid": "t3", "body": "over https"}))
        .await;
    assert_eq!(message(&mut sse).await.1, "over https");
    // Two rooms' handshakes and the center's HTTPS ones, all counted.
    assert!(s.metric("longlink_push_tls_handshakes_total").await >= 3);
}

/// Copies the development certificate made under `from` to the paths `live` serves.
fn install(from: &Path, live: &TlsConfig) {
    let tls = from.join("tls");
    std::fs::copy(tls.join("key.pem"), &live.key).unwrap();
    std::fs::copy(tls.join("cert.pem"), &live.cert).unwrap();
}

/// Two development CAs with a certificate each, and the paths a system serves from.
fn two_certificates(root: &Path) -> (PathBuf, PathBuf, TlsConfig) {
    let (a, b) = (root.join("a"), root.join("b"));
    self_signed(&a, &[]).unwrap();
    self_signed(&b, &[]).unwrap();
    let live = TlsConfig {
        cert: root.join("cert.pem"),
        key: root.join("key.pem"),
        reload_check: Duration::from_millis(50),
    };
    install(&a, &live);
    // The tests' HTTPS client trusts both (`ca.pem` beside the certificate).
    let both = [&a, &b]
        .map(|d| std::fs::read_to_string(d.join("tls/ca.pem")).unwrap())
        .concat();
    std::fs::write(root.join("ca.pem"), both).unwrap();
    (a, b, live)
}

/// Whether a TLS handshake trusting only `ca` succeeds on the room's TCP+TLS port.
async fn trusted_by(s: &TestSystem, ca: &Path) -> bool {
    TlsRaw::tls(s.system.tls.unwrap(), trusting(Some(ca)), "localhost")
        .await
        .is_ok()
}

#[tokio::test]
async fn a_changed_certificate_file_is_served_to_new_handshakes_and_open_connections_keep_going() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, live) = two_certificates(root.path());
    let (ca_a, ca_b) = (a.join("tls/ca.pem"), b.join("tls/ca.pem"));
    let s = start_with(|c| {
        c.tls = Some(live.clone());
        c.room.wss_listen = "127.0.0.1:0".parse().unwrap();
        c.room.tls_listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let mut open = TlsRaw::tls(s.system.tls.unwrap(), trusting(Some(&ca_a)), "localhost")
        .await
        .unwrap();
    let reply = open.auth("r1", &s.token("r1")).await;
    assert!(matches!(reply, PushMessage::AuthReply(ref r) if r.ok));
    assert!(!trusted_by(&s, &ca_b).await, "B is not served yet");

    // Make sure the new files get a later modification time than the first ones.
    tokio::time::sleep(Duration::from_millis(20)).await;
    install(&b, &live);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !trusted_by(&s, &ca_b).await {
        assert!(tokio::time::Instant::now() < deadline, "B never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!trusted_by(&s, &ca_a).await, "A is no longer served");
    assert_eq!(s.system.metrics.tls_reloads.get(), 1);
    // The connection made under A was not touched: it still gets pushes.
    s.push("unicast", json!({"uid": "r1", "body": "still here"}))
        .await;
    assert_eq!(delivered(&mut open).await, "still here");
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_a_broken_file_keeps_the_one_in_use() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, mut live) = two_certificates(root.path());
    live.reload_check = Duration::ZERO; // SIGHUP only
    let (ca_a, ca_b) = (a.join("tls/ca.pem"), b.join("tls/ca.pem"));
    let s = start_with(|c| {
        c.tls = Some(live.clone());
        c.room.wss_listen = "127.0.0.1:0".parse().unwrap();
        c.room.tls_listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    // The watcher installs its handler as it starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    install(&b, &live);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        trusted_by(&s, &ca_a).await,
        "without SIGHUP the files are not read"
    );

    let hup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    hup();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !trusted_by(&s, &ca_b).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A half-written certificate: the reload fails, B stays, the failure is counted.
    std::fs::write(&live.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    hup();
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.system.metrics.tls_reload_failures.get() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload failure counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(trusted_by(&s, &ca_b).await, "the certificate in use stays");
    let certs = s.system.certificates.as_ref().unwrap();
    let e = certs.reload().unwrap_err().to_string();
    assert!(e.contains("cert.pem"), "says which file: {e}");
}

#[tokio::test]
async fn bad_tls_clients_are_refused_with_a_reason_and_counted_and_disturb_no_one() {
    let s = tls_system(|_| {}).await;
    let mut steady = tls_raw(&s, "steady").await;
    let tls_port = s.system.tls.unwrap();
    let wss_port = s.system.wss.unwrap();

    // A plaintext push client on the TCP+TLS port: told in its own protocol.
    let mut plain = Raw::connect(tls_port).await;
    plain
        .send(&PushMessage::Auth(Auth {
            uid: "p".into(),
            device: "d".into(),
            net: Net::Wifi,
            token: "t".into(),
            apps: vec!["demo".into()],
        }))
        .await;
    match plain.recv().await {
        Some(PushMessage::Error(e)) => {
            assert_eq!(e.code, 400);
            assert!(e.reason.contains("speaks TLS"), "{}", e.reason);
        }
        other => panic!("expected an ERROR, got {other:?}"),
    }

    // Plain HTTP on the wss:// port: an HTTP 400 saying so.
    let mut http = TcpStream::connect(wss_port).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = http.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("wss://"), "{answer}");

    // A handshake cut short: the start of a ClientHello, then the client leaves.
    let mut cut = TcpStream::connect(tls_port).await.unwrap();
    cut.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
        .await
        .unwrap();
    drop(cut);

    // A client that does not trust the CA refuses the room (rustls says why).
    let untrusting = TlsRaw::tls(tls_port, trusting(None), "localhost").await;
    let e = untrusting.err().expect("refused").to_string();
    assert!(
        e.contains("UnknownIssuer") || e.contains("unknown issuer"),
        "{e}"
    );
    // One that expects another host name does too.
    let wrong_host = TlsRaw::tls(tls_port, trusting(s.ca.as_deref()), "push.example").await;
    let e = wrong_host.err().expect("refused").to_string();
    assert!(e.to_lowercase().contains("name"), "{e}");
    // A client offering only another protocol is refused by ALPN.
    let mut other = (*trusting(s.ca.as_deref())).clone();
    other.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(tls_port).await.unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(other))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await;
    let e = refused.expect_err("refused").to_string();
    assert!(
        e.contains("NoApplicationProtocol") || e.contains("application protocol"),
        "{e}"
    );

    // Each counted; the connection that was open meanwhile still gets its pushes.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = &s.system.metrics;
        let (not_tls, failures) = (m.tls_not_tls.get(), m.tls_handshake_failures.get());
        // Cut short, unknown issuer, wrong host (the client aborts), ALPN: four failures.
        if not_tls >= 2 && failures >= 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not_tls {not_tls}, failures {failures}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.push("unicast", json!({"uid": "steady", "body": "undisturbed"}))
        .await;
    assert_eq!(delivered(&mut steady).await, "undisturbed");
    steady.send(&PushMessage::Heartbeat).await;
    assert_eq!(steady.recv().await, Some(PushMessage::HeartbeatReply));
}

#[tokio::test]
async fn a_tungstenite_client_speaks_wss_with_the_json_form() {
    let s = tls_system(|_| {}).await;
    let mut config = (*trusting(s.ca.as_deref())).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(s.system.wss.unwrap()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/", s.system.wss.unwrap().port());
    let (mut ws, response) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(response.status(), 101);
    let auth = json!({"op": "auth", "seq": 1, "uid": "j1", "device": "web", "net": "wifi",
                      "token": s.token("j1"), "apps": ["demo"]});
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        auth.to_string(),
    ))
    .await
    .unwrap();
    let reply = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let reply: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(reply["op"], "auth_reply", "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
}

#[tokio::test]
async fn a_reconnecting_client_resumes_from_a_stateless_ticket() {
    let s = tls_system(|_| {}).await;
    let config = trusting(s.ca.as_deref());
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let mut raw = TlsRaw::tls(s.system.tls.unwrap(), Arc::clone(&config), "localhost")
            .await
            .unwrap();
        // The ticket comes after the handshake: reading the AUTH reply takes it in.
        let reply = raw.auth("resumer", &s.token("resumer")).await;
        assert!(
            matches!(reply, PushMessage::AuthReply(ref r) if r.ok),
            "{reply:?}"
        );
        kinds.push(raw.handshake_kind());
    }
    use rustls::HandshakeKind::{Full, Resumed};
    // The room keeps no session cache (NoServerSessionStorage): only the ticket resumes.
    assert_eq!(kinds, [Some(Full), Some(Resumed), Some(Resumed)]);
}
