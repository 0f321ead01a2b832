//! The converter through [`convert`]: one table per kind of outcome. Every converted file is also
//! loaded with hookrunner's config loader, so no case passes with output `check` would refuse.

use std::path::Path;

use serde_yaml::Value as Yaml;

use super::*;

/// Converts adnanh hooks written as YAML; the output must load with every `env:` secret set.
fn convert_yaml(source: &str) -> Result<Conversion, Vec<ImportError>> {
    let conversion = convert(source, Format::Yaml)?;
    if let Err(errors) = crate::config::load_str(&conversion.yaml, Path::new("hooks.yaml"), &|_| {
        Some("x".into())
    }) {
        panic!(
            "the output does not load:\n{}\n{}",
            errors.render(),
            conversion.yaml
        );
    }
    Ok(conversion)
}

fn first_hook(conversion: &Conversion) -> Yaml {
    let document: Yaml = serde_yaml::from_str(&conversion.yaml).expect("the output is YAML");
    document["hooks"][0].clone()
}

/// Converts one adnanh hook and compares the hookrunner hook with `expected`, both as YAML.
fn check(name: &str, source: &str, expected: &str) {
    let conversion =
        convert_yaml(source).unwrap_or_else(|errors| panic!("{name}: {}", render(&errors)));
    let expected: Yaml = serde_yaml::from_str(expected).expect("the expected hook is YAML");
    assert_eq!(
        first_hook(&conversion),
        expected,
        "{name}:\n{}",
        conversion.yaml
    );
}

