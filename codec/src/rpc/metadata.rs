//! Request metadata: a small list of `key → value` entries carried in a REQ frame before
//! the payload (trace context, auth, baggage), flagged `METADATA`.
//!
//! On the wire, after the REQ's fixed fields: `meta_len:u16 | entries`, each entry
//! `key_len:u8 | key | value_len:u16 | value`. Keys are 1–255 bytes of lowercase ASCII
//! letters, digits, `-`, `_` and `.` (as gRPC metadata and HTTP/2 header names); values are
//! any bytes. The whole section is at most [`MAX_METADATA_BYTES`] and travels in the first
//! frame of a chunked request only. A request without metadata has no section and no flag,
//! so it costs nothing.

use bytes::{BufMut, Bytes, BytesMut};

use crate::CodecError;

/// The largest metadata section, entries included: 8 KiB (an HTTP/2 peer's default
/// header list is 16 KiB; RPC metadata is for trace context and tokens, not payloads).
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

/// Why an entry cannot be added to [`Metadata`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The key is empty, longer than 255 bytes, or has a character outside `a-z 0-9 - _ .`.
    #[error(
        "invalid metadata key {key:?}: 1-255 bytes of lowercase letters, digits, '-', '_', '.'"
    )]
    InvalidKey {
        /// The key refused.
        key: String,
    },
    /// The section would exceed [`MAX_METADATA_BYTES`] (a value alone is at most 64 KiB - 1).
    #[error("metadata of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Bytes the section would take.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// The metadata of a request: entries in the order they were added; a key may repeat
/// ([`get`](Metadata::get) answers the first). Cheap to clone (it is the encoded bytes).
///
/// ```
/// use longlink_codec::rpc::Metadata;
///
/// let mut meta = Metadata::builder();
/// meta.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?
///     .insert("authorization", "Bearer abc")?;
/// let meta = meta.build();
/// assert_eq!(meta.get_str("authorization"), Some("Bearer abc"));
/// assert_eq!(meta.iter().count(), 2);
/// assert!(Metadata::builder().insert("Not-Lowercase", "x").is_err());
/// # Ok::<(), longlink_codec::rpc::MetadataError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata(Bytes);

impl Metadata {
    /// No entries.
    pub const fn new() -> Metadata {
        Metadata(Bytes::new())
    }

    /// A builder.
    pub fn builder() -> MetadataBuilder {
        MetadataBuilder {
            buf: BytesMut::new(),
        }
    }

    /// `true` without entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The encoded section (entries only, without `meta_len`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value of the first entry named `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The value of the first entry named `key`, when it is UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        Entries { rest: &self.0 }
    }

    /// These entries and one more (a copy: metadata is immutable once built).
    pub fn with(&self, key: &str, value: impl AsRef<[u8]>) -> Result<Metadata, MetadataError> {
        let value = value.as_ref();
        let mut builder = MetadataBuilder {
            buf: BytesMut::with_capacity(self.0.len() + 3 + key.len() + value.len()),
        };
        builder.buf.put_slice(&self.0);
        builder.insert(key, value)?;
        Ok(builder.build())
    }

    /// Reads a section received on the wire, checking every entry (bounded: the section
    /// is at most [`MAX_METADATA_BYTES`]).
    pub fn from_wire(bytes: Bytes) -> Result<Metadata, CodecError> {
        let malformed = |reason: String| CodecError::Malformed {
            what: "REQ metadata",
            reason,
        };
        if bytes.len() > MAX_METADATA_BYTES {
            return Err(malformed(format!(
                "{} bytes exceed the limit of {MAX_METADATA_BYTES}",
                bytes.len()
            )));
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let key_len = rest[0] as usize;
            if rest.len() < 1 + key_len + 2 {
                return Err(malformed("an entry is cut short".into()));
            }
            let key = &rest[1..1 + key_len];
            if !valid_key(key) {
                return Err(malformed(format!(
                    "invalid key {:?}",
                    String::from_utf8_lossy(key)
                )));
            }
            let at = 1 + key_len;
            let value_len = u16::from_be_bytes([rest[at], rest[at + 1]]) as usize;
            if rest.len() < at + 2 + value_len {
                return Err(malformed("a value is cut short".into()));
            }
            rest = &rest[at + 2 + value_len..];
        }
        Ok(Metadata(bytes))
    }
}

