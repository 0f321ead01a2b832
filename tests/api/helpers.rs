//! The test harness: a real server on port 0 over a fresh temp dir, and one helper per endpoint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac};
use hookrunner::app::Application;
use serde_json::Value;
use sha2::Sha256;
use tempfile::TempDir;

pub struct TestApp {
    pub address: String,
    pub dir: TempDir,
    pub client: reqwest::Client,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    /// Starts a server on the config text. `$DIR` in the text stands for the test's temp dir.
    pub async fn spawn(config: &str) -> TestApp {
        TestApp::spawn_with_env(config, &|_| None).await
    }

    /// Like `spawn`, with `env:` secrets read through `lookup_env`.
    pub async fn spawn_with_env(
        config: &str,
        lookup_env: &dyn Fn(&str) -> Option<String>,
    ) -> TestApp {
        TestApp::build(config, lookup_env, &["127.0.0.1:0"]).await
    }

    /// Like `spawn`, listening on `listen` as given (`$DIR` stands for the temp dir there too);
    /// `address` is the first TCP listener's port on 127.0.0.1.
    pub async fn spawn_listening(config: &str, listen: &[&str]) -> TestApp {
        TestApp::build(config, &|_| None, listen).await
    }

    async fn build(
        config: &str,
        lookup_env: &dyn Fn(&str) -> Option<String>,
        listen: &[&str],
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let in_dir = |text: &str| text.replace("$DIR", dir.path().to_str().unwrap());
        let text = in_dir(config);
        let file = dir.path().join("hooks.yaml");
        std::fs::write(&file, &text).unwrap();
        let mut config = hookrunner::config::load_str(&text, &file, lookup_env)
            .unwrap_or_else(|errors| panic!("test config is invalid:\n{}", errors.render()));
        config.server.listen = listen.iter().map(|address| in_dir(address)).collect();
        config.server.state_dir = dir.path().join("state");
        let application = Application::build(config).await.expect("the server builds");
        let address = format!("http://127.0.0.1:{}", application.port());
        tokio::spawn(application.run_until_stopped());
        TestApp {
            address,
            dir,
            client: reqwest::Client::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn post_hook(
        &self,
        id: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Answer {
        self.request(
            reqwest::Method::POST,
            &format!("/hooks/{id}"),
            body,
            headers,
        )
        .await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get_job(&self, id: &str) -> Answer {
        self.request(reqwest::Method::GET, &format!("/jobs/{id}"), "", &[])
            .await
    }

    /// `POST /jobs/{id}/rerun` with `headers` (the admin token).
    pub async fn rerun_job(&self, id: &str, headers: &[(&str, &str)]) -> Answer {
        self.request(
            reqwest::Method::POST,
            &format!("/jobs/{id}/rerun"),
            "",
            headers,
        )
        .await
    }

    /// Polls a job until `done` holds, failing after a deadline.
    pub async fn wait_for_job(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let answer = self.get_job(id).await;
            if answer.status == 200 && done(&answer.body) {
                return answer.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} never got there: {:?}",
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// GitHub's `X-Hub-Signature-256` value for a body.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Waits until a file exists and returns its text.
pub async fn read_when_written(path: &Path) -> String {
    read_when(path, |_| true).await
}

/// Waits until a file holds a whole line (a shell's `>` makes the file before the command writes
/// to it) and returns its text.
pub async fn read_line_when_written(path: &Path) -> String {
    read_when(path, |text| text.ends_with('\n')).await
}

async fn read_when(path: &Path, complete: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if complete(&text) {
                return text;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} was never written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// The real `hookrunner` binary as a child process, its stderr in `server.log`; killed when dropped.
pub struct Binary {
    child: std::process::Child,
    log: PathBuf,
}

impl Binary {
    pub fn spawn(
        args: &[&str],
        dir: &Path,
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Binary {
        Binary::spawn_through(&[], args, dir, configure)
    }

    /// Like `spawn`, started through `wrapper` (a program and its arguments, then the binary's
    /// path and `args`), e.g. a shell that sets a limit and `exec`s the binary.
    pub fn spawn_through(
        wrapper: &[&str],
        args: &[&str],
        dir: &Path,
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Binary {
        let log = dir.join("server.log");
        let binary = env!("CARGO_BIN_EXE_hookrunner");
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = std::process::Command::new(program);
                command.args(wrapper_args).arg(binary);
                command
            }
            None => std::process::Command::new(binary),
        };
        command
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        configure(&mut command);
        Binary {
            child: command.spawn().unwrap(),
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit and returns its exit code (`None` when a signal ended it).
    pub async fn exit_code(&mut self) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not exit:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `hookrunner check` on `file`: its exit code, stdout and stderr, the file's path shown as
/// `hooks.yaml`.
pub fn check_file(file: &Path) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookrunner"))
        .args(["check", "--config"])
        .arg(file)
        .env_remove("HOOKRUNNER_CONFIG")
        .output()
        .expect("the binary runs");
    let shown =
        |bytes: &[u8]| String::from_utf8_lossy(bytes).replace(file.to_str().unwrap(), "hooks.yaml");
    (
        output.status.code().unwrap(),
        shown(&output.stdout),
        shown(&output.stderr),
    )
}

/// Writes `text` to `hooks.yaml` in a fresh temp dir and runs `hookrunner check` on it.
pub fn check_text(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hooks.yaml");
    std::fs::write(&file, text).unwrap();
    check_file(&file)
}

/// Starts the real binary serving `config` on a free loopback port, through `wrapper` when it is not
/// empty (see [`Binary::spawn_through`]), with `extra` arguments after the listen address, and
/// waits until `/readyz` answers 200. Returns the server and its base URL.
pub async fn serve_binary(
    config: &Path,
    wrapper: &[&str],
    extra: &[&str],
    configure: impl FnOnce(&mut std::process::Command),
) -> (Binary, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    let binary = Binary::spawn_through(wrapper, &args, config.parent().unwrap(), configure);
    let address = format!("http://{listen}");
    eventually_status(&format!("{address}/readyz"), reqwest::Method::GET, 200).await;
    (binary, address)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status a request gets, or 0 when nothing answers.
pub async fn status_of(url: &str, method: reqwest::Method) -> u16 {
    match reqwest::Client::new().request(method, url).send().await {
        Ok(answer) => answer.status().as_u16(),
        Err(_) => 0,
    }
}

/// Polls `url` until it answers `expected`, failing after a deadline.
pub async fn eventually_status(url: &str, method: reqwest::Method, expected: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = status_of(url, method.clone()).await;
        if status == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} answers {status}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Binary {
    /// Like `spawn`, under `ulimit -n limit`: a shell lowers the open-file limit, then execs the binary.
    pub fn spawn_with_file_limit(limit: u32, args: &[&str], dir: &Path) -> Binary {
        let log = dir.join("server.log");
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_hookrunner"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        Binary {
            child: command.spawn().unwrap(),
            log,
        }
    }
}

/// Polls `check` on the server's log until it holds, with a deadline.
pub async fn eventually_logged(server: &Binary, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check(&server.log()) {
        assert!(
            std::time::Instant::now() < deadline,
            "never logged: {what}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
