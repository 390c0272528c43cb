//! The web console's files as the binary serves them (ES modules, no build step) and the fault
//! presets it shows, from `GET /_larkstack/faults/presets`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::http::Method;
use serde_json::{json, Value};

use crate::openapi::get_raw;
use crate::support::*;

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("console")
}

/// Every file under console/, as paths relative to it with `/` separators.
fn files_on_disk() -> BTreeSet<String> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().components().map(|c| c.as_os_str().to_str().unwrap()).collect::<Vec<_>>();
                out.insert(rel.join("/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&console_dir(), &console_dir(), &mut out);
    out
}

/// The module specifiers of `import … from '…'` statements.
fn imports(source: &str) -> Vec<String> {
    source
        .lines()
        .filter(|l| l.starts_with("import "))
        .filter_map(|l| {
            let (_, rest) = l.rsplit_once(" from ")?;
            Some(rest.trim().trim_end_matches(';').trim_matches(|c| c == '\'' || c == '"').to_string())
        })
        .collect()
}

/// `base` (a served path like `/console/pages/chat.js`) joined with a relative specifier.
fn resolve(base: &str, spec: &str) -> String {
    assert!(spec.starts_with("./") || spec.starts_with("../"), "{base} imports {spec:?}: only relative modules, no bundler");
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop();
    for seg in spec.split('/') {
        match seg {
            "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[tokio::test]
async fn every_console_file_is_served_with_its_content_type() {
    let app = TestApp::demo().await;
    let files = files_on_disk();
    assert!(files.iter().any(|f| f.starts_with("lib/")) && files.iter().any(|f| f.starts_with("pages/")), "{files:?}");
    for rel in &files {
        let on_disk = std::fs::read_to_string(console_dir().join(rel)).unwrap();
        let uri = if rel == "index.html" { "/".to_string() } else { format!("/console/{rel}") };
        let (status, ct, body) = get_raw(&app, &uri).await;
        assert_eq!(status, 200, "{uri}");
        let want = match rel.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("html") => "text/html; charset=utf-8",
            other => panic!("console/{rel}: no content type for {other:?}"),
        };
        assert_eq!(ct, want, "{uri}");
        assert_eq!(body, on_disk, "{uri} is the file compiled in");
    }
}

#[tokio::test]
async fn the_console_modules_import_only_served_modules() {
    let app = TestApp::demo().await;
    let (_, _, index) = get_raw(&app, "/").await;
    assert!(index.contains(r#"<script type="module" src="/console/app.js"></script>"#), "{index}");
    // From the entry module, every import, transitively.
    let mut seen = BTreeSet::new();
    let mut queue = vec!["/console/app.js".to_string()];
    while let Some(path) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let (status, ct, body) = get_raw(&app, &path).await;
        assert_eq!((status, ct.as_str()), (200, "text/javascript; charset=utf-8"), "{path}");
        queue.extend(imports(&body).iter().map(|spec| resolve(&path, spec)));
    }
    assert!(seen.len() > 5, "app.js is split into modules: {seen:?}");
    // Every page has its module.
    for page in ["directory", "chats", "chat", "tasks", "journal", "faults", "clock"] {
        assert!(seen.contains(&format!("/console/pages/{page}.js")), "{seen:?}");
    }
    // And every module on disk is reached (no dead file shipped).
    let on_disk: BTreeSet<String> =
        files_on_disk().into_iter().filter(|f| f.ends_with(".js")).map(|f| format!("/console/{f}")).collect();
    assert_eq!(seen, on_disk);
}

#[tokio::test]
async fn unknown_console_paths_are_a_json_404() {
    let app = TestApp::demo().await;
    for uri in ["/console/pages/nope.js", "/console/lib/", "/console/", "/console/../Cargo.toml", "/console/app.js.map"] {
        let r = app.request(Method::GET, uri, &[], None).await;
        assert_eq!((r.status.as_u16(), r.code()), (404, 404), "{uri}: {}", r.body);
        assert!(r.body["error"]["log_id"].is_string(), "{uri}: {}", r.body);
    }
}

/// The console runs under `default-src 'self'` with no inline scripts or styles: no `style="…"`,
/// `on…=` attributes or `innerHTML` markup built from strings, no `eval`.
#[test]
fn the_console_sources_need_no_unsafe_inline_or_eval() {
    for rel in files_on_disk() {
        let text = std::fs::read_to_string(console_dir().join(&rel)).unwrap();
        for bad in ["style=", "style:", "'style'", "innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function", "javascript:"] {
            if rel.ends_with(".css") && bad == "style:" {
                continue;
            }
            assert!(!text.contains(bad), "console/{rel} contains {bad:?}");
        }
        if rel.ends_with(".html") {
            assert!(!text.contains("<script>") && !text.contains("<style"), "console/{rel}: inline script or style");
            assert!(!text.contains(" onclick=") && !text.contains(" onload="), "console/{rel}: inline handler");
        }
    }
}

#[tokio::test]
async fn fault_presets_are_listed_and_each_is_accepted() {
    let app = TestApp::demo().await;
    let admin = app.state.admin_token.clone();
    assert_eq!(app.request(Method::GET, "/_larkstack/faults/presets", &[], None).await.status.as_u16(), 401, "admin token only");

    let r = app.call(Method::GET, "/_larkstack/faults/presets", &admin, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let items = r.body["data"]["items"].as_array().unwrap().clone();
    let names: Vec<&str> = items.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, larkstack::control::faults::PRESETS, "every preset, in order");
    // The list GET /_larkstack/faults gives agrees.
    let faults = app.call(Method::GET, "/_larkstack/faults", &admin, None).await;
    assert_eq!(faults.body["data"]["presets"], json!(names));

    for preset in &items {
        let name = preset["name"].as_str().unwrap();
        assert!(preset["description"].as_str().is_some_and(|d| !d.is_empty()), "{preset}");
        let effect = &preset["effect"];
        assert!(["error", "delay", "drop"].contains(&effect["kind"].as_str().unwrap_or_default()), "{preset}");
        // Accepted as a rule's `preset`, which then gets exactly the listed effect.
        let added = app.call(Method::POST, "/_larkstack/faults", &admin, Some(json!({"preset": name, "count": 1}))).await;
        assert_eq!(added.code(), 0, "{name}: {}", added.body);
        assert_eq!(&added.body["data"]["effect"], effect, "{name}");
        // And as the same effect given explicitly.
        let explicit = app.call(Method::POST, "/_larkstack/faults", &admin, Some(json!({"effect": effect, "count": 1}))).await;
        assert_eq!(explicit.code(), 0, "{name}: {}", explicit.body);
    }
    let rules = app.call(Method::GET, "/_larkstack/faults", &admin, None).await;
    assert_eq!(rules.body["data"]["items"].as_array().map(Vec::len), Some(items.len() * 2));

    // The known codes, so a description cannot drift from its effect unnoticed.
    let by_name = |n: &str| items.iter().find(|p| p["name"] == n).unwrap().clone();
    let code = |p: Value| (p["effect"]["http_status"].as_u64(), p["effect"]["code"].as_i64());
    assert_eq!(code(by_name("token_invalid")), (Some(400), Some(99991663)));
    assert_eq!(code(by_name("rate_limited")), (Some(400), Some(99991400)));
    assert_eq!(code(by_name("chat_throttled")), (Some(400), Some(232019)));
    assert_eq!(by_name("slow")["effect"], json!({"kind": "delay", "ms": 3000}));
    assert_eq!(by_name("drop")["effect"], json!({"kind": "drop"}));
}
