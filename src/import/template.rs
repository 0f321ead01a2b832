//! Hooks files written for `webhook -template`, which adnanh renders as a Go template before
//! reading them. The converter reads them without a flag: each `{{ getenv "NAME" }}` (also with
//! `| js`) becomes a marker that a secret turns into `env:NAME`; any other template function or
//! action is refused, naming it. Actions on data (`{{ .Method }}`, in `source: template`) are
//! left as they are: they belong to the request, not to the file.

use regex::Regex;

/// What `{{ getenv "NAME" }}` becomes before the file is parsed; a secret made of it alone is
/// `env:NAME`. It has no character that YAML or JSON would read specially.
pub const GETENV_MARKER: &str = "hookrunner-getenv:";

/// The functions and keywords of Go templates, as adnanh's `-template` offers them.
const TEMPLATE_WORDS: &[&str] = &[
    "getenv",
    "cat",
    "credential",
    "and",
    "call",
    "html",
    "index",
    "slice",
    "js",
    "len",
    "not",
    "or",
    "print",
    "printf",
    "println",
    "urlquery",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "if",
    "else",
    "end",
    "range",
    "with",
    "define",
    "template",
    "block",
    "break",
    "continue",
];

/// Replaces each `getenv` action by its marker; an error names the first other function used.
pub fn replace_actions(source: &str) -> Result<String, String> {
    let action = Regex::new(r"(?s)\{\{-?(.*?)-?\}\}").expect("a valid regex");
    let getenv =
        Regex::new(r#"^getenv\s+"([A-Za-z_][A-Za-z0-9_]*)"(\s*\|\s*js)?$"#).expect("a valid regex");
    let mut refused: Vec<String> = Vec::new();
    let replaced = action.replace_all(source, |found: &regex::Captures<'_>| {
        let inner = found[1].trim();
        if let Some(name) = getenv.captures(inner) {
            return format!("{GETENV_MARKER}{}", &name[1]);
        }
        let word = inner
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or_default();
        let named = format!("`{word}`");
        if TEMPLATE_WORDS.contains(&word) && !refused.contains(&named) {
            refused.push(named);
        }
        found[0].to_string()
    });
    if !refused.is_empty() {
        return Err(format!(
            "the file is a Go template for `webhook -template` and uses {}; only `{{{{ getenv \"NAME\" }}}}` converts (to an `env:` secret), so render it first for the rest",
            refused.join(", ")
        ));
    }
    Ok(replaced.into_owned())
}

/// The variable a secret reads, when the secret is one `getenv` action and nothing else.
pub fn getenv_secret(secret: &str) -> Option<&str> {
    secret
        .strip_prefix(GETENV_MARKER)
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getenv_actions_become_markers_and_other_functions_are_refused() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (
                r#""secret": "{{ getenv "XXXTEST_SECRET" | js }}""#,
                Ok(r#""secret": "hookrunner-getenv:XXXTEST_SECRET""#),
            ),
            (
                r#"secret: {{- getenv "A" -}}"#,
                Ok("secret: hookrunner-getenv:A"),
            ),
            ("name: '{{ .Method }}'", Ok("name: '{{ .Method }}'")),
            ("name: '{{ x }}'", Ok("name: '{{ x }}'")),
            (
                r#"command: {{ cat "/etc/cmd" }}"#,
                Err("uses `cat`; only `{{ getenv \"NAME\" }}` converts"),
            ),
            ("[{{ range . }}]", Err("uses `range`")),
            (
                r#"{{ if getenv "A" }}{{ credential "B" }}{{ end }}"#,
                Err("uses `if`, `credential`, `end`"),
            ),
        ];
        for (source, expected) in cases {
            let got = replace_actions(source);
            match expected {
                Ok(text) => assert_eq!(got.as_deref(), Ok(*text), "{source}"),
                Err(fragment) => {
                    let error = got.expect_err(source);
                    assert!(error.contains(fragment), "{source}: {error}");
                }
            }
        }
        assert_eq!(getenv_secret("hookrunner-getenv:A"), Some("A"));
        assert_eq!(getenv_secret("a hookrunner-getenv:A"), None);
    }
}
