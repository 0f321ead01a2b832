//! `hookrunner send`: sign a body as a provider would and POST it, trying again (`--retry`) on
//! connection errors, 408, 429 and 5xx with exponential backoff that honours `Retry-After`.
//! Exit codes: 0 a 2xx that ran something, 3 a 2xx saying nothing ran (`skipped`, `duplicate`),
//! 1 any other answer or none at all.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;

use super::server::{describe_error, exit, root_cause};
use super::sign::{fail, SignArgs, Signer};
use crate::backoff::{self, Backoff, Next};
use crate::config::units::parse_duration;

/// The longest wait that backoff alone makes between two tries (a longer `Retry-After` wins).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

#[derive(Args, Debug)]
#[command(after_help = "\
Exit codes: 0 a 2xx answer and something ran (or was accepted to run); 3 a 2xx answer saying \
nothing ran: `{\"status\": \"skipped\"}` (the hook's `when` does not hold) or \
`{\"status\": \"duplicate\"}` (a redelivery), named on stderr; 1 any other answer, no answer, \
or another error; 2 the command line does not parse.")]
pub struct SendArgs {
    /// Where to POST, such as http://127.0.0.1:9000/hooks/deploy-site
    #[arg(value_parser = parse_url)]
    pub url: reqwest::Url,
    #[command(flatten)]
    pub sign: SignArgs,
    /// An extra header, `Name: value`; repeat for several. A `Content-Type` here replaces the guessed one.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// The event name, sent in the provider's event header (e.g. `push` as `X-GitHub-Event`).
    #[arg(long)]
    pub event: Option<String>,
    /// Try again up to N times after a connection error, 408, 429 or 5xx (never after another 4xx).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retry: u32,
    /// The wait before the first retry; it doubles with each retry up to 10m, with jitter (half
    /// to all of it), and a longer `Retry-After` from the receiver wins.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub retry_delay: Duration,
    /// Start no retry later than this after the first try, such as `30s` or `5m`; no limit when
    /// left out. A try under way is not cut short.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retry_max_time: Option<Duration>,
}

/// The exit code of a 2xx answer that says nothing ran.
const NOTHING_RAN: u8 = 3;

/// What one try came to.
enum Reply {
    Answer {
        status: reqwest::StatusCode,
        version: String,
        text: String,
        retry_after: Option<Duration>,
        /// Why the body stopped before its end, if it did; the status still stands.
        cut_short: Option<String>,
    },
    Failed(reqwest::Error),
}

impl Reply {
    fn worth_retrying(&self) -> bool {
        match self {
            Reply::Answer { status, .. } => status_worth_retrying(status.as_u16()),
            Reply::Failed(error) => !error.is_builder() && !error.is_redirect(),
        }
    }

    /// One line on what happened, never the body or the signature.
    fn describe(&self) -> String {
        match self {
            Reply::Answer {
                status,
                retry_after,
                cut_short,
                ..
            } => {
                let mut what = status.to_string();
                if let Some(wait) = retry_after {
                    what.push_str(&format!(", `Retry-After` {}", human(*wait)));
                }
                if let Some(cause) = cut_short {
                    what.push_str(&format!(", the body cut short: {cause}"));
                }
                what
            }
            Reply::Failed(error) => describe_error(error),
        }
    }
}

/// A usage error rather than a failed try: no retry would mend it.
fn parse_url(text: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(text).map_err(|error| {
        format!("`{text}` is not a URL ({error}); write it as `http://HOST:PORT/PATH`")
    })
}

/// 408 and 429 ask to come back later and a 5xx may pass; any other 4xx would be refused again.
fn status_worth_retrying(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

pub fn send(args: &SendArgs) -> ExitCode {
    let signer = match Signer::new(&args.sign, args.event.as_deref()) {
        Ok(signer) => signer,
        Err(message) => return fail(&message),
    };
    let mut extra = Vec::new();
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            return fail(&format!("`--header {header}` is not `Name: value`"));
        };
        extra.push((name.trim().to_string(), value.trim().to_string()));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the runtime: {error}")),
    };
    match runtime.block_on(send_with_retries(args, &signer, &extra)) {
        Reply::Answer {
            status,
            version,
            text,
            cut_short,
            ..
        } => {
            println!("{version} {status}");
            println!("{text}");
            if let Some(cause) = cut_short {
                eprintln!("hookrunner: the body of the answer was cut short: {cause}");
            }
            if !status.is_success() {
                return ExitCode::from(exit::REFUSED);
            }
            match nothing_ran(&text) {
                Some(why) => {
                    eprintln!("hookrunner: nothing ran: {why}");
                    ExitCode::from(NOTHING_RAN)
                }
                None => ExitCode::SUCCESS,
            }
        }
        Reply::Failed(error) => fail(&format!(
            "cannot send to `{}`: {}",
            super::server::redact(&args.url),
            describe_error(&error)
        )),
    }
}

