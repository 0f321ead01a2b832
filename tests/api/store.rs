//! The job store's files under a running server: deleted, replaced or out of room, the server
//! says so (`async` 503, `/readyz` 503) rather than accept jobs a restart would lose; its files are
//! private; an empty or corrupt database is refused with what to do.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hookrunner::app::Application;
use serde_json::Value;

use crate::helpers::{serve_binary, Binary, TestApp};

const ASYNC_HOOK: &str = "hooks:
  - id: later
    signature: none
    concurrency: {mode: parallel}
    run: {command: [/bin/true]}
    response: {mode: async}
";

async fn readyz(app: &TestApp) -> u16 {
    app.request(reqwest::Method::GET, "/readyz", "", &[])
        .await
        .status
}

/// An `async` trigger is refused with `store_unavailable` and `Retry-After`, and `/readyz` fails.
async fn assert_store_unavailable(app: &TestApp) {
    let answer = app.post_hook("later", "{}", &[]).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (503, Some("store_unavailable")),
        "{:?}",
        answer.body
    );
    assert!(answer.headers.contains_key("retry-after"));
    assert_eq!(readyz(app).await, 503);
}

/// Starts a server with `ASYNC_HOOK`, checks that it takes jobs, lets `change` act on its
/// database's path, then checks that it no longer does.
async fn after_changing_the_database(change: impl FnOnce(&Path)) {
    let app = TestApp::spawn(ASYNC_HOOK).await;
    assert_eq!(app.post_hook("later", "{}", &[]).await.status, 202);
    assert_eq!(readyz(&app).await, 200);
    change(&app.path("state/hookrunner.db"));
    assert_store_unavailable(&app).await;
}

#[tokio::test]
async fn a_database_deleted_under_the_server_makes_async_triggers_and_readyz_503() {
    after_changing_the_database(|database| std::fs::remove_file(database).unwrap()).await;
}

