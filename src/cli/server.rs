//! How the command line reaches a running server's API: its address (`http://HOST:PORT` or
//! `unix:PATH`), the admin token from the environment or a file, and what an answer came to.
//! There is one HTTP client, `reqwest`, pointed at a unix socket when the address is one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The server's address when neither `--url` nor `HOOKRUNNER_URL` gives one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9000";

/// Exit codes shared by the commands that talk to a server.
pub mod exit {
    /// The server answered, and not with a 2xx.
    pub const REFUSED: u8 = 1;
    /// The command line (or a file it names) is wrong.
    pub const USAGE: u8 = 2;
    /// The server could not be reached at all.
    pub const UNREACHABLE: u8 = 4;
}

/// Where the server listens: an HTTP base URL, or a unix socket spoken to over plain HTTP.
#[derive(Clone, Debug)]
pub struct Server {
    base: reqwest::Url,
    socket: Option<PathBuf>,
}

impl Server {
    /// Parses `http://HOST:PORT[/PREFIX]`, `https://…` or `unix:PATH`.
    pub fn parse(text: &str) -> Result<Server, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(
                    "`unix:` needs the socket's path, as in `unix:/run/hookrunner.sock`".into(),
                );
            }
            let base = reqwest::Url::parse("http://localhost/").expect("a valid URL");
            return Ok(Server {
                base,
                socket: Some(PathBuf::from(path)),
            });
        }
        let mut base = reqwest::Url::parse(text).map_err(|error| {
            format!(
                "`{}` is not a URL ({error}); write it as `http://HOST:PORT` or `unix:PATH`",
                without_credentials_text(text)
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!(
                "`{}` is not an `http://` or `https://` URL, nor `unix:PATH`",
                redact(&base)
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Server { base, socket: None })
    }

    /// The client for this server: a unix socket's when the address is one.
    pub fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        let builder = reqwest::Client::builder();
        let builder = match &self.socket {
            Some(path) => builder.unix_socket(path.as_path()),
            None => builder,
        };
        builder.build()
    }

    /// The URL of `path` (no leading `/`) on this server.
    pub fn url(&self, path: &str) -> reqwest::Url {
        self.base.join(path).expect("a relative path joins")
    }

    /// How an error names the server: the socket's path, or the URL without user or password.
    pub fn shown(&self) -> String {
        match &self.socket {
            Some(path) => format!("unix:{}", path.display()),
            None => redact(&self.base),
        }
    }
}

/// A URL as it may appear in a message: without user, password, query or fragment.
pub fn redact(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Text that did not parse as a URL, cut before any `user:password@`.
fn without_credentials_text(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://…@{}", &text[..scheme_end], &text[at + 1..])
        }
        _ => text.to_string(),
    }
}

/// The admin token, sent as `Authorization: Bearer …`; `Debug` never shows it.
pub struct AdminToken(String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// The token from `file` when given (trailing newlines removed), else from
    /// `HOOKRUNNER_ADMIN_TOKEN`; `None` when neither gives one, and the server will say so.
    pub fn find(file: Option<&Path>) -> Result<Option<AdminToken>, String> {
        let text = match file {
            Some(file) => std::fs::read_to_string(file).map_err(|error| {
                format!(
                    "cannot read the admin token from `{}`: {error}",
                    file.display()
                )
            })?,
            None => std::env::var("HOOKRUNNER_ADMIN_TOKEN").unwrap_or_default(),
        };
        let token = text.trim_end_matches(['\n', '\r']);
        Ok((!token.is_empty()).then(|| AdminToken(token.to_string())))
    }

    pub fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(&self.0)
    }
}

/// Why a call to the server did not give a 2xx answer.
#[derive(Debug)]
pub enum Failure {
    /// The server answered with this status; `message` is its `message` (or the body's text).
    Refused { status: u16, message: String },
    /// Nothing answered: the connection failed, or the answer broke off.
    Unreachable { server: String, cause: String },
}

impl Failure {
    /// Says what went wrong on stderr and gives the exit code for it.
    pub fn report(&self) -> std::process::ExitCode {
        match self {
            Failure::Refused { status, message } => {
                eprintln!("hookrunner: the server refused ({status}): {message}");
                std::process::ExitCode::from(exit::REFUSED)
            }
            Failure::Unreachable { server, cause } => {
                eprintln!("hookrunner: cannot reach the server at `{server}`: {cause}");
                std::process::ExitCode::from(exit::UNREACHABLE)
            }
        }
    }

    pub fn unreachable(server: &Server, error: &reqwest::Error) -> Failure {
        Failure::Unreachable {
            server: server.shown(),
            cause: describe_error(error),
        }
    }
}

/// The message of a refusal: the `message` of a JSON error body, else the body's text.
pub fn refusal_message(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(object)) => match (object.get("message"), object.get("error")) {
            (Some(Value::String(message)), Some(Value::String(code))) => {
                format!("{message} (`{code}`)")
            }
            (Some(Value::String(message)), _) => message.clone(),
            _ => body.trim().to_string(),
        },
        _ => body.trim().to_string(),
    }
}

/// What went wrong with the connection, down to its first cause (without the URL, said once).
pub fn describe_error(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "cannot connect"
    } else if error.is_timeout() {
        "timed out"
    } else {
        "the request failed"
    };
    format!("{kind}: {}", root_cause(error))
}

pub fn root_cause(error: &reqwest::Error) -> &dyn std::error::Error {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_shown_without_credentials() {
        let cases = [
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000/"),
            (
                "http://admin:pw@hooks.example.com/api",
                "http://hooks.example.com/api/",
            ),
            (
                "https://hooks.example.com/?token=x#y",
                "https://hooks.example.com/",
            ),
            ("unix:/run/hookrunner.sock", "unix:/run/hookrunner.sock"),
        ];
        for (text, shown) in cases {
            assert_eq!(Server::parse(text).unwrap().shown(), shown, "{text}");
        }
    }

    #[test]
    fn a_bad_address_is_refused_without_quoting_its_password() {
        for (text, expected) in [
            ("unix:", "`unix:` needs the socket's path"),
            ("ftp://u:secret@host/", "is not an `http://`"),
            ("http://u:secret@[::1", "`http://…@[::1` is not a URL"),
        ] {
            let message = Server::parse(text).unwrap_err();
            assert!(message.contains(expected), "{text}: {message}");
            assert!(!message.contains("secret"), "{text}: {message}");
        }
    }

    #[test]
    fn paths_join_below_the_base_url() {
        let server = Server::parse("http://127.0.0.1:9000/prefix").unwrap();
        assert_eq!(
            server.url("jobs/abc/log?follow=1").as_str(),
            "http://127.0.0.1:9000/prefix/jobs/abc/log?follow=1"
        );
    }

    #[test]
    fn a_refusal_shows_the_servers_message() {
        let cases = [
            (
                r#"{"error": "admin_token_invalid", "message": "the admin token is wrong"}"#,
                "the admin token is wrong (`admin_token_invalid`)",
            ),
            (r#"{"message": "no"}"#, "no"),
            ("Bad Gateway\n", "Bad Gateway"),
        ];
        for (body, expected) in cases {
            assert_eq!(refusal_message(body), expected);
        }
    }
}
