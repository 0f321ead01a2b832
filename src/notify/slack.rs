//! The `slack` target: `{"text": ...}` for an incoming webhook (Slack, Mattermost, Rocket.Chat):
//! the hook, how its job ended, how long it ran, a link to the job, and the end of its output.

use std::time::Duration;

use crate::job::{rfc3339, signal_name, Job};

/// At most this many of the output's last lines are shown…
pub const MAX_LINES: usize = 20;
/// …and at most this many characters of them.
pub const MAX_CHARS: usize = 3000;

/// The message body. `output` is the job's output as the caller has it (its log's end); only its
/// last [`MAX_LINES`] lines, at most [`MAX_CHARS`] characters, are shown. `public_url` is the
/// server's address as the reader's browser reaches it (`server.public_url`); without it, the
/// message names the job's id instead of linking to it.
pub fn body(job: &Job, output: &[u8], public_url: Option<&str>) -> Vec<u8> {
    let text = text(job, output, public_url);
    serde_json::to_vec(&serde_json::json!({ "text": text })).expect("a JSON value serializes")
}

/// The message text, in Slack's `mrkdwn`: every piece that comes from the job or its output has
/// `&`, `<` and `>` escaped, so output cannot mention `@channel` (`<!channel>`) or forge a link.
pub fn text(job: &Job, output: &[u8], public_url: Option<&str>) -> String {
    if let Some(until_ms) = job.approval_until_ms() {
        return waiting(job, until_ms, public_url);
    }
    let mut text = format!("*{}*: {}", escape(&job.hook), ending(job));
    if job.attempts > 1 {
        text.push_str(&format!(", attempt {} of {}", job.attempt, job.attempts));
    }
    text.push('\n');
    match public_url {
        Some(base) => text.push_str(&format!(
            "<{}/jobs/{}|job {}>",
            escape(base.trim_end_matches('/')),
            job.id,
            job.id
        )),
        None => text.push_str(&format!("job `{}`", job.id)),
    }
    let (tail, shown) = tail(output);
    if !tail.is_empty() {
        text.push_str(&format!("\n{shown}:\n```\n{}\n```", code(&tail)));
    }
    text
}

/// A job of an `approval` hook began to wait: where to approve or reject it (its web page, when
/// the server's address is known), and until when.
fn waiting(job: &Job, until_ms: i64, public_url: Option<&str>) -> String {
    let mut text = format!(
        "*{}*: awaiting approval until {}\n",
        escape(&job.hook),
        rfc3339(until_ms)
    );
    match public_url {
        Some(base) => text.push_str(&format!(
            "<{}/ui/jobs/{}|approve or reject job {}>",
            escape(base.trim_end_matches('/')),
            job.id,
            job.id
        )),
        None => text.push_str(&format!(
            "job `{}`: approve or reject it on its web page, or with `POST /jobs/{}/approve`",
            job.id, job.id
        )),
    }
    text
}

/// `failed (exit code 3) after 1s 200ms`, `superseded before it ran`, ….
fn ending(job: &Job) -> String {
    let status = job.status().as_str();
    let Some(outcome) = job.outcome() else {
        return status.to_string();
    };
    let mut ending = status.to_string();
    if let Some(code) = outcome.exit_code {
        ending.push_str(&format!(" (exit code {code})"));
    } else if let Some(signal) = outcome.signal {
        ending.push_str(&format!(" (killed by {})", signal_name(signal)));
    }
    if let Some(error) = &outcome.error {
        ending.push_str(&format!(": {}", escape(error)));
    }
    match (job.run(), outcome.duration_ms) {
        (Some(_), Some(ms)) => ending.push_str(&format!(
            " after {}",
            humantime::format_duration(Duration::from_millis(ms))
        )),
        (None, _) => ending.push_str(" before it ran"),
        (Some(_), None) => {}
    }
    ending
}

/// The end of the output, and how to announce what is shown: its last [`MAX_LINES`] lines, cut
/// to its last [`MAX_CHARS`] characters (from a line's start, unless one line is longer).
/// Control characters (terminal colours) are dropped, but for tabs and newlines.
fn tail(output: &[u8]) -> (String, String) {
    let text: String = String::from_utf8_lossy(output)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    let text = text.trim_end();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(MAX_LINES);
    let mut tail = lines[start..].join("\n");
    let mut cut_lines = start > 0;
    let chars = tail.chars().count();
    let mut cut_line = false;
    if chars > MAX_CHARS {
        let skip = tail
            .char_indices()
            .nth(chars - MAX_CHARS)
            .map_or(0, |(at, _)| at);
        let kept = &tail[skip..];
        tail = match kept.find('\n') {
            // The first line shown starts where a line starts.
            Some(newline) if newline + 1 < kept.len() => {
                cut_lines = true;
                kept[newline + 1..].to_string()
            }
            _ => {
                cut_line = true;
                kept.to_string()
            }
        };
    }
    let shown = if cut_line {
        format!("last {MAX_CHARS} characters of output")
    } else if cut_lines {
        format!("last {} lines of output", tail.lines().count())
    } else {
        "output".to_string()
    };
    (tail, shown)
}

/// Slack's three escapes; nothing else is special in its text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Text for inside a code block: escaped, and no run of three backquotes to end the block early.
fn code(text: &str) -> String {
    escape(text).replace("```", "`\u{200b}`\u{200b}`")
}
