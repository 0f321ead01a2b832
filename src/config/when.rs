//! The `when:` block: `all`, `any`, `not` and leaves mapping a reference to a condition.
//! A mapping with several keys means all of them. Patterns are checked here and shared by text.

use std::sync::Arc;

use ipnet::IpNet;
use serde_yaml::Value;

use super::decode::{key_text, scalar_text, Decoder};
use super::server::{parse_network, sees_no_client_address};
use super::source_map::{Part, YamlPath};
use super::{Hook, ServerSettings};
use crate::reference::Reference;
use crate::rules::{Condition, Rule};

const CONDITIONS: &[&str] = &["equals", "in", "matches", "exists", "cidr"];

pub fn decode(decoder: &mut Decoder<'_>, value: &Value, path: &YamlPath) -> Option<Rule> {
    let Value::Mapping(map) = value else {
        decoder.error(
            path,
            Part::Value,
            "a rule must be a mapping, such as `payload.ref: refs/heads/main` or `all: [...]`",
        );
        return None;
    };
    if map.is_empty() {
        decoder.error(
            path,
            Part::Value,
            "empty rule; remove it or name a condition",
        );
        return None;
    }
    let mut rules = Vec::new();
    let mut valid = true;
    for (key, value) in map {
        let key = key_text(key);
        let rule = decode_entry(decoder, &key, value, &path.key(&key));
        match rule {
            Some(rule) => rules.push(rule),
            None => valid = false,
        }
    }
    if !valid {
        return None;
    }
    Some(if rules.len() == 1 {
        rules.pop()?
    } else {
        Rule::All(rules)
    })
}

fn decode_entry(
    decoder: &mut Decoder<'_>,
    key: &str,
    value: &Value,
    path: &YamlPath,
) -> Option<Rule> {
    match key {
        "all" | "any" => {
            let Value::Sequence(items) = value else {
                decoder.error(path, Part::Value, format!("`{key}` takes a list of rules"));
                return None;
            };
            let rules = decoder.each(items, path, decode)?;
            Some(if key == "all" {
                Rule::All(rules)
            } else {
                Rule::Any(rules)
            })
        }
        "not" => decode(decoder, value, path).map(|rule| Rule::Not(Box::new(rule))),
        _ => {
            let reference = match Reference::parse(key) {
                Ok(reference) => Some(reference),
                Err(message) => {
                    decoder.error(path, Part::Key, message);
                    None
                }
            };
            let condition = decode_condition(decoder, value, path);
            Some(Rule::Leaf {
                reference: reference?,
                condition: condition?,
            })
        }
    }
}

fn decode_condition(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
) -> Option<Condition> {
    if let Some(text) = scalar_text(value) {
        return Some(Condition::Equals(text));
    }
    let fields = decoder.mapping(value, path, "a condition", CONDITIONS)?;
    let present: Vec<String> = fields
        .keys()
        .filter(|key| CONDITIONS.contains(&key.as_str()))
        .collect();
    if present.len() != 1 {
        decoder.error(
            path,
            Part::Value,
            "a condition has exactly one of `equals`, `in`, `matches`, `exists` or `cidr`",
        );
        return None;
    }
    let kind = present[0].as_str();
    let (value, path) = fields.get(kind).or_else(|| {
        decoder.error(path, Part::Value, format!("`{kind}` needs a value"));
        None
    })?;
    match kind {
        "equals" => decoder.string(value, &path).map(Condition::Equals),
        "in" => {
            let Value::Sequence(_) = value else {
                decoder.error(&path, Part::Value, "`in` takes a list of values");
                return None;
            };
            decoder.string_list(value, &path).map(Condition::In)
        }
        "matches" => {
            let pattern = decoder.string(value, &path)?;
            match decoder.patterns.get(&pattern) {
                Ok(compiled) => Some(Condition::Matches(compiled)),
                Err(error) => {
                    let detail = error.lines().last().unwrap_or("").trim().to_string();
                    decoder.error(
                        &path,
                        Part::Value,
                        format!("invalid regex `{pattern}`: {detail}"),
                    );
                    None
                }
            }
        }
        "exists" => decoder.bool(value, &path).map(Condition::Exists),
        _ => {
            let entries = decoder.string_list(value, &path)?;
            let mut networks: Vec<IpNet> = Vec::new();
            for (index, entry) in entries.iter().enumerate() {
                match parse_network(entry) {
                    Some(network) => networks.push(network),
                    None => {
                        decoder.error(
                            &path.index(index),
                            Part::Value,
                            format!(
                                "`{entry}` is not an address or CIDR range, such as `10.0.0.0/8`"
                            ),
                        );
                        return None;
                    }
                }
            }
            Some(Condition::Cidr(networks))
        }
    }
}

/// Warns about each hook whose `when` reads `request.remote_ip` where no client address can ever
/// be known (every listener a unix socket that no trusted proxy speaks for): such a `when` never
/// holds. Listeners handed over by systemd are not known here.
pub fn warn_about_unseen_addresses(
    decoder: &mut Decoder<'_>,
    server: &ServerSettings,
    hooks: &[Arc<Hook>],
    hooks_path: &YamlPath,
) {
    if !sees_no_client_address(server) {
        return;
    }
    for (index, hook) in hooks.iter().enumerate() {
        if hook
            .when
            .as_ref()
            .is_some_and(|rule| rule.reads(&Reference::RemoteIp))
        {
            decoder.warning(
                &hooks_path.index(index).key("when"),
                Part::Key,
                format!(
                    "hook `{}` reads `request.remote_ip` in `when`, but every `listen` address is a `unix:` socket and `server.trusted_proxies` does not list `unix`, so the client address is always unknown and `when` never holds; add `unix` to `trusted_proxies` if the proxy in front sets `X-Forwarded-For`",
                    hook.id
                ),
            );
        }
    }
}