/// Why a 2xx answer ran nothing, when its body says so: `{"status": "skipped"}` (the hook's
/// `when` did not hold) or `{"status": "duplicate"}` (a redelivery of an earlier job).
fn nothing_ran(body: &str) -> Option<String> {
    let body: serde_json::Value = serde_json::from_str(body).ok()?;
    match body.get("status")?.as_str()? {
        "skipped" => Some("`skipped`: the hook's `when` does not hold for this request".into()),
        "duplicate" => Some(match body.get("job_id").and_then(|id| id.as_str()) {
            Some(id) => format!("`duplicate`: a redelivery of job {id}"),
            None => "`duplicate`: a redelivery of an earlier job".into(),
        }),
        _ => None,
    }
}

/// Tries until an answer is not worth retrying, the retries are used up or the time budget
/// is; every try but a lone one is one line on standard error.
async fn send_with_retries(args: &SendArgs, signer: &Signer, extra: &[(String, String)]) -> Reply {
    let client = reqwest::Client::new();
    let backoff = Backoff::new(args.retry_delay, MAX_RETRY_DELAY);
    let deadline = args.retry_max_time.map(|budget| Instant::now() + budget);
    let mut random = rand::thread_rng();
    let mut tries = 1;
    loop {
        let reply = try_once(&client, &args.url, signer, extra).await;
        if args.retry == 0 {
            return reply;
        }
        let what = reply.describe();
        if tries > args.retry || !reply.worth_retrying() {
            eprintln!("hookrunner: try {tries}: {what}");
            return reply;
        }
        let retry_after = match &reply {
            Reply::Answer { retry_after, .. } => *retry_after,
            Reply::Failed(_) => None,
        };
        let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        match backoff::next(backoff.delay(tries, &mut random), retry_after, left) {
            Next::After(wait) => {
                eprintln!(
                    "hookrunner: try {tries}: {what}; next try in {}",
                    human(wait)
                );
                tokio::time::sleep(wait).await;
            }
            Next::BudgetSpent => {
                eprintln!(
                    "hookrunner: try {tries}: {what}; `--retry-max-time` ran out, not trying again"
                );
                return reply;
            }
            Next::AskedPastBudget { asked, left } => {
                eprintln!(
                    "hookrunner: try {tries}: {what}; the receiver asks for a wait of {}, more than the {} left of `--retry-max-time`, not trying again",
                    human(asked),
                    human(left)
                );
                return reply;
            }
        }
        tries += 1;
    }
}

/// One POST of the same body. Timestamped schemes (Stripe, Slack, Standard Webhooks, Scalr) are signed
/// anew for each try, as those providers do when they retry, so a late try is not refused as
/// outside the receiver's tolerance; the delivery id stays the same, so the receiver can tell
/// a retry from a new delivery. `--timestamp` pins the timestamp for every try.
async fn try_once(
    client: &reqwest::Client,
    url: &reqwest::Url,
    signer: &Signer,
    extra: &[(String, String)],
) -> Reply {
    let mut headers = signer.headers();
    for (name, value) in extra {
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.clone()));
    }
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        headers.push((
            "Content-Type".into(),
            guess_content_type(&signer.body).into(),
        ));
    }
    let mut request = client.post(url.clone()).body(signer.body.clone());
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Reply::Failed(error),
    };
    let status = response.status();
    let version = format!("{:?}", response.version());
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| backoff::parse_retry_after(value, SystemTime::now()));
    let (text, cut_short) = match response.text().await {
        Ok(text) => (text, None),
        Err(error) => (String::new(), Some(root_cause(&error).to_string())),
    };
    Reply::Answer {
        status,
        version,
        text,
        retry_after,
        cut_short,
    }
}

/// A wait as `1s 250ms`, to the millisecond.
fn human(wait: Duration) -> String {
    let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(millis)).to_string()
}

/// JSON when the body parses as JSON, form data when it looks like `a=b&c=d`, plain text otherwise.
fn guess_content_type(body: &[u8]) -> &'static str {
    if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
        "application/json"
    } else if !body.is_empty() && body.contains(&b'=') && !body.iter().any(u8::is_ascii_whitespace)
    {
        "application/x-www-form-urlencoded"
    } else {
        "text/plain"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_or_duplicate_answer_means_nothing_ran() {
        let cases = [
            (
                r#"{"status": "skipped", "reason": "when"}"#,
                Some("`skipped`"),
            ),
            (r#"{"status": "duplicate", "job_id": "a1"}"#, Some("job a1")),
            (r#"{"status": "queued", "job_id": "a1"}"#, None),
            (r#"{"status": "succeeded"}"#, None),
            ("ok", None),
            ("[]", None),
        ];
        for (body, expected) in cases {
            let why = nothing_ran(body);
            match expected {
                Some(part) => assert!(
                    why.as_deref().unwrap_or("").contains(part),
                    "{body}: {why:?}"
                ),
                None => assert_eq!(why, None, "{body}"),
            }
        }
    }

    #[test]
    fn only_answers_that_may_pass_later_are_worth_retrying() {
        let cases = [
            (200, false),
            (201, false),
            (204, false),
            (301, false),
            (304, false),
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (409, false),
            (410, false),
            (413, false),
            (422, false),
            (408, true),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (504, true),
            (599, true),
        ];
        for (status, expected) in cases {
            assert_eq!(status_worth_retrying(status), expected, "{status}");
        }
    }
}
