//! The limits on plain data: allowances per client and per hook, the bound on tracked clients,
//! and reloads.

use std::path::Path;

use super::*;

fn config(server: &str, hook: &str) -> Config {
    let text = format!(
        "server: {{{server}}}\nhooks:\n  - id: deploy\n    signature: none\n    {hook}\n    run: {{command: [x]}}\n  - id: other\n    signature: none\n    run: {{command: [x]}}\n"
    );
    crate::config::load_str(&text, Path::new("/etc/hookrunner/hooks.yaml"), &|_| None)
        .unwrap_or_else(|errors| panic!("{}", errors.render()))
}

fn address(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

/// How many of `n` requests are taken.
fn taken(limits: &RateLimits, hook: &str, client: Option<IpAddr>, n: usize) -> usize {
    (0..n)
        .filter(|_| limits.check(hook, client).is_ok())
        .count()
}

#[test]
fn each_client_has_its_own_allowance_for_all_hooks_together() {
    let limits = RateLimits::new(&config("rate_limit: {per_ip: 1/h, burst: 3}", ""));
    let one = address("192.0.2.1");
    assert_eq!(taken(&limits, "deploy", one, 2), 2);
    assert_eq!(taken(&limits, "other", one, 5), 1, "all hooks share it");
    let refused = limits.check("deploy", one).unwrap_err();
    assert_eq!(refused.scope, Scope::Ip);
    assert!(refused.retry_after_seconds() > 3000, "{refused:?}");
    assert_eq!(taken(&limits, "deploy", address("192.0.2.2"), 5), 3);
    // Unknown addresses share one allowance of their own.
    assert_eq!(taken(&limits, "deploy", None, 5), 3);
    // An IPv6 client is its /64, and the IPv4-mapped form of an address is that address.
    assert_eq!(taken(&limits, "deploy", address("2001:db8::1"), 2), 2);
    assert_eq!(taken(&limits, "deploy", address("2001:db8::ffff:2"), 5), 1);
    assert_eq!(taken(&limits, "deploy", address("2001:db8:0:1::1"), 5), 3);
    assert_eq!(taken(&limits, "deploy", address("::ffff:192.0.2.1"), 5), 0);
}

#[test]
fn a_hooks_allowance_counts_everyone_and_only_that_hook() {
    let limits = RateLimits::new(&config("", "rate_limit: {per_hook: 1/h, burst: 2}"));
    assert!(limits.check("deploy", address("192.0.2.1")).is_ok());
    assert!(limits.check("deploy", None).is_ok());
    let refused = limits.check("deploy", address("192.0.2.3")).unwrap_err();
    assert_eq!(refused.scope, Scope::Hook);
    assert_eq!(taken(&limits, "other", None, 50), 50, "no limit of its own");
}

#[test]
fn a_request_the_clients_limit_refuses_takes_nothing_from_the_hooks() {
    let limits = RateLimits::new(&config(
        "rate_limit: {per_ip: 1/h, burst: 1}",
        "rate_limit: {per_hook: 1/h, burst: 2}",
    ));
    let flooder = address("192.0.2.1");
    assert_eq!(taken(&limits, "deploy", flooder, 100), 1);
    assert!(limits.check("deploy", address("192.0.2.2")).is_ok());
    let refused = limits.check("deploy", address("192.0.2.3")).unwrap_err();
    assert_eq!(refused.scope, Scope::Hook);
}

#[test]
fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
    let cases = [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (59_500, 60)];
    for (millis, seconds) in cases {
        let refused = Refused {
            scope: Scope::Ip,
            retry_after: Duration::from_millis(millis),
        };
        assert_eq!(refused.retry_after_seconds(), seconds, "{millis} ms");
    }
}

