//! `{base_path}/{id}`: the request path of a hook. The checks run in the order SPEC §8 gives:
//! hook exists → rate limits (§17) → method → body size → signature → `when` → capacity → run.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;

use super::{stream, with_outcome, ApiError, AppState, ClientInfo, RATE_LIMITED};
use crate::command::{self, BuildError};
use crate::config::units::format_size;
use crate::config::{Hook, ResponseMode};
use crate::engine::{JobHandle, Submission, SubmitError, Submitted};
use crate::exec_limits;
use crate::job::{now_ms, JobId, JobView, Status};
use crate::rate_limit::{Refused, Scope};
use crate::request::{Headers, RequestContext, ValueError, FORM_LOOKS_LIKE_JSON};
use crate::signature::SignedRequest;
use crate::template::RenderError;

/// How long a client may take between two chunks of its body before it is cut off.
const BODY_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn trigger(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    // All that follows `{base_path}/` is the hook id, `/` included (`sendgrid/dir`).
    let id = request
        .match_info()
        .unprocessed()
        .trim_start_matches('/')
        .to_string();
    let config = state.config();
    let client = request
        .extensions()
        .get::<ClientInfo>()
        .and_then(|client| client.remote_ip);
    let Some(hook) = config.hook(&id) else {
        // A flood of made-up hook names counts against the client's limit too.
        if let Err(refused) = state.rate_limits.check("", client) {
            state.metrics.rate_limited("", refused.scope.label());
            let error = rate_limited(&request, payload, None, refused).await;
            let response = actix_web::ResponseError::error_response(&error);
            return with_outcome(response, "", RATE_LIMITED);
        }
        let error = ApiError::new(
            StatusCode::NOT_FOUND,
            "hook_not_found",
            format!("there is no hook `{id}`; check the URL against the hook ids in the config"),
        );
        return with_outcome(
            actix_web::ResponseError::error_response(&error),
            &id,
            "not_found",
        );
    };
    // Before the body is read or the signature checked: a refused request costs next to nothing.
    if let Err(refused) = state.rate_limits.check(&hook.id, client) {
        state.metrics.rate_limited(&hook.id, refused.scope.label());
        let error = rate_limited(&request, payload, Some(hook), refused).await;
        let response = actix_web::ResponseError::error_response(&error);
        return with_hook_headers(with_outcome(response, &hook.id, RATE_LIMITED), hook);
    }
    let body_timeout = config.server.body_timeout;
    let response = match handle(&request, payload, hook, body_timeout, &state).await {
        Ok((response, outcome)) => with_outcome(response, &hook.id, outcome),
        Err((error, outcome)) => with_outcome(
            actix_web::ResponseError::error_response(&error),
            &hook.id,
            outcome,
        ),
    };
    with_hook_headers(response, hook)
}

/// The 429 of a request beyond a rate limit. The signature is not checked and the body is not
/// kept: a small body that is already on its way is read and dropped (see [`discard_body`]), so
/// the connection can carry the client's next request; any other closes the connection.
async fn rate_limited(
    request: &HttpRequest,
    payload: web::Payload,
    hook: Option<&Hook>,
    refused: Refused,
) -> ApiError {
    let seconds = refused.retry_after_seconds();
    let message = match (refused.scope, hook) {
        (Scope::Hook, Some(hook)) => format!(
            "too many requests to hook `{}`; retry in {seconds}s",
            hook.id
        ),
        _ => format!("too many requests from this address; retry in {seconds}s"),
    };
    let error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED, message)
        .with_header(header::RETRY_AFTER, seconds.to_string());
    match discard_body(request, payload).await {
        true => error,
        false => error.closing(),
    }
}

/// The most of a refused body that is read to keep its connection open.
const DISCARD_LIMIT: u64 = 16 << 10;
/// How long a refused body may take to arrive before its connection is closed instead.
const DISCARD_TIMEOUT: Duration = Duration::from_millis(500);

