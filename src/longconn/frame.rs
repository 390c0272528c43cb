//! The `pbbp2` frame of Feishu's long connection (spec events.md §2.3–§2.7): the protobuf
//! message every SDK decodes, the event frames larkstack sends (fragmented at 512 KiB), the
//! ping/pong control frames, and the client's ack, read leniently.
//!
//! The message is proto2 and its fields 1–4 are `required`: the Python and Node decoders throw
//! "missing required 'SeqID'" when one is absent, even when it is 0. prost encodes proto2
//! `required` scalars always, so a zero SeqID/LogID/method still goes on the wire.

use base64::Engine as _;
use prost::Message as _;
use serde_json::Value;

/// `pbbp2.Header`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub value: String,
}

/// `pbbp2.Frame`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    #[prost(uint64, required, tag = "1")]
    pub seq_id: u64,
    #[prost(uint64, required, tag = "2")]
    pub log_id: u64,
    #[prost(int32, required, tag = "3")]
    pub service: i32,
    #[prost(int32, required, tag = "4")]
    pub method: i32,
    #[prost(message, repeated, tag = "5")]
    pub headers: Vec<Header>,
    #[prost(string, optional, tag = "6")]
    pub payload_encoding: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub payload_type: Option<String>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub payload: Option<Vec<u8>>,
    #[prost(string, optional, tag = "9")]
    pub log_id_new: Option<String>,
}

/// `Frame.method`: 0 control (ping/pong), 1 data (events and their acks).
pub const METHOD_CONTROL: i32 = 0;
pub const METHOD_DATA: i32 = 1;

/// Event payloads are cut into fragments of at most this many bytes: every WebSocket message
/// stays well under the 1 MiB the Python SDK's `websockets` accepts (spec §2.6).
pub const FRAGMENT_BYTES: usize = 512 * 1024;

impl Frame {
    /// The value of header `key`, if present.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.key == key).map(|h| h.value.as_str())
    }

    pub fn encode(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    pub fn decode_bytes(bytes: &[u8]) -> Result<Frame, prost::DecodeError> {
        Frame::decode(bytes)
    }
}

fn header(key: &str, value: impl Into<String>) -> Header {
    Header { key: key.to_string(), value: value.into() }
}

/// The pong answering a client's ping: the ClientConfig JSON as its payload (all four keys,
/// always: a partial one breaks both SDKs' timers, spec §2.5).
pub fn pong(service: i32, client_config: &Value) -> Frame {
    Frame {
        seq_id: 0,
        log_id: 0,
        service,
        method: METHOD_CONTROL,
        headers: vec![header("type", "pong")],
        payload: Some(client_config.to_string().into_bytes()),
        ..Default::default()
    }
}

/// Ids and numbers one logical event message shares across its fragments.
pub struct EventMessage<'a> {
    pub message_id: &'a str,
    pub trace_id: &'a str,
    pub service: i32,
    pub timestamp_ms: i64,
    /// SeqID of the first fragment; the n-th fragment gets `first_seq_id + n`.
    pub first_seq_id: u64,
    pub log_id: u64,
}

/// The `type=event` data frames carrying `payload`: one, or `ceil(len / FRAGMENT_BYTES)` with
/// `sum`/`seq` headers and the same `message_id` (spec §2.4, §2.6). The five headers the
/// Python SDK requires are on every fragment.
pub fn event_frames(m: &EventMessage<'_>, payload: &[u8]) -> Vec<Frame> {
    let chunks: Vec<&[u8]> = if payload.is_empty() { vec![payload] } else { payload.chunks(FRAGMENT_BYTES).collect() };
    let sum = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(seq, chunk)| Frame {
            seq_id: m.first_seq_id + seq as u64,
            log_id: m.log_id,
            service: m.service,
            method: METHOD_DATA,
            headers: vec![
                header("type", "event"),
                header("message_id", m.message_id),
                header("sum", sum.to_string()),
                header("seq", seq.to_string()),
                header("trace_id", m.trace_id),
                header("timestamp", m.timestamp_ms.to_string()),
            ],
            payload: Some(chunk.to_vec()),
            ..Default::default()
        })
        .collect()
}

