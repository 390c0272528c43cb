use larkstack::domain::directory::Directory;
use larkstack::state::StateConfig;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn fifty_per_second_then_99991400_with_headers() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let t = app.token("demo-bot").await;
    for i in 0..50 {
        assert_eq!(app.create(&t, "", json!({})).await.code(), 0, "request {i}");
    }
    let r = app.create(&t, "", json!({})).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 99991400));
    assert_eq!(r.headers["x-ogw-ratelimit-limit"], "50");
    assert_eq!(r.headers["x-ogw-ratelimit-reset"], "1");
    // Another app is not affected.
    let other = app.token("helper-bot").await;
    assert_eq!(app.create(&other, "", json!({})).await.code(), 0);
    // The burst stays in the window for a whole second: no call in between (GCRA let one in
    // every 20 ms).
    app.state.clock.advance_ms(20);
    let r = app.create(&t, "", json!({})).await;
    assert_eq!(r.code(), 99991400);
    assert_eq!(r.headers["x-ogw-ratelimit-reset"], "1");
    app.state.clock.advance_ms(979);
    assert_eq!(app.create(&t, "", json!({})).await.code(), 99991400);
    app.state.clock.advance_ms(1);
    assert_eq!(app.create(&t, "", json!({})).await.code(), 0);
}

#[tokio::test]
async fn a_thousand_in_any_sixty_seconds_across_a_minute_boundary() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let minute = 1_800_000_000_000; // the start of a minute
    app.state.clock.set_ms(minute + 35_000);
    let t = app.token("demo-bot").await;
    let mut ok = 0;
    // 50 per simulated second for 25 seconds, the clock minute turning after 25 of them: the
    // budget runs out at 1000 all the same (a window per clock minute let 2000 through in 44 s).
    for _ in 0..25 {
        for _ in 0..50 {
            let r = app.create(&t, "", json!({})).await;
            if r.code() == 0 {
                ok += 1;
            } else {
                assert_eq!((r.status.as_u16(), r.code()), (400, 99991400));
                assert_eq!(r.headers["x-ogw-ratelimit-limit"], "1000");
            }
        }
        app.state.clock.advance_ms(1000);
    }
    assert_eq!(ok, 1000, "creates passed in 25 s");
    // At +60 s a slot frees when the first second's 50 leave the window, at +95 s.
    let r = app.create(&t, "", json!({})).await;
    assert_eq!(r.code(), 99991400);
    assert_eq!(r.headers["x-ogw-ratelimit-limit"], "1000");
    assert_eq!(r.headers["x-ogw-ratelimit-reset"], "35");
    app.state.clock.advance_ms(34_999);
    let r = app.create(&t, "", json!({})).await;
    assert_eq!(r.code(), 99991400);
    assert_eq!(r.headers["x-ogw-ratelimit-reset"], "1");
    app.state.clock.advance_ms(1);
    assert_eq!(app.create(&t, "", json!({})).await.code(), 0);
}

#[tokio::test]
async fn per_app_override_and_off_switch() {
    let fixture = "[[tenants]]\nkey='t'\n[[apps]]\nkey='a'\ntenant='t'\nscopes=['im:chat']\nrate_limit={per_second=2, per_minute=100}\n";
    let app = TestApp::with(Directory::from_toml(fixture).unwrap(), StateConfig::default()).await;
    app.state.clock.freeze();
    let t = app.token("a").await;
    assert_eq!(app.create(&t, "", json!({})).await.code(), 0);
    assert_eq!(app.create(&t, "", json!({})).await.code(), 0);
    let r = app.create(&t, "", json!({})).await;
    assert_eq!(r.code(), 99991400);
    assert_eq!(r.headers["x-ogw-ratelimit-limit"], "2");

    let off = TestApp::with(Directory::from_toml(fixture).unwrap(), StateConfig { rate_limits: false, ..StateConfig::default() }).await;
    off.state.clock.freeze();
    let t = off.token("a").await;
    for _ in 0..20 {
        assert_eq!(off.create(&t, "", json!({})).await.code(), 0);
    }
}
