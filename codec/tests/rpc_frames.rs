//! RPC frame codec: round trips, exact wire bytes, split reads and every error path.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use longlink_codec::CodecError;
use longlink_codec::rpc::{
    ChunkedMessage, ErrorCode, ErrorFrame, Features, Flags, Hello, Kind, Message, Metadata,
    Request, Response, RpcCodec, RpcFrame, RpcFrameCodec, Status,
};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder, FramedRead};

fn arb_body(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn arb_metadata() -> impl Strategy<Value = Metadata> {
    prop::collection::vec(("[a-z0-9._-]{1,12}", arb_body(40)), 0..4).prop_map(|entries| {
        let mut meta = Metadata::builder();
        for (key, value) in entries {
            meta.insert(&key, value).unwrap();
        }
        meta.build()
    })
}

fn arb_message() -> impl Strategy<Value = Message> {
    let hello = (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(f, n, features)| Hello {
        max_frame_bytes: f,
        max_in_flight: n,
        features: Features::from_bits(features),
    });
    prop_oneof![
        hello.clone().prop_map(Message::Hello),
        hello.prop_map(Message::HelloAck),
        (
            any::<u64>(),
            prop::option::of(1u32..),
            any::<u32>(),
            arb_metadata(),
            any::<bool>(),
            arb_body(3000)
        )
            .prop_map(|(id, us, method, metadata, compressed, body)| {
                Message::Request(Request {
                    id,
                    deadline: us.map(|us| Duration::from_micros(us.into())),
                    method,
                    metadata,
                    compressed,
                    body,
                })
            }),
        (any::<u64>(), any::<u16>(), 0u16..8, arb_body(3000)).prop_map(
            |(id, status, flags, body)| {
                Message::Response(Response {
                    id,
                    status: Status(status),
                    // RETRYABLE (2), NOT_PROCESSED (4), COMPRESSED (16) in any combination.
                    flags: Flags::from_bits((flags & 3) << 1 | (flags & 4) << 2),
                    body,
                })
            }
        ),
        any::<u64>().prop_map(|id| Message::Cancel { id }),
        any::<u64>().prop_map(|id| Message::Ping { id }),
        any::<u64>().prop_map(|id| Message::Pong { id }),
        any::<u64>().prop_map(|last_id| Message::GoAway { last_id }),
        any::<u32>().prop_map(|n| Message::Credit { n }),
        (any::<u16>(), ".{0,40}").prop_map(|(code, message)| Message::Error(ErrorFrame {
            code: ErrorCode(code),
            message
        })),
    ]
}

fn encode_all(codec: &mut RpcCodec, messages: &[Message]) -> BytesMut {
    let mut wire = BytesMut::new();
    for m in messages {
        codec.encode(m.clone(), &mut wire).unwrap();
    }
    wire
}

fn decode_all(codec: &mut RpcCodec, src: &mut BytesMut, out: &mut Vec<Message>) {
    while let Some(m) = codec.decode(src).unwrap() {
        out.push(m);
    }
}

proptest! {
    #[test]
    fn any_messages_round_trip_whole_and_chunked(messages in prop::collection::vec(arb_message(), 1..8), chunk in 1usize..2000) {
        let mut codec = RpcCodec::new().max_chunk_bytes(chunk);
        let mut wire = encode_all(&mut codec, &messages);
        let mut out = Vec::new();
        decode_all(&mut codec, &mut wire, &mut out);
        prop_assert_eq!(out, messages);
        prop_assert!(wire.is_empty());
        prop_assert_eq!(codec.partial_messages(), (0, 0));
    }

    #[test]
    fn any_messages_round_trip_when_split_at_any_offset(messages in prop::collection::vec(arb_message(), 1..4), cut in any::<prop::sample::Index>()) {
        let mut codec = RpcCodec::new().max_chunk_bytes(700);
        let wire = encode_all(&mut codec, &messages);
        let cut = cut.index(wire.len() + 1);
        let mut src = BytesMut::from(&wire[..cut]);
        let mut out = Vec::new();
        decode_all(&mut codec, &mut src, &mut out);
        src.extend_from_slice(&wire[cut..]);
        decode_all(&mut codec, &mut src, &mut out);
        prop_assert_eq!(out, messages);
    }
}

#[test]
fn request_frame_has_exact_wire_bytes() {
    let req = Message::Request(Request {
        id: 0x0102030405060708,
        deadline: Some(Duration::from_millis(2)),
        method: 9,
        metadata: Default::default(),
        compressed: false,
        body: Bytes::from_static(b"ab"),
    });
    let mut wire = BytesMut::new();
    RpcCodec::new().encode(req, &mut wire).unwrap();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0, 0, 0, 10,             // body length
        1,                       // version
        3,                       // REQ
        0, 0,                    // flags
        1, 2, 3, 4, 5, 6, 7, 8,  // id
        0, 0, 0x07, 0xd0,        // deadline: 2000 µs
        0, 0, 0, 9,              // method
        b'a', b'b',
    ];
    assert_eq!(&wire[..], expected);
}

