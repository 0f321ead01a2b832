//! Every provider at the front door: a request signed as the provider signs it runs and exposes the
//! provider's event and delivery ids; every malformed header is a 401 that runs nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use hookrunner::secret::{Secret, Secrets};
use hookrunner::signature::{build, ProviderSettings};

use crate::helpers::{read_when_written, TestApp};

const STANDARD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn config() -> String {
    let providers = [
        ("github", "{github: {secret: s3cret}}"),
        ("gitlab", "{gitlab: {secret: s3cret}}"),
        ("gitea", "{gitea: {secret: s3cret}}"),
        ("bitbucket", "{bitbucket: {secret: s3cret}}"),
        ("stripe", "{stripe: {secret: whsec_stripe, tolerance: 2m}}"),
        ("slack", "{slack: {secret: s3cret}}"),
        ("standard", "{standard: {secret: [\"whsec_b2xkIHNlY3JldA==\", \"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\"]}}"),
        ("shopify", "{shopify: {secret: s3cret}}"),
        ("scalr", "{scalr: {secret: [old-key, s3cret]}}"),
        ("hmac", "{hmac: {secret: s3cret, header: X-Sig, algorithm: sha512, encoding: base64, prefix: \"v=\"}}"),
        ("token", "{token: {secret: s3cret, header: X-Token}}"),
    ];
    let mut text = String::from("hooks:\n");
    for (id, signature) in providers {
        text.push_str(&format!(
            "  - id: {id}\n    signature: {signature}\n    run:\n      shell: 'printf \"%s|%s\" \"$HOOK_EVENT\" \"$HOOK_DELIVERY_ID\" > {id}.ran'\n      workdir: $DIR\n"
        ));
    }
    text
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The headers `provider` sends for `body`, as `hookrunner sign` makes them.
fn signed(
    provider: &str,
    secret: &str,
    body: &str,
    id: &str,
    timestamp: i64,
) -> Vec<(String, String)> {
    let mut settings = ProviderSettings::new(provider, Secrets(vec![Secret::new(secret)]));
    settings.header = Some(
        if provider == "hmac" {
            "X-Sig"
        } else {
            "X-Token"
        }
        .into(),
    );
    settings.algorithm = hookrunner::signature::Algorithm::parse("sha512");
    settings.encoding = Some(hookrunner::signature::Encoding::Base64);
    settings.prefix = Some("v=".into());
    build(settings)
        .unwrap()
        .sign(body.as_bytes(), id, timestamp)
}

/// Scalr's `X-Signature` for `body` sent with the `Date` text `date`, whatever that text is.
fn scalr_signature(body: &str, date: &str) -> String {
    use hookrunner::signature::{hmac_digest, Algorithm};
    hex::encode(hmac_digest(
        Algorithm::Sha1,
        b"s3cret",
        &[body.as_bytes(), date.as_bytes()],
    ))
}

fn as_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[tokio::test]
async fn each_provider_accepts_its_own_signature_and_exposes_event_and_delivery() {
    let app = TestApp::spawn(&config()).await;
    let body = r#"{"id": "evt_123", "type": "invoice.paid"}"#;
    let cases: &[(&str, &str, &[(&str, &str)], &str)] = &[
        (
            "github",
            "s3cret",
            &[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "d-1")],
            "push|d-1",
        ),
        (
            "gitlab",
            "s3cret",
            &[
                ("X-Gitlab-Event", "Push Hook"),
                ("X-Gitlab-Event-UUID", "u-2"),
            ],
            "Push Hook|u-2",
        ),
        (
            "gitea",
            "s3cret",
            &[("X-Gitea-Event", "push"), ("X-Gitea-Delivery", "g-3")],
            "push|g-3",
        ),
        (
            "bitbucket",
            "s3cret",
            &[("X-Event-Key", "repo:push"), ("X-Request-UUID", "b-4")],
            "repo:push|b-4",
        ),
        ("stripe", "whsec_stripe", &[], "invoice.paid|evt_123"),
        ("slack", "s3cret", &[], "|"),
        ("standard", STANDARD_SECRET, &[], "invoice.paid|msg_5"),
        (
            "shopify",
            "s3cret",
            &[
                ("X-Shopify-Topic", "orders/create"),
                ("X-Shopify-Webhook-Id", "s-6"),
            ],
            "orders/create|s-6",
        ),
        ("scalr", "s3cret", &[], "|"),
        ("hmac", "s3cret", &[], "|"),
        ("token", "s3cret", &[], "|"),
    ];
    for (provider, secret, extra, expected) in cases {
        let mut headers = signed(provider, secret, body, "msg_5", now());
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        headers.push(("Content-Type".into(), "application/json".into()));
        let answer = app.post_hook(provider, body, &as_refs(&headers)).await;
        assert_eq!(answer.status, 200, "{provider}: {:?}", answer.body);
        let ran = read_when_written(&app.path(&format!("{provider}.ran"))).await;
        assert_eq!(ran, *expected, "{provider}");
    }
}