fn render(errors: &[ImportError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn each_mapping_rule_converts() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "github sha256, a ref match and payload arguments",
            r#"
- id: deploy
  execute-command: /srv/deploy.sh
  command-working-directory: /srv
  pass-arguments-to-command:
    - {source: payload, name: head_commit.id}
    - {source: string, name: --force}
  trigger-rule:
    and:
      - match: {type: payload-hmac-sha256, secret: s3cret, parameter: {source: header, name: X-Hub-Signature-256}}
      - match: {type: value, value: refs/heads/main, parameter: {source: payload, name: ref}}
"#,
            r#"
id: deploy
signature: {github: {secret: env:DEPLOY_WEBHOOK_SECRET}}
when: {payload.ref: refs/heads/main}
run:
  command: [/srv/deploy.sh, "{{ payload.head_commit.id }}", --force]
  workdir: /srv
response: {mode: async}
"#,
        ),
        (
            "github sha1 needs allow_sha1",
            r#"
- id: gh
  execute-command: /bin/true
  trigger-rule:
    match: {type: payload-hmac-sha1, secret: s, parameter: {source: header, name: X-Hub-Signature}}
"#,
            r#"
id: gh
signature: {github: {secret: env:GH_WEBHOOK_SECRET, allow_sha1: true}}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "the legacy payload-hash type and sha256 on X-Hub-Signature are bitbucket's scheme",
            r#"
- id: bb
  execute-command: /bin/true
  trigger-rule:
    match: {type: payload-hash-sha256, secret: s, parameter: {source: header, name: x-hub-signature}}
"#,
            r#"
id: bb
signature: {bitbucket: {secret: env:BB_WEBHOOK_SECRET}}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "gogs and gitea headers are the gitea provider",
            r#"
- id: gogs
  execute-command: /bin/true
  trigger-rule:
    match: {type: payload-hmac-sha256, secret: s, parameter: {source: header, name: X-Gogs-Signature}}
"#,
            r#"
id: gogs
signature: {gitea: {secret: env:GOGS_WEBHOOK_SECRET}}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "sha512 on a GitHub-style header keeps adnanh's `sha512=` prefix",
            r#"
- id: h
  execute-command: /bin/true
  trigger-rule:
    match: {type: payload-hmac-sha512, secret: s, parameter: {source: header, name: X-Hub-Signature}}
"#,
            r#"
id: h
signature: {hmac: {secret: env:H_WEBHOOK_SECRET, header: X-Hub-Signature, algorithm: sha512, encoding: hex, prefix: "sha512="}}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "another header is a generic hmac with bare hex",
            r#"
- id: h
  execute-command: /bin/true
  trigger-rule:
    match: {type: payload-hmac-sha256, secret: s, parameter: {source: header, name: X-Signature}}
"#,
            r#"
id: h
signature: {hmac: {secret: env:H_WEBHOOK_SECRET, header: X-Signature, algorithm: sha256, encoding: hex, prefix: ""}}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "check-signature, the newer form, converts like the match types",
            r#"
- id: new
  execute-command: /bin/true
  trigger-rule:
    check-signature: {algorithm: sha256, secret: s, signature: {source: header, name: X-Hub-Signature-256}}
"#,
            r#"
id: new
signature: {github: {secret: env:NEW_WEBHOOK_SECRET}}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "a signature inside nested `and`s is lifted; a getenv template secret keeps its variable",
            r#"
- id: nested
  execute-command: /bin/true
  trigger-rule:
    and:
      - and:
          - match: {type: payload-hmac-sha256, secret: '{{ getenv "GH_SECRET" }}', parameter: {source: header, name: X-Hub-Signature-256}}
          - match: {type: value, value: push, parameter: {source: header, name: X-GitHub-Event}}
      - match: {type: regex, regex: "^refs/tags/", parameter: {source: payload, name: ref}}
"#,
            r#"
id: nested
signature: {github: {secret: env:GH_SECRET}}
when:
  all:
    - header.X-GitHub-Event: push
    - payload.ref: {matches: "^refs/tags/"}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "a value match on X-Gitlab-Token is the gitlab provider",
            r#"
- id: gl
  execute-command: /bin/true
  trigger-rule:
    and:
      - match: {type: value, value: tok, parameter: {source: header, name: X-Gitlab-Token}}
      - match: {type: value, value: Push Hook, parameter: {source: header, name: X-Gitlab-Event}}
"#,
            r#"
id: gl
signature: {gitlab: {secret: env:GL_WEBHOOK_TOKEN}}
when: {header.X-Gitlab-Event: Push Hook}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "a value match on a token header is the token provider",
            r#"
- id: acr
  execute-command: /bin/true
  trigger-rule:
    match: {type: value, value: tok, parameter: {source: header, name: X-Static-Token}}
"#,
            r#"
id: acr
signature: {token: {secret: env:ACR_WEBHOOK_TOKEN, header: X-Static-Token}}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "a value match on a query token is the token provider reading the query",
            r#"
- id: simple-one
  execute-command: /bin/true
  http-methods: [get, " post ", GET]
  trigger-rule:
    match: {type: value, value: "42", parameter: {source: url, name: token}}
"#,
            r#"
id: simple-one
methods: [GET, POST]
signature: {token: {secret: env:SIMPLE_ONE_WEBHOOK_TOKEN, query: token}}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "with an HMAC check, a token match stays a rule",
            r#"
- id: both
  execute-command: /bin/true
  trigger-rule:
    and:
      - match: {type: value, value: tok, parameter: {source: header, name: X-Api-Key}}
      - match: {type: payload-hmac-sha256, secret: s, parameter: {source: header, name: X-Hub-Signature-256}}
"#,
            r#"
id: both
signature: {github: {secret: env:BOTH_WEBHOOK_SECRET}}
when: {header.X-Api-Key: tok}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "an event name is a rule, even in a header named `...-Key`",
            r#"
- id: bitbucket-push
  execute-command: /bin/true
  trigger-rule:
    match: {type: value, value: "repo:push", parameter: {source: header, name: X-Event-Key}}
"#,
            r#"
id: bitbucket-push
signature: none
when: {header.X-Event-Key: "repo:push"}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "no rule is an explicit `signature: none`",
            r#"
- id: open
  execute-command: /bin/true
"#,
            r#"
id: open
signature: none
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "or, not and regex are any, not and matches",
            r#"
- id: rules
  execute-command: /bin/true
  trigger-rule:
    or:
      - match: {type: value, value: refs/heads/main, parameter: {source: payload, name: ref}}
      - not:
          match: {type: regex, regex: "^wip", parameter: {source: payload, name: head_commit.message}}
"#,
            r#"
id: rules
signature: none
when:
  any:
    - payload.ref: refs/heads/main
    - not: {payload.head_commit.message: {matches: "^wip"}}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "ip-whitelist matches in an `or` are one cidr list",
            r#"
- id: bitbucket
  execute-command: /bin/true
  trigger-rule:
    or:
      - match: {type: ip-whitelist, ip-range: 13.52.5.96/28}
      - match: {type: ip-whitelist, ip-range: "104.192.137.240/28 10.0.0.1"}
"#,
            r#"
id: bitbucket
signature: none
when: {request.remote_ip: {cidr: [13.52.5.96/28, 104.192.137.240/28, 10.0.0.1]}}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "signatures inside `or` are any one of them",
            r#"
- id: either
  execute-command: /bin/true
  trigger-rule:
    and:
      - or:
          - match: {type: payload-hmac-sha256, secret: s, parameter: {source: header, name: X-Hub-Signature-256}}
          - match: {type: payload-hmac-sha256, secret: t, parameter: {source: header, name: X-Gitea-Signature}}
          - match: {type: payload-hmac-sha1, secret: u, parameter: {source: header, name: X-Sig}}
      - match: {type: value, value: push, parameter: {source: header, name: X-Event}}
"#,
            r#"
id: either
signature:
  any:
    - {github: {secret: env:EITHER_WEBHOOK_SECRET}}
    - {gitea: {secret: env:EITHER_WEBHOOK_SECRET_2}}
    - {hmac: {secret: env:EITHER_WEBHOOK_SECRET_3, header: X-Sig, algorithm: sha1, encoding: hex, prefix: ""}}
when: {header.X-Event: push}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "environment variables take `envname`, or adnanh's `HOOK_<name>`",
            r#"
- id: env
  execute-command: /bin/true
  pass-environment-to-command:
    - {source: payload, name: action, envname: ACTION}
    - {source: payload, name: ref}
    - {source: payload, name: head_commit.timestamp}
    - {source: header, name: X-Request-Id}
    - {source: string, name: production, envname: MODE}
"#,
            r#"
id: env
signature: none
run:
  command: [/bin/true]
  env: {ACTION: "{{ payload.action }}", HOOK_ref: "{{ payload.ref }}", HOOK_head_commit.timestamp: "{{ payload.head_commit.timestamp }}", HOOK_X-Request-Id: "{{ header.X-Request-Id }}", MODE: production}
response: {mode: async}
"#,
        ),
        (
            "including the output waits for the command; the mismatch status is on_mismatch",
            r#"
- id: out
  execute-command: /bin/true
  include-command-output-in-response: true
  include-command-output-in-response-on-error: true
  success-http-response-code: 200
  trigger-rule-mismatch-http-response-code: 400
"#,
            r#"
id: out
signature: none
run: {command: [/bin/true]}
response: {mode: wait, include_output: true}
on_mismatch: 400
"#,
        ),
        (
            "the message, headers and success code of an answer carry over",
            r#"
- id: answers
  execute-command: /bin/true
  response-message: Deploying
  success-http-response-code: 200
  response-headers:
    - {name: Access-Control-Allow-Origin, value: "*"}
    - {name: Content-Type, value: application/json}
"#,
            r#"
id: answers
signature: none
run: {command: [/bin/true]}
response:
  mode: async
  success_status: 200
  message: Deploying
  headers: {Access-Control-Allow-Origin: "*", Content-Type: application/json}
"#,
        ),
        (
            "output on error only matters when the output is included; both give include_output",
            r#"
- id: waits
  execute-command: /bin/true
  include-command-output-in-response: true
  include-command-output-in-response-on-error: true
  success-http-response-code: 201
"#,
            r#"
id: waits
signature: none
run: {command: [/bin/true]}
response: {mode: wait, include_output: true, success_status: 201}
"#,
        ),
        (
            "files passed to the command become run.files, named as adnanh names them",
            r#"
- id: files
  execute-command: /bin/true
  pass-file-to-command:
    - {source: payload, name: binary, envname: BINARY, base64decode: true}
    - {source: entire-headers}
    - {source: payload, name: note}
"#,
            r#"
id: files
signature: none
run:
  command: [/bin/true]
  files:
    BINARY: {value: "{{ payload.binary }}", base64_decode: true}
    HOOK_: "{{ headers }}"
    HOOK_NOTE: "{{ payload.note }}"
response: {mode: async}
"#,
        ),
        (
            "the content type adnanh forced is body_type",
            r#"
- id: typed
  execute-command: /bin/true
  incoming-payload-content-type: "application/x-www-form-urlencoded; charset=utf-8"
"#,
            r#"
id: typed
signature: none
run: {command: [/bin/true]}
response: {mode: async}
body_type: form
"#,
        ),
        (
            "a success code equal to hookrunner's 202 for an async hook converts",
            r#"
- id: accepted
  execute-command: /bin/true
  success-http-response-code: 202
  response-message: ""
"#,
            r#"
id: accepted
signature: none
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "request, body, and whole-payload, -headers and -query sources",
            r#"
- id: sources
  execute-command: /bin/true
  pass-arguments-to-command:
    - {source: request, name: method}
    - {source: request, name: Remote-Addr}
    - {source: raw-request-body}
    - {source: entire-payload}
    - {source: entire-headers}
    - {source: entire-query}
    - {source: header, name: X-Request-Id}
    - {source: query, name: q}
"#,
            r#"
id: sources
signature: none
run:
  command:
    - /bin/true
    - "{{ request.method }}"
    - "{{ request.remote_addr }}"
    - "{{ body }}"
    - "{{ payload }}"
    - "{{ headers }}"
    - "{{ query }}"
    - "{{ header.X-Request-Id }}"
    - "{{ query.q }}"
response: {mode: async}
"#,
        ),
        (
            "payload names: odd keys are quoted, `root.N` of an array payload is the array",
            r#"
- id: paths
  execute-command: /bin/true
  pass-arguments-to-command:
    - {source: payload, name: commits.0.id}
    - {source: payload, name: "labels.app name"}
    - {source: payload, name: root.1.event}
    - {source: payload, name: app.message.#text}
    - {source: payload, name: app.-id}
"#,
            r##"
id: paths
signature: none
run:
  command: [/bin/true, "{{ payload.commits.0.id }}", "{{ payload.labels[\"app name\"] }}", "{{ payload.1.event }}", "{{ payload.app.message[\"#text\"] }}", "{{ payload.app.-id }}"]
response: {mode: async}
"##,
        ),
        (
            "a relative command is found in an absolute working directory, as adnanh does",
            r#"
- id: synology
  execute-command: do-something.sh
  command-working-directory: /opt/webhook/synology
"#,
            r#"
id: synology
signature: none
run: {command: [/opt/webhook/synology/do-something.sh], workdir: /opt/webhook/synology}
response: {mode: async}
"#,
        ),
        (
            "a relative command in a relative working directory is named from it",
            r#"
- id: relative
  execute-command: ./scripts/run.sh
  command-working-directory: site
"#,
            r#"
id: relative
signature: none
run: {command: [./scripts/run.sh], workdir: site}
response: {mode: async}
"#,
        ),
        (
            "parse-parameters-as-json on the payload needs nothing: hookrunner reaches into JSON strings",
            r#"
- id: travis
  execute-command: /bin/true
  parse-parameters-as-json: [{source: payload, name: payload}]
  trigger-signature-soft-failures: true
  trigger-rule:
    match: {type: value, value: passed, parameter: {source: payload, name: payload.state}}
"#,
            r#"
id: travis
signature: none
when: {payload.payload.state: passed}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "scalr-signature is the scalr provider",
            r#"
- id: redeploy
  execute-command: /bin/true
  trigger-rule:
    match: {type: scalr-signature, secret: "Scalr-provided signing key"}
"#,
            r#"
id: redeploy
signature: {scalr: {secret: env:REDEPLOY_WEBHOOK_SECRET}}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "scalr-signature inside an `or` of signatures is one entry of `any`",
            r#"
- id: either
  execute-command: /bin/true
  trigger-rule:
    or:
      - match: {type: scalr-signature, secret: s}
      - match: {type: payload-hmac-sha256, secret: t, parameter: {source: header, name: X-Hub-Signature-256}}
"#,
            r#"
id: either
signature:
  any:
    - scalr: {secret: env:EITHER_WEBHOOK_SECRET}
    - github: {secret: env:EITHER_WEBHOOK_SECRET_2}
run: {command: [/bin/true]}
response: {mode: async}
"#,
        ),
        (
            "parse-parameters-as-json on a header or the query: references reach into the value",
            r#"
- id: data
  execute-command: /bin/true
  parse-parameters-as-json: [{source: header, name: X-Data}, {source: url, name: q}]
  pass-environment-to-command:
    - {source: header, name: X-Data.key, envname: KEY}
    - {source: url, name: q.list.0, envname: FIRST}
  trigger-rule:
    match: {type: value, value: build, parameter: {source: header, name: X-Data.kind}}
"#,
            r#"
id: data
signature: none
when: {header.X-Data.kind: build}
run:
  command: [/bin/true]
  env: {KEY: "{{ header.X-Data.key }}", FIRST: "{{ query.q.list.0 }}"}
response: {mode: async}
"#,
        ),
    ];
    for (name, source, expected) in cases {
        check(name, source, expected);
    }
}

