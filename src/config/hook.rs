//! One entry of `hooks:`: its id, methods, signature, rules, command, concurrency and response.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml::Value;

use super::decode::{scalar_text, Decoder, Fields};
use super::server::fixed_route_of;
use super::source_map::{Part, YamlPath};
use super::yaml;
use super::{
    approval, files, host, notify, rate_limit, response, retry, signature, when, Concurrency, Hook,
    Notifications, ProgramTemplate, ResponseMode, ResponseSettings, Run, RunOn, ServerSettings,
    StdinMode,
};
use crate::template::Template;

const HOOK_KEYS: &[&str] = &[
    "id",
    "description",
    "methods",
    "max_body",
    "signature",
    "when",
    "run",
    "concurrency",
    "response",
    "body_type",
    "on_mismatch",
    "dedupe",
    "dedupe_key",
    "run_on",
    "retry",
    "approval",
    "notify",
    "rate_limit",
];
const RUN_KEYS: &[&str] = &[
    "shell",
    "command",
    "workdir",
    "env",
    "env_passthrough",
    "stdin",
    "timeout",
    "kill_after",
    "max_output",
    "keep_background",
    "files",
];
/// Variables hookrunner sets itself; `run.env` may not override them.
pub const RESERVED_ENV: &[&str] = &[
    "HOOK_ID",
    "HOOK_JOB_ID",
    "HOOK_REQUEST_ID",
    "HOOK_EVENT",
    "HOOK_DELIVERY_ID",
    "HOOK_ATTEMPT",
];

pub fn decode_all(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
    server: Option<&ServerSettings>,
) -> Option<Vec<Arc<Hook>>> {
    let Value::Sequence(items) = value else {
        decoder.error(
            path,
            Part::Value,
            "`hooks` must be a list, each entry starting with `- id: ...`",
        );
        return None;
    };
    let mut list = HookList::new(server);
    for (index, item) in items.iter().enumerate() {
        list.add(decoder, item, index, &path.index(index));
    }
    list.finish()
}

/// Decodes the items of a `hooks` list read one at a time from the text (see
/// [`yaml::Split`]): each item's tree is merged (`<<`), shown to `check` (with its path), decoded
/// and dropped before the next is read.
pub fn decode_stream(
    decoder: &mut Decoder<'_>,
    items: &mut yaml::Split<'_>,
    path: &YamlPath,
    server: Option<&ServerSettings>,
    mut check: impl FnMut(&mut Decoder<'_>, &Value, &YamlPath),
) -> Option<Vec<Arc<Hook>>> {
    let mut list = HookList::new(server);
    let read = items.for_each_hook(|index, mut item| {
        let item_path = path.index(index);
        if let Err(error) = item.apply_merge() {
            decoder.error(&item_path, Part::Value, super::merge_error(&error));
        }
        check(decoder, &item, &item_path);
        list.add(decoder, &item, index, &item_path);
    });
    // The whole text was read once already: a second reading does not fail. Its words are not
    // repeated, as they may quote a value.
    if let Err(error) = read {
        let at = error.position.map_or(String::new(), |p| {
            format!(" at line {} column {}", p.line, p.column)
        });
        decoder.error(
            path,
            Part::Value,
            format!("the hooks list did not read the same the second time{at}; this is a bug in hookrunner: please report it"),
        );
        return None;
    }
    list.finish()
}

/// The hooks of a list decoded so far, and what is checked across them: ids used twice, ids
/// that a fixed route would shadow, and `approval` without an admin token.
struct HookList<'s> {
    server: Option<&'s ServerSettings>,
    default_max_body: u64,
    default_notify: Notifications,
    first_seen: HashMap<String, usize>,
    hooks: Vec<Arc<Hook>>,
    complete: bool,
}

