//! The echo servers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures::StreamExt;
use longlink_rpc::{Request, Response, Server};
use tokio::net::TcpListener;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::{ServerImpl, TlsFiles};

/// How the echo behaves.
#[derive(Debug, Clone, Copy)]
pub struct EchoBehaviour {
    /// Sleep for requests whose first byte is 1.
    pub slow: Duration,
    /// Sleep for every request.
    pub work: Duration,
    /// CPU spent on every request (a handler that computes, on the handler's task).
    pub cpu: Duration,
}

impl EchoBehaviour {
    pub(super) async fn wait(&self, body: &[u8]) {
        if let Some(db) = DB.get() {
            db.exec("DO 1", ())
                .await
                .expect("the bench database answers");
        }
        if !self.cpu.is_zero() {
            // Real work rather than a sleep: hash the body until the time is spent.
            let until = std::time::Instant::now() + self.cpu;
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            while std::time::Instant::now() < until {
                for b in body.iter().take(256) {
                    h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
                }
                std::hint::black_box(h);
            }
        }
        let mut pause = self.work;
        if body.first() == Some(&1) {
            pause += self.slow;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// A database every request queries first (`rpc-server --db`): a handler that waits on a
/// pool, as a service in front of a database does.
static DB: std::sync::OnceLock<longlink_pool::db::Db> = std::sync::OnceLock::new();

/// Makes every request of this process run one query (`DO 1`: a round trip to the server
/// and back through the pool) on a pool of `conns` connections to `dsn`.
pub fn use_database(dsn: &str, conns: usize) -> Result<(), String> {
    let db = longlink_pool::db::Db::builder()
        .max_open(conns)
        .max_idle(conns)
        .open(dsn)
        .map_err(|e| e.to_string())?;
    DB.set(db)
        .map_err(|_| "the database is already set".to_owned())
}

/// The method id of the echo.
pub const ECHO: u32 = longlink_rpc::method_id("bench.echo");

/// Runs a server until the process is killed (`tls`: the files of `LonglinkTls`).
pub async fn run(
    which: ServerImpl,
    addr: SocketAddr,
    behaviour: EchoBehaviour,
    max_concurrent: usize,
    tls: Option<&TlsFiles>,
) -> std::io::Result<()> {
    match which {
        ServerImpl::Longlink => longlink(addr, behaviour, max_concurrent, None, false).await,
        ServerImpl::LonglinkZstd => longlink(addr, behaviour, max_concurrent, None, true).await,
        ServerImpl::LonglinkTls => {
            let files = tls.ok_or_else(|| std::io::Error::other("TLS needs --tls-data-dir"))?;
            let tls = files.server().map_err(std::io::Error::other)?;
            longlink(addr, behaviour, max_concurrent, Some(tls), false).await
        }
        ServerImpl::LonglinkTyped => super::typed::serve(addr, behaviour, max_concurrent).await,
        ServerImpl::Tarpc => tarpc_server(addr, behaviour).await,
        ServerImpl::Tonic => tonic_server(addr, behaviour).await,
    }
}

async fn longlink(
    addr: SocketAddr,
    behaviour: EchoBehaviour,
    max_concurrent: usize,
    tls: Option<longlink_rpc::TlsServer>,
    zstd: bool,
) -> std::io::Result<()> {
    let mut builder = Server::builder()
        .max_concurrent(max_concurrent)
        .max_concurrent_per_conn(max_concurrent)
        .max_frame_bytes(4 << 20);
    if zstd {
        builder = builder.compression(longlink_rpc::Compression::zstd());
    }
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    let server = builder.bind(addr).await?;
    let echo = tower_fn(move |req: Request| async move {
        behaviour.wait(&req.body).await;
        Ok::<_, Infallible>(Response::ok(req.body))
    });
    server.serve(echo).await
}

/// `tower::service_fn` without depending on tower: a closure as a `Service`.
#[derive(Clone)]
struct TowerFn<F>(F);

fn tower_fn<F>(f: F) -> TowerFn<F> {
    TowerFn(f)
}

impl<F, Fut> tower_service::Service<Request> for TowerFn<F>
where
    F: FnMut(Request) -> Fut,
    Fut: Future<Output = Result<Response, Infallible>>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Fut;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request) -> Fut {
        (self.0)(req)
    }
}

// ---- tarpc ----

/// The tarpc echo service.
#[tarpc::service]
pub trait EchoService {
    /// Echoes the bytes.
    async fn echo(body: Vec<u8>) -> Vec<u8>;
    /// Echoes the bytes, serialized as bytes (`serde_bytes`) rather than a sequence of `u8`.
    async fn echo_bytes(body: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf;
}

#[derive(Clone)]
struct TarpcEcho(EchoBehaviour);

impl EchoService for TarpcEcho {
    async fn echo(self, _: tarpc::context::Context, body: Vec<u8>) -> Vec<u8> {
        self.0.wait(&body).await;
        body
    }

    async fn echo_bytes(
        self,
        _: tarpc::context::Context,
        body: serde_bytes::ByteBuf,
    ) -> serde_bytes::ByteBuf {
        self.0.wait(&body).await;
        body
    }
}

async fn tarpc_server(addr: SocketAddr, behaviour: EchoBehaviour) -> std::io::Result<()> {
    use tarpc::server::{BaseChannel, Channel};
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        // tarpc's own TCP listener leaves Nagle on: set TCP_NODELAY like everyone else.
        stream.set_nodelay(true)?;
        let framed = Framed::new(
            stream,
            LengthDelimitedCodec::builder()
                .max_frame_length(8 << 20)
                .new_codec(),
        );
        let transport =
            tarpc::serde_transport::new(framed, tarpc::tokio_serde::formats::Bincode::default());
        let server = TarpcEcho(behaviour);
        tokio::spawn(
            BaseChannel::with_defaults(transport)
                .execute(server.serve())
                .for_each(|response| async move {
                    tokio::spawn(response);
                }),
        );
    }
}

// ---- tonic ----

/// A gRPC codec that passes raw bytes (no protobuf): the fairest echo for tonic.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// Encodes raw bytes.
#[derive(Debug)]
pub struct RawEncoder;

/// Decodes raw bytes.
#[derive(Debug)]
pub struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// The gRPC path of the echo.
pub const TONIC_PATH: &str = "/bench.Echo/Echo";

#[derive(Clone)]
struct TonicEcho(Arc<EchoBehaviour>);

impl tonic::server::NamedService for TonicEcho {
    const NAME: &'static str = "bench.Echo";
}

struct Unary(Arc<EchoBehaviour>);

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<Bytes>, tonic::Status>> + Send>>;
    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let behaviour = Arc::clone(&self.0);
        Box::pin(async move {
            let body = request.into_inner();
            behaviour.wait(&body).await;
            Ok(tonic::Response::new(body))
        })
    }
}

impl tower_service::Service<tonic::codegen::http::Request<tonic::body::Body>> for TonicEcho {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        let behaviour = Arc::clone(&self.0);
        Box::pin(async move {
            if req.uri().path() != TONIC_PATH {
                return Ok(tonic::Status::unimplemented("no such method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .max_decoding_message_size(8 << 20)
                .max_encoding_message_size(8 << 20);
            Ok(grpc.unary(Unary(behaviour), req).await)
        })
    }
}

async fn tonic_server(addr: SocketAddr, behaviour: EchoBehaviour) -> std::io::Result<()> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(TonicEcho(Arc::new(behaviour)))
        .serve(addr)
        .await
        .map_err(std::io::Error::other)
}
