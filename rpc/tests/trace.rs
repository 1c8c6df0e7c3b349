//! Metadata and W3C trace context travel with calls, through every strategy, and a handler
//! that calls onward continues the trace.

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use common::raw;
use longlink_codec::rpc::{ErrorCode, Message};
use longlink_rpc::trace::{TRACEPARENT, TraceContext};
use longlink_rpc::{Client, Metadata, Request, Response, Server, Strategy};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

/// What a handler saw: the request's metadata and the trace context current in it.
#[derive(Debug, Clone)]
struct Sighting {
    metadata: Metadata,
    current: Option<TraceContext>,
    body_len: usize,
}

type Sightings = Arc<Mutex<Vec<Sighting>>>;

/// A server whose handler records what it saw and, when `onward` is set, calls it first.
async fn recording_server(onward: Option<Client>) -> (String, Sightings) {
    let seen: Sightings = Arc::default();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().to_string();
    let record = Arc::clone(&seen);
    tokio::spawn(server.serve(tower::service_fn(move |req: Request| {
        let record = Arc::clone(&record);
        let onward = onward.clone();
        async move {
            record.lock().push(Sighting {
                metadata: req.metadata.clone(),
                current: TraceContext::current(),
                body_len: req.body.len(),
            });
            if let Some(next) = onward {
                next.call(1, "onward").await.unwrap();
            }
            Ok::<_, Infallible>(Response::ok(req.body))
        }
    })));
    (addr, seen)
}

#[tokio::test]
async fn a_call_inside_a_trace_reaches_the_handler_as_a_child_span() {
    let (addr, seen) = recording_server(None).await;
    let client = Client::new(addr);
    let root = TraceContext::new_root();
    root.clone()
        .scope(async { client.call(1, "hi").await.unwrap() })
        .await;

    let sighting = seen.lock()[0].clone();
    let sent = TraceContext::parse(sighting.metadata.get_str(TRACEPARENT).unwrap()).unwrap();
    assert_eq!(sent.trace_id(), root.trace_id(), "the same trace");
    assert_ne!(
        sent.span_id(),
        root.span_id(),
        "the call is a span of its own"
    );
    let server = sighting.current.expect("the handler runs inside the trace");
    assert_eq!(server.trace_id(), root.trace_id());
    assert_eq!(server.parent_span_id(), Some(sent.span_id()));
    assert_ne!(server.span_id(), sent.span_id());
}

#[tokio::test]
async fn a_call_outside_any_trace_carries_no_metadata() {
    let (addr, seen) = recording_server(None).await;
    Client::new(addr).call(1, "hi").await.unwrap();
    let sighting = seen.lock()[0].clone();
    assert!(sighting.metadata.is_empty());
    assert!(sighting.current.is_none());
}

#[tokio::test]
async fn metadata_reaches_the_handler_with_every_strategy_and_a_chunked_body() {
    let (addr, seen) = recording_server(None).await;
    let mut meta = Metadata::builder();
    meta.insert("authorization", "Bearer t0ken").unwrap();
    meta.insert("baggage", "tenant=7").unwrap();
    let meta = meta.build();
    // 200 KiB: several chunks, the metadata in the first only.
    let big = Bytes::from(vec![7u8; 200 * 1024]);
    for strategy in [
        Strategy::Short,
        Strategy::Pooled { max_conns: 2 },
        Strategy::Multiplexed { conns: 1 },
    ] {
        let client = Client::builder(addr.clone()).strategy(strategy).build();
        for body in [Bytes::from_static(b"small"), big.clone()] {
            let req = Request::new(1, body.clone()).with_metadata(meta.clone());
            assert_eq!(
                client.call_request(req).await.unwrap(),
                body,
                "{strategy:?}"
            );
        }
    }
    let seen = seen.lock();
    assert_eq!(seen.len(), 6);
    for s in seen.iter() {
        assert_eq!(s.metadata, meta);
        assert_eq!(s.metadata.get_str("baggage"), Some("tenant=7"));
    }
    assert_eq!(seen.iter().filter(|s| s.body_len == big.len()).count(), 3);
}

#[tokio::test]
async fn a_handler_calling_onward_continues_the_trace() {
    let (back_addr, back_seen) = recording_server(None).await;
    let (front_addr, front_seen) = recording_server(Some(Client::new(back_addr))).await;
    let root = TraceContext::new_root();
    root.clone()
        .scope(async { Client::new(front_addr).call(1, "go").await.unwrap() })
        .await;

    let front = front_seen.lock()[0].current.clone().unwrap();
    let back_sighting = back_seen.lock()[0].clone();
    let onward_call =
        TraceContext::parse(back_sighting.metadata.get_str(TRACEPARENT).unwrap()).unwrap();
    let back = back_sighting.current.unwrap();
    assert_eq!(
        back.trace_id(),
        root.trace_id(),
        "one trace across two hops"
    );
    // root → front's client span → front's server span → its onward client span → back.
    assert_eq!(back.parent_span_id(), Some(onward_call.span_id()));
    assert_ne!(onward_call.span_id(), front.span_id());
}

#[tokio::test]
async fn an_explicit_traceparent_is_sent_as_given() {
    let (addr, seen) = recording_server(None).await;
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut meta = Metadata::builder();
    meta.insert(TRACEPARENT, given).unwrap();
    let req = Request::new(1, "x").with_metadata(meta.build());
    // Even inside another trace: what the caller set wins.
    TraceContext::new_root()
        .scope(Client::new(addr).call_request(req))
        .await
        .unwrap();
    let s = seen.lock()[0].clone();
    assert_eq!(s.metadata.get_str(TRACEPARENT), Some(given));
    assert_eq!(
        s.current.unwrap().parent_span_id().as_deref(),
        Some("00f067aa0ba902b7")
    );
}

#[tokio::test]
async fn a_malformed_metadata_section_closes_that_connection_with_an_error() {
    let (addr, seen) = recording_server(None).await;
    let (mut stream, mut codec, mut buf) = raw(addr.parse().unwrap()).await;
    // REQ id 1 flagged METADATA (8) whose section has an uppercase key.
    let mut body = BytesMut::new();
    body.put_u32(0); // no deadline
    body.put_u32(1); // method
    let section: &[u8] = &[3, b'B', b'A', b'D', 0, 1, b'x'];
    body.put_u16(section.len() as u16);
    body.put_slice(section);
    body.put_slice(b"payload");
    let mut frame = BytesMut::new();
    frame.put_u32(body.len() as u32);
    frame.put_u8(1); // version
    frame.put_u8(3); // REQ
    frame.put_u16(8); // METADATA
    frame.put_u64(1);
    frame.put_slice(&body);
    stream.write_all(&frame).await.unwrap();
    let error = loop {
        if let Some(message) = codec.decode(&mut buf).unwrap() {
            break message;
        }
        assert!(
            stream.read_buf(&mut buf).await.unwrap() > 0,
            "closed silently"
        );
    };
    match error {
        Message::Error(e) => {
            assert_eq!(e.code, ErrorCode::MALFORMED);
            assert!(e.message.contains("metadata"), "{}", e.message);
        }
        other => panic!("expected ERR, got {other:?}"),
    }
    assert!(seen.lock().is_empty(), "the handler did not run");
    // The server still serves others.
    assert_eq!(Client::new(addr).call(1, "ok").await.unwrap(), "ok");
}