#[test]
fn each_error_names_the_hook_and_the_key() {
    let hook = |body: &str| format!("- id: h\n  execute-command: /bin/true\n{body}");
    let rule = |rule: &str| hook(&format!("  trigger-rule:\n    {rule}\n"));
    let cases: Vec<(String, &str)> = vec![
        (hook("  response-headers: [{name: Connection, value: close}]\n"), "hook `h`: `response-headers[0]`: `Connection` is managed by the server"),
        (hook("  response-headers: [{name: X Bad, value: b}]\n"), "`response-headers[0]`: `X Bad` is not a valid header name"),
        (hook("  response-headers: [{name: X-A, value: \"a\\nb\"}]\n"), "`response-headers[0]`: a header value may hold printable ASCII only"),
        (hook("  response-headers: [{value: b}]\n"), "`response-headers[0]` has no `name`"),
        (hook("  response-headers: [{name: X-A, vaule: b}]\n"), "`response-headers[0].vaule` is not a key adnanh/webhook reads in a header, did you mean `value`?"),
        (hook("  success-http-response-code: 302\n"), "`success-http-response-code`: hookrunner's `response.success_status` is a 2xx status, not 302"),
        (hook("  incoming-payload-content-type: text/csv\n"), "hook `h`: `incoming-payload-content-type`: hookrunner's `body_type` is `json` or `form`, so it cannot force `text/csv`"),
        (hook("  pass-file-to-command: [{source: payload, name: binary.data}, {source: payload, name: x, envname: \"A=B\"}]\n"), "hook `h`: `pass-file-to-command[1]`: `A=B` cannot be an environment variable name"),
        (hook("  pass-file-to-command: [{source: payload, name: a, envname: HOOK_ID}]\n"), "`pass-file-to-command[0]`: `HOOK_ID` is set by hookrunner itself"),
        (hook("  pass-environment-to-command: [{source: payload, name: A}]\n  pass-file-to-command: [{source: payload, name: a}]\n"), "`pass-file-to-command[0]`: `HOOK_A` is passed twice"),
        (hook("  pass-file-to-command: [{source: payload, name: a, base64decode: maybe}]\n"), "`pass-file-to-command[0].base64decode` must be `true` or `false`"),
        (hook("  pre-hook-command: /bin/true\n"), "hook `h`: `pre-hook-command` has no hookrunner equivalent"),
        (hook("  trigger-rule-mismatch-http-response-code: 100\n"), "`trigger-rule-mismatch-http-response-code` must be an HTTP status from 200 to 599"),
        (hook("  parse-parameters-as-json: [{source: request, name: method}]\n"), "`parse-parameters-as-json[0]`: parsing `source: request` as JSON has no hookrunner equivalent"),
        (hook("  pass-arguments-to-command: [{source: template, name: '{{ .Method }}'}]\n"), "`source: template` has no hookrunner equivalent"),
        (hook("  pass-arguments-to-command: [{source: cookie, name: a}]\n"), "unknown `source: cookie`"),
        (hook("  pass-arguments-to-command: [{name: a}]\n"), "`pass-arguments-to-command[0]` has no `source`"),
        (hook("  pass-arguments-to-command: [{source: payload}]\n"), "`pass-arguments-to-command[0]` with `source: payload` needs a `name`"),
        (hook("  pass-arguments-to-command: [{source: request, name: host}]\n"), "`pass-arguments-to-command[0].name`: adnanh's `request` source has `method` and `remote-addr`, not `host`"),
        (hook("  pass-arguments-to-command: [{source: header, name: X Bad}]\n"), "hookrunner cannot reference the header `X Bad`"),
        (hook("  pass-arguments-to-command: [{source: string, name: '{{ x }}'}]\n"), "`pass-arguments-to-command[0].name` contains `{{` or `}}`"),
        (hook("  pass-environment-to-command: [{source: payload, name: a=b}]\n"), "`pass-environment-to-command[0]`: adnanh names this variable `HOOK_a=b`, which cannot be an environment variable name (it holds `=`)"),
        (hook("  pass-environment-to-command: [{source: payload, name: a, envname: A=B}]\n"), "`pass-environment-to-command[0].envname`: `A=B` cannot be an environment variable name"),
        (hook("  pass-environment-to-command: [{source: payload, name: ID}]\n"), "`HOOK_ID` is set by hookrunner itself"),
        (hook("  pass-environment-to-command: [{source: payload, name: a, envname: A}, {source: payload, name: b, envname: A}]\n"), "`pass-environment-to-command[1]`: `A` is passed twice"),
        (hook("  http-methods: [\"P OST\"]\n"), "`http-methods[0]`: `P OST` is not an HTTP method"),
        (hook("  execute-comand: /bin/true\n"), "`execute-comand` is not a key adnanh/webhook reads in the hook, did you mean `execute-command`?"),
        (hook("  include-command-output-in-response: maybe\n"), "`include-command-output-in-response` must be `true` or `false`"),
        (rule("match: {type: scalr-signature}"), "`trigger-rule.match` needs the `secret`"),
        (rule("match: {type: scalr-signature, secret: ''}"), "`trigger-rule.match.secret` is empty"),
        (rule("or: [{match: {type: scalr-signature, secret: s}}, {match: {type: value, value: x, parameter: {source: header, name: X-A}}}]"), "`trigger-rule.or[0].match` checks a signature inside `not`, or inside an `or` that also holds other rules"),
        (rule("match: {type: payload-md5, secret: s}"), "unknown match type `payload-md5`"),
        (rule("match: {value: x}"), "`trigger-rule.match` has no `type`"),
        (rule("match: {type: value, parameter: {source: payload, name: a}}"), "`trigger-rule.match` needs a `value`"),
        (rule("match: {type: value, value: a, parameter: {source: string, name: a}}"), "compare two fixed strings"),
        (rule("match: {type: regex, regex: '(?=a)', parameter: {source: payload, name: a}}"), "`trigger-rule.match.regex`: hookrunner cannot compile the regex `(?=a)`"),
        (rule("match: {type: ip-whitelist, ip-range: not-an-ip}"), "`trigger-rule.match.ip-range`: `not-an-ip` is not an address or a CIDR range"),
        (rule("or: [{match: {type: payload-hmac-sha256, secret: s, parameter: {source: header, name: X-Hub-Signature-256}}}, {match: {type: value, value: x, parameter: {source: header, name: X-A}}}]"), "`trigger-rule.or[0].match` checks a signature inside `not`, or inside an `or` that also holds other rules"),
        (rule("not: {match: {type: payload-hmac-sha1, secret: s, parameter: {source: header, name: X-Hub-Signature}}}"), "`trigger-rule.not.match` checks a signature inside `not`"),
        (rule("and: [{match: {type: payload-hmac-sha256, secret: s, parameter: {source: header, name: X-A}}}, {or: [{match: {type: payload-hmac-sha256, secret: t, parameter: {source: header, name: X-B}}}]}]"), "`trigger-rule.and[1].or[0].match` is a second signature check (the first is `trigger-rule.and[0].match`)"),
        (rule("and: [{match: {type: payload-hmac-sha256, secret: s, parameter: {source: header, name: X-A}}}, {match: {type: payload-hmac-sha256, secret: t, parameter: {source: header, name: X-B}}}]"), "`trigger-rule.and[1].match` is a second signature check (the first is `trigger-rule.and[0].match`)"),
        (rule("match: {type: payload-hmac-sha256, secret: s, parameter: {source: url, name: sig}}"), "`trigger-rule.match.parameter`: hookrunner reads a signature from a header only, not from `source: url`"),
        (rule("match: {type: payload-hmac-sha256, secret: s, parameter: {source: header, name: X-Sig, headers-to-add-to-signature-payload: [Date]}}"), "`trigger-rule.match.parameter.headers-to-add-to-signature-payload` has no hookrunner equivalent"),
        (rule("match: {type: payload-hmac-sha256, secret: '', parameter: {source: header, name: X-Sig}}"), "`trigger-rule.match.secret` is empty"),
        (rule("match: {type: payload-hmac-sha256, parameter: {source: header, name: X-Sig}}"), "`trigger-rule.match` needs the `secret`"),
        (rule("check-signature: {algorithm: sha256, secret: s, signature: {source: header, name: X-Sig}, string-to-sign: {source: template, name: x}}"), "`trigger-rule.check-signature.string-to-sign` has no hookrunner equivalent"),
        (rule("check-signature: {algorithm: md5, secret: s, signature: {source: header, name: X-Sig}}"), "`trigger-rule.check-signature.algorithm`: unknown algorithm `md5`"),
        (rule("{and: [], match: {type: value}}"), "`trigger-rule` has `and` and `match`; adnanh reads only `and`"),
        (rule("{}"), "`trigger-rule` is an empty rule"),
        ("- execute-command: /bin/true\n".into(), "hook `hooks[0]`: the hook has no `id`"),
        ("- id: h\n".into(), "hook `h`: the hook has no `execute-command`"),
        ("- id: a/../b\n  execute-command: /bin/true\n".into(), "hook id `a/../b` may only use letters"),
        ("- id: h\n  execute-command: /bin/a\n- id: h\n  execute-command: /bin/b\n".into(), "hook `h`: the id is used twice (by `hooks[0]` and `hooks[1]`)"),
        ("- just a string\n".into(), "hook `hooks[0]`: the hook must be an object of keys and values"),
        ("id: h\n".into(), "the file must be a list of hooks"),
        ("".into(), "the file is empty"),
    ];
    for (source, fragment) in cases {
        let errors = convert(&source, Format::Yaml).expect_err(&source);
        let rendered = render(&errors);
        assert!(
            rendered.contains(fragment),
            "{source}\nexpected: {fragment}\ngot: {rendered}"
        );
    }
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let source = "- id: a\n  execute-command: /bin/true\n  pre-hook-command: /bin/true\n  pass-file-to-command: [{source: payload, name: f.g, envname: \"F=G\"}]\n- id: b\n  execute-command: /bin/true\n  response-headers: [{name: Content-Length, value: '1'}]\n";
    let errors = convert(source, Format::Yaml).expect_err("errors");
    let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "hook `a`: `pre-hook-command` has no hookrunner equivalent: hookrunner runs no command before a hook's rules",
            "hook `a`: `pass-file-to-command[0]`: `F=G` cannot be an environment variable name (it is empty or holds `=`); add an `envname` and use that name in the command",
            "hook `b`: `response-headers[0]`: `Content-Length` is managed by the server for each answer; remove it",
        ]
    );
}