/// Reads and drops the body of a request that is refused before its body is wanted, and says
/// whether the connection can carry another request. A new connection for every 429 would cost a
/// flooded server several times the 429 itself, so a small body (at most [`DISCARD_LIMIT`], its
/// length declared) that arrives within [`DISCARD_TIMEOUT`] is read; a larger, chunked or slow one
/// is not.
async fn discard_body(request: &HttpRequest, mut payload: web::Payload) -> bool {
    let headers = request.headers();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return false;
    }
    let declared = match headers.get(header::CONTENT_LENGTH) {
        None => return true,
        Some(length) => length
            .to_str()
            .ok()
            .and_then(|text| text.parse::<u64>().ok()),
    };
    match declared {
        Some(0) => return true,
        Some(length) if length <= DISCARD_LIMIT => {}
        _ => return false,
    }
    let drained = async {
        while let Some(chunk) = payload.next().await {
            if chunk.is_err() {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DISCARD_TIMEOUT, drained)
        .await
        .unwrap_or(false)
}

/// `response.headers`, on every answer of the hook, errors included (as adnanh does).
fn with_hook_headers(mut response: HttpResponse, hook: &Hook) -> HttpResponse {
    for (name, value) in &hook.response.headers {
        // Both were checked at load; a pair that still does not convert is skipped, not a panic.
        let name = header::HeaderName::from_bytes(name.as_bytes());
        let value = header::HeaderValue::from_str(value);
        if let (Ok(name), Ok(value)) = (name, value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// An answer about a job: `response.message` when the hook has one and the answer shows no
/// output (output wins, as in adnanh), else the job body.
fn job_answer(
    hook: &Hook,
    status: StatusCode,
    body: impl serde::Serialize,
    shows_output: bool,
) -> HttpResponse {
    match &hook.response.message {
        Some(message) if !shows_output => HttpResponse::build(status)
            .content_type(message.content_type.as_str())
            .body(message.text.clone()),
        _ => HttpResponse::build(status).json(body),
    }
}

fn success_status(hook: &Hook, default: StatusCode) -> StatusCode {
    hook.response
        .success_status
        .and_then(|status| StatusCode::from_u16(status).ok())
        .unwrap_or(default)
}

type Answer = Result<(HttpResponse, &'static str), (ApiError, &'static str)>;

async fn handle(
    request: &HttpRequest,
    payload: web::Payload,
    hook: &Hook,
    body_timeout: Duration,
    state: &AppState,
) -> Answer {
    let method = request.method().as_str();
    if !hook.methods.iter().any(|allowed| allowed == method) {
        let allow = hook.methods.join(", ");
        let error = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("hook `{}` accepts {allow}, not {method}", hook.id),
        )
        .with_header(header::ALLOW, allow);
        return Err((error, "method_not_allowed"));
    }

    let body = read_body(request, payload, hook, body_timeout).await?;
    let headers = Headers::new(request.headers().iter().map(|(name, value)| {
        (
            name.as_str().to_string(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        )
    }));
    let query: Vec<(String, String)> = form_urlencoded::parse(request.query_string().as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();

    // The signature is checked on the raw body before anything parses it.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    let signed = SignedRequest {
        headers: &headers,
        query: &query,
        body: &body,
        now,
    };
    let verified_by = match hook.signature.verify(&signed) {
        Ok(provider) => provider,
        Err(error) => {
            return Err((
                ApiError::new(StatusCode::UNAUTHORIZED, error.code(), error.to_string()),
                error.code(),
            ))
        }
    };

    let client = request.extensions().get::<ClientInfo>().cloned();
    let job_id = JobId::generate();
    let context = RequestContext {
        method: method.to_string(),
        path: request.path().to_string(),
        query,
        headers,
        body,
        remote_ip: client.as_ref().and_then(|client| client.remote_ip),
        remote_port: client.as_ref().and_then(|client| client.remote_port),
        request_id: client.map(|client| client.request_id).unwrap_or_default(),
        hook_id: hook.id.clone(),
        job_id: job_id.to_string(),
        event_sources: verified_by.map_or(&[], |provider| provider.event_sources()),
        delivery_sources: verified_by.map_or(&[], |provider| provider.delivery_sources()),
        body_type: hook.body_type,
        ..RequestContext::default()
    };

    if let Some(rule) = &hook.when {
        if let Some(mismatch) = rule.evaluate(&context).map_err(bad_body)? {
            let status = StatusCode::from_u16(hook.on_mismatch).unwrap_or(StatusCode::OK);
            let reason = match context.form_looks_like_json() {
                true => format!("{}; {FORM_LOOKS_LIKE_JSON}", mismatch.0),
                false => mismatch.0,
            };
            let body = json!({"status": "skipped", "reason": reason});
            return Ok((HttpResponse::build(status).json(body), "skipped"));
        }
    }

    let command = command::build(hook, &context).map_err(|error| match error {
        BuildError::Render(RenderError::Value(error)) => bad_body(error),
        BuildError::Render(RenderError::Missing(reference)) => {
            let mut message = format!("the request has no value for `{reference}`, which the command needs; send it, or give the template a fallback: `{{{{ {reference} | \"default\" }}}}`");
            if reference.starts_with("payload") && context.form_looks_like_json() {
                message = format!("{message}; {FORM_LOOKS_LIKE_JSON}");
            }
            (
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "missing_value", message),
                "missing_value",
            )
        }
        BuildError::NulByte(_) | BuildError::NotBase64(_) => (
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", error.to_string()),
            "invalid_value",
        ),
    })?;
    // Checked before anything is recorded: such a command could never start.
    let server_env = |name: &str| std::env::var(name).ok();
    exec_limits::check(&command, hook, &state.exec_limits, &server_env).map_err(|error| {
        let error = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            error.to_string(),
        );
        (error, "value_too_large")
    })?;

    let submission = Submission {
        hook: hook.id.clone(),
        concurrency: hook.concurrency,
        job_id,
        request_id: context.request_id.clone(),
        command,
        dedupe_key: dedupe_key(hook, &context, now),
        follow: hook.response.mode == ResponseMode::Stream,
        run_on: hook.run_on,
        notify: !hook.notify.is_empty(),
        approval: hook.approval.map(|approval| approval.timeout),
    };
    let job = match state.engine.submit(submission).await {
        Ok(Submitted::Accepted(job)) => job,
        Ok(Submitted::FannedOut(jobs)) => return fanned_out(hook, jobs).await,
        Ok(Submitted::Duplicate(first)) => {
            let body = json!({"status": "duplicate", "job_id": first.as_str(), "links": {"job": format!("/jobs/{first}")}});
            return Ok((job_answer(hook, StatusCode::OK, body, false), "duplicate"));
        }
        Err(SubmitError::Store(error)) => {
            tracing::error!(%error, "cannot admit a job");
            return Err(store_unavailable());
        }
        Err(error) => {
            let message = match &error {
                SubmitError::ShuttingDown => {
                    "the server is shutting down; retry in a moment".to_string()
                }
                _ => format!("the server is busy: {error}; retry later"),
            };
            let error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
                .with_header(header::RETRY_AFTER, "5");
            return Err((error, "busy"));
        }
    };

    match hook.response.mode {
        ResponseMode::Async => {
            // The 202 promises the job survives a crash, so it waits for the commit. (An async
            // job always has one to wait for; `None` would only skip the wait.)
            let committed = match job.committed {
                Some(committed) => committed.await,
                None => Ok(()),
            };
            if let Err(error) = committed {
                tracing::error!(job_id = %job.job.id, %error, "cannot commit an accepted job");
                return Err(store_unavailable());
            }
            let status = success_status(hook, StatusCode::ACCEPTED);
            let body = JobView::of(&job.job, false, now_ms());
            Ok((job_answer(hook, status, body, false), "accepted"))
        }
        ResponseMode::Stream => match (job.output, job.watch) {
            (Some(output), Some(watch)) => {
                Ok((stream::respond(request, output, watch), "streamed"))
            }
            // Not reached: a stream hook's jobs are submitted to `follow`.
            _ => Err((
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the job has no output channel to stream",
                ),
                "internal",
            )),
        },
        ResponseMode::Wait => {
            let job = match job.watch {
                Some(mut watch) => {
                    // A job that outlives `wait_timeout` keeps running; the client gets 202 and
                    // the job's links.
                    let _ = tokio::time::timeout(
                        hook.response.wait_timeout,
                        watch.wait_for(|job| job.status().is_final()),
                    )
                    .await;
                    let job = watch.borrow().clone();
                    job
                }
                // Not reached: a wait job runs here and is watched.
                None => job.job,
            };
            let (status, failed) = match job.status() {
                Status::Succeeded => (success_status(hook, StatusCode::OK), false),
                Status::TimedOut => (StatusCode::GATEWAY_TIMEOUT, true),
                Status::Queued | Status::Running => (StatusCode::ACCEPTED, false),
                _ => (
                    StatusCode::from_u16(hook.response.failure_status)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    true,
                ),
            };
            let shows_output =
                hook.response.include_output || (failed && hook.response.output_on_error);
            let body = JobView::of(&job, shows_output, now_ms());
            Ok((
                job_answer(hook, status, body, shows_output),
                job.status().as_str(),
            ))
        }
    }
}

/// The 202 of a `run_on: all` hook, once every copy is on disk: the jobs, each with its instance.
async fn fanned_out(
    hook: &Hook,
    jobs: Vec<JobHandle>,
) -> Result<(HttpResponse, &'static str), (ApiError, &'static str)> {
    let mut listed = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some(committed) = job.committed {
            if let Err(error) = committed.await {
                tracing::error!(job_id = %job.job.id, %error, "cannot commit an accepted job");
                return Err(store_unavailable());
            }
        }
        let id = &job.job.id;
        let instance = job.placed_on.unwrap_or_default();
        listed.push(json!({"job_id": id.as_str(), "instance": instance, "links": {"job": format!("/jobs/{id}")}}));
    }
    let body = json!({"status": "accepted", "hook": hook.id, "jobs": listed});
    let status = success_status(hook, StatusCode::ACCEPTED);
    Ok((job_answer(hook, status, body, false), "accepted"))
}