/// A client's ack, as read from its payload (spec §2.7).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ack {
    /// `code` of the JSON response: 200 handled, 500 the handler failed; `None` when the payload
    /// is not a response at all.
    pub code: Option<i64>,
    /// The handler's result, base64-decoded (a card callback's answer), as text.
    pub data: Option<String>,
    /// The handler's time as the client reported it (Node's is negative: start − end).
    pub biz_rt_ms: Option<i64>,
}

/// Reads an ack leniently: every SDK's style (`{"code": 200}` with spaces, Go's
/// `"headers":null,"data":null`, base64 `data`), `biz_rt` signed, a missing payload.
pub fn read_ack(frame: &Frame) -> Ack {
    let biz_rt_ms = frame.header("biz_rt").and_then(|v| v.trim().parse::<i64>().ok());
    let body: Option<Value> = frame.payload.as_deref().and_then(|p| serde_json::from_slice(p).ok());
    let code = body.as_ref().and_then(|b| {
        let c = b.get("code")?;
        c.as_i64().or_else(|| c.as_f64().map(|f| f as i64)).or_else(|| c.as_str().and_then(|s| s.trim().parse().ok()))
    });
    let data = body.as_ref().and_then(|b| b.get("data")).and_then(|d| match d {
        Value::String(s) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map(|raw| String::from_utf8_lossy(&raw).into_owned())
                .unwrap_or_else(|_| s.clone()),
        ),
        Value::Null => None,
        // Go marshals a []byte as base64 but a client may send the JSON itself.
        other => Some(other.to_string()),
    });
    Ack { code, data, biz_rt_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_fields_are_encoded_even_when_zero() {
        let bytes = pong(0, &serde_json::json!({})).encode();
        // Field 1 (SeqID, varint 0), 2 (LogID), 3 (service), 4 (method) all present.
        assert_eq!(&bytes[..8], &[0x08, 0, 0x10, 0, 0x18, 0, 0x20, 0]);
        assert_eq!(Frame::decode_bytes(&bytes).unwrap().header("type"), Some("pong"));
    }

    #[test]
    fn big_payloads_are_cut_into_fragments_sharing_the_message_id() {
        let payload = vec![b'x'; FRAGMENT_BYTES * 2 + 10];
        let m = EventMessage { message_id: "m1", trace_id: "t1", service: 7, timestamp_ms: 1, first_seq_id: 40, log_id: 9 };
        let frames = event_frames(&m, &payload);
        assert_eq!(frames.len(), 3);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.header("sum"), Some("3"));
            assert_eq!(f.header("seq"), Some(i.to_string().as_str()));
            assert_eq!(f.header("message_id"), Some("m1"));
            assert_eq!(f.seq_id, 40 + i as u64);
            assert!(f.encode().len() < FRAGMENT_BYTES + 1024);
        }
        let whole: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone().unwrap()).collect();
        assert_eq!(whole, payload);
        assert_eq!(event_frames(&m, b"{}").len(), 1);
    }

    #[test]
    fn acks_of_every_sdk_style_are_read() {
        let ack = |payload: &str, biz_rt: Option<&str>| {
            let mut f = Frame { method: METHOD_DATA, payload: Some(payload.as_bytes().to_vec()), ..Default::default() };
            if let Some(b) = biz_rt {
                f.headers.push(header("biz_rt", b));
            }
            read_ack(&f)
        };
        assert_eq!(ack(r#"{"code": 200}"#, Some("3")), Ack { code: Some(200), data: None, biz_rt_ms: Some(3) });
        assert_eq!(ack(r#"{"code":200}"#, Some("-1")).biz_rt_ms, Some(-1));
        assert_eq!(ack(r#"{"code":200,"headers":null,"data":null}"#, None).code, Some(200));
        assert_eq!(ack(r#"{"code":500}"#, None).code, Some(500));
        let b64 = base64::engine::general_purpose::STANDARD.encode(br#"{"toast":{"type":"info"}}"#);
        assert_eq!(ack(&format!(r#"{{"code":200,"data":"{b64}"}}"#), None).data.as_deref(), Some(r#"{"toast":{"type":"info"}}"#));
        assert_eq!(ack("not json", None).code, None);
    }
}
