//! Message bodies that read well in both forms: raw bytes in binary frames, text in JSON.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The application bytes of a message or upstream.
///
/// In binary frames it is raw bytes. In the JSON form it is a string when the bytes are
/// UTF-8 (the usual case: JSON or text payloads), and `{"base64": "..."}` otherwise; both are
/// accepted when reading.
///
/// ```
/// use longlink_codec::push::Payload;
/// assert_eq!(serde_json::to_string(&Payload::from("hi")).unwrap(), r#""hi""#);
/// assert_eq!(serde_json::to_string(&Payload::from(vec![0xff, 0])).unwrap(), r#"{"base64":"/wA="}"#);
/// let p: Payload = serde_json::from_str(r#"{"base64":"/wA="}"#).unwrap();
/// assert_eq!(&p.0[..], &[0xff, 0]);
/// ```
#[derive(Clone, PartialEq, Eq, Default, Hash)]
pub struct Payload(pub Bytes);

impl Payload {
    /// The bytes as text, if they are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => write!(f, "Payload({s:?})"),
            None => write!(f, "Payload({} bytes)", self.0.len()),
        }
    }
}

impl From<&str> for Payload {
    fn from(s: &str) -> Payload {
        Payload(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Payload {
    fn from(s: String) -> Payload {
        Payload(Bytes::from(s))
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Payload {
        Payload(Bytes::from(v))
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Payload {
        Payload(b)
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            return serializer.serialize_bytes(&self.0);
        }
        match self.as_str() {
            Some(s) => serializer.serialize_str(s),
            None => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("base64", &BASE64.encode(&self.0))?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Payload, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(PayloadVisitor)
        } else {
            deserializer.deserialize_bytes(PayloadVisitor)
        }
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = Payload;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, bytes, or {\"base64\": string}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Payload, E> {
        Ok(Payload::from(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Payload, E> {
        Ok(Payload::from(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Payload, E> {
        Ok(Payload(Bytes::copy_from_slice(v)))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
        Ok(Payload::from(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload, A::Error> {
        let mut out = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "base64" || out.is_some() {
                return Err(de::Error::custom(format_args!(
                    "unexpected payload field {key:?}"
                )));
            }
            let text: String = map.next_value()?;
            out = Some(BASE64.decode(text.as_bytes()).map_err(de::Error::custom)?);
        }
        out.map(Payload::from)
            .ok_or_else(|| de::Error::missing_field("base64"))
    }
}
