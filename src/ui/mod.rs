//! The web page at `/ui/` (SPEC §14): sign-in with the admin token, the hooks, the jobs and one
//! job, and cancel. HTML is rendered on the server (`pages`), the session is a stateless signed
//! cookie (`session`), and every form post passes a same-origin check and a CSRF token (`origin`).
//! Server-sent events keep the pages current while jobs run (`live`).
//!
//! Like the job routes, the page sits at the fixed path `/ui/` whatever `base_path` says, and it is
//! served only while `server.ui` is on and `server.admin_token` is set (read per request, so a
//! reload turns it on or off).

mod assets;
mod changes;
mod guard;
mod handlers;
mod live;
mod log_text;
mod origin;
mod pages;
mod session;
mod throttle;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::http::AppState;

pub use self::changes::Changes;
pub use self::throttle::SignInThrottle;

/// The policy on every answer under `/ui/`: nothing from other hosts, no inline script or style.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The session cookie's name.
const COOKIE: &str = "hookrunner_ui";

/// The `/ui` routes. Every answer carries the security headers; pages are never cached, assets
/// (whose names change with their content) for a year.
pub fn scope() -> impl HttpServiceFactory {
    web::scope("/ui")
        .wrap(
            DefaultHeaders::new()
                .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .add((HeaderName::from_static("referrer-policy"), "same-origin"))
                .add((header::CACHE_CONTROL, "no-store")),
        )
        .route("", web::get().to(to_root))
        .route("/", web::get().to(handlers::hooks))
        .route("/sign-in", web::get().to(handlers::sign_in_form))
        .route("/sign-in", web::post().to(handlers::sign_in))
        .route("/sign-out", web::post().to(handlers::sign_out))
        .route("/jobs", web::get().to(handlers::jobs))
        .route("/events", web::get().to(live::changes))
        .route("/jobs/{id}", web::get().to(handlers::job))
        .route("/jobs/{id}/log/events", web::get().to(live::log_events))
        .route("/jobs/{id}/cancel", web::post().to(handlers::cancel))
        .route(
            "/jobs/{id}/{verb:rerun|approve|reject}",
            web::post().to(handlers::act),
        )
        .route("/assets/{name}", web::get().to(asset))
        .default_service(web::to(handlers::not_found))
}

async fn to_root(state: web::Data<AppState>) -> HttpResponse {
    match guard::key(&state) {
        Some(_) => guard::see_other("/ui/"),
        None => guard::off(),
    }
}

async fn asset(state: web::Data<AppState>, name: web::Path<String>) -> HttpResponse {
    if guard::key(&state).is_none() {
        return guard::off();
    }
    match assets::find(&name) {
        Some(asset) => HttpResponse::Ok()
            .content_type(asset.content_type)
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .body(asset.body),
        None => guard::off(),
    }
}

/// The session cookie values a request carries (a browser may send more than one).
fn cookie_values(request: &HttpRequest) -> impl Iterator<Item = String> + '_ {
    request
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The `Set-Cookie` value that holds `value` (or, with `None`, clears the cookie).
fn set_cookie(value: Option<&str>, secure: bool) -> String {
    let (value, max_age) = match value {
        Some(value) => (value, session::LIFETIME_SECS),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}
