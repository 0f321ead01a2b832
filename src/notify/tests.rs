//! The notification builders: a published Standard Webhooks vector, and tables for the bodies,
//! the Slack text and the command's environment.

use base64::Engine as _;

use super::{command, slack, webhook};
use crate::config::signing_key;
use crate::job::{Job, JobId, JobState, Outcome, Run, Status};
use crate::runner::Program;
use crate::secret::{Secret, Secrets};
use crate::signature::test_support::check_at;

const JOB_ID: &str = "0123456789abcdef0123456789abcdef";

/// A job of hook `deploy` that ended with `outcome`, after running unless `ran` is false.
fn ended(outcome: Outcome, ran: bool) -> Job {
    let mut job = Job::queued(
        JobId::parse(JOB_ID).unwrap(),
        "deploy".into(),
        "request".into(),
        None,
        1_700_000_000_000,
    );
    job.state = JobState::Finished {
        run: ran.then(|| Run {
            instance: "web-1".into(),
            started_ms: 1_700_000_000_010,
        }),
        finished_ms: 1_700_000_001_210,
        outcome,
    };
    job
}

fn outcome(status: Status, exit_code: Option<i32>, duration_ms: Option<u64>) -> Outcome {
    Outcome {
        exit_code,
        duration_ms,
        stdout: Some("secret-ish output".into()),
        ..Outcome::unrun(status, None)
    }
}

fn keys(secrets: &[&str]) -> Secrets {
    Secrets(
        secrets
            .iter()
            .map(|secret| signing_key(&Secret::new(*secret)).unwrap())
            .collect(),
    )
}

