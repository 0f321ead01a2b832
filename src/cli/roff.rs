//! Markdown to roff for `hookrunner man 5`: the config reference (docs/CONFIG.md, built into the
//! binary) as a man page. It knows the Markdown that file uses: headings, paragraphs, `-` lists,
//! fenced code blocks, tables (rendered as tagged lists, a row per entry), `code`, **bold**,
//! *emphasis* and links. Text never starts a line with `.` or `'`, a backslash is always `\e` and characters
//! beyond ASCII are written as `\[uXXXX]`, so nothing in the Markdown can become a roff request.

/// The config reference, as the binary was built with it.
pub const CONFIG_MD: &str = include_str!("../../docs/CONFIG.md");

/// The man page `hookrunner(5)` made from `CONFIG_MD`.
pub fn config_page() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut page = format!(
        ".TH HOOKRUNNER 5 \"\" \"hookrunner {version}\" \"File Formats\"\n\
         .SH NAME\nhookrunner \\- the hooks.yaml configuration file of hookrunner(1)\n"
    );
    page.push_str(&to_roff(CONFIG_MD));
    page
}

/// Converts Markdown to the body of a man page (no `.TH`). A level-one heading is the page's
/// own title and is left out; level two becomes `.SH`, deeper levels `.SS`.
pub fn to_roff(markdown: &str) -> String {
    let mut out = String::new();
    let mut lines = markdown.lines().peekable();
    // Whether the next text line starts a new paragraph.
    let mut new_paragraph = true;
    while let Some(line) = lines.next() {
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            new_paragraph = true;
            continue;
        }
        if let Some(fence) = trimmed.trim_start().strip_prefix("```") {
            let _language = fence;
            out.push_str(".PP\n.RS 4\n.nf\n");
            for code in lines.by_ref() {
                if code.trim_start().starts_with("```") {
                    break;
                }
                out.push_str(&text_line(&escape(code)));
            }
            out.push_str(".fi\n.RE\n");
            new_paragraph = true;
            continue;
        }
        if let Some((level, title)) = heading(trimmed) {
            match level {
                1 => {}
                2 => out.push_str(&format!(".SH \"{}\"\n", quoted(title))),
                _ => out.push_str(&format!(".SS \"{}\"\n", quoted(title))),
            }
            new_paragraph = false;
            continue;
        }
        if trimmed.starts_with('|') {
            let mut rows = vec![cells(trimmed)];
            while let Some(next) = lines
                .peek()
                .filter(|next| next.trim_start().starts_with('|'))
            {
                rows.push(cells(next.trim()));
                lines.next();
            }
            out.push_str(&table(&rows));
            new_paragraph = true;
            continue;
        }
        if let Some(item) = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
        {
            // An item runs on over the indented lines that follow it.
            let mut text = item.to_string();
            while let Some(next) = lines
                .peek()
                .filter(|next| next.starts_with("  ") && !next.trim().is_empty())
            {
                let next = next.trim();
                if next.starts_with("- ") || next.starts_with("* ") {
                    break;
                }
                text.push(' ');
                text.push_str(next);
                lines.next();
            }
            out.push_str(".IP \\(bu 2\n");
            out.push_str(&text_line(&inline(&text)));
            new_paragraph = true;
            continue;
        }
        if new_paragraph {
            out.push_str(".PP\n");
            new_paragraph = false;
        }
        out.push_str(&text_line(&inline(trimmed.trim_start())));
    }
    out
}

/// `## Title` as (2, "Title").
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.bytes().take_while(|byte| *byte == b'#').count();
    let title = line[level..].strip_prefix(' ')?;
    (level > 0).then_some((level, title.trim()))
}

/// The cells of a table row, split at `|` but not at `\|`, trimmed.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cells.last_mut().expect("one cell").push('|');
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().expect("one cell").push(c),
        }
    }
    cells.iter().map(|cell| cell.trim().to_string()).collect()
}

/// A table as a tagged list: each row's first cell is the tag, and its other cells follow, each
/// on a line of its own named by its column's header (`type: duration`).
fn table(rows: &[Vec<String>]) -> String {
    let is_rule = |row: &Vec<String>| {
        row.iter()
            .all(|cell| !cell.is_empty() && cell.chars().all(|c| matches!(c, '-' | ':' | ' ')))
    };
    let (header, body): (&[String], Vec<&Vec<String>>) = match rows {
        [header, rule, body @ ..] if is_rule(rule) => (header, body.iter().collect()),
        _ => (&[], rows.iter().collect()),
    };
    let mut out = String::new();
    for row in body {
        let Some((tag, rest)) = row.split_first() else {
            continue;
        };
        out.push_str(".TP\n");
        out.push_str(&text_line(&inline(tag)));
        for (index, cell) in rest.iter().enumerate() {
            if index > 0 {
                out.push_str(".br\n");
            }
            let text = match header.get(index + 1).filter(|name| !name.is_empty()) {
                Some(name) => format!("{}: {}", inline(name), inline(cell)),
                None => inline(cell),
            };
            out.push_str(&text_line(&text));
        }
    }
    out
}

