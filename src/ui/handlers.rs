//! The `/ui/` handlers: each checks the session (and, for a post, the origin and CSRF token),
//! reads what it shows from the config and the store, and hands plain data to `pages`.

use std::time::Duration;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage as _, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::Value;

use super::guard::{
    action, forbidden, form_field, key, now_secs, off, page, same_origin, see_other, signed_in,
};
use super::log_text::LogText;
use super::pages::{self, HookRow, InstanceRow, JobPage, JobRow, JobsPage};
use super::set_cookie;
use crate::config::{Hook, ResponseMode};
use crate::engine::Cancelled;
use crate::http::{came_over_https, AppState, ClientInfo};
use crate::job::{now_ms, JobId, JobView, Status};
use crate::runner::Program;
use crate::signature::tokens_equal;
use crate::store::{ListQuery, StoreError};

/// How long a wrong admin token waits for its answer, to slow guessing.
const FAILED_SIGN_IN_DELAY: Duration = Duration::from_secs(1);

/// How many jobs a page of the list shows, and how many of a hook's the overview shows.
const PAGE_SIZE: usize = 50;
const RECENT_JOBS: usize = 5;

pub(super) fn unavailable(error: StoreError) -> HttpResponse {
    tracing::error!(%error, "job store read failed");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::message(
            "Store unavailable",
            "The job store cannot be read right now; reload in a moment.",
        ),
    )
}

pub async fn not_found() -> HttpResponse {
    off()
}

pub async fn sign_in_form(state: web::Data<AppState>) -> HttpResponse {
    if key(&state).is_none() {
        return off();
    }
    page(StatusCode::OK, pages::sign_in(false))
}

