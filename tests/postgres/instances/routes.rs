//! Where jobs run (`wait`, `stream`, `run_on: all`) and the job routes and `/instances` answered
//! by any instance.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::fresh_database;
use crate::serve::*;

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
async fn a_queued_job_is_followed_and_cancelled_from_any_instance() {
    let url = fresh_database().await;
    let lane = format!("    concurrency: queue\n{ASYNC}");
    let hooks = hook("lane", &lane, &format!("{UNTIL_RELEASED}; echo \"late\"")).to_string();
    let cluster = Cluster::start(&url, "", &hooks).await;
    let first = cluster.node("web-1").accepted("lane", "{}").await;
    cluster.marks("start", 1).await;
    let followed = cluster.node("web-2").accepted("lane", "{}").await;
    let dropped = cluster.node("web-3").accepted("lane", "{}").await;

    // Followed from an instance while the job waits: its output comes once it runs elsewhere.
    let mut response = reqwest::get(format!(
        "{}/jobs/{followed}/log?follow=1",
        cluster.node("web-3").address
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let cancel = cluster
        .node("web-1")
        .request(
            reqwest::Method::POST,
            &format!("/jobs/{dropped}/cancel"),
            "",
            &[],
        )
        .await;
    assert_eq!(cancel.status, 202, "{:?}", cancel.body);
    assert_eq!(cancel.body["result"], "dequeued");
    cluster.release();
    let mut text = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while let Some(chunk) = tokio::time::timeout_at(deadline, response.chunk())
        .await
        .expect("the log ends with the job")
        .unwrap()
    {
        text.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8_lossy(&text), "late\n");
    for (id, expected) in [
        (&first, "succeeded"),
        (&followed, "succeeded"),
        (&dropped, "cancelled"),
    ] {
        let job = cluster.finished(id).await;
        assert_eq!(status(&job), expected, "{job}");
    }
    assert!(starts(&cluster.trace(), &dropped).is_empty());
}

/// Signs in to `node`'s web page; the `Cookie` header value to send.
async fn sign_in_to_the_page(node: &Node) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = client
        .post(format!("{}/ui/sign-in", node.address))
        .header("Origin", &node.address)
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_instances_and_follows_a_log_another_instance_writes() {
    let url = fresh_database().await;
    let hooks = hook("f", ASYNC, &format!("echo one; {UNTIL_RELEASED}; echo two"));
    let cluster = Cluster::start_instances(&url, 2, "3s", "", &hooks).await;
    let id = cluster.node("web-1").accepted("f", "{}").await;
    let running = cluster.job_until(&id, |job| status(job) == "running").await;
    let other = cluster.other_than(running["instance"].as_str().unwrap());
    let cookie = sign_in_to_the_page(other).await;
    let client = reqwest::Client::new();

    let hooks_page = client
        .get(format!("{}/ui/", other.address))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (_, instances) = hooks_page
        .split_once(r#"<table class="rows" id="instances">"#)
        .unwrap_or_else(|| panic!("no instances table: {hooks_page}"));
    for name in ["web-1", "web-2"] {
        assert!(
            instances.contains(&format!("<code>{name}</code>")),
            "{instances}"
        );
    }

    let mut response = client
        .get(format!(
            "{}/ui/jobs/{id}/log/events?offset=0",
            other.address
        ))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut followed = String::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !followed.contains("data: one\n") {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the first line arrives while the job runs")
            .unwrap()
            .expect("the stream goes on");
        followed.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    cluster.release();
    while let Some(chunk) = tokio::time::timeout_at(deadline, response.chunk())
        .await
        .expect("the stream ends with the job")
        .unwrap()
    {
        followed.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let expected = "id: 4\nevent: log\ndata: one\ndata: \n\nid: 8\nevent: log\ndata: two\ndata: \n\nevent: end\ndata: succeeded\n\n";
    assert_eq!(followed, expected);
}
