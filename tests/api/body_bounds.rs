//! Bounds before authentication: no request body is held beyond `server.body_limit_bytes` or
//! waited on beyond `server.body_timeout_secs`, and open connections are bounded by
//! `server.max_connections`. Raw TCP clients, so the server's side is what is measured.

use std::time::Duration;

use devnet::{Devnet, DevnetOptions};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both_dbs;
use crate::helpers::*;
use crate::process::Facilitator;

/// Read an HTTP/1.1 response head and its `Content-Length` body from `stream`.
async fn read_response(stream: &mut (impl AsyncReadExt + Unpin)) -> (u16, serde_json::Value) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.expect("read response");
        assert!(n > 0, "connection closed before a full response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            let n = stream.read(&mut chunk).await.expect("read body");
            assert!(n > 0, "connection closed inside the body");
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap_or(json!(null));
        return (status, body);
    }
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// A declared length over the limit is answered 413 from the headers alone.
async fn declared_length_over_the_limit(app: TestApp) {
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(
        b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 209715200\r\n\r\n",
    )
    .await
    .unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), read_response(&mut s))
        .await
        .expect("answered without the body");
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
}

both_dbs!(a_declared_length_over_the_limit_is_refused_unread, |app| {
    declared_length_over_the_limit(app).await
});

/// A body that stops arriving is cut off after `server.body_timeout_secs` with 408.
async fn trickle(kind: Db) {
    let db = TestDb::create(kind).await;
    let app = TestApp::spawn_on(db, json!({ "server": { "body_timeout_secs": 1 } })).await;
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(
        b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"email\":",
    )
    .await
    .unwrap();
    // The body never completes: the answer must come from the deadline (1 s), well before
    // this test's own bound.
    let started = std::time::Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), read_response(&mut s))
        .await
        .expect("a stalled body is answered");
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["code"], "REQUEST_TIMEOUT");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[actix_web::test]
async fn a_body_that_trickles_is_cut_off_after_the_timeout_sqlite() {
    trickle(Db::Sqlite).await
}

#[actix_web::test]
async fn a_body_that_trickles_is_cut_off_after_the_timeout_postgres() {
    trickle(Db::Postgres).await
}

/// 200 MB of white space, chunked (no length to refuse it by), to the unauthenticated login
/// of the real binary: 413 once the limit is passed, and the process holds none of it.
async fn whitespace_flood(kind: Db) {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let db = TestDb::create(kind).await;
    let f = Facilitator::start(&db.url, &devnet);
    let addr = host_port(&f.url);
    // Warm the process (first requests allocate pools and caches), then measure.
    for _ in 0..3 {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/login", f.url))
            .json(&json!({"email": "nobody@example.com", "password": "wrong password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let before = f.rss_bytes();

    let s = TcpStream::connect(&addr).await.unwrap();
    let (mut read, mut write) = s.into_split();
    let reader = tokio::spawn(async move { read_response(&mut read).await });
    write
        .write_all(
            b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let spaces = vec![b' '; 64 * 1024];
    let mut chunk = format!("{:x}\r\n", spaces.len()).into_bytes();
    chunk.extend_from_slice(&spaces);
    chunk.extend_from_slice(b"\r\n");
    let total: usize = 200 * 1024 * 1024;
    let mut sent = 0usize;
    while sent < total && !reader.is_finished() {
        // The server stops reading once it has answered: our writes then fill the socket
        // buffers and stall, or fail when it closes the connection.
        match tokio::time::timeout(Duration::from_secs(2), write.write_all(&chunk)).await {
            Ok(Ok(())) => sent += spaces.len(),
            _ => break,
        }
    }
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    assert!(
        sent < total,
        "the server read all 200 MB instead of stopping at the limit"
    );
    let after = f.rss_bytes();
    let grown = after.saturating_sub(before);
    assert!(
        grown < 5 * 1024 * 1024,
        "RSS grew by {grown} bytes ({before} -> {after}) for one refused body"
    );
    // Still serving.
    let r = reqwest::get(format!("{}/health", f.url)).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[actix_web::test]
async fn a_whitespace_flood_is_refused_at_the_limit_and_not_held_sqlite() {
    whitespace_flood(Db::Sqlite).await
}

#[actix_web::test]
async fn a_whitespace_flood_is_refused_at_the_limit_and_not_held_postgres() {
    whitespace_flood(Db::Postgres).await
}

/// With `server.max_connections` 2 (one worker), a third connection is not served while two
/// are open, and is served once one closes.
#[actix_web::test]
async fn connections_past_the_limit_wait_for_a_free_one() {
    let db = TestDb::create(Db::Sqlite).await;
    let app = TestApp::spawn_on(
        db,
        json!({ "server": { "max_connections": 2, "header_timeout_secs": 30 } }),
    )
    .await;
    let get = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    // Two connections held open (keep-alive, each answered once).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        s.write_all(get).await.unwrap();
        let (status, _) = read_response(&mut s).await;
        assert_eq!(status, 200);
        held.push(s);
    }
    let mut third = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    third.write_all(get).await.unwrap();
    // A negative observation needs a bounded wait: no answer while both are held.
    let early = tokio::time::timeout(Duration::from_millis(1500), read_response(&mut third)).await;
    assert!(
        early.is_err(),
        "a third connection was served past the limit"
    );
    drop(held.pop());
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), read_response(&mut third))
        .await
        .expect("served once a connection closed");
    assert_eq!(status, 200);
}
