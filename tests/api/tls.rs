//! HTTPS without a proxy: `tls:` listeners serving `server.tls`'s certificate over HTTP/1.1 and
//! HTTP/2, a reload (SIGHUP or `--watch`) that serves a new certificate to new connections while
//! open ones carry on, a bad new pair refused, and `check`'s refusals of pairs that cannot serve.
//! The certificates are made by `openssl` in each test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::helpers::{check_file, free_port, github_signature, Binary, TestApp};

const SECRET: &str = "tls-secret";

/// A test CA and the leaf certificates it issues, as PEM files in a temp dir.
struct Pki {
    dir: TempDir,
}

impl Pki {
    /// Makes the CA (`ca.pem`); fails loudly when `openssl` is missing.
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(
            pki.path("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=hookrunner test CA",
            "-days",
            "3",
        ]);
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("`openssl` must be installed: the TLS tests make their certificates with it");
        assert!(
            output.status.success(),
            "openssl {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Issues `{name}.pem` for localhost and 127.0.0.1 with its key `{name}.key`, the serial
    /// `serial` (hex) and `days` of validity; a negative `days` makes one that has expired.
    fn leaf(&self, name: &str, serial: &str, days: i32) {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &format!("0x{serial}"),
            "-days",
            &days.to_string(),
            "-extfile",
            "leaf.ext",
            "-out",
            &pem,
        ]);
    }

    /// A client that trusts only this CA and keeps each connection's TLS details.
    fn client(&self) -> reqwest::ClientBuilder {
        let ca = std::fs::read(self.path("ca.pem")).unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .tls_info(true)
            .redirect(reqwest::redirect::Policy::none())
    }

    /// Copies `{name}.pem` and `{name}.key` to `cert` and `key`, each file replaced at once.
    fn install(&self, name: &str, cert: &Path, key: &Path) {
        for (from, to) in [(format!("{name}.key"), key), (format!("{name}.pem"), cert)] {
            let staged = to.with_extension("new");
            std::fs::copy(self.path(&from), &staged).unwrap();
            std::fs::rename(&staged, to).unwrap();
        }
    }
}

/// The serial number (hex) of the certificate the server showed on the answer's connection.
fn serial_of(response: &reqwest::Response) -> String {
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("TLS details on the answer");
    let der = info.peer_certificate().expect("the server's certificate");
    let (_, certificate) = x509_parser::parse_x509_certificate(der).unwrap();
    hex::encode(certificate.raw_serial())
}

fn config(cert: &Path, key: &Path, extra_server: &str) -> String {
    format!(
        r#"
server:
  tls: {{cert: "{cert}", key: "{key}"}}
{extra_server}
hooks:
  - id: deploy
    signature:
      github: {{secret: "{SECRET}"}}
    run:
      shell: 'echo deployed'
  - id: slow
    signature: none
    run:
      shell: 'echo started; while [ ! -e "$GO" ]; do sleep 0.05; done; echo finished'
      env: {{GO: "{go}"}}
    response: {{mode: async}}
  - id: tail
    signature: none
    run:
      shell: 'echo started; while [ ! -e "$GO" ]; do sleep 0.05; done; echo finished'
      env: {{GO: "{go}"}}
    response: {{mode: stream}}
"#,
        cert = cert.display(),
        key = key.display(),
        go = cert.with_file_name("go").display(),
    )
}

/// A server in this process on `tls:127.0.0.1:0`, serving `leaf` (serial 1001); its `https://`
/// address.
async fn spawn(pki: &Pki, extra_server: &str) -> (TestApp, String) {
    pki.leaf("leaf", "1001", 2);
    let config = config(&pki.path("leaf.pem"), &pki.path("leaf.key"), extra_server);
    let app = TestApp::spawn_listening(&config, &["tls:127.0.0.1:0"]).await;
    let address = app.address.replace("http://", "https://");
    (app, address)
}

