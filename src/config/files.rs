//! `run.files`: request values the command reads from files, each named by a variable.

use serde_yaml::Value;

use super::decode::{key_text, scalar_text, Decoder};
use super::hook::{env_name_ok, RESERVED_ENV};
use super::source_map::{Part, YamlPath};
use super::FileTemplate;
use crate::template::Template;

/// `files: {NAME: {value: "{{ ref }}", base64_decode: false}}`; `NAME: "{{ ref }}"` is the
/// short form. A name may not be one of `run.env` (`env`, when it decoded) or hookrunner's own.
pub fn decode(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
    env: Option<&[(String, Template)]>,
) -> Option<Vec<FileTemplate>> {
    let Value::Mapping(map) = value else {
        decoder.error(
            path,
            Part::Value,
            "`files` must be a mapping of variable names to `{value: \"{{ payload.x }}\"}`",
        );
        return None;
    };
    let mut files = Vec::new();
    let mut valid = true;
    for (key, entry) in map {
        let name = key_text(key);
        let entry_path = path.key(&name);
        if !env_name_ok(decoder, &name, &entry_path) {
            valid = false;
            continue;
        }
        let taken = if RESERVED_ENV.contains(&name.as_str()) {
            Some(format!(
                "`{name}` is set by hookrunner itself; choose another name"
            ))
        } else if ["PATH", "HOME", "LANG", "TZ"].contains(&name.as_str()) {
            Some(format!(
                "`{name}` is the command's own `{name}`, from the server's environment; choose another name"
            ))
        } else if env.is_some_and(|env| env.iter().any(|(set, _)| *set == name)) {
            Some(format!(
                "`{name}` is also in `run.env`; a variable holds either a value or a file's path, so rename one"
            ))
        } else {
            None
        };
        if let Some(message) = taken {
            decoder.error(&entry_path, Part::Key, message);
            valid = false;
            continue;
        }
        match decode_entry(decoder, entry, &entry_path) {
            Some((value, base64_decode)) => files.push(FileTemplate {
                name,
                value,
                base64_decode,
            }),
            None => valid = false,
        }
    }
    valid.then_some(files)
}

fn decode_entry(
    decoder: &mut Decoder<'_>,
    entry: &Value,
    path: &YamlPath,
) -> Option<(Template, bool)> {
    let (text, text_path, base64_decode) = match entry {
        Value::Mapping(_) => {
            let fields = decoder.mapping(entry, path, "a file", &["value", "base64_decode"])?;
            let base64_decode = match fields.get("base64_decode") {
                None => Some(false),
                Some((value, path)) => decoder.bool(value, &path),
            };
            let Some((value, value_path)) = fields.get("value") else {
                decoder.error(
                    path,
                    Part::Value,
                    "the file has no `value`; add `value: \"{{ payload.x }}\"`",
                );
                return None;
            };
            (scalar_text(value), value_path, base64_decode?)
        }
        other => (scalar_text(other), path.clone(), false),
    };
    let Some(text) = text else {
        decoder.error(
            &text_path,
            Part::Value,
            "a file's `value` must be text, such as `\"{{ payload.x }}\"`",
        );
        return None;
    };
    match Template::parse(&text) {
        Ok(template) => Some((template, base64_decode)),
        Err(message) => {
            decoder.error(&text_path, Part::Value, message);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::load_str;

    fn load(files: &str) -> Result<Vec<(String, bool)>, String> {
        let text = format!("hooks:\n  - id: a\n    signature: none\n    run:\n      command: [x]\n      env: {{TAKEN: x}}\n      files:\n{files}");
        load_str(&text, Path::new("/etc/hookrunner/hooks.yaml"), &|_| None)
            .map(|config| {
                let hook = config.hook("a").unwrap();
                hook.run
                    .files
                    .iter()
                    .map(|file| (file.name.clone(), file.base64_decode))
                    .collect()
            })
            .map_err(|errors| errors.render())
    }

    #[test]
    fn files_decode_in_both_forms() {
        let files = load("        KEY: {value: \"{{ payload.key }}\", base64_decode: true}\n        NOTE: \"{{ body }}\"\n").unwrap();
        assert_eq!(
            files,
            [("KEY".to_string(), true), ("NOTE".to_string(), false)]
        );
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let cases = [
            (
                "        \"A=B\": {value: x}
",
                "cannot be an environment variable name",
            ),
            (
                "        HOOK_ID: {value: x}\n",
                "`HOOK_ID` is set by hookrunner itself",
            ),
            (
                "        TAKEN: {value: x}\n",
                "`TAKEN` is also in `run.env`",
            ),
            (
                "        F: {base64_decode: true}\n",
                "the file has no `value`",
            ),
            ("        F: {value: x, mode: 644}\n", "unknown key `mode`"),
            (
                "        F: {value: \"{{ nope }}\"}\n",
                "unknown reference `nope`",
            ),
            ("        F: [x]\n", "a file's `value` must be text"),
            (
                "        \"BASH_FUNC_git%%\": {value: x}\n",
                "would define a bash function",
            ),
            ("        PATH: {value: x}\n", "is the command's own `PATH`"),
        ];
        for (files, expected) in cases {
            let rendered = load(files).expect_err(files);
            assert!(rendered.contains(expected), "{files}: {rendered}");
        }
    }
}
