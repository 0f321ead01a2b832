//! An empty body is no payload: every `payload` reference is missing, so fallbacks and
//! `exists: false` apply, and only a reference without a fallback is refused (422, named).

use crate::helpers::TestApp;

const HOOKS: &str = r#"
hooks:
  - id: fallback
    signature: none
    run:
      command: [printf, "%s/%s", '{{ payload.ref | "none" }}', '{{ payload | "no payload" }}']
    response: {include_output: true}
  - id: absent
    signature: none
    when: {payload.ref: {exists: false}}
    run: {command: ["true"]}
  - id: present
    signature: none
    when: {payload.ref: {exists: true}}
    run: {command: ["true"]}
  - id: needed
    signature: none
    run: {command: [printf, "%s", "{{ payload.ref }}"]}
"#;

#[tokio::test]
async fn an_empty_body_is_no_payload_and_fallbacks_apply() {
    let app = TestApp::spawn(HOOKS).await;
    for (content_type, body) in [
        ("application/json", ""),
        ("application/json", " \n"),
        ("application/x-www-form-urlencoded", ""),
        ("text/plain", ""),
    ] {
        let headers = [("Content-Type", content_type)];
        let case = format!("{content_type} {body:?}");
        let answer = app.post_hook("fallback", body, &headers).await;
        assert_eq!(
            (answer.status, answer.body["stdout"].as_str()),
            (200, Some("none/no payload")),
            "{case}: {:?}",
            answer.body
        );
        let answer = app.post_hook("absent", body, &headers).await;
        assert_eq!(
            answer.body["status"], "succeeded",
            "{case}: {:?}",
            answer.body
        );
        let answer = app.post_hook("present", body, &headers).await;
        assert_eq!(
            answer.body["status"], "skipped",
            "{case}: {:?}",
            answer.body
        );
        let answer = app.post_hook("needed", body, &headers).await;
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (422, Some("missing_value")),
            "{case}: {:?}",
            answer.body
        );
        assert!(
            answer.body["message"]
                .as_str()
                .is_some_and(|message| message.contains("`payload.ref`")),
            "{:?}",
            answer.body
        );
    }
    // A body that is there but broken is still a 400.
    let broken = app
        .post_hook(
            "fallback",
            "{not json",
            &[("Content-Type", "application/json")],
        )
        .await;
    assert_eq!(broken.status, 400, "{:?}", broken.body);
}