#[test]
fn the_signature_matches_the_standard_webhooks_published_vector() {
    // From the Standard Webhooks reference library: standard-webhooks/standard-webhooks,
    // `libraries/rust/src/lib.rs`, test `test_sign` (the same vector as the spec's other libraries).
    let keys = keys(&["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]);
    let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    let headers = webhook::headers(
        &keys,
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        1_649_367_553,
        body,
    );
    assert_eq!(
        headers,
        [
            ("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk".to_string()),
            ("webhook-timestamp", "1649367553".to_string()),
            (
                "webhook-signature",
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=".to_string()
            ),
        ]
    );
}

#[test]
fn a_receiver_that_knows_any_one_of_the_rotating_keys_accepts_the_notification() {
    const NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OTHER: &str = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let job = ended(outcome(Status::Failed, Some(3), Some(1200)), true);
    let body = webhook::body(&job, false, 1_700_000_001_210);
    let now = 1_700_000_100;
    let headers = webhook::headers(&keys(&[NEW, OLD]), "n-1", now, &body);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = String::from_utf8(body).unwrap();
    let cases = [(NEW, "ok"), (OLD, "ok"), (OTHER, "signature_invalid")];
    for (receiver_key, expected) in cases {
        let settings = crate::signature::ProviderSettings::new(
            "standard",
            Secrets(vec![Secret::new(receiver_key)]),
        );
        let receiver = crate::signature::build(settings).unwrap();
        assert_eq!(
            check_at(&*receiver, &headers, &body, now),
            expected,
            "{receiver_key}"
        );
    }
}

#[test]
fn the_webhook_body_is_the_event_around_the_job_body() {
    let cases = [
        (
            outcome(Status::Failed, Some(3), Some(1200)),
            true,
            false,
            "job.failed",
        ),
        (
            outcome(Status::Succeeded, Some(0), Some(1200)),
            true,
            true,
            "job.succeeded",
        ),
        (
            Outcome::unrun(Status::Superseded, None),
            false,
            false,
            "job.superseded",
        ),
    ];
    for (outcome, ran, include_output, kind) in cases {
        let job = ended(outcome, ran);
        let body = webhook::body(&job, include_output, 1_700_000_001_210);
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.starts_with(&format!(r#"{{"type":"{kind}","timestamp":"2023-11-14T22:13:21.210Z","data":{{"hook":"deploy","job_id":"{JOB_ID}""#)),
            "{text}"
        );
        let event: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(event["data"]["status"], kind.trim_start_matches("job."));
        assert_eq!(event["data"]["links"]["job"], format!("/jobs/{JOB_ID}"));
        assert_eq!(
            event["data"].get("stdout").is_some(),
            include_output,
            "{text}"
        );
    }
}

#[test]
fn the_slack_text_says_how_the_job_ended() {
    let killed = Outcome {
        signal: Some(9),
        duration_ms: Some(61_000),
        ..Outcome::unrun(Status::Failed, None)
    };
    let unstartable = Outcome {
        duration_ms: Some(3),
        ..Outcome::unrun(
            Status::Failed,
            Some("cannot run `<x>`: No such file".into()),
        )
    };
    let job_line = format!("job `{JOB_ID}`");
    let cases: Vec<(Job, Option<&str>, String)> = vec![
        (
            ended(outcome(Status::Succeeded, Some(0), Some(1200)), true),
            None,
            format!("*deploy*: succeeded (exit code 0) after 1s 200ms\n{job_line}"),
        ),
        (
            ended(outcome(Status::Failed, Some(3), Some(812)), true),
            Some("https://hooks.example.com/"),
            format!("*deploy*: failed (exit code 3) after 812ms\n<https://hooks.example.com/jobs/{JOB_ID}|job {JOB_ID}>"),
        ),
        (
            ended(killed, true),
            None,
            format!("*deploy*: failed (killed by SIGKILL) after 1m 1s\n{job_line}"),
        ),
        (
            ended(unstartable, true),
            None,
            format!("*deploy*: failed: cannot run `&lt;x&gt;`: No such file after 3ms\n{job_line}"),
        ),
        (
            ended(outcome(Status::TimedOut, None, Some(600_000)), true),
            None,
            format!("*deploy*: timed_out after 10m\n{job_line}"),
        ),
        (
            ended(Outcome::unrun(Status::Superseded, None), false),
            None,
            format!("*deploy*: superseded before it ran\n{job_line}"),
        ),
        (
            Job {
                attempt: 3,
                attempts: 3,
                ..ended(outcome(Status::Failed, Some(1), Some(5)), true)
            },
            None,
            format!("*deploy*: failed (exit code 1) after 5ms, attempt 3 of 3\n{job_line}"),
        ),
    ];
    for (job, public_url, expected) in cases {
        assert_eq!(slack::text(&job, b"", public_url), expected);
    }
}

#[test]
fn the_slack_text_shows_the_end_of_the_output_bounded_and_escaped() {
    let numbered =
        |count: usize| -> String { (1..=count).map(|n| format!("line {n}\n")).collect() };
    let long_lines: String = (1..=20)
        .map(|n| format!("{n:03}{}\n", "x".repeat(197)))
        .collect();
    let one_long_line = "y".repeat(5000);
    let cases: Vec<(String, &str, &str, &str)> = vec![
        // (output, the announcement, the first line shown, the last line shown)
        (numbered(3), "output:", "line 1", "line 3"),
        (numbered(20), "output:", "line 1", "line 20"),
        (
            numbered(21),
            "last 20 lines of output:",
            "line 2",
            "line 21",
        ),
        (
            numbered(500),
            "last 20 lines of output:",
            "line 481",
            "line 500",
        ),
        // 20 lines of 200 characters: 4019 in all, so the last 14 whole lines fit in 3000.
        (long_lines, "last 14 lines of output:", "007", "020"),
        (
            one_long_line,
            "last 3000 characters of output:",
            "yyy",
            "yyy",
        ),
        (
            "\u{1b}[31mred\u{1b}[0m\r\n\tdone\n\n\n".into(),
            "output:",
            "[31mred[0m",
            "\tdone",
        ),
        (
            "<!channel> & <https://evil|click>\n```\n".into(),
            "output:",
            "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;",
            "`\u{200b}`\u{200b}`",
        ),
    ];
    for (output, announced, first, last) in cases {
        let text = slack::text(
            &ended(outcome(Status::Failed, Some(1), Some(5)), true),
            output.as_bytes(),
            None,
        );
        let (_, block) = text
            .split_once(&format!("\n{announced}\n```\n"))
            .unwrap_or_else(|| panic!("{announced:?} in {text}"));
        let shown = block
            .strip_suffix("\n```")
            .unwrap_or_else(|| panic!("{text}"));
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines.len() <= slack::MAX_LINES, "{text}");
        assert!(shown.chars().count() <= slack::MAX_CHARS * 5, "{text}");
        assert!(lines[0].starts_with(first), "{first:?} first in {shown:?}");
        assert!(
            lines[lines.len() - 1].starts_with(last),
            "{last:?} last in {shown:?}"
        );
        assert!(!shown.contains("```"), "{shown}");
    }
    let cut = slack::text(
        &ended(outcome(Status::Failed, Some(1), Some(5)), true),
        "z".repeat(5000).as_bytes(),
        None,
    );
    assert_eq!(cut.matches('z').count(), slack::MAX_CHARS);
    let body: serde_json::Value = serde_json::from_slice(&slack::body(
        &ended(outcome(Status::Failed, Some(1), Some(5)), true),
        b"done\n",
        None,
    ))
    .unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .ends_with("output:\n```\ndone\n```"),
        "{body}"
    );
}

#[test]
fn the_command_gets_the_hook_variables_and_the_job_body_on_stdin() {
    let killed = Outcome {
        signal: Some(9),
        duration_ms: Some(40),
        ..Outcome::unrun(Status::Failed, None)
    };
    let cases = [
        (
            ended(outcome(Status::Failed, Some(3), Some(812)), true),
            "failed",
            "3",
            "812",
        ),
        (
            ended(outcome(Status::Succeeded, Some(0), Some(5)), true),
            "succeeded",
            "0",
            "5",
        ),
        (ended(killed, true), "failed", "", "40"),
        (
            ended(Outcome::unrun(Status::Cancelled, None), false),
            "cancelled",
            "",
            "",
        ),
    ];
    for (job, status, exit_code, duration_ms) in cases {
        let expected: Vec<(String, String)> = [
            ("HOOK_ID", "deploy"),
            ("HOOK_JOB_ID", JOB_ID),
            ("HOOK_STATUS", status),
            ("HOOK_EXIT_CODE", exit_code),
            ("HOOK_DURATION_MS", duration_ms),
        ]
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
        assert_eq!(command::env(&job), expected, "{status}");
    }

    let job = ended(outcome(Status::Failed, Some(3), Some(812)), true);
    let argv = vec![
        "/usr/local/bin/announce".to_string(),
        "--to=ops".to_string(),
    ];
    let built = command::build(
        &argv,
        std::path::Path::new("/etc/hookrunner"),
        &command::env(&job),
        &command::stdin(&job, false, 0),
    );
    assert_eq!(built.program, Program::Argv(argv));
    assert_eq!(built.workdir, std::path::Path::new("/etc/hookrunner"));
    assert!(
        built.passthrough.is_empty(),
        "nothing of the server's environment but the base"
    );
    assert_eq!(built.env, command::env(&job));
    let stdin = base64::engine::general_purpose::STANDARD
        .decode(built.stdin.unwrap())
        .unwrap();
    assert_eq!(stdin, command::stdin(&job, false, 0));
    let body: serde_json::Value = serde_json::from_slice(&stdin).unwrap();
    assert_eq!(
        (&body["hook"], &body["status"], &body["exit_code"]),
        (&"deploy".into(), &"failed".into(), &3.into())
    );
    assert!(
        body.get("stdout").is_none(),
        "output only with `include_output`"
    );
    assert!(stdin.ends_with(b"}\n"));
}

/// The entries of a hook's `notify` list, as the config decodes them.
fn entries(yaml: &str) -> crate::config::Notifications {
    let text = format!("hooks:\n  - id: deploy\n    signature: none\n    run: {{command: [x]}}\n    response: {{mode: async}}\n    notify:\n{yaml}");
    let config = crate::config::load_str(&text, std::path::Path::new("hooks.yaml"), &|name| {
        (name == "SLACK_URL").then(|| "https://hooks.slack.example/services/x".to_string())
    })
    .unwrap_or_else(|errors| panic!("{errors}"));
    std::sync::Arc::clone(&config.hooks[0].notify)
}

#[test]
fn an_end_makes_one_notification_per_entry_that_lists_it() {
    let list = entries(
        "      - {on: [failed, timed_out], webhook: {url: \"http://127.0.0.1:9/\", secret: whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD}}\n      - {on: [succeeded], command: [announce]}\n      - {on: [failed], max_age: 1h, slack: {url: env:SLACK_URL}}\n      - {on: [failed], command: [page]}\n",
    );
    let cases: [(Status, &[(u32, &str)]); 4] = [
        (
            Status::Failed,
            &[(0, "webhook"), (2, "slack"), (3, "command")],
        ),
        (Status::TimedOut, &[(0, "webhook")]),
        (Status::Succeeded, &[(1, "command")]),
        (Status::Cancelled, &[]),
    ];
    for (status, expected) in cases {
        let job = ended(outcome(status, Some(1), Some(5)), true);
        let made = super::plan::plan(&job, &list, false, b"line 1\nline 2\n", None);
        let got: Vec<(u32, &str)> = made
            .iter()
            .map(|new| (new.position, new.target.as_str()))
            .collect();
        assert_eq!(got, expected, "{status:?}");
        assert_eq!(
            super::plan::needs_output(&job, &list),
            expected.iter().any(|(_, target)| *target == "slack"),
            "{status:?}"
        );
        for new in &made {
            assert_eq!(new.created_ms, 1_700_000_001_210, "made at the job's end");
            let max_age = if new.target == "slack" {
                3_600_000
            } else {
                86_400_000
            };
            assert_eq!(new.expires_ms, new.created_ms + max_age);
            let body = String::from_utf8(new.body.clone()).unwrap();
            match new.target.as_str() {
                "webhook" => {
                    assert_eq!(
                        body,
                        String::from_utf8(webhook::body(&job, false, new.created_ms)).unwrap()
                    );
                    assert!(new.env.is_empty());
                }
                "slack" => assert!(body.contains("line 2"), "{body}"),
                _ => {
                    assert_eq!(new.body, command::stdin(&job, false, new.created_ms));
                    assert_eq!(new.env, command::env(&job));
                }
            }
        }
    }
    let running = Job::queued(JobId::generate(), "deploy".into(), "r".into(), None, 0);
    assert!(
        super::plan::plan(&running, &list, false, b"", None).is_empty(),
        "only an end"
    );
}

#[test]
fn a_try_is_settled_by_its_answer_the_backoff_and_max_age() {
    use super::settle::{settle, Answer};
    use crate::backoff::Backoff;
    use crate::store::Tried;
    use rand::rngs::mock::StepRng;
    use std::time::Duration;

    let backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(60));
    let failed = |retry_after: Option<u64>| Answer::Failed {
        error: "the target answered 503 Service Unavailable".into(),
        retry_after: retry_after.map(Duration::from_secs),
    };
    let retry = |at_ms: i64| Tried::Retry {
        at_ms,
        error: "the target answered 503 Service Unavailable".into(),
    };
    let now = 1_000_000;
    let day = now + 86_400_000;
    // StepRng(0, 0) draws the lower bound: half the ceiling.
    let cases = [
        (Answer::Delivered, 3, day, Tried::Delivered),
        (
            Answer::Gone,
            1,
            day,
            Tried::Failed {
                error: "the target answered 410 Gone, which asks not to be sent it again".into(),
            },
        ),
        (
            Answer::Impossible { error: "no entry".into() },
            1,
            day,
            Tried::Failed { error: "no entry".into() },
        ),
        (failed(None), 1, day, retry(now + 5_000)),
        (failed(None), 3, day, retry(now + 20_000)),
        (failed(None), 9, day, retry(now + 30_000)),
        (failed(Some(120)), 1, day, retry(now + 120_000)),
        (failed(Some(1)), 2, day, retry(now + 10_000)),
        (
            failed(None),
            4,
            now + 29_999,
            Tried::Failed {
                error: "the target answered 503 Service Unavailable; given up after 4 tries, as its `max_age` ends before the next".into(),
            },
        ),
        (failed(None), 4, now + 30_000, retry(now + 30_000)),
    ];
    for (answer, attempts, expires, expected) in cases {
        let got = settle(
            answer.clone(),
            attempts,
            now,
            expires,
            &backoff,
            &mut StepRng::new(0, 0),
        );
        assert_eq!(got, expected, "{answer:?} after {attempts}");
    }
}

