//! Fleet-wide, at once: two instances on one PostgreSQL database. A change to a client key
//! made through one (revocation, pause, rotation, credits) is refused by the other within a
//! second although it had the key in its cache, and a key's rate limit holds for the two
//! together.

use std::time::{Duration, Instant};

use devnet::{Devnet, DevnetOptions};
use reqwest::{Method, Response};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::helpers::*;

/// How long a change may take to reach the other instance.
const WITHIN: Duration = Duration::from_secs(1);

/// Two instances (no chain) on one fresh PostgreSQL database.
async fn two_instances() -> (TestApp, TestApp) {
    let db = TestDb::create(Db::Postgres).await;
    let url = db.url.clone();
    let a = TestApp::spawn_on(db, json!({})).await;
    let b = TestApp::spawn_on(TestDb::attach(&url), json!({})).await;
    (a, b)
}

async fn supported(app: &TestApp, id: &str, token: &str) -> Response {
    app.get_as_client("/api/v1/supported", id, token).await
}

/// Poll `app` with the key until it is refused with 401 or `deadline` passes; the refusal.
async fn refused_by(app: &TestApp, id: &str, token: &str, deadline: Instant) -> Response {
    let asked = Instant::now();
    loop {
        let res = supported(app, id, token).await;
        if res.status() == 401 {
            println!("refused by the other instance after {:?}", asked.elapsed());
            return res;
        }
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        assert!(
            Instant::now() < deadline,
            "the other instance still accepts the key {WITHIN:?} after the change"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `b` answers from its cache: a write that bypasses the API (and so tells no instance) is not
/// seen there.
async fn assert_b_serves_from_its_cache(
    a: &TestApp,
    b: &TestApp,
    access: &str,
    db: &sea_orm::DatabaseConnection,
) {
    let (id, token) = key_cached_on(a, b, access).await;
    db.execute_unprepared(&format!(
        "UPDATE clients SET paused_at = now() WHERE client_id = '{id}'"
    ))
    .await
    .unwrap();
    assert_eq!(supported(b, &id, &token).await.status(), 200, "cached");
}

/// A key `b` has cached, revoked on `a`, is refused by `b` within [`WITHIN`].
async fn revoked_on_a_is_refused_by_b(a: &TestApp, b: &TestApp, access: &str) {
    let (id, token) = key_cached_on(a, b, access).await;
    let res = a
        .request(
            Method::DELETE,
            &format!("/api/v1/clients/{id}"),
            Some(access),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = refused_by(b, &id, &token, Instant::now() + WITHIN).await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;
}

/// A fresh key of `access`'s, made on `a` and used on `b` (so `b` has it cached).
async fn key_cached_on(a: &TestApp, b: &TestApp, access: &str) -> (String, String) {
    let (id, token) = a.client_key(access, "verify,settle").await;
    for _ in 0..2 {
        assert_eq!(supported(b, &id, &token).await.status(), 200);
    }
    (id, token)
}

async fn patch_key(app: &TestApp, access: &str, id: &str, body: Value) -> Response {
    app.request(
        Method::PATCH,
        &format!("/api/v1/clients/{id}"),
        Some(access),
        Some(body),
    )
    .await
}

#[actix_web::test]
async fn revocation_pause_and_rotation_on_one_instance_reach_the_other_within_a_second() {
    let (a, b) = two_instances().await;
    let (access, _, _) = a.user("fleet-keys@example.com").await;

    // What follows is therefore the notification's doing, not a cache miss.
    let db = Database::connect(&a.db.url).await.unwrap();
    assert_b_serves_from_its_cache(&a, &b, &access, &db).await;

    // Revoked on A.
    revoked_on_a_is_refused_by_b(&a, &b, &access).await;

    // Paused on A, then resumed: both reach B.
    let (id, token) = key_cached_on(&a, &b, &access).await;
    let res = patch_key(&a, &access, &id, json!({ "status": "paused" })).await;
    assert_eq!(res.status(), 200);
    let res = refused_by(&b, &id, &token, Instant::now() + WITHIN).await;
    assert_error(res, 401, "UNAUTHORIZED", Some("client key paused")).await;
    let res = patch_key(&a, &access, &id, json!({ "status": "active" })).await;
    assert_eq!(res.status(), 200);
    let deadline = Instant::now() + WITHIN;
    while supported(&b, &id, &token).await.status() != 200 {
        assert!(Instant::now() < deadline, "resumed key still refused on B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Rotated on A: the old token is refused on B, the new one works there.
    let (id, old) = key_cached_on(&a, &b, &access).await;
    let res = patch_key(&a, &access, &id, json!({ "rotate": true })).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let new = body["data"]["client"]["token"].as_str().unwrap().to_owned();
    let res = refused_by(&b, &id, &old, Instant::now() + WITHIN).await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;
    assert_eq!(supported(&b, &id, &new).await.status(), 200);
    db.close().await.ok();
}

/// Two instances with a signer each on one PostgreSQL database and a devnet.
async fn two_settling_instances(devnet: &Devnet) -> (TestApp, TestApp) {
    let db = TestDb::create(Db::Postgres).await;
    let url = db.url.clone();
    let a = ChainApp::start_app(db, devnet, devnet.facilitator_keys[..1].to_vec()).await;
    let b = ChainApp::start_app(
        TestDb::attach(&url),
        devnet,
        devnet.facilitator_keys[1..2].to_vec(),
    )
    .await;
    (a, b)
}

/// Settle the `n`th payment (of `1_000 + n` atomic units) with `merchant`'s key, on `on`.
async fn settle_on(merchant: &ChainApp, on: &TestApp, n: usize) -> Response {
    let payer = n % merchant.devnet.payers.len();
    let value = 1_000 + n as u64;
    let pay = Payment::new(merchant, payer, value);
    let body = pay.v1(&pay.sign(merchant.payer(payer)), value);
    on.post_as_client(
        "/api/v1/settle",
        &merchant.client_id,
        &merchant.client_token,
        &body,
    )
    .await
}

#[actix_web::test]
async fn credits_set_to_zero_on_one_instance_stop_settles_on_the_other_within_a_second() {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let (a, b) = two_settling_instances(&devnet).await;
    let a = ChainApp::with_merchant(a, devnet).await;
    // The key has no credit limit, and B has it cached so.
    let res = settle_on(&a, &b, 0).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["success"], true, "{body}");

    let res = a
        .app
        .request(
            Method::PATCH,
            &format!("/admin/clients/{}", a.client_id),
            Some(ADMIN_TOKEN),
            Some(json!({ "settleCredits": 0 })),
        )
        .await;
    assert_eq!(res.status(), 200);
    let deadline = Instant::now() + WITHIN;
    let before = a.balance(PAY_TO).await;
    let mut n = 1;
    let refusal = loop {
        let res = settle_on(&a, &b, n).await;
        if res.status() == 403 {
            break res;
        }
        assert_eq!(res.status(), 200);
        assert!(
            Instant::now() < deadline,
            "B still settles for the key {WITHIN:?} after its credits were set to 0"
        );
        n += 1;
    };
    assert_error(refusal, 403, "FORBIDDEN", None).await;
    // Refused before anything was sent: only what B settled before the refusal arrived moved.
    let settled_meanwhile: u64 = (1..n).map(|i| 1_000 + i as u64).sum();
    assert_eq!(
        a.balance(PAY_TO).await,
        before + alloy::primitives::U256::from(settled_meanwhile)
    );
}

#[actix_web::test]
async fn a_rate_limit_holds_for_the_fleet_not_per_instance() {
    const RATE: u64 = 10;
    const SECONDS: u64 = 10;
    const SENDERS_PER_INSTANCE: usize = 4;
    let (a, b) = two_instances().await;
    let (access, _, _) = a.user("fleet-rate@example.com").await;
    let (id, token) = a.client_key(&access, "verify").await;
    let res = a
        .request(
            Method::PATCH,
            &format!("/admin/clients/{id}"),
            Some(ADMIN_TOKEN),
            Some(json!({ "rateLimitPerSecond": RATE })),
        )
        .await;
    assert_eq!(res.status(), 200);

    // Both instances, four senders each, as fast as they are answered, for SECONDS.
    let started = Instant::now();
    let end = started + Duration::from_secs(SECONDS);
    let senders = (0..SENDERS_PER_INSTANCE)
        .flat_map(|_| [&a, &b])
        .map(|app| send_until(app, &id, &token, started, end));
    let answers: Vec<(Duration, u16)> = futures::future::join_all(senders)
        .await
        .into_iter()
        .flatten()
        .collect();

    // Accepted per second of the run, over both instances.
    let seconds = started.elapsed().as_secs_f64().ceil() as u64;
    let mut per_second = vec![0u64; seconds as usize];
    for (at, status) in &answers {
        if *status == 200 {
            per_second[at.as_secs() as usize] += 1;
        }
    }
    let accepted: u64 = per_second.iter().sum();
    println!("accepted per second over both instances: {per_second:?}");
    let refused = answers.iter().filter(|(_, s)| *s == 429).count();
    assert!(
        refused > answers.len() / 2,
        "the senders asked far above the limit: {refused} of {} refused",
        answers.len()
    );
    assert!(
        accepted <= 12 * SECONDS,
        "{accepted} accepted in {SECONDS} s over two instances ({per_second:?})"
    );
    assert!(
        accepted >= 8 * SECONDS,
        "only {accepted} accepted in {SECONDS} s ({per_second:?})"
    );
}

/// `/supported` with the key, one request after another until `end`: when each answer came
/// (since `started`) and its status. Every refusal carries the rate-limit headers.
async fn send_until(
    app: &TestApp,
    id: &str,
    token: &str,
    started: Instant,
    end: Instant,
) -> Vec<(Duration, u16)> {
    let mut answers = Vec::new();
    while Instant::now() < end {
        let res = supported(app, id, token).await;
        let status = res.status().as_u16();
        assert!(status == 200 || status == 429, "status {status}");
        if status == 429 {
            assert!(res.headers().get("retry-after").is_some());
            assert_eq!(res.headers()["ratelimit-remaining"], "0");
        }
        answers.push((started.elapsed(), status));
    }
    answers
}

/// The listening connections of the database's instances (their last statement is the
/// `LISTEN`; pings and changes go through the pools).
const LISTENERS: &str = "SELECT pid FROM pg_stat_activity \
     WHERE datname = current_database() AND query LIKE 'LISTEN %'";

#[actix_web::test]
async fn a_listener_whose_connection_is_killed_reconnects_and_changes_still_arrive() {
    let (a, b) = two_instances().await;
    let (access, _, _) = a.user("fleet-reconnect@example.com").await;
    let db = Database::connect(&a.db.url).await.unwrap();
    let listeners = || async {
        db.query_all(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            LISTENERS,
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<i32>("", "pid").unwrap())
        .collect::<Vec<_>>()
    };
    let before = listeners().await;
    assert_eq!(before.len(), 2, "one listener per instance");

    // Cut both listening connections, as a network fault or a restarted pooler would.
    db.execute_unprepared(&format!(
        "SELECT pg_terminate_backend(pid) FROM ({LISTENERS}) l"
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = listeners().await;
        if now.len() == 2 && now.iter().all(|p| !before.contains(p)) {
            break;
        }
        assert!(Instant::now() < deadline, "listeners not back: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Listening again, and caching again: a revocation on A reaches B's cache at once.
    assert_b_serves_from_its_cache(&a, &b, &access, &db).await;
    revoked_on_a_is_refused_by_b(&a, &b, &access).await;
    db.close().await.ok();
}
