use super::*;

#[test]
fn header_values_never_reach_the_recorded_command_line() {
    let argv = [
        "x402-bench",
        "--header",
        "X-Client-Token: x402sk_secret",
        "-H",
        "Authorization: Bearer secret2",
        "--compare-header=X-Key: secret3",
        "--count",
        "5",
    ]
    .map(String::from);
    let shown = redacted_argv(argv).join(" ");
    for secret in ["x402sk_secret", "secret2", "secret3"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("X-Client-Token: <redacted>"), "{shown}");
    assert!(
        shown.contains("--compare-header=X-Key: <redacted>"),
        "{shown}"
    );
    assert!(shown.ends_with("--count 5"), "{shown}");
}

#[test]
fn networks_are_named_for_both_versions() {
    let n = network_names("base-sepolia").unwrap();
    assert_eq!(
        (n.v1.as_deref(), n.caip2.as_str(), n.chain_id),
        (Some("base-sepolia"), "eip155:84532", 84532)
    );
    let custom = network_names("eip155:31337").unwrap();
    assert_eq!((custom.v1, custom.chain_id), (None, 31337));
    assert!(network_names("moon").is_err());
}

#[test]
fn headers_parse_and_bad_ones_are_refused() {
    let h = parse_headers(&["X-Client-ID: cl_1".into()], "--header").unwrap();
    assert_eq!(h["x-client-id"], "cl_1");
    assert!(parse_headers(&["no colon".into()], "--header").is_err());
}
