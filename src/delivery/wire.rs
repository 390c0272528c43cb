//! What a webhook delivery puts on the wire (spec events.md §1): the schema-2.0 envelope, the
//! `{"encrypt": …}` body (AES-256-CBC, key = SHA-256 of the encrypt key, IV first), the three
//! `X-Lark-*` signature headers, the `url_verification` challenge and the retry schedule.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::domain::feishu_events::AppEvent;

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

/// Re-pushes after a failed attempt: 15 s, 5 min, 1 h, 6 h (then the delivery is given up).
pub const RETRY_AFTER_MS: [i64; 4] = [15_000, 300_000, 3_600_000, 21_600_000];

/// When the attempt after `failed` failed attempts is due, from the failure at `now_ms`;
/// `None` when there is none left.
pub fn next_retry(failed: u32, now_ms: i64) -> Option<i64> {
    RETRY_AFTER_MS.get((failed as usize).checked_sub(1)?).map(|d| now_ms + d)
}

/// A fresh `event_id`: 32 lowercase hex.
pub fn new_event_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill(&mut b);
    hex::encode(b)
}

/// The `event_id` of an outbox event's delivery to an app: 32 hex, the same every time the
/// event is fanned out (after a restart too), so receivers de-duplicate redeliveries by it. The
/// first 12 digits are the outbox seq, so ids sort in commit order and the delivery tables'
/// indexes on them grow at one end: with a hash alone, every delivery and every attempt wrote
/// one more random page of an index to the WAL.
pub fn event_id_for(app_id: &str, seq: i64, committed_ms: i64) -> String {
    let hash = Sha256::digest(format!("event_id|{app_id}|{seq}|{committed_ms}").as_bytes());
    format!("{:012x}{}", seq.max(0) as u64 & 0xffff_ffff_ffff, hex::encode(&hash[..10]))
}

/// The schema-2.0 envelope, every header field a string, `create_time` in ms.
pub fn envelope(e: &AppEvent, event_id: &str, create_time_ms: i64, token: &str) -> Value {
    json!({
        "schema": "2.0",
        "header": {
            "event_id": event_id,
            "event_type": e.event_type,
            "create_time": create_time_ms.to_string(),
            "token": token,
            "app_id": e.app_id.0,
            "tenant_key": e.tenant_key.0,
        },
        "event": e.event,
    })
}

/// The `url_verification` challenge body (before encryption).
pub fn challenge(challenge: &str, token: &str) -> Value {
    json!({"challenge": challenge, "token": token, "type": "url_verification"})
}

fn aes_key(encrypt_key: &str) -> [u8; 32] {
    Sha256::digest(encrypt_key.as_bytes()).into()
}

/// base64(IV ‖ AES-256-CBC(SHA-256(key), IV, PKCS#7(plain))).
pub fn encrypt(encrypt_key: &str, plain: &[u8]) -> String {
    let mut iv = [0u8; 16];
    rand::rng().fill(&mut iv);
    let ct = Enc::new(&aes_key(encrypt_key).into(), &iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plain);
    let mut blob = iv.to_vec();
    blob.extend_from_slice(&ct);
    base64::engine::general_purpose::STANDARD.encode(blob)
}

/// The inverse of `encrypt`; `None` for anything that is not its output.
pub fn decrypt(encrypt_key: &str, encrypted: &str) -> Option<Vec<u8>> {
    let blob = base64::engine::general_purpose::STANDARD.decode(encrypted).ok()?;
    if blob.len() < 32 || blob.len() % 16 != 0 {
        return None;
    }
    let (iv, ct) = blob.split_at(16);
    let iv: [u8; 16] = iv.try_into().ok()?;
    Dec::new(&aes_key(encrypt_key).into(), &iv.into()).decrypt_padded_vec_mut::<Pkcs7>(ct).ok()
}

