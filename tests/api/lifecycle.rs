//! The real binary across crashes and signals: accepted jobs survive `kill -9`, SIGTERM lets a running
//! job finish within `shutdown_grace`, and a job still running after it is recorded `interrupted`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::helpers::{eventually_status, free_port, read_when_written, Binary};

struct Server {
    binary: Binary,
    address: String,
}

impl Server {
    async fn start(config: &Path, port: u16) -> Server {
        let listen = format!("127.0.0.1:{port}");
        let args = [
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &listen,
        ];
        let dir = config.parent().unwrap();
        let binary = Binary::spawn(&args, dir, |command| {
            command.env("RUST_LOG", "warn");
        });
        let address = format!("http://{listen}");
        eventually_status(&format!("{address}/readyz"), reqwest::Method::GET, 200).await;
        Server { binary, address }
    }

    async fn job(&self, id: &str) -> (u16, Value) {
        let answer = reqwest::get(format!("{}/jobs/{id}", self.address))
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }
}

fn write_config(dir: &Path, hooks: &str, grace: &str) -> PathBuf {
    let file = dir.join("hooks.yaml");
    let text = format!("server:\n  state_dir: state\n  shutdown_grace: {grace}\nhooks:\n{hooks}")
        .replace("$DIR", dir.to_str().unwrap());
    std::fs::write(&file, text).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread")]
async fn every_job_that_got_a_202_survives_kill_9_and_reaches_a_final_status() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = "  - id: burst\n    signature: none\n    concurrency: {mode: parallel, limit: 2}\n    run: {shell: 'sleep 0.1; echo \"$HOOK_JOB_ID\" >> done', workdir: $DIR}\n    response: {mode: async}\n";
    let config = write_config(dir.path(), hooks, "5s");
    let port = free_port();
    let mut server = Server::start(&config, port).await;
    let client = reqwest::Client::new();
    let url = format!("{}/hooks/burst", server.address);
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let pid = server.binary.pid();
    let requests = (0..60).map(|_| {
        let (client, url, accepted) = (client.clone(), url.clone(), accepted.clone());
        async move {
            let Ok(answer) = client.post(&url).send().await else {
                return;
            };
            if answer.status() != 202 {
                return;
            }
            let Ok(body) = answer.json::<Value>().await else {
                return;
            };
            let mut accepted = accepted.lock().unwrap();
            accepted.push(body["job_id"].as_str().unwrap().to_string());
            // Kill in the middle of the burst, while jobs are queued, running and being accepted.
            if accepted.len() == 20 {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    });
    join_all(requests).await;
    assert_eq!(server.binary.exit_code().await, None, "killed by a signal");
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= 20,
        "the burst got {} answers",
        accepted.len()
    );

    let restarted = Server::start(&config, port).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &accepted {
        loop {
            let (status, job) = restarted.job(id).await;
            assert_eq!(status, 200, "job {id} got a 202 but is gone after kill -9");
            let state = job["status"].as_str().unwrap().to_string();
            if state != "queued" && state != "running" {
                assert!(
                    state == "succeeded" || state == "interrupted",
                    "{id}: {state}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never finished: {state}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_jobs_committed_without_an_fsync_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = "  - id: quick\n    signature: none\n    concurrency: {mode: parallel}\n    run: {command: [/bin/echo, done]}\n    response: {mode: wait, include_output: true}\n";
    let config = write_config(dir.path(), hooks, "5s");
    let port = free_port();
    let mut server = Server::start(&config, port).await;
    let client = reqwest::Client::new();
    let url = format!("{}/hooks/quick", server.address);
    let mut answered = Vec::new();
    for _ in 0..20 {
        let answer = client.post(&url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        answered.push(body["job_id"].as_str().unwrap().to_string());
    }
    // Past the writer's 5 ms gathering window: the records are committed, though never fsynced.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.binary.signal(Signal::SIGKILL);
    assert_eq!(server.binary.exit_code().await, None, "killed by a signal");

    let restarted = Server::start(&config, port).await;
    for id in &answered {
        let (status, job) = restarted.job(id).await;
        assert_eq!(status, 200, "job {id} was answered, then lost to kill -9");
        assert_eq!(job["status"], "succeeded", "{id}: {job}");
        assert_eq!(job["exit_code"], 0, "{id}: {job}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_running_job_finish_within_the_grace_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = "  - id: deploy\n    signature: none\n    run: {shell: 'touch started; sleep 1; echo done > done', workdir: $DIR}\n";
    let config = write_config(dir.path(), hooks, "10s");
    let mut server = Server::start(&config, free_port()).await;
    let request = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{}/hooks/deploy", server.address))
            .send(),
    );
    read_when_written(&dir.path().join("started")).await;
    server.binary.signal(Signal::SIGTERM);
    let answer = request
        .await
        .unwrap()
        .expect("the running request is answered");
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["status"], "succeeded");
    assert_eq!(server.binary.exit_code().await, Some(0));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("done")).unwrap(),
        "done\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_still_running_after_the_grace_is_interrupted_and_the_queue_waits_for_the_next_start()
{
    let dir = tempfile::tempdir().unwrap();
    let hooks = "  - id: slow\n    signature: none\n    run: {shell: 'echo \"$HOOK_JOB_ID\" >> started; sleep 30', workdir: $DIR, kill_after: 1s}\n    response: {mode: async}\n";
    let config = write_config(dir.path(), hooks, "500ms");
    let port = free_port();
    let mut server = Server::start(&config, port).await;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let answer: Value = client
            .post(format!("{}/hooks/slow", server.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(answer["job_id"].as_str().unwrap().to_string());
    }
    read_when_written(&dir.path().join("started")).await;
    let stopping = Instant::now();
    server.binary.signal(Signal::SIGTERM);
    assert_eq!(server.binary.exit_code().await, Some(0));
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "took {:?}",
        stopping.elapsed()
    );

    let restarted = Server::start(&config, port).await;
    assert_eq!(restarted.job(&ids[0]).await.1["status"], "interrupted");
    // The queued one was kept and runs now.
    let deadline = Instant::now() + Duration::from_secs(10);
    while restarted.job(&ids[1]).await.1["status"] != "running" {
        assert!(
            Instant::now() < deadline,
            "the queued job did not run after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
