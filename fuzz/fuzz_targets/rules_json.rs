//! A fixed `when:` using every condition kind, evaluated over an arbitrary body, and the hook's
//! templates rendered over it: neither may panic.
//!
//! Input: the first byte picks the content type (`j` JSON, `f` form data, `n` none, `t` text/plain,
//! anything else by its value), the rest is the body. Seeds read as `j{"ref": ...}`.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use bytes::Bytes;
use hookrunner::config::{load_str, Config, ProgramTemplate};
use hookrunner::request::{Headers, IdSource, RequestContext};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
hooks:
  - id: rules
    signature: none
    when:
      all:
        - header.X-GitHub-Event: {in: [push, ping]}
        - request.remote_ip: {cidr: [10.0.0.0/8, "::1"]}
        - any:
            - payload.ref: refs/heads/main
            - payload.ref: {matches: "^refs/tags/v[0-9]+(\\.[0-9]+)*$"}
            - payload.payload.ref: {equals: refs/heads/main}
            - payload.commits.*.modified.*: {matches: "^src/.*\\.rs$"}
            - payload.*.*.id: {in: ["1", "2", "3"]}
            - payload.n: 7
            - payload.flag: true
        - not: {payload.deleted: true}
        - not:
            any:
              - payload.sender.login: {in: [dependabot, "renovate[bot]"]}
              - payload.labels["app.kubernetes.io/name"]: {matches: "(?i)^skip"}
        - payload.client_ip: {exists: false}
    run:
      command: [echo, "{{ payload.ref }}", "{{ payload.a.0.b | \"none\" }}", "{{ payload }}"]
      env:
        BODY: "{{ body }}"
        LABEL: "{{ payload.labels[\"app.kubernetes.io/name\"] | \"\" }}"
        EVENT: "{{ event | \"?\" }}"
        DELIVERY: "{{ delivery | \"?\" }}"
    dedupe_key: "{{ payload.after | \"x\" }}-{{ header.X-GitHub-Delivery | \"y\" }}"
  - id: leaves
    signature: none
    when:
      any:
        - payload.client_ip: {cidr: ["192.168.0.0/16", "2001:db8::/32", 127.0.0.1]}
        - payload.*: {exists: true}
        - payload.*.*.*.*: {matches: "."}
        - payload[""]: ""
        - payload.0.1.2: {in: []}
        - body: {matches: "^\\s*[\\[{]"}
        - query.token: abc
        - request.method: POST
        - request.path: {matches: "^/hooks/"}
        - request.id: {exists: true}
        - hook.id: leaves
        - job.id: {exists: false}
    run:
      command: [echo]
"#;

fn config() -> &'static Config {
    static CONFIG_CELL: OnceLock<Config> = OnceLock::new();
    CONFIG_CELL.get_or_init(|| {
        load_str(CONFIG, Path::new("hooks.yaml"), &|_| Some("x".into()))
            .unwrap_or_else(|errors| panic!("the fixed config must load:\n{}", errors.render()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let content_type = match selector {
        b'j' => Some("application/json"),
        b'f' => Some("application/x-www-form-urlencoded"),
        b'n' => None,
        b't' => Some("text/plain"),
        other => [
            Some("application/json; charset=utf-8"),
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            None,
            Some("APPLICATION/X-WWW-FORM-URLENCODED"),
        ][usize::from(*other) % 4],
    };
    let mut headers = vec![
        ("X-GitHub-Event".to_string(), "push".to_string()),
        ("X-GitHub-Delivery".to_string(), "d-1".to_string()),
    ];
    if let Some(content_type) = content_type {
        headers.push(("Content-Type".to_string(), content_type.to_string()));
    }
    // Built field by field: its cached payload is private to the crate.
    let mut request = RequestContext::new();
    request.method = "POST".into();
    request.path = "/hooks/rules".into();
    request.query = vec![("token".into(), "abc".into())];
    request.headers = Headers::new(headers);
    request.body = Bytes::copy_from_slice(body);
    request.remote_ip = Some(if selector & 1 == 0 {
        "10.1.2.3".parse().expect("an address")
    } else {
        "::1".parse().expect("an address")
    });
    request.request_id = "req-1".into();
    request.hook_id = "rules".into();
    request.event_sources = &[
        IdSource::Header("X-GitHub-Event"),
        IdSource::Payload("type"),
    ];
    request.delivery_sources = &[IdSource::Payload("id")];

    for hook in &config().hooks {
        let rule = hook
            .when
            .as_ref()
            .expect("every hook of the fixed config has `when`");
        match rule.evaluate(&request) {
            Ok(Some(mismatch)) => {
                let _ = mismatch.0.len();
            }
            Ok(None) => {}
            Err(error) => {
                let _ = error.to_string();
            }
        }
        if let ProgramTemplate::Command(parts) = &hook.run.program {
            for part in parts {
                let _ = part.render(&request).map_err(|error| error.to_string());
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
