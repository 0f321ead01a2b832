//! The decoding toolkit: walks the serde_yaml document, turns scalars into typed values, and collects
//! every problem with its position instead of stopping at the first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use super::diagnostic::{Diagnostic, Severity};
use super::secret::{self, SecretOrigin};
use super::source_map::{Part, SourceMap, YamlPath};
use super::units;
use crate::pattern::Patterns;
use crate::secret::{Secret, Secrets};
use crate::template::Templates;

pub struct Decoder<'s> {
    /// Every problem found, without its position until [`finish`](Decoder::finish).
    pub diagnostics: Vec<Diagnostic>,
    /// The paths whose places are looked up once decoding is done, and what each is for.
    places: Vec<(YamlPath, Part, Place)>,
    /// The config file's folder: relative paths in the file are relative to it.
    pub base_dir: PathBuf,
    pub lookup_env: &'s dyn Fn(&str) -> Option<String>,
    /// The `matches` patterns read so far: hooks that write the same text share one.
    pub patterns: Patterns,
    /// The templates read so far, shared the same way.
    pub templates: Templates,
}

/// What a place in the file is looked up for.
enum Place {
    /// The position of the diagnostic at this index.
    Diagnostic(usize),
    /// A line never to be quoted: that of a value read as a secret (besides the source map's,
    /// which knows secrets by their key).
    SecretLine,
}

/// The fields of a mapping whose keys were already checked against the known ones.
pub struct Fields<'v> {
    map: &'v Mapping,
    path: YamlPath,
}

impl<'v> Fields<'v> {
    /// The value of a key, with its path; `None` when absent or null.
    pub fn get(&self, key: &str) -> Option<(&'v Value, YamlPath)> {
        self.map
            .get(key)
            .filter(|value| !value.is_null())
            .map(|value| (value, self.path.key(key)))
    }

    pub fn path(&self) -> &YamlPath {
        &self.path
    }

    pub fn keys(&self) -> impl Iterator<Item = String> + 'v {
        self.map.keys().map(key_text)
    }
}

pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        other => scalar_text(other).unwrap_or_else(|| "?".into()),
    }
}

/// The text of a scalar: strings as they are, numbers and booleans as written.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

impl<'s> Decoder<'s> {
    pub fn new(base_dir: PathBuf, lookup_env: &'s dyn Fn(&str) -> Option<String>) -> Decoder<'s> {
        Decoder {
            diagnostics: Vec::new(),
            places: Vec::new(),
            base_dir,
            lookup_env,
            patterns: Patterns::default(),
            templates: Templates::default(),
        }
    }

    pub fn error(&mut self, path: &YamlPath, part: Part, message: impl Into<String>) {
        self.push(Severity::Error, path, part, message.into());
    }

    pub fn warning(&mut self, path: &YamlPath, part: Part, message: impl Into<String>) {
        self.push(Severity::Warning, path, part, message.into());
    }

    fn push(&mut self, severity: Severity, path: &YamlPath, part: Part, message: String) {
        self.places.push((
            path.clone(),
            part,
            Place::Diagnostic(self.diagnostics.len()),
        ));
        self.diagnostics.push(Diagnostic {
            severity,
            position: None,
            message,
        });
    }

    /// The diagnostics, each with its position, and the lines of the values read as secrets:
    /// the places are found in one more pass over `source`, only when something needs one.
    pub fn finish(self, source: &str) -> (Vec<Diagnostic>, Vec<usize>) {
        let mut diagnostics = self.diagnostics;
        let mut secret_lines = Vec::new();
        if self.places.is_empty() {
            return (diagnostics, secret_lines);
        }
        let wanted: Vec<(&YamlPath, Part)> = self
            .places
            .iter()
            .map(|(path, part, _)| (path, *part))
            .collect();
        let positions = SourceMap::places(source, &wanted);
        for ((_, _, place), position) in self.places.iter().zip(positions) {
            match place {
                Place::Diagnostic(index) => diagnostics[*index].position = position,
                Place::SecretLine => secret_lines.extend(position.map(|p| p.line)),
            }
        }
        (diagnostics, secret_lines)
    }

    /// Reads a mapping, reporting every key not in `known` (with a did-you-mean).
    pub fn mapping<'v>(
        &mut self,
        value: &'v Value,
        path: &YamlPath,
        what: &str,
        known: &[&str],
    ) -> Option<Fields<'v>> {
        let Value::Mapping(map) = value else {
            self.error(
                path,
                Part::Value,
                format!("{what} must be a mapping of keys to values"),
            );
            return None;
        };
        for key in map.keys().map(key_text) {
            if !known.contains(&key.as_str()) {
                let message = match did_you_mean(&key, known) {
                    Some(suggestion) => {
                        format!("unknown key `{key}` in {what}, did you mean `{suggestion}`?")
                    }
                    None => format!(
                        "unknown key `{key}` in {what}; expected one of {}",
                        known
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.error(&path.key(&key), Part::Key, message);
            }
        }
        Some(Fields {
            map,
            path: path.clone(),
        })
    }

    pub fn string(&mut self, value: &Value, path: &YamlPath) -> Option<String> {
        let text = scalar_text(value);
        if text.is_none() {
            self.error(
                path,
                Part::Value,
                "expected a single value (text, number or boolean)",
            );
        }
        text
    }

    /// A list of strings; a single string is taken as a list of one.
    pub fn string_list(&mut self, value: &Value, path: &YamlPath) -> Option<Vec<String>> {
        match value {
            Value::Sequence(items) => {
                let mut out = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    out.push(self.string(item, &path.index(index))?);
                }
                Some(out)
            }
            other => self.string(other, path).map(|text| vec![text]),
        }
    }

