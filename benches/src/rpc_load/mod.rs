//! The RPC load tool: echo servers and clients for longlink (three strategies), tarpc and
//! tonic, written the idiomatic way for each, with TCP_NODELAY on for all.
//!
//! Request body convention (all three servers honour it): the first byte `1` asks the
//! server to sleep `--slow-ms` before answering (the head-of-line test); the server also
//! sleeps `--work-us` on every request when set (the overload test). Everything else is
//! echoed back.
//!
//! The typed rows (`typed`) send the same body through a `service!` declaration with a
//! `serde_bytes` body, as a user writes one; tarpc has no untyped path, so its rows are
//! typed in both: `Vec<u8>` (bincode writes it element by element) and `serde_bytes`.

pub mod clients;
pub mod compression;
pub mod out_of_box;
pub mod process;
pub mod servers;
pub mod suite;
pub mod typed;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A tokio runtime flavor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Flavor {
    /// `multi_thread` (one worker per available core).
    Multi,
    /// `current_thread`.
    Current,
}

impl Flavor {
    /// A runtime of this flavor.
    pub fn runtime(self) -> tokio::runtime::Runtime {
        match self {
            Flavor::Multi => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build(),
            Flavor::Current => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
        }
        .expect("a tokio runtime")
    }
}

/// Which server implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServerImpl {
    /// longlink-rpc.
    Longlink,
    /// longlink-rpc over TLS (`--tls-data-dir`).
    LonglinkTls,
    /// longlink-rpc serving the typed echo (`service!`, a `serde_bytes` body).
    LonglinkTyped,
    /// longlink-rpc with zstd compression on (level 1, bodies of 8 KiB or more).
    LonglinkZstd,
    /// tarpc over TCP with its bincode transport.
    Tarpc,
    /// tonic (gRPC over HTTP/2) with a raw-bytes codec.
    Tonic,
}

/// Which client implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ClientImpl {
    /// longlink, one multiplexed connection.
    LonglinkMux,
    /// longlink, four multiplexed connections.
    LonglinkMux4,
    /// longlink, pooled: one call per connection, as many connections as concurrency.
    LonglinkPooled,
    /// longlink, short: connect per call.
    LonglinkShort,
    /// longlink over TLS, one multiplexed connection.
    LonglinkMuxTls,
    /// longlink over TLS, pooled.
    LonglinkPooledTls,
    /// longlink over TLS, short: a TCP connect and a TLS handshake per call.
    LonglinkShortTls,
    /// longlink typed (`service!`, `serde_bytes` body), one multiplexed connection.
    LonglinkMuxTyped,
    /// longlink typed, pooled.
    LonglinkPooledTyped,
    /// longlink, one multiplexed connection, zstd compression on (level 1, 8 KiB).
    LonglinkMuxZstd,
    /// tarpc (one multiplexed connection), a `Vec<u8>` body.
    Tarpc,
    /// tarpc with a `serde_bytes` body, as the longlink typed rows.
    TarpcTyped,
    /// tonic (one HTTP/2 connection).
    Tonic,
}

impl ClientImpl {
    /// The server this client talks to.
    pub fn server(self) -> ServerImpl {
        match self {
            ClientImpl::Tarpc | ClientImpl::TarpcTyped => ServerImpl::Tarpc,
            ClientImpl::LonglinkMuxTyped | ClientImpl::LonglinkPooledTyped => {
                ServerImpl::LonglinkTyped
            }
            ClientImpl::Tonic => ServerImpl::Tonic,
            ClientImpl::LonglinkMuxZstd => ServerImpl::LonglinkZstd,
            ClientImpl::LonglinkMuxTls
            | ClientImpl::LonglinkPooledTls
            | ClientImpl::LonglinkShortTls => ServerImpl::LonglinkTls,
            _ => ServerImpl::Longlink,
        }
    }

    /// Whether it speaks TLS.
    pub fn is_tls(self) -> bool {
        self.server() == ServerImpl::LonglinkTls
    }

    /// The same strategy over TLS, for the plaintext longlink clients that have one.
    pub fn over_tls(self) -> Option<ClientImpl> {
        match self {
            ClientImpl::LonglinkMux => Some(ClientImpl::LonglinkMuxTls),
            ClientImpl::LonglinkPooled => Some(ClientImpl::LonglinkPooledTls),
            ClientImpl::LonglinkShort => Some(ClientImpl::LonglinkShortTls),
            _ => None,
        }
    }

    /// The typed twin of a raw client (tarpc's: the `serde_bytes` body).
    pub fn typed(self) -> Option<ClientImpl> {
        match self {
            ClientImpl::LonglinkMux => Some(ClientImpl::LonglinkMuxTyped),
            ClientImpl::LonglinkPooled => Some(ClientImpl::LonglinkPooledTyped),
            ClientImpl::Tarpc => Some(ClientImpl::TarpcTyped),
            _ => None,
        }
    }

