//! The configuration: parsed once from YAML into types that cannot be wrong, so the request path
//! never re-checks. Every problem of a file is reported in one pass, each at its line and column.

mod approval;
mod cluster;
pub mod decode;
pub mod diagnostic;
mod files;
mod hook;
mod host;
mod include;
mod notify;
mod overrides;
pub mod rate_limit;
mod response;
mod retry;
pub mod secret;
mod server;
mod signature;
pub mod source_map;
mod statuses;
mod syntax;
mod tls;
pub mod units;
mod when;
pub mod yaml;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_yaml::Value;

use self::decode::Decoder;
use self::diagnostic::{ConfigErrors, Diagnostic, Listing, Severity};
use self::source_map::{Part, SourceMap, YamlPath, MAX_DEPTH};
use crate::rules::Rule;
use crate::secret::Secret;
use crate::signature::Signature;
use crate::template::Template;

pub use self::approval::Approval;
pub use self::cluster::{default_instance, parse_store, valid_instance};
pub use self::hook::{env_name_valid, hook_id_valid, shell_env_name, RESERVED_ENV};
pub use self::notify::{signing_key, Endpoint, Notification, Notifications, Target};
pub use self::overrides::ServerOverrides;
pub use self::rate_limit::RateLimit;
pub use self::response::{header_name_problem, header_value_problem};
pub use self::retry::Retry;
pub use self::server::TrustedProxies;
pub use self::statuses::StatusSet;

/// A loaded, valid configuration.
#[derive(Debug)]
pub struct Config {
    pub file: PathBuf,
    pub server: ServerSettings,
    pub hooks: Vec<Arc<Hook>>,
    by_id: HashMap<String, Arc<Hook>>,
    /// The `include:` patterns, relative to the config file's folder, as written: `--watch`
    /// reloads when a file they match changes.
    pub include: Vec<String>,
    /// Problems that do not stop the config from loading, already rendered.
    pub warnings: Vec<String>,
    overrides: ServerOverrides,
}

impl Config {
    pub fn hook(&self, id: &str) -> Option<&Arc<Hook>> {
        self.by_id.get(id)
    }
}

#[derive(Debug)]
pub struct ServerSettings {
    pub listen: Vec<String>,
    /// Starts with `/` and has no trailing `/` (empty for the root).
    pub base_path: String,
    pub state_dir: PathBuf,
    pub trusted_proxies: TrustedProxies,
    pub max_body: u64,
    /// How long a client may take to send a whole body (408 beyond).
    pub body_timeout: Duration,
    pub max_jobs: usize,
    pub max_pending: usize,
    pub retention: Retention,
    pub shutdown_grace: Duration,
    pub admin_token: Option<Secret>,
    pub log_format: LogFormat,
    /// Where jobs are kept: the SQLite file in `state_dir`, or a PostgreSQL database.
    pub store: StoreSetting,
    /// This instance's name among those sharing the store.
    pub instance: String,
    /// How often this instance says it is alive (PostgreSQL only).
    pub heartbeat: Duration,
    /// How long an instance may go unheard before the others declare it dead; at least twice
    /// `heartbeat`.
    pub lease: Duration,
    /// The notifications of hooks that have no `notify` of their own.
    pub notify: Notifications,
    /// Where people reach this server (no trailing `/`), for links in notifications.
    pub public_url: Option<String>,
    /// Whether the web page at `/ui/` is served (it also needs `admin_token`).
    pub ui: bool,
    /// How fast one client address may send hook requests, all hooks together; none: no limit.
    pub rate_limit: Option<RateLimit>,
    /// The certificate of the `tls:` listeners, read and checked at load.
    pub tls: Option<TlsSettings>,
}

/// `server.tls`: where the certificate comes from, and the oldest TLS version taken.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub min_version: crate::tls::MinVersion,
    pub source: TlsSource,
}

/// Where the `tls:` listeners' certificate comes from.
#[derive(Clone, Debug)]
pub enum TlsSource {
    /// `cert` and `key`: PEM files, and the pair they held when the config was loaded.
    Files {
        cert: PathBuf,
        key: PathBuf,
        pair: Arc<crate::tls::CertificatePair>,
    },
    /// `acme`: ordered from an ACME CA and renewed by hookrunner.
    Acme(crate::acme::AcmeSettings),
}

/// `server.store`. The URL stays a `Secret` (its `Debug` never shows it): it can hold a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSetting {
    /// `hookrunner.db` in `state_dir`: one instance, no setup.
    Sqlite,
    /// A `postgres://` or `postgresql://` URL; only its scheme is checked here.
    Postgres(Secret),
}

