//! The page kept current by server-sent events: a running job's log as it grows, and a nudge to
//! the lists when jobs change; both need a session and carry the page's security headers.

use std::time::{Duration, Instant};

use super::{start_job, Browser, CONFIG};
use crate::helpers::TestApp;

/// A hook whose output comes in three parts, a second apart, with markup and colour in it; the
/// second part stops in the middle of a colour code.
const DRIP: &str = r#"
  - id: drip
    signature: none
    run: {shell: 'printf "one\n"; sleep 1; printf "<script>x()</script> \033[1;3"; sleep 1; printf "1mtwo\033[0m\nthree\n"'}
    response: {mode: async}
"#;

fn config() -> String {
    format!("{CONFIG}{DRIP}")
}

/// One server-sent event: its name, its data and its id.
#[derive(Debug)]
struct Event {
    name: String,
    data: String,
    id: Option<String>,
}

/// An open event stream, read until a wanted event comes or a deadline passes.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(
        browser: &Browser<'_>,
        path: &str,
        cookie: &str,
        headers: &[(&str, &str)],
    ) -> Events {
        let mut request = browser
            .client
            .get(format!("{}{path}", browser.app.address))
            .header("Cookie", cookie);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the server answers");
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
        assert_eq!(header("content-type"), "text/event-stream", "{path}");
        assert!(
            header("content-security-policy").starts_with("default-src 'self'; script-src 'self'"),
            "{path}"
        );
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// Checks that no event comes for `time` (comments may).
    async fn quiet_for(&mut self, time: Duration) {
        let deadline = Instant::now() + time;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(chunk) = tokio::time::timeout(left, self.response.chunk()).await else {
                break;
            };
            let chunk = chunk
                .expect("the stream reads")
                .expect("the stream goes on");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        let events: Vec<_> = self.buffer.split("\n\n").filter_map(parse).collect();
        assert!(
            events.is_empty(),
            "events while nothing changed: {events:?}"
        );
    }

    /// The events up to and including the first named `last`, within `limit`.
    async fn until(&mut self, last: &str, limit: Duration) -> Vec<Event> {
        let deadline = Instant::now() + limit;
        let mut events = Vec::new();
        loop {
            while let Some((block, rest)) = self.buffer.split_once("\n\n") {
                let event = parse(block);
                self.buffer = rest.to_string();
                if let Some(event) = event {
                    let done = event.name == last;
                    events.push(event);
                    if done {
                        return events;
                    }
                }
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no `{last}` event in time; had {events:?}"));
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no `{last}` event in time; had {events:?}"))
                .expect("the stream reads")
                .unwrap_or_else(|| panic!("the stream ended before `{last}`; had {events:?}"));
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// An event block as a browser reads it; `None` for a comment.
fn parse(block: &str) -> Option<Event> {
    let mut name = None;
    let mut data: Option<String> = None;
    let mut id = None;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_string();
        match field {
            "event" => name = Some(value),
            "id" => id = Some(value),
            "data" => {
                data = Some(match data {
                    Some(before) => format!("{before}\n{value}"),
                    None => value,
                })
            }
            _ => {}
        }
    }
    Some(Event {
        name: name.unwrap_or_else(|| "message".into()),
        data: data?,
        id,
    })
}

fn log_text(events: &[Event]) -> String {
    events
        .iter()
        .filter(|event| event.name == "log")
        .map(|event| event.data.as_str())
        .collect()
}

/// The text of the page's log, as a browser shows it.
fn shown_log(page: &str) -> String {
    let (_, after) = page
        .split_once(r#"id="log""#)
        .expect("the page has the log");
    let (_, text) = after.split_once('>').unwrap();
    let (text, _) = text.split_once("</pre>").unwrap();
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Where the page's script follows the log from, if it does.
fn follow_url(page: &str) -> Option<String> {
    let (_, after) = page.split_once(r#"data-follow=""#)?;
    Some(after.split('"').next()?.replace("&amp;", "&"))
}

#[tokio::test]
async fn a_running_jobs_log_comes_as_events_in_order_then_its_end() {
    let app = TestApp::spawn(&config()).await;
    let job = start_job(&app, "drip").await;
    let browser = Browser::new(&app);
    let cookie = browser.sign_in().await;
    let expected = "one\n<script>x()</script> two\nthree\n";
    // The page while the job runs, once it shows the first line.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = browser.get(&format!("/ui/jobs/{job}"), Some(&cookie)).await;
        if shown_log(&page.text).contains("one") {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "the log never showed: {}",
            page.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let shown = shown_log(&page.text);
    let follow = follow_url(&page.text).expect("a running job's log is followed");
    assert!(
        follow.starts_with(&format!("/ui/jobs/{job}/log/events?offset=")),
        "{follow}"
    );
    // What the page showed and what the script is sent make the whole log, once each.
    let mut events = Events::open(&browser, &follow, &cookie, &[]).await;
    let events = events.until("end", Duration::from_secs(20)).await;
    assert_eq!(
        format!("{shown}{}", log_text(&events)),
        expected,
        "{events:?}"
    );
    assert!(
        events.iter().filter(|event| event.name == "log").count() >= 2,
        "the log came in one piece: {events:?}"
    );
    let end = events.last().unwrap();
    assert_eq!((end.name.as_str(), end.data.as_str()), ("end", "succeeded"));
    // Each event's id is the byte offset it reaches: the whole log at the last.
    let reached = events.iter().rev().find_map(|event| event.id.clone());
    let log_bytes = "one\n<script>x()</script> \x1b[1;31mtwo\x1b[0m\nthree\n".len();
    assert_eq!(reached, Some(log_bytes.to_string()));

    // From the start, the whole log; a finished job's page follows nothing.
    let path = format!("/ui/jobs/{job}/log/events?offset=0");
    let mut events = Events::open(&browser, &path, &cookie, &[]).await;
    let events = events.until("end", Duration::from_secs(10)).await;
    assert_eq!(log_text(&events), expected);
    let ended = browser.get(&format!("/ui/jobs/{job}"), Some(&cookie)).await;
    assert_eq!(follow_url(&ended.text), None, "{}", ended.text);
    assert_eq!(shown_log(&ended.text), expected);
}

#[tokio::test]
async fn the_offset_and_a_reconnects_last_event_id_skip_what_was_shown() {
    let app = TestApp::spawn(&config()).await;
    let job = start_job(&app, "drip").await;
    app.wait_for_job(&job, |body| body["status"] == "succeeded")
        .await;
    let browser = Browser::new(&app);
    let cookie = browser.sign_in().await;
    let base = format!("/ui/jobs/{job}/log/events");
    let mut events = Events::open(&browser, &format!("{base}?offset=4"), &cookie, &[]).await;
    let events = events.until("end", Duration::from_secs(10)).await;
    assert_eq!(log_text(&events), "<script>x()</script> two\nthree\n");
    // A browser that reconnects sends the id of the last event it had; it wins over `offset`.
    let mut events = Events::open(
        &browser,
        &format!("{base}?offset=0"),
        &cookie,
        &[("Last-Event-ID", "32")],
    )
    .await;
    let events = events.until("end", Duration::from_secs(10)).await;
    assert_eq!(log_text(&events), "two\nthree\n");
    let bad = browser
        .get(&format!("{base}?offset=-1"), Some(&cookie))
        .await;
    assert_eq!(bad.status, 400);
    // Past the end: nothing more to show, and the end.
    let mut events = Events::open(&browser, &format!("{base}?offset=999"), &cookie, &[]).await;
    let events = events.until("end", Duration::from_secs(10)).await;
    assert_eq!(log_text(&events), "");
}

#[tokio::test]
async fn the_event_streams_need_a_session() {
    let app = TestApp::spawn(&config()).await;
    let job = start_job(&app, "drip").await;
    let browser = Browser::new(&app);
    for path in [
        format!("/ui/jobs/{job}/log/events?offset=0"),
        "/ui/events".into(),
    ] {
        let page = browser.get(&path, None).await;
        assert_eq!(page.status, 303, "{path}");
        assert_eq!(page.headers["location"], "/ui/sign-in", "{path}");
        assert!(
            page.headers.get("content-security-policy").is_some(),
            "{path}"
        );
        let page = browser.get(&path, Some("hookrunner_ui=garbage")).await;
        assert_eq!(page.status, 303, "{path} with a bad cookie");
    }
}

#[tokio::test]
async fn the_lists_hear_when_a_job_is_admitted() {
    let app = TestApp::spawn(&config()).await;
    let browser = Browser::new(&app);
    let cookie = browser.sign_in().await;
    let mut events = Events::open(&browser, "/ui/events", &cookie, &[]).await;
    events.quiet_for(Duration::from_secs(3)).await;
    start_job(&app, "shout").await;
    let events = events.until("changed", Duration::from_secs(10)).await;
    assert_eq!(events.last().unwrap().name, "changed");
    let jobs = browser.get("/ui/jobs", Some(&cookie)).await;
    assert!(
        jobs.text.contains(r#"<table class="rows" id="jobs">"#),
        "{}",
        jobs.text
    );
    assert!(jobs.text.contains("data-status="), "{}", jobs.text);
    let hooks = browser.get("/ui/", Some(&cookie)).await;
    assert!(
        !hooks.text.contains(r#"id="instances""#),
        "one instance shows no instances table"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_stream_ends_once_a_new_admin_token_signs_everyone_out() {
    use crate::helpers::serve_binary;
    use nix::sys::signal::Signal;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hooks.yaml");
    let config = |token: &str| format!("server: {{admin_token: {token}}}\nhooks: []\n");
    std::fs::write(&file, config("first-t0ken")).unwrap();
    let (server, address) = serve_binary(&file, &[], &[], |_| {}).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = client
        .post(format!("{address}/ui/sign-in"))
        .header("Origin", &address)
        .form(&[("token", "first-t0ken")])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let mut events = client
        .get(format!("{address}/ui/events"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);

    std::fs::write(&file, config("second-t0ken")).unwrap();
    server.signal(Signal::SIGHUP);
    // The stream ends at its next keep-alive, at most 15 s later.
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(25), async {
        while let Some(_chunk) = events.chunk().await.unwrap() {}
    })
    .await;
    assert!(ended.is_ok(), "still open after {:?}", started.elapsed());
    let page = client
        .get(format!("{address}/ui/"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303, "the old session is over");
}
