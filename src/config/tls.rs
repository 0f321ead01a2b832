//! `server.tls` and the `tls:` entries of `listen`: the certificate and key are read and checked
//! here, at load, so that `check` and a reload refuse a pair that could not serve; or `acme`,
//! the settings of the ACME CA that issues it (see src/acme.rs).

use std::sync::Arc;
use std::time::SystemTime;

use serde_yaml::Value;

use super::decode::Decoder;
use super::source_map::{Part, YamlPath};
use super::{TlsSettings, TlsSource};
use crate::acme::{self, AcmeSettings};
use crate::tls::{self, MinVersion, PairError};

const KEYS: &[&str] = &["cert", "key", "min_version", "acme"];
const ACME_KEYS: &[&str] = &["domains", "email", "directory", "ca_roots"];

/// Decodes `server.tls` and reads its pair; `None` when it has errors (they are recorded).
pub fn decode(decoder: &mut Decoder<'_>, value: &Value, path: &YamlPath) -> Option<TlsSettings> {
    let fields = decoder.mapping(value, path, "`tls`", KEYS)?;
    let min_version = match fields.get("min_version") {
        None => Some(MinVersion::Tls12),
        Some((value, path)) => decoder.choice(
            value,
            &path,
            &[("1.2", MinVersion::Tls12), ("1.3", MinVersion::Tls13)],
        ),
    };
    if let Some((value, acme_path)) = fields.get("acme") {
        let both = ["cert", "key"]
            .iter()
            .find(|name| fields.get(name).is_some());
        if let Some(name) = both {
            decoder.error(
                &path.key(name),
                Part::Key,
                format!("`tls` takes either `cert` and `key` or `acme`, not both: remove `{name}` to have certificates from the ACME CA, or `acme` to serve your own files"),
            );
        }
        let acme = decode_acme(decoder, value, &acme_path);
        let (acme, min_version) = (acme?, min_version?);
        return both.is_none().then_some(TlsSettings {
            min_version,
            source: TlsSource::Acme(acme),
        });
    }
    let mut file = |name: &str| match fields.get(name) {
        Some((value, path)) => decoder.file_path(value, &path).map(|file| (file, path)),
        None => {
            decoder.error(
                path,
                Part::Key,
                format!("`tls` needs `{name}`: the path of the PEM file, such as `/etc/hookrunner/tls/{}` (or, instead of `cert` and `key`, `acme` for certificates from an ACME CA)", if name == "cert" { "fullchain.pem" } else { "privkey.pem" }),
            );
            None
        }
    };
    let (cert, key) = (file("cert"), file("key"));
    let ((cert, cert_path), (key, key_path), min_version) = (cert?, key?, min_version?);
    match tls::load(&cert, &key) {
        Ok(pair) => {
            if let Some(at) = pair.expired(SystemTime::now()) {
                decoder.warning(
                    &cert_path,
                    Part::Value,
                    format!("the certificate in `{}` expired on {at} (its notAfter), so clients refuse it; renew it (a reload takes the new one)", cert.display()),
                );
            }
            if readable_by_everyone(&key) {
                decoder.warning(
                    &key_path,
                    Part::Value,
                    format!("the private key `{}` can be read by every user; `chmod 600` it (or 640, with a group only hookrunner's user is in)", key.display()),
                );
            }
            Some(TlsSettings {
                min_version,
                source: TlsSource::Files {
                    cert,
                    key,
                    pair: Arc::new(pair),
                },
            })
        }
        Err(error) => {
            // The error names its file; it is shown at the key that gives that file.
            let at = match &error {
                PairError::Unreadable { path, .. } if *path == key => &key_path,
                PairError::NoKey { .. } | PairError::BadKey { .. } | PairError::Mismatch { .. } => {
                    &key_path
                }
                _ => &cert_path,
            };
            decoder.error(at, Part::Value, error.to_string());
            None
        }
    }
}

