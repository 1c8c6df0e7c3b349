//! The protobuf binary encoding (proto3) of push bodies, written straight from the typed
//! messages into the frame buffer and read straight out of the frame's bytes — no generated
//! intermediate structs, no copy of `bytes` fields (they are slices of the frame).
//!
//! Only what `proto/push.proto` uses: varint scalars (`uint32`, `uint64`, `bool`, enums),
//! length-delimited `string`/`bytes`/packed `repeated uint64`. Readers follow proto3: fields
//! in any order, the last value of a scalar wins, repeated fields accumulate, a packed or
//! unpacked `repeated uint64` is read either way, unknown fields (of any wire type but the
//! deprecated groups) are skipped. A known field with the wrong wire type, a truncated
//! field, a string that is not UTF-8, or a value out of its type's range is an error naming
//! the field. Varint primitives are `prost`'s.

use bytes::{BufMut, Bytes};
use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};

use crate::CodecError;

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const GROUP_START: u64 = 3;
const GROUP_END: u64 = 4;
const FIXED32: u64 = 5;

fn key_len(tag: u32) -> usize {
    encoded_len_varint(u64::from(tag) << 3)
}

fn put_key(dst: &mut impl BufMut, tag: u32, wire_type: u64) {
    encode_varint((u64::from(tag) << 3) | wire_type, dst);
}

/// Writes fields; each `put_*` has a `len_*` twin so a message can reserve exactly.
/// Proto3 implicit presence: a zero, `false` or empty value is not written.
pub(super) struct Out<'a, B>(pub(super) &'a mut B);

impl<B: BufMut> Out<'_, B> {
    pub(super) fn uint(&mut self, tag: u32, value: u64) {
        if value != 0 {
            put_key(self.0, tag, VARINT);
            encode_varint(value, self.0);
        }
    }

    pub(super) fn bool(&mut self, tag: u32, value: bool) {
        self.uint(tag, u64::from(value));
    }

    pub(super) fn bytes(&mut self, tag: u32, value: &[u8]) {
        if !value.is_empty() {
            self.always_bytes(tag, value);
        }
    }

    /// A field with explicit presence (`optional string`) or an element of a repeated one:
    /// written even when empty.
    pub(super) fn always_bytes(&mut self, tag: u32, value: &[u8]) {
        put_key(self.0, tag, LEN);
        encode_varint(value.len() as u64, self.0);
        self.0.put_slice(value);
    }

    pub(super) fn strings(&mut self, tag: u32, values: &[String]) {
        for value in values {
            self.always_bytes(tag, value.as_bytes());
        }
    }

    pub(super) fn packed(&mut self, tag: u32, values: &[u64]) {
        if !values.is_empty() {
            put_key(self.0, tag, LEN);
            encode_varint(packed_payload_len(values) as u64, self.0);
            for &v in values {
                encode_varint(v, self.0);
            }
        }
    }
}

pub(super) fn len_uint(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

pub(super) fn len_bytes(tag: u32, value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        len_always_bytes(tag, value)
    }
}

pub(super) fn len_always_bytes(tag: u32, value: &[u8]) -> usize {
    key_len(tag) + encoded_len_varint(value.len() as u64) + value.len()
}

pub(super) fn len_strings(tag: u32, values: &[String]) -> usize {
    values
        .iter()
        .map(|v| len_always_bytes(tag, v.as_bytes()))
        .sum()
}

fn packed_payload_len(values: &[u64]) -> usize {
    values.iter().map(|&v| encoded_len_varint(v)).sum()
}

pub(super) fn len_packed(tag: u32, values: &[u64]) -> usize {
    if values.is_empty() {
        0
    } else {
        let payload = packed_payload_len(values);
        key_len(tag) + encoded_len_varint(payload as u64) + payload
    }
}

/// One field as read.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value<'a> {
    Varint(u64),
    Len(&'a [u8]),
    /// A fixed-width field: no field of the contract is one; only an unknown field may be.
    Fixed,
}

