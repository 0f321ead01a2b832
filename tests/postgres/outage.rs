//! The database going away and coming back, on a server of the test's own (stopping the shared
//! one would fail the other tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hookrunner::config::Concurrency;
use hookrunner::job::{now_ms, Outcome, Status};
use hookrunner::store::{Durability, Store, StoreError, StoreEvent};
use tempfile::TempDir;

use crate::helpers::*;

/// A PostgreSQL server in a temporary directory, run as `postgres` when the tests run as root.
pub struct Server {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
}

impl Server {
    pub fn start() -> Server {
        server_url(); // The same rule as every PostgreSQL test: run through `run.sh`.
        let bin = PathBuf::from(
            std::env::var("HOOKRUNNER_TEST_POSTGRES_BIN")
                .expect("HOOKRUNNER_TEST_POSTGRES_BIN is set by tests/postgres/run.sh"),
        );
        let dir = tempfile::tempdir().unwrap();
        if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
            nix::unistd::chown(dir.path(), Some(user.uid), None).unwrap();
        }
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let server = Server { bin, dir, port };
        let data = server.data();
        server.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"],
        );
        server.pg_ctl("start");
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let data = self.data();
        let mut args = vec!["-D", &data, "-w", "-m", "fast", "-l", &log];
        if action == "start" {
            args.extend(["-o", &options]);
        }
        args.push(action);
        self.run("pg_ctl", &args);
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let status = if nix::unistd::geteuid().is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .stdout(std::process::Stdio::null())
                .status()
        } else {
            Command::new(&program)
                .args(args)
                .stdout(std::process::Stdio::null())
                .status()
        };
        assert!(status.unwrap().success(), "{} {args:?}", program.display());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.data();
        let _ = Command::new(if nix::unistd::geteuid().is_root() {
            "runuser"
        } else {
            "env"
        })
        .args(if nix::unistd::geteuid().is_root() {
            vec!["-u", "postgres", "--"]
        } else {
            vec![]
        })
        .arg(Path::new(&self.bin).join("pg_ctl"))
        .args(["-D", &data, "-m", "immediate", "stop"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    }
}

#[tokio::test]
async fn ends_and_output_wait_for_the_database_and_calls_fail_promptly_meanwhile() {
    let server = Server::start();
    let url = fresh_database_on(&server.url()).await;
    let a = Store::postgres(&url, "a", HEARTBEAT, LONG).await.unwrap();
    let id = admit(
        &a,
        new_job("deploy", Concurrency::Parallel { limit: None }, None),
    )
    .await;
    let mut job = claim(&a, 1).await.remove(0).job;
    a.log_writer(&id).append(b"before the outage\n").unwrap();

    server.pg_ctl("stop");
    a.log_writer(&id).append(b"during it\n").unwrap();
    job.finish(
        Outcome {
            exit_code: Some(0),
            ..Outcome::unrun(Status::Succeeded, None)
        },
        now_ms(),
    )
    .unwrap();
    let mut committed = Box::pin(a.finish(&job, Durability::Disk));
    // Every call fails (the deadline only catches one that would hang) while the end waits.
    let error = tokio::time::timeout(Duration::from_secs(60), a.get(&id))
        .await
        .expect("a call does not hang")
        .expect_err("the database is down");
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("the job store's database cannot be reached (127.0.0.1:"),
        "{error}"
    );
    let admitted = tokio::time::timeout(
        Duration::from_secs(60),
        a.admit(new_job("deploy", Concurrency::Latest, None), 1000),
    )
    .await
    .expect("an admission does not hang");
    assert!(
        matches!(admitted, Err(StoreError::Unavailable { .. })),
        "{admitted:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut committed)
            .await
            .is_err(),
        "the end waits for the database"
    );

    server.pg_ctl("start");
    tokio::time::timeout(Duration::from_secs(60), committed)
        .await
        .expect("the end is written once the database is back")
        .unwrap();
    a.flush().await.unwrap();
    assert_eq!(status(&a, &id).await, Status::Succeeded);
    let log = a.read_log(&id, 0).await.unwrap();
    assert_eq!(&log[..], b"before the outage\nduring it\n");
    // The listener reconnects by itself: another instance's word reaches this one again.
    let mut events = a.events().unwrap();
    let b = Store::postgres(&url, "b", HEARTBEAT, LONG).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let waiting = admit(&b, new_job("deploy", Concurrency::Latest, None)).await;
            b.cancel(&waiting).await.unwrap();
            let ended = StoreEvent::Ended(waiting);
            let told = tokio::time::timeout(Duration::from_millis(500), async {
                while let Some(event) = events.recv().await {
                    if event == ended {
                        return;
                    }
                }
            });
            if told.await.is_ok() {
                return;
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "the listener did not come back");
}
