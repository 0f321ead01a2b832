//! Who sent a request: the client address and request id, believing forwarded headers only from a
//! peer that `trusted_proxies` names.
//!
//! The address is walked from the right, the end the proxies closest to us wrote: the first hop
//! that is not a trusted proxy is the client. A hop that does not parse (`unknown`, `unix:`,
//! `_hidden`, garbage) ends the walk with the address unknown (`None`), since anything left of it
//! may have been written by the client. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as IPv4
//! peers of a `[::]` listener arrive) are taken as the IPv4 addresses they are.

use std::net::IpAddr;

use crate::config::TrustedProxies;
use crate::request::Headers;

/// The other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Ip(IpAddr),
    /// A client of a `unix:` listener, which has no address.
    UnixSocket,
}

impl Peer {
    /// The peer of a connection: actix gives no address for a unix socket's.
    pub fn from_socket(address: Option<std::net::SocketAddr>) -> Peer {
        address.map_or(Peer::UnixSocket, |address| {
            Peer::Ip(address.ip().to_canonical())
        })
    }

    fn is_trusted(self, trusted: &TrustedProxies) -> bool {
        match self {
            Peer::Ip(ip) => trusted.contains(ip),
            Peer::UnixSocket => trusted.unix,
        }
    }
}

/// The client address; `None` when it is unknown: a unix-socket peer that is not trusted, or a
/// trusted proxy whose forwarded hops do not name an address.
pub fn client_ip(peer: Peer, headers: &Headers, trusted: &TrustedProxies) -> Option<IpAddr> {
    let own = match peer {
        Peer::Ip(ip) => Some(ip.to_canonical()),
        Peer::UnixSocket => None,
    };
    if !peer.is_trusted(trusted) {
        return own;
    }
    // A proxy writes one of the two headers (or both, naming the same client) and passes the
    // other through as the client sent it. Which one is the proxy's is not known here, so when
    // both are present they must agree: otherwise a client could name itself in the header its
    // proxy does not write.
    let by_x_forwarded_for = headers
        .joined("x-forwarded-for")
        .map(|hops| walk(hops.split(',').map(parse_node), trusted));
    let forwarded = headers.joined("forwarded");
    // A `Forwarded` with no `for=` at all (only `proto=`, `host=` or `by=`) names no client.
    let names_a_client = forwarded.as_deref().is_some_and(|elements| {
        elements
            .split([',', ';'])
            .filter_map(|pair| pair.split_once('='))
            .any(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
    });
    let by_forwarded =
        forwarded.map(|elements| walk(elements.split(',').map(forwarded_for), trusted));
    match (by_x_forwarded_for, by_forwarded) {
        (Some(one), Some(other)) if names_a_client => one.filter(|_| one == other),
        (Some(client), _) | (None, Some(client)) => client,
        (None, None) => own,
    }
}

/// The first hop from the right that is not a trusted proxy; when every hop is one, the leftmost.
/// A hop that is not an address (`None`) ends the walk with the address unknown.
fn walk(
    hops: impl DoubleEndedIterator<Item = Option<IpAddr>>,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let mut leftmost = None;
    for hop in hops.rev() {
        let ip = hop?.to_canonical();
        if !trusted.contains(ip) {
            return Some(ip);
        }
        leftmost = Some(ip);
    }
    leftmost
}

/// The `for=` node of one `Forwarded` element; `None` when the element has none or it is not an
/// address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(value))?
    })
}

/// Parses `1.2.3.4`, `1.2.3.4:5678`, `"[2001:db8::1]:443"`, `[2001:db8::1]` or `2001:db8::1`;
/// anything else (`unknown`, `_hidden`, `unix:`, a bad port) is not an address.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(text);
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                after => Some(after.strip_prefix(':')?),
            };
            (host, port)
        }
        None => {
            let (host, port) = text.rsplit_once(':')?;
            (host, Some(port))
        }
    };
    if let Some(port) = port {
        port.parse::<u16>().ok()?;
    }
    match host.parse().ok()? {
        // An IPv6 address with a port must be bracketed.
        IpAddr::V6(_) if !text.starts_with('[') => None,
        ip => Some(ip),
    }
}

/// Whether the client reached us over HTTPS: from a trusted proxy, the last `X-Forwarded-Proto`
/// value (or the last `proto=` of `Forwarded`), which the proxy nearest to us wrote; otherwise
/// whether the listener itself speaks TLS. A client's own claim is never believed.
pub fn came_over_https(
    peer: Peer,
    headers: &Headers,
    trusted: &TrustedProxies,
    listener_tls: bool,
) -> bool {
    if !peer.is_trusted(trusted) {
        return listener_tls;
    }
    let forwarded_proto = headers.joined("x-forwarded-proto").and_then(|protos| {
        protos
            .rsplit(',')
            .map(str::trim)
            .find(|proto| !proto.is_empty())
            .map(str::to_string)
    });
    let forwarded = || {
        headers.joined("forwarded").and_then(|elements| {
            elements
                .rsplit(',')
                .flat_map(|element| element.split(';'))
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("proto"))
                .map(|(_, value)| value.trim().trim_matches('"').to_string())
        })
    };
    match forwarded_proto.or_else(forwarded) {
        Some(proto) => proto.eq_ignore_ascii_case("https"),
        None => listener_tls,
    }
}