impl<'s> HookList<'s> {
    fn new(server: Option<&'s ServerSettings>) -> HookList<'s> {
        HookList {
            server,
            default_max_body: server.map_or(10 << 20, |server| server.max_body),
            default_notify: server
                .map_or_else(|| Arc::from([]), |server| Arc::clone(&server.notify)),
            first_seen: HashMap::new(),
            hooks: Vec::new(),
            complete: true,
        }
    }

    /// Decodes item `index`, at `hook_path` (`hooks[index]`).
    fn add(&mut self, decoder: &mut Decoder<'_>, item: &Value, index: usize, hook_path: &YamlPath) {
        let server = self.server;
        // Read from the raw entry, so a duplicate is reported even when either hook has other
        // problems: one pass shows them all.
        let written_id = item
            .as_mapping()
            .and_then(|fields| fields.get("id"))
            .and_then(scalar_text);
        if let Some(id) = written_id {
            // With `base_path: /` the hook is served at `/{id}`, where a fixed route may answer first.
            let at_root = server.is_some_and(|server| server.base_path.is_empty());
            if let Some(route) = fixed_route_of(&id).filter(|_| at_root) {
                decoder.error(
                    &hook_path.key("id"),
                    Part::Value,
                    format!("hook id `{id}` would be served at `/{id}`, but `/{route}` is hookrunner's own route, which answers first; rename the hook, or keep a `base_path` such as `/hooks`"),
                );
            }
            if let Some(first) = self.first_seen.get(&id) {
                decoder.error(
                    &hook_path.key("id"),
                    Part::Value,
                    format!("duplicate hook id `{id}`: hooks[{first}] has it too; ids must be unique, so rename one"),
                );
            } else {
                self.first_seen.insert(id, index);
            }
        }
        let hook = decode_one(
            decoder,
            item,
            hook_path,
            self.default_max_body,
            &self.default_notify,
        );
        if let Some(hook) = &hook {
            if hook.approval.is_some() && server.is_some_and(|server| server.admin_token.is_none())
            {
                decoder.error(
                    &hook_path.key("approval"),
                    Part::Key,
                    "`approval` needs `server.admin_token`: approving a job takes the admin token (the API or the web page); set one, or remove `approval`",
                );
            }
        }
        match hook {
            Some(hook) => self.hooks.push(Arc::new(hook)),
            None => self.complete = false,
        }
    }

    /// The hooks, when every item decoded.
    fn finish(self) -> Option<Vec<Arc<Hook>>> {
        self.complete.then_some(self.hooks)
    }
}

fn decode_one(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
    default_max_body: u64,
    default_notify: &Notifications,
) -> Option<Hook> {
    let fields = decoder.mapping(value, path, "a hook", HOOK_KEYS)?;
    let id = match fields.get("id") {
        None => {
            decoder.error(
                path,
                Part::Value,
                "the hook has no `id`; add `id: my-hook` (letters, digits, `.`, `_`, `-`)",
            );
            None
        }
        Some((value, path)) => decoder.string(value, &path).filter(|id| {
            let valid = hook_id_valid(id);
            if !valid {
                decoder.error(
                    &path,
                    Part::Value,
                    format!("hook id `{id}` may only use letters, digits, `.`, `_` and `-`, with `/` between parts (no `/` at either end, no `//`, no `.` or `..` part)"),
                );
            }
            valid
        }),
    };
    let description = fields
        .get("description")
        .and_then(|(value, path)| decoder.string(value, &path));
    let methods = match fields.get("methods") {
        None => Some(vec!["POST".to_string()]),
        Some((value, path)) => decode_methods(decoder, value, &path),
    };
    let max_body = match fields.get("max_body") {
        None => Some(default_max_body),
        Some((value, path)) => decoder.size(value, &path),
    };
    let signature = match fields.get("signature") {
        None => {
            decoder.error(
                path,
                Part::Value,
                "the hook has no `signature`; add one (e.g. `signature: {github: {secret: env:GITHUB_WEBHOOK_SECRET}}`) or write `signature: none` to leave it open on purpose",
            );
            None
        }
        Some((value, path)) => signature::decode(decoder, value, &path),
    };
    let when = match fields.get("when") {
        None => Some(None),
        Some((value, path)) => when::decode(decoder, value, &path).map(Some),
    };
    let run = match fields.get("run") {
        None => {
            decoder.error(
                path,
                Part::Value,
                "the hook has no `run`; add `run: {command: [...]}` or `run: {shell: ...}`",
            );
            None
        }
        Some((value, path)) => decode_run(decoder, value, &path),
    };
    let concurrency = match fields.get("concurrency") {
        None => Some(Concurrency::Queue { queue: 100 }),
        Some((value, path)) => decode_concurrency(decoder, value, &path),
    };
    let response = match fields.get("response") {
        None => Some(response::default()),
        Some((value, path)) => response::decode(decoder, value, &path),
    };
    // Each name maps to the content type the request parser knows it by.
    let body_type = match fields.get("body_type") {
        None => Some(None),
        Some((value, path)) => decoder
            .choice(
                value,
                &path,
                &[
                    ("json", "application/json"),
                    ("form", "application/x-www-form-urlencoded"),
                ],
            )
            .map(Some),
    };
    let on_mismatch = match fields.get("on_mismatch") {
        None => Some(200),
        Some((value, path)) => decoder.status(value, &path),
    };
    let dedupe = match fields.get("dedupe") {
        None => Some(true),
        Some((value, path)) => decoder.bool(value, &path),
    };
    let dedupe_key = match fields.get("dedupe_key") {
        None => Some(None),
        Some((value, path)) => template(decoder, value, &path).map(Some),
    };
    let run_on = decode_run_on(decoder, &fields, response.as_ref());
    let retry = retry::decode(decoder, &fields, response.as_ref());
    let approval = approval::decode(decoder, &fields, response.as_ref(), run_on);
    let notify = notify::decode_for_hook(decoder, &fields, default_notify);
    let rate_limit = rate_limit::decode(decoder, &fields, rate_limit::Scope::Hook);
    Some(Hook {
        id: id?,
        description,
        methods: methods?,
        max_body: max_body?,
        signature: signature?,
        when: when?,
        run: run?,
        concurrency: concurrency?,
        response: response?,
        body_type: body_type?,
        on_mismatch: on_mismatch?,
        dedupe: dedupe?,
        dedupe_key: dedupe_key?,
        run_on: run_on?,
        retry: retry?,
        approval: approval?,
        notify: notify?,
        rate_limit: rate_limit?,
    })
}

/// `run_on`; `all` (one job per live instance) only for `async` answers, since a `wait` or
/// `stream` job runs on the instance that holds the client's connection.
fn decode_run_on(
    decoder: &mut Decoder<'_>,
    fields: &Fields<'_>,
    response: Option<&ResponseSettings>,
) -> Option<RunOn> {
    let Some((value, path)) = fields.get("run_on") else {
        return Some(RunOn::Any);
    };
    let run_on = decoder.choice(value, &path, &[("any", RunOn::Any), ("all", RunOn::All)])?;
    let mode = response.map(|response| response.mode);
    if run_on == RunOn::All && mode.is_some_and(|mode| mode != ResponseMode::Async) {
        decoder.error(
            &path,
            Part::Value,
            "`run_on: all` needs `response: {mode: async}`: a `wait` or `stream` job runs on the instance that holds the client's connection; make the hook `async` or remove `run_on`",
        );
        return None;
    }
    Some(run_on)
}

fn decode_methods(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
) -> Option<Vec<String>> {
    let methods = decoder.string_list(value, path)?;
    if methods.is_empty() {
        decoder.error(
            path,
            Part::Value,
            "`methods` needs at least one method, such as `[POST]`",
        );
        return None;
    }
    let mut valid = true;
    for (index, method) in methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            decoder.error(
                &path.index(index),
                Part::Value,
                format!("`{method}` is not an HTTP method"),
            );
            valid = false;
        }
    }
    valid.then(|| methods.iter().map(|m| m.to_ascii_uppercase()).collect())
}

