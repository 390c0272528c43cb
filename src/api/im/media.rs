//! Images and files: upload (`POST /open-apis/im/v1/images`, `/files`, multipart), download the
//! app's own (`GET …/images/:image_key`, `…/files/:file_key`), and the resources of a message
//! (`GET …/messages/:message_id/resources/:file_key`), whoever sent it. Downloads answer the bytes;
//! errors are still JSON envelopes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Uri};
use axum::response::Response;

use super::ImCall;
use crate::api::extract::{PathPair, PathParam, QueryParams, RawBody};
use crate::api::multipart::{self, Form};
use crate::domain::chat_ops::standing;
use crate::domain::directory::{App, Tenant};
use crate::domain::ids::{ChatId, MessageId};
use crate::domain::media::{self, check_file, check_image, content_disposition, new_blob_key, Blob, BlobKind, BlobMeta};
use crate::envelope::{binary, ok, ApiError, ApiResult};
use crate::error::{ChatErr, FeishuError, ResourceErr};
use crate::ratelimit::Family;
use crate::state::AppState;

/// The upload routes: their bodies may be as large as the largest file (see `extract::body_limit_for`).
pub const UPLOAD_PATHS: &[&str] = &["/open-apis/im/v1/images", "/open-apis/im/v1/files"];

const UPLOAD_SCOPES: &[&str] = &["im:resource", "im:resource:upload"];
/// "获取消息中的资源文件": any message read scope.
const MESSAGE_READ_SCOPES: &[&str] = &["im:message", "im:message:readonly", "im:message.history:readonly"];
/// Downloading the app's own image or file needs no scope ("权限要求: 无").
const NO_SCOPE: &[&str] = &[];

/// An upload or download call: the IM gateway checks, with the resource family's code for an app
/// without bot ability (234007 rather than chats' 232025).
async fn begin(state: &AppState, headers: &HeaderMap, family: Family, scopes: &'static [&'static str]) -> Result<ImCall, ApiError> {
    ImCall::begin(state, headers, family, scopes).await.map_err(|e| match e {
        ApiError::Feishu(f) if f.code == ChatErr::BotAbilityInactive.code() => ApiError::Feishu(ResourceErr::BotAbilityInactive.err()),
        other => other,
    })
}

fn invalid(field: &str, why: &str) -> FeishuError {
    ResourceErr::InvalidParam.err().with_field(field, None, why)
}

/// The multipart form of an upload; anything else is 234001.
fn form(headers: &HeaderMap, body: &Bytes) -> Result<Form, FeishuError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multipart::boundary(content_type).ok_or_else(|| invalid("body", "send multipart/form-data"))?;
    multipart::parse(body, &boundary).map_err(|why| invalid("body", &why))
}

/// Stores an upload as `app`'s in `tenant`; over the app's quota is 234042.
async fn store(state: &AppState, app: &App, meta: BlobMeta, bytes: Bytes) -> Result<(), ApiError> {
    let stored = state.store.put_blob(Blob { meta, bytes }, state.blob_quota_bytes).await?;
    if !stored {
        return Err(ApiError::Feishu(ResourceErr::StorageFull.with_msg(format!(
            "Hybrid deployment tenant storage error, such as full storage space: app {} has used its {} bytes of uploads.",
            app.app_id, state.blob_quota_bytes
        ))));
    }
    Ok(())
}

/// What an upload by `app` in `tenant` is stored as.
fn new_meta(state: &AppState, (app, tenant): (&App, &Tenant), kind: BlobKind, purpose: &str, content_type: &str, file_name: &str, size: usize) -> BlobMeta {
    BlobMeta {
        key: new_blob_key(kind),
        app_id: app.app_id.clone(),
        tenant_key: tenant.tenant_key.clone(),
        kind,
        purpose: purpose.to_string(),
        content_type: content_type.to_string(),
        file_name: file_name.to_string(),
        size: size as i64,
        created_at_ms: state.clock.now_ms(),
    }
}

/// An image upload as the document describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ImageUpload {
    /// `message` (to send) or `avatar` (chat avatars).
    image_type: String,
    /// JPEG, PNG, WEBP, GIF, TIFF, BMP, ICO or HEIC; at most 10 MB, not empty.
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
}

/// A file upload as the document describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct FileUpload {
    /// opus, mp4, pdf, doc, xls, ppt or stream.
    file_type: String,
    /// With its extension.
    file_name: String,
    /// Milliseconds, for audio and video.
    duration: Option<i64>,
    /// At most 30 MB, not empty.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Uploads an image; answers its `image_key`.
