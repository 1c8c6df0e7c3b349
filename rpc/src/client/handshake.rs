//! Opening a connection: TCP connect, the TLS handshake (when configured), HELLO,
//! HELLO_ACK — all inside the connect timeout.

use std::time::Duration;

use longlink_codec::rpc::{ChunkedMessage, ErrorCode, Hello, Message, RpcCodec};
use longlink_codec::{BufPool, CodecError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Config;
use crate::RpcError;
use crate::stream::{self, ReadHalf, WriteHalf};
use crate::wire::FrameReader;

/// An open, greeted connection.
pub(crate) struct Greeted {
    pub(crate) reader: FrameReader<ReadHalf>,
    pub(crate) writer: WriteHalf,
    /// The server's limits, and the features it answered (what this client may use
    /// towards it).
    pub(crate) server: Hello,
}

pub(crate) fn codec(config: &Config) -> RpcCodec {
    RpcCodec::new().max_frame_bytes(config.max_frame_bytes)
}

/// Writes one message (for the one-call-at-a-time strategies).
pub(crate) async fn write_message(
    writer: &mut WriteHalf,
    codec: &RpcCodec,
    message: Message,
) -> std::io::Result<()> {
    let mut buf = BufPool::global().get(16 * 1024);
    let mut chunks = ChunkedMessage::new(message);
    while !chunks
        .encode_next(codec, &mut buf)
        .map_err(std::io::Error::other)?
    {}
    writer.write_all(&buf).await?;
    // Over TLS the last record may still be in the session: push it out.
    writer.flush().await
}

/// The socket's halves: plain, or after the TLS handshake.
async fn open(
    stream: TcpStream,
    addr: &str,
    config: &Config,
) -> Result<(ReadHalf, WriteHalf), RpcError> {
    #[cfg(feature = "tls")]
    if let Some(tls) = &config.tls {
        return Ok(stream::tls(tls.connect(addr, stream).await?));
    }
    let _ = (addr, config);
    Ok(stream::tcp(stream))
}

/// The error for an I/O failure `what` (sending HELLO, reading HELLO_ACK): a TLS refusal
/// that arrives after the handshake (the server refusing our certificate, under TLS 1.3)
/// is [`RpcError::Tls`], anything else [`RpcError::Unavailable`].
fn io_failure(addr: &str, what: &str, e: &std::io::Error) -> RpcError {
    #[cfg(feature = "tls")]
    if let Some(reason) = crate::tls::describe(e) {
        // Under TLS 1.3 the client's side of the handshake is done before the server has
        // checked its certificate: the server's refusal arrives here, but it is the
        // handshake that failed.
        return RpcError::Tls {
            reason: format!("handshake with {addr}: {reason}"),
        };
    }
    RpcError::Unavailable {
        reason: format!("{what} {addr}: {e}"),
    }
}

/// Connects to `addr` and exchanges HELLO, within `timeout`.
pub(crate) async fn connect(
    addr: &str,
    config: &Config,
    timeout: Duration,
) -> Result<Greeted, RpcError> {
    let unavailable = |reason: String| RpcError::Unavailable { reason };
    let greet = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| unavailable(format!("connect to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (read_half, mut writer) = open(stream, addr, config).await?;
        let codec = codec(config);
        let hello = Message::Hello(Hello {
            max_frame_bytes: config.max_frame_bytes as u32,
            max_in_flight: 0,
            features: config.compression.offer(),
        });
        write_message(&mut writer, &codec, hello)
            .await
            .map_err(|e| io_failure(addr, "send HELLO to", &e))?;
        let mut reader = FrameReader::new(read_half, codec);
        match reader.next().await {
            Ok(Some(Message::HelloAck(server))) => Ok(Greeted {
                reader,
                writer,
                server,
            }),
            Ok(Some(Message::Error(e))) if e.code == ErrorCode::PROTOCOL_MISMATCH => {
                Err(RpcError::ProtocolMismatch { detail: e.message })
            }
            Ok(Some(Message::Error(e))) => Err(unavailable(format!(
                "{addr} refused the connection: {}",
                e.message
            ))),
            Ok(Some(other)) => Err(RpcError::ProtocolMismatch {
                detail: format!("expected HELLO_ACK, got {}", other.kind()),
            }),
            Ok(None) => Err(unavailable(format!(
                "{addr} closed the connection during HELLO"
            ))),
            Err(CodecError::UnsupportedVersion { version }) => Err(RpcError::ProtocolMismatch {
                detail: format!("server answered with protocol version {version}"),
            }),
            Err(CodecError::Io(e)) => Err(io_failure(addr, "HELLO with", &e)),
            Err(e) => Err(unavailable(format!("HELLO with {addr}: {e}"))),
        }
    };
    match tokio::time::timeout(timeout, greet).await {
        Ok(result) => result,
        Err(_) => Err(unavailable(format!(
            "connect to {addr} timed out after {timeout:?}"
        ))),
    }
}
