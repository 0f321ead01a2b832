//! Warnings about the machine the config is loaded on: a `run.workdir` that is not a directory, a
//! `run.command` program that is not found or cannot be run. Warnings, not errors: a config may be
//! checked on one machine and served on another.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_yaml::Value;

use super::decode::{scalar_text, Decoder, Fields};
use super::source_map::Part;

/// Warns about the `workdir` and the program of a `run` mapping whose `workdir` resolved to
/// `workdir`. A relative program is looked for in `workdir`, a bare name on the `PATH` the
/// command will get (the server's own, unless `run.env` sets one).
pub(super) fn warn_about_run(decoder: &mut Decoder<'_>, fields: &Fields<'_>, workdir: &Path) {
    let mut workdir_found = true;
    if let Some((_, path)) = fields.get("workdir") {
        let problem = match std::fs::metadata(workdir) {
            Ok(metadata) if metadata.is_dir() => None,
            Ok(_) => Some("is not a directory; point it at the folder the command should run in"),
            Err(_) => Some("does not exist on this machine; create it, or fix the path (a relative one is read from the config file's folder)"),
        };
        if let Some(problem) = problem {
            let message = format!("`workdir` `{}` {problem}", workdir.display());
            decoder.warning(&path, Part::Value, message);
            workdir_found = false;
        }
    }
    let Some((Value::Sequence(items), command_path)) = fields.get("command") else {
        return;
    };
    let Some(program) = items.first().and_then(scalar_text) else {
        return;
    };
    // A rendered program is only known when a request comes.
    if program.contains("{{") {
        return;
    }
    let path = command_path.index(0);
    if program.contains('/') {
        // A relative program in a missing `workdir` was warned about with it.
        if !workdir_found && Path::new(&program).is_relative() {
            return;
        }
        let full = workdir.join(&program);
        let problem = match std::fs::metadata(&full) {
            Err(_) => format!("does not exist on this machine (looked for `{}`); fix the path: a relative one is read from `workdir`", full.display()),
            Ok(metadata) if metadata.is_dir() => format!("is a directory (`{}`), not a program; name the file to run", full.display()),
            Ok(metadata) if metadata.permissions().mode() & 0o111 == 0 => format!("is not executable; allow it to run with `chmod +x {}`", full.display()),
            Ok(_) => return,
        };
        decoder.warning(&path, Part::Value, format!("`{program}` {problem}"));
        return;
    }
    let env_sets_path = fields
        .get("env")
        .and_then(|(env, _)| env.as_mapping())
        .is_some_and(|env| env.contains_key("PATH"));
    if env_sets_path {
        return;
    }
    let Some(search_path) = (decoder.lookup_env)("PATH") else {
        return;
    };
    let found = std::env::split_paths(&search_path)
        .filter(|folder| !folder.as_os_str().is_empty())
        .any(|folder| is_executable_file(&folder.join(&program)));
    if !found {
        decoder.warning(
            &path,
            Part::Value,
            format!("`{program}` is not found on this machine's `PATH`; install it, or write its path (such as `/usr/local/bin/{program}`, or `./{program}` for one in `workdir`)"),
        );
    }
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}
