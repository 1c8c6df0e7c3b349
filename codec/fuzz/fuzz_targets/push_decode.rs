//! Arbitrary bytes into the push decoder, the typed-message reader, BATCH unpacking and the
//! JSON reader. Must never panic; what decodes must re-encode to the same message (bodies
//! are protobuf: unknown fields are dropped on the way, so the bytes may differ).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use longlink_codec::push::{Ack, Op, PushCodec, PushMessage};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((seq, message)) = PushMessage::from_json(text, 64 * 1024) {
            let again = PushMessage::from_json(&message.to_json(seq), 64 * 1024).expect("our own json reads");
            assert_eq!(again, (seq, message));
        }
    }
    let mut codec = PushCodec::new().max_frame_bytes(16 * 1024);
    let mut src = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut src) {
        if frame.op == Op::BATCH {
            for inner in frame.unbatch(16 * 1024) {
                let _ = inner.map(|f| PushMessage::from_frame(&f));
            }
            continue;
        }
        if frame.op == Op::ACK {
            // The room's allocation-free ACK reader agrees with the full one.
            let mut ids = Vec::new();
            match (Ack::read_ids(&frame.body, &mut ids), PushMessage::from_frame(&frame)) {
                (Ok(()), Ok(PushMessage::Ack(ack))) => assert_eq!(ack.ids, ids),
                (Err(_), Err(_)) => {}
                (fast, full) => panic!("read_ids {fast:?} but from_frame {full:?}"),
            }
        }
        if let Ok(message) = PushMessage::from_frame(&frame) {
            let encoded = message.to_frame(frame.seq).expect("encodes");
            assert_eq!(PushMessage::from_frame(&encoded).expect("our own frame reads"), message);
        }
    }
});