fn store_unavailable() -> (ApiError, &'static str) {
    let error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the job store cannot record jobs right now; retry later",
    )
    .with_header(header::RETRY_AFTER, "5");
    (error, "store_unavailable")
}

/// The key that makes a redelivery a duplicate: `dedupe_key` when it renders, else the provider's
/// delivery id, else (for Slack, or a Stripe event without `id`) a digest of the signed request,
/// so a replay within the tolerance runs nothing; none when `dedupe: false`.
fn dedupe_key(hook: &Hook, context: &RequestContext, now: i64) -> Option<String> {
    if !hook.dedupe {
        return None;
    }
    let key = match &hook.dedupe_key {
        Some(template) => template.render(context).ok().filter(|key| !key.is_empty()),
        None => context.delivery(),
    };
    key.or_else(|| {
        hook.signature.replay_key(&SignedRequest {
            headers: &context.headers,
            query: &context.query,
            body: &context.body,
            now,
        })
    })
}

fn bad_body(error: ValueError) -> (ApiError, &'static str) {
    let reason = match error {
        ValueError::BodyUnparsable(reason) => reason,
        // Not reached: rules and templates never pass an unknown address up.
        ValueError::AddressUnknown => error.to_string(),
    };
    (
        ApiError::new(StatusCode::BAD_REQUEST, "bad_body", reason),
        "bad_body",
    )
}

