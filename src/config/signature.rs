//! The `signature:` block of a hook: `none`, or one provider with its settings.

use serde_yaml::Value;

use super::decode::{key_text, Decoder, Fields};
use super::source_map::{Part, YamlPath};
use crate::signature::{
    Algorithm, Encoding, Github, Gitlab, HmacScheme, Provider, Signature, Token, TokenLocation,
};

const PROVIDERS: &[&str] = &["github", "gitlab", "hmac", "token"];

pub fn decode(decoder: &mut Decoder<'_>, value: &Value, path: &YamlPath) -> Option<Signature> {
    if value.as_str() == Some("none") {
        return Some(Signature::None);
    }
    let Value::Mapping(map) = value else {
        decoder.error(path, Part::Value, "`signature` must be `none` or a provider, such as `{github: {secret: env:GITHUB_WEBHOOK_SECRET}}`");
        return None;
    };
    if map.len() != 1 {
        decoder.error(
            path,
            Part::Value,
            format!(
                "`signature` names exactly one provider; found {}",
                map.len()
            ),
        );
        return None;
    }
    let (name_value, settings) = map.iter().next()?;
    let name = key_text(name_value);
    let settings_path = path.key(&name);
    let known: &[&str] = match name.as_str() {
        "github" => &["secret", "allow_sha1"],
        "gitlab" => &["secret"],
        "hmac" => &["secret", "header", "algorithm", "encoding", "prefix"],
        "token" => &["secret", "header", "query"],
        _ => {
            let hint = super::decode::did_you_mean(&name, PROVIDERS)
                .map(|suggestion| format!(", did you mean `{suggestion}`?"))
                .unwrap_or_else(|| format!("; known providers: {}", PROVIDERS.join(", ")));
            decoder.error(
                &settings_path,
                Part::Key,
                format!("unknown signature provider `{name}`{hint}"),
            );
            return None;
        }
    };
    let what = format!("`signature.{name}`");
    let fields = decoder.mapping(settings, &settings_path, &what, known)?;
    let Some((secret_value, secret_path)) = fields.get("secret") else {
        decoder.error(
            &settings_path,
            Part::Value,
            format!("{what} needs `secret:` (e.g. `env:WEBHOOK_SECRET`, or a list for rotation)"),
        );
        return None;
    };
    let secrets = decoder.secrets(secret_value, &secret_path);
    let provider: Box<dyn Provider> = match name.as_str() {
        "github" => {
            let allow_sha1 =
                optional(decoder, &fields, "allow_sha1", Decoder::bool)?.unwrap_or(false);
            Box::new(Github {
                secrets: secrets?,
                allow_sha1,
            })
        }
        "gitlab" => Box::new(Gitlab { secrets: secrets? }),
        "hmac" => {
            let header = required(decoder, &fields, "header", &what)?;
            let algorithm = optional(decoder, &fields, "algorithm", |d, v, p| {
                d.choice(
                    v,
                    p,
                    &[
                        ("sha1", Algorithm::Sha1),
                        ("sha256", Algorithm::Sha256),
                        ("sha512", Algorithm::Sha512),
                    ],
                )
            })?
            .unwrap_or(Algorithm::Sha256);
            let encoding = optional(decoder, &fields, "encoding", |d, v, p| {
                d.choice(
                    v,
                    p,
                    &[("hex", Encoding::Hex), ("base64", Encoding::Base64)],
                )
            })?
            .unwrap_or(Encoding::Hex);
            let prefix = optional(decoder, &fields, "prefix", Decoder::string)?.unwrap_or_default();
            Box::new(HmacScheme {
                header,
                algorithm,
                encoding,
                prefix,
                secrets: secrets?,
            })
        }
        "token" => {
            let header = optional(decoder, &fields, "header", Decoder::string)?;
            let query = optional(decoder, &fields, "query", Decoder::string)?;
            let location = match (header, query) {
                (Some(header), None) => TokenLocation::Header(header),
                (None, Some(query)) => TokenLocation::Query(query),
                _ => {
                    decoder.error(
                        &settings_path,
                        Part::Value,
                        "`signature.token` needs exactly one of `header:` or `query:`",
                    );
                    return None;
                }
            };
            Box::new(Token {
                location,
                secrets: secrets?,
            })
        }
        _ => unreachable!("unknown providers returned above"),
    };
    Some(Signature::Provider(provider))
}

/// An optional field: `Some(None)` when absent, `None` when present but invalid.
fn optional<'s, T>(
    decoder: &mut Decoder<'s>,
    fields: &Fields<'_>,
    key: &str,
    read: impl FnOnce(&mut Decoder<'s>, &Value, &YamlPath) -> Option<T>,
) -> Option<Option<T>> {
    match fields.get(key) {
        None => Some(None),
        Some((value, path)) => read(decoder, value, &path).map(Some),
    }
}

fn required(
    decoder: &mut Decoder<'_>,
    fields: &Fields<'_>,
    key: &str,
    what: &str,
) -> Option<String> {
    match fields.get(key) {
        Some((value, path)) => decoder.string(value, &path),
        None => {
            decoder.error(fields.path(), Part::Value, format!("{what} needs `{key}:`"));
            None
        }
    }
}
