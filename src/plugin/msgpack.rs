//! msgpack as Packer's ugorji codec writes and reads it (PROTOCOL.md §3.3).
//!
//! Values are [`rmpv::Value`]s; Go structs are maps keyed by the Go field
//! names. Encoding follows what both codec generations accept (unsigned
//! markers for non-negative integers, str for strings, bin for bytes);
//! decoding is liberal: any integer width, str or bin for strings, keys in
//! any order, unknown keys ignored, times as ext −1 or `MarshalBinary` bin.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rmpv::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Seconds from Go's zero time (0001-01-01 UTC) to the Unix epoch.
const GO_ZERO_TO_UNIX_SECS: i64 = 62_135_596_800;

/// Read granularity for the incremental decoder.
const READ_CHUNK: usize = 16 * 1024;

/// Serialises one value.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    rmpv::encode::write_value(&mut out, v).expect("msgpack encoding into a Vec");
    out
}

/// A Go struct: a map with the given field names, in declaration order.
pub fn map<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::Map(
        fields
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// A Go `[]string`; `None` is Go's nil slice.
pub fn string_list(items: Option<&[String]>) -> Value {
    match items {
        Some(items) => Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect()),
        None => Value::Nil,
    }
}

/// Field `name` of a struct-as-map (absent or not a map ⇒ `None`).
pub fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| string_ref(k) == Some(name.as_bytes()))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn string_ref(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Binary(b) => Some(b),
        _ => None,
    }
}

/// A Go string, sent as str or bin; nil is `""`.
pub fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::Nil => Some(String::new()),
        _ => string_ref(v).map(|b| String::from_utf8_lossy(b).into_owned()),
    }
}

/// Any integer (any width, signed or not; also a float without fraction,
/// as ugorji v1.2.6 accepts). nil is 0.
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Nil => Some(0),
        Value::Integer(i) => i.as_i64().or_else(|| i.as_u64().map(|u| u as i64)),
        Value::F64(f) if f.fract() == 0.0 => Some(*f as i64),
        Value::F32(f) if f.fract() == 0.0 => Some(*f as i64),
        _ => None,
    }
}

/// An unsigned integer field (stream ids, `os.FileMode`).
pub fn as_u32(v: &Value) -> Option<u32> {
    as_i64(v).and_then(|i| u32::try_from(i).ok())
}

/// A Go `[]string`; nil is empty.
pub fn as_string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Nil => Some(Vec::new()),
        Value::Array(items) => items.iter().map(as_string).collect(),
        _ => None,
    }
}

/// Why a `time.Time` could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("unsupported time.Time encoding: {0}")]
pub struct TimeError(String);

/// A Go `time.Time`: nil (zero time), msgpack timestamp ext −1 (ugorji
/// v1.2.x, Packer ≥1.7 and Debian's 1.6.6) or the 15/16-byte
/// `MarshalBinary` bin of the 2015 codec. Go's zero time gives `None`.
pub fn as_time(v: &Value) -> Result<Option<SystemTime>, TimeError> {
    let (secs, nanos): (i64, u32) = match v {
        Value::Nil => return Ok(None),
        Value::Ext(-1, data) => match data.len() {
            4 => (
                i64::from(u32::from_be_bytes(data[..4].try_into().expect("4 bytes"))),
                0,
            ),
            8 => {
                let raw = u64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
                ((raw & ((1 << 34) - 1)) as i64, (raw >> 34) as u32)
            }
            12 => (
                i64::from_be_bytes(data[4..12].try_into().expect("8 bytes")),
                u32::from_be_bytes(data[..4].try_into().expect("4 bytes")),
            ),
            n => return Err(TimeError(format!("timestamp ext of {n} bytes"))),
        },
        Value::Binary(data)
            if (data.len() == 15 && data[0] == 1) || (data.len() == 16 && data[0] == 2) =>
        {
            let go_secs = i64::from_be_bytes(data[1..9].try_into().expect("8 bytes"));
            let nanos = u32::from_be_bytes(data[9..13].try_into().expect("4 bytes"));
            if go_secs == 0 && nanos == 0 {
                return Ok(None);
            }
            (go_secs - GO_ZERO_TO_UNIX_SECS, nanos)
        }
        other => return Err(TimeError(format!("{other}"))),
    };
    let t = if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            + Duration::from_nanos(u64::from(nanos))
    };
    Ok(Some(t))
}

