//! Trigger rules (`when`): `all`, `any`, `not` and leaves that test one reference, evaluated per request.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::pattern::Pattern;
use crate::reference::Reference;
use crate::request::{RequestContext, ValueError};

#[derive(Clone, Debug)]
pub enum Rule {
    All(Vec<Rule>),
    Any(Vec<Rule>),
    Not(Box<Rule>),
    Leaf {
        reference: Reference,
        condition: Condition,
    },
}

#[derive(Clone, Debug)]
pub enum Condition {
    Equals(String),
    In(Vec<String>),
    /// Checked at load, compiled on first use; unanchored (write `^...$` to anchor).
    Matches(Pattern),
    Exists(bool),
    Cidr(Vec<IpNet>),
}

/// Why a rule did not hold, for the `skipped` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch(pub String);

impl Rule {
    /// `Ok(None)` when the rule holds, `Ok(Some(why))` when it does not; an error when a value it
    /// needs cannot be read (an unparsable body).
    ///
    /// A value the request cannot tell (the client address, when it is unknown) fails closed: the
    /// leaf that reads it does not answer true or false, the whole rule does not hold, whatever
    /// `not` or `any` surrounds the leaf. Rules are read in order and stop at the first that
    /// decides, so a leaf after an `any` branch that already held is never read.
    pub fn evaluate(&self, request: &RequestContext) -> Result<Option<Mismatch>, ValueError> {
        match self.check(request) {
            Err(ValueError::AddressUnknown) => Ok(Some(Mismatch(
                "the client address is unknown (a unix-socket client that no trusted proxy speaks for, or a forwarded hop that is not an address), so a rule on `request.remote_ip` cannot hold".into(),
            ))),
            verdict => verdict,
        }
    }

    /// Whether any leaf of the rule reads the reference.
    pub fn reads(&self, reference: &Reference) -> bool {
        match self {
            Rule::All(rules) | Rule::Any(rules) => rules.iter().any(|rule| rule.reads(reference)),
            Rule::Not(rule) => rule.reads(reference),
            Rule::Leaf {
                reference: read, ..
            } => read == reference,
        }
    }

    /// [`evaluate`](Rule::evaluate), with a value that cannot be told passed up as an error through
    /// every `all`, `any` and `not` to the top.
    fn check(&self, request: &RequestContext) -> Result<Option<Mismatch>, ValueError> {
        match self {
            Rule::All(rules) => {
                for rule in rules {
                    if let Some(mismatch) = rule.check(request)? {
                        return Ok(Some(mismatch));
                    }
                }
                Ok(None)
            }
            Rule::Any(rules) => {
                let mut reasons = Vec::new();
                for rule in rules {
                    match rule.check(request)? {
                        None => return Ok(None),
                        Some(Mismatch(reason)) => reasons.push(reason),
                    }
                }
                Ok(Some(Mismatch(format!("none held: {}", reasons.join("; ")))))
            }
            Rule::Not(rule) => Ok(match rule.check(request)? {
                Some(_) => None,
                None => Some(Mismatch(format!("`not` rule held inside: {rule}"))),
            }),
            Rule::Leaf {
                reference,
                condition,
            } => {
                let values = request.values(reference)?;
                let holds = match condition {
                    Condition::Exists(wanted) => values.is_empty() != *wanted,
                    _ => values.iter().any(|value| condition.accepts(value)),
                };
                Ok((!holds).then(|| Mismatch(format!("`{reference}` {condition} did not hold"))))
            }
        }
    }
}

