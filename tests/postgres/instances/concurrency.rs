//! The concurrency rules (`queue`, `latest`, `replace`, `parallel.limit`) and duplicate
//! deliveries, held across three instances.

use serde_json::Value;

use crate::helpers::fresh_database;
use crate::serve::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_limit_holds_across_instances_and_every_job_runs() {
    let url = fresh_database().await;
    let hooks = hook(
        "p",
        &format!("    concurrency: {{mode: parallel, limit: 2}}\n{ASYNC}"),
        &format!("{UNTIL_RELEASED}; sleep 0.2"),
    );
    let cluster = Cluster::start(&url, "", &hooks).await;
    let mut ids = Vec::new();
    for n in 0..9 {
        ids.push(cluster.nodes[n % 3].accepted("p", "{}").await);
    }
    // The first two wait together, whatever the machine's speed; the rest follow.
    cluster.marks("start", 2).await;
    cluster.release();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_runs_again_on_another_instance_and_then_holds_its_key() {
    let url = fresh_database().await;
    let secret = "duplicate-s3cret";
    let signature = format!("{{github: {{secret: {secret}}}}}");
    let hooks = signed_hook("d", &signature, ASYNC, "[ -e fixed ] || exit 3");
    let cluster = Cluster::start(&url, "", &hooks).await;
    let body = "{}";
    let signature = github_signature(secret, body.as_bytes());
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "9f1f1a3c-cc78-11e3-81ab-4c9367dc0958"),
        ("X-Hub-Signature-256", signature.as_str()),
        ("Content-Type", "application/json"),
    ];
    let deliver =
        |n: usize| cluster.nodes[n].request(reqwest::Method::POST, "/hooks/d", body, &headers);
    let failed = deliver(0).await.body["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(status(&cluster.finished(&failed).await), "failed");
    std::fs::write(cluster.path("fixed"), "").unwrap();
    let again = deliver(1).await;
    assert_eq!(
        again.status, 202,
        "a failure gives the key back: {:?}",
        again.body
    );
    let second = again.body["job_id"].as_str().unwrap().to_string();
    assert_eq!(status(&cluster.finished(&second).await), "succeeded");
    let third = deliver(2).await;
    assert_eq!(
        (third.status, &third.body["job_id"]),
        (200, &Value::from(second.as_str()))
    );
}

fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
