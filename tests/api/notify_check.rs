//! `hookrunner check` on `retry:` and `notify:` (SPEC §12, §13) as a user runs it: the real
//! binary, a real file, every problem at its line and column, and never a password.

use crate::helpers::check_text as check;

const PASSWORD: &str = "hunter2-pw";

#[test]
fn check_accepts_retries_and_notifications_and_refuses_each_mistake_at_its_place() {
    let valid = "server:\n  notify:\n    - on: [failed, timed_out, interrupted]\n      webhook: {url: \"https://ops.example.com/hookrunner\", secret: whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD}\nhooks:\n  - id: deploy\n    signature: none\n    run: {command: [./deploy.sh]}\n    response: {mode: async}\n    retry: {attempts: 3, backoff: 10s, max_delay: 10m, on: [failed, timed_out, interrupted]}\n    notify:\n      - on: [succeeded]\n        command: [/usr/local/bin/announce]\n";
    let (code, stdout, stderr) = check(valid);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("hooks.yaml: ok, 1 hook"), "{stdout}");

    let text = format!(
        "server:\n  notify:\n    - on: [failed]\n      slack: {{url: \"https://hooks.slack.com/services/T0/B0/x\"}}\n      command: [page-someone]\nhooks:\n  - id: deploy\n    signature: none\n    run: {{command: [./deploy.sh]}}\n    retry: {{attempts: 3}}\n    notify:\n      - on: [failed, exploded]\n        webhook:\n          url: \"https://ops:{PASSWORD}@ops.example .com/\"\n          secret: not-a-whsec-key\n"
    );
    let (code, stdout, stderr) = check(&text);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let expected = [
        "hooks.yaml:4:20: warning: the secret `server.notify[0].slack.url` is written in the file",
        "hooks.yaml:5:7: the `notify` entry has both `slack` and `command`; an entry has one target, so split it into two entries with the same `on`\n5 |       command: [page-someone]\n  |       ^",
        "hooks.yaml:10:5: `retry` needs `response: {mode: async}`: a `wait` or `stream` answer reports the first run to a client that is gone before the next one; make the hook `async` or remove `retry`\n10 |     retry: {attempts: 3}\n   |     ^",
        "hooks.yaml:12:22: `exploded` is not a job status; `on` takes `succeeded`, `failed`, `timed_out`, `cancelled`, `superseded`, `interrupted`, `rejected`, `expired` and `awaiting_approval`",
        "hooks.yaml:14:16: `url` is not a URL (invalid international domain name); write it as `https://host/path`",
        "hooks.yaml:15:19: a notification `secret` is a Standard Webhooks key: `whsec_` followed by base64",
    ];
    for fragment in expected {
        assert!(
            stderr.contains(fragment),
            "expected {fragment:?} in:\n{stderr}"
        );
    }
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert!(!stderr.contains("not-a-whsec-key"), "{stderr}");
    assert!(!stderr.contains("hooks.slack.com"), "{stderr}");
}