///
/// Side effects, in order:
/// 1. one unit of the app's resource budget;
/// 2. one durable write of the image (refused past the app's blob quota, 234042).
#[utoipa::path(
    post,
    path = "/open-apis/im/v1/images",
    operation_id = "upload_image",
    tag = "im",
    summary = "Upload an image",
    request_body(content = ImageUpload, content_type = "multipart/form-data"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn upload_image(State(state): State<Arc<AppState>>, headers: HeaderMap, RawBody(body): RawBody) -> ApiResult {
    let call = begin(&state, &headers, Family::UploadImage, UPLOAD_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let form = form(&headers, &body)?;
    let image = form.part("image").map(|p| p.data.clone());
    let image_type = form.text("image_type");
    let content_type = check_image(image_type, image.as_deref())?;
    let image = image.unwrap_or_default();
    let meta = new_meta(&state, (app, tenant), BlobKind::Image, image_type.unwrap_or_default(), content_type, "", image.len());
    let key = meta.key.clone();
    store(&state, app, meta, image).await?;
    Ok(ok(&serde_json::json!({ "image_key": key })))
}

/// Uploads a file; answers its `file_key`.
///
/// Side effects, in order:
/// 1. one unit of the app's resource budget;
/// 2. one durable write of the file (refused past the app's blob quota, 234042).
#[utoipa::path(
    post,
    path = "/open-apis/im/v1/files",
    operation_id = "upload_file",
    tag = "im",
    summary = "Upload a file",
    request_body(content = FileUpload, content_type = "multipart/form-data"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn upload_file(State(state): State<Arc<AppState>>, headers: HeaderMap, RawBody(body): RawBody) -> ApiResult {
    let call = begin(&state, &headers, Family::UploadFile, UPLOAD_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let form = form(&headers, &body)?;
    let file = form.part("file").map(|p| p.data.clone());
    let (file_type, file_name) = (form.text("file_type"), form.text("file_name"));
    let content_type = check_file(file_type, file_name, form.text("duration"), file.as_deref())?;
    let file = file.unwrap_or_default();
    let (file_type, file_name) = (file_type.unwrap_or_default(), file_name.unwrap_or_default());
    let meta = new_meta(&state, (app, tenant), BlobKind::File, file_type, content_type, file_name, file.len());
    let key = meta.key.clone();
    store(&state, app, meta, file).await?;
    Ok(ok(&serde_json::json!({ "file_key": key })))
}

/// The bytes of a stored blob whose metadata passed the caller's checks: 234005 when it is gone,
/// 234037 past Feishu's download limit.
async fn send_blob(state: &AppState, meta: &BlobMeta) -> Result<Response, ApiError> {
    if meta.size as u64 > media::MAX_DOWNLOAD_BYTES as u64 {
        return Err(ApiError::Feishu(ResourceErr::DownloadTooLarge.err()));
    }
    let blob = state.store.get_blob(&meta.key).await?.ok_or_else(|| ApiError::Feishu(ResourceErr::ResourceDeleted.err()))?;
    let disposition = (blob.meta.kind == BlobKind::File).then(|| content_disposition(&blob.meta.file_name));
    Ok(binary(&blob.meta.content_type, disposition.as_deref(), blob.bytes))
}

/// An own blob of `kind`: unknown (or of the other kind) 234005, another app's or tenant's 234008.
async fn own_blob(state: &AppState, app: &App, tenant: &Tenant, key: &str, kind: BlobKind) -> Result<BlobMeta, ApiError> {
    let meta = state.store.blob_meta(key).await?.filter(|m| m.kind == kind);
    let meta = meta.ok_or_else(|| ApiError::Feishu(ResourceErr::ResourceDeleted.err()))?;
    if meta.app_id != app.app_id || meta.tenant_key != tenant.tenant_key {
        return Err(ApiError::Feishu(ResourceErr::NotResourceSender.err()));
    }
    Ok(meta)
}

/// Downloads an image this app uploaded with `image_type=message` (avatars cannot be downloaded).
#[utoipa::path(
    get,
    path = "/open-apis/im/v1/images/{image_key}",
    operation_id = "download_image",
    tag = "im",
    summary = "Download an image the app uploaded",
    params(("image_key" = String, Path, description = "From the image upload")),
    security(("tenant_access_token" = [])),
    responses(
        (status = 200, description = "The image's bytes, with its Content-Type", content_type = "application/octet-stream", body = Vec<u8>),
        crate::openapi::ErrorResponse,
    ),
)]
pub async fn download_image(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(key): PathParam) -> Result<Response, ApiError> {
    let call = begin(&state, &headers, Family::DownloadImage, NO_SCOPE).await?;
    let (app, tenant) = call.caller()?;
    let meta = own_blob(&state, app, tenant, &key, BlobKind::Image).await?;
    if meta.purpose != "message" {
        return Err(ApiError::Feishu(invalid("image_key", "avatar images cannot be downloaded, only image_type=message")));
    }
    send_blob(&state, &meta).await
}

/// Downloads a file this app uploaded, named in `Content-Disposition`.
#[utoipa::path(
    get,
    path = "/open-apis/im/v1/files/{file_key}",
    operation_id = "download_file",
    tag = "im",
    summary = "Download a file the app uploaded",
    params(("file_key" = String, Path, description = "From the file upload")),
    security(("tenant_access_token" = [])),
    responses(
        (status = 200, description = "The file's bytes, with its name in Content-Disposition", content_type = "application/octet-stream", body = Vec<u8>),
        crate::openapi::ErrorResponse,
    ),
)]
pub async fn download_file(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(key): PathParam) -> Result<Response, ApiError> {
    let call = begin(&state, &headers, Family::DownloadFile, NO_SCOPE).await?;
    let (app, tenant) = call.caller()?;
    let meta = own_blob(&state, app, tenant, &key, BlobKind::File).await?;
    send_blob(&state, &meta).await
}