/// The request id: the proxy's `X-Request-Id` from a trusted peer when it is sane, else a new one.
pub fn request_id(peer: Peer, headers: &Headers, trusted: &TrustedProxies) -> String {
    let from_proxy = Some(peer)
        .filter(|peer| peer.is_trusted(trusted))
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

    fn trusted(unix: bool) -> TrustedProxies {
        TrustedProxies {
            networks: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            unix,
        }
    }

    fn peer(text: &str) -> Peer {
        match text {
            "unix" => Peer::UnixSocket,
            ip => Peer::Ip(ip.parse().unwrap()),
        }
    }

    /// `(peer, headers, trust unix, client)`; `-` is an unknown address.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool, &'a str);

    #[test]
    fn walks_forwarded_hops_from_the_right_and_stops_at_one_that_does_not_parse() {
        let xff = "x-forwarded-for";
        let cases: &[Case] = &[
            // An untrusted peer is the client, whatever it claims.
            (
                "203.0.113.9",
                &[(xff, "198.51.100.1")],
                false,
                "203.0.113.9",
            ),
            (
                "203.0.113.9",
                &[("forwarded", "for=198.51.100.1")],
                false,
                "203.0.113.9",
            ),
            ("::ffff:203.0.113.9", &[], false, "203.0.113.9"),
            // A trusted peer: the first hop from the right that is not trusted.
            ("10.0.0.2", &[(xff, "198.51.100.1")], false, "198.51.100.1"),
            (
                "10.0.0.2",
                &[(xff, "6.6.6.6, 198.51.100.1, 10.0.0.3")],
                false,
                "198.51.100.1",
            ),
            (
                "10.0.0.2",
                &[(xff, "10.0.0.4, 10.0.0.3")],
                false,
                "10.0.0.4",
            ),
            (
                "10.0.0.2",
                &[(xff, "6.6.6.6"), (xff, "198.51.100.1")],
                false,
                "198.51.100.1",
            ),
            (
                "::ffff:10.0.0.2",
                &[(xff, "198.51.100.1")],
                false,
                "198.51.100.1",
            ),
            (
                "10.0.0.2",
                &[(xff, "198.51.100.1, ::ffff:10.0.0.3")],
                false,
                "198.51.100.1",
            ),
            (
                "10.0.0.2",
                &[(xff, "::ffff:198.51.100.1")],
                false,
                "198.51.100.1",
            ),
            (
                "10.0.0.2",
                &[(xff, "198.51.100.1:4711")],
                false,
                "198.51.100.1",
            ),
            (
                "10.0.0.2",
                &[(xff, "[2001:db8::7]:443")],
                false,
                "2001:db8::7",
            ),
            ("10.0.0.2", &[(xff, "2001:db8::7")], false, "2001:db8::7"),
            ("10.0.0.2", &[], false, "10.0.0.2"),
            // A hop that is not an address ends the walk: the address is unknown.
            ("10.0.0.2", &[(xff, "garbage")], false, "-"),
            ("10.0.0.2", &[(xff, "10.1.2.3, unix:")], false, "-"),
            ("10.0.0.2", &[(xff, "10.1.2.3, unknown")], false, "-"),
            (
                "10.0.0.2",
                &[(xff, "10.1.2.3, unknown, 10.0.0.3")],
                false,
                "-",
            ),
            ("10.0.0.2", &[(xff, "10.1.2.3,")], false, "-"),
            ("10.0.0.2", &[(xff, "")], false, "-"),
            ("10.0.0.2", &[(xff, "198.51.100.1:http")], false, "-"),
            ("10.0.0.2", &[(xff, "[2001:db8::7]junk")], false, "-"),
            ("10.0.0.2", &[(xff, "::ffff:198.51.100.1:80")], false, "-"),
            ("10.0.0.2", &[(xff, "fe80::1%eth0")], false, "-"),
            // ... and `Forwarded` is not read instead.
            (
                "10.0.0.2",
                &[(xff, "unknown"), ("forwarded", "for=192.0.2.60")],
                false,
                "-",
            ),
            // Both headers must agree: the proxy writes one, the client may have sent the other.
            (
                "10.0.0.2",
                &[(xff, "198.51.100.1"), ("forwarded", "for=192.0.2.60")],
                false,
                "-",
            ),
            (
                "10.0.0.2",
                &[
                    (xff, "203.0.113.5, 192.0.2.60"),
                    ("forwarded", "for=192.0.2.60"),
                ],
                false,
                "192.0.2.60",
            ),
            (
                "10.0.0.2",
                &[
                    (xff, "192.0.2.60"),
                    ("forwarded", "for=192.0.2.60, for=10.0.0.3"),
                ],
                false,
                "192.0.2.60",
            ),
            (
                "10.0.0.2",
                &[
                    (xff, "198.51.100.1"),
                    ("forwarded", "proto=https;host=example.org"),
                ],
                false,
                "198.51.100.1",
            ),
            // `Forwarded` from a trusted peer, walked the same way.
            (
                "::1",
                &[("forwarded", "for=\"[2001:db8::7]:443\";proto=https")],
                false,
                "2001:db8::7",
            ),
            (
                "10.0.0.2",
                &[("forwarded", "for=192.0.2.60;proto=http, for=10.0.0.9")],
                false,
                "192.0.2.60",
            ),
            (
                "10.0.0.2",
                &[("forwarded", "proto=http;For=192.0.2.60")],
                false,
                "192.0.2.60",
            ),
            (
                "10.0.0.2",
                &[("forwarded", "for=192.0.2.60, for=unknown")],
                false,
                "-",
            ),
            (
                "10.0.0.2",
                &[("forwarded", "for=192.0.2.60, for=_hidden")],
                false,
                "-",
            ),
            (
                "10.0.0.2",
                &[("forwarded", "for=192.0.2.60, proto=https")],
                false,
                "-",
            ),
            // A unix-socket peer has no address; with `unix` trusted its proxy is believed.
            ("unix", &[], false, "-"),
            ("unix", &[(xff, "198.51.100.1")], false, "-"),
            ("unix", &[], true, "-"),
            ("unix", &[(xff, "198.51.100.1")], true, "198.51.100.1"),
            (
                "unix",
                &[(xff, "198.51.100.1, 10.0.0.3")],
                true,
                "198.51.100.1",
            ),
            ("unix", &[(xff, "unix:")], true, "-"),
            (
                "unix",
                &[("forwarded", "for=192.0.2.60")],
                true,
                "192.0.2.60",
            ),
            // `unix` trusts unix-socket peers only.
            ("203.0.113.9", &[(xff, "198.51.100.1")], true, "203.0.113.9"),
        ];
        for (from, pairs, unix, expected) in cases {
            let got = client_ip(peer(from), &headers(pairs), &trusted(*unix));
            let got = got.map_or("-".to_string(), |ip| ip.to_string());
            assert_eq!(got, *expected, "{from} {pairs:?} unix={unix}");
        }
    }

    #[test]
    fn a_peer_is_its_canonical_address_and_a_unix_socket_has_none() {
        let mapped = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        assert_eq!(
            Peer::from_socket(Some(mapped)),
            Peer::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(Peer::from_socket(None), Peer::UnixSocket);
    }

    #[test]
    fn believes_the_forwarded_scheme_only_from_trusted_peers() {
        let cases: &[(&str, &[(&str, &str)], bool, bool)] = &[
            ("10.0.0.1", &[("x-forwarded-proto", "https")], false, true),
            ("10.0.0.1", &[("x-forwarded-proto", "http")], true, false),
            (
                "10.0.0.1",
                &[("x-forwarded-proto", "http, https")],
                false,
                true,
            ),
            (
                "10.0.0.1",
                &[("forwarded", "for=192.0.2.1;proto=https")],
                false,
                true,
            ),
            ("10.0.0.1", &[], true, true),
            ("10.0.0.1", &[], false, false),
            // An untrusted peer's claim is ignored.
            ("192.0.2.9", &[("x-forwarded-proto", "https")], false, false),
            ("192.0.2.9", &[("forwarded", "proto=http")], true, true),
        ];
        for (from, pairs, listener_tls, expected) in cases {
            assert_eq!(
                came_over_https(peer(from), &headers(pairs), &trusted(false), *listener_tls),
                *expected,
                "{from} {pairs:?}"
            );
        }
    }

    #[test]
    fn takes_the_request_id_only_from_trusted_peers() {
        let given = headers(&[("x-request-id", "abc-123")]);
        for (from, unix, believed) in [
            ("10.0.0.1", false, true),
            ("::ffff:10.0.0.1", false, true),
            ("8.8.8.8", false, false),
            ("unix", false, false),
            ("unix", true, true),
        ] {
            let id = request_id(peer(from), &given, &trusted(unix));
            assert_eq!(id == "abc-123", believed, "{from} unix={unix}");
        }
        let hostile = headers(&[("x-request-id", "a\nb")]);
        assert_eq!(
            request_id(peer("10.0.0.1"), &hostile, &trusted(false)).len(),
            32
        );
    }
}
