//! What is wrong with text that is not valid YAML, said so a person can fix it: every key written
//! twice in one mapping, at its second occurrence, and a tab in the indentation before the YAML
//! error, at the tab.

use serde_yaml::Error;

use super::diagnostic::{Diagnostic, Severity};
use super::source_map::{Position, SourceMap};

/// The problems of `source`, which serde_yaml refused with `error`.
pub(super) fn problems(source: &str, source_map: &SourceMap, error: &Error) -> Vec<Diagnostic> {
    // serde_yaml stops at the first key written twice; the source map saw them all.
    let mut diagnostics: Vec<Diagnostic> = source_map
        .duplicate_keys()
        .iter()
        .map(|duplicate| Diagnostic {
            severity: Severity::Error,
            position: Some(duplicate.second),
            message: format!(
                "`{}` appears twice in this mapping (first at line {}); a key may appear only once in a mapping: keep one and remove the other",
                duplicate.key, duplicate.first.line
            ),
        })
        .collect();
    // When serde_yaml stopped at something else (text that does not parse), that is said too.
    if !diagnostics.is_empty() && error.to_string().contains("duplicate entry") {
        return diagnostics;
    }
    let position = error.location().map(|location| Position {
        line: location.line(),
        column: location.column(),
    });
    let words = parser_words(error, position, source_map);
    // One problem either way: a tab is named first, at the tab, with the parser's own words after.
    diagnostics.push(match position.and_then(|position| tab_before(source, position.line)) {
        Some(tab) => Diagnostic {
            severity: Severity::Error,
            position: Some(tab),
            message: format!("tabs are not allowed for indentation in YAML; use spaces (invalid YAML: {words})"),
        },
        None => Diagnostic {
            severity: Severity::Error,
            position,
            message: format!("invalid YAML: {words}"),
        },
    });
    diagnostics
}

/// serde_yaml's words for `error`, unless they may quote a secret: its messages about a value
/// (`invalid value: string "..."`, for a secret written `!!int s3cret`) quote the value, so on a
/// line that holds a secret they are replaced, and so are those about a value at no known line.
fn parser_words(error: &Error, position: Option<Position>, source_map: &SourceMap) -> String {
    let words = error.to_string();
    let on_secret_line =
        position.is_some_and(|position| source_map.secret_lines().contains(&position.line));
    let quotes_a_value = words.contains("invalid value") || words.contains("invalid type");
    if on_secret_line || (position.is_none() && quotes_a_value) {
        return "the parser stopped at a secret's value, so its words (which may quote the value) are not shown; check that value's quoting, indentation and any `!!` tag".to_string();
    }
    words
}

/// A tab in the indentation of `line` or of the line before, the likely cause of an error there:
/// YAML scanners stop at the tab itself or at the first line that no longer lines up after it.
/// Lines further up are left alone: a tab inside a block of text is no mistake.
fn tab_before(source: &str, line: usize) -> Option<Position> {
    source
        .lines()
        .enumerate()
        .take(line)
        .skip(line.saturating_sub(2))
        .filter_map(|(index, text)| {
            let indentation = text.len() - text.trim_start_matches([' ', '\t']).len();
            let column = text[..indentation].find('\t')?;
            Some(Position {
                line: index + 1,
                column: column + 1,
            })
        })
        .last()
}