/// Reads the body up to the hook's limit: 413 as soon as it is known to be larger, 408 when the
/// whole of it takes longer than `body_timeout` (however steadily it trickles in).
async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    hook: &Hook,
    body_timeout: Duration,
) -> Result<Bytes, (ApiError, &'static str)> {
    let limit = hook.max_body;
    let too_large = || {
        let error = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than the {} limit of hook `{}`; raise its `max_body` if this is expected", format_size(limit), hook.id),
        );
        (error, "body_too_large")
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(64 << 10) as usize);
    // A timeout longer than the clock can add (an operator's "never") is no deadline, not a panic.
    let deadline = Instant::now().checked_add(body_timeout);
    loop {
        let chunk_deadline = Instant::now() + BODY_CHUNK_TIMEOUT;
        let until = deadline.map_or(chunk_deadline, |deadline| chunk_deadline.min(deadline));
        let chunk = match tokio::time::timeout_at(until, payload.next()).await {
            Err(_) if deadline.is_none_or(|deadline| chunk_deadline < deadline) => {
                return Err(incomplete("the client stopped sending the body"))
            }
            Err(_) => return Err(too_slow(body_timeout)),
            Ok(None) => break,
            Ok(Some(Err(error))) => return Err(incomplete(&error.to_string())),
            Ok(Some(Ok(chunk))) => chunk,
        };
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The rest of the body is never read, so the connection cannot carry another request.
fn too_slow(body_timeout: Duration) -> (ApiError, &'static str) {
    let error = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the body did not arrive within the `body_timeout` of {}; send it faster, or raise `server.body_timeout`",
            humantime::format_duration(body_timeout)
        ),
    )
    .closing();
    (error, "body_timeout")
}

fn incomplete(reason: &str) -> (ApiError, &'static str) {
    let error = ApiError::new(
        StatusCode::BAD_REQUEST,
        "body_incomplete",
        format!("the body could not be read completely ({reason}); send it again"),
    );
    (error, "body_incomplete")
}
