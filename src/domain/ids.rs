//! Feishu identifiers and how larkstack derives the ones a fixture does not pin.
//!
//! Derivation is a pure function of fixture keys, so every node and every restart agrees on
//! every ID without coordination.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// `oc_` + 32 hex: a group chat.
    ChatId
);
id_type!(
    /// `om_` + 32 hex: a message.
    MessageId
);
id_type!(
    /// A tenant, 16 hex.
    TenantKey
);
id_type!(
    /// `cli_` + 16 hex: an application (and its bot).
    AppId
);
id_type!(
    /// `ou_` + 32 hex: one user as seen by one app.
    OpenId
);
id_type!(
    /// `on_` + 32 hex: one user as seen by every app of one developer.
    UnionId
);
id_type!(
    /// A user's tenant-assigned ID, the same in every app of that tenant.
    UserId
);
id_type!(
    /// larkstack's own stable user handle: what member lists store. Never shown to clients.
    Uid
);
id_type!(
    /// An aPaaS (Kunlun) user ID: a numeric string.
    KunlunId
);

/// Hex of SHA-256 over the parts joined by `|`.
fn digest_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"|");
        }
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

pub fn derive_tenant_key(tenant: &str) -> TenantKey {
    TenantKey(digest_hex(&["tenant_key", tenant])[..16].to_string())
}

pub fn derive_app_id(app: &str) -> AppId {
    AppId(format!("cli_{}", &digest_hex(&["app_id", app])[..16]))
}

pub fn derive_app_secret(app: &str) -> String {
    // 32 alphanumerics, like Feishu's secrets.
    let hex = digest_hex(&["app_secret", app]);
    hex.chars()
        .zip(digest_hex(&["app_secret_case", app]).chars())
        .map(|(c, k)| if k > '7' { c.to_ascii_uppercase() } else { c })
        .take(32)
        .collect()
}

pub fn derive_uid(tenant: &str, user: &str) -> Uid {
    Uid(format!("u{}", &digest_hex(&["uid", tenant, user])[..20]))
}

pub fn derive_user_id(tenant: &str, user: &str) -> UserId {
    // Tenant-assigned user IDs look like `4d7a3c6g`: 8 lowercase alphanumerics.
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let bytes = Sha256::digest(format!("user_id|{tenant}|{user}").as_bytes());
    UserId(bytes[..8].iter().map(|b| ALPHABET[(*b as usize) % 36] as char).collect())
}

pub fn derive_open_id(app_id: &AppId, uid: &Uid) -> OpenId {
    OpenId(format!("ou_{}", &digest_hex(&["open_id", app_id.as_str(), uid.as_str()])[..32]))
}

pub fn derive_union_id(developer: &str, uid: &Uid) -> UnionId {
    UnionId(format!("on_{}", &digest_hex(&["union_id", developer, uid.as_str()])[..32]))
}

pub fn derive_kunlun_id(uid: &Uid) -> KunlunId {
    let bytes = Sha256::digest(format!("kunlun|{uid}").as_bytes());
    let n = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")) % 1_000_000_000_000;
    KunlunId(format!("178{n:013}"))
}

/// A 16-digit numeric ID for a fixture object of `kind` (aPaaS workflows and tasks).
pub fn derive_numeric_id(kind: &str, key: &str) -> String {
    let bytes = Sha256::digest(format!("{kind}|{key}").as_bytes());
    let n = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")) % 1_000_000_000_000;
    format!("179{n:013}")
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    rand::rng().fill(&mut bytes[..]);
    let mut s = hex::encode(bytes);
    s.truncate(n);
    s
}

/// `oc_` + 32 hex. The first 12 hex are the creation time in ms, so new ids sort after old ones:
/// the store's id index then grows at its end instead of dirtying random pages on every insert.
/// Clients see an opaque id of Feishu's shape either way.
pub fn new_chat_id(now_ms: i64) -> ChatId {
    ChatId(format!("oc_{:012x}{}", now_ms.max(0) as u64 & 0xffff_ffff_ffff, random_hex(20)))
}

