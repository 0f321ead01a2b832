//! One adnanh hook as one hookrunner hook: its keys mapped one by one, every key hookrunner cannot
//! express reported as an error naming it.

use std::path::Path;

use serde_json::Value;
use serde_yaml::{Mapping, Value as Yaml};

use super::secrets::{Secrets, SourceSecret};
use super::source::{self, literal_template, Located, Report, ARGUMENT_KEYS};
use super::trigger::{self, Signature};
use crate::config::{env_name_valid, hook_id_valid, RESERVED_ENV};

/// Every key of an adnanh hook (its `Hook` struct and its docs).
const HOOK_KEYS: &[&str] = &[
    "id",
    "execute-command",
    "command-working-directory",
    "response-message",
    "response-headers",
    "success-http-response-code",
    "incoming-payload-content-type",
    "http-methods",
    "include-command-output-in-response",
    "include-command-output-in-response-on-error",
    "parse-parameters-as-json",
    "pass-arguments-to-command",
    "pass-environment-to-command",
    "pass-file-to-command",
    "keep-file-environment",
    "pre-hook-command",
    "trigger-rule",
    "trigger-rule-mismatch-http-response-code",
    "trigger-signature-soft-failures",
];

/// Keys that change what adnanh does and that hookrunner cannot express, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[(
    "pre-hook-command",
    "hookrunner runs no command before a hook's rules",
)];

/// One converted hook: its label for messages (the id, or `hooks[N]` without one), the hookrunner
/// hook when there were no errors, and what was found.
pub struct Converted {
    pub label: String,
    pub id: Option<String>,
    pub hook: Option<Yaml>,
    pub report: Report,
}

pub fn convert(value: &Value, index: usize, secrets: &mut Secrets) -> Converted {
    let mut report = Report::default();
    let root = Located::root(value);
    let fallback_label = format!("hooks[{index}]");
    let Some(map) = root.object(&mut report, "the hook", HOOK_KEYS) else {
        return Converted {
            label: fallback_label,
            id: None,
            hook: None,
            report,
        };
    };
    let id = hook_id(&root, &mut report);
    let label = id.clone().unwrap_or(fallback_label);

    for (key, why) in UNSUPPORTED {
        if map.get(*key).is_some_and(is_set) {
            report.error(format!("`{key}` has no hookrunner equivalent: {why}"));
        }
    }

    let command = run_command(&root, &mut report);
    let env = run_env(&root, &mut report);
    let files = run_files(&root, env.as_deref(), &mut report);
    let response = response(&root, &mut report);
    let methods = methods(&root, &mut report);
    let body_type = body_type(&root, &mut report);
    parse_parameters_as_json(&root, &mut report);
    let trigger = match root.child("trigger-rule") {
        Some(rule) if !rule.value.is_null() => trigger::convert(&rule, &mut report),
        _ => Some(trigger::Trigger {
            signatures: Vec::new(),
            when: None,
        }),
    };
    if let Some(soft) = root.child("trigger-signature-soft-failures") {
        // adnanh then takes a failed signature as a rule that does not hold, so an `or` may still
        // pass on its other rules. hookrunner verifies the signature before any rule, so the key
        // converts to nothing; said aloud when set, since the hook then answers differently.
        if soft.bool(&mut report) == Some(true) {
            report.warn(
                "`trigger-signature-soft-failures` has no effect in hookrunner: a signature that fails is always answered 401 and runs nothing, never taken as a rule that does not match; inside `signature: {any: [...]}` the other signatures are still tried",
            );
        }
    }
    let on_mismatch = root
        .child("trigger-rule-mismatch-http-response-code")
        .and_then(|code| code.status(&mut report))
        .flatten();

    if !report.errors.is_empty() {
        return Converted {
            label,
            id,
            hook: None,
            report,
        };
    }
    let (
        Some(id),
        Some(command),
        Some(env),
        Some(files),
        Some(body_type),
        Some(response),
        Some(methods),
        Some(trigger),
    ) = (
        id, command, env, files, body_type, response, methods, trigger,
    )
    else {
        // Each part reports why it is missing; this keeps a hook from vanishing if one did not.
        report.error("the hook could not be converted");
        return Converted {
            label,
            id: None,
            hook: None,
            report,
        };
    };

    if methods.is_none() && report.reads_query {
        report.warn(
            "adnanh accepted every HTTP method for this hook, hookrunner only POST; it reads the query string, so if its sender uses GET add `methods: [GET, POST]`",
        );
    }
    let signature = match trigger.signatures.as_slice() {
        [signature] => signature_yaml(signature, &id, secrets, &mut report),
        [] => {
            report.warn(
                "it checks no signature, so it is `signature: none`: anyone who can reach it can trigger it (its `when` rules still apply)",
            );
            Yaml::String("none".into())
        }
        several => {
            let entries = several
                .iter()
                .map(|signature| signature_yaml(signature, &id, secrets, &mut report))
                .collect();
            let mut any = Mapping::new();
            insert(&mut any, "any", Yaml::Sequence(entries));
            Yaml::Mapping(any)
        }
    };

    let mut hook = Mapping::new();
    insert(&mut hook, "id", Yaml::String(id.clone()));
    if let Some(methods) = methods {
        insert(
            &mut hook,
            "methods",
            Yaml::Sequence(methods.into_iter().map(Yaml::String).collect()),
        );
    }
    insert(&mut hook, "signature", signature);
    if let Some(when) = trigger.when {
        insert(&mut hook, "when", when);
    }
    let mut run = Mapping::new();
    insert(
        &mut run,
        "command",
        Yaml::Sequence(command.argv.into_iter().map(Yaml::String).collect()),
    );
    if let Some(workdir) = command.workdir {
        insert(&mut run, "workdir", Yaml::String(workdir));
    }
    if !env.is_empty() {
        let env = env
            .into_iter()
            .map(|(name, value)| (Yaml::String(name), Yaml::String(value)))
            .collect();
        insert(&mut run, "env", Yaml::Mapping(env));
    }
    if !files.is_empty() {
        insert(&mut run, "files", Yaml::Mapping(files));
    }
    insert(&mut hook, "run", Yaml::Mapping(run));
    insert(&mut hook, "response", response);
    if let Some(body_type) = body_type {
        insert(&mut hook, "body_type", Yaml::String(body_type.into()));
    }
    if let Some(status) = on_mismatch {
        insert(&mut hook, "on_mismatch", Yaml::Number(status.into()));
    }
    Converted {
        label,
        id: Some(id),
        hook: Some(Yaml::Mapping(hook)),
        report,
    }
}

