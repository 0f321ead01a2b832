//! `hookrunner jobs …`: the server's job API from the command line (list, show, log, cancel,
//! re-run, approve, reject), with tables and `name: value` lines for people and `--json` for
//! scripts. Only the routes that need the admin token are sent it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::server::{self, exit, AdminToken, Failure, Server};

const EXIT_CODES: &str = "\
Exit codes: 0 done; 1 the server refused (its message and the HTTP status are on stderr); \
2 usage; 4 the server cannot be reached.

The admin token is read from `HOOKRUNNER_ADMIN_TOKEN` or `--admin-token-file`, never from the \
command line; `list`, `cancel`, `rerun`, `approve` and `reject` send it, `show` and `log` do not.";

#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct JobsArgs {
    /// The server: `http://HOST:PORT`, or `unix:PATH` for a unix socket.
    #[arg(
        long,
        env = "HOOKRUNNER_URL",
        hide_env_values = true,
        default_value = server::DEFAULT_URL,
        global = true
    )]
    pub url: String,
    /// Read the admin token from this file (trailing newlines removed) instead of `HOOKRUNNER_ADMIN_TOKEN`.
    #[arg(long, value_name = "PATH", global = true)]
    pub admin_token_file: Option<PathBuf>,
    /// Print the server's JSON as it is (for `list --all`, every page merged into one object).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: JobsCommand,
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs, newest first: id, hook, status, created, duration (needs the admin token).
    #[command(after_help = EXIT_CODES)]
    List {
        /// Only this hook's jobs.
        #[arg(long)]
        hook: Option<String>,
        /// Only jobs with this status (`queued`, `running`, `succeeded`, `failed`, ...).
        #[arg(long)]
        status: Option<String>,
        /// Jobs per page, 1-1000 (the server's default is 50).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Follow `next` and list every page, not only the first.
        #[arg(long)]
        all: bool,
    },
    /// Show one job, a field per line.
    #[command(after_help = EXIT_CODES)]
    Show {
        #[arg(value_parser = job_id)]
        id: String,
    },
    /// Print a job's output as it is; with `--follow`, as it comes until the job ends.
    #[command(after_help = EXIT_CODES)]
    Log {
        #[arg(value_parser = job_id)]
        id: String,
        /// Keep printing the output as the job writes it, until the job ends.
        #[arg(long)]
        follow: bool,
    },
    /// Cancel a job: drop it if queued, terminate its process group if running (admin token).
    #[command(after_help = EXIT_CODES)]
    Cancel {
        #[arg(value_parser = job_id)]
        id: String,
    },
    /// Run an `async` job's command again, as a new job (admin token).
    #[command(after_help = EXIT_CODES)]
    Rerun {
        #[arg(value_parser = job_id)]
        id: String,
    },
    /// Approve a job that waits for approval, so that it runs (admin token).
    #[command(after_help = EXIT_CODES)]
    Approve {
        #[arg(value_parser = job_id)]
        id: String,
    },
    /// Reject a job that waits for approval; it ends `rejected` and never runs (admin token).
    #[command(after_help = EXIT_CODES)]
    Reject {
        #[arg(value_parser = job_id)]
        id: String,
    },
}