/// msgpack → JSON, for configs, hook data and artifact state. Map keys
/// become strings; bytes become (lossy) strings; timestamps become Unix
/// seconds.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => J::from(u),
            (None, Some(s)) => J::from(s),
            _ => J::Null,
        },
        Value::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(J::Null, J::Number),
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match string_ref(k) {
                        Some(b) => String::from_utf8_lossy(b).into_owned(),
                        None => to_json(k).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Ext(..) => match as_time(v) {
            Ok(Some(t)) => t
                .duration_since(UNIX_EPOCH)
                .map_or(J::Null, |d| J::from(d.as_secs())),
            _ => J::Null,
        },
    }
}

/// JSON → msgpack: objects become maps with str keys (Packer requires
/// string keys), non-negative integers use the unsigned family.
pub fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        J::Object(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

/// Reads consecutive msgpack values from a byte stream in which values
/// may span reads and several may arrive in one read.
pub struct ValueReader<R> {
    io: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> ValueReader<R> {
    /// Wraps a byte stream.
    pub fn new(io: R) -> ValueReader<R> {
        ValueReader {
            io,
            buf: Vec::new(),
        }
    }

    /// The next value; `None` at a clean end of stream (between values).
    pub async fn next(&mut self) -> io::Result<Option<Value>> {
        loop {
            if !self.buf.is_empty() {
                let mut cursor: &[u8] = &self.buf;
                match rmpv::decode::read_value(&mut cursor) {
                    Ok(v) => {
                        let used = self.buf.len() - cursor.len();
                        self.buf.drain(..used);
                        return Ok(Some(v));
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                }
            }
            let start = self.buf.len();
            self.buf.resize(start + READ_CHUNK, 0);
            let n = self.io.read(&mut self.buf[start..]).await?;
            self.buf.truncate(start + n);
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a msgpack value",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn decode(bytes: &[u8]) -> Value {
        rmpv::decode::read_value(&mut &bytes[..]).unwrap()
    }

    #[test]
    fn header_golden_bytes_match_wireref() {
        // PROTOCOL.md §3.5: Builder.ConfigSpec request header + nil body.
        let want = hex(
            "82 ad 53 65 72 76 69 63 65 4d 65 74 68 6f 64 b2 42 75 69 6c 64 65 72 2e 43 6f 6e 66 69 67 53 70 65 63 a3 53 65 71 00 c0",
        );
        let mut got = encode(&map([
            ("ServiceMethod", Value::from("Builder.ConfigSpec")),
            ("Seq", Value::from(0u64)),
        ]));
        got.extend(encode(&Value::Nil));
        assert_eq!(got, want);
    }

    #[test]
    fn reads_header_fields_in_either_key_order() {
        // Declaration order (ugorji v1.2.x) and sorted order (2015 codec).
        let v12 = decode(&hex(
            "82 ad 53 65 72 76 69 63 65 4d 65 74 68 6f 64 a6 55 69 2e 53 61 79 a3 53 65 71 05",
        ));
        let v2015 = decode(&hex(
            "82 a3 53 65 71 05 ad 53 65 72 76 69 63 65 4d 65 74 68 6f 64 a6 55 69 2e 53 61 79",
        ));
        for v in [v12, v2015] {
            assert_eq!(
                as_string(field(&v, "ServiceMethod").unwrap()).unwrap(),
                "Ui.Say"
            );
            assert_eq!(as_i64(field(&v, "Seq").unwrap()), Some(5));
            assert!(field(&v, "Error").is_none());
        }
    }

    #[test]
    fn accepts_every_integer_width() {
        let cases: &[(&str, i64)] = &[
            ("05", 5),
            ("cc c8", 200),
            ("cd 01 a4", 420),
            ("ce 00 01 00 00", 65536),
            ("cf 00 00 00 01 00 00 00 00", 1 << 32),
            ("d0 80", -128),
            ("d1 04 00", 1024),
            ("d2 00 50 00 00", 5_242_880),
            ("d3 00 00 00 00 00 00 00 07", 7),
            ("ff", -1),
            ("cb 40 59 00 00 00 00 00 00", 100),
        ];
        for (bytes, want) in cases {
            assert_eq!(as_i64(&decode(&hex(bytes))), Some(*want), "{bytes}");
        }
        assert_eq!(as_u32(&decode(&hex("d2 00 50 00 00"))), Some(5_242_880));
        assert_eq!(as_u32(&decode(&hex("ff"))), None);
    }

    #[test]
    fn strings_come_as_str_or_bin_and_bytes_go_out_as_bin() {
        assert_eq!(as_string(&decode(&hex("a3 61 62 63"))).unwrap(), "abc");
        assert_eq!(as_string(&decode(&hex("c4 03 61 62 63"))).unwrap(), "abc");
        assert_eq!(as_string(&Value::Nil).unwrap(), "");
        assert_eq!(encode(&Value::Binary(vec![1, 2, 3])), hex("c4 03 01 02 03"));
        assert_eq!(encode(&Value::from("abc")), hex("a3 61 62 63"));
        // A header keyed by bin still matches by name.
        let v = decode(&hex("81 c4 03 53 65 71 07"));
        assert_eq!(as_i64(field(&v, "Seq").unwrap()), Some(7));
    }

    #[test]
    fn non_negative_integers_use_unsigned_markers() {
        assert_eq!(
            encode(&from_json(&serde_json::json!(1024))),
            hex("cd 04 00")
        );
        assert_eq!(encode(&from_json(&serde_json::json!(-40))), hex("d0 d8"));
        assert_eq!(
            encode(&from_json(&serde_json::json!(0.5))),
            hex("cb 3f e0 00 00 00 00 00 00")
        );
    }

    #[test]
    fn decodes_time_in_both_codec_generations() {
        let want = UNIX_EPOCH + Duration::from_secs(1_704_164_645); // 2024-01-02T03:04:05Z
        let ext32 = decode(&hex("d6 ff 65 93 7d 25"));
        let bin15 = decode(&hex("c4 0f 01 00 00 00 0e dd 25 74 25 00 00 00 00 ff ff"));
        assert_eq!(as_time(&ext32).unwrap(), Some(want));
        assert_eq!(as_time(&bin15).unwrap(), Some(want));
        // timestamp64: nsec 500 000 000 << 34 | sec.
        let raw: u64 = (500_000_000u64 << 34) | 1_704_164_645;
        let ext64 = Value::Ext(-1, raw.to_be_bytes().to_vec());
        assert_eq!(
            as_time(&ext64).unwrap(),
            Some(want + Duration::from_millis(500))
        );
        // timestamp96.
        let mut data = 7u32.to_be_bytes().to_vec();
        data.extend(1_704_164_645i64.to_be_bytes());
        assert_eq!(
            as_time(&Value::Ext(-1, data)).unwrap(),
            Some(want + Duration::from_nanos(7))
        );
        // Version-2 MarshalBinary (zone offset with seconds) is 16 bytes.
        let mut v2 = hex("02 00 00 00 0e dd 25 74 25 00 00 00 00 00 3c");
        v2.push(5);
        assert_eq!(as_time(&Value::Binary(v2)).unwrap(), Some(want));
        // Zero time: nil (v1.2.x) or all-zero MarshalBinary (2015).
        assert_eq!(as_time(&Value::Nil).unwrap(), None);
        assert_eq!(
            as_time(&decode(&hex(
                "c4 0f 01 00 00 00 00 00 00 00 00 00 00 00 00 ff ff"
            )))
            .unwrap(),
            None
        );
        assert!(as_time(&Value::from("yesterday")).is_err());
    }

    #[test]
    fn json_round_trip_keeps_shape() {
        let j = serde_json::json!({"a": [1, -2, 2.5, "x", null, true], "b": {"c": "d"}});
        assert_eq!(to_json(&from_json(&j)), j);
        // Non-string keys become their JSON text.
        let m = Value::Map(vec![(Value::from(3u64), Value::from("three"))]);
        assert_eq!(to_json(&m), serde_json::json!({"3": "three"}));
    }

    #[tokio::test]
    async fn reader_splits_and_joins_values_across_reads() {
        let mut bytes = encode(&map([
            ("ServiceMethod", Value::from("Ui.Say")),
            ("Seq", Value::from(1u64)),
        ]));
        bytes.extend(encode(&Value::from("x".repeat(40_000))));
        bytes.extend(encode(&Value::Nil));
        let (mut tx, rx) = tokio::io::duplex(7);
        let writer = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut tx, &bytes)
                .await
                .unwrap();
        });
        let mut reader = ValueReader::new(rx);
        let h = reader.next().await.unwrap().unwrap();
        assert_eq!(as_i64(field(&h, "Seq").unwrap()), Some(1));
        assert_eq!(
            as_string(&reader.next().await.unwrap().unwrap())
                .unwrap()
                .len(),
            40_000
        );
        assert_eq!(reader.next().await.unwrap(), Some(Value::Nil));
        writer.await.unwrap();
        assert_eq!(reader.next().await.unwrap(), None);
    }
}