/// The fields of one body, in wire order.
pub(super) struct Fields<'a> {
    body: &'a Bytes,
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Fields<'a> {
    pub(super) fn new(what: &'static str, body: &'a Bytes) -> Fields<'a> {
        Fields {
            body,
            rest: &body[..],
            what,
        }
    }

    #[cold]
    fn error(&self, reason: String) -> CodecError {
        CodecError::Malformed {
            what: self.what,
            reason,
        }
    }

    #[inline(always)]
    fn varint(&mut self, field: &str) -> Result<u64, CodecError> {
        decode_varint(&mut self.rest).map_err(|_| self.error(format!("{field}: bad varint")))
    }

    /// The next field, `None` at the end of the body. Inlined into each message's reader:
    /// returned through memory, the large `Result` cost a store-forwarding stall per field
    /// (a MESSAGE read took 20–30 % longer).
    #[inline(always)]
    pub(super) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, CodecError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint("field key")?;
        let tag = key >> 3;
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(self.error(format!("field number {tag} is out of range")));
        }
        let tag = tag as u32;
        let value = match key & 7 {
            VARINT => Value::Varint(self.varint("field")?),
            LEN => {
                let len = self.varint("length")?;
                if len > self.rest.len() as u64 {
                    return Err(self.error(format!(
                        "field {tag} announces {len} bytes, {} remain",
                        self.rest.len()
                    )));
                }
                let (value, rest) = self.rest.split_at(len as usize);
                self.rest = rest;
                Value::Len(value)
            }
            FIXED64 | FIXED32 => {
                let width = if key & 7 == FIXED64 { 8 } else { 4 };
                if self.rest.len() < width {
                    return Err(self.error(format!("field {tag} is truncated")));
                }
                self.rest = &self.rest[width..];
                Value::Fixed
            }
            GROUP_START | GROUP_END => {
                return Err(self.error(format!("field {tag} is a group (not in proto3)")));
            }
            other => return Err(self.error(format!("field {tag} has wire type {other}"))),
        };
        Ok(Some((tag, value)))
    }

    #[cold]
    fn wrong_type(&self, field: &str) -> CodecError {
        self.error(format!("{field}: wrong wire type"))
    }

    pub(super) fn u64(&self, field: &str, value: Value<'a>) -> Result<u64, CodecError> {
        match value {
            Value::Varint(v) => Ok(v),
            _ => Err(self.wrong_type(field)),
        }
    }

    pub(super) fn u32(&self, field: &str, value: Value<'a>) -> Result<u32, CodecError> {
        let v = self.u64(field, value)?;
        u32::try_from(v).map_err(|_| self.error(format!("{field}: {v} is over 2^32")))
    }

    pub(super) fn bool(&self, field: &str, value: Value<'a>) -> Result<bool, CodecError> {
        Ok(self.u64(field, value)? != 0)
    }

    pub(super) fn raw(&self, field: &str, value: Value<'a>) -> Result<&'a [u8], CodecError> {
        match value {
            Value::Len(b) => Ok(b),
            _ => Err(self.wrong_type(field)),
        }
    }

    pub(super) fn str(&self, field: &str, value: Value<'a>) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.raw(field, value)?)
            .map_err(|e| self.error(format!("{field}: {e}")))
    }

    pub(super) fn string(&self, field: &str, value: Value<'a>) -> Result<String, CodecError> {
        self.str(field, value).map(str::to_owned)
    }

    /// A `bytes` field as a slice of the frame: no copy.
    pub(super) fn bytes(&self, field: &str, value: Value<'a>) -> Result<Bytes, CodecError> {
        let raw = self.raw(field, value)?;
        Ok(if raw.is_empty() {
            Bytes::new()
        } else {
            self.body.slice_ref(raw)
        })
    }

    /// Appends a `repeated uint64` field's values (packed or not) to `out`.
    pub(super) fn u64s(
        &self,
        field: &str,
        value: Value<'a>,
        out: &mut Vec<u64>,
    ) -> Result<(), CodecError> {
        match value {
            Value::Varint(v) => out.push(v),
            Value::Len(mut packed) => {
                while !packed.is_empty() {
                    let v = decode_varint(&mut packed)
                        .map_err(|_| self.error(format!("{field}: bad packed varint")))?;
                    out.push(v);
                }
            }
            Value::Fixed => return Err(self.wrong_type(field)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(bytes: &'static [u8]) -> Vec<Result<(u32, String), String>> {
        let body = Bytes::from_static(bytes);
        let mut f = Fields::new("test", &body);
        let mut out = Vec::new();
        loop {
            match f.next_field() {
                Ok(Some((tag, v))) => out.push(Ok((tag, format!("{v:?}")))),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[test]
    fn reads_every_wire_type_and_refuses_groups_and_truncation() {
        // 1: varint 150; 2: len "hi"; 3: fixed64; 4: fixed32.
        let all = fields(&[
            0x08, 0x96, 0x01, 0x12, 2, b'h', b'i', 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0x25, 0, 0, 0, 0,
        ]);
        assert_eq!(all.len(), 4);
        assert_eq!(all[0], Ok((1, "Varint(150)".into())));
        assert_eq!(all[3], Ok((4, "Fixed".into())));
        assert!(fields(&[0x0b])[0].as_ref().unwrap_err().contains("group"));
        assert!(
            fields(&[0x12, 5, 1])[0]
                .as_ref()
                .unwrap_err()
                .contains("announces 5 bytes, 1 remain")
        );
        assert!(
            fields(&[0x08, 0x80])[0]
                .as_ref()
                .unwrap_err()
                .contains("varint")
        );
        assert!(
            fields(&[0x00, 0x00])[0]
                .as_ref()
                .unwrap_err()
                .contains("field number 0")
        );
        assert!(
            fields(&[0x19, 0])[0]
                .as_ref()
                .unwrap_err()
                .contains("truncated")
        );
    }

    #[test]
    fn lengths_match_what_is_written() {
        let mut buf = Vec::new();
        let mut out = Out(&mut buf);
        out.uint(1, 300);
        out.uint(2, 0);
        out.bool(3, true);
        out.bytes(4, b"");
        out.always_bytes(5, b"");
        out.strings(6, &["a".into(), String::new()]);
        out.packed(7, &[1, 1 << 40]);
        out.packed(8, &[]);
        let expected = len_uint(1, 300)
            + len_uint(2, 0)
            + len_uint(3, 1)
            + len_bytes(4, b"")
            + len_always_bytes(5, b"")
            + len_strings(6, &["a".into(), String::new()])
            + len_packed(7, &[1, 1 << 40])
            + len_packed(8, &[]);
        assert_eq!(buf.len(), expected);
        let body = Bytes::from(buf);
        let mut f = Fields::new("test", &body);
        let mut ids = Vec::new();
        while let Some((tag, v)) = f.next_field().unwrap() {
            if tag == 7 {
                f.u64s("ids", v, &mut ids).unwrap();
            }
        }
        assert_eq!(ids, [1, 1 << 40]);
    }
}