#[test]
fn a_reload_keeps_the_counts_of_unchanged_limits_and_starts_changed_ones_afresh() {
    let first = config(
        "rate_limit: {per_ip: 1/h, burst: 1}",
        "rate_limit: {per_hook: 1/h, burst: 2}",
    );
    let limits = RateLimits::new(&first);
    let client = address("192.0.2.1");
    assert_eq!(taken(&limits, "deploy", client, 1), 1);
    assert_eq!(taken(&limits, "deploy", address("192.0.2.2"), 1), 1);
    limits.apply(&config(
        "rate_limit: {per_ip: 1/h, burst: 1}",
        "rate_limit: {per_hook: 1/h, burst: 2}",
    ));
    assert_eq!(
        taken(&limits, "deploy", client, 1),
        0,
        "the client's count stays"
    );
    assert_eq!(
        limits
            .check("deploy", address("192.0.2.3"))
            .unwrap_err()
            .scope,
        Scope::Hook,
        "the hook's count stays"
    );
    // The hook's limit changes; the client's stays.
    limits.apply(&config(
        "rate_limit: {per_ip: 1/h, burst: 1}",
        "rate_limit: {per_hook: 1/h, burst: 3}",
    ));
    assert_eq!(taken(&limits, "deploy", client, 1), 0);
    assert_eq!(taken(&limits, "deploy", address("192.0.2.4"), 1), 1);
    // The client's limit changes too; then both go.
    limits.apply(&config("rate_limit: {per_ip: 2/h, burst: 1}", ""));
    assert_eq!(taken(&limits, "deploy", client, 1), 1);
    limits.apply(&config("", ""));
    assert_eq!(taken(&limits, "deploy", client, 100), 100);
}

#[test]
fn tracked_clients_stay_bounded_and_newcomers_beyond_share_one_allowance() {
    let capacity = 50;
    let limits =
        RateLimits::with_capacity(&config("rate_limit: {per_ip: 1/h, burst: 2}", ""), capacity);
    let client = |n: u32| Some(IpAddr::from((0x0a00_0000 + n).to_be_bytes()));
    // A known client, then a flood from many addresses, each sending once.
    assert!(limits.check("deploy", client(0)).is_ok());
    let newcomers_taken = (1..10_000)
        .filter(|&n| limits.check("deploy", client(n)).is_ok())
        .count();
    // `capacity` addresses, and the one key the others share.
    assert!(
        limits.tracked_clients() <= capacity + 1,
        "{} keys tracked",
        limits.tracked_clients()
    );
    // Those that found room were taken, then all others shared the overflow's two.
    assert_eq!(newcomers_taken, capacity - 1 + 2);
    // The known client kept its own allowance: one request left, not none.
    assert_eq!(taken(&limits, "deploy", client(0), 5), 1);
}

#[test]
fn idle_clients_are_forgotten_and_make_room_again() {
    let capacity = 50;
    // A fast rate: an allowance is whole again within a few milliseconds.
    let limits = RateLimits::with_capacity(
        &config("rate_limit: {per_ip: 1000/s, burst: 1}", ""),
        capacity,
    );
    let client = |n: u32| Some(IpAddr::from((0x0a00_0000 + n).to_be_bytes()));
    for n in 0..1000 {
        let _ = limits.check("deploy", client(n));
    }
    assert!(limits.tracked_clients() >= capacity - 1);
    // Longer than a whole allowance takes to come back: every address is idle now.
    std::thread::sleep(Duration::from_millis(20));
    let busy = client(5000);
    let sweep_at = SWEEP_EVERY as usize;
    for _ in 0..sweep_at {
        let _ = limits.check("deploy", busy);
    }
    assert!(
        limits.tracked_clients() <= 2,
        "{} keys tracked after a sweep",
        limits.tracked_clients()
    );
    // A newcomer has an allowance of its own again, not the overflow's.
    assert_eq!(taken(&limits, "deploy", client(9999), 1), 1);
}

#[test]
fn refusals_are_summarised_per_client_hook_and_limit() {
    let limits = RateLimits::new(&config("rate_limit: {per_ip: 1/h, burst: 1}", ""));
    let client = address("192.0.2.9");
    assert_eq!(taken(&limits, "deploy", client, 30), 1);
    let lines = limits.summary.take_all();
    assert_eq!(
        lines,
        [Line {
            client,
            others: false,
            hook: "deploy".into(),
            scope: Scope::Ip,
            count: 29,
        }]
    );
}
