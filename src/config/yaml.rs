//! A YAML reader that builds serde_yaml (serde_norway) `Value`s from yaml-rust2's pull parser,
//! node by node, without first collecting every event of the document as serde_norway's loader
//! does. The items of the top-level `hooks` list can be read one at a time ([`split`], then
//! [`Split::for_each_hook`]), so a config of many hooks never holds all of their trees at once.
//!
//! The values are those `serde_yaml::from_str::<Value>` gives, and the documents it refuses are
//! refused: scalars resolve as its `visit_untagged_scalar` does (`~`, `null`, `true`, `0x1F`,
//! `.inf`...; quoted and block scalars are strings), `!tag`s become `Value::Tagged`, `!!int` and
//! the other core tags are checked, a key written twice in one mapping is refused, collections
//! nest at most [`MAX_DEPTH`] deep (aliases included), an alias is a copy of its anchor's value,
//! and a document whose aliases would be replayed more than 100 times its number of events (a
//! "billion laughs") is refused, as serde_norway's repetition limit does. One more limit of our
//! own: aliases may copy at most [`MAX_ALIAS_NODES`] nodes in all (a text counting once per 64
//! bytes), since serde_norway's limit counts the copies, not their size. Anchored nodes are kept
//! for their aliases only when the text has an alias, and at most [`MAX_ANCHORED_NODES`] of them
//! (a text that anchors more and aliases is refused).

use std::collections::{HashMap, HashSet};
use std::num::ParseIntError;
use std::str::Chars;

use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};
use yaml_rust2::parser::{Event, Parser, Tag as YamlTag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::source_map::{Position, MAX_DEPTH};

/// serde_norway refuses a document once its aliases were followed more than this many times
/// its number of events.
const REPETITION_FACTOR: usize = 100;

/// How many nodes aliases may copy in one document, all aliases together: a document of a few
/// kilobytes could otherwise make gigabytes of copies within serde_norway's repetition limit.
/// A scalar counts once per [`TEXT_PER_NODE`] bytes of its text, so copies of a long text count too.
pub const MAX_ALIAS_NODES: usize = 1_000_000;

/// The bytes of text that weigh as much as one node in [`MAX_ALIAS_NODES`] and [`MAX_ANCHORED_NODES`].
const TEXT_PER_NODE: usize = 64;

/// How many nodes the anchored values kept for aliases may hold, all together (nested anchors
/// each keep their own copy): past it, the text is refused.
const MAX_ANCHORED_NODES: usize = 100_000;

/// Why a text was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub position: Option<Position>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not YAML that serde_norway takes: yaml-rust2 could not parse it, or it breaks one of
    /// serde_norway's rules (a key twice, a limit, more than one document...).
    Invalid,
    /// The aliases would copy more than [`MAX_ALIAS_NODES`] nodes, or the anchored values kept
    /// for them hold more than [`MAX_ANCHORED_NODES`].
    TooLarge,
    /// Text this reader cannot read exactly as serde_norway does (an anchor name defined twice
    /// and aliased, an anchor or alias name libyaml may not take): read it with serde_norway.
    Unsupported,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some(position) => write!(
                f,
                "{} at line {} column {}",
                self.message, position.line, position.column
            ),
            None => f.write_str(&self.message),
        }
    }
}

fn error(kind: ErrorKind, message: impl Into<String>, mark: Option<Marker>) -> Error {
    Error {
        kind,
        message: message.into(),
        position: mark.map(|mark| Position {
            line: mark.line(),
            column: mark.col() + 1,
        }),
    }
}

fn invalid(message: impl Into<String>, mark: Marker) -> Error {
    error(ErrorKind::Invalid, message, Some(mark))
}

/// The whole document, as `serde_yaml::from_str::<Value>` gives it.
pub fn from_str(text: &str) -> Result<Value, Error> {
    let has_aliases = left_to_serde(text)?;
    let mut reader = Reader::new(text, Mode::Whole, has_aliases);
    let value = reader.document()?;
    reader.finish()?;
    Ok(value)
}