impl std::fmt::Debug for Metadata {
    /// Keys only: values may be secrets (tokens).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter().map(|(k, _)| k)).finish()
    }
}

fn valid_key(key: &[u8]) -> bool {
    !key.is_empty()
        && key.len() <= 255
        && key
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
}

/// Builds [`Metadata`], checking each entry as it is added.
#[derive(Debug)]
pub struct MetadataBuilder {
    buf: BytesMut,
}

impl MetadataBuilder {
    /// Adds an entry.
    pub fn insert(
        &mut self,
        key: &str,
        value: impl AsRef<[u8]>,
    ) -> Result<&mut MetadataBuilder, MetadataError> {
        let value = value.as_ref();
        if !valid_key(key.as_bytes()) {
            return Err(MetadataError::InvalidKey { key: key.into() });
        }
        let len = self.buf.len() + 1 + key.len() + 2 + value.len();
        if len > MAX_METADATA_BYTES {
            return Err(MetadataError::TooLarge {
                len,
                max: MAX_METADATA_BYTES,
            });
        }
        self.buf.put_u8(key.len() as u8);
        self.buf.put_slice(key.as_bytes());
        self.buf.put_u16(value.len() as u16);
        self.buf.put_slice(value);
        Ok(self)
    }

    /// The metadata.
    pub fn build(self) -> Metadata {
        Metadata(self.buf.freeze())
    }
}

/// Walks a section already checked by [`Metadata::from_wire`] or built by the builder.
struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let key_len = self.rest[0] as usize;
        let key = &self.rest[1..1 + key_len];
        let at = 1 + key_len;
        let value_len = u16::from_be_bytes([self.rest[at], self.rest[at + 1]]) as usize;
        let value = &self.rest[at + 2..at + 2 + value_len];
        self.rest = &self.rest[at + 2 + value_len..];
        // Keys are checked ASCII on the way in.
        Some((std::str::from_utf8(key).unwrap_or_default(), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_section_reads_back_entry_by_entry() {
        let mut b = Metadata::builder();
        b.insert("a", b"1")
            .unwrap()
            .insert("b.c", [0u8, 255])
            .unwrap();
        b.insert("a", "second").unwrap();
        let meta = b.build();
        let again = Metadata::from_wire(Bytes::copy_from_slice(meta.as_bytes())).unwrap();
        assert_eq!(again, meta);
        assert_eq!(meta.get("a"), Some(&b"1"[..]));
        assert_eq!(meta.get("b.c"), Some(&[0u8, 255][..]));
        assert_eq!(meta.get("zz"), None);
        assert_eq!(format!("{meta:?}"), r#"["a", "b.c", "a"]"#);
    }

    #[test]
    fn a_section_over_the_limit_is_refused_when_built() {
        let big = vec![b'x'; MAX_METADATA_BYTES];
        let err = Metadata::builder().insert("k", &big).unwrap_err();
        assert!(matches!(err, MetadataError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn a_cut_or_badly_keyed_section_is_malformed() {
        for bad in [
            &[3u8, b'a', b'b'][..],     // key cut
            &[1, b'a', 0, 5, b'x'][..], // value cut
            &[1, b'A', 0, 0][..],       // uppercase key
            &[0, 0, 0][..],             // empty key
            &[1, b'a', 0][..],          // value length cut
        ] {
            let err = Metadata::from_wire(Bytes::copy_from_slice(bad)).unwrap_err();
            assert!(
                matches!(err, CodecError::Malformed { .. }),
                "{bad:?}: {err}"
            );
        }
    }
}
