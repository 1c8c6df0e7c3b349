//! Body compression: what a side announces in HELLO, when it compresses what it sends, and
//! the bounded decompression of what it receives.
//!
//! Both run in the task that owns the body — the caller's (client) or the handler's
//! (server) — never in a connection's reader or writer, which serve every call of the
//! connection: a 1 MiB body compressed there would hold up all the others.
//!
//! Without the `compression` feature a side announces nothing, compresses nothing, and
//! refuses a body flagged `COMPRESSED` (its peer broke the negotiation); [`Side`] is then
//! a zero-sized type whose checks are a flag test.

use std::fmt;

#[cfg(not(feature = "compression"))]
use bytes::Bytes;
#[cfg(not(feature = "compression"))]
use longlink_codec::rpc::Features;

#[cfg(feature = "compression")]
pub use self::zstd_side::{Compression, CompressionStats};

/// Why a compressed body was refused. The receiver reports it (a server answers
/// `BAD_REQUEST` and does not run the handler; a client fails the call with
/// [`RpcError::BadResponse`](crate::RpcError::BadResponse)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// This side did not announce zstd, so its peer must not have sent it.
    NotNegotiated,
    /// The payload is not a zstd frame, or the frame is truncated or corrupt.
    #[cfg_attr(not(feature = "compression"), allow(dead_code))]
    Corrupt(String),
    /// The frame does not say how large it decompresses to (this protocol requires it, so
    /// the receiver can bound the output before allocating it).
    #[cfg_attr(not(feature = "compression"), allow(dead_code))]
    NoContentSize,
    /// The frame declares more than the receiver's message limit.
    #[cfg_attr(not(feature = "compression"), allow(dead_code))]
    OverLimit {
        /// Bytes the frame declares.
        declared: u64,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotNegotiated => f.write_str(
                "compressed body, but compression was not negotiated on this connection",
            ),
            Refusal::Corrupt(reason) => write!(f, "corrupt compressed body: {reason}"),
            Refusal::NoContentSize => {
                f.write_str("compressed body whose zstd frame does not declare its size")
            }
            Refusal::OverLimit { declared, max } => write!(
                f,
                "compressed body of {declared} bytes (decompressed) exceeds limit {max}"
            ),
        }
    }
}

/// One side's compression: its policy and its counters (shared by every clone of a client,
/// or by every connection of a server).
#[derive(Debug, Clone, Default)]
pub(crate) struct Side {
    #[cfg(feature = "compression")]
    policy: Compression,
    #[cfg(feature = "compression")]
    counters: std::sync::Arc<zstd_side::Counters>,
}

#[cfg(not(feature = "compression"))]
impl Side {
    /// What this side announces in HELLO: nothing without the feature.
    #[inline]
    pub(crate) fn offer(&self) -> Features {
        Features::NONE
    }

    /// The body as it goes on the wire, and whether it is compressed: as is.
    #[inline]
    pub(crate) fn compress(&self, _peer: Features, body: Bytes) -> (Bytes, bool) {
        (body, false)
    }

    /// A body that arrived flagged `COMPRESSED`: refused (nothing was announced).
    pub(crate) fn decompress(
        &self,
        _negotiated: Features,
        _body: &[u8],
        _max: usize,
    ) -> Result<Bytes, Refusal> {
        Err(Refusal::NotNegotiated)
    }
}

#[cfg(feature = "compression")]
mod zstd_side {
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use bytes::Bytes;
    use longlink_codec::rpc::Features;
    use zstd::zstd_safe;

    use super::{Refusal, Side};