#[test]
fn an_entry_is_routed_by_its_target_and_on_not_by_its_place_or_keys() {
    let web = |on: &str, url: &str, secret: &str| {
        format!("      - {{on: [{on}], webhook: {{url: \"{url}\", secret: {secret}}}}}\n")
    };
    let key = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let other_key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let route_of = |yaml: &str, index: usize| super::plan::route(&entries(yaml)[index]);
    let first = route_of(&web("failed", "http://a.example/", key), 0);
    let same = [
        web("failed", "http://a.example/", other_key),
        web("succeeded", "http://b.example/", key) + &web("failed", "http://a.example/", key),
    ];
    for (index, yaml) in same.iter().enumerate() {
        assert_eq!(route_of(yaml, index), first, "{yaml}");
    }
    let different = [
        web("failed", "http://a.example/x", key),
        web("failed, timed_out", "http://a.example/", key),
        "      - {on: [failed], slack: {url: \"http://a.example/\"}}\n".to_string(),
    ];
    for yaml in &different {
        assert_ne!(route_of(yaml, 0), first, "{yaml}");
    }
    let command = |argv: &str| route_of(&format!("      - {{on: [failed], command: {argv}}}\n"), 0);
    assert_ne!(
        command("[a, b]"),
        command("[ab]"),
        "arguments are kept apart"
    );
}