#[test]
fn request_with_metadata_has_exact_wire_bytes() {
    let mut meta = Metadata::builder();
    meta.insert("k", "v").unwrap();
    let req = Message::Request(Request {
        id: 1,
        deadline: None,
        method: 9,
        metadata: meta.build(),
        compressed: false,
        body: Bytes::from_static(b"ab"),
    });
    let mut wire = BytesMut::new();
    RpcCodec::new().encode(req.clone(), &mut wire).unwrap();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0, 0, 0, 17,             // body length
        1, 3,                    // version, REQ
        0, 8,                    // flags: METADATA
        0, 0, 0, 0, 0, 0, 0, 1,  // id
        0, 0, 0, 0,              // no deadline
        0, 0, 0, 9,              // method
        0, 5,                    // metadata length
        1, b'k', 0, 1, b'v',     // "k" = "v"
        b'a', b'b',
    ];
    assert_eq!(&wire[..], expected);
    assert_eq!(RpcCodec::new().decode(&mut wire).unwrap(), Some(req));
}

#[test]
fn metadata_rides_in_the_first_chunk_only_and_a_continuation_claiming_it_is_refused() {
    let mut meta = Metadata::builder();
    meta.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .unwrap();
    let req = Message::Request(Request {
        id: 4,
        deadline: None,
        method: 1,
        metadata: meta.build(),
        compressed: false,
        body: Bytes::from(vec![5u8; 250]),
    });
    let codec = || RpcCodec::new().max_chunk_bytes(100);
    let mut wire = BytesMut::new();
    codec().encode(req.clone(), &mut wire).unwrap();
    let mut frames = RpcFrameCodec::new();
    let mut copy = wire.clone();
    let mut flags = Vec::new();
    while let Some(frame) = frames.decode(&mut copy).unwrap() {
        flags.push(frame.flags);
    }
    assert_eq!(
        flags,
        [Flags::MORE | Flags::METADATA, Flags::MORE, Flags::NONE]
    );
    assert_eq!(codec().decode(&mut wire).unwrap(), Some(req.clone()));

    // A continuation frame flagged METADATA is not a continuation this codec wrote.
    let mut wire = BytesMut::new();
    codec().encode(req, &mut wire).unwrap();
    let first_len = 16 + u32::from_be_bytes(wire[..4].try_into().unwrap()) as usize;
    wire[first_len + 7] |= 8;
    let err = codec().decode(&mut wire).unwrap_err();
    assert!(matches!(err, CodecError::UnexpectedChunk { .. }), "{err}");
}

#[test]
fn hello_carries_features_in_twelve_bytes_and_an_old_eight_byte_hello_reads_as_none() {
    let hello = Hello {
        max_frame_bytes: 0x0010_0000,
        max_in_flight: 256,
        features: Features::ZSTD,
    };
    let mut wire = BytesMut::new();
    RpcCodec::new()
        .encode(Message::HelloAck(hello), &mut wire)
        .unwrap();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0, 0, 0, 12, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // header: 12 bytes, HELLO_ACK
        0, 0x10, 0, 0,                                     // max_frame_bytes
        0, 0, 1, 0,                                        // max_in_flight
        0, 0, 0, 1,                                        // features: ZSTD
    ];
    assert_eq!(&wire[..], expected);
    assert_eq!(
        RpcCodec::new().decode(&mut wire).unwrap(),
        Some(Message::HelloAck(hello))
    );

    // A peer from before the field: 8 bytes, no features.
    let mut old = BytesMut::from(&expected[..24]);
    old[3] = 8;
    assert_eq!(
        RpcCodec::new().decode(&mut old).unwrap(),
        Some(Message::HelloAck(Hello {
            features: Features::NONE,
            ..hello
        }))
    );
    // A later peer's longer HELLO: the bytes after the features are reserved, and skipped.
    let mut later = BytesMut::from(expected);
    later[3] = 16;
    later.extend_from_slice(&[9, 9, 9, 9]);
    later.extend_from_slice(&[0, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]); // PING 7
    let mut codec = RpcCodec::new();
    assert_eq!(
        codec.decode(&mut later).unwrap(),
        Some(Message::HelloAck(hello))
    );
    assert_eq!(
        codec.decode(&mut later).unwrap(),
        Some(Message::Ping { id: 7 })
    );
}

