//! Notifications (SPEC §13) from a cluster, through the front door: real `hookrunner serve`
//! processes on one database (`serve.rs`) announce the ends of the jobs they run and deliver
//! the notifications of the shared outbox to a real receiver on loopback (`receiver.rs`, shared
//! with the API tests).

use std::collections::{BTreeSet, HashMap};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::helpers::{eventually, fresh_database, sql};
use crate::receiver::{Receiver, Seen};
use crate::serve::*;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// An `async` hook `fails` whose command exits 3, announced by a signed webhook to `url`,
/// retried after 200 ms, then 400 ms, and every second at most.
fn failing_hook(url: &str) -> String {
    let extra = format!(
        "    concurrency: {{mode: parallel}}\n{ASYNC}    notify:\n      - on: [failed]\n        backoff: 200ms\n        max_delay: 1s\n        webhook: {{url: \"{url}\", secret: {SECRET}}}\n"
    );
    hook("fails", &extra, "exit 3")
}

/// The first notification of `job`.
fn notification(job: &Value) -> &Value {
    &job["notifications"][0]
}

/// How many requests of `seen` carry each `webhook-id`; every one checked as a receiver checks
/// it, and its body about the job its id names.
fn count_ids(seen: &[Seen]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in seen {
        request.verify(SECRET);
        let id = request.header("webhook-id").to_string();
        let event: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(event["type"], "job.failed");
        let job = event["data"]["job_id"].as_str().unwrap();
        assert_eq!(id, format!("msg_{job}_0"), "{event}");
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_end_across_three_instances_is_announced_once_and_delivered_once() {
    let url = fresh_database().await;
    let receiver = Receiver::start(&[("200 OK", "")]).await;
    let cluster = Cluster::start(&url, "", &failing_hook(&receiver.url)).await;
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(cluster.nodes[n % 3].accepted("fails", "{}").await);
    }

    let mut ran_on = BTreeSet::new();
    for id in &ids {
        let job = cluster
            .job_until(id, |job| notification(job)["status"] == "delivered")
            .await;
        assert_eq!(status(&job), "failed", "{job}");
        ran_on.insert(job["instance"].as_str().unwrap().to_string());
    }
    assert_eq!(ran_on.len(), 3, "the ends are spread: {ran_on:?}");
    // Every instance reads the same outbox; a try counts at its hand-out, so `attempts: 1`
    // everywhere means no notification was handed to two instances.
    for id in &ids {
        for node in &cluster.nodes {
            let job = node.get(&format!("/jobs/{id}")).await.body;
            let notifications = job["notifications"].as_array().unwrap();
            assert_eq!(notifications.len(), 1, "{}: {job}", node.name);
            let delivered = &notifications[0];
            assert_eq!(
                (&delivered["status"], &delivered["attempts"]),
                (&"delivered".into(), &1.into()),
                "{}: {job}",
                node.name
            );
            assert_eq!(delivered["last_error"], Value::Null, "{job}");
            assert_eq!(delivered["next_attempt_at"], Value::Null, "{job}");
        }
    }

    let seen = receiver.seen.lock().unwrap();
    let counts = count_ids(&seen);
    let expected: BTreeSet<String> = ids.iter().map(|id| format!("msg_{id}_0")).collect();
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(
        counts.values().all(|&count| count == 1),
        "each exactly once: {counts:?}"
    );
    assert_eq!(seen.len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifications_of_a_killed_instances_jobs_are_delivered_by_another() {
    let url = fresh_database().await;
    // A port nobody listens on until the receiver starts there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("http://127.0.0.1:{port}/hooks/deploy");
    // `web-2` starts once the jobs have ended: any instance with room may run an `async` job,
    // and these are to end on `web-1`.
    let mut cluster = Cluster::start_instances(&url, 1, "3s", "", &failing_hook(&target)).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(cluster.node("web-1").accepted("fails", "{}").await);
    }
    for id in &ids {
        let job = cluster
            .job_until(id, |job| notification(job)["last_error"].is_string())
            .await;
        assert_eq!(job["instance"], "web-1", "{job}");
        assert_eq!(notification(&job)["status"], "pending", "{job}");
        let error = notification(&job)["last_error"].as_str().unwrap();
        assert!(error.starts_with("cannot connect to the target"), "{job}");
    }
    let mut other = Node::spawn(&url, "web-2", &cluster.config);
    other.ready().await;
    cluster.nodes.push(other);

    let mut killed = cluster.nodes.remove(0);
    stop_between_tries(&killed, &url).await;
    killed.kill();
    let log = killed.log();
    assert!(!log.contains("whsec_") && !log.contains(&target), "{log}");

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let receiver = Receiver::on(listener, &[("204 No Content", "")]);
    for id in &ids {
        let job = cluster
            .job_until(id, |job| notification(job)["status"] == "delivered")
            .await;
        assert!(
            notification(&job)["attempts"].as_u64().unwrap() >= 2,
            "{job}"
        );
        // As on a single server: the body still says why the tries before failed.
        let error = notification(&job)["last_error"]
            .as_str()
            .unwrap_or_default();
        assert!(error.starts_with("cannot connect to the target"), "{job}");
    }
    // Delivery is at least once, not exactly once: a try whose result was not kept (cut off by
    // a kill before its answer was written down) is made again, with the same `webhook-id`.
    // Here `web-1` is killed between tries, so more than one would take a lost write, but the
    // promise a receiver may count on is "at least once", and that is what is checked.
    let seen = receiver.seen.lock().unwrap();
    let counts = count_ids(&seen);
    let expected: BTreeSet<String> = ids.iter().map(|id| format!("msg_{id}_0")).collect();
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), expected);
}

/// Stops `node` (SIGSTOP) at a moment when it holds no try, for a kill between tries. A try
/// held by an instance that dies stays held for 5 minutes (`delivery::HOLD`, docs/CONFIG.md: a
/// cut-off instance may still be sending), longer than a test waits, and the point here is that
/// the other instance needs nothing of the dead one for its jobs' ends. Once the stopped node
/// has no statement under way, it may hold no notification; if it does, it is let go on
/// (SIGCONT) and stopped again.
async fn stop_between_tries(node: &Node, url: &str) {
    let client = sql(url).await;
    let pid = nix::unistd::Pid::from_raw(node.pid());
    let application = format!("hookrunner {}", node.name);
    eventually(DEADLINE, "a moment without a try", || async {
        nix::sys::signal::kill(pid, Signal::SIGSTOP).unwrap();
        // A statement sent just before the stop still runs to its end in the database.
        eventually(DEADLINE, "the stopped node's statements end", || async {
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE application_name = $1 AND state = 'active'",
                    &[&application],
                )
                .await
                .unwrap();
            (row.get::<_, i64>(0) == 0).then_some(())
        })
        .await;
        let row = client
            .query_one(
                "SELECT count(*) FROM notifications WHERE held_by = $1 AND status = 'pending'",
                &[&node.name],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) == 0 {
            return Some(());
        }
        nix::sys::signal::kill(pid, Signal::SIGCONT).unwrap();
        None
    })
    .await;
}