/// Checks the posted token against the admin token; a wrong one is answered after a delay that
/// holds no worker thread.
pub async fn sign_in(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let Some(key) = key(&state) else {
        return off();
    };
    if !same_origin(&request) {
        return forbidden("The request did not come from this page.");
    }
    let client = request
        .extensions()
        .get::<ClientInfo>()
        .and_then(|client| client.remote_ip);
    if let Err(wait) = state.sign_ins.try_sign_in(client) {
        let seconds = wait.as_secs() + 1;
        let mut response = page(
            StatusCode::TOO_MANY_REQUESTS,
            pages::message(
                "Too many sign-ins",
                &format!("Sign-ins are tried too often; try again in {seconds} seconds."),
            ),
        );
        if let Ok(value) = header::HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let given = form_field(&body, "token").unwrap_or_default();
    let right = state
        .config()
        .server
        .admin_token
        .as_ref()
        .is_some_and(|token| tokens_equal(given.as_bytes(), token.expose()));
    if !right {
        tokio::time::sleep(FAILED_SIGN_IN_DELAY).await;
        return page(StatusCode::UNAUTHORIZED, pages::sign_in(true));
    }
    let value = key.issue(rand::random(), now_secs());
    let mut response = see_other("/ui/");
    if let Ok(cookie) =
        header::HeaderValue::from_str(&set_cookie(Some(&value), came_over_https(&state, &request)))
    {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

pub async fn sign_out(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(refusal) = action(&state, &request, &body) {
        return refusal.answer();
    }
    let mut response = see_other("/ui/sign-in");
    if let Ok(cookie) =
        header::HeaderValue::from_str(&set_cookie(None, came_over_https(&state, &request)))
    {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

pub async fn hooks(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let signed_in = match signed_in(&state, &request) {
        Ok(signed_in) => signed_in,
        Err(refusal) => return refusal.answer(),
    };
    let config = state.config();
    let mut rows = Vec::with_capacity(config.hooks.len());
    for hook in &config.hooks {
        let query = ListQuery {
            hook: Some(hook.id.clone()),
            status: None,
            before: None,
            limit: RECENT_JOBS,
        };
        let recent = match state.engine.store().list(query).await {
            Ok(page) => page
                .jobs
                .iter()
                .map(|job| (job.id.to_string(), job.status().as_str()))
                .collect(),
            Err(error) => return unavailable(error),
        };
        rows.push(hook_row(hook, recent));
    }
    let instances = match state.engine.store().instances().await {
        Ok(instances) => instances,
        Err(error) => return unavailable(error),
    };
    let now = now_ms();
    let instances: Vec<_> = instances
        .into_iter()
        .map(|instance| InstanceRow {
            started_at: crate::job::rfc3339(instance.started_ms),
            heartbeat_age_secs: (now - instance.heartbeat_ms).max(0) / 1000,
            name: instance.name,
            version: instance.version,
            running: instance.running,
        })
        .collect();
    page(
        StatusCode::OK,
        pages::hooks(&rows, &instances, &signed_in.csrf),
    )
}

fn hook_row(hook: &Hook, recent: Vec<(String, &'static str)>) -> HookRow {
    HookRow {
        id: hook.id.clone(),
        description: hook.description.clone(),
        provider: hook.signature.name(),
        mode: match (hook.response.mode, hook.approval) {
            (ResponseMode::Wait, _) => "wait".to_string(),
            (ResponseMode::Async, None) => "async".to_string(),
            (ResponseMode::Async, Some(approval)) => format!(
                "async, after approval (within {})",
                humantime::format_duration(approval.timeout)
            ),
            (ResponseMode::Stream, _) => "stream".to_string(),
        },
        concurrency: hook.concurrency.to_string(),
        recent,
    }
}

#[derive(Deserialize)]
pub struct JobsQuery {
    hook: Option<String>,
    status: Option<String>,
    before: Option<String>,
}

pub async fn jobs(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<JobsQuery>,
) -> HttpResponse {
    let signed_in = match signed_in(&state, &request) {
        Ok(signed_in) => signed_in,
        Err(refusal) => return refusal.answer(),
    };
    let hook = query.hook.clone().filter(|hook| !hook.is_empty());
    let status_text = query.status.clone().filter(|status| !status.is_empty());
    let status = match status_text.as_deref().map(Status::parse) {
        Some(None) => return bad_request("That is not a job status."),
        parsed => parsed.flatten(),
    };
    let before = match query.before.as_deref().filter(|before| !before.is_empty()) {
        Some(text) => match JobId::parse(text) {
            Some(id) => Some(id),
            None => return bad_request("`before` takes a job id."),
        },
        None => None,
    };
    let listed = ListQuery {
        hook: hook.clone(),
        status,
        before,
        limit: PAGE_SIZE,
    };
    let found = match state.engine.store().list(listed).await {
        Ok(found) => found,
        Err(error) => return unavailable(error),
    };
    let now = now_ms();
    let rows = found
        .jobs
        .iter()
        .map(|job| JobRow {
            id: job.id.to_string(),
            hook: job.hook.clone(),
            status: job.status().as_str(),
            created_at: crate::job::rfc3339(job.created_ms),
            duration_ms: job.duration_ms(now),
        })
        .collect();
    let jobs_page = JobsPage {
        rows,
        hooks: state
            .config()
            .hooks
            .iter()
            .map(|hook| hook.id.clone())
            .collect(),
        statuses: Status::ALL.iter().map(|status| status.as_str()).collect(),
        hook,
        status: status_text,
        next: found.next.as_ref().map(JobId::to_string),
    };
    page(StatusCode::OK, pages::jobs(&jobs_page, &signed_in.csrf))
}

pub(super) fn bad_request(text: &str) -> HttpResponse {
    page(StatusCode::BAD_REQUEST, pages::message("Bad request", text))
}

pub(super) fn job_not_found() -> HttpResponse {
    page(
        StatusCode::NOT_FOUND,
        pages::message(
            "No such job",
            "No job has this id; it may have been pruned by `retention`.",
        ),
    )
}

pub async fn job(
    state: web::Data<AppState>,
    request: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let signed_in = match signed_in(&state, &request) {
        Ok(signed_in) => signed_in,
        Err(refusal) => return refusal.answer(),
    };
    let Some(id) = JobId::parse(&id) else {
        return job_not_found();
    };
    let store = state.engine.store();
    let job = match state.engine.get(&id).await {
        Ok(Some(job)) => job,
        Ok(None) => return job_not_found(),
        Err(error) => return unavailable(error),
    };
    let notifications = if crate::http::may_have_notifications(&job, &state.config()) {
        match store.notifications(std::slice::from_ref(&job.id)).await {
            Ok(notifications) => notifications,
            Err(error) => return unavailable(error),
        }
    } else {
        Default::default()
    };
    let notifications = notifications.get(&job.id).map_or(&[][..], Vec::as_slice);
    let view = JobView::of(&job, false, now_ms())
        .with_notifications(notifications)
        .to_value();
    let command = match store.command(&id).await {
        Ok(command) => command.map(|command| {
            let argv = match command.program {
                Program::Shell(text) => vec!["/bin/sh".to_string(), "-c".to_string(), text],
                Program::Argv(argv) => argv,
            };
            (argv, command.workdir.display().to_string())
        }),
        Err(error) => return unavailable(error),
    };
    let (tail, log_omitted) = match store.read_log_tail(&id, LOG_SHOWN).await {
        Ok(tail) => tail,
        Err(error) => return unavailable(error),
    };
    // A running job's log is shown up to where its text is whole; the script follows from there.
    let mut text = LogText::default();
    let mut log = text.push(&tail);
    // A job that waits for approval has no log yet; its page is loaded again once approved.
    let log_follow_from = if !matches!(job.status(), Status::Queued | Status::Running) {
        log += &text.finish();
        None
    } else {
        Some(log_omitted + (tail.len() - text.held()) as u64)
    };
    let job_page = JobPage {
        id: id.to_string(),
        fields: fields(&view, &["links", "notifications"]),
        notifications: view["notifications"]
            .as_array()
            .map(|listed| listed.iter().map(|entry| fields(entry, &[])).collect())
            .unwrap_or_default(),
        log,
        log_omitted,
        log_follow_from,
        can_cancel: !job.status().is_final(),
        awaiting: job.status() == Status::AwaitingApproval,
        command,
    };
    page(StatusCode::OK, pages::job(&job_page, &signed_in.csrf))
}

/// A JSON object's fields as text, but those in `skip`; `null` shows as a dash.
fn fields(object: &Value, skip: &[&str]) -> Vec<(String, String)> {
    object
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| !skip.contains(&name.as_str()))
        .map(|(name, value)| {
            let text = match value {
                Value::Null => "—".to_string(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect()
}

/// The job a posted action is for, once the action passes [`action`]'s checks (session, CSRF
/// token, origin); otherwise the answer that refuses it.
fn job_action(
    state: &AppState,
    request: &HttpRequest,
    body: &[u8],
    id: &str,
) -> Result<JobId, Box<HttpResponse>> {
    action(state, request, body).map_err(|refusal| Box::new(refusal.answer()))?;
    JobId::parse(id).ok_or_else(|| Box::new(job_not_found()))
}

/// Re-runs, approves or rejects a job through the API's own path (`POST /jobs/{id}/rerun`,
/// `/approve`, `/reject`), then shows the job (a re-run's new one), or why it cannot be done, in
/// the API's words.
pub async fn act(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (id, verb) = path.into_inner();
    let id = match job_action(&state, &request, &body, &id) {
        Ok(id) => id,
        Err(refused) => return *refused,
    };
    let (result, done) = match verb.as_str() {
        "rerun" => (crate::http::rerun(&state, &id).await, "re-run"),
        "approve" => (crate::http::approve(&state, &id).await, "approved"),
        "reject" => (crate::http::reject(&state, &id).await, "rejected"),
        _ => return not_found().await,
    };
    match result {
        Ok(job) => see_other(&format!("/ui/jobs/{}", job.id)),
        Err(error) => page(
            error.status,
            pages::message(&format!("This job cannot be {done}"), &error.message),
        ),
    }
}

/// How much of the end of a job's log its page shows.
const LOG_SHOWN: usize = 256 << 10;

/// Cancels a job that has not ended through the engine, as `POST /jobs/{id}/cancel` does, then
/// shows the job.
pub async fn cancel(
    state: web::Data<AppState>,
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let id = match job_action(&state, &request, &body, &id) {
        Ok(id) => id,
        Err(refused) => return *refused,
    };
    match state.engine.cancel(&id).await {
        Ok(Cancelled::NotFound) => job_not_found(),
        Ok(_) => see_other(&format!("/ui/jobs/{id}")),
        Err(error) => unavailable(error),
    }
}