#[test]
fn compressed_request_and_response_have_exact_wire_bytes() {
    let req = Message::Request(Request {
        id: 2,
        deadline: None,
        method: 9,
        metadata: Default::default(),
        compressed: true,
        body: Bytes::from_static(b"zz"),
    });
    let mut wire = BytesMut::new();
    RpcCodec::new().encode(req.clone(), &mut wire).unwrap();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0, 0, 0, 10, 1, 3, 0, 16, 0, 0, 0, 0, 0, 0, 0, 2, // REQ flagged COMPRESSED
        0, 0, 0, 0, 0, 0, 0, 9, b'z', b'z',
    ];
    assert_eq!(&wire[..], expected);
    assert_eq!(RpcCodec::new().decode(&mut wire).unwrap(), Some(req));

    let resp = Message::Response(Response {
        id: 2,
        status: Status::OK,
        flags: Flags::COMPRESSED,
        body: Bytes::from_static(b"zz"),
    });
    let mut wire = BytesMut::new();
    RpcCodec::new().encode(resp.clone(), &mut wire).unwrap();
    assert_eq!(
        &wire[..],
        &[
            0, 0, 0, 4, 1, 4, 0, 16, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, b'z', b'z'
        ]
    );
    assert_eq!(RpcCodec::new().decode(&mut wire).unwrap(), Some(resp));
    assert_eq!(
        format!("{:?}", Flags::COMPRESSED | Flags::METADATA),
        "Flags(METADATA | COMPRESSED)"
    );
}

#[test]
fn compressed_rides_in_the_first_chunk_only_and_a_continuation_claiming_it_is_refused() {
    let mut meta = Metadata::builder();
    meta.insert("k", "v").unwrap();
    let meta = meta.build();
    for (kind, message) in [
        (
            Kind::Request,
            Message::Request(Request {
                id: 6,
                deadline: None,
                method: 1,
                metadata: meta.clone(),
                compressed: true,
                body: Bytes::from(vec![3u8; 250]),
            }),
        ),
        (
            Kind::Response,
            Message::Response(Response {
                id: 6,
                status: Status::OK,
                flags: Flags::COMPRESSED | Flags::RETRYABLE,
                body: Bytes::from(vec![3u8; 250]),
            }),
        ),
    ] {
        let codec = || RpcCodec::new().max_chunk_bytes(100);
        let mut wire = BytesMut::new();
        codec().encode(message.clone(), &mut wire).unwrap();
        let mut copy = wire.clone();
        let mut flags = Vec::new();
        let mut frames = RpcFrameCodec::new();
        while let Some(frame) = frames.decode(&mut copy).unwrap() {
            assert_eq!(frame.kind, kind);
            flags.push(frame.flags);
        }
        assert_eq!(flags.len(), 3, "{kind}");
        assert!(flags[0].contains(Flags::COMPRESSED | Flags::MORE), "{kind}");
        assert!(!flags[1].contains(Flags::COMPRESSED), "{kind}");
        assert!(!flags[2].contains(Flags::COMPRESSED), "{kind}");
        assert_eq!(codec().decode(&mut wire.clone()).unwrap(), Some(message));

        // A continuation flagged COMPRESSED is not a continuation this codec wrote.
        let first_len = 16 + u32::from_be_bytes(wire[..4].try_into().unwrap()) as usize;
        wire[first_len + 7] |= 16;
        let err = codec().decode(&mut wire).unwrap_err();
        assert!(matches!(err, CodecError::UnexpectedChunk { .. }), "{err}");
    }
}

#[test]
fn compressed_is_refused_on_kinds_that_do_not_carry_a_payload() {
    // COMPRESSED on a PING, a CANCEL and a HELLO.
    for kind in [6u8, 5, 1] {
        let mut src = BytesMut::from(&[0, 0, 0, 0, 1, kind, 0, 16, 0, 0, 0, 0, 0, 0, 0, 1][..]);
        assert!(
            matches!(
                RpcCodec::new().decode(&mut src),
                Err(CodecError::BadFlags { flags: 16, .. })
            ),
            "kind {kind}"
        );
    }
}

