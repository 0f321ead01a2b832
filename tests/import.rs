//! `hookrunner import-webhook` as a user runs it: the real binary on the examples of adnanh/webhook's
//! own docs, each converted file validated by `hookrunner check`, and one converted GitHub hook
//! served and triggered end to end.
//!
//! The fixtures in `tests/fixtures/webhook/` are the examples of adnanh/webhook's
//! `docs/Hook-Examples.md`, copied as the docs give them; each row below names its section.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/webhook")
        .join(name)
}

fn hookrunner() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookrunner"));
    for name in [
        "HOOKRUNNER_CONFIG",
        "HOOKRUNNER_LISTEN",
        "HOOKRUNNER_STATE_DIR",
        "HOOKRUNNER_LOG_FORMAT",
    ] {
        command.env_remove(name);
    }
    command
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn finished(output: Output) -> Run {
    Run {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn import(file: &Path) -> Run {
    finished(
        hookrunner()
            .arg("import-webhook")
            .arg(file)
            .output()
            .expect("the binary runs"),
    )
}

fn check(config: &Path, env: &[(&str, &str)]) -> Run {
    let mut command = hookrunner();
    command.arg("check").arg("--config").arg(config);
    for (name, value) in env {
        command.env(name, value);
    }
    finished(command.output().expect("the binary runs"))
}

/// Examples that use only what hookrunner can express: (fixture, section of Hook-Examples.md,
/// the `env:` secrets the converted file reads).
const CONVERTED: &[(&str, &str, &[&str])] = &[
    (
        "github.json",
        "Incoming Github webhook",
        &["WEBHOOK_SECRET"],
    ),
    ("bitbucket.json", "Incoming Bitbucket webhook", &[]),
    ("gogs.json", "Incoming Gogs webhook", &["WEBHOOK_SECRET"]),
    (
        "gitea.json",
        "Incoming Gitea webhook (JSON version)",
        &["WEBHOOK_SECRET"],
    ),
    (
        "gitea.yaml",
        "Incoming Gitea webhook (YAML version)",
        &["WEBHOOK_SECRET"],
    ),
    ("travis.json", "Travis CI webhook", &[]),
    ("json-array.json", "JSON Array Payload", &[]),
    // Plex posts multipart bodies, with the JSON as a file part.
    ("multipart.json", "Multipart Form Data", &[]),
    ("xml.json", "XML Payload", &[]),
    // Not from the docs: adnanh's signatures inside `or`, which become `signature: {any: [...]}`.
    (
        "or-signatures.json",
        "signatures inside `or`",
        &["EITHER_WEBHOOK_SECRET", "EITHER_WEBHOOK_SECRET_2"],
    ),
    (
        "string-arguments.json",
        "Pass string arguments to command",
        &[],
    ),
    (
        "acr.json",
        "Incoming Azure Container Registry (ACR) webhook",
        &["ACR_PUSH_EVENT_WEBHOOK_TOKEN"],
    ),
    (
        "gitlab.json",
        "Incoming Gitlab Webhook",
        &["REDEPLOY_WEBHOOK_TOKEN"],
    ),
    ("slack.json", "Slack slash command", &[]),
    (
        "scalr.json",
        "Incoming Scalr Webhook",
        &["REDEPLOY_WEBHOOK_SECRET"],
    ),
    // The docs' "Pass File-to-command sample" with its `//` comments removed.
    (
        "pass-file-uncommented.json",
        "Pass File-to-command sample",
        &[],
    ),
    (
        "simple-one.json",
        "A simple webhook with a secret key in GET query",
        &["SIMPLE_ONE_WEBHOOK_TOKEN"],
    ),
    (
        "synology.json",
        "Receive Synology DSM notifications",
        &["SYNOLOGY_WEBHOOK_TOKEN"],
    ),
];

/// Examples that use what hookrunner cannot express: (fixture, section, the error expected).
const REFUSED: &[(&str, &str, &str)] = &[(
    // The docs' version has `//` comments, which no JSON or YAML parser (adnanh's included) reads.
    "pass-file.json",
    "Pass File-to-command sample",
    "invalid JSON: key must be a string at line 11 column 35",
)];

/// The id of the one hook of a converted file.
fn hook_id(config: &str) -> String {
    config
        .lines()
        .find_map(|line| line.strip_prefix("- id: "))
        .expect("a hook")
        .to_string()
}

#[test]
fn the_docs_examples_hookrunner_can_express_convert_and_pass_check() {
    for (name, section, secrets) in CONVERTED {
        let converted = import(&fixture(name));
        assert_eq!(converted.code, 0, "{section}: {}", converted.stderr);
        assert!(
            converted.stdout.starts_with(&format!(
                "# Converted from {} by `hookrunner import-webhook`.\n",
                fixture(name).display()
            )),
            "{section}: {}",
            converted.stdout
        );
        for secret in *secrets {
            assert!(
                converted.stderr.contains(&format!(
                    "note: hook `{}`: set `{secret}`",
                    hook_id(&converted.stdout)
                )),
                "{section}: {}",
                converted.stderr
            );
        }

        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("hooks.yaml");
        std::fs::write(&config, &converted.stdout).unwrap();
        let env: Vec<(&str, &str)> = secrets.iter().map(|name| (*name, "change-me")).collect();
        let checked = check(&config, &env);
        assert_eq!(
            checked.code, 0,
            "{section}: {}\n{}",
            checked.stderr, converted.stdout
        );
        assert!(
            checked.stdout.contains("ok, 1 hook"),
            "{section}: {}",
            checked.stdout
        );
        if !secrets.is_empty() {
            let unset = check(&config, &[]);
            assert_eq!(
                unset.code, 1,
                "{section}: the secret comes from the environment"
            );
        }
    }
}

#[test]
fn the_docs_examples_hookrunner_cannot_express_are_refused_naming_hook_and_key() {
    for (name, section, error) in REFUSED {
        let refused = import(&fixture(name));
        assert_eq!(refused.code, 1, "{section}: {}", refused.stdout);
        assert_eq!(refused.stdout, "", "{section}: nothing is printed");
        let file = fixture(name).display().to_string();
        assert!(
            refused.stderr.contains(&format!("{file}: {error}")),
            "{section}: expected `{error}` in:\n{}",
            refused.stderr
        );
        assert!(
            refused.stderr.contains("nothing was converted"),
            "{section}: {}",
            refused.stderr
        );
    }
}

#[test]
fn a_template_file_and_a_second_file_make_one_config_that_passes_check() {
    let converted = finished(
        hookrunner()
            .arg("import-webhook")
            .arg(fixture("template.json"))
            .arg(fixture("second.yaml"))
            .output()
            .expect("the binary runs"),
    );
    assert_eq!(converted.code, 0, "{}", converted.stderr);
    let stdout = &converted.stdout;
    assert!(stdout.contains("secret: env:XXXTEST_SECRET"), "{stdout}");
    // adnanh's variable names are kept, dots included; a shell cannot read that one.
    assert!(
        stdout.contains("HOOK_head_commit.id: '{{ payload.head_commit.id }}'"),
        "{stdout}"
    );
    assert!(stdout.contains("- id: sendgrid/dir"), "{stdout}");
    assert!(stdout.contains("'{{ request.remote_addr }}'"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hooks.yaml");
    std::fs::write(&config, stdout).unwrap();
    let checked = check(&config, &[("XXXTEST_SECRET", "change-me")]);
    assert_eq!(checked.code, 0, "{}\n{stdout}", checked.stderr);
    assert!(checked.stdout.contains("ok, 2 hooks"), "{}", checked.stdout);
    assert!(
        checked
            .stderr
            .contains("a shell cannot read `HOOK_head_commit.id`")
            || checked
                .stdout
                .contains("a shell cannot read `HOOK_head_commit.id`"),
        "{}{}",
        checked.stdout,
        checked.stderr
    );
}

#[test]
fn secrets_inline_writes_the_files_secrets_and_passes_check_without_variables() {
    let converted = finished(
        hookrunner()
            .args(["import-webhook", "--secrets", "inline"])
            .arg(fixture("github.json"))
            .output()
            .expect("the binary runs"),
    );
    assert_eq!(converted.code, 0, "{}", converted.stderr);
    assert!(
        converted.stdout.contains("secret: mysecret"),
        "{}",
        converted.stdout
    );
    assert!(!converted.stderr.contains("note:"), "{}", converted.stderr);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hooks.yaml");
    std::fs::write(&config, &converted.stdout).unwrap();
    let checked = check(&config, &[]);
    assert_eq!(checked.code, 0, "{}", checked.stderr);
}

#[test]
fn secrets_go_inline_or_to_files_and_a_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        finished(
            hookrunner()
                .arg("import-webhook")
                .args(args)
                .arg(fixture("gitlab.json"))
                .output()
                .expect("the binary runs"),
        )
    };

    // Inline: the literal, and the file passes `check` with no variable set.
    let inline = run(&["--secrets", "inline"]);
    assert_eq!(inline.code, 0, "{}", inline.stderr);
    assert!(
        inline.stdout.contains("secret: <YOUR-GENERATED-TOKEN>"),
        "{}",
        inline.stdout
    );
    let config = dir.path().join("inline.yaml");
    std::fs::write(&config, &inline.stdout).unwrap();
    let checked = check(&config, &[]);
    assert_eq!(checked.code, 0, "{}", checked.stderr);

    // Files: one file per secret, 0600, in a 0700 folder made for them, read as `file:`.
    let secrets = dir.path().join("secrets");
    let files = run(&["--secrets", "files", secrets.to_str().unwrap()]);
    assert_eq!(files.code, 0, "{}", files.stderr);
    let written = secrets.join("redeploy-webhook");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "<YOUR-GENERATED-TOKEN>"
    );
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&written), 0o600);
    assert_eq!(mode(&secrets), 0o700);
    assert!(
        files
            .stdout
            .contains(&format!("secret: file:{}", written.display())),
        "{}",
        files.stdout
    );
    assert!(!files.stdout.contains("YOUR-GENERATED"), "{}", files.stdout);
    let config = dir.path().join("files.yaml");
    std::fs::write(&config, &files.stdout).unwrap();
    let checked = check(&config, &[]);
    assert_eq!(checked.code, 0, "{}", checked.stderr);

    // A second import never overwrites a secret file; a link is never followed, and a folder
    // that others may write to is refused.
    let again = run(&["--secrets", "files", secrets.to_str().unwrap()]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("there already"), "{}", again.stderr);
    assert_eq!(again.stdout, "");
    let linked = dir.path().join("linked");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&linked)
        .unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "untouched").unwrap();
    std::os::unix::fs::symlink(&target, linked.join("redeploy-webhook")).unwrap();
    let followed = run(&["--secrets", "files", linked.to_str().unwrap()]);
    assert_eq!(followed.code, 1, "{}", followed.stderr);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let open = run(&["--secrets", "files", shared.to_str().unwrap()]);
    assert_eq!(open.code, 1, "{}", open.stderr);
    assert!(open.stderr.contains("not yours alone"), "{}", open.stderr);
    assert!(!shared.join("redeploy-webhook").exists());

    // A dry run: the report only, nothing on stdout, no file written.
    let elsewhere = dir.path().join("not-made");
    let dry = run(&[
        "--dry-run",
        "--secrets",
        "files",
        elsewhere.to_str().unwrap(),
    ]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.stdout, "");
    assert!(
        dry.stderr.contains("1 hook would convert"),
        "{}",
        dry.stderr
    );
    assert!(!elsewhere.exists());

    // The default names the variable, short: not `REDEPLOY_WEBHOOK_WEBHOOK_TOKEN`.
    let env = run(&["--secrets", "env"]);
    assert!(
        env.stdout.contains("secret: env:REDEPLOY_WEBHOOK_TOKEN\n"),
        "{}",
        env.stdout
    );
    assert!(
        env.stderr
            .contains("set `REDEPLOY_WEBHOOK_TOKEN` to the token"),
        "{}",
        env.stderr
    );

    // Usage errors exit 2.
    assert_eq!(run(&["--secrets", "files"]).code, 2);
    assert_eq!(run(&["--secrets", "vault"]).code, 2);
}