/// Whether a key is given a value that does something; adnanh treats `""`, `[]`, `false` and `0`
/// as unset.
fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        Value::Number(number) => number.as_f64() != Some(0.0),
    }
}

fn hook_id(root: &Located<'_>, report: &mut Report) -> Option<String> {
    let Some(id) = root.child("id") else {
        report.error("the hook has no `id`; adnanh needs one too");
        return None;
    };
    let id = id.text(report)?;
    if !hook_id_valid(&id) {
        report.error(format!(
            "hook id `{id}` may only use letters, digits, `.`, `_` and `-`, with `/` between parts, in hookrunner; rename it (its URL changes with it)"
        ));
        return None;
    }
    Some(id)
}

struct Command {
    argv: Vec<String>,
    workdir: Option<String>,
}

/// `execute-command` and `pass-arguments-to-command` as `run.command`, run without a shell as
/// adnanh does.
fn run_command(root: &Located<'_>, report: &mut Report) -> Option<Command> {
    let workdir = match root.child("command-working-directory") {
        None => None,
        Some(dir) => dir.text(report).filter(|dir| !dir.is_empty()),
    };
    let program = match root.child("execute-command") {
        None => {
            report.error("the hook has no `execute-command`; adnanh needs one too");
            None
        }
        Some(command) => {
            let at = command.path().to_string();
            command
                .text(report)
                .filter(|text| {
                    if text.is_empty() {
                        report.error("`execute-command` is empty");
                    } else if text.contains(char::is_whitespace) {
                        report.warn(format!(
                            "`execute-command` `{text}` contains a space; like adnanh, hookrunner takes it as one program name, so pass arguments in `pass-arguments-to-command`"
                        ));
                    }
                    !text.is_empty()
                })
                .and_then(|text| {
                    literal_template(&program_path(&text, workdir.as_deref()), &at, report)
                })
        }
    };
    let mut arguments = Vec::new();
    let mut valid = true;
    if let Some(list) = root.child("pass-arguments-to-command") {
        if !list.value.is_null() {
            for item in list.items(report, "request values")? {
                let argument = source::source(&item, report)
                    .and_then(|value| value.template(&format!("{}.name", item.path()), report));
                match argument {
                    Some(argument) => arguments.push(argument),
                    None => valid = false,
                }
            }
        }
    }
    let program = program?;
    valid.then(|| Command {
        argv: std::iter::once(program).chain(arguments).collect(),
        workdir,
    })
}