#[test]
fn response_flags_and_status_have_exact_wire_bytes() {
    let resp = Message::Response(Response {
        id: 5,
        status: Status::REJECTED,
        flags: Flags::RETRYABLE | Flags::NOT_PROCESSED,
        body: Bytes::new(),
    });
    let mut wire = BytesMut::new();
    RpcCodec::new().encode(resp, &mut wire).unwrap();
    assert_eq!(
        &wire[..],
        &[0, 0, 0, 2, 1, 4, 0, 6, 0, 0, 0, 0, 0, 0, 0, 5, 0, 1]
    );
}

#[test]
fn sub_microsecond_deadline_is_sent_as_one_microsecond_not_none() {
    let req = Message::Request(Request {
        id: 1,
        deadline: Some(Duration::from_nanos(10)),
        method: 0,
        metadata: Default::default(),
        compressed: false,
        body: Bytes::new(),
    });
    let mut codec = RpcCodec::new();
    let mut wire = encode_all(&mut codec, &[req]);
    match codec.decode(&mut wire).unwrap() {
        Some(Message::Request(r)) => assert_eq!(r.deadline, Some(Duration::from_micros(1))),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn frame_split_at_every_byte_offset_decodes_the_same() {
    let messages = vec![
        Message::Hello(Hello {
            max_frame_bytes: 1 << 20,
            max_in_flight: 100,
            features: Features::ZSTD,
        }),
        Message::Request(Request {
            id: 1,
            deadline: None,
            method: 3,
            metadata: Default::default(),
            compressed: false,
            body: Bytes::from(vec![1u8; 300]),
        }),
        Message::Ping { id: 2 },
        Message::Response(Response {
            id: 1,
            status: Status::OK,
            flags: Flags::NONE,
            body: Bytes::from(vec![2u8; 250]),
        }),
    ];
    let mut codec = RpcCodec::new().max_chunk_bytes(100);
    let wire = encode_all(&mut codec, &messages);
    for cut in 0..=wire.len() {
        let mut codec = RpcCodec::new();
        let mut src = BytesMut::from(&wire[..cut]);
        let mut out = Vec::new();
        decode_all(&mut codec, &mut src, &mut out);
        src.extend_from_slice(&wire[cut..]);
        decode_all(&mut codec, &mut src, &mut out);
        assert_eq!(out, messages, "cut at {cut}");
    }
}

#[tokio::test]
async fn frames_arriving_byte_by_byte_with_pending_reads_decode() {
    let messages = vec![
        Message::Request(Request {
            id: 7,
            deadline: None,
            method: 1,
            metadata: Default::default(),
            compressed: false,
            body: Bytes::from_static(b"hello"),
        }),
        Message::Cancel { id: 7 },
    ];
    let wire = encode_all(&mut RpcCodec::new(), &messages);
    let mut builder = tokio_test::io::Builder::new();
    for byte in wire.chunks(1) {
        builder.read(byte).wait(Duration::from_millis(1));
    }
    let mut framed = FramedRead::new(builder.build(), RpcCodec::new());
    let mut out = Vec::new();
    while let Some(m) = framed.next().await {
        out.push(m.unwrap());
    }
    assert_eq!(out, messages);
}

#[test]
fn chunks_of_two_large_messages_interleave_and_a_small_one_is_not_held_up() {
    let codec = RpcCodec::new().max_chunk_bytes(1000);
    let big = |id| {
        Message::Request(Request {
            id,
            deadline: None,
            method: 1,
            metadata: Default::default(),
            compressed: false,
            body: Bytes::from(vec![id as u8; 10_000]),
        })
    };
    let small = Message::Request(Request {
        id: 3,
        deadline: None,
        method: 2,
        metadata: Default::default(),
        compressed: false,
        body: Bytes::from_static(b"small"),
    });
    let mut a = ChunkedMessage::new(big(1));
    let mut b = ChunkedMessage::new(big(2));
    let mut wire = BytesMut::new();
    a.encode_next(&codec, &mut wire).unwrap();
    b.encode_next(&codec, &mut wire).unwrap();
    ChunkedMessage::new(small.clone())
        .encode_next(&codec, &mut wire)
        .unwrap();
    while !(a.is_done() && b.is_done()) {
        a.encode_next(&codec, &mut wire).unwrap();
        b.encode_next(&codec, &mut wire).unwrap();
    }
    let mut decoder = RpcCodec::new();
    let mut out = Vec::new();
    decode_all(&mut decoder, &mut wire, &mut out);
    assert_eq!(out, vec![small, big(1), big(2)]);
}

#[test]
fn oversized_frame_is_refused_before_reserving_memory() {
    let mut codec = RpcFrameCodec::new().max_frame_bytes(1024);
    let mut src = BytesMut::with_capacity(16);
    src.put_u32(1025);
    src.put_slice(&[1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let capacity = src.capacity();
    let err = codec.decode(&mut src).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::FrameTooLarge {
                len: 1025,
                max: 1024
            }
        ),
        "{err}"
    );
    assert_eq!(src.capacity(), capacity, "nothing reserved for the body");
}

#[test]
fn huge_announced_length_is_refused_before_reserving_memory() {
    let mut codec = RpcCodec::new();
    let mut src = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..]);
    let capacity = src.capacity();
    assert!(matches!(
        codec.decode(&mut src),
        Err(CodecError::FrameTooLarge {
            len: 4294967295,
            ..
        })
    ));
    assert_eq!(src.capacity(), capacity);
}