#[test]
fn warnings_and_notes_say_what_changed() {
    let cases: &[(&str, &str)] = &[
        (
            "- id: open\n  execute-command: /bin/true\n",
            "warning: hook `open`: it checks no signature, so it is `signature: none`",
        ),
        (
            "- id: h\n  execute-command: /bin/true\n  trigger-rule:\n    match: {type: payload-hmac-sha256, secret: s, parameter: {source: header, name: X-Hub-Signature-256}}\n",
            "note: hook `h`: set `H_WEBHOOK_SECRET` to the secret at `trigger-rule.match.secret` in the original file",
        ),
        (
            "- id: h\n  execute-command: /bin/true\n  pass-arguments-to-command: [{source: payload, name: root.0.id}]\n",
            "`root.0.id` is read as `payload.0.id`",
        ),
        (
            "- id: h\n  execute-command: /bin/true\n  include-command-output-in-response: true\n",
            "hookrunner includes the command's output in a failed answer too",
        ),
        (
            "- id: h\n  execute-command: /bin/true\n  parse-parameters-as-json: [{source: payload, name: payload}]\n",
            "hookrunner, which parses JSON held in a payload value when a reference reaches into it",
        ),
        (
            "- id: h\n  execute-command: /bin/true\n  parse-parameters-as-json: [{source: header, name: X-Data}]\n",
            "hookrunner parses JSON held in a header or query value when a reference reaches into it (`header.X-Data.key`)",
        ),
        (
            "- id: h\n  execute-command: /bin/true\n  trigger-signature-soft-failures: true\n",
            "warning: hook `h`: `trigger-signature-soft-failures` has no effect in hookrunner: a signature that fails is always answered 401 and runs nothing, never taken as a rule that does not match; inside `signature: {any: [...]}` the other signatures are still tried",
        ),
        (
            "- id: h\n  execute-command: /bin/true\n  pass-arguments-to-command: [{source: url, name: q}]\n",
            "if its sender uses GET add `methods: [GET, POST]`",
        ),
        (
            "- id: h\n  execute-command: /bin/true\n  response-headers: [{name: Content-Type, value: text/html}]\n",
            "`response-headers[0]`: the `Content-Type` is left out",
        ),
        (
            "- id: h\n  execute-command: /bin/true\n  pass-file-to-command: [{source: payload, name: a}]\n  keep-file-environment: true\n",
            "`keep-file-environment`: hookrunner removes a job's files when the job ends",
        ),
        (
            "- id: h\n  execute-command: /bin/echo hello\n",
            "`execute-command` `/bin/echo hello` contains a space",
        ),
        (
            "- id: slack\n  execute-command: /bin/true\n  trigger-rule:\n    match: {type: value, value: t, parameter: {source: payload, name: token}}\n",
            "warning: hook `slack`: `trigger-rule.match.value` looks like a secret and stays a plain `when` rule on `payload.token`",
        ),
    ];
    for (source, fragment) in cases {
        let conversion =
            convert_yaml(source).unwrap_or_else(|errors| panic!("{}", render(&errors)));
        let warnings = conversion.warnings.join("\n");
        assert!(
            warnings.contains(fragment),
            "{source}\nexpected: {fragment}\ngot: {warnings}"
        );
        // Each notice is also a comment above its hook in the file.
        let first_line = conversion.warnings[0]
            .split_once(": hook `")
            .map(|(kind, _)| kind);
        assert!(
            conversion
                .yaml
                .contains(&format!("# {}: ", first_line.unwrap_or("?"))),
            "{}",
            conversion.yaml
        );
    }
}

