//! The `signature:` block of a hook: `none`, one provider with its settings, or `any:` of them.

use serde_yaml::Value;

use super::decode::{did_you_mean, key_text, Decoder};
use super::source_map::{Part, YamlPath};
use crate::signature::{
    self, Algorithm, Encoding, Provider, ProviderSettings, Signature, PROVIDERS,
};

pub fn decode(decoder: &mut Decoder<'_>, value: &Value, path: &YamlPath) -> Option<Signature> {
    if value.as_str() == Some("none") {
        return Some(Signature::None);
    }
    let any = value
        .as_mapping()
        .filter(|map| map.len() == 1)
        .and_then(|map| map.get("any"));
    let Some(entries) = any else {
        return decode_provider(decoder, value, path).map(Signature::Provider);
    };
    let any_path = path.key("any");
    let items = match entries {
        Value::Sequence(items) if !items.is_empty() => items,
        _ => {
            decoder.error(&any_path, Part::Value, "`any` takes a list of providers, such as `[{github: {secret: env:GITHUB_WEBHOOK_SECRET}}, {gitea: {secret: env:GITEA_WEBHOOK_SECRET}}]`");
            return None;
        }
    };
    let mut providers = Vec::new();
    let mut complete = true;
    for (index, item) in items.iter().enumerate() {
        let item_path = any_path.index(index);
        let nested = item.as_str() == Some("none")
            || item.as_mapping().is_some_and(|map| map.contains_key("any"));
        if nested {
            decoder.error(
                &item_path,
                Part::Value,
                "each entry of `any` is one provider, not `none` or another `any`",
            );
            complete = false;
            continue;
        }
        match decode_provider(decoder, item, &item_path) {
            Some(provider) => providers.push(provider),
            None => complete = false,
        }
    }
    complete.then_some(Signature::Any(providers))
}

/// One provider with its settings, such as `{github: {secret: env:GITHUB_WEBHOOK_SECRET}}`.
fn decode_provider(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
) -> Option<Box<dyn Provider>> {
    let Value::Mapping(map) = value else {
        decoder.error(path, Part::Value, "`signature` must be `none`, a provider such as `{github: {secret: env:GITHUB_WEBHOOK_SECRET}}`, or `{any: [...]}` of providers");
        return None;
    };
    if map.len() != 1 {
        decoder.error(
            path,
            Part::Value,
            format!(
                "`signature` names exactly one provider (or `any:` with a list); found {}",
                map.len()
            ),
        );
        return None;
    }
    let (name_value, settings) = map.iter().next()?;
    let name = key_text(name_value);
    let settings_path = path.key(&name);
    let Some((_, extra_keys)) = PROVIDERS.iter().find(|(provider, _)| *provider == name) else {
        let names: Vec<&str> = PROVIDERS.iter().map(|(provider, _)| *provider).collect();
        let hint = did_you_mean(&name, &names)
            .map(|suggestion| format!(", did you mean `{suggestion}`?"))
            .unwrap_or_else(|| format!("; known providers: {}", names.join(", ")));
        decoder.error(
            &settings_path,
            Part::Key,
            format!("unknown signature provider `{name}`{hint}"),
        );
        return None;
    };
    let what = format!("`signature.{name}`");
    let known: Vec<&str> = std::iter::once("secret")
        .chain(extra_keys.iter().copied())
        .collect();
    let fields = decoder.mapping(settings, &settings_path, &what, &known)?;
    let Some((secret_value, secret_path)) = fields.get("secret") else {
        decoder.error(
            &settings_path,
            Part::Value,
            format!("{what} needs `secret:` (e.g. `env:WEBHOOK_SECRET`, or a list for rotation)"),
        );
        return None;
    };
    let secrets = decoder.secrets(secret_value, &secret_path);

    let mut valid = true;
    let mut settings = ProviderSettings::new(
        &name,
        secrets
            .clone()
            .unwrap_or(crate::secret::Secrets(Vec::new())),
    );
    if let Some((value, path)) = fields.get("tolerance") {
        settings.tolerance = decoder.duration(value, &path);
        valid &= settings.tolerance.is_some();
    }
    if let Some((value, path)) = fields.get("allow_sha1") {
        let flag = decoder.bool(value, &path);
        valid &= flag.is_some();
        settings.allow_sha1 = flag.unwrap_or(false);
    }
    for key in ["header", "query", "prefix"] {
        if let Some((value, path)) = fields.get(key) {
            let text = decoder.string(value, &path);
            valid &= text.is_some();
            match key {
                "header" => settings.header = text,
                "query" => settings.query = text,
                _ => settings.prefix = text,
            }
        }
    }
    if let Some((value, path)) = fields.get("algorithm") {
        settings.algorithm = decoder.choice(
            value,
            &path,
            &[
                ("sha1", Algorithm::Sha1),
                ("sha256", Algorithm::Sha256),
                ("sha512", Algorithm::Sha512),
            ],
        );
        valid &= settings.algorithm.is_some();
    }
    if let Some((value, path)) = fields.get("encoding") {
        settings.encoding = decoder.choice(
            value,
            &path,
            &[("hex", Encoding::Hex), ("base64", Encoding::Base64)],
        );
        valid &= settings.encoding.is_some();
    }
    if secrets.is_none() || !valid {
        return None;
    }
    match signature::build(settings) {
        Ok(provider) => Some(provider),
        Err(message) => {
            let at = if name == "standard" {
                &secret_path
            } else {
                &settings_path
            };
            decoder.error(at, Part::Value, message);
            None
        }
    }
}
