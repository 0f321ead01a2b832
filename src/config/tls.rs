//! `server.tls` and the `tls:` entries of `listen`: the certificate and key are read and checked
//! here, at load, so that `check` and a reload refuse a pair that could not serve.

use std::sync::Arc;
use std::time::SystemTime;

use serde_yaml::Value;

use super::decode::Decoder;
use super::source_map::{Part, YamlPath};
use super::TlsSettings;
use crate::tls::{self, MinVersion, PairError};

const KEYS: &[&str] = &["cert", "key", "min_version"];

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
    let mut file = |name: &str| match fields.get(name) {
        Some((value, path)) => decoder.file_path(value, &path).map(|file| (file, path)),
        None => {
            decoder.error(
                path,
                Part::Key,
                format!("`tls` needs `{name}`: the path of the PEM file, such as `/etc/hookrunner/tls/{}`", if name == "cert" { "fullchain.pem" } else { "privkey.pem" }),
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
                cert,
                key,
                min_version,
                pair: Arc::new(pair),
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
                format!("`{address}` needs `server.tls` with the `cert` and `key` it serves"),
            );
        }
    }
}

/// Whether a file's mode lets every user read it.
fn readable_by_everyone(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|metadata| metadata.permissions().mode() & 0o004 != 0)
}
