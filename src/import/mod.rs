//! `hookrunner import-webhook FILE`: converts an adnanh/webhook `hooks.json` or `hooks.yaml` to
//! hookrunner's config and prints it.
//!
//! [`convert`] is the pure core: source text in, YAML text and notices out, or every error found.
//! Anything hookrunner cannot express is an error naming the hook and the key, never dropped.
//! [`main`] is the IO edge: it reads the file and prints. Each converted hook is run through
//! hookrunner's own config loader before it is printed, so the output always passes `check`.

mod hook;
mod secrets;
mod source;
mod template;
mod trigger;

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;
use serde_yaml::Value as Yaml;

use secrets::Secrets;
pub use secrets::{SecretFile, SecretMode};

/// How to read the source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    /// Not known from the file name: JSON is tried, then YAML.
    Unknown,
}

impl Format {
    /// By extension: `.json`, `.yaml` or `.yml`.
    pub fn from_path(path: &Path) -> Format {
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("json") => Format::Json,
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Unknown,
        }
    }
}

/// A converted file: hookrunner's config, and what the user should know about it.
#[derive(Debug)]
pub struct Conversion {
    /// The config, with comments: what differs for every hook, and each hook's notices above it.
    pub yaml: String,
    /// One line each, as `warning: hook `deploy`: ...` or `note: hook `deploy`: set ...`.
    pub warnings: Vec<String>,
    /// With `--secrets files DIR`: the secret files the config reads, for the caller to write.
    pub secret_files: Vec<SecretFile>,
    /// How many hooks it holds.
    pub hooks: usize,
}

