//! `config::load_str` over arbitrary text: it must never panic, nor must rendering its errors.
//! A refused config has at least one error diagnostic. A config that loads is then used a little: its rules evaluated and templates rendered over a
//! small JSON request, its warnings and hook lookups read.
//!
//! Every `env:NAME` secret resolves to `x` (and `$CREDENTIALS_DIRECTORY` to the folder `x`).
//! `file:` secrets are read from disk relative to the working directory, so inputs naming the
//! kernel's special files (`/dev`, `/proc`, `/sys`: endless or blocking reads) are skipped.
#![no_main]

use std::path::Path;

use bytes::Bytes;
use hookrunner::config::{load_str, ProgramTemplate};
use hookrunner::request::{Headers, RequestContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if ["dev/", "proc/", "sys/", "/dev", "/proc", "/sys"]
        .iter()
        .any(|special| text.contains(special))
    {
        return;
    }
    let config = match load_str(&text, Path::new("hooks.yaml"), &|_| Some("x".into())) {
        Ok(config) => config,
        Err(errors) => {
            let rendered = errors.render();
            let _ = errors.to_string();
            // A refused config says why: at least one diagnostic is an error.
            assert!(
                errors.errors().count() > 0,
                "the config was refused without an error; diagnostics:\n{rendered}"
            );
            // Every diagnostic renders as at least its `FILE...: message` line.
            assert!(
                rendered.lines().count() >= errors.diagnostics.len(),
                "{} diagnostics rendered as:\n{rendered}",
                errors.diagnostics.len()
            );
            return;
        }
    };
    let _ = config.warnings.len();
    let mut request = RequestContext::new();
    request.method = "POST".into();
    request.path = "/hooks/x".into();
    request.headers = Headers::new([
        ("Content-Type".to_string(), "application/json".to_string()),
        ("X-GitHub-Event".to_string(), "push".to_string()),
    ]);
    request.body =
        Bytes::from_static(br#"{"ref":"refs/heads/main","after":"abc","commits":[{"id":"1"}]}"#);
    request.remote_ip = Some("127.0.0.1".parse().expect("an address"));
    for hook in &config.hooks {
        assert!(
            config.hook(&hook.id).is_some(),
            "hook `{}` not found by id",
            hook.id
        );
        let _ = hook.signature.name();
        if let Some(rule) = &hook.when {
            let _ = rule.evaluate(&request);
            let _ = rule.to_string();
        }
        if let ProgramTemplate::Command(parts) = &hook.run.program {
            for part in parts {
                let _ = part.render(&request);
            }
        }
        for (_, template) in &hook.run.env {
            let _ = template.render(&request);
        }
        if let Some(template) = &hook.dedupe_key {
            let _ = template.render(&request);
        }
    }
});