impl StoreSetting {
    /// The kind of store, the only part of it that may be shown.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreSetting::Sqlite => "sqlite",
            StoreSetting::Postgres(_) => "postgres",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_jobs: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug)]
pub struct Hook {
    pub id: String,
    pub description: Option<String>,
    pub methods: Vec<String>,
    /// The hook's own limit, or the server's.
    pub max_body: u64,
    pub signature: Signature,
    pub when: Option<Rule>,
    pub run: Run,
    pub concurrency: Concurrency,
    pub response: ResponseSettings,
    /// `body_type`: the content type the body is parsed as, whatever the request says.
    pub body_type: Option<&'static str>,
    pub on_mismatch: u16,
    pub dedupe: bool,
    pub dedupe_key: Option<Template>,
    pub run_on: RunOn,
    pub retry: Retry,
    /// Its jobs wait for an admin's approval before they run (`async` hooks only).
    pub approval: Option<Approval>,
    /// Its own `notify`, or the server's.
    pub notify: Notifications,
    /// How fast requests to it are taken, from everyone together; none: no limit.
    pub rate_limit: Option<RateLimit>,
}

/// Which instances run a hook's jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOn {
    /// Whichever instance has room claims the job.
    Any,
    /// One job per live instance (`async` hooks only).
    All,
}

#[derive(Debug)]
pub struct Run {
    pub program: ProgramTemplate,
    pub workdir: PathBuf,
    pub env: Vec<(String, Template)>,
    pub env_passthrough: Vec<String>,
    pub stdin: StdinMode,
    pub timeout: Duration,
    pub kill_after: Duration,
    pub max_output: u64,
    /// Whether what the command leaves running in its process group may outlive it.
    pub keep_background: bool,
    /// `run.files`: values written to private files whose paths the command gets in variables.
    pub files: Vec<FileTemplate>,
}

/// One entry of `run.files`: the variable that names the file, and what the file holds.
#[derive(Debug)]
pub struct FileTemplate {
    pub name: String,
    pub value: Template,
    /// The rendered value is base64, and the file holds the bytes it decodes to.
    pub base64_decode: bool,
}

#[derive(Debug)]
pub enum ProgramTemplate {
    /// Run by `/bin/sh -c`; never contains `{{ }}`, so no payload text reaches the shell parser.
    Shell(String),
    /// Run directly; each element stays one argument whatever it renders to.
    Command(Vec<Template>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdinMode {
    None,
    Payload,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concurrency {
    Parallel { limit: Option<usize> },
    Queue { queue: usize },
    Latest,
    Replace,
}

/// In words, for people: `queue (100 waiting at most)`.
impl std::fmt::Display for Concurrency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Concurrency::Parallel { limit: None } => f.write_str("parallel (no limit)"),
            Concurrency::Parallel { limit: Some(limit) } => {
                write!(f, "parallel (up to {limit} at once)")
            }
            Concurrency::Queue { queue: 0 } => {
                f.write_str("queue (none waiting: busy while one runs)")
            }
            Concurrency::Queue { queue } => write!(f, "queue ({queue} waiting at most)"),
            Concurrency::Latest => {
                f.write_str("latest (a newer trigger supersedes the waiting job)")
            }
            Concurrency::Replace => {
                f.write_str("replace (a newer trigger cancels the running job)")
            }
        }
    }
}

/// How a hook answers the request that triggered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseSettings {
    pub mode: ResponseMode,
    pub wait_timeout: Duration,
    /// The job body shows `stdout` and `stderr` (`include_output: true`).
    pub include_output: bool,
    /// A `wait` answer for a job that did not succeed shows the output (`include_output: true`
    /// or `on_error`).
    pub output_on_error: bool,
    pub failure_status: u16,
    /// The status of a success answer (a `wait` job that succeeded, an `async` job accepted)
    /// instead of 200 or 202.
    pub success_status: Option<u16>,
    /// A fixed body, sent instead of the job body by every answer that accepted or ran a job.
    pub message: Option<Message>,
    /// Added to every answer of the hook; valid names and values, never hop-by-hop ones,
    /// `Content-Length` or `Content-Type`.
    pub headers: Vec<(String, String)>,
}

/// `response.message`: its text and the `Content-Type` it is sent with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub content_type: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMode {
    Wait,
    Async,
    Stream,
}

