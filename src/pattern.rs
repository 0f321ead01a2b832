//! `matches` patterns: checked when the config loads, compiled on first use, and shared between
//! the hooks that write the same text.
//!
//! Rules only ask whether a pattern matches, never what it captured, so patterns are compiled
//! without capture states (no one-pass DFA, a smaller NFA): about a third of what `regex::Regex`
//! holds. The syntax, flags and size limits are `regex::Regex`'s, so no pattern changes meaning.
//! A hook that is never triggered holds only the pattern's text.

use std::fmt;
use std::sync::{Arc, OnceLock};

use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::syntax;
use regex_automata::MatchKind;

use crate::by_text::{ByText, FromText};

/// `regex::Regex`'s limits: the compiled program and the lazy DFA's cache, in bytes.
const NFA_SIZE_LIMIT: usize = 10 * (1 << 20);
const DFA_CACHE_CAPACITY: usize = 2 * (1 << 20);

/// A valid pattern. Clones share the text and the compiled form.
#[derive(Clone)]
pub struct Pattern(Arc<Compiled>);

struct Compiled {
    text: Box<str>,
    /// Built on the first `is_match`; `None` only if building fails then, which it cannot for a
    /// text that built when the config loaded (the same text, the same settings).
    regex: OnceLock<Option<Regex>>,
}

impl Pattern {
    /// Checks the pattern by compiling it once (then dropped); the message says why it is not
    /// valid, as `regex::Regex::new` would.
    pub fn new(text: &str) -> Result<Pattern, String> {
        build(text)?;
        Ok(Pattern(Arc::new(Compiled {
            text: text.into(),
            regex: OnceLock::new(),
        })))
    }

    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// Whether the pattern matches anywhere in `value` (unanchored: write `^...$` to anchor).
    pub fn is_match(&self, value: &str) -> bool {
        self.0
            .regex
            .get_or_init(|| build(&self.0.text).ok())
            .as_ref()
            .is_some_and(|regex| regex.is_match(value))
    }

    /// Whether the two are one compiled pattern.
    pub fn is_shared_with(&self, other: &Pattern) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.as_str()).finish()
    }
}

/// The patterns of one config load, by text: a text written by many hooks is checked and
/// compiled once, and held once.
pub type Patterns = ByText<Pattern>;

impl FromText for Pattern {
    fn from_text(text: &str) -> Result<Pattern, String> {
        Pattern::new(text)
    }
}

/// Compiles as `regex::Regex::new` does, except that no capture group is kept.
fn build(text: &str) -> Result<Regex, String> {
    let config = meta::Config::new()
        .match_kind(MatchKind::LeftmostFirst)
        .utf8_empty(true)
        .nfa_size_limit(Some(NFA_SIZE_LIMIT))
        .hybrid_cache_capacity(DFA_CACHE_CAPACITY)
        .which_captures(WhichCaptures::None)
        // Another crate of the build (tracing-subscriber's filter) turns on regex-automata's
        // full DFAs, which would then be built for every small pattern at load: a third of
        // `check`'s time, and memory. The lazy DFA matches as fast once warm.
        .dfa(false);
    meta::Builder::new()
        .configure(config)
        .syntax(syntax::Config::new().utf8(true))
        .build(text)
        .map_err(|error| {
            // The same words as `regex::Error`'s.
            if let Some(limit) = error.size_limit() {
                format!("Compiled regex exceeds size limit of {limit} bytes.")
            } else if let Some(syntax_error) = error.syntax_error() {
                syntax_error.to_string()
            } else {
                error.to_string()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Matches as `regex::Regex::is_match` does, on the same cases.
    #[test]
    fn matches_as_the_regex_crate_does() {
        let cases: &[(&str, &str)] = &[
            ("^refs/heads/(main|release-1)$", "refs/heads/main"),
            ("^refs/heads/(main|release-1)$", "refs/heads/release-12"),
            (r"^src/", "src/main.rs"),
            (r"\bfix\b", "a fix here"),
            (r"(?i)HELLO", "hello"),
            (r"^\w+$", "déjà"),
            (r"^.$", "é"),
            ("", ""),
            ("a*", "bbb"),
            (r"^\d{3}$", "١٢٣"),
        ];
        for (text, value) in cases {
            let expected = regex::Regex::new(text).unwrap().is_match(value);
            let pattern = Pattern::new(text).unwrap();
            assert_eq!(pattern.is_match(value), expected, "{text} on {value}");
            assert_eq!(pattern.as_str(), *text);
        }
    }

    /// Refuses what `regex::Regex::new` refuses, with the same last line of explanation.
    #[test]
    fn refuses_what_the_regex_crate_refuses() {
        let last_line = |message: &str| message.lines().last().unwrap_or("").trim().to_string();
        for text in ["(", "a{2,1}", "(?=a)", r"\p{Nope}", "x{100000}{100000}"] {
            let expected = regex::Regex::new(text).unwrap_err().to_string();
            let found = Pattern::new(text).unwrap_err();
            assert_eq!(last_line(&found), last_line(&expected), "{text}");
        }
    }

    #[test]
    fn one_text_is_one_pattern_within_a_load() {
        let mut patterns = Patterns::default();
        let first = patterns.get("^refs/heads/main$").unwrap();
        let again = patterns.get("^refs/heads/main$").unwrap();
        let other = patterns.get("^refs/heads/dev$").unwrap();
        assert!(first.is_shared_with(&again));
        assert!(!first.is_shared_with(&other));
        assert!(patterns.get("(").is_err());
    }
}
