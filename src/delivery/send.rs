//! One try of one notification: the POST of a `webhook` or `slack` target, or the run of a
//! `command` target. What went wrong is said without the URL (a Slack URL is a credential, and
//! any URL may carry a password) and without the body.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::config::Target;
use crate::notify::settle::Answer;
use crate::notify::{command, webhook};
use crate::runner::{self, CappedOutput};
use crate::store::DueNotification;

/// How long one POST may take, from connecting to the end of the answer's head.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10); // said in `describe_error`
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Same-origin redirects followed at most.
const MAX_REDIRECTS: usize = 5;
/// The longest last line of a failed command's stderr logged.
const MAX_ERROR_LINE: usize = 200;

/// Makes the tries; one per server, sharing its connections.
#[derive(Clone, Default)]
pub struct Sender {
    /// Made at the first POST: a server none of whose hooks notify a URL never builds one (its
    /// TLS roots and connection pool are memory an idle server does not need).
    client: Arc<OnceLock<reqwest::Client>>,
}

impl Sender {
    pub fn new() -> Sender {
        Sender::default()
    }

    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            // Only a 307 or 308 (which keep the method and the body) to the same scheme, host
            // and port is followed: a notification is never sent to another host than the one
            // configured, and a POST is never turned into a GET without its body.
            let policy = reqwest::redirect::Policy::custom(|attempt| {
                let keeps_post = matches!(attempt.status().as_u16(), 307 | 308);
                let same_origin = attempt
                    .previous()
                    .first()
                    .is_some_and(|first| first.origin() == attempt.url().origin());
                if keeps_post && same_origin && attempt.previous().len() <= MAX_REDIRECTS {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            });
            reqwest::Client::builder()
                .redirect(policy)
                .timeout(HTTP_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("hookrunner/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("the TLS backend initializes")
        })
    }

    /// Makes try number `due.attempts` of `due` to `target`.
    pub async fn send(&self, target: &Target, due: &DueNotification) -> Answer {
        match target {
            Target::Webhook { url, keys } => {
                let timestamp = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs() as i64);
                let headers = webhook::headers(keys, &due.id(), timestamp, &due.body);
                self.post(url.url(), headers, &due.body).await
            }
            Target::Slack { url } => self.post(url.url(), Vec::new(), &due.body).await,
            Target::Command { argv, workdir } => run(argv, workdir, due).await,
        }
    }

    async fn post(
        &self,
        url: &url::Url,
        headers: Vec<(&'static str, String)>,
        body: &[u8],
    ) -> Answer {
        let mut request = self
            .client()
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return Answer::Failed {
                    error: describe_error(error),
                    retry_after: None,
                }
            }
        };
        let status = response.status();
        if status.is_success() {
            return Answer::Delivered;
        }
        if status == reqwest::StatusCode::GONE {
            return Answer::Gone;
        }
        let error = if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|location| location.to_str().ok())
                .and_then(|location| response.url().join(location).ok());
            let host = to
                .as_ref()
                .and_then(|to| to.host_str())
                .unwrap_or("an unknown place");
            format!(
                "the target answered {status}, a redirect to {host}; a notification follows only a 307 or 308 to the same host, so set its `url` to where it should go"
            )
        } else {
            format!("the target answered {status}")
        };
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| backoff::parse_retry_after(value, SystemTime::now()));
        Answer::Failed { error, retry_after }
    }
}

/// Runs a `command` target; exit status 0 delivers it.
async fn run(argv: &[String], workdir: &std::path::Path, due: &DueNotification) -> Answer {
    let spec = command::build(argv, workdir, &due.env, &due.body)
        .to_spec(&|name| std::env::var(name).ok(), due.attempts);
    let output = Arc::new(CappedOutput::new(command::MAX_OUTPUT));
    let finished = runner::run(spec, output.clone(), CancellationToken::new()).await;
    let error = match finished.outcome {
        runner::Outcome::Exited { code: 0 } => return Answer::Delivered,
        runner::Outcome::Exited { code } => format!("the command exited with {code}"),
        runner::Outcome::Signalled { signal } => format!(
            "the command was killed by {}",
            crate::job::signal_name(signal)
        ),
        runner::Outcome::TimedOut => format!(
            "the command ran longer than {}s and was stopped",
            command::TIMEOUT_MS / 1000
        ),
        runner::Outcome::Cancelled => "the command was stopped".to_string(),
        runner::Outcome::CouldNotStart { reason } => reason,
    };
    // Its stderr may hold what the job body must not show (a URL with a token, say): it goes
    // to the server's log at debug level, and the error says only how the command ended.
    let stderr = output.stderr();
    let last_line = String::from_utf8_lossy(&stderr)
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(|line| line.chars().take(MAX_ERROR_LINE).collect::<String>());
    if let Some(line) = last_line {
        tracing::debug!(job_id = %due.job, stderr = line, "a notification's command failed");
    }
    Answer::Failed {
        error,
        retry_after: None,
    }
}

/// What went wrong with the connection, down to its first cause, without the URL.
pub fn describe_error(error: reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "cannot connect to the target"
    } else if error.is_timeout() {
        "the target did not answer within 10s"
    } else {
        "the request to the target failed"
    };
    let error = error.without_url();
    let mut cause: &dyn std::error::Error = &error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    format!("{kind}: {cause}")
}