impl Condition {
    fn accepts(&self, value: &str) -> bool {
        match self {
            Condition::Equals(expected) => value == expected,
            Condition::In(options) => options.iter().any(|option| option == value),
            Condition::Matches(regex) => regex.is_match(value),
            Condition::Exists(wanted) => *wanted,
            Condition::Cidr(networks) => value.trim().parse::<IpAddr>().is_ok_and(|ip| {
                let ip = ip.to_canonical();
                networks.iter().any(|network| network.contains(&ip))
            }),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Equals(value) => write!(f, "equals `{value}`"),
            Condition::In(values) => write!(f, "in [{}]", values.join(", ")),
            Condition::Matches(regex) => write!(f, "matches `{}`", regex.as_str()),
            Condition::Exists(wanted) => write!(f, "exists: {wanted}"),
            Condition::Cidr(networks) => {
                let networks: Vec<String> = networks.iter().map(IpNet::to_string).collect();
                write!(f, "cidr [{}]", networks.join(", "))
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, name: &str, rules: &[Rule]| {
            let inner: Vec<String> = rules.iter().map(Rule::to_string).collect();
            write!(f, "{name}({})", inner.join(", "))
        };
        match self {
            Rule::All(rules) => list(f, "all", rules),
            Rule::Any(rules) => list(f, "any", rules),
            Rule::Not(rule) => write!(f, "not({rule})"),
            Rule::Leaf {
                reference,
                condition,
            } => write!(f, "`{reference}` {condition}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Headers;

    fn leaf(reference: &str, condition: Condition) -> Rule {
        Rule::Leaf {
            reference: Reference::parse(reference).unwrap(),
            condition,
        }
    }

    fn request() -> RequestContext {
        RequestContext {
            headers: Headers::new([
                ("content-type".to_string(), "application/json".to_string()),
                ("x-github-event".to_string(), "push".to_string()),
            ]),
            body: r#"{"ref": "refs/heads/main", "commits": [{"modified": ["README.md"]}, {"modified": ["src/main.rs"]}], "n": 7}"#.into(),
            remote_ip: Some("10.1.2.3".parse().unwrap()),
            ..RequestContext::default()
        }
    }

    #[test]
    fn evaluates_rules() {
        let equals = |v: &str| Condition::Equals(v.into());
        let regex = |r: &str| Condition::Matches(Pattern::new(r).unwrap());
        let cidr =
            |nets: &[&str]| Condition::Cidr(nets.iter().map(|n| n.parse().unwrap()).collect());
        let cases: Vec<(Rule, bool)> = vec![
            (leaf("payload.ref", equals("refs/heads/main")), true),
            (leaf("payload.ref", equals("refs/heads/dev")), false),
            (leaf("payload.n", equals("7")), true),
            (
                leaf(
                    "header.X-GitHub-Event",
                    Condition::In(vec!["push".into(), "ping".into()]),
                ),
                true,
            ),
            (leaf("payload.ref", regex("^refs/tags/")), false),
            (leaf("payload.commits.*.modified.*", regex(r"^src/")), true),
            (
                leaf("payload.commits.*.modified.*", equals("docs/x.md")),
                false,
            ),
            (leaf("payload.missing", Condition::Exists(false)), true),
            (leaf("payload.missing", Condition::Exists(true)), false),
            (leaf("payload.ref", Condition::Exists(true)), true),
            (leaf("payload.missing", equals("")), false),
            (leaf("request.remote_ip", cidr(&["10.0.0.0/8"])), true),
            (
                leaf("request.remote_ip", cidr(&["192.168.0.0/16", "::1/128"])),
                false,
            ),
            (leaf("payload.ref", cidr(&["10.0.0.0/8"])), false),
            (
                Rule::All(vec![
                    leaf("header.x-github-event", equals("push")),
                    leaf("payload.ref", equals("refs/heads/main")),
                ]),
                true,
            ),
            (
                Rule::Any(vec![
                    leaf("payload.ref", equals("refs/heads/dev")),
                    leaf("payload.ref", equals("refs/heads/main")),
                ]),
                true,
            ),
            (Rule::Any(vec![leaf("payload.ref", equals("x"))]), false),
            (
                Rule::Not(Box::new(leaf("payload.ref", equals("refs/heads/main")))),
                false,
            ),
            (
                Rule::Not(Box::new(Rule::All(vec![leaf("payload.n", equals("8"))]))),
                true,
            ),
            (Rule::All(vec![]), true),
        ];
        let request = request();
        for (rule, expected) in cases {
            let got = rule.evaluate(&request).unwrap().is_none();
            assert_eq!(got, expected, "{rule}");
        }
    }

    #[test]
    fn a_rule_on_an_unknown_client_address_never_holds() {
        let cidr = || Condition::Cidr(vec!["203.0.113.0/24".parse().unwrap()]);
        let address = || leaf("request.remote_ip", cidr());
        let not = |rule: Rule| Rule::Not(Box::new(rule));
        let held = || leaf("payload.ref", Condition::Equals("refs/heads/main".into()));
        let failed = || leaf("payload.ref", Condition::Equals("refs/heads/dev".into()));
        // Each of these would hold for some address: none may hold for an unknown one.
        let closed = [
            address(),
            not(address()),
            not(not(address())),
            leaf("request.remote_ip", Condition::Exists(false)),
            leaf("request.remote_ip", Condition::Exists(true)),
            Rule::Any(vec![failed(), not(address())]),
            Rule::Any(vec![not(address()), held()]),
            Rule::All(vec![held(), not(address())]),
            not(Rule::All(vec![held(), address()])),
            not(Rule::Any(vec![failed(), address()])),
        ];
        let unknown = RequestContext {
            remote_ip: None,
            ..request()
        };
        for rule in closed {
            let Ok(Some(Mismatch(reason))) = rule.evaluate(&unknown) else {
                panic!("{rule} held for an unknown address")
            };
            assert!(
                reason.contains("client address is unknown"),
                "{rule}: {reason}"
            );
        }
        // A rule decided before the address is read does not read it.
        let decided = [
            (Rule::Any(vec![held(), address()]), true),
            (Rule::All(vec![failed(), not(address())]), false),
        ];
        for (rule, holds) in decided {
            assert_eq!(rule.evaluate(&unknown).unwrap().is_none(), holds, "{rule}");
        }
        // An IPv4-mapped value is the IPv4 address it holds.
        let mapped = RequestContext {
            remote_ip: Some("::ffff:203.0.113.9".parse().unwrap()),
            ..request()
        };
        assert_eq!(address().evaluate(&mapped), Ok(None));
    }

    #[test]
    fn a_mismatch_names_the_leaf_and_a_bad_body_is_an_error() {
        let rule = leaf("payload.ref", Condition::Equals("refs/heads/dev".into()));
        let Some(Mismatch(reason)) = rule.evaluate(&request()).unwrap() else {
            panic!("should not hold")
        };
        assert_eq!(reason, "`payload.ref` equals `refs/heads/dev` did not hold");

        let broken = RequestContext {
            body: "{".into(),
            ..RequestContext::default()
        };
        assert!(rule.evaluate(&broken).is_err());
        // A rule that needs no payload never parses the body.
        let header_rule = leaf("header.x", Condition::Exists(false));
        assert_eq!(header_rule.evaluate(&broken), Ok(None));
    }
}
