//! The database going away and coming back, on a server of the test's own (stopping the shared
//! one would fail the other tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hookrunner::config::Concurrency;
use hookrunner::job::{now_ms, Outcome, Status};
use hookrunner::store::{Durability, Placement, Store, StoreError, StoreEvent};
use tempfile::TempDir;

use crate::helpers::*;
use crate::proxy::{port_of, with_port, Proxy, Trap};

/// A PostgreSQL server in a temporary directory, run as `postgres` when the tests run as root.
pub struct Server {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(None)
    }

    /// A server that asks for `password` (of the user `postgres`), when one is given.
    fn start_with(password: Option<&str>) -> Server {
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
        let mut args = vec!["-D", &data, "-U", "postgres", "--no-sync"];
        let pwfile = server.dir.path().join("pwfile").display().to_string();
        let pwfile_arg = format!("--pwfile={pwfile}");
        match password {
            None => args.push("--auth=trust"),
            Some(password) => {
                std::fs::write(&pwfile, password).unwrap();
                if nix::unistd::geteuid().is_root() {
                    let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
                    nix::unistd::chown(pwfile.as_str(), Some(user.uid), None).unwrap();
                }
                args.extend(["--auth=scram-sha-256", &pwfile_arg]);
            }
        }
        server.run("initdb", &args);
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

#[tokio::test]
async fn a_database_away_longer_than_a_lease_takes_no_live_instance_for_dead() {
    let server = Server::start();
    let url = fresh_database_on(&server.url()).await;
    let lease = Duration::from_secs(2);
    // `a` would reap as soon as it can; `b` heartbeats four times a lease, so it is alive.
    let a = Store::postgres(&url, "a", HEARTBEAT, lease).await.unwrap();
    let b = Store::postgres(&url, "b", lease / 4, lease).await.unwrap();
    let id = admit(
        &b,
        new_job("deploy", Concurrency::Parallel { limit: None }, None),
    )
    .await;
    assert_eq!(ids(&claim(&b, 1).await), std::slice::from_ref(&id));
    server.pg_ctl("stop");
    // The outage itself: two leases with nobody heard.
    tokio::time::sleep(2 * lease).await;
    server.pg_ctl("start");
    // For three leases after both are back, `b` is never taken for dead.
    let deadline = tokio::time::Instant::now() + 3 * lease;
    while tokio::time::Instant::now() < deadline {
        if let Ok(job) = a.get(&id).await {
            let job = job.unwrap();
            assert_eq!(job.status(), Status::Running, "{:?}", job.outcome());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names: Vec<String> = a
        .instances()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[tokio::test]
async fn output_past_the_backlog_is_dropped_with_a_marker_while_the_database_is_away() {
    let server = Server::start();
    let url = fresh_database_on(&server.url()).await;
    let a = Store::postgres(&url, "a", HEARTBEAT, LONG).await.unwrap();
    let id = admit(
        &a,
        new_job("deploy", Concurrency::Parallel { limit: None }, None),
    )
    .await;
    let mut job = claim(&a, 1).await.remove(0).job;
    let mut writer = a.log_writer(&id);
    writer.append(b"before\n").unwrap();
    a.flush().await.unwrap();

    server.pg_ctl("stop");
    // 48 MiB of output while the database is away: more than the 32 MiB kept.
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..48 {
        writer.append(&chunk).unwrap();
    }
    job.finish(
        Outcome {
            exit_code: Some(0),
            ..Outcome::unrun(Status::Succeeded, None)
        },
        now_ms(),
    )
    .unwrap();
    let committed = a.finish(&job, Durability::Disk);
    server.pg_ctl("start");
    tokio::time::timeout(Duration::from_secs(120), committed)
        .await
        .expect("the end is written once the database is back")
        .unwrap();
    a.flush().await.unwrap();
    assert_eq!(status(&a, &id).await, Status::Succeeded);
    let watcher = sql(&url).await;
    let row = watcher
        .query_one(
            "SELECT coalesce(sum(length(data)), 0)::bigint, \
                    count(*) FILTER (WHERE position($2::bytea IN data) > 0) \
             FROM job_output WHERE job_id = $1",
            &[&id.as_str(), &&b"[hookrunner: output dropped here"[..]],
        )
        .await
        .unwrap();
    let (kept, markers): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        (16 << 20..=(32 << 20) + 4096).contains(&kept),
        "{kept} bytes of output kept"
    );
    assert_eq!(markers, 1, "one marker where output was dropped");
    // The log reads through without a gap up to the marker.
    let log = a.read_log(&id, 0).await.unwrap();
    assert!(log.starts_with(b"before\nxxx"));
}

#[tokio::test]
async fn a_claim_whose_commit_went_unheard_hands_its_jobs_over_at_the_next_claim_once() {
    let url = fresh_database().await;
    // The simple query `COMMIT` (not `BEGIN ... READ COMMITTED`).
    let cutter = Proxy::start(port_of(&url), b"Q\0\0\0\x0bCOMMIT\0", Trap::Cut).await;
    // No heartbeat: the claim's `COMMIT` is the first one after arming.
    let a = Store::postgres(&with_port(&url, cutter.port), "a", LONG, LONG)
        .await
        .unwrap();
    let b = instance(&url, "b").await;
    let anyone = admit(
        &a,
        new_job("deploy", Concurrency::Parallel { limit: None }, None),
    )
    .await;
    // A `wait` job: only `a` holds its command.
    let mut waiting = new_job("wait", Concurrency::Parallel { limit: None }, None);
    waiting.placement = Placement::On {
        instance: "a".into(),
        per_instance: false,
    };
    waiting.command = command(false);
    let waiting = admit(&a, waiting).await;
    cutter.arm();
    let Err(error) = a.claim(8).await else {
        panic!("the commit's answer is lost")
    };
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    // The claim was made: nobody else takes the jobs, and `a` runs each once.
    assert!(claim(&b, 8).await.is_empty());
    let mut claimed = claim(&a, 8).await;
    claimed.sort_by_key(|claimed| claimed.job.id.as_str() == waiting.as_str());
    assert_eq!(ids(&claimed), [anyone, waiting]);
    assert!(!claimed[1].command.run_after_restart);
    assert!(claim(&a, 8).await.is_empty());
    for claimed in claimed {
        finish(&a, claimed.job, Status::Succeeded).await;
    }
}

#[tokio::test]
async fn a_store_error_names_the_database_but_never_shows_the_password() {
    let secret = "s3cret-pw";
    let server = Server::start_with(Some(secret));
    let port = server.port;
    let wrong = "wr0ng-pw";
    // (URL, the target its error names; `None`: a URL PostgreSQL does not take)
    let cases = [
        (
            format!("postgres://postgres:{wrong}@127.0.0.1:{port}/postgres"),
            Some(format!("127.0.0.1:{port}/postgres")),
        ),
        (
            format!("postgres://postgres:{secret}@127.0.0.1:{port}/nothing"),
            Some(format!("127.0.0.1:{port}/nothing")),
        ),
        (
            format!("postgres://postgres:{secret}@127.0.0.1:1/hooks"),
            Some("127.0.0.1:1/hooks".to_string()),
        ),
        (
            format!("postgres://postgres:{secret}@127.0.0.1:port/hooks"),
            None,
        ),
        (
            format!("postgresql://postgres:{secret}@127.0.0.1:{port}/postgres?sslmode=bogus"),
            None,
        ),
        (format!("host=127.0.0.1 password={secret} port=x"), None),
    ];
    for (url, target) in cases {
        let error = Store::postgres(&url, "a", HEARTBEAT, LONG)
            .await
            .expect_err("the store cannot open");
        let mut shown = format!("{error}\n{error:?}");
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            shown.push_str(&format!("\n{cause}\n{cause:?}"));
            source = cause.source();
        }
        assert!(
            !shown.contains(secret) && !shown.contains(wrong),
            "{url}: {shown}"
        );
        match (target, &error) {
            (Some(target), StoreError::Unavailable { .. } | StoreError::Refused { .. }) => {
                assert!(error.to_string().contains(&target), "{url}: {shown}")
            }
            (None, StoreError::BadUrl(_)) => {}
            _ => panic!("{url}: {shown}"),
        }
    }
}

#[tokio::test]
async fn a_claimer_cut_off_by_a_partition_holds_the_claim_lock_only_for_a_while() {
    let url = fresh_database().await;
    // Springs once `a` holds the claim lock and is about to record what it claims.
    let proxy = Proxy::start(port_of(&url), b"SET status = 'running'", Trap::Freeze).await;
    let a = Store::postgres(&with_port(&url, proxy.port), "a", LONG, LONG)
        .await
        .unwrap();
    let b = instance(&url, "b").await;
    let id = admit(
        &a,
        new_job("deploy", Concurrency::Parallel { limit: None }, None),
    )
    .await;
    proxy.arm();
    let stuck = tokio::spawn(async move { a.claim(8).await.map(|claimed| claimed.len()) });
    eventually(Duration::from_secs(10), "`a` is cut off", || async {
        proxy.sprung().then_some(())
    })
    .await;
    let claimed = tokio::time::timeout(Duration::from_secs(60), claim(&b, 8))
        .await
        .expect("`b` claims once the server gave up on `a`'s transaction");
    assert_eq!(ids(&claimed), [id]);
    stuck.abort();
}
