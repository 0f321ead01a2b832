//! What keeps the page current while jobs run, as server-sent events: a running job's log as it
//! grows (`/ui/jobs/{id}/log/events`), and a nudge to the jobs list and the hooks page when jobs
//! change (`/ui/events`). Both need a session, like every page.

use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::time::timeout;

use super::guard::signed_in;
use super::handlers::{bad_request, job_not_found, unavailable};
use super::log_text::LogText;
use crate::http::log::{self, Source};
use crate::http::stream::event;
use crate::http::AppState;
use crate::job::JobId;

/// How long a stream stays silent before it sends a comment, so that proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

type Body = Pin<Box<dyn Stream<Item = Result<Bytes, Infallible>>>>;

/// The answer of an event stream that ends at its first event (or keep-alive) after the session
/// stops being valid: its 12 hours are over, the admin token changed, or the page was turned off.
fn events(state: web::Data<AppState>, request: HttpRequest, body: Body) -> HttpResponse {
    let body = body.take_while(move |_| std::future::ready(signed_in(&state, &request).is_ok()));
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

#[derive(Deserialize)]
pub struct LogEventsQuery {
    offset: Option<String>,
}

/// `GET /ui/jobs/{id}/log/events?offset=N`: the job's log from byte `offset` until the job ends,
/// as `log` events of page text (each event's `id` is the byte offset it reaches, so a browser
/// that reconnects resumes there), then an `end` event with the job's status.
pub async fn log_events(
    state: web::Data<AppState>,
    request: HttpRequest,
    id: web::Path<String>,
    query: web::Query<LogEventsQuery>,
) -> HttpResponse {
    if let Err(refusal) = signed_in(&state, &request) {
        return refusal.answer();
    }
    let Some(id) = JobId::parse(&id) else {
        return job_not_found();
    };
    let source = match state.engine.watch(&id) {
        Some((job, sink)) => Source::Local { job, sink },
        None => match state.engine.get(&id).await {
            Ok(Some(_)) => Source::Store,
            Ok(None) => return job_not_found(),
            Err(error) => return unavailable(error),
        },
    };
    let offset = match last_event_id(&request) {
        Some(offset) => offset,
        None => match query.offset.as_deref().map(str::parse) {
            None => 0,
            Some(Ok(offset)) => offset,
            Some(Err(_)) => return bad_request("`offset` takes a number of bytes."),
        },
    };
    let engine = state.engine.clone();
    let bytes = log::read(engine.store().clone(), id.clone(), offset, Some(source));
    let follower = LogFollower {
        bytes: Box::pin(bytes),
        text: LogText::default(),
        offset,
        done: false,
    };
    let body = stream::unfold(follower, move |mut follower| {
        let engine = engine.clone();
        let id = id.clone();
        async move {
            if follower.done {
                return None;
            }
            let out = match follower.next().await {
                Some(out) => out,
                None => {
                    follower.done = true;
                    // `end` only for a job that has ended (or is gone): when the store could
                    // not say, the stream just closes, and the browser reconnects from where it
                    // was.
                    let status = match engine.get(&id).await {
                        Ok(Some(job)) if job.status().is_final() => job.status().as_str(),
                        Ok(None) => "gone",
                        Ok(Some(_)) | Err(_) => return None,
                    };
                    let rest = follower.text.finish();
                    let mut out = follower.log_event(rest);
                    out.extend_from_slice(event("end", status).as_bytes());
                    out
                }
            };
            Some((Ok(Bytes::from(out)), follower))
        }
    });
    events(state, request, Box::pin(body))
}

/// The offset a reconnecting browser had reached, from the `id` of the last event it had.
fn last_event_id(request: &HttpRequest) -> Option<u64> {
    request
        .headers()
        .get("last-event-id")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

struct LogFollower {
    bytes: Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>>>>,
    text: LogText,
    /// The byte offset read up to, held bytes included.
    offset: u64,
    done: bool,
}

impl LogFollower {
    /// What to send next: text, or a keep-alive comment after a silence; `None` once the log
    /// has ended. A read error ends the stream without an `end` event, so that the browser
    /// reconnects from where it was.
    async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            match timeout(KEEP_ALIVE, self.bytes.next()).await {
                Err(_) => return Some(KEEP_ALIVE_COMMENT.to_vec()),
                Ok(Some(Ok(piece))) => {
                    self.offset += piece.len() as u64;
                    let text = self.text.push(&piece);
                    if !text.is_empty() {
                        return Some(self.log_event(text));
                    }
                }
                Ok(Some(Err(error))) => {
                    tracing::warn!(%error, "cannot read a job's log for the page");
                    self.done = true;
                    return Some(Vec::new());
                }
                Ok(None) => return None,
            }
        }
    }

    /// A `log` event of `text` (nothing for no text), with the offset it reaches as its id.
    fn log_event(&self, text: String) -> Vec<u8> {
        if text.is_empty() {
            return Vec::new();
        }
        let reached = self.offset - self.text.held() as u64;
        // `event` drops one line end from the text it is given, so the text goes with one more:
        // the browser then gets the text exactly, its last line end included.
        format!("id: {reached}\n{}", event("log", &(text + "\n"))).into_bytes()
    }
}

/// `GET /ui/events`: a `changed` event whenever a job has been admitted or has changed state
/// (as [`Changes`](super::Changes) sees it, within a few seconds), and a comment after
/// [`KEEP_ALIVE`] of silence.
pub async fn changes(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Err(refusal) = signed_in(&state, &request) {
        return refusal.answer();
    }
    let receiver = state.page_changes.listen(state.engine.store());
    let body = stream::unfold(receiver, |mut receiver| async move {
        let out = match timeout(KEEP_ALIVE, receiver.changed()).await {
            Ok(Ok(())) => {
                receiver.borrow_and_update();
                Bytes::from(event("changed", "jobs"))
            }
            Ok(Err(_)) => return None,
            Err(_) => Bytes::from_static(KEEP_ALIVE_COMMENT),
        };
        Some((Ok(out), receiver))
    });
    events(state, request, Box::pin(body))
}
