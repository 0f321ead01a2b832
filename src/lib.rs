//! hookrunner: a webhook-triggered command runner.
//!
//! # Layout
//! - [`config`]: the YAML file parsed once into types that cannot be wrong, with located errors.
//! - [`secret`]: secret values whose `Debug` never shows them (a leaf, shared by `config` and
//!   `signature`).
//! - [`signature`]: one module per provider behind the [`signature::Provider`] trait.
//! - [`reference`], [`template`], [`rules`]: the pure core that reads values out of a request.
//! - [`request`]: one request as plain data, its body parsed lazily.
//! - [`command`]: a hook and a request become the command to run; [`exec_limits`] checks it fits
//!   one `exec`.
//! - [`runner`]: spawns one command as a process group and captures its output; [`isolation`]
//!   keeps the server's descriptors and `/proc` files from the commands.
//! - [`job`] and [`engine`]: job records and the scheduler that runs them.
//! - [`notify`]: what a notification sends (signed webhook, Slack text, command), as plain data.
//! - [`http`]: the actix-web layer; [`app`]: the `Application` that binds and serves.
//! - [`backoff`]: how long to wait before trying again (exponential backoff, `Retry-After`, a time
//!   budget), shared by `send --retry`, job retries and notifications.
//! - [`cli`]: the command line.
#![forbid(unsafe_code)]

pub mod acme;
pub mod app;
pub mod backoff;
pub mod body;
pub mod by_text;
pub mod cli;
pub mod command;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod exec_limits;
pub mod http;
pub mod import;
pub mod isolation;
pub mod job;
pub mod metrics;
pub mod notify;
pub mod pattern;
pub mod rate_limit;
pub mod reference;
pub mod reload;
pub mod request;
pub mod rules;
pub mod runner;
pub mod secret;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod tls;
pub mod ui;