/// A document read without the items of its top-level `hooks` list, when that list is a plain
/// one (no anchor, no tag) in a plain mapping: its items are read by [`Split::for_each_hook`].
pub struct Split<'t> {
    /// The document; when `streamed`, its `hooks` is an empty list.
    pub document: Value,
    /// Whether the items of `hooks` were left out.
    pub streamed: bool,
    text: &'t str,
    anchors: HashMap<usize, Anchor>,
    has_aliases: bool,
}

/// Reads the whole text once, checking all of it (the `hooks` items included) and building
/// everything but the items of `hooks` (and their anchored nodes, which later aliases may use).
pub fn split(text: &str) -> Result<Split<'_>, Error> {
    let has_aliases = left_to_serde(text)?;
    let mut reader = Reader::new(text, Mode::SkipHooks, has_aliases);
    let document = reader.document()?;
    reader.finish()?;
    Ok(Split {
        document,
        streamed: reader.hooks_seen,
        text,
        anchors: reader.anchors,
        has_aliases,
    })
}

impl Split<'_> {
    /// Reads the items of `hooks` again, one at a time, and gives each (with its index) to
    /// `each`; each item's tree is dropped before the next is built. Nothing when not `streamed`.
    /// Once only: the anchors are handed to the second pass.
    pub fn for_each_hook(&mut self, mut each: impl FnMut(usize, Value)) -> Result<(), Error> {
        if !self.streamed {
            return Ok(());
        }
        let mut reader = Reader::new(self.text, Mode::OnlyHooks(&mut each), self.has_aliases);
        // The anchors outside the items are known already: the text is not built again.
        reader.anchors = std::mem::take(&mut self.anchors);
        reader.document()?;
        Ok(())
    }
}

/// What an alias copies, and what it costs serde_norway to replay it.
#[derive(Clone)]
struct Anchor {
    value: Value,
    /// How many collections nest in it (0 for a scalar).
    height: usize,
    /// How many alias jumps serde_norway makes replaying it.
    jumps: usize,
    /// How many nodes it has.
    nodes: usize,
}

/// One node read: its value when it was built, and what an anchor on it would record.
struct Node {
    value: Option<Value>,
    height: usize,
    jumps: usize,
    nodes: usize,
}

enum Mode<'f> {
    /// Everything is built.
    Whole,
    /// Everything is read; the items of the top-level `hooks` list are not built (but their
    /// anchored nodes are).
    SkipHooks,
    /// Only the items of the top-level `hooks` list are built, each given to the function; the
    /// reading stops after the list.
    OnlyHooks(&'f mut dyn FnMut(usize, Value)),
}

struct Reader<'t, 'f> {
    parser: Parser<Chars<'t>>,
    mode: Mode<'f>,
    /// Whether anchored nodes are built (and recorded) even where nothing else is: false while
    /// skipping outside the `hooks` items in [`Mode::OnlyHooks`], whose anchors are known.
    record_skipped: bool,
    anchors: HashMap<usize, Anchor>,
    /// Whether the text has an alias, so anchored values are kept for it.
    keep_anchors: bool,
    /// The nodes of the values kept in `anchors`, all together.
    anchored_nodes: usize,
    /// The events of the document, as serde_norway's loader counts them.
    events: usize,
    /// The alias jumps serde_norway would make, and the nodes the aliases copy.
    jumps: usize,
    alias_nodes: usize,
    /// Whether the top-level `hooks` list was found plain, and its items left to the stream.
    hooks_seen: bool,
    /// Whether the end of the stream was read.
    ended: bool,
}

impl<'t, 'f> Reader<'t, 'f> {
    fn new(text: &'t str, mode: Mode<'f>, keep_anchors: bool) -> Reader<'t, 'f> {
        // libyaml skips a byte order mark; yaml-rust2 would read it as text.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let record_skipped = !matches!(mode, Mode::OnlyHooks(_));
        Reader {
            parser: Parser::new_from_str(text),
            mode,
            record_skipped,
            anchors: HashMap::new(),
            keep_anchors,
            anchored_nodes: 0,
            events: 0,
            jumps: 0,
            alias_nodes: 0,
            hooks_seen: false,
            ended: false,
        }
    }