#[test]
fn frame_within_limit_waits_for_its_body_and_reserves_once() {
    let mut codec = RpcFrameCodec::new();
    let mut src = BytesMut::from(&[0, 0, 0, 100, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..]);
    assert_eq!(codec.decode(&mut src).unwrap(), None);
    assert!(src.capacity() >= 116);
}

#[test]
fn unknown_version_is_a_typed_error() {
    let mut src = BytesMut::from(&[0, 0, 0, 0, 2, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..]);
    let err = RpcCodec::new().decode(&mut src).unwrap_err();
    assert!(
        matches!(err, CodecError::UnsupportedVersion { version: 2 }),
        "{err}"
    );
    assert_eq!(err.to_string(), "unsupported protocol version 2");
}

#[test]
fn unknown_kind_is_a_typed_error() {
    let mut src = BytesMut::from(&[0, 0, 0, 0, 1, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..]);
    assert!(matches!(
        RpcCodec::new().decode(&mut src),
        Err(CodecError::UnknownKind { kind: 0x42 })
    ));
}

#[test]
fn flag_not_allowed_on_kind_is_a_typed_error() {
    // MORE on a PING.
    let mut src = BytesMut::from(&[0, 0, 0, 0, 1, 6, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1][..]);
    assert!(matches!(
        RpcCodec::new().decode(&mut src),
        Err(CodecError::BadFlags {
            what: "PING",
            flags: 1
        })
    ));
    // An unknown bit on a RESP.
    let mut src = BytesMut::from(&[0, 0, 0, 2, 1, 4, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0][..]);
    assert!(matches!(
        RpcCodec::new().decode(&mut src),
        Err(CodecError::BadFlags { what: "RESP", .. })
    ));
    // And the encoder refuses to write one.
    let frame = RpcFrame {
        kind: Kind::Ping,
        flags: Flags::MORE,
        id: 1,
        body: Bytes::new(),
    };
    assert!(
        RpcFrameCodec::new()
            .encode(frame, &mut BytesMut::new())
            .is_err()
    );
}

#[test]
fn body_shorter_than_its_kind_needs_is_a_typed_error() {
    // REQ with a 4-byte body (needs 8).
    let mut src = BytesMut::from(&[0, 0, 0, 4, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0][..]);
    let err = RpcCodec::new().decode(&mut src).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::BodyTooShort {
                what: "REQ",
                len: 4,
                need: 8
            }
        ),
        "{err}"
    );
}

#[test]
fn error_frame_with_invalid_utf8_is_malformed() {
    let mut src =
        BytesMut::from(&[0, 0, 0, 3, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff][..]);
    assert!(matches!(
        RpcCodec::new().decode(&mut src),
        Err(CodecError::Malformed { what: "ERR", .. })
    ));
}

#[test]
fn truncated_input_asks_for_more_and_never_panics() {
    let wire = encode_all(
        &mut RpcCodec::new(),
        &[Message::Request(Request {
            id: 1,
            deadline: None,
            method: 1,
            metadata: Default::default(),
            compressed: false,
            body: Bytes::from_static(b"xyz"),
        })],
    );
    for len in 0..wire.len() {
        let mut src = BytesMut::from(&wire[..len]);
        assert_eq!(
            RpcCodec::new().decode(&mut src).unwrap(),
            None,
            "prefix of {len} bytes"
        );
    }
}

