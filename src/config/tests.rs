//! Config loading, through `load_str`: valid files, and the exact text of each kind of error.

use std::path::Path;

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "GITHUB_WEBHOOK_SECRET" => Some("gh-secret".into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_str(text, Path::new("/etc/hookrunner/hooks.yaml"), &env)
}

fn errors(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.render(),
    }
}

const FULL: &str = r#"
server:
  listen: ["127.0.0.1:9000", "[::1]:9000"]
  base_path: /hooks/
  trusted_proxies: [10.0.0.0/8, "::1"]
  max_body: 1MiB
  retention: {max_age: 7d, max_jobs: 50}
  shutdown_grace: 5s
hooks:
  - id: deploy-site
    description: Deploy the site on a push to main
    methods: [post, put]
    max_body: 25MiB
    signature:
      github: {secret: env:GITHUB_WEBHOOK_SECRET, allow_sha1: true}
    when:
      all:
        - header.X-GitHub-Event: push
        - payload.ref: {matches: "^refs/heads/(main|master)$"}
        - not: {payload.deleted: true}
    run:
      shell: ./deploy.sh "$COMMIT"
      workdir: site
      env:
        COMMIT: "{{ payload.after }}"
        PORT: 8080
      env_passthrough: [SSH_AUTH_SOCK]
      stdin: payload
      timeout: 10m
      kill_after: 10s
      keep_background: true
    concurrency: {mode: parallel, limit: 2}
    response: {mode: wait, wait_timeout: 25s, include_output: true, failure_status: 502}
    on_mismatch: 202
    dedupe_key: "{{ header.X-Request-Id }}"
  - id: open
    signature: none
    run:
      command: [echo, "{{ payload.a | \"none\" }}"]
"#;

#[test]
fn a_full_config_loads_with_every_setting() {
    let config = load(FULL).unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(config.server.base_path, "/hooks");
    assert_eq!(config.server.listen.len(), 2);
    assert_eq!(config.server.max_body, 1 << 20);
    assert_eq!(
        config.server.body_timeout,
        Duration::from_secs(60),
        "the default"
    );
    assert_eq!(config.server.retention.max_jobs, 50);
    let hook = config.hook("deploy-site").expect("the hook");
    assert_eq!(hook.methods, ["POST", "PUT"]);
    assert_eq!(hook.max_body, 25 << 20);
    assert_eq!(hook.signature.name(), "github");
    assert_eq!(hook.run.workdir, Path::new("/etc/hookrunner/site"));
    assert_eq!(hook.run.stdin, StdinMode::Payload);
    assert_eq!(hook.run.env.len(), 2);
    assert!(hook.run.keep_background);
    assert_eq!(hook.concurrency, Concurrency::Parallel { limit: Some(2) });
    assert_eq!(hook.response.failure_status, 502);
    assert_eq!(hook.on_mismatch, 202);
    let open = config.hook("open").unwrap();
    assert_eq!(open.max_body, 1 << 20, "a hook inherits the server's limit");
    assert_eq!(open.concurrency, Concurrency::Queue { queue: 100 });
    assert_eq!(open.run.workdir, Path::new("/etc/hookrunner"));
    assert!(!open.run.keep_background, "leftovers are ended by default");
    assert_eq!(
        config.warnings,
        ["/etc/hookrunner/hooks.yaml:23:16: warning: `workdir` `/etc/hookrunner/site` does not exist on this machine; create it, or fix the path (a relative one is read from the config file's folder)\n23 |       workdir: site\n   |                ^\n"],
        "the only warning: this machine has no such folder"
    );
}