fn template(decoder: &mut Decoder<'_>, value: &Value, path: &YamlPath) -> Option<Template> {
    let text = decoder.string(value, path)?;
    decoder
        .templates
        .get(&text)
        .map_err(|message| decoder.error(path, Part::Value, message))
        .ok()
}

fn decode_run(decoder: &mut Decoder<'_>, value: &Value, path: &YamlPath) -> Option<Run> {
    let fields = decoder.mapping(value, path, "`run`", RUN_KEYS)?;
    let program = match (fields.get("shell"), fields.get("command")) {
        (Some(_), Some((_, command_path))) => {
            decoder.error(
                &command_path,
                Part::Key,
                "`run` has both `shell` and `command`; keep one",
            );
            None
        }
        (None, None) => {
            // Pointed at the `run:` key: a block mapping's own position is where its first key ends.
            decoder.error(
                path,
                Part::Key,
                "`run` needs `command: [program, args...]` or `shell: \"...\"`",
            );
            None
        }
        (Some((value, path)), None) => decode_shell(decoder, value, &path),
        (None, Some((value, path))) => decode_command(decoder, value, &path),
    };
    let workdir = match fields.get("workdir") {
        None => Some(decoder.base_dir().to_path_buf()),
        Some((value, path)) => decoder.file_path(value, &path),
    };
    let env = match fields.get("env") {
        None => Some(Vec::new()),
        Some((value, path)) => decode_env(decoder, value, &path),
    };
    let env_passthrough = match fields.get("env_passthrough") {
        None => Some(Vec::new()),
        Some((value, path)) => decoder.string_list(value, &path).filter(|names| {
            names
                .iter()
                .enumerate()
                .all(|(index, name)| env_name_ok(decoder, name, &path.index(index)))
        }),
    };
    let stdin = match fields.get("stdin") {
        None => Some(StdinMode::None),
        Some((value, path)) => decoder.choice(
            value,
            &path,
            &[("none", StdinMode::None), ("payload", StdinMode::Payload)],
        ),
    };
    let duration = |decoder: &mut Decoder<'_>, key: &str, default: Duration| match fields.get(key) {
        None => Some(default),
        Some((value, path)) => decoder.duration(value, &path),
    };
    let timeout = duration(decoder, "timeout", Duration::from_secs(600));
    let kill_after = duration(decoder, "kill_after", Duration::from_secs(10));
    let max_output = match fields.get("max_output") {
        None => Some(1 << 20),
        Some((value, path)) => decoder.size(value, &path),
    };
    let keep_background = match fields.get("keep_background") {
        None => Some(false),
        Some((value, path)) => decoder.bool(value, &path),
    };
    let files = match fields.get("files") {
        None => Some(Vec::new()),
        Some((value, path)) => files::decode(decoder, value, &path, env.as_deref()),
    };
    if let (Some(_), Some(workdir)) = (&program, &workdir) {
        host::warn_about_run(decoder, &fields, workdir);
    }
    Some(Run {
        program: program?,
        workdir: workdir?,
        env: env?,
        env_passthrough: env_passthrough?,
        stdin: stdin?,
        timeout: timeout?,
        kill_after: kill_after?,
        max_output: max_output?,
        keep_background: keep_background?,
        files: files?,
    })
}

