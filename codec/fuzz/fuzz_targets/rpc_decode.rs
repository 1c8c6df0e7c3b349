//! Arbitrary bytes into the RPC decoder, fed in two reads at a split point the input picks.
//! Must never panic; every message decoded must re-encode and decode to itself; memory is
//! bounded by the codec's limits (run with -malloc_limit_mb).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use longlink_codec::rpc::RpcCodec;
use tokio_util::codec::{Decoder, Encoder};

fn new_codec() -> RpcCodec {
    RpcCodec::new()
        .max_frame_bytes(64 * 1024)
        .max_chunk_bytes(1024)
        .max_message_bytes(256 * 1024)
        .max_partial_messages(8)
        .max_partial_bytes(512 * 1024)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else { return };
    let split = (split as usize * data.len()) / 256;
    let mut codec = new_codec();
    let mut src = BytesMut::from(&data[..split]);
    let mut decoded = Vec::new();
    let mut failed = false;
    for chunk in [&data[split..], &[][..]] {
        loop {
            match codec.decode(&mut src) {
                Ok(Some(message)) => decoded.push(message),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
        src.extend_from_slice(chunk);
    }
    for message in decoded {
        let mut wire = BytesMut::new();
        let mut encoder = new_codec();
        if encoder.encode(message.clone(), &mut wire).is_ok() {
            let again = encoder.decode(&mut wire).expect("our own encoding decodes");
            assert_eq!(again.as_ref(), Some(&message));
        }
    }
});
