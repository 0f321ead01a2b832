//! `POST /jobs/{id}/approve` and `POST /jobs/{id}/reject` (admin, SPEC §15): the decision on a
//! job of an `approval` hook, which waits `awaiting_approval` until one of them (or its
//! `timeout`). An approved job enters its hook's `concurrency` as a new trigger would at that
//! moment; a rejected one ends `rejected` and never runs.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::jobs::{job_and_hook, job_not_found, require_admin, store_error};
use super::{ApiError, AppState};
use crate::job::{now_ms, Job, JobId, JobView};
use crate::store::{Approval, Decided};

/// `POST /jobs/{id}/approve` or `/reject`: 200 with the job as the decision left it.
pub async fn decide_job(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &request)?;
    let (id, decision) = path.into_inner();
    let id = JobId::parse(&id).ok_or_else(job_not_found)?;
    let job = match decision.as_str() {
        "approve" => approve(&state, &id).await?,
        _ => reject(&state, &id).await?,
    };
    Ok(HttpResponse::Ok().json(JobView::of(&job, false, now_ms())))
}

/// Approves job `id` (for the API and the web page, which check who asks): the job, now queued.
pub async fn approve(state: &AppState, id: &JobId) -> Result<Job, ApiError> {
    let (job, hook) = job_and_hook(state, id, "approve the job, or reject it").await?;
    match state
        .engine
        .approve(id, hook.concurrency)
        .await
        .map_err(store_error)?
    {
        Approval::Approved { job, .. } => Ok(job),
        Approval::QueueFull { waiting } => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "hook `{}` already has {waiting} jobs waiting, its `concurrency.queue` limit; the job still awaits approval: approve it again once one has run",
                job.hook
            ),
        )
        .with_header(header::RETRY_AFTER, "5")),
        Approval::NotAwaiting(job) => Err(not_awaiting(&job)),
        Approval::NotFound => Err(job_not_found()),
    }
}

/// Rejects job `id` (for the API and the web page): the job, now `rejected`.
pub async fn reject(state: &AppState, id: &JobId) -> Result<Job, ApiError> {
    match state.engine.reject(id).await.map_err(store_error)? {
        Decided::Ended(job) => Ok(job),
        Decided::NotAwaiting(job) => Err(not_awaiting(&job)),
        Decided::NotFound => Err(job_not_found()),
    }
}

fn not_awaiting(job: &Job) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "not_awaiting_approval",
        format!(
            "job `{}` is `{}`, not `awaiting_approval`: only a job of an `approval` hook that waits can be approved or rejected",
            job.id,
            job.status().as_str()
        ),
    )
}
