//! Where each key and value of a YAML document stands in the file, so config errors can point at it.
//!
//! serde_yaml parses the document; this pass reads the same text through yaml-rust2's marked events
//! and records a line and column for every mapping key and every value, by path.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path into the document.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path into the document, such as `hooks[0].run.command`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
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

    fn parent(&self) -> Option<YamlPath> {
        let mut segments = self.0.clone();
        segments.pop()?;
        Some(YamlPath(segments))
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

#[derive(Default)]
pub struct SourceMap {
    keys: HashMap<YamlPath, Position>,
    values: HashMap<YamlPath, Position>,
}

impl SourceMap {
    /// Builds the map. Text that does not parse gives an empty map; serde_yaml reports that error.
    pub fn new(text: &str) -> SourceMap {
        let mut recorder = Recorder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut recorder, false);
        recorder.map
    }

    /// The position of a path, or of its nearest ancestor that has one.
    pub fn position(&self, path: &YamlPath, part: Part) -> Option<Position> {
        let own = match part {
            Part::Key => self.keys.get(path).or_else(|| self.values.get(path)),
            Part::Value => self.values.get(path).or_else(|| self.keys.get(path)),
        };
        match own {
            Some(position) => Some(*position),
            None => self.position(&path.parent()?, Part::Key),
        }
    }
}

enum Frame {
    Mapping {
        path: YamlPath,
        pending_key: Option<String>,
    },
    Sequence {
        path: YamlPath,
        next: usize,
    },
}

#[derive(Default)]
struct Recorder {
    map: SourceMap,
    stack: Vec<Frame>,
    documents: usize,
}

impl Recorder {
    /// Decides where the node that starts here belongs: a key of the current mapping, or a value at a path.
    fn place(&mut self, scalar: Option<&str>, position: Position) -> Option<YamlPath> {
        match self.stack.last_mut() {
            None => Some(YamlPath::default()),
            Some(Frame::Sequence { path, next }) => {
                let path = path.index(*next);
                *next += 1;
                Some(path)
            }
            Some(Frame::Mapping { path, pending_key }) => match pending_key.take() {
                Some(key) => Some(path.key(&key)),
                None => {
                    // This node is a key. Complex (non-scalar) keys are not located.
                    let key = scalar.unwrap_or("?").to_string();
                    self.map.keys.insert(path.key(&key), position);
                    *pending_key = Some(key);
                    None
                }
            },
        }
    }

    fn record_value(&mut self, path: Option<YamlPath>, position: Position) -> Option<YamlPath> {
        let path = path?;
        self.map.values.entry(path.clone()).or_insert(position);
        Some(path)
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let position = Position {
            line: mark.line(),
            column: mark.col() + 1,
        };
        if self.documents > 1 {
            return;
        }
        match event {
            Event::DocumentStart => self.documents += 1,
            Event::Scalar(text, ..) => {
                let path = self.place(Some(&text), position);
                self.record_value(path, position);
            }
            Event::Alias(_) => {
                let path = self.place(None, position);
                self.record_value(path, position);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_mapping = matches!(event, Event::MappingStart(..));
                // A collection used as a key still needs a frame; give it a path nobody asks for.
                let path = self
                    .place(None, position)
                    .and_then(|path| self.record_value(Some(path), position))
                    .unwrap_or_else(|| YamlPath(vec![Segment::Key("\u{0}complex-key".into())]));
                self.stack.push(if is_mapping {
                    Frame::Mapping {
                        path,
                        pending_key: None,
                    }
                } else {
                    Frame::Sequence { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
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
        let map = SourceMap::new(TEXT);
        let position = map.position(&path, part).expect("a position");
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
}
