//! Push frame codec and typed/JSON messages: round trips, exact bytes, split reads, errors.

use bytes::{BufMut, Bytes, BytesMut};
use longlink_codec::CodecError;
use longlink_codec::push::{
    Ack, Auth, AuthReply, Deliver, DeliveryMode, ErrorMessage, Kick, Net, Op, Payload, PushCodec,
    PushFrame, PushMessage, Reconnect, Subscribe, Upstream, UpstreamReply,
};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn arb_frame() -> impl Strategy<Value = PushFrame> {
    (
        prop::sample::select(Op::ALL),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..2000),
    )
        .prop_map(|(op, seq, body)| PushFrame::new(op, seq, Bytes::from(body)))
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        ".{0,64}".prop_map(Payload::from),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Payload::from),
    ]
}

fn arb_net() -> impl Strategy<Value = Net> {
    prop::sample::select(Net::ALL.to_vec())
}

fn arb_message() -> impl Strategy<Value = PushMessage> {
    let text = "[a-z0-9]{0,12}";
    prop_oneof![
        (
            text,
            text,
            arb_net(),
            text,
            prop::collection::vec(text, 0..3)
        )
            .prop_map(|(uid, device, net, token, apps)| PushMessage::Auth(Auth {
                uid,
                device,
                net,
                token,
                apps
            })),
        (
            any::<bool>(),
            prop::option::of(text),
            any::<u32>(),
            prop::option::of(text)
        )
            .prop_map(
                |(ok, reason, heartbeat_secs, session)| PushMessage::AuthReply(AuthReply {
                    ok,
                    reason,
                    heartbeat_secs,
                    session
                })
            ),
        Just(PushMessage::Heartbeat),
        Just(PushMessage::HeartbeatReply),
        (
            0u64..(1 << 53),
            text,
            prop::sample::select(vec![
                DeliveryMode::AtLeastOnce,
                DeliveryMode::AtMostOnce,
                DeliveryMode::Notify
            ]),
            arb_payload()
        )
            .prop_map(|(id, app, mode, body)| PushMessage::Message(Deliver {
                id,
                app,
                mode,
                body
            })),
        prop::collection::vec(0u64..(1 << 53), 0..5).prop_map(|ids| PushMessage::Ack(Ack { ids })),
        prop::collection::vec(text, 0..3)
            .prop_map(|apps| PushMessage::Subscribe(Subscribe { apps })),
        prop::collection::vec(text, 0..3)
            .prop_map(|apps| PushMessage::Unsubscribe(Subscribe { apps })),
        (text, text, arb_payload()).prop_map(|(app, kind, body)| PushMessage::Upstream(Upstream {
            app,
            kind,
            body
        })),
        (any::<bool>(), prop::option::of(text))
            .prop_map(|(ok, reason)| PushMessage::UpstreamReply(UpstreamReply { ok, reason })),
        text.prop_map(|reason| PushMessage::Kick(Kick { reason })),
        (text, any::<u32>())
            .prop_map(|(reason, after_ms)| PushMessage::Reconnect(Reconnect { reason, after_ms })),
        (any::<u16>(), text)
            .prop_map(|(code, reason)| PushMessage::Error(ErrorMessage { code, reason })),
    ]
}

proptest! {
    #[test]
    fn any_frames_round_trip_when_split_at_any_offset(frames in prop::collection::vec(arb_frame(), 1..6), cut in any::<prop::sample::Index>()) {
        let mut codec = PushCodec::new();
        let mut wire = BytesMut::new();
        for f in &frames {
            codec.encode(f, &mut wire).unwrap();
        }
        let cut = cut.index(wire.len() + 1);
        let mut src = BytesMut::from(&wire[..cut]);
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut src).unwrap() { out.push(f); }
        src.extend_from_slice(&wire[cut..]);
        while let Some(f) = codec.decode(&mut src).unwrap() { out.push(f); }
        prop_assert_eq!(out, frames);
    }

    #[test]
    fn any_message_round_trips_through_binary_and_json(message in arb_message(), seq in any::<u32>()) {
        let frame = message.to_frame(seq).unwrap();
        prop_assert_eq!(frame.op, message.op());
        prop_assert_eq!(frame.seq, seq);
        prop_assert_eq!(&PushMessage::from_frame(&frame).unwrap(), &message);

        let json = message.to_json(seq);
        prop_assert_eq!(PushMessage::from_json(&json, 64 * 1024).unwrap(), (seq, message));
    }

    #[test]
    fn encode_into_buffer_equals_frame_bytes(message in arb_message(), seq in any::<u32>()) {
        let mut direct = BytesMut::new();
        message.encode(seq, &mut direct).unwrap();
        prop_assert_eq!(&direct[..], &message.to_frame(seq).unwrap().to_bytes()[..]);
    }

    #[test]
    fn garbage_never_panics_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut codec = PushCodec::new();
        let mut src = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = codec.decode(&mut src) {
            let _ = PushMessage::from_frame(&frame);
        }
    }
}