/// Something the source file says that cannot be converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportError {
    /// The hook's id (or `hooks[N]` when it has none); `None` for a problem with the whole file.
    pub hook: Option<String>,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.hook {
            Some(hook) => write!(f, "hook `{hook}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ImportError {}

/// What differs from adnanh/webhook for every hook; printed at the top of the converted file.
const DIFFERENCES: &str = "\
# Review it, then run `hookrunner check --config` on it. Where hookrunner differs from
# adnanh/webhook for every hook:
# - the signature is verified before any rule: a bad one is answered 401 and runs nothing
# - a value the request lacks is answered 422 and runs nothing; adnanh ran the command anyway,
#   with an empty argument or without the variable
# - the command gets only PATH, HOME, LANG and TZ from the server's environment, not all of it;
#   list any other variable it needs in `run.env_passthrough`
# - relative paths are resolved from this file's folder, not from the server's working directory
# - a hook runs its commands one at a time, in order (`concurrency: queue`); adnanh ran every
#   trigger at once (`concurrency: parallel`)
# - a delivery already accepted (the same `X-GitHub-Delivery`, ...) is answered `duplicate`
#   unless its job failed (`dedupe: false` turns that off)
# - a hook without `methods` accepts POST only; adnanh accepted every method
";

/// Converts the text of an adnanh/webhook hooks file to hookrunner's config, its secrets as
/// `env:` references.
pub fn convert(source: &str, format: Format) -> Result<Conversion, Vec<ImportError>> {
    convert_files(&[("", source, format)], SecretMode::Env)
}

/// Converts several hooks files (`webhook -hooks a.json -hooks b.json`) into one config holding
/// all their hooks, in order; ids must be unique across them, as adnanh requires. Each entry is
/// (the file's name for messages, its text, its format); a parse error names the file when there
/// are several. Secrets are written as `secrets` says.
pub fn convert_files(
    files: &[(&str, &str, Format)],
    secrets: SecretMode,
) -> Result<Conversion, Vec<ImportError>> {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for (name, source, format) in files {
        let named = |message: String| ImportError {
            hook: None,
            message: if files.len() > 1 {
                format!("{name}: {message}")
            } else {
                message
            },
        };
        match parse(source, *format) {
            Ok(Value::Array(hooks)) => items.extend(hooks),
            Ok(_) => errors.push(named("the file must be a list of hooks, as adnanh/webhook reads it (`[{\"id\": ...}, ...]` or `- id: ...`)".into())),
            Err(message) => errors.push(named(message)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut secrets = Secrets::new(secrets);
    let mut errors = Vec::new();
    let mut first_index_of: Vec<(String, usize)> = Vec::new();
    let mut converted = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let mut hook = hook::convert(item, index, &mut secrets);
        if let Some(id) = &hook.id {
            match first_index_of.iter().find(|(seen, _)| seen == id) {
                Some((_, first)) => hook.report.error(format!(
                    "the id is used twice (by `hooks[{first}]` and `hooks[{index}]`); adnanh refuses that too"
                )),
                None => first_index_of.push((id.clone(), index)),
            }
        }
        if let Some(value) = &hook.hook {
            for message in check_with_hookrunner(value, &secrets) {
                hook.report.error(format!(
                    "the converted hook fails hookrunner's own check: {message}"
                ));
            }
        }
        errors.extend(hook.report.errors.iter().map(|message| ImportError {
            hook: Some(hook.label.clone()),
            message: message.clone(),
        }));
        converted.push(hook);
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut yaml = String::from(DIFFERENCES);
    let mut warnings = Vec::new();
    if converted.is_empty() {
        warnings.push("warning: the file has no hooks".to_string());
        yaml.push_str("\nhooks: []\n");
    } else {
        yaml.push_str("\nhooks:\n");
    }
    for (index, hook) in converted.iter().enumerate() {
        if index > 0 {
            yaml.push('\n');
        }
        for notice in &hook.report.notices {
            let _ = writeln!(yaml, "# {notice}");
            let (kind, message) = match notice {
                source::Notice::Warning(message) => ("warning", message),
                source::Notice::Note(message) => ("note", message),
            };
            warnings.push(format!("{kind}: hook `{}`: {message}", hook.label));
        }
        let value = hook.hook.as_slice();
        yaml.push_str(&to_yaml(value).map_err(|message| {
            vec![ImportError {
                hook: Some(hook.label.clone()),
                message,
            }]
        })?);
    }
    if yaml.contains(template::GETENV_MARKER) {
        return Err(vec![ImportError {
            hook: None,
            message: "`{{ getenv \"NAME\" }}` converts only as a whole secret (to `env:NAME`); elsewhere render the file first with `webhook -template`, or pass the variable with `run.env_passthrough`".into(),
        }]);
    }
    Ok(Conversion {
        yaml,
        warnings,
        secret_files: secrets.files,
        hooks: converted.len(),
    })
}

/// Reads the file as adnanh does: JSON, which a YAML parser also reads (adnanh parses every hooks
/// file as YAML, so a trailing comma it tolerates converts too), or YAML. A file for
/// `webhook -template` is read too: see [`template::replace_actions`].
fn parse(source: &str, format: Format) -> Result<Value, String> {
    let rendered = template::replace_actions(source)?;
    let source = rendered.as_str();
    let hint = if source.contains("{{") {
        "; if it is a Go template for `webhook -template`, render it first"
    } else {
        ""
    };
    let document = match format {
        Format::Yaml => {
            parse_yaml(source).map_err(|error| format!("invalid YAML: {error}{hint}"))?
        }
        Format::Json | Format::Unknown => match serde_json::from_str(source) {
            Ok(document) => document,
            Err(json_error) => parse_yaml(source).map_err(|yaml_error| {
                if format == Format::Json {
                    format!("invalid JSON: {json_error}{hint}")
                } else {
                    format!("neither JSON ({json_error}) nor YAML ({yaml_error}){hint}")
                }
            })?,
        },
    };
    if document.is_null() {
        return Err("the file is empty; adnanh/webhook expects a list of hooks".into());
    }
    Ok(document)
}

fn parse_yaml(source: &str) -> Result<Value, String> {
    let mut document: Yaml = serde_yaml::from_str(source).map_err(|error| error.to_string())?;
    document.apply_merge().map_err(|error| error.to_string())?;
    serde_yaml::from_value(document).map_err(|error| error.to_string())
}

fn to_yaml(hooks: &[Yaml]) -> Result<String, String> {
    serde_yaml::to_string(hooks).map_err(|error| format!("cannot write the hook as YAML: {error}"))
}

/// Loads one converted hook with hookrunner's config loader, every `env:` secret supplied, and
/// returns its errors. The converter checks what it knows first, with better messages; this catches
/// what it does not know, so nothing printed can fail `hookrunner check` for its own sake. The
/// secret files this conversion will write are not there yet: they are checked as `env:`.
fn check_with_hookrunner(hook: &Yaml, secrets: &Secrets) -> Vec<String> {
    let mut hook = hook.clone();
    stand_in_for_secret_files(&mut hook, secrets);
    let text = match to_yaml(std::slice::from_ref(&hook)) {
        Ok(text) => format!("hooks:\n{text}"),
        Err(message) => return vec![message],
    };
    let lookup = |_: &str| Some("x".to_string());
    match crate::config::load_str(&text, Path::new("hooks.yaml"), &lookup) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .errors()
            .map(|diagnostic| diagnostic.message.clone())
            .collect(),
    }
}

/// Replaces each `file:` reference that `secrets` will write with an `env:` one, in place.
fn stand_in_for_secret_files(value: &mut Yaml, secrets: &Secrets) {
    match value {
        Yaml::String(text) if secrets.will_write(text) => *text = "env:SECRET_FILE".into(),
        Yaml::Sequence(items) => items
            .iter_mut()
            .for_each(|item| stand_in_for_secret_files(item, secrets)),
        Yaml::Mapping(map) => map
            .iter_mut()
            .for_each(|(_, item)| stand_in_for_secret_files(item, secrets)),
        _ => {}
    }
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The adnanh/webhook hooks files: `.json`, `.yaml` or `.yml` (others are tried as JSON, then
    /// YAML). Several (what `webhook -hooks` was given several times) make one config with all
    /// their hooks.
    #[arg(value_name = "FILE", num_args = 0..)]
    pub files: Vec<PathBuf>,
    /// Where secrets go: `env` (an `env:` reference per secret, named after the hook, and a
    /// note saying what to set it to), `inline` (the literals, as the file had them: the result
    /// passes `check` at once, but holds the secrets) or `files DIR` (each written to
    /// `DIR/<hook>`, mode 0600, and read as `file:`; DIR is made, mode 0700, if missing).
    #[arg(long, value_name = "HOW [DIR]", num_args = 1..=2, default_value = "env")]
    pub secrets: Vec<String>,
    /// Print only the report (notes and warnings, or the errors); write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `--secrets` and the files to convert. `--secrets` takes one value, or two for `files DIR`;
/// a second value after `env` or `inline` is the first file, which clap took for the option.
fn secrets_and_files(args: &ImportArgs) -> Result<(SecretMode, Vec<PathBuf>), String> {
    let mut files = args.files.clone();
    let (how, directory) = match args.secrets.as_slice() {
        [how] => (how.as_str(), None),
        [how, second] => (how.as_str(), Some(second)),
        _ => return Err("`--secrets` takes `env`, `inline` or `files DIR`".into()),
    };
    let mode = match (how, directory) {
        ("files", Some(directory)) => {
            let directory = PathBuf::from(directory);
            let directory = if directory.is_absolute() {
                directory
            } else {
                std::env::current_dir()
                    .map_err(|error| format!("cannot read the current folder: {error}"))?
                    .join(directory)
            };
            SecretMode::Files(directory)
        }
        ("files", None) => {
            return Err(
                "`--secrets files` needs the folder to write them to: `--secrets files DIR`".into(),
            )
        }
        (how, first_file) => {
            if let Some(file) = first_file {
                files.insert(0, PathBuf::from(file));
            }
            match how {
                "env" => SecretMode::Env,
                "inline" => SecretMode::Inline,
                other => {
                    return Err(format!(
                        "`--secrets {other}`: say `env`, `inline` or `files DIR`"
                    ))
                }
            }
        }
    };
    if files.is_empty() {
        return Err(
            "name the adnanh/webhook hooks file to convert: `hookrunner import-webhook hooks.json`"
                .into(),
        );
    }
    Ok((mode, files))
}

/// Reads the files, writes the secret files (`--secrets files DIR`), prints the converted config
/// to stdout and the notices to stderr; with `--dry-run`, only the notices. Exits 1 when a file
/// cannot be read, converted or written, after printing every error as `FILE: hook `id`: ...`,
/// and 2 on a usage error.
pub fn main(args: &ImportArgs) -> ExitCode {
    let (mode, paths) = match secrets_and_files(args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let file = paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut sources = Vec::new();
    for path in &paths {
        match std::fs::read_to_string(path) {
            Ok(source) => {
                sources.push((path.display().to_string(), source, Format::from_path(path)))
            }
            Err(error) => {
                eprintln!("{}: cannot read the file: {error}", path.display());
                return ExitCode::from(1);
            }
        }
    }
    let files: Vec<(&str, &str, Format)> = sources
        .iter()
        .map(|(name, source, format)| (name.as_str(), source.as_str(), *format))
        .collect();
    match convert_files(&files, mode) {
        Ok(conversion) => {
            if !args.dry_run {
                for secret in &conversion.secret_files {
                    if let Err(error) = write_secret(secret) {
                        eprintln!(
                            "{}: cannot write the secret: {error}",
                            secret.path.display()
                        );
                        return ExitCode::from(1);
                    }
                }
                let text = format!(
                    "# Converted from {file} by `hookrunner import-webhook`.\n{}",
                    conversion.yaml
                );
                if let Err(error) = std::io::stdout().lock().write_all(text.as_bytes()) {
                    eprintln!("{file}: cannot write the converted config: {error}");
                    return ExitCode::from(1);
                }
            }
            for warning in &conversion.warnings {
                eprintln!("{file}: {warning}");
            }
            if args.dry_run {
                eprintln!(
                    "{file}: {} hook{} would convert (a dry run: nothing was written)",
                    conversion.hooks,
                    if conversion.hooks == 1 { "" } else { "s" }
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{file}: {error}");
            }
            eprintln!(
                "{file}: {} problem{}; nothing was converted",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(1)
        }
    }
}

/// Writes one secret to a new file, mode 0600, in a folder made mode 0700. A folder that others
/// can write to, or that is not the user's, is refused (they could swap the secret for one they
/// know), as is a file already there (never overwritten, never followed if it is a link).
fn write_secret(secret: &SecretFile) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
    let refuse =
        |message: String| std::io::Error::new(std::io::ErrorKind::PermissionDenied, message);
    if let Some(directory) = secret.path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(directory)?;
        let folder = std::fs::symlink_metadata(directory)?;
        if !folder.is_dir() {
            return Err(refuse(format!(
                "`{}` is not a folder (a link?); give a folder of your own",
                directory.display()
            )));
        }
        if folder.uid() != nix::unistd::geteuid().as_raw() || folder.mode() & 0o022 != 0 {
            return Err(refuse(format!(
                "`{}` is not yours alone (others may write to it, and could swap a secret); use a folder only you can write to, such as a new one",
                directory.display()
            )));
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&secret.path)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => refuse(
                "it is there already (from an earlier import?); remove it, or write to another folder".into(),
            ),
            _ => error,
        })?;
    file.write_all(secret.secret.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests;
