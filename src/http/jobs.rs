//! Job endpoints: `GET /jobs/{id}`, its log (`?follow=1`), the admin list and cancel, and health.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::log::{self, Source};
use super::{ApiError, AppState};
use crate::config::Config;
use crate::engine::Cancelled;
use crate::job::{now_ms, rfc3339, Job, JobId, JobView, Status};
use crate::signature::tokens_equal;
use crate::store::ListQuery;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Prometheus text exposition. Keep it off the public side of the proxy.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (running, waiting) = state.engine.load();
    if let Some(pair) = state.tls.as_ref().and_then(|resolver| resolver.current()) {
        let left = pair.seconds_left(std::time::SystemTime::now());
        state.metrics.tls_expiry(left.floor());
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(
            state
                .metrics
                .render(running, waiting, state.engine.store().stats()),
        )
}

/// Ready when the config is loaded (it is, or the server would not run) and the store takes writes.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.engine.store().check_writable().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(error) => {
            tracing::error!(%error, "readiness check: the job store does not take writes");
            HttpResponse::ServiceUnavailable().json(json!({"error": "store_unavailable", "message": "the job store cannot make a durable write (a full or read-only disk, or the database deleted or replaced); the server log says which"}))
        }
    }
}

pub(super) fn job_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "job_not_found",
        "no job has this id; it may have been pruned by `retention`",
    )
}

pub(super) fn store_error(error: crate::store::StoreError) -> ApiError {
    tracing::error!(%error, "job store read failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the job store cannot be read right now; retry later",
    )
    .with_header(header::RETRY_AFTER, "5")
}

pub async fn get_job(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = JobId::parse(&id).ok_or_else(job_not_found)?;
    let job = state
        .engine
        .get(&id)
        .await
        .map_err(store_error)?
        .ok_or_else(job_not_found)?;
    let config = state.config();
    let include_output = config
        .hook(&job.hook)
        .is_some_and(|hook| hook.response.include_output);
    let notifications = if may_have_notifications(&job, &config) {
        state
            .engine
            .store()
            .notifications(std::slice::from_ref(&job.id))
            .await
            .map_err(store_error)?
    } else {
        Default::default()
    };
    let notifications = notifications.get(&job.id).map_or(&[][..], Vec::as_slice);
    Ok(HttpResponse::Ok()
        .json(JobView::of(&job, include_output, now_ms()).with_notifications(notifications)))
}

/// Job `id` and its hook as the config has it now, for an action that needs both; `to` says
/// what a hook gone from the config stops (`re-run the job`).
pub(super) async fn job_and_hook(
    state: &AppState,
    id: &JobId,
    to: &str,
) -> Result<(Job, std::sync::Arc<crate::config::Hook>), ApiError> {
    let job = state
        .engine
        .store()
        .get(id)
        .await
        .map_err(store_error)?
        .ok_or_else(job_not_found)?;
    let Some(hook) = state.config().hook(&job.hook).cloned() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "hook_not_found",
            format!(
                "job `{id}` is for hook `{}`, which is no longer in the config; put the hook back to {to}",
                job.hook
            ),
        ));
    };
    Ok((job, hook))
}

/// Whether a job may have notifications to read: they are made at its end, and at the start of
/// its wait for approval, so a running or queued job of a hook without `approval` has none.
pub fn may_have_notifications(job: &Job, config: &Config) -> bool {
    job.status().is_final()
        || job.status() == Status::AwaitingApproval
        || config
            .hook(&job.hook)
            .is_some_and(|hook| hook.approval.is_some())
}

#[derive(Deserialize)]
pub struct LogQuery {
    follow: Option<String>,
}

pub async fn get_log(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = JobId::parse(&id).ok_or_else(job_not_found)?;
    let follow = matches!(query.follow.as_deref(), Some("1" | "true" | "yes"));
    let source = match state.engine.watch(&id) {
        Some((job, sink)) => Source::Local { job, sink },
        None => {
            // Not this instance's: the store knows whether it exists.
            if state.engine.get(&id).await.map_err(store_error)?.is_none() {
                return Err(job_not_found());
            }
            Source::Store
        }
    };
    let store = state.engine.store().clone();
    let body = log::read(store, id, 0, follow.then_some(source));
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// The route a job or health path falls to when called with another method: 405, naming the one
/// it takes in `Allow`.
pub fn wrong_method(allow: &'static str) -> actix_web::Route {
    web::to(move |request: HttpRequest| async move {
        Err::<HttpResponse, _>(
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "`{}` accepts {allow}, not {}",
                    request.path(),
                    request.method()
                ),
            )
            .with_header(header::ALLOW, allow),
        )
    })
}

