//! A client that does not read its answers stops being read: the server's outgoing queue
//! per connection is bounded in bytes.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{ECHO, TestServer, raw};
use longlink_codec::rpc::{Message, Request, RpcCodec};
use longlink_rpc::{Client, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stops_reading_a_client_that_does_not_read_its_answers() {
    let server = TestServer::with(Server::builder().max_outgoing_bytes(256 * 1024)).await;
    let (stream, mut decoder, mut buf) = raw(server.addr).await;

    // Flood 64 KiB echo requests without reading a byte: 2,000 of them would be 128 MiB of
    // answers.
    let (mut read_half, mut write_half) = stream.into_split();
    let writer = tokio::spawn(async move {
        let body = Bytes::from(vec![1u8; 64 * 1024]);
        for id in 1..=2_000u64 {
            let mut frame = BytesMut::new();
            let req = Message::Request(Request {
                id,
                deadline: None,
                method: ECHO,
                metadata: Default::default(),
                compressed: false,
                body: body.clone(),
            });
            RpcCodec::new().encode(req, &mut frame).unwrap();
            if write_half.write_all(&frame).await.is_err() {
                break;
            }
        }
        write_half
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled = server.handle.stats().requests;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.handle.stats().requests,
        stalled,
        "the server kept reading"
    );
    // Bounded: the 256 KiB queue plus what the kernel's socket buffers hold, far from 2,000.
    assert!(
        stalled < 400,
        "{stalled} requests taken in while nothing was read"
    );
    assert!(!writer.is_finished(), "the client's writes are pushed back");

    // Other clients are served meanwhile.
    assert_eq!(
        Client::new(server.addr.to_string())
            .call(ECHO, "hi")
            .await
            .unwrap(),
        "hi"
    );

    // Reading the answers lets the server read again, and every request is answered.
    let mut answered = 0;
    buf.reserve(1 << 20);
    while answered < 2_000 {
        while let Some(message) = decoder.decode(&mut buf).unwrap() {
            if matches!(message, Message::Response(_)) {
                answered += 1;
            }
        }
        if answered < 2_000 {
            assert!(read_half.read_buf(&mut buf).await.unwrap() > 0);
        }
    }
    drop(writer.await.unwrap());
}