fn decode_shell(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
) -> Option<ProgramTemplate> {
    let text = decoder.string(value, path)?;
    if text.contains("{{") {
        decoder.error(
            path,
            Part::Value,
            "`{{ }}` is not allowed in `shell`: the shell would parse payload text; put the value in `env` (e.g. `COMMIT: \"{{ payload.after }}\"`) and use \"$COMMIT\", or use `command`",
        );
        return None;
    }
    if text.trim().is_empty() {
        decoder.error(path, Part::Value, "`shell` is empty");
        return None;
    }
    Some(ProgramTemplate::Shell(text))
}

fn decode_command(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
) -> Option<ProgramTemplate> {
    let items = command_items(
        decoder,
        value,
        path,
        "`command` must be a list, such as `[\"./deploy.sh\", \"{{ payload.after }}\"]`; for a shell line use `shell`",
    )?;
    decoder
        .each(items, path, template)
        .map(ProgramTemplate::Command)
}

/// The items of a `command` (a hook's or a notification's): a list of at least one item;
/// `not_a_list` says what to write instead.
pub(super) fn command_items<'v>(
    decoder: &mut Decoder<'_>,
    value: &'v Value,
    path: &YamlPath,
    not_a_list: &str,
) -> Option<&'v [Value]> {
    let Value::Sequence(items) = value else {
        decoder.error(path, Part::Value, not_a_list);
        return None;
    };
    if items.is_empty() {
        decoder.error(
            path,
            Part::Value,
            "`command` is empty; name the program to run",
        );
        return None;
    }
    Some(items)
}

fn decode_env(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
) -> Option<Vec<(String, Template)>> {
    let Value::Mapping(map) = value else {
        decoder.error(
            path,
            Part::Value,
            "`env` must be a mapping of variable names to values",
        );
        return None;
    };
    let mut env = Vec::with_capacity(map.len());
    let mut valid = true;
    for (key, value) in map {
        let name = super::decode::key_text(key);
        let value_path = path.key(&name);
        if !env_name_ok(decoder, &name, &value_path) {
            valid = false;
            continue;
        }
        if RESERVED_ENV.contains(&name.as_str()) {
            decoder.error(
                &value_path,
                Part::Key,
                format!("`{name}` is set by hookrunner itself; choose another name"),
            );
            valid = false;
            continue;
        }
        let text = match value {
            Value::Null => Some(String::new()),
            other => scalar_text(other),
        };
        let Some(text) = text else {
            decoder.error(
                &value_path,
                Part::Value,
                "an `env` value must be text, a number or a boolean",
            );
            valid = false;
            continue;
        };
        match decoder.templates.get(&text) {
            Ok(template) => env.push((name, template)),
            Err(message) => {
                decoder.error(&value_path, Part::Value, message);
                valid = false;
            }
        }
    }
    valid.then_some(env)
}