pub fn jobs(args: &JobsArgs) -> ExitCode {
    let server = match Server::parse(&args.url) {
        Ok(server) => server,
        Err(message) => return usage(&format!("`--url` (or `HOOKRUNNER_URL`): {message}")),
    };
    let token = match AdminToken::find(args.admin_token_file.as_deref()) {
        Ok(token) => token,
        Err(message) => return usage(&message),
    };
    let client = match server.client() {
        Ok(client) => client,
        Err(error) => return usage(&format!("cannot make the HTTP client: {error}")),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return usage(&format!("cannot start the runtime: {error}")),
    };
    let api = Api {
        server,
        client,
        token,
    };
    match runtime.block_on(run(&api, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("hookrunner: {message}");
    ExitCode::from(exit::USAGE)
}

async fn run(api: &Api, args: &JobsArgs) -> Result<(), Failure> {
    match &args.command {
        JobsCommand::List {
            hook,
            status,
            limit,
            all,
        } => {
            let mut query = Vec::new();
            query.extend(hook.iter().map(|hook| ("hook", hook.clone())));
            query.extend(status.iter().map(|status| ("status", status.clone())));
            query.extend(limit.iter().map(|limit| ("limit", limit.to_string())));
            list(api, query, *all, args.json).await
        }
        JobsCommand::Show { id } => {
            let (text, body) = api
                .json(reqwest::Method::GET, &job_path(id, ""), false)
                .await?;
            match args.json {
                true => print(text.as_bytes()),
                false => print(fields(&body).as_bytes()),
            }
        }
        JobsCommand::Log { id, follow } => {
            let path = job_path(id, if *follow { "/log?follow=1" } else { "/log" });
            log(api, &path).await
        }
        JobsCommand::Cancel { id } => action(api, id, "cancel", args.json).await,
        JobsCommand::Rerun { id } => action(api, id, "rerun", args.json).await,
        JobsCommand::Approve { id } => action(api, id, "approve", args.json).await,
        JobsCommand::Reject { id } => action(api, id, "reject", args.json).await,
    }
}

/// `jobs/{id}{rest}`, the id escaped so that it stays one path segment.
/// A job id as the command line gives it: 32 hex digits, as the server makes them.
fn job_id(text: &str) -> Result<String, String> {
    crate::job::JobId::parse(text)
        .map(|id| id.to_string())
        .ok_or_else(|| {
            format!("`{text}` is not a job id (32 hex digits, such as the `job_id` of an answer)")
        })
}

/// The path of job `id`'s route; `id` was checked to be a job id (so it cannot climb out of
/// `jobs/` with `..`), by [`job_id`].
fn job_path(id: &str, rest: &str) -> String {
    format!("jobs/{id}{rest}")
}

struct Api {
    server: Server,
    client: reqwest::Client,
    token: Option<AdminToken>,
}

impl Api {
    /// Sends a request (with the admin token when `admin`) and returns a 2xx answer.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        admin: bool,
    ) -> Result<reqwest::Response, Failure> {
        let mut request = self.client.request(method, self.server.url(path));
        if let (true, Some(token)) = (admin, &self.token) {
            request = token.authorize(request);
        }
        let response = request
            .send()
            .await
            .map_err(|error| Failure::unreachable(&self.server, &error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(Failure::Refused {
            status: status.as_u16(),
            message: server::refusal_message(&text),
        })
    }

    /// A 2xx answer's text and its JSON.
    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        admin: bool,
    ) -> Result<(String, Value), Failure> {
        let response = self.call(method, path, admin).await?;
        let text = response
            .text()
            .await
            .map_err(|error| Failure::unreachable(&self.server, &error))?;
        let body = serde_json::from_str(&text).map_err(|error| Failure::Unreachable {
            server: self.server.shown(),
            cause: format!("the answer is not JSON ({error})"),
        })?;
        Ok((text, body))
    }
}

async fn list(api: &Api, query: Vec<(&str, String)>, all: bool, json: bool) -> Result<(), Failure> {
    let mut jobs = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut page_query = query.clone();
        page_query.extend(before.iter().map(|id| ("before", id.clone())));
        let encoded: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&page_query)
            .finish();
        let path = match encoded.is_empty() {
            true => "jobs".to_string(),
            false => format!("jobs?{encoded}"),
        };
        let (text, mut body) = api.json(reqwest::Method::GET, &path, true).await?;
        let next = body["next"].as_str().map(str::to_string);
        if !all {
            if json {
                return print(text.as_bytes());
            }
            let page = body["jobs"].as_array().map_or(&[][..], Vec::as_slice);
            print(table(page).as_bytes())?;
            if next.is_some() {
                eprintln!("hookrunner: there are more jobs; `--all` lists every page");
            }
            return Ok(());
        }
        if let Value::Array(page) = body["jobs"].take() {
            jobs.extend(page);
        }
        match next {
            // A server that hands back the cursor it was given would page forever.
            Some(id) if before.as_deref() != Some(id.as_str()) => before = Some(id),
            _ => break,
        }
    }
    match json {
        true => print(
            serde_json::json!({"jobs": jobs, "next": null})
                .to_string()
                .as_bytes(),
        ),
        false => print(table(&jobs).as_bytes()),
    }
}

/// Copies the log to stdout a chunk at a time, as it arrives.
async fn log(api: &Api, path: &str) -> Result<(), Failure> {
    let mut response = api.call(reqwest::Method::GET, path, false).await?;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => print(&chunk)?,
            Ok(None) => return Ok(()),
            Err(error) => {
                return Err(Failure::Unreachable {
                    server: api.server.shown(),
                    cause: format!("the log broke off: {}", server::root_cause(&error)),
                })
            }
        }
    }
}

