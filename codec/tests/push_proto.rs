//! The hand-written protobuf bodies are exactly `proto/push.proto`: `proto/push.proto` is
//! compiled here (protox, no protoc) and every message goes both ways between our codec and
//! a generic protobuf implementation (prost-reflect) reading that file.

use bytes::Bytes;
use longlink_codec::push::{
    Ack, Auth, AuthReply, Deliver, DeliveryMode, ErrorMessage, Kick, Net, Op, Payload, PushFrame,
    PushMessage, Reconnect, Refresh, Subscribe, Upstream, UpstreamReply,
};
use proptest::prelude::*;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, Value};

fn pool() -> DescriptorPool {
    let files = protox::compile(
        ["push.proto"],
        [concat!(env!("CARGO_MANIFEST_DIR"), "/../proto")],
    )
    .expect("proto/push.proto compiles");
    DescriptorPool::from_file_descriptor_set(files).unwrap()
}

fn descriptor(pool: &DescriptorPool, name: &str) -> MessageDescriptor {
    pool.get_message_by_name(&format!("longlink.push.v2.{name}"))
        .unwrap_or_else(|| panic!("{name} is in push.proto"))
}

/// The `.proto` message a push op's body is.
fn proto_name(op: Op) -> &'static str {
    match op {
        Op::AUTH => "Auth",
        Op::AUTH_REPLY => "AuthReply",
        Op::HEARTBEAT => "Heartbeat",
        Op::HEARTBEAT_REPLY => "HeartbeatReply",
        Op::MESSAGE => "Message",
        Op::ACK => "Ack",
        Op::SUBSCRIBE | Op::UNSUBSCRIBE => "Subscribe",
        Op::UPSTREAM => "Upstream",
        Op::UPSTREAM_REPLY => "UpstreamReply",
        Op::KICK => "Kick",
        Op::RECONNECT => "Reconnect",
        Op::ERROR => "Error",
        Op::REFRESH => "Refresh",
        op => panic!("{op} has no body message"),
    }
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn strings(v: &[String]) -> Value {
    Value::List(v.iter().map(|a| s(a)).collect())
}

/// What a generic implementation holds for `message`, field by field, built from the names
/// in `push.proto` (not from our encoding).
fn expected(pool: &DescriptorPool, message: &PushMessage) -> DynamicMessage {
    let mut m = DynamicMessage::new(descriptor(pool, proto_name(message.op())));
    // Proto3: a field without presence holding its default is not on the wire, so it is
    // not set here either.
    let mut set = |name: &str, value: Value| {
        let field = m.descriptor().get_field_by_name(name).unwrap();
        if field.supports_presence() || value != field.default_value() {
            m.set_field(&field, value);
        }
    };
    match message {
        PushMessage::Auth(a) => {
            set("uid", s(&a.uid));
            set("device", s(&a.device));
            let net = pool.get_enum_by_name("longlink.push.v2.Net").unwrap();
            let name = format!("NET_{}", a.net.as_str().to_uppercase());
            set(
                "net",
                Value::EnumNumber(net.get_value_by_name(&name).unwrap().number()),
            );
            set("token", s(&a.token));
            set("apps", strings(&a.apps));
        }
        PushMessage::AuthReply(r) => {
            set("ok", Value::Bool(r.ok));
            if let Some(reason) = &r.reason {
                set("reason", s(reason));
            }
            set("heartbeat_secs", Value::U32(r.heartbeat_secs));
            if let Some(session) = &r.session {
                set("session", s(session));
            }
        }
        PushMessage::Heartbeat | PushMessage::HeartbeatReply => {}
        PushMessage::Message(d) => {
            set("id", Value::U64(d.id));
            set("app", s(&d.app));
            let mode = pool
                .get_enum_by_name("longlink.push.v2.DeliveryMode")
                .unwrap();
            let name = format!(
                "DELIVERY_MODE_{}",
                serde_json::to_value(d.mode)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_uppercase()
            );
            set(
                "mode",
                Value::EnumNumber(mode.get_value_by_name(&name).unwrap().number()),
            );
            set("body", Value::Bytes(d.body.0.clone()));
        }
        PushMessage::Ack(a) => set(
            "ids",
            Value::List(a.ids.iter().map(|&i| Value::U64(i)).collect()),
        ),
        PushMessage::Subscribe(x) | PushMessage::Unsubscribe(x) => set("apps", strings(&x.apps)),
        PushMessage::Upstream(u) => {
            set("app", s(&u.app));
            set("type", s(&u.kind));
            set("body", Value::Bytes(u.body.0.clone()));
        }
        PushMessage::UpstreamReply(r) => {
            set("ok", Value::Bool(r.ok));
            if let Some(reason) = &r.reason {
                set("reason", s(reason));
            }
        }
        PushMessage::Kick(k) => set("reason", s(&k.reason)),
        PushMessage::Reconnect(r) => {
            set("reason", s(&r.reason));
            set("after_ms", Value::U32(r.after_ms));
        }
        PushMessage::Error(e) => {
            set("code", Value::U32(e.code.into()));
            set("reason", s(&e.reason));
        }
        PushMessage::Refresh(r) => set("token", s(&r.token)),
    }
    m
}