/// `om_` + 32 hex, time-ordered like chat ids.
pub fn new_message_id(now_ms: i64) -> MessageId {
    MessageId(format!("om_{:012x}{}", now_ms.max(0) as u64 & 0xffff_ffff_ffff, random_hex(20)))
}

/// `omt_` + 32 hex: a thread, time-ordered like message ids.
pub fn new_thread_id(now_ms: i64) -> String {
    format!("omt_{:012x}{}", now_ms.max(0) as u64 & 0xffff_ffff_ffff, random_hex(20))
}

/// A reaction id: 56 characters of Feishu's base64url-like shape, time-ordered at its start.
pub fn new_reaction_id(now_ms: i64) -> String {
    format!("ZC{:012x}{}", now_ms.max(0) as u64 & 0xffff_ffff_ffff, random_hex(42))
}

/// Each byte's value as a hex digit, `0xff` for a byte that is none.
static HEX_DIGITS: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

impl Uid {
    /// The 10 bytes behind a derived uid (`u` + 20 hex), for compact storage.
    ///
    /// A table lookup per digit (either case, as `hex::decode_to_slice` takes): every create
    /// packs its members twice (the chat row and its created event), and the generic decoder cost
    /// ~14 k instructions per 50 members each time (issue 12).
    pub fn to_bytes(&self) -> Option<[u8; 10]> {
        // Fixed-size arrays: the loop indexes them without bounds checks.
        let hex: &[u8; 20] = self.0.strip_prefix('u')?.as_bytes().try_into().ok()?;
        let mut out = [0u8; 10];
        let mut bad = 0u8;
        for (i, byte) in out.iter_mut().enumerate() {
            let (high, low) = (HEX_DIGITS[hex[2 * i] as usize], HEX_DIGITS[hex[2 * i + 1] as usize]);
            bad |= high | low;
            *byte = (high << 4) | (low & 0x0f);
        }
        (bad & 0xf0 == 0).then_some(out)
    }

    /// The derived uid of 10 stored bytes. One allocation and a table encode: every chat read
    /// turns each member back into one, and `format!` with `hex::encode` cost ~1 k instructions
    /// per member (issue 12).
    pub fn from_bytes(bytes: &[u8]) -> Uid {
        let mut text = vec![b'u'; 1 + 2 * bytes.len()];
        hex::encode_to_slice(bytes, &mut text[1..]).expect("room for two digits per byte");
        Uid(String::from_utf8(text).expect("hex digits are ASCII"))
    }
}

/// A list of uids packed 10 bytes each (`Uid::to_bytes`, the form the chats table keeps members
/// in): what a created chat's event carries, so a 5000-member chat costs one 50 KB buffer, not
/// 5000 strings. It serialises as the list of uid strings, so JSON readers see a plain list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackedUids(Vec<u8>);

impl PackedUids {
    /// `None` when a uid is not a derived one (`u` + 20 hex), which no stored chat holds.
    pub fn pack(uids: &[Uid]) -> Option<Self> {
        let mut bytes = Vec::with_capacity(uids.len() * 10);
        for u in uids {
            bytes.extend_from_slice(&u.to_bytes()?);
        }
        Some(PackedUids(bytes))
    }

    /// `None` unless `bytes` is a whole number of 10-byte uids.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        bytes.len().is_multiple_of(10).then_some(PackedUids(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len() / 10
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Uid> + '_ {
        self.0.chunks_exact(10).map(Uid::from_bytes)
    }

    pub fn to_vec(&self) -> Vec<Uid> {
        self.iter().collect()
    }
}

impl Serialize for PackedUids {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for PackedUids {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let uids = Vec::<Uid>::deserialize(d)?;
        PackedUids::pack(&uids).ok_or_else(|| serde::de::Error::custom("a uid is not `u` + 20 hex"))
    }
}