/// `POST /jobs/{id}/{verb}` with the admin token, and one line on what it did.
async fn action(api: &Api, id: &str, verb: &str, json: bool) -> Result<(), Failure> {
    let path = job_path(id, &format!("/{verb}"));
    let (text, body) = api.json(reqwest::Method::POST, &path, true).await?;
    if json {
        return print(text.as_bytes());
    }
    let text = |name: &str| body[name].as_str().unwrap_or("-").to_string();
    let line = match verb {
        "cancel" => format!("{}: {}", text("job_id"), text("result")),
        "rerun" => format!(
            "{}: {} (a re-run of {})",
            text("job_id"),
            text("status"),
            text("rerun_of")
        ),
        _ => format!("{}: {}", text("job_id"), text("status")),
    };
    print(format!("{line}\n").as_bytes())
}

/// Writes to stdout at once. A reader that stops early (`| head`) ends the command quietly.
fn print(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => {
            eprintln!("hookrunner: cannot write to stdout: {error}");
            std::process::exit(1)
        }
    }
}

/// The jobs as a table: id, hook, status, created, duration; a header line first.
pub fn table(jobs: &[Value]) -> String {
    let header = ["ID", "HOOK", "STATUS", "CREATED", "DURATION"].map(str::to_string);
    let rows: Vec<[String; 5]> = jobs
        .iter()
        .map(|job| {
            let text = |name: &str| job[name].as_str().unwrap_or("-").to_string();
            [
                text("job_id"),
                text("hook"),
                text("status"),
                text("created_at"),
                job["duration_ms"].as_u64().map_or("-".into(), duration),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|cell| cell.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A duration in milliseconds as people read it: `850ms`, `12.3s`, `4m 05s`, `2h 03m`.
fn duration(millis: u64) -> String {
    match millis {
        0..=999 => format!("{millis}ms"),
        1_000..=59_999 => format!("{:.1}s", millis as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m {:02}s", millis / 60_000, millis / 1000 % 60),
        _ => format!("{}h {:02}m", millis / 3_600_000, millis / 60_000 % 60),
    }
}

/// A job's fields, one `name: value` per line; nested ones named by their path
/// (`links.job`, `notifications.0.status`), `null` shown as `-`.
pub fn fields(job: &Value) -> String {
    let mut out = String::new();
    flatten("", job, &mut out);
    out
}

fn flatten(name: &str, value: &Value, out: &mut String) {
    let join = |key: &str| match name {
        "" => key.to_string(),
        _ => format!("{name}.{key}"),
    };
    match value {
        Value::Object(object) => object
            .iter()
            .for_each(|(key, value)| flatten(&join(key), value, out)),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .for_each(|(index, value)| flatten(&join(&index.to_string()), value, out)),
        Value::Array(_) => out.push_str(&format!("{name}: -\n")),
        Value::Null => out.push_str(&format!("{name}: -\n")),
        Value::String(text) => out.push_str(&format!("{name}: {}\n", one_line(text))),
        other => out.push_str(&format!("{name}: {other}\n")),
    }
}

/// Text on one line: a multi-line value (`stdout`) keeps its line breaks as `\n`.
fn one_line(text: &str) -> String {
    text.trim_end_matches('\n').replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_as_people_say_them() {
        let cases = [
            (0, "0ms"),
            (850, "850ms"),
            (1_000, "1.0s"),
            (12_345, "12.3s"),
            (245_000, "4m 05s"),
            (7_380_000, "2h 03m"),
        ];
        for (millis, expected) in cases {
            assert_eq!(duration(millis), expected, "{millis}");
        }
    }

    #[test]
    fn a_list_is_a_table_with_aligned_columns() {
        let jobs = [
            json!({"job_id": "a1", "hook": "deploy", "status": "succeeded",
                   "created_at": "2026-12-02T14:00:00Z", "duration_ms": 1500}),
            json!({"job_id": "b22", "hook": "x", "status": "queued",
                   "created_at": "2026-12-02T14:00:01Z", "duration_ms": null}),
        ];
        assert_eq!(
            table(&jobs),
            "\
ID   HOOK    STATUS     CREATED               DURATION
a1   deploy  succeeded  2026-12-02T14:00:00Z  1.5s
b22  x       queued     2026-12-02T14:00:01Z  -
"
        );
        assert_eq!(table(&[]), "ID  HOOK  STATUS  CREATED  DURATION\n");
    }

    #[test]
    fn a_job_shows_one_field_per_line_with_nested_ones_by_path() {
        let job = json!({
            "hook": "deploy", "job_id": "a1", "exit_code": 0, "signal": null,
            "links": {"job": "/jobs/a1"}, "notifications": [{"status": "delivered"}],
            "stdout": "one\ntwo\n", "empty": [],
        });
        assert_eq!(
            fields(&job),
            "\
hook: deploy
job_id: a1
exit_code: 0
signal: -
links.job: /jobs/a1
notifications.0.status: delivered
stdout: one\\ntwo
empty: -
"
        );
    }
}