#[test]
fn each_problem_is_reported_at_its_line_and_column() {
    let cases: &[(&str, &str)] = &[
        (
            "hooks:\n  - id: a\n    signature: none\n    run:\n      comand: [echo]\n",
            "/etc/hookrunner/hooks.yaml:5:7: unknown key `comand` in `run`, did you mean `command`?\n5 |       comand: [echo]\n  |       ^\n",
        ),
        (
            "hooks:\n  - id: a\n    signature: none\n    run:\n      shell: echo {{ payload.x }}\n",
            "hooks.yaml:5:14: `{{ }}` is not allowed in `shell`",
        ),
        ("hooks:\n  - id: a\n    run: {command: [x]}\n", "hooks.yaml:2:7: the hook has no `signature`"),
        (
            "hooks:\n  - id: a\n    signature: none\n    body_type: yaml\n    run: {command: [x]}\n",
            "hooks.yaml:4:16: `yaml` is not one of `json`, `form`",
        ),
        (
            "hooks:\n  - {id: a, signature: none, run: {command: [x]}}\n  - {id: a, signature: none, run: {command: [x]}}\n",
            "hooks.yaml:3:10: duplicate hook id `a`: hooks[0] has it too",
        ),
        (
            "hooks:\n  - id: a\n    signature: none\n    when: {payload.ref: {matches: \"(\"}}\n    run: {command: [x]}\n",
            "hooks.yaml:4:35: invalid regex `(`",
        ),
        (
            "hooks:\n  - id: a\n    signature: none\n    run: {command: [x], timeout: 30}\n",
            "hooks.yaml:4:34: `30` has no unit",
        ),
        (
            "hooks:\n  - id: a\n    signature: none\n    run: {command: [x], keep_background: 1}\n",
            "hooks.yaml:4:42: expected `true` or `false`",
        ),
        (
            "server: {max_body: 10MB_}\nhooks: []\n",
            "hooks.yaml:1:20: `10MB_` is not a size",
        ),
        (
            "server: {body_timeout: 0s}\nhooks: []\n",
            "hooks.yaml:1:24: `body_timeout` must be longer than zero, such as `60s`",
        ),
        (
            "hooks:\n  - id: a\n    signature: {github: {secret: env:MISSING_SECRET}}\n    run: {command: [x]}\n",
            "hooks.yaml:3:34: environment variable `MISSING_SECRET` is not set",
        ),
        (
            "hooks:\n  - id: a\n    signature: {githb: {secret: x}}\n    run: {command: [x]}\n",
            "unknown signature provider `githb`, did you mean `github`?",
        ),
        ("hooks:\n  - id: a b\n    signature: none\n    run: {command: [x]}\n", "hooks.yaml:2:9: hook id `a b` may only use"),
        ("hooks:\n  - id: a\n    signature: {any: []}\n    run: {command: [x]}\n", "hooks.yaml:3:22: `any` takes a list of providers"),
        ("hooks:\n  - id: a\n    signature: {any: [none]}\n    run: {command: [x]}\n", "hooks.yaml:3:23: each entry of `any` is one provider, not `none` or another `any`"),
        ("hooks:\n  - id: a\n    signature: {any: [{gihub: {secret: x}}]}\n    run: {command: [x]}\n", "hooks.yaml:3:24: unknown signature provider `gihub`, did you mean `github`?"),
        ("hooks:\n  - id: /a\n    signature: none\n    run: {command: [x]}\n", "hooks.yaml:2:9: hook id `/a` may only use letters, digits, `.`, `_` and `-`, with `/` between parts"),
        ("hooks:\n  - id: a/\n    signature: none\n    run: {command: [x]}\n", "hook id `a/` may only use"),
        ("hooks:\n  - id: a//b\n    signature: none\n    run: {command: [x]}\n", "hook id `a//b` may only use"),
        ("hooks:\n  - id: a/../b\n    signature: none\n    run: {command: [x]}\n", "hook id `a/../b` may only use"),
        ("hooks:\n  - id: ./a\n    signature: none\n    run: {command: [x]}\n", "hook id `./a` may only use"),
        ("hooks:\n  - id: a\n    signature: none\n    run: {command: [x], env: {\"A=B\": x}}\n", "hooks.yaml:4:31: `A=B` cannot be an environment variable name"),
        ("hooks:\n  - id: a\n    signature: none\n    run: {command: [x], env: {\"\": x}}\n", "`` cannot be an environment variable name"),
        ("hooks:\n  - id: a\n    signature: none\n    run: {command: [\"{{ payload.x\"]}\n", "has no closing `}}`"),
        ("hooks: [\n", "hooks.yaml:2:1: invalid YAML"),
        ("", "the file is empty"),
        ("hook: []\n", "unknown key `hook` in the config, did you mean `hooks`?"),
        (
            "hooks:\n  - id: a\n    signature: {stripe: {secret: s, tolerence: 1m}}\n    run: {command: [x]}\n",
            "hooks.yaml:3:37: unknown key `tolerence` in `signature.stripe`, did you mean `tolerance`?",
        ),
        (
            "hooks:\n  - id: a\n    signature: {standard: {secret: \"whsec_not base64\"}}\n    run: {command: [x]}\n",
            "hooks.yaml:3:36: a Standard Webhooks secret is `whsec_` followed by base64",
        ),
        (
            "hooks:\n  - id: a\n    signature: {gitlab: {secret: \" padded \"}}\n    run: {command: [x]}\n",
            "a token with spaces or tabs at either end can never be sent in a header",
        ),
        (
            "hooks:\n  - id: a\n    signature: {hmac: {secret: s}}\n    run: {command: [x]}\n",
            "`hmac` needs `header:`",
        ),
        (
            "hooks:\n  - id: a\n    signature: {gitlab: {secret: s, allow_sha1: true}}\n    run: {command: [x]}\n",
            "unknown key `allow_sha1` in `signature.gitlab`",
        ),
        (
            "hooks:\n  - id: a\n    signature: {slack: {secret: s, tolerance: 5}}\n    run: {command: [x]}\n",
            "`5` has no unit",
        ),
        (
            "hooks:\n  - id: a\n    signature: none\n    run: {command: [x], env: {HOOK_ATTEMPT: '9'}}\n",
            "hooks.yaml:4:31: `HOOK_ATTEMPT` is set by hookrunner itself; choose another name",
        ),
        (
            "hooks:\n  - id: a\n    signature: none\n    run: {command: [x]}\n    run: {shell: y}\n",
            "hooks.yaml:5:5: `run` appears twice in this mapping (first at line 4); a key may appear only once in a mapping: keep one and remove the other\n5 |     run: {shell: y}\n  |     ^\n",
        ),
        (
            "server: {max_jobs: 1}\nserver: {max_jobs: 2}\nhooks: []\n",
            "hooks.yaml:2:1: `server` appears twice in this mapping (first at line 1); a key may appear only once in a mapping: keep one and remove the other",
        ),
        (
            "hooks:\n  - id: a\n    signature: {github: {secret: x, secret: y}}\n    run: {command: [x]}\n",
            "hooks.yaml:3:37: `secret` appears twice in this mapping (first at line 3)",
        ),
        (
            "hooks:\n  - id: a\n\tsignature: none\n    run: {command: [x]}\n",
            "hooks.yaml:3:1: tabs are not allowed for indentation in YAML; use spaces (invalid YAML: found a tab character that violates indentation at line 3 column 1, while scanning a plain scalar at line 2 column 9)\n3 |     signature: none\n  | ^\n",
        ),
        (
            "hooks:\n  - id: a\n    signature: none\n    run:\n    \t command: [x]\n",
            "hooks.yaml:5:5: tabs are not allowed for indentation in YAML; use spaces",
        ),
        // A tab inside a block of text is no mistake, and no hint for a later error.
        (
            "hooks:\n  - id: a\n    signature: none\n    description: |\n      one\n      \ttwo\n\n    run: {command: [x]\n",
            "hooks.yaml:9:1: invalid YAML: did not find expected ',' or '}'",
        ),
    ];
    for (text, expected) in cases {
        let rendered = errors(text);
        assert!(
            rendered.contains(expected),
            "expected {expected:?} in:\n{rendered}"
        );
    }
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let text = "hooks:\n  - id: a\n    run: {comand: [x]}\n  - id: b\n    signature: none\n    run: {shell: \"{{ body }}\"}\n";
    let rendered = errors(text);
    assert_eq!(rendered.matches("hooks.yaml:").count(), 4, "{rendered}");
}