/// A custom bot's id: `cli_` + 16 hex, the shape of the app id Feishu shows as a custom bot
/// message's sender (docs/parity.md, custom bots).
pub fn new_custom_bot_id() -> AppId {
    AppId(format!("cli_{}", random_hex(16)))
}

/// A custom bot's webhook token: a random UUID (version 4), the shape of Feishu's hook tokens.
pub fn new_hook_token() -> String {
    let h = random_hex(32);
    let variant = ['8', '9', 'a', 'b'][usize::from(h.as_bytes()[16]) % 4];
    format!("{}-{}-4{}-{variant}{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// `t-` + 40 characters, the shape of a current tenant_access_token.
pub fn new_access_token() -> String {
    format!("t-g{}", random_hex(39))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table decoder takes what `hex::decode_to_slice` takes (either case) and refuses the rest.
    #[test]
    fn uid_bytes_decode_either_case_and_refuse_non_hex() {
        let uid = derive_uid("acme", "alice");
        let bytes = uid.to_bytes().expect("a derived uid packs");
        assert_eq!(Uid::from_bytes(&bytes), uid);
        assert_eq!(Uid("u00ff10ABcdEF99887766".into()).to_bytes(), Some([0x00, 0xff, 0x10, 0xab, 0xcd, 0xef, 0x99, 0x88, 0x77, 0x66]));
        for bad in ["u00ff10abcdef9988776g", "u00ff10abcdef998877", "u00ff10abcdef998877665", "x00ff10abcdef99887766", "u00ff10abcdef99887 66", ""] {
            assert_eq!(Uid(bad.into()).to_bytes(), None, "{bad:?}");
            assert!(hex::decode(bad.strip_prefix('u').unwrap_or("zz")).ok().filter(|b| b.len() == 10 && bad.starts_with('u')).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn derived_ids_are_stable_and_shaped() {
        let uid = derive_uid("acme", "alice");
        assert_eq!(uid, derive_uid("acme", "alice"));
        assert_ne!(uid, derive_uid("globex", "alice"));
        let app = derive_app_id("bot");
        assert!(app.0.starts_with("cli_") && app.0.len() == 20);
        let open = derive_open_id(&app, &uid);
        assert!(open.0.starts_with("ou_") && open.0.len() == 35);
        assert_ne!(open, derive_open_id(&derive_app_id("other"), &uid), "open_id is per app");
        assert_eq!(derive_union_id("dev", &uid), derive_union_id("dev", &uid));
        assert_ne!(derive_union_id("dev", &uid), derive_union_id("dev2", &uid), "union_id is per developer");
        assert_eq!(derive_user_id("acme", "alice").0.len(), 8);
        assert_eq!(derive_tenant_key("acme").0.len(), 16);
        assert_eq!(derive_app_secret("bot").len(), 32);
        let k = derive_kunlun_id(&uid);
        assert!(k.0.len() == 16 && k.0.chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn random_ids_have_feishu_shapes() {
        let c = new_chat_id(1_800_000_000_000);
        assert!(c.0.starts_with("oc_") && c.0.len() == 35);
        assert!(new_chat_id(1_800_000_000_001) > c, "ids grow with time");
        let uid = derive_uid("t", "u");
        assert_eq!(Uid::from_bytes(&uid.to_bytes().unwrap()), uid);
        let packed = PackedUids::pack(&[uid.clone(), derive_uid("t", "v")]).unwrap();
        assert_eq!((packed.len(), packed.as_bytes().len()), (2, 20));
        assert_eq!(packed.to_vec(), [uid.clone(), derive_uid("t", "v")]);
        let json = serde_json::to_string(&packed).unwrap();
        assert_eq!(serde_json::from_str::<PackedUids>(&json).unwrap(), packed);
        assert!(PackedUids::pack(&[Uid("bot:x".into())]).is_none());
        assert!(PackedUids::from_bytes(vec![0; 11]).is_none());
        let t = new_access_token();
        assert!(t.starts_with("t-") && t.len() == 42);
    }
}