    fn next(&mut self) -> Result<(Event, Marker), Error> {
        let (event, mark) = self
            .parser
            .next_token()
            .map_err(|scan| invalid(scan.info().to_string(), *scan.marker()))?;
        if matches!(
            event,
            Event::Alias(_)
                | Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::SequenceEnd
                | Event::MappingStart(..)
                | Event::MappingEnd
        ) {
            self.events += 1;
        }
        Ok((event, mark))
    }

    /// The first document's root value (null for an empty stream).
    fn document(&mut self) -> Result<Value, Error> {
        loop {
            let (event, mark) = self.next()?;
            match event {
                Event::StreamStart => {}
                Event::StreamEnd => {
                    // serde_norway's loader gives an empty stream one (void) event.
                    self.events = 1;
                    self.ended = true;
                    return Ok(Value::Null);
                }
                Event::DocumentStart => break,
                other => return Err(invalid(format!("unexpected {other:?}"), mark)),
            }
        }
        let (event, mark) = self.next()?;
        self.root(event, mark)
    }

    /// After the first document: the end of the stream, and the limits that need the number of
    /// events of the whole document.
    fn finish(&mut self) -> Result<(), Error> {
        if !self.ended {
            loop {
                let (event, mark) = self.next()?;
                match event {
                    Event::DocumentEnd => {}
                    Event::StreamEnd => break,
                    _ => {
                        return Err(invalid(
                            "deserializing from YAML containing more than one document is not supported",
                            mark,
                        ))
                    }
                }
            }
        }
        if self.jumps > self.events.max(1).saturating_mul(REPETITION_FACTOR) {
            return Err(error(ErrorKind::Invalid, "repetition limit exceeded", None));
        }
        Ok(())
    }

    fn root(&mut self, event: Event, mark: Marker) -> Result<Value, Error> {
        let plain_mapping = matches!(event, Event::MappingStart(0, None));
        if !plain_mapping || matches!(self.mode, Mode::Whole) {
            let build = !matches!(self.mode, Mode::OnlyHooks(_));
            return Ok(self
                .node(event, mark, 0, build)?
                .value
                .unwrap_or(Value::Null));
        }
        let only_hooks = matches!(self.mode, Mode::OnlyHooks(_));
        let mut mapping = Mapping::new();
        loop {
            let (event, mark) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let key = self.node(event, mark, 1, true)?.value.unwrap_or_default();
            if mapping.contains_key(&key) {
                return Err(duplicate(&key, mark));
            }
            let (event, mark) = self.next()?;
            let hooks =
                key.as_str() == Some("hooks") && matches!(event, Event::SequenceStart(0, None));
            let value = if hooks {
                self.hooks_items()?
            } else {
                self.node(event, mark, 1, !only_hooks)?.value
            };
            if hooks && only_hooks {
                // The stream is done: the rest of the text was checked by the first pass.
                return Ok(Value::Null);
            }
            mapping.insert(key, value.unwrap_or_default());
        }
        Ok(Value::Mapping(mapping))
    }

    /// The items of the top-level `hooks` list, past its start: skipped in the first pass (an
    /// empty list stands for them), each built and handed on in the second.
    fn hooks_items(&mut self) -> Result<Option<Value>, Error> {
        self.hooks_seen = true;
        let mut index = 0;
        loop {
            let (event, mark) = self.next()?;
            if matches!(event, Event::SequenceEnd) {
                break;
            }
            let build = matches!(self.mode, Mode::OnlyHooks(_));
            let node = self.node(event, mark, 2, build)?;
            if let (Mode::OnlyHooks(each), Some(value)) = (&mut self.mode, node.value) {
                each(index, value);
            }
            index += 1;
        }
        Ok(Some(Value::Sequence(Vec::new())))
    }

