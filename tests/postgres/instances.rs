//! SPEC §11 through the front door: three real `hookrunner serve` processes on one database,
//! real requests over HTTP, and marker lines written by the commands they run.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::fresh_database;
use crate::serve::*;

const ASYNC: &str = "    response: {mode: async}\n";

fn status(job: &Value) -> &str {
    job["status"].as_str().unwrap_or_default()
}

/// The `start` marks of `job` in the trace.
fn starts<'a>(trace: &'a [Mark], job: &str) -> Vec<&'a Mark> {
    trace
        .iter()
        .filter(|mark| mark.event == "start" && mark.job == job)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_runs_one_job_at_a_time_across_instances_in_arrival_order() {
    let url = fresh_database().await;
    let hooks = hook(
        "q",
        &format!("    concurrency: queue\n{ASYNC}"),
        "sleep 0.1",
    );
    let cluster = Cluster::start(&url, "", &hooks).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(cluster.nodes[n % 3].accepted("q", "{}").await);
    }
    let mut jobs = Vec::new();
    for id in &ids {
        let job = cluster.finished(id).await;
        assert_eq!(status(&job), "succeeded", "{job}");
        jobs.push(job);
    }
    let trace = cluster.trace();
    let seen: Vec<(&str, &str)> = trace
        .iter()
        .map(|mark| (mark.event.as_str(), mark.job.as_str()))
        .collect();
    let expected: Vec<(&str, &str)> = ids
        .iter()
        .flat_map(|id| [("start", id.as_str()), ("end", id.as_str())])
        .collect();
    assert_eq!(seen, expected, "one at a time, in arrival order, each once");
    for (job, pair) in jobs.iter().zip(trace.chunks(2)) {
        assert_eq!(job["instance"], pair[0].instance.as_str(), "{job}");
    }
    for pair in jobs.windows(2) {
        // RFC 3339 in UTC with milliseconds: the text orders as the time does.
        let (ended, started) = (
            pair[0]["finished_at"].as_str(),
            pair[1]["started_at"].as_str(),
        );
        assert!(
            started >= ended,
            "{} started before {} ended",
            pair[1],
            pair[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_and_replace_supersede_and_cancel_across_instances() {
    let url = fresh_database().await;
    let hooks = [
        hook(
            "l",
            &format!("    concurrency: latest\n{ASYNC}"),
            UNTIL_RELEASED,
        ),
        hook(
            "r",
            &format!("    concurrency: replace\n{ASYNC}"),
            &format!("({UNTIL_RELEASED}) & echo $! > $HOOK_JOB_ID.pid; wait"),
        ),
    ]
    .concat();
    let cluster = Cluster::start(&url, "", &hooks).await;

    // `latest`: the first runs, the second waits and is superseded by the third.
    let first = cluster.node("web-1").accepted("l", "{}").await;
    cluster.marks("start", 1).await;
    let second = cluster.node("web-2").accepted("l", "{}").await;
    let third = cluster.node("web-3").accepted("l", "{}").await;
    let superseded = cluster.finished(&second).await;
    assert_eq!(status(&superseded), "superseded", "{superseded}");

    // `replace`: a trigger on one instance cancels the job running on another, and its process
    // group really ends.
    let replaced = cluster.node("web-2").accepted("r", "{}").await;
    let running = cluster
        .job_until(&replaced, |job| status(job) == "running")
        .await;
    let runner = running["instance"].as_str().unwrap().to_string();
    let pid_file = cluster.path(&format!("{replaced}.pid"));
    let pid: i32 = loop_until_read(&pid_file).await.trim().parse().unwrap();
    let replacing = cluster.other_than(&runner).accepted("r", "{}").await;
    let cancelled = cluster.finished(&replaced).await;
    assert_eq!(status(&cancelled), "cancelled", "{cancelled}");
    gone(pid).await;

    cluster.release();
    for id in [&first, &third, &replacing] {
        let job = cluster.finished(id).await;
        assert_eq!(status(&job), "succeeded", "{job}");
    }
    let trace = cluster.trace();
    let latest: Vec<(&str, &str)> = trace
        .iter()
        .filter(|mark| [&first, &second, &third].contains(&&mark.job))
        .map(|mark| (mark.event.as_str(), mark.job.as_str()))
        .collect();
    assert_eq!(
        latest,
        [
            ("start", first.as_str()),
            ("end", first.as_str()),
            ("start", third.as_str()),
            ("end", third.as_str())
        ],
        "the superseded job never ran; the last ran after the first"
    );
    assert!(
        !trace
            .iter()
            .any(|mark| mark.event == "end" && mark.job == replaced),
        "the replaced job's command went on"
    );
}

/// Waits until process `pid` is gone.
async fn gone(pid: i32) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !process_is_gone(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads a file once it exists.
async fn loop_until_read(path: &std::path::Path) -> String {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_limit_holds_across_instances_and_every_job_runs() {
    let url = fresh_database().await;
    let hooks = hook(
        "p",
        &format!("    concurrency: {{mode: parallel, limit: 2}}\n{ASYNC}"),
        "sleep 0.3",
    );
    let cluster = Cluster::start(&url, "", &hooks).await;
    let mut ids = Vec::new();
    for n in 0..9 {
        ids.push(cluster.nodes[n % 3].accepted("p", "{}").await);
    }
    for id in &ids {
        let job = cluster.finished(id).await;
        assert_eq!(status(&job), "succeeded", "{job}");
    }
    let trace = cluster.trace();
    let (mut running, mut most) = (0i32, 0i32);
    for mark in &trace {
        running += if mark.event == "start" { 1 } else { -1 };
        most = most.max(running);
    }
    assert_eq!(
        most, 2,
        "at most 2 at once, and 2 did run together: {trace:?}"
    );
    for id in &ids {
        assert_eq!(starts(&trace, id).len(), 1, "{id} ran once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_sent_to_every_instance_runs_once() {
    let url = fresh_database().await;
    let secret = "duplicate-s3cret";
    let hooks = signed_hook(
        "d",
        &format!("{{github: {{secret: {secret}}}}}"),
        ASYNC,
        "true",
    );
    let cluster = Cluster::start(&url, "", &hooks).await;
    let body = r#"{"ref": "refs/heads/main"}"#;
    let signature = github_signature(secret, body.as_bytes());
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-Hub-Signature-256", signature.as_str()),
        ("Content-Type", "application/json"),
    ];
    let post = reqwest::Method::POST;
    let answers = futures_util::future::join_all(
        (cluster.nodes.iter()).map(|node| node.request(post.clone(), "/hooks/d", body, &headers)),
    )
    .await;
    let accepted: Vec<&Answer> = answers.iter().filter(|a| a.status == 202).collect();
    assert_eq!(accepted.len(), 1, "one runs");
    let id = accepted[0].body["job_id"].as_str().unwrap().to_string();
    for answer in answers.iter().filter(|answer| answer.status != 202) {
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body["status"], "duplicate");
        assert_eq!(answer.body["job_id"], id.as_str());
    }
    assert_eq!(status(&cluster.finished(&id).await), "succeeded");
    // A succeeded job keeps its key: a redelivery to any instance still runs nothing.
    for node in &cluster.nodes {
        let again = node.request(post.clone(), "/hooks/d", body, &headers).await;
        assert_eq!(
            (again.status, &again.body["job_id"]),
            (200, &Value::from(id.as_str()))
        );
    }
    assert_eq!(cluster.trace().len(), 2, "{:?}", cluster.trace());
}

fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_and_stream_jobs_run_on_the_instance_that_got_the_request() {
    let url = fresh_database().await;
    let hooks = [
        hook(
            "w",
            "    response: {include_output: true}\n",
            "echo \"waited on $MARK_INSTANCE\"",
        ),
        hook(
            "s",
            "    response: {mode: stream}\n",
            "echo \"streamed on $MARK_INSTANCE\"",
        ),
    ]
    .concat();
    let cluster = Cluster::start(&url, "", &hooks).await;
    for round in 0..2 {
        for node in &cluster.nodes {
            let waited = node.post("w", "{}").await;
            assert_eq!(waited.status, 200, "{:?}", waited.body);
            assert_eq!(waited.body["instance"], node.name.as_str(), "round {round}");
            let output = format!("waited on {}\n", node.name);
            assert_eq!(waited.body["stdout"], output.as_str());
            let id = waited.body["job_id"].as_str().unwrap();
            let marks = cluster.trace();
            assert_eq!(starts(&marks, id)[0].instance, node.name);

            let events = [("Accept", "text/event-stream")];
            let streamed = node
                .request(reqwest::Method::POST, "/hooks/s", "{}", &events)
                .await;
            assert_eq!(streamed.status, 200);
            let text = streamed.body.as_str().unwrap().to_string();
            let output = format!("event: stdout\ndata: streamed on {}\n", node.name);
            assert!(text.starts_with(&output), "{text}");
            let exit: Value = text
                .split_once("event: exit\ndata: ")
                .and_then(|(_, rest)| serde_json::from_str(rest.lines().next()?).ok())
                .unwrap_or_else(|| panic!("no `exit` event: {text}"));
            assert_eq!(exit["status"], "succeeded", "{exit}");
            assert_eq!(exit["instance"], node.name.as_str(), "round {round}");
        }
    }
    let streamed: Vec<String> = cluster
        .trace()
        .iter()
        .filter(|mark| mark.event == "start")
        .map(|mark| mark.instance.clone())
        .collect();
    let expected: Vec<String> = (0..2)
        .flat_map(|_| (1..=3).flat_map(|n| [format!("web-{n}"), format!("web-{n}")]))
        .collect();
    assert_eq!(streamed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_routes_work_from_an_instance_that_does_not_run_the_job() {
    let url = fresh_database().await;
    let hooks = [
        hook("f", ASYNC, &format!("echo one; {UNTIL_RELEASED}; echo two")),
        hook("long", ASYNC, "sleep 60 & echo $! > $HOOK_JOB_ID.pid; wait"),
        hook("quick", ASYNC, "true"),
    ]
    .concat();
    let cluster = Cluster::start(&url, "", &hooks).await;
    let id = cluster.node("web-1").accepted("f", "{}").await;
    let running = cluster.job_until(&id, |job| status(job) == "running").await;
    let runner = running["instance"].as_str().unwrap().to_string();
    let other = cluster.other_than(&runner);

    let job = other.get(&format!("/jobs/{id}")).await;
    assert_eq!((job.status, status(&job.body)), (200, "running"));
    assert_eq!(job.body["instance"], runner.as_str());

    // `follow=1` from elsewhere: the first line while the command runs, the rest once it ends.
    let mut response = reqwest::get(format!("{}/jobs/{id}/log?follow=1", other.address))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut followed = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !followed.ends_with(b"one\n") {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the first line arrives while the job runs")
            .unwrap()
            .expect("the log goes on");
        followed.extend_from_slice(&chunk);
    }
    assert_eq!(followed, b"one\n");
    assert_eq!(
        status(&other.get(&format!("/jobs/{id}")).await.body),
        "running"
    );
    cluster.release();
    while let Some(chunk) = tokio::time::timeout_at(deadline, response.chunk())
        .await
        .expect("the log ends with the job")
        .unwrap()
    {
        followed.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8_lossy(&followed), "one\ntwo\n");
    assert_eq!(status(&cluster.finished(&id).await), "succeeded");
    let log = other.get(&format!("/jobs/{id}/log")).await;
    assert_eq!(log.body, "one\ntwo\n");

    // Cancel from elsewhere: the running command's process group ends.
    let long = cluster.node("web-2").accepted("long", "{}").await;
    let running = cluster
        .job_until(&long, |job| status(job) == "running")
        .await;
    let runner = running["instance"].as_str().unwrap().to_string();
    let pid: i32 = loop_until_read(&cluster.path(&format!("{long}.pid")))
        .await
        .trim()
        .parse()
        .unwrap();
    let path = format!("/jobs/{long}/cancel");
    let cancel = cluster
        .other_than(&runner)
        .request(reqwest::Method::POST, &path, "", &[])
        .await;
    assert_eq!(cancel.status, 202, "{:?}", cancel.body);
    assert_eq!(cancel.body["result"], "signalled");
    assert_eq!(status(&cluster.finished(&long).await), "cancelled");
    gone(pid).await;

    // The list pages the cluster's jobs from any instance.
    let mut all = BTreeSet::from([id.clone(), long.clone()]);
    for n in 0..5 {
        all.insert(cluster.nodes[n % 3].accepted("quick", "{}").await);
    }
    let mut listed = Vec::new();
    let mut path = "/jobs?limit=2".to_string();
    loop {
        let page = cluster.node("web-3").get(&path).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        let jobs = page.body["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        listed.extend(jobs.iter().map(|job| {
            let created = job["created_at"].as_str().unwrap().to_string();
            (created, job["job_id"].as_str().unwrap().to_string())
        }));
        match page.body["next"].as_str() {
            Some(next) => path = format!("/jobs?limit=2&before={next}"),
            None => break,
        }
    }
    assert_eq!(listed.len(), all.len(), "each job once: {listed:?}");
    assert!(
        listed.windows(2).all(|pair| pair[0].0 >= pair[1].0),
        "newest first: {listed:?}"
    );
    let listed: BTreeSet<String> = listed.into_iter().map(|(_, id)| id).collect();
    assert_eq!(listed, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_all_runs_one_job_on_each_instance() {
    let url = fresh_database().await;
    let hooks = hook("all", &format!("    run_on: all\n{ASYNC}"), "true");
    let cluster = Cluster::start(&url, "", &hooks).await;
    let answer = cluster.node("web-2").post("all", "{}").await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let listed = answer.body["jobs"].as_array().unwrap().clone();
    let instances: BTreeSet<&str> = listed
        .iter()
        .map(|job| job["instance"].as_str().unwrap())
        .collect();
    assert_eq!(instances, BTreeSet::from(["web-1", "web-2", "web-3"]));
    for job in &listed {
        let id = job["job_id"].as_str().unwrap();
        let ended = cluster.finished(id).await;
        assert_eq!(status(&ended), "succeeded", "{ended}");
        assert_eq!(ended["instance"], job["instance"]);
    }
    let trace = cluster.trace();
    for job in &listed {
        let ran = starts(&trace, job["job_id"].as_str().unwrap());
        assert_eq!(ran.len(), 1, "{trace:?}");
        assert_eq!(ran[0].instance, job["instance"].as_str().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_listed_and_a_taken_name_is_refused_naming_it() {
    let url = fresh_database().await;
    let cluster = Cluster::start(&url, "", &hook("h", ASYNC, UNTIL_RELEASED)).await;
    let id = cluster.node("web-1").accepted("h", "{}").await;
    let running = cluster.job_until(&id, |job| status(job) == "running").await;
    let runner = running["instance"].as_str().unwrap();
    let answer = cluster.node("web-3").get("/instances").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let mut listed: Vec<(String, Value)> = answer.body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|instance| {
            (
                instance["name"].as_str().unwrap().to_string(),
                instance["running"].clone(),
            )
        })
        .collect();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    let expected: Vec<(String, Value)> = ["web-1", "web-2", "web-3"]
        .into_iter()
        .map(|name| (name.to_string(), Value::from(u8::from(name == runner))))
        .collect();
    assert_eq!(listed, expected, "{}", answer.body);
    for instance in answer.body["instances"].as_array().unwrap() {
        assert_eq!(instance["version"], env!("CARGO_PKG_VERSION"));
        for field in ["started", "last_heartbeat"] {
            assert!(
                instance[field].as_str().is_some_and(|at| at.ends_with('Z')),
                "{instance}"
            );
        }
    }
    cluster.release();

    let mut fourth = Node::spawn(&url, "web-2", &cluster.config);
    let code = fourth.exit_code().await;
    assert!(code.is_some_and(|code| code != 0), "{code:?}");
    let log = fourth.log();
    assert!(
        log.contains("another instance named `web-2` is running"),
        "{log}"
    );
    let answer = cluster.node("web-2").get("/readyz").await;
    assert_eq!(answer.status, 200, "the first `web-2` serves on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_running_jobs_are_interrupted_and_its_queued_jobs_run_elsewhere() {
    let url = fresh_database().await;
    let parallel = format!("    concurrency: {{mode: parallel}}\n{ASYNC}");
    let hooks = hook("k", &parallel, UNTIL_RELEASED);
    let mut cluster = Cluster::start(&url, "  max_jobs: 2\n", &hooks).await;
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(cluster.nodes[n % 3].accepted("k", "{}").await);
    }
    // Each instance runs 2; 6 wait.
    let started = cluster.marks("start", 6).await;
    let on_first: Vec<String> = started
        .iter()
        .filter(|mark| mark.instance == "web-1")
        .map(|mark| mark.job.clone())
        .collect();
    assert_eq!(on_first.len(), 2, "{started:?}");
    let mut killed = cluster.nodes.remove(0);
    killed.kill();
    cluster.release();

    for id in &ids {
        let job = cluster.finished(id).await;
        if on_first.contains(id) {
            assert_eq!(status(&job), "interrupted", "{job}");
            assert_eq!(job["instance"], "web-1");
            let error = job["error"].as_str().unwrap_or_default();
            assert!(
                error.starts_with("instance `web-1` stopped (no heartbeat for "),
                "{job}"
            );
        } else {
            assert_eq!(status(&job), "succeeded", "{job}");
            assert_ne!(job["instance"], "web-1", "{job}");
        }
    }
    let trace = cluster.trace();
    for id in &ids {
        assert_eq!(starts(&trace, id).len(), 1, "{id} ran once: {trace:?}");
    }
    let answer = cluster.node("web-2").get("/instances").await;
    let mut names: Vec<&str> = answer.body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|instance| instance["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["web-2", "web-3"], "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopped_and_started_under_load_loses_nothing_accepted() {
    let server = crate::outage::Server::start();
    let url = crate::helpers::fresh_database_on(&server.url()).await;
    let later = "for i in $(seq 2000); do [ -e release-later ] && break; sleep 0.02; done";
    let hooks = [
        hook("slow", ASYNC, UNTIL_RELEASED),
        hook("slower", ASYNC, later),
        hook("n", ASYNC, "true"),
    ]
    .concat();
    let cluster = Cluster::start(&url, "", &hooks).await;
    let slow = cluster.node("web-1").accepted("slow", "{}").await;
    let slower = cluster.node("web-2").accepted("slower", "{}").await;
    cluster.marks("start", 2).await;

    // Triggers round-robin over the instances all along.
    let stop = Arc::new(AtomicBool::new(false));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let load = tokio::spawn({
        let stop = stop.clone();
        async move {
            let client = reqwest::Client::new();
            let mut answers = Vec::new();
            let mut turn = 0;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{}/hooks/n", addresses[turn % addresses.len()]);
                turn += 1;
                let answer = client.post(url).body("{}").send().await.unwrap();
                let status = answer.status().as_u16();
                let retry_after = answer.headers().contains_key("retry-after");
                let text = answer.text().await.unwrap_or_default();
                let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                answers.push((status, retry_after, body));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        }
    });

    server.pg_ctl("stop");
    let went_down = tokio::time::Instant::now();
    for node in &cluster.nodes {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let ready = node.get("/readyz").await;
            let trigger = node.post("n", "{}").await;
            if ready.status == 503 && trigger.status == 503 {
                assert_eq!(trigger.body["error"], "store_unavailable");
                assert!(trigger.headers.contains_key("retry-after"));
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{}", node.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // One running command ends while the database is down; the other goes on through it.
    cluster.release();
    cluster.marks("end", 1).await;
    // The outage outlasts the lease (3s): no instance may take the others for dead when the
    // database comes back, since none of them could say it was alive.
    tokio::time::sleep_until(went_down + Duration::from_secs(7)).await;

    server.pg_ctl("start");
    for node in &cluster.nodes {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while node.get("/readyz").await.status != 200 {
            assert!(tokio::time::Instant::now() < deadline, "{}", node.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        node.accepted("n", "{}").await;
    }
    stop.store(true, Ordering::Relaxed);
    let answers = load.await.unwrap();

    let ended = cluster.finished(&slow).await;
    assert_eq!(status(&ended), "succeeded", "its end was recorded: {ended}");
    let running = cluster.node("web-3").get(&format!("/jobs/{slower}")).await;
    assert_eq!(status(&running.body), "running", "{:?}", running.body);
    std::fs::write(cluster.path("release-later"), "").unwrap();
    let ended = cluster.finished(&slower).await;
    assert_eq!(
        status(&ended),
        "succeeded",
        "it ran through the outage: {ended}"
    );
    let mut accepted = 0;
    let mut refused = 0;
    for (status_code, retry_after, body) in &answers {
        if *status_code == 202 {
            accepted += 1;
            let job = cluster.finished(body["job_id"].as_str().unwrap()).await;
            assert_eq!(status(&job), "succeeded", "{job}");
        } else {
            refused += 1;
            assert_eq!(*status_code, 503, "{body}");
            assert_eq!(body["error"], "store_unavailable", "{body}");
            assert!(retry_after, "{body}");
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}
