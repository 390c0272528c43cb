//! Images and files (`/open-apis/im/v1/images`, `/files`, message resources): what an upload
//! may be, what a message may name, and who may read it back. Pure rules; the bytes live in the
//! store.
//!
//! Sources: Feishu's pages "上传图片", "上传文件", "下载图片", "下载文件", "获取消息中的资源文件"
//! (error tables quoted in `crate::error::catalogue::ResourceErr`).

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{AppId, TenantKey};
use crate::error::{FeishuError, MessageErr, ResourceErr};

/// "图片大小不得超过10M".
pub const MAX_IMAGE_BYTES: usize = 10 << 20;
/// "文件大小不得超过 30 MB".
pub const MAX_FILE_BYTES: usize = 30 << 20;
/// "仅支持下载 100 MB 以内的资源文件".
pub const MAX_DOWNLOAD_BYTES: usize = 100 << 20;
/// "GIF 图片分辨率不能超过 2000 x 2000".
pub const MAX_GIF_SIDE: usize = 2000;
/// "其他图片分辨率不能超过 12000 x 12000".
pub const MAX_IMAGE_SIDE: usize = 12_000;
/// "用于设置头像的图片分辨率不能超过 4096 x 4096".
pub const MAX_AVATAR_SIDE: usize = 4096;

/// `file_type` of an upload: what the file is, and so which message type may carry it.
pub const FILE_TYPES: &[&str] = &["opus", "mp4", "pdf", "doc", "xls", "ppt", "stream"];

/// Whether a blob is an image (`img_…` key) or a file (`file_…` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobKind {
    Image,
    File,
}

impl BlobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlobKind::Image => "image",
            BlobKind::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "image" => Some(BlobKind::Image),
            "file" => Some(BlobKind::File),
            _ => None,
        }
    }
}

/// An uploaded image or file, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    pub key: String,
    /// The app that uploaded it, in `tenant_key`.
    pub app_id: AppId,
    pub tenant_key: TenantKey,
    pub kind: BlobKind,
    /// `image_type` (message | avatar) of an image, `file_type` of a file.
    pub purpose: String,
    pub content_type: String,
    /// The file name sent (`file_name` of a file; empty for an image).
    pub file_name: String,
    pub size: i64,
    pub created_at_ms: i64,
}

/// An uploaded image or file with its bytes (shared, so an upload's buffer is stored and a
/// download's is sent without copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub meta: BlobMeta,
    pub bytes: bytes::Bytes,
}

fn invalid(field: &str, why: impl Into<String>) -> FeishuError {
    ResourceErr::InvalidParam.err().with_field(field, None, why)
}

/// A random key in Feishu's v3 shape: `img_v3_02ab_xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxxg`.
pub fn new_blob_key(kind: BlobKind) -> String {
    let mut rng = rand::rng();
    let hex = |n: usize, rng: &mut rand::rngs::ThreadRng| -> String { (0..n).map(|_| format!("{:x}", rng.random_range(0..16u8))).collect() };
    let prefix = match kind {
        BlobKind::Image => "img",
        BlobKind::File => "file",
    };
    let (a, b, c, d, e, f) = (hex(4, &mut rng), hex(8, &mut rng), hex(4, &mut rng), hex(4, &mut rng), hex(4, &mut rng), hex(12, &mut rng));
    format!("{prefix}_v3_{a}_{b}-{c}-{d}-{e}-{f}g")
}

/// The image formats Feishu takes, told by their magic bytes, with the Content-Type larkstack
/// answers them with.
fn image_content_type(t: imagesize::ImageType) -> Option<&'static str> {
    use imagesize::ImageType as T;
    Some(match t {
        T::Jpeg => "image/jpeg",
        T::Png => "image/png",
        T::Webp => "image/webp",
        T::Gif => "image/gif",
        T::Tiff => "image/tiff",
        T::Bmp => "image/bmp",
        T::Ico => "image/x-icon",
        T::Heif(_) => "image/heic",
        _ => return None,
    })
}

