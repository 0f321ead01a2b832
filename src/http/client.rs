//! Who sent a request: the client address and request id, believing forwarded headers only from a
//! peer inside `trusted_proxies`.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::request::Headers;

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|network| network.contains(&ip))
}

/// The client address: the peer's, or, from a trusted peer, the rightmost `X-Forwarded-For`
/// entry that is not itself a trusted proxy (else the `Forwarded: for=` of the last hop).
pub fn client_ip(peer: Option<IpAddr>, headers: &Headers, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    if let Some(forwarded_for) = headers.joined("x-forwarded-for") {
        let hops: Vec<IpAddr> = forwarded_for
            .split(',')
            .filter_map(|entry| parse_node(entry.trim()))
            .collect();
        if let Some(client) = hops.iter().rev().find(|ip| !is_trusted(**ip, trusted)) {
            return Some(*client);
        }
        if let Some(first) = hops.first() {
            return Some(*first);
        }
    }
    if let Some(forwarded) = headers.joined("forwarded") {
        let hops: Vec<IpAddr> = forwarded
            .split(',')
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(value.trim()))?
                })
            })
            .collect();
        if let Some(client) = hops.iter().rev().find(|ip| !is_trusted(**ip, trusted)) {
            return Some(*client);
        }
    }
    Some(peer)
}

/// Parses `1.2.3.4`, `1.2.3.4:5678`, `"[2001:db8::1]:443"` or `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim_matches('"');
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.rsplit_once(':')?.0.parse().ok()
}

/// The request id: the proxy's `X-Request-Id` from a trusted peer when it is sane, else a new one.
pub fn request_id(peer: Option<IpAddr>, headers: &Headers, trusted: &[IpNet]) -> String {
    let from_proxy = peer
        .filter(|peer| is_trusted(*peer, trusted))
        .and_then(|_| headers.get("x-request-id"))
        .map(str::trim)
        .filter(|id| {
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        });
    match from_proxy {
        Some(id) => id.to_string(),
        None => format!("{:032x}", rand::random::<u128>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn believes_forwarded_headers_only_from_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let cases: &[(&str, &[(&str, &str)], &str)] = &[
            (
                "203.0.113.9",
                &[("x-forwarded-for", "198.51.100.1")],
                "203.0.113.9",
            ),
            (
                "10.0.0.2",
                &[("x-forwarded-for", "198.51.100.1")],
                "198.51.100.1",
            ),
            (
                "10.0.0.2",
                &[("x-forwarded-for", "6.6.6.6, 198.51.100.1, 10.0.0.3")],
                "198.51.100.1",
            ),
            (
                "10.0.0.2",
                &[("x-forwarded-for", "10.0.0.4, 10.0.0.3")],
                "10.0.0.4",
            ),
            ("10.0.0.2", &[("x-forwarded-for", "garbage")], "10.0.0.2"),
            (
                "::1",
                &[("forwarded", "for=\"[2001:db8::7]:443\";proto=https")],
                "2001:db8::7",
            ),
            (
                "10.0.0.2",
                &[("forwarded", "for=192.0.2.60;proto=http, for=10.0.0.9")],
                "192.0.2.60",
            ),
            ("10.0.0.2", &[], "10.0.0.2"),
        ];
        for (peer, pairs, expected) in cases {
            let got = client_ip(Some(peer.parse().unwrap()), &headers(pairs), &trusted);
            assert_eq!(got, Some(expected.parse().unwrap()), "{peer} {pairs:?}");
        }
    }

    #[test]
    fn takes_the_request_id_only_from_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let given = headers(&[("x-request-id", "abc-123")]);
        assert_eq!(
            request_id(Some("10.0.0.1".parse().unwrap()), &given, &trusted),
            "abc-123"
        );
        assert_ne!(
            request_id(Some("8.8.8.8".parse().unwrap()), &given, &trusted),
            "abc-123"
        );
        let hostile = headers(&[("x-request-id", "a\nb")]);
        assert_eq!(
            request_id(Some("10.0.0.1".parse().unwrap()), &hostile, &trusted).len(),
            32
        );
    }
}
