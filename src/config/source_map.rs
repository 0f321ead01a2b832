//! Where each key and value of a YAML document stands in the file, so config errors can point at it.
//!
//! serde_yaml parses the document; this pass reads the same text through yaml-rust2's marked events.
//! It notes the lines that hold a secret (the value of any `secret`, `admin_token` or `store` key),
//! which diagnostics never quote, notes every key written twice in one mapping (which serde_yaml
//! refuses at the first it meets), and stops at collections nested deeper than [`MAX_DEPTH`].
//! Places (a line and column by path) are found by a second pass, [`SourceMap::places`], only for
//! the paths that diagnostics name once decoding is done: a valid file keeps no place at all.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path into the document.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path into the document, such as `hooks[0].run.command`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YamlPath(pub Vec<Segment>);

impl YamlPath {
    pub fn key(&self, key: &str) -> YamlPath {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_string()));
        path
    }

    pub fn index(&self, index: usize) -> YamlPath {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Whether a problem is about a mapping key itself (an unknown key) or about its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Key,
    Value,
}

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// How deep collections may nest: serde_yaml's own limit, checked here first, because a YAML
/// scanner's work for each token grows with the depth of the flow collections around it.
pub const MAX_DEPTH: usize = 128;

/// Keys whose values are secrets: the lines of those values are never quoted. `store` is one,
/// since a PostgreSQL URL can hold a password.
const SECRET_KEYS: &[&str] = &["secret", "admin_token", "store"];

/// A key written a second time in the same mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateKey {
    pub key: String,
    pub first: Position,
    pub second: Position,
}

#[derive(Default)]
pub struct SourceMap {
    secret_lines: Vec<usize>,
    duplicates: Vec<DuplicateKey>,
    too_deep: Option<Position>,
}

impl SourceMap {
    /// Builds the map, without places. Text that does not parse gives a map up to the error;
    /// serde_yaml reports it.
    pub fn new(text: &str) -> SourceMap {
        SourceMap::read(text, None).0
    }

    /// Builds the map, and finds the places of the `wanted` paths.
    fn read<'w>(text: &str, wanted: Option<Wanted<'w>>) -> (SourceMap, Option<Wanted<'w>>) {
        let mut recorder = Recorder::new(text, wanted);
        let mut parser = Parser::new_from_str(text);
        loop {
            match parser.next_token() {
                Ok((Event::StreamEnd, _)) => break,
                Ok((event, mark)) => {
                    if !recorder.on_event(event, mark) {
                        break;
                    }
                }
                // yaml-rust2 stops at 256 nested flow collections, which serde_yaml's scanner
                // would go on reading, in time that grows with the square of the depth.
                Err(error) if error.info().contains("recursion limit") => {
                    let mark = error.marker();
                    recorder.map.too_deep = Some(Position {
                        line: mark.line(),
                        column: mark.col() + 1,
                    });
                    break;
                }
                // serde_yaml reports the problems of text that does not parse, and quotes the line
                // it stops at, which may be any line of a secret the scanner failed in (the two
                // scanners need not stop at the same place): from its key on, nothing is quoted.
                Err(_) => {
                    if recorder.expecting_secret() {
                        let lines = recorder.last_line..=text.lines().count().max(1);
                        recorder.map.secret_lines.extend(lines);
                    }
                    break;
                }
            }
        }
        recorder.finish()
    }

    /// The 1-based lines that hold (part of) a secret's value.
    pub fn secret_lines(&self) -> &[usize] {
        &self.secret_lines
    }

    /// Every key written again in a mapping that already has it, in file order.
    pub fn duplicate_keys(&self) -> &[DuplicateKey] {
        &self.duplicates
    }

    /// Where a collection first nests deeper than [`MAX_DEPTH`]; the map stops there.
    pub fn too_deep(&self) -> Option<Position> {
        self.too_deep
    }

    /// The position of each path (of its key or its value), or of its nearest ancestor that has
    /// one: one more pass over the text, which records the places of these paths only.
    pub fn places(text: &str, wanted: &[(&YamlPath, Part)]) -> Vec<Option<Position>> {
        let paths = wanted.iter().map(|(path, _)| *path).collect();
        let (_, found) = SourceMap::read(text, Some(Wanted::new(paths)));
        let found = found.expect("the wanted paths come back");
        wanted
            .iter()
            .enumerate()
            .map(|(index, (_, part))| found.position(index, *part))
            .collect()
    }
}