/// Checks an image upload (`image_type` and the bytes) in Feishu's order: parameter, size, format,
/// resolution. Its Content-Type, from the magic bytes (a file name says nothing).
pub fn check_image(image_type: Option<&str>, bytes: Option<&[u8]>) -> Result<&'static str, FeishuError> {
    let avatar = match image_type {
        Some("message") => false,
        Some("avatar") => true,
        Some(other) => return Err(invalid("image_type", format!("{other:?} is not message or avatar"))),
        None => return Err(invalid("image_type", "required")),
    };
    let bytes = bytes.ok_or_else(|| invalid("image", "required: the image as a multipart file"))?;
    if bytes.is_empty() {
        return Err(ResourceErr::EmptyFile.err());
    }
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(ResourceErr::TooLarge.with_msg(format!("The file size exceed the max value: images are at most {MAX_IMAGE_BYTES} bytes.")));
    }
    let unknown = || ResourceErr::UnknownImageFormat.err();
    let kind = imagesize::image_type(bytes).map_err(|_| unknown())?;
    let content_type = image_content_type(kind).ok_or_else(unknown)?;
    let size = imagesize::blob_size(bytes).map_err(|_| unknown())?;
    let side = if avatar {
        MAX_AVATAR_SIDE
    } else if matches!(kind, imagesize::ImageType::Gif) {
        MAX_GIF_SIDE
    } else {
        MAX_IMAGE_SIDE
    };
    if size.width > side || size.height > side {
        return Err(ResourceErr::ResolutionTooLarge.with_msg(format!(
            "Image resolution exceeds limit: {}x{} is over {side}x{side}.",
            size.width, size.height
        )));
    }
    Ok(content_type)
}

/// Checks a file upload: `file_type`, `file_name`, `duration` (milliseconds), then the bytes.
/// Its Content-Type, from `file_type`.
pub fn check_file(file_type: Option<&str>, file_name: Option<&str>, duration: Option<&str>, bytes: Option<&[u8]>) -> Result<&'static str, FeishuError> {
    let file_type = file_type.ok_or_else(|| invalid("file_type", "required"))?;
    let content_type = match file_type {
        "opus" => "audio/opus",
        "mp4" => "video/mp4",
        "pdf" => "application/pdf",
        "doc" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "ppt" => "application/vnd.ms-powerpoint",
        "stream" => "application/octet-stream",
        other => return Err(invalid("file_type", format!("{other:?} is not one of {}", FILE_TYPES.join(", ")))),
    };
    if file_name.is_none_or(str::is_empty) {
        return Err(invalid("file_name", "required: the file name with its extension"));
    }
    if let Some(d) = duration.filter(|d| !d.is_empty()) {
        if d.parse::<u64>().is_err() {
            return Err(invalid("duration", "milliseconds, a non-negative integer"));
        }
    }
    let bytes = bytes.ok_or_else(|| invalid("file", "required: the file as a multipart file"))?;
    if bytes.is_empty() {
        return Err(ResourceErr::EmptyFile.err());
    }
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ResourceErr::TooLarge.with_msg(format!("The file size exceed the max value: files are at most {MAX_FILE_BYTES} bytes.")));
    }
    Ok(content_type)
}

/// A resource a message names: a key under `image_key` (an image) or `file_key` (a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRef {
    pub key: String,
    pub kind: BlobKind,
}

/// Message types whose content may name uploaded resources.
const RESOURCE_TYPES: &[&str] = &["image", "file", "audio", "media", "post"];

