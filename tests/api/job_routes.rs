//! The job and health routes' edges: a wrong method is a 405 that names the right one, and the
//! admin token's scheme is matched without regard to case.

use crate::helpers::TestApp;

const ADMIN: &str = r#"
server: {admin_token: "admin-s3cret"}
hooks:
  - id: quick
    signature: none
    run: {command: ["true"]}
    response: {mode: async}
"#;

#[tokio::test]
async fn a_wrong_method_on_a_job_or_health_route_is_405_with_allow() {
    let app = TestApp::spawn(ADMIN).await;
    let job = app.post_hook("quick", "", &[]).await.body["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = [("Authorization", "Bearer admin-s3cret")];
    let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);
    let cases = [
        (get.clone(), format!("/jobs/{job}/cancel"), "POST"),
        (reqwest::Method::PUT, format!("/jobs/{job}/cancel"), "POST"),
        (post.clone(), format!("/jobs/{job}"), "GET"),
        (reqwest::Method::DELETE, format!("/jobs/{job}"), "GET"),
        (post.clone(), format!("/jobs/{job}/log"), "GET"),
        (post.clone(), "/jobs".to_string(), "GET"),
        (post.clone(), "/healthz".to_string(), "GET"),
        (post.clone(), "/readyz".to_string(), "GET"),
        (reqwest::Method::PUT, "/metrics".to_string(), "GET"),
    ];
    for (method, path, allow) in cases {
        let answer = app.request(method.clone(), &path, "", &admin).await;
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (405, Some("method_not_allowed")),
            "{method} {path}: {:?}",
            answer.body
        );
        assert_eq!(answer.headers["allow"], allow, "{method} {path}");
        assert!(
            answer.body["message"]
                .as_str()
                .is_some_and(|message| message.contains(allow)),
            "{:?}",
            answer.body
        );
    }
    // The right methods still answer, and an unknown path is still a 404.
    assert_eq!(
        app.request(get.clone(), &format!("/jobs/{job}"), "", &[])
            .await
            .status,
        200
    );
    assert_eq!(app.request(get, "/jobs/a/b/c", "", &[]).await.status, 404);
}

#[tokio::test]
async fn the_bearer_scheme_of_the_admin_token_is_case_insensitive() {
    let app = TestApp::spawn(ADMIN).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let value = format!("{scheme} admin-s3cret");
        let answer = app
            .request(
                reqwest::Method::GET,
                "/jobs",
                "",
                &[("Authorization", &value)],
            )
            .await;
        assert_eq!(answer.status, 200, "{scheme}: {:?}", answer.body);
    }
    for refused in [
        "bearer admin-s3cre",
        "Basic admin-s3cret",
        "bearer",
        "bearer: admin-s3cret",
    ] {
        let answer = app
            .request(
                reqwest::Method::GET,
                "/jobs",
                "",
                &[("Authorization", refused)],
            )
            .await;
        assert_eq!(answer.status, 401, "{refused}: {:?}", answer.body);
    }
}
