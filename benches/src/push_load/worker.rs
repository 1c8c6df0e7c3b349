//! A load worker: one process holding a share of the connections (a process may hold at
//! most ~19,900 open files here), each bound to its own loopback source address so that
//! more than ~28k connections fit. It is driven by the coordinator over stdin/stdout, a
//! JSON line each way.
//!
//! Commands (stdin): `report` → one [`Report`] line; `reset` → zeroes the counters;
//! `churn <fraction>` → closes that fraction of its connections, which reconnect at once;
//! `quit`. While connecting it prints `{"connected": n}` lines, then `{"ready": n, "failed": f}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use longlink_codec::push::{Ack, Auth, Net, Op, PushCodec, PushMessage};
use longlink_push::token::Tokens;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::codec::{Decoder, Framed};

/// What a worker is told to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// Room addresses: `host:port` for TCP, `ws://…/` for WebSocket; user i goes to
    /// `rooms[i % len]`.
    pub rooms: Vec<String>,
    /// WebSocket (else raw TCP).
    pub websocket: bool,
    /// First user index (uid `load{i}`).
    pub first: usize,
    /// Users.
    pub count: usize,
    /// The source address to bind.
    pub source: String,
    /// The token secret.
    pub secret: String,
    /// Heartbeat interval.
    pub heartbeat_secs: u64,
    /// Connects at once.
    pub parallel: usize,
    /// Record the ids received per user (churn checks them).
    pub track_ids: bool,
    /// TLS (`wss://`, TCP+TLS) trusting the CA certificates in this PEM text.
    #[serde(default)]
    pub ca_pem: Option<String>,
}