/// The program as hookrunner must name it. adnanh looks a relative `execute-command` up inside
/// `command-working-directory` when one is set; hookrunner resolves a bare name through `PATH`, and
/// a path with a `/` from the command's working directory, so the directory is made explicit.
fn program_path(command: &str, workdir: Option<&str>) -> String {
    let Some(workdir) = workdir else {
        return command.to_string();
    };
    if Path::new(command).is_absolute() {
        return command.to_string();
    }
    let relative = command.strip_prefix("./").unwrap_or(command);
    if Path::new(workdir).is_absolute() {
        Path::new(workdir).join(relative).display().to_string()
    } else {
        format!("./{relative}")
    }
}

/// `pass-environment-to-command` as `run.env`: `envname`, or adnanh's default `HOOK_<name>`.
fn run_env(root: &Located<'_>, report: &mut Report) -> Option<Vec<(String, String)>> {
    let Some(list) = root.child("pass-environment-to-command") else {
        return Some(Vec::new());
    };
    if list.value.is_null() {
        return Some(Vec::new());
    }
    let mut env: Vec<(String, String)> = Vec::new();
    let mut valid = true;
    for item in list.items(report, "request values")? {
        let value = source::source(&item, report)
            .and_then(|value| value.template(&format!("{}.name", item.path()), report));
        let envname = item
            .child("envname")
            .and_then(|name| name.text(report))
            .filter(|name| !name.is_empty());
        let (name, explicit) = match envname {
            Some(name) => (name, true),
            None => {
                let name = item
                    .value
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                (format!("HOOK_{name}"), false)
            }
        };
        let name_ok = env_name_valid(&name);
        if !name_ok {
            valid = false;
            report.error(if explicit {
                format!(
                    "`{}.envname`: `{name}` cannot be an environment variable name (empty, or holds `=`)",
                    item.path()
                )
            } else {
                format!(
                    "`{}`: adnanh names this variable `{name}`, which cannot be an environment variable name (it holds `=`); add an `envname` and use that name in the command",
                    item.path()
                )
            });
        } else if RESERVED_ENV.contains(&name.as_str()) {
            valid = false;
            report.error(format!(
                "`{}`: `{name}` is set by hookrunner itself; add an `envname` with another name and use that in the command",
                item.path()
            ));
        } else if env.iter().any(|(existing, _)| *existing == name) {
            valid = false;
            report.error(format!(
                "`{}`: `{name}` is passed twice; keep one",
                item.path()
            ));
        }
        match value {
            Some(value) if name_ok => env.push((name, value)),
            _ => valid = false,
        }
    }
    valid.then_some(env)
}

/// `pass-file-to-command` as `run.files`: `envname`, or adnanh's `HOOK_<NAME>` (upper-cased), each value
/// written to a file whose path the command gets. adnanh removed the files after the command
/// unless `keep-file-environment`; hookrunner always does.
fn run_files(
    root: &Located<'_>,
    env: Option<&[(String, String)]>,
    report: &mut Report,
) -> Option<Mapping> {
    let mut files = Mapping::new();
    let Some(list) = root.child("pass-file-to-command") else {
        return Some(files);
    };
    if list.value.is_null() {
        return Some(files);
    }
    if root
        .child("keep-file-environment")
        .is_some_and(|keep| is_set(keep.value))
    {
        report.warn(
            "`keep-file-environment`: hookrunner removes a job's files when the job ends, always; a command that leaves something running which reads them must copy them first",
        );
    }
    let mut valid = true;
    for item in list.items(report, "request values")? {
        let value = source::source(&item, report)
            .and_then(|value| value.template(&format!("{}.name", item.path()), report));
        let name = match item.child("envname").and_then(|name| name.text(report)) {
            Some(name) if !name.is_empty() => name,
            // adnanh upper-cases the name for a file (`HOOK_BINARY`), unlike for a variable.
            _ => format!(
                "HOOK_{}",
                item.value
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_uppercase()
            ),
        };
        let base64_decode = match item.child("base64decode") {
            None => Some(false),
            Some(flag) => flag.bool(report),
        };
        let problem = if !env_name_valid(&name) {
            Some(format!("`{name}` cannot be an environment variable name (it is empty or holds `=`); add an `envname` and use that name in the command"))
        } else if RESERVED_ENV.contains(&name.as_str()) {
            Some(format!(
                "`{name}` is set by hookrunner itself; add an `envname` with another name"
            ))
        } else if files.contains_key(name.as_str())
            || env.is_some_and(|env| env.iter().any(|(set, _)| *set == name))
        {
            Some(format!("`{name}` is passed twice; keep one"))
        } else {
            None
        };
        if let Some(problem) = problem {
            report.error(format!("`{}`: {problem}", item.path()));
            valid = false;
            continue;
        }
        let (Some(value), Some(base64_decode)) = (value, base64_decode) else {
            valid = false;
            continue;
        };
        let entry = if base64_decode {
            let mut entry = Mapping::new();
            insert(&mut entry, "value", Yaml::String(value));
            insert(&mut entry, "base64_decode", Yaml::Bool(true));
            Yaml::Mapping(entry)
        } else {
            Yaml::String(value)
        };
        files.insert(Yaml::String(name), entry);
    }
    valid.then_some(files)
}