/// The paths whose places are looked for, and what was found for each. The paths are kept
/// sorted (by index), so that the paths under any one path are side by side: no set of every
/// ancestor of every path is built, nor a map of their places, which for a file of many hooks
/// that each have a warning took more memory than the hooks.
struct Wanted<'w> {
    paths: Vec<&'w YamlPath>,
    /// Indexes into `paths`, in the order of the paths.
    order: Vec<usize>,
    found: Vec<Found>,
}

/// What was found for one wanted path.
#[derive(Clone, Copy, Default)]
struct Found {
    key: Option<Position>,
    value: Option<Position>,
    /// Of the ancestors found, the nearest: its depth, its key's and its value's places.
    ancestor: Option<(usize, Option<Position>, Option<Position>)>,
}

impl<'w> Wanted<'w> {
    fn new(paths: Vec<&'w YamlPath>) -> Wanted<'w> {
        let mut order: Vec<usize> = (0..paths.len()).collect();
        order.sort_by(|a, b| paths[*a].cmp(paths[*b]));
        let found = vec![Found::default(); paths.len()];
        Wanted {
            paths,
            order,
            found,
        }
    }

    /// The wanted paths under `path` (itself included), as a range of `order`.
    fn under(&self, path: &YamlPath) -> std::ops::Range<usize> {
        let start = self
            .order
            .partition_point(|&index| self.paths[index] < path);
        let count = self.order[start..]
            .iter()
            .take_while(|&&index| self.paths[index].0.starts_with(&path.0))
            .count();
        start..start + count
    }

    /// Notes where the key (a later one wins) or the value (the first wins) of `path` is.
    fn record(&mut self, path: &YamlPath, part: Part, position: Position) {
        let depth = path.0.len();
        for at in self.under(path) {
            let index = self.order[at];
            let found = &mut self.found[index];
            if self.paths[index].0.len() == depth {
                match part {
                    Part::Key => found.key = Some(position),
                    Part::Value => {
                        found.value.get_or_insert(position);
                    }
                }
                continue;
            }
            let ancestor = found.ancestor.get_or_insert((depth, None, None));
            if ancestor.0 < depth {
                *ancestor = (depth, None, None);
            }
            if ancestor.0 == depth {
                match part {
                    Part::Key => ancestor.1 = Some(position),
                    Part::Value => {
                        ancestor.2.get_or_insert(position);
                    }
                }
            }
        }
    }

    /// The place of wanted path `index`: its own, or its nearest ancestor's (its key first).
    fn position(&self, index: usize, part: Part) -> Option<Position> {
        let found = &self.found[index];
        let own = match part {
            Part::Key => found.key.or(found.value),
            Part::Value => found.value.or(found.key),
        };
        own.or_else(|| found.ancestor.and_then(|(_, key, value)| key.or(value)))
    }
}

enum Frame {
    Mapping {
        path: YamlPath,
        pending_key: Option<String>,
        /// Inside the value of a secret key: every value below is a secret too.
        secret: bool,
        /// Where each scalar key of this mapping was first written.
        seen: HashMap<String, Position>,
    },
    Sequence {
        path: YamlPath,
        next: usize,
        secret: bool,
    },
}

/// Whether a key's value is a secret: one of [`SECRET_KEYS`], or a likely misspelling of one,
/// whose value was meant as a secret all the same.
fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.contains(&key) || super::decode::did_you_mean(key, SECRET_KEYS).is_some()
}

/// A secret scalar, or one with an anchor (which an alias may make a secret later), whose extent
/// is known once the next event says where the next node starts.
struct OpenSecret {
    start_index: usize,
    start_line: usize,
    secret: bool,
    /// The scalar's anchor, 0 for none.
    anchor: usize,
}

struct Recorder<'t, 'w> {
    map: SourceMap,
    stack: Vec<Frame>,
    documents: usize,
    open_secret: Option<OpenSecret>,
    /// The first and last lines of each anchored scalar that is not a secret reference, by anchor.
    anchors: HashMap<usize, (usize, usize)>,
    /// The line of the latest event, where a node the scanner fails in began at the earliest.
    last_line: usize,
    /// A cursor into the text that only moves forward: (char index, byte offset).
    text: &'t str,
    cursor: (usize, usize),
    /// The paths whose places are recorded.
    wanted: Option<Wanted<'w>>,
}