fn chunk(kind: Kind, flags: Flags, id: u64, body: &[u8]) -> BytesMut {
    let mut wire = BytesMut::new();
    RpcFrameCodec::new()
        .encode(
            RpcFrame {
                kind,
                flags,
                id,
                body: Bytes::copy_from_slice(body),
            },
            &mut wire,
        )
        .unwrap();
    wire
}

#[test]
fn chunked_message_over_the_message_limit_is_refused() {
    let mut codec = RpcCodec::new().max_message_bytes(10);
    let mut src = chunk(
        Kind::Request,
        Flags::MORE,
        1,
        &[0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6],
    );
    src.extend_from_slice(&chunk(Kind::Request, Flags::NONE, 1, &[7, 8, 9, 10, 11]));
    // The first chunk (6 payload bytes) is within the limit; the second takes it to 11.
    let err = codec.decode(&mut src).unwrap_err();
    assert!(
        matches!(err, CodecError::MessageTooLarge { len: 11, max: 10 }),
        "{err}"
    );
}

#[test]
fn too_many_messages_being_joined_is_refused() {
    let mut codec = RpcCodec::new().max_partial_messages(2);
    let mut src = BytesMut::new();
    for id in 1..=3 {
        src.extend_from_slice(&chunk(Kind::Request, Flags::MORE, id, &[0; 9]));
    }
    assert!(matches!(
        codec.decode(&mut src),
        Err(CodecError::TooManyPartialMessages { max: 2 })
    ));
}

#[test]
fn bytes_held_by_messages_being_joined_are_bounded() {
    let mut codec = RpcCodec::new().max_partial_bytes(100);
    let mut src = BytesMut::new();
    src.extend_from_slice(&chunk(Kind::Request, Flags::MORE, 1, &[0; 68]));
    src.extend_from_slice(&chunk(Kind::Request, Flags::MORE, 2, &[0; 68]));
    let err = codec.decode(&mut src).unwrap_err();
    assert!(
        matches!(err, CodecError::PartialBytesExceeded { len: 120, max: 100 }),
        "{err}"
    );
}

#[test]
fn chunk_of_another_kind_for_an_id_being_joined_is_refused() {
    let mut codec = RpcCodec::new();
    let mut src = chunk(Kind::Request, Flags::MORE, 1, &[0; 9]);
    src.extend_from_slice(&chunk(Kind::Response, Flags::NONE, 1, &[0; 3]));
    assert!(matches!(
        codec.decode(&mut src),
        Err(CodecError::UnexpectedChunk { id: 1, what: "REQ" })
    ));
}

#[test]
fn cancel_drops_the_partial_message_it_names() {
    let mut codec = RpcCodec::new();
    let mut src = chunk(Kind::Request, Flags::MORE, 1, &[0; 500]);
    src.extend_from_slice(&chunk(Kind::Cancel, Flags::NONE, 1, &[]));
    assert_eq!(
        codec.decode(&mut src).unwrap(),
        Some(Message::Cancel { id: 1 })
    );
    assert_eq!(codec.partial_messages(), (0, 0));
}

#[test]
fn encoder_refuses_a_message_over_the_limit_and_writes_nothing() {
    let mut codec = RpcCodec::new().max_message_bytes(100);
    let req = Message::Request(Request {
        id: 1,
        deadline: None,
        method: 1,
        metadata: Default::default(),
        compressed: false,
        body: Bytes::from(vec![0; 101]),
    });
    let mut wire = BytesMut::new();
    assert!(matches!(
        codec.encode(req, &mut wire),
        Err(CodecError::MessageTooLarge { len: 101, max: 100 })
    ));
    assert!(wire.is_empty());
}

#[test]
fn chunks_never_exceed_the_frame_limit_even_with_a_larger_chunk_setting() {
    let mut codec = RpcCodec::new().max_frame_bytes(64).max_chunk_bytes(1000);
    let req = Message::Request(Request {
        id: 1,
        deadline: None,
        method: 1,
        metadata: Default::default(),
        compressed: false,
        body: Bytes::from(vec![5; 500]),
    });
    let mut wire = encode_all(&mut codec, std::slice::from_ref(&req));
    let mut frames = RpcFrameCodec::new().max_frame_bytes(64);
    let mut copy = wire.clone();
    while let Some(frame) = frames.decode(&mut copy).unwrap() {
        assert!(frame.body.len() <= 64);
    }
    assert_eq!(codec.decode(&mut wire).unwrap(), Some(req));
}