#[test]
fn message_frame_has_exact_wire_bytes() {
    let message = PushMessage::Message(Deliver {
        id: 300,
        app: "im".into(),
        mode: DeliveryMode::AtLeastOnce,
        body: Payload::from("hi"),
    });
    let bytes = message.to_frame(4).unwrap().to_bytes();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0, 0, 0, 27,         // frame length, header included
        0, 16,               // header length
        0, 2,                // version 2: protobuf body
        0, 0, 0, 5,          // op MESSAGE
        0, 0, 0, 4,          // seq
        0x08, 0xac, 0x02,    // field 1 (id), varint 300
        0x12, 2, b'i', b'm', // field 2 (app), 2 bytes
                             // field 3 (mode) at_least_once is the default: not written
        0x22, 2, b'h', b'i', // field 4 (body), 2 bytes
    ];
    assert_eq!(&bytes[..], expected);
}

#[test]
fn json_form_is_readable_and_matches_the_browser_page() {
    let auth = PushMessage::Auth(Auth {
        uid: "u1".into(),
        device: "web".into(),
        net: Net::Wifi,
        token: "t".into(),
        apps: vec!["im".into()],
    });
    assert_eq!(
        auth.to_json(1),
        r#"{"seq":1,"op":"auth","uid":"u1","device":"web","net":"wifi","token":"t","apps":["im"]}"#
    );
    let (seq, parsed) = PushMessage::from_json(
        r#"{"op":"upstream","app":"im","type":"chat","body":"hello"}"#,
        1024,
    )
    .unwrap();
    assert_eq!(seq, 0);
    assert_eq!(
        parsed,
        PushMessage::Upstream(Upstream {
            app: "im".into(),
            kind: "chat".into(),
            body: Payload::from("hello")
        })
    );
    assert_eq!(
        PushMessage::HeartbeatReply.to_json(3),
        r#"{"seq":3,"op":"heartbeat_reply"}"#
    );
}