/// adnanh answers at once and runs the command in the background, unless it is told to include
/// the command's output, when it waits; hookrunner's `async` and `wait` modes. The message,
/// headers and success code carry over as they are.
fn response(root: &Located<'_>, report: &mut Report) -> Option<Yaml> {
    let flag = |key: &str, report: &mut Report| match root.child(key) {
        None => Some(false),
        Some(node) if node.value.is_null() => Some(false),
        Some(node) => node.bool(report),
    };
    let include_output = flag("include-command-output-in-response", report)?;
    let output_on_error = flag("include-command-output-in-response-on-error", report)?;
    let message = match root.child("response-message") {
        None => None,
        Some(node) if node.value.is_null() => None,
        Some(node) => Some(node.text(report)?).filter(|text| !text.is_empty()),
    };
    let mut response = Mapping::new();
    let default_status = if include_output {
        insert(&mut response, "mode", Yaml::String("wait".into()));
        insert(&mut response, "include_output", Yaml::Bool(true));
        if !output_on_error {
            report.warn(
                "hookrunner includes the command's output in a failed answer too, where adnanh sent a fixed message (`include-command-output-in-response-on-error` was not set)",
            );
        }
        200
    } else {
        insert(&mut response, "mode", Yaml::String("async".into()));
        202
    };
    if let Some(code) = root.child("success-http-response-code") {
        let at = code.path().to_string();
        match code.status(report)? {
            Some(code) if !(200..=299).contains(&code) => report.error(format!(
                "`{at}`: hookrunner's `response.success_status` is a 2xx status, not {code}"
            )),
            Some(code) if code != default_status => {
                insert(&mut response, "success_status", Yaml::Number(code.into()));
            }
            _ => {}
        }
    }
    if let Some(message) = &message {
        insert(&mut response, "message", Yaml::String(message.clone()));
    }
    let headers = response_headers(root, message.is_some(), report)?;
    if !headers.is_empty() {
        insert(&mut response, "headers", Yaml::Mapping(headers));
    }
    Some(Yaml::Mapping(response))
}

/// `response-headers: [{name, value}]` as `response.headers`. A `Content-Type` is the message's
/// type in hookrunner, so without a message it is left out (the answers are JSON then).
fn response_headers(root: &Located<'_>, has_message: bool, report: &mut Report) -> Option<Mapping> {
    let mut headers = Mapping::new();
    let Some(list) = root.child("response-headers") else {
        return Some(headers);
    };
    if list.value.is_null() {
        return Some(headers);
    }
    let mut valid = true;
    for item in list.items(report, "headers")? {
        if item
            .object(report, "a header", &["name", "value"])
            .is_none()
        {
            valid = false;
            continue;
        }
        let name = item.child("name").and_then(|name| name.text(report));
        let value = match item.child("value") {
            None => Some(String::new()),
            Some(value) => value.text(report),
        };
        let (Some(name), Some(value)) = (name, value) else {
            if item.child("name").is_none() {
                report.error(format!("`{}` has no `name`", item.path()));
            }
            valid = false;
            continue;
        };
        let problem = crate::config::header_name_problem(&name)
            .or_else(|| crate::config::header_value_problem(&value).map(str::to_string));
        if let Some(problem) = problem {
            report.error(format!("`{}`: {problem}", item.path()));
            valid = false;
        } else if name.eq_ignore_ascii_case("content-type") && !has_message {
            report.warn(format!(
                "`{}`: the `Content-Type` is left out: hookrunner's answers without a `response-message` are its job as JSON",
                item.path()
            ));
        } else {
            insert(&mut headers, &name, Yaml::String(value));
        }
    }
    valid.then_some(headers)
}