pub(super) fn env_name_ok(decoder: &mut Decoder<'_>, name: &str, path: &YamlPath) -> bool {
    if !env_name_valid(name) {
        decoder.error(
            path,
            Part::Key,
            format!("`{name}` cannot be an environment variable name: it is empty or holds `=` or a NUL byte"),
        );
        return false;
    }
    if name.starts_with("BASH_FUNC_") {
        decoder.error(
            path,
            Part::Key,
            format!("`{name}` would define a bash function in every bash the command starts, with request text as its code; choose another name"),
        );
        return false;
    }
    if let Some(suggestion) = shell_env_name(name) {
        decoder.warning(
            path,
            Part::Key,
            format!("a shell cannot read `{name}` as `${name}` (only letters, digits and `_`, not starting with a digit); a program can, or name it `{suggestion}`"),
        );
    }
    true
}

/// Whether `id` can name a hook: parts of letters, digits, `.`, `_` and `-` joined by `/`, none
/// empty, `.` or `..`. The hook is served at `{base_path}/{id}`, so `sendgrid/dir` (an
/// adnanh/webhook id) is at `/hooks/sendgrid/dir`, and no id can climb out of the base path.
pub fn hook_id_valid(id: &str) -> bool {
    id.split('/').all(|part| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    })
}

/// Whether `name` can name an environment variable at all: not empty, no `=` and no NUL byte, the
/// only limits `execve` and `getenv` have. adnanh/webhook's `HOOK_head_commit.id` is one.
pub fn env_name_valid(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

/// For a name a shell cannot read (`$NAME` needs letters, digits and `_`, not starting with a
/// digit): the nearest name it can, with every other character turned into `_`. `None` when
/// the shell can read `name` already.
pub fn shell_env_name(name: &str) -> Option<String> {
    let readable = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if readable {
        return None;
    }
    let mut suggestion: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if suggestion.starts_with(|c: char| c.is_ascii_digit()) {
        suggestion.insert(0, '_');
    }
    Some(suggestion)
}

const MODES: &[(&str, &str)] = &[
    ("parallel", "parallel"),
    ("queue", "queue"),
    ("latest", "latest"),
    ("replace", "replace"),
];

fn decode_concurrency(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
) -> Option<Concurrency> {
    let (mode, fields) = match value {
        Value::Mapping(_) => {
            let fields =
                decoder.mapping(value, path, "`concurrency`", &["mode", "limit", "queue"])?;
            let Some((mode_value, mode_path)) = fields.get("mode") else {
                decoder.error(
                    path,
                    Part::Value,
                    "`concurrency` needs a `mode`: `parallel`, `queue`, `latest` or `replace`",
                );
                return None;
            };
            (decoder.choice(mode_value, &mode_path, MODES)?, Some(fields))
        }
        other => (decoder.choice(other, path, MODES)?, None),
    };
    let limit = fields.as_ref().and_then(|f| f.get("limit"));
    let queue = fields.as_ref().and_then(|f| f.get("queue"));
    let misplaced =
        |decoder: &mut Decoder<'_>, key: &str, field: &Option<(&Value, YamlPath)>, modes: &str| {
            if let Some((_, path)) = field {
                decoder.error(
                    path,
                    Part::Key,
                    format!("`{key}` applies only to `mode: {modes}`"),
                );
            }
        };
    match mode {
        "parallel" => {
            misplaced(decoder, "queue", &queue, "queue");
            let limit = match limit {
                None => None,
                Some((value, path)) => Some(decoder.number(value, &path, 1, 100_000)? as usize),
            };
            Some(Concurrency::Parallel { limit })
        }
        "queue" => {
            misplaced(decoder, "limit", &limit, "parallel");
            let queue = match queue {
                None => 100,
                Some((value, path)) => decoder.number(value, &path, 0, 10_000_000)? as usize,
            };
            Some(Concurrency::Queue { queue })
        }
        other => {
            misplaced(decoder, "limit", &limit, "parallel");
            misplaced(decoder, "queue", &queue, "queue");
            Some(if other == "latest" {
                Concurrency::Latest
            } else {
                Concurrency::Replace
            })
        }
    }
}
