//! The test vectors in `docs/protocol.md` decode with the real codec and token code, so
//! the document cannot drift from what the rooms speak.

use bytes::BytesMut;
use longlink_codec::push::{PushCodec, PushMessage};
use longlink_push::token::Tokens;
use tokio_util::codec::Decoder;

const DOC: &str = include_str!("../../docs/protocol.md");

/// The ```text blocks of the document that start with `vector <name>`, as (name, lines).
fn vectors() -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```text" {
            continue;
        }
        let Some(first) = lines.next() else { break };
        let Some(name) = first.trim().strip_prefix("vector ") else {
            continue;
        };
        let mut fields = Vec::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            if let Some((k, v)) = line.split_once(": ") {
                fields.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        out.push((name.to_owned(), fields));
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("a vector without `{key}`"))
}

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex bytes"))
        .collect()
}

#[test]
fn every_frame_vector_decodes_to_its_json_twin_and_encodes_back_to_its_bytes() {
    let vectors: Vec<_> = vectors()
        .into_iter()
        .filter(|(name, _)| name != "token")
        .collect();
    let names: Vec<&str> = vectors.iter().map(|(n, _)| n.as_str()).collect();
    for wanted in ["auth", "auth_reply", "message", "ack"] {
        assert!(names.contains(&wanted), "no {wanted} vector in {names:?}");
    }
    for (name, fields) in &vectors {
        let bytes = hex(field(fields, "binary"));
        let frame = PushCodec::new()
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: not a whole frame"));
        let from_binary = PushMessage::from_frame(&frame).unwrap();
        let (seq, from_json) = PushMessage::from_json(field(fields, "json"), 1 << 16).unwrap();
        assert_eq!((frame.seq, &from_binary), (seq, &from_json), "{name}");
        assert_eq!(from_binary.op().name(), name.as_str(), "{name}: the op");
        let mut again = BytesMut::new();
        from_json.encode(seq, &mut again).unwrap();
        assert_eq!(&again[..], &bytes[..], "{name}: the bytes the codec writes");
    }
}

#[test]
fn the_token_vector_is_what_a_backend_must_issue() {
    let (_, fields) = vectors()
        .into_iter()
        .find(|(name, _)| name == "token")
        .expect("a token vector");
    let tokens = Tokens::new(field(&fields, "secret").as_bytes());
    let expires_at: u64 = field(&fields, "expires_at").parse().unwrap();
    let token = tokens.issue_until(field(&fields, "uid"), expires_at);
    assert_eq!(token, field(&fields, "token"));
    assert_eq!(
        tokens.verify_at(&token, field(&fields, "uid"), expires_at - 1),
        Ok(())
    );
}

/// Prints the vectors for the document (run with `--ignored --nocapture` after a change to
/// the wire format).
#[test]
#[ignore]
fn print_vectors() {
    use longlink_codec::push::*;
    let show = |seq: u32, m: PushMessage| {
        let mut b = BytesMut::new();
        m.encode(seq, &mut b).unwrap();
        let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
        println!(
            "vector {}\nbinary: {}\njson: {}\n",
            m.op().name(),
            hex.join(" "),
            m.to_json(seq)
        );
    };
    let tokens = Tokens::new(b"6c6f6e676c696e6b2d746573742d736563726574");
    let token = tokens.issue_until("u1", 1_767_225_600);
    println!("token: {token}\n");
    show(
        1,
        PushMessage::Auth(Auth {
            uid: "u1".into(),
            device: "phone".into(),
            net: Net::G4,
            token,
            apps: vec!["demo".into()],
        }),
    );
    show(
        1,
        PushMessage::AuthReply(AuthReply {
            ok: true,
            reason: None,
            heartbeat_secs: 360,
            session: Some("room-1:7".into()),
        }),
    );
    show(
        0,
        PushMessage::Message(Deliver {
            id: 29093071931392,
            app: "demo".into(),
            mode: DeliveryMode::AtLeastOnce,
            body: Payload::from("hello"),
        }),
    );
    show(
        0,
        PushMessage::Message(Deliver {
            id: 29093071931393,
            app: "demo".into(),
            mode: DeliveryMode::Notify,
            body: Payload::from("29093071931393"),
        }),
    );
    show(
        2,
        PushMessage::Ack(Ack {
            ids: vec![29093071931392, 29093071931393],
        }),
    );
    show(
        3,
        PushMessage::Error(ErrorMessage {
            code: 429,
            reason: "slow down".into(),
        }),
    );
}
