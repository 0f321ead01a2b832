//! Prometheus metrics: what `GET /metrics` serves. Labels are hook ids from the config and fixed
//! outcome words, never request text, so an attacker cannot grow the label set.

use prometheus::{
    Encoder as _, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::store::StoreStats;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    signature_failures: IntCounterVec,
    rate_limited: IntCounterVec,
    jobs: IntCounterVec,
    job_retries: IntCounterVec,
    job_duration: HistogramVec,
    queue_depth: IntGauge,
    running_jobs: IntGauge,
    reloads: IntCounterVec,
    notifications: IntCounterVec,
    store_commits: IntCounterVec,
    /// Seconds until the served TLS certificate expires; a vector without labels, so that it is
    /// left out of the exposition until a `tls:` listener sets it.
    tls_expiry: GaugeVec,
    /// Serialises bringing `store_commits` up to the store's own counts at each scrape.
    store_sync: std::sync::Mutex<()>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric")
        };
        let metrics = Metrics {
            registry: Registry::new(),
            requests: counter(
                "hookrunner_requests_total",
                "Hook requests by hook and outcome.",
                &["hook", "outcome"],
            ),
            signature_failures: counter(
                "hookrunner_signature_failures_total",
                "Requests refused for their signature, by reason.",
                &["hook", "reason"],
            ),
            rate_limited: counter(
                "hookrunner_rate_limited_total",
                "Hook requests refused by a rate limit, by hook and limit (`ip`: the client's `per_ip`, `hook`: the hook's `per_hook`).",
                &["hook", "scope"],
            ),
            jobs: counter(
                "hookrunner_jobs_total",
                "Jobs that ended, by hook and final status.",
                &["hook", "status"],
            ),
            job_retries: counter(
                "hookrunner_job_retries_total",
                "Runs that ended with a status their hook retries and were tried again, by hook and that status.",
                &["hook", "status"],
            ),
            job_duration: HistogramVec::new(
                HistogramOpts::new("hookrunner_job_duration_seconds", "How long commands ran.")
                    .buckets(vec![
                        0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0,
                    ]),
                &["hook"],
            )
            .expect("a valid metric"),
            queue_depth: IntGauge::new("hookrunner_queue_depth", "Jobs waiting to run.")
                .expect("a valid metric"),
            running_jobs: IntGauge::new("hookrunner_running_jobs", "Commands running now.")
                .expect("a valid metric"),
            reloads: counter(
                "hookrunner_config_reloads_total",
                "Config reloads by result.",
                &["result"],
            ),
            notifications: counter(
                "hookrunner_notifications_total",
                "Notification tries, by target (`webhook`, `slack`, `command`) and result (`delivered`; `retried`: failed and tried again later; `failed`: given up).",
                &["target", "result"],
            ),
            store_commits: counter(
                "hookrunner_store_commits_total",
                "Job store transactions committed, by whether they fsynced the log first.",
                &["fsync"],
            ),
            tls_expiry: GaugeVec::new(
                Opts::new(
                    "hookrunner_tls_certificate_expiry_seconds",
                    "Seconds until the notAfter of the certificate the TLS listeners serve.",
                ),
                &[],
            )
            .expect("a valid metric"),
            store_sync: std::sync::Mutex::new(()),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.requests.clone()),
            Box::new(metrics.signature_failures.clone()),
            Box::new(metrics.rate_limited.clone()),
            Box::new(metrics.jobs.clone()),
            Box::new(metrics.job_retries.clone()),
            Box::new(metrics.job_duration.clone()),
            Box::new(metrics.queue_depth.clone()),
            Box::new(metrics.running_jobs.clone()),
            Box::new(metrics.reloads.clone()),
            Box::new(metrics.notifications.clone()),
            Box::new(metrics.store_commits.clone()),
            Box::new(metrics.tls_expiry.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("each metric is registered once");
        }
        metrics
    }

    /// Counts a hook request. `hook` is empty when the request named no configured hook.
    pub fn request(&self, hook: &str, outcome: &str) {
        self.requests.with_label_values(&[hook, outcome]).inc();
        if outcome.starts_with("signature_") || outcome == "timestamp_out_of_tolerance" {
            self.signature_failures
                .with_label_values(&[hook, outcome])
                .inc();
        }
    }

    /// A request to a configured `hook` refused by the `scope` limit (`ip` or `hook`).
    pub fn rate_limited(&self, hook: &str, scope: &str) {
        self.rate_limited.with_label_values(&[hook, scope]).inc();
    }

    /// A run that ended with `status` and is tried again; the job counts in `jobs` once, at
    /// its final end.
    pub fn job_retried(&self, hook: &str, status: &str) {
        self.job_retries.with_label_values(&[hook, status]).inc();
    }

    pub fn job_ended(&self, hook: &str, status: &str, seconds: Option<f64>) {
        self.jobs.with_label_values(&[hook, status]).inc();
        if let Some(seconds) = seconds {
            self.job_duration
                .with_label_values(&[hook])
                .observe(seconds);
        }
    }

    /// A notification try to a `target` kind ended as `result`: `delivered`, `retried` or
    /// `failed`.
    pub fn notification(&self, target: &str, result: &str) {
        self.notifications
            .with_label_values(&[target, result])
            .inc();
    }

    pub fn reload(&self, succeeded: bool) {
        self.reloads
            .with_label_values(&[if succeeded { "success" } else { "failure" }])
            .inc();
    }

    /// Sets the seconds until the served TLS certificate expires (negative once it has).
    pub fn tls_expiry(&self, seconds: f64) {
        self.tls_expiry.with_label_values(&[]).set(seconds);
    }

    /// The text exposition, with the gauges set to the engine's load now and the store's commit
    /// counts brought up to date.
    pub fn render(&self, running: usize, waiting: usize, store: StoreStats) -> String {
        self.running_jobs.set(running as i64);
        self.queue_depth.set(waiting as i64);
        {
            let _only_one = self.store_sync.lock().expect("metrics lock");
            let unsynced = store.commits.saturating_sub(store.synced);
            for (label, total) in [("yes", store.synced), ("no", unsynced)] {
                let counter = self.store_commits.with_label_values(&[label]);
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding does not fail on a Vec");
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_exposition() {
        let metrics = Metrics::new();
        metrics.request("deploy", "succeeded");
        metrics.request("deploy", "signature_invalid");
        metrics.rate_limited("deploy", "ip");
        metrics.job_ended("deploy", "succeeded", Some(0.2));
        metrics.reload(false);
        let store = |commits, synced| StoreStats {
            commits,
            synced,
            writes: commits,
        };
        let before = metrics.render(0, 0, store(3, 1));
        assert!(!before.contains("hookrunner_tls_certificate_expiry_seconds"));
        metrics.tls_expiry(86_400.5);
        let text = metrics.render(2, 5, store(7, 3));
        for line in [
            "hookrunner_store_commits_total{fsync=\"yes\"} 3",
            "hookrunner_store_commits_total{fsync=\"no\"} 4",
            "hookrunner_requests_total{hook=\"deploy\",outcome=\"succeeded\"} 1",
            "hookrunner_signature_failures_total{hook=\"deploy\",reason=\"signature_invalid\"} 1",
            "hookrunner_jobs_total{hook=\"deploy\",status=\"succeeded\"} 1",
            "hookrunner_rate_limited_total{hook=\"deploy\",scope=\"ip\"} 1",
            "hookrunner_job_duration_seconds_count{hook=\"deploy\"} 1",
            "hookrunner_running_jobs 2",
            "hookrunner_queue_depth 5",
            "hookrunner_config_reloads_total{result=\"failure\"} 1",
            "hookrunner_tls_certificate_expiry_seconds 86400.5",
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
    }
}