/// Checks `Authorization: Bearer <admin_token>` in constant time; the scheme's case does not matter.
pub(super) fn require_admin(state: &AppState, request: &HttpRequest) -> Result<(), ApiError> {
    let config = state.config();
    let Some(expected) = &config.server.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the job list, cancel, re-run, approvals and `/instances` are off; set `server.admin_token` to turn them on",
        ));
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match given {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "admin_token_missing",
            "send `Authorization: Bearer <admin_token>`",
        )
        .with_header(header::WWW_AUTHENTICATE, "Bearer")),
        Some(token) if tokens_equal(token.as_bytes(), expected.expose()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "admin_token_invalid",
            "the admin token is wrong",
        )
        .with_header(header::WWW_AUTHENTICATE, "Bearer")),
    }
}

#[derive(Deserialize)]
pub struct ListParams {
    hook: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    before: Option<String>,
}

pub async fn list_jobs(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &request)?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(Status::parse(text).ok_or_else(|| {
            let names: Vec<&str> = Status::ALL.iter().map(|status| status.as_str()).collect();
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_status",
                format!(
                    "`{text}` is not a job status; use one of {}",
                    names.join(", ")
                ),
            )
        })?),
    };
    let before = match query.before.as_deref() {
        None | Some("") => None,
        Some(text) => Some(JobId::parse(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_before",
                "`before` takes a job id, as given in `next`",
            )
        })?),
    };
    let query = ListQuery {
        hook: query.hook.clone().filter(|hook| !hook.is_empty()),
        status,
        before,
        limit: query.limit.unwrap_or(50).clamp(1, 1000),
    };
    let page = state
        .engine
        .store()
        .list(query)
        .await
        .map_err(store_error)?;
    let ids: Vec<JobId> = page.jobs.iter().map(|job| job.id.clone()).collect();
    let notifications = state
        .engine
        .store()
        .notifications(&ids)
        .await
        .map_err(store_error)?;
    let now = now_ms();
    let jobs: Vec<_> = page
        .jobs
        .iter()
        .map(|job| {
            let listed = notifications.get(&job.id).map_or(&[][..], Vec::as_slice);
            JobView::of(job, false, now).with_notifications(listed)
        })
        .collect();
    let next = page.next.as_ref().map(JobId::as_str);
    Ok(HttpResponse::Ok().json(json!({"jobs": jobs, "next": next})))
}

pub async fn cancel_job(
    state: web::Data<AppState>,
    request: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &request)?;
    let id = JobId::parse(&id).ok_or_else(job_not_found)?;
    let result = match state.engine.cancel(&id).await.map_err(store_error)? {
        Cancelled::Dequeued => "dequeued",
        Cancelled::Signalled => "signalled",
        Cancelled::AlreadyFinished(status) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_finished",
                format!("the job already ended as `{}`", status.as_str()),
            ));
        }
        Cancelled::NotFound => return Err(job_not_found()),
    };
    Ok(HttpResponse::Accepted().json(
        json!({"job_id": id.as_str(), "result": result, "links": {"job": format!("/jobs/{id}")}}),
    ))
}

/// `GET /instances` (admin): the instances sharing the store, with their running jobs.
pub async fn instances(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &request)?;
    let instances = state
        .engine
        .store()
        .instances()
        .await
        .map_err(store_error)?;
    let listed: Vec<_> = instances
        .iter()
        .map(|instance| {
            json!({
                "name": instance.name,
                "version": instance.version,
                "started": rfc3339(instance.started_ms),
                "last_heartbeat": rfc3339(instance.heartbeat_ms),
                "running": instance.running,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"store": state.engine.store().kind(), "instances": listed})))
}