    /// One node, whose first event was just read, `depth` collections deep. Its value is built
    /// when `build` (or when it has an anchor, for the aliases that may follow); scalars are
    /// always resolved and keys always built, since serde_norway refuses a bad scalar or a
    /// duplicate key wherever it is.
    fn node(
        &mut self,
        event: Event,
        mark: Marker,
        depth: usize,
        build: bool,
    ) -> Result<Node, Error> {
        match event {
            Event::Alias(id) => self.alias(id, mark, depth, build),
            Event::Scalar(text, style, anchor, tag) => {
                // An empty block scalar is one line break for yaml-rust2 whatever its chomping,
                // empty for libyaml unless kept (`|+`), which the event does not tell.
                let block = matches!(style, TScalarStyle::Literal | TScalarStyle::Folded);
                if block && text.bytes().all(|b| b == b'\n') {
                    return Err(error(
                        ErrorKind::Unsupported,
                        "an empty block scalar",
                        Some(mark),
                    ));
                }
                // A plain scalar starting with `:` in a flow collection is one for yaml-rust2,
                // an empty key or value and a scalar for libyaml.
                if style == TScalarStyle::Plain && text.starts_with(':') {
                    return Err(error(
                        ErrorKind::Unsupported,
                        "a plain scalar starting with `:`",
                        Some(mark),
                    ));
                }
                let nodes = 1 + text.len() / TEXT_PER_NODE;
                let value = scalar(text, style, tag.as_ref(), mark)?;
                let node = Node {
                    value: Some(value),
                    height: 0,
                    jumps: 0,
                    nodes,
                };
                self.anchored(anchor, node, build, mark)
            }
            Event::SequenceStart(anchor, tag) => {
                if depth >= MAX_DEPTH {
                    return Err(recursion(mark));
                }
                let build_here = build || (anchor != 0 && self.record_skipped);
                let mut items = Vec::new();
                let (mut height, mut jumps, mut nodes) = (1, 0usize, 1usize);
                loop {
                    let (event, mark) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    let item = self.node(event, mark, depth + 1, build_here)?;
                    height = height.max(item.height + 1);
                    jumps = jumps.saturating_add(item.jumps);
                    nodes = nodes.saturating_add(item.nodes);
                    if let Some(value) = item.value {
                        items.push(value);
                    }
                }
                let node = Node {
                    value: build_here.then(|| tagged(tag.as_ref(), Value::Sequence(items))),
                    height,
                    jumps,
                    nodes,
                };
                self.anchored(anchor, node, build, mark)
            }
            Event::MappingStart(anchor, tag) => {
                if depth >= MAX_DEPTH {
                    return Err(recursion(mark));
                }
                let build_here = build || (anchor != 0 && self.record_skipped);
                let mut mapping = Mapping::new();
                let (mut height, mut jumps, mut nodes) = (1, 0usize, 1usize);
                loop {
                    let (event, key_mark) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(event, key_mark, depth + 1, true)?;
                    let (event, mark) = self.next()?;
                    let value = self.node(event, mark, depth + 1, build_here)?;
                    for part in [&key, &value] {
                        height = height.max(part.height + 1);
                        jumps = jumps.saturating_add(part.jumps);
                        nodes = nodes.saturating_add(part.nodes);
                    }
                    let key = key.value.unwrap_or_default();
                    if mapping.contains_key(&key) {
                        return Err(duplicate(&key, key_mark));
                    }
                    mapping.insert(key, value.value.unwrap_or_default());
                }
                let node = Node {
                    value: build_here.then(|| tagged(tag.as_ref(), Value::Mapping(mapping))),
                    height,
                    jumps,
                    nodes,
                };
                self.anchored(anchor, node, build, mark)
            }
            other => Err(invalid(format!("unexpected {other:?}"), mark)),
        }
    }

    fn alias(&mut self, id: usize, mark: Marker, depth: usize, build: bool) -> Result<Node, Error> {
        let Some(anchor) = self.anchors.get(&id) else {
            if !self.keep_anchors {
                // An alias the look at the text missed: serde_norway reads it.
                return Err(error(ErrorKind::Unsupported, "an alias", Some(mark)));
            }
            // yaml-rust2 knows the anchor, so the alias is inside the node it names.
            return Err(invalid("an alias inside the node its anchor names", mark));
        };
        if depth + anchor.height > MAX_DEPTH {
            return Err(recursion(mark));
        }
        let jumps = anchor.jumps.saturating_add(1);
        self.jumps = self.jumps.saturating_add(jumps);
        self.alias_nodes = self.alias_nodes.saturating_add(anchor.nodes);
        if self.alias_nodes > MAX_ALIAS_NODES {
            return Err(error(
                ErrorKind::TooLarge,
                format!("the aliases of this document copy more than {MAX_ALIAS_NODES} values in all; write the repeated parts out, or alias smaller parts"),
                Some(mark),
            ));
        }
        Ok(Node {
            value: build.then(|| anchor.value.clone()),
            height: anchor.height,
            jumps,
            nodes: anchor.nodes,
        })
    }