#[tokio::test]
async fn malformed_headers_are_refused_for_every_provider_and_run_nothing() {
    let app = TestApp::spawn(&config()).await;
    let body = r#"{"id": "evt_1", "type": "x"}"#;
    let t = now().to_string();
    let long = "a".repeat(64 * 1024 - 100);
    let stripe_good = signed("stripe", "whsec_stripe", body, "", now())[0]
        .1
        .clone();
    let v1 = stripe_good.split("v1=").nth(1).unwrap().to_string();
    let standard = signed("standard", STANDARD_SECRET, body, "msg_1", now());
    let slack = signed("slack", "s3cret", body, "", now());
    let old = now() - 600;
    let scalr = signed("scalr", "s3cret", body, "", now());
    let wrong_scalr = signed("scalr", "wrong", body, "", now());
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("github", vec![("X-Hub-Signature-256", "sha256=abc".into())]),
        (
            "github",
            vec![("X-Hub-Signature-256", format!("sha256={}", "0".repeat(63)))],
        ),
        (
            "github",
            vec![("X-Hub-Signature-256", format!("sha256={long}"))],
        ),
        ("gitlab", vec![("X-Gitlab-Token", "".into())]),
        ("gitlab", vec![("X-Gitlab-Token", long.clone())]),
        ("gitea", vec![("X-Gitea-Signature", "xyz".into())]),
        ("gitea", vec![("X-Gitea-Signature", "0".repeat(64))]),
        ("bitbucket", vec![("X-Hub-Signature", "sha256=".into())]),
        (
            "bitbucket",
            vec![("X-Hub-Signature", format!("sha256={}", "g".repeat(64)))],
        ),
        ("stripe", vec![("Stripe-Signature", "".into())]),
        ("stripe", vec![("Stripe-Signature", format!("v1={v1}"))]),
        ("stripe", vec![("Stripe-Signature", format!("t=,v1={v1}"))]),
        (
            "stripe",
            vec![("Stripe-Signature", format!("t=abc,v1={v1}"))],
        ),
        (
            "stripe",
            vec![("Stripe-Signature", format!("t={t},t={t},v1={v1}"))],
        ),
        (
            "stripe",
            vec![("Stripe-Signature", format!("t={t},v1={}", &v1[..63]))],
        ),
        (
            "stripe",
            vec![("Stripe-Signature", format!("t={t},v1={long}"))],
        ),
        ("stripe", vec![("Stripe-Signature", ",,,===,t".into())]),
        (
            "stripe",
            vec![(
                "Stripe-Signature",
                format!("t={t},{}", "v1=00,".repeat(5000)),
            )],
        ),
        (
            "stripe",
            vec![("Stripe-Signature", format!("t={old},v1={v1}"))],
        ),
        ("slack", vec![("X-Slack-Signature", slack[1].1.clone())]),
        (
            "slack",
            vec![
                ("X-Slack-Signature", slack[1].1.clone()),
                (
                    "X-Slack-Request-Timestamp",
                    "99999999999999999999999".into(),
                ),
            ],
        ),
        (
            "slack",
            vec![
                ("X-Slack-Signature", "v0=".into()),
                ("X-Slack-Request-Timestamp", t.clone()),
            ],
        ),
        (
            "slack",
            vec![
                ("X-Slack-Signature", format!("v1={}", &slack[1].1[3..])),
                ("X-Slack-Request-Timestamp", t.clone()),
            ],
        ),
        (
            "standard",
            vec![
                ("webhook-id", "msg_1".into()),
                ("webhook-timestamp", standard[1].1.clone()),
            ],
        ),
        (
            "standard",
            vec![
                ("webhook-id", "msg_1".into()),
                ("webhook-timestamp", "-1".into()),
                ("webhook-signature", standard[2].1.clone()),
            ],
        ),
        (
            "standard",
            vec![
                ("webhook-id", "msg_2".into()),
                ("webhook-timestamp", standard[1].1.clone()),
                ("webhook-signature", standard[2].1.clone()),
            ],
        ),
        (
            "standard",
            vec![
                ("webhook-id", "msg_1".into()),
                ("webhook-timestamp", standard[1].1.clone()),
                ("webhook-signature", "v1,****".into()),
            ],
        ),
        (
            "standard",
            vec![
                ("webhook-id", "msg_1".into()),
                ("webhook-timestamp", standard[1].1.clone()),
                ("webhook-signature", format!("v1,{long}")),
            ],
        ),
        (
            "shopify",
            vec![("X-Shopify-Hmac-Sha256", "not=base64=".into())],
        ),
        ("shopify", vec![("X-Shopify-Hmac-Sha256", "AAAA".into())]),
        ("scalr", vec![("Date", scalr[0].1.clone())]),
        ("scalr", vec![("X-Signature", scalr[1].1.clone())]),
        (
            "scalr",
            vec![
                ("Date", scalr[0].1.clone()),
                ("X-Signature", wrong_scalr[1].1.clone()),
            ],
        ),
        (
            "scalr",
            vec![
                ("Date", scalr[0].1.clone()),
                ("X-Signature", format!("sha1={}", scalr[1].1)),
            ],
        ),
        (
            "scalr",
            vec![
                ("Date", t.clone()),
                ("X-Signature", scalr_signature(body, &t)),
            ],
        ),
        ("hmac", vec![("X-Sig", "v=".into())]),
        ("hmac", vec![("X-Sig", "v=====".into())]),
        ("token", vec![("X-Token", "s3cre".into())]),
    ];
    for (provider, headers) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = app.post_hook(provider, body, &headers).await;
        assert_eq!(
            answer.status, 401,
            "{provider} {headers:.80?}: {:?}",
            answer.body
        );
        let code = answer.body["error"].as_str().unwrap();
        assert!(
            code.starts_with("signature_") || code == "timestamp_out_of_tolerance",
            "{code}"
        );
    }
    // Valid signatures whose timestamps are too old are refused with their own code.
    let stale = signed("stripe", "whsec_stripe", body, "", now() - 600);
    let answer = app.post_hook("stripe", body, &as_refs(&stale)).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (401, Some("timestamp_out_of_tolerance"))
    );
    let stale = signed("scalr", "s3cret", body, "", now() - 301);
    let answer = app.post_hook("scalr", body, &as_refs(&stale)).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (401, Some("timestamp_out_of_tolerance"))
    );
    let future = signed("standard", STANDARD_SECRET, body, "msg_9", now() + 600);
    let answer = app.post_hook("standard", body, &as_refs(&future)).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (401, Some("timestamp_out_of_tolerance"))
    );

    let ran: Vec<String> = std::fs::read_dir(app.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".ran"))
        .collect();
    assert!(ran.is_empty(), "refused requests ran: {ran:?}");
    assert_eq!(
        app.request(reqwest::Method::GET, "/healthz", "", &[])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn sign_and_send_work_against_a_running_server() {
    let app = TestApp::spawn(&config()).await;
    let binary = env!("CARGO_BIN_EXE_hookrunner");
    // The server runs on this test's runtime, so the CLI runs as a child process awaited by tokio.
    let send = |secret: &str| {
        tokio::process::Command::new(binary)
            .args([
                "send",
                &format!("{}/hooks/stripe", app.address),
                "--provider",
                "stripe",
                "--secret",
                secret,
            ])
            .args([
                "--data",
                r#"{"id": "evt_send", "type": "charge.succeeded"}"#,
            ])
            .output()
    };
    let good = send("whsec_stripe").await.unwrap();
    let bad = send("whsec_wrong").await.unwrap();
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(stdout.starts_with("HTTP/1.1 200 OK\n"), "{stdout}");
    assert!(stdout.contains("\"status\":\"succeeded\""), "{stdout}");
    assert_eq!(
        read_when_written(&app.path("stripe.ran")).await,
        "charge.succeeded|evt_send"
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("401"));

    let output = std::process::Command::new(binary)
        .args([
            "sign",
            "--provider",
            "stripe",
            "--secret",
            "whsec_test_secret",
            "--timestamp",
            "1700000000",
        ])
        .args([
            "--data",
            r#"{"id":"evt_1","type":"payment_intent.succeeded"}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Stripe-Signature: t=1700000000,v1=22d8dc182f5c588077683bd378368e29765bfe5df2560112b4f28fef120f0e31\n"
    );

    // Scalr signs the body followed by its `Date`; the vector was computed with Python's `hmac`.
    let scalr = tokio::process::Command::new(binary)
        .args(["send", &format!("{}/hooks/scalr", app.address)])
        .args(["--provider", "scalr", "--secret", "s3cret", "--data", "{}"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&scalr.stdout);
    assert!(stdout.starts_with("HTTP/1.1 200 OK\n"), "{stdout}");
    assert_eq!(read_when_written(&app.path("scalr.ran")).await, "|");
    let output = std::process::Command::new(binary)
        .args(["sign", "--provider", "scalr", "--secret", "scalr-key"])
        .args([
            "--timestamp",
            "1504869872",
            "--data",
            r#"{"eventName":"HostUp"}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Date: Fri 08 Sep 2017 11:24:32 UTC\nX-Signature: 52f5dad1d8ad898249be79412dca26195567d3ad\n"
    );
}