/// Downloads a resource of a message in a chat the bot is in, whoever sent the message: how a
/// bot reads the image or file a user sent. Checks, in order: `type` (234001), the message
/// (234001), the bot in its chat as this tenant's (234004), the key among the message's
/// resources (234043 for cards and stickers, else 234003), the bytes (234005, 234037).
#[utoipa::path(
    get,
    path = "/open-apis/im/v1/messages/{message_id}/resources/{file_key}",
    operation_id = "get_message_resource",
    tag = "im",
    summary = "Download a resource of a message",
    params(
        ("message_id" = String, Path, description = "The message (om_…)"),
        ("file_key" = String, Path, description = "An image_key or file_key in the message's content"),
        ("type" = inline(super::ResourceType), Query, description = "image or file"),
    ),
    security(("tenant_access_token" = [])),
    responses(
        (status = 200, description = "The resource's bytes, with its Content-Type", content_type = "application/octet-stream", body = Vec<u8>),
        crate::openapi::ErrorResponse,
    ),
)]
pub async fn message_resource(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    PathPair(message_id, key): PathPair,
) -> Result<Response, ApiError> {
    let call = begin(&state, &headers, Family::MessageResource, MESSAGE_READ_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let kind = match QueryParams::parse(uri.query()).enum_of::<super::ResourceType>("type") {
        Ok(Some(super::ResourceType::Image)) => BlobKind::Image,
        Ok(Some(super::ResourceType::File)) => BlobKind::File,
        _ => return Err(ApiError::Feishu(invalid("type", "image or file is required"))),
    };
    let message = state.store.get_message(&MessageId(message_id)).await?;
    let message = message.ok_or_else(|| ApiError::Feishu(invalid("message_id", "no such message")))?;
    let chat = state.store.get_chat(&ChatId(message.chat_id.0.clone())).await?;
    let in_chat = chat.is_some_and(|c| standing(&call.dir, app, tenant, &c).is_member());
    if !in_chat {
        return Err(ApiError::Feishu(ResourceErr::AppNotInChat.err()));
    }
    media::resource_in_message(&message.msg_type, &message.content, &key, kind)?;
    let meta = state.store.blob_meta(&key).await?.filter(|m| m.kind == kind);
    let meta = meta.ok_or_else(|| ApiError::Feishu(ResourceErr::ResourceDeleted.err()))?;
    send_blob(&state, &meta).await
}

/// Checks the resources a message to send names (image, file, audio, media, post): each was
/// uploaded, by the sender (`media::Sender`), as the kind the message type carries. One metadata
/// read per key; no bytes are read.
pub async fn check_message_resources(state: &AppState, msg_type: &str, content: &str, sender: media::Sender<'_>) -> Result<(), ApiError> {
    for r in media::resources_in(msg_type, content) {
        let meta = state.store.blob_meta(&r.key).await?;
        media::check_sent_resource(msg_type, &r, meta.as_ref(), sender)?;
    }
    Ok(())
}

/// Checks a chat avatar of create or update chat (232001 unless uploaded by the app with
/// `image_type=avatar`, or Feishu's default); no avatar, or an empty one, is no change.
pub async fn check_chat_avatar(state: &AppState, app: &App, tenant: &Tenant, avatar: Option<&str>) -> Result<(), ApiError> {
    let Some(key) = avatar.filter(|a| !a.is_empty()) else { return Ok(()) };
    let meta = state.store.blob_meta(key).await?;
    Ok(media::check_avatar(key, meta.as_ref(), &app.app_id, &tenant.tenant_key)?)
}
