//! Config problems as `FILE:LINE:COLUMN: message`, followed by the source line and a caret —
//! except the lines that hold a secret, which are never quoted, whatever the problem.

use std::fmt::Write as _;

use super::source_map::Position;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a config file.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    pub position: Option<Position>,
    pub message: String,
}

/// The text of a config file as diagnostics quote it: each line found in constant time, and the
/// lines that hold secrets withheld.
#[derive(Debug, Default)]
pub struct Listing {
    source: String,
    /// The byte offset where each line starts; line `n` (1-based) starts at `line_starts[n - 1]`.
    line_starts: Vec<usize>,
    /// `withheld[n - 1]` is set for each line `n` that holds (part of) a secret.
    withheld: Vec<bool>,
}

impl Listing {
    /// `secret_lines` are the 1-based lines never to be quoted.
    pub fn new(source: &str, secret_lines: impl IntoIterator<Item = usize>) -> Listing {
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        let mut withheld = vec![false; line_starts.len()];
        for line in secret_lines {
            if let Some(flag) = line.checked_sub(1).and_then(|at| withheld.get_mut(at)) {
                *flag = true;
            }
        }
        Listing {
            source: source.to_string(),
            line_starts,
            withheld,
        }
    }

    /// The text of a 1-based line without its line break; `None` past the end or when withheld.
    pub fn quotable_line(&self, line: usize) -> Option<&str> {
        let at = line.checked_sub(1)?;
        if *self.withheld.get(at)? {
            return None;
        }
        let start = self.line_starts[at];
        let end = self
            .line_starts
            .get(at + 1)
            .map_or(self.source.len(), |next| next - 1);
        let text = &self.source[start..end];
        Some(text.strip_suffix('\r').unwrap_or(text))
    }
}

impl Diagnostic {
    /// Renders the problem against the file it was found in.
    pub fn render(&self, file: &str, listing: &Listing) -> String {
        let prefix = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        let Some(position) = self.position else {
            return format!("{file}: {prefix}{}\n", self.message);
        };
        let mut out = format!(
            "{file}:{}:{}: {prefix}{}\n",
            position.line, position.column, self.message
        );
        if let Some(line) = listing.quotable_line(position.line) {
            let caret_at: usize = line
                .chars()
                .take(position.column.saturating_sub(1))
                .map(|c| if c == '\t' { 4 } else { 1 })
                .sum();
            let line = line.replace('\t', "    ");
            let gutter = position.line.to_string();
            let _ = writeln!(out, "{gutter} | {line}");
            let _ = writeln!(
                out,
                "{} | {}^",
                " ".repeat(gutter.len()),
                " ".repeat(caret_at)
            );
        }
        out
    }
}

/// Every problem of one load, in file order.
#[derive(Debug)]
pub struct ConfigErrors {
    pub file: String,
    /// Boxed: every config function returns this as its error, which stays small so.
    pub listing: Box<Listing>,
    pub diagnostics: Vec<Diagnostic>,
    /// The problems of the files the config includes, each at its own line and column.
    pub included: Vec<ConfigErrors>,
}

impl ConfigErrors {
    pub fn render(&self) -> String {
        let own: String = self
            .diagnostics
            .iter()
            .map(|diagnostic| diagnostic.render(&self.file, &self.listing))
            .collect();
        own + &self
            .included
            .iter()
            .map(ConfigErrors::render)
            .collect::<String>()
    }

    pub fn errors(&self) -> Box<dyn Iterator<Item = &Diagnostic> + '_> {
        Box::new(
            self.diagnostics
                .iter()
                .filter(|diagnostic| diagnostic.severity == Severity::Error)
                .chain(self.included.iter().flat_map(ConfigErrors::errors)),
        )
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.render().trim_end())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str, secret_lines: &[usize], position: (usize, usize), expected: &str) {
        let diagnostic = Diagnostic {
            severity: Severity::Error,
            position: Some(Position {
                line: position.0,
                column: position.1,
            }),
            message: "unknown key `comand`, did you mean `command`?".into(),
        };
        let listing = Listing::new(source, secret_lines.iter().copied());
        assert_eq!(diagnostic.render("hooks.yaml", &listing), expected);
    }

    #[test]
    fn renders_location_line_and_caret_but_never_a_secret_line() {
        let header = "hooks.yaml:2:5: unknown key `comand`, did you mean `command`?\n";
        let quoted = format!("{header}2 |     comand: [x]\n  |     ^\n");
        check("run:\n    comand: [x]\n", &[], (2, 5), &quoted);
        check("run:\r\n    comand: [x]", &[], (2, 5), &quoted);
        check("run:\n    comand: [x]\n", &[2], (2, 5), header);
        check("run:\n    comand: [x]\n", &[1, 3, 99], (2, 5), &quoted);
        check("run:\n", &[], (7, 1), &header.replace(":2:5:", ":7:1:"));
        check(
            "run:\n\tcomand: [x]\n",
            &[],
            (2, 2),
            &format!(
                "{}2 |     comand: [x]\n  |     ^\n",
                header.replace(":2:5:", ":2:2:")
            ),
        );
    }
}
