//! `hookrunner jobs …` and `send`'s exit codes: the real binary against a real server on port 0
//! (over TCP and over a unix socket).

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{free_port, TestApp};

const TOKEN: &str = "admin-s3cret";

/// Hooks for the tests: `quick` succeeds at once, `slow` runs until cancelled, `talk` prints a
/// line, waits for the file `go`, prints another, `gated` waits for approval.
const CONFIG: &str = r#"
server: {admin_token: "admin-s3cret"}
hooks:
  - id: quick
    signature: none
    run: {command: [echo, done]}
    response: {mode: async}
  - id: slow
    signature: none
    run: {command: [sleep, "30"]}
    response: {mode: async}
  - id: talk
    signature: none
    run:
      shell: 'echo first; while [ ! -e go ]; do sleep 0.02; done; echo second'
      workdir: $DIR
    response: {mode: async}
  - id: gated
    signature: none
    run: {command: ["true"]}
    response: {mode: async}
    approval: {timeout: 1h}
"#;

/// The binary with `args`, against `url`, the admin token in its environment when `token` is given.
fn hookrunner(url: &str, token: Option<&str>, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookrunner"));
    command
        .arg("jobs")
        .args(args)
        .env("HOOKRUNNER_URL", url)
        .env_remove("HOOKRUNNER_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("HOOKRUNNER_ADMIN_TOKEN", token);
    }
    command
}

async fn jobs(app: &TestApp, args: &[&str]) -> Output {
    run(hookrunner(&app.address, Some(TOKEN), args)).await
}

async fn run(mut command: tokio::process::Command) -> Output {
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("the command ends")
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn succeeded(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&succeeded(output)).expect("JSON on stdout")
}

async fn trigger(app: &TestApp, hook: &str) -> String {
    let answer = app.post_hook(hook, "{}", &[]).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    answer.body["job_id"].as_str().unwrap().to_string()
}

