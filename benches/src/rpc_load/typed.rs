//! The typed echo: the same `service!` a user writes, with a `serde_bytes` body each way,
//! so the typed rows pay what a user pays (postcard encode and decode on both sides, a
//! `ByteBuf` per message) over the same strategies as the raw rows.

use std::net::SocketAddr;

use longlink_rpc::{Server, ServiceError};
use serde_bytes::ByteBuf;

use super::servers::EchoBehaviour;

longlink_rpc::service! {
    /// The typed echo service of the load tool.
    pub mod bench_typed {
        /// Answers the body it was given.
        fn echo(body: ByteBuf) -> ByteBuf;
    }
}

/// The handler: the raw server's behaviour (slow and working calls), then the body back.
#[derive(Debug, Clone, Copy)]
struct TypedEcho(EchoBehaviour);

impl bench_typed::Handler for TypedEcho {
    async fn echo(&self, body: ByteBuf) -> Result<ByteBuf, ServiceError> {
        self.0.wait(&body).await;
        Ok(body)
    }
}

/// Serves the typed echo until the process is killed (the limits are the raw server's).
pub async fn serve(
    addr: SocketAddr,
    behaviour: EchoBehaviour,
    max_concurrent: usize,
) -> std::io::Result<()> {
    let server = Server::builder()
        .max_concurrent(max_concurrent)
        .max_concurrent_per_conn(max_concurrent)
        .max_frame_bytes(4 << 20)
        .bind(addr)
        .await?;
    server
        .serve(bench_typed::Server::new(TypedEcho(behaviour)))
        .await
}
