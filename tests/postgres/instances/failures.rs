//! An instance killed, and the database stopped and started, under load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::fresh_database;
use crate::serve::*;

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
    database_outage("60s", Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_lease_takes_no_live_instance_for_dead() {
    // Every instance misses its heartbeats while the database is away; the first one back must
    // not record the others' running jobs `interrupted` for it.
    database_outage("3s", Duration::from_secs(7)).await;
}

/// Three instances with `lease`, triggers all along, and the database down for at least
/// `down_for` (and as long as the checks take).
async fn database_outage(lease: &str, down_for: Duration) {
    let server = crate::outage::Server::start();
    let url = crate::helpers::fresh_database_on(&server.url()).await;
    let later = "for i in $(seq 2000); do [ -e release-later ] && break; sleep 0.02; done";
    let hooks = [
        hook("slow", ASYNC, UNTIL_RELEASED),
        hook("slower", ASYNC, later),
        hook("n", ASYNC, "true"),
        hook("wait", "", "true"),
        hook("stream", "    response: {mode: stream}\n", "true"),
    ]
    .concat();
    let cluster = Cluster::start_with_lease(&url, lease, "", &hooks).await;
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
                let answer = match client.post(url).body("{}").send().await {
                    Ok(answer) => answer,
                    Err(error) => {
                        // An instance that stopped answering: reported as status 0.
                        answers.push((0, false, Value::String(error.to_string())));
                        break;
                    }
                };
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
    // Every answer that needs the store says so, with `Retry-After` (an instance that runs a
    // job answers for it from memory).
    let runner = starts(&cluster.trace(), &slow)[0].instance.clone();
    let node = cluster.other_than(&runner);
    let answers = [
        node.post("wait", "{}").await,
        node.post("stream", "{}").await,
        node.get(&format!("/jobs/{slow}")).await,
        node.get("/jobs").await,
        node.get("/instances").await,
    ];
    for answer in answers {
        assert_eq!(answer.status, 503, "{:?}", answer.body);
        assert_eq!(
            answer.body["error"], "store_unavailable",
            "{:?}",
            answer.body
        );
        assert!(
            answer.headers.contains_key("retry-after"),
            "{:?}",
            answer.body
        );
    }
    // One running command ends while the database is down; the other goes on through it.
    cluster.release();
    cluster.marks("end", 1).await;
    // An outage that outlasts the lease: no instance may take the others for dead when the
    // database comes back, since none of them could say it was alive.
    tokio::time::sleep_until(went_down + down_for).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_wait_job_is_interrupted_its_queue_lane_goes_on_and_fan_out_skips_it() {
    let url = fresh_database().await;
    let hooks = [
        hook("wait", "", UNTIL_RELEASED),
        hook(
            "lane",
            &format!("    concurrency: queue\n{ASYNC}"),
            UNTIL_RELEASED,
        ),
        hook("all", &format!("    run_on: all\n{ASYNC}"), "true"),
    ]
    .concat();
    let mut cluster = Cluster::start(&url, "", &hooks).await;
    let address = cluster.node("web-1").address.clone();
    let waiting = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{address}/hooks/wait"))
            .send()
            .await
    });
    let lane = [
        cluster.node("web-1").accepted("lane", "{}").await,
        cluster.node("web-2").accepted("lane", "{}").await,
    ];
    let started = cluster.marks("start", 2).await;
    let on_first: Vec<String> = started
        .iter()
        .filter(|mark| mark.instance == "web-1")
        .map(|mark| mark.job.clone())
        .collect();
    let list = cluster.node("web-2").get("/jobs?hook=wait").await;
    let wait_job = list.body["jobs"][0]["job_id"].as_str().unwrap().to_string();
    assert!(on_first.contains(&wait_job), "{started:?}");

    let mut killed = cluster.nodes.remove(0);
    killed.kill();
    assert!(
        waiting.await.unwrap().is_err(),
        "the client lost its answer"
    );
    cluster.release();
    let job = cluster.finished(&wait_job).await;
    assert_eq!(status(&job), "interrupted", "{job}");
    for id in &lane {
        let job = cluster.finished(id).await;
        let expected = if on_first.contains(id) {
            "interrupted"
        } else {
            "succeeded"
        };
        assert_eq!(status(&job), expected, "{job}");
    }
    let trace = cluster.trace();
    assert_eq!(starts(&trace, &lane[1]).len(), 1, "{trace:?}");

    // Once the lease ran out, a fan-out makes one job per live instance.
    let answer = cluster.node("web-3").post("all", "{}").await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let mut instances: Vec<&str> = answer.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["instance"].as_str().unwrap())
        .collect();
    instances.sort();
    assert_eq!(instances, ["web-2", "web-3"], "{}", answer.body);
    for job in answer.body["jobs"].as_array().unwrap() {
        let ended = cluster.finished(job["job_id"].as_str().unwrap()).await;
        assert_eq!(status(&ended), "succeeded", "{ended}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_every_end_before_exiting_and_never_loses_the_database_on_the_way() {
    let url = fresh_database().await;
    let marks = tempfile::tempdir().unwrap();
    let parallel = format!("    concurrency: {{mode: parallel}}\n{ASYNC}");
    let hooks = [
        hook("slow", &parallel, "sleep 0.5"),
        hook("quick", "    concurrency: {mode: parallel}\n", "true"),
    ]
    .concat();
    let config =
        format!("server:\n  shutdown_grace: 20s\n  admin_token: {ADMIN_TOKEN}\nhooks:\n{hooks}")
            .replace("$MARKS", marks.path().to_str().unwrap());
    let mut node = Node::spawn(&url, "web-1", &config);
    node.ready().await;
    // `wait` jobs admitted on the HTTP workers (whose runtimes stop first at shutdown), then
    // `async` jobs still running when SIGTERM comes.
    let waited = futures_util::future::join_all((0..16).map(|_| node.post("quick", "{}"))).await;
    assert!(
        waited.iter().all(|answer| answer.status == 200),
        "{waited:?}"
    );
    let mut slow = Vec::new();
    for _ in 0..6 {
        slow.push(node.accepted("slow", "{}").await);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(node.exit_code().await, Some(0), "{}", node.log());
    let log = node.log();
    assert!(
        !log.contains("cannot be reached") && !log.contains("could not commit"),
        "the database was lost during the shutdown:\n{log}"
    );
    let client = crate::helpers::sql(&url).await;
    let rows = client
        .query(
            "SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status",
            &[],
        )
        .await
        .unwrap();
    let statuses: Vec<(String, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(statuses, [("succeeded".to_string(), 22)], "{log}");
}

/// `pg_try_advisory_lock(NAME_SPACE, hashtext(name))` is an instance's name lock.
const NAME_SPACE: i32 = 0x686f_6f6c;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_name_was_taken_while_it_was_away_takes_no_work_until_it_is_free() {
    let url = fresh_database().await;
    let marks = tempfile::tempdir().unwrap();
    let hooks = hook("h", ASYNC, "true");
    let config = format!("server:\n  admin_token: {ADMIN_TOKEN}\nhooks:\n{hooks}")
        .replace("$MARKS", marks.path().to_str().unwrap());
    let mut node = Node::spawn(&url, "web-1", &config);
    node.ready().await;
    // The listening connection is cut, and another process takes the name before it is back
    // (as one started with the same name during a network partition would).
    let other = crate::helpers::sql(&url).await;
    let taken: bool = other
        .query_one(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_locks \
             WHERE locktype = 'advisory' AND classid = $1 AND objid = hashtext('web-1')::oid",
            &[&(NAME_SPACE as u32)],
        )
        .await
        .unwrap()
        .get(0);
    assert!(taken, "the listening connection held the name lock");
    other
        .execute(
            "SELECT pg_advisory_lock($1, hashtext('web-1'))",
            &[&NAME_SPACE],
        )
        .await
        .unwrap();
    let refused = crate::serve::eventually_status(&node, "/readyz", 503).await;
    assert_eq!(refused.status, 503);
    let answer = node.post("h", "{}").await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_eq!(answer.body["error"], "store_unavailable");
    crate::helpers::eventually(DEADLINE, "the log says why", || async {
        node.log().contains("another process took it").then_some(())
    })
    .await;
    let answer = node.post("h", "{}").await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(
        node.get("/readyz").await.status == 503,
        "not ready while the name is another's"
    );
    // The other process goes away: the name is this instance's again.
    drop(other);
    crate::serve::eventually_status(&node, "/readyz", 200).await;
    node.accepted("h", "{}").await;
}
