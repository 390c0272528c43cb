//! Secrets: constant-time comparison, fingerprints that stand in for them in the journal, and
//! files only the owner can read (the data dir, the admin token, the fixture, the database).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// 128 random bits as hex: admin tokens, in-flight claims, node ids.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// Whether `given` equals `expected`, in time that depends on neither (both are hashed first, so
/// not even their lengths leak).
pub fn secret_eq(given: &str, expected: &str) -> bool {
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(expected.as_bytes()));
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// What the journal shows instead of a secret: its first 4 characters (none for short ones),
/// `…`, and the first 8 hex digits of its SHA-256, e.g. `t-8f…1a2b3c4d`. Enough to tell two
/// tokens apart, not to use one.
///
/// Built in place, one allocation: the journal takes one for every call it records.
pub fn fingerprint(secret: &str) -> String {
    let mut digits = [0u8; 8];
    hex::encode_to_slice(&Sha256::digest(secret.as_bytes())[..4], &mut digits).expect("8 digits for 4 bytes");
    let shown = match secret.char_indices().nth(15) {
        Some(_) => secret.char_indices().nth(4).map_or(secret, |(end, _)| &secret[..end]),
        None => "",
    };
    let mut out = String::with_capacity(shown.len() + '…'.len_utf8() + digits.len());
    out.push_str(shown);
    out.push('…');
    out.push_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"));
    out
}

/// Whether a JSON field with this name carries a credential.
fn is_secret_field(name: &str) -> bool {
    matches!(name, "app_secret" | "app_ticket" | "access_token" | "refresh_token")
        || name.ends_with("_access_token")
        || name.ends_with("_refresh_token")
}

/// Replaces every credential field's string value in `v` (at any depth) by its fingerprint;
/// true if any was replaced.
pub fn redact_value(v: &mut Value) -> bool {
    match v {
        Value::Object(map) => {
            let mut changed = false;
            for (k, field) in map.iter_mut() {
                match field {
                    Value::String(s) if is_secret_field(k) => {
                        *s = fingerprint(s);
                        changed = true;
                    }
                    other => changed |= redact_value(other),
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |acc, item| redact_value(item) | acc),
        _ => false,
    }
}

/// A body of an endpoint whose bodies carry credentials, as it may be kept: JSON with each
/// credential fingerprinted, or (when it is not JSON, so its secrets cannot be found) a note
/// instead of the body.
pub fn redact_body(body: &[u8]) -> Vec<u8> {
    if body.is_empty() {
        return Vec::new();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            if !redact_value(&mut v) {
                return body.to_vec();
            }
            serde_json::to_vec(&v).expect("a JSON value serializes")
        }
        Err(_) => format!("[{} bytes that are not JSON, not kept: they may carry credentials]", body.len()).into_bytes(),
    }
}

/// Creates `dir` (and missing parents) readable by the owner only (0700). An existing
/// directory keeps its mode: it may be one the user made for more than larkstack.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // The umask may have taken bits away; say exactly what is meant.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `contents` to `path`, which is (or becomes) readable and writable by the owner only
/// (0600), whatever the umask or the mode of an existing file.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)
}

/// Makes an existing file owner-only (0600); a missing one is fine.
pub fn restrict_file(path: &Path) -> std::io::Result<()> {
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Creates `path` empty and owner-only if it does not exist (an existing one is made owner-only),
/// so that whatever opens it next (SQLite) finds a private file, and files derived from it (the
/// WAL and shared memory, which SQLite gives the database's mode) are private too.
pub fn touch_private(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
    restrict_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_eq_answers_correctly() {
        assert!(secret_eq("lsadm-0123", "lsadm-0123"));
        assert!(secret_eq("", ""));
        assert!(!secret_eq("lsadm-0123", "lsadm-0124"));
        assert!(!secret_eq("lsadm-012", "lsadm-0123"));
        assert!(!secret_eq("", "x"));
    }

    #[test]
    fn fingerprints_hide_secrets_but_tell_them_apart() {
        let a = fingerprint("larkstackDemoSecret0000000000001");
        assert!(a.starts_with("lark…") && a.chars().count() == 4 + 1 + 8, "{a}");
        assert_ne!(a, fingerprint("larkstackDemoSecret0000000000002"));
        assert_eq!(a, fingerprint("larkstackDemoSecret0000000000001"));
        assert!(fingerprint("short").starts_with('…'));
        // The digits are the digest's first four bytes; the shown part counts characters.
        assert_eq!(fingerprint("abc"), format!("…{}", &hex::encode(Sha256::digest(b"abc"))[..8]));
        assert!(fingerprint("飞书飞书飞书飞书飞书飞书飞书飞书").starts_with("飞书飞书…"));
        assert!(fingerprint("飞书飞书飞书飞书飞书飞书飞书").starts_with('…'));
    }

    #[test]
    fn redacts_credential_fields_at_any_depth() {
        let body = json!({"app_id": "cli_1", "app_secret": "s3cretS3cretS3cret", "app_ticket": "tkt",
            "nested": [{"user_access_token": "u-123"}], "tenant_key": "t1", "code": 0});
        let out: Value = serde_json::from_slice(&redact_body(body.to_string().as_bytes())).unwrap();
        assert_eq!(out["app_id"], "cli_1");
        assert_eq!(out["tenant_key"], "t1");
        assert_eq!(out["app_secret"], json!(fingerprint("s3cretS3cretS3cret")));
        assert_eq!(out["app_ticket"], json!(fingerprint("tkt")));
        assert_eq!(out["nested"][0]["user_access_token"], json!(fingerprint("u-123")));
        let plain = br#"{"app_id":"cli_1"}"#;
        assert_eq!(redact_body(plain), plain.to_vec(), "nothing to redact: kept as sent");
        let broken = br#"{"app_secret":"s3cret""#;
        assert!(!String::from_utf8(redact_body(broken)).unwrap().contains("s3cret"));
    }
}