#[test]
fn a_missing_file_is_an_error() {
    let missing = import(Path::new("/nonexistent/hooks.json"));
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .starts_with("/nonexistent/hooks.json: cannot read the file:"),
        "{}",
        missing.stderr
    );
}

/// A server started from the binary, killed when the test ends, however it ends.
struct Server {
    child: Child,
    address: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(config: &Path, state_dir: &Path, env: &[(&str, &str)]) -> Server {
        // A port the OS says is free; it is released just before the server binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let log = state_dir.with_extension("log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = hookrunner();
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--state-dir")
            .arg(state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file));
        for (name, value) in env {
            command.env(name, value);
        }
        let mut server = Server {
            child: command.spawn().expect("the server starts"),
            address: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let health = client
                .get(format!("{}/healthz", server.address))
                .send()
                .await;
            if health.is_ok_and(|answer| answer.status() == 200) {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the server exited with {status}:\n{}", server.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server never became healthy:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn a_converted_github_hook_runs_on_a_signed_push_to_main() {
    let dir = tempfile::tempdir().unwrap();
    let dir_text = dir.path().to_str().unwrap();
    let secret = "It's a Secret to Everybody";

    // The command records its arguments and `$REF` in a file named after the commit; it writes a
    // temporary file and renames it, so a reader never sees half of it.
    let script = dir.path().join("record.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf '%s\\n' \"$@\" \"$REF\" > \"ran-$1.tmp\" && mv \"ran-$1.tmp\" \"ran-$1.txt\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hooks = serde_json::json!([{
        "id": "deploy",
        "execute-command": script.to_str().unwrap(),
        "command-working-directory": dir_text,
        "pass-arguments-to-command": [
            {"source": "payload", "name": "head_commit.id"},
            {"source": "payload", "name": "pusher.name"}
        ],
        "pass-environment-to-command": [{"source": "payload", "name": "ref", "envname": "REF"}],
        "trigger-rule": {"and": [
            {"match": {"type": "payload-hmac-sha256", "secret": secret,
                       "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}},
            {"match": {"type": "value", "value": "refs/heads/main",
                       "parameter": {"source": "payload", "name": "ref"}}}
        ]}
    }]);
    let source = dir.path().join("hooks.json");
    std::fs::write(&source, serde_json::to_string_pretty(&hooks).unwrap()).unwrap();

    let converted = import(&source);
    assert_eq!(converted.code, 0, "{}", converted.stderr);
    assert!(
        converted.stderr.contains("set `DEPLOY_WEBHOOK_SECRET`"),
        "{}",
        converted.stderr
    );
    assert!(
        !converted.stdout.contains(secret),
        "the secret stays out of the converted file"
    );
    let config = dir.path().join("converted.yaml");
    std::fs::write(&config, &converted.stdout).unwrap();

    let server = Server::start(
        &config,
        &dir.path().join("state"),
        &[("DEPLOY_WEBHOOK_SECRET", secret)],
    )
    .await;
    let client = reqwest::Client::new();
    let push = |commit: &str, branch: &str| {
        serde_json::json!({
            "ref": format!("refs/heads/{branch}"),
            "head_commit": {"id": commit},
            "pusher": {"name": "octocat"}
        })
        .to_string()
    };
    let post = |body: String, signature: String, delivery: &str| {
        client
            .post(format!("{}/hooks/deploy", server.address))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", delivery)
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
    };

    let forged = push("forged", "main");
    let answer = post(
        forged.clone(),
        github_signature("wrong", forged.as_bytes()),
        "1",
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 401, "a bad signature is refused");

    let other_branch = push("elsewhere", "dev");
    let answer = post(
        other_branch.clone(),
        github_signature(secret, other_branch.as_bytes()),
        "2",
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let skipped: Value = answer.json().await.unwrap();
    assert_eq!(skipped["status"], "skipped", "{skipped}");

    let to_main = push("abc123", "main");
    let answer = post(
        to_main.clone(),
        github_signature(secret, to_main.as_bytes()),
        "3",
    )
    .await
    .unwrap();
    assert_eq!(
        answer.status(),
        202,
        "adnanh answered at once; so does the converted hook"
    );
    let accepted: Value = answer.json().await.unwrap();
    let job_id = accepted["job_id"].as_str().expect("a job id").to_string();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let job = loop {
        let job: Value = client
            .get(format!("{}/jobs/{job_id}", server.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !matches!(job["status"].as_str(), Some("queued" | "running")) {
            break job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job never finished: {job}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job}\n{}", server.log());
    let recorded = std::fs::read_to_string(dir.path().join("ran-abc123.txt")).unwrap();
    assert_eq!(recorded, "abc123\noctocat\nrefs/heads/main\n");
    assert!(!dir.path().join("ran-forged.txt").exists());
    assert!(!dir.path().join("ran-elsewhere.txt").exists());
}
