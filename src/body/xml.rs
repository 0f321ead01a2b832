//! An XML body as a JSON value, in the shape adnanh/webhook's mxj library gives it: the root
//! element is the one key of the object, an element is an object of its children (or its text
//! when it has nothing else), attributes are `-name`, text beside children or attributes is
//! `#text`, and a repeated element is an array. Values stay text.
//!
//! Hostile bodies are bounded: nesting stops at [`MAX_DEPTH`], a body holds at most
//! [`MAX_ELEMENTS`] elements (each costs far more as a JSON value than as text), an element may
//! carry at most [`MAX_ATTRIBUTES`], and no entity is ever expanded (a document type is skipped; only XML's
//! five named entities and character references are read, any other is an error).

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use quick_xml::XmlVersion;
use serde_json::{Map, Value};

/// How deep elements may nest; no webhook sends anything near it.
pub const MAX_DEPTH: usize = 64;

/// How many elements one body may hold.
pub const MAX_ELEMENTS: usize = 100_000;

/// How many attributes one element may carry.
pub const MAX_ATTRIBUTES: usize = 256;

/// One open element: its name, its children and attributes so far, and its text.
struct Open {
    name: String,
    fields: Map<String, Value>,
    text: String,
}

/// Parses `body` as an XML document; the error says what is wrong, without quoting the body.
pub fn parse(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the XML body is not UTF-8".to_string())?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Value> = None;
    let mut elements = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|error| format!("the body is not well-formed XML: {error}"))?;
        if matches!(event, Event::Start(_) | Event::Empty(_)) {
            elements += 1;
            if elements > MAX_ELEMENTS {
                return Err(format!(
                    "the XML body holds more than {MAX_ELEMENTS} elements"
                ));
            }
        }
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err("the XML body has more than one root element".into());
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(format!(
                        "the XML body nests more than {MAX_DEPTH} elements deep"
                    ));
                }
                stack.push(open(&start)?);
            }
            Event::Empty(start) => {
                if root.is_some() {
                    return Err("the XML body has more than one root element".into());
                }
                let element = open(&start)?;
                close(element, &mut stack, &mut root);
            }
            Event::End(_) => {
                // The reader has checked that the end tag names the open element.
                if let Some(element) = stack.pop() {
                    close(element, &mut stack, &mut root);
                }
            }
            Event::Text(text) => {
                let text = text
                    .xml10_content()
                    .map_err(|error| format!("the XML body has unreadable text: {error}"))?;
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&text);
                }
            }
            Event::CData(data) => {
                let data = data
                    .decode()
                    .map_err(|error| format!("the XML body has unreadable text: {error}"))?;
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&data);
                }
            }
            Event::GeneralRef(reference) => {
                let name = reference.decode().map_err(|error| {
                    format!("the XML body has an unreadable reference: {error}")
                })?;
                // Only the five named entities and character references: an entity a document
                // type declares is never expanded.
                let written = format!("&{name};");
                let resolved = quick_xml::escape::unescape(&written).map_err(|_| {
                    format!(
                        "the XML body uses the entity `&{name};`, which hookrunner does not expand"
                    )
                })?;
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("the body is not well-formed XML: an element is not closed".into());
    }
    root.ok_or_else(|| "the XML body has no element".into())
}

fn open(start: &BytesStart<'_>) -> Result<Open, String> {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut fields = Map::new();
    // Duplicate attributes are found by the map, not by the reader's own check, which compares
    // every pair and so takes time growing with the square of their number.
    let mut attributes = start.attributes();
    attributes.with_checks(false);
    for attribute in attributes {
        let attribute = attribute
            .map_err(|error| format!("the XML body has a malformed attribute: {error}"))?;
        if fields.len() >= MAX_ATTRIBUTES {
            return Err(format!(
                "an element of the XML body has more than {MAX_ATTRIBUTES} attributes"
            ));
        }
        let key = format!("-{}", String::from_utf8_lossy(attribute.key.as_ref()));
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|_| {
                format!("the attribute `{key}` uses an entity that hookrunner does not expand")
            })?;
        if fields
            .insert(key.clone(), Value::String(value.into_owned()))
            .is_some()
        {
            return Err(format!(
                "an element of the XML body has the attribute `{}` twice",
                &key[1..]
            ));
        }
    }
    Ok(Open {
        name,
        fields,
        text: String::new(),
    })
}

