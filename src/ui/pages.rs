//! The pages as HTML, from plain data: no request, no store. maud escapes every value put into
//! the markup, so job output, hook descriptions and ids are shown as text, never as HTML.

use maud::{html, Markup, DOCTYPE};

use super::assets::{JAVASCRIPT, STYLESHEET};

/// One hook on the overview.
pub struct HookRow {
    pub id: String,
    pub description: Option<String>,
    pub provider: &'static str,
    pub mode: String,
    pub concurrency: String,
    /// Its newest jobs, newest first: id and status.
    pub recent: Vec<(String, &'static str)>,
}

/// One instance sharing the store, on the overview when there are several.
pub struct InstanceRow {
    pub name: String,
    pub version: String,
    pub started_at: String,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_secs: i64,
    pub running: usize,
}

/// One job in the list.
pub struct JobRow {
    pub id: String,
    pub hook: String,
    pub status: &'static str,
    pub created_at: String,
    pub duration_ms: Option<u64>,
}

/// The jobs list with its filters and the link to the next page.
pub struct JobsPage {
    pub rows: Vec<JobRow>,
    pub hooks: Vec<String>,
    pub statuses: Vec<&'static str>,
    pub hook: Option<String>,
    pub status: Option<String>,
    pub next: Option<String>,
}

/// One job: its fields as shown by the API, its notifications and the end of its log.
pub struct JobPage {
    pub id: String,
    pub fields: Vec<(String, String)>,
    pub notifications: Vec<Vec<(String, String)>>,
    pub log: String,
    /// Bytes of the log before `log`, not shown.
    pub log_omitted: u64,
    /// While the job runs: the byte offset of the log that `log` reaches, from which the page's
    /// script follows the rest.
    pub log_follow_from: Option<u64>,
    pub can_cancel: bool,
    /// It waits for approval: the page offers Approve and Reject.
    pub awaiting: bool,
    /// The command's arguments as they were rendered (a shell command as `/bin/sh -c <text>`)
    /// and its directory; `None` for a `wait` or `stream` job, whose command is not kept.
    pub command: Option<(Vec<String>, String)>,
}

/// The frame around every page; `csrf` is `None` on the sign-in page (no session yet).
fn layout(title: &str, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hookrunner" }
                link rel="stylesheet" href={ "/ui/assets/" (STYLESHEET.name) };
                script src={ "/ui/assets/" (JAVASCRIPT.name) } defer {}
            }
            body {
                header {
                    span.brand { "hookrunner" }
                    @if let Some(csrf) = csrf {
                        a href="/ui/" { "Hooks" }
                        a href="/ui/jobs" { "Jobs" }
                        form.inline method="post" action="/ui/sign-out" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The start of a job id, enough to tell the jobs of a list apart (the link and its title
/// carry the whole).
fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// An RFC 3339 time shown as `2026-12-02 14:31:22` (UTC), the whole in the element's `datetime`.
fn when(rfc3339: &str) -> Markup {
    let shown = rfc3339.get(..19).unwrap_or(rfc3339).replace('T', " ");
    html! { time datetime=(rfc3339) title=(rfc3339) { (shown) } }
}

fn status(status: &str) -> Markup {
    html! { span class={ "status status-" (status) } { (status) } }
}

pub fn sign_in(wrong_token: bool) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            form.signin method="post" action="/ui/sign-in" {
                h1 { "Sign in" }
                @if wrong_token {
                    p.error role="alert" { "That is not the admin token." }
                }
                label {
                    "Admin token"
                    input type="password" name="token" autocomplete="current-password" required autofocus;
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// The hooks, and the instances when there is more than one.
pub fn hooks(rows: &[HookRow], instances: &[InstanceRow], csrf: &str) -> Markup {
    layout(
        "Hooks",
        Some(csrf),
        html! {
            h1 { "Hooks" }
            @if rows.is_empty() {
                p.muted { "No hooks are configured." }
            }
            div.table { table #hooks .rows {
                thead { tr { th { "Hook" } th { "Provider" } th { "Mode" } th { "Concurrency" } th { "Last jobs" } } }
                tbody {
                    @for row in rows {
                        tr {
                            td data-label="Hook" {
                                a href={ "/ui/jobs?hook=" (urlencode(&row.id)) } { code { (row.id) } }
                                @if let Some(description) = &row.description {
                                    br; span.muted { (description) }
                                }
                            }
                            td data-label="Provider" { (row.provider) }
                            td data-label="Mode" { (row.mode) }
                            td data-label="Concurrency" { (row.concurrency) }
                            td data-label="Last jobs" {
                                @for (id, state) in &row.recent {
                                    a href={ "/ui/jobs/" (urlencode(id)) } title=(id) { (status(state)) } " "
                                }
                                @if row.recent.is_empty() { span.muted { "none yet" } }
                            }
                        }
                    }
                }
            } }
            @if instances.len() > 1 {
                h2 { "Instances" }
                div.table { table #instances .rows {
                    thead { tr { th { "Instance" } th { "Version" } th { "Started" } th { "Last heartbeat" } th { "Running jobs" } } }
                    tbody {
                        @for instance in instances {
                            tr {
                                td data-label="Instance" { code { (instance.name) } }
                                td data-label="Version" { (instance.version) }
                                td data-label="Started" { (when(&instance.started_at)) }
                                td data-label="Heartbeat" { (instance.heartbeat_age_secs) " s ago" }
                                td data-label="Running" { (instance.running) }
                            }
                        }
                    }
                } }
            }
        },
    )
}

pub fn jobs(page: &JobsPage, csrf: &str) -> Markup {
    let selected = |chosen: &Option<String>, value: &str| chosen.as_deref() == Some(value);
    layout(
        "Jobs",
        Some(csrf),
        html! {
            h1 { "Jobs" }
            form.filters method="get" action="/ui/jobs" {
                label { "Hook" select name="hook" {
                    option value="" { "any" }
                    @for hook in &page.hooks {
                        option value=(hook) selected[selected(&page.hook, hook)] { (hook) }
                    }
                } }
                label { "Status" select name="status" {
                    option value="" { "any" }
                    @for name in &page.statuses {
                        option value=(name) selected[selected(&page.status, name)] { (name) }
                    }
                } }
                button type="submit" { "Filter" }
            }
            @if page.rows.is_empty() { p.muted { "No jobs." } }
            div.table { table #jobs .rows {
                thead { tr { th { "Job" } th { "Hook" } th { "Status" } th { "Created" } th { "Duration" } } }
                tbody {
                    @for row in &page.rows {
                        tr data-status=(row.status) {
                            td data-label="Job" { a href={ "/ui/jobs/" (urlencode(&row.id)) } title=(row.id) { code { (short_id(&row.id)) } } }
                            td data-label="Hook" { (row.hook) }
                            td data-label="Status" { (status(row.status)) }
                            td data-label="Created" { (when(&row.created_at)) }
                            td data-label="Duration" { @if let Some(ms) = row.duration_ms { (ms) " ms" } }
                        }
                    }
                }
            } }
            @if let Some(next) = &page.next {
                p { a href=(next_link(page, next)) { "Older jobs →" } }
            }
        },
    )
}

pub fn job(page: &JobPage, csrf: &str) -> Markup {
    layout(
        "Job",
        Some(csrf),
        html! {
            h1 { "Job " code { (page.id) } }
            div.actions {
                @if page.awaiting {
                    (action(&page.id, "approve", csrf, "Run this job now?", "Approve", "primary"))
                    (action(&page.id, "reject", csrf, "Reject this job? It will never run.", "Reject", "danger"))
                }
                @if page.can_cancel {
                    (action(&page.id, "cancel", csrf, "Cancel this job?", "Cancel job", "danger"))
                }
                (action(&page.id, "rerun", csrf, "Run this job's command again, as a new job?", "Re-run", ""))
            }
            div.table { table { tbody {
                @for (name, value) in &page.fields {
                    tr { th { (name) } td { @if name == "status" { (status(value)) } @else { (value) } } }
                }
            } } }
            h2 { "Command" }
            @match &page.command {
                Some((argv, workdir)) => {
                    ol.argv { @for argument in argv { li { code { (argument) } } } }
                    p.muted { "in " code { (workdir) } }
                }
                None => p.muted { "Not kept: the command of a job answered in `wait` or `stream` mode is not written to the store." },
            }
            h2 { "Notifications" }
            @if page.notifications.is_empty() { p.muted { "None." } }
            @for notification in &page.notifications {
                div.table { table { tbody {
                    @for (name, value) in notification { tr { th { (name) } td { (value) } } }
                } } }
            }
            h2 { "Log" }
            @if page.log_omitted > 0 {
                p { "The first " (page.log_omitted) " bytes of the log are not shown; "
                    a href={ "/jobs/" (page.id) "/log" } { "the whole log" } " is plain text." }
            }
            @if let Some(offset) = page.log_follow_from {
                pre #log .log data-follow={ "/ui/jobs/" (urlencode(&page.id)) "/log/events?offset=" (offset) } { (page.log) }
            } @else {
                pre #log .log { (page.log) }
            }
        },
    )
}

/// A button that posts `/ui/jobs/{id}/{verb}` with the CSRF token, once `question` is confirmed.
fn action(id: &str, verb: &str, csrf: &str, question: &str, label: &str, class: &str) -> Markup {
    html! {
        form method="post" action={ "/ui/jobs/" (urlencode(id)) "/" (verb) } data-confirm=(question) {
            input type="hidden" name="csrf" value=(csrf);
            button class=[(!class.is_empty()).then_some(class)] type="submit" { (label) }
        }
    }
}

/// A short page for an answer that is not a page of its own (a 403 or a 404).
pub fn message(title: &str, text: &str) -> Markup {
    layout(
        title,
        None,
        html! { h1 { (title) } p { (text) } p { a href="/ui/" { "Back to the hooks" } } },
    )
}

fn next_link(page: &JobsPage, next: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(hook) = &page.hook {
        query.append_pair("hook", hook);
    }
    if let Some(status) = &page.status {
        query.append_pair("status", status);
    }
    query.append_pair("before", next);
    format!("/ui/jobs?{}", query.finish())
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