/// Loads and validates a config file, reading secrets from the process environment.
pub fn load(file: &Path) -> Result<Config, ConfigErrors> {
    let lookup = |name: &str| std::env::var(name).ok();
    let source = std::fs::read_to_string(file).map_err(|error| ConfigErrors {
        file: file.display().to_string(),
        listing: Box::default(),
        included: Vec::new(),
        diagnostics: vec![Diagnostic {
            severity: Severity::Error,
            position: None,
            message: format!("cannot read the config file: {error}"),
        }],
    })?;
    load_str(&source, file, &lookup)
}

/// Loads and validates config text; `file` names it in messages and anchors relative paths.
/// The files it includes are read from disk, relative to `file`'s folder.
pub fn load_str(
    source: &str,
    file: &Path,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut included = Included::default();
    let loaded = decode_file(source, file, lookup_env, |decoder, document| {
        decode_document(decoder, document, file, &mut included)
    });
    match loaded {
        Ok((mut config, warnings)) if included.errors.is_empty() => {
            config.warnings = warnings;
            config.warnings.extend(included.warnings);
            Ok(config)
        }
        Ok(_) => Err(ConfigErrors {
            file: file.display().to_string(),
            listing: Box::default(),
            diagnostics: Vec::new(),
            included: included.errors,
        }),
        Err(mut errors) => {
            errors.included = included.errors;
            Err(errors)
        }
    }
}

/// Parses one YAML file and decodes it with `decode`. Every problem is reported at its line and
/// column; on success, the warnings come back rendered.
fn decode_file<T>(
    source: &str,
    file: &Path,
    lookup_env: &dyn Fn(&str) -> Option<String>,
    decode: impl FnOnce(&mut Decoder<'_>, &mut Document<'_>) -> Option<T>,
) -> Result<(T, Vec<String>), ConfigErrors> {
    // The source map comes first: it refuses nesting too deep for the parsers to be quick, and
    // knows which lines hold secrets before any of them could be quoted.
    let source_map = SourceMap::new(source);
    let errors = |diagnostics, secret_lines: &[usize]| ConfigErrors {
        file: file.display().to_string(),
        listing: Box::new(Listing::new(
            source,
            source_map
                .secret_lines()
                .iter()
                .chain(secret_lines)
                .copied(),
        )),
        diagnostics,
        included: Vec::new(),
    };
    if let Some(position) = source_map.too_deep() {
        let message = format!("the document nests more than {MAX_DEPTH} levels deep; no hookrunner setting needs that many");
        return Err(errors(
            vec![Diagnostic {
                severity: Severity::Error,
                position: Some(position),
                message,
            }],
            &[],
        ));
    }
    let mut document = match read(source, &source_map) {
        Ok(document) => document,
        Err(diagnostics) => return Err(errors(diagnostics, &[])),
    };

    let base_dir = file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut decoder = Decoder::new(base_dir, lookup_env);
    let decoded = decode(&mut decoder, &mut document);
    let unread_from = document.unread_from;
    // The tree is not needed any more: freed before the places pass, for a lower peak.
    drop(document);

    let (mut diagnostics, mut secret_lines) = decoder.finish(source);
    if let Some(first) = unread_from {
        secret_lines.extend(first..=source.lines().count());
    }
    diagnostics.sort_by_key(|d| d.position.map(|p| (p.line, p.column)));
    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    let errors = errors(diagnostics, &secret_lines);
    match decoded {
        Some(decoded) if !has_errors => {
            let file = file.display().to_string();
            let warnings = errors
                .diagnostics
                .iter()
                .map(|d| d.render(&file, &errors.listing))
                .collect();
            Ok((decoded, warnings))
        }
        _ => Err(errors),
    }
}

/// A parsed config file: its tree, and the items of its top-level `hooks` list when they are left
/// out of the tree, to be read one at a time.
pub(crate) struct Document<'t> {
    pub value: Value,
    pub hooks: Option<yaml::Split<'t>>,
    /// For text only serde_yaml reads: the line where hookrunner's reader, and so the source map,
    /// stopped. No line from it on is ever quoted, since any of them may hold a secret.
    pub unread_from: Option<usize>,
}