/// lowercase_hex(SHA-256(timestamp ‖ nonce ‖ encrypt_key ‖ body)).
pub fn signature(timestamp: &str, nonce: &str, encrypt_key: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(timestamp.as_bytes());
    h.update(nonce.as_bytes());
    h.update(encrypt_key.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// A request ready to send: the body bytes and the signature headers.
#[derive(Debug, Clone)]
pub struct Signed {
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// Compact JSON of `payload`, encrypted when `encrypt_key` is not empty, signed at `now_secs`.
pub fn seal(payload: &Value, encrypt_key: &str, now_secs: i64) -> Signed {
    seal_json(serde_json::to_vec(payload).expect("JSON serialises"), encrypt_key, now_secs)
}

/// `seal` of JSON already written (a stored delivery's payload, sent as it was stored).
pub fn seal_json(plain: Vec<u8>, encrypt_key: &str, now_secs: i64) -> Signed {
    let body = if encrypt_key.is_empty() {
        plain
    } else {
        serde_json::to_vec(&json!({"encrypt": encrypt(encrypt_key, &plain)})).expect("JSON serialises")
    };
    let timestamp = now_secs.to_string();
    let nonce = {
        let mut b = [0u8; 8];
        rand::rng().fill(&mut b);
        hex::encode(b)
    };
    let sig = signature(&timestamp, &nonce, encrypt_key, &body);
    Signed {
        body,
        headers: vec![
            ("X-Lark-Request-Timestamp", timestamp),
            ("X-Lark-Request-Nonce", nonce),
            ("X-Lark-Signature", sig),
        ],
    }
}

/// The JSON a receiver got: `body` decrypted when it is `{"encrypt": …}`.
pub fn open(encrypt_key: &str, body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    match v.get("encrypt").and_then(Value::as_str) {
        Some(enc) => serde_json::from_slice(&decrypt(encrypt_key, enc)?).ok(),
        None => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_round_trips_and_iv_is_fresh() {
        let a = encrypt("key", b"{\"a\":1}");
        let b = encrypt("key", b"{\"a\":1}");
        assert_ne!(a, b);
        assert_eq!(decrypt("key", &a).unwrap(), b"{\"a\":1}");
        // 16 IV + one padded block.
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&a).unwrap().len(), 32);
        assert_ne!(decrypt("other", &a).as_deref(), Some(&b"{\"a\":1}"[..]));
    }

    #[test]
    fn an_iv_first_blob_built_by_hand_decrypts() {
        // The layout the SDKs read (spec events.md §1.3): IV ‖ ciphertext, key = SHA-256 of the
        // encrypt key. (The SDKs themselves decrypt deliveries in tests/sdk and tests/sdk-node.)
        let key = aes_key("test key");
        let iv = [7u8; 16];
        let ct = Enc::new(&key.into(), &iv.into()).encrypt_padded_vec_mut::<Pkcs7>(b"hello world");
        let mut blob = iv.to_vec();
        blob.extend(ct);
        let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
        assert_eq!(decrypt("test key", &b64).unwrap(), b"hello world");
    }

    #[test]
    fn sealed_body_is_signed_over_its_raw_bytes_and_compact() {
        let payload = json!({"schema": "2.0", "header": {"event_id": "x"}, "event": {"a": [1, 2]}});
        let plain = seal(&payload, "", 1_700_000_000);
        assert_eq!(plain.body, br#"{"event":{"a":[1,2]},"header":{"event_id":"x"},"schema":"2.0"}"#.to_vec());
        let s = seal(&payload, "k", 1_700_000_000);
        let h = |n: &str| s.headers.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        assert_eq!(h("X-Lark-Request-Timestamp"), "1700000000");
        assert_eq!(h("X-Lark-Signature"), signature(&h("X-Lark-Request-Timestamp"), &h("X-Lark-Request-Nonce"), "k", &s.body));
        assert_eq!(open("k", &s.body).unwrap(), payload);
        assert!(!String::from_utf8(s.body.clone()).unwrap().contains(' '));
    }

    #[test]
    fn event_ids_are_stable_per_event_and_app() {
        let id = event_id_for("cli_a", 7, 1_700_000_000_000);
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, event_id_for("cli_a", 7, 1_700_000_000_000));
        assert_ne!(id, event_id_for("cli_b", 7, 1_700_000_000_000));
        assert_ne!(id, event_id_for("cli_a", 8, 1_700_000_000_000));
        // After a reset seqs start over; the commit time tells the events apart.
        assert_ne!(id, event_id_for("cli_a", 7, 1_700_000_000_001));
        // Commit order is id order (indexes on event_id grow at one end).
        let ids: Vec<String> = [1, 2, 15, 16, 255, 4096, 1 << 40].iter().map(|s| event_id_for("cli_z", *s, 1)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }

    #[test]
    fn retries_follow_feishus_schedule() {
        assert_eq!(next_retry(0, 0), None);
        assert_eq!(next_retry(1, 1000), Some(16_000));
        assert_eq!(next_retry(2, 0), Some(300_000));
        assert_eq!(next_retry(3, 0), Some(3_600_000));
        assert_eq!(next_retry(4, 0), Some(21_600_000));
        assert_eq!(next_retry(5, 0), None);
    }
}