/// `incoming-payload-content-type` as `body_type`: the content type adnanh parsed every body
/// as, whatever the request said.
fn body_type(root: &Located<'_>, report: &mut Report) -> Option<Option<&'static str>> {
    let Some(node) = root.child("incoming-payload-content-type") else {
        return Some(None);
    };
    if node.value.is_null() {
        return Some(None);
    }
    let at = node.path().to_string();
    let content_type = node.text(report)?;
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "" => Some(None),
        "application/x-www-form-urlencoded" => Some(Some("form")),
        json if json == "application/json" || json.ends_with("+json") => Some(Some("json")),
        other => {
            report.error(format!(
                "`{at}`: hookrunner's `body_type` is `json` or `form`, so it cannot force `{other}`"
            ));
            None
        }
    }
}

fn methods(root: &Located<'_>, report: &mut Report) -> Option<Option<Vec<String>>> {
    let Some(list) = root.child("http-methods") else {
        return Some(None);
    };
    if list.value.is_null() {
        return Some(None);
    }
    let mut methods = Vec::new();
    for item in list.items(report, "HTTP methods")? {
        let at = item.path().to_string();
        let method = item.text(report)?.trim().to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            report.error(format!("`{at}`: `{method}` is not an HTTP method"));
            return None;
        }
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    Some((!methods.is_empty()).then_some(methods))
}

/// hookrunner parses a string that holds JSON by itself when a reference reaches into it, in a
/// payload value, a header or a query parameter alike, so `parse-parameters-as-json` on those
/// needs nothing; on other sources there is nothing to reach into.
fn parse_parameters_as_json(root: &Located<'_>, report: &mut Report) {
    let Some(list) = root.child("parse-parameters-as-json") else {
        return;
    };
    if list.value.is_null() {
        return;
    }
    let Some(items) = list.items(report, "request values") else {
        return;
    };
    let mut payload = false;
    let mut header_or_query = false;
    for item in items {
        if item
            .object(report, "a request value", ARGUMENT_KEYS)
            .is_none()
        {
            continue;
        }
        match item.value.get("source").and_then(Value::as_str) {
            Some("payload") => payload = true,
            Some("header" | "url" | "query") => header_or_query = true,
            other => report.error(format!(
                "`{}`: parsing {} as JSON has no hookrunner equivalent: hookrunner reaches into JSON held in payload, header and query values only",
                item.path(),
                other.map_or("this value".to_string(), |source| format!("`source: {source}`"))
            )),
        }
    }
    if payload {
        report.warn(
            "`parse-parameters-as-json` needs nothing in hookrunner, which parses JSON held in a payload value when a reference reaches into it",
        );
    }
    if header_or_query {
        report.warn(
            "`parse-parameters-as-json` needs nothing in hookrunner: hookrunner parses JSON held in a header or query value when a reference reaches into it (`header.X-Data.key`), after looking for a header or parameter named with the dots first, as adnanh does",
        );
    }
}

/// The `signature:` block, its secret written as `--secrets` asks ([`Secrets`]).
///
/// By default the secret is not copied into the converted file: that file is usually committed or
/// shared, and `hookrunner check` warns about literal secrets anyway. The note says which variable
/// to set to which value of the original file, without printing the secret itself. A
/// `{{ getenv "NAME" }}` secret of a `-template` file stays `env:NAME` whatever the mode.
fn signature_yaml(
    signature: &Signature,
    hook_id: &str,
    secrets: &mut Secrets,
    report: &mut Report,
) -> Yaml {
    let secret = match super::template::getenv_secret(signature.secret.trim()) {
        Some(name) => format!("env:{name}"),
        None => secrets.reference(
            &SourceSecret {
                hook_id,
                secret: &signature.secret,
                at: &signature.secret_at,
                kind: signature.secret_kind,
            },
            report,
        ),
    };
    let mut settings = Mapping::new();
    insert(&mut settings, "secret", Yaml::String(secret));
    for (key, value) in &signature.settings {
        insert(&mut settings, key, value.clone());
    }
    let mut block = Mapping::new();
    insert(&mut block, signature.provider, Yaml::Mapping(settings));
    Yaml::Mapping(block)
}

fn insert(map: &mut Mapping, key: &str, value: Yaml) {
    map.insert(Yaml::String(key.to_string()), value);
}