    /// Records the node under its anchor (0: none) when the text has aliases, and keeps its
    /// value only when `build`.
    fn anchored(
        &mut self,
        anchor: usize,
        mut node: Node,
        build: bool,
        mark: Marker,
    ) -> Result<Node, Error> {
        if anchor != 0 && self.keep_anchors {
            if let Some(value) = &node.value {
                self.anchored_nodes = self.anchored_nodes.saturating_add(node.nodes);
                if self.anchored_nodes > MAX_ANCHORED_NODES {
                    return Err(error(
                        ErrorKind::TooLarge,
                        format!("the anchored values of this document hold more than {MAX_ANCHORED_NODES} values in all (nested anchors each count); anchor and alias smaller parts"),
                        Some(mark),
                    ));
                }
                self.anchors.insert(
                    anchor,
                    Anchor {
                        value: value.clone(),
                        height: node.height,
                        jumps: node.jumps,
                        nodes: node.nodes,
                    },
                );
            }
        }
        if !build {
            node.value = None;
        }
        Ok(node)
    }
}

fn recursion(mark: Marker) -> Error {
    invalid("recursion limit exceeded", mark)
}

fn duplicate(key: &Value, mark: Marker) -> Error {
    let key = match key {
        Value::String(text) => text.clone(),
        other => serde_yaml::to_string(other)
            .map(|text| text.trim_end().to_string())
            .unwrap_or_default(),
    };
    invalid(format!("duplicate entry with key {key:?}"), mark)
}

/// The tag as libyaml spells it: the resolved handle and the suffix.
fn tag_text(tag: &YamlTag) -> String {
    format!("{}{}", tag.handle, tag.suffix)
}

/// A `!tag` of a collection makes it `Value::Tagged`; other tags (`!!map`...) are ignored.
fn tagged(tag: Option<&YamlTag>, value: Value) -> Value {
    match tag.map(tag_text) {
        Some(tag) if tag.starts_with('!') => local_tagged(&tag, value),
        _ => value,
    }
}

/// serde_norway's `parse_tag`: one `!` off, unless that leaves nothing.
fn local_tagged(tag: &str, value: Value) -> Value {
    let name = match &tag[1..] {
        "" => tag,
        rest => rest,
    };
    Value::Tagged(Box::new(TaggedValue {
        tag: Tag::new(name),
        value,
    }))
}

const CORE_TAG: &str = "tag:yaml.org,2002:";

/// A scalar's value, as serde_norway's `visit_scalar` makes it for a `Value`.
fn scalar(
    text: String,
    style: TScalarStyle,
    tag: Option<&YamlTag>,
    mark: Marker,
) -> Result<Value, Error> {
    let plain = style == TScalarStyle::Plain;
    let Some(tag) = tag.map(tag_text) else {
        return if plain {
            untagged(text).map_err(|message| invalid(message, mark))
        } else {
            Ok(Value::String(text))
        };
    };
    if tag.starts_with('!') {
        // The content of a `!tag` is read as if untagged.
        let value = if plain {
            untagged(text).map_err(|message| invalid(message, mark))?
        } else {
            Value::String(text)
        };
        return Ok(local_tagged(&tag, value));
    }
    let wrong = |expected: &str| {
        invalid(
            format!("invalid value: string {text:?}, expected {expected}"),
            mark,
        )
    };
    match tag.strip_prefix(CORE_TAG) {
        Some("bool") => parse_bool(&text)
            .map(Value::Bool)
            .ok_or_else(|| wrong("a boolean")),
        Some("int") => match int(&text) {
            Some(Ok(value)) => Ok(value),
            Some(Err(message)) => Err(invalid(message, mark)),
            None => Err(wrong("an integer")),
        },
        Some("float") => parse_f64(&text)
            .map(|float| Value::Number(float.into()))
            .ok_or_else(|| wrong("a float")),
        Some("null") => parse_null(&text)
            .then_some(Value::Null)
            .ok_or_else(|| wrong("null")),
        _ => Ok(Value::String(text)),
    }
}

