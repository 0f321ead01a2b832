//! The README's examples, run as written: every `hookrunner send` line of the Providers section
//! against `examples/providers.yaml`, with the demo secrets the README exports.

use crate::helpers::TestApp;

const DEMO_SECRETS: &[(&str, &str)] = &[
    ("GITHUB_WEBHOOK_SECRET", "change-me"),
    ("GITLAB_WEBHOOK_TOKEN", "change-me"),
    ("GITEA_WEBHOOK_SECRET", "change-me"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_change_me"),
    ("SLACK_SIGNING_SECRET", "change-me"),
    ("SHOPIFY_WEBHOOK_SECRET", "change-me"),
    (
        "STANDARD_WEBHOOK_SECRET",
        "whsec_Y2hhbmdlLW1lLXRvLWEtcmVhbC1zZWNyZXQ=",
    ),
];

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(format!("{}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[tokio::test]
async fn every_provider_example_in_the_readme_works_as_written() {
    let readme = repo_file("README.md");
    for (name, value) in DEMO_SECRETS {
        assert!(
            readme.contains(&format!("{name}={value}")),
            "the README no longer exports {name}={value}"
        );
    }
    let lookup = |name: &str| {
        DEMO_SECRETS
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
    };
    let app = TestApp::spawn_with_env(&repo_file("examples/providers.yaml"), &lookup).await;

    let lines: Vec<&str> = readme
        .lines()
        .filter(|line| line.starts_with("hookrunner send http://127.0.0.1:9001/"))
        .collect();
    assert_eq!(lines.len(), 7, "one example per provider section");
    let binary_dir = std::path::Path::new(env!("CARGO_BIN_EXE_hookrunner"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        binary_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for line in lines {
        let line_here = line.replace("http://127.0.0.1:9001", &app.address);
        let output = tokio::process::Command::new("/bin/sh")
            .args(["-c", &line_here])
            .env("PATH", &path)
            .envs(DEMO_SECRETS.iter().copied())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{line}\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.starts_with("HTTP/1.1 200 OK"), "{line}\n{stdout}");
        assert!(stdout.contains("\"exit_code\":0"), "{line}\n{stdout}");
    }
}

#[tokio::test]
async fn the_readmes_check_example_passes_as_written() {
    let readme = repo_file("README.md");
    let line = readme
        .lines()
        .find(|line| line.ends_with("cargo run -- check --config hooks.example.yaml"))
        .expect("the README shows `check` on the example");
    // The built binary stands in for `cargo run --`; the line's own variables are kept.
    let line = line.replace("cargo run --", env!("CARGO_BIN_EXE_hookrunner"));
    let output = tokio::process::Command::new("/bin/sh")
        .args(["-c", &line])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("GITHUB_WEBHOOK_SECRET")
        .env_remove("GITLAB_WEBHOOK_TOKEN")
        .env_remove("DEMO_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{line}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ok, 3 hooks"), "{stdout}");
}
