//! What one `exec` may carry: each argument or environment entry at most 128 KiB (the kernel's
//! `MAX_ARG_STRLEN`), all of them together at most the system's `ARG_MAX`. A request whose rendered
//! command would not fit is refused before anything is recorded, instead of failing at the spawn.
//!
//! Pure: the system's limit is read once at start (`runner::exec_limits`) and passed in.

use crate::command::{JobCommand, BASE_ENV};
use crate::config::{Hook, ProgramTemplate};
use crate::runner::{Program, SHELL};

/// The kernel's limit on one argument or one `NAME=value` environment entry, its NUL included.
pub const MAX_ARG_STRLEN: usize = 128 * 1024;

/// Each argument and environment entry also costs the kernel one pointer.
const POINTER: usize = std::mem::size_of::<usize>();

/// The system's limits on one `exec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecLimits {
    /// `sysconf(ARG_MAX)`: arguments and environment together, strings and pointers.
    pub arg_max: usize,
}

/// Why a rendered command cannot be run.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TooLarge {
    #[error("{what} is {size} bytes, over the {MAX_ARG_STRLEN} bytes the system allows for one argument or environment variable; send a smaller value, or have the hook read the body on stdin (`stdin: payload`)")]
    Value { what: String, size: usize },
    #[error("the command's arguments and environment come to {size} bytes, over the system's limit of {limit} bytes (`ARG_MAX`), the largest being {largest}; send smaller values, or have the hook read the body on stdin (`stdin: payload`)")]
    Command {
        size: usize,
        limit: usize,
        largest: String,
    },
}

/// Where one entry of the command comes from, to name it in a message.
#[derive(Clone, Copy)]
enum Entry<'a> {
    Argument(usize),
    Environment(usize),
    Server(&'a str),
}

/// Checks that `command`, rendered from `hook`, fits one `exec`, counting the variables the
/// runner will add from the server's environment (read through `lookup_env`) too.
pub fn check(
    command: &JobCommand,
    hook: &Hook,
    limits: &ExecLimits,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), TooLarge> {
    let mut tally = Tally {
        // The kernel also copies the program's path, and ends each list with a null pointer.
        total: 2 * POINTER,
        largest: None,
    };
    let mut add = |entry, size: usize| {
        if size > MAX_ARG_STRLEN {
            return Err(TooLarge::Value {
                what: describe(entry, command, hook),
                size,
            });
        }
        tally.add(entry, size);
        Ok(())
    };
    let program_path = match &command.program {
        Program::Shell(text) => {
            add(Entry::Argument(0), SHELL.len() + 1)?;
            add(Entry::Argument(1), "-c".len() + 1)?;
            add(Entry::Argument(2), text.len() + 1)?;
            SHELL.len() + 1
        }
        Program::Argv(argv) => {
            for (index, argument) in argv.iter().enumerate() {
                add(Entry::Argument(index), argument.len() + 1)?;
            }
            argv.first().map_or(0, |program| program.len() + 1)
        }
    };
    for (index, (name, value)) in command.env.iter().enumerate() {
        add(Entry::Environment(index), name.len() + value.len() + 2)?;
    }
    // As `JobCommand::to_spec` builds it: each name once, the job's own variables winning.
    let mut seen: Vec<&str> = command.env.iter().map(|(name, _)| name.as_str()).collect();
    let server_names = BASE_ENV
        .iter()
        .copied()
        .chain(command.passthrough.iter().map(String::as_str));
    for name in server_names {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        if let Some(value) = lookup_env(name) {
            add(Entry::Server(name), name.len() + value.len() + 2)?;
        }
    }
    let size = tally.total + program_path;
    if size > limits.arg_max {
        let largest = tally
            .largest
            .map_or_else(String::new, |(_, entry)| describe(entry, command, hook));
        return Err(TooLarge::Command {
            size,
            limit: limits.arg_max,
            largest,
        });
    }
    Ok(())
}

/// The bytes counted so far, and the largest entry.
struct Tally<'a> {
    total: usize,
    largest: Option<(usize, Entry<'a>)>,
}

impl<'a> Tally<'a> {
    fn add(&mut self, entry: Entry<'a>, size: usize) {
        self.total += size + POINTER;
        match self.largest {
            Some((most, _)) if most >= size => {}
            _ => self.largest = Some((size, entry)),
        }
    }
}

