//! `POST /jobs/{id}/rerun` (admin): a new job with the command and values of an existing one.
//!
//! A re-run is an operator's "run that again": the stored command as it was rendered, under the
//! hook's current `concurrency`, `retry` and `notify`, admitted like a new trigger. Nobody waits
//! for it, so it runs like an `async` job whatever the hook's mode, and after a restart too.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::jobs::{job_and_hook, job_not_found, require_admin, store_error};
use super::{ApiError, AppState};
use crate::command::RetryPlan;
use crate::config::RunOn;
use crate::engine::{Submission, SubmitError, Submitted};
use crate::job::{now_ms, Job, JobId, JobView};

pub async fn rerun_job(
    state: web::Data<AppState>,
    request: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &request)?;
    let old = JobId::parse(&id).ok_or_else(job_not_found)?;
    let job = rerun(&state, &old).await?;
    let mut body =
        serde_json::to_value(JobView::of(&job, false, now_ms())).expect("a job body serializes");
    body["rerun_of"] = old.as_str().into();
    Ok(HttpResponse::Accepted().json(body))
}

/// Admits a re-run of job `old` (for the API and the web page, which check who asks) and
/// returns the new job once it is kept as an `async` job's admission is.
pub async fn rerun(state: &AppState, old: &JobId) -> Result<Job, ApiError> {
    let old = old.clone();
    let store = state.engine.store();
    let (job, hook) = job_and_hook(state, &old, "re-run the job").await?;
    let Some(command) = store.command(&old).await.map_err(store_error)? else {
        // A `wait` or `stream` job's command is never written to the store.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "command_not_kept",
            format!(
                "job `{old}` was answered in `wait` or `stream` mode, whose commands are not kept; trigger hook `{}` again instead",
                job.hook
            ),
        ));
    };

    let job_id = JobId::generate();
    let command = command.rerun(job_id.as_str(), old.as_str(), RetryPlan::of(&hook.retry));
    let submission = Submission {
        hook: hook.id.clone(),
        concurrency: hook.concurrency,
        job_id,
        request_id: format!("rerun:{old}"),
        command,
        // A re-run is deliberate: it is never a duplicate of anything.
        dedupe_key: None,
        follow: false,
        run_on: RunOn::Any,
        notify: !hook.notify.is_empty(),
        approval: hook.approval.map(|approval| approval.timeout),
    };
    let handle = match state.engine.submit(submission).await {
        Ok(Submitted::Accepted(handle)) => handle,
        // Not reached: a re-run has no duplicate key and runs on any one instance.
        Ok(Submitted::Duplicate(_) | Submitted::FannedOut(_)) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the re-run was not admitted as one new job",
            ))
        }
        Err(SubmitError::Store(error)) => return Err(store_error(error)),
        Err(error) => {
            let message = match &error {
                SubmitError::ShuttingDown => {
                    "the server is shutting down; retry in a moment".to_string()
                }
                _ => format!("the server is busy: {error}; retry later"),
            };
            return Err(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
                    .with_header(header::RETRY_AFTER, "5"),
            );
        }
    };
    // As for an `async` trigger, the 202 promises the job survives a crash.
    if let Some(committed) = handle.committed {
        committed.await.map_err(store_error)?;
    }
    Ok(handle.job)
}