async fn finished(app: &TestApp, hook: &str) -> String {
    let id = trigger(app, hook).await;
    app.wait_for_job(&id, |job| job["status"] == "succeeded")
        .await;
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_list_shows_a_table_and_all_follows_every_page() {
    let app = TestApp::spawn(CONFIG).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(finished(&app, "quick").await);
    }

    let first_page = jobs(&app, &["list", "--limit", "2"]).await;
    let table = succeeded(&first_page);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("ID") && lines[0].ends_with("CREATED                   DURATION"),
        "{table}"
    );
    assert!(lines[1].starts_with(&ids[4]), "newest first: {table}");
    assert!(lines[1].contains("  quick  succeeded  "), "{table}");
    assert!(
        stderr(&first_page).contains("`--all`"),
        "{}",
        stderr(&first_page)
    );

    let everything = succeeded(&jobs(&app, &["list", "--limit", "2", "--all"]).await);
    assert_eq!(everything.lines().count(), 6, "{everything}");
    for id in &ids {
        assert!(everything.contains(id.as_str()), "{id} in {everything}");
    }

    let page = json(&jobs(&app, &["list", "--limit", "2", "--json"]).await);
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2);
    assert!(page["next"].is_string(), "{page}");
    let merged = json(&jobs(&app, &["list", "--limit", "2", "--all", "--json"]).await);
    let listed: Vec<&str> = merged["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["job_id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    assert_eq!(merged["next"], Value::Null);

    let filtered = json(&jobs(&app, &["list", "--hook", "slow", "--json"]).await);
    assert_eq!(filtered["jobs"], serde_json::json!([]));
    let refused = jobs(&app, &["list", "--status", "sleepy"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("(400): `sleepy` is not a job status"),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_show_prints_a_field_per_line_or_the_servers_json() {
    let app = TestApp::spawn(CONFIG).await;
    let id = finished(&app, "quick").await;

    let shown = succeeded(&jobs(&app, &["show", &id]).await);
    for line in [
        "hook: quick".to_string(),
        format!("job_id: {id}"),
        "status: succeeded".into(),
        "exit_code: 0".into(),
        format!("links.job: /jobs/{id}"),
    ] {
        assert!(
            shown.lines().any(|shown| shown == line),
            "{line} in {shown}"
        );
    }

    let body = json(&jobs(&app, &["show", &id, "--json"]).await);
    assert_eq!(body, app.get_job(&id).await.body);

    // `show` needs no token.
    let output = run(hookrunner(&app.address, None, &["show", &id])).await;
    assert!(succeeded(&output).contains("status: succeeded"));

    let missing = jobs(&app, &["show", "0123456789abcdef0123456789abcdef"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("(404): no job has this id"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_log_follow_prints_lines_as_they_come_and_ends_with_the_job() {
    let app = TestApp::spawn(CONFIG).await;
    let id = trigger(&app, "talk").await;
    app.wait_for_job(&id, |job| job["status"] == "running")
        .await;

    let mut follower = hookrunner(&app.address, None, &["log", &id, "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    assert_eq!(next_line(&mut lines).await, Some("first".to_string()));
    assert_eq!(app.get_job(&id).await.body["status"], "running");
    assert_eq!(
        follower.try_wait().unwrap(),
        None,
        "the follower waits for more"
    );

    std::fs::write(app.path("go"), "").unwrap();
    assert_eq!(next_line(&mut lines).await, Some("second".to_string()));
    assert_eq!(next_line(&mut lines).await, None);
    let status = tokio::time::timeout(Duration::from_secs(10), follower.wait())
        .await
        .expect("the follower ends with the job")
        .unwrap();
    assert_eq!(status.code(), Some(0));

    let whole = succeeded(&jobs(&app, &["log", &id]).await);
    assert_eq!(whole, "first\nsecond\n");
}

/// The next line of output, or `None` at its end; fails when neither comes within 10 s.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("a line, or the end, in time")
        .expect("stdout reads")
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_cancel_ends_a_running_job_and_a_second_cancel_is_refused() {
    let app = TestApp::spawn(CONFIG).await;
    let id = trigger(&app, "slow").await;
    app.wait_for_job(&id, |job| job["status"] == "running")
        .await;

    let cancelled = succeeded(&jobs(&app, &["cancel", &id]).await);
    assert_eq!(cancelled, format!("{id}: signalled\n"));
    app.wait_for_job(&id, |job| job["status"] == "cancelled")
        .await;

    let again = jobs(&app, &["cancel", &id, "--json"]).await;
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        stderr(&again),
        "hookrunner: the server refused (409): the job already ended as `cancelled` (`already_finished`)\n"
    );
    assert_eq!(stdout(&again), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_rerun_makes_a_new_job_of_the_same_command() {
    let app = TestApp::spawn(CONFIG).await;
    let id = finished(&app, "quick").await;

    let line = succeeded(&jobs(&app, &["rerun", &id]).await);
    let (rerun, rest) = line.split_once(": ").expect("`ID: status`");
    assert_ne!(rerun, id);
    assert!(rest.ends_with(&format!("(a re-run of {id})\n")), "{line}");
    app.wait_for_job(rerun, |job| job["status"] == "succeeded")
        .await;

    let body = json(&jobs(&app, &["rerun", &id, "--json"]).await);
    assert_eq!(body["rerun_of"], id.as_str());
    assert_eq!(body["hook"], "quick");
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_approve_and_reject_decide_a_gated_job() {
    let app = TestApp::spawn(CONFIG).await;
    let approved = trigger(&app, "gated").await;
    let rejected = trigger(&app, "gated").await;

    let line = succeeded(&jobs(&app, &["approve", &approved]).await);
    assert!(line.starts_with(&format!("{approved}: ")), "{line}");
    app.wait_for_job(&approved, |job| job["status"] == "succeeded")
        .await;

    let body = json(&jobs(&app, &["reject", &rejected, "--json"]).await);
    assert_eq!(body["job_id"], rejected.as_str());
    assert_eq!(body["status"], "rejected");

    let again = jobs(&app, &["approve", &rejected]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("(409)"), "{}", stderr(&again));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrong_token_is_refused_with_the_servers_message_and_never_printed() {
    let app = TestApp::spawn(CONFIG).await;
    let id = trigger(&app, "slow").await;

    let missing = run(hookrunner(&app.address, None, &["list"])).await;
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        stderr(&missing),
        "hookrunner: the server refused (401): send `Authorization: Bearer <admin_token>` (`admin_token_missing`)\n"
    );

    let wrong = run(hookrunner(
        &app.address,
        Some("guess-0815"),
        &["cancel", &id],
    ))
    .await;
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(
        stderr(&wrong),
        "hookrunner: the server refused (401): the admin token is wrong (`admin_token_invalid`)\n"
    );
    assert!(!stdout(&wrong).contains("guess-0815") && !stderr(&wrong).contains("guess-0815"));

    // From a file, which wins over the environment.
    let file = app.path("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let file = file.to_str().unwrap();
    let from_file = run(hookrunner(
        &app.address,
        Some("guess-0815"),
        &["cancel", &id, "--admin-token-file", file],
    ))
    .await;
    assert_eq!(succeeded(&from_file), format!("{id}: signalled\n"));

    let unreadable = jobs(&app, &["list", "--admin-token-file", "/nonexistent/token"]).await;
    assert_eq!(unreadable.status.code(), Some(2));
    assert!(
        stderr(&unreadable).contains("cannot read the admin token from `/nonexistent/token`"),
        "{}",
        stderr(&unreadable)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_server_is_exit_4_naming_the_address_without_its_password() {
    let url = format!("http://admin:pa55word@127.0.0.1:{}", free_port());
    let output = run(hookrunner(&url, Some(TOKEN), &["list"])).await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.starts_with(&format!(
            "hookrunner: cannot reach the server at `{}/`: cannot connect: ",
            url.replace("admin:pa55word@", "")
        )),
        "{message}"
    );
    assert!(!message.contains("pa55word") && !message.contains(TOKEN));

    let socket = run(hookrunner(
        "unix:/nonexistent/hookrunner.sock",
        None,
        &["show", "0123456789abcdef0123456789abcdef"],
    ))
    .await;
    assert_eq!(socket.status.code(), Some(4));
    assert!(
        stderr(&socket).contains("at `unix:/nonexistent/hookrunner.sock`"),
        "{}",
        stderr(&socket)
    );

    let usage = run(hookrunner("ftp://example.com", None, &["list"])).await;
    assert_eq!(usage.status.code(), Some(2));
    // A job id is checked before it goes into a path: `..` cannot climb out of `jobs/`.
    let climbing = run(hookrunner(&url, Some(TOKEN), &["cancel", "../instances"])).await;
    assert_eq!(climbing.status.code(), Some(2), "{}", stderr(&climbing));
    assert!(
        stderr(&climbing).contains("is not a job id"),
        "{}",
        stderr(&climbing)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jobs_commands_work_over_a_unix_socket() {
    let app = TestApp::spawn_listening(CONFIG, &["127.0.0.1:0", "unix:$DIR/hookrunner.sock"]).await;
    let id = finished(&app, "quick").await;
    let url = format!("unix:{}", app.path("hookrunner.sock").display());
    let over_socket = |args: &'static [&'static str]| run(hookrunner(&url, Some(TOKEN), args));

    let table = succeeded(&over_socket(&["list"]).await);
    assert!(table.lines().nth(1).unwrap().starts_with(&id), "{table}");
    let shown = succeeded(&run(hookrunner(&url, None, &["show", &id])).await);
    assert!(shown.contains("status: succeeded"), "{shown}");
    let log = succeeded(&run(hookrunner(&url, None, &["log", &id, "--follow"])).await);
    assert_eq!(log, "done\n");
}

/// `send` to a hook: exit 0 when a job was accepted, 3 when the answer says nothing ran.
mod send {
    use super::*;

    const SEND_CONFIG: &str = r#"
hooks:
  - id: deploy
    signature: {github: {secret: s3cret}}
    run: {command: ["true"]}
    response: {mode: async}
  - id: main-only
    signature: {github: {secret: s3cret}}
    when: {payload.ref: refs/heads/main}
    run: {command: ["true"]}
"#;

    async fn send(app: &TestApp, hook: &str, delivery: &str) -> Output {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookrunner"));
        command
            .args(["send", &format!("{}/hooks/{hook}", app.address)])
            .args([
                "--provider",
                "github",
                "--secret",
                "s3cret",
                "--event",
                "push",
            ])
            .args(["--id", delivery, "--data", r#"{"ref": "refs/heads/dev"}"#])
            .env_remove("HOOKRUNNER_SECRET")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        run(command).await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn send_exits_0_for_an_accepted_job_and_3_for_a_duplicate_or_a_skip() {
        let app = TestApp::spawn(SEND_CONFIG).await;

        let accepted = send(&app, "deploy", "delivery-1").await;
        assert_eq!(accepted.status.code(), Some(0), "{}", stderr(&accepted));
        assert!(stdout(&accepted).starts_with("HTTP/1.1 202 Accepted\n"));
        assert_eq!(stderr(&accepted), "");
        let body: Value = serde_json::from_str(stdout(&accepted).lines().nth(1).unwrap()).unwrap();
        let first = body["job_id"].as_str().unwrap();

        let duplicate = send(&app, "deploy", "delivery-1").await;
        assert_eq!(duplicate.status.code(), Some(3), "{}", stdout(&duplicate));
        assert!(stdout(&duplicate).starts_with("HTTP/1.1 200 OK\n"));
        assert_eq!(
            stderr(&duplicate),
            format!("hookrunner: nothing ran: `duplicate`: a redelivery of job {first}\n")
        );

        let skipped = send(&app, "main-only", "delivery-2").await;
        assert_eq!(skipped.status.code(), Some(3), "{}", stdout(&skipped));
        assert!(stdout(&skipped).starts_with("HTTP/1.1 200 OK\n"));
        assert_eq!(
            stderr(&skipped),
            "hookrunner: nothing ran: `skipped`: the hook's `when` does not hold for this request\n"
        );
    }
}