    /// How a side compresses the bodies it sends (feature `compression`). Give it to
    /// [`ClientBuilder::compression`](crate::ClientBuilder::compression) or
    /// [`ServerBuilder::compression`](crate::ServerBuilder::compression).
    ///
    /// Compression is used on a connection only when **both** sides turned it on: each
    /// announces zstd in HELLO / HELLO_ACK only then, and compresses towards a peer only if
    /// the peer announced it. A side with `Off` (the default) announces nothing, so its
    /// peer sends it nothing compressed.
    ///
    /// ```
    /// use longlink_rpc::Compression;
    /// assert_eq!(Compression::default(), Compression::Off);
    /// assert_eq!(Compression::zstd(), Compression::Zstd { level: 1, threshold: 8 * 1024 });
    /// // Smaller bodies too, and harder: for a slow link between data centres.
    /// let wan = Compression::Zstd { level: 6, threshold: 1024 };
    /// # let _ = wan;
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    #[non_exhaustive]
    pub enum Compression {
        /// Nothing compressed, nothing announced: the peer sends nothing compressed either.
        #[default]
        Off,
        /// zstd for bodies of `threshold` bytes or more. A body that does not shrink by at
        /// least an eighth is sent as it was (and counted in
        /// [`CompressionStats::sent_as_is`]).
        Zstd {
            /// The zstd level: 1 (fast, the default of [`Compression::zstd`]) to 22;
            /// negative levels trade ratio for more speed.
            level: i32,
            /// Smallest body compressed, in bytes.
            threshold: usize,
        },
    }

    impl Compression {
        /// Smallest body [`Compression::zstd`] compresses: 8 KiB. Below it, the zstd frame
        /// overhead and the CPU buy little on a data-centre network.
        pub const DEFAULT_THRESHOLD: usize = 8 * 1024;

        /// zstd at level 1 for bodies of [`DEFAULT_THRESHOLD`](Self::DEFAULT_THRESHOLD)
        /// or more: hundreds of MB/s per core, most of the ratio of higher levels on text.
        pub const fn zstd() -> Compression {
            Compression::Zstd {
                level: 1,
                threshold: Compression::DEFAULT_THRESHOLD,
            }
        }
    }

    /// Body compression counters of one side (feature `compression`): in
    /// [`ClientStats::compression`](crate::ClientStats::compression) and
    /// [`ServerStats::compression`](crate::ServerStats::compression).
    ///
    /// "Body bytes" are the payload as the application sees it, "wire bytes" the
    /// compressed payload that travelled (frame headers not included). The ratio of a
    /// direction is `wire / body`.
    ///
    /// ```
    /// let stats = longlink_rpc::CompressionStats::default();
    /// assert_eq!(stats.sent, 0);
    /// ```
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct CompressionStats {
        /// Bodies sent compressed.
        pub sent: u64,
        /// Those bodies' bytes before compression.
        pub sent_body_bytes: u64,
        /// Those bodies' bytes on the wire.
        pub sent_wire_bytes: u64,
        /// Bodies at or over the threshold sent uncompressed, because compressing them did
        /// not save an eighth (already compressed, random, encrypted).
        pub sent_as_is: u64,
        /// Compressed bodies received and decompressed.
        pub received: u64,
        /// Those bodies' bytes on the wire.
        pub received_wire_bytes: u64,
        /// Those bodies' bytes after decompression.
        pub received_body_bytes: u64,
        /// Compressed bodies refused: corrupt, not declaring their size, declaring more
        /// than the message limit, or on a connection that did not negotiate compression.
        pub refused: u64,
    }

    #[derive(Debug, Default)]
    pub(super) struct Counters {
        sent: AtomicU64,
        sent_body_bytes: AtomicU64,
        sent_wire_bytes: AtomicU64,
        sent_as_is: AtomicU64,
        received: AtomicU64,
        received_wire_bytes: AtomicU64,
        received_body_bytes: AtomicU64,
        refused: AtomicU64,
    }

    thread_local! {
        /// A compression context per thread, for the last level used: a context costs a
        /// few hundred KiB of tables to set up, more than compressing a small body.
        static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { RefCell::new(None) };
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }

