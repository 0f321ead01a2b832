//! Answers that stream: a `stream`-mode hook's output as it comes (plain chunked text, or SSE with
//! `Accept: text/event-stream`), and `GET /jobs/{id}/log?follow=1`.

use std::convert::Infallible;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::stream::{self, Stream};
use tokio::sync::watch;

use crate::engine::{Chunk, Item, LiveReader};
use crate::job::{now_ms, Job, JobView};
use crate::runner::StreamKind;

/// Whether the client asked for server-sent events.
fn wants_events(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"))
}

/// Streams a job's output until it ends, then its exit: `exit status N` in text, an `exit` event in SSE.
/// `output` is the job's [`JobHandle::output`](crate::engine::JobHandle::output), which every job
/// submitted to `follow` has.
pub fn respond(
    request: &HttpRequest,
    output: LiveReader,
    record: watch::Receiver<Job>,
) -> HttpResponse {
    let events = wants_events(request);
    let content_type = if events {
        "text/event-stream"
    } else {
        "text/plain; charset=utf-8"
    };
    let body = output_stream(output, record, events);
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("X-Accel-Buffering", "no"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(body)
}

struct Live {
    output: LiveReader,
    record: watch::Receiver<Job>,
    events: bool,
    done: bool,
}

fn output_stream(
    output: LiveReader,
    record: watch::Receiver<Job>,
    events: bool,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let live = Live {
        output,
        record,
        events,
        done: false,
    };
    stream::unfold(live, |mut live| async move {
        if live.done {
            return None;
        }
        loop {
            let finished = live.record.borrow().status().is_final();
            if finished {
                // The runner hands over all output before the job is marked finished, so what is
                // left is already waiting; it goes out a piece at a time, then the exit.
                let bytes = match live.output.try_next() {
                    Some(item) => render(item, live.events),
                    None => {
                        live.done = true;
                        exit_line(&live.record.borrow(), live.events)
                    }
                };
                return Some((Ok(bytes), live));
            }
            tokio::select! {
                item = live.output.next() => match item {
                    Some(item) => return Some((Ok(render(item, live.events)), live)),
                    // The sink lives as long as the job; ended output means the job is gone.
                    None => live.done = true,
                },
                changed = live.record.changed() => if changed.is_err() { live.done = true },
            }
            if live.done {
                let last = exit_line(&live.record.borrow(), live.events);
                return Some((Ok(last), live));
            }
        }
    })
}

fn render(item: Item, events: bool) -> Bytes {
    match item {
        Item::Output(chunk) => render_chunk(&chunk, events),
        Item::Skipped(bytes) => skipped_note(bytes, events),
    }
}

fn render_chunk(chunk: &Chunk, events: bool) -> Bytes {
    if !events {
        return chunk.data.clone();
    }
    let name = match chunk.stream {
        StreamKind::Stdout => "stdout",
        StreamKind::Stderr => "stderr",
    };
    Bytes::from(event(name, &String::from_utf8_lossy(&chunk.data)))
}

/// Where a reader that fell behind missed output. On its own line, since the output before it may
/// have stopped mid-line.
fn skipped_note(bytes: u64, events: bool) -> Bytes {
    let note = format!("[hookrunner: {bytes} bytes of output skipped: this reader fell behind]");
    if events {
        Bytes::from(event("stderr", &note))
    } else {
        Bytes::from(format!("\n{note}\n"))
    }
}

/// One SSE event; each line of the text becomes a `data:` line. Lines end at CR, LF or CRLF, as
/// they do for the client's parser, so no output can end a `data:` line and start a field or an
/// event of its own.
pub(crate) fn event(name: &str, text: &str) -> String {
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix(['\n', '\r']))
        .unwrap_or(text);
    let mut out = format!("event: {name}\n");
    for line in text.split("\r\n").flat_map(|line| line.split(['\r', '\n'])) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

fn exit_line(job: &Job, events: bool) -> Bytes {
    if events {
        let body = serde_json::to_string(&JobView::of(job, false, now_ms())).unwrap_or_default();
        return Bytes::from(event("exit", &body));
    }
    let line = match job.outcome().and_then(|outcome| outcome.exit_code) {
        Some(code) => format!("\nexit status {code}\n"),
        None => format!("\nexit status {}\n", job.status().as_str()),
    };
    Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use super::event;

    #[test]
    fn events_put_each_line_in_a_data_field_whatever_ends_it() {
        // (output, the event sent for it)
        let cases = [
            ("a\nb\n", "event: stdout\ndata: a\ndata: b\n\n"),
            ("{}", "event: stdout\ndata: {}\n\n"),
            ("a\r\nb\r\n", "event: stdout\ndata: a\ndata: b\n\n"),
            ("a\rb\r", "event: stdout\ndata: a\ndata: b\n\n"),
            ("a\n\rb", "event: stdout\ndata: a\ndata: \ndata: b\n\n"),
            ("a\r\r\nb", "event: stdout\ndata: a\ndata: \ndata: b\n\n"),
            (
                "a\revent: exit\rdata: {}\r\r",
                "event: stdout\ndata: a\ndata: event: exit\ndata: data: {}\ndata: \n\n",
            ),
            ("\n", "event: stdout\ndata: \n\n"),
        ];
        for (output, expected) in cases {
            assert_eq!(event("stdout", output), expected, "output {output:?}");
        }
    }
}
