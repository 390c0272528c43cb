//! Images and files (issue 14 part C): uploads with Feishu's size, type and resolution rules,
//! downloads of the app's own, message resources (the bot must be in the chat; any sender), the
//! keys messages and chat avatars name, the per-app quota, and blobs in export/import.

use axum::http::{Method, StatusCode};
use larkstack::domain::directory::{Directory, DEMO_FIXTURE};
use larkstack::state::StateConfig;
use serde_json::{json, Value};

use crate::support::*;

/// The demo directory with helper-bot and the store app able to upload and read messages.
fn media_fixture() -> Directory {
    let helper = "key = \"helper-bot\"\nname = \"Helper Bot\"\ndeveloper = \"acme-dev\"\ntenant = \"acme\"\nkind = \"self_built\"\nbot = true\n# Reads contacts, but no field scope: ids only (docs/parity.md, contacts).\nscopes = [\"im:chat\", \"contact:contact.base:readonly\"]";
    assert_eq!(DEMO_FIXTURE.matches(helper).count(), 1, "the demo helper-bot");
    let store = r#"scopes = ["im:chat", "contact:user.employee_id:readonly"]"#;
    assert_eq!(DEMO_FIXTURE.matches(store).count(), 1, "the demo store app's scopes line");
    let text = DEMO_FIXTURE
        .replace(helper, &helper.replace(r#"scopes = ["im:chat", "contact:contact.base:readonly"]"#, r#"scopes = ["im:chat", "contact:contact.base:readonly", "im:message", "im:resource"]"#))
        .replace(store, r#"scopes = ["im:chat", "im:message", "im:resource", "contact:user.employee_id:readonly"]"#);
    Directory::from_toml(&text).unwrap()
}

/// A PNG header of `width`×`height`, then `tail` (the rules read headers only).
pub(crate) fn png(width: u32, height: u32, tail: &[u8]) -> Vec<u8> {
    let mut b = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R'];
    b.extend_from_slice(&width.to_be_bytes());
    b.extend_from_slice(&height.to_be_bytes());
    b.extend_from_slice(&[8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89]);
    b.extend_from_slice(tail);
    b
}

fn gif(width: u16, height: u16) -> Vec<u8> {
    let mut b = b"GIF89a".to_vec();
    b.extend_from_slice(&width.to_le_bytes());
    b.extend_from_slice(&height.to_le_bytes());
    b.extend_from_slice(&[0, 0, 0, 0x3B]);
    b
}

/// Bytes that are no pattern a compressor or a bug could fake.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(crate) const BOUNDARY: &str = "----larkstackMediaTest7MA4YWxkTrZu0gW";

/// A multipart body: (field, file name for file parts, bytes).
pub(crate) fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file_name, data) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match file_name {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                    .as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(app: &TestApp, token: &str, path: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Reply {
    let auth = format!("Bearer {token}");
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let headers = [("authorization", auth.as_str()), ("content-type", content_type.as_str())];
    app.request(Method::POST, path, &headers, Some(&multipart(parts))).await
}

async fn upload_image(app: &TestApp, token: &str, image_type: &str, bytes: &[u8]) -> Reply {
    upload(app, token, "/open-apis/im/v1/images", &[("image_type", None, image_type.as_bytes()), ("image", Some("x.png"), bytes)]).await
}

async fn upload_file(app: &TestApp, token: &str, file_type: &str, name: &str, bytes: &[u8]) -> Reply {
    let parts = [("file_type", None, file_type.as_bytes()), ("file_name", None, name.as_bytes()), ("file", Some(name), bytes)];
    upload(app, token, "/open-apis/im/v1/files", &parts).await
}

async fn image_key(app: &TestApp, token: &str, image_type: &str, bytes: &[u8]) -> String {
    let r = upload_image(app, token, image_type, bytes).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    r.body["data"]["image_key"].as_str().unwrap().to_string()
}

async fn file_key(app: &TestApp, token: &str, file_type: &str, name: &str, bytes: &[u8]) -> String {
    let r = upload_file(app, token, file_type, name, bytes).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    r.body["data"]["file_key"].as_str().unwrap().to_string()
}

async fn send(app: &TestApp, token: &str, chat: &str, msg_type: &str, content: Value) -> Reply {
    let body = json!({"receive_id": chat, "msg_type": msg_type, "content": content.to_string()});
    app.call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=chat_id", token, Some(body)).await
}

async fn sent(app: &TestApp, token: &str, chat: &str, msg_type: &str, content: Value) -> String {
    let r = send(app, token, chat, msg_type, content).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    r.body["data"]["message_id"].as_str().unwrap().to_string()
}

/// A GET whose success is bytes: (status, headers, bytes), or the error envelope's code.
async fn download(app: &TestApp, token: &str, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let auth = format!("Bearer {token}");
    app.raw(Method::GET, uri, &[("authorization", auth.as_str())], None).await
}

async fn download_code(app: &TestApp, token: &str, uri: &str) -> i64 {
    let (status, headers, bytes) = download(app, token, uri).await;
    assert_ne!(status, StatusCode::OK, "{uri} answered bytes");
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"), "{uri}: errors are JSON");
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(body["error"]["log_id"].is_string(), "{body}");
    body["code"].as_i64().unwrap()
}

fn resource(message: &str, key: &str, kind: &str) -> String {
    format!("/open-apis/im/v1/messages/{message}/resources/{key}?type={kind}")
}

#[tokio::test]
async fn images_and_files_round_trip_byte_identical() {
    let app = TestApp::with(media_fixture(), StateConfig::default()).await;
    let token = app.token("demo-bot").await;
    let chat = app.new_chat(&token, json!({"name": "media"})).await;

    let image = png(640, 480, &noise(300_000, 7));
    let key = image_key(&app, &token, "message", &image).await;
    assert!(key.starts_with("img_v3_"), "{key}");
    let (status, headers, bytes) = download(&app, &token, &format!("/open-apis/im/v1/images/{key}")).await;
    assert_eq!((status, &headers["content-type"]), (StatusCode::OK, &"image/png".parse::<axum::http::HeaderValue>().unwrap()));
    assert!(bytes == image, "the downloaded image is the uploaded one");
    let message = sent(&app, &token, &chat, "image", json!({"image_key": key})).await;
    let (status, _, bytes) = download(&app, &token, &resource(&message, &key, "image")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes == image, "the message resource is the uploaded image");

    let file = noise(1_500_000, 11);
    let name = "季度报告 Q3.pdf";
    let key = file_key(&app, &token, "pdf", name, &file).await;
    assert!(key.starts_with("file_v3_"), "{key}");
    let (status, headers, bytes) = download(&app, &token, &format!("/open-apis/im/v1/files/{key}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/pdf");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.contains("filename*=UTF-8''%E5%AD%A3%E5%BA%A6%E6%8A%A5%E5%91%8A%20Q3.pdf"), "{disposition}");
    assert!(bytes == file, "the downloaded file is the uploaded one");
    let message = sent(&app, &token, &chat, "file", json!({"file_key": key})).await;
    let (status, _, bytes) = download(&app, &token, &resource(&message, &key, "file")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes == file, "the message resource is the uploaded file");

    // Video and audio go as media and audio messages; a post's images are its resources too.
    let video = file_key(&app, &token, "mp4", "clip.mp4", &noise(1000, 3)).await;
    let cover = image_key(&app, &token, "message", &png(10, 10, b"cover")).await;
    let media = sent(&app, &token, &chat, "media", json!({"file_key": video, "image_key": cover})).await;
    let (status, _, bytes) = download(&app, &token, &resource(&media, &cover, "image")).await;
    assert_eq!((status, bytes), (StatusCode::OK, png(10, 10, b"cover")));
    let voice = file_key(&app, &token, "opus", "voice.opus", &noise(500, 5)).await;
    assert_eq!(send(&app, &token, &chat, "audio", json!({"file_key": voice})).await.code(), 0);
    let post = json!({"zh_cn": {"title": "t", "content": [[{"tag": "img", "image_key": cover}]]}});
    let post = sent(&app, &token, &chat, "post", post).await;
    assert_eq!(download(&app, &token, &resource(&post, &cover, "image")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn uploads_are_refused_with_feishu_codes() {
    let app = TestApp::with(media_fixture(), StateConfig::default()).await;
    let token = app.token("demo-bot").await;
    let ok_png = png(100, 100, b"");
    // Parameters.
    assert_eq!(upload_image(&app, &token, "sticker", &ok_png).await.code(), 234001);
    let r = upload(&app, &token, "/open-apis/im/v1/images", &[("image", Some("x.png"), &ok_png)]).await;
    assert_eq!((r.code(), r.status), (234001, StatusCode::BAD_REQUEST), "{}", r.body);
    assert_eq!(r.body["error"]["field_violations"][0]["field"], "image_type");
    let r = upload(&app, &token, "/open-apis/im/v1/images", &[("image_type", None, b"message")]).await;
    assert_eq!(r.code(), 234001, "no image: {}", r.body);
    let r = app.call(Method::POST, "/open-apis/im/v1/images", &token, Some(json!({"image_type": "message"}))).await;
    assert_eq!(r.code(), 234001, "not multipart: {}", r.body);
    // Size, format and resolution, told by the bytes whatever the file name says.
    assert_eq!(upload_image(&app, &token, "message", b"").await.code(), 234010);
    let big = png(100, 100, &vec![0; 10 * 1024 * 1024]);
    assert_eq!(upload_image(&app, &token, "message", &big).await.code(), 234006);
    assert_eq!(upload_image(&app, &token, "message", &png(100, 100, &vec![0; 10 * 1024 * 1024 - 33])).await.code(), 0, "10 MB exactly");
    assert_eq!(upload_image(&app, &token, "message", b"%PDF-1.7 named x.png").await.code(), 234011);
    assert_eq!(upload_image(&app, &token, "message", &gif(2001, 10)).await.code(), 234039);
    assert_eq!(upload_image(&app, &token, "message", &gif(2000, 2000)).await.code(), 0);
    assert_eq!(upload_image(&app, &token, "message", &png(12_001, 10, b"")).await.code(), 234039);
    assert_eq!(upload_image(&app, &token, "message", &png(12_000, 12_000, b"")).await.code(), 0);
    assert_eq!(upload_image(&app, &token, "avatar", &png(4097, 10, b"")).await.code(), 234039);
    assert_eq!(upload_image(&app, &token, "avatar", &png(4096, 4096, b"")).await.code(), 0);
    // Files.
    assert_eq!(upload_file(&app, &token, "exe", "a.exe", b"x").await.code(), 234001);
    let r = upload(&app, &token, "/open-apis/im/v1/files", &[("file_type", None, b"pdf"), ("file", Some("a.pdf"), b"x")]).await;
    assert_eq!(r.code(), 234001, "no file_name: {}", r.body);
    let parts = [("file_type", None, &b"mp4"[..]), ("file_name", None, b"a.mp4"), ("duration", None, b"soon"), ("file", Some("a.mp4"), b"x")];
    assert_eq!(upload(&app, &token, "/open-apis/im/v1/files", &parts).await.code(), 234001);
    assert_eq!(upload_file(&app, &token, "stream", "empty.txt", b"").await.code(), 234010);
    assert_eq!(upload_file(&app, &token, "stream", "big.bin", &vec![1; 30 * 1024 * 1024 + 1]).await.code(), 234006);
    assert_eq!(upload_file(&app, &token, "stream", "max.bin", &vec![1; 30 * 1024 * 1024]).await.code(), 0, "30 MB exactly");
    // Past the upload body limit the transport refuses, still with an envelope.
    let r = upload_file(&app, &token, "stream", "huge.bin", &vec![1; 32 * 1024 * 1024]).await;
    assert_eq!((r.status, r.code()), (StatusCode::PAYLOAD_TOO_LARGE, 413), "{}", r.body);
    // The gateway checks come first: scope, bot ability.
    let no_scope = app.token("narrow-app").await;
    assert_eq!(upload_image(&app, &no_scope, "message", &ok_png).await.code(), 99991672);
    let no_bot = app.token("no-bot-app").await;
    let r = upload_image(&app, &no_bot, "message", &ok_png).await;
    assert!([234007, 99991672].contains(&r.code()), "{}", r.body);
}

#[tokio::test]
async fn downloads_are_the_uploading_apps_own() {
    let app = TestApp::with(media_fixture(), StateConfig::default()).await;
    let demo = app.token("demo-bot").await;
    let helper = app.token("helper-bot").await;
    let image = image_key(&app, &demo, "message", &png(8, 8, b"demo")).await;
    let file = file_key(&app, &demo, "stream", "a.txt", b"demo file").await;
    let avatar = image_key(&app, &demo, "avatar", &png(8, 8, b"avatar")).await;
    assert_eq!(download_code(&app, &helper, &format!("/open-apis/im/v1/images/{image}")).await, 234008);
    assert_eq!(download_code(&app, &helper, &format!("/open-apis/im/v1/files/{file}")).await, 234008);
    assert_eq!(download_code(&app, &demo, "/open-apis/im/v1/images/img_v3_0000_unknown").await, 234005);
    assert_eq!(download_code(&app, &demo, &format!("/open-apis/im/v1/images/{file}")).await, 234005, "a file key is no image");
    assert_eq!(download_code(&app, &demo, &format!("/open-apis/im/v1/images/{avatar}")).await, 234001, "avatars are not downloadable");
    // The same store app in another tenant: another tenant's upload is not its own.
    let (acme, globex) = (store_token(&app, "acme").await, store_token(&app, "globex").await);
    let acme_image = image_key(&app, &acme, "message", &png(8, 8, b"acme")).await;
    assert_eq!(download_code(&app, &globex, &format!("/open-apis/im/v1/images/{acme_image}")).await, 234008);
    assert_eq!(download(&app, &acme, &format!("/open-apis/im/v1/images/{acme_image}")).await.0, StatusCode::OK);
    let r = app.request(Method::GET, &format!("/open-apis/im/v1/images/{image}"), &[], None).await;
    assert_eq!(r.code(), 99991661, "a token is needed: {}", r.body);
}

async fn store_token(app: &TestApp, key: &str) -> String {
    let tenant = app.dir.tenants().iter().find(|t| t.key == key).unwrap().tenant_key.0.clone();
    let r = app
        .post_json(
            "/open-apis/auth/v3/app_access_token/internal",
            None,
            &json!({"app_id": app.app_id("store-app"), "app_secret": app.secret("store-app")}),
        )
        .await;
    let r = app
        .post_json("/open-apis/auth/v3/tenant_access_token", None, &json!({"app_access_token": r.body["app_access_token"], "tenant_key": tenant}))
        .await;
    r.body["tenant_access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn message_resources_need_the_bot_in_the_chat_whoever_sent_them() {
    let app = TestApp::with(media_fixture(), StateConfig::default()).await;
    let demo = app.token("demo-bot").await;
    let helper = app.token("helper-bot").await;
    let chat = app.new_chat(&demo, json!({"name": "resources", "user_id_list": [app.open_id("demo-bot", "alice")]})).await;
    let image = png(16, 16, &noise(5000, 1));
    let key = image_key(&app, &demo, "message", &image).await;
    let message = sent(&app, &demo, &chat, "image", json!({"image_key": key})).await;

    // helper-bot is not in the chat yet.
    assert_eq!(download_code(&app, &helper, &resource(&message, &key, "image")).await, 234004);
    let r = app
        .call(Method::POST, &format!("/open-apis/im/v1/chats/{chat}/members?member_id_type=app_id"), &demo, Some(json!({"id_list": [app.app_id("helper-bot")]})))
        .await;
    assert_eq!(r.code(), 0, "{}", r.body);
    // In the chat, it reads another app's message resource (it could not download the image by key).
    let (status, headers, bytes) = download(&app, &helper, &resource(&message, &key, "image")).await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (StatusCode::OK, "image/png"));
    assert!(bytes == image);
    assert_eq!(download_code(&app, &helper, &format!("/open-apis/im/v1/images/{key}")).await, 234008);

    // A user sends an image (uploaded in the tenant); the bot reads it from the message.
    let auth = format!("Bearer {}", app.state.admin_token);
    let act = json!({"user": "alice", "msg_type": "image", "content": json!({"image_key": key}).to_string()});
    let r = app.post_json(&format!("/_larkstack/chats/{chat}/messages"), Some(&app.state.admin_token), &act).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let from_alice = r.body["data"]["message_id"].as_str().unwrap().to_string();
    assert_eq!(download(&app, &helper, &resource(&from_alice, &key, "image")).await.2, image);
    let act = json!({"user": "alice", "msg_type": "image", "content": json!({"image_key": "img_v3_never_uploaded"}).to_string()});
    let (status, _, _) = app.raw(Method::POST, &format!("/_larkstack/chats/{chat}/messages"), &[("authorization", &auth), ("content-type", "application/json")], Some(act.to_string().as_bytes())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a user sends only uploaded images");

    // The key must be the message's, as the type asked.
    let other = image_key(&app, &demo, "message", &png(4, 4, b"other")).await;
    assert_eq!(download_code(&app, &demo, &resource(&message, &other, "image")).await, 234003);
    assert_eq!(download_code(&app, &demo, &resource(&message, &key, "file")).await, 234003);
    let text = sent(&app, &demo, &chat, "text", json!({"text": key})).await;
    assert_eq!(download_code(&app, &demo, &resource(&text, &key, "image")).await, 234003);
    let card = sent(&app, &demo, &chat, "interactive", json!({"elements": [{"tag": "img", "img_key": key}]})).await;
    assert_eq!(download_code(&app, &demo, &resource(&card, &key, "image")).await, 234043);
    assert_eq!(download_code(&app, &demo, &resource("om_00000000000000000000000000000000", &key, "image")).await, 234001);
    assert_eq!(download_code(&app, &demo, &format!("/open-apis/im/v1/messages/{message}/resources/{key}")).await, 234001, "type is required");
    assert_eq!(download_code(&app, &demo, &resource(&message, &key, "video")).await, 234001);
    // Another tenant's token of a store app in the chat's tenant is not in the chat.
    let globex = store_token(&app, "globex").await;
    assert_eq!(download_code(&app, &globex, &resource(&message, &key, "image")).await, 234004);
}

/// A reply is a message sent and an edited post a new content: their keys are checked as send
/// checks them (a reply naming a made-up key was stored, and its resource was then "deleted").
#[tokio::test]
async fn replies_and_edited_posts_must_name_uploaded_keys() {
    let app = TestApp::with(media_fixture(), StateConfig::default()).await;
    let demo = app.token("demo-bot").await;
    let helper = app.token("helper-bot").await;
    let chat = app.new_chat(&demo, json!({"name": "reply keys"})).await;
    let question = sent(&app, &demo, &chat, "text", json!({"text": "q"})).await;
    let reply_path = format!("/open-apis/im/v1/messages/{question}/reply");
    let reply = |msg_type: &str, content: Value| {
        let body = json!({"msg_type": msg_type, "content": content.to_string(), "reply_in_thread": true});
        app.call(Method::POST, &reply_path, &demo, Some(body))
    };
    let r = reply("image", json!({"image_key": "img_v2_made_up"})).await;
    assert_eq!((r.code(), r.body["error"]["field_violations"][0]["field"].as_str()), (230001, Some("content")), "{}", r.body);
    let helpers = image_key(&app, &helper, "message", &png(4, 4, b"helper")).await;
    assert_eq!(reply("image", json!({"image_key": helpers})).await.code(), 230017, "another app's upload");
    let avatar = image_key(&app, &demo, "avatar", &png(64, 64, b"avatar")).await;
    assert_eq!(reply("image", json!({"image_key": avatar})).await.code(), 230055);
    let image = png(6, 6, b"in a thread");
    let key = image_key(&app, &demo, "message", &image).await;
    let r = reply("image", json!({"image_key": key})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let in_thread = r.body["data"]["message_id"].as_str().unwrap().to_string();
    assert_eq!(download(&app, &demo, &resource(&in_thread, &key, "image")).await.2, image);
    let history = app.call(Method::GET, &format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat}"), &demo, None).await;
    let ids: Vec<&str> = history.body["data"]["items"].as_array().unwrap().iter().map(|m| m["message_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [question.as_str(), in_thread.as_str()], "refused replies are not stored");

    // Edit a post: its images too.
    let post = |key: &str| json!({"zh_cn": {"title": "t", "content": [[{"tag": "img", "image_key": key}]]}}).to_string();
    let mine = sent(&app, &demo, &chat, "post", json!({"zh_cn": {"title": "t", "content": [[{"tag": "text", "text": "x"}]]}})).await;
    let edit_path = format!("/open-apis/im/v1/messages/{mine}");
    let edit = |content: String| app.call(Method::PUT, &edit_path, &demo, Some(json!({"msg_type": "post", "content": content})));
    assert_eq!(edit(post("img_v2_made_up")).await.code(), 230001);
    assert_eq!(edit(post(&helpers)).await.code(), 230017);
    let r = edit(post(&key)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.body["data"]["body"]["content"].as_str().unwrap(), post(&key));
}

#[tokio::test]
async fn messages_and_chat_avatars_must_name_uploaded_keys() {
    let app = TestApp::with(media_fixture(), StateConfig::default()).await;
    let demo = app.token("demo-bot").await;
    let helper = app.token("helper-bot").await;
    let chat = app.new_chat(&demo, json!({"name": "keys"})).await;
    let r = send(&app, &demo, &chat, "image", json!({"image_key": "img_v2_made_up"})).await;
    assert_eq!(r.code(), 230001, "{}", r.body);
    assert_eq!(r.body["error"]["field_violations"][0]["field"], "content");
    let helpers = image_key(&app, &helper, "message", &png(4, 4, b"helper")).await;
    assert_eq!(send(&app, &demo, &chat, "image", json!({"image_key": helpers})).await.code(), 230017);
    let avatar = image_key(&app, &demo, "avatar", &png(64, 64, b"avatar")).await;
    assert_eq!(send(&app, &demo, &chat, "image", json!({"image_key": avatar})).await.code(), 230055, "an avatar image is not a message image");
    let video = file_key(&app, &demo, "mp4", "v.mp4", b"video").await;
    assert_eq!(send(&app, &demo, &chat, "file", json!({"file_key": video})).await.code(), 230055, "mp4 goes as media");
    assert_eq!(send(&app, &demo, &chat, "audio", json!({"file_key": video})).await.code(), 230055);
    assert_eq!(send(&app, &demo, &chat, "media", json!({"file_key": video})).await.code(), 0);
    let image = image_key(&app, &demo, "message", &png(4, 4, b"img")).await;
    assert_eq!(send(&app, &demo, &chat, "file", json!({"file_key": image})).await.code(), 230055, "an image key is no file key");
    let post = json!({"zh_cn": {"title": "t", "content": [[{"tag": "img", "image_key": "img_v2_made_up"}]]}});
    assert_eq!(send(&app, &demo, &chat, "post", post).await.code(), 230001);
    let nothing_stored = app.call(Method::GET, &format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat}"), &demo, None).await;
    let types: Vec<&str> = nothing_stored.body["data"]["items"].as_array().unwrap().iter().map(|m| m["msg_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["media"], "refused messages are not stored");

    // Chat avatars: an avatar image of this app, or the default.
    let r = app.create(&demo, "", json!({"name": "a", "avatar": "img_v2_made_up"})).await;
    assert_eq!((r.code(), r.body["error"]["field_violations"][0]["field"].as_str()), (232001, Some("avatar")), "{}", r.body);
    assert_eq!(app.create(&demo, "", json!({"name": "a", "avatar": image})).await.code(), 232001, "a message image is no avatar");
    let helper_avatar = image_key(&app, &helper, "avatar", &png(4, 4, b"h")).await;
    assert_eq!(app.create(&demo, "", json!({"name": "a", "avatar": helper_avatar})).await.code(), 232001);
    let r = app.create(&demo, "", json!({"name": "a", "avatar": avatar})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert!(r.body["data"]["avatar"].as_str().unwrap().contains(&avatar), "{}", r.body);
    let with_avatar = r.chat_id();
    let update = |avatar: &str| json!({"avatar": avatar});
    let r = app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{with_avatar}"), &demo, Some(update("img_v2_made_up"))).await;
    assert_eq!(r.code(), 232001, "{}", r.body);
    let default = "default-avatar_44ae0ca3-e140-494b-956f-78091e348435";
    let r = app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{with_avatar}"), &demo, Some(update(default))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
}

#[tokio::test]
async fn the_blob_quota_bounds_each_app() {
    let config = StateConfig { blob_quota_bytes: 5000, ..StateConfig::default() };
    let app = TestApp::with(media_fixture(), config).await;
    let demo = app.token("demo-bot").await;
    let helper = app.token("helper-bot").await;
    assert_eq!(upload_file(&app, &demo, "stream", "a", &[1; 3000]).await.code(), 0);
    let r = upload_file(&app, &demo, "stream", "b", &[2; 2001]).await;
    assert_eq!((r.code(), r.status), (234042, StatusCode::BAD_REQUEST), "{}", r.body);
    assert_eq!(upload_file(&app, &demo, "stream", "c", &[3; 2000]).await.code(), 0, "up to the quota exactly");
    assert_eq!(upload_file(&app, &helper, "stream", "d", &[4; 4000]).await.code(), 0, "each app has its own quota");
}

#[tokio::test]
async fn blobs_survive_export_and_import() {
    let app = TestApp::with(media_fixture(), StateConfig::default()).await;
    let demo = app.token("demo-bot").await;
    let file = noise(700_000, 99);
    let key = file_key(&app, &demo, "stream", "state.bin", &file).await;
    let image = png(3, 3, b"tiny");
    let image_key = image_key(&app, &demo, "message", &image).await;
    let lines = app.export_state().await;
    let blobs = records_of(&lines, "blob");
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    assert!(records_of(&lines, "blob_chunk").len() >= 3, "a large blob travels in chunks");

    let fresh = TestApp::with(media_fixture(), StateConfig::default()).await;
    let r = fresh.import_state(&ndjson(&lines)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let token = fresh.token("demo-bot").await;
    let (status, headers, bytes) = download(&fresh, &token, &format!("/open-apis/im/v1/files/{key}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes == file, "the imported file is the exported one");
    assert!(headers["content-disposition"].to_str().unwrap().contains("state.bin"));
    assert_eq!(download(&fresh, &token, &format!("/open-apis/im/v1/images/{image_key}")).await.2, image);
    // A blob cut short is refused whole.
    let cut: Vec<Value> = lines.iter().filter(|l| l.get("blob_chunk").is_none_or(|c| c["key"] != key)).cloned().collect();
    let r = fresh.import_state(&ndjson(&cut)).await;
    assert_ne!(r.code(), 0, "{}", r.body);
    assert_eq!(download(&fresh, &token, &format!("/open-apis/im/v1/files/{key}")).await.2, file, "the failed import changed nothing");
}

/// A 30 MB upload goes through the group-commit writer without holding other writes back for
/// long (SQLite), and is served whole.
#[tokio::test]
async fn a_large_upload_is_stored_and_served_whole() {
    let app = TestApp::with(media_fixture(), StateConfig::default()).await;
    let demo = app.token("demo-bot").await;
    let file = noise(30 * 1024 * 1024, 5);
    let started = std::time::Instant::now();
    let key = file_key(&app, &demo, "stream", "big.bin", &file).await;
    let upload_ms = started.elapsed().as_millis();
    let started = std::time::Instant::now();
    let chat = app.new_chat(&demo, json!({"name": "after a big upload"})).await;
    assert!(!chat.is_empty());
    let (status, _, bytes) = download(&app, &demo, &format!("/open-apis/im/v1/files/{key}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes == file);
    eprintln!("30 MB upload: {upload_ms} ms; a chat create and the download after it: {} ms", started.elapsed().as_millis());
    assert!(upload_ms < 20_000, "a 30 MB upload took {upload_ms} ms");
}

#[tokio::test]
async fn a_reset_forgets_uploads() {
    let app = TestApp::with(media_fixture(), StateConfig::default()).await;
    let demo = app.token("demo-bot").await;
    let key = image_key(&app, &demo, "message", &png(2, 2, b"reset me")).await;
    let r = app.post_json("/_larkstack/reset", Some(&app.state.admin_token), &json!({})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(download_code(&app, &demo, &format!("/open-apis/im/v1/images/{key}")).await, 234005);
}