    /// The name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            ClientImpl::LonglinkMux => "longlink mux",
            ClientImpl::LonglinkMux4 => "longlink mux×4",
            ClientImpl::LonglinkPooled => "longlink pooled",
            ClientImpl::LonglinkShort => "longlink short",
            ClientImpl::LonglinkMuxTls => "longlink mux TLS",
            ClientImpl::LonglinkPooledTls => "longlink pooled TLS",
            ClientImpl::LonglinkShortTls => "longlink short TLS",
            ClientImpl::LonglinkMuxTyped => "longlink mux typed",
            ClientImpl::LonglinkPooledTyped => "longlink pooled typed",
            ClientImpl::LonglinkMuxZstd => "longlink mux zstd",
            ClientImpl::Tarpc => "tarpc",
            ClientImpl::TarpcTyped => "tarpc serde_bytes",
            ClientImpl::Tonic => "tonic",
        }
    }
}

/// What one client run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Client implementation.
    pub client: ClientImpl,
    /// Runtime flavor of client and server.
    pub flavor: Flavor,
    /// Concurrent callers.
    pub concurrency: usize,
    /// Measured seconds.
    pub seconds: f64,
    /// Successful calls.
    pub ok: u64,
    /// Successful calls including the warm-up's: what the process did in all, to divide
    /// counts taken over its whole life (allocations, syscalls) by.
    #[serde(default)]
    pub calls_total: u64,
    /// Successful calls per second.
    pub qps: f64,
    /// Latency percentiles of the successful (normal-sized, fast) calls, microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Failed calls by kind.
    pub errors: BTreeMap<String, u64>,
    /// 99th percentile / maximum time to fail, microseconds (how fast overload is refused).
    pub error_p99_us: u64,
    /// Maximum time to fail.
    pub error_max_us: u64,
    /// longlink: payload bytes on the wire per successful call, both directions, frame
    /// headers excluded — from the client's compression counters (a body not compressed
    /// counts its own size).
    #[serde(default)]
    pub wire_bytes_per_call: Option<f64>,
}

/// What the bodies of a run contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BodyKind {
    /// Zero bytes (the echo rows: the content does not matter to them).
    Zeros,
    /// JSON-like text, as services send (compresses ~20-40× with zstd level 1).
    Json,
}

impl BodyKind {
    /// A body of `len` bytes of this kind.
    pub fn body(self, len: usize) -> Vec<u8> {
        match self {
            BodyKind::Zeros => vec![0; len],
            BodyKind::Json => {
                let mut out = Vec::with_capacity(len + 128);
                let mut i = 0u64;
                while out.len() < len {
                    let record = format!(
                        r#"{{"id":{i},"uid":"user-{}","room":"room-{}","kind":"message","body":"hello, this is message {i}"}},"#,
                        i % 977,
                        i % 31
                    );
                    out.extend_from_slice(record.as_bytes());
                    i += 1;
                }
                out.truncate(len);
                out
            }
        }
    }
}

/// The certificate files of the TLS runs: `<dir>/tls/{ca,cert,key}.pem`, a development CA
/// and a certificate for 127.0.0.1 it signed (made on first use, as `longlink-push
/// --tls-self-signed` makes them).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA the client trusts.
    pub ca: std::path::PathBuf,
    /// The server's certificate chain.
    pub cert: std::path::PathBuf,
    /// Its key.
    pub key: std::path::PathBuf,
}

impl TlsFiles {
    /// The files under `dir`, made there if missing.
    pub fn under(dir: &std::path::Path) -> Result<TlsFiles, String> {
        let made = longlink_push::tls::self_signed(dir, &[]).map_err(|e| e.to_string())?;
        Ok(TlsFiles {
            ca: made.ca,
            cert: made.tls.cert,
            key: made.tls.key,
        })
    }

    fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
    }

    /// The server's TLS.
    pub fn server(&self) -> Result<longlink_rpc::TlsServer, String> {
        longlink_rpc::TlsServer::from_pem(Self::read(&self.cert)?, Self::read(&self.key)?)
            .map_err(|e| e.to_string())
    }

    /// The client's TLS (trusting the CA; the server name is the host of the address).
    pub fn client(&self) -> Result<longlink_rpc::TlsClient, String> {
        longlink_rpc::TlsClient::from_pem(Self::read(&self.ca)?).map_err(|e| e.to_string())
    }
}

/// The default address of the load servers.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7390";

/// Parses a duration in seconds (fractions allowed).
pub fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|e| e.to_string())
}
