//! adnanh's `trigger-rule` as hookrunner's `signature` and `when`.
//!
//! adnanh checks signatures as rules among the others; hookrunner verifies one signature before any
//! rule. So a signature check converts only where it must always pass: at the top of the rule or
//! inside `and`s. A header or query token compared with `value` is lifted the same way, when no
//! HMAC check is there. What remains becomes `when`: `and` is `all`, `or` is `any`, `not` is `not`.

use regex::Regex;
use serde_yaml::{Mapping, Value as Yaml};

use super::source::{self, looks_secret, Located, Report, Source, ARGUMENT_KEYS};

/// The hook's `signature` and `when`, as far as the trigger rule gives them.
pub struct Trigger {
    /// None, one, or several of which any one must verify (checks that were all of an `or`).
    pub signatures: Vec<Signature>,
    pub when: Option<Yaml>,
}

/// A signature check lifted out of the rules, with its secret as the source file writes it.
#[derive(Debug, PartialEq)]
pub struct Signature {
    pub provider: &'static str,
    /// The provider's settings besides `secret`, in the order they are written.
    pub settings: Vec<(&'static str, Yaml)>,
    pub secret: String,
    /// Where the secret is in the source file, as `trigger-rule.and[0].match.secret`.
    pub secret_at: String,
    /// `SECRET` for an HMAC key, `TOKEN` for a token sent as it is; names the environment variable.
    pub secret_kind: &'static str,
    /// Where the rule that checks it is, as `trigger-rule.and[0].match`.
    pub rule_at: String,
}

#[derive(Debug)]
enum Rule {
    All(Vec<Rule>),
    Any(Vec<Rule>),
    Not(Box<Rule>),
    Leaf(Leaf),
    Check(Signature),
}

#[derive(Debug)]
struct Leaf {
    reference: String,
    condition: Condition,
    /// Where the compared value is in the source file.
    value_at: String,
    /// Where a token would be, if this leaf compares a header or query value that holds a secret.
    token: Option<TokenPlace>,
    secret_like: bool,
}

#[derive(Debug)]
enum Condition {
    Equals(String),
    Matches(String),
    Cidr(Vec<String>),
}

#[derive(Debug)]
enum TokenPlace {
    Header(String),
    Query(String),
}

const RULE_KEYS: &[&str] = &["and", "or", "not", "match", "check-signature"];
const MATCH_KEYS: &[&str] = &["type", "regex", "secret", "value", "parameter", "ip-range"];
const CHECK_SIGNATURE_KEYS: &[&str] = &["algorithm", "secret", "signature", "string-to-sign"];

/// Converts a `trigger-rule`; `None` when it has errors, all of them in `report`.
pub fn convert(rule: &Located<'_>, report: &mut Report) -> Option<Trigger> {
    let errors_before = report.errors.len();
    let rule = parse_rule(rule, report)?;
    let mut conjuncts = Vec::new();
    flatten_all(rule, &mut conjuncts);

    let mut signatures: Vec<Signature> = Vec::new();
    let mut rest = Vec::new();
    for rule in conjuncts {
        // An `or` of signature checks only is hookrunner's `signature: {any: [...]}`.
        let rule = match rule {
            Rule::Any(rules)
                if !rules.is_empty() && rules.iter().all(|rule| matches!(rule, Rule::Check(_))) =>
            {
                let checks: Vec<Signature> = rules
                    .into_iter()
                    .filter_map(|rule| match rule {
                        Rule::Check(check) => Some(check),
                        _ => None,
                    })
                    .collect();
                match signatures.first() {
                    Some(first) => report.error(format!(
                        "`{}` is a second signature check (the first is `{}`); hookrunner verifies one signature per hook",
                        checks[0].rule_at, first.rule_at
                    )),
                    None => signatures = checks,
                }
                continue;
            }
            other => other,
        };
        match rule {
            Rule::Check(check) => match signatures.first() {
                Some(first) => report.error(format!(
                    "`{}` is a second signature check (the first is `{}`); hookrunner verifies one signature per hook",
                    check.rule_at, first.rule_at
                )),
                None => signatures.push(check),
            },
            other => {
                refuse_nested_checks(&other, report);
                rest.push(other);
            }
        }
    }
    if signatures.is_empty() {
        let token = rest.iter().position(|rule| {
            matches!(
                rule,
                Rule::Leaf(Leaf {
                    token: Some(_),
                    condition: Condition::Equals(_),
                    ..
                })
            )
        });
        if let Some(Rule::Leaf(leaf)) = token.map(|at| rest.remove(at)) {
            signatures.extend(token_signature(leaf));
        }
    }
    warn_about_plain_secrets(&rest, report);
    if report.errors.len() > errors_before {
        return None;
    }
    let when = match rest.len() {
        0 => None,
        1 => rest.pop().map(to_yaml),
        _ => Some(single(
            "all",
            Yaml::Sequence(rest.into_iter().map(to_yaml).collect()),
        )),
    };
    Some(Trigger { signatures, when })
}

fn parse_rule(node: &Located<'_>, report: &mut Report) -> Option<Rule> {
    let map = node.object(report, "a rule (`and`, `or`, `not` or `match`)", RULE_KEYS)?;
    let present: Vec<&str> = RULE_KEYS
        .iter()
        .copied()
        .filter(|key| map.contains_key(*key))
        .collect();
    match present.as_slice() {
        [] => {
            report.error(format!(
                "`{}` is an empty rule, which adnanh never satisfies; give it `and`, `or`, `not` or `match`",
                node.path()
            ));
            None
        }
        [kind] => {
            let child = node.child(kind)?;
            match *kind {
                "and" | "or" => {
                    let rules: Vec<Option<Rule>> = child
                        .items(report, "rules")?
                        .iter()
                        .map(|item| parse_rule(item, report))
                        .collect();
                    let rules = rules.into_iter().collect::<Option<Vec<_>>>()?;
                    Some(if *kind == "and" {
                        Rule::All(rules)
                    } else {
                        Rule::Any(rules)
                    })
                }
                "not" => parse_rule(&child, report).map(|rule| Rule::Not(Box::new(rule))),
                "match" => parse_match(&child, report),
                _ => parse_check_signature(&child, report),
            }
        }
        [first, ..] => {
            report.error(format!(
                "`{}` has {}; adnanh reads only `{first}` and ignores the rest, so write one rule per object",
                node.path(),
                present
                    .iter()
                    .map(|key| format!("`{key}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
            None
        }
    }
}

fn parse_match(node: &Located<'_>, report: &mut Report) -> Option<Rule> {
    node.object(report, "a `match` rule", MATCH_KEYS)?;
    let Some(kind) = node.child("type") else {
        report.error(format!(
            "`{}` has no `type`; adnanh's match types are `value`, `regex`, `payload-hmac-sha1`, `payload-hmac-sha256`, `payload-hmac-sha512`, `ip-whitelist` and `scalr-signature`",
            node.path()
        ));
        return None;
    };
    let kind_at = kind.path().to_string();
    match kind.text(report)?.as_str() {
        kind @ ("value" | "regex") => parse_comparison(node, kind == "value", report),
        "payload-hmac-sha1" | "payload-hash-sha1" => {
            parse_signature(node, "sha1", "parameter", report)
        }
        "payload-hmac-sha256" | "payload-hash-sha256" => {
            parse_signature(node, "sha256", "parameter", report)
        }
        "payload-hmac-sha512" | "payload-hash-sha512" => {
            parse_signature(node, "sha512", "parameter", report)
        }
        "ip-whitelist" => {
            let Some(ranges) = node.child("ip-range") else {
                report.error(format!("`{}` needs an `ip-range`", node.path()));
                return None;
            };
            let at = ranges.path().to_string();
            let ranges: Vec<String> = ranges
                .text(report)?
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if ranges.is_empty() {
                report.error(format!("`{at}` is empty; name an address or a CIDR range"));
                return None;
            }
            let mut valid = true;
            for range in &ranges {
                if range.parse::<ipnet::IpNet>().is_err()
                    && range.parse::<std::net::IpAddr>().is_err()
                {
                    report.error(format!(
                        "`{at}`: `{range}` is not an address or a CIDR range such as `10.0.0.0/8`"
                    ));
                    valid = false;
                }
            }
            valid.then(|| {
                Rule::Leaf(Leaf {
                    reference: "request.remote_ip".into(),
                    condition: Condition::Cidr(ranges),
                    value_at: at,
                    token: None,
                    secret_like: false,
                })
            })
        }
        "scalr-signature" => {
            let (secret, secret_at) = signature_secret(node, report)?;
            Some(Rule::Check(Signature {
                provider: "scalr",
                settings: Vec::new(),
                secret,
                secret_at,
                secret_kind: "SECRET",
                rule_at: node.path().to_string(),
            }))
        }
        other => {
            report.error(format!(
                "`{kind_at}`: unknown match type `{other}`; adnanh's are `value`, `regex`, `payload-hmac-sha1`, `payload-hmac-sha256`, `payload-hmac-sha512`, `ip-whitelist` and `scalr-signature`"
            ));
            None
        }
    }
}

/// A `value` or `regex` match: one leaf comparing a request value.
fn parse_comparison(node: &Located<'_>, equals: bool, report: &mut Report) -> Option<Rule> {
    let Some(parameter) = node.child("parameter") else {
        report.error(format!(
            "`{}` needs a `parameter`, the request value it compares",
            node.path()
        ));
        return None;
    };
    let field = if equals { "value" } else { "regex" };
    let expected = match node.child(field) {
        Some(expected) => Some((expected.path().to_string(), expected.text(report))),
        None => {
            report.error(format!("`{}` needs a `{field}`", node.path()));
            None
        }
    };
    let source = source::source(&parameter, report);
    let (value_at, expected) = expected?;
    let expected = expected?;
    let reference = match source? {
        Source::Reference(reference) => reference,
        Source::Literal(_) => {
            report.error(format!(
                "`{}` has `source: string`, so the rule would compare two fixed strings; hookrunner has no such rule",
                parameter.path()
            ));
            return None;
        }
    };
    let condition = if equals {
        Condition::Equals(expected)
    } else {
        if let Err(error) = Regex::new(&expected) {
            let detail = error.to_string();
            let detail = detail.lines().last().unwrap_or("").trim();
            report.error(format!(
                "`{value_at}`: hookrunner cannot compile the regex `{expected}`: {detail}"
            ));
            return None;
        }
        Condition::Matches(expected)
    };
    let source_kind = parameter
        .value
        .get("source")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let name = parameter
        .value
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let token = match source_kind {
        "header" if name.eq_ignore_ascii_case("X-Gitlab-Token") || looks_secret(name) => {
            Some(TokenPlace::Header(name.to_string()))
        }
        "url" | "query" if looks_secret(name) => Some(TokenPlace::Query(name.to_string())),
        _ => None,
    };
    Some(Rule::Leaf(Leaf {
        reference,
        condition,
        value_at,
        token,
        secret_like: looks_secret(name),
    }))
}

/// The newer form of a signature check: `{"check-signature": {algorithm, secret, signature}}`.
fn parse_check_signature(node: &Located<'_>, report: &mut Report) -> Option<Rule> {
    node.object(report, "a `check-signature` rule", CHECK_SIGNATURE_KEYS)?;
    if let Some(string_to_sign) = node.child("string-to-sign") {
        report.error(format!(
            "`{}` has no hookrunner equivalent: hookrunner's `hmac` signs the raw body only",
            string_to_sign.path()
        ));
        return None;
    }
    let Some(algorithm) = node.child("algorithm") else {
        report.error(format!(
            "`{}` needs an `algorithm`: `sha1`, `sha256` or `sha512`",
            node.path()
        ));
        return None;
    };
    let algorithm_at = algorithm.path().to_string();
    match algorithm.text(report)?.to_ascii_lowercase().as_str() {
        "sha1" => parse_signature(node, "sha1", "signature", report),
        "sha256" => parse_signature(node, "sha256", "signature", report),
        "sha512" => parse_signature(node, "sha512", "signature", report),
        other => {
            report.error(format!(
                "`{algorithm_at}`: unknown algorithm `{other}`; use `sha1`, `sha256` or `sha512`"
            ));
            None
        }
    }
}

/// An HMAC of the body, compared with a header: a provider when the header is a known one, else
/// hookrunner's generic `hmac`.
fn parse_signature(
    node: &Located<'_>,
    algorithm: &'static str,
    parameter_key: &str,
    report: &mut Report,
) -> Option<Rule> {
    let secret = signature_secret(node, report);
    let header = match node.child(parameter_key) {
        Some(parameter) => signature_header(&parameter, report),
        None => {
            report.error(format!(
                "`{}` needs a `{parameter_key}` naming the header that carries the signature",
                node.path()
            ));
            None
        }
    };
    let ((secret, secret_at), header) = (secret?, header?);
    let lower = header.to_ascii_lowercase();
    let hmac = |prefix: String| -> Vec<(&'static str, Yaml)> {
        vec![
            ("header", Yaml::String(header.clone())),
            ("algorithm", Yaml::String(algorithm.into())),
            ("encoding", Yaml::String("hex".into())),
            ("prefix", Yaml::String(prefix)),
        ]
    };
    let (provider, settings) = match (algorithm, lower.as_str()) {
        ("sha256", "x-hub-signature-256") => ("github", Vec::new()),
        // GitHub sends `X-Hub-Signature-256` beside the SHA-1 header; hookrunner checks it first.
        ("sha1", "x-hub-signature") => ("github", vec![("allow_sha1", Yaml::Bool(true))]),
        ("sha256", "x-hub-signature") => ("bitbucket", Vec::new()),
        ("sha256", "x-gitea-signature" | "x-gogs-signature" | "x-forgejo-signature") => {
            ("gitea", Vec::new())
        }
        (_, "x-hub-signature" | "x-hub-signature-256") => ("hmac", hmac(format!("{algorithm}="))),
        // Like adnanh, hookrunner's `hmac` takes the signature with or without the algorithm's
        // `sha256=`-style prefix, and a comma-separated list of them.
        _ => ("hmac", hmac(String::new())),
    };
    Some(Rule::Check(Signature {
        provider,
        settings,
        secret,
        secret_at,
        secret_kind: "SECRET",
        rule_at: node.path().to_string(),
    }))
}

/// The `secret` of a signature check and where it is; adnanh refuses every request without one.
fn signature_secret(node: &Located<'_>, report: &mut Report) -> Option<(String, String)> {
    let Some(secret) = node.child("secret") else {
        report.error(format!("`{}` needs the `secret`", node.path()));
        return None;
    };
    let at = secret.path().to_string();
    match secret.text(report) {
        Some(text) if !text.is_empty() => Some((text, at)),
        Some(_) => {
            report.error(format!(
                "`{at}` is empty; adnanh refuses every request then"
            ));
            None
        }
        None => None,
    }
}

/// The header a signature is read from; hookrunner reads signatures from headers only.
fn signature_header(parameter: &Located<'_>, report: &mut Report) -> Option<String> {
    let map = parameter.object(report, "a request value", ARGUMENT_KEYS)?;
    let source = map.get("source").and_then(|v| v.as_str()).unwrap_or("");
    if source != "header" {
        report.error(format!(
            "`{}`: hookrunner reads a signature from a header only, not from `source: {source}`",
            parameter.path()
        ));
        return None;
    }
    let extra = map
        .get("headers-to-add-to-signature-payload")
        .and_then(|v| v.as_array())
        .is_some_and(|headers| !headers.is_empty());
    if extra {
        report.error(format!(
            "`{}.headers-to-add-to-signature-payload` has no hookrunner equivalent: hookrunner's `hmac` signs the raw body only",
            parameter.path()
        ));
        return None;
    }
    match source::source(parameter, report)? {
        Source::Reference(reference) => reference.strip_prefix("header.").map(str::to_string),
        Source::Literal(_) => None,
    }
}

/// A header or query token compared with `value`, as hookrunner's `gitlab` or `token` provider.
fn token_signature(leaf: Leaf) -> Option<Signature> {
    let (Condition::Equals(secret), Some(place)) = (leaf.condition, leaf.token) else {
        return None;
    };
    let (provider, settings) = match place {
        TokenPlace::Header(name) if name.eq_ignore_ascii_case("X-Gitlab-Token") => {
            ("gitlab", Vec::new())
        }
        TokenPlace::Header(name) => ("token", vec![("header", Yaml::String(name))]),
        TokenPlace::Query(name) => ("token", vec![("query", Yaml::String(name))]),
    };
    Some(Signature {
        provider,
        settings,
        secret,
        rule_at: leaf.value_at.trim_end_matches(".value").to_string(),
        secret_at: leaf.value_at,
        secret_kind: "TOKEN",
    })
}

/// Moves the rules that must all hold (the top rule, through nested `and`s) into `out`.
fn flatten_all(rule: Rule, out: &mut Vec<Rule>) {
    match rule {
        Rule::All(rules) => rules.into_iter().for_each(|rule| flatten_all(rule, out)),
        other => out.push(other),
    }
}

fn refuse_nested_checks(rule: &Rule, report: &mut Report) {
    match rule {
        Rule::All(rules) | Rule::Any(rules) => {
            rules.iter().for_each(|rule| refuse_nested_checks(rule, report))
        }
        Rule::Not(rule) => refuse_nested_checks(rule, report),
        Rule::Check(check) => report.error(format!(
            "`{}` checks a signature inside `not`, or inside an `or` that also holds other rules; hookrunner verifies the signature before any rule, so it converts a check that must always pass (at the top of `trigger-rule` or inside `and`), or an `or` of signature checks only (as `signature: {{any: [...]}}`)",
            check.rule_at
        )),
        Rule::Leaf(_) => {}
    }
}

fn warn_about_plain_secrets(rules: &[Rule], report: &mut Report) {
    for rule in rules {
        match rule {
            Rule::All(rules) | Rule::Any(rules) => warn_about_plain_secrets(rules, report),
            Rule::Not(rule) => warn_about_plain_secrets(std::slice::from_ref(rule.as_ref()), report),
            Rule::Leaf(leaf) if leaf.secret_like && matches!(leaf.condition, Condition::Equals(_)) => {
                report.warn(format!(
                    "`{}` looks like a secret and stays a plain `when` rule on `{}`: its value is written in the converted file",
                    leaf.value_at, leaf.reference
                ))
            }
            _ => {}
        }
    }
}

fn to_yaml(rule: Rule) -> Yaml {
    match rule {
        Rule::All(rules) => single(
            "all",
            Yaml::Sequence(rules.into_iter().map(to_yaml).collect()),
        ),
        Rule::Any(rules) => {
            let mut rules = merge_address_ranges(rules);
            if rules.len() == 1 {
                return rules.pop().map(to_yaml).unwrap_or_default();
            }
            single(
                "any",
                Yaml::Sequence(rules.into_iter().map(to_yaml).collect()),
            )
        }
        Rule::Not(rule) => single("not", to_yaml(*rule)),
        Rule::Leaf(leaf) => {
            let condition = match leaf.condition {
                Condition::Equals(value) => Yaml::String(value),
                Condition::Matches(regex) => single("matches", Yaml::String(regex)),
                Condition::Cidr(ranges) => single(
                    "cidr",
                    Yaml::Sequence(ranges.into_iter().map(Yaml::String).collect()),
                ),
            };
            single(&leaf.reference, condition)
        }
        // Checks left in the rules were refused as errors, so no output is made from them.
        Rule::Check(_) => Yaml::Null,
    }
}

/// In an `or`, several `ip-whitelist` matches are one `cidr` list.
fn merge_address_ranges(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut merged_at: Option<usize> = None;
    for rule in rules {
        let Rule::Leaf(Leaf {
            condition: Condition::Cidr(ranges),
            ..
        }) = &rule
        else {
            out.push(rule);
            continue;
        };
        match merged_at.and_then(|at| out.get_mut(at)) {
            Some(Rule::Leaf(Leaf {
                condition: Condition::Cidr(all),
                ..
            })) => all.extend(ranges.iter().cloned()),
            _ => {
                merged_at = Some(out.len());
                out.push(rule);
            }
        }
    }
    out
}

fn single(key: &str, value: Yaml) -> Yaml {
    let mut map = Mapping::new();
    map.insert(Yaml::String(key.to_string()), value);
    Yaml::Mapping(map)
}