impl<'t, 'w> Recorder<'t, 'w> {
    fn new(text: &'t str, wanted: Option<Wanted<'w>>) -> Recorder<'t, 'w> {
        Recorder {
            map: SourceMap::default(),
            stack: Vec::new(),
            documents: 0,
            open_secret: None,
            anchors: HashMap::new(),
            last_line: 1,
            text,
            cursor: (0, 0),
            wanted,
        }
    }

    fn finish(mut self) -> (SourceMap, Option<Wanted<'w>>) {
        let end = self.text.chars().count();
        self.close_secret(end);
        (self.map, self.wanted)
    }

    /// Whether the node that would come next is (part of) a secret.
    fn expecting_secret(&self) -> bool {
        match self.stack.last() {
            None => false,
            Some(Frame::Sequence { secret, .. }) => *secret,
            Some(Frame::Mapping {
                pending_key,
                secret,
                ..
            }) => *secret || pending_key.as_deref().is_some_and(is_secret_key),
        }
    }

    /// Decides where the node that starts here belongs: a key of the current mapping, or a value
    /// at a path (with whether it is a secret).
    fn place(&mut self, scalar: Option<&str>, position: Position) -> Option<(YamlPath, bool)> {
        match self.stack.last_mut() {
            None => Some((YamlPath::default(), false)),
            Some(Frame::Sequence { path, next, secret }) => {
                let path = path.index(*next);
                *next += 1;
                Some((path, *secret))
            }
            Some(Frame::Mapping {
                path,
                pending_key,
                secret,
                seen,
            }) => match pending_key.take() {
                Some(key) => {
                    let is_secret = *secret || is_secret_key(&key);
                    Some((path.key(&key), is_secret))
                }
                None => {
                    // This node is a key. Complex (non-scalar) keys are not located.
                    let key = scalar.unwrap_or("?").to_string();
                    if scalar.is_some() {
                        if let Some(first) = seen.get(&key) {
                            self.map.duplicates.push(DuplicateKey {
                                key: key.clone(),
                                first: *first,
                                second: position,
                            });
                        } else {
                            seen.insert(key.clone(), position);
                        }
                    }
                    if let Some(wanted) = &mut self.wanted {
                        wanted.record(&path.key(&key), Part::Key, position);
                    }
                    *pending_key = Some(key);
                    None
                }
            },
        }
    }

    fn record_value(&mut self, path: &YamlPath, position: Position) {
        if let Some(wanted) = &mut self.wanted {
            wanted.record(path, Part::Value, position);
        }
    }

    /// Notes the lines of the open secret scalar, which ends before `next_index` (a char index):
    /// from its first line to the last line that has more than whitespace and YAML punctuation.
    fn close_secret(&mut self, next_index: usize) {
        let Some(open) = self.open_secret.take() else {
            return;
        };
        let (mut index, mut offset) = self.cursor;
        let mut chars = self.text[offset..].chars();
        while index < open.start_index {
            let Some(c) = chars.next() else { break };
            index += 1;
            offset += c.len_utf8();
        }
        let (mut line, mut last_line) = (open.start_line, open.start_line);
        while index < next_index {
            let Some(c) = chars.next() else { break };
            index += 1;
            offset += c.len_utf8();
            if c == '\n' {
                line += 1;
            } else if !c.is_whitespace() && !"-,[]{}?:".contains(c) {
                last_line = line;
            }
        }
        self.cursor = (index, offset);
        if open.secret {
            self.map.secret_lines.extend(open.start_line..=last_line);
        }
        if open.anchor != 0 {
            self.anchors
                .insert(open.anchor, (open.start_line, last_line));
        }
    }

