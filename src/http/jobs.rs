//! Job endpoints (`GET /jobs/{id}`) and health.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{ApiError, AppState};
use crate::job::JobId;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn get_job(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            "no job has this id; it may have been pruned by `retention`",
        )
    };
    let id = JobId::parse(&id).ok_or_else(not_found)?;
    let job = state.engine.get(&id).ok_or_else(not_found)?;
    let include_output = state
        .config
        .hook(&job.hook)
        .is_some_and(|hook| hook.response.include_output);
    Ok(HttpResponse::Ok().json(job.to_json(include_output)))
}