/// Names an entry as the config does, with the request values it was rendered from.
fn describe(entry: Entry, command: &JobCommand, hook: &Hook) -> String {
    let (name, template) = match entry {
        Entry::Argument(index) => match &hook.run.program {
            ProgramTemplate::Shell(_) if index == 2 => ("`run.shell`".to_owned(), None),
            ProgramTemplate::Shell(_) => (format!("the shell's argument {index}"), None),
            ProgramTemplate::Command(parts) => {
                (format!("`run.command[{index}]`"), parts.get(index))
            }
        },
        Entry::Environment(index) => match hook.run.env.get(index) {
            Some((name, template)) => (format!("`run.env.{name}`"), Some(template)),
            None => (format!("`{}`", command.env[index].0), None),
        },
        Entry::Server(name) => (format!("`{name}` from the server's environment"), None),
    };
    let references: Vec<String> = template
        .into_iter()
        .flat_map(|template| template.references())
        .map(|reference| format!("`{reference}`"))
        .collect();
    if references.is_empty() {
        name
    } else {
        format!("{name} (from {})", references.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load_str;
    use crate::request::{Headers, RequestContext};

    const CONFIG: &str = r#"
hooks:
  - id: argv
    signature: none
    run:
      command: ["/usr/bin/deploy", "--ref={{ payload.ref }}", "{{ payload.a }}{{ payload.b }}"]
      env: {NOTE: "{{ payload.note | \"\" }}"}
      env_passthrough: [BIG, PATH]
  - id: shell
    signature: none
    run:
      shell: ./deploy.sh
      env: {NOTE: "{{ payload.note }}"}
"#;

    const KIB: usize = 1024;

    fn server_env(name: &str) -> Option<String> {
        match name {
            "PATH" => Some("/usr/bin".into()),
            "BIG" => Some("b".repeat(100 * KIB)),
            _ => None,
        }
    }

    /// Renders `hook` for a body whose fields are `size` bytes each and checks it against `arg_max`.
    fn check_sizes(hook: &str, fields: &[(&str, usize)], arg_max: usize) -> Result<(), String> {
        let config = load_str(CONFIG, Path::new("/srv/hooks.yaml"), &|_| None).unwrap();
        let hook = config.hook(hook).unwrap();
        let body: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(name, size)| ((*name).to_owned(), "x".repeat(*size).into()))
            .collect();
        let request = RequestContext {
            headers: Headers::new([("content-type".to_owned(), "application/json".to_owned())]),
            body: serde_json::Value::Object(body).to_string().into(),
            ..RequestContext::default()
        };
        let command = crate::command::build(hook, &request).unwrap();
        check(&command, hook, &ExecLimits { arg_max }, &server_env).map_err(|e| e.to_string())
    }

    #[test]
    fn a_value_or_a_command_too_large_for_exec_is_named() {
        const FITS: Result<(), &str> = Ok(());
        let two_mib = 2048 * KIB;
        let cases: &[(&str, &[(&str, usize)], usize, Result<(), &str>)] = &[
            ("argv", &[("ref", 10), ("a", 1), ("b", 1)], two_mib, FITS),
            // An argument of exactly 128 KiB with its NUL fits; one byte more does not.
            ("argv", &[("ref", 128 * KIB - 7), ("a", 1), ("b", 1)], two_mib, FITS),
            (
                "argv",
                &[("ref", 128 * KIB - 6), ("a", 1), ("b", 1)],
                two_mib,
                Err("`run.command[1]` (from `payload.ref`) is 131073 bytes, over the 131072 bytes"),
            ),
            (
                "argv",
                &[("ref", 1), ("a", 70 * KIB), ("b", 70 * KIB)],
                two_mib,
                Err("`run.command[2]` (from `payload.a`, `payload.b`) is"),
            ),
            // `NAME=value` and its NUL count for an environment entry.
            (
                "argv",
                &[("ref", 1), ("a", 1), ("b", 1), ("note", 128 * KIB - 6)],
                two_mib,
                FITS,
            ),
            (
                "argv",
                &[("ref", 1), ("a", 1), ("b", 1), ("note", 128 * KIB - 5)],
                two_mib,
                Err("`run.env.NOTE` (from `payload.note`) is 131073 bytes"),
            ),
            (
                "shell",
                &[("note", 200 * KIB)],
                two_mib,
                Err("`run.env.NOTE` (from `payload.note`) is"),
            ),
            // Each value fits, together they do not; the server's passed-through `BIG` counts.
            (
                "argv",
                &[("ref", 120 * KIB), ("a", 60 * KIB), ("b", 60 * KIB)],
                300 * KIB,
                Err("over the system's limit of 307200 bytes (`ARG_MAX`), the largest being `run.command[1]` (from `payload.ref`)"),
            ),
            (
                "argv",
                &[("ref", 1), ("a", 1), ("b", 1), ("note", 100 * KIB)],
                200 * KIB,
                Err("the largest being `run.env.NOTE` (from `payload.note`)"),
            ),
            (
                "argv",
                &[("ref", 1), ("a", 1), ("b", 1)],
                100 * KIB,
                Err("the largest being `BIG` from the server's environment"),
            ),
            ("shell", &[("note", 10)], 4 * KIB, FITS),
        ];
        for (hook, fields, arg_max, expected) in cases {
            let result = check_sizes(hook, fields, *arg_max);
            match (expected, &result) {
                (Ok(()), Ok(())) => {}
                (Err(part), Err(message)) if message.contains(part) => {}
                _ => panic!(
                    "{hook} {fields:?} under {arg_max}: expected {expected:?}, got {result:?}"
                ),
            }
        }
    }
}
