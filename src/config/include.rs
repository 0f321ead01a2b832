//! `include: ["hooks.d/*.yaml"]`: more files of hooks beside the config's own. Each matched file
//! (in sorted order) holds `hooks:` and nothing else, is decoded with the main file's `server`
//! settings, and reports its problems at its own lines and columns. Ids stay unique across all
//! the files. adnanh/webhook's `-hooks` given several times, or a folder of hook files, becomes
//! one config that includes them.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_yaml::Value;

use super::decode::{scalar_text, Decoder};
use super::diagnostic::ConfigErrors;
use super::diagnostic::{Diagnostic, Severity};
use super::source_map::{Part, YamlPath};
use super::{decode_file, hook, when, Document, Hook, ServerSettings};

/// The files the `include` patterns match, sorted and each once, and the patterns as written;
/// never the main config file `main` itself (`*.yaml` beside it). A pattern that matches nothing
/// is a warning: a folder of hooks may be empty for a while.
pub fn expand(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
    main: &Path,
) -> Option<(Vec<PathBuf>, Vec<String>)> {
    let main = std::fs::canonicalize(main).ok();
    let patterns = decoder.string_list(value, path)?;
    let mut files = BTreeSet::new();
    let mut valid = true;
    for (index, pattern) in patterns.iter().enumerate() {
        let at = if matches!(value, Value::Sequence(_)) {
            path.index(index)
        } else {
            path.clone()
        };
        let full = decoder.base_dir.join(pattern);
        let matched = glob::glob(&full.to_string_lossy());
        let Ok(matched) = matched else {
            decoder.error(
                &at,
                Part::Value,
                format!("`{pattern}` is not a valid file pattern"),
            );
            valid = false;
            continue;
        };
        let before = files.len();
        files.extend(matched.filter_map(Result::ok).filter(|file| {
            file.is_file() && (main.is_none() || std::fs::canonicalize(file).ok() != main)
        }));
        if files.len() == before {
            decoder.warning(&at, Part::Value, format!("`{pattern}` matches no file"));
        }
    }
    valid.then(|| (files.into_iter().collect(), patterns))
}

/// Loads the hooks of one included file. `seen` maps every id met so far to its file, so a
/// second use of an id is reported in the later file, naming the earlier one.
pub fn load(
    file: &Path,
    server: &ServerSettings,
    seen: &mut HashMap<String, String>,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<Arc<Hook>>, Vec<String>), ConfigErrors> {
    let source = std::fs::read_to_string(file).map_err(|error| ConfigErrors {
        file: file.display().to_string(),
        listing: Box::default(),
        diagnostics: vec![Diagnostic {
            severity: Severity::Error,
            position: None,
            message: format!("cannot read the included file: {error}"),
        }],
        included: Vec::new(),
    })?;
    let name = file.display().to_string();
    decode_file(&source, file, lookup_env, |decoder, document| {
        decode_included(decoder, document, server, seen, &name)
    })
}

fn decode_included(
    decoder: &mut Decoder<'_>,
    document: &mut Document<'_>,
    server: &ServerSettings,
    seen: &mut HashMap<String, String>,
    name: &str,
) -> Option<Vec<Arc<Hook>>> {
    let Document {
        value: document,
        hooks: streamed,
        ..
    } = document;
    let document = &*document;
    let root = YamlPath::default();
    if document.is_null() {
        return Some(Vec::new());
    }
    if let Some(map) = document.as_mapping() {
        for key in ["server", "include"] {
            if map.contains_key(key) {
                decoder.error(
                    &root.key(key),
                    Part::Key,
                    format!("`{key}` belongs in the main config, not in the included file `{name}`, which holds `hooks:` only"),
                );
            }
        }
    }
    let fields = decoder.mapping(
        document,
        &root,
        "an included file",
        &["hooks", "server", "include"],
    )?;
    let Some((hooks_value, hooks_path)) = fields.get("hooks") else {
        return Some(Vec::new());
    };
    let hooks = match streamed {
        Some(items) => hook::decode_stream(
            decoder,
            items,
            &hooks_path,
            Some(server),
            |decoder, item, item_path| seen_before(decoder, item, item_path, seen),
        )?,
        None => {
            if let Value::Sequence(items) = hooks_value {
                for (index, item) in items.iter().enumerate() {
                    seen_before(decoder, item, &hooks_path.index(index), seen);
                }
            }
            hook::decode_all(decoder, hooks_value, &hooks_path, Some(server))?
        }
    };
    when::warn_about_unseen_addresses(decoder, server, &hooks, &hooks_path);
    for hook in &hooks {
        seen.entry(hook.id.clone())
            .or_insert_with(|| name.to_string());
    }
    Some(hooks)
}

/// Reports a hook whose id an earlier file has (`seen` maps each id to its file).
fn seen_before(
    decoder: &mut Decoder<'_>,
    item: &Value,
    item_path: &YamlPath,
    seen: &HashMap<String, String>,
) {
    let id = item
        .as_mapping()
        .and_then(|fields| fields.get("id"))
        .and_then(scalar_text);
    if let Some(earlier) = id.as_ref().and_then(|id| seen.get(id)) {
        decoder.error(
            &item_path.key("id"),
            Part::Value,
            format!(
                "duplicate hook id `{}`: `{earlier}` has it too; ids must be unique across the config and the files it includes",
                id.as_deref().unwrap_or_default()
            ),
        );
    }
}