    /// Takes one event; `false` once the rest of the text is not to be read.
    fn on_event(&mut self, event: Event, mark: Marker) -> bool {
        let position = Position {
            line: mark.line(),
            column: mark.col() + 1,
        };
        self.close_secret(mark.index());
        self.last_line = position.line;
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                // serde_yaml refuses a second document; its positions are not needed.
                return self.documents == 1;
            }
            Event::Scalar(text, _, anchor, _) => {
                if let Some((path, secret)) = self.place(Some(&text), position) {
                    self.record_value(&path, position);
                    // `env:NAME`, `file:PATH` and `cred:NAME` only say where a secret is.
                    let reference = ["env:", "file:", "cred:"]
                        .iter()
                        .any(|prefix| text.starts_with(prefix));
                    if !reference && (secret || anchor != 0) {
                        self.open_secret = Some(OpenSecret {
                            start_index: mark.index(),
                            start_line: position.line,
                            secret,
                            anchor,
                        });
                    }
                }
            }
            Event::Alias(anchor) => {
                if let Some((path, secret)) = self.place(None, position) {
                    self.record_value(&path, position);
                    if secret {
                        self.map.secret_lines.push(position.line);
                        // The secret is written where its anchor is, maybe under any key. Its
                        // lines are noted once, however many aliases follow (loading stays linear).
                        if let Some((first, last)) = self.anchors.remove(&anchor) {
                            self.map.secret_lines.extend(first..=last);
                        }
                    }
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.map.too_deep = Some(position);
                    return false;
                }
                let is_mapping = matches!(event, Event::MappingStart(..));
                // A collection used as a key still needs a frame; give it a path nobody asks for.
                let (path, secret) = match self.place(None, position) {
                    Some((path, secret)) => {
                        self.record_value(&path, position);
                        (path, secret)
                    }
                    None => (
                        YamlPath(vec![Segment::Key("\u{0}complex-key".into())]),
                        false,
                    ),
                };
                self.stack.push(if is_mapping {
                    Frame::Mapping {
                        path,
                        pending_key: None,
                        secret,
                        seen: HashMap::new(),
                    }
                } else {
                    Frame::Sequence {
                        path,
                        next: 0,
                        secret,
                    }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
server:
  listen: [\"127.0.0.1:9000\"]
hooks:
  - id: deploy
    run:
      comand: [echo]
  - id: other
";

    fn check(path: YamlPath, part: Part, expected: (usize, usize)) {
        let position = SourceMap::places(TEXT, &[(&path, part)])[0].expect("a position");
        assert_eq!((position.line, position.column), expected, "{path}");
    }

    #[test]
    fn locates_keys_and_values() {
        let root = YamlPath::default();
        check(root.key("server"), Part::Key, (1, 1));
        check(root.key("server").key("listen"), Part::Value, (2, 11));
        check(
            root.key("server").key("listen").index(0),
            Part::Value,
            (2, 12),
        );
        check(root.key("hooks").index(0).key("id"), Part::Value, (4, 9));
        check(
            root.key("hooks").index(0).key("run").key("comand"),
            Part::Key,
            (6, 7),
        );
        check(root.key("hooks").index(1).key("id"), Part::Key, (7, 5));
        // A path that is not in the file falls back to its nearest ancestor.
        check(
            root.key("hooks").index(0).key("run").key("workdir"),
            Part::Value,
            (5, 5),
        );
        assert_eq!(
            root.key("hooks").index(0).key("run").to_string(),
            "hooks[0].run"
        );
    }

    /// A key, where it was first written and where again, as (line, column).
    type Twice = (&'static str, (usize, usize), (usize, usize));

    #[test]
    fn notes_keys_written_twice_in_one_mapping() {
        let cases: &[(&str, &[Twice])] = &[
            ("a: 1\nb: 2\n", &[]),
            ("a: 1\na: 2\n", &[("a", (1, 1), (2, 1))]),
            // The same key in two different mappings is no duplicate.
            ("x: {a: 1}\ny: {a: 2}\n", &[]),
            ("x: {a: 1, b: 2, a: 3}\n", &[("a", (1, 5), (1, 17))]),
            (
                "hooks:\n  - id: a\n    run: {command: [x]}\n    run: {shell: y}\n  - id: a\n",
                &[("run", (3, 5), (4, 5))],
            ),
            (
                "a: 1\na: 2\na: 3\n",
                &[("a", (1, 1), (2, 1)), ("a", (1, 1), (3, 1))],
            ),
        ];
        for (text, expected) in cases {
            let map = SourceMap::new(text);
            let found: Vec<_> = map
                .duplicate_keys()
                .iter()
                .map(|d| {
                    (
                        d.key.as_str(),
                        (d.first.line, d.first.column),
                        (d.second.line, d.second.column),
                    )
                })
                .collect();
            assert_eq!(found, *expected, "{text}");
        }
    }
}