/// Ours → generic and generic → ours, and the same bytes both ways.
fn check_both_ways(pool: &DescriptorPool, message: &PushMessage) {
    let frame = message.to_frame(7).unwrap();
    assert_eq!(
        message.frame_len(),
        frame.wire_len(),
        "{message:?}: exact length"
    );
    let want = expected(pool, message);
    let got = DynamicMessage::decode(want.descriptor(), frame.body.clone())
        .unwrap_or_else(|e| panic!("{message:?}: a generic reader refuses our body: {e}"));
    assert!(
        got == want,
        "{message:?}: a generic reader sees other fields: {:?} (expected {:?})",
        got.fields().collect::<Vec<_>>(),
        want.fields().collect::<Vec<_>>()
    );
    let theirs = PushFrame::new(
        message.op(),
        7,
        Bytes::from(prost::Message::encode_to_vec(&want)),
    );
    assert_eq!(
        &PushMessage::from_frame(&theirs).unwrap(),
        message,
        "we read a generic writer's body"
    );
    assert_eq!(
        theirs.body, frame.body,
        "{message:?}: canonical bytes differ"
    );
}

fn samples() -> Vec<PushMessage> {
    vec![
        PushMessage::Auth(Auth {
            uid: "u1".into(),
            device: "phone".into(),
            net: Net::G4,
            token: "t".into(),
            apps: vec!["demo".into(), String::new()],
        }),
        PushMessage::Auth(Auth {
            uid: String::new(),
            device: String::new(),
            net: Net::Wifi,
            token: String::new(),
            apps: vec![],
        }),
        PushMessage::AuthReply(AuthReply {
            ok: true,
            reason: None,
            heartbeat_secs: 360,
            session: Some("room-1:7".into()),
        }),
        PushMessage::AuthReply(AuthReply {
            ok: false,
            reason: Some(String::new()),
            heartbeat_secs: 0,
            session: None,
        }),
        PushMessage::Heartbeat,
        PushMessage::HeartbeatReply,
        PushMessage::Message(Deliver {
            id: (1 << 53) - 1,
            app: "demo".into(),
            mode: DeliveryMode::Notify,
            body: Payload::from(vec![0, 0xff, 1]),
        }),
        PushMessage::Message(Deliver {
            id: 0,
            app: String::new(),
            mode: DeliveryMode::AtLeastOnce,
            body: Payload::default(),
        }),
        PushMessage::Ack(Ack {
            ids: vec![1, 0, u64::MAX],
        }),
        PushMessage::Ack(Ack { ids: vec![] }),
        PushMessage::Subscribe(Subscribe {
            apps: vec!["a".into(), "b".into()],
        }),
        PushMessage::Unsubscribe(Subscribe {
            apps: vec!["a".into()],
        }),
        PushMessage::Upstream(Upstream {
            app: "demo".into(),
            kind: "chat".into(),
            body: Payload::from("héllo"),
        }),
        PushMessage::UpstreamReply(UpstreamReply {
            ok: true,
            reason: None,
        }),
        PushMessage::UpstreamReply(UpstreamReply {
            ok: false,
            reason: Some("no route".into()),
        }),
        PushMessage::Kick(Kick {
            reason: "bye".into(),
        }),
        PushMessage::Reconnect(Reconnect {
            reason: "drain".into(),
            after_ms: u32::MAX,
        }),
        PushMessage::Error(ErrorMessage {
            code: 429,
            reason: "slow down".into(),
        }),
        PushMessage::Error(ErrorMessage {
            code: u16::MAX,
            reason: String::new(),
        }),
        PushMessage::Refresh(Refresh {
            token: "new".into(),
        }),
    ]
}

#[test]
fn every_message_reads_and_writes_as_push_proto_says() {
    let pool = pool();
    for message in samples() {
        check_both_ways(&pool, &message);
    }
}

#[test]
fn the_op_and_enum_numbers_are_push_protos() {
    let pool = pool();
    let ops = pool.get_enum_by_name("longlink.push.v2.Op").unwrap();
    assert_eq!(
        ops.values().count(),
        Op::ALL.len() + 1,
        "OP_UNSPECIFIED and every op"
    );
    for &op in Op::ALL {
        let name = format!("OP_{}", op.name().to_uppercase());
        let value = ops
            .get_value_by_name(&name)
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(value.number() as u32, op.value(), "{name}");
    }
    let net = pool.get_enum_by_name("longlink.push.v2.Net").unwrap();
    assert_eq!(net.get_value(0).unwrap().name(), "NET_UNSPECIFIED");
    for n in Net::ALL {
        let value = net
            .get_value_by_name(&format!("NET_{}", n.as_str().to_uppercase()))
            .unwrap();
        assert_eq!(value.number() as u64, n.proto_value(), "{n}");
    }
}