/// Every `image_key` / `file_key` string in the content of a message that carries resources
/// (image, file, audio, media — with its cover image — and post's `img`/`media` tags).
pub fn resources_in(msg_type: &str, content: &str) -> Vec<ResourceRef> {
    fn walk(v: &Value, out: &mut Vec<ResourceRef>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let kind = match k.as_str() {
                        "image_key" => Some(BlobKind::Image),
                        "file_key" => Some(BlobKind::File),
                        _ => None,
                    };
                    match (kind, v) {
                        (Some(kind), Value::String(key)) if !key.is_empty() => out.push(ResourceRef { key: key.clone(), kind }),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if RESOURCE_TYPES.contains(&msg_type) {
        if let Ok(v) = serde_json::from_str::<Value>(content) {
            walk(&v, &mut out);
        }
    }
    out
}

/// Who sends a message that names a resource.
#[derive(Debug, Clone, Copy)]
pub enum Sender<'a> {
    /// A bot sends only what its app uploaded in the same tenant ("机器人只能发送自己上传的文件").
    App(&'a AppId, &'a TenantKey),
    /// A user (the control API's act-as-a-user send): anything uploaded in the user's tenant.
    User(&'a TenantKey),
}

/// The `file_type` a file named by a message of `msg_type` must have been uploaded with: audio is
/// opus, video is mp4, and a file message carries the other types ("文件上传时选择的类型与发送的消息类型不匹配").
fn file_type_fits(msg_type: &str, file_type: &str) -> bool {
    match msg_type {
        "audio" => file_type == "opus",
        "media" => file_type == "mp4",
        "file" => !matches!(file_type, "opus" | "mp4"),
        // A post's media tag is a video.
        "post" => file_type == "mp4",
        _ => false,
    }
}

/// Checks one resource a message of `msg_type` names against what was uploaded under its key:
/// unknown 230001, another app's or tenant's 230017, the wrong kind or purpose 230055.
pub fn check_sent_resource(msg_type: &str, r: &ResourceRef, meta: Option<&BlobMeta>, sender: Sender<'_>) -> Result<(), FeishuError> {
    let field = match r.kind {
        BlobKind::Image => "image_key",
        BlobKind::File => "file_key",
    };
    let meta = meta.ok_or_else(|| MessageErr::InvalidParam.err().with_field("content", None, format!("invalid {field}: {} was not uploaded", r.key)))?;
    let owned = match sender {
        Sender::App(app, tenant) => meta.app_id == *app && meta.tenant_key == *tenant,
        Sender::User(tenant) => meta.tenant_key == *tenant,
    };
    if !owned {
        return Err(MessageErr::NotResourceOwner.err());
    }
    let fits = match meta.kind {
        BlobKind::Image => r.kind == BlobKind::Image && meta.purpose == "message",
        BlobKind::File => r.kind == BlobKind::File && file_type_fits(msg_type, &meta.purpose),
    };
    if !fits {
        return Err(MessageErr::UploadTypeMismatch.with_msg(format!(
            "The type of file upload does not match the type of message being sent: {} was uploaded as {} {}, sent as {msg_type}.",
            r.key,
            meta.kind.as_str(),
            meta.purpose
        )));
    }
    Ok(())
}

/// A chat avatar (create or update chat) names an image the app uploaded in the tenant with
/// `image_type=avatar`, or Feishu's default avatar; anything else is 232001.
pub fn check_avatar(key: &str, meta: Option<&BlobMeta>, app: &AppId, tenant: &TenantKey) -> Result<(), FeishuError> {
    if key == super::chat::DEFAULT_AVATAR_KEY {
        return Ok(());
    }
    let fits = meta.is_some_and(|m| m.kind == BlobKind::Image && m.purpose == "avatar" && m.app_id == *app && m.tenant_key == *tenant);
    if fits {
        Ok(())
    } else {
        Err(crate::error::ChatErr::InvalidParam.err().with_field(
            "avatar",
            Some(key),
            "an image_key this app uploaded with image_type=avatar",
        ))
    }
}

/// Which resource a message-resource download asks for: the message must be of a type whose
/// resources can be fetched (234043: cards, stickers, merged forwards) and name `key` as `kind`
/// (234003).
pub fn resource_in_message(msg_type: &str, content: &str, key: &str, kind: BlobKind) -> Result<(), FeishuError> {
    if matches!(msg_type, "interactive" | "sticker" | "merge_forward") {
        return Err(ResourceErr::UnsupportedMessageType.err());
    }
    if resources_in(msg_type, content).iter().any(|r| r.key == key && r.kind == kind) {
        Ok(())
    } else {
        Err(ResourceErr::FileNotInMessage.err())
    }
}

/// `Content-Disposition` of a download: the file name as sent, ASCII-only in `filename` and
/// exactly (RFC 5987) in `filename*`.
pub fn content_disposition(file_name: &str) -> String {
    let ascii: String = file_name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded: String = file_name
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1×1 PNG.
    const PNG: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89,
    ];

    #[test]
    fn images_by_magic_bytes_and_rules() {
        assert_eq!(check_image(Some("message"), Some(PNG)).unwrap(), "image/png");
        assert_eq!(check_image(Some("sticker"), Some(PNG)).unwrap_err().code, 234001);
        assert_eq!(check_image(Some("message"), Some(b"")).unwrap_err().code, 234010);
        assert_eq!(check_image(Some("message"), Some(b"%PDF-1.4 not an image")).unwrap_err().code, 234011);
        let mut wide = PNG.to_vec();
        wide[16..20].copy_from_slice(&12001u32.to_be_bytes());
        assert_eq!(check_image(Some("message"), Some(&wide)).unwrap_err().code, 234039);
        wide[16..20].copy_from_slice(&4097u32.to_be_bytes());
        assert!(check_image(Some("message"), Some(&wide)).is_ok());
        assert_eq!(check_image(Some("avatar"), Some(&wide)).unwrap_err().code, 234039);
    }

    #[test]
    fn files_and_message_types() {
        assert_eq!(check_file(Some("pdf"), Some("a.pdf"), None, Some(b"x")).unwrap(), "application/pdf");
        assert_eq!(check_file(Some("exe"), Some("a.exe"), None, Some(b"x")).unwrap_err().code, 234001);
        assert_eq!(check_file(Some("mp4"), Some("a.mp4"), Some("-1"), Some(b"x")).unwrap_err().code, 234001);
        assert_eq!(check_file(Some("stream"), Some("a"), None, Some(b"")).unwrap_err().code, 234010);
        assert!(file_type_fits("audio", "opus") && file_type_fits("media", "mp4") && file_type_fits("file", "stream"));
        assert!(!file_type_fits("file", "mp4") && !file_type_fits("audio", "pdf"));
    }

    #[test]
    fn resources_named_by_messages() {
        let post = r#"{"zh_cn":{"title":"t","content":[[{"tag":"img","image_key":"img_a"}],[{"tag":"media","file_key":"file_b","image_key":"img_c"}]]}}"#;
        let keys: Vec<_> = resources_in("post", post).into_iter().map(|r| (r.key, r.kind)).collect();
        assert_eq!(keys, [("img_a".into(), BlobKind::Image), ("file_b".into(), BlobKind::File), ("img_c".into(), BlobKind::Image)]);
        assert!(resources_in("text", r#"{"text":"{\"image_key\":\"img_a\"}"}"#).is_empty());
        assert_eq!(resource_in_message("image", r#"{"image_key":"img_a"}"#, "img_a", BlobKind::File).unwrap_err().code, 234003);
        assert_eq!(resource_in_message("interactive", "{}", "img_a", BlobKind::Image).unwrap_err().code, 234043);
        assert!(resource_in_message("image", r#"{"image_key":"img_a"}"#, "img_a", BlobKind::Image).is_ok());
    }

    #[test]
    fn keys_and_names() {
        let k = new_blob_key(BlobKind::Image);
        assert!(k.starts_with("img_v3_") && k.ends_with('g') && k.len() == 7 + 5 + 36 + 1, "{k}");
        assert!(new_blob_key(BlobKind::File).starts_with("file_v3_"));
        assert_eq!(content_disposition("报告 1.pdf"), "attachment; filename=\"__ 1.pdf\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%201.pdf");
    }
}
