//! `store`, `instance`, `heartbeat`, `lease` and `run_on` through `load_str`: every accepted and
//! refused value, with the diagnostic's text and position.

use std::path::Path;
use std::time::Duration;

use super::super::{load_str, Config, RunOn, StoreSetting};

const PASSWORD: &str = "hunter2-pw";

fn env(name: &str) -> Option<String> {
    match name {
        "STORE_URL" => Some(format!("postgres://hr:{PASSWORD}@db.internal:5432/hr")),
        "STORE_SQLITE" => Some("sqlite".into()),
        "STORE_BAD" => Some(format!("mysql://hr:{PASSWORD}@db")),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, String> {
    load_str(text, Path::new("/etc/hookrunner/hooks.yaml"), &env).map_err(|errors| errors.render())
}

/// A config whose `server:` holds `line` (at line 2, column 3).
fn server(line: &str) -> String {
    format!("server:\n  {line}\nhooks:\n  - {{id: a, signature: none, run: {{command: [x]}}}}\n")
}

/// A config whose one hook has `extra` (at line 4, column 5).
fn hook(extra: &str) -> String {
    format!("hooks:\n  - id: a\n    signature: none\n    {extra}\n    run: {{command: [x]}}\n")
}

fn refused(text: &str, expected: &str) {
    match load(text) {
        Ok(_) => panic!("expected `{expected}` for:\n{text}"),
        Err(rendered) => assert!(
            rendered.contains(expected),
            "expected `{expected}` for:\n{text}\ngot:\n{rendered}"
        ),
    }
}

fn loaded(text: &str) -> Config {
    load(text).unwrap_or_else(|rendered| panic!("{text}\n{rendered}"))
}

#[test]
fn store_accepts_sqlite_and_postgres_urls_in_the_secret_syntax() {
    let postgres = |url: &str| StoreSetting::Postgres(crate::secret::Secret::new(url));
    let cases = [
        (
            "listen: 127.0.0.1:9000".to_string(),
            StoreSetting::Sqlite,
            0,
        ),
        ("store: sqlite".into(), StoreSetting::Sqlite, 0),
        ("store: env:STORE_SQLITE".into(), StoreSetting::Sqlite, 0),
        (
            "store: env:STORE_URL".into(),
            postgres(&env("STORE_URL").unwrap()),
            0,
        ),
        (
            "store: postgres://db/hr".into(),
            postgres("postgres://db/hr"),
            1,
        ),
        (
            "store: postgresql://db/hr".into(),
            postgres("postgresql://db/hr"),
            1,
        ),
    ];
    for (line, expected, warnings) in cases {
        let config = loaded(&server(&line));
        assert_eq!(config.server.store, expected, "{line}");
        assert_eq!(
            config.warnings.len(),
            warnings,
            "{line}: {:?}",
            config.warnings
        );
    }
    let config = loaded(&server("store: postgres://db/hr"));
    assert!(
        config.warnings[0]
            .contains("hooks.yaml:2:10: warning: the secret `server.store` is written in the file"),
        "{:?}",
        config.warnings
    );
}

#[test]
fn store_refuses_anything_else_without_quoting_it() {
    let forms = "`sqlite` or a PostgreSQL URL starting with `postgres://` or `postgresql://`";
    let cases = [
        ("store: mysql://hr:hunter2-pw@db", format!("hooks.yaml:2:10: the store must be {forms}")),
        ("store: Postgres://db/hr", format!("hooks.yaml:2:10: the store must be {forms}")),
        ("store: SQLite", format!("hooks.yaml:2:10: the store must be {forms}")),
        ("store: \"\"", format!("hooks.yaml:2:10: the store is empty; write {forms}")),
        (
            "store: env:STORE_BAD",
            format!("hooks.yaml:2:10: `env:STORE_BAD` holds neither `sqlite` nor a PostgreSQL URL; it must hold {forms}"),
        ),
        ("store: env:UNSET", "hooks.yaml:2:10: environment variable `UNSET` is not set".into()),
        ("store: [sqlite]", "hooks.yaml:2:10: expected a single value".into()),
        ("stor: sqlite", "hooks.yaml:2:3: unknown key `stor` in `server`, did you mean `store`?".into()),
    ];
    for (line, expected) in cases {
        refused(&server(line), &expected);
        let rendered = load(&server(line)).err().unwrap();
        assert!(!rendered.contains(PASSWORD), "{rendered}");
        // A reference (`env:NAME`) is not a secret and may be quoted; the value never is.
        if !line.contains("env:") {
            assert!(
                !rendered.contains("2 |"),
                "the line is never quoted:\n{rendered}"
            );
        }
    }
}

#[test]
fn a_literal_postgres_url_never_appears_in_a_diagnostic() {
    let url = format!("postgres://hr:{PASSWORD}@db.internal/hr");
    let texts = [
        // An error on the same line, in a flow mapping.
        format!("server: {{store: \"{url}\", lease: 1s}}\nhooks: []\n"),
        // Only the literal's warning.
        server(&format!("store: {url}")),
        // An error in the YAML just after the URL.
        format!("server:\n  store: {url}\n  lease: [\nhooks: []\n"),
        // A misspelt key holds it.
        server(&format!("stroe: {url}")),
    ];
    for text in texts {
        let rendered = match load(&text) {
            Ok(config) => format!("{:?}{}", config.server, config.warnings.concat()),
            Err(rendered) => rendered,
        };
        assert!(!rendered.contains(PASSWORD), "{text}\n{rendered}");
        assert!(rendered.contains("hooks.yaml:"), "{rendered}");
    }
}

#[test]
fn instance_is_one_to_sixty_three_name_characters() {
    let long = "a".repeat(63);
    for name in ["web-1", "a.b_c-D9", "7", long.as_str()] {
        assert_eq!(
            loaded(&server(&format!("instance: {name}")))
                .server
                .instance,
            name
        );
    }
    let config = loaded(&server("listen: 127.0.0.1:9000"));
    assert_eq!(config.server.instance, super::default_instance());
    super::valid_instance(&config.server.instance).unwrap();
    let rule = "use 1 to 63 letters, digits, `.`, `_` and `-`, such as `web-1`";
    let too_long = format!("instance: {}", "a".repeat(64));
    let cases = [
        (
            "instance: \"\"",
            format!("hooks.yaml:2:13: the instance name is empty; {rule}"),
        ),
        (
            "instance: web 1",
            format!("hooks.yaml:2:13: the instance name has ` `; {rule}"),
        ),
        (
            "instance: wéb",
            format!("hooks.yaml:2:13: the instance name has `é`; {rule}"),
        ),
        (
            "instance: web/1",
            format!("hooks.yaml:2:13: the instance name has `/`; {rule}"),
        ),
        (
            too_long.as_str(),
            format!("hooks.yaml:2:13: the instance name is 64 characters long; {rule}"),
        ),
    ];
    for (line, expected) in cases {
        refused(&server(line), &expected);
    }
}

#[test]
fn lease_is_at_least_twice_the_heartbeat() {
    let cases = [
        ("listen: 127.0.0.1:9000", 5, 30),
        ("heartbeat: 15s", 15, 30),
        ("lease: 10s", 5, 10),
        ("heartbeat: 1s\n  lease: 2s", 1, 2),
    ];
    for (line, heartbeat, lease) in cases {
        let config = loaded(&server(line));
        assert_eq!(
            config.server.heartbeat,
            Duration::from_secs(heartbeat),
            "{line}"
        );
        assert_eq!(config.server.lease, Duration::from_secs(lease), "{line}");
    }
    let why = "an instance must miss at least one heartbeat before the others declare it dead";
    let cases = [
        ("heartbeat: 20s", format!("hooks.yaml:2:14: `lease` (30s) must be at least twice `heartbeat` (20s): {why}; make `lease` at least 40s or `heartbeat` shorter")),
        ("lease: 9s", format!("hooks.yaml:2:10: `lease` (9s) must be at least twice `heartbeat` (5s): {why}; make `lease` at least 10s")),
        ("heartbeat: 0s", "hooks.yaml:2:14: `heartbeat` must be longer than zero".into()),
        ("lease: 0s", "hooks.yaml:2:10: `lease` must be longer than zero".into()),
        ("lease: 30", "hooks.yaml:2:10: `30` has no unit".into()),
    ];
    for (line, expected) in cases {
        refused(&server(line), &expected);
    }
    refused(
        &server("heartbeat: 10s\n  lease: 15s"),
        "hooks.yaml:3:10: `lease` (15s) must be at least twice `heartbeat` (10s)",
    );
}

#[test]
fn run_on_all_is_for_async_hooks_only() {
    let cases = [
        ("description: x", RunOn::Any),
        ("run_on: any", RunOn::Any),
        ("run_on: all\n    response: {mode: async}", RunOn::All),
    ];
    for (extra, expected) in cases {
        let config = loaded(&hook(extra));
        assert_eq!(config.hook("a").unwrap().run_on, expected, "{extra}");
    }
    let needs = "hooks.yaml:4:13: `run_on: all` needs `response: {mode: async}`: a `wait` or `stream` job runs on the instance that holds the client's connection; make the hook `async` or remove `run_on`";
    let cases = [
        ("run_on: all", needs),
        ("run_on: all\n    response: {mode: wait}", needs),
        ("run_on: all\n    response: {mode: stream}", needs),
        (
            "run_on: every",
            "hooks.yaml:4:13: `every` is not one of `any`, `all`",
        ),
        (
            "runon: all",
            "hooks.yaml:4:5: unknown key `runon` in a hook, did you mean `run_on`?",
        ),
    ];
    for (extra, expected) in cases {
        refused(&hook(extra), expected);
    }
}
