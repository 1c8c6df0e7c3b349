//! Test servers and services over real sockets on 127.0.0.1.
#![allow(dead_code, unreachable_pub)]

pub mod script;
#[cfg(feature = "tls")]
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use longlink_codec::rpc::{Hello, Message, RpcCodec};
use longlink_rpc::server::Builder;
use longlink_rpc::{Request, Response, Server, ServerHandle, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

pub const ECHO: u32 = 1;
/// Body: milliseconds to sleep (u64, big-endian); answers with the body.
pub const SLEEP: u32 = 2;
pub const FAIL: u32 = 3;
pub const COUNT: u32 = 4;

/// What the test service saw.
#[derive(Default, Debug)]
pub struct Seen {
    pub started: AtomicUsize,
    pub finished: AtomicUsize,
    /// Handlers dropped before finishing (cancelled or timed out by the server).
    pub abandoned: AtomicUsize,
}

struct Running(Arc<Seen>, bool);

impl Drop for Running {
    fn drop(&mut self) {
        if !self.1 {
            self.0.abandoned.fetch_add(1, SeqCst);
        }
    }
}

pub fn millis(ms: u64) -> Bytes {
    Bytes::copy_from_slice(&ms.to_be_bytes())
}

pub fn service(
    seen: Arc<Seen>,
) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(move |req: Request| {
        let seen = Arc::clone(&seen);
        async move {
            seen.started.fetch_add(1, SeqCst);
            let mut running = Running(Arc::clone(&seen), false);
            let response = match req.method {
                ECHO => Response::ok(req.body),
                SLEEP => {
                    let ms = u64::from_be_bytes(req.body[..8].try_into().unwrap());
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Response::ok(req.body)
                }
                FAIL => Response::error(Status(1001), "boom"),
                COUNT => Response::ok(Bytes::new()),
                other => Response::error(Status::UNKNOWN_METHOD, format!("no method {other}")),
            };
            running.1 = true;
            seen.finished.fetch_add(1, SeqCst);
            Ok::<_, Infallible>(response)
        }
    })
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    pub seen: Arc<Seen>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::with(Server::builder()).await
    }

    pub async fn with(builder: Builder) -> TestServer {
        TestServer::on(builder, "127.0.0.1:0").await
    }

    pub async fn on(builder: Builder, addr: &str) -> TestServer {
        let server = builder.bind(addr).await.unwrap();
        let addr = server.local_addr();
        // Load and fault tests talk to 127.0.0.0/8 only.
        assert!(addr.ip().is_loopback(), "test server on {addr}");
        let handle = server.handle();
        let seen = Arc::new(Seen::default());
        let task = tokio::spawn(server.serve(service(Arc::clone(&seen))));
        TestServer {
            addr,
            handle,
            seen,
            task,
        }
    }

    /// Kills the server: listener and every connection closed at once, no drain.
    pub async fn kill(self) -> SocketAddr {
        self.task.abort();
        let _ = self.task.await;
        assert!(
            tokio::net::TcpStream::connect(self.addr).await.is_err(),
            "a killed server still accepts on {}",
            self.addr
        );
        self.addr
    }
}

/// Opens a raw connection and completes HELLO.
pub async fn raw(addr: std::net::SocketAddr) -> (TcpStream, RpcCodec, BytesMut) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut codec = RpcCodec::new();
    let mut out = BytesMut::new();
    codec
        .encode(
            Message::Hello(Hello {
                max_frame_bytes: 1 << 20,
                max_in_flight: 0,
                features: Default::default(),
            }),
            &mut out,
        )
        .unwrap();
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    loop {
        if let Some(Message::HelloAck(_)) = codec.decode(&mut buf).unwrap() {
            return (stream, codec, buf);
        }
        assert!(stream.read_buf(&mut buf).await.unwrap() > 0);
    }
}
