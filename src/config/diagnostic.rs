//! Config problems as `FILE:LINE:COLUMN: message`, followed by the source line and a caret.

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

impl Diagnostic {
    /// Renders the problem against the file it was found in.
    pub fn render(&self, file: &str, source: &str) -> String {
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
        if let Some(line) = source.lines().nth(position.line.saturating_sub(1)) {
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
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigErrors {
    pub fn render(&self) -> String {
        self.diagnostics
            .iter()
            .map(|diagnostic| diagnostic.render(&self.file, &self.source))
            .collect()
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|diagnostic| diagnostic.severity == Severity::Error)
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

    #[test]
    fn renders_location_line_and_caret() {
        let diagnostic = Diagnostic {
            severity: Severity::Error,
            position: Some(Position { line: 2, column: 5 }),
            message: "unknown key `comand`, did you mean `command`?".into(),
        };
        let text = diagnostic.render("hooks.yaml", "run:\n    comand: [x]\n");
        assert_eq!(
            text,
            "hooks.yaml:2:5: unknown key `comand`, did you mean `command`?\n\
             2 |     comand: [x]\n  |     ^\n"
        );
    }
}