#[tokio::test]
async fn a_signed_trigger_runs_over_tls_and_alpn_picks_http2_or_http1() {
    let pki = Pki::new();
    let (_app, address) = spawn(&pki, "").await;
    let body = r#"{"ref": "refs/heads/main"}"#;
    let signature = github_signature(SECRET, body.as_bytes());
    for (client, version) in [
        (pki.client().build().unwrap(), reqwest::Version::HTTP_2),
        (
            pki.client().http1_only().build().unwrap(),
            reqwest::Version::HTTP_11,
        ),
    ] {
        let response = client
            .post(format!("{address}/hooks/deploy"))
            .header("X-Hub-Signature-256", &signature)
            .body(body)
            .send()
            .await
            .expect("the server answers over TLS");
        assert_eq!(response.version(), version);
        assert_eq!(serial_of(&response), "1001");
        assert_eq!(response.status(), 200);
        let job: serde_json::Value = response.json().await.unwrap();
        assert_eq!(job["exit_code"], 0, "{job}");

        let refused = client
            .post(format!("{address}/hooks/deploy"))
            .header(
                "X-Hub-Signature-256",
                github_signature("wrong", body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
    }

    // Plain HTTP on the TLS port gets no answer a client could mistake for one.
    let plain = reqwest::Client::new()
        .get(address.replace("https://", "http://") + "/healthz")
        .send()
        .await;
    assert!(plain.map_or(true, |answer| !answer.status().is_success()));

    let metrics = metrics_over_tls(&pki, &address).await;
    let line = metrics
        .lines()
        .find(|line| line.starts_with("hookrunner_tls_certificate_expiry_seconds "))
        .unwrap_or_else(|| panic!("no expiry gauge in:\n{metrics}"));
    let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    // Issued for 2 days a moment ago.
    assert!(
        (2.0 * 86_400.0 - 120.0..=2.0 * 86_400.0).contains(&seconds),
        "{line}"
    );
}

/// Reads `response` until its text holds `text`; fails after 10 s without it.
async fn read_until(response: &mut reqwest::Response, received: &mut String, text: &str) {
    while !received.contains(text) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {text:?} within 10 s; so far: {received:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended before {text:?}: {received:?}"));
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn a_followed_log_and_server_sent_events_stream_over_http2_as_they_are_written() {
    let pki = Pki::new();
    let (_app, address) = spawn(&pki, "").await;
    let client = pki.client().build().unwrap();
    let job_id = trigger_slow(&client, &address).await;
    let mut follow = client
        .get(format!("{address}/jobs/{job_id}/log?follow=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(follow.version(), reqwest::Version::HTTP_2);
    let mut events = client
        .post(format!("{address}/hooks/tail"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(events.version(), reqwest::Version::HTTP_2);
    assert_eq!(events.headers()["content-type"], "text/event-stream");

    // Both commands wait for `go`: what they wrote first arrives while they still run.
    let (mut followed, mut received) = (String::new(), String::new());
    read_until(&mut follow, &mut followed, "started\n").await;
    read_until(&mut events, &mut received, "event: stdout\ndata: started\n").await;
    assert!(!followed.contains("finished") && !received.contains("finished"));

    std::fs::write(pki.path("go"), "").unwrap();
    read_until(&mut events, &mut received, "event: exit").await;
    assert!(
        received.contains("event: stdout\ndata: finished\n"),
        "{received}"
    );
    let rest = tokio::time::timeout(Duration::from_secs(10), follow.text())
        .await
        .expect("the follow ends with the job")
        .unwrap();
    assert_eq!(followed + &rest, "started\nfinished\n");
}

#[tokio::test]
async fn the_page_takes_a_same_origin_sign_in_over_http2_and_refuses_another_origin() {
    let pki = Pki::new();
    let (_app, address) = spawn(&pki, r#"  admin_token: "admin-s3cret""#).await;
    let client = pki.client().build().unwrap();
    let sign_in = |origin: String| {
        client
            .post(format!("{address}/ui/sign-in"))
            .header("Origin", origin)
            .form(&[("token", "admin-s3cret")])
            .send()
    };
    // Over HTTP/2 no `Host` is sent: the page reads the request's `:authority`.
    let here = sign_in(address.clone()).await.unwrap();
    assert_eq!(here.version(), reqwest::Version::HTTP_2);
    assert_eq!(here.status(), 303);
    assert!(here.headers().get("set-cookie").is_some());
    let elsewhere = sign_in("https://evil.example".into()).await.unwrap();
    assert_eq!(elsewhere.status(), 403);
    let other_port = sign_in(format!("https://127.0.0.1:{}", free_port()))
        .await
        .unwrap();
    assert_eq!(other_port.status(), 403);
}

/// The real binary serving `config` on `tls:127.0.0.1:PORT` with `extra` arguments, once it
/// answers over TLS.
async fn serve_tls(pki: &Pki, config: &Path, extra: &[&str]) -> (Binary, String) {
    let port = free_port();
    let listen = format!("tls:127.0.0.1:{port}");
    let mut args = vec![
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    let binary = Binary::spawn(&args, config.parent().unwrap(), |_| {});
    let address = format!("https://127.0.0.1:{port}");
    let client = pki.client().build().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match client.get(format!("{address}/readyz")).send().await {
            Ok(answer) if answer.status() == 200 => return (binary, address),
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server does not answer over TLS:\n{}",
            binary.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The serial a new connection is shown.
async fn served_serial(pki: &Pki, address: &str) -> String {
    try_served_serial(pki, address)
        .await
        .expect("the server answers over TLS")
}

/// The serial a new connection is shown, `None` while nothing answers over TLS.
async fn try_served_serial(pki: &Pki, address: &str) -> Option<String> {
    let client = pki.client().build().unwrap();
    let response = client.get(format!("{address}/healthz")).send().await.ok()?;
    Some(serial_of(&response))
}

/// Polls until new connections are shown `serial`.
async fn wait_for_serial(pki: &Pki, address: &str, serial: &str, server: &Binary) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while try_served_serial(pki, address).await.as_deref() != Some(serial) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new connections never got serial {serial}:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the server's log holds `text`.
async fn wait_for_log(server: &Binary, text: &str) {
    crate::helpers::eventually_logged(server, text, |log| log.contains(text)).await;
}

#[tokio::test]
async fn sighup_serves_a_new_certificate_to_new_connections_while_open_ones_carry_on() {
    let pki = Pki::new();
    pki.leaf("first", "1001", 2);
    pki.leaf("second", "1002", 2);
    let site = tempfile::tempdir().unwrap();
    let (cert, key) = (site.path().join("cert.pem"), site.path().join("key.pem"));
    pki.install("first", &cert, &key);
    let file = site.path().join("hooks.yaml");
    std::fs::write(&file, config(&cert, &key, "")).unwrap();
    let (server, address) = serve_tls(&pki, &file, &[]).await;
    assert_eq!(served_serial(&pki, &address).await, "1001");

    // A job's log, followed on a connection opened before the reload.
    let client = pki.client().build().unwrap();
    let job_id = trigger_slow(&client, &address).await;
    let follow = client
        .get(format!("{address}/jobs/{job_id}/log?follow=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(serial_of(&follow), "1001");

    pki.install("second", &cert, &key);
    server.signal(Signal::SIGHUP);
    wait_for_serial(&pki, &address, "1002", &server).await;
    wait_for_log(&server, "TLS certificate replaced").await;

    std::fs::write(cert.with_file_name("go"), "").unwrap();
    let followed = tokio::time::timeout(Duration::from_secs(10), follow.text())
        .await
        .expect("the follow ends with the job")
        .expect("the connection opened before the reload was not dropped");
    assert_eq!(followed, "started\nfinished\n");

    // A key that is not the certificate's: refused, named, and the served pair stays.
    std::fs::copy(pki.path("first.key"), &key).unwrap();
    server.signal(Signal::SIGHUP);
    wait_for_log(&server, "does not belong to the certificate").await;
    assert!(server.log().contains(&key.display().to_string()));
    assert_eq!(served_serial(&pki, &address).await, "1002");
}

#[tokio::test]
async fn watch_takes_a_new_certificate_when_its_files_change_and_keeps_the_old_when_it_expired() {
    let pki = Pki::new();
    pki.leaf("first", "1001", 2);
    pki.leaf("second", "1002", 2);
    pki.leaf("expired", "1003", -1);
    let site = tempfile::tempdir().unwrap();
    // The certificate lives in a folder of its own, away from the config file.
    let tls_dir = site.path().join("tls");
    std::fs::create_dir(&tls_dir).unwrap();
    let (cert, key) = (tls_dir.join("fullchain.pem"), tls_dir.join("privkey.pem"));
    pki.install("first", &cert, &key);
    let file = site.path().join("hooks.yaml");
    std::fs::write(&file, config(&cert, &key, "")).unwrap();
    let (server, address) = serve_tls(&pki, &file, &["--watch"]).await;
    assert_eq!(served_serial(&pki, &address).await, "1001");

    pki.install("second", &cert, &key);
    wait_for_serial(&pki, &address, "1002", &server).await;

    pki.install("expired", &cert, &key);
    wait_for_log(&server, "expired on").await;
    assert!(server.log().contains(&cert.display().to_string()));
    assert_eq!(served_serial(&pki, &address).await, "1002");
}

#[test]
fn check_refuses_a_tls_listener_without_a_certificate_and_pairs_that_cannot_serve() {
    let pki = Pki::new();
    pki.leaf("good", "1001", 2);
    pki.leaf("other", "1002", 2);
    pki.leaf("expired", "1003", -1);
    let path = |name: &str| pki.path(name).display().to_string();
    let tls = |cert: &str, key: &str| {
        format!("  listen: [\"tls:127.0.0.1:8443\"]\n  tls: {{cert: \"{cert}\", key: \"{key}\"}}\n")
    };
    let cases = [
        (
            "a tls: listener without server.tls",
            "  listen: [\"127.0.0.1:8080\", \"tls:127.0.0.1:8443\"]\n".to_string(),
            "`tls:127.0.0.1:8443` needs `server.tls`".to_string(),
        ),
        (
            "a tls: unix socket",
            format!(
                "  listen: [\"tls:unix:/tmp/x.sock\"]\n  tls: {{cert: \"{}\", key: \"{}\"}}\n",
                path("good.pem"),
                path("good.key")
            ),
            "TLS is for TCP listeners".to_string(),
        ),
        (
            "an unreadable certificate",
            tls(&path("missing.pem"), &path("good.key")),
            format!("hooks.yaml:3:15: cannot read `{}`", path("missing.pem")),
        ),
        (
            "an unreadable key",
            tls(&path("good.pem"), &path("missing.key")),
            format!("cannot read `{}`", path("missing.key")),
        ),
        (
            "a key that is not the certificate's",
            tls(&path("good.pem"), &path("other.key")),
            format!(
                "the key in `{}` does not belong to the certificate in `{}`",
                path("other.key"),
                path("good.pem")
            ),
        ),
        (
            "a key where the certificate should be",
            tls(&path("good.key"), &path("good.key")),
            format!("`{}` holds no PEM certificate", path("good.key")),
        ),
        (
            "a certificate where the key should be",
            tls(&path("good.pem"), &path("good.pem")),
            format!("`{}` holds no PEM private key", path("good.pem")),
        ),
    ];
    for (case, server, expected) in cases {
        let file = pki.path("hooks.yaml");
        std::fs::write(
            &file,
            format!("server:\n{server}hooks:\n  - id: a\n    signature: none\n    run: {{shell: 'true'}}\n"),
        )
        .unwrap();
        let (code, _, stderr) = check_file(&file);
        assert_eq!(code, 1, "{case}: {stderr}");
        assert!(
            stderr.contains(&expected),
            "{case}: expected {expected:?} in:\n{stderr}"
        );
    }

    let file = pki.path("hooks.yaml");
    let valid = format!(
        "  listen: [\"tls:127.0.0.1:8443\"]\n  tls: {{cert: \"{}\", key: \"{}\", min_version: \"1.3\"}}\n",
        path("good.pem"),
        path("good.key")
    );
    std::fs::write(
        &file,
        format!(
            "server:\n{valid}hooks:\n  - id: a\n    signature: none\n    run: {{shell: 'true'}}\n"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = check_file(&file);
    assert_eq!(code, 0, "{stdout}{stderr}");

    // An expired certificate, or a key every user can read, is a warning: refusing the file
    // would stop every hook over a renewal that failed.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path("expired.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        &file,
        format!(
            "server:\n{}hooks:\n  - id: a\n    signature: none\n    run: {{shell: 'true'}}\n",
            tls(&path("expired.pem"), &path("expired.key"))
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = check_file(&file);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for expected in [
        format!("the certificate in `{}` expired on", path("expired.pem")),
        format!(
            "the private key `{}` can be read by every user",
            path("expired.key")
        ),
    ] {
        assert!(
            stderr.contains(&expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_takes_either_a_pair_or_acme_and_points_at_what_is_wrong_in_acme() {
    let pki = Pki::new();
    pki.leaf("good", "1001", 2);
    let path = |name: &str| pki.path(name).display().to_string();
    let acme = |settings: &str| {
        format!("  listen: [\"tls:127.0.0.1:8443\"]\n  tls:\n    acme: {{{settings}}}\n")
    };
    let cases = [
        (
            "both acme and a pair",
            format!(
                "  listen: [\"tls:127.0.0.1:8443\"]\n  tls:\n    cert: \"{}\"\n    key: \"{}\"\n    acme: {{domains: [hooks.example.com]}}\n",
                path("good.pem"),
                path("good.key")
            ),
            "hooks.yaml:4:5: `tls` takes either `cert` and `key` or `acme`, not both: remove `cert`"
                .to_string(),
        ),
        (
            "neither acme nor a pair",
            "  listen: [\"tls:127.0.0.1:8443\"]\n  tls: {min_version: \"1.2\"}\n".to_string(),
            "(or, instead of `cert` and `key`, `acme` for certificates from an ACME CA)".to_string(),
        ),
        (
            "acme without domains",
            acme("email: ops@example.com"),
            "`acme` needs `domains`".to_string(),
        ),
        (
            "a wildcard domain",
            acme("domains: [hooks.example.com, \"*.example.com\"]"),
            "`*.example.com`: a wildcard name needs the dns-01 challenge".to_string(),
        ),
        (
            "an IP address as a domain",
            acme("domains: [127.0.0.1]"),
            "`127.0.0.1` is an IP address".to_string(),
        ),
        (
            "a directory that is not https",
            acme("domains: [hooks.example.com], directory: \"http://ca.example/dir\""),
            "`http://ca.example/dir` is not an `https://` URL".to_string(),
        ),
        (
            "an email that is not one",
            acme("domains: [hooks.example.com], email: ops"),
            "`ops` is not an email address".to_string(),
        ),
        (
            "unreadable ca_roots",
            acme(&format!("domains: [hooks.example.com], ca_roots: \"{}\"", path("missing.pem"))),
            format!("cannot read `{}`", path("missing.pem")),
        ),
        (
            "ca_roots holding a key",
            acme(&format!("domains: [hooks.example.com], ca_roots: \"{}\"", path("good.key"))),
            format!("`{}` holds no PEM certificate", path("good.key")),
        ),
        (
            "an unknown acme key",
            acme("domains: [hooks.example.com], emial: ops@example.com"),
            "did you mean `email`".to_string(),
        ),
    ];
    let file = pki.path("hooks.yaml");
    let write = |server: &str| {
        std::fs::write(
            &file,
            format!("server:\n{server}hooks:\n  - id: a\n    signature: none\n    run: {{shell: 'true'}}\n"),
        )
        .unwrap();
    };
    for (case, server, expected) in cases {
        write(&server);
        let (code, _, stderr) = check_file(&file);
        assert_eq!(code, 1, "{case}: {stderr}");
        assert!(
            stderr.contains(&expected),
            "{case}: expected {expected:?} in:\n{stderr}"
        );
    }

    write(&acme(&format!(
        "domains: [hooks.example.com, www.example.com], email: ops@example.com, directory: \"https://localhost:14000/dir\", ca_roots: \"{}\"",
        path("ca.pem")
    )));
    let (code, stdout, stderr) = check_file(&file);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");

    // The ACME client trusts one root: a file of several is taken, with a warning.
    let two = pki.path("two.pem");
    let both =
        [path("ca.pem"), path("good.pem")].map(|file| std::fs::read_to_string(file).unwrap());
    std::fs::write(&two, both.concat()).unwrap();
    write(&acme(&format!(
        "domains: [hooks.example.com], ca_roots: \"{}\"",
        two.display()
    )));
    let (code, stdout, stderr) = check_file(&file);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("holds 2 certificates; only the first is trusted"),
        "{stdout}{stderr}"
    );
}

#[tokio::test]
async fn a_socket_systemd_names_tls_speaks_tls() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::AsRawFd as _;
    let pki = Pki::new();
    pki.leaf("leaf", "1001", 2);
    let site = tempfile::tempdir().unwrap();
    let file = site.path().join("hooks.yaml");
    std::fs::write(
        &file,
        config(&pki.path("leaf.pem"), &pki.path("leaf.key"), ""),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = listener.as_raw_fd();
    // The child inherits the socket, as it would from systemd with `FileDescriptorName=tls`.
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let server = Binary::spawn(
        &[
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:1",
        ],
        site.path(),
        |command| {
            command
                .env("LISTEN_FDS", "1")
                .env("LISTEN_FDS_FIRST_FD", fd.to_string())
                .env("LISTEN_FDNAMES", "tls");
        },
    );
    drop(listener);
    wait_for_serial(&pki, &format!("https://127.0.0.1:{port}"), "1001", &server).await;
}

#[tokio::test]
async fn min_version_1_3_refuses_a_client_that_speaks_only_tls_1_2() {
    let pki = Pki::new();
    let (_default_app, default_address) = spawn(&pki, "").await;
    let config = config(&pki.path("leaf.pem"), &pki.path("leaf.key"), "")
        .replace("key: \"", "min_version: \"1.3\", key: \"");
    let strict_app = TestApp::spawn_listening(&config, &["tls:127.0.0.1:0"]).await;
    let strict_address = strict_app.address.replace("http://", "https://");
    let tls_1_2 = pki
        .client()
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let status = |client: &reqwest::Client, address: &str| {
        let request = client.get(format!("{address}/healthz")).send();
        async move { request.await.map(|answer| answer.status().as_u16()) }
    };
    assert_eq!(status(&tls_1_2, &default_address).await.unwrap(), 200);
    assert!(status(&tls_1_2, &strict_address).await.is_err());
    let tls_1_3 = pki.client().build().unwrap();
    assert_eq!(status(&tls_1_3, &strict_address).await.unwrap(), 200);
}

/// A `server.tls.acme` config for `localhost` whose CA (`directory`) does not answer, with its
/// state in `state`.
fn unreachable_acme_config(pki: &Pki, state: &Path) -> PathBuf {
    let config = pki.path("hooks.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  state_dir: \"{}\"\n  tls:\n    acme: {{domains: [localhost], directory: \"https://127.0.0.1:{}/dir\", ca_roots: \"{}\"}}\nhooks:\n  - id: a\n    signature: none\n    run: {{shell: 'true'}}\n",
            state.display(),
            free_port(),
            pki.path("ca.pem").display()
        ),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn with_acme_and_no_certificate_yet_the_listener_waits_for_the_ca_and_refuses_clients() {
    let pki = Pki::new();
    let config = unreachable_acme_config(&pki, &pki.path("state"));
    let (tls_port, plain_port) = (free_port(), free_port());
    let (tls, plain) = (
        format!("tls:127.0.0.1:{tls_port}"),
        format!("127.0.0.1:{plain_port}"),
    );
    let server = Binary::spawn(
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &tls,
            "--listen",
            &plain,
        ],
        &pki.path(""),
        |_| {},
    );
    wait_for_log(&server, "ACME order failed").await;
    assert!(server.log().contains("retry_in"), "{}", server.log());

    // The listener is up (the CA validates through it), but has no certificate for a client.
    assert!(std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok());
    let client = pki.client().build().unwrap();
    let refused = client
        .get(format!("https://127.0.0.1:{tls_port}/healthz"))
        .send()
        .await;
    assert!(refused.is_err(), "a client got {refused:?}");
    let metrics = reqwest::get(format!("http://{plain}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("hookrunner_tls_certificate_expiry_seconds "),
        "no certificate, no expiry:\n{metrics}"
    );
}

#[tokio::test]
async fn with_acme_a_kept_certificate_for_the_domains_serves_at_once() {
    let pki = Pki::new();
    pki.leaf("kept", "2001", 30);
    let state = pki.path("state");
    std::fs::create_dir_all(state.join("acme")).unwrap();
    pki.install(
        "kept",
        &state.join("acme/cert.pem"),
        &state.join("acme/key.pem"),
    );
    let config = unreachable_acme_config(&pki, &state);
    let (server, address) = serve_tls(&pki, &config, &[]).await;
    assert_eq!(served_serial(&pki, &address).await, "2001");
    assert!(
        server
            .log()
            .contains("serving TLS with the kept ACME certificate"),
        "{}",
        server.log()
    );
    let metrics = metrics_over_tls(&pki, &address).await;
    assert!(
        metrics.contains("hookrunner_tls_certificate_expiry_seconds 2"),
        "30 days is 2592000 s or just under:\n{metrics}"
    );
}

/// `/metrics` over TLS, as a client trusting `pki`'s CA reads it.
async fn metrics_over_tls(pki: &Pki, address: &str) -> String {
    let url = format!("{address}/metrics");
    let answer = pki.client().build().unwrap().get(url).send().await.unwrap();
    answer.text().await.unwrap()
}

/// Triggers the `slow` hook with `client`; returns the new job's id.
async fn trigger_slow(client: &reqwest::Client, address: &str) -> String {
    let answer = client
        .post(format!("{address}/hooks/slow"))
        .send()
        .await
        .unwrap();
    let accepted: serde_json::Value = answer.json().await.unwrap();
    accepted["job_id"].as_str().expect("a job id").to_string()
}
