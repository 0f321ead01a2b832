//! Real `hookrunner serve` processes on one PostgreSQL database, as users run a cluster: each
//! its own port, state directory and `--instance` name, the store given as `--store env:...`.
//! The commands of their hooks append marker lines (`start`/`end`, job, instance) to one shared
//! file, so the order of its lines is the order things happened, whichever instance wrote them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

pub const ADMIN_TOKEN: &str = "admin-s3cret";
/// The variable the instances read their store URL from (`--store env:...`).
const STORE_VARIABLE: &str = "HOOKRUNNER_TEST_STORE_URL";
/// How long a test waits for anything the cluster does, lease expiry included.
pub const DEADLINE: Duration = Duration::from_secs(40);

/// A shell snippet that waits (at most about 40 s) for the file `release` in the marker folder.
pub const UNTIL_RELEASED: &str =
    "for i in $(seq 2000); do [ -e release ] && break; sleep 0.02; done";

/// One `hookrunner serve` process.
pub struct Node {
    pub name: String,
    pub address: String,
    child: Child,
    dir: TempDir,
}

impl Node {
    /// Starts `serve` with `config` (the text of `hooks.yaml`) in a new folder; not yet ready.
    pub fn spawn(url: &str, name: &str, config: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hooks.yaml");
        std::fs::write(&file, config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_hookrunner"))
            .args(["serve", "--config", file.to_str().unwrap(), "--listen"])
            .arg(&listen)
            .args([
                "--store",
                &format!("env:{STORE_VARIABLE}"),
                "--instance",
                name,
            ])
            .env_remove("HOOKRUNNER_STORE")
            .env_remove("HOOKRUNNER_INSTANCE")
            .env(STORE_VARIABLE, url)
            // What the hooks' commands write as the instance that ran them.
            .env("MARK_INSTANCE", name)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
            .spawn()
            .unwrap();
        Node {
            name: name.to_string(),
            address: format!("http://{listen}"),
            child,
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&mut self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(answer) = reqwest::get(format!("{}/readyz", self.address)).await {
                if answer.status() == 200 {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("`{}` exited ({status}):\n{}", self.name, self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{}` is not ready:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `kill -9`: the process ends at once, saying nothing to the database.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the process to exit; its exit code (`None` for a signal).
    pub async fn exit_code(&mut self) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{}` did not exit:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A request with the admin token; the status, headers and body (JSON when it parses).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("`{}` does not answer: {error}", self.name));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, hook: &str, body: &str) -> Answer {
        self.request(reqwest::Method::POST, &format!("/hooks/{hook}"), body, &[])
            .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request(reqwest::Method::GET, path, "", &[]).await
    }

    /// Posts to an `async` hook, which must answer 202; the job's id.
    pub async fn accepted(&self, hook: &str, body: &str) -> String {
        let answer = self.post(hook, body).await;
        assert_eq!(answer.status, 202, "{}: {:?}", self.name, answer.body);
        answer.body["job_id"].as_str().unwrap().to_string()
    }

    /// Ends the process the way an operator does (SIGTERM), without waiting.
    fn terminate(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // SIGTERM first, so the instance ends its commands' process groups (`shutdown_grace`).
        self.terminate();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

/// Instances `web-1`, `web-2`, ... (three unless a test asks for another number) serving one
/// config on one database, and the folder the commands write their markers in.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub marks: TempDir,
    pub config: String,
}

impl Cluster {
    /// `server` holds extra lines of `server:` (indented by 2), `hooks` the hooks; `$MARKS`
    /// stands for the marker folder.
    pub async fn start(url: &str, server: &str, hooks: &str) -> Cluster {
        Cluster::start_with_lease(url, "3s", server, hooks).await
    }

    /// Like [`Cluster::start`], with `lease` as given (`heartbeat` stays 1s).
    pub async fn start_with_lease(url: &str, lease: &str, server: &str, hooks: &str) -> Cluster {
        Cluster::start_instances(url, 3, lease, server, hooks).await
    }

    /// Like [`Cluster::start_with_lease`], with `count` instances.
    pub async fn start_instances(
        url: &str,
        count: usize,
        lease: &str,
        server: &str,
        hooks: &str,
    ) -> Cluster {
        let marks = tempfile::tempdir().unwrap();
        let config = format!(
            "server:\n  heartbeat: 1s\n  lease: {lease}\n  shutdown_grace: 1s\n  admin_token: {ADMIN_TOKEN}\n{server}hooks:\n{hooks}"
        )
        .replace("$MARKS", marks.path().to_str().unwrap());
        let mut nodes: Vec<Node> = (1..=count)
            .map(|n| Node::spawn(url, &format!("web-{n}"), &config))
            .collect();
        for node in &mut nodes {
            node.ready().await;
        }
        Cluster {
            nodes,
            marks,
            config,
        }
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|node| node.name == name).unwrap()
    }

    /// The first node other than `name`.
    pub fn other_than(&self, name: &str) -> &Node {
        self.nodes.iter().find(|node| node.name != name).unwrap()
    }

    /// Polls `GET /jobs/{id}` (round-robin over the live nodes) until `done` holds.
    pub async fn job_until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut turn = 0;
        loop {
            let node = &self.nodes[turn % self.nodes.len()];
            turn += 1;
            let answer = node.get(&format!("/jobs/{id}")).await;
            if answer.status == 200 && done(&answer.body) {
                return answer.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} never got there: {} {:?}",
                answer.status,
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until job `id` has a final status, and returns its body.
    pub async fn finished(&self, id: &str) -> Value {
        self.job_until(id, |job| {
            !matches!(job["status"].as_str(), Some("queued" | "running"))
        })
        .await
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.marks.path().join(name)
    }

    /// Lets every command waiting in [`UNTIL_RELEASED`] go on.
    pub fn release(&self) {
        std::fs::write(self.path("release"), "").unwrap();
    }

    /// The marker lines of `trace` so far, in the order they were written.
    pub fn trace(&self) -> Vec<Mark> {
        read_trace(&self.path("trace"))
    }

    /// Waits until `trace` holds `count` lines of `event`.
    pub async fn marks(&self, event: &str, count: usize) -> Vec<Mark> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let marks: Vec<Mark> = self
                .trace()
                .into_iter()
                .filter(|mark| mark.event == event)
                .collect();
            if marks.len() >= count {
                return marks;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} `{event}` marks never came: {marks:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One line a command wrote: `start|end JOB_ID INSTANCE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub event: String,
    pub job: String,
    pub instance: String,
}

fn read_trace(path: &Path) -> Vec<Mark> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut words = line.split(' ');
            Some(Mark {
                event: words.next()?.to_string(),
                job: words.next()?.to_string(),
                instance: words.next()?.to_string(),
            })
        })
        .collect()
}

/// A hook running `body` between a `start` and an `end` marker, in the marker folder. `extra`
/// holds more keys of the hook (indented by 4). Its shell may not hold a single quote.
pub fn hook(id: &str, extra: &str, body: &str) -> String {
    signed_hook(id, "none", extra, body)
}

/// Like [`hook`], with `signature` as given.
pub fn signed_hook(id: &str, signature: &str, extra: &str, body: &str) -> String {
    let mark = |event: &str| format!("echo \"{event} $HOOK_JOB_ID $MARK_INSTANCE\" >> trace");
    format!(
        "  - id: {id}\n    signature: {signature}\n    run:\n      shell: '{}; {body}; {}'\n      workdir: $MARKS\n      env_passthrough: [MARK_INSTANCE]\n{extra}",
        mark("start"),
        mark("end"),
    )
}

/// Whether a process is gone (or only a zombie nobody reaped yet).
pub fn process_is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

pub const ASYNC: &str = "    response: {mode: async}\n";

pub fn status(job: &Value) -> &str {
    job["status"].as_str().unwrap_or_default()
}

/// The `start` marks of `job` in the trace.
pub fn starts<'a>(trace: &'a [Mark], job: &str) -> Vec<&'a Mark> {
    trace
        .iter()
        .filter(|mark| mark.event == "start" && mark.job == job)
        .collect()
}

/// Waits until process `pid` is gone.
pub async fn gone(pid: i32) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !process_is_gone(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads a file once it exists and ends with a line break.
pub async fn loop_until_read(path: &std::path::Path) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `path` on `node` answers `status`; that answer.
pub async fn eventually_status(node: &Node, path: &str, status: u16) -> Answer {
    crate::helpers::eventually(DEADLINE, &format!("{path} answers {status}"), || async {
        let answer = node.get(path).await;
        (answer.status == status).then_some(answer)
    })
    .await
}