#[test]
fn json_with_unknown_op_or_bad_fields_is_a_typed_error() {
    assert!(matches!(
        PushMessage::from_json(r#"{"op":"teleport"}"#, 1024),
        Err(CodecError::Json(_))
    ));
    assert!(matches!(
        PushMessage::from_json(r#"{"op":"ack","ids":"x"}"#, 1024),
        Err(CodecError::Json(_))
    ));
    assert!(matches!(
        PushMessage::from_json("not json", 1024),
        Err(CodecError::Json(_))
    ));
    assert!(matches!(
        PushMessage::from_json(
            r#"{"op":"message","id":1,"app":"a","body":{"hex":"00"}}"#,
            1024
        ),
        Err(CodecError::Json(_))
    ));
}

#[test]
fn oversized_json_is_refused_before_parsing() {
    let text = format!(r#"{{"op":"kick","reason":"{}"}}"#, "x".repeat(100));
    assert!(matches!(
        PushMessage::from_json(&text, 64),
        Err(CodecError::FrameTooLarge { max: 64, .. })
    ));
}

#[test]
fn oversized_frame_is_refused_before_reserving_memory() {
    let mut codec = PushCodec::new().max_frame_bytes(1024);
    let mut src = BytesMut::with_capacity(16);
    src.put_u32(1_000_000);
    src.put_slice(&[0, 16, 0, 2, 0, 0, 0, 5, 0, 0, 0, 0]);
    let capacity = src.capacity();
    let err = codec.decode(&mut src).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::FrameTooLarge {
                len: 1_000_000,
                max: 1024
            }
        ),
        "{err}"
    );
    assert_eq!(src.capacity(), capacity);
}

#[test]
fn header_length_that_does_not_fit_is_a_typed_error() {
    // hlen 8 < 16
    let mut src = BytesMut::from(&[0, 0, 0, 16, 0, 8, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0][..]);
    assert!(matches!(
        PushCodec::new().decode(&mut src),
        Err(CodecError::BadHeaderLength {
            header_len: 8,
            frame_len: 16
        })
    ));
    // hlen 20 > len 18
    let mut src = BytesMut::from(&[0, 0, 0, 18, 0, 20, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0][..]);
    assert!(matches!(
        PushCodec::new().decode(&mut src),
        Err(CodecError::BadHeaderLength {
            header_len: 20,
            frame_len: 18
        })
    ));
}

#[test]
fn longer_header_is_skipped_for_forward_compatibility() {
    let mut src = BytesMut::from(
        &[
            0, 0, 0, 22, 0, 20, 0, 2, 0, 0, 0, 3, 0, 0, 0, 9, 0xee, 0xee, 0xee, 0xee, b'o', b'k',
        ][..],
    );
    let frame = PushCodec::new().decode(&mut src).unwrap().unwrap();
    assert_eq!(
        (frame.op, frame.seq, &frame.body[..]),
        (Op::HEARTBEAT, 9, &b"ok"[..])
    );
}

#[test]
fn unknown_version_and_unknown_op_are_typed_errors() {
    let mut src = BytesMut::from(&[0, 0, 0, 16, 0, 16, 0, 9, 0, 0, 0, 3, 0, 0, 0, 0][..]);
    assert!(matches!(
        PushCodec::new().decode(&mut src),
        Err(CodecError::UnsupportedVersion { version: 9 })
    ));
    // Version 1 (postcard bodies) is no longer spoken.
    let mut src = BytesMut::from(&[0, 0, 0, 16, 0, 16, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0][..]);
    assert!(matches!(
        PushCodec::new().decode(&mut src),
        Err(CodecError::UnsupportedVersion { version: 1 })
    ));
    let mut src = BytesMut::from(&[0, 0, 0, 16, 0, 16, 0, 2, 0, 0, 3, 0xe7, 0, 0, 0, 0][..]);
    let err = PushCodec::new().decode(&mut src).unwrap_err();
    assert!(matches!(err, CodecError::UnknownOp { op: 999 }));
    assert_eq!(err.to_string(), "unknown push op 999");
}

#[test]
fn malformed_body_for_its_op_is_a_typed_error() {
    let frame = PushFrame::new(Op::AUTH, 1, Bytes::from_static(&[0xff, 0xff, 0xff]));
    let err = PushMessage::from_frame(&frame).unwrap_err();
    assert!(
        matches!(err, CodecError::Malformed { what: "auth", .. }),
        "{err}"
    );
    let batch = PushFrame::new(Op::BATCH, 0, Bytes::new());
    assert!(matches!(
        PushMessage::from_frame(&batch),
        Err(CodecError::Malformed { what: "batch", .. })
    ));
}

#[test]
fn truncated_input_asks_for_more_and_never_panics() {
    let bytes = PushMessage::Kick(Kick {
        reason: "bye".into(),
    })
    .to_frame(1)
    .unwrap()
    .to_bytes();
    for len in 0..bytes.len() {
        let mut src = BytesMut::from(&bytes[..len]);
        assert_eq!(PushCodec::new().decode(&mut src).unwrap(), None);
    }
}

#[test]
fn batch_carries_many_frames_and_rejects_nesting_and_truncation() {
    let frames: Vec<PushFrame> = (0..5)
        .map(|i| {
            PushMessage::Message(Deliver {
                id: i,
                app: "a".into(),
                mode: DeliveryMode::AtMostOnce,
                body: Payload::from("x"),
            })
            .to_frame(0)
            .unwrap()
        })
        .collect();
    let batch = PushFrame::batch(&frames);
    let inner: Vec<PushFrame> = batch.unbatch(1024).collect::<Result<_, _>>().unwrap();
    assert_eq!(inner, frames);

    let nested = PushFrame::batch([&batch]);
    assert!(matches!(
        nested.unbatch(1 << 20).next(),
        Some(Err(CodecError::Malformed { what: "batch", .. }))
    ));

    let truncated = PushFrame::new(Op::BATCH, 0, batch.body.slice(..batch.body.len() - 1));
    let results: Vec<_> = truncated.unbatch(1024).collect();
    assert_eq!(results.len(), 5);
    assert!(matches!(
        results[4],
        Err(CodecError::BodyTooShort { what: "batch", .. })
    ));
}
