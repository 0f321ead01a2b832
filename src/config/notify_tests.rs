//! `notify:` through `load_str`: the targets, the server's default, and the text of each error.

use std::path::Path;

use super::*;
use crate::config::{load_str, Config};

/// The Standard Webhooks specification's example key (24 bytes).
const KEY: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const PASSWORD: &str = "hunter2-pw";

fn env(name: &str) -> Option<String> {
    match name {
        "NOTIFY_SECRET" => Some(KEY.into()),
        "OLD_SECRET" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        "SLACK_URL" => Some(format!("https://hooks.slack.com/services/T0/B0/{PASSWORD}")),
        "NOT_A_URL" => Some(PASSWORD.into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, String> {
    load_str(text, Path::new("/etc/hookrunner/hooks.yaml"), &env).map_err(|errors| errors.render())
}

/// A config with `server` (indented for `server:`) and one hook `a` with `hook` (indented for a
/// hook's keys).
fn config(server: &str, hook: &str) -> String {
    format!("server:\n  max_jobs: 2\n{server}hooks:\n  - id: a\n    signature: none\n    run: {{command: [x]}}\n{hook}")
}

fn one(text: &str) -> Notification {
    let config = load(text).unwrap_or_else(|errors| panic!("{text}\n{errors}"));
    let notify = &config.hooks[0].notify;
    assert_eq!(notify.len(), 1, "{text}");
    let Some(notification) = notify.first() else {
        unreachable!()
    };
    // The config is dropped, but the hook's list is shared: take the one entry out of a clone.
    Notification {
        on: notification.on,
        max_age: notification.max_age,
        backoff: notification.backoff,
        target: match &notification.target {
            Target::Webhook { url, keys } => Target::Webhook {
                url: url.clone(),
                keys: keys.clone(),
            },
            Target::Slack { url } => Target::Slack { url: url.clone() },
            Target::Command { argv, workdir } => Target::Command {
                argv: argv.clone(),
                workdir: workdir.clone(),
            },
        },
    }
}

#[test]
fn each_target_decodes_with_its_settings() {
    let webhook = one(&config(
        "",
        "    notify:\n      - on: [failed, timed_out, interrupted]\n        webhook: {url: \"https://ops.example.com:8443/hookrunner?x=1\", secret: env:NOTIFY_SECRET}\n",
    ));
    assert_eq!(
        webhook.on,
        StatusSet::of(&[Status::Failed, Status::TimedOut, Status::Interrupted])
    );
    assert_eq!(webhook.max_age, DEFAULT_MAX_AGE);
    let Target::Webhook { url, keys } = &webhook.target else {
        panic!("{webhook:?}")
    };
    assert_eq!(
        url.url().as_str(),
        "https://ops.example.com:8443/hookrunner?x=1"
    );
    let key_lengths: Vec<usize> = keys.iter().map(|key| key.expose().len()).collect();
    assert_eq!(key_lengths, [24], "the decoded key, not the `whsec_` text");

    let rotating = one(&config(
        "",
        "    notify:\n      - on: succeeded\n        max_age: 1h\n        webhook:\n          url: http://127.0.0.1:9/n\n          secret: [env:NOTIFY_SECRET, env:OLD_SECRET]\n",
    ));
    assert_eq!(rotating.on, StatusSet::of(&[Status::Succeeded]));
    assert_eq!(rotating.max_age, Duration::from_secs(3600));
    assert_eq!(
        rotating.backoff,
        Backoff::new(DEFAULT_BACKOFF, DEFAULT_MAX_DELAY)
    );
    let quick = one(&config(
        "",
        "    notify: [{on: [failed], backoff: 200ms, max_delay: 2s, command: [x]}]\n",
    ));
    assert_eq!(
        quick.backoff,
        Backoff::new(Duration::from_millis(200), Duration::from_secs(2))
    );
    assert!(matches!(&rotating.target, Target::Webhook { keys, .. } if keys.0.len() == 2));

    let slack = one(&config(
        "",
        "    notify: [{on: [failed], slack: {url: env:SLACK_URL}}]\n",
    ));
    let Target::Slack { url } = &slack.target else {
        panic!("{slack:?}")
    };
    assert!(url.url().path().ends_with(PASSWORD));
    assert_eq!(format!("{url:?}"), "Endpoint(https://hooks.slack.com/…)");
    assert_eq!(slack.target.kind(), "slack");

    let command = one(&config(
        "",
        "    notify: [{on: [cancelled, superseded], command: [/usr/local/bin/announce, --channel, ops]}]\n",
    ));
    let Target::Command { argv, workdir } = &command.target else {
        panic!("{command:?}")
    };
    assert_eq!(argv, &["/usr/local/bin/announce", "--channel", "ops"]);
    assert_eq!(
        workdir,
        Path::new("/etc/hookrunner"),
        "the config file's folder"
    );
}

#[test]
fn hooks_without_their_own_notify_take_the_servers() {
    let text = "server:\n  notify:\n    - {on: [failed], command: [server-wide]}\nhooks:\n  - {id: inherits, signature: none, run: {command: [x]}}\n  - {id: own, signature: none, run: {command: [x]}, notify: [{on: [failed], command: [own]}]}\n  - {id: none, signature: none, run: {command: [x]}, notify: []}\n";
    let loaded = load(text).unwrap_or_else(|errors| panic!("{errors}"));
    let programs = |id: &str| -> Vec<String> {
        loaded
            .hook(id)
            .unwrap()
            .notify
            .iter()
            .map(|n| match &n.target {
                Target::Command { argv, .. } => argv[0].clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(programs("inherits"), ["server-wide"]);
    assert!(Arc::ptr_eq(
        &loaded.hook("inherits").unwrap().notify,
        &loaded.server.notify
    ));
    assert_eq!(programs("own"), ["own"]);
    assert!(
        programs("none").is_empty(),
        "`notify: []` turns the server's off"
    );
    let plain = load(&config("", "")).unwrap();
    assert!(plain.hooks[0].notify.is_empty() && plain.server.notify.is_empty());
}

#[test]
fn urls_written_in_the_file_with_credentials_are_warned_about() {
    let cases = [
        ("slack: {url: \"https://hooks.slack.com/services/T0/B0/x\"}", true),
        (&*format!("webhook: {{url: \"https://ops:{PASSWORD}@ops.example.com/\", secret: env:NOTIFY_SECRET}}"), true),
        ("webhook: {url: \"https://ops.example.com/\", secret: env:NOTIFY_SECRET}", false),
        ("slack: {url: env:SLACK_URL}", false),
    ];
    for (target, warned) in cases {
        let text = config(
            "",
            &format!("    notify:\n      - on: [failed]\n        {target}\n"),
        );
        let loaded = load(&text).unwrap_or_else(|errors| panic!("{errors}"));
        let warning = "is written in the file; prefer `env:NAME`, `file:PATH` or `cred:NAME`";
        assert_eq!(
            loaded.warnings.iter().any(|w| w.contains(warning)),
            warned,
            "{target}: {:?}",
            loaded.warnings
        );
        assert!(
            !format!("{:?}", loaded.hooks[0].notify).contains(PASSWORD),
            "{target}"
        );
    }
}

#[test]
fn public_url_is_kept_without_its_trailing_slash() {
    for (written, kept) in [
        ("https://hooks.example.com/", "https://hooks.example.com"),
        (
            "http://10.0.0.5:9000/hookrunner/",
            "http://10.0.0.5:9000/hookrunner",
        ),
    ] {
        let config = load(&config(&format!("  public_url: \"{written}\"\n"), ""))
            .unwrap_or_else(|errors| panic!("{errors}"));
        assert_eq!(config.server.public_url.as_deref(), Some(kept));
    }
    let config = load(&config("", "")).unwrap();
    assert_eq!(config.server.public_url, None);
}

#[test]
fn check_refuses_bad_notifications_and_says_why() {
    let entry = |target: &str| {
        config(
            "",
            &format!("    notify:\n      - on: [failed]\n        {target}\n"),
        )
    };
    let endings = "`on` takes `succeeded`, `failed`, `timed_out`, `cancelled`, `superseded`, `interrupted`, `rejected`, `expired` and `awaiting_approval`";
    let url_form = "write it as `https://host/path`";
    let whsec = "a notification `secret` is a Standard Webhooks key: `whsec_` followed by base64";
    let cases: Vec<(String, String)> = vec![
        (config("", "    notify: {on: [failed]}\n"), "hooks.yaml:7:13: `notify` must be a list".into()),
        (config("", "    notify:\n      - on: [failed]\n"), "hooks.yaml:8:11: the `notify` entry has no target; add one of `webhook: {url, secret}`, `slack: {url}` or `command: [program, args...]`".into()),
        (entry("slack: {url: env:SLACK_URL}\n        command: [x]"), "hooks.yaml:10:9: the `notify` entry has both `slack` and `command`; an entry has one target, so split it into two entries with the same `on`".into()),
        (entry("slak: {url: env:SLACK_URL}"), "hooks.yaml:9:9: unknown key `slak` in a `notify` entry, did you mean `slack`?".into()),
        (config("", "    notify: [{command: [x]}]\n"), "hooks.yaml:7:14: the `notify` entry has no `on`; list the endings to announce, such as `on: [failed, timed_out, interrupted]`".into()),
        (config("", "    notify: [{on: [failed, running], command: [x]}]\n"), format!("hooks.yaml:7:28: `running` is not how a job ends; a notification is sent when a job ends, or when it begins to wait for approval; {endings}")),
        (config("", "    notify: [{on: [fialed], command: [x]}]\n"), "hooks.yaml:7:20: `fialed` is not a job status, did you mean `failed`?".into()),
        (config("", "    notify: [{on: [], command: [x]}]\n"), "hooks.yaml:7:19: `on` is empty; list the statuses it takes: `succeeded`".into()),
        (config("", "    notify: [{on: [failed], max_age: 0s, command: [x]}]\n"), "hooks.yaml:7:38: `max_age` must be longer than zero, such as `24h`".into()),
        (config("", "    notify: [{on: [failed], backoff: 0s, command: [x]}]\n"), "hooks.yaml:7:38: `backoff` must be longer than zero, such as `10s`".into()),
        (entry("command: []"), "hooks.yaml:9:18: `command` is empty; name the program to run".into()),
        (entry("command: announce"), "hooks.yaml:9:18: `command` must be a list".into()),
        (entry("command: [announce, \"{{ hook.id }}\"]"), "hooks.yaml:9:29: `{{ }}` is not expanded in a notification's `command`".into()),
        (entry("slack: {}"), "hooks.yaml:9:16: `slack` needs `url:`".into()),
        (entry("slack: {url: env:UNSET_URL}"), "hooks.yaml:9:22: environment variable `UNSET_URL` is not set".into()),
        (entry("slack: {url: env:NOT_A_URL}"), format!("hooks.yaml:9:22: the URL in `env:NOT_A_URL` is not a URL (relative URL without a base); {url_form}")),
        (entry("webhook: {secret: env:NOTIFY_SECRET}"), "hooks.yaml:9:18: `webhook` needs `url:`".into()),
        (entry("webhook: {url: \"https://ops.example.com/\"}"), "hooks.yaml:9:18: `webhook` needs `secret:`".into()),
        (entry("webhook: {url: \"https://ops.example.com/\", secert: x}"), "unknown key `secert` in `webhook`, did you mean `secret`?".into()),
        (entry("webhook: {url: \"ftp://ops.example.com/\", secret: env:NOTIFY_SECRET}"), "hooks.yaml:9:24: `url` must be an `http://` or `https://` URL with a host; found `ftp:`".into()),
        (entry("webhook: {url: \"ops.example.com/hook\", secret: env:NOTIFY_SECRET}"), format!("hooks.yaml:9:24: `url` is not a URL (relative URL without a base); {url_form}")),
        (entry("webhook: {url: \"\", secret: env:NOTIFY_SECRET}"), format!("hooks.yaml:9:24: `url` is empty; {url_form}")),
        (entry("webhook: {url: \"https://ops.example.com/\", secret: env:MISSING}"), "environment variable `MISSING` is not set".into()),
        (entry("webhook: {url: \"https://ops.example.com/\", secret: env:SLACK_URL}"), whsec.into()),
        (entry("webhook: {url: \"https://ops.example.com/\", secret: \"whsec_not base64!\"}"), whsec.into()),
        (entry("webhook: {url: \"https://ops.example.com/\", secret: whsec_AAAAAAAAAAA=}"), "the notification `secret` holds a 8-byte key; use at least 16 bytes".into()),
        (entry("webhook: {url: \"https://ops.example.com/\", secret: []}"), "the list of secrets is empty".into()),
        ("server:\n  notify: [{on: [failed], comand: [x]}]\nhooks: []\n".into(), "hooks.yaml:2:27: unknown key `comand` in a `notify` entry, did you mean `command`?".into()),
        (config("  public_url: hooks.example.com\n", ""), "hooks.yaml:3:15: `public_url` is not a URL (relative URL without a base); write the address people open this server at".into()),
        (config("  public_url: \"ftp://hooks.example.com\"\n", ""), "hooks.yaml:3:15: `public_url` must be an `http://` or `https://` URL with a host".into()),
        (config(&format!("  public_url: \"https://ops:{PASSWORD}@hooks.example.com\"\n"), ""), "hooks.yaml:3:15: `public_url` holds a user or a password, which would be shown in every link; remove them".into()),
        (config("  public_url: \"https://hooks.example.com/?x=1\"\n", ""), "hooks.yaml:3:15: `public_url` has a `?query` or a `#fragment`".into()),
    ];
    let mut wrong = Vec::new();
    for (text, expected) in cases {
        let errors = load(&text).map(|_| ()).expect_err(&text);
        if !errors.contains(&expected) {
            wrong.push(format!("{text}expected {expected:?} in:\n{errors}"));
        }
        assert!(!errors.contains(PASSWORD), "{errors}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_message_shows_a_password_in_a_url() {
    let cases = [
        format!("https://ops:{PASSWORD}@ops.example .com/"),
        format!("https://ops:{PASSWORD}@ops.example.com:99999/"),
        format!("ftp://ops:{PASSWORD}@ops.example.com/"),
    ];
    for url in cases {
        for target in [
            "slack: {url: \"URL\"}",
            "webhook: {url: \"URL\", secret: env:NOTIFY_SECRET}",
        ] {
            let target = target.replace("URL", &url);
            let text = config(
                "",
                &format!("    notify:\n      - on: [failed]\n        {target}\n"),
            );
            let errors = load(&text).map(|_| ()).expect_err(&text);
            assert!(errors.contains("hooks.yaml:9:"), "{errors}");
            assert!(!errors.contains(PASSWORD), "{errors}");
        }
    }
}