#[test]
fn unknown_fields_unpacked_ids_and_repeated_scalars_read_as_proto3_says() {
    let pool = pool();
    // A body from a newer writer: the known fields, plus fields this side does not know, of
    // every wire type.
    let mut m = expected(&pool, &samples()[6]);
    let mut body = prost::Message::encode_to_vec(&m);
    body.extend_from_slice(&[0xf8, 0x06, 0x01]); // field 111, varint
    body.extend_from_slice(&[0xfa, 0x06, 0x02, b'h', b'i']); // field 111, bytes
    body.extend_from_slice(&[0xfd, 0x06, 1, 2, 3, 4]); // field 111, fixed32
    body.extend_from_slice(&[0xf9, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]); // field 111, fixed64
    let frame = PushFrame::new(Op::MESSAGE, 0, Bytes::from(body));
    assert_eq!(PushMessage::from_frame(&frame).unwrap(), samples()[6]);

    // ids unpacked (one varint field each), and packed in two runs: both accumulate.
    let frame = PushFrame::new(
        Op::ACK,
        0,
        Bytes::from_static(&[0x08, 5, 0x0a, 2, 6, 7, 0x08, 8]),
    );
    assert_eq!(
        PushMessage::from_frame(&frame).unwrap(),
        PushMessage::Ack(Ack {
            ids: vec![5, 6, 7, 8]
        })
    );
    // A scalar given twice: the last wins.
    m.set_field_by_name("id", Value::U64(1));
    let mut body = prost::Message::encode_to_vec(&m);
    body.extend_from_slice(&[0x08, 2]);
    let frame = PushFrame::new(Op::MESSAGE, 0, Bytes::from(body));
    let PushMessage::Message(d) = PushMessage::from_frame(&frame).unwrap() else {
        panic!()
    };
    assert_eq!(d.id, 2);
}

#[test]
fn bad_bodies_are_typed_errors_naming_the_field() {
    let cases: &[(Op, &[u8], &str)] = &[
        (Op::AUTH, &[0x0a, 2, 0xff, 0xfe], "auth.uid"), // not UTF-8
        (Op::AUTH, &[0x0a, 1, b'u'], "auth.net is missing"),
        (
            Op::AUTH,
            &[0x18, 9],
            "auth.net 9 is not a known network type",
        ),
        (Op::MESSAGE, &[0x18, 3], "message.mode 3"),
        (Op::MESSAGE, &[0x0a, 1, 0], "message.id: wrong wire type"),
        (
            Op::ERROR,
            &[0x08, 0x80, 0x80, 0x04],
            "error.code 65536 is over 65535",
        ),
        (
            Op::RECONNECT,
            &[0x10, 0x80, 0x80, 0x80, 0x80, 0x10],
            "reconnect.after_ms",
        ),
        (Op::ACK, &[0x0a, 1, 0x80], "ack.ids: bad packed varint"),
        (Op::KICK, &[0x0a, 9, b'x'], "announces 9 bytes"),
        (Op::SUBSCRIBE, &[0x0b], "group"),
    ];
    for &(op, body, needle) in cases {
        let frame = PushFrame::new(op, 1, Bytes::from_static(body));
        let err = PushMessage::from_frame(&frame).unwrap_err().to_string();
        assert!(
            err.contains(needle),
            "{op} {body:?}: {err:?} should say {needle:?}"
        );
    }
}

fn net() -> impl Strategy<Value = Net> {
    prop::sample::select(Net::ALL.to_vec())
}

fn mode() -> impl Strategy<Value = DeliveryMode> {
    prop::sample::select(vec![
        DeliveryMode::AtLeastOnce,
        DeliveryMode::AtMostOnce,
        DeliveryMode::Notify,
    ])
}

fn message() -> impl Strategy<Value = PushMessage> {
    let text = ".{0,12}";
    prop_oneof![
        (text, text, net(), text, prop::collection::vec(text, 0..4)).prop_map(
            |(uid, device, net, token, apps)| PushMessage::Auth(Auth {
                uid,
                device,
                net,
                token,
                apps
            })
        ),
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
        (
            any::<u64>(),
            text,
            mode(),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(id, app, mode, body)| PushMessage::Message(Deliver {
                id,
                app,
                mode,
                body: body.into()
            })),
        prop::collection::vec(any::<u64>(), 0..20).prop_map(|ids| PushMessage::Ack(Ack { ids })),
        (text, text, prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(app, kind, body)| {
            PushMessage::Upstream(Upstream {
                app,
                kind,
                body: body.into(),
            })
        }),
        (any::<u16>(), text)
            .prop_map(|(code, reason)| PushMessage::Error(ErrorMessage { code, reason })),
    ]
}

proptest! {
    #[test]
    fn any_message_goes_both_ways_with_a_generic_implementation(m in message()) {
        thread_local!(static POOL: DescriptorPool = pool());
        POOL.with(|pool| check_both_ways(pool, &m));
    }
}