/// rustls client settings trusting the CA certificates in `pem`, offering `alpn`.
pub fn tls_config(pem: &str, alpn: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(longlink_push::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    // Every connection a full handshake: what 100k phones cost on their first connect.
    // (The rooms would resume a worker's later connections from tickets.)
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A TCP stream, or TLS over one.
type Stream =
    tokio_util::either::Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// A worker's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Connections open now.
    pub open: u64,
    /// Messages received since the last reset.
    pub received: u64,
    /// Reconnects after a churn or a lost connection.
    pub reconnects: u64,
    /// Delivery latency (µs): (value, count) pairs.
    pub latency_us: Vec<(u64, u64)>,
    /// Ids received per user (with `track_ids`).
    pub ids: BTreeMap<String, Vec<u64>>,
}

struct Shared {
    open: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    ids: Mutex<BTreeMap<String, Vec<u64>>>,
    /// `churn`: (generation, permille); a connection picked by the permille closes and
    /// reconnects when the generation changes.
    churn: tokio::sync::watch::Sender<(u64, u64)>,
    /// TLS settings, when the rooms speak TLS.
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

enum Conn {
    Tcp(Framed<Stream, PushCodec>),
    Ws(Box<tokio_tungstenite::WebSocketStream<Stream>>, PushCodec),
}

impl Conn {
    async fn open(
        plan: &WorkerPlan,
        room: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> std::io::Result<Conn> {
        let source: std::net::IpAddr = plan.source.parse().map_err(std::io::Error::other)?;
        let host = room
            .trim_start_matches("ws://")
            .trim_start_matches("wss://")
            .trim_end_matches('/')
            .to_owned();
        let addr: SocketAddr = host.parse().map_err(std::io::Error::other)?;
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        let stream = match tls {
            None => tokio_util::either::Either::Left(stream),
            Some(config) => {
                let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, stream)
                    .await?;
                tokio_util::either::Either::Right(Box::new(tls))
            }
        };
        if plan.websocket {
            let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
            let (ws, _) = tokio_tungstenite::client_async_with_config(room, stream, Some(config))
                .await
                .map_err(std::io::Error::other)?;
            Ok(Conn::Ws(Box::new(ws), PushCodec::new()))
        } else {
            Ok(Conn::Tcp(Framed::new(stream, PushCodec::new())))
        }
    }

    async fn send(&mut self, message: &PushMessage) -> std::io::Result<()> {
        match self {
            Conn::Tcp(f) => f
                .send(message.to_frame(0).map_err(std::io::Error::other)?)
                .await
                .map_err(std::io::Error::other),
            Conn::Ws(ws, _) => {
                let mut buf = BytesMut::new();
                message.encode(0, &mut buf).map_err(std::io::Error::other)?;
                ws.send(WsMessage::Binary(buf.freeze()))
                    .await
                    .map_err(std::io::Error::other)
            }
        }
    }

    async fn recv(&mut self) -> std::io::Result<Option<Vec<PushMessage>>> {
        let frame = match self {
            Conn::Tcp(f) => match f.next().await {
                None => return Ok(None),
                Some(frame) => frame.map_err(std::io::Error::other)?,
            },
            Conn::Ws(ws, codec) => loop {
                match ws.next().await {
                    None | Some(Ok(WsMessage::Close(_))) => return Ok(None),
                    Some(Err(e)) => return Err(std::io::Error::other(e)),
                    Some(Ok(WsMessage::Binary(bytes))) => {
                        let mut buf = BytesMut::from(&bytes[..]);
                        match codec.decode(&mut buf).map_err(std::io::Error::other)? {
                            Some(frame) => break frame,
                            None => return Err(std::io::Error::other("partial frame")),
                        }
                    }
                    Some(Ok(_)) => {}
                }
            },
        };
        if frame.op == Op::BATCH {
            return frame
                .unbatch(1 << 20)
                .map(|f| {
                    let f = f.map_err(std::io::Error::other)?;
                    PushMessage::from_frame(&f).map_err(std::io::Error::other)
                })
                .collect::<std::io::Result<Vec<_>>>()
                .map(Some);
        }
        Ok(Some(vec![
            PushMessage::from_frame(&frame).map_err(std::io::Error::other)?,
        ]))
    }
}

/// One user's connection for the worker's life: connect, AUTH, receive (ACKing stored
/// messages), heartbeat; reconnect when closed or churned.
async fn user(
    plan: Arc<WorkerPlan>,
    index: usize,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    ready: tokio::sync::mpsc::UnboundedSender<bool>,
) {
    let uid = format!("load{index}");
    let room = plan.rooms[index % plan.rooms.len()].clone();
    let token = Tokens::new(plan.secret.as_bytes()).issue(&uid, Duration::from_secs(24 * 3600));
    let mut first = true;
    loop {
        let permit = gate.acquire().await.expect("never closed");
        let conn = async {
            let mut conn = Conn::open(&plan, &room, shared.tls.as_ref()).await?;
            conn.send(&PushMessage::Auth(Auth {
                uid: uid.clone(),
                device: "load".into(),
                net: Net::Wifi,
                token: token.clone(),
                apps: vec!["demo".into()],
            }))
            .await?;
            match conn.recv().await?.and_then(|mut m| m.pop()) {
                Some(PushMessage::AuthReply(r)) if r.ok => Ok((conn, u64::from(r.heartbeat_secs))),
                other => Err(std::io::Error::other(format!("auth refused: {other:?}"))),
            }
        }
        .await;
        drop(permit);
        let (mut conn, heartbeat_secs) = match conn {
            Ok(conn) => conn,
            Err(_) => {
                if first {
                    let _ = ready.send(false);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if first {
            let _ = ready.send(true);
            first = false;
        } else {
            shared.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        shared.open.fetch_add(1, Ordering::Relaxed);
        let mut churn = shared.churn.subscribe();
        churn.mark_unchanged();
        // The interval the room asked for, or the plan's if shorter.
        let every = heartbeat_secs.min(plan.heartbeat_secs).max(1);
        let mut beat = tokio::time::interval(Duration::from_secs(every));
        beat.tick().await;
        loop {
            tokio::select! {
                frames = conn.recv() => {
                    let Ok(Some(frames)) = frames else { break };
                    for m in frames {
                        if let PushMessage::Message(d) = m {
                            shared.received.fetch_add(1, Ordering::Relaxed);
                            if let Some(sent) = d.body.as_str().and_then(|b| b.parse::<u64>().ok()) {
                                let _ = shared.latency.lock().record(now_us().saturating_sub(sent).max(1));
                            }
                            if plan.track_ids {
                                shared.ids.lock().entry(uid.clone()).or_default().push(d.id);
                            }
                            if d.mode != longlink_codec::push::DeliveryMode::AtMostOnce {
                                let _ = conn.send(&PushMessage::Ack(Ack { ids: vec![d.id] })).await;
                            }
                        }
                    }
                }
                _ = beat.tick() => {
                    if conn.send(&PushMessage::Heartbeat).await.is_err() { break }
                }
                changed = churn.changed() => {
                    if changed.is_err() { break }
                    let (generation, permille) = *churn.borrow_and_update();
                    // A different share of users each time.
                    if (index as u64).wrapping_mul(7919).wrapping_add(generation * 104_729) % 1000 < permille {
                        break;
                    }
                }
            }
        }
        shared.open.fetch_sub(1, Ordering::Relaxed);
        drop(conn);
    }
}

/// Runs a worker from `plan` until `quit`.
pub async fn run(plan: WorkerPlan) {
    let plan = Arc::new(plan);
    let shared = Arc::new(Shared {
        open: AtomicU64::new(0),
        received: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 2).expect("bounds")),
        ids: Mutex::new(BTreeMap::new()),
        churn: tokio::sync::watch::channel((0, 0)).0,
        tls: plan.ca_pem.as_deref().map(|pem| {
            let alpn = if plan.websocket {
                longlink_push::tls::ALPN_HTTP1
            } else {
                longlink_push::tls::ALPN_PUSH
            };
            tls_config(pem, alpn).expect("the CA file holds certificates")
        }),
    });
    let gate = Arc::new(Semaphore::new(plan.parallel.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(plan.count);
    for i in plan.first..plan.first + plan.count {
        tasks.push(tokio::spawn(user(
            Arc::clone(&plan),
            i,
            Arc::clone(&shared),
            Arc::clone(&gate),
            tx.clone(),
        )));
    }
    drop(tx);
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut last = std::time::Instant::now();
    while let Some(connected) = rx.recv().await {
        if connected {
            ok += 1
        } else {
            failed += 1
        }
        if last.elapsed() > Duration::from_millis(200) {
            println!("{}", serde_json::json!({"connected": ok, "failed": failed}));
            last = std::time::Instant::now();
        }
        if (ok + failed) as usize == plan.count {
            break;
        }
    }
    println!("{}", serde_json::json!({"ready": ok, "failed": failed}));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("report") => {
                let h = shared.latency.lock();
                let report = Report {
                    open: shared.open.load(Ordering::Relaxed),
                    received: shared.received.load(Ordering::Relaxed),
                    reconnects: shared.reconnects.load(Ordering::Relaxed),
                    latency_us: h
                        .iter_recorded()
                        .map(|v| (v.value_iterated_to(), v.count_at_value()))
                        .collect(),
                    ids: shared.ids.lock().clone(),
                };
                println!("{}", serde_json::to_string(&report).expect("json"));
            }
            Some("reset") => {
                shared.received.store(0, Ordering::Relaxed);
                shared.latency.lock().reset();
                shared.ids.lock().clear();
                println!("{}", serde_json::json!({"reset": true}));
            }
            Some("churn") => {
                let fraction: f64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0.1);
                shared.churn.send_modify(|(generation, permille)| {
                    *generation += 1;
                    *permille = (fraction * 1000.0) as u64;
                });
                println!("{}", serde_json::json!({"churned": true}));
            }
            _ => break,
        }
    }
    for t in tasks {
        t.abort();
    }
}
