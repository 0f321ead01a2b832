//! Who may see a page or take an action: the page being on, the session cookie, and for a form
//! post the same-origin check and the CSRF token; and the short answers given when they may not.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use actix_web::HttpResponse;
use maud::Markup;

use super::cookie_values;
use super::origin::is_same_origin;
use super::pages;
use super::session::{Session, SessionKey};
use crate::http::AppState;
use crate::job::now_ms;

/// The session key, while the page is on (`server.ui` and `server.admin_token` both set).
pub fn key(state: &AppState) -> Option<SessionKey> {
    let config = state.config();
    let token = config.server.admin_token.as_ref()?;
    config.server.ui.then(|| SessionKey::derive(token.expose()))
}

/// A request whose session cookie checked out.
pub struct SignedIn {
    pub csrf: String,
}

pub fn now_secs() -> i64 {
    now_ms() / 1000
}

fn session(key: &SessionKey, request: &HttpRequest) -> Option<Session> {
    let now = now_secs();
    cookie_values(request).find_map(|value| key.verify(&value, now))
}

/// Why a request is not served, and so what it is answered.
pub enum Refusal {
    /// The page is off: 404.
    Off,
    /// A page without a session: a redirect to sign-in.
    SignIn,
    /// An action that failed a check: 403 with this sentence.
    Forbidden(&'static str),
}

impl Refusal {
    pub fn answer(self) -> HttpResponse {
        match self {
            Refusal::Off => off(),
            Refusal::SignIn => see_other("/ui/sign-in"),
            Refusal::Forbidden(text) => forbidden(text),
        }
    }
}

/// The signed-in request, or why it is refused: the page is off, or there is no valid session.
pub fn signed_in(state: &AppState, request: &HttpRequest) -> Result<SignedIn, Refusal> {
    let key = key(state).ok_or(Refusal::Off)?;
    let session = session(&key, request).ok_or(Refusal::SignIn)?;
    Ok(SignedIn {
        csrf: key.csrf_token(&session),
    })
}

/// Checks a form post: refused while the page is off, and unless it comes from this site and
/// carries a session and that session's CSRF token.
pub fn action(state: &AppState, request: &HttpRequest, body: &[u8]) -> Result<(), Refusal> {
    let key = key(state).ok_or(Refusal::Off)?;
    if !same_origin(request) {
        return Err(Refusal::Forbidden(
            "The request did not come from this page.",
        ));
    }
    let session =
        session(&key, request).ok_or(Refusal::Forbidden("You are signed out; sign in again."))?;
    let csrf = form_field(body, "csrf").unwrap_or_default();
    if !key.csrf_matches(&session, &csrf) {
        return Err(Refusal::Forbidden(
            "The form is out of date or was not sent by this page; reload and try again.",
        ));
    }
    Ok(())
}

/// Whether a post comes from this site. The host is the `Host` header, or, over HTTP/2, where
/// clients send `:authority` instead, the authority of the request's URI.
pub fn same_origin(request: &HttpRequest) -> bool {
    let text = |name| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let authority = request
        .uri()
        .authority()
        .map(|authority| authority.as_str());
    is_same_origin(
        text(header::HOST).or(authority),
        text(header::ORIGIN),
        text(header::REFERER),
    )
}

pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

pub fn page(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// The answer while the page is off, and for a path it does not have.
pub fn off() -> HttpResponse {
    page(
        StatusCode::NOT_FOUND,
        pages::message("Not found", "Nothing is served here."),
    )
}

pub fn forbidden(text: &str) -> HttpResponse {
    page(StatusCode::FORBIDDEN, pages::message("Refused", text))
}
