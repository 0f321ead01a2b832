//! The same-origin check every form post passes, and the ANSI stripping of logs: pure text in,
//! a yes or no (or text) out.

use std::sync::LazyLock;

use regex::Regex;

/// Whether a post comes from this site: its `Origin` (or, without one, its `Referer`) names the
/// same host and port as `Host`. Neither header, an opaque `null` origin, or one that does not
/// parse, is refused.
pub fn is_same_origin(host: Option<&str>, origin: Option<&str>, referer: Option<&str>) -> bool {
    let Some(host) = host.filter(|host| !host.is_empty()) else {
        return false;
    };
    let Some(source) = origin.or(referer) else {
        return false;
    };
    let Ok(source) = url::Url::parse(source) else {
        return false;
    };
    if !matches!(source.scheme(), "http" | "https") {
        return false;
    }
    // `Host` read as an authority of the same scheme, so that an omitted default port compares
    // equal to a written one.
    let Ok(host) = url::Url::parse(&format!("{}://{host}/", source.scheme())) else {
        return false;
    };
    host.host_str().is_some()
        && host.host_str() == source.host_str()
        && host.port_or_known_default() == source.port_or_known_default()
        && host.username().is_empty()
}

/// Terminal escape sequences (colours, cursor moves, titles): a log shows the text without them.
static ESCAPES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\x1b\[[0-?]*[ -/]*[@-~]", // CSI: colours and cursor moves
        // OSC: titles and links; an unterminated one hides at most the rest of its line.
        r"|\x1b\][^\x07\x1b\n]{0,256}(?:\x07|\x1b\\)?",
        r"|\x1b[ -/]*[0-~]",       // the other two-character escapes
        r"|\x9b[0-?]*[ -/]*[@-~]", // CSI as one C1 character
    ))
    .expect("the escape pattern compiles")
});

/// `text` without its ANSI escape sequences.
pub fn strip_ansi(text: &str) -> String {
    ESCAPES.replace_all(text, "").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: Option<&str>, origin: Option<&str>, referer: Option<&str>, same: bool) {
        assert_eq!(
            is_same_origin(host, origin, referer),
            same,
            "host {host:?}, origin {origin:?}, referer {referer:?}"
        );
    }

    #[test]
    fn takes_only_posts_from_this_host() {
        let here = Some("hooks.example.com");
        let with_port = Some("127.0.0.1:9000");
        check(here, Some("https://hooks.example.com"), None, true);
        check(here, Some("https://hooks.example.com:443"), None, true);
        check(here, Some("https://evil.example"), None, false);
        check(here, Some("null"), None, false);
        check(here, None, None, false);
        check(None, Some("https://hooks.example.com"), None, false);
        check(with_port, Some("http://127.0.0.1:9000"), None, true);
        check(with_port, Some("http://127.0.0.1:9001"), None, false);
        check(
            with_port,
            None,
            Some("http://127.0.0.1:9000/ui/jobs/x"),
            true,
        );
        check(with_port, None, Some("http://127.0.0.1:9001/ui/"), false);
        // `Origin` wins over `Referer`.
        check(
            with_port,
            Some("http://evil.example"),
            Some("http://127.0.0.1:9000/ui/"),
            false,
        );
        check(here, Some("ftp://hooks.example.com"), None, false);
    }

    #[test]
    fn strips_colours_and_titles_but_keeps_the_text() {
        let cases = [
            ("\x1b[1;31merror\x1b[0m: no", "error: no"),
            ("\x1b]0;title\x07done", "done"),
            ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
            ("plain <b>text</b>", "plain <b>text</b>"),
            ("\x1b[2K\x1b[1Gprogress", "progress"),
            ("\x1bcreset", "reset"),
            ("\x1b]0;title\nand after", "\nand after"),
        ];
        for (input, expected) in cases {
            assert_eq!(strip_ansi(input), expected, "{input:?}");
        }
    }
}