#[test]
fn duplicate_ids_are_reported_with_the_other_problems_of_either_hook() {
    let cases: &[(&str, &[&str])] = &[
        (
            "hooks:\n  - {id: a, signature: none, run: {command: [x]}}\n  - {id: a, run: {command: [x]}}\n",
            &["hooks.yaml:3:5: the hook has no `signature`", "hooks.yaml:3:10: duplicate hook id `a`: hooks[0] has it too; ids must be unique, so rename one"],
        ),
        (
            "hooks:\n  - {id: a, run: {comand: [x]}}\n  - {id: a, signature: none, run: {command: [x]}}\n",
            &[
                "hooks.yaml:2:5: the hook has no `signature`",
                "hooks.yaml:2:13: `run` needs `command",
                "hooks.yaml:2:19: unknown key `comand`",
                "hooks.yaml:3:10: duplicate hook id `a`: hooks[0]",
            ],
        ),
        (
            "hooks:\n  - {id: a, signature: none, run: {command: [x]}}\n  - {id: b, signature: none, run: {command: [x]}}\n  - {id: a, signature: none, run: {shell: \"{{ body }}\"}}\n  - {id: b, signature: none, run: {command: [x]}}\n",
            &["hooks.yaml:4:10: duplicate hook id `a`: hooks[0]", "hooks.yaml:4:43: `{{ }}` is not allowed in `shell`", "hooks.yaml:5:10: duplicate hook id `b`: hooks[1]"],
        ),
    ];
    for (text, expected) in cases {
        let rendered = errors(text);
        for fragment in *expected {
            assert!(
                rendered.contains(fragment),
                "expected {fragment:?} in:\n{rendered}"
            );
        }
        assert_eq!(
            rendered.matches("hooks.yaml:").count(),
            expected.len(),
            "{rendered}"
        );
    }
}

#[test]
fn every_key_written_twice_is_reported_in_one_pass() {
    let rendered = errors("server: {max_jobs: 1, max_jobs: 2}\nhooks:\n  - id: a\n    signature: none\n    signature: none\n    run: {command: [x]}\n");
    assert!(
        rendered.contains(
            "hooks.yaml:1:23: `max_jobs` appears twice in this mapping (first at line 1)"
        ),
        "{rendered}"
    );
    assert!(
        rendered.contains(
            "hooks.yaml:5:5: `signature` appears twice in this mapping (first at line 4)"
        ),
        "{rendered}"
    );
    assert_eq!(rendered.matches("hooks.yaml:").count(), 2, "{rendered}");
}