#[tokio::test]
async fn a_database_replaced_under_the_server_makes_async_triggers_and_readyz_503() {
    after_changing_the_database(|database| {
        let copy = database.with_extension("copy");
        std::fs::copy(database, &copy).unwrap();
        std::fs::rename(&copy, database).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_write_ahead_log_deleted_under_the_server_makes_async_triggers_and_readyz_503() {
    after_changing_the_database(|database| {
        std::fs::remove_file(database.with_extension("db-wal")).unwrap();
    })
    .await;
}

fn write_config(dir: &Path) -> PathBuf {
    let file = dir.join("hooks.yaml");
    std::fs::write(&file, format!("server:\n  state_dir: state\n{ASYNC_HOOK}")).unwrap();
    file
}

/// Starts the binary on `config`, through `wrapper` if not empty, and waits until it is ready.
async fn serve(config: &Path, wrapper: &[&str]) -> (Binary, String) {
    serve_binary(config, wrapper, &[], |command| {
        command.env("RUST_LOG", "warn");
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_store_cannot_grow_async_triggers_and_readyz_get_503_and_every_202_survives() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    // Writes that would take a file past the limit fail with EFBIG, as they would with ENOSPC on a
    // full disk; the signal that would otherwise kill the server is ignored.
    let limited = "trap '' XFSZ; ulimit -f 1024; exec \"$0\" \"$@\"";
    let (binary, address) = serve(&config, &["sh", "-c", limited]).await;
    let client = reqwest::Client::new();
    let mut accepted = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        assert!(
            Instant::now() < deadline,
            "{} jobs accepted, none refused:\n{}",
            accepted.len(),
            binary.log()
        );
        let answer = client
            .post(format!("{address}/hooks/later"))
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let retry_after = answer.headers().contains_key("retry-after");
        let body: Value = answer.json().await.unwrap();
        match status {
            202 => accepted.push(body["job_id"].as_str().unwrap().to_string()),
            _ => break (status, body, retry_after),
        }
    };
    assert_eq!(
        (refused.0, refused.1["error"].as_str(), refused.2),
        (503, Some("store_unavailable"), true),
        "{:?}",
        refused.1
    );
    assert!(!accepted.is_empty());
    let ready = reqwest::get(format!("{address}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    drop(binary);

    let (_binary, address) = serve(&config, &[]).await;
    for id in &accepted {
        let job = reqwest::get(format!("{address}/jobs/{id}")).await.unwrap();
        assert_eq!(job.status(), 200, "job {id} got a 202 and is gone");
    }
}

/// Builds the server over `dir/state` as `serve` would, with `ASYNC_HOOK` and a `wait` hook.
async fn build(dir: &Path) -> anyhow::Result<Application> {
    let text = format!(
        "{ASYNC_HOOK}  - id: now\n    signature: none\n    run: {{command: [/bin/echo, hello]}}\n"
    );
    let mut config = hookrunner::config::load_str(&text, &dir.join("hooks.yaml"), &|_| None)
        .unwrap_or_else(|errors| panic!("test config is invalid:\n{}", errors.render()));
    config.server.listen = vec!["127.0.0.1:0".into()];
    config.server.state_dir = dir.join("state");
    Application::build(config).await
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn an_open_state_directory_and_its_files_are_made_private_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("logs")).unwrap();
    let database = state.join("hookrunner.db");
    rusqlite::Connection::open(&database)
        .unwrap()
        .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE left_by_hand (x);")
        .unwrap();
    let old_log = state.join("logs/old.log");
    std::fs::write(&old_log, "output of an old job\n").unwrap();
    for (path, open) in [
        (&state, 0o755),
        (&state.join("logs"), 0o755),
        (&database, 0o644),
        (&old_log, 0o644),
    ] {
        set_mode(path, open);
    }

    let application = build(dir.path()).await.expect("the server builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let answer: Value = reqwest::Client::new()
        .post(format!("{address}/hooks/now"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "succeeded", "{answer}");
    let new_log = state.join(format!("logs/{}.log", answer["job_id"].as_str().unwrap()));

    for (path, private) in [
        (state.clone(), 0o700),
        (state.join("logs"), 0o700),
        (database.clone(), 0o600),
        (database.with_extension("db-wal"), 0o600),
        (database.with_extension("db-shm"), 0o600),
        (old_log, 0o600),
        (new_log, 0o600),
    ] {
        assert_eq!(
            mode(&path),
            private,
            "{:o}: {}",
            mode(&path),
            path.display()
        );
    }
}

/// The error `Application::build` gives over `dir/state` holding `database` as its database.
async fn refusal(dir: &Path, database: &[u8]) -> String {
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(dir.join("state/hookrunner.db"), database).unwrap();
    match build(dir).await {
        Ok(_) => panic!("a server was built over a broken database"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn a_zero_length_database_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let error = refusal(dir.path(), b"").await;
    let database = dir.path().join("state/hookrunner.db");
    for needed in [
        &format!("`{}`", database.display()),
        "is empty",
        "move it aside",
    ] {
        assert!(error.contains(needed), "`{needed}` is not in: {error}");
    }
    assert_eq!(std::fs::metadata(&database).unwrap().len(), 0);
}

#[tokio::test]
async fn a_corrupt_database_is_refused_with_what_is_wrong_and_how_to_recover() {
    let dir = tempfile::tempdir().unwrap();
    let error = refusal(
        dir.path(),
        &b"these are not the pages of a database\n".repeat(200),
    )
    .await;
    let database = dir.path().join("state/hookrunner.db");
    for needed in [
        &format!("`{}`", database.display()),
        "not a hookrunner SQLite database",
        "corrupt",
        "move it aside",
    ] {
        assert!(error.contains(needed), "`{needed}` is not in: {error}");
    }
    assert!(!error.contains("writable"), "a misleading hint: {error}");
}
