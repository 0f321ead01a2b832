//! The HTTP layer: routes, the request-id and logging middleware, and shared state.
//! Handlers turn HTTP into plain data for the core and the core's answers back into HTTP.

mod approvals;
mod client;
mod error;
mod jobs;
pub(crate) mod log;
mod rerun;
pub use self::approvals::{approve, reject};
pub use self::jobs::may_have_notifications;
pub use rerun::rerun;
pub(crate) mod stream;
mod trigger;

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::request::Headers;

pub use self::error::ApiError;

/// What every handler shares.
pub struct AppState {
    /// The config now serving; a reload swaps it, and requests already running keep theirs.
    pub config: RwLock<Arc<Config>>,
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    /// What one `exec` may carry, read once at start; a command over it is refused at submit.
    pub exec_limits: crate::exec_limits::ExecLimits,
    /// When jobs change, for the web page's lists while one is open.
    pub page_changes: crate::ui::Changes,
    /// How fast the web page's sign-in may be tried.
    pub sign_ins: crate::ui::SignInThrottle,
    /// How fast hook requests are taken (`rate_limit`); a reload applies the new limits.
    pub rate_limits: crate::rate_limit::RateLimits,
    /// The certificate the `tls:` listeners serve; a reload replaces it. `None` without them.
    pub tls: Option<Arc<crate::tls::Resolver>>,
}

impl AppState {
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Who sent the request, worked out once by the middleware.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub request_id: String,
    pub remote_ip: Option<std::net::IpAddr>,
    /// The peer's port when `remote_ip` is the peer itself, not a client a proxy named.
    pub remote_port: Option<u16>,
}

/// The outcome of a request a rate limit refused.
pub const RATE_LIMITED: &str = "rate_limited";

/// What a hook request came to, for the request log line.
#[derive(Clone, Debug)]
pub struct HookOutcome {
    pub hook: String,
    pub outcome: &'static str,
}

/// The routes. Hooks are a scope on the static `base_path` whose handler reads the id itself, and
/// the job routes sit under a static `/jobs` scope, so a hook request is routed by prefix compares
/// alone, without the pattern matching dynamic segments need. Each fixed path is a resource that
/// answers another method with 405 (`route(path, ...)` would move the method guard onto the path,
/// and a wrong method would fall through to 404). A new fixed path belongs in
/// `config::server::FIXED_ROUTES` too, so `check` refuses a hook it would hide.
pub fn configure(config: &mut web::ServiceConfig, base_path: &str) {
    let only = |path: &str, route: actix_web::Route, allow: &'static str| {
        web::resource(path)
            .route(route)
            .default_service(jobs::wrong_method(allow))
    };
    config
        .service(only("/healthz", web::get().to(jobs::healthz), "GET"))
        .service(only("/readyz", web::get().to(jobs::readyz), "GET"))
        .service(only("/metrics", web::get().to(jobs::metrics), "GET"))
        .service(only("/instances", web::get().to(jobs::instances), "GET"))
        .service(
            web::scope("/jobs")
                .service(only("", web::get().to(jobs::list_jobs), "GET"))
                .service(only("/{id}", web::get().to(jobs::get_job), "GET"))
                .service(only("/{id}/log", web::get().to(jobs::get_log), "GET"))
                .service(only(
                    "/{id}/cancel",
                    web::post().to(jobs::cancel_job),
                    "POST",
                ))
                .service(only(
                    "/{id}/rerun",
                    web::post().to(rerun::rerun_job),
                    "POST",
                ))
                .service(only(
                    "/{id}/{decision:approve|reject}",
                    web::post().to(approvals::decide_job),
                    "POST",
                )),
        )
        .service(crate::ui::scope())
        .service(web::scope(base_path).default_service(web::to(trigger::trigger)))
        .default_service(web::to(not_found));
}

async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "nothing is served at `{}`; hooks are at `<base_path>/<hook id>`",
            request.path()
        ),
    ))
}

