//! Answers that stream: a `stream`-mode hook's output as it comes (plain chunked text, or SSE with
//! `Accept: text/event-stream`), and `GET /jobs/{id}/log?follow=1`.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::stream::{self, Stream};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

use crate::engine::{Chunk, JobSink};
use crate::job::{now_ms, to_json};
use crate::runner::StreamKind;
use crate::store::JobRecord;

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
    output: broadcast::Receiver<Chunk>,
    record: watch::Receiver<JobRecord>,
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
    output: broadcast::Receiver<Chunk>,
    record: watch::Receiver<JobRecord>,
    events: bool,
    done: bool,
}

fn output_stream(
    output: broadcast::Receiver<Chunk>,
    record: watch::Receiver<JobRecord>,
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
            let finished = live.record.borrow().status.is_final();
            if finished {
                // The runner hands over all output before the job is marked finished, so what is
                // left is already in the channel.
                let mut rest = Vec::new();
                loop {
                    match live.output.try_recv() {
                        Ok(chunk) => rest.extend_from_slice(&render(&chunk, live.events)),
                        Err(TryRecvError::Lagged(skipped)) => {
                            rest.extend_from_slice(&skipped_note(skipped, live.events))
                        }
                        Err(_) => break,
                    }
                }
                let last = exit_line(&live.record.borrow(), live.events);
                rest.extend_from_slice(&last);
                live.done = true;
                return Some((Ok(Bytes::from(rest)), live));
            }
            tokio::select! {
                chunk = live.output.recv() => match chunk {
                    Ok(chunk) => return Some((Ok(render(&chunk, live.events)), live)),
                    Err(RecvError::Lagged(skipped)) => return Some((Ok(skipped_note(skipped, live.events)), live)),
                    // The sink lives as long as the job; a closed channel means the job is gone.
                    Err(RecvError::Closed) => live.done = true,
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

fn render(chunk: &Chunk, events: bool) -> Bytes {
    if !events {
        return chunk.data.clone();
    }
    let name = match chunk.stream {
        StreamKind::Stdout => "stdout",
        StreamKind::Stderr => "stderr",
    };
    Bytes::from(event(name, &String::from_utf8_lossy(&chunk.data)))
}

fn skipped_note(skipped: u64, events: bool) -> Bytes {
    let note = format!(
        "[hookrunner: this client fell behind and missed {skipped} chunks; the job log has them]\n"
    );
    if events {
        Bytes::from(event("stderr", &note))
    } else {
        Bytes::from(note)
    }
}

/// One SSE event; each line of the text becomes a `data:` line.
fn event(name: &str, text: &str) -> String {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut out = format!("event: {name}\n");
    for line in text.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    out
}

fn exit_line(record: &JobRecord, events: bool) -> Bytes {
    if events {
        return Bytes::from(event("exit", &to_json(record, false, now_ms()).to_string()));
    }
    let line = match record.exit_code {
        Some(code) => format!("\nexit status {code}\n"),
        None => format!("\nexit status {}\n", record.status.as_str()),
    };
    Bytes::from(line)
}

/// Follows a job's log file from the start until the job ends.
pub fn follow_log(
    path: PathBuf,
    record: watch::Receiver<JobRecord>,
    sink: Arc<JobSink>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    struct Follow {
        path: PathBuf,
        offset: u64,
        record: watch::Receiver<JobRecord>,
        length: watch::Receiver<u64>,
        /// The job's publisher is gone: read what is left, then end.
        gone: bool,
        done: bool,
    }
    let follow = Follow {
        path,
        offset: 0,
        length: sink.log_len(),
        record,
        gone: false,
        done: false,
    };
    stream::unfold(follow, |mut follow| async move {
        loop {
            if follow.done {
                return None;
            }
            // Read the final status before the file, so nothing written before the end is missed.
            let finished = follow.record.borrow_and_update().status.is_final() || follow.gone;
            let available = *follow.length.borrow_and_update();
            if available > follow.offset {
                match read_from(&follow.path, follow.offset).await {
                    Ok(bytes) if !bytes.is_empty() => {
                        follow.offset += bytes.len() as u64;
                        return Some((Ok(Bytes::from(bytes)), follow));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        follow.done = true;
                        return Some((Err(error), follow));
                    }
                }
            }
            if finished {
                return None;
            }
            tokio::select! {
                changed = follow.length.changed() => if changed.is_err() { follow.gone = true },
                changed = follow.record.changed() => if changed.is_err() { follow.gone = true },
            }
        }
    })
}

async fn read_from(path: &PathBuf, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::event;

    #[test]
    fn events_put_each_line_in_a_data_field() {
        assert_eq!(
            event("stdout", "a\nb\n"),
            "event: stdout\ndata: a\ndata: b\n\n"
        );
        assert_eq!(event("exit", "{}"), "event: exit\ndata: {}\n\n");
    }
}