/// serde_norway's `visit_untagged_scalar` for a `Value`: null, a boolean, an integer, a float,
/// or else the text.
fn untagged(text: String) -> Result<Value, String> {
    if text.is_empty() || parse_null(&text) {
        return Ok(Value::Null);
    }
    if let Some(flag) = parse_bool(&text) {
        return Ok(Value::Bool(flag));
    }
    if let Some(number) = int(&text) {
        return number;
    }
    if !digits_but_not_number(&text) {
        if let Some(float) = parse_f64(&text) {
            return Ok(Value::Number(float.into()));
        }
    }
    Ok(Value::String(text))
}

/// serde_norway's `visit_int`; `Value` takes no 128-bit integer, so those are refused as there.
fn int(text: &str) -> Option<Result<Value, String>> {
    if let Some(int) = parse_unsigned_int(text, u64::from_str_radix) {
        return Some(Ok(Value::Number(int.into())));
    }
    if let Some(int) = parse_negative_int(text, i64::from_str_radix) {
        return Some(Ok(Value::Number(int.into())));
    }
    if let Some(int) = parse_unsigned_int(text, u128::from_str_radix) {
        return Some(Err(format!(
            "invalid type: integer `{int}` as u128, expected any YAML value"
        )));
    }
    if let Some(int) = parse_negative_int(text, i128::from_str_radix) {
        return Some(Err(format!(
            "invalid type: integer `{int}` as i128, expected any YAML value"
        )));
    }
    None
}

// The functions below are serde_norway 0.9.42's (src/de.rs), unchanged.

fn parse_null(scalar: &str) -> bool {
    matches!(scalar, "null" | "Null" | "NULL" | "~")
}

fn parse_bool(scalar: &str) -> Option<bool> {
    match scalar {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_unsigned_int<T>(
    scalar: &str,
    from_str_radix: fn(&str, radix: u32) -> Result<T, ParseIntError>,
) -> Option<T> {
    let unpositive = scalar.strip_prefix('+').unwrap_or(scalar);
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = unpositive.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(int) = from_str_radix(rest, radix) {
                return Some(int);
            }
        }
    }
    if unpositive.starts_with(['+', '-']) {
        return None;
    }
    if digits_but_not_number(scalar) {
        return None;
    }
    from_str_radix(unpositive, 10).ok()
}

fn parse_negative_int<T>(
    scalar: &str,
    from_str_radix: fn(&str, radix: u32) -> Result<T, ParseIntError>,
) -> Option<T> {
    for (prefix, radix) in [("-0x", 16), ("-0o", 8), ("-0b", 2)] {
        if let Some(rest) = scalar.strip_prefix(prefix) {
            let negative = format!("-{rest}");
            if let Ok(int) = from_str_radix(&negative, radix) {
                return Some(int);
            }
        }
    }
    if digits_but_not_number(scalar) {
        return None;
    }
    from_str_radix(scalar, 10).ok()
}

fn parse_f64(scalar: &str) -> Option<f64> {
    let unpositive = if let Some(unpositive) = scalar.strip_prefix('+') {
        if unpositive.starts_with(['+', '-']) {
            return None;
        }
        unpositive
    } else {
        scalar
    };
    if let ".inf" | ".Inf" | ".INF" = unpositive {
        return Some(f64::INFINITY);
    }
    if let "-.inf" | "-.Inf" | "-.INF" = scalar {
        return Some(f64::NEG_INFINITY);
    }
    if let ".nan" | ".NaN" | ".NAN" = scalar {
        return Some(f64::NAN.copysign(1.0));
    }
    if let Ok(float) = unpositive.parse::<f64>() {
        if float.is_finite() {
            return Some(float);
        }
    }
    None
}