/// Whether the request reached us over HTTPS, believing a forwarded scheme only from a peer that
/// `trusted_proxies` names.
pub fn came_over_https(state: &AppState, request: &HttpRequest) -> bool {
    let forwarded = Headers::new(["x-forwarded-proto", "forwarded"].iter().flat_map(|name| {
        request.headers().get_all(*name).map(move |value| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
    }));
    client::came_over_https(
        client::Peer::from_socket(request.peer_addr()),
        &forwarded,
        &state.config().server.trusted_proxies,
        request.app_config().secure(),
    )
}

/// Gives every request an id (the proxy's, when trusted), puts `X-Request-Id` on every answer,
/// and logs one line per request. Bodies, signatures and secrets are never logged.
pub async fn request_middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let trusted = state
        .as_ref()
        .map(|state| state.config().server.trusted_proxies.clone())
        .unwrap_or_default();
    let forwarded = Headers::new(
        ["x-request-id", "x-forwarded-for", "forwarded"]
            .iter()
            .flat_map(|name| {
                request
                    .headers()
                    .get_all(*name)
                    .map(move |value| (name, value))
            })
            .map(|(name, value)| {
                (
                    name.to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            }),
    );
    let peer = client::Peer::from_socket(request.peer_addr());
    let remote_ip = client::client_ip(peer, &forwarded, &trusted);
    let peer_address = request.peer_addr();
    let info = ClientInfo {
        request_id: client::request_id(peer, &forwarded, &trusted),
        remote_ip,
        remote_port: peer_address
            .filter(|address| Some(address.ip().to_canonical()) == remote_ip)
            .map(|address| address.port()),
    };
    request.extensions_mut().insert(info.clone());
    // Nothing is copied for a line that is not written (`RUST_LOG=warn`).
    let logged = tracing::enabled!(tracing::Level::INFO)
        .then(|| (request.method().clone(), logged_path(request.path())));

    let mut response = next.call(request).await?;
    if let Ok(value) = HeaderValue::from_str(&info.request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    let outcome = response
        .response()
        .extensions()
        .get::<HookOutcome>()
        .cloned();
    if let (Some(outcome), Some(state)) = (&outcome, &state) {
        // Only configured hook ids become labels; a request for an unknown hook counts under "".
        let hook = if outcome.outcome == "not_found" {
            ""
        } else {
            outcome.hook.as_str()
        };
        state.metrics.request(hook, outcome.outcome);
    }
    // A request refused by a rate limit gets no line of its own: a flood of them would fill
    // the disk. They are summarised per client instead (`rate_limit::Summary`).
    let rate_limited = outcome
        .as_ref()
        .is_some_and(|outcome| outcome.outcome == RATE_LIMITED);
    if let (Some((method, path)), false) = (logged, rate_limited) {
        tracing::info!(
            request_id = %info.request_id,
            client = %ClientText(info.remote_ip),
            method = %method,
            path = %path,
            hook = outcome.as_ref().map(|o| o.hook.as_str()).unwrap_or(""),
            outcome = outcome.as_ref().map(|o| o.outcome).unwrap_or(""),
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            "request"
        );
    }
    Ok(response)
}

/// The longest path the request log shows, in bytes: the path is the client's to choose.
const LOGGED_PATH_MAX: usize = 256;

/// The path as the request log shows it: cut at [`LOGGED_PATH_MAX`] bytes, with `…` after.
fn logged_path(path: &str) -> String {
    if path.len() <= LOGGED_PATH_MAX {
        return path.to_string();
    }
    let mut end = LOGGED_PATH_MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

/// The client's address in the request log, `unknown` when the proxies did not say; formatted
/// only when the line is written.
struct ClientText(Option<std::net::IpAddr>);

impl std::fmt::Display for ClientText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// Attaches the outcome for the request log to a response.
fn with_outcome(mut response: HttpResponse, hook: &str, outcome: &'static str) -> HttpResponse {
    response.extensions_mut().insert(HookOutcome {
        hook: hook.to_string(),
        outcome,
    });
    response
}