/// A folder with `bin/tool` (executable), `site/deploy.sh` (executable), `site/notes.txt` (not
/// executable) and `plain` (a file), and a config file's path in it.
fn machine() -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("site")).unwrap();
    for (file, mode) in [
        ("bin/tool", 0o755),
        ("site/deploy.sh", 0o755),
        ("site/notes.txt", 0o644),
        ("plain", 0o644),
    ] {
        std::fs::write(root.join(file), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let file = root.join("hooks.yaml");
    (dir, file)
}

#[test]
fn a_workdir_or_program_missing_on_this_machine_is_a_warning_not_an_error() {
    let (dir, file) = machine();
    let root = dir.path().display().to_string();
    let search_path = format!("{root}/nowhere:{root}/bin");
    let lookup = |name: &str| (name == "PATH").then(|| search_path.clone());
    // `run:` of a hook at line 4, and the warnings expected, with `$ROOT` for the folder.
    let cases: &[(&str, &[&str])] = &[
        ("{command: [tool]}", &[]),
        ("{command: [./deploy.sh], workdir: site}", &[]),
        ("{command: [site/deploy.sh]}", &[]),
        ("{command: [\"$ROOT/site/deploy.sh\"], workdir: /}", &[]),
        ("{shell: nothing-like-it}", &[]),
        ("{command: [\"{{ payload.program }}\"]}", &[]),
        ("{command: [tool], workdir: site}", &[]),
        ("{command: [nothing-like-it], env: {PATH: /opt/bin}}", &[]),
        (
            "{command: [nothing-like-it]}",
            &["hooks.yaml:4:21: warning: `nothing-like-it` is not found on this machine's `PATH`; install it, or write its path (such as `/usr/local/bin/nothing-like-it`, or `./nothing-like-it` for one in `workdir`)"],
        ),
        (
            "{command: [./deploy.sh]}",
            &["hooks.yaml:4:21: warning: `./deploy.sh` does not exist on this machine (looked for `$ROOT/./deploy.sh`); fix the path: a relative one is read from `workdir`"],
        ),
        (
            "{command: [./notes.txt], workdir: site}",
            &["hooks.yaml:4:21: warning: `./notes.txt` is not executable; allow it to run with `chmod +x $ROOT/site/./notes.txt`"],
        ),
        (
            "{command: [../site], workdir: bin}",
            &["hooks.yaml:4:21: warning: `../site` is a directory (`$ROOT/bin/../site`), not a program; name the file to run"],
        ),
        (
            "{command: [./deploy.sh], workdir: sites}",
            &["hooks.yaml:4:44: warning: `workdir` `$ROOT/sites` does not exist on this machine; create it, or fix the path (a relative one is read from the config file's folder)"],
        ),
        (
            "{command: [nothing-like-it], workdir: plain}",
            &[
                "hooks.yaml:4:21: warning: `nothing-like-it` is not found on this machine's `PATH`",
                "hooks.yaml:4:48: warning: `workdir` `$ROOT/plain` is not a directory",
            ],
        ),
        (
            "{command: [tool], workdir: plain}",
            &["hooks.yaml:4:37: warning: `workdir` `$ROOT/plain` is not a directory; point it at the folder the command should run in"],
        ),
    ];
    for (run, expected) in cases {
        let text = format!(
            "hooks:\n  - id: a\n    signature: none\n    run: {}\n",
            run.replace("$ROOT", &root)
        );
        let config = load_str(&text, &file, &lookup).unwrap_or_else(|e| panic!("{}", e.render()));
        let warnings = config.warnings.concat().replace(&root, "$ROOT");
        for fragment in *expected {
            assert!(
                warnings.contains(fragment),
                "{run}: expected {fragment:?} in:\n{warnings}"
            );
        }
        assert_eq!(config.warnings.len(), expected.len(), "{run}: {warnings}");
    }
}

#[test]
fn a_literal_secret_is_a_warning_not_an_error() {
    let config = load(
        "hooks:\n  - id: a\n    signature: {gitlab: {secret: literal}}\n    run: {command: [x]}\n",
    )
    .unwrap();
    assert_eq!(
        config.warnings,
        ["/etc/hookrunner/hooks.yaml:3:34: warning: the secret `hooks[0].signature.gitlab.secret` is written in the file; prefer `env:NAME`, `file:PATH` or `cred:NAME` so it stays out of version control\n"]
    );
}

#[test]
fn no_problem_quotes_a_line_that_holds_a_secret() {
    const HOOK: &str = "hooks:\n  - id: a\n    run: {command: [x]}\n";
    // Each text holds the literal `hunter2` (or `hunter3`), and some problem on or near its lines.
    let cases: &[&str] = &[
        "server: {admin_token: hunter2, bogus: 1}\nhooks: []\n",
        "server:\n  admin_token: hunter2\n  max_jobs: 0\nhooks: []\n",
        "hooks:\n  - id: a\n    signature: {github: {secret: hunter2, tolerence: 1m}}\n    run: {command: [x]}\n",
        "hooks:\n  - id: a\n    signature: {githb: {secret: hunter2}}\n    run: {command: [x]}\n",
        "hooks:\n  - id: a\n    signature:\n      slack:\n        secret:\n          - hunter2\n          - [hunter3]\n    run: {command: [x]}\n",
        "hooks:\n  - id: a\n    signature:\n      slack: {secret: [ok,\n        hunter2, {x: 1}]}\n    run: {command: [x]}\n",
        "hooks:\n  - id: a\n    signature:\n      gitlab:\n        secret: |\n          hunter2\n        extra: 1\n    run: {command: [x]}\n",
        "hooks:\n  - id: a\n    signature:\n      gitlab:\n        secret: hunter2\n          hunter3\n        extra: 1\n    run: {command: [x]}\n",
        "hooks:\n  - id: a\n    signature: {gitlab: {secret: \"hunter2\n",
        // Text the YAML scanner stops at, inside a secret or just after its key.
        "hooks:\n  - id: a\n    signature: {gitlab: {secret: \"hunter2\\q\"}}\n    run: {command: [x]}\n",
        "hooks:\n  - id: a\n    signature:\n      gitlab:\n        secret: \"hunter2\n          hunter3\\q\"\n    run: {command: [x]}\n",
        "server:\n  admin_token: 'hunter2\n    hunter3\nhooks: []\n",
        // A misspelt secret key holds a secret all the same.
        "hooks:\n  - id: a\n    signature:\n      slack:\n        secrets: [hunter2, hunter3]\n    run: {command: [x]}\n",
        "server: {admin_tokn: hunter2}\nhooks: []\n",
        // A secret written under another key, and made one through an alias.
        "shared: &s hunter2\nhooks:\n  - id: a\n    signature: {github: {secret: *s}}\n    run: {command: [x]}\n",
        "hooks:\n  - id: a\n    run: {command: [x], env: {A: &s hunter2}, bogus: 1}\n  - id: b\n    signature: {github: {secret: *s}}\n    run: {command: [x]}\n",
    ];
    for text in cases {
        let rendered = errors(&format!(
            "{text}{}",
            if text.contains("hooks:") { "" } else { HOOK }
        ));
        assert!(
            rendered.contains("hooks.yaml:"),
            "no problem found in:\n{text}"
        );
        assert!(
            !rendered.contains("hunter"),
            "a secret was quoted:\n{rendered}"
        );
    }
    // Lines without secrets are still quoted, and so are references to secrets.
    let rendered = errors("server:\n  admin_token: hunter2\n  max_jobs: 0\nhooks: []\n");
    assert!(rendered.contains("3 |   max_jobs: 0"), "{rendered}");
    let rendered = errors("server:\n  admin_token: env:MISSING_TOKEN\nhooks: []\n");
    assert!(
        rendered.contains("2 |   admin_token: env:MISSING_TOKEN"),
        "{rendered}"
    );
}

#[test]
fn concurrency_is_said_in_words() {
    let cases = [
        (
            Concurrency::Queue { queue: 100 },
            "queue (100 waiting at most)",
        ),
        (
            Concurrency::Queue { queue: 0 },
            "queue (none waiting: busy while one runs)",
        ),
        (Concurrency::Parallel { limit: None }, "parallel (no limit)"),
        (
            Concurrency::Parallel { limit: Some(4) },
            "parallel (up to 4 at once)",
        ),
        (
            Concurrency::Latest,
            "latest (a newer trigger supersedes the waiting job)",
        ),
        (
            Concurrency::Replace,
            "replace (a newer trigger cancels the running job)",
        ),
    ];
    for (concurrency, expected) in cases {
        assert_eq!(concurrency.to_string(), expected);
    }
}

#[test]
fn ids_with_slashes_and_webhook_style_env_names_load() {
    let config = load(
        "hooks:\n  - id: sendgrid/dir.v1\n    signature: none\n    run:\n      command: [x]\n      env: {HOOK_head_commit.timestamp: \"{{ payload.head_commit.timestamp }}\", 9LIVES: x, OK_NAME: y}\n",
    )
    .unwrap();
    assert!(config.hook("sendgrid/dir.v1").is_some());
    let warnings = config.warnings.concat();
    assert!(
        warnings.contains("6:13: warning: a shell cannot read `HOOK_head_commit.timestamp` as `$HOOK_head_commit.timestamp` (only letters, digits and `_`, not starting with a digit); a program can, or name it `HOOK_head_commit_timestamp`"),
        "{warnings}"
    );
    assert!(warnings.contains("or name it `_9LIVES`"), "{warnings}");
    assert_eq!(config.warnings.len(), 2, "{warnings}");
}

#[test]
fn a_signature_may_accept_any_of_several_providers() {
    let config = load(
        "hooks:\n  - id: a\n    signature: {any: [{github: {secret: env:GITHUB_WEBHOOK_SECRET}}, {hmac: {secret: env:GITHUB_WEBHOOK_SECRET, header: X-Sig}}]}\n    run: {command: [x]}\n",
    )
    .unwrap();
    assert_eq!(config.hook("a").unwrap().signature.name(), "any");
}

/// Writes `files` (name, text) into a fresh folder and loads its `hooks.yaml`.
fn load_folder(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Config, ConfigErrors>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let main = dir.path().join("hooks.yaml");
    let text = std::fs::read_to_string(&main).unwrap();
    let loaded = load_str(&text, &main, &env);
    (dir, loaded)
}

const ONE: &str = "    signature: none\n    run: {command: [x]}\n";

#[test]
fn included_files_add_their_hooks_in_sorted_order() {
    let (_dir, loaded) = load_folder(&[
        (
            "hooks.yaml",
            &format!("include: [\"hooks.d/*.yaml\"]\nhooks:\n  - id: main\n{ONE}"),
        ),
        ("hooks.d/b.yaml", &format!("hooks:\n  - id: b\n{ONE}")),
        (
            "hooks.d/a.yaml",
            &format!("hooks:\n  - id: a/one\n{ONE}  - id: a/two\n{ONE}"),
        ),
        ("hooks.d/empty.yaml", ""),
        ("hooks.d/notes.txt", "not yaml: ["),
    ]);
    let config = loaded.unwrap_or_else(|errors| panic!("{}", errors.render()));
    let ids: Vec<&str> = config.hooks.iter().map(|hook| hook.id.as_str()).collect();
    assert_eq!(ids, ["main", "a/one", "a/two", "b"]);
    assert!(config.hook("a/two").is_some());
    assert_eq!(config.include, ["hooks.d/*.yaml"]);

    let (_dir, loaded) = load_folder(&[("hooks.yaml", "include: nothing/*.yaml\n")]);
    let config = loaded.unwrap_or_else(|errors| panic!("{}", errors.render()));
    assert!(config.hooks.is_empty());
    assert!(
        config
            .warnings
            .concat()
            .contains("hooks.yaml:1:10: warning: `nothing/*.yaml` matches no file"),
        "{:?}",
        config.warnings
    );
}

#[test]
fn an_included_files_problems_point_at_its_own_lines() {
    let cases: &[(&[(&str, &str)], &[&str])] = &[
        (
            &[
                ("hooks.yaml", "include: [d/*.yaml]\nhooks:\n  - id: a\n    signature: none\n    run: {command: [x]}\n"),
                ("d/x.yaml", "hooks:\n  - id: b\n    signature: none\n    run: {comand: [x]}\n"),
            ],
            &["d/x.yaml:4:11: unknown key `comand` in `run`, did you mean `command`?\n4 |     run: {comand: [x]}\n"],
        ),
        (
            &[
                ("hooks.yaml", "include: [d/*.yaml]\n"),
                ("d/x.yaml", "server: {max_jobs: 2}\nhooks: []\n"),
            ],
            &["d/x.yaml:1:1: `server` belongs in the main config, not in the included file `", "d/x.yaml`, which holds `hooks:` only"],
        ),
        (
            &[
                ("hooks.yaml", "include: [d/*.yaml]\nhooks:\n  - id: a\n    signature: none\n    run: {command: [x]}\n"),
                ("d/x.yaml", "hooks:\n  - id: b\n    signature: none\n    run: {command: [x]}\n"),
                ("d/y.yaml", "\nhooks:\n  - id: a\n    signature: none\n    run: {command: [x]}\n  - id: b\n    signature: none\n    run: {command: [x]}\n"),
            ],
            &[
                "d/y.yaml:3:9: duplicate hook id `a`: `", "hooks.yaml` has it too; ids must be unique across the config and the files it includes",
                "d/y.yaml:6:9: duplicate hook id `b`: `", "d/x.yaml` has it too",
            ],
        ),
        (
            &[
                ("hooks.yaml", "include: [d/*.yaml]\nhooks:\n  - id: a\n    signature: nne\n    run: {command: [x]}\n"),
                ("d/x.yaml", "hooks: {id: b}\n"),
            ],
            &["hooks.yaml:4:16: `signature` must be `none`", "d/x.yaml:1:8: `hooks` must be a list"],
        ),
        (
            &[("hooks.yaml", "include: [\"d/[\"]\n")],
            &["hooks.yaml:1:11: `d/[` is not a valid file pattern"],
        ),
    ];
    for (files, fragments) in cases {
        let (_dir, loaded) = load_folder(files);
        let rendered = match loaded {
            Ok(_) => panic!("expected errors for {files:?}"),
            Err(errors) => errors.render(),
        };
        for fragment in *fragments {
            assert!(
                rendered.contains(fragment),
                "expected {fragment:?} in:\n{rendered}"
            );
        }
    }
}

#[test]
fn a_hook_or_base_path_that_a_fixed_route_would_shadow_is_refused_at_the_id() {
    let hook = |id: &str| format!("  - id: {id}\n{ONE}");
    let at_root = |ids: &[&str]| {
        let hooks: String = ids.iter().map(|id| hook(id)).collect();
        format!("server: {{base_path: /}}\nhooks:\n{hooks}")
    };
    let shadowed = |id: &str, route: &str| {
        format!("hook id `{id}` would be served at `/{id}`, but `/{route}` is hookrunner's own route, which answers first; rename the hook, or keep a `base_path` such as `/hooks`")
    };
    let cases: Vec<(String, String)> = vec![
        (at_root(&["ok", "healthz"]), format!("hooks.yaml:6:9: {}", shadowed("healthz", "healthz"))),
        (at_root(&["readyz"]), shadowed("readyz", "readyz")),
        (at_root(&["metrics"]), shadowed("metrics", "metrics")),
        (at_root(&["instances"]), shadowed("instances", "instances")),
        (at_root(&["jobs"]), shadowed("jobs", "jobs")),
        (at_root(&["jobs/deploy"]), shadowed("jobs/deploy", "jobs")),
        (at_root(&["ui"]), shadowed("ui", "ui")),
        (at_root(&["ui/x"]), shadowed("ui/x", "ui")),
        (
            "server: {base_path: /jobs}\nhooks: []\n".into(),
            "hooks.yaml:1:21: `base_path` `/jobs` starts with `/jobs`, hookrunner's own route, which answers first, so no hook under it could be reached; choose another, such as `/hooks`".into(),
        ),
        (
            "server: {base_path: /ui/hooks/}\nhooks: []\n".into(),
            "`base_path` `/ui/hooks` starts with `/ui`, hookrunner's own route".into(),
        ),
        (
            "server: {base_path: /metrics}\nhooks: []\n".into(),
            "`base_path` `/metrics` starts with `/metrics`".into(),
        ),
    ];
    for (text, expected) in cases {
        let rendered = errors(&text);
        assert!(
            rendered.contains(&expected),
            "{text}\nexpected {expected:?} in:\n{rendered}"
        );
    }
    let fine = [
        at_root(&[
            "deploy",
            "jobsite",
            "healthz-check",
            "Jobs",
            "hooks/jobs",
            "ui.v2",
        ]),
        format!(
            "server: {{base_path: /hooks}}\nhooks:\n{}{}",
            hook("jobs"),
            hook("ui/x")
        ),
        format!("server: {{base_path: /jobsite}}\nhooks:\n{}", hook("a")),
        format!("hooks:\n{}", hook("healthz")),
    ];
    for text in fine {
        if let Err(errors) = load(&text) {
            panic!("{text}\n{}", errors.render());
        }
    }

    let (_dir, loaded) = load_folder(&[
        (
            "hooks.yaml",
            "server: {base_path: /}\ninclude: [\"hooks.d/*.yaml\"]\nhooks: []\n",
        ),
        ("hooks.d/a.yaml", &format!("hooks:\n{}", hook("metrics"))),
    ]);
    let Err(errors) = loaded else {
        panic!("a hook at `/metrics` loaded");
    };
    let rendered = errors.render();
    assert!(
        rendered.contains(&format!("a.yaml:2:9: {}", shadowed("metrics", "metrics"))),
        "{rendered}"
    );
}

/// The `matches` pattern of each hook's first (only) leaf.
fn pattern_of(hook: &Hook) -> &crate::pattern::Pattern {
    match &hook.when {
        Some(Rule::Leaf {
            condition: crate::rules::Condition::Matches(pattern),
            ..
        }) => pattern,
        other => panic!("expected a `matches` leaf, got {other:?}"),
    }
}

#[test]
fn hooks_that_write_the_same_pattern_share_one() {
    let hook = |id: &str, pattern: &str| {
        format!("  - {{id: {id}, signature: none, run: {{command: [x]}}, when: {{payload.ref: {{matches: \"{pattern}\"}}}}}}\n")
    };
    let text = format!(
        "hooks:\n{}{}{}",
        hook("a", "^refs/heads/main$"),
        hook("b", "^refs/heads/main$"),
        hook("c", "^refs/heads/dev$"),
    );
    let config = load(&text).expect("a valid config");
    let [a, b, c] = [0, 1, 2].map(|index| pattern_of(&config.hooks[index]));
    assert!(a.is_shared_with(b));
    assert!(!a.is_shared_with(c));
    assert!(a.is_match("refs/heads/main") && !c.is_match("refs/heads/main"));
}

#[test]
fn a_bad_pattern_among_many_hooks_is_refused_at_its_own_place() {
    let mut text = String::from("hooks:\n");
    for index in 0..50 {
        let pattern = if index == 37 {
            "("
        } else {
            "^refs/heads/main$"
        };
        text += &format!(
            "  - id: h{index}\n    signature: none\n    when: {{payload.ref: {{matches: \"{pattern}\"}}}}\n    run: {{command: [x]}}\n"
        );
    }
    let rendered = errors(&text);
    // Hook 37 starts at line 2 + 4 * 37; its `when` is the third line of it.
    let line = 2 + 4 * 37 + 2;
    assert!(
        rendered.starts_with(&format!(
            "/etc/hookrunner/hooks.yaml:{line}:35: invalid regex `(`"
        )),
        "{rendered}"
    );
    assert_eq!(rendered.matches("invalid regex").count(), 1, "{rendered}");
}

#[test]
fn hooks_read_one_at_a_time_see_anchors_merges_and_a_server_written_after_them() {
    let text = "\
hooks:
  - id: a
    signature: &sig {github: {secret: env:GITHUB_WEBHOOK_SECRET}}
    run: &run {command: [x]}
  - <<: {signature: *sig, run: *run}
    id: b
    description: &words merged
  - {id: c, signature: none, run: *run, description: *words}
server:
  max_body: 1KiB
  listen: [\"127.0.0.1:9000\"]
";
    let config = load(text).unwrap();
    let ids: Vec<&str> = config.hooks.iter().map(|hook| hook.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    // The server's settings, written after the hooks, apply to them.
    assert!(config.hooks.iter().all(|hook| hook.max_body == 1024));
    assert_eq!(
        config.hook("b").unwrap().description.as_deref(),
        Some("merged")
    );
    assert_eq!(
        config.hook("c").unwrap().description.as_deref(),
        Some("merged")
    );
    assert!(matches!(
        config.hook("b").unwrap().signature,
        crate::signature::Signature::Provider(_)
    ));
    // Problems in items read one at a time point at their own lines, the server's too.
    let rendered = errors(&text.replace("id: b", "id: a").replace("1KiB", "lots"));
    assert!(
        rendered.contains("hooks.yaml:6:9: duplicate hook id `a`: hooks[0] has it too"),
        "{rendered}"
    );
    assert!(rendered.contains("hooks.yaml:10:13: "), "{rendered}");
    assert_eq!(rendered.matches("hooks.yaml:").count(), 2, "{rendered}");
}

#[test]
fn yaml_that_only_libyaml_takes_loads_as_before_and_is_never_quoted_after_the_disagreement() {
    // libyaml (serde_yaml) takes a flow list closed left of its key; hookrunner's streaming
    // reader does not, so the file is read whole by serde_yaml, as before this reader existed.
    let text = "hooks:\n  - id: a\n    signature: none\n    run: {command: [\n  x]}\n";
    assert!(serde_yaml::from_str::<serde_yaml::Value>(text).is_ok());
    let config = load(text).unwrap();
    assert_eq!(config.hooks.len(), 1);
    // The source map could not follow the lines from the disagreement on: none of them is quoted
    // (any might hold a secret), though the problem is still reported.
    let broken = format!("{text}    timeout: soon\n");
    let rendered = errors(&broken);
    assert!(rendered.contains("timeout"), "{rendered}");
    assert!(!rendered.contains("soon"), "{rendered}");
}

#[test]
fn yaml_left_to_serde_yaml_still_loads_and_its_problems_read_as_before() {
    // A tab, and an anchor defined twice: read by serde_yaml, as before.
    let text = "hooks:\n  - id: a\n    signature: none\n    run: {command: [\"a\tb\"]}\n    description: &d one\n  - {id: b, signature: none, run: {command: [x]}, description: *d}\n  - {id: c, signature: none, run: {command: [x]}, description: &d two}\n";
    let config = load(text).unwrap();
    assert_eq!(config.hooks.len(), 3);
    let rendered = errors("hooks:\n\t- id: a\n");
    assert!(
        rendered.contains("tabs are not allowed for indentation in YAML"),
        "{rendered}"
    );
}

#[test]
fn a_billion_laughs_is_refused_with_a_clear_message() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let aliases = vec![format!("*a{}", level - 1); 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{aliases}]\n"));
    }
    text.push_str("hooks: *a8\n");
    let rendered = errors(&text);
    assert!(rendered.contains("hooks.yaml:"), "{rendered}");
    assert!(
        rendered.contains("repetition limit exceeded")
            || rendered.contains("the aliases of this document copy more than")
            || rendered.contains("the anchored values of this document hold more than"),
        "{rendered}"
    );
}

#[test]
fn a_secret_with_a_wrong_tag_is_not_quoted_by_the_parsers_words() {
    // serde_yaml says `invalid value: string "...", expected an integer`, quoting the value.
    for tag in ["!!int", "!!bool", "!!float"] {
        let text = format!(
            "hooks:\n  - id: a\n    run: {{command: [x]}}\n    signature: {{token: {{header: X-T, secret: {tag} SECRETXYZ2}}}}\n"
        );
        let rendered = errors(&text);
        assert!(!rendered.contains("SECRETXYZ2"), "{rendered}");
        assert!(rendered.contains("hooks.yaml:4:"), "{rendered}");
        assert!(rendered.contains("not shown"), "{rendered}");
    }
    // An included file's too.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("more.yaml"),
        "hooks:\n  - id: b\n    run: {command: [x]}\n    signature:\n      token: {header: X-T, secret: !!int SECRETXYZ3}\n",
    )
    .unwrap();
    let main = dir.path().join("hooks.yaml");
    std::fs::write(&main, "include: [more.yaml]\n").unwrap();
    let rendered = match super::load(&main) {
        Ok(_) => panic!("loaded"),
        Err(errors) => errors.render(),
    };
    assert!(!rendered.contains("SECRETXYZ3"), "{rendered}");
    assert!(rendered.contains("more.yaml:5:"), "{rendered}");
}

#[test]
fn a_merge_key_given_a_scalar_is_an_error_wherever_it_is() {
    // In a hook read one at a time, and in the rest of the file: the bad `<<` is reported, and
    // no merge elsewhere is applied half-way.
    let streamed = "hooks:\n  - id: a\n    signature: none\n    run:\n      command: [echo]\n      env:\n        <<: {A: merged}\n        B: b\n  - id: z\n    <<: 5\n    signature: none\n    run: {command: [echo]}\n";
    let rendered = errors(streamed);
    assert!(
        rendered.contains("hooks.yaml:9:7: a merge key `<<` must be given a mapping"),
        "{rendered}"
    );
    let in_server =
        "server:\n  <<: 5\nhooks:\n  - {id: a, signature: none, run: {command: [echo]}}\n";
    let rendered = errors(in_server);
    assert!(
        rendered.contains("a merge key `<<` must be given a mapping"),
        "{rendered}"
    );
    // A good one still merges.
    let good = "hooks:\n  - id: a\n    signature: none\n    run:\n      command: [echo]\n      env:\n        <<: {A: merged}\n";
    let config = load(good).unwrap();
    assert_eq!(config.hooks[0].run.env[0].0, "A");
}