    pub fn bool(&mut self, value: &Value, path: &YamlPath) -> Option<bool> {
        let flag = value.as_bool();
        if flag.is_none() {
            self.error(path, Part::Value, "expected `true` or `false`");
        }
        flag
    }

    /// A whole number between `min` and `max`.
    pub fn number(&mut self, value: &Value, path: &YamlPath, min: u64, max: u64) -> Option<u64> {
        match value.as_u64() {
            Some(number) if (min..=max).contains(&number) => Some(number),
            _ => {
                self.error(
                    path,
                    Part::Value,
                    format!("expected a whole number from {min} to {max}"),
                );
                None
            }
        }
    }

    pub fn status(&mut self, value: &Value, path: &YamlPath) -> Option<u16> {
        self.number(value, path, 200, 599)
            .map(|status| status as u16)
    }

    pub fn duration(&mut self, value: &Value, path: &YamlPath) -> Option<Duration> {
        let text = self.string(value, path)?;
        units::parse_duration(&text)
            .map_err(|message| self.error(path, Part::Value, message))
            .ok()
    }

    pub fn size(&mut self, value: &Value, path: &YamlPath) -> Option<u64> {
        let text = self.string(value, path)?;
        units::parse_size(&text)
            .map_err(|message| self.error(path, Part::Value, message))
            .ok()
    }

    /// One of a fixed set of words.
    pub fn choice<T: Copy>(
        &mut self,
        value: &Value,
        path: &YamlPath,
        options: &[(&str, T)],
    ) -> Option<T> {
        let text = self.string(value, path)?;
        let found = options
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, v)| *v);
        if found.is_none() {
            let names: Vec<String> = options
                .iter()
                .map(|(name, _)| format!("`{name}`"))
                .collect();
            self.error(
                path,
                Part::Value,
                format!("`{text}` is not one of {}", names.join(", ")),
            );
        }
        found
    }

    /// A path relative to the config file's folder.
    pub fn file_path(&mut self, value: &Value, path: &YamlPath) -> Option<PathBuf> {
        self.string(value, path)
            .map(|text| self.base_dir.join(text))
    }

    /// One secret reference, resolved now so a missing secret is a load error, not a request error.
    /// A literal's line is never quoted, and the warning about it names the key and its place only.
    pub fn secret(&mut self, value: &Value, path: &YamlPath) -> Option<Secret> {
        let text = self.string(value, path)?;
        match secret::resolve(&text, &self.base_dir, self.lookup_env) {
            Ok((secret, origin)) => {
                if origin == SecretOrigin::Literal {
                    self.literal_secret(path);
                }
                Some(secret)
            }
            Err(message) => {
                self.error(path, Part::Value, message);
                None
            }
        }
    }

    /// Records a secret written in the file: its line is never quoted, and a warning names the
    /// key and its place only.
    pub fn literal_secret(&mut self, path: &YamlPath) {
        self.hide(path);
        self.warning(
            path,
            Part::Value,
            format!("the secret `{path}` is written in the file; prefer `env:NAME`, `file:PATH` or `cred:NAME` so it stays out of version control"),
        );
    }

    /// Keeps the line of a value out of every diagnostic, as for a secret: it may hold one (a
    /// password in a URL).
    pub fn hide(&mut self, path: &YamlPath) {
        self.places
            .push((path.clone(), Part::Value, Place::SecretLine));
    }

    /// Decodes every item of a list, so every item's errors are reported, not only the first's;
    /// `None` when any item had errors.
    pub fn each<T>(
        &mut self,
        items: &[Value],
        path: &YamlPath,
        mut decode: impl FnMut(&mut Self, &Value, &YamlPath) -> Option<T>,
    ) -> Option<Vec<T>> {
        let decoded: Vec<Option<T>> = items
            .iter()
            .enumerate()
            .map(|(index, item)| decode(self, item, &path.index(index)))
            .collect();
        decoded.into_iter().collect()
    }

    /// One secret or a list of them (key rotation).
    pub fn secrets(&mut self, value: &Value, path: &YamlPath) -> Option<Secrets> {
        match value {
            Value::Sequence(items) if items.is_empty() => {
                self.error(path, Part::Value, "the list of secrets is empty");
                None
            }
            Value::Sequence(items) => self.each(items, path, Self::secret).map(Secrets),
            other => self.secret(other, path).map(|secret| Secrets(vec![secret])),
        }
    }

    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }
}

/// The known word closest to a misspelt one, when it is close enough to be a likely typo.
pub fn did_you_mean<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let length = word.chars().count();
    known
        .iter()
        // The distance is at least the difference in length: most words are not measured at
        // all (the source map asks for every key of the file).
        .filter(|candidate| {
            length.abs_diff(candidate.chars().count()) <= (candidate.len() / 3).max(1)
        })
        .map(|candidate| (strsim::damerau_levenshtein(word, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_keys_only() {
        let known = [
            "command",
            "shell",
            "workdir",
            "env",
            "env_passthrough",
            "timeout",
        ];
        let cases = [
            ("comand", Some("command")),
            ("commnad", Some("command")),
            ("shel", Some("shell")),
            ("timout", Some("timeout")),
            ("envs", Some("env")),
            ("script", None),
            ("x", None),
        ];
        for (word, expected) in cases {
            assert_eq!(did_you_mean(word, &known), expected, "{word}");
        }
    }
}
