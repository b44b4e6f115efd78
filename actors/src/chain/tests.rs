//! Chain access against minimal JSON-RPC nodes on local ports: failover, stalls, timeouts,
//! probing and redaction, with no chain.

use std::time::{Duration, Instant};

use alloy::providers::Provider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::endpoint::{AttemptError, STALL_FLOOR};
use super::*;

#[test]
fn redaction_keeps_scheme_host_and_port_only() {
    let r = |s: &str| redact(&s.parse().unwrap());
    assert_eq!(
        r("https://base-mainnet.g.alchemy.com/v2/SECRETKEY"),
        "https://base-mainnet.g.alchemy.com/…"
    );
    assert_eq!(
        r("https://rpc.example/?apikey=SECRET"),
        "https://rpc.example/…"
    );
    assert_eq!(r("https://user:pass@rpc.example"), "https://rpc.example/…");
    assert_eq!(r("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
    assert_eq!(r("http://[::1]:8545/"), "http://[::1]:8545");
}

#[test]
fn bad_urls_are_refused_without_being_echoed() {
    let cfg = ChainConfig::default();
    let err = ChainAccess::new(
        "base",
        &["http://ok.example".into(), "key-123".into()],
        cfg,
        None,
    )
    .unwrap_err();
    assert_eq!(err, ChainError::BadUrl(2));
    assert!(!err.to_string().contains("key-123"));
    assert_eq!(
        ChainAccess::new("base", &[], cfg, None).unwrap_err(),
        ChainError::NoUrl
    );
    assert_eq!(
        ChainAccess::new("base", &["ws://node.example".into()], cfg, None).unwrap_err(),
        ChainError::BadUrl(1)
    );
}

#[test]
fn same_host_endpoints_get_distinct_labels() {
    let access = ChainAccess::new(
        "base",
        &[
            "https://node.example/key-1".into(),
            "https://node.example/key-2".into(),
        ],
        ChainConfig::default(),
        None,
    )
    .unwrap();
    let labels: Vec<String> = access
        .health()
        .endpoints
        .into_iter()
        .map(|e| e.url)
        .collect();
    assert_eq!(
        labels,
        ["https://node.example/…", "https://node.example/… #2"]
    );
}

/// A minimal JSON-RPC node on a free port: answers every call with `chain_id` after
/// `delay`, or never (`None`: it reads the request and hangs, like a frozen node).
async fn node(chain_id: u64, delay: Option<Duration>) -> String {
    node_answering(serde_json::json!(format!("{chain_id:#x}")), delay).await
}

/// The same, answering every call with `result`.
async fn node_answering(result: serde_json::Value, delay: Option<Duration>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let result = result.clone();
            tokio::spawn(async move {
                loop {
                    let result = result.clone();
                    let Some(body) = read_request(&mut sock).await else {
                        return;
                    };
                    let Some(delay) = delay else {
                        std::future::pending::<()>().await;
                        return;
                    };
                    tokio::time::sleep(delay).await;
                    let id =
                        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"].clone();
                    let answer =
                        serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": result })
                            .to_string();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// One HTTP/1.1 request's body; `None` when the peer closed.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if got.len() >= end + 4 + len {
            return Some(got[end + 4..end + 4 + len].to_vec());
        }
    }
}

/// A URL nothing listens on (connection refused).
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn access(urls: &[String], timeout_ms: u64) -> ChainAccess {
    let config = ChainConfig {
        timeout: Duration::from_millis(timeout_ms),
        ..ChainConfig::default()
    };
    ChainAccess::new("base", urls, config, None).unwrap()
}

fn statuses(a: &ChainAccess) -> Vec<EndpointStatus> {
    a.health().endpoints.iter().map(|e| e.status).collect()
}

#[tokio::test]
async fn a_frozen_first_endpoint_is_passed_over_once_it_stalls_then_skipped() {
    let frozen = node(1, None).await;
    let live = node(7, Some(Duration::ZERO)).await;
    let a = access(&[frozen, live], 1000);
    let p = a.provider();

    let t = Instant::now();
    assert_eq!(p.get_chain_id().await.unwrap(), 7);
    let first = t.elapsed();
    assert!(
        first >= STALL_FLOOR && first < Duration::from_millis(450),
        "the second endpoint starts once the first has been silent for {STALL_FLOOR:?}, \
         before its 500 ms share is over: {first:?}"
    );
    assert_eq!(
        statuses(&a),
        [EndpointStatus::Unhealthy, EndpointStatus::Healthy]
    );
    assert_eq!(a.health().status, NetworkStatus::Degraded);

    let t = Instant::now();
    assert_eq!(p.get_chain_id().await.unwrap(), 7);
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "an unhealthy endpoint is skipped: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_refused_endpoint_fails_over_at_once() {
    let a = access(
        &[closed_port().await, node(7, Some(Duration::ZERO)).await],
        5000,
    );
    let t = Instant::now();
    assert_eq!(a.provider().get_chain_id().await.unwrap(), 7);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    let h = a.health();
    assert_eq!(h.endpoints[0].status, EndpointStatus::Unhealthy);
    assert_eq!(
        h.endpoints[0].last_error.as_deref(),
        Some("connection failed")
    );
}

#[tokio::test]
async fn a_slow_endpoint_that_answers_first_still_wins() {
    // The first answers after 300 ms, past its 250 ms share; the second never does.
    let a = access(
        &[
            node(1, Some(Duration::from_millis(300))).await,
            node(2, None).await,
        ],
        500,
    );
    assert_eq!(a.provider().get_chain_id().await.unwrap(), 1);
    let h = a.health();
    // Marked slow when its share ran out, re-admitted by its answer; the second, cut off
    // before its own share, is not blamed.
    assert_eq!(h.endpoints[0].errors, 1);
    assert_eq!(
        statuses(&a),
        [EndpointStatus::Healthy, EndpointStatus::Healthy]
    );
}

#[tokio::test]
async fn when_nothing_answers_the_call_ends_at_the_timeout_with_redacted_errors() {
    let frozen = node(1, None).await;
    let secret = format!("{frozen}/SECRET-KEY");
    let a = access(&[secret, closed_port().await], 800);
    let t = Instant::now();
    let err = a.provider().get_chain_id().await.unwrap_err().to_string();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(1100),
        "{took:?}"
    );
    assert!(!err.contains("SECRET"), "{err}");
    assert!(err.contains("no RPC endpoint answered"), "{err}");
    assert!(err.contains("connection failed"), "{err}");
    assert!(err.contains("no answer within"), "{err}");
    assert_eq!(a.health().status, NetworkStatus::Down);

    // Down: every endpoint is tried again (last resort), so recovery needs no probe.
    let t = Instant::now();
    let _ = a.provider().get_chain_id().await;
    assert!(t.elapsed() < Duration::from_millis(1100));
}

#[tokio::test]
async fn a_probe_readmits_an_endpoint_and_reads_its_head() {
    // The probe's eth_getBlockByNumber gets "0x7" back, not a block: a node must give its
    // latest block to be healthy.
    let a = access(&[node(7, Some(Duration::ZERO)).await], 500);
    a.probe().await;
    let h = a.health();
    assert_eq!(h.endpoints[0].status, EndpointStatus::Unhealthy);
    assert_eq!(
        h.endpoints[0].last_error.as_deref(),
        Some("no readable latest block")
    );
    // Any answered call re-admits it.
    assert_eq!(a.provider().get_chain_id().await.unwrap(), 7);
    assert_eq!(a.health().status, NetworkStatus::Active);
}

#[tokio::test]
async fn an_endpoint_far_behind_the_best_head_is_lagging_and_skipped() {
    let now = 1_800_000_000u64;
    let head = |number: u64, timestamp: u64| serde_json::json!({ "number": format!("{number:#x}"), "timestamp": format!("{timestamp:#x}") });
    let behind = node_answering(head(90, now - 120), Some(Duration::ZERO)).await;
    let current = node_answering(head(100, now), Some(Duration::ZERO)).await;
    let a = access(&[behind, current], 1000);
    a.probe().await;
    let h = a.health();
    assert_eq!(
        statuses(&a),
        [EndpointStatus::Lagging, EndpointStatus::Healthy]
    );
    assert_eq!(h.status, NetworkStatus::Degraded);
    assert_eq!(h.block, Some(100), "the head of a usable endpoint");
    assert_eq!(h.block_age_secs(now + 3), Some(3));
    assert_eq!(h.endpoints[0].block, Some(90));
    assert_eq!(
        a.shared.plan().0,
        [1],
        "the lagging endpoint is not tried first"
    );
}

#[tokio::test]
async fn a_stalled_healthy_endpoint_hands_over_to_an_unhealthy_one_that_answers() {
    // The first looks healthy but is frozen; the second was marked unhealthy (say by a
    // blip) and has not been probed since, but answers.
    let a = access(
        &[node(1, None).await, node(7, Some(Duration::ZERO)).await],
        2000,
    );
    a.shared.failed(1, &AttemptError::Connect);
    let t = Instant::now();
    assert_eq!(a.provider().get_chain_id().await.unwrap(), 7);
    assert!(
        t.elapsed() < Duration::from_millis(700),
        "handed over once the first stalled, not at the 2 s deadline: {:?}",
        t.elapsed()
    );
    assert_eq!(
        statuses(&a),
        [EndpointStatus::Unhealthy, EndpointStatus::Healthy]
    );
}