#[test]
fn secret_variables_are_unique_and_the_whole_file_loads() {
    let source = r#"
- id: deploy
  execute-command: /bin/true
  trigger-rule:
    match: {type: payload-hmac-sha256, secret: a, parameter: {source: header, name: X-Hub-Signature-256}}
- id: deploy.
  execute-command: /bin/true
  trigger-rule:
    match: {type: payload-hmac-sha256, secret: b, parameter: {source: header, name: X-Hub-Signature-256}}
- id: 9lives
  execute-command: /bin/true
  trigger-rule:
    match: {type: value, value: c, parameter: {source: header, name: X-Gitlab-Token}}
"#;
    let conversion = convert_yaml(source).unwrap_or_else(|errors| panic!("{}", render(&errors)));
    let document: Yaml = serde_yaml::from_str(&conversion.yaml).unwrap();
    let secret = |index: usize, provider: &str| {
        document["hooks"][index]["signature"][provider]["secret"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(secret(0, "github"), "env:DEPLOY_WEBHOOK_SECRET");
    assert_eq!(secret(1, "github"), "env:DEPLOY__WEBHOOK_SECRET");
    assert_eq!(secret(2, "gitlab"), "env:HOOK_9LIVES_WEBHOOK_TOKEN");
    assert!(
        conversion.yaml.starts_with("# Review it"),
        "{}",
        conversion.yaml
    );
}

#[test]
fn a_name_taken_twice_gets_a_number() {
    let mut names = secrets::Secrets::default();
    let claimed: Vec<String> = ["a-b", "a_b", "a.b"]
        .iter()
        .map(|id| {
            let source = format!("- id: {id}\n  execute-command: /bin/true\n  trigger-rule:\n    match: {{type: value, value: t, parameter: {{source: header, name: X-Token}}}}\n");
            let value: Value = serde_yaml::from_str(&source).unwrap();
            let converted = hook::convert(&value[0], 0, &mut names);
            serde_yaml::to_string(&converted.hook.unwrap()["signature"]).unwrap()
        })
        .collect();
    assert!(claimed[0].contains("env:A_B_WEBHOOK_TOKEN"), "{claimed:?}");
    assert!(
        claimed[1].contains("env:A_B_WEBHOOK_TOKEN_2"),
        "{claimed:?}"
    );
    assert!(
        claimed[2].contains("env:A_B_WEBHOOK_TOKEN_3"),
        "{claimed:?}"
    );
}

#[test]
fn json_and_yaml_are_told_apart() {
    let json = r#"[{"id": "j", "execute-command": "/bin/true",}]"#;
    // adnanh reads hooks files with a YAML parser, so a trailing comma it accepts converts too.
    for format in [Format::Json, Format::Unknown, Format::Yaml] {
        let conversion =
            convert(json, format).unwrap_or_else(|errors| panic!("{}", render(&errors)));
        assert!(conversion.yaml.contains("- id: j\n"), "{format:?}");
    }
    let broken = convert("[{\"id\": ", Format::Json).expect_err("broken JSON");
    assert!(
        render(&broken).starts_with("invalid JSON: "),
        "{}",
        render(&broken)
    );
    let broken = convert("- id: [", Format::Unknown).expect_err("neither");
    assert!(
        render(&broken).starts_with("neither JSON ("),
        "{}",
        render(&broken)
    );
    let template = convert("[{{ range . }}]", Format::Json).expect_err("a template");
    assert!(
        render(&template).contains("render it first"),
        "{}",
        render(&template)
    );

    let cases = [
        ("hooks.json", Format::Json),
        ("HOOKS.JSON", Format::Json),
        ("hooks.yaml", Format::Yaml),
        ("hooks.yml", Format::Yaml),
        ("hooks", Format::Unknown),
        ("hooks.conf", Format::Unknown),
    ];
    for (name, format) in cases {
        assert_eq!(Format::from_path(Path::new(name)), format, "{name}");
    }
}

#[test]
fn yaml_merge_keys_are_applied() {
    let source = r#"
- &base
  id: one
  execute-command: /bin/true
  command-working-directory: /srv
- <<: *base
  id: two
"#;
    let conversion = convert_yaml(source).unwrap_or_else(|errors| panic!("{}", render(&errors)));
    let document: Yaml = serde_yaml::from_str(&conversion.yaml).unwrap();
    assert_eq!(
        document["hooks"][1]["run"]["workdir"].as_str(),
        Some("/srv")
    );
}

#[test]
fn a_template_file_reads_getenv_as_env_secrets() {
    let source = r#"[{"id": "t", "execute-command": "/bin/true", "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": "{{ getenv "T_SECRET" | js }}", "parameter": {"source": "header", "name": "X-Sig"}}}}]"#;
    let conversion = convert(source, Format::Json).expect("converts");
    assert!(
        conversion.yaml.contains("secret: env:T_SECRET"),
        "{}",
        conversion.yaml
    );
    let elsewhere = r#"[{"id": "t", "execute-command": "{{ getenv "CMD" }}"}]"#;
    let errors = render(&convert(elsewhere, Format::Json).expect_err("refused"));
    assert!(
        errors.contains("converts only as a whole secret"),
        "{errors}"
    );
    let other = r#"[{"id": "t", "execute-command": "{{ cat "/etc/cmd" }}"}]"#;
    let errors = render(&convert(other, Format::Json).expect_err("refused"));
    assert!(errors.contains("uses `cat`"), "{errors}");
}

#[test]
fn several_files_make_one_config_with_unique_ids() {
    let first = "- id: a\n  execute-command: /bin/true\n";
    let second = r#"[{"id": "b/c", "execute-command": "/bin/true"}]"#;
    let conversion = convert_files(
        &[
            ("one.yaml", first, Format::Yaml),
            ("two.json", second, Format::Json),
        ],
        SecretMode::Env,
    )
    .expect("converts");
    let document: Yaml = serde_yaml::from_str(&conversion.yaml).expect("YAML");
    assert_eq!(document["hooks"][0]["id"], Yaml::from("a"));
    assert_eq!(document["hooks"][1]["id"], Yaml::from("b/c"));

    let errors = render(
        &convert_files(
            &[
                ("one.yaml", first, Format::Yaml),
                ("two.yaml", first, Format::Yaml),
            ],
            SecretMode::Env,
        )
        .expect_err("a duplicate"),
    );
    assert!(
        errors.contains("hook `a`: the id is used twice"),
        "{errors}"
    );
    let errors = render(
        &convert_files(
            &[
                ("one.yaml", first, Format::Yaml),
                ("two.json", "[", Format::Json),
            ],
            SecretMode::Env,
        )
        .expect_err("broken"),
    );
    assert!(errors.starts_with("two.json: invalid JSON"), "{errors}");
}

#[test]
fn trigger_signature_soft_failures_is_a_warning_in_the_file_and_in_the_report() {
    let source = |flag: &str| {
        format!(
            "- id: h\n  execute-command: /bin/true\n  trigger-signature-soft-failures: {flag}\n  trigger-rule:\n    or:\n      - match: {{type: scalr-signature, secret: s}}\n      - match: {{type: payload-hmac-sha256, secret: t, parameter: {{source: header, name: X-Hub-Signature-256}}}}\n"
        )
    };
    let warning = "`trigger-signature-soft-failures` has no effect in hookrunner";
    let on = convert_yaml(&source("true")).unwrap_or_else(|errors| panic!("{}", render(&errors)));
    assert!(
        on.warnings
            .iter()
            .any(|line| line.starts_with(&format!("warning: hook `h`: {warning}"))),
        "{:?}",
        on.warnings
    );
    assert!(
        on.yaml.contains(&format!("# warning: {warning}")),
        "{}",
        on.yaml
    );
    let off = convert_yaml(&source("false")).unwrap_or_else(|errors| panic!("{}", render(&errors)));
    assert!(!off.yaml.contains("soft-failures"), "{}", off.yaml);
    assert!(
        !off.warnings
            .iter()
            .any(|line| line.contains("soft-failures")),
        "{:?}",
        off.warnings
    );
    let refused = convert(&source("maybe"), Format::Yaml).expect_err("not a flag");
    assert!(
        render(&refused).contains("`trigger-signature-soft-failures` must be `true` or `false`"),
        "{}",
        render(&refused)
    );
}

#[test]
fn secrets_inline_keeps_the_files_secrets_and_env_names_a_variable() {
    let source = r#"[{"id": "deploy", "execute-command": "/bin/true", "trigger-rule": {"or": [
        {"match": {"type": "payload-hmac-sha256", "secret": "s3cret", "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}},
        {"match": {"type": "payload-hmac-sha256", "secret": "{{ getenv "OTHER" }}", "parameter": {"source": "header", "name": "X-Gitea-Signature"}}}]}}]"#;
    let files = [("hooks.json", source, Format::Json)];
    let secrets = |mode| {
        let conversion = convert_files(&files, mode).unwrap_or_else(|e| panic!("{}", render(&e)));
        let document: Yaml = serde_yaml::from_str(&conversion.yaml).expect("YAML");
        let any = &document["hooks"][0]["signature"]["any"];
        (
            any[0]["github"]["secret"].as_str().map(str::to_string),
            any[1]["gitea"]["secret"].as_str().map(str::to_string),
            conversion.warnings.len(),
        )
    };
    let (github, gitea, notes) = secrets(SecretMode::Inline);
    assert_eq!(github.as_deref(), Some("s3cret"));
    assert_eq!(
        gitea.as_deref(),
        Some("env:OTHER"),
        "a template's variable stays one"
    );
    assert_eq!(notes, 0, "no variable to set");
    let (github, gitea, notes) = secrets(SecretMode::Env);
    assert_eq!(github.as_deref(), Some("env:DEPLOY_WEBHOOK_SECRET"));
    assert_eq!(gitea.as_deref(), Some("env:OTHER"));
    assert_eq!(notes, 1, "a note names the variable");
}