fn digits_but_not_number(scalar: &str) -> bool {
    // Leading zero(s) followed by numeric characters is a string according to
    // the YAML 1.2 spec. https://yaml.org/spec/1.2/spec.html#id2761292
    let scalar = scalar.strip_prefix(['-', '+']).unwrap_or(scalar);
    scalar.len() > 1 && scalar.starts_with('0') && scalar[1..].bytes().all(|b| b.is_ascii_digit())
}

/// Refuses (as [`ErrorKind::Unsupported`]) the texts this reader may not read as serde_norway
/// does, found from the text itself:
/// - a character libyaml does not take (a control character...), or reads as a line break where
///   yaml-rust2 does not (U+0085, U+2028, U+2029);
/// - a tab anywhere: the two parsers disagree on tabs in several places, each way;
/// - a directive (a line starting with `%`): libyaml refuses unknown ones and YAML 1.3;
/// - no line break at the end, with a `|` or `>` somewhere: yaml-rust2 ends a block scalar that
///   ends the text with a line break all the same;
/// - an anchor name defined twice and aliased: yaml-rust2 makes an alias the copy of the
///   definition before it, serde_norway's loader numbers anchors by their count of names, so an
///   alias may stand for a later definition, of the same name or of another;
/// - an anchor or alias name of other characters than letters, digits, `_` and `-`, which libyaml
///   refuses and yaml-rust2 takes.
///
/// A `&` or `*` that starts a word (after a space, a line start or `[`, `{`, `,`, `:`) is taken
/// for an anchor or an alias, wherever it is (in a quoted text or a comment too): a false alarm
/// only costs the slower path. Words of `&` only (a shell's `&&`) are let through.
///
/// Says whether the text has an alias (a word starting with `*`, as above).
fn left_to_serde(text: &str) -> Result<bool, Error> {
    let unsupported = |what: &str| Err(error(ErrorKind::Unsupported, what, None));
    let libyaml_takes = |c: char| {
        matches!(c, '\n' | '\r' | ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
            && !matches!(c, '\u{2028}' | '\u{2029}')
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if !text.chars().all(libyaml_takes) {
        return unsupported("a tab, a control character or a line break other than CR and LF");
    }
    if text.starts_with('%') || text.contains("\n%") || text.contains("\r%") {
        return unsupported("a directive");
    }
    // yaml-rust2 ends a block scalar that ends the text with a line break even when the text has
    // none; libyaml does not.
    if !text.is_empty() && !text.ends_with(['\n', '\r']) && text.contains(['|', '>']) {
        return unsupported("a text that ends without a line break and may end in a block scalar");
    }
    check_anchor_names(text)
}

fn check_anchor_names(text: &str) -> Result<bool, Error> {
    let bytes = text.as_bytes();
    let mut anchors: HashMap<&str, usize> = HashMap::new();
    let mut aliases: HashSet<&str> = HashSet::new();
    let unsupported = |what: &str| Err(error(ErrorKind::Unsupported, what, None));
    for (index, &byte) in bytes.iter().enumerate() {
        if byte != b'&' && byte != b'*' {
            continue;
        }
        let before = index.checked_sub(1).map_or(b' ', |before| bytes[before]);
        if !(before.is_ascii_whitespace() || b"[{,:".contains(&before)) {
            continue;
        }
        let rest = &text[index + 1..];
        let end = rest
            .find(|c: char| c.is_whitespace() || ",[]{}".contains(c))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        if name.is_empty() || name.bytes().all(|b| b == b'&') {
            continue;
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return unsupported(
                "an anchor or alias name of other characters than letters, digits, `_` and `-`",
            );
        }
        if byte == b'&' {
            *anchors.entry(name).or_default() += 1;
        } else {
            aliases.insert(name);
        }
    }
    if anchors
        .iter()
        .any(|(name, count)| *count > 1 && aliases.contains(name))
    {
        return unsupported("an anchor name defined twice and aliased");
    }
    Ok(!aliases.is_empty())
}

#[cfg(test)]
#[path = "yaml_tests.rs"]
mod tests;
