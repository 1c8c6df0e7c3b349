//! Opening a connection: TCP connect, HELLO, HELLO_ACK.

use std::time::Duration;

use longlink_codec::rpc::{ChunkedMessage, ErrorCode, Hello, Message, RpcCodec};
use longlink_codec::{BufPool, CodecError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::Config;
use crate::RpcError;
use crate::wire::FrameReader;

/// An open, greeted connection.
pub(crate) struct Greeted {
    pub(crate) reader: FrameReader<OwnedReadHalf>,
    pub(crate) writer: OwnedWriteHalf,
    /// The server's limits.
    pub(crate) server: Hello,
}

pub(crate) fn codec(config: &Config) -> RpcCodec {
    RpcCodec::new().max_frame_bytes(config.max_frame_bytes)
}

/// Writes one message (for the one-call-at-a-time strategies).
pub(crate) async fn write_message(
    writer: &mut OwnedWriteHalf,
    codec: &RpcCodec,
    message: Message,
) -> std::io::Result<()> {
    let mut buf = BufPool::global().get(16 * 1024);
    let mut chunks = ChunkedMessage::new(message);
    while !chunks
        .encode_next(codec, &mut buf)
        .map_err(std::io::Error::other)?
    {}
    writer.write_all(&buf).await
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
        let (read_half, mut writer) = stream.into_split();
        let codec = codec(config);
        let hello = Message::Hello(Hello {
            max_frame_bytes: config.max_frame_bytes as u32,
            max_in_flight: 0,
        });
        write_message(&mut writer, &codec, hello)
            .await
            .map_err(|e| unavailable(format!("send HELLO to {addr}: {e}")))?;
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