/// Reads the YAML of a config file (see [`yaml`]), the items of a plain top-level `hooks` list
/// left for later; merge keys (`<<`) are applied. Text that does not parse is reported by
/// serde_yaml's own reading, as before, so its messages stay the same.
fn read<'t>(source: &'t str, source_map: &SourceMap) -> Result<Document<'t>, Vec<Diagnostic>> {
    let refused = match yaml::split(source) {
        Ok(mut split) => {
            let mut value = std::mem::take(&mut split.document);
            merge(&mut value)?;
            let hooks = split.streamed.then_some(split);
            return Ok(Document {
                value,
                hooks,
                unread_from: None,
            });
        }
        Err(refused) => refused,
    };
    let error = |message: String| {
        vec![Diagnostic {
            severity: Severity::Error,
            position: refused.position,
            message,
        }]
    };
    // Read by serde_yaml, its aliases could take all the memory there is.
    if refused.kind == yaml::ErrorKind::TooLarge {
        return Err(error(refused.message));
    }
    match serde_yaml::from_str::<Value>(source) {
        Err(serde_error) => Err(syntax::problems(source, source_map, &serde_error)),
        // Anchors the streaming reader leaves to serde_yaml, or a layout libyaml takes and
        // yaml-rust2 does not (a flow list closed left of its key): read whole, as before.
        Ok(mut value) => {
            merge(&mut value)?;
            let unread_from = match refused.kind {
                yaml::ErrorKind::Unsupported => None,
                _ => Some(refused.position.map_or(1, |position| position.line)),
            };
            Ok(Document {
                value,
                hooks: None,
                unread_from,
            })
        }
    }
}

/// Applies the merge keys (`<<`) of `value`; one that is not given a mapping or a list of them
/// is an error, not silently dropped.
fn merge(value: &mut Value) -> Result<(), Vec<Diagnostic>> {
    value.apply_merge().map_err(|error| {
        vec![Diagnostic {
            severity: Severity::Error,
            position: None,
            message: merge_error(&error),
        }]
    })
}

fn merge_error(error: &serde_yaml::Error) -> String {
    format!("a merge key `<<` must be given a mapping or a list of mappings, as in `<<: *defaults` ({error})")
}

fn decode_document(
    decoder: &mut Decoder<'_>,
    document: &mut Document<'_>,
    file: &Path,
    included: &mut Included,
) -> Option<Config> {
    let Document {
        value: document,
        hooks: streamed,
        ..
    } = document;
    let document = &*document;
    let root = YamlPath::default();
    if document.is_null() {
        decoder.error(
            &root,
            Part::Value,
            "the file is empty; it needs a `hooks:` list",
        );
        return None;
    }
    let fields = decoder.mapping(
        document,
        &root,
        "the config",
        &["server", "include", "hooks"],
    )?;
    let server = server::decode(decoder, fields.get("server"));
    let include = fields.get("include");
    let hooks = match fields.get("hooks") {
        Some((hooks_value, hooks_path)) => match streamed {
            Some(items) => {
                hook::decode_stream(decoder, items, &hooks_path, server.as_ref(), |_, _, _| {})
            }
            None => hook::decode_all(decoder, hooks_value, &hooks_path, server.as_ref()),
        },
        None if include.is_some() => Some(Vec::new()),
        None => {
            decoder.error(&root, Part::Value, "the config has no `hooks:` list");
            return None;
        }
    };
    let server = server?;
    if let Some(hooks) = &hooks {
        when::warn_about_unseen_addresses(decoder, &server, hooks, &root.key("hooks"));
    }
    // The included files are read even when the main file has problems, so one pass shows all.
    let mut more_hooks = Vec::new();
    let mut patterns = Vec::new();
    if let Some((value, path)) = include {
        let file_name = file.display().to_string();
        let mut seen: HashMap<String, String> = hooks
            .iter()
            .flatten()
            .map(|hook| (hook.id.clone(), file_name.clone()))
            .collect();
        let (found, written) = include::expand(decoder, value, &path, file)?;
        patterns = written;
        for included_file in found {
            match include::load(&included_file, &server, &mut seen, decoder.lookup_env) {
                Ok((more, warnings)) => {
                    more_hooks.extend(more);
                    included.warnings.extend(warnings);
                }
                Err(errors) => included.errors.push(errors),
            }
        }
    }
    let mut hooks = hooks?;
    hooks.extend(more_hooks);
    let by_id = hooks
        .iter()
        .map(|hook| (hook.id.clone(), Arc::clone(hook)))
        .collect();
    Some(Config {
        file: file.to_path_buf(),
        server,
        hooks,
        by_id,
        include: patterns,
        warnings: Vec::new(),
        overrides: ServerOverrides::default(),
    })
}

/// What the included files of a config gave: their warnings, and the problems of each file
/// that has any.
#[derive(Default)]
struct Included {
    warnings: Vec<String>,
    errors: Vec<ConfigErrors>,
}

#[cfg(test)]
mod tests;
