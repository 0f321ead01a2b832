//! `hookrunner check` as a user runs it: the real binary, a real file, exit codes and messages.

use std::process::Command;

use crate::helpers::check_text as check;

#[test]
fn check_names_the_file_line_and_misspelt_key() {
    let (code, _, stderr) = check(
        "hooks:\n  - id: deploy\n    signature: none\n    run:\n      comand: [./deploy.sh]\n",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("hooks.yaml:5:7: unknown key `comand` in `run`, did you mean `command`?\n5 |       comand: [./deploy.sh]\n  |       ^"),
        "{stderr}"
    );
}

#[test]
fn check_refuses_templates_inside_shell() {
    let (code, _, stderr) = check("hooks:\n  - id: deploy\n    signature: none\n    run:\n      shell: ./deploy.sh {{ payload.after }}\n");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("hooks.yaml:5:14: `{{ }}` is not allowed in `shell`"),
        "{stderr}"
    );
}

#[test]
fn check_summarises_a_valid_file_and_the_example_passes() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks.example.yaml"))
            .unwrap();
    let example = example
        .replace("env:GITHUB_WEBHOOK_SECRET", "change-me")
        .replace("env:GITLAB_WEBHOOK_TOKEN", "change-me")
        .replace("env:DEMO_TOKEN", "change-me");
    let (code, stdout, stderr) = check(&example);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("deploy-site: POST /hooks/deploy-site, signature: github, when: its rules match, run: shell, concurrency: queue (100 waiting at most)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hello: POST /hooks/hello, signature: token, when: always, run: command, concurrency: queue (100 waiting at most)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("hooks.yaml: ok, 3 hooks"), "{stdout}");
    assert!(
        stderr.contains(
            "warning: the secret `hooks[0].signature.github.secret` is written in the file"
        ),
        "{stderr}"
    );
}

#[test]
fn check_warns_about_what_this_machine_lacks_and_still_exits_0() {
    let (code, stdout, stderr) = check(
        "hooks:\n  - id: a\n    signature: none\n    run: {command: [no-such-program-here]}\n  - id: b\n    signature: none\n    run: {command: [./deploy.sh], workdir: /no/such/folder}\n  - id: c\n    signature: none\n    run: {command: [./deploy.sh]}\n  - id: d\n    signature: none\n    run: {command: [sh, -c, 'true']}\n",
    );
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "hooks.yaml:4:21: warning: `no-such-program-here` is not found on this machine's `PATH`",
        "hooks.yaml:7:44: warning: `workdir` `/no/such/folder` does not exist on this machine",
        "hooks.yaml:10:21: warning: `./deploy.sh` does not exist on this machine (looked for `",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    assert_eq!(stderr.matches("warning:").count(), 3, "{stderr}");
    assert!(stdout.contains("hooks.yaml: ok, 4 hooks"), "{stdout}");
}

#[test]
fn check_reports_keys_written_twice_and_tabs_in_indentation() {
    let (code, _, stderr) = check(
        "hooks:\n  - id: a\n    signature: none\n    run: {command: [\"true\"]}\n    run: {shell: \"true\"}\n",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("hooks.yaml:5:5: `run` appears twice in this mapping (first at line 4); a key may appear only once in a mapping: keep one and remove the other\n5 |     run: {shell: \"true\"}\n  |     ^\n"),
        "{stderr}"
    );
    let (code, _, stderr) =
        check("hooks:\n  - id: a\n\tsignature: none\n    run: {command: [\"true\"]}\n");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("hooks.yaml:3:1: tabs are not allowed for indentation in YAML; use spaces (invalid YAML: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("\n3 |     signature: none\n  | ^\nhooks.yaml: 1 problem\n"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookrunner"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn completions_and_the_man_page_are_printed() {
    let binary = env!("CARGO_BIN_EXE_hookrunner");
    let completions = Command::new(binary)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(completions.status.code(), Some(0));
    let script = String::from_utf8_lossy(&completions.stdout);
    assert!(
        script.contains("import-webhook") && script.contains("--state-dir"),
        "{script:.200}"
    );
    let man = Command::new(binary).arg("man").output().unwrap();
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.contains(".TH hookrunner 1"), "{page:.200}");
    assert!(
        page.contains("HOOKRUNNER_CONFIG"),
        "the page names the environment variables"
    );
}

#[test]
fn check_refuses_a_hook_id_or_base_path_a_fixed_route_would_hide() {
    let (code, _, stderr) = check(
        "server: {base_path: /}\nhooks:\n  - id: jobs\n    signature: none\n    run: {command: [\"true\"]}\n",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("hooks.yaml:3:9: hook id `jobs` would be served at `/jobs`, but `/jobs` is hookrunner's own route, which answers first; rename the hook, or keep a `base_path` such as `/hooks`\n3 |   - id: jobs\n  |         ^"),
        "{stderr}"
    );

    let (code, _, stderr) = check(
        "server: {base_path: /ui}\nhooks:\n  - id: deploy\n    signature: none\n    run: {command: [\"true\"]}\n",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "hooks.yaml:1:21: `base_path` `/ui` starts with `/ui`, hookrunner's own route"
        ),
        "{stderr}"
    );

    let (code, stdout, stderr) = check(
        "server: {base_path: /}\nhooks:\n  - id: deploy\n    signature: none\n    run: {command: [\"true\"]}\n",
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
}