    /// `body` compressed at `level` if that saves at least an eighth of it. The output
    /// buffer holds just under 7/8 of the body: zstd stops when it does not fit, which is
    /// the answer "not worth it" without compressing twice or over-allocating.
    fn compress(body: &[u8], level: i32) -> Option<Vec<u8>> {
        let limit = body.len() - body.len() / 8 - 1;
        let mut out = Vec::with_capacity(limit);
        COMPRESSOR.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.as_ref().is_none_or(|(l, _)| *l != level) {
                *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
            }
            let (_, compressor) = slot.as_mut()?;
            compressor.compress_to_buffer(body, &mut out).ok()
        })?;
        // The buffer was sized for the worst case; a 1 MiB body that became 20 KiB should
        // not keep 900 KiB alive while it waits in a queue.
        if out.capacity() > 2 * out.len() {
            out.shrink_to_fit();
        }
        Some(out)
    }

    /// Decompresses one zstd frame, bounded before anything is allocated: the frame must
    /// declare its content size, the size must be within `max`, the frame must be the whole
    /// payload, and the output buffer is exactly the declared size (zstd fails rather than
    /// write past it).
    pub(super) fn decompress(body: &[u8], max: usize) -> Result<Vec<u8>, Refusal> {
        let declared = zstd_safe::get_frame_content_size(body)
            .map_err(|_| Refusal::Corrupt("not a zstd frame".into()))?
            .ok_or(Refusal::NoContentSize)?;
        if declared > max as u64 {
            return Err(Refusal::OverLimit { declared, max });
        }
        let frame_len = zstd_safe::find_frame_compressed_size(body)
            .map_err(|_| Refusal::Corrupt("truncated zstd frame".into()))?;
        if frame_len != body.len() {
            return Err(Refusal::Corrupt(format!(
                "{} bytes after the zstd frame",
                body.len() - frame_len
            )));
        }
        let mut out = Vec::with_capacity(declared as usize);
        DECOMPRESSOR.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.is_none() {
                *slot = Some(
                    zstd::bulk::Decompressor::new().map_err(|e| Refusal::Corrupt(e.to_string()))?,
                );
            }
            let decompressor = slot.as_mut().expect("set above");
            decompressor
                .decompress_to_buffer(body, &mut out)
                .map_err(|e| Refusal::Corrupt(e.to_string()))
        })?;
        if out.len() as u64 != declared {
            return Err(Refusal::Corrupt(format!(
                "{} bytes where the frame declares {declared}",
                out.len()
            )));
        }
        Ok(out)
    }

    impl Side {
        /// A side with this policy and fresh counters.
        pub(crate) fn new(policy: Compression) -> Side {
            Side {
                policy,
                counters: Default::default(),
            }
        }

        /// What this side announces in HELLO: zstd when its policy compresses.
        #[inline]
        pub(crate) fn offer(&self) -> Features {
            match self.policy {
                Compression::Off => Features::NONE,
                Compression::Zstd { .. } => Features::ZSTD,
            }
        }

        /// The body as it goes on the wire, and whether it is compressed: compressed when
        /// this side compresses, the peer announced zstd, the body is at or over the
        /// threshold and compressing saves an eighth.
        pub(crate) fn compress(&self, peer: Features, body: Bytes) -> (Bytes, bool) {
            let Compression::Zstd { level, threshold } = self.policy else {
                return (body, false);
            };
            if body.len() < threshold.max(1) || !peer.contains(Features::ZSTD) {
                return (body, false);
            }
            let c = &*self.counters;
            match compress(&body, level) {
                Some(out) => {
                    c.sent.fetch_add(1, Relaxed);
                    c.sent_body_bytes.fetch_add(body.len() as u64, Relaxed);
                    c.sent_wire_bytes.fetch_add(out.len() as u64, Relaxed);
                    (Bytes::from(out), true)
                }
                None => {
                    c.sent_as_is.fetch_add(1, Relaxed);
                    (body, false)
                }
            }
        }

        /// A body that arrived flagged `COMPRESSED` on a connection that `negotiated`
        /// these features (the HELLO_ACK's), decompressed within `max` bytes; refused if
        /// zstd was not negotiated there.
        pub(crate) fn decompress(
            &self,
            negotiated: Features,
            body: &[u8],
            max: usize,
        ) -> Result<Bytes, Refusal> {
            let c = &*self.counters;
            let result = if (self.offer() & negotiated).contains(Features::ZSTD) {
                decompress(body, max)
            } else {
                Err(Refusal::NotNegotiated)
            };
            match result {
                Ok(out) => {
                    c.received.fetch_add(1, Relaxed);
                    c.received_wire_bytes.fetch_add(body.len() as u64, Relaxed);
                    c.received_body_bytes.fetch_add(out.len() as u64, Relaxed);
                    Ok(Bytes::from(out))
                }
                Err(refusal) => {
                    c.refused.fetch_add(1, Relaxed);
                    Err(refusal)
                }
            }
        }

        /// The counters now.
        pub(crate) fn stats(&self) -> CompressionStats {
            let c = &*self.counters;
            CompressionStats {
                sent: c.sent.load(Relaxed),
                sent_body_bytes: c.sent_body_bytes.load(Relaxed),
                sent_wire_bytes: c.sent_wire_bytes.load(Relaxed),
                sent_as_is: c.sent_as_is.load(Relaxed),
                received: c.received.load(Relaxed),
                received_wire_bytes: c.received_wire_bytes.load(Relaxed),
                received_body_bytes: c.received_body_bytes.load(Relaxed),
                refused: c.refused.load(Relaxed),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn text(len: usize) -> Vec<u8> {
            br#"{"uid":"u42","room":"r7","body":"hello there"},"#
                .iter()
                .copied()
                .cycle()
                .take(len)
                .collect()
        }

        #[test]
        fn a_compressible_body_round_trips_and_shrinks() {
            let body = text(1 << 20);
            let out = compress(&body, 1).expect("text compresses");
            assert!(out.len() < body.len() / 50, "{} bytes", out.len());
            assert_eq!(decompress(&out, 1 << 20).unwrap(), body);
        }

        #[test]
        fn an_incompressible_body_is_not_worth_it() {
            let body: Vec<u8> = (0..64 * 1024).map(|_| fastrand::u8(..)).collect();
            assert_eq!(compress(&body, 1), None);
        }

        #[test]
        fn decompression_is_bounded_by_the_declared_size_before_allocating() {
            let out = compress(&text(100_000), 1).unwrap();
            assert_eq!(
                decompress(&out, 99_999),
                Err(Refusal::OverLimit {
                    declared: 100_000,
                    max: 99_999
                })
            );
        }

        #[test]
        fn garbage_a_truncated_frame_and_trailing_bytes_are_corrupt() {
            let out = compress(&text(100_000), 1).unwrap();
            for bad in [
                &b"not zstd at all"[..],
                &[][..],
                &out[..out.len() - 3],
                &[&out[..], b"extra"].concat(),
            ] {
                assert!(
                    matches!(decompress(bad, 1 << 20), Err(Refusal::Corrupt(_))),
                    "{:?}",
                    decompress(bad, 1 << 20)
                );
            }
        }

        #[test]
        fn a_frame_without_a_declared_size_is_refused() {
            // The streaming encoder does not know the size in advance, so it declares none.
            let mut encoder = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
            std::io::Write::write_all(&mut encoder, &text(10_000)).unwrap();
            let streamed = encoder.finish().unwrap();
            assert_eq!(decompress(&streamed, 1 << 20), Err(Refusal::NoContentSize));
        }

        #[test]
        fn a_side_compresses_only_towards_a_peer_that_announced_it_and_counts() {
            let side = Side::new(Compression::Zstd {
                level: 1,
                threshold: 1000,
            });
            let big = Bytes::from(text(10_000));
            assert_eq!(
                side.compress(Features::NONE, big.clone()),
                (big.clone(), false)
            );
            let small = Bytes::from(text(999));
            assert_eq!(side.compress(Features::ZSTD, small.clone()), (small, false));
            let (wire, compressed) = side.compress(Features::ZSTD, big.clone());
            assert!(compressed && wire.len() < big.len() / 10);
            assert_eq!(side.decompress(Features::ZSTD, &wire, 10_000).unwrap(), big);
            assert_eq!(
                side.decompress(Features::NONE, &wire, 10_000),
                Err(Refusal::NotNegotiated)
            );
            let off = Side::new(Compression::Off);
            assert_eq!(off.offer(), Features::NONE);
            assert_eq!(
                off.decompress(Features::ZSTD, &wire, 10_000),
                Err(Refusal::NotNegotiated)
            );
            let stats = side.stats();
            assert_eq!(
                (
                    stats.sent,
                    stats.sent_body_bytes,
                    stats.received,
                    stats.refused
                ),
                (1, 10_000, 1, 1)
            );
            assert_eq!(stats.sent_wire_bytes, wire.len() as u64);
            assert_eq!(off.stats().refused, 1);
        }
    }
}
