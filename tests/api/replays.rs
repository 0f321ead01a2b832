//! Replays within the tolerance: a Slack request (Slack sends no delivery id) or a Stripe event
//! without an `id`, sent again exactly as signed, runs nothing the second time.

use std::time::{SystemTime, UNIX_EPOCH};

use hookrunner::secret::{Secret, Secrets};
use hookrunner::signature::{build, ProviderSettings};

use crate::helpers::{Answer, TestApp};

const CONFIG: &str = r#"
hooks:
  - id: slack
    signature: {slack: {secret: s3cret}}
    run: {shell: 'echo "$HOOK_JOB_ID" >> slack.ran', workdir: $DIR}
  - id: stripe
    signature: {stripe: {secret: whsec_stripe}}
    run: {shell: 'echo "$HOOK_JOB_ID" >> stripe.ran', workdir: $DIR}
"#;

/// The headers `provider` sends for `body` now, as `hookrunner sign` makes them.
fn signed(provider: &str, secret: &str, body: &str) -> Vec<(String, String)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let settings = ProviderSettings::new(provider, Secrets(vec![Secret::new(secret)]));
    build(settings).unwrap().sign(body.as_bytes(), "", now)
}

async fn send(app: &TestApp, hook: &str, body: &str, headers: &[(String, String)]) -> Answer {
    let mut headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    headers.push(("Content-Type", "application/json"));
    app.post_hook(hook, body.to_string(), &headers).await
}

fn runs(app: &TestApp, hook: &str) -> usize {
    std::fs::read_to_string(app.path(&format!("{hook}.ran")))
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test]
async fn the_same_signed_slack_request_sent_twice_runs_once() {
    let app = TestApp::spawn(CONFIG).await;
    let body = r#"{"type":"event_callback","event":{"type":"app_mention"}}"#;
    let headers = signed("slack", "s3cret", body);

    let first = send(&app, "slack", body, &headers).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let replay = send(&app, "slack", body, &headers).await;
    assert_eq!(replay.status, 200, "{:?}", replay.body);
    assert_eq!(replay.body["status"], "duplicate", "{:?}", replay.body);
    assert_eq!(replay.body["job_id"], first.body["job_id"]);
    // The same signature in a re-encoded header (upper-case hex) is the same request.
    let shouted: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| match value.strip_prefix("v0=") {
            Some(hex) => (name.clone(), format!("v0={}", hex.to_uppercase())),
            None => (name.clone(), value.clone()),
        })
        .collect();
    let reencoded = send(&app, "slack", body, &shouted).await;
    assert_eq!(
        reencoded.body["status"], "duplicate",
        "{:?}",
        reencoded.body
    );
    assert_eq!(runs(&app, "slack"), 1);
}

#[tokio::test]
async fn a_stripe_event_without_an_id_sent_twice_runs_once() {
    let app = TestApp::spawn(CONFIG).await;
    let body = r#"{"type":"invoice.paid","data":{"object":{}}}"#;
    let headers = signed("stripe", "whsec_stripe", body);

    let first = send(&app, "stripe", body, &headers).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let replay = send(&app, "stripe", body, &headers).await;
    assert_eq!(replay.body["status"], "duplicate", "{:?}", replay.body);
    assert_eq!(replay.body["job_id"], first.body["job_id"]);
    // Stripe lists several signatures when secrets roll; one more entry is still the same request.
    let padded: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.clone(), format!("{value},v1={}", "0".repeat(64))))
        .collect();
    let reordered = send(&app, "stripe", body, &padded).await;
    assert_eq!(
        reordered.body["status"], "duplicate",
        "{:?}",
        reordered.body
    );
    assert_eq!(runs(&app, "stripe"), 1);
}

#[tokio::test]
async fn different_slack_requests_and_stripe_events_with_ids_all_run() {
    let app = TestApp::spawn(CONFIG).await;
    for text in ["first", "second"] {
        let body = format!(r#"{{"type":"event_callback","text":"{text}"}}"#);
        let answer = send(&app, "slack", &body, &signed("slack", "s3cret", &body)).await;
        assert_eq!(answer.body["status"], "succeeded", "{:?}", answer.body);
    }
    assert_eq!(runs(&app, "slack"), 2);
    // An event with an `id` is deduplicated on it, as before.
    for id in ["evt_1", "evt_2", "evt_1"] {
        let body = format!(r#"{{"id":"{id}","type":"invoice.paid"}}"#);
        send(
            &app,
            "stripe",
            &body,
            &signed("stripe", "whsec_stripe", &body),
        )
        .await;
    }
    assert_eq!(runs(&app, "stripe"), 2);
}

#[tokio::test]
async fn a_stripe_event_replayed_under_another_content_type_is_still_a_duplicate() {
    let app = TestApp::spawn(CONFIG).await;
    let body = r#"{"id":"evt_replayed","type":"invoice.paid"}"#;
    let headers = signed("stripe", "whsec_stripe", body);
    let first = send(&app, "stripe", body, &headers).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    // The content type is not signed: a replay may say the JSON body is a form, which has no `id`.
    let mut as_form: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    as_form.push(("Content-Type", "application/x-www-form-urlencoded"));
    let replay = app.post_hook("stripe", body.to_string(), &as_form).await;
    assert_eq!(replay.body["status"], "duplicate", "{:?}", replay.body);
    assert_eq!(replay.body["job_id"], first.body["job_id"]);
    assert_eq!(runs(&app, "stripe"), 1);
}
