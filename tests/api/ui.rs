//! The web page at `/ui/`: on only with an admin token, sign-in, the session cookie, the security
//! headers, escaping, and cancel guarded by the CSRF token and the origin.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

use crate::helpers::TestApp;

mod live;

const TOKEN: &str = "admin-s3cret";

const CONFIG: &str = r#"
server: {admin_token: "admin-s3cret", trusted_proxies: ["10.0.0.0/8"]}
hooks:
  - id: shout
    description: "<script>alert(1)</script> deploys"
    signature: none
    run: {shell: 'printf "<script>alert(1)</script>\n\033[1;31mred\033[0m done\n"'}
    response: {mode: async}
  - id: slow
    signature: none
    run: {shell: 'sleep 30', kill_after: 1s}
    response: {mode: async}
  - id: gated
    signature: none
    run: {shell: 'echo approved'}
    response: {mode: async}
    approval: {timeout: 1h}
"#;

/// A page's answer, with redirects left unfollowed.
struct Page {
    status: u16,
    headers: HeaderMap,
    text: String,
}

/// A browser without redirects: each call says which cookie and headers it sends.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    origin: String,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Browser<'a> {
        Browser {
            app,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            origin: app.address.clone(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let response = request.send().await.expect("the server answers");
        Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut request = self.client.get(format!("{}{path}", self.app.address));
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        self.send(request).await
    }

    /// Posts a form; `headers` are sent as given (`Origin`, `Referer`, `Cookie`).
    async fn post(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut request = self
            .client
            .post(format!("{}{path}", self.app.address))
            .form(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// Signs in with `token` from this site.
    async fn sign_in_with(&self, token: &str, extra: &[(&str, &str)]) -> Page {
        let mut headers = vec![("Origin", self.origin.as_str())];
        headers.extend_from_slice(extra);
        self.post("/ui/sign-in", &[("token", token)], &headers)
            .await
    }

    /// Signs in and returns the `Cookie` header value to send.
    async fn sign_in(&self) -> String {
        let page = self.sign_in_with(TOKEN, &[]).await;
        assert_eq!(page.status, 303, "{}", page.text);
        set_cookie(&page).split(';').next().unwrap().to_string()
    }
}

fn set_cookie(page: &Page) -> String {
    page.headers
        .get("set-cookie")
        .expect("a cookie is set")
        .to_str()
        .unwrap()
        .to_string()
}

fn location(page: &Page) -> &str {
    page.headers
        .get("location")
        .map_or("", |value| value.to_str().unwrap())
}

/// The CSRF token a page's forms carry.
fn csrf(page: &Page) -> String {
    let (_, after) = page
        .text
        .split_once(r#"name="csrf" value=""#)
        .expect("the page has a form with a CSRF token");
    after.split('"').next().unwrap().to_string()
}

async fn start_job(app: &TestApp, hook: &str) -> String {
    app.post_hook(hook, "", &[]).await.body["job_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_page_is_off_without_an_admin_token_and_with_ui_false() {
    for config in [
        "hooks: []\n",
        "server: {admin_token: \"admin-s3cret\", ui: false}\nhooks: []\n",
    ] {
        let app = TestApp::spawn(config).await;
        let browser = Browser::new(&app);
        for path in ["/ui/", "/ui/sign-in", "/ui/jobs"] {
            assert_eq!(
                browser.get(path, None).await.status,
                404,
                "{path} with {config}"
            );
        }
        let page = browser.sign_in_with(TOKEN, &[]).await;
        assert_eq!(page.status, 404, "{config}");
        assert!(page.headers.get("set-cookie").is_none());
    }
}

#[tokio::test]
async fn a_wrong_token_is_slowed_and_gets_no_cookie() {
    let app = TestApp::spawn(CONFIG).await;
    let browser = Browser::new(&app);
    let started = Instant::now();
    let page = browser.sign_in_with("not-the-token", &[]).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not slowed"
    );
    assert_eq!(page.status, 401);
    assert!(page.headers.get("set-cookie").is_none());
    assert!(page.text.contains("not the admin token"));
}

#[tokio::test]
async fn guessing_from_many_connections_is_held_to_ten_tries_a_minute() {
    let app = TestApp::spawn(CONFIG).await;
    let browser = Browser::new(&app);
    // All at once, so the delay of each wrong answer does not space them out.
    let guesses = (0..10).map(|n| {
        let browser = &browser;
        async move {
            browser
                .sign_in_with(&format!("guess-{n}"), &[])
                .await
                .status
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    assert_eq!(statuses, [401; 10]);
    // Past the allowance even the right token waits: the limit stops guessing, not typing.
    let page = browser.sign_in_with(TOKEN, &[]).await;
    assert_eq!(page.status, 429, "{}", page.text);
    assert!(page.headers.get("set-cookie").is_none());
    let retry: u64 = page.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&retry), "{retry}");
    assert!(page.text.contains("try again in"), "{}", page.text);
}

#[tokio::test]
async fn the_right_token_sets_a_strict_http_only_cookie_secure_over_https() {
    let app = TestApp::spawn(CONFIG).await;
    let browser = Browser::new(&app);
    let page = browser.sign_in_with(TOKEN, &[]).await;
    assert_eq!((page.status, location(&page)), (303, "/ui/"));
    let cookie = set_cookie(&page);
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    // 127.0.0.1 is not a trusted proxy, so its claim of HTTPS is not believed.
    let claimed = browser
        .sign_in_with(TOKEN, &[("X-Forwarded-Proto", "https")])
        .await;
    assert!(!set_cookie(&claimed).contains("Secure"));
    let signed_in = browser.sign_in().await;
    let hooks = browser.get("/ui/", Some(&signed_in)).await;
    assert_eq!(hooks.status, 200);
    assert!(
        !hooks.text.contains(signed_in.split_once('=').unwrap().1),
        "the session reached the page"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_over_https_the_cookie_is_secure() {
    let app = TestApp::spawn(&CONFIG.replace("10.0.0.0/8", "127.0.0.1/32")).await;
    let browser = Browser::new(&app);
    let page = browser
        .sign_in_with(TOKEN, &[("X-Forwarded-Proto", "https")])
        .await;
    assert!(
        set_cookie(&page).contains("; Secure"),
        "{}",
        set_cookie(&page)
    );
}

#[tokio::test]
async fn pages_without_a_valid_session_redirect_to_sign_in() {
    let app = TestApp::spawn(CONFIG).await;
    let job = start_job(&app, "shout").await;
    let browser = Browser::new(&app);
    let good = browser.sign_in().await;
    let (name, value) = good.split_once('=').unwrap();
    let (payload, tag) = value.rsplit_once('.').unwrap();
    let flipped = if tag.starts_with('0') { "1" } else { "0" };
    let tampered = [
        format!("{name}={payload}.{flipped}{}", &tag[1..]),
        format!("{name}={}", payload.replacen(".", ".9", 1) + "." + tag),
        format!("{name}=garbage"),
    ];
    for path in ["/ui/", "/ui/jobs", &format!("/ui/jobs/{job}")] {
        let page = browser.get(path, None).await;
        assert_eq!(
            (page.status, location(&page)),
            (303, "/ui/sign-in"),
            "{path}"
        );
        for cookie in &tampered {
            let page = browser.get(path, Some(cookie)).await;
            assert_eq!(page.status, 303, "{path} with {cookie}");
        }
        assert_eq!(browser.get(path, Some(&good)).await.status, 200, "{path}");
    }
    let bare = browser.get("/ui", Some(&good)).await;
    assert_eq!((bare.status, location(&bare)), (303, "/ui/"));
    // Sign-out clears the cookie.
    let hooks = browser.get("/ui/", Some(&good)).await;
    let out = browser
        .post(
            "/ui/sign-out",
            &[("csrf", &csrf(&hooks))],
            &[("Origin", &browser.origin), ("Cookie", &good)],
        )
        .await;
    assert_eq!((out.status, location(&out)), (303, "/ui/sign-in"));
    assert!(set_cookie(&out).contains("Max-Age=0"));
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_assets_are_cached() {
    let app = TestApp::spawn(CONFIG).await;
    let job = start_job(&app, "shout").await;
    let browser = Browser::new(&app);
    let cookie = browser.sign_in().await;
    let hooks = browser.get("/ui/", Some(&cookie)).await;
    let stylesheet = hooks
        .text
        .split_once(r#"<link rel="stylesheet" href=""#)
        .and_then(|(_, after)| after.split('"').next())
        .expect("a stylesheet link")
        .to_string();
    let script = hooks
        .text
        .split_once(r#"<script src=""#)
        .and_then(|(_, after)| after.split('"').next())
        .expect("a script")
        .to_string();
    let mut pages = vec![
        (
            "/ui/sign-in".to_string(),
            browser.get("/ui/sign-in", None).await,
        ),
        ("/ui/ (signed out)".into(), browser.get("/ui/", None).await),
        (
            "/ui/nothing".into(),
            browser.get("/ui/nothing", Some(&cookie)).await,
        ),
    ];
    for path in [
        "/ui/".to_string(),
        "/ui/jobs".into(),
        format!("/ui/jobs/{job}"),
    ] {
        let page = browser.get(&path, Some(&cookie)).await;
        assert_eq!(page.status, 200, "{path}");
        pages.push((path, page));
    }
    for (path, page) in &pages {
        let header = |name: &str| {
            page.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let expected = [
            ("content-security-policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "same-origin"),
            ("cache-control", "no-store"),
        ];
        for (name, value) in expected {
            assert_eq!(header(name).as_deref(), Some(value), "{name} on {path}");
        }
        assert!(!page.text.contains("style="), "inline style on {path}");
    }
    for (asset, kind) in [(stylesheet, "text/css"), (script, "text/javascript")] {
        assert!(asset.starts_with("/ui/assets/"), "{asset}");
        let page = browser.get(&asset, None).await;
        assert_eq!(page.status, 200, "{asset}");
        let header = |name: &str| {
            page.headers
                .get(name)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        };
        assert!(header("content-type").starts_with(kind), "{asset}");
        assert!(header("cache-control").contains("immutable"), "{asset}");
        assert!(page.headers.get("content-security-policy").is_some());
    }
}

#[tokio::test]
async fn job_output_and_hook_descriptions_are_shown_as_text() {
    let app = TestApp::spawn(CONFIG).await;
    let job = start_job(&app, "shout").await;
    app.wait_for_job(&job, |body| body["status"] == "succeeded")
        .await;
    let browser = Browser::new(&app);
    let cookie = browser.sign_in().await;
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;";
    for path in ["/ui/".to_string(), format!("/ui/jobs/{job}")] {
        let page = browser.get(&path, Some(&cookie)).await;
        assert!(page.text.contains(escaped), "{path}: {}", page.text);
        assert!(
            !page.text.contains("<script>alert"),
            "{path}: {}",
            page.text
        );
    }
    let page = browser.get(&format!("/ui/jobs/{job}"), Some(&cookie)).await;
    assert!(page.text.contains("red done"), "{}", page.text);
    assert!(!page.text.contains('\u{1b}'), "ANSI codes reached the page");
    // The command as it was rendered, each argument as text.
    assert!(
        page.text.contains(r#"<ol class="argv"><li><code>/bin/sh</code></li><li><code>-c</code></li><li><code>printf &quot;&lt;script&gt;"#),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn cancel_needs_the_csrf_token_and_this_origin() {
    let app = TestApp::spawn(CONFIG).await;
    let job = start_job(&app, "slow").await;
    let browser = Browser::new(&app);
    let cookie = browser.sign_in().await;
    let page = browser.get(&format!("/ui/jobs/{job}"), Some(&cookie)).await;
    assert!(page.text.contains("Cancel job"), "{}", page.text);
    let token = csrf(&page);
    let path = format!("/ui/jobs/{job}/cancel");
    let here = browser.origin.clone();
    let referer = format!("{here}/ui/jobs/{job}");
    let refused: &[(&str, Vec<(&str, &str)>, Vec<(&str, &str)>)] = &[
        (
            "no CSRF token",
            vec![],
            vec![("Origin", &here), ("Cookie", &cookie)],
        ),
        (
            "a wrong CSRF token",
            vec![("csrf", "0123")],
            vec![("Origin", &here), ("Cookie", &cookie)],
        ),
        (
            "another origin",
            vec![("csrf", &token)],
            vec![("Origin", "http://evil.example"), ("Cookie", &cookie)],
        ),
        (
            "another referer",
            vec![("csrf", &token)],
            vec![("Referer", "http://evil.example/x"), ("Cookie", &cookie)],
        ),
        (
            "no origin or referer",
            vec![("csrf", &token)],
            vec![("Cookie", &cookie)],
        ),
        (
            "no session",
            vec![("csrf", &token)],
            vec![("Origin", &here)],
        ),
    ];
    for (case, form, headers) in refused {
        let answer = browser.post(&path, form, headers).await;
        assert_eq!(answer.status, 403, "{case}");
    }
    assert_eq!(app.get_job(&job).await.body["status"], "running");
    let answer = browser
        .post(
            &path,
            &[("csrf", &token)],
            &[("Referer", &referer), ("Cookie", &cookie)],
        )
        .await;
    assert_eq!(
        (answer.status, location(&answer)),
        (303, format!("/ui/jobs/{job}").as_str())
    );
    app.wait_for_job(&job, |body| body["status"] == "cancelled")
        .await;
    let ended = browser.get(&format!("/ui/jobs/{job}"), Some(&cookie)).await;
    assert!(
        !ended.text.contains("Cancel job"),
        "an ended job offers cancel"
    );
}

#[tokio::test]
async fn rerun_from_the_page_needs_the_csrf_token_and_shows_the_new_job() {
    let app = TestApp::spawn(CONFIG).await;
    let job = start_job(&app, "shout").await;
    app.wait_for_job(&job, |body| body["status"] == "succeeded")
        .await;
    let browser = Browser::new(&app);
    let cookie = browser.sign_in().await;
    let page = browser.get(&format!("/ui/jobs/{job}"), Some(&cookie)).await;
    assert!(page.text.contains("Re-run"), "{}", page.text);
    let token = csrf(&page);
    let path = format!("/ui/jobs/{job}/rerun");
    let here = browser.origin.clone();
    let refused = browser
        .post(
            &path,
            &[("csrf", "0123")],
            &[("Origin", &here), ("Cookie", &cookie)],
        )
        .await;
    assert_eq!(refused.status, 403);
    let answer = browser
        .post(
            &path,
            &[("csrf", &token)],
            &[("Origin", &here), ("Cookie", &cookie)],
        )
        .await;
    assert_eq!(answer.status, 303);
    let new = location(&answer)
        .strip_prefix("/ui/jobs/")
        .expect("to the new job's page")
        .to_string();
    assert_ne!(new, job);
    let rerun = app
        .wait_for_job(&new, |body| body["status"] == "succeeded")
        .await;
    assert_eq!(rerun["hook"], "shout");
    let unknown = browser
        .post(
            "/ui/jobs/0123456789abcdef0123456789abcdef/rerun",
            &[("csrf", &token)],
            &[("Origin", &here), ("Cookie", &cookie)],
        )
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn approve_and_reject_from_the_page_need_the_csrf_token_and_a_waiting_job() {
    let app = TestApp::spawn(CONFIG).await;
    let browser = Browser::new(&app);
    let cookie = browser.sign_in().await;
    let here = browser.origin.clone();
    let (first, second) = (
        start_job(&app, "gated").await,
        start_job(&app, "gated").await,
    );
    let page = browser
        .get(&format!("/ui/jobs/{first}"), Some(&cookie))
        .await;
    for shown in [
        "Approve",
        "Reject",
        "awaiting_approval",
        "approval_expires_at",
    ] {
        assert!(page.text.contains(shown), "{shown}: {}", page.text);
    }
    let token = csrf(&page);
    for (verb, job, status) in [
        ("approve", &first, "succeeded"),
        ("reject", &second, "rejected"),
    ] {
        let path = format!("/ui/jobs/{job}/{verb}");
        let refused = browser
            .post(
                &path,
                &[("csrf", "0123")],
                &[("Origin", &here), ("Cookie", &cookie)],
            )
            .await;
        assert_eq!(refused.status, 403, "{verb}");
        let elsewhere = browser
            .post(
                &path,
                &[("csrf", &token)],
                &[("Origin", "http://evil.example"), ("Cookie", &cookie)],
            )
            .await;
        assert_eq!(elsewhere.status, 403, "{verb}");
        assert_eq!(app.get_job(job).await.body["status"], "awaiting_approval");
        let answer = browser
            .post(
                &path,
                &[("csrf", &token)],
                &[("Origin", &here), ("Cookie", &cookie)],
            )
            .await;
        assert_eq!(answer.status, 303, "{verb}: {}", answer.text);
        assert_eq!(location(&answer), format!("/ui/jobs/{job}"));
        app.wait_for_job(job, |body| body["status"] == status).await;
        // Decided once: the second time says why, as a page.
        let again = browser
            .post(
                &path,
                &[("csrf", &token)],
                &[("Origin", &here), ("Cookie", &cookie)],
            )
            .await;
        assert_eq!(again.status, 409, "{verb}");
        assert!(
            again.text.contains("not `awaiting_approval`"),
            "{}",
            again.text
        );
    }
    let decided = browser
        .get(&format!("/ui/jobs/{second}"), Some(&cookie))
        .await;
    assert!(!decided.text.contains(">Approve<"), "{}", decided.text);
}