/// Inline Markdown to roff: `code` and **bold** in bold, *emphasis* in italics, [text](url) as
/// its text (with the URL when it leads off the page), everything escaped.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix('`') {
            if let Some(end) = after.find('`') {
                out.push_str(&format!("\\fB{}\\fR", escape(&after[..end])));
                rest = &after[end + 1..];
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix("**") {
            if let Some(end) = after.find("**") {
                out.push_str(&format!("\\fB{}\\fR", inline(&after[..end])));
                rest = &after[end + 2..];
                continue;
            }
        }
        if let Some(after) = rest
            .strip_prefix('*')
            .filter(|after| !after.starts_with(' '))
        {
            if let Some(end) = after.find('*').filter(|end| *end > 0) {
                out.push_str(&format!("\\fI{}\\fR", inline(&after[..end])));
                rest = &after[end + 1..];
                continue;
            }
        }
        if let Some((label, url, after)) = link(rest) {
            out.push_str(&inline(label));
            if url.starts_with("http://") || url.starts_with("https://") {
                out.push_str(&format!(" <{}>", escape(url)));
            }
            rest = after;
            continue;
        }
        out.push_str(&escape(&c.to_string()));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `[label](url)` at the start of `text`: the label, the URL and what follows.
fn link(text: &str) -> Option<(&str, &str, &str)> {
    let after = text.strip_prefix('[')?;
    let close = after.find("](")?;
    let label = &after[..close];
    let tail = &after[close + 2..];
    let end = tail.find(')')?;
    Some((label, &tail[..end], &tail[end + 1..]))
}

/// Escapes roff's escape character, and writes characters beyond ASCII as `\[uXXXX]`, which
/// groff and mandoc read whatever the input encoding is taken to be.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("\\[u{:04X}]", u32::from(c))),
        }
    }
    out
}

/// A line of text that roff cannot take for a request: a leading `.` or `'` is guarded by `\&`.
fn text_line(text: &str) -> String {
    match text.starts_with(['.', '\'']) {
        true => format!("\\&{text}\n"),
        false => format!("{text}\n"),
    }
}

/// Text inside a double-quoted macro argument.
fn quoted(text: &str) -> String {
    inline(text).replace('"', "\\(dq")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(markdown: &str, expected: &str) {
        assert_eq!(to_roff(markdown), expected, "from:\n{markdown}");
    }

    #[test]
    fn markdown_becomes_roff() {
        let cases = [
            // Headings: the title is the page's own; `##` a section, deeper a sub-section.
            ("# Configuration reference\n", ""),
            ("## `server:`\n", ".SH \"\\fBserver:\\fR\"\n"),
            ("### Client \"address\"\n", ".SS \"Client \\(dqaddress\\(dq\"\n"),
            // Paragraphs run on until a blank line.
            ("one\ntwo\n\nthree\n", ".PP\none\ntwo\n.PP\nthree\n"),
            // Inline code, bold and links.
            (
                "use `env:NAME`, **not** [this](#secrets) or [that](https://x.example/a)\n",
                ".PP\nuse \\fBenv:NAME\\fR, \\fBnot\\fR this or that <https://x.example/a>\n",
            ),
            // Emphasis; a lone `*` stays as it is.
            (
                "a *list*, 2 * 3 and `*x*`\n",
                ".PP\na \\fIlist\\fR, 2 * 3 and \\fB*x*\\fR\n",
            ),
            // Backslashes and leading dots cannot become requests.
            (
                ".hidden and a \\ backslash\n",
                ".PP\n\\&.hidden and a \\e backslash\n",
            ),
            ("'quote\n", ".PP\n\\&'quote\n"),
            // Beyond ASCII, by code point.
            ("a \u{2014} b \u{2192} c\n", ".PP\na \\[u2014] b \\[u2192] c\n"),
            // Code blocks are kept as they are, escaped the same way.
            (
                "```yaml\nserver:\n  listen: [\"a\\b\"]\n.x\n```\n",
                ".PP\n.RS 4\n.nf\nserver:\n  listen: [\"a\\eb\"]\n\\&.x\n.fi\n.RE\n",
            ),
            // A list item runs on over its indented lines.
            (
                "- first\n  still first\n- second\n",
                ".IP \\(bu 2\nfirst still first\n.IP \\(bu 2\nsecond\n",
            ),
            // A table is a tagged list, a row per entry, named by the header.
            (
                "| key | default | meaning |\n|---|---|---|\n| `a` | `1` | the a \\| b |\n| b | - | .dot |\n",
                ".TP\n\\fBa\\fR\ndefault: \\fB1\\fR\n.br\nmeaning: the a | b\n.TP\nb\ndefault: -\n.br\nmeaning: .dot\n",
            ),
            // A table without a rule line has no header to name its cells.
            ("| a | b |\n", ".TP\na\nb\n"),
        ];
        for (markdown, expected) in cases {
            check(markdown, expected);
        }
    }

    #[test]
    fn the_config_page_has_every_section_and_no_stray_request() {
        let page = config_page();
        assert!(page.starts_with(".TH HOOKRUNNER 5 "), "{page}");
        for section in ["server:", "hooks:"] {
            assert!(
                page.contains(&format!(".SH \"\\fB{section}\\fR\"")),
                "{section}"
            );
        }
        let requests = [
            ".TH", ".SH", ".SS", ".PP", ".IP", ".TP", ".br", ".nf", ".fi", ".RS", ".RE",
        ];
        for line in page.lines().filter(|line| line.starts_with('.')) {
            assert!(
                requests.iter().any(|request| line.starts_with(request)),
                "an unexpected request: {line}"
            );
        }
    }
}