/// Decodes `server.tls.acme`; `None` when it has errors (they are recorded).
fn decode_acme(decoder: &mut Decoder<'_>, value: &Value, path: &YamlPath) -> Option<AcmeSettings> {
    let fields = decoder.mapping(value, path, "`acme`", ACME_KEYS)?;
    let domains = match fields.get("domains") {
        None => {
            decoder.error(
                path,
                Part::Key,
                "`acme` needs `domains`: the names the certificate is for, such as `[hooks.example.com]`",
            );
            None
        }
        Some((value, path)) => decoder.string_list(value, &path).and_then(|names| {
            if names.is_empty() {
                decoder.error(&path, Part::Value, "`domains` is empty; list the names the certificate is for, such as `[hooks.example.com]`");
                return None;
            }
            let mut domains = Vec::new();
            for (index, name) in names.iter().enumerate() {
                match domain(name) {
                    Ok(name) => domains.push(name),
                    Err(message) => decoder.error(&path.index(index), Part::Value, message),
                }
            }
            (domains.len() == names.len()).then_some(domains)
        }),
    };
    let email = match fields.get("email") {
        None => Some(None),
        Some((value, path)) => decoder.string(value, &path).and_then(|email| {
            let (local, host) = email.split_once('@').unwrap_or_default();
            if local.is_empty() || host.is_empty() || email.contains([' ', ':', ',']) {
                decoder.error(
                    &path,
                    Part::Value,
                    format!("`{email}` is not an email address, such as `ops@example.com`"),
                );
                return None;
            }
            Some(Some(email))
        }),
    };
    let directory = match fields.get("directory") {
        None => Some(acme::LETS_ENCRYPT.to_string()),
        Some((value, path)) => decoder.string(value, &path).and_then(|text| {
            match url::Url::parse(&text) {
                Ok(url) if url.scheme() == "https" && url.host().is_some() => Some(text),
                _ => {
                    decoder.error(&path, Part::Value, format!("`{text}` is not an `https://` URL; `directory` is the ACME CA's directory, such as `{}`", acme::LETS_ENCRYPT));
                    None
                }
            }
        }),
    };
    let ca_roots = match fields.get("ca_roots") {
        None => Some(None),
        Some((value, path)) => {
            decoder
                .file_path(value, &path)
                .and_then(|file| match std::fs::read(&file) {
                    Ok(pem) if certificates_in(&pem) > 0 => {
                        let count = certificates_in(&pem);
                        if count > 1 {
                            // instant-acme's HTTPS client takes a single root.
                            decoder.warning(&path, Part::Value, format!("`{}` holds {count} certificates; only the first is trusted for the ACME CA", file.display()));
                        }
                        Some(Some(file))
                    }
                    Ok(_) => {
                        decoder.error(
                            &path,
                            Part::Value,
                            format!(
                                "`{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                                file.display()
                            ),
                        );
                        None
                    }
                    Err(error) => {
                        decoder.error(
                            &path,
                            Part::Value,
                            format!("cannot read `{}`: {error}", file.display()),
                        );
                        None
                    }
                })
        }
    };
    Some(AcmeSettings {
        domains: domains?,
        email: email?,
        directory: directory?,
        ca_roots: ca_roots?,
    })
}

/// How many PEM certificates `pem` holds.
fn certificates_in(pem: &[u8]) -> usize {
    pem.windows(27)
        .filter(|window| *window == b"-----BEGIN CERTIFICATE-----")
        .count()
}

/// A name `tls-alpn-01` can validate, lowercase: DNS labels of letters, digits and `-`; no
/// wildcard (that needs the dns-01 challenge) and no IP address.
fn domain(name: &str) -> Result<String, String> {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    if lower.starts_with("*.") {
        return Err(format!("`{name}`: a wildcard name needs the dns-01 challenge, which hookrunner does not answer; list each name"));
    }
    if lower.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "`{name}` is an IP address; ACME certificates here are for DNS names"
        ));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if lower.is_empty() || lower.len() > 253 || !lower.split('.').all(label_ok) {
        return Err(format!(
            "`{name}` is not a DNS name, such as `hooks.example.com`"
        ));
    }
    Ok(lower)
}

/// Each `tls:HOST:PORT` entry of `listen` needs `server.tls`; `tls:unix:` is refused, since a
/// unix socket is local.
pub fn check_listeners(
    decoder: &mut Decoder<'_>,
    listen: &[String],
    path: &YamlPath,
    tls_given: bool,
) {
    for (index, address) in listen.iter().enumerate() {
        let Some(rest) = address.strip_prefix("tls:") else {
            continue;
        };
        if rest.starts_with("unix:") {
            decoder.error(
                &path.index(index),
                Part::Value,
                format!("`{address}`: TLS is for TCP listeners; a `unix:` socket is local, listen on `{rest}` instead"),
            );
        } else if !tls_given {
            decoder.error(
                &path.index(index),
                Part::Value,
                format!(
                    "`{address}` needs `server.tls` with the `cert` and `key` it serves, or `acme`"
                ),
            );
        }
    }
}

/// Whether a file's mode lets every user read it.
fn readable_by_everyone(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|metadata| metadata.permissions().mode() & 0o004 != 0)
}

#[cfg(test)]
mod tests {
    use super::domain;

    fn check(name: &str, expected: Result<&str, &str>) {
        match (domain(name), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{name}: {got}"),
            (got, want) => panic!("{name}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn acme_domains_are_dns_names_without_wildcards_or_addresses() {
        check("hooks.example.com", Ok("hooks.example.com"));
        check("Hooks.Example.COM.", Ok("hooks.example.com"));
        check("localhost", Ok("localhost"));
        check("xn--bcher-kva.example", Ok("xn--bcher-kva.example"));
        check(
            "*.example.com",
            Err("a wildcard name needs the dns-01 challenge"),
        );
        check("192.0.2.1", Err("is an IP address"));
        check("::1", Err("is an IP address"));
        check("", Err("is not a DNS name"));
        check("a..b", Err("is not a DNS name"));
        check("-a.example", Err("is not a DNS name"));
        check("hooks_1.example", Err("is not a DNS name"));
        check("https://hooks.example.com", Err("is not a DNS name"));
    }
}