/// Turns a closed element into its value and adds it to its parent, or makes it the root.
fn close(element: Open, stack: &mut [Open], root: &mut Option<Value>) {
    let Open {
        name,
        mut fields,
        text,
    } = element;
    let text = text.trim();
    let value = if fields.is_empty() {
        Value::String(text.to_string())
    } else {
        if !text.is_empty() {
            fields.insert("#text".into(), Value::String(text.to_string()));
        }
        Value::Object(fields)
    };
    let Some(parent) = stack.last_mut() else {
        let mut document = Map::new();
        document.insert(name, value);
        *root = Some(Value::Object(document));
        return;
    };
    match parent.fields.get_mut(&name) {
        None => {
            parent.fields.insert(name, value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => *existing = Value::Array(vec![existing.take(), value]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, expected: Result<&str, &str>) {
        let got = parse(body.as_bytes()).map(|value| value.to_string());
        match expected {
            Ok(json) => assert_eq!(got.as_deref(), Ok(json), "{body}"),
            Err(fragment) => {
                let error = got.expect_err(body);
                assert!(error.contains(fragment), "{body}: {error}");
            }
        }
    }

    #[test]
    fn xml_reads_as_webhook_read_it() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("<app>hi</app>", Ok(r#"{"app":"hi"}"#)),
            (
                r#"<?xml version="1.0"?><!-- c --><app id="7"><message lang="en">hi &amp; bye</message></app>"#,
                Ok(r##"{"app":{"-id":"7","message":{"-lang":"en","#text":"hi & bye"}}}"##),
            ),
            (
                "<list>\n  <item>a</item>\n  <item>b</item>\n  <item>c</item>\n</list>",
                Ok(r#"{"list":{"item":["a","b","c"]}}"#),
            ),
            ("<a><b/><c></c></a>", Ok(r#"{"a":{"b":"","c":""}}"#)),
            ("<a><![CDATA[<x>]]>&#65;&#x42;</a>", Ok(r#"{"a":"<x>AB"}"#)),
            (
                "<a>text<b>1</b></a>",
                Ok(r##"{"a":{"b":"1","#text":"text"}}"##),
            ),
            ("<a><b></a>", Err("not well-formed")),
            ("<a>", Err("not closed")),
            ("", Err("no element")),
            ("<a/><b/>", Err("more than one root")),
            ("<a x='1' x='2'/>", Err("the attribute `x` twice")),
            ("<a>\u{0}</a>", Ok("{\"a\":\"\\u0000\"}")),
        ];
        for (body, expected) in cases {
            check(body, *expected);
        }
    }

    #[test]
    fn hostile_xml_is_refused_quickly() {
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        check(&deep, Err("nests more than 64"));
        let fine = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(parse(fine.as_bytes()).is_ok());

        let attributes: String = (0..100_000).map(|n| format!(" a{n}='x'")).collect();
        let started = std::time::Instant::now();
        check(
            &format!("<a{attributes}/>"),
            Err("more than 256 attributes"),
        );
        let same: String = (0..100_000).map(|_| " a='x'").collect();
        check(&format!("<a{same}/>"), Err("the attribute `a` twice"));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));

        // A billion laughs: the declared entities are never expanded.
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        check(laughs, Err("the entity `&lol2;`"));
        let external = r#"<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><a>&xxe;</a>"#;
        check(external, Err("the entity `&xxe;`"));
        check("<a b='&xxe;'/>", Err("the attribute `-b` uses an entity"));
    }

    #[test]
    fn a_body_of_too_many_elements_is_refused() {
        let many = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS));
        let error = parse(many.as_bytes()).expect_err("over the element bound");
        assert!(error.contains("more than 100000 elements"), "{error}");
        let fine = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS - 1));
        assert!(parse(fine.as_bytes()).is_ok());
    }
}
